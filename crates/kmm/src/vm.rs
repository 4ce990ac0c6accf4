//! Kernel virtual memory of a booted machine: the virtual layout, the
//! vmalloc space, highmem mappings (kmap, kmap_atomic), the per-CPU
//! interrupt stacks and the dynamic per-CPU allocator, and the facade
//! methods over them.
//!
//! Every machine gets an [`Mmu`]: on host memory a `kmm_host::HostMmu` over
//! the same memfd, so a vmalloc address or a kmap slot is real memory of this
//! process; otherwise a [`SoftMmu`], whose addresses are numbers laid out as
//! the architecture lays them out (see [`VirtualLayout`]).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use kmm_buddy::BuddyBackend;
use kmm_gfp::{GFP_KERNEL, Gfp};
use kmm_highmem::{Highmem, LAST_PKMAP};
use kmm_page::{Mmu, PAGE_SIZE, PageAllocator, Pfn, PhysMemory, SoftMmu, VirtAddr};
use kmm_percpu::{CpuContext, PercpuAllocator, PercpuPtr};
use kmm_vmalloc::VmallocSpace;
use kmm_vmalloc::stack::{ThreadSize, VmapStack};
use kmm_zone::Arch;

use crate::percpu_chunks::VmallocChunks;
use crate::{KmmError, MemoryManager};

/// `VMALLOC_START` of x86-64 with 4-level page tables and no KASLR
/// (`arch/x86/include/asm/pgtable_64_types.h`).
pub const X86_64_VMALLOC_START: usize = 0xffff_c900_0000_0000;

/// The size of the vmalloc range kmm gives an x86-64 machine: 1 GiB, not
/// Linux's 32 TiB, because a [`SoftMmu`] keeps 8 bytes of table per page of
/// its window and caps the window at 16 GiB.
pub const X86_64_VMALLOC_SIZE: usize = 1 << 30;

/// `PAGE_OFFSET` of x86-32 with the default 3G/1G split.
pub const X86_32_PAGE_OFFSET: usize = 0xc000_0000;

/// `VMALLOC_OFFSET` (`arch/x86/include/asm/pgtable_32_areas.h`): the hole of
/// 8 MiB between the end of lowmem and `VMALLOC_START`.
pub const VMALLOC_OFFSET: usize = 8 << 20;

/// `PKMAP_BASE` kmm uses on x86-32: `0xff800000`, the 4 MiB-aligned value a
/// non-PAE kernel ends up with (Linux derives it from the fixmap and the CPU
/// entry area, which kmm does not model).
pub const X86_32_PKMAP_BASE: usize = 0xff80_0000;

/// `FIXADDR_TOP` of x86-32: the kmap_atomic slots end here.
pub const X86_32_FIXADDR_TOP: usize = 0xffff_f000;

/// The caller the per-CPU chunks show in `/proc/vmallocinfo`.
pub const PERCPU_CHUNK_CALLER: &str = "pcpu_get_vm_areas";

/// The caller of [`MemoryManager::vmalloc`] in `/proc/vmallocinfo`.
pub const VMALLOC_CALLER: &str = "MemoryManager::vmalloc";

/// The caller of [`MemoryManager::vzalloc`] in `/proc/vmallocinfo`.
pub const VZALLOC_CALLER: &str = "MemoryManager::vzalloc";

/// The upper bound of the range kept for per-CPU chunks at the top of the
/// vmalloc range.
const PERCPU_RANGE_MAX: usize = 64 << 20;

