//! `VmallocSpace`: the vmalloc address space of `mm/vmalloc.c` over a page
//! allocator and an MMU.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::ptr::NonNull;

use kmm_gfp::Gfp;
use kmm_page::{Mmu, MmuError, PAGE_SHIFT, PAGE_SIZE, PageAllocator, Pfn, Prot, VirtAddr};
use spin::Mutex;

use crate::area::{self, AreaKind, AreaTree, VmStruct, VmapArea};
use crate::error::{FreeFailure, VmallocError};

/// `32 MiB / PAGE_SIZE`: the lazily freed pages allowed per `fls(cpus)`.
const LAZY_PAGES_PER_CPU_BIT: usize = (32 << 20) / PAGE_SIZE;

/// `lazy_max_pages()` of `mm/vmalloc.c`: `fls(nr_cpus) * 32 MiB / PAGE_SIZE`.
///
/// ```
/// assert_eq!(kmm_vmalloc::lazy_max_pages(4), 3 * 8192);
/// ```
pub const fn lazy_max_pages(nr_cpus: usize) -> usize {
    let fls = (usize::BITS - nr_cpus.leading_zeros()) as usize;
    fls * LAZY_PAGES_PER_CPU_BIT
}

/// One area as `/proc/vmallocinfo` sees it: a busy area, or a lazily freed
/// one that waits for a purge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmAreaInfo {
    /// First address of the area (`va_start`), guard pages included.
    pub start: VirtAddr,
    /// One past the last address (`va_end`), guard pages included.
    pub end: VirtAddr,
    /// What the area holds; `None` for an unpurged lazily freed area.
    pub kind: Option<AreaKind>,
    /// The frames mapped, lowest address first (empty for unpurged areas).
    pub pages: Vec<Pfn>,
    /// The first mapped address: `start`, or `start + PAGE_SIZE` for a
    /// vmap'ed stack, whose guard page is below it.
    pub addr: VirtAddr,
    /// The caller recorded at allocation (empty for unpurged areas).
    pub caller: &'static str,
}

impl VmAreaInfo {
    /// The size in bytes, guard pages included (`vm->size`).
    pub fn size(&self) -> usize {
        self.end.0 - self.start.0
    }
}

/// The `/proc/meminfo` lines about vmalloc (`fs/proc/meminfo.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VmallocMeminfo {
    /// `VmallocTotal`: the size of the space in KiB (`VMALLOC_END - VMALLOC_START`).
    pub total_kb: usize,
    /// `VmallocUsed`: pages that vmalloc allocated, in KiB (`vmalloc_nr_pages()`, Linux 5.3+).
    pub used_kb: usize,
    /// `VmallocChunk`: always 0, as since Linux 4.4.
    pub chunk_kb: usize,
}

impl fmt::Display for VmallocMeminfo {
    /// The three lines as `show_val_kb` prints them: a 16-column label, the
    /// value right-aligned in 8 columns, ` kB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "VmallocTotal:   {:>8} kB", self.total_kb)?;
        writeln!(f, "VmallocUsed:    {:>8} kB", self.used_kb)?;
        writeln!(f, "VmallocChunk:   {:>8} kB", self.chunk_kb)
    }
}

/// The state under the lock.
struct Inner {
    /// Busy areas (`vmap_area_root`).
    busy: AreaTree,
    /// Lazily freed areas, unmapped but not yet reusable (`purge_vmap_area_root`).
    lazy: AreaTree,
    /// Free ranges, merged (`free_vmap_area_root`).
    free: AreaTree,
    /// Pages of the lazily freed areas, guard pages included (`vmap_lazy_nr`).
    lazy_nr: usize,
    /// The purge threshold (`lazy_max_pages()`).
    lazy_max: usize,
    /// Pages held by `VM_ALLOC` areas (`nr_vmalloc_pages`).
    nr_vmalloc_pages: usize,
    /// The machine's RAM in pages, if known (`totalram_pages()`).
    totalram: Option<usize>,
    /// Purges done so far.
    purges: usize,
}

/// What a new area maps.
enum Backing<'a> {
    /// Allocate `nr_pages` order-0 pages with this gfp (`VM_ALLOC`).
    Alloc { nr_pages: usize, gfp: Gfp },
    /// Map these caller frames (`VM_MAP`).
    Map(&'a [Pfn]),
}

