//! A picture of physical memory as SVG text: one cell per frame, or per group of frames.
//!
//! The picture knows nothing of the memory manager.
//! It gets a title and one [`Frame`] per frame number, from 0 to the end of memory, and lays
//! them out in rows, left to right: each cell is colored by the state most of its frames are in,
//! free blocks in shades of green by order, and every zone's first cell carries a boundary line
//! and a label with the zone's name and pfn range.
//! Big machines get several frames per cell (a power of two, so cells line up with buddy blocks),
//! and the legend says how many.

use std::fmt::Write as _;

/// The most cells a picture draws; bigger machines group frames.
const MAX_CELLS: usize = 4096;
/// Shades for free blocks: orders 0 to 10, as Linux's `NR_PAGE_ORDERS`; higher orders use the last.
const FREE_SHADES: [&str; 11] = [
    "#d9f0d3", "#c2e6b9", "#a6dba0", "#8ccf89", "#72c174", "#5aae61", "#439a50", "#2f8741",
    "#1b7837", "#0f5e2a", "#00441b",
];
/// The fill of holes.
const HOLE_FILL: &str = "#f4f4f4";
/// The fill of reserved frames.
const RESERVED_FILL: &str = "#7f7f7f";
/// The fill of frames on per-CPU page lists.
const PERCPU_FILL: &str = "#fdae6b";
/// The fill of allocated frames.
const ALLOCATED_FILL: &str = "#3182bd";
/// Space left of the grid, for row labels.
const LEFT: usize = 84;
/// Space above the grid, for the title.
const TOP: usize = 48;
/// Space right of the grid before the zone labels.
const LABEL_GAP: usize = 12;
/// The width of one character of the 12-pixel monospace font, rounded up.
const CHAR_WIDTH: usize = 8;

/// What one frame is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No memory at this frame number.
    Hole,
    /// Present but never handed to the buddy allocator.
    Reserved,
    /// Part of a free buddy block of this order.
    Free(u32),
    /// On a per-CPU page list.
    PerCpu,
    /// Allocated.
    Allocated,
}

impl Kind {
    /// The rank used to break ties between states with as many frames in one cell: the more
    /// interesting state wins.
    fn rank(self) -> usize {
        match self {
            Kind::Hole => 0,
            Kind::Reserved => 1,
            Kind::Free(_) => 2,
            Kind::PerCpu => 3,
            Kind::Allocated => 4,
        }
    }

    /// The CSS class of a cell in this state.
    fn class(self) -> String {
        match self {
            Kind::Hole => "hole".to_owned(),
            Kind::Reserved => "reserved".to_owned(),
            Kind::Free(order) => format!("free{}", shade(order)),
            Kind::PerCpu => "pcp".to_owned(),
            Kind::Allocated => "allocated".to_owned(),
        }
    }

    /// The state in words, for tooltips.
    fn describe(self) -> String {
        match self {
            Kind::Hole => "hole".to_owned(),
            Kind::Reserved => "reserved".to_owned(),
            Kind::Free(order) => format!("free, order {order}"),
            Kind::PerCpu => "per-CPU list".to_owned(),
            Kind::Allocated => "allocated".to_owned(),
        }
    }
}

/// The index of the free shade for `order`.
fn shade(order: u32) -> usize {
    usize::try_from(order).map_or(FREE_SHADES.len() - 1, |order| {
        order.min(FREE_SHADES.len() - 1)
    })
}

/// One frame: its zone (by name; `None` outside every zone) and its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The zone's name, as Linux prints it.
    pub(crate) zone: Option<&'static str>,
    /// The frame's state.
    pub(crate) kind: Kind,
}

/// A rendered picture and the numbers behind its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Picture {
    /// The SVG document.
    pub(crate) svg: String,
    /// How many frames one cell stands for.
    pub(crate) frames_per_cell: usize,
    /// How many cells are drawn.
    pub(crate) cells: usize,
    /// Cells per row.
    pub(crate) columns: usize,
}

