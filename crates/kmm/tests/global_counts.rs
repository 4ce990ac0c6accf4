//! `GlobalKmalloc`'s counts: a thread counts its fast-path allocations in a
//! thread-local and adds them to its machine on a slow path and when it
//! exits, so the totals are exact for the calling thread and for every
//! thread that has exited (allocations made while it exits included),
//! whether it held its CPU alone or shared it, and two allocators used by
//! one thread keep their counts apart.

#![cfg(feature = "std")]
#![expect(unsafe_code, reason = "the allocator is driven through `GlobalAlloc`")]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::RefCell;
use std::thread;

use kmm::GlobalKmalloc;

/// `n` allocations of sizes 1 to 300 bytes, each written, checked and freed.
fn churn(heap: &GlobalKmalloc, n: usize, seed: u8) {
    for i in 0..n {
        let layout = Layout::from_size_align(1 + i % 300, 8).unwrap();
        // SAFETY: a non-zero size; the block is used within its size and
        // freed once with its layout.
        unsafe {
            let p = heap.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(seed, layout.size());
            assert_eq!(p.add(layout.size() - 1).read(), seed);
            heap.dealloc(p, layout);
        }
    }
}

#[test]
fn threads_add_every_allocation_by_the_time_they_exit() {
    // Three CPUs: the first threads hold CPUs 1 and 2 alone, the others
    // share a CPU (CPU 0, or one given back by a thread that exited).
    let heap: &'static GlobalKmalloc = Box::leak(Box::new(GlobalKmalloc::new(64 << 20, 3)));
    churn(heap, 10, 0x11);
    // The calling thread's own allocations count at once.
    assert_eq!(heap.stats().kmallocs, 10);
    let threads: Vec<_> = (0..5u8)
        .map(|t| {
            thread::spawn(move || {
                churn(heap, 3000, t);
                heap.this_cpu().unwrap()
            })
        })
        .collect();
    let cpus: Vec<(usize, bool)> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    // Some thread held its CPU alone and some shared one, so both paths ran.
    assert!(cpus.iter().any(|&(_, alone)| alone), "{cpus:?}");
    assert!(cpus.iter().any(|&(_, alone)| !alone), "{cpus:?}");
    let stats = heap.stats();
    assert_eq!(stats.kmallocs, 10 + 5 * 3000, "{stats:?}");
    assert_eq!((stats.fallbacks, stats.errors), (0, 0), "{stats:?}");
}

#[test]
fn one_thread_on_two_allocators_counts_each_apart() {
    let a = GlobalKmalloc::new(32 << 20, 2);
    let b = GlobalKmalloc::new(32 << 20, 2);
    churn(&a, 500, 1);
    churn(&b, 700, 2);
    churn(&a, 300, 3);
    churn(&b, 1, 4);
    assert_eq!(a.stats().kmallocs, 800);
    assert_eq!(b.stats().kmallocs, 701);
    // Each allocator's blocks are its own.
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: a non-zero size; freed once with its layout, by its allocator.
    unsafe {
        let p = a.alloc(layout);
        assert!(a.owns(p) && !b.owns(p));
        a.dealloc(p, layout);
    }
    assert_eq!(a.stats().errors + b.stats().errors, 0);
}

/// Allocates from its allocator when dropped: at thread exit, after the
/// thread's CPU bindings (registered later) are gone.
struct AllocAtExit(&'static GlobalKmalloc);

impl Drop for AllocAtExit {
    fn drop(&mut self) {
        churn(self.0, 5, 9);
    }
}

std::thread_local! {
    static AT_EXIT: RefCell<Option<AllocAtExit>> = const { RefCell::new(None) };
}

#[test]
fn allocations_in_a_thread_exit_count_too() {
    let heap: &'static GlobalKmalloc = Box::leak(Box::new(GlobalKmalloc::new(32 << 20, 2)));
    thread::spawn(move || {
        // Registered before the thread's bindings, so dropped after them.
        AT_EXIT.with(|a| *a.borrow_mut() = Some(AllocAtExit(heap)));
        churn(heap, 100, 1);
    })
    .join()
    .unwrap();
    let stats = heap.stats();
    assert_eq!(stats.kmallocs, 105, "{stats:?}");
    assert_eq!((stats.fallbacks, stats.errors), (0, 0), "{stats:?}");
}