/// The vmalloc address space `[VMALLOC_START, VMALLOC_END)` of
/// `mm/vmalloc.c`: virtually contiguous areas over frames that need not be
/// contiguous, each followed by an unmapped guard page.
///
/// Areas come first fit from the lowest free address. Freed areas are
/// unmapped and their pages given back at once, but their addresses are
/// reused only after a purge, which runs when the lazily freed pages exceed
/// [`VmallocSpace::lazy_max_pages`] (one TLB flush for all of them, as
/// Linux's lazy TLB flush does), when a request finds no room, or on
/// [`VmallocSpace::purge`].
///
/// One lock guards the area trees; it is held across the page allocations
/// and the mappings of a request, so the page allocator and the MMU must
/// not call back into this space.
pub struct VmallocSpace {
    pages: Arc<dyn PageAllocator>,
    mmu: Arc<dyn Mmu>,
    start: VirtAddr,
    end: VirtAddr,
    /// Hex digits of an address in `/proc/vmallocinfo` (`%pK` prints the full
    /// pointer width): 8 for a space below 4 GiB (an x86-32 layout), else
    /// 16.
    addr_digits: usize,
    inner: Mutex<Inner>,
}

impl fmt::Debug for VmallocSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("VmallocSpace")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("busy", &inner.busy.iter().count())
            .field("lazy_nr", &inner.lazy_nr)
            .field("lazy_max", &inner.lazy_max)
            .field("nr_vmalloc_pages", &inner.nr_vmalloc_pages)
            .finish_non_exhaustive()
    }
}

/// The page `i` pages above `va`.
fn page(va: usize, i: usize) -> VirtAddr {
    VirtAddr(va + i * PAGE_SIZE)
}

impl VmallocSpace {
    /// A space over `[start, end)`, which must be page aligned, not empty,
    /// not start at address 0 (that is `NULL`) and lie inside the MMU's
    /// window. The purge threshold is [`lazy_max_pages`]`(nr_cpus)` (at
    /// least one CPU is assumed).
    ///
    /// # Errors
    ///
    /// [`VmallocError::BadRange`] for a range that breaks those rules.
    pub fn new(
        pages: Arc<dyn PageAllocator>,
        mmu: Arc<dyn Mmu>,
        start: VirtAddr,
        end: VirtAddr,
        nr_cpus: usize,
    ) -> Result<Self, VmallocError> {
        let bad = |why| Err(VmallocError::BadRange { start, end, why });
        if start.page_offset() != 0 || end.page_offset() != 0 {
            return bad("not page aligned");
        }
        if start >= end {
            return bad("empty");
        }
        if start.0 == 0 {
            return bad("starts at address 0, which is NULL");
        }
        let (w_start, w_end) = mmu.window();
        if start < w_start || end > w_end {
            return bad("outside the MMU window");
        }
        let mut free = area::new_tree();
        free.insert(VmapArea::new(start.0, end.0, None));
        let addr_digits = if end.0 as u64 <= 1 << 32 {
            8
        } else {
            2 * size_of::<usize>()
        };
        Ok(VmallocSpace {
            pages,
            mmu,
            start,
            end,
            addr_digits,
            inner: Mutex::new(Inner {
                busy: area::new_tree(),
                lazy: area::new_tree(),
                free,
                lazy_nr: 0,
                lazy_max: lazy_max_pages(nr_cpus.max(1)),
                nr_vmalloc_pages: 0,
                totalram: None,
                purges: 0,
            }),
        })
    }

    /// A space over the MMU's whole window (see [`VmallocSpace::new`]).
    ///
    /// # Errors
    ///
    /// [`VmallocError::BadRange`] if the window starts at address 0 or is not
    /// page aligned.
    pub fn with_window(
        pages: Arc<dyn PageAllocator>,
        mmu: Arc<dyn Mmu>,
        nr_cpus: usize,
    ) -> Result<Self, VmallocError> {
        let (start, end) = mmu.window();
        VmallocSpace::new(pages, mmu, start, end, nr_cpus)
    }

    /// `VMALLOC_START`.
    pub fn start(&self) -> VirtAddr {
        self.start
    }