/// The grid geometry for a machine of `frames` frames.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Frames per cell, a power of two.
    frames_per_cell: usize,
    /// Number of cells.
    cells: usize,
    /// Cells per row.
    columns: usize,
    /// Number of rows.
    rows: usize,
    /// The side of a cell, in pixels.
    cell: usize,
}

impl Layout {
    /// Chooses the grouping and the row width.
    fn new(frames: usize) -> Layout {
        let mut frames_per_cell = 1;
        while frames.div_ceil(frames_per_cell) > MAX_CELLS {
            frames_per_cell *= 2;
        }
        let cells = frames.div_ceil(frames_per_cell);
        let columns = match cells {
            0..=64 => cells.max(1),
            65..=1024 => 64,
            _ => 128,
        };
        let rows = cells.div_ceil(columns);
        let cell = (1024 / columns).clamp(8, 32);
        Layout {
            frames_per_cell,
            cells,
            columns,
            rows,
            cell,
        }
    }

    /// The top-left corner of cell `index`.
    fn position(&self, index: usize) -> (usize, usize) {
        let x = LEFT + (index % self.columns) * self.cell;
        let y = TOP + (index / self.columns) * self.cell;
        (x, y)
    }

    /// The width of the grid in pixels.
    fn grid_width(&self) -> usize {
        self.columns * self.cell
    }
}

/// A run of frames of one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ZoneSpan {
    /// The zone's name.
    pub(crate) name: &'static str,
    /// The first frame.
    pub(crate) first: usize,
    /// The last frame (included).
    pub(crate) last: usize,
}

/// The maximal runs of consecutive frames in the same zone.
pub(crate) fn zone_spans(frames: &[Frame]) -> Vec<ZoneSpan> {
    let mut spans: Vec<ZoneSpan> = Vec::new();
    for (pfn, frame) in frames.iter().enumerate() {
        let Some(name) = frame.zone else { continue };
        match spans.last_mut() {
            Some(span) if span.name == name && span.last + 1 == pfn => span.last = pfn,
            _ => spans.push(ZoneSpan {
                name,
                first: pfn,
                last: pfn,
            }),
        }
    }
    spans
}

/// The state a cell shows: the state of most of its frames; among free frames, the most common
/// order (the higher one on a tie).
fn dominant(frames: &[Frame]) -> Kind {
    let mut counts = [0usize; 5];
    let mut free_orders = [0usize; FREE_SHADES.len()];
    for frame in frames {
        counts[frame.kind.rank()] += 1;
        if let Kind::Free(order) = frame.kind {
            free_orders[shade(order)] += 1;
        }
    }
    let best_rank = (0..counts.len())
        .max_by_key(|&rank| (counts[rank], rank))
        .unwrap_or(0);
    match best_rank {
        0 => Kind::Hole,
        1 => Kind::Reserved,
        2 => {
            let order = (0..free_orders.len())
                .max_by_key(|&order| (free_orders[order], order))
                .unwrap_or(0);
            Kind::Free(u32::try_from(order).unwrap_or(0))
        }
        3 => Kind::PerCpu,
        _ => Kind::Allocated,
    }
}

/// Escapes text for an SVG text node or attribute.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Writes a pfn range as `12` or `12–15`.
fn pfn_range(first: usize, last: usize) -> String {
    if first == last {
        format!("{first}")
    } else {
        format!("{first}–{last}")
    }
}

