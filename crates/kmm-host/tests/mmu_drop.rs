//! Dropping a `HostMmu` gives its whole window back to the host. This is a
//! test binary with a single test, so no other test maps memory into the
//! freed range while it reads `/proc/self/maps`.

use std::sync::Arc;

use kmm_host::{HostError, HostMemory, HostMmu};
use kmm_page::{Mmu, PAGE_SIZE, Pfn, PfnRange, Prot, VirtAddr};

/// The number of lines of `/proc/self/maps` that overlap `[start, end)`.
fn mappings_in(start: usize, end: usize) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|line| {
            let range = line.split_whitespace().next().unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let lo = usize::from_str_radix(lo, 16).unwrap();
            let hi = usize::from_str_radix(hi, 16).unwrap();
            lo < end && start < hi
        })
        .count()
}

#[test]
fn drop_gives_the_window_back_and_sizes_are_checked() {
    let mem = Arc::new(HostMemory::new(&[PfnRange::new(0, 16)], Pfn(8)).unwrap());
    let mmu = HostMmu::new(Arc::clone(&mem)).unwrap();
    let (start, end) = mmu.window();
    assert_eq!(end.0 - start.0, HostMmu::DEFAULT_WINDOW_SIZE);
    // A run, a scattered page, and a highmem page split the reservation.
    mmu.map_range(start, Pfn(2), 4, Prot::KERNEL).unwrap();
    mmu.map(VirtAddr(start.0 + 9 * PAGE_SIZE), Pfn(12), Prot::READ)
        .unwrap();
    assert_eq!(mappings_in(start.0, end.0), 4);
    drop(mmu);
    assert_eq!(mappings_in(start.0, end.0), 0);
    // A partial page rounds up; an empty window is refused.
    let small = HostMmu::with_window_size(Arc::clone(&mem), PAGE_SIZE + 1).unwrap();
    let (s, e) = small.window();
    assert_eq!(e.0 - s.0, 2 * PAGE_SIZE);
    assert!(matches!(
        HostMmu::with_window_size(mem, 0),
        Err(HostError::Io { op: "mmap", .. })
    ));
}