/// Where a machine's kernel virtual memory lies.
///
/// On a [`SoftMmu`] the addresses are Linux's:
///
/// - x86-64: vmalloc from [`X86_64_VMALLOC_START`] for
///   [`X86_64_VMALLOC_SIZE`]; the pkmap window (`LAST_PKMAP` pages) two pages
///   above `VMALLOC_END`, and the fixmap window of the kmap_atomic slots
///   (`KM_MAX_IDX` per CPU) one page above that. x86-64 has no highmem, so
///   only frames without a direct map (a machine without memory) use them.
/// - x86-32: vmalloc from `PAGE_OFFSET + lowmem + VMALLOC_OFFSET` up to
///   `PKMAP_BASE - 2 pages` (`pgtable_32_areas.h`), pkmap at
///   [`X86_32_PKMAP_BASE`] (4 MiB, 1024 slots), the kmap_atomic slots ending
///   at [`X86_32_FIXADDR_TOP`].
///
/// On a host MMU one window of the same size is reserved and split the same
/// way, so the addresses are host addresses at the same offsets.
///
/// On a software MMU the top of the vmalloc range (an eighth of it, at most
/// 64 MiB) is kept for the chunks of the per-CPU allocator, which Linux also
/// takes from the top (`pcpu_get_vm_areas`). On the host MMU the chunks live
/// in a window of their own of that size, which nothing else can unmap (the
/// per-CPU allocator writes through it), and the vmalloc range is whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualLayout {
    /// `VMALLOC_START`.
    pub vmalloc_start: VirtAddr,
    /// `VMALLOC_END`.
    pub vmalloc_end: VirtAddr,
    /// The range the per-CPU chunks come from.
    pub percpu: (VirtAddr, VirtAddr),
    /// `PKMAP_BASE`.
    pub pkmap_base: VirtAddr,
    /// `LAST_PKMAP`: pkmap slots.
    pub last_pkmap: usize,
    /// The first kmap_atomic slot (CPU 0, index 0).
    pub fixmap_base: VirtAddr,
    /// One past the last kmap_atomic slot.
    pub fixmap_end: VirtAddr,
    /// Whether the addresses are host addresses (a host MMU).
    pub host: bool,
}

/// The SoftMmu layout of `arch` for a machine whose lowmem ends at
/// `lowmem_end`, with `nr_cpus` CPUs.
fn soft_layout(arch: Arch, lowmem_end: Pfn, nr_cpus: usize) -> Result<VirtualLayout, KmmError> {
    let fix_pages = Highmem::fixmap_pages(nr_cpus);
    let (vmalloc_start, vmalloc_end, pkmap_base, fixmap_base) = match arch {
        Arch::X86_64 => {
            let end = X86_64_VMALLOC_START + X86_64_VMALLOC_SIZE;
            let pkmap = end + 2 * PAGE_SIZE;
            let fixmap = pkmap + (LAST_PKMAP + 1) * PAGE_SIZE;
            (X86_64_VMALLOC_START, end, pkmap, fixmap)
        }
        Arch::X86_32 => {
            let lowmem = lowmem_end.0.saturating_mul(PAGE_SIZE);
            let start = X86_32_PAGE_OFFSET
                .saturating_add(lowmem)
                .saturating_add(VMALLOC_OFFSET);
            let end = X86_32_PKMAP_BASE - 2 * PAGE_SIZE;
            let pkmap_end = X86_32_PKMAP_BASE + LAST_PKMAP * PAGE_SIZE;
            let fixmap = X86_32_FIXADDR_TOP.checked_sub(fix_pages * PAGE_SIZE);
            let fixmap = fixmap.filter(|&f| f >= pkmap_end).ok_or(KmmError::Config(
                "too many CPUs for the x86_32 fixmap (at most 63)",
            ))?;
            if start >= end {
                return Err(KmmError::Config(
                    "lowmem leaves no room for the x86_32 vmalloc range",
                ));
            }
            (start, end, X86_32_PKMAP_BASE, fixmap)
        }
    };
    let size = vmalloc_end - vmalloc_start;
    let percpu_size = (size / 8).min(PERCPU_RANGE_MAX) & !(PAGE_SIZE - 1);
    Ok(VirtualLayout {
        vmalloc_start: VirtAddr(vmalloc_start),
        vmalloc_end: VirtAddr(vmalloc_end),
        percpu: (VirtAddr(vmalloc_end - percpu_size), VirtAddr(vmalloc_end)),
        pkmap_base: VirtAddr(pkmap_base),
        last_pkmap: LAST_PKMAP,
        fixmap_base: VirtAddr(fixmap_base),
        fixmap_end: VirtAddr(fixmap_base + fix_pages * PAGE_SIZE),
        host: false,
    })
}

impl VirtualLayout {
    /// The lowest address of the layout.
    fn low(&self) -> usize {
        self.vmalloc_start.0
    }

