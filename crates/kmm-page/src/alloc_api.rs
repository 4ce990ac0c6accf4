//! The `PageAllocator` seam and the errors of the page allocator.

use kmm_gfp::Gfp;

use crate::addr::Pfn;
use crate::frame::PageFrame;
use crate::phys::PhysMemory;

/// Why a page allocation or free failed. Every error leaves the allocator
/// exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    /// The order is above `MAX_PAGE_ORDER`.
    #[error("order {order} is above MAX_PAGE_ORDER ({max})")]
    OrderTooLarge {
        /// The order asked for.
        order: u32,
        /// The largest order.
        max: u32,
    },
    /// No free block of the order (or larger) exists in any allowed zone.
    #[error("no free block of order {order} or larger")]
    NoBlock {
        /// The order asked for.
        order: u32,
    },
    /// Every allowed zone is below the watermark this gfp must respect.
    #[error("every allowed zone is below its {watermark} watermark for order {order}")]
    BelowWatermark {
        /// The order asked for.
        order: u32,
        /// The watermark that refused it (`min`, `low` or `high`).
        watermark: &'static str,
    },
    /// The gfp's zone modifiers form an invalid combination (`GFP_ZONE_BAD`).
    #[error("invalid zone modifier combination in gfp {0:#x}")]
    BadGfpZone(u32),
    /// A request for no pages (`alloc_pages_exact(0)`).
    #[error("zero-sized request")]
    ZeroSize,
    /// The frame is outside the memory this allocator manages.
    #[error("pfn {0} is outside managed memory")]
    OutOfRange(Pfn),
    /// The frame is reserved (never handed to the allocator).
    #[error("pfn {0} is reserved, not managed by the allocator")]
    Reserved(Pfn),
    /// The block is not aligned to its order.
    #[error("pfn {pfn} is not aligned to order {order}")]
    Misaligned {
        /// The frame.
        pfn: Pfn,
        /// The order.
        order: u32,
    },
    /// The block is already free.
    #[error("double free of pfn {0}")]
    DoubleFree(Pfn),
    /// The frame is not the head of an allocated block.
    #[error("pfn {0} is not the start of an allocated block")]
    NotAllocated(Pfn),
    /// The block was allocated with another order.
    #[error("pfn {pfn} was allocated with order {allocated}, freed with order {given}")]
    WrongOrder {
        /// The frame.
        pfn: Pfn,
        /// The order it was allocated with.
        allocated: u32,
        /// The order given to the free.
        given: u32,
    },
    /// The frame has no kernel address: it is highmem, or no memory is behind it.
    #[error("pfn {0} has no kernel address (highmem, or no memory behind it)")]
    NoAddress(Pfn),
    /// No memory is behind any frame (a `NoMemory` machine), so no address exists.
    #[error("the frames have no memory behind them, so they have no addresses")]
    NoBackingMemory,
    /// Some frames of the range handed to the allocator are already managed or outside the map.
    #[error("frames {start}..{end} cannot be added: {why}")]
    BadRange {
        /// First frame.
        start: Pfn,
        /// One past the last frame.
        end: Pfn,
        /// Why.
        why: &'static str,
    },
}

/// A source of page frames: what the slab layer, vmalloc and highmem see of
/// the page allocator (`alloc_pages`/`__free_pages`).
///
/// Implementations: the zoned allocator of `kmm-zone` (gfp, watermarks and
/// zone fallback), a bare buddy behind a lock, and test doubles.
///
/// Contract: a successful `alloc_pages(gfp, order)` returns the first frame
/// of `2^order` frames aligned to `2^order` that no other live allocation
/// holds, with a reference count of 1 on the head; `free_pages` with the same
/// pfn and order gives them back. Misuse (double free, wrong order, foreign
/// frame) is a typed [`PageError`] and changes nothing.
pub trait PageAllocator: Send + Sync {
    /// Allocates `2^order` contiguous frames (`alloc_pages`).
    fn alloc_pages(&self, gfp: Gfp, order: u32) -> Result<Pfn, PageError>;

    /// Frees a block allocated with the same order (`__free_pages`).
    fn free_pages(&self, pfn: Pfn, order: u32) -> Result<(), PageError>;

    /// The frame metadata of `pfn` (`pfn_to_page`), `None` for frames it does not know.
    fn pfn_to_page(&self, pfn: Pfn) -> Option<&PageFrame>;

    /// The memory behind the frames (for `page_address` and `virt_to_page`).
    fn phys_memory(&self) -> &dyn PhysMemory;

    /// The frame whose direct-map bytes hold `addr` (`virt_to_page`), with
    /// its number; `None` if `addr` is not a direct-map address of a frame
    /// this allocator knows.
    ///
    /// The default asks the memory ([`PhysMemory::virt_to_pfn`]) and then
    /// [`PageAllocator::pfn_to_page`]; an implementation over a linear direct
    /// map can answer with arithmetic, as `kfree` on every call wants.
    #[inline]
    fn virt_to_page(&self, addr: usize) -> Option<(Pfn, &PageFrame)> {
        let pfn = self.phys_memory().virt_to_pfn(addr)?;
        Some((pfn, self.pfn_to_page(pfn)?))
    }

    /// [`virt_to_page`](PageAllocator::virt_to_page) where the answer is at
    /// hand (one range of frames reached by arithmetic, say), `None` where
    /// it is not, which does not mean that `addr` has no frame: the caller
    /// then asks `virt_to_page`. Hot paths (`kfree`) ask this first and
    /// keep the other case out of line, so that theirs pays for no merge of
    /// the two answers. The default answers as `virt_to_page` does.
    #[inline]
    fn virt_to_page_quick(&self, addr: usize) -> Option<(Pfn, &PageFrame)> {
        self.virt_to_page(addr)
    }
}
