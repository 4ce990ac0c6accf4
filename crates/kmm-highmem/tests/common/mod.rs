//! Shared fixtures of the API tests: a `PhysMemory` whose lowmem frames are
//! real memory and whose highmem frames have no direct map, and machines
//! built on the software page table.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use std::sync::Arc;

use kmm_highmem::{Highmem, KM_MAX_IDX};
use kmm_page::{PAGE_SIZE, Pfn, PhysMemory, SoftMmu, VirtAddr};
use kmm_percpu::{CpuContext, FixedCpu};

/// The number of lowmem frames of [`TestPhys`]: frames `[0, LOWMEM)` are
/// direct-mapped, every frame from `LOWMEM` up is highmem.
pub const LOWMEM: usize = 8;

/// The first highmem frame.
pub const HIGH: Pfn = Pfn(LOWMEM);

/// The base of the pkmap window in the test machines.
pub const PKMAP_BASE: VirtAddr = VirtAddr(0xff80_0000);

/// One page of lowmem, aligned as a frame is.
#[repr(C, align(4096))]
#[derive(Debug)]
struct Page(UnsafeCell<[u8; PAGE_SIZE]>);

/// Physical memory with [`LOWMEM`] direct-mapped frames of real memory; all
/// other frames are highmem (no direct map).
#[derive(Debug)]
pub struct TestPhys {
    pages: Box<[Page]>,
}

impl Default for TestPhys {
    fn default() -> TestPhys {
        TestPhys::new()
    }
}

impl TestPhys {
    /// Fresh memory, all zeros.
    pub fn new() -> TestPhys {
        TestPhys {
            pages: (0..LOWMEM)
                .map(|_| Page(UnsafeCell::new([0; PAGE_SIZE])))
                .collect(),
        }
    }

    /// The direct-map address of a lowmem frame, as a number.
    pub fn direct_map_addr(&self, pfn: Pfn) -> Option<VirtAddr> {
        self.direct_map(pfn).map(|p| VirtAddr(p.as_ptr().addr()))
    }
}

// SAFETY: the pages are only reached through `UnsafeCell` pointers handed out
// by `direct_map`; whoever owns a frame owns its bytes (the trait contract).
unsafe impl Sync for TestPhys {}

// SAFETY: 1. each pointer is to a `Page`, which is 4096-aligned and 4096 bytes
// long, and lives as long as `self` (the boxed slice never moves or shrinks);
// 2. distinct frames are distinct elements of the slice; 3. `TestPhys` never
// touches the bytes (only the default `clear_frames` does).
unsafe impl PhysMemory for TestPhys {
    fn direct_map(&self, pfn: Pfn) -> Option<NonNull<u8>> {
        let page = self.pages.get(pfn.0)?;
        NonNull::new(page.0.get().cast::<u8>())
    }

    fn virt_to_pfn(&self, addr: usize) -> Option<Pfn> {
        let start = self.pages.as_ptr().addr();
        let off = addr.checked_sub(start)?;
        (off < self.pages.len() * PAGE_SIZE).then_some(Pfn(off / PAGE_SIZE))
    }

    fn has_memory(&self) -> bool {
        true
    }
}

/// A test machine: `Highmem` over a `SoftMmu`, [`TestPhys`] and a `FixedCpu`.
#[derive(Debug)]
pub struct Machine {
    /// The mappings under test.
    pub hm: Highmem,
    /// Its page table.
    pub mmu: Arc<SoftMmu>,
    /// Its physical memory.
    pub phys: Arc<TestPhys>,
    /// Its CPUs.
    pub cpus: Arc<FixedCpu>,
}

/// A machine with `slots` pkmap slots and `nr_cpus` CPUs; the fixmap window
/// follows the pkmap window.
pub fn machine(slots: usize, nr_cpus: usize) -> Machine {
    let cpus = Arc::new(FixedCpu::new(nr_cpus));
    let fixmap = VirtAddr(PKMAP_BASE.0 + slots * PAGE_SIZE);
    let end = VirtAddr(fixmap.0 + Highmem::fixmap_pages(nr_cpus) * PAGE_SIZE);
    let mmu = Arc::new(SoftMmu::new(PKMAP_BASE, end).expect("the window is valid"));
    let phys = Arc::new(TestPhys::new());
    let hm = Highmem::new(
        mmu.clone(),
        phys.clone(),
        cpus.clone() as Arc<dyn CpuContext>,
        PKMAP_BASE,
        slots,
        fixmap,
    )
    .expect("the layout is valid");
    assert_eq!(hm.fixmap_window().1, end);
    assert_eq!(KM_MAX_IDX, 16);
    Machine {
        hm,
        mmu,
        phys,
        cpus,
    }
}

/// Every `pkmap_count`, in slot order.
pub fn counts(hm: &Highmem) -> Vec<u32> {
    (0..hm.last_pkmap())
        .map(|nr| hm.pkmap_count(nr).expect("the slot exists"))
        .collect()
}

/// Everything observable about the pkmap slots and the stacks, to show that an
/// error left the state unchanged.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    counts: Vec<u32>,
    addrs: Vec<Option<VirtAddr>>,
    stacks: Vec<Vec<(VirtAddr, Pfn, kmm_highmem::LocalKind)>>,
    mapped: Vec<(VirtAddr, Pfn)>,
    preempt: usize,
    flushes: u64,
}

/// The state of `m`, with `page_address` of the frames in `pages`.
pub fn snapshot(m: &Machine, pages: impl IntoIterator<Item = Pfn>) -> Snapshot {
    let nr_cpus = m.cpus.nr_cpus();
    Snapshot {
        counts: counts(&m.hm),
        addrs: pages.into_iter().map(|p| m.hm.page_address(p)).collect(),
        stacks: (0..nr_cpus)
            .map(|cpu| m.hm.kmap_local_stack(cpu).expect("the cpu exists"))
            .collect(),
        mapped: m.mmu.mappings().map(|(va, pfn, _)| (va, pfn)).collect(),
        preempt: m.cpus.preempt_count(),
        flushes: m.hm.pkmap_stats().flushes,
    }
}