    /// `VMALLOC_END`.
    pub fn end(&self) -> VirtAddr {
        self.end
    }

    /// The page allocator the pages come from.
    pub fn page_allocator(&self) -> &Arc<dyn PageAllocator> {
        &self.pages
    }

    /// The MMU the areas are mapped with.
    pub fn mmu(&self) -> &Arc<dyn Mmu> {
        &self.mmu
    }

    /// The purge threshold in pages (`lazy_max_pages()`).
    pub fn lazy_max_pages(&self) -> usize {
        self.inner.lock().lazy_max
    }

    /// Sets the purge threshold in pages: a free that brings the lazily freed
    /// pages above it purges them all. 0 purges on every free (no lazy
    /// reuse). If more pages than that wait already, they are purged now.
    pub fn set_lazy_max_pages(&self, pages: usize) {
        let mut inner = self.inner.lock();
        inner.lazy_max = pages;
        if inner.lazy_nr > pages {
            self.purge_locked(&mut inner);
        }
    }

    /// Sets the machine's RAM in pages (`totalram_pages()`): larger requests
    /// fail with [`VmallocError::TooLarge`]. `None` (the default) leaves only
    /// the virtual space as a limit.
    pub fn set_totalram_pages(&self, pages: Option<usize>) {
        self.inner.lock().totalram = pages;
    }

    /// Pages of the lazily freed areas that wait for a purge, guard pages
    /// included (`vmap_lazy_nr`).
    pub fn nr_lazy_pages(&self) -> usize {
        self.inner.lock().lazy_nr
    }

    /// How many purges have run.
    pub fn nr_purges(&self) -> usize {
        self.inner.lock().purges
    }

    /// Pages that vmalloc allocated and holds (`vmalloc_nr_pages()`).
    #[doc(alias = "vmalloc_nr_pages")]
    pub fn nr_vmalloc_pages(&self) -> usize {
        self.inner.lock().nr_vmalloc_pages
    }

    /// Whether `addr` lies in `[VMALLOC_START, VMALLOC_END)`
    /// (`is_vmalloc_addr`, `mm/vmalloc.c`).
    pub fn is_vmalloc_addr(&self, addr: VirtAddr) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Allocates `size` bytes of virtually contiguous memory
    /// (`__vmalloc_node_range`, `mm/vmalloc.c`): the size is rounded up to
    /// pages, a range of that size plus a guard page is taken first fit, and
    /// each page is an order-0 page from the page allocator, mapped
    /// `PAGE_KERNEL`. As in Linux, `__GFP_HIGHMEM` is added to `gfp` unless
    /// it asks for `__GFP_DMA` or `__GFP_DMA32`, so the pages may be highmem;
    /// `__GFP_ZERO` zeroes them. Returns the first address of the area.
    ///
    /// # Errors
    ///
    /// [`VmallocError::ZeroSize`], [`VmallocError::SizeOverflow`],
    /// [`VmallocError::TooLarge`], [`VmallocError::NoVirtualSpace`],
    /// [`VmallocError::NoMemory`], [`VmallocError::Mmu`]; nothing is left
    /// allocated or mapped after any of them.
    #[doc(alias = "__vmalloc")]
    #[doc(alias = "__vmalloc_node_range")]
    pub fn vmalloc(
        &self,
        size: usize,
        gfp: Gfp,
        caller: &'static str,
    ) -> Result<VirtAddr, VmallocError> {
        self.vmalloc_area(size, gfp, 0, caller)
    }

    /// [`VmallocSpace::vmalloc`] with `__GFP_ZERO`: the memory is zeroed
    /// (`vzalloc`, `mm/vmalloc.c`).
    ///
    /// # Errors
    ///
    /// As [`VmallocSpace::vmalloc`].
    pub fn vzalloc(
        &self,
        size: usize,
        gfp: Gfp,
        caller: &'static str,
    ) -> Result<VirtAddr, VmallocError> {
        self.vmalloc(size, gfp | Gfp::ZERO, caller)
    }