    /// One past the highest address of the layout.
    fn high(&self) -> usize {
        self.fixmap_end
            .0
            .max(self.pkmap_base.0 + self.last_pkmap * PAGE_SIZE)
    }

    /// The same layout moved to a host window at `base`, with the per-CPU
    /// range at `percpu_start` instead.
    #[cfg(feature = "std")]
    fn moved(&self, base: usize, percpu_start: usize) -> VirtualLayout {
        let at = |va: VirtAddr| VirtAddr(va.0 - self.low() + base);
        let percpu_len = self.percpu.1.0 - self.percpu.0.0;
        VirtualLayout {
            vmalloc_start: at(self.vmalloc_start),
            vmalloc_end: at(self.vmalloc_end),
            percpu: (VirtAddr(percpu_start), VirtAddr(percpu_start + percpu_len)),
            pkmap_base: at(self.pkmap_base),
            last_pkmap: self.last_pkmap,
            fixmap_base: at(self.fixmap_base),
            fixmap_end: at(self.fixmap_end),
            host: true,
        }
    }

    /// The size of the vmalloc range in bytes (`VMALLOC_TOTAL`).
    pub fn vmalloc_total(&self) -> usize {
        self.vmalloc_end.0 - self.vmalloc_start.0
    }
}

/// What the facade's virtual memory is built from.
pub(crate) struct VmParts<'a> {
    pub(crate) arch: Arch,
    pub(crate) lowmem_end: Pfn,
    pub(crate) toy: bool,
    pub(crate) totalram: usize,
    pub(crate) pages: Arc<dyn PageAllocator>,
    pub(crate) phys: Arc<dyn PhysMemory>,
    pub(crate) cpus: Arc<dyn CpuContext>,
    /// The host memory, when the frames are a memfd: the MMU is then a
    /// host MMU over the same memory.
    #[cfg(feature = "std")]
    pub(crate) host: Option<&'a Arc<kmm_host::HostMemory>>,
    /// Ties the lifetime when there is no host memory.
    #[cfg(not(feature = "std"))]
    pub(crate) host: core::marker::PhantomData<&'a ()>,
}

/// The kernel virtual memory of one machine.
pub(crate) struct Vm {
    layout: VirtualLayout,
    vmalloc: VmallocSpace,
    chunks: Arc<VmallocSpace>,
    highmem: Highmem,
    irq_stacks: Vec<VmapStack>,
    percpu: spin::Once<PercpuAllocator<VmallocChunks>>,
    nr_cpus: usize,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("layout", &self.layout)
            .field("irq_stacks", &self.irq_stacks.len())
            .finish_non_exhaustive()
    }
}

/// A layout and its MMUs: the main one, and the one of the per-CPU chunks.
type Mmus = (VirtualLayout, Arc<dyn Mmu>, Arc<dyn Mmu>);

/// On host memory, two host MMUs over it: one window for the layout, one for
/// the per-CPU chunks (which nothing else can reach, so their memory stays
/// mapped while the per-CPU allocator uses it).
#[cfg(feature = "std")]
fn host_mmus(parts: &VmParts<'_>, soft: &VirtualLayout) -> Result<Option<Mmus>, KmmError> {
    use kmm_host::HostMmu;
    let Some(mem) = parts.host else {
        return Ok(None);
    };
    let host_error = |e: kmm_host::HostError| KmmError::Host(alloc::format!("{e}"));
    let mmu =
        HostMmu::with_window_size(mem.clone(), soft.high() - soft.low()).map_err(host_error)?;
    let percpu_len = soft.percpu.1.0 - soft.percpu.0.0;
    let chunk_mmu = HostMmu::with_window_size(mem.clone(), percpu_len).map_err(host_error)?;
    let layout = soft.moved(mmu.window().0.0, chunk_mmu.window().0.0);
    Ok(Some((layout, Arc::new(mmu), Arc::new(chunk_mmu))))
}

/// Without `std` there is no host memory.
#[cfg(not(feature = "std"))]
fn host_mmus(_: &VmParts<'_>, _: &VirtualLayout) -> Result<Option<Mmus>, KmmError> {
    Ok(None)
}

