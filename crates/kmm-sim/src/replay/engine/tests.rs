//! Unit tests of the replay loop on synthetic traces: counts and peaks, refused requests,
//! footprint samples, periodic checks, progress, and the faults that stop a replay.

use super::*;
use crate::replay::heap::doubles::{Fault, FaultyHeap, PAGE, PagedHeap};
use crate::replay::system::SystemHeap;

/// A checked trace from literal lines.
fn trace(text: &str) -> Trace {
    Trace::read("test", text.as_bytes()).unwrap()
}

/// Replays `text` through `heap` with `options`, ignoring progress.
fn run<H: ReplayHeap + ?Sized>(
    heap: &mut H,
    text: &str,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    replay(heap, &trace(text), options, &mut |_| {})
}

/// A trace of every kind of event: zero-size and aligned objects, reallocs that grow and
/// shrink, IDs reused, and two objects left live.
const MIXED: &str = "\
a 0 100
a 1 0
a 2 64 4096
r 0 3 5000
r 3 0 7
f 1
a 1 1
r 2 4 100000
f 0
a 0 33
";

#[test]
fn a_system_replay_counts_events_peaks_and_leftovers() {
    let report = run(&mut SystemHeap::new(), MIXED, &ReplayOptions::default()).unwrap();
    let stats = trace(MIXED).stats().clone();
    assert_eq!(report.heap, "system");
    assert_eq!(report.ops, 10);
    assert_eq!(report.peak_live_bytes, 100_034);
    assert_eq!(report.peak_live_bytes, stats.peak_live_bytes);
    // After each event: at most 3 objects (the trace's count also sees the realloc's moment
    // with both objects, 4).
    assert_eq!(report.peak_live_objects, 3);
    assert_eq!(stats.peak_live_objects, 4);
    assert_eq!(report.live_at_end_objects, 3);
    assert_eq!(report.live_at_end_bytes, 100_034);
    assert_eq!(
        (report.live_at_end_objects, report.live_at_end_bytes),
        (stats.live_objects, stats.live_bytes)
    );
    assert_eq!(report.failures, Failures::default());
    assert_eq!(report.failures.reasons(), None);
    assert_eq!(
        (report.at_peak_live, report.peak_pages, report.at_end),
        (None, None, None)
    );
    assert_eq!(report.samples, 0);
    assert!(report.ns_per_op() > 0.0);
}

#[test]
fn an_empty_trace_replays_to_nothing() {
    let report = run(&mut PagedHeap::new(), "", &ReplayOptions::default()).unwrap();
    assert_eq!((report.ops, report.peak_live_bytes), (0, 0));
    assert_eq!(report.ns_per_op(), 0.0);
    assert_eq!(report.at_peak_live, None);
    assert_eq!(report.peak_pages, Some(0));
}

#[test]
fn the_footprint_is_sampled_where_live_bytes_peak() {
    // Four 1-byte objects take 4 pages; the 8000-byte object that makes the byte peak takes 2.
    let text = "a 0 1\na 1 1\na 2 1\na 3 1\nf 0\nf 1\nf 2\nf 3\na 0 8000\nf 0\na 0 9\n";
    assert_eq!(trace(text).stats().peak_live_bytes_event, 8);
    let only_peak = ReplayOptions {
        sample_every: 0,
        ..ReplayOptions::default()
    };
    let report = run(&mut PagedHeap::new(), text, &only_peak).unwrap();
    let at_peak = report.at_peak_live.unwrap();
    assert_eq!(at_peak.pages_held, 2);
    assert_eq!(at_peak.slab_waste_bytes, 2 * PAGE - 8000);
    assert_eq!(at_peak.page_size, PAGE);
    assert_eq!(report.at_end.unwrap().pages_held, 1);
    assert_eq!(report.samples, 1);
    // Sampled only at the byte peak and at the end, the page peak is missed ...
    assert_eq!(report.peak_pages, Some(2));
    // ... unless the heap counts its own peak, or every event is sampled.
    let mut counting = PagedHeap::new();
    counting.track_peak = true;
    assert_eq!(
        run(&mut counting, text, &only_peak).unwrap().peak_pages,
        Some(4)
    );
    let every = ReplayOptions {
        sample_every: 1,
        ..ReplayOptions::default()
    };
    let report = run(&mut PagedHeap::new(), text, &every).unwrap();
    assert_eq!(report.peak_pages, Some(4));
    assert_eq!(report.samples, 11);
}