/// Draws `frames` (frame number = index) under `title`.
pub(crate) fn render(title: &str, frames: &[Frame]) -> Picture {
    let layout = Layout::new(frames.len());
    let spans = zone_spans(frames);
    let legend_top = TOP + layout.rows * layout.cell + 24;
    let labels: Vec<String> = spans.iter().map(zone_label).collect();
    let longest = labels
        .iter()
        .map(|label| label.chars().count())
        .max()
        .unwrap_or(0);
    let width =
        (LEFT + layout.grid_width() + LABEL_GAP + longest * CHAR_WIDTH + LABEL_GAP).max(800);
    let height = legend_top + 110;

    let mut svg = String::new();
    // Writing into a `String` cannot fail, so the `fmt::Result`s below are dropped on purpose.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">"#
    );
    let _ = writeln!(svg, "<style>");
    let _ = writeln!(svg, ".cell {{ stroke: #ffffff; stroke-width: 0.5; }}");
    let _ = writeln!(svg, ".hole {{ fill: {HOLE_FILL}; }}");
    let _ = writeln!(svg, ".reserved {{ fill: {RESERVED_FILL}; }}");
    for (order, color) in FREE_SHADES.iter().enumerate() {
        let _ = writeln!(svg, ".free{order} {{ fill: {color}; }}");
    }
    let _ = writeln!(svg, ".pcp {{ fill: {PERCPU_FILL}; }}");
    let _ = writeln!(svg, ".allocated {{ fill: {ALLOCATED_FILL}; }}");
    let _ = writeln!(
        svg,
        ".zone-boundary {{ fill: none; stroke: #d62728; stroke-width: 2; }}"
    );
    let _ = writeln!(svg, "</style>");
    let _ = writeln!(
        svg,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text class="title" x="{LEFT}" y="24" font-size="16">{}</text>"#,
        escape(title)
    );

    write_cells(&mut svg, &layout, frames);
    write_row_labels(&mut svg, &layout, frames.len());
    write_zones(&mut svg, &layout, &spans, &labels);
    write_legend(&mut svg, &layout, legend_top);
    let _ = writeln!(svg, "</svg>");

    Picture {
        svg,
        frames_per_cell: layout.frames_per_cell,
        cells: layout.cells,
        columns: layout.columns,
    }
}

