//! The `BuddyBackend` trait: the seam between a zone and its buddy allocator.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use kmm_gfp::MigrateType;
use kmm_page::{MemMap, NR_PAGE_ORDERS, PageError, Pfn, PfnRange};

/// Counters every backend keeps, always on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuddyStats {
    /// Successful allocations per order.
    pub allocs: [u64; NR_PAGE_ORDERS],
    /// Failed allocations per order (no block).
    pub failures: [u64; NR_PAGE_ORDERS],
    /// Successful frees per order.
    pub frees: [u64; NR_PAGE_ORDERS],
    /// Blocks split (one per `expand()` step).
    pub splits: u64,
    /// Buddy pairs merged (one per step of the merge loop).
    pub merges: u64,
}

/// One free block, as reported by [`BuddyBackend::free_blocks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeBlock {
    /// First frame.
    pub pfn: Pfn,
    /// Order.
    pub order: u32,
    /// The free list it is on.
    pub migratetype: MigrateType,
    /// `true` for a lazy buddy's locally free block (not coalescible yet).
    pub locally_free: bool,
}

/// A buddy allocator over the frames of one [`MemMap`] (one zone's `free_area[]`).
///
/// Contract, shared by every backend:
/// - Frames start reserved; [`add_free_range`](BuddyBackend::add_free_range)
///   hands frames to the allocator, in the largest aligned blocks that fit,
///   tagged `MIGRATE_MOVABLE` as Linux does at boot.
/// - [`alloc`](BuddyBackend::alloc) returns the lowest-addressed part of the
///   block it splits (`expand()` puts upper halves on the lower orders), with
///   the head's reference count set to 1 and its order recorded.
/// - [`free`](BuddyBackend::free) checks the block (in the map, not reserved,
///   aligned, allocated, same order) and returns a typed [`PageError`]
///   without changing anything if the check fails.
/// - After every allocation has been freed and [`drain`](BuddyBackend::drain)
///   has run, `nr_free` per order equals what it was after the ranges were
///   added, whatever the backend.
/// - Frames are only ever blocks of orders `0..=MAX_PAGE_ORDER`, aligned to their order.
///
/// `EagerBuddy` merges on every free; `LazyBuddy` defers merging (DELAY-2).
pub trait BuddyBackend: Send + Sized + 'static {
    /// A short name for reports (`"eager"`, `"lazy"`).
    const NAME: &'static str;

    /// A backend over `map` with nothing free yet.
    fn new(map: Arc<MemMap>) -> Self;

    /// The frames this backend allocates from.
    fn mem_map(&self) -> &Arc<MemMap>;

    /// Hands `range` to the allocator (`memblock_free_all` → `__free_pages_core`).
    /// Every frame must be in the map and still reserved; otherwise
    /// [`PageError::BadRange`] and nothing changes.
    fn add_free_range(&mut self, range: PfnRange) -> Result<(), PageError>;

    /// Allocates a block of `order` of migrate type `mt`, falling back to other
    /// types as `__rmqueue` does.
    fn alloc(&mut self, order: u32, mt: MigrateType) -> Result<Pfn, PageError>;

    /// Frees a block allocated with `order`.
    fn free(&mut self, pfn: Pfn, order: u32) -> Result<(), PageError>;

    /// Turns an allocated block of `order` into `2^order` allocated order-0
    /// pages, each with reference count 1 (`split_page`).
    fn split(&mut self, pfn: Pfn, order: u32) -> Result<(), PageError>;

    /// Coalesces everything that can be coalesced (a no-op for eager backends).
    fn drain(&mut self);

    /// Blocks of `order` on the free lists, all migrate types (`free_area[order].nr_free`).
    fn nr_free(&self, order: u32) -> usize;

    /// Blocks of `order` on the free list of `mt`.
    fn nr_free_mt(&self, order: u32, mt: MigrateType) -> usize;

    /// Free pages on the buddy lists (`NR_FREE_PAGES`).
    fn free_pages(&self) -> usize;

    /// Pages handed to the allocator by `add_free_range` (`managed_pages`).
    fn managed_pages(&self) -> usize;

    /// The largest order with a free block, if any.
    fn largest_free_order(&self) -> Option<u32> {
        (0..NR_PAGE_ORDERS as u32)
            .rev()
            .find(|&o| self.nr_free(o) > 0)
    }

    /// Number of pageblocks of each migrate type, indexed by `MigrateType::index`.
    fn pageblock_counts(&self) -> [usize; MigrateType::COUNT];

    /// The counters.
    fn stats(&self) -> &BuddyStats;

    /// Every free block, by order then list order.
    fn free_blocks(&self) -> Vec<FreeBlock>;

    /// Checks every structural invariant (lists, counts, markers, alignment,
    /// no coalescible buddies left in eager mode, the DELAY-2 counts in lazy
    /// mode); describes the first violation found.
    fn check_invariants(&self) -> Result<(), String>;

    /// Allocates exactly `nr_pages` contiguous pages (`alloc_pages_exact`):
    /// takes the smallest block that holds them, splits it to order-0 pages and
    /// frees the pages past `nr_pages`.
    fn alloc_exact(&mut self, nr_pages: usize, mt: MigrateType) -> Result<Pfn, PageError> {
        if nr_pages == 0 {
            return Err(PageError::ZeroSize);
        }
        let order = usize::BITS - (nr_pages - 1).leading_zeros();
        let order = if nr_pages == 1 { 0 } else { order };
        let pfn = self.alloc(order, mt)?;
        if order > 0 {
            self.split(pfn, order)?;
            for p in nr_pages..(1usize << order) {
                self.free(Pfn(pfn.0 + p), 0)?;
            }
        }
        Ok(pfn)
    }

    /// Frees `nr_pages` pages allocated by [`alloc_exact`](BuddyBackend::alloc_exact)
    /// (`free_pages_exact`). All pages are checked before any is freed.
    fn free_exact(&mut self, pfn: Pfn, nr_pages: usize) -> Result<(), PageError>;
}