impl Vm {
    /// Sets up the MMU, the vmalloc space, highmem, the per-CPU interrupt
    /// stacks and (except on toy machines, where it waits for the first
    /// `alloc_percpu`) the per-CPU allocator.
    pub(crate) fn boot(parts: VmParts<'_>) -> Result<Vm, KmmError> {
        let nr_cpus = parts.cpus.nr_cpus();
        let soft = soft_layout(parts.arch, parts.lowmem_end, nr_cpus)?;
        let (layout, mmu, chunk_mmu) = match host_mmus(&parts, &soft)? {
            Some(host) => host,
            None => {
                let mmu: Arc<dyn Mmu> = Arc::new(
                    SoftMmu::new(VirtAddr(soft.low()), VirtAddr(soft.high()))
                        .map_err(|_| KmmError::Config("the virtual layout is too large"))?,
                );
                (soft, mmu.clone(), mmu)
            }
        };
        let vmalloc = VmallocSpace::new(
            parts.pages.clone(),
            mmu.clone(),
            layout.vmalloc_start,
            if layout.host {
                layout.vmalloc_end
            } else {
                layout.percpu.0
            },
            nr_cpus,
        )?;
        let chunks = Arc::new(VmallocSpace::new(
            parts.pages.clone(),
            chunk_mmu,
            layout.percpu.0,
            layout.percpu.1,
            nr_cpus,
        )?);
        for space in [&vmalloc, &*chunks] {
            space.set_totalram_pages(Some(parts.totalram));
        }
        let highmem = Highmem::new(
            mmu,
            parts.phys,
            parts.cpus,
            layout.pkmap_base,
            layout.last_pkmap,
            layout.fixmap_base,
        )?;
        let irq_stacks = if parts.toy {
            Vec::new()
        } else {
            let size = match parts.arch {
                Arch::X86_64 => ThreadSize::X86_64,
                Arch::X86_32 => ThreadSize::X86_32,
            };
            vmalloc.vmap_irq_stacks(nr_cpus, GFP_KERNEL, size)?
        };
        let vm = Vm {
            layout,
            vmalloc,
            chunks,
            highmem,
            irq_stacks,
            percpu: spin::Once::new(),
            nr_cpus,
        };
        if !parts.toy {
            vm.percpu()?;
        }
        Ok(vm)
    }

    /// The per-CPU allocator, set up now if this is its first use.
    fn percpu(&self) -> Result<&PercpuAllocator<VmallocChunks>, KmmError> {
        self.percpu.try_call_once(|| {
            PercpuAllocator::new(VmallocChunks::new(self.chunks.clone()), self.nr_cpus, 0)
                .map_err(KmmError::Percpu)
        })
    }

    /// Whether `addr` is in the vmalloc range, per-CPU chunks included.
    fn is_vmalloc_addr(&self, addr: VirtAddr) -> bool {
        let l = &self.layout;
        (l.vmalloc_start <= addr && addr < l.vmalloc_end) || self.chunks.is_vmalloc_addr(addr)
    }
}

/// The figures of `/proc/meminfo` that the virtual memory reports.
pub(crate) struct VmMeminfo {
    pub(crate) vmalloc_total_kb: u64,
    pub(crate) vmalloc_used_kb: u64,
    pub(crate) percpu_kb: u64,
}

impl<B: BuddyBackend, C: ?Sized + CpuContext> MemoryManager<B, C> {
    /// The machine's kernel virtual layout.
    pub fn virtual_layout(&self) -> VirtualLayout {
        self.vm.layout
    }

    /// The vmalloc space, for the whole `kmm-vmalloc` API (`vmap`,
    /// `vmalloc_array`, `find_vm_area`, `as_ptr`, ...). It covers the
    /// vmalloc range below the per-CPU chunks.
    pub fn vmalloc_space(&self) -> &VmallocSpace {
        &self.vm.vmalloc
    }

    /// The highmem mappings, for the guard-based API (`kmap` returning a
    /// [`kmm_highmem::KmapGuard`], `kmap_local_page`, `page_address`, ...).
    pub fn highmem(&self) -> &Highmem {
        &self.vm.highmem
    }