/// Writes one `rect` per cell, with a tooltip naming its frames and state.
fn write_cells(svg: &mut String, layout: &Layout, frames: &[Frame]) {
    let _ = writeln!(svg, r#"<g class="cells">"#);
    for (index, group) in frames.chunks(layout.frames_per_cell).enumerate() {
        let kind = dominant(group);
        let (x, y) = layout.position(index);
        let first = index * layout.frames_per_cell;
        let last = first + group.len() - 1;
        let _ = writeln!(
            svg,
            r#"<rect class="cell {}" x="{x}" y="{y}" width="{size}" height="{size}"><title>pfn {}: {}</title></rect>"#,
            kind.class(),
            pfn_range(first, last),
            escape(&describe_cell(kind, group)),
            size = layout.cell,
        );
    }
    let _ = writeln!(svg, "</g>");
}

/// The tooltip text of a cell showing `kind`: the state alone when every frame is in it,
/// otherwise the count of frames in each state as well.
fn describe_cell(kind: Kind, frames: &[Frame]) -> String {
    if frames.iter().all(|frame| frame.kind == kind) {
        return kind.describe();
    }
    let mut counts: Vec<(Kind, usize)> = Vec::new();
    for frame in frames {
        match counts.iter_mut().find(|(seen, _)| *seen == frame.kind) {
            Some((_, count)) => *count += 1,
            None => counts.push((frame.kind, 1)),
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(kind, count)| format!("{count} {}", kind.describe()))
        .collect();
    format!("mostly {} ({})", kind.describe(), parts.join("; "))
}

/// Writes the first pfn of each row (of every eighth row when rows are thin) left of the grid.
fn write_row_labels(svg: &mut String, layout: &Layout, frames: usize) {
    let every = if layout.cell >= 12 { 1 } else { 8 };
    let _ = writeln!(
        svg,
        r##"<g class="row-labels" text-anchor="end" fill="#555555">"##
    );
    for row in (0..layout.rows).step_by(every) {
        let pfn = row * layout.columns * layout.frames_per_cell;
        if pfn >= frames {
            break;
        }
        let y = TOP + row * layout.cell + layout.cell.min(12) - 1;
        let _ = writeln!(svg, r#"<text x="{}" y="{y}">{pfn}</text>"#, LEFT - 6);
    }
    let _ = writeln!(svg, "</g>");
}

/// The label of a zone: its name, pfn range and size.
fn zone_label(span: &ZoneSpan) -> String {
    format!(
        "{}: pfn {} ({} frames)",
        span.name,
        pfn_range(span.first, span.last),
        span.last - span.first + 1
    )
}

/// Writes each zone's boundary (a staircase line before its first cell) and its label, right of
/// the grid, on the row where the zone starts (pushed down when labels would overlap).
fn write_zones(svg: &mut String, layout: &Layout, spans: &[ZoneSpan], labels: &[String]) {
    let _ = writeln!(svg, r#"<g class="zones">"#);
    let right = LEFT + layout.grid_width();
    let mut next_label_y = 0;
    for (span, label) in spans.iter().zip(labels) {
        let index = span.first / layout.frames_per_cell;
        let (x, y) = layout.position(index);
        let below = y + layout.cell;
        let path = if x == LEFT {
            format!("M {LEFT} {y} H {right}")
        } else {
            format!("M {LEFT} {below} H {x} V {y} H {right}")
        };
        let _ = writeln!(
            svg,
            r#"<path class="zone-boundary" d="{path}"><title>zone {}</title></path>"#,
            escape(span.name)
        );
        let label_y = (y + 12).max(next_label_y);
        next_label_y = label_y + 16;
        let _ = writeln!(
            svg,
            r#"<text class="zone-label" x="{}" y="{label_y}">{}</text>"#,
            right + LABEL_GAP,
            escape(label),
        );
    }
    let _ = writeln!(svg, "</g>");
}

/// Writes the legend: one swatch per state, the free shades by order, and the cell scale.
fn write_legend(svg: &mut String, layout: &Layout, top: usize) {
    let _ = writeln!(svg, r#"<g class="legend">"#);
    let scale = if layout.frames_per_cell == 1 {
        "1 cell = 1 frame (4 KiB)".to_owned()
    } else {
        format!(
            "1 cell = {} frames ({} KiB); a cell shows the state of most of its frames",
            layout.frames_per_cell,
            layout.frames_per_cell * 4
        )
    };
    let _ = writeln!(
        svg,
        r#"<text class="legend-scale" x="{LEFT}" y="{top}">{scale}</text>"#
    );
    let states = [
        (Kind::Hole, "hole"),
        (Kind::Reserved, "reserved"),
        (Kind::PerCpu, "per-CPU list"),
        (Kind::Allocated, "allocated"),
    ];
    let swatch_y = top + 16;
    for (slot, (kind, label)) in states.iter().enumerate() {
        let x = LEFT + slot * 130;
        let _ = writeln!(
            svg,
            r##"<rect class="swatch {}" x="{x}" y="{swatch_y}" width="14" height="14" stroke="#999999"/><text class="legend-item" x="{}" y="{}">{label}</text>"##,
            kind.class(),
            x + 20,
            swatch_y + 12,
        );
    }
    let free_y = swatch_y + 30;
    let _ = writeln!(
        svg,
        r#"<text class="legend-item" x="{LEFT}" y="{}">free, by order:</text>"#,
        free_y + 12
    );
    for order in 0..FREE_SHADES.len() {
        let x = LEFT + 130 + order * 36;
        let _ = writeln!(
            svg,
            r#"<rect class="swatch free{order}" x="{x}" y="{free_y}" width="14" height="14"/><text class="legend-item" x="{}" y="{}">{order}</text>"#,
            x + 17,
            free_y + 12,
        );
    }
    let _ = writeln!(
        svg,
        r#"<text class="legend-item" x="{LEFT}" y="{}">red lines: zone boundaries</text>"#,
        free_y + 40
    );
    let _ = writeln!(svg, "</g>");
}

#[cfg(test)]
mod tests;
