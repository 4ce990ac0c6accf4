//! Tests of `kmm-sim replay` end to end, with stand-in heaps for the kmm side: the output
//! lines, the errors, and every published trace replayed with its bytes checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::heap::doubles::PagedHeap;
use super::*;

/// The published traces, `traces/` beside the workspace; `None`, with a note, when that
/// directory is not there.
pub(crate) fn shared_traces() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/traces"
    ));
    if dir.is_dir() {
        Some(dir.to_owned())
    } else {
        println!(
            "note: {} does not exist; the published traces are not checked",
            dir.display()
        );
        None
    }
}

/// The published trace `file` in `dir`, read once per test run.
pub(crate) fn published_trace(dir: &Path, file: &str) -> &'static Trace {
    static TRACES: Mutex<BTreeMap<String, &'static Trace>> = Mutex::new(BTreeMap::new());
    let mut traces = TRACES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    traces.entry(file.to_owned()).or_insert_with(|| {
        let trace = Trace::load(&dir.join(file)).unwrap_or_else(|error| panic!("{file}: {error}"));
        Box::leak(Box::new(trace))
    })
}

/// The published trace files.
const PUBLISHED: [&str; 3] = [
    "py-compileall.trace.gz",
    "gcc-cc1.trace.gz",
    "sqlite3.trace.gz",
];

/// A trace file of its own, removed afterwards.
struct TempTrace(PathBuf);

