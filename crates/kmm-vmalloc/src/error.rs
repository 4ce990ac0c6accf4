//! The errors of the vmalloc space. Every error but
//! [`VmallocError::PageFree`] leaves the space exactly as it was.

use kmm_page::{MmuError, PageError, VirtAddr};

/// Why a vmalloc operation failed.
///
/// Caller errors (a zero or overflowing size, a request above the total RAM,
/// an address that starts no area, a double free) change nothing. A
/// request that runs out of virtual space purges the lazily freed areas and
/// retries once before it fails, as `alloc_vmap_area` does: the busy areas
/// and the page allocator are unchanged after the error, but the purge
/// stays done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VmallocError {
    /// A request for zero bytes (Linux warns and returns `NULL`).
    #[error("zero-sized vmalloc request")]
    ZeroSize,
    /// The size overflows when rounded up to pages and given its guard page.
    #[error("size {size} overflows when rounded up to whole pages with the guard page")]
    SizeOverflow {
        /// The size asked for, in bytes (for arrays, `usize::MAX` when the
        /// product itself overflowed).
        size: usize,
    },
    /// The request asks for more pages than the machine has
    /// (`size >> PAGE_SHIFT > totalram_pages()`).
    #[error("{pages} pages is more than the total RAM ({totalram} pages)")]
    TooLarge {
        /// Pages asked for.
        pages: usize,
        /// The total RAM in pages.
        totalram: usize,
    },
    /// No free range of the vmalloc space is large enough, even after a purge.
    #[error("no free range of {size} bytes (guard pages included) in the vmalloc space")]
    NoVirtualSpace {
        /// The size of the range looked for, guard pages included.
        size: usize,
    },
    /// The page allocator refused a page; everything taken so far was given back.
    #[error("page allocation failed: {0}")]
    NoMemory(PageError),
    /// The MMU refused a mapping; everything mapped so far was unmapped.
    #[error("mapping failed: {0}")]
    Mmu(MmuError),
    /// The address is not page aligned ("Trying to vfree() bad address").
    #[error("address {0:#x} is not page aligned")]
    Misaligned(VirtAddr),
    /// No live area starts at the address ("Trying to vfree() nonexistent vm area").
    #[error("no vmalloc area starts at {0:#x}")]
    NotAnArea(VirtAddr),
    /// The area at the address was already freed and waits for a purge.
    #[error("double free of the vmalloc area at {0:#x}")]
    DoubleFree(VirtAddr),
    /// `vunmap` of an area whose pages vmalloc owns: only `vfree` may free it,
    /// or its pages would leak.
    #[error("the area at {0:#x} was vmalloc'ed, not vmap'ed: free it with vfree")]
    NotVmap(VirtAddr),
    /// The range given for the space is unusable.
    #[error("bad vmalloc range {start:#x}..{end:#x}: {why}")]
    BadRange {
        /// The start asked for.
        start: VirtAddr,
        /// The end asked for.
        end: VirtAddr,
        /// Why it is refused.
        why: &'static str,
    },
    /// The area was freed, but the page allocator or the MMU refused to take
    /// back one of its pages: the allocator and this space disagree about
    /// who owns the frame. The area is gone all the same.
    #[error("the area at {addr:#x} was freed, but giving back its pages failed: {why}")]
    PageFree {
        /// The area.
        addr: VirtAddr,
        /// What failed.
        why: FreeFailure,
    },
}

/// What failed while an area was torn down (see [`VmallocError::PageFree`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FreeFailure {
    /// The page allocator refused a frame.
    #[error("{0}")]
    Page(PageError),
    /// The MMU refused to unmap a page.
    #[error("{0}")]
    Mmu(MmuError),
}
