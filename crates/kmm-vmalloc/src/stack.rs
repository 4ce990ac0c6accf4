//! Kernel stacks (`kernel/fork.c`, `arch/x86/kernel/irq_*.c`): thread stacks
//! of `THREAD_SIZE` from the page allocator, vmap'ed stacks (`VMAP_STACK`)
//! with an unmapped guard page below them, and per-CPU interrupt stacks
//! allocated at boot.
//!
//! A stack grows down. A [`DirectStack`] is `2^order` physically contiguous
//! frames in the direct map, so running past its lowest byte lands silently
//! in the neighbouring frame, which belongs to someone else. A [`VmapStack`]
//! lives in the vmalloc space with an unmapped page below its lowest byte,
//! so the same overrun finds no mapping: [`VmapStack::write_at`] and
//! [`VmapStack::check_access`] return [`StackError::Overflow`] through a
//! software MMU, and on the host MMU the guard page is simply not mapped
//! (the CPU would fault).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

use kmm_gfp::Gfp;
use kmm_page::{
    Mmu, PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE, PageAllocator, PageError, Pfn, PfnRange, VirtAddr,
};

use crate::error::VmallocError;
use crate::space::VmallocSpace;

/// The caller vmap'ed thread stacks show in `/proc/vmallocinfo`.
pub const THREAD_STACK_CALLER: &str = "alloc_thread_stack_node";
/// The caller vmap'ed interrupt stacks show in `/proc/vmallocinfo`.
pub const IRQ_STACK_CALLER: &str = "irq_init_percpu_irqstack";

/// The size of a kernel stack (`THREAD_SIZE`), a power-of-two number of
/// pages (`THREAD_SIZE_ORDER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThreadSize {
    order: u32,
}

impl ThreadSize {
    /// x86-64: 16 KiB, order 2 (without KASAN).
    pub const X86_64: ThreadSize = ThreadSize { order: 2 };
    /// x86-32: 8 KiB, order 1.
    pub const X86_32: ThreadSize = ThreadSize { order: 1 };

    /// A stack of `2^order` pages, for `order` up to
    /// `PAGE_ALLOC_COSTLY_ORDER` (x86-64 with KASAN uses 3); `None` above.
    pub const fn from_order(order: u32) -> Option<ThreadSize> {
        if order <= PAGE_ALLOC_COSTLY_ORDER {
            Some(ThreadSize { order })
        } else {
            None
        }
    }

    /// `THREAD_SIZE_ORDER`.
    pub const fn order(self) -> u32 {
        self.order
    }

    /// The number of pages.
    pub const fn pages(self) -> usize {
        1 << self.order
    }

    /// `THREAD_SIZE` in bytes.
    pub const fn bytes(self) -> usize {
        PAGE_SIZE << self.order
    }
}

/// Why a stack operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// The access hit the unmapped guard page below a vmap'ed stack: a stack
    /// overflow, caught instead of corrupting the neighbour.
    #[error("stack overflow: {va:#x} is in the guard page below the stack")]
    Overflow {
        /// The first address of the access that found no mapping.
        va: VirtAddr,
    },
    /// The address is neither in the stack nor in its guard page.
    #[error("{0:#x} is not in this stack or its guard page")]
    NotInStack(VirtAddr),
    /// Nothing is mapped at the address (not a direct-map address, or a
    /// vmap'ed stack whose mapping vanished).
    #[error("nothing is mapped at {0:#x}")]
    NotMapped(VirtAddr),
    /// The access runs below frame 0 or above the address space.
    #[error("the access at offset {offset} of length {len} leaves the address space")]
    OutOfRange {
        /// The offset asked for.
        offset: isize,
        /// The length asked for.
        len: usize,
    },
    /// The page allocator refused the stack, or refused to take it back.
    #[error("page allocator: {0}")]
    Page(PageError),
    /// The vmalloc space refused the stack, or refused to take it back.
    #[error("vmalloc: {0}")]
    Vmalloc(VmallocError),
}

/// A thread stack of `2^order` contiguous frames from the page allocator,
/// reached through the direct map (`alloc_thread_stack_node` without
/// `VMAP_STACK`). Nothing guards its lowest byte.
#[must_use = "a stack must be given back with `DirectStack::free`"]
pub struct DirectStack {
    pfn: Pfn,
    size: ThreadSize,
    pages: Arc<dyn PageAllocator>,
}

impl fmt::Debug for DirectStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectStack")
            .field("pfn", &self.pfn)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Allocates a thread stack of `size` from the page allocator: one block of
