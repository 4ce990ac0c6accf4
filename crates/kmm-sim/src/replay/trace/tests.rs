//! Unit tests of the trace reader: each event kind, malformed lines and ID-rule violations with
//! their line numbers, gzip detection, and the published traces against their README table.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::*;

/// Reads a whole trace from `text`.
fn read(text: &str) -> Result<Trace, TraceError> {
    Trace::read("test", text.as_bytes())
}

/// Reads `text`, expecting success.
fn events(text: &str) -> Vec<Event> {
    match read(text) {
        Ok(trace) => trace.events().to_vec(),
        Err(error) => panic!("{text:?} failed: {error}"),
    }
}

/// Reads `text`, expecting a malformed line `line`; returns the reason.
fn malformed(text: &str, line: u64) -> Malformed {
    match read(text) {
        Err(TraceError::Malformed { line: at, kind }) if at == line => kind,
        other => panic!("{text:?}: expected a malformed line {line}, got {other:?}"),
    }
}

/// Reads `text`, expecting a rule violation on line `line`; returns it.
fn violation(text: &str, line: u64) -> RuleViolation {
    match read(text) {
        Err(TraceError::Rule { line: at, kind }) if at == line => kind,
        other => panic!("{text:?}: expected a rule violation on line {line}, got {other:?}"),
    }
}

/// A file of its own under the temporary directory, removed afterwards.
struct TempFile(PathBuf);

