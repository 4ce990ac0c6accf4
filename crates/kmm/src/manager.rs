//! `MemoryManager`: one machine's memory, wired from the kmm crates.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use kmm_buddy::BuddyBackend;
use kmm_gfp::{Gfp, ZoneType};
use kmm_highmem::HighmemError;
use kmm_page::{NoMemory, PageAllocator, PageError, PageFlags, Pfn, PfnRange, PhysMemory};
use kmm_percpu::{CpuContext, FixedCpu, PerCpuError, PercpuError};
use kmm_slab::{SlabAllocator, SlabError};
use kmm_vmalloc::VmallocError;
use kmm_zone::{
    Arch, MachineLayout, ZoneError, ZonedAllocator, ZonedConfig, snapshot::ZoneSnapshot,
};

use crate::vm::{Vm, VmParts};
use crate::{DefaultBuddy, procfs};

/// How much memory the machine has and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemorySpec {
    /// `size` bytes of RAM laid out as the architecture does (zones, and on
    /// x86-64 the PCI hole at 3 GiB when memory reaches it).
    Size(u64),
    /// A toy machine: one Normal zone of `pages` frames; only the `free`
    /// frames (all if `None`) are handed to the buddy, the rest stay
    /// reserved; watermarks are 0 unless `min_free_kbytes` is given.
    Toy {
        /// Frames in the zone.
        pages: usize,
        /// Frames handed to the buddy at boot.
        free: Option<Vec<PfnRange>>,
    },
    /// Explicit physical ranges (with holes between them), split into the
    /// architecture's zones.
    Ranges(Vec<PfnRange>),
}

/// What is behind the frames.
#[derive(Clone)]
pub enum Backing {
    /// Real memory: a memfd mapped as the direct map (`kmm-host`, feature `std`).
    #[cfg(feature = "std")]
    Host,
    /// No memory: frames are pure numbers (device ranges, fast simulation).
    NoMemory,
    /// Memory of your own, e.g. a kernel's direct map.
    Custom(Arc<dyn PhysMemory>),
}

impl fmt::Debug for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "std")]
            Backing::Host => f.write_str("Host"),
            Backing::NoMemory => f.write_str("NoMemory"),
            Backing::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// The description of a machine to boot.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Zone layout: x86-64 (DMA, DMA32, Normal) or x86-32 (DMA, Normal, HighMem).
    pub arch: Arch,
    /// The memory.
    pub memory: MemorySpec,
    /// Number of CPUs.
    pub cpus: usize,
    /// Per-CPU page lists: `None` turns them on, except on toy machines
    /// (where they would hide the buddy's moves from a learner).
    pub pcp: Option<bool>,
    /// `vm.min_free_kbytes`; `None` computes it as Linux does.
    pub min_free_kbytes: Option<usize>,
    /// What is behind the frames.
    pub backing: Backing,
}

impl Default for MachineConfig {
    /// An x86-64 machine with 64 MiB and 2 CPUs, on host memory with feature
    /// `std` (no memory without it).
    fn default() -> Self {
        MachineConfig {
            arch: Arch::X86_64,
            memory: MemorySpec::Size(64 << 20),
            cpus: 2,
            pcp: None,
            min_free_kbytes: None,
            #[cfg(feature = "std")]
            backing: Backing::Host,
            #[cfg(not(feature = "std"))]
            backing: Backing::NoMemory,
        }
    }
}