    /// The dynamic per-CPU allocator, for `per_cpu_ptr` and the typed
    /// `this_cpu_*` operations. On a toy machine it is set up (taking its
    /// first chunk from vmalloc) on first use.
    ///
    /// # Errors
    ///
    /// [`KmmError::Percpu`] if the first chunk cannot be had.
    pub fn percpu(&self) -> Result<&PercpuAllocator<VmallocChunks>, KmmError> {
        self.vm.percpu()
    }

    /// The vmap'ed interrupt stacks, one per CPU, allocated at boot
    /// (`irq_init_percpu_irqstack`); none on a toy machine.
    pub fn irq_stacks(&self) -> &[VmapStack] {
        &self.vm.irq_stacks
    }

    /// Allocates `size` bytes of virtually contiguous memory (`vmalloc`,
    /// `mm/vmalloc.c`); see [`VmallocSpace::vmalloc`].
    ///
    /// # Errors
    ///
    /// [`KmmError::Vmalloc`]; nothing changes.
    pub fn vmalloc(&self, size: usize, gfp: Gfp) -> Result<VirtAddr, KmmError> {
        Ok(self.vm.vmalloc.vmalloc(size, gfp, VMALLOC_CALLER)?)
    }

    /// [`MemoryManager::vmalloc`], zeroed (`vzalloc`, `mm/vmalloc.c`).
    ///
    /// # Errors
    ///
    /// [`KmmError::Vmalloc`]; nothing changes.
    pub fn vzalloc(&self, size: usize, gfp: Gfp) -> Result<VirtAddr, KmmError> {
        Ok(self.vm.vmalloc.vzalloc(size, gfp, VZALLOC_CALLER)?)
    }

    /// Frees a vmalloc area (`vfree`, `mm/vmalloc.c`); address 0 does nothing.
    ///
    /// # Errors
    ///
    /// [`KmmError::Vmalloc`] for an address that starts no area (a
    /// per-CPU chunk or an interrupt stack is no area of yours), a double
    /// free or a misaligned address; nothing changes.
    pub fn vfree(&self, addr: VirtAddr) -> Result<(), KmmError> {
        if self.vm.irq_stacks.iter().any(|s| s.guard() == addr) {
            return Err(kmm_vmalloc::VmallocError::NotAnArea(addr).into());
        }
        Ok(self.vm.vmalloc.vfree(addr)?)
    }

    /// The frame mapped at a vmalloc address (`vmalloc_to_page`,
    /// `mm/vmalloc.c`), per-CPU chunks included.
    pub fn vmalloc_to_page(&self, addr: VirtAddr) -> Option<Pfn> {
        self.vm
            .vmalloc
            .vmalloc_to_page(addr)
            .or_else(|| self.vm.chunks.vmalloc_to_page(addr))
    }

    /// Whether `addr` lies in `[VMALLOC_START, VMALLOC_END)`, or among the
    /// per-CPU chunks (`is_vmalloc_addr`, `mm/vmalloc.c`).
    pub fn is_vmalloc_addr(&self, addr: VirtAddr) -> bool {
        self.vm.is_vmalloc_addr(addr)
    }

    /// Maps `pfn` until [`MemoryManager::kunmap`] (`kmap`,
    /// `include/linux/highmem-internal.h`): a lowmem frame's direct-map
    /// address, or a pkmap slot for a highmem frame. Fails instead of waiting
    /// when every slot has users.
    ///
    /// # Errors
    ///
    /// [`KmmError::Highmem`]; nothing changes.
    pub fn kmap(&self, pfn: Pfn) -> Result<VirtAddr, KmmError> {
        Ok(self.vm.highmem.try_kmap(pfn)?.into_raw())
    }

    /// Drops one user of the kmap of `pfn` (`kunmap`, `mm/highmem.c`).
    ///
    /// # Errors
    ///
    /// [`KmmError::Highmem`] if the highmem frame is not kmapped; nothing changes.
    pub fn kunmap(&self, pfn: Pfn) -> Result<(), KmmError> {
        Ok(self.vm.highmem.kunmap(pfn)?)
    }