#[test]
fn refused_requests_are_counted_and_the_replay_goes_on() {
    let mut heap = PagedHeap::new();
    heap.max_size = 1000;
    let text = "a 0 2000\nf 0\na 0 10\nr 0 1 5000\nf 1\na 0 0\na 1 1000\n";
    let report = run(&mut heap, text, &ReplayOptions::default()).unwrap();
    assert_eq!(
        report.failures,
        Failures {
            too_large: 2,
            limit: Some(("KMALLOC_MAX_SIZE", 1000)),
            ..Failures::default()
        }
    );
    assert_eq!(report.failures.total(), 2);
    assert_eq!(
        report.failures.reasons().as_deref(),
        Some("above KMALLOC_MAX_SIZE 1000 bytes")
    );
    // What the heap held: never the refused objects.
    assert_eq!(report.peak_live_bytes, 1000);
    assert_eq!(
        (report.live_at_end_objects, report.live_at_end_bytes),
        (2, 1000)
    );
}

#[test]
fn failure_reasons_read_well() {
    let mut failures = Failures::default();
    failures.record(HeapError::TooLarge {
        size: 5 << 20,
        limit: 4 << 20,
        limit_name: "KMALLOC_MAX_SIZE",
    });
    assert_eq!(
        failures.reasons().as_deref(),
        Some("above KMALLOC_MAX_SIZE 4 MiB")
    );
    failures.record(HeapError::OutOfMemory { size: 10 });
    failures.record(HeapError::OutOfMemory { size: 10 });
    failures.record(HeapError::Other("no slab".to_owned()));
    failures.record(HeapError::Other("ignored".to_owned()));
    assert_eq!(failures.total(), 5);
    assert_eq!(
        failures.reasons().as_deref(),
        Some("1 above KMALLOC_MAX_SIZE 4 MiB, 2 out of memory, 2 no slab")
    );
}

#[test]
fn running_out_of_memory_is_a_failure_of_its_own() {
    let mut heap = PagedHeap::new();
    heap.page_budget = 2;
    let report = run(
        &mut heap,
        "a 0 1\na 1 5000\na 2 1\n",
        &ReplayOptions::default(),
    )
    .unwrap();
    assert_eq!(report.failures.out_of_memory, 1);
    assert_eq!(report.failures.reasons().as_deref(), Some("out of memory"));
    assert_eq!(report.live_at_end_objects, 2);
}

#[test]
fn corruption_stops_the_replay_at_its_line() {
    let error = run(
        &mut FaultyHeap::new(Fault::Overlap),
        "a 0 17\na 1 17\nf 0\n",
        &ReplayOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(error, ReplayError::Object { line: 3, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "faulty: line 3: id 0 is corrupted: byte 16 of 17 is 0x02, expected 0xfe"
    );
    let error = run(
        &mut FaultyHeap::new(Fault::ReallocLosesBytes),
        "a 0 1\na 1 10\nr 1 2 20\n",
        &ReplayOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(error, ReplayError::Object { line: 3, .. }),
        "{error:?}"
    );
}

#[test]
fn objects_left_live_are_checked_as_they_are_freed() {
    let error = run(
        &mut FaultyHeap::new(Fault::Overlap),
        "a 0 17\na 1 17\n",
        &ReplayOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            ReplayError::Cleanup {
                error: ObjectError::Corrupted { id: 0, .. },
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_failing_free_and_a_heap_that_keeps_memory_are_errors() {
    let error = run(
        &mut FaultyHeap::new(Fault::FreeFails),
        "a 0 8\nf 0\n",
        &ReplayOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "faulty: line 2: the heap failed to free id 0: free went wrong"
    );
    let error = run(
        &mut FaultyHeap::new(Fault::NotEmpty),
        "a 0 8\n",
        &ReplayOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "faulty: after freeing every object: 1 page still held"
    );
}

#[test]
fn checks_and_progress_come_at_their_intervals() {
    let text = "a 0 1\nf 0\n".repeat(5);
    let options = ReplayOptions {
        sample_every: 0,
        check_every: 3,
        progress_every: 4,
    };
    let mut heap = PagedHeap::new();
    let mut seen = Vec::new();
    let report = replay(&mut heap, &trace(&text), &options, &mut |done| {
        seen.push(done)
    })
    .unwrap();
    assert_eq!(report.ops, 10);
    assert_eq!(seen, [4, 8, 10]);
    // After events 3, 6 and 9, and once at the end.
    assert_eq!(heap.checks.get(), 4);
}