/// Why a memory-manager call failed. The state is unchanged after every error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmmError {
    /// The page allocator refused.
    #[error(transparent)]
    Page(#[from] PageError),
    /// The machine could not be laid out.
    #[error("cannot boot: {0}")]
    Zone(#[from] ZoneError),
    /// The host memory could not be set up.
    #[error("cannot set up host memory: {0}")]
    Host(String),
    /// No such CPU.
    #[error("cpu {cpu} does not exist (the machine has {nr_cpus} CPUs)")]
    BadCpu {
        /// The CPU asked for.
        cpu: usize,
        /// CPUs of the machine.
        nr_cpus: usize,
    },
    /// The machine's CPU context is not one the manager can switch.
    #[error("the CPU context is the host's or your own: switch CPUs by binding threads")]
    NoCpuControl,
    /// The CPU context refused to switch CPUs (preemption is disabled, for
    /// example by an outstanding `kmap_atomic`).
    #[error(transparent)]
    Cpu(PerCpuError),
    /// The configuration is inconsistent.
    #[error("bad machine configuration: {0}")]
    Config(&'static str),
    /// vmalloc refused (`vfree` of an address that starts no area, a double
    /// `vfree`, no virtual space, ...).
    #[error("vmalloc: {0}")]
    Vmalloc(#[from] VmallocError),
    /// A highmem mapping was refused (`kunmap` of a page that is not mapped,
    /// `kunmap_atomic` out of LIFO order, ...).
    #[error("highmem: {0}")]
    Highmem(#[from] HighmemError),
    /// The per-CPU allocator refused.
    #[error("percpu: {0}")]
    Percpu(#[from] PercpuError),
    /// The slab layer refused (a pointer it did not hand out, a double free,
    /// a cache with live objects, a request above `KMALLOC_MAX_SIZE`, ...).
    #[error("slab: {0}")]
    Slab(#[from] SlabError),
    /// The machine has no memory behind its frames ([`Backing::NoMemory`]),
    /// so it has no slab layer: kmalloc and the slab caches need real memory.
    #[error("no slab allocator: the machine has no memory behind its frames (backing NoMemory)")]
    NoSlab,
}

/// The state of one frame, for pictures of physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameState {
    /// No memory at this frame number.
    Hole,
    /// Present but never handed to the allocator.
    Reserved,
    /// Part of a free buddy block of `order`.
    Free {
        /// The block's order.
        order: u32,
    },
    /// On a per-CPU page list.
    PerCpu,
    /// Allocated.
    Allocated,
}

/// Totals over all zones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Pages handed to the buddy allocators (`MemTotal`).
    pub total_pages: usize,
    /// Pages on the buddy free lists (`MemFree`).
    pub free_pages: usize,
    /// Pages on per-CPU page lists.
    pub pcp_pages: usize,
    /// Pages allocated.
    pub allocated_pages: usize,
    /// Blocks split.
    pub splits: u64,
    /// Buddy pairs merged.
    pub merges: u64,
    /// Successful buddy allocations.
    pub allocs: u64,
    /// Failed buddy allocations.
    pub failures: u64,
}

/// One machine's memory manager: zones with buddy allocators behind the
/// Linux page-allocator API, and the `/proc` files Linux prints.
///
/// `B` is the buddy backend: [`DefaultBuddy`] unless named.
pub struct MemoryManager<B: BuddyBackend = DefaultBuddy, C: ?Sized = dyn CpuContext> {
    config: MachineConfig,
    pages: Arc<ZonedAllocator<B>>,
    sim_cpus: Option<Arc<FixedCpu>>,
    pub(crate) vm: Vm,
    /// The slab layer, when the frames have memory behind them.
    pub(crate) slab: Option<Arc<SlabAllocator<ZonedAllocator<B>, C>>>,
    /// The host memory behind the frames ([`Backing::Host`]).
    #[cfg(feature = "std")]
    host: HostMem,
}

/// A CPU context a machine boots on ([`MemoryManager::boot_with`]): any
/// [`CpuContext`] type, or `dyn CpuContext`. The slab layer gets it as it
/// is (so a concrete type's CPU query inlines into the slab fast paths);
/// the page allocator and the virtual-memory layers get it as a trait object.
pub trait MachineCpus: CpuContext + 'static {
    /// The context as a trait object.
    fn into_dyn(self: Arc<Self>) -> Arc<dyn CpuContext>;
}

impl<T: CpuContext + 'static> MachineCpus for T {
    fn into_dyn(self: Arc<Self>) -> Arc<dyn CpuContext> {
        self
    }
}

impl MachineCpus for dyn CpuContext {
    fn into_dyn(self: Arc<Self>) -> Arc<dyn CpuContext> {
        self
    }
}

impl<B: BuddyBackend, C: ?Sized> fmt::Debug for MemoryManager<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryManager")
            .field("backend", &B::NAME)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<B: BuddyBackend> MemoryManager<B> {
    /// Boots a machine: lays out the zones, builds the memory map, hands the
    /// free frames to the buddy allocators and computes the watermarks. The
    /// simulated CPU context starts on CPU 0 (see [`MemoryManager::set_cpu`]).
    pub fn boot(config: MachineConfig) -> Result<Self, KmmError> {
        if config.cpus == 0 {
            return Err(KmmError::Config("a machine needs at least one CPU"));
        }
        let cpus = Arc::new(FixedCpu::new(config.cpus));
        let ctx: Arc<dyn CpuContext> = cpus.clone();
        let mut mm = Self::boot_with(config, ctx)?;
        mm.sim_cpus = Some(cpus);
        Ok(mm)
    }
}

impl<B: BuddyBackend, C: ?Sized + MachineCpus> MemoryManager<B, C> {
    /// Boots a machine whose CPUs are `cpus` (for example `kmm_host::HostCpus`
    /// or a kernel's own); `config.cpus` must match `cpus.nr_cpus()`.
    ///
    /// `C` is the CPU context's type: pass an `Arc<HostCpus>` (or your own
    /// type) and the slab layer's fast paths ask it for the CPU without an
    /// indirect call; pass an `Arc<dyn CpuContext>` for the trait object.
    pub fn boot_with(config: MachineConfig, cpus: Arc<C>) -> Result<Self, KmmError> {
        if config.cpus == 0 || cpus.nr_cpus() != config.cpus {
            return Err(KmmError::Config(
                "the CPU context does not have `cpus` CPUs",
            ));
        }
        let (layout, toy) = match &config.memory {
            MemorySpec::Size(bytes) => (
                match config.arch {
                    Arch::X86_64 => MachineLayout::x86_64(*bytes),
                    Arch::X86_32 => MachineLayout::x86_32(*bytes),
                },
                false,
            ),
            MemorySpec::Toy { pages, free } => (MachineLayout::toy(*pages, free.clone()), true),
            MemorySpec::Ranges(ranges) => (MachineLayout::from_ranges(config.arch, ranges), false),
        };
        let (phys, host) = make_backing(&config.backing, &layout)?;
        let lowmem_end = layout.lowmem_end();
        let zoned = ZonedConfig {
            layout,
            pcp: config.pcp.unwrap_or(!toy),
            min_free_kbytes: config.min_free_kbytes,
        };
        let dyn_cpus = Arc::clone(&cpus).into_dyn();
        let pages = Arc::new(ZonedAllocator::new(zoned, dyn_cpus.clone(), phys.clone())?);
        let totalram = pages.snapshots().iter().map(|z| z.managed).sum();
        let page_allocator: Arc<dyn PageAllocator> = pages.clone();
        // `kmem_cache_init`: only frames with memory behind them can hold slabs.
        let slab = if phys.has_memory() {
            Some(Arc::new(SlabAllocator::new(pages.clone(), cpus)?))
        } else {
            None
        };
        let vm = Vm::boot(VmParts {
            arch: config.arch,
            lowmem_end,
            toy,
            totalram,
            pages: page_allocator,
            phys,
            cpus: dyn_cpus,
            #[cfg(feature = "std")]
            host: host.as_ref(),
            #[cfg(not(feature = "std"))]
            host: core::marker::PhantomData,
        })?;
        #[cfg(not(feature = "std"))]
        let () = host;
        Ok(MemoryManager {
            config,
            pages,
            sim_cpus: None,
            vm,
            slab,
            #[cfg(feature = "std")]
            host,
        })
    }
}

impl<B: BuddyBackend, C: ?Sized + CpuContext> MemoryManager<B, C> {
    /// The configuration the machine booted with.
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// The zoned page allocator, with the whole page-allocator API.
    pub fn pages(&self) -> &ZonedAllocator<B> {
        &self.pages
    }

    /// The buddy backend's name (`"eager"` or `"lazy"`).
    pub fn backend_name(&self) -> &'static str {
        B::NAME
    }

    /// Number of CPUs.
    pub fn nr_cpus(&self) -> usize {
        self.config.cpus
    }

    /// Makes `cpu` the CPU that runs the next calls (simulated CPU context only).
    pub fn set_cpu(&self, cpu: usize) -> Result<(), KmmError> {
        let cpus = self.sim_cpus.as_ref().ok_or(KmmError::NoCpuControl)?;
        cpus.set_current(cpu).map_err(|e| match e {
            PerCpuError::CpuOutOfRange { .. } => KmmError::BadCpu {
                cpu,
                nr_cpus: self.config.cpus,
            },
            e => KmmError::Cpu(e),
        })
    }

    /// Allocates `2^order` contiguous pages (`alloc_pages`, mm/page_alloc.c).
    pub fn alloc_pages(&self, gfp: Gfp, order: u32) -> Result<Pfn, KmmError> {
        Ok(self.pages.alloc_pages(gfp, order)?)
    }

    /// Frees a block of `2^order` pages (`__free_pages`).
    #[doc(alias = "__free_pages")]
    pub fn free_pages(&self, pfn: Pfn, order: u32) -> Result<(), KmmError> {
        Ok(self.pages.free_pages(pfn, order)?)
    }

    /// Allocates one zeroed page (`get_zeroed_page`) and returns its frame;
    /// on a machine without memory behind its frames this is an error.
    pub fn get_zeroed_page(&self, gfp: Gfp) -> Result<Pfn, KmmError> {
        let addr = self.pages.get_zeroed_page(gfp)?;
        let pfn = self.pages.phys().virt_to_pfn(addr.as_ptr() as usize);
        pfn.ok_or(KmmError::Config(
            "the direct map does not translate its own address",
        ))
    }

    /// Allocates exactly enough pages for `size` bytes (`alloc_pages_exact`).
    pub fn alloc_pages_exact(&self, size: usize, gfp: Gfp) -> Result<Pfn, KmmError> {
        Ok(self.pages.alloc_pages_exact(size, gfp)?)
    }

    /// Frees pages from [`MemoryManager::alloc_pages_exact`] (`free_pages_exact`).
    pub fn free_pages_exact(&self, pfn: Pfn, size: usize) -> Result<(), KmmError> {
        Ok(self.pages.free_pages_exact(pfn, size)?)
    }

    /// Makes the machine's host memory resident now
    /// ([`kmm_host::HostMemory::populate`]), so that no later access to a
    /// lowmem frame costs the host a page fault, as a kernel's RAM never
    /// does. `Ok(false)` if the frames are not [`Backing::Host`] memory.
    ///
    /// # Errors
    ///
    /// [`KmmError::Host`] if the host cannot make the memory resident.
    #[cfg(feature = "std")]
    pub fn populate_host_memory(&self) -> Result<bool, KmmError> {
        let Some(host) = &self.host else {
            return Ok(false);
        };
        host.populate()
            .map_err(|e| KmmError::Host(alloc::format!("{e}")))?;
        Ok(true)
    }

    /// Gives every per-CPU page back to the buddy and lets a lazy buddy
    /// coalesce (`drain_all_pages`).
    pub fn drain_all_pages(&self) {
        self.pages.drain_all_pages();
    }

    /// The zone a frame belongs to.
    pub fn zone_of(&self, pfn: Pfn) -> Option<ZoneType> {
        self.pages.zone_of(pfn)
    }

    /// Zone snapshots, every zone of the layout in zone order.
    pub fn snapshots(&self) -> Vec<ZoneSnapshot> {
        self.pages.snapshots()
    }

    /// The `/proc` files this machine can print.
    pub const PROC_FILES: &'static [&'static str] = &[
        "/proc/buddyinfo",
        "/proc/pagetypeinfo",
        "/proc/zoneinfo",
        "/proc/meminfo",
        "/proc/vmallocinfo",
        "/proc/slabinfo",
    ];

    /// The text of a `/proc` file, exactly as Linux formats it, or `None` if
    /// kmm has no such file.
    pub fn proc(&self, path: &str) -> Option<String> {
        let zones = self.snapshots();
        Some(match path {
            "/proc/buddyinfo" => procfs::buddyinfo(&zones),
            "/proc/pagetypeinfo" => procfs::pagetypeinfo(&zones, kmm_page::PAGEBLOCK_ORDER),
            "/proc/zoneinfo" => procfs::zoneinfo(&zones),
            "/proc/meminfo" => {
                let highmem = zones.iter().any(|z| z.zone == ZoneType::HighMem);
                let vm = self.vm_meminfo();
                let mut input = procfs::MeminfoInput::new(zones, highmem);
                input.vmalloc_total_kb = Some(vm.vmalloc_total_kb);
                input.vmalloc_used_kb = Some(vm.vmalloc_used_kb);
                input.percpu_kb = Some(vm.percpu_kb);
                if let Some(slab) = &self.slab {
                    let m = slab.meminfo();
                    input.slab_reclaimable_kb = Some(m.reclaimable_kb);
                    input.slab_unreclaimable_kb = Some(m.unreclaimable_kb);
                }
                procfs::meminfo(&input)
            }
            "/proc/vmallocinfo" => self.vmallocinfo(),
            "/proc/slabinfo" => match &self.slab {
                Some(slab) => slab.slabinfo(),
                None => String::from(procfs::SLABINFO_HEADER),
            },
            _ => return None,
        })
    }

    /// Every frame number from 0 to the end of memory with its zone and state.
    pub fn frame_states(&self) -> Vec<(Pfn, Option<ZoneType>, FrameState)> {
        let layout = self.pages.layout();
        let end = layout
            .present_ranges()
            .iter()
            .map(|r| r.end.0)
            .max()
            .unwrap_or(0);
        let mut out: Vec<(Pfn, Option<ZoneType>, FrameState)> =
            (0..end).map(|p| (Pfn(p), None, FrameState::Hole)).collect();
        for spec in &layout.zones {
            for r in &spec.present {
                for p in r.as_range() {
                    let reserved = self
                        .pages
                        .pfn_to_page(Pfn(p))
                        .is_some_and(|f| f.test(PageFlags::RESERVED));
                    let state = if reserved {
                        FrameState::Reserved
                    } else {
                        FrameState::Allocated
                    };
                    out[p] = (Pfn(p), Some(spec.zone), state);
                }
            }
        }
        for (_, b) in self.pages.free_blocks() {
            for entry in &mut out[b.pfn.0..b.pfn.0 + (1 << b.order)] {
                entry.2 = FrameState::Free { order: b.order };
            }
        }
        for (_, _, pfn, order) in self.pages.pcp_blocks() {
            for entry in &mut out[pfn.0..pfn.0 + (1 << order)] {
                entry.2 = FrameState::PerCpu;
            }
        }
        out
    }

    /// Totals over all zones.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for z in self.snapshots() {
            s.total_pages += z.managed;
            s.free_pages += z.free_pages;
            s.pcp_pages += z.pcp.iter().map(|p| p.count).sum::<usize>();
            s.splits += z.stats.splits;
            s.merges += z.stats.merges;
            s.allocs += z.stats.allocs.iter().sum::<u64>();
            s.failures += z.stats.failures.iter().sum::<u64>();
        }
        s.allocated_pages = s.total_pages - s.free_pages - s.pcp_pages;
        s
    }

    /// Checks every invariant of every zone (lists, counts, conservation).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.pages.check_invariants()?;
        if let Some(slab) = &self.slab {
            slab.check_invariants()?;
        }
        self.check_vm_invariants()
    }
}