impl TempTrace {
    /// A file named `name` holding `text`.
    fn new(name: &str, text: &str) -> TempTrace {
        let path =
            std::env::temp_dir().join(format!("kmm-sim-replay-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempTrace(path)
    }
}

impl Drop for TempTrace {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A kmm side that is a [`PagedHeap`].
fn paged(_mem: u64) -> Result<Box<dyn ReplayHeap>, String> {
    Ok(Box::new(PagedHeap::new()))
}

/// A kmm side that is a [`PagedHeap`] with one page per 4 KiB of `mem`.
fn paged_with_budget(mem: u64) -> Result<Box<dyn ReplayHeap>, String> {
    let mut heap = PagedHeap::new();
    heap.page_budget = mem / 4096;
    Ok(Box::new(heap))
}

/// What one run printed.
#[derive(Debug)]
struct Printed {
    /// Whether it succeeded.
    ok: bool,
    /// Standard output, by line.
    out: Vec<String>,
    /// Standard error.
    err: String,
}

/// Runs `replay` on `path` with `compare`, the kmm side built by `kmm_heap`.
fn run(
    path: &Path,
    compare: &[Baseline],
    mem: u64,
    kmm_heap: &dyn Fn(u64) -> Result<Box<dyn ReplayHeap>, String>,
) -> Printed {
    let args = ReplayArgs {
        trace: path.to_owned(),
        compare: compare.to_vec(),
        mem,
        lazy_memory: false,
        quiet: true,
    };
    run_args(&args, kmm_heap)
}

/// Runs `replay` with `args`, the kmm side built by `kmm_heap`.
fn run_args(
    args: &ReplayArgs,
    kmm_heap: &dyn Fn(u64) -> Result<Box<dyn ReplayHeap>, String>,
) -> Printed {
    let setup = Setup {
        kmm_heap,
        progress: false,
        options: ReplayOptions {
            check_every: 1000,
            ..ReplayOptions::default()
        },
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ok = run_with(args, &setup, &mut out, &mut err);
    Printed {
        ok,
        out: String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
        err: String::from_utf8(err).unwrap(),
    }
}

/// The `key=value` fields of a line after its `label: ` prefix, which must be there.
fn fields(line: &str, label: &str) -> BTreeMap<String, String> {
    let rest = line
        .strip_prefix(&format!("{label}: "))
        .unwrap_or_else(|| panic!("{line:?} does not start with {label}:"));
    rest.split(' ')
        .filter_map(|field| field.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// Checks a timing line: `ops` as given, a time with 3 decimals and `s`, ns per op with 1.
fn check_timing(line: &str, label: &str, ops: u64) {
    let fields = fields(line, label);
    assert_eq!(
        fields.keys().collect::<Vec<_>>(),
        ["ns_per_op", "ops", "time"]
    );
    assert_eq!(fields["ops"], ops.to_string());
    let time = fields["time"].strip_suffix('s').unwrap();
    assert_eq!(time.split_once('.').unwrap().1.len(), 3, "{line}");
    time.parse::<f64>().unwrap();
    let ns = &fields["ns_per_op"];
    assert_eq!(ns.split_once('.').unwrap().1.len(), 1, "{line}");
    ns.parse::<f64>().unwrap();
}

/// A small trace: peak 8300 bytes and 3 objects, one object of 8000 bytes left live.
const SMALL: &str = "a 0 100\na 1 200\na 2 8000\nf 0\nr 1 0 50\nf 0\n";

#[test]
fn replay_prints_the_trace_and_kmm_lines() {
    let file = TempTrace::new("small.trace", SMALL);
    let printed = run(&file.0, &[], 256 << 20, &paged);
    assert!(printed.ok, "{printed:?}");
    assert_eq!(printed.err, "");
    let name = file.0.file_name().unwrap().to_str().unwrap();
    assert_eq!(printed.out.len(), 3, "{printed:?}");
    assert_eq!(
        printed.out[0],
        format!(
            "trace: {name} events=6 allocs=3 frees=2 reallocs=1 peak_live_bytes=8300 \
             peak_live_objects=3 live_at_end=1"
        )
    );
    check_timing(&printed.out[1], "kmm", 6);
    // At the byte peak (after event 3) the three objects take 1 + 1 + 2 pages.
    assert_eq!(
        printed.out[2],
        format!(
            "kmm-memory: peak_pages=4 slab_waste_bytes={} failed=0 pages_at_peak_live=4 \
             overhead=1.97",
            4 * 4096 - 8300
        )
    );
}

#[test]
fn compare_system_adds_the_system_and_ratio_lines() {
    let file = TempTrace::new("compare.trace", SMALL);
    let printed = run(&file.0, &[Baseline::System], 256 << 20, &paged);
    assert!(printed.ok, "{printed:?}");
    assert_eq!(printed.out.len(), 5, "{printed:?}");
    check_timing(&printed.out[3], "system", 6);
    let ratio = fields(&printed.out[4], "ratio");
    assert_eq!(ratio.keys().collect::<Vec<_>>(), ["system/kmm"]);
    let value = &ratio["system/kmm"];
    assert_eq!(value.split_once('.').unwrap().1.len(), 2, "{value}");
    assert!(value.parse::<f64>().unwrap() > 0.0);
}

/// Checks a ratio line: `ratio: <baseline>/kmm=<x.xx>` with a positive value.
fn check_ratio(line: &str, baseline: &str) {
    let ratio = fields(line, "ratio");
    let key = format!("{baseline}/kmm");
    assert_eq!(ratio.keys().collect::<Vec<_>>(), [&key], "{line}");
    let value = &ratio[&key];
    assert_eq!(value.split_once('.').unwrap().1.len(), 2, "{line}");
    assert!(value.parse::<f64>().unwrap() > 0.0, "{line}");
}

#[test]
fn compare_talc_adds_the_talc_and_ratio_lines() {
    let file = TempTrace::new("compare-talc.trace", SMALL);
    let printed = run(&file.0, &[Baseline::Talc], 256 << 20, &paged);
    assert!(printed.ok, "{printed:?}");
    assert_eq!(printed.err, "");
    assert_eq!(printed.out.len(), 5, "{printed:?}");
    check_timing(&printed.out[1], "kmm", 6);
    check_timing(&printed.out[3], "talc", 6);
    check_ratio(&printed.out[4], "talc");
}

#[test]
fn each_baseline_prints_its_lines_in_the_order_named_and_runs_once() {
    let file = TempTrace::new("compare-both.trace", SMALL);
    for (compare, order) in [
        (&[Baseline::System, Baseline::Talc][..], ["system", "talc"]),
        (
            &[Baseline::Talc, Baseline::System, Baseline::Talc][..],
            ["talc", "system"],
        ),
    ] {
        let printed = run(&file.0, compare, 256 << 20, &paged);
        assert!(printed.ok, "{printed:?}");
        assert_eq!(printed.out.len(), 7, "{printed:?}");
        for (index, baseline) in order.into_iter().enumerate() {
            check_timing(&printed.out[3 + 2 * index], baseline, 6);
            check_ratio(&printed.out[4 + 2 * index], baseline);
        }
    }
}

#[test]
fn compare_takes_a_list_or_repeats_and_refuses_unknown_allocators() {
    use clap::Parser;

    use crate::cli::{Cli, Mode};

    let compare = |args: &[&str]| -> Result<Vec<Baseline>, clap::error::ErrorKind> {
        let args = ["kmm-sim", "replay", "t.gz"].iter().chain(args);
        match Cli::try_parse_from(args)
            .map_err(|error| error.kind())?
            .mode
        {
            Some(Mode::Replay(replay)) => Ok(replay.compare),
            mode => panic!("not a replay: {mode:?}"),
        }
    };
    let both = vec![Baseline::System, Baseline::Talc];
    assert_eq!(compare(&[]), Ok(vec![]));
    assert_eq!(compare(&["--compare", "talc"]), Ok(vec![Baseline::Talc]));
    assert_eq!(compare(&["--compare", "system,talc"]), Ok(both.clone()));
    assert_eq!(
        compare(&["--compare", "system", "--compare", "talc"]),
        Ok(both)
    );
    assert_eq!(
        compare(&["--compare=talc,system"]),
        Ok(vec![Baseline::Talc, Baseline::System])
    );
    assert_eq!(
        compare(&["--compare", "system,glibc"]),
        Err(clap::error::ErrorKind::InvalidValue)
    );
}

#[test]
fn a_heap_that_cannot_report_its_memory_prints_na() {
    let file = TempTrace::new("na.trace", SMALL);
    let system = |_| Ok(Box::new(SystemHeap::new()) as Box<dyn ReplayHeap>);
    let printed = run(&file.0, &[], 256 << 20, &system);
    assert!(printed.ok, "{printed:?}");
    assert_eq!(
        printed.out[2],
        "kmm-memory: peak_pages=n/a slab_waste_bytes=n/a failed=0 pages_at_peak_live=n/a \
         overhead=n/a"
    );
}

#[test]
fn the_kmalloc_heap_replays_and_reports_its_memory() {
    let file = TempTrace::new("kmalloc.trace", SMALL);
    let printed = run(&file.0, &[Baseline::System], 256 << 20, &kmm::kmm_heap);
    assert!(printed.ok, "{printed:?}");
    assert_eq!(printed.err, "");
    assert_eq!(printed.out.len(), 5, "{printed:?}");
    assert!(printed.out[0].starts_with("trace: "), "{printed:?}");
    assert!(
        printed.out[1].starts_with("kmm: ops=6 time="),
        "{printed:?}"
    );
    let memory = &printed.out[2];
    let value = |key: &str| -> u64 {
        memory
            .split_whitespace()
            .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{key} in {memory}"))
            .parse()
            .unwrap()
    };
    assert!(memory.starts_with("kmm-memory: peak_pages="), "{memory}");
    assert_eq!(value("failed"), 0);
    // At the peak of live bytes (100 + 200 + 8000) every object sits in a slab cache, so the
    // waste is the slab pages held then minus the bytes requested.
    let at_peak = value("pages_at_peak_live");
    assert!(
        at_peak >= 3,
        "kmalloc-128, kmalloc-256 and kmalloc-8k slabs: {memory}"
    );
    assert_eq!(value("slab_waste_bytes"), at_peak * 4096 - 8300);
    assert!(value("peak_pages") >= at_peak);
    assert!(printed.out[3].starts_with("system: ops=6 "), "{printed:?}");
    assert!(
        printed.out[4].starts_with("ratio: system/kmm="),
        "{printed:?}"
    );
}

#[test]
fn the_kmalloc_heap_counts_requests_above_kmalloc_max_size_as_failed() {
    let file = TempTrace::new(
        "kmalloc-large.trace",
        "a 0 5000000
a 1 20000
r 1 2 4194305
",
    );
    let printed = run(&file.0, &[], 256 << 20, &kmm::kmm_heap);
    assert!(printed.ok, "{printed:?}");
    assert!(
        printed.out[2].contains(" failed=2 (above KMALLOC_MAX_SIZE 4 MiB) "),
        "{printed:?}"
    );
}

#[test]
fn requests_above_the_limit_are_reported_but_not_fatal() {
    let file = TempTrace::new("large.trace", "a 0 5000000\nr 0 1 4194305\na 0 4194304\n");
    let printed = run(&file.0, &[], 256 << 20, &paged);
    assert!(printed.ok, "{printed:?}");
    assert_eq!(
        printed.out[2],
        format!(
            "kmm-memory: peak_pages=1024 slab_waste_bytes=0 failed=2 (above KMALLOC_MAX_SIZE \
             4 MiB) pages_at_peak_live=1024 overhead=1.00"
        )
    );
}

#[test]
fn running_out_of_memory_fails_the_replay_after_its_lines() {
    let file = TempTrace::new("oom.trace", "a 0 4096\na 1 4096\na 2 1\n");
    let printed = run(&file.0, &[], 8192, &paged_with_budget);
    assert!(!printed.ok);
    assert_eq!(printed.out.len(), 3, "{printed:?}");
    assert!(
        printed.out[2].contains(" failed=1 (out of memory) "),
        "{printed:?}"
    );
    assert_eq!(
        printed.err,
        "error: paged: 1 requests failed (out of memory); a larger --mem may help\n"
    );
}

#[test]
fn unreadable_and_malformed_traces_are_errors() {
    let missing = Path::new("/nonexistent/kmm-sim/missing.trace");
    let printed = run(missing, &[], 256 << 20, &paged);
    assert!(!printed.ok);
    assert!(printed.out.is_empty());
    assert!(
        printed
            .err
            .starts_with("error: cannot read /nonexistent/kmm-sim/missing.trace: "),
        "{printed:?}"
    );
    let file = TempTrace::new("bad.trace", "a 0 1\nf 0\nf 0\n");
    let printed = run(&file.0, &[], 256 << 20, &paged);
    assert!(!printed.ok);
    assert!(printed.out.is_empty());
    assert_eq!(
        printed.err,
        format!(
            "error: {}: line 3: free of id 0, which is not live\n",
            file.0.display()
        )
    );
}

#[test]
fn corruption_in_the_kmm_heap_fails_the_replay() {
    use super::heap::doubles::{Fault, FaultyHeap};
    let file = TempTrace::new("corrupt.trace", "a 0 17\na 1 17\nf 0\n");
    let faulty = |_| Ok(Box::new(FaultyHeap::new(Fault::Overlap)) as Box<dyn ReplayHeap>);
    let printed = run(&file.0, &[], 256 << 20, &faulty);
    assert!(!printed.ok);
    assert_eq!(printed.out.len(), 1);
    assert_eq!(
        printed.err,
        "error: faulty: line 3: id 0 is corrupted: byte 16 of 17 is 0x02, expected 0xfe\n"
    );
}

#[test]
fn every_published_trace_replays_cleanly() {
    let Some(dir) = shared_traces() else {
        return;
    };
    for file in PUBLISHED {
        let trace = published_trace(&dir, file);
        let stats = trace.stats();
        let options = ReplayOptions {
            check_every: 1 << 16,
            ..ReplayOptions::default()
        };

        // The system allocator serves every request; what it held is what the trace says.
        let system = replay(&mut SystemHeap::new(), trace, &options, &mut |_| {}).unwrap();
        assert_eq!(system.ops, stats.events, "{file}");
        assert_eq!(system.failures.total(), 0, "{file}");
        assert_eq!(system.peak_live_bytes, stats.peak_live_bytes, "{file}");
        assert_eq!(
            (system.live_at_end_objects, system.live_at_end_bytes),
            (stats.live_objects, stats.live_bytes),
            "{file}"
        );

        // So does talc, over its arena; the replay checked that every chunk came back.
        let mut talc = TalcHeap::for_trace(stats).unwrap();
        let talc = replay(&mut talc, trace, &options, &mut |_| {}).unwrap();
        assert_eq!(talc.failures.total(), 0, "{file}");
        assert_eq!(talc.peak_live_bytes, stats.peak_live_bytes, "{file}");

        // A kmalloc look-alike refuses exactly the requests above 4 MiB, frees everything
        // that is left, and ends empty.
        let mut paged = PagedHeap::new();
        paged.track_peak = true;
        let kmm = replay(&mut paged, trace, &options, &mut |_| {}).unwrap();
        assert_eq!(
            kmm.failures.too_large, stats.requests_above_kmalloc_max,
            "{file}"
        );
        assert_eq!(kmm.failures.total(), kmm.failures.too_large, "{file}");
        let at_peak = kmm.at_peak_live.unwrap();
        assert!(at_peak.pages_held * 4096 >= kmm.peak_live_bytes.min(stats.peak_live_bytes));
        assert!(kmm.peak_pages.unwrap() >= at_peak.pages_held);
        assert_eq!(paged.checks.get(), stats.events / (1 << 16) + 1, "{file}");
        println!(
            "{file}: system {:.1} ns/op, talc {:.1} ns/op, paged stand-in {:.1} ns/op, {} refused",
            system.ns_per_op(),
            talc.ns_per_op(),
            kmm.ns_per_op(),
            kmm.failures.total()
        );
    }
}

#[test]
fn each_heap_is_made_resident_before_its_clock_starts_unless_lazy() {
    // A kmm side whose memory cannot be made resident: the default run asks, fails before
    // replaying anything, and says why; `--lazy-memory` never asks.
    fn unpopulatable(_mem: u64) -> Result<Box<dyn ReplayHeap>, String> {
        let mut heap = PagedHeap::new();
        heap.refuse_resident = true;
        Ok(Box::new(heap))
    }
    let file = TempTrace::new("resident.trace", SMALL);
    let mut args = ReplayArgs {
        trace: file.0.clone(),
        compare: vec![Baseline::System, Baseline::Talc],
        mem: 256 << 20,
        lazy_memory: false,
        quiet: true,
    };
    let printed = run_args(&args, &unpopulatable);
    assert!(!printed.ok, "{printed:?}");
    assert_eq!(printed.out.len(), 1, "only the trace line: {printed:?}");
    assert_eq!(
        printed.err,
        "error: the stand-in heap's memory cannot be made resident\n"
    );
    args.lazy_memory = true;
    let printed = run_args(&args, &unpopulatable);
    assert!(printed.ok, "{printed:?}");
    assert_eq!(printed.out.len(), 7, "{printed:?}");
    // The real heaps make their memory resident and replay the same.
    args.lazy_memory = false;
    let printed = run_args(&args, &kmm::kmm_heap);
    assert!(printed.ok, "{printed:?}");
    assert_eq!(printed.out.len(), 7, "{printed:?}");
}