impl TempFile {
    /// A file named `name` holding `bytes`.
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("kmm-sim-trace-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `text` gzip-compressed.
fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn each_event_kind_parses() {
    assert_eq!(
        events("a 0 100\na 1 0\na 2 64 4096\nr 0 3 200\nf 1\n"),
        [
            Event::Alloc {
                id: 0,
                size: 100,
                align: Align::MALLOC
            },
            Event::Alloc {
                id: 1,
                size: 0,
                align: Align::MALLOC
            },
            Event::Alloc {
                id: 2,
                size: 64,
                align: Align::explicit(4096).unwrap()
            },
            Event::Realloc {
                old: 0,
                new: 3,
                size: 200
            },
            Event::Free { id: 1 },
        ]
    );
    assert_eq!(events(""), []);
}

#[test]
fn events_are_compact() {
    // A replay walks millions of them: three words at most.
    assert!(size_of::<Event>() <= 24, "{}", size_of::<Event>());
}

#[test]
fn events_print_as_their_trace_lines() {
    let text = "a 0 100\na 1 0\na 2 64 32\nr 0 3 200\nf 1\n";
    let printed: String = events(text)
        .iter()
        .map(|event| format!("{event}\n"))
        .collect();
    assert_eq!(printed, text);
}

#[test]
fn alignments_are_powers_of_two_above_16() {
    assert_eq!(Align::MALLOC.bytes(), 16);
    assert!(!Align::MALLOC.is_explicit());
    assert_eq!(Align::explicit(32).map(Align::bytes), Some(32));
    assert!(Align::explicit(1 << 21).unwrap().is_explicit());
    for bad in [0, 1, 8, 16, 48, 100] {
        assert_eq!(Align::explicit(bad), None, "{bad}");
    }
    assert_eq!(malformed("a 0 8 16\n", 1), Malformed::BadAlign(16));
    assert_eq!(malformed("a 0 8 24\n", 1), Malformed::BadAlign(24));
}

#[test]
fn counts_follow_the_live_objects() {
    let trace = read("a 0 100\na 1 50\nr 0 2 300\nf 1\na 1 10\na 3 5000000\nf 3\n").unwrap();
    let stats = trace.stats();
    assert_eq!(
        *stats,
        TraceStats {
            events: 7,
            allocs: 4,
            frees: 2,
            reallocs: 1,
            max_id: Some(3),
            live_objects: 2,
            live_bytes: 310,
            peak_live_bytes: 5_000_310,
            peak_live_objects: 3,
            peak_live_bytes_event: 5,
            slab_sized_requests: 4,
            requests_above_kmalloc_max: 1,
        }
    );
    assert_eq!(stats.id_slots(), 4);
    assert_eq!(trace.name(), "test");
}

#[test]
fn a_realloc_briefly_holds_both_objects() {
    // The tracer names the new object while the old one is live: 2 objects at once.
    let stats = read("a 0 10\nr 0 1 20\n").unwrap().stats().clone();
    assert_eq!(stats.peak_live_objects, 2);
    assert_eq!((stats.live_objects, stats.live_bytes), (1, 20));
    assert_eq!(stats.peak_live_bytes, 20);
    assert_eq!(stats.peak_live_bytes_event, 1);
}

#[test]
fn malformed_lines_are_reported_with_their_line_number() {
    let ok = "a 0 1\n";
    let cases: &[(&str, Malformed)] = &[
        ("\n", Malformed::EmptyLine),
        ("x 1\n", Malformed::UnknownEvent("x".to_owned())),
        ("alloc 1 2\n", Malformed::UnknownEvent("alloc".to_owned())),
        ("a\n", Malformed::MissingField("ID")),
        ("a 1\n", Malformed::MissingField("SIZE")),
        ("f\n", Malformed::MissingField("ID")),
        ("r 0 1\n", Malformed::MissingField("SIZE")),
        ("a  1 2\n", Malformed::EmptyField("ID")),
        ("a 1 2 \n", Malformed::EmptyField("ALIGN")),
        ("f 0 \n", Malformed::TrailingText(String::new())),
        ("a 1 2 32 7\n", Malformed::TrailingText("7".to_owned())),
        ("f 0 0\n", Malformed::TrailingText("0".to_owned())),
        (
            "a 1 -2\n",
            Malformed::BadNumber {
                field: "SIZE",
                text: "-2".to_owned(),
            },
        ),
        (
            "a 1 007\n",
            Malformed::BadNumber {
                field: "SIZE",
                text: "007".to_owned(),
            },
        ),
        (
            "a 1 2\r\n",
            Malformed::BadNumber {
                field: "SIZE",
                text: "2\r".to_owned(),
            },
        ),
        (
            "a 1 99999999999999999999\n",
            Malformed::TooLarge {
                field: "SIZE",
                text: "99999999999999999999".to_owned(),
            },
        ),
        (
            "f 4294967296\n",
            Malformed::TooLarge {
                field: "ID",
                text: "4294967296".to_owned(),
            },
        ),
        ("r 0 1 0\n", Malformed::ZeroRealloc),
        ("a 1 2", Malformed::Unterminated),
    ];
    for (line, expected) in cases {
        // Each bad line comes second, after a good one, so its number is 2.
        assert_eq!(malformed(&format!("{ok}{line}"), 2), *expected, "{line:?}");
    }
}

#[test]
fn error_messages_name_the_line_and_the_field() {
    let error = read("a 0 1\na 1 1\nf 1\nf x\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 4: ID 'x' is not an unsigned decimal number without leading zeros"
    );
    let long = "9".repeat(60);
    let error = read(&format!("a 0 {long}\n")).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("line 1: SIZE '{}…' is too large", "9".repeat(40))
    );
}

#[test]
fn id_rules_are_checked() {
    assert_eq!(violation("f 0\n", 1), RuleViolation::FreeOfDeadId(0));
    assert_eq!(
        violation("a 0 1\nf 0\nf 0\n", 3),
        RuleViolation::FreeOfDeadId(0)
    );
    assert_eq!(
        violation("a 0 1\nr 1 2 5\n", 2),
        RuleViolation::ReallocOfDeadId(1)
    );
    assert_eq!(
        violation("a 0 1\na 0 2\n", 2),
        RuleViolation::AllocOfLiveId(0)
    );
    assert_eq!(
        violation("a 0 1\na 1 1\nr 0 1 8\n", 3),
        RuleViolation::ReallocToLiveId(1)
    );
    assert_eq!(
        violation("a 0 1\nr 0 0 8\n", 2),
        RuleViolation::ReallocToLiveId(0)
    );
    // The old ID of a realloc is dead afterwards, its new one live.
    assert_eq!(
        violation("a 0 1\nr 0 1 8\nf 0\n", 3),
        RuleViolation::FreeOfDeadId(0)
    );
    assert_eq!(
        violation("a 0 1\nr 0 1 8\na 1 4\n", 3),
        RuleViolation::AllocOfLiveId(1)
    );
    // Dead IDs may be reused, by `a` and by `r`.
    assert_eq!(events("a 0 1\nf 0\na 0 2\nr 0 1 3\na 0 4\n").len(), 5);
}

#[test]
fn ids_stay_within_what_a_dense_trace_can_reach() {
    assert_eq!(
        violation("a 1 1\n", 1),
        RuleViolation::IdOutOfRange { id: 1, limit: 0 }
    );
    assert_eq!(
        violation("a 0 1\nr 0 4000000000 2\n", 2),
        RuleViolation::IdOutOfRange {
            id: 4_000_000_000,
            limit: 1
        }
    );
    // Gaps are fine as long as no line names an ID above its own index.
    assert_eq!(events("a 0 1\nf 0\na 0 1\nf 0\na 4 1\n").len(), 5);
    assert_eq!(
        violation("a 0 1\nf 0\na 0 1\nf 0\na 5 1\n", 5),
        RuleViolation::IdOutOfRange { id: 5, limit: 4 }
    );
}

#[test]
fn live_bytes_stay_within_64_bits() {
    let half = 1u64 << 63;
    assert_eq!(
        read(&format!("a 0 {half}\na 1 {}\n", half - 1))
            .unwrap()
            .stats()
            .live_bytes,
        u64::MAX
    );
    assert_eq!(
        violation(&format!("a 0 {half}\na 1 {half}\n"), 2),
        RuleViolation::LiveBytesOverflow
    );
    assert_eq!(
        violation(&format!("a 0 {half}\na 1 1\nr 1 2 {half}\n"), 3),
        RuleViolation::LiveBytesOverflow
    );
}

#[test]
fn the_reader_stops_at_the_first_error_with_counts_up_to_it() {
    let mut reader = TraceReader::new("a 0 10\nf 0\nf 0\na 0 5\n".as_bytes());
    assert!(matches!(reader.next(), Some(Ok(Event::Alloc { .. }))));
    assert!(matches!(reader.next(), Some(Ok(Event::Free { id: 0 }))));
    assert!(matches!(
        reader.next(),
        Some(Err(TraceError::Rule {
            line: 3,
            kind: RuleViolation::FreeOfDeadId(0)
        }))
    ));
    assert!(reader.next().is_none());
    let stats = reader.stats();
    assert_eq!((stats.events, stats.allocs, stats.frees), (2, 1, 1));
    assert_eq!((stats.live_objects, stats.live_bytes), (0, 0));
}

#[test]
fn a_refused_line_changes_no_counts() {
    let mut reader = TraceReader::new("a 0 10\na 0 20\n".as_bytes());
    assert!(reader.next().unwrap().is_ok());
    let before = reader.stats().clone();
    assert!(reader.next().unwrap().is_err());
    assert_eq!(*reader.stats(), before);
}

#[test]
fn files_are_gunzipped_by_name_or_by_magic() {
    let text = "a 0 100\na 1 7 64\nf 0\n";
    let expected = events(text);
    let plain = TempFile::new("plain.trace", text.as_bytes());
    let named = TempFile::new("named.trace.gz", &gzip(text));
    let magic = TempFile::new("magic.trace", &gzip(text));
    for file in [&plain, &named, &magic] {
        let trace = Trace::load(&file.0).unwrap();
        assert_eq!(trace.events(), expected.as_slice(), "{}", file.0.display());
        assert_eq!(trace.stats().live_bytes, 7);
    }
    assert!(
        Trace::load(&magic.0)
            .unwrap()
            .name()
            .ends_with("magic.trace")
    );
}

#[test]
fn a_gz_name_without_gzip_inside_is_a_read_error() {
    let file = TempFile::new("fake.trace.gz", b"a 0 1\n");
    assert!(matches!(
        Trace::load(&file.0),
        Err(TraceError::Read { line: 1, .. })
    ));
}

#[test]
fn a_truncated_gzip_file_is_an_error() {
    let text: String = (0..2000).map(|id| format!("a {id} {id}\n")).collect();
    let mut bytes = gzip(&text);
    bytes.truncate(bytes.len() / 2);
    let file = TempFile::new("cut.trace.gz", &bytes);
    match Trace::load(&file.0) {
        Err(TraceError::Read { .. } | TraceError::Malformed { .. }) => {}
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_missing_file_names_its_path() {
    let path = Path::new("/nonexistent/kmm-sim/none.trace.gz");
    let error = Trace::load(path).unwrap_err();
    assert!(matches!(error, TraceError::Open { .. }));
    assert!(
        error
            .to_string()
            .starts_with("cannot read /nonexistent/kmm-sim/none.trace.gz: "),
        "{error}"
    );
}

/// The row of a published trace in `traces/README.md`.
struct Published {
    /// The file.
    file: &'static str,
    /// Events.
    events: u64,
    /// Peak live bytes, in MiB with one decimal as the table prints it.
    peak_mib: &'static str,
    /// Peak live objects.
    peak_objects: u64,
    /// The largest ID.
    max_id: u32,
    /// Requests of at most 8 KiB, in percent as the table prints it.
    small_percent: &'static str,
    /// Requests above 4 MiB.
    above_4_mib: u64,
    /// Objects live at the end.
    live_objects: u64,
    /// Their bytes.
    live_bytes: u64,
}

/// The table of `traces/README.md`.
const PUBLISHED: [Published; 3] = [
    Published {
        file: "py-compileall.trace.gz",
        events: 718_014,
        peak_mib: "12.0",
        peak_objects: 85_087,
        max_id: 85_086,
        small_percent: "99.5",
        above_4_mib: 0,
        live_objects: 559,
        live_bytes: 83_244,
    },
    Published {
        file: "gcc-cc1.trace.gz",
        events: 476_534,
        peak_mib: "3.5",
        peak_objects: 6_146,
        max_id: 6_145,
        small_percent: "99.6",
        above_4_mib: 0,
        live_objects: 5_713,
        live_bytes: 2_538_639,
    },
    Published {
        file: "sqlite3.trace.gz",
        events: 2_451_341,
        peak_mib: "32.5",
        peak_objects: 8_049,
        max_id: 8_048,
        small_percent: "99.75",
        above_4_mib: 2,
        live_objects: 16,
        live_bytes: 13_033,
    },
];

#[test]
fn the_published_traces_match_their_readme() {
    let Some(dir) = crate::replay::tests::shared_traces() else {
        return;
    };
    for published in &PUBLISHED {
        let trace = crate::replay::tests::published_trace(&dir, published.file);
        let stats = trace.stats();
        let file = published.file;
        assert_eq!(stats.events, published.events, "{file}");
        assert_eq!(trace.events().len() as u64, published.events, "{file}");
        assert_eq!(stats.allocs + stats.frees + stats.reallocs, stats.events);
        assert_eq!(
            format!("{:.1}", stats.peak_live_bytes as f64 / f64::from(1 << 20)),
            published.peak_mib,
            "{file}"
        );
        assert_eq!(stats.peak_live_objects, published.peak_objects, "{file}");
        assert_eq!(stats.max_id, Some(published.max_id), "{file}");
        let requests = stats.allocs + stats.reallocs;
        let decimals = published.small_percent.len() - 3;
        assert_eq!(
            format!(
                "{:.*}",
                decimals,
                stats.slab_sized_requests as f64 * 100.0 / requests as f64
            ),
            published.small_percent,
            "{file}"
        );
        assert_eq!(
            stats.requests_above_kmalloc_max, published.above_4_mib,
            "{file}"
        );
        assert_eq!(
            (stats.live_objects, stats.live_bytes),
            (published.live_objects, published.live_bytes),
            "{file}"
        );
    }
}
