//! `kmm-sim replay TRACE[.gz]`: replays a recorded malloc trace through kmalloc and, with
//! `--compare system`, `--compare talc` or both (`--compare system,talc`, or `--compare`
//! given twice), through those allocators in the same process.
//!
//! The trace is parsed and checked completely first ([`trace`]), then each heap runs the same
//! events through the timed loop of [`engine`], behind the [`heap::ReplayHeap`] seam:
//! [`kmm::kmm_heap`] builds the kmalloc side, and [`system::SystemHeap`] and
//! [`talc::TalcHeap`] are the baselines.
//! Standard output gets one line per result, which tests rely on:
//!
//! ```text
//! trace: <name> events=<n> allocs=<n> frees=<n> reallocs=<n> peak_live_bytes=<n> peak_live_objects=<n> live_at_end=<n>
//! kmm: ops=<n> time=<s.sss>s ns_per_op=<x.x>
//! kmm-memory: peak_pages=<n> slab_waste_bytes=<n> failed=<n> [(<why>)] pages_at_peak_live=<n> overhead=<x.xx>
//! system: ops=<n> time=<s.sss>s ns_per_op=<x.x>
//! ratio: system/kmm=<x.xx>
//! talc: ops=<n> time=<s.sss>s ns_per_op=<x.x>
//! ratio: talc/kmm=<x.xx>
//! ```
//!
//! Each baseline asked for prints its timing line and then its ratio line (its time per event
//! over kmm's), in the order the baselines were first named; a baseline named twice runs once.
//! Without `--compare` only the first three lines print.
//! The talc baseline allocates from one arena taken from the system allocator before its clock
//! starts: 4 bytes per byte of the trace's peak of live bytes, 64 bytes per object of its peak
//! of live objects, plus 64 MiB ([`talc::arena_bytes`]).
//! Before its clock starts, the kmm machine's memory and the talc arena are made resident
//! ([`heap::ReplayHeap::make_resident`]), as a kernel's RAM and an embedded heap's arena are,
//! so that neither times the host's first-touch page faults; `--lazy-memory` leaves them to be
//! faulted in during the replay. The system allocator takes memory from the host as it grows
//! and pays its faults either way.
//!
//! `slab_waste_bytes`, `pages_at_peak_live` and `overhead` (bytes of the pages held per byte
//! the program had live in the heap) are sampled right after the event where the trace's live bytes peak; `peak_pages` is the most
//! pages the kmm side held; `failed` counts the requests kmalloc refused, with the reason in
//! parentheses (`(above KMALLOC_MAX_SIZE 4 MiB)`); those IDs hold no memory until they die.
//! Values a heap cannot report print as `n/a`.

pub(crate) mod engine;
pub(crate) mod global;
pub(crate) mod heap;
pub(crate) mod kmm;
pub(crate) mod system;
pub(crate) mod talc;
pub(crate) mod trace;

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::replay::engine::{ReplayOptions, ReplayReport, replay};
use crate::replay::heap::ReplayHeap;
use crate::replay::system::SystemHeap;
use crate::replay::talc::TalcHeap;
use crate::replay::trace::{Trace, TraceError};
use crate::script::parse_size;

/// Traces with more events than this get a progress bar.
const PROGRESS_MIN_EVENTS: u64 = 100_000;

/// The arguments of `kmm-sim replay`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub(crate) struct ReplayArgs {
    /// The trace: lines `a ID SIZE [ALIGN]`, `f ID`, `r OLDID NEWID SIZE`, plain or gzipped.
    pub(crate) trace: PathBuf,
    /// Also replay the trace through these allocators and print each one's time ratio to kmm
    /// (repeat the option or separate them with commas: `--compare system,talc`).
    #[arg(long, value_enum, value_name = "ALLOCATOR", value_delimiter = ',')]
    pub(crate) compare: Vec<Baseline>,
    /// Memory of the simulated machine kmalloc runs on (K, M, G suffixes).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub(crate) mem: u64,
    /// Leave the kmm machine's memory and the talc arena to be faulted in by first touch during
    /// the timed replay. By default both are made resident before the clock starts, as a
    /// kernel's RAM and an embedded heap's arena are (so all of `--mem` is taken from the host
    /// up front: use this option for a machine larger than the host can hold); the system
    /// allocator always takes its memory from the host as it grows.
    #[arg(long)]
    pub(crate) lazy_memory: bool,
    /// Show no progress bar (it only shows on a terminal anyway).
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

