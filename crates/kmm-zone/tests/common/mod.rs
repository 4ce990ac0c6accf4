//! Test doubles shared by the API tests: memory backed by a heap buffer and
//! a CPU context whose current CPU is per thread.

use core::alloc::Layout;
use core::cell::Cell;
use core::ptr::NonNull;
use std::alloc::{alloc_zeroed, dealloc};
use std::sync::Arc;

use kmm_page::{NoMemory, PAGE_SIZE, Pfn, PhysMemory};
use kmm_percpu::CpuContext;
use kmm_zone::{MachineLayout, ZonedAllocator, ZonedConfig};

/// Frames `[0, pages)` backed by one zeroed, page-aligned heap buffer; frames
/// at or above `lowmem_end` are highmem (no direct-map address).
#[derive(Debug)]
pub(crate) struct VecMemory {
    base: NonNull<u8>,
    pages: usize,
    lowmem_end: usize,
}

impl VecMemory {
    pub(crate) fn new(pages: usize, lowmem_end: usize) -> VecMemory {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: the layout has a non-zero size (tests never ask for 0 pages).
        let base = NonNull::new(unsafe { alloc_zeroed(layout) }).expect("test memory");
        VecMemory {
            base,
            pages,
            lowmem_end,
        }
    }
}

impl Drop for VecMemory {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.pages * PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: `base` came from `alloc_zeroed` with this very layout.
        unsafe { dealloc(self.base.as_ptr(), layout) };
    }
}

// SAFETY: the buffer is owned exclusively by `VecMemory` and only handed out
// as raw pointers under the `PhysMemory` contract; nothing here is thread-bound.
unsafe impl Send for VecMemory {}
// SAFETY: `VecMemory` never reads or writes the buffer through `&self`
// except in `clear_frames`, whose caller owns the frames.
unsafe impl Sync for VecMemory {}

// SAFETY: 1. every address is `base + pfn * PAGE_SIZE` inside the buffer,
// page-aligned because `base` is, valid while `self` lives; 2. distinct
// frames get distinct pages; 3. the buffer is only touched by `clear_frames`.
unsafe impl PhysMemory for VecMemory {
    fn direct_map(&self, pfn: Pfn) -> Option<NonNull<u8>> {
        if pfn.0 >= self.pages.min(self.lowmem_end) {
            return None;
        }
        // SAFETY: `pfn < pages`, so the offset stays inside the buffer.
        Some(unsafe { self.base.add(pfn.0 * PAGE_SIZE) })
    }

    fn virt_to_pfn(&self, addr: usize) -> Option<Pfn> {
        let start = self.base.as_ptr().addr();
        let off = addr.checked_sub(start)?;
        let pfn = off / PAGE_SIZE;
        (pfn < self.pages.min(self.lowmem_end)).then_some(Pfn(pfn))
    }

    fn has_memory(&self) -> bool {
        true
    }
}

thread_local! {
    static THIS_CPU: Cell<usize> = const { Cell::new(0) };
}

/// A `CpuContext` whose current CPU is a thread-local the test sets.
#[derive(Debug)]
pub(crate) struct ThreadCpus(pub(crate) usize);

impl ThreadCpus {
    /// Binds the calling thread to `cpu`.
    pub(crate) fn bind(cpu: usize) {
        THIS_CPU.with(|c| c.set(cpu));
    }
}

// SAFETY: never exclusive (the default `current_cpu_exclusive`), with the
// default fence.
unsafe impl CpuContext for ThreadCpus {
    fn nr_cpus(&self) -> usize {
        self.0
    }
    fn current_cpu(&self) -> usize {
        THIS_CPU.with(Cell::get) % self.0
    }
    fn preempt_disable(&self) {}
    fn preempt_enable(&self) {}
}

/// Boots `layout` with `NoMemory` on `nr_cpus` thread-bound CPUs.
pub(crate) fn boot<B: kmm_buddy::BuddyBackend>(
    layout: MachineLayout,
    pcp: bool,
    min_free_kbytes: Option<usize>,
    nr_cpus: usize,
) -> ZonedAllocator<B> {
    let cfg = ZonedConfig {
        layout,
        pcp,
        min_free_kbytes,
    };
    ZonedAllocator::new(cfg, Arc::new(ThreadCpus(nr_cpus)), Arc::new(NoMemory)).expect("boot")
}

/// Sum of free pages on the buddy lists of every zone.
pub(crate) fn buddy_free<B: kmm_buddy::BuddyBackend>(a: &ZonedAllocator<B>) -> usize {
    a.snapshots().iter().map(|s| s.free_pages).sum()
}

/// Pages on every per-CPU list of every zone.
pub(crate) fn pcp_pages<B: kmm_buddy::BuddyBackend>(a: &ZonedAllocator<B>) -> usize {
    a.snapshots()
        .iter()
        .flat_map(|s| s.pcp.iter())
        .map(|p| p.count)
        .sum()
}
