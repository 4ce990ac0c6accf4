//! Shared test machinery: a real zoned page allocator over host memory, and
//! a digest of everything the slab layer exposes.

#![expect(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset"
)]

use std::sync::Arc;

use kmm_buddy::EagerBuddy;
use kmm_host::{HostCpus, HostMemory};
use kmm_percpu::{CpuContext, FixedCpu};
use kmm_slab::SlabAllocator;
use kmm_zone::{MachineLayout, ZonedAllocator, ZonedConfig};

mod sole;
pub(crate) use sole::SoleThread;

/// A booted machine: the page allocator and the slab layer on top, over the
/// concrete page allocator (the unit tests use the `dyn` seam).
pub struct Machine {
    pub pages: Arc<ZonedAllocator<EagerBuddy>>,
    pub slab: SlabAllocator<ZonedAllocator<EagerBuddy>>,
}

impl Machine {
    /// Free pages in the buddy after draining the per-CPU page lists.
    pub fn buddy_free(&self) -> usize {
        self.pages.drain_all_pages();
        self.pages.snapshots().iter().map(|s| s.free_pages).sum()
    }

    /// The end of a test: shrinks every cache, then every slab page is back
    /// in the buddy and its free count is `free0` again.
    #[track_caller]
    pub fn assert_all_pages_back(&self, free0: usize) {
        self.slab.shrink_all();
        assert_eq!(self.slab.slab_pages(), 0);
        assert_eq!(self.buddy_free(), free0);
    }

    /// Everything observable: slabinfo, meminfo, invariants, free pages.
    pub fn digest(&self) -> String {
        format!(
            "{}{:?}{:?}{}",
            self.slab.slabinfo(),
            self.slab.meminfo(),
            self.slab.check_invariants(),
            self.buddy_free()
        )
    }
}

/// A 64 MiB x86_64 machine with `cpus`.
pub fn boot_with(cpus: Arc<dyn CpuContext>) -> Machine {
    let layout = MachineLayout::x86_64(64 << 20);
    let mem = HostMemory::new(&layout.present_ranges(), layout.lowmem_end()).expect("host memory");
    let cfg = ZonedConfig {
        layout,
        pcp: true,
        min_free_kbytes: None,
    };
    let pages = Arc::new(
        ZonedAllocator::<EagerBuddy>::new(cfg, Arc::clone(&cpus), Arc::new(mem)).expect("boot"),
    );
    let slab = SlabAllocator::new(pages.clone(), cpus).expect("slab");
    Machine { pages, slab }
}

/// A machine on a `FixedCpu` of `n` CPUs (returned so tests can move between CPUs).
pub fn boot(n: usize) -> (Machine, Arc<FixedCpu>) {
    let cpus = Arc::new(FixedCpu::new(n));
    (boot_with(cpus.clone()), cpus)
}

/// A machine of `n` CPUs that one thread holds exclusively (see [`SoleThread`]).
pub fn boot_sole(n: usize) -> (Machine, Arc<FixedCpu>) {
    let cpus = Arc::new(FixedCpu::new(n));
    (boot_with(Arc::new(SoleThread(cpus.clone()))), cpus)
}

/// A machine on `HostCpus`, for threads bound to CPUs.
pub fn boot_host(n: usize) -> (Machine, Arc<HostCpus>) {
    let cpus = Arc::new(HostCpus::new(n));
    (boot_with(cpus.clone()), cpus)
}

/// A raw pointer that may cross threads in tests.
#[derive(Clone, Copy, Debug)]
pub struct SendPtr(pub core::ptr::NonNull<u8>);
// SAFETY: the pointer is an address of slab memory that stays mapped for the
// machine's lifetime; the tests hand each object to exactly one thread at a time.
unsafe impl Send for SendPtr {}