/// order `size.order()` (`alloc_thread_stack_node`, `kernel/fork.c`, as
/// built without `VMAP_STACK`). Linux passes `THREADINFO_GFP`
/// (`GFP_KERNEL_ACCOUNT | __GFP_ZERO`).
///
/// # Errors
///
/// [`StackError::Page`] if the page allocator refuses.
#[doc(alias = "alloc_thread_stack_node")]
pub fn alloc_thread_stack(
    pages: &Arc<dyn PageAllocator>,
    gfp: Gfp,
    size: ThreadSize,
) -> Result<DirectStack, StackError> {
    let pfn = pages
        .alloc_pages(gfp, size.order())
        .map_err(StackError::Page)?;
    Ok(DirectStack {
        pfn,
        size,
        pages: Arc::clone(pages),
    })
}

/// Allocates one interrupt stack of `size` per CPU from the page allocator,
/// at boot (`irq_init_percpu_irqstack`, `arch/x86/kernel/irq_32.c`); all or
/// nothing.
///
/// # Errors
///
/// [`StackError::Page`] if the page allocator refuses one; the stacks
/// allocated before it are given back.
pub fn irq_stacks(
    pages: &Arc<dyn PageAllocator>,
    nr_cpus: usize,
    gfp: Gfp,
    size: ThreadSize,
) -> Result<Vec<DirectStack>, StackError> {
    let mut stacks = Vec::with_capacity(nr_cpus);
    for _ in 0..nr_cpus {
        match alloc_thread_stack(pages, gfp, size) {
            Ok(s) => stacks.push(s),
            Err(e) => {
                for s in stacks {
                    let _ = s.free();
                }
                return Err(e);
            }
        }
    }
    Ok(stacks)
}

impl DirectStack {
    /// The first frame (the stack's lowest page).
    pub fn pfn(&self) -> Pfn {
        self.pfn
    }

    /// The stack's size.
    pub fn size(&self) -> ThreadSize {
        self.size
    }

    /// The frames of the stack.
    pub fn frames(&self) -> PfnRange {
        PfnRange::new(self.pfn.0, self.pfn.0 + self.size.pages())
    }

    /// The direct-map address of the stack's lowest byte (`page_address`),
    /// `None` when the frames have no memory behind them.
    pub fn base(&self) -> Option<NonNull<u8>> {
        self.pages.phys_memory().direct_map(self.pfn)
    }

    /// The frames a write of `len` bytes at `offset` from the stack's lowest
    /// byte lands on, lowest first. There is no guard: an offset below 0
    /// lands in the frames below the stack, which belong to someone else.
    ///
    /// # Errors
    ///
    /// [`StackError::OutOfRange`] if the write would leave the frame numbers.
    pub fn write_at(&self, offset: isize, len: usize) -> Result<Vec<Pfn>, StackError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        // `i128` holds every sum of a byte address, an `isize` and a `usize`.
        let page = PAGE_SIZE as i128;
        let first = self.pfn.0 as i128 * page + offset as i128;
        let last = first + len as i128 - 1;
        if first < 0 || last / page > usize::MAX as i128 {
            return Err(StackError::OutOfRange { offset, len });
        }
        Ok((first / page..=last / page)
            .map(|p| Pfn(p as usize))
            .collect())
    }

    /// The frame behind the direct-map address `va` (`virt_to_page`): any
    /// frame, the neighbours' included, since nothing guards the stack.
    ///
    /// # Errors
    ///
    /// [`StackError::NotMapped`] if `va` is not a direct-map address.
    pub fn check_access(&self, va: VirtAddr) -> Result<Pfn, StackError> {
        self.pages
            .phys_memory()
            .virt_to_pfn(va.0)
            .ok_or(StackError::NotMapped(va))
    }

    /// Gives the frames back (`free_thread_stack`).
    ///
    /// # Errors
    ///
    /// [`StackError::Page`] if the page allocator refuses them.
    pub fn free(self) -> Result<(), StackError> {
        self.pages
            .free_pages(self.pfn, self.size.order())
            .map_err(StackError::Page)
    }
}

/// A thread stack in the vmalloc space with an unmapped guard page below its
/// lowest byte (`VMAP_STACK`), and the usual vmalloc guard page above it.
#[must_use = "a stack must be given back with `VmallocSpace::free_vmap_stack`"]
pub struct VmapStack {
    area: VirtAddr,
    size: ThreadSize,
    frames: Vec<Pfn>,
    mmu: Arc<dyn Mmu>,
}