    /// Allocates an array of `n` elements of `size` bytes
    /// (`vmalloc_array`, `mm/util.c`).
    ///
    /// # Errors
    ///
    /// [`VmallocError::SizeOverflow`] if `n * size` overflows (with `size`
    /// `usize::MAX`), else as [`VmallocSpace::vmalloc`].
    pub fn vmalloc_array(
        &self,
        n: usize,
        size: usize,
        gfp: Gfp,
        caller: &'static str,
    ) -> Result<VirtAddr, VmallocError> {
        let bytes = n
            .checked_mul(size)
            .ok_or(VmallocError::SizeOverflow { size: usize::MAX })?;
        self.vmalloc(bytes, gfp, caller)
    }

    /// [`VmallocSpace::vmalloc_array`], zeroed (`vcalloc`, `mm/util.c`).
    ///
    /// # Errors
    ///
    /// As [`VmallocSpace::vmalloc_array`].
    pub fn vcalloc(
        &self,
        n: usize,
        size: usize,
        gfp: Gfp,
        caller: &'static str,
    ) -> Result<VirtAddr, VmallocError> {
        self.vmalloc_array(n, size, gfp | Gfp::ZERO, caller)
    }

    /// The `vmalloc` core with `lead_guard` unmapped pages below the mapped
    /// ones (1 for a vmap'ed stack). Returns the area's start (the lowest
    /// guard page, if any).
    pub(crate) fn vmalloc_area(
        &self,
        size: usize,
        gfp: Gfp,
        lead_guard: usize,
        caller: &'static str,
    ) -> Result<VirtAddr, VmallocError> {
        if size == 0 {
            return Err(VmallocError::ZeroSize);
        }
        let nr_pages = size.div_ceil(PAGE_SIZE);
        let gfp = if gfp.intersects(Gfp::DMA | Gfp::DMA32) {
            gfp
        } else {
            gfp | Gfp::HIGHMEM
        };
        self.new_area(
            size >> PAGE_SHIFT,
            size,
            nr_pages,
            Backing::Alloc { nr_pages, gfp },
            Prot::KERNEL,
            lead_guard,
            caller,
        )
    }

    /// Maps `pfns`, which the caller owns, at a virtually contiguous range
    /// followed by a guard page (`vmap` with `VM_MAP`, `mm/vmalloc.c`).
    /// The frames stay the caller's: [`VmallocSpace::vunmap`] removes the
    /// mapping and frees nothing.
    ///
    /// # Errors
    ///
    /// [`VmallocError::ZeroSize`] for no frames, [`VmallocError::TooLarge`]
    /// for more frames than the RAM has, [`VmallocError::SizeOverflow`],
    /// [`VmallocError::NoVirtualSpace`], and [`VmallocError::Mmu`] if the MMU
    /// refuses a frame; nothing is mapped after an error.
    pub fn vmap(
        &self,
        pfns: &[Pfn],
        prot: Prot,
        caller: &'static str,
    ) -> Result<VirtAddr, VmallocError> {
        if pfns.is_empty() {
            return Err(VmallocError::ZeroSize);
        }
        let size = pfns
            .len()
            .checked_mul(PAGE_SIZE)
            .ok_or(VmallocError::SizeOverflow { size: usize::MAX })?;
        self.new_area(
            pfns.len(),
            size,
            pfns.len(),
            Backing::Map(pfns),
            prot,
            0,
            caller,
        )
    }

