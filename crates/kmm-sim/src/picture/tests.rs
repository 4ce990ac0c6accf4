//! Unit tests of the picture: structure of the SVG (well formed, cells, legend, zones), not pixels.

use super::*;

/// Checks that `svg` is well formed in the XML sense this module uses (nested elements,
/// quoted attributes, escaped text) and returns the element names in document order.
fn elements(svg: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = svg;
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open]);
        let close = rest[open..].find('>').expect("unterminated tag") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, attributes) = tag.split_once(' ').unwrap_or((tag, ""));
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "{tag}"
        );
        assert_eq!(
            attributes.matches('"').count() % 2,
            0,
            "unbalanced quotes in <{tag}>"
        );
        check_text(&attributes.replace('"', ""));
        names.push(name.to_owned());
        if !self_closing {
            stack.push(name.to_owned());
        }
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    names
}

/// Checks that every `&` in `text` starts one of the entities `escape` writes.
fn check_text(text: &str) {
    for (index, _) in text.match_indices('&') {
        let entity = &text[index..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| entity.starts_with(e)),
            "raw & in {text:?}"
        );
    }
}

/// Counts the cells in `svg`.
fn cell_count(svg: &str) -> usize {
    svg.matches(r#"<rect class="cell "#).count()
}

/// The worked example's toy machine after `alloc_pages A order=1`: 16 frames of one Normal zone.
fn worked_example() -> Vec<Frame> {
    (0..16)
        .map(|pfn| Frame {
            zone: Some("Normal"),
            kind: match pfn {
                5 | 10 => Kind::Free(0),
                12 | 13 => Kind::Allocated,
                14 | 15 => Kind::Free(1),
                _ => Kind::Reserved,
            },
        })
        .collect()
}

/// A machine of `frames` frames in two zones, split at `boundary`, with a hole at the end.
fn two_zones(frames: usize, boundary: usize, hole: usize) -> Vec<Frame> {
    (0..frames)
        .map(|pfn| {
            if pfn >= frames - hole {
                Frame {
                    zone: None,
                    kind: Kind::Hole,
                }
            } else {
                let zone = if pfn < boundary { "DMA" } else { "DMA32" };
                Frame {
                    zone: Some(zone),
                    kind: Kind::Free(10),
                }
            }
        })
        .collect()
}

#[test]
fn small_machines_get_one_cell_per_frame() {
    let picture = render("toy <16> & co", &worked_example());
    assert_eq!(picture.frames_per_cell, 1);
    assert_eq!(picture.cells, 16);
    assert_eq!(picture.columns, 16);
    assert_eq!(cell_count(&picture.svg), 16);
    let names = elements(&picture.svg);
    assert_eq!(names.first().map(String::as_str), Some("svg"));
    assert!(picture.svg.contains("toy &lt;16&gt; &amp; co"));
    assert!(picture.svg.contains("1 cell = 1 frame (4 KiB)"));
}

#[test]
fn cells_show_each_frame_state() {
    let svg = render("toy", &worked_example()).svg;
    assert_eq!(svg.matches(r#"class="cell free0""#).count(), 2);
    assert_eq!(svg.matches(r#"class="cell free1""#).count(), 2);
    assert_eq!(svg.matches(r#"class="cell allocated""#).count(), 2);
    assert_eq!(svg.matches(r#"class="cell reserved""#).count(), 10);
    assert!(svg.contains("<title>pfn 12: allocated</title>"));
    assert!(svg.contains("<title>pfn 14: free, order 1</title>"));
}

#[test]
fn big_machines_group_frames_by_powers_of_two() {
    // 64 MiB: 16384 frames.
    let frames = two_zones(16384, 4096, 0);
    let picture = render("x86_64 64M", &frames);
    assert_eq!(picture.frames_per_cell, 4);
    assert_eq!(picture.cells, 4096);
    assert_eq!(picture.columns, 128);
    assert_eq!(cell_count(&picture.svg), 4096);
    elements(&picture.svg);
    assert!(picture.svg.contains("1 cell = 4 frames (16 KiB)"));
    assert!(
        picture
            .svg
            .contains("<title>pfn 4–7: free, order 10</title>")
    );
}

#[test]
fn odd_sizes_keep_a_short_last_cell() {
    let frames = two_zones(5000, 4096, 3);
    let picture = render("odd", &frames);
    assert_eq!(picture.frames_per_cell, 2);
    assert_eq!(picture.cells, 2500);
    assert_eq!(cell_count(&picture.svg), 2500);
    assert!(picture.svg.contains("<title>pfn 4998–4999: hole</title>"));
    assert!(picture.svg.contains(
        "<title>pfn 4996–4997: mostly free, order 10 (1 free, order 10; 1 hole)</title>"
    ));
    elements(&picture.svg);
}

#[test]
fn zones_are_labelled_with_their_pfn_ranges() {
    let frames = two_zones(16384, 4096, 0);
    let svg = render("zones", &frames).svg;
    assert_eq!(svg.matches(r#"class="zone-boundary""#).count(), 2);
    assert!(svg.contains("DMA: pfn 0–4095 (4096 frames)"));
    assert!(svg.contains("DMA32: pfn 4096–16383 (12288 frames)"));
}

#[test]
fn zone_spans_skip_holes_and_split_at_changes() {
    let mut frames = two_zones(32, 8, 4);
    frames[0] = Frame {
        zone: None,
        kind: Kind::Hole,
    };
    let spans = zone_spans(&frames);
    assert_eq!(
        spans,
        [
            ZoneSpan {
                name: "DMA",
                first: 1,
                last: 7
            },
            ZoneSpan {
                name: "DMA32",
                first: 8,
                last: 27
            },
        ]
    );
}

#[test]
fn legend_names_every_state_and_order() {
    let svg = render("legend", &worked_example()).svg;
    for label in [
        "hole",
        "reserved",
        "per-CPU list",
        "allocated",
        "free, by order:",
    ] {
        assert!(svg.contains(&format!(">{label}</text>")), "{label}");
    }
    for order in 0..=10 {
        assert!(
            svg.contains(&format!(r#"<rect class="swatch free{order}""#)),
            "{order}"
        );
    }
    assert_eq!(svg.matches(r#"<rect class="swatch "#).count(), 4 + 11);
}

#[test]
fn a_cell_shows_the_state_most_of_its_frames_are_in() {
    let frame = |kind| Frame {
        zone: Some("Normal"),
        kind,
    };
    let mixed = [
        frame(Kind::Allocated),
        frame(Kind::Free(2)),
        frame(Kind::Free(2)),
        frame(Kind::Hole),
    ];
    assert_eq!(dominant(&mixed), Kind::Free(2));
    // Ties go to the more interesting state, and free ties to the higher order.
    assert_eq!(
        dominant(&[frame(Kind::Reserved), frame(Kind::PerCpu)]),
        Kind::PerCpu
    );
    assert_eq!(
        dominant(&[frame(Kind::Free(0)), frame(Kind::Free(3))]),
        Kind::Free(3)
    );
    // Orders above the last shade use the darkest one.
    assert_eq!(dominant(&[frame(Kind::Free(12))]), Kind::Free(10));
}

#[test]
fn an_empty_machine_is_still_a_document() {
    let picture = render("empty", &[]);
    assert_eq!(picture.cells, 0);
    assert_eq!(cell_count(&picture.svg), 0);
    elements(&picture.svg);
}