impl fmt::Debug for VmapStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmapStack")
            .field("guard", &self.area)
            .field("size", &self.size)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl VmapStack {
    /// The guard page below the stack (the vmalloc area's start).
    pub fn guard(&self) -> VirtAddr {
        self.area
    }

    /// The stack's lowest byte.
    pub fn bottom(&self) -> VirtAddr {
        VirtAddr(self.area.0 + PAGE_SIZE)
    }

    /// One past the stack's highest byte: where the stack pointer starts.
    pub fn top(&self) -> VirtAddr {
        VirtAddr(self.bottom().0 + self.size.bytes())
    }

    /// The stack's size.
    pub fn size(&self) -> ThreadSize {
        self.size
    }

    /// The frames of the stack, lowest address first; they need not be
    /// contiguous.
    pub fn frames(&self) -> &[Pfn] {
        &self.frames
    }

    /// The frame an access to `va` reaches, through the MMU as the CPU would.
    ///
    /// # Errors
    ///
    /// [`StackError::Overflow`] if `va` is in the guard page,
    /// [`StackError::NotInStack`] if it is outside the stack and its guard,
    /// [`StackError::NotMapped`] if the stack's mapping is gone.
    pub fn check_access(&self, va: VirtAddr) -> Result<Pfn, StackError> {
        if va < self.area || va >= self.top() {
            return Err(StackError::NotInStack(va));
        }
        match self.mmu.translate(va) {
            Some(pfn) => Ok(pfn),
            None if va < self.bottom() => Err(StackError::Overflow { va }),
            None => Err(StackError::NotMapped(va)),
        }
    }

    /// Checks a write of `len` bytes at `offset` from the stack's lowest
    /// byte, page by page through the MMU, and returns the frames it lands
    /// on, lowest first. A negative offset runs into the guard page.
    ///
    /// # Errors
    ///
    /// [`StackError::Overflow`] with the lowest address of the write that
    /// hit the guard page, [`StackError::NotInStack`] for bytes beyond the
    /// guard or above the stack, [`StackError::OutOfRange`] if the write
    /// leaves the address space.
    pub fn write_at(&self, offset: isize, len: usize) -> Result<Vec<Pfn>, StackError> {
        let out = StackError::OutOfRange { offset, len };
        if len == 0 {
            return Ok(Vec::new());
        }
        let first = self
            .bottom()
            .0
            .checked_add_signed(offset)
            .ok_or(out.clone())?;
        let last = first.checked_add(len - 1).ok_or(out)?;
        let mut frames = Vec::new();
        let mut va = first;
        loop {
            frames.push(self.check_access(VirtAddr(va))?);
            let next = (va & !(PAGE_SIZE - 1)) + PAGE_SIZE;
            if next > last {
                return Ok(frames);
            }
            va = next;
        }
    }
}

impl VmallocSpace {
    /// Allocates a thread stack of `size` in the vmalloc space
    /// (`alloc_thread_stack_node` with `VMAP_STACK`, `kernel/fork.c`): an
    /// area of one unmapped guard page, then `size.pages()` order-0 pages
    /// (highmem allowed, as vmalloc does), then the usual vmalloc guard page.
    ///
    /// # Errors
    ///
    /// As [`VmallocSpace::vmalloc`].
    pub fn vmap_stack(&self, size: ThreadSize, gfp: Gfp) -> Result<VmapStack, VmallocError> {
        self.stack_area(size, gfp, THREAD_STACK_CALLER)
    }

    /// Allocates one vmap'ed interrupt stack of `size` per CPU, at boot, each
    /// with a guard page below (`map_irq_stack`, `arch/x86/kernel/irq_64.c`);
    /// all or nothing.
    ///
    /// # Errors
    ///
    /// As [`VmallocSpace::vmalloc`]; the stacks allocated before the failure
    /// are freed (their ranges are lazily freed).
    pub fn vmap_irq_stacks(
        &self,
        nr_cpus: usize,
        gfp: Gfp,
        size: ThreadSize,
    ) -> Result<Vec<VmapStack>, VmallocError> {
        let mut stacks = Vec::with_capacity(nr_cpus);
        for _ in 0..nr_cpus {
            match self.stack_area(size, gfp, IRQ_STACK_CALLER) {
                Ok(s) => stacks.push(s),
                Err(e) => {
                    for s in stacks {
                        let _ = self.free_vmap_stack(s);
                    }
                    return Err(e);
                }
            }
        }
        Ok(stacks)
    }

    /// A stack area with one guard page below.
    fn stack_area(
        &self,
        size: ThreadSize,
        gfp: Gfp,
        caller: &'static str,
    ) -> Result<VmapStack, VmallocError> {
        let area = self.vmalloc_area(size.bytes(), gfp, 1, caller)?;
        let frames = self.find_vm_area(area).map(|a| a.pages).unwrap_or_default();
        Ok(VmapStack {
            area,
            size,
            frames,
            mmu: Arc::clone(self.mmu()),
        })
    }

    /// Frees a vmap'ed stack: its pages go back to the page allocator, its
    /// range is lazily freed (`free_thread_stack`, `kernel/fork.c`).
    ///
    /// # Errors
    ///
    /// [`VmallocError::NotAnArea`] if the stack is not from this space.
    pub fn free_vmap_stack(&self, stack: VmapStack) -> Result<(), VmallocError> {
        let ours = self.find_vm_area(stack.area).is_some_and(|a| {
            a.start == stack.area && a.addr == stack.bottom() && a.pages == stack.frames
        });
        if !ours {
            return Err(VmallocError::NotAnArea(stack.area));
        }
        self.vfree(stack.area)
    }
}
