//! Unit tests of the kmalloc replay heap: alignment, the size limit, the footprint and the
//! check that every frame is back.

use super::*;

/// A heap on a 64 MiB machine.
fn heap() -> KmmHeap {
    KmmHeap::new(64 << 20).unwrap()
}

#[test]
fn alignments_above_the_default_are_honoured() {
    let mut heap = heap();
    let mut handles = Vec::new();
    for (size, align) in [
        (40, 32),
        (90, 32),
        (130, 64),
        (100, 128),
        (5000, 4096),
        (3, 8192),
    ] {
        let handle = heap.alloc(size, align).unwrap();
        assert!(
            handle.as_ptr().as_ptr().addr().is_multiple_of(align),
            "{size} bytes aligned to {align}"
        );
        handles.push((handle, size, align));
    }
    for (handle, size, align) in handles {
        // SAFETY: each handle is live, from this heap, with this size and alignment.
        unsafe { heap.free(handle, size, align) }.unwrap();
    }
    heap.verify_empty().unwrap();
}

#[test]
fn requests_above_kmalloc_max_size_are_too_large_and_change_nothing() {
    let mut heap = heap();
    let before = heap.footprint();
    let error = heap.alloc(KMALLOC_MAX_SIZE + 1, 16).unwrap_err();
    assert_eq!(
        error,
        HeapError::TooLarge {
            size: KMALLOC_MAX_SIZE + 1,
            limit: KMALLOC_MAX_SIZE,
            limit_name: "KMALLOC_MAX_SIZE",
        }
    );
    assert_eq!(heap.footprint(), before);
    let big = heap.alloc(KMALLOC_MAX_SIZE, 16).unwrap();
    assert_eq!(heap.footprint().unwrap().pages_held, 1024);
    // SAFETY: `big` is live with these size and alignment.
    let error = unsafe { heap.realloc(big, KMALLOC_MAX_SIZE, 16, KMALLOC_MAX_SIZE + 1) };
    assert!(matches!(error, Err(HeapError::TooLarge { .. })));
    // SAFETY: a refused realloc leaves `big` live.
    unsafe { heap.free(big, KMALLOC_MAX_SIZE, 16) }.unwrap();
    heap.verify_empty().unwrap();
}

#[test]
fn the_footprint_counts_slab_pages_and_the_waste_in_them() {
    let mut heap = heap();
    let handle = heap.alloc(100, 16).unwrap();
    let footprint = heap.footprint().unwrap();
    let slab = heap.mm.slab().unwrap();
    assert_eq!(footprint.pages_held, slab.slab_pages() as u64);
    assert!(footprint.pages_held >= 1);
    assert_eq!(
        footprint.slab_waste_bytes,
        footprint.pages_held * PAGE_SIZE as u64 - 100
    );
    // SAFETY: `handle` is live, 100 bytes.
    let moved = unsafe { heap.realloc(handle, 100, 16, 20000) }.unwrap();
    // A large kmalloc, and a small request whose alignment makes it one, hold no slab bytes;
    // 8 KiB is the largest request a slab cache serves.
    let aligned = heap.alloc(100, 16384).unwrap();
    let top = heap.alloc(8192, 16).unwrap();
    let slab_bytes = heap.mm.slab().unwrap().slab_pages() as u64 * PAGE_SIZE as u64;
    assert_eq!(
        heap.footprint().unwrap().slab_waste_bytes,
        slab_bytes - 8192
    );
    // SAFETY: each is live with the size and alignment it was allocated with.
    unsafe {
        heap.free(moved, 20000, 16).unwrap();
        heap.free(aligned, 100, 16384).unwrap();
        heap.free(top, 8192, 16).unwrap();
    }
    assert_eq!((heap.requested, heap.large_requested), (0, 0));
    heap.verify_empty().unwrap();
}

#[test]
fn verify_empty_finds_an_object_still_held() {
    let mut heap = heap();
    let handle = heap.alloc(64, 16).unwrap();
    let error = heap.verify_empty().unwrap_err();
    assert!(error.contains("still holds 1 slab pages"), "{error}");
    // SAFETY: `handle` is live, 64 bytes.
    unsafe { heap.free(handle, 64, 16) }.unwrap();
    heap.verify_empty().unwrap();
}

#[test]
fn the_published_traces_replay_through_kmalloc_and_give_every_frame_back() {
    use std::path::Path;

    use crate::replay::engine::{ReplayOptions, replay};
    use crate::replay::trace::Trace;

    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/traces"
    ));
    if !dir.is_dir() {
        println!(
            "note: {} does not exist; the published traces are not replayed",
            dir.display()
        );
        return;
    }
    // Requests above 4 MiB: `traces/README.md`. The whole traces replay in well under a
    // second each in the test profile, so no prefix is needed.
    for (file, above_limit) in [
        ("gcc-cc1.trace.gz", 0),
        ("py-compileall.trace.gz", 0),
        ("sqlite3.trace.gz", 2),
    ] {
        let trace = Trace::load(&dir.join(file)).unwrap();
        let mut heap = KmmHeap::new(256 << 20).unwrap();
        let options = ReplayOptions {
            // The slab allocator's and the page allocator's invariants, every 16384 events.
            check_every: 1 << 14,
            ..ReplayOptions::default()
        };
        let report = replay(&mut heap, &trace, &options, &mut |_| {}).unwrap();
        assert_eq!(report.ops, trace.stats().events, "{file}");
        assert_eq!(report.failures.too_large, above_limit, "{file}");
        assert_eq!(report.failures.total(), above_limit, "{file}");
        // The replay freed what the program left live and ran `verify_empty`; look again.
        let slab = heap.mm.slab().unwrap();
        assert_eq!(
            (slab.slab_pages(), slab.large_kmalloc_pages()),
            (0, 0),
            "{file}"
        );
        assert_eq!(
            heap.mm.summary().allocated_pages,
            heap.boot_allocated,
            "{file}"
        );
        assert_eq!((heap.requested, heap.large_requested), (0, 0), "{file}");
        heap.mm.check_invariants().unwrap();
    }
}

#[test]
fn the_replaying_thread_holds_its_cpu_alone() {
    let mut heap = heap();
    assert!(
        heap._cpu
            .as_ref()
            .is_some_and(|b| b.is_exclusive() && b.cpu() == 1)
    );
    let handles: Vec<_> = (0..2000)
        .map(|i| heap.alloc(8 + i % 500, 8).unwrap())
        .collect();
    // Invariant checks close the CPU slots from the owner itself, through the fence.
    heap.check_invariants().unwrap();
    for (i, h) in handles.into_iter().enumerate() {
        // SAFETY: each handle is live, from this heap, with this size and alignment.
        unsafe { heap.free(h, 8 + i % 500, 8) }.unwrap();
    }
    heap.verify_empty().unwrap();
}