/// The allocators `--compare` can measure kmalloc against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Baseline {
    /// The C library's `malloc`, through Rust's `std::alloc::System`.
    System,
    /// The `talc` crate's allocator over an arena sized for the trace.
    Talc,
}

impl Baseline {
    /// The baselines `compare` names, in the order first named, each once.
    fn unique(compare: &[Baseline]) -> Vec<Baseline> {
        let mut unique = Vec::with_capacity(compare.len());
        for &baseline in compare {
            if !unique.contains(&baseline) {
                unique.push(baseline);
            }
        }
        unique
    }
}

/// How the heaps are built and whether progress shows: the real ones in `run`, stand-ins in
/// tests.
pub(crate) struct Setup<'a> {
    /// Builds the kmm side over a machine of the given bytes.
    pub(crate) kmm_heap: &'a dyn Fn(u64) -> Result<Box<dyn ReplayHeap>, String>,
    /// Whether progress bars may show.
    pub(crate) progress: bool,
    /// How often the replay samples and checks the heap.
    pub(crate) options: ReplayOptions,
}

/// Runs `kmm-sim replay`, printing results to `out` and errors to `err`; false if it failed.
pub(crate) fn run(args: &ReplayArgs, out: &mut dyn Write, err: &mut dyn Write) -> bool {
    let setup = Setup {
        kmm_heap: &kmm::kmm_heap,
        progress: !args.quiet && io::stderr().is_terminal(),
        options: ReplayOptions {
            // Debug builds (and so the test suite) check the heap's invariants as they go.
            check_every: if cfg!(debug_assertions) { 1 << 16 } else { 0 },
            ..ReplayOptions::default()
        },
    };
    run_with(args, &setup, out, err)
}

/// Runs `kmm-sim replay` with the heaps of `setup`.
pub(crate) fn run_with(
    args: &ReplayArgs,
    setup: &Setup<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> bool {
    match replay_all(args, setup, out) {
        Ok(()) => true,
        Err(message) => {
            let _ = out.flush();
            let _ = writeln!(err, "error: {message}");
            false
        }
    }
}

/// Loads the trace, replays it through each heap and prints the lines; the message of the
/// first failure otherwise.
fn replay_all(args: &ReplayArgs, setup: &Setup<'_>, out: &mut dyn Write) -> Result<(), String> {
    let trace = Trace::load(&args.trace).map_err(|error| match error {
        TraceError::Open { .. } => error.to_string(),
        _ => format!("{}: {error}", args.trace.display()),
    })?;
    print(out, &trace_line(&trace))?;

    // The kmm machine is dropped before the baselines run, so that its memory is not in the way.
    let kmm = {
        let mut heap = (setup.kmm_heap)(args.mem)?;
        run_one(&mut *heap, &trace, args, setup)?
    };
    print(out, &timing_line("kmm", &kmm))?;
    print(out, &memory_line(&kmm))?;

    // Each baseline's heap is dropped before the next one runs, the talc arena included.
    for baseline in Baseline::unique(&args.compare) {
        let (report, hint) = match baseline {
            Baseline::System => (
                run_one(&mut SystemHeap::new(), &trace, args, setup)?,
                "the system allocator is out of memory".to_owned(),
            ),
            Baseline::Talc => {
                let mut heap = TalcHeap::for_trace(trace.stats())?;
                let hint = format!(
                    "the talc arena of {} bytes is too small for this trace",
                    heap.arena_size()
                );
                (run_one(&mut heap, &trace, args, setup)?, hint)
            }
        };
        print(out, &timing_line(&report.heap, &report))?;
        print(out, &ratio_line(&report, &kmm))?;
        refused(&report, &hint)?;
    }
    refused(&kmm, "a larger --mem may help")
}

/// Replays `trace` through `heap` with a progress bar when it is long, its memory made
/// resident first unless `args` say `--lazy-memory`.
fn run_one<H: ReplayHeap + ?Sized>(
    heap: &mut H,
    trace: &Trace,
    args: &ReplayArgs,
    setup: &Setup<'_>,
) -> Result<ReplayReport, String> {
    if !args.lazy_memory {
        heap.make_resident()?;
    }
    let events = trace.stats().events;
    let bar = if setup.progress && events > PROGRESS_MIN_EVENTS {
        let style = ProgressStyle::with_template("{msg:>6} [{bar:40}] {pos}/{len} events ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        ProgressBar::with_draw_target(Some(events), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(heap.name().to_owned())
    } else {
        ProgressBar::hidden()
    };
    let report = replay(heap, trace, &setup.options, &mut |done| {
        bar.set_position(done)
    });
    bar.finish_and_clear();
    report.map_err(|error| error.to_string())
}

/// Fails if a heap refused requests for any reason other than their size: the replay then did
/// not run the program's work; `hint` ends the message.
fn refused(report: &ReplayReport, hint: &str) -> Result<(), String> {
    let failures = &report.failures;
    let unexpected = failures.total() - failures.too_large;
    if unexpected == 0 {
        return Ok(());
    }
    Err(format!(
        "{}: {unexpected} requests failed ({}); {hint}",
        report.heap,
        failures.reasons().unwrap_or_default()
    ))
}

/// Writes one line and flushes, so that results show before the next replay starts.
fn print(out: &mut dyn Write, line: &str) -> Result<(), String> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|error| format!("cannot write the results: {error}"))
}