    /// Reserves, fills and maps a new area; on any failure gives everything
    /// back and changes nothing.
    #[expect(
        clippy::too_many_arguments,
        reason = "the private core of vmalloc and vmap, mirroring __vmalloc_node_range"
    )]
    fn new_area(
        &self,
        ram_pages: usize,
        size: usize,
        nr_pages: usize,
        backing: Backing<'_>,
        prot: Prot,
        lead_guard: usize,
        caller: &'static str,
    ) -> Result<VirtAddr, VmallocError> {
        let mut inner = self.inner.lock();
        if let Some(totalram) = inner.totalram
            && ram_pages > totalram
        {
            return Err(VmallocError::TooLarge {
                pages: ram_pages,
                totalram,
            });
        }
        let va_size = nr_pages
            .checked_add(1 + lead_guard)
            .and_then(|p| p.checked_mul(PAGE_SIZE))
            .ok_or(VmallocError::SizeOverflow { size })?;
        if va_size > self.end.0 - self.start.0 {
            return Err(VmallocError::NoVirtualSpace { size: va_size });
        }
        let start = self.alloc_vmap_area(&mut inner, va_size)?;
        let map_at = start + lead_guard * PAGE_SIZE;
        let release = |inner: &mut Inner| {
            area::free_range(&mut inner.free, VmapArea::new(start, start + va_size, None));
        };

        let (kind, pages) = match backing {
            Backing::Alloc { nr_pages, gfp } => {
                let mut pages = Vec::new();
                if pages.try_reserve_exact(nr_pages).is_err() {
                    release(&mut inner);
                    return Err(VmallocError::NoMemory(kmm_page::PageError::NoBlock {
                        order: 0,
                    }));
                }
                for _ in 0..nr_pages {
                    match self.pages.alloc_pages(gfp, 0) {
                        Ok(pfn) => pages.push(pfn),
                        Err(e) => {
                            self.free_frames(&pages);
                            release(&mut inner);
                            return Err(VmallocError::NoMemory(e));
                        }
                    }
                }
                (AreaKind::Vmalloc, pages)
            }
            Backing::Map(pfns) => (AreaKind::Vmap, pfns.to_vec()),
        };

        if let Err(e) = self.map_frames(map_at, &pages, prot) {
            if kind == AreaKind::Vmalloc {
                self.free_frames(&pages);
            }
            release(&mut inner);
            return Err(VmallocError::Mmu(e));
        }
        if kind == AreaKind::Vmalloc {
            inner.nr_vmalloc_pages += pages.len();
        }
        inner.busy.insert(VmapArea::new(
            start,
            start + va_size,
            Some(VmStruct {
                kind,
                pages,
                lead_guard,
                caller,
            }),
        ));
        Ok(VirtAddr(start))
    }

    /// Takes a free range of `size` bytes, purging the lazily freed areas
    /// and retrying once if none is large enough (`alloc_vmap_area`).
    fn alloc_vmap_area(&self, inner: &mut Inner, size: usize) -> Result<usize, VmallocError> {
        if let Some(start) = area::alloc_range(&mut inner.free, size) {
            return Ok(start);
        }
        if !inner.lazy.is_empty() {
            self.purge_locked(inner);
            if let Some(start) = area::alloc_range(&mut inner.free, size) {
                return Ok(start);
            }
        }
        Err(VmallocError::NoVirtualSpace { size })
    }

    /// Maps `pfns` from `va`, one `map_range` per run of physically
    /// contiguous frames (one host mapping each); all or nothing.
    fn map_frames(&self, va: usize, pfns: &[Pfn], prot: Prot) -> Result<(), MmuError> {
        let mut i = 0;
        while i < pfns.len() {
            let mut run = 1;
            while i + run < pfns.len() && pfns[i + run].0 == pfns[i].0.wrapping_add(run) {
                run += 1;
            }
            if let Err(e) = self.mmu.map_range(page(va, i), pfns[i], run, prot) {
                for j in 0..i {
                    let _ = self.mmu.unmap(page(va, j));
                }
                return Err(e);
            }
            i += run;
        }
        Ok(())
    }

    /// Gives order-0 frames back to the page allocator; the first refusal.
    fn free_frames(&self, pfns: &[Pfn]) -> Option<FreeFailure> {
        let mut failure = None;
        for &pfn in pfns {
            if let Err(e) = self.pages.free_pages(pfn, 0) {
                failure.get_or_insert(FreeFailure::Page(e));
            }
        }
        failure
    }

    /// Frees the area that starts at `addr` (`vfree`, `mm/vmalloc.c`): its
    /// pages are unmapped and given back to the page allocator at once; the
    /// address range is lazily freed and becomes reusable after the next
    /// purge. `vfree` of a vmap'ed area unmaps it and frees no page, as in
    /// Linux. `vfree(NULL)` (address 0) does nothing.
    ///
    /// # Errors
    ///
    /// [`VmallocError::Misaligned`], [`VmallocError::NotAnArea`] for an
    /// address that starts no live area (outside the space, inside an area),
    /// [`VmallocError::DoubleFree`] for an area freed already and not yet
    /// purged; nothing changes after them. [`VmallocError::PageFree`] if the
    /// page allocator or the MMU refused a page: the area is freed anyway.
    pub fn vfree(&self, addr: VirtAddr) -> Result<(), VmallocError> {
        if addr.0 == 0 {
            return Ok(());
        }
        self.remove_area(addr, None)
    }

    /// Removes the mapping of a vmap'ed area and frees its address range
    /// lazily, leaving its frames to the caller (`vunmap`, `mm/vmalloc.c`).
    ///
    /// # Errors
    ///
    /// As [`VmallocSpace::vfree`], and [`VmallocError::NotVmap`] for an area
    /// that vmalloc allocated (its pages would leak; Linux would leak them).
    pub fn vunmap(&self, addr: VirtAddr) -> Result<(), VmallocError> {
        self.remove_area(addr, Some(AreaKind::Vmap))
    }

    /// Unlinks, unmaps and lazily frees the area at `addr`, freeing its pages
    /// if vmalloc owns them. `only` restricts the kinds accepted.
    pub(crate) fn remove_area(
        &self,
        addr: VirtAddr,
        only: Option<AreaKind>,
    ) -> Result<(), VmallocError> {
        if addr.page_offset() != 0 {
            return Err(VmallocError::Misaligned(addr));
        }
        let mut inner = self.inner.lock();
        let kind = match inner.busy.find(&addr.0).get() {
            Some(a) => a.vm.as_ref().map(|vm| vm.kind),
            None if !inner.lazy.find(&addr.0).is_null() => {
                return Err(VmallocError::DoubleFree(addr));
            }
            None => return Err(VmallocError::NotAnArea(addr)),
        };
        if let Some(want) = only
            && kind != Some(want)
        {
            return Err(VmallocError::NotVmap(addr));
        }
        let Some(mut node) = inner.busy.find_mut(&addr.0).remove() else {
            return Err(VmallocError::NotAnArea(addr));
        };
        let mut failure = None;
        if let Some(vm) = node.vm.take() {
            let map_at = node.start + vm.lead_guard * PAGE_SIZE;
            for i in 0..vm.pages.len() {
                if let Err(e) = self.mmu.unmap(page(map_at, i)) {
                    failure.get_or_insert(FreeFailure::Mmu(e));
                }
            }
            if vm.kind == AreaKind::Vmalloc {
                inner.nr_vmalloc_pages -= vm.pages.len();
                if let Some(f) = self.free_frames(&vm.pages) {
                    failure.get_or_insert(f);
                }
            }
        }
        inner.lazy_nr += node.size() / PAGE_SIZE;
        inner.lazy.insert(node);
        if inner.lazy_nr > inner.lazy_max {
            self.purge_locked(&mut inner);
        }
        match failure {
            None => Ok(()),
            Some(why) => Err(VmallocError::PageFree { addr, why }),
        }
    }

    /// Purges the lazily freed areas now: one TLB flush over all of them,
    /// then their ranges go back to the free ranges and may be reused
    /// (`purge_vmap_area_lazy`, `mm/vmalloc.c`).
    #[doc(alias = "purge_vmap_area_lazy")]
    #[doc(alias = "vm_unmap_aliases")]
    pub fn purge(&self) {
        let mut inner = self.inner.lock();
        self.purge_locked(&mut inner);
    }

    /// [`VmallocSpace::purge`] under the lock (`__purge_vmap_area_lazy`).
    fn purge_locked(&self, inner: &mut Inner) {
        let (Some(first), Some(last)) = (inner.lazy.front().get(), inner.lazy.back().get()) else {
            return;
        };
        self.mmu
            .flush_tlb_range(VirtAddr(first.start), VirtAddr(last.end));
        let lazy = inner.lazy.take();
        for node in lazy {
            area::free_range(&mut inner.free, node);
        }
        inner.lazy_nr = 0;
        inner.purges += 1;
    }

    /// The frame mapped at `addr`, by a page-table walk through the MMU
    /// (`vmalloc_to_page`/`vmalloc_to_pfn`, `mm/vmalloc.c`); `None` outside
    /// the space, on a guard page, or on a freed area.
    #[doc(alias = "vmalloc_to_pfn")]
    pub fn vmalloc_to_page(&self, addr: VirtAddr) -> Option<Pfn> {
        if !self.is_vmalloc_addr(addr) {
            return None;
        }
        self.mmu.translate(addr)
    }

    /// A pointer to the byte at `addr` when the MMU maps real memory of this
    /// process (the host MMU), `None` otherwise or when nothing is mapped
    /// there.
    pub fn as_ptr(&self, addr: VirtAddr) -> Option<NonNull<u8>> {
        if !self.is_vmalloc_addr(addr) {
            return None;
        }
        self.mmu.as_ptr(addr)
    }

    /// The busy area that contains `addr` (`find_vm_area`, which wants the
    /// start; this one takes any address of the area, guard pages included).
    pub fn find_vm_area(&self, addr: VirtAddr) -> Option<VmAreaInfo> {
        let inner = self.inner.lock();
        let a = inner
            .busy
            .upper_bound(intrusive_collections::Bound::Included(&addr.0))
            .get()?;
        (addr.0 < a.end).then(|| info(a))
    }

    /// Every busy and lazily freed area, sorted by address.
    pub fn areas(&self) -> Vec<VmAreaInfo> {
        let inner = self.inner.lock();
        let mut all: Vec<VmAreaInfo> = inner
            .busy
            .iter()
            .chain(inner.lazy.iter())
            .map(info)
            .collect();
        all.sort_by_key(|a| a.start);
        all
    }

    /// The free ranges `[start, end)`, sorted by address.
    pub fn free_ranges(&self) -> Vec<(VirtAddr, VirtAddr)> {
        let inner = self.inner.lock();
        inner
            .free
            .iter()
            .map(|r| (VirtAddr(r.start), VirtAddr(r.end)))
            .collect()
    }

    /// `/proc/vmallocinfo` (`vmalloc_info_show`, `mm/vmalloc.c`): one line
    /// per area, sorted by address. A busy area prints
    /// `0x<start>-0x<end> <size> <caller> pages=<n> vmalloc N0=<n>` (the size
    /// includes the guard page; `pages=` and `N0=` only when the area owns
    /// pages, `vmap` instead of `vmalloc` for a vmap'ed area), a lazily freed
    /// one `0x<start>-0x<end> <size> unpurged vm_area`. Addresses print at
    /// full pointer width, as `%pK` does for a privileged reader.
    #[doc(alias = "vmalloc_info_show")]
    pub fn vmallocinfo(&self) -> String {
        let w = self.addr_digits;
        let mut out = String::new();
        for a in self.areas() {
            let _ = write!(
                out,
                "0x{:0w$x}-0x{:0w$x} {:>7}",
                a.start.0,
                a.end.0,
                a.size()
            );
            match a.kind {
                None => out.push_str(" unpurged vm_area"),
                Some(kind) => {
                    if !a.caller.is_empty() {
                        out.push(' ');
                        out.push_str(a.caller);
                    }
                    let owned = kind == AreaKind::Vmalloc && !a.pages.is_empty();
                    if owned {
                        let _ = write!(out, " pages={}", a.pages.len());
                    }
                    out.push_str(match kind {
                        AreaKind::Vmalloc => " vmalloc",
                        AreaKind::Vmap => " vmap",
                    });
                    if owned {
                        let _ = write!(out, " N0={}", a.pages.len());
                    }
                }
            }
            out.push('\n');
        }
        out
    }

    /// The vmalloc lines of `/proc/meminfo` (`fs/proc/meminfo.c`).
    pub fn meminfo(&self) -> VmallocMeminfo {
        let inner = self.inner.lock();
        VmallocMeminfo {
            total_kb: (self.end.0 - self.start.0) >> 10,
            used_kb: inner.nr_vmalloc_pages << (PAGE_SHIFT - 10),
            chunk_kb: 0,
        }
    }

    /// Checks the bookkeeping against itself and the MMU: busy, lazily freed
    /// and free ranges are page aligned and partition the space exactly; free
    /// ranges are merged; every busy area maps its pages where it says and
    /// leaves its guard pages unmapped; lazily freed areas are unmapped; the
    /// counters add up.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        let inner = self.inner.lock();
        let mut all: Vec<(&VmapArea, &'static str)> = inner
            .busy
            .iter()
            .map(|a| (a, "busy"))
            .chain(inner.lazy.iter().map(|a| (a, "lazy")))
            .chain(inner.free.iter().map(|a| (a, "free")))
            .collect();
        all.sort_by_key(|(a, _)| a.start);
        let mut at = self.start.0;
        let mut prev_free = false;
        for &(a, what) in &all {
            if a.start != at {
                return Err(format!(
                    "{what} range {:#x}..{:#x} does not start where the previous ends ({at:#x})",
                    a.start, a.end
                ));
            }
            if a.end <= a.start || a.start % PAGE_SIZE != 0 || a.end % PAGE_SIZE != 0 {
                return Err(format!(
                    "{what} range {:#x}..{:#x} is empty or misaligned",
                    a.start, a.end
                ));
            }
            let is_free = what == "free";
            if is_free && prev_free {
                return Err(format!("free range at {:#x} is not merged", a.start));
            }
            prev_free = is_free;
            at = a.end;
            if (what == "busy") != a.vm.is_some() {
                return Err(format!(
                    "{what} range at {:#x} has the wrong vm_struct",
                    a.start
                ));
            }
        }
        if at != self.end.0 {
            return Err(format!(
                "the ranges end at {at:#x}, not at {:#x}",
                self.end.0
            ));
        }

        let mut vmalloc_pages = 0;
        for a in inner.busy.iter() {
            let Some(vm) = &a.vm else { continue };
            let pages = a.size() / PAGE_SIZE;
            if pages != vm.pages.len() + 1 + vm.lead_guard {
                return Err(format!(
                    "area at {:#x}: {pages} pages for {} mapped and {} guard",
                    a.start,
                    vm.pages.len(),
                    1 + vm.lead_guard
                ));
            }
            if vm.kind == AreaKind::Vmalloc {
                vmalloc_pages += vm.pages.len();
            }
            for g in (0..vm.lead_guard).chain([pages - 1]) {
                if let Some(pfn) = self.mmu.translate(page(a.start, g)) {
                    return Err(format!(
                        "guard page {:#x} maps pfn {pfn}",
                        page(a.start, g).0
                    ));
                }
            }
            for (i, &pfn) in vm.pages.iter().enumerate() {
                let va = page(a.start, vm.lead_guard + i);
                if self.mmu.translate(va) != Some(pfn) {
                    return Err(format!(
                        "{:#x} maps {:?}, not pfn {pfn}",
                        va.0,
                        self.mmu.translate(va)
                    ));
                }
            }
        }
        if vmalloc_pages != inner.nr_vmalloc_pages {
            return Err(format!(
                "nr_vmalloc_pages is {}, the areas hold {vmalloc_pages}",
                inner.nr_vmalloc_pages
            ));
        }
        let mut lazy_pages = 0;
        for a in inner.lazy.iter() {
            lazy_pages += a.size() / PAGE_SIZE;
            for i in 0..a.size() / PAGE_SIZE {
                if let Some(pfn) = self.mmu.translate(page(a.start, i)) {
                    return Err(format!(
                        "lazily freed page {:#x} maps pfn {pfn}",
                        page(a.start, i).0
                    ));
                }
            }
        }
        if lazy_pages != inner.lazy_nr {
            return Err(format!(
                "vmap_lazy_nr is {}, the lazy areas hold {lazy_pages} pages",
                inner.lazy_nr
            ));
        }
        if inner.lazy_nr > inner.lazy_max {
            return Err(format!(
                "{} lazy pages wait, above the threshold {}",
                inner.lazy_nr, inner.lazy_max
            ));
        }
        Ok(())
    }
}

/// The public view of an area node.
fn info(a: &VmapArea) -> VmAreaInfo {
    match &a.vm {
        Some(vm) => VmAreaInfo {
            start: VirtAddr(a.start),
            end: VirtAddr(a.end),
            kind: Some(vm.kind),
            pages: vm.pages.clone(),
            addr: page(a.start, vm.lead_guard),
            caller: vm.caller,
        },
        None => VmAreaInfo {
            start: VirtAddr(a.start),
            end: VirtAddr(a.end),
            kind: None,
            pages: Vec::new(),
            addr: VirtAddr(a.start),
            caller: "",
        },
    }
}