/// The host memory behind a machine, kept typed so that its MMU can map it.
#[cfg(feature = "std")]
type HostMem = Option<Arc<kmm_host::HostMemory>>;
/// Without `std` there is no host memory.
#[cfg(not(feature = "std"))]
type HostMem = ();

fn make_backing(
    backing: &Backing,
    layout: &MachineLayout,
) -> Result<(Arc<dyn PhysMemory>, HostMem), KmmError> {
    #[cfg(feature = "std")]
    let none = None;
    #[cfg(not(feature = "std"))]
    let none = ();
    Ok(match backing {
        #[cfg(feature = "std")]
        Backing::Host => {
            let ranges = layout.present_ranges();
            let mem = kmm_host::HostMemory::new(&ranges, layout.lowmem_end())
                .map_err(|e| KmmError::Host(alloc::format!("{e}")))?;
            let mem = Arc::new(mem);
            (mem.clone(), Some(mem))
        }
        Backing::NoMemory => {
            let _ = layout;
            (Arc::new(NoMemory), none)
        }
        Backing::Custom(mem) => (mem.clone(), none),
    })
}

#[cfg(test)]
pub(crate) fn all_frames_accounted<B: BuddyBackend>(mm: &MemoryManager<B>) -> bool {
    let states = mm.frame_states();
    let s = mm.summary();
    let free = states
        .iter()
        .filter(|(_, _, st)| matches!(st, FrameState::Free { .. }))
        .count();
    let pcp = states
        .iter()
        .filter(|(_, _, st)| *st == FrameState::PerCpu)
        .count();
    let alloc = states
        .iter()
        .filter(|(_, _, st)| *st == FrameState::Allocated)
        .count();
    free == s.free_pages && pcp == s.pcp_pages && alloc == s.allocated_pages
}