/// The `trace:` line.
fn trace_line(trace: &Trace) -> String {
    let stats = trace.stats();
    format!(
        "trace: {} events={} allocs={} frees={} reallocs={} peak_live_bytes={} \
         peak_live_objects={} live_at_end={}",
        trace.name(),
        stats.events,
        stats.allocs,
        stats.frees,
        stats.reallocs,
        stats.peak_live_bytes,
        stats.peak_live_objects,
        stats.live_objects,
    )
}

/// The `kmm:`, `system:` or `talc:` timing line.
fn timing_line(label: &str, report: &ReplayReport) -> String {
    format!(
        "{label}: ops={} time={:.3}s ns_per_op={:.1}",
        report.ops,
        report.elapsed.as_secs_f64(),
        report.ns_per_op()
    )
}

/// The `kmm-memory:` line.
fn memory_line(report: &ReplayReport) -> String {
    let na = || "n/a".to_owned();
    let at_peak = report.at_peak_live;
    let overhead = at_peak
        .filter(|_| report.held_at_peak_live > 0)
        .map_or_else(na, |footprint| {
            let held = footprint.pages_held * footprint.page_size;
            format!("{:.2}", held as f64 / report.held_at_peak_live as f64)
        });
    let mut line = format!(
        "kmm-memory: peak_pages={} slab_waste_bytes={} failed={}",
        report.peak_pages.map_or_else(na, |pages| pages.to_string()),
        at_peak.map_or_else(na, |footprint| footprint.slab_waste_bytes.to_string()),
        report.failures.total(),
    );
    if let Some(reasons) = report.failures.reasons() {
        line.push_str(&format!(" ({reasons})"));
    }
    line.push_str(&format!(
        " pages_at_peak_live={} overhead={overhead}",
        at_peak.map_or_else(na, |footprint| footprint.pages_held.to_string()),
    ));
    line
}

/// The `ratio:` line: how many times longer the baseline took than kmm.
fn ratio_line(baseline: &ReplayReport, kmm: &ReplayReport) -> String {
    let ratio = if kmm.ns_per_op() > 0.0 {
        format!("{:.2}", baseline.ns_per_op() / kmm.ns_per_op())
    } else {
        "n/a".to_owned()
    };
    format!("ratio: {}/kmm={ratio}", baseline.heap)
}

#[cfg(test)]
mod tests;