    /// Maps `pfn` in the next kmap_atomic slot of this CPU, with preemption
    /// disabled until [`MemoryManager::kunmap_atomic`] (`kmap_atomic`).
    ///
    /// # Errors
    ///
    /// [`KmmError::Highmem`] (16 mappings held already, say); nothing changes.
    pub fn kmap_atomic(&self, pfn: Pfn) -> Result<VirtAddr, KmmError> {
        Ok(self.vm.highmem.kmap_atomic(pfn)?.into_raw())
    }

    /// Releases the most recent kmap_atomic mapping of this CPU
    /// (`kunmap_atomic`).
    ///
    /// # Errors
    ///
    /// [`KmmError::Highmem`] out of LIFO order or for an address that is
    /// no kmap_atomic mapping; nothing changes.
    pub fn kunmap_atomic(&self, addr: VirtAddr) -> Result<(), KmmError> {
        Ok(self.vm.highmem.kunmap_atomic(addr)?)
    }

    /// Allocates `size` bytes aligned to `align` for every CPU, zeroed
    /// (`__alloc_percpu`, `mm/percpu.c`); new chunks come from vmalloc.
    ///
    /// # Errors
    ///
    /// [`KmmError::Percpu`]; nothing changes.
    #[doc(alias = "__alloc_percpu")]
    pub fn alloc_percpu(&self, size: usize, align: usize) -> Result<PercpuPtr, KmmError> {
        Ok(self.vm.percpu()?.alloc(size, align)?)
    }

    /// Frees a per-CPU allocation (`free_percpu`, `mm/percpu.c`); an empty
    /// chunk other than the first goes back to vmalloc.
    ///
    /// # Errors
    ///
    /// [`KmmError::Percpu`]; nothing changes.
    pub fn free_percpu(&self, ptr: PercpuPtr) -> Result<(), KmmError> {
        Ok(self.vm.percpu()?.free_percpu(ptr)?)
    }

    /// The index (in address order) of the per-CPU chunk holding `ptr`.
    pub fn percpu_chunk_of(&self, ptr: PercpuPtr) -> Option<usize> {
        let pcpu = self.vm.percpu.get()?;
        let unit = pcpu.unit_size();
        pcpu.chunks_info()
            .iter()
            .position(|c| c.base <= ptr.addr() && ptr.addr() < c.base + unit)
    }

    /// `/proc/vmallocinfo`: the vmalloc areas and the per-CPU chunks, in
    /// address order.
    pub(crate) fn vmallocinfo(&self) -> String {
        // Each line starts with `0x<start>-`; the two spaces' lines are merged by it.
        let start = |line: &str| {
            line.strip_prefix("0x")
                .and_then(|l| l.split('-').next())
                .and_then(|hex| usize::from_str_radix(hex, 16).ok())
                .unwrap_or(0)
        };
        let mut lines: Vec<(usize, String)> = Vec::new();
        for space in [&self.vm.vmalloc, &*self.vm.chunks] {
            for line in space.vmallocinfo().lines() {
                lines.push((start(line), String::from(line)));
            }
        }
        lines.sort_by_key(|(start, _)| *start);
        let mut out = String::new();
        for (_, line) in lines {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// The vmalloc and per-CPU figures of `/proc/meminfo`.
    pub(crate) fn vm_meminfo(&self) -> VmMeminfo {
        let kb = |pages: usize| (pages as u64) * (PAGE_SIZE as u64 / 1024);
        VmMeminfo {
            vmalloc_total_kb: (self.vm.layout.vmalloc_total() >> 10) as u64,
            vmalloc_used_kb: kb(self.vm.vmalloc.nr_vmalloc_pages()),
            percpu_kb: self.vm.percpu.get().map_or(0, |p| kb(p.nr_pages())),
        }
    }

    /// Checks the vmalloc spaces and the highmem mappings.
    pub(crate) fn check_vm_invariants(&self) -> Result<(), String> {
        self.vm.vmalloc.check_invariants()?;
        self.vm.chunks.check_invariants()?;
        self.vm.highmem.check_invariants()?;
        if let Some(p) = self.vm.percpu.get() {
            p.check_invariants()?;
        }
        Ok(())
    }
}
