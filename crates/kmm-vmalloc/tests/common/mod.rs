//! Shared helpers of the integration tests: a toy machine (a zoned page
//! allocator over `NoMemory`) and a vmalloc space on a software MMU.

use std::sync::Arc;

use kmm_buddy::EagerBuddy;
use kmm_page::{NoMemory, PAGE_SIZE, PageAllocator, SoftMmu, VirtAddr};
use kmm_percpu::FixedCpu;
use kmm_vmalloc::VmallocSpace;
use kmm_zone::{MachineLayout, ZonedAllocator, ZonedConfig};

/// `VMALLOC_START` of x86-64 with 4-level paging.
pub const VMALLOC_START: usize = 0xffff_c900_0000_0000;

/// A toy machine, its page allocator as the trait object and as itself.
pub struct Machine {
    /// The zoned allocator.
    pub zoned: Arc<ZonedAllocator<EagerBuddy>>,
    /// The same allocator, as the page source vmalloc sees.
    pub pages: Arc<dyn PageAllocator>,
    /// The software page table.
    pub mmu: Arc<SoftMmu>,
    /// The vmalloc space over the whole MMU window.
    pub vm: VmallocSpace,
}

impl core::fmt::Debug for Machine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Machine")
            .field("vm", &self.vm)
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// Free pages in the buddy lists (per-CPU lists are off).
    pub fn free_pages(&self) -> usize {
        self.zoned.snapshots().iter().map(|z| z.free_pages).sum()
    }
}

/// A zoned allocator over `layout` with no per-CPU lists and no memory.
pub fn zoned(layout: MachineLayout) -> Arc<ZonedAllocator<EagerBuddy>> {
    let cfg = ZonedConfig {
        layout,
        pcp: false,
        min_free_kbytes: Some(0),
    };
    Arc::new(ZonedAllocator::new(cfg, Arc::new(FixedCpu::new(1)), Arc::new(NoMemory)).unwrap())
}

/// A machine of `frames` frames and a vmalloc space of `va_pages` pages at
/// [`VMALLOC_START`], on a software MMU, for `cpus` CPUs.
pub fn machine(frames: usize, va_pages: usize, cpus: usize) -> Machine {
    machine_with(
        zoned(MachineLayout::toy(frames, None)),
        VMALLOC_START,
        va_pages,
        cpus,
    )
}

/// A vmalloc space of `va_pages` pages at `start` over `zoned`.
pub fn machine_with(
    zoned: Arc<ZonedAllocator<EagerBuddy>>,
    start: usize,
    va_pages: usize,
    cpus: usize,
) -> Machine {
    let pages: Arc<dyn PageAllocator> = zoned.clone();
    let mmu =
        Arc::new(SoftMmu::new(VirtAddr(start), VirtAddr(start + va_pages * PAGE_SIZE)).unwrap());
    let vm = VmallocSpace::with_window(pages.clone(), mmu.clone(), cpus).unwrap();
    Machine {
        zoned,
        pages,
        mmu,
        vm,
    }
}

/// The address `pages` pages above `base`.
pub fn va(base: VirtAddr, pages: usize) -> VirtAddr {
    VirtAddr(base.0 + pages * PAGE_SIZE)
}
