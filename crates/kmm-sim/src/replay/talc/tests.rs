//! Unit tests of the talc heap: layouts, the arena's size, zero-size requests, alignment,
//! realloc, running out of arena, and the check that every chunk came back.

use super::*;
use crate::replay::engine::{ReplayOptions, replay};
use crate::replay::trace::Trace;

/// The layout talc is asked for.
fn layout(size: usize, align: usize) -> Result<Layout, HeapError> {
    crate::replay::global::request_layout(size, align, MALLOC_ALIGN)
}

/// A heap with a 1 MiB arena.
fn heap() -> TalcHeap {
    TalcHeap::new(1 << 20).unwrap()
}

#[test]
fn the_default_alignment_is_mallocs_and_zero_sizes_take_a_byte() {
    assert_eq!(
        layout(100, 8).unwrap(),
        Layout::from_size_align(100, 16).unwrap()
    );
    assert_eq!(layout(100, MALLOC_ALIGN).unwrap().align(), 16);
    assert_eq!(layout(100, 4096).unwrap().align(), 4096);
    assert_eq!(layout(0, MALLOC_ALIGN).unwrap().size(), 1);
    assert!(matches!(
        layout(usize::MAX - 8, MALLOC_ALIGN),
        Err(HeapError::TooLarge {
            limit_name: "isize::MAX",
            ..
        })
    ));
}

#[test]
fn the_arena_is_four_times_the_peak_plus_room_per_object_and_64_mib() {
    let stats = TraceStats {
        peak_live_bytes: 10 << 20,
        peak_live_objects: 1000,
        ..TraceStats::default()
    };
    assert_eq!(arena_bytes(&stats), (40 << 20) + 64_000 + (64 << 20));
    assert_eq!(arena_bytes(&TraceStats::default()), 64 << 20);
    let huge = TraceStats {
        peak_live_bytes: u64::MAX / 2,
        ..TraceStats::default()
    };
    assert_eq!(arena_bytes(&huge), u64::MAX);
    let error = TalcHeap::new(u64::MAX).unwrap_err();
    assert!(error.starts_with("cannot take a "), "{error}");
    // Arenas are whole pages.
    assert_eq!(TalcHeap::new(5000).unwrap().arena_size(), 8192);
}

#[test]
fn objects_are_distinct_aligned_and_keep_their_bytes_through_realloc() {
    let mut heap = heap();
    let zero = heap.alloc(0, MALLOC_ALIGN).unwrap();
    let other_zero = heap.alloc(0, MALLOC_ALIGN).unwrap();
    assert_ne!(zero, other_zero);
    let aligned = heap.alloc(100, 4096).unwrap();
    assert_eq!(aligned.as_ptr().as_ptr().addr() % 4096, 0);
    let small = heap.alloc(3, MALLOC_ALIGN).unwrap();
    assert_eq!(small.as_ptr().as_ptr().addr() % MALLOC_ALIGN, 0);
    // SAFETY: `small` is a live 3-byte object.
    unsafe { small.as_ptr().as_ptr().copy_from([7u8, 8, 9].as_ptr(), 3) };
    // SAFETY: `small` is live, allocated with 3 bytes and the default alignment.
    let grown = unsafe { heap.realloc(small, 3, MALLOC_ALIGN, 100_000) }.unwrap();
    let mut kept = [0u8; 3];
    // SAFETY: `grown` is live with 100000 bytes, the first 3 kept from `small`.
    unsafe { grown.as_ptr().as_ptr().copy_to(kept.as_mut_ptr(), 3) };
    assert_eq!(kept, [7, 8, 9]);
    let error = heap.verify_empty().unwrap_err();
    assert!(
        error.starts_with("talc still has chunks allocated"),
        "{error}"
    );
    // SAFETY: each handle is live, freed once with the size and alignment it was allocated with.
    unsafe {
        heap.free(grown, 100_000, MALLOC_ALIGN).unwrap();
        heap.free(aligned, 100, 4096).unwrap();
        heap.free(zero, 0, MALLOC_ALIGN).unwrap();
        heap.free(other_zero, 0, MALLOC_ALIGN).unwrap();
    }
    heap.verify_empty().unwrap();
    assert_eq!(heap.footprint(), None);
    assert_eq!(heap.name(), "talc");
}

#[test]
fn a_full_arena_refuses_as_out_of_memory_and_keeps_the_old_object() {
    let mut heap = heap();
    assert_eq!(
        heap.alloc(2 << 20, MALLOC_ALIGN),
        Err(HeapError::OutOfMemory { size: 2 << 20 })
    );
    let object = heap.alloc(10, MALLOC_ALIGN).unwrap();
    // SAFETY: `object` is a live 10-byte object.
    unsafe { object.as_ptr().as_ptr().write(42) };
    // SAFETY: `object` is live, 10 bytes with the default alignment.
    let refused = unsafe { heap.realloc(object, 10, MALLOC_ALIGN, 2 << 20) };
    assert_eq!(refused, Err(HeapError::OutOfMemory { size: 2 << 20 }));
    // SAFETY: a refused realloc leaves `object` live and unchanged.
    assert_eq!(unsafe { object.as_ptr().as_ptr().read() }, 42);
    // SAFETY: `object` is still live with its size and alignment.
    unsafe { heap.free(object, 10, MALLOC_ALIGN) }.unwrap();
    heap.verify_empty().unwrap();
}

#[test]
fn a_small_trace_replays_through_talc_and_everything_is_freed() {
    // Reallocs that grow in place and move, an aligned object, a zero-size one, and objects
    // left live at the end for the replay to free.
    let text = "a 0 100\na 1 0\na 2 64 4096\nr 0 3 200\na 0 5000\nr 3 4 70000\nf 1\n\
                a 1 24\nr 1 5 8\nf 2\na 2 300 64\n";
    let trace = Trace::read("small.trace", text.as_bytes()).unwrap();
    let mut heap = TalcHeap::for_trace(trace.stats()).unwrap();
    let report = replay(&mut heap, &trace, &ReplayOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(report.heap, "talc");
    assert_eq!(report.ops, 11);
    assert_eq!(report.failures.total(), 0);
    assert_eq!(report.peak_live_bytes, trace.stats().peak_live_bytes);
    assert_eq!(
        (report.live_at_end_objects, report.live_at_end_bytes),
        (4, 5000 + 70000 + 8 + 300)
    );
    // `replay` ran `verify_empty` after freeing the four; look again.
    heap.verify_empty().unwrap();
    assert_eq!(report.at_peak_live, None);
}

#[test]
fn the_published_traces_replay_through_talc_and_give_every_chunk_back() {
    use crate::replay::tests::{published_trace, shared_traces};

    let Some(dir) = shared_traces() else {
        return;
    };
    for file in [
        "gcc-cc1.trace.gz",
        "py-compileall.trace.gz",
        "sqlite3.trace.gz",
    ] {
        let trace = published_trace(&dir, file);
        let mut heap = TalcHeap::for_trace(trace.stats()).unwrap();
        let report = replay(&mut heap, trace, &ReplayOptions::default(), &mut |_| {}).unwrap();
        // talc serves every request, the two above 4 MiB of sqlite3 too.
        assert_eq!(report.ops, trace.stats().events, "{file}");
        assert_eq!(report.failures.total(), 0, "{file}");
        assert_eq!(
            report.peak_live_bytes,
            trace.stats().peak_live_bytes,
            "{file}"
        );
        heap.verify_empty().unwrap();
    }
}
