//! The free area shared by both backends: `zone->free_area[]` with its free
//! lists, the allocation path (`__rmqueue` in `mm/page_alloc.c`) and the
//! freeing path (`__free_one_page`), written once and specialised by a
//! `const LAZY: bool` parameter.
//!
//! With `LAZY == false` this is Linux's eager buddy. With `LAZY == true` the
//! same structure also keeps a second set of lists for *locally free* blocks
//! (Barkley–Lee DELAY-2), the per-order counters `A` and `L` and one bitmap
//! per order of the *globally free* block heads. The branches on `LAZY` are
//! resolved at compile time, so the eager backend pays nothing for them.

use alloc::sync::Arc;
use alloc::vec::Vec;

use bitvec::vec::BitVec;
use kmm_gfp::MigrateType;
use kmm_page::{
    FrameIdx, FrameList, MAX_PAGE_ORDER, MemMap, NR_PAGE_ORDERS, PAGEBLOCK_ORDER, PageError,
    PageFlags, PageFrame, PageType, Pfn, PfnRange,
};

use crate::backend::BuddyStats;
use crate::pageblock::Pageblocks;

/// Number of migrate types, the width of one `free_area`.
pub(crate) const NR_MT: usize = MigrateType::COUNT;

/// One list per (order, migrate type).
pub(crate) type Lists = [[FrameList; NR_MT]; NR_PAGE_ORDERS];

fn empty_lists() -> Lists {
    core::array::from_fn(|_| core::array::from_fn(|_| FrameList::new()))
}

/// The buddy allocator state of one map (one zone).
pub(crate) struct Core<const LAZY: bool> {
    /// The frames.
    pub(crate) map: Arc<MemMap>,
    /// Per-pageblock migrate types.
    pub(crate) pb: Pageblocks,
    /// `free_area[order].free_list[mt]`: every free block in eager mode, the
    /// globally free blocks in lazy mode.
    pub(crate) free_list: Lists,
    /// Lazy mode only: the locally free blocks of each (order, migrate type).
    /// Together with `free_list` they form the class free list of the paper,
    /// locally free blocks first.
    pub(crate) local_list: Lists,
    /// `free_area[order].nr_free`: all free blocks of the order, locally free included.
    pub(crate) nr_free: [usize; NR_PAGE_ORDERS],
    /// `L`: locally free blocks per order (always 0 in eager mode).
    pub(crate) nr_local: [usize; NR_PAGE_ORDERS],
    /// `A`: allocated blocks per order.
    pub(crate) nr_alloc: [usize; NR_PAGE_ORDERS],
    /// Lazy mode only: bit `idx >> order` of `global[order]` is set while the
    /// block of `order` whose head has index `idx` is globally free. Disjoint
    /// blocks of one order have distinct keys because every block lies inside
    /// one run of consecutive indices.
    pub(crate) global: Vec<BitVec>,
    /// Pages handed over by `add_free_range`.
    pub(crate) managed: usize,
    /// The counters.
    pub(crate) stats: BuddyStats,
}

/// Marks `f` as the head of a free block (`set_buddy_order` plus the list type).
#[inline(always)]
fn mark_free(f: &PageFrame, order: u32, mt: MigrateType, local: bool) {
    f.set_page_type(PageType::Buddy);
    f.set_order(Some(order));
    f.set_private(order);
    f.set_migratetype(mt);
    f.set_refcount(0);
    if local {
        f.set(PageFlags::LOCALLY_FREE);
    } else {
        f.clear(PageFlags::LOCALLY_FREE);
    }
}

/// Clears the free-head marker of `f` (`__del_page_from_free_list`).
#[inline]
fn clear_free(f: &PageFrame) {
    f.set_page_type(PageType::None);
    f.set_order(None);
    f.set_private(0);
    f.clear(PageFlags::LOCALLY_FREE);
}

/// `should_try_claim_block` (`mm/page_alloc.c`), called with the order of the found block.
fn should_try_claim_block(order: u32, start_mt: MigrateType) -> bool {
    order >= PAGEBLOCK_ORDER
        || order >= PAGEBLOCK_ORDER / 2
        || matches!(start_mt, MigrateType::Unmovable | MigrateType::Reclaimable)
}

/// The runs of present frames of the pageblock holding `pfn`, as (first index, length).
fn pageblock_runs(map: &MemMap, pfn: Pfn) -> impl Iterator<Item = (FrameIdx, usize)> + '_ {
    let start = pfn.0 & !((1usize << PAGEBLOCK_ORDER) - 1);
    let end = start + (1usize << PAGEBLOCK_ORDER);
    map.ranges().filter_map(move |r| {
        let (s, e) = (r.start.0.max(start), r.end.0.min(end));
        if s >= e {
            return None;
        }
        map.index_of(Pfn(s)).map(|base| (base, e - s))
    })
}

/// Page counts of one pageblock, for the "half a pageblock" rule.
struct PageblockCensus {
    /// Pages in free blocks.
    free: usize,
    /// Allocated pages marked `PG_lru` (kmm's notion of a movable page).
    movable: usize,
    /// Present frames (512 unless the pageblock is partial).
    present: usize,
}

impl<const LAZY: bool> Core<LAZY> {
    /// An allocator over `map` with nothing free.
    pub(crate) fn new(map: Arc<MemMap>) -> Self {
        let global = if LAZY {
            (0..NR_PAGE_ORDERS)
                .map(|o| BitVec::repeat(false, (map.len() >> o) + 1))
                .collect()
        } else {
            Vec::new()
        };
        Core {
            pb: Pageblocks::new(&map),
            map,
            free_list: empty_lists(),
            local_list: empty_lists(),
            nr_free: [0; NR_PAGE_ORDERS],
            nr_local: [0; NR_PAGE_ORDERS],
            nr_alloc: [0; NR_PAGE_ORDERS],
            global,
            managed: 0,
            stats: BuddyStats::default(),
        }
    }

    // ----- free list primitives -------------------------------------------------

    /// Whether the bitmap says the block of `order` headed by `idx` is globally free.
    #[inline]
    pub(crate) fn global_bit(&self, idx: FrameIdx, order: u32) -> bool {
        self.global
            .get(order as usize)
            .and_then(|bits| bits.get((idx >> order) as usize).map(|b| *b))
            .unwrap_or(false)
    }

    #[inline]
    fn set_global_bit(&mut self, idx: FrameIdx, order: u32, value: bool) {
        if let Some(bits) = self.global.get_mut(order as usize) {
            bits.set((idx >> order) as usize, value);
        }
    }

    /// Puts the block of `order` headed by `idx` on a free list
    /// (`__add_to_free_list`), marking its head.
    #[inline(always)]
    fn add_free(&mut self, idx: FrameIdx, order: u32, mt: MigrateType, local: bool, tail: bool) {
        let map = &*self.map;
        let Some(f) = map.frame(idx) else { return };
        mark_free(f, order, mt, LAZY && local);
        let list = if LAZY && local {
            &mut self.local_list[order as usize][mt.index()]
        } else {
            &mut self.free_list[order as usize][mt.index()]
        };
        let linked = if tail {
            list.push_back(map, idx)
        } else {
            list.push_front(map, idx)
        };
        debug_assert!(linked, "free block head {idx} was already on a list");
        self.nr_free[order as usize] += 1;
        if LAZY {
            if local {
                self.nr_local[order as usize] += 1;
            } else {
                self.set_global_bit(idx, order, true);
            }
        }
    }

    /// Takes the block of `order` headed by `idx` off its free list
    /// (`__del_page_from_free_list`) and clears its head marker.
    #[inline(always)]
    fn del_free(&mut self, idx: FrameIdx, order: u32, mt: MigrateType, local: bool) {
        self.unlink_free(idx, order, mt, local);
        if let Some(f) = self.map.frame(idx) {
            clear_free(f);
        }
    }

    /// Takes the block off its free list and out of the counts but leaves the
    /// head's fields for the caller to overwrite (the allocation path).
    #[inline(always)]
    fn unlink_free(&mut self, idx: FrameIdx, order: u32, mt: MigrateType, local: bool) {
        let map = &*self.map;
        let list = if LAZY && local {
            &mut self.local_list[order as usize][mt.index()]
        } else {
            &mut self.free_list[order as usize][mt.index()]
        };
        let unlinked = list.remove(map, idx);
        debug_assert!(unlinked, "free block head {idx} was on no list");
        self.nr_free[order as usize] -= 1;
        if LAZY {
            if local {
                self.nr_local[order as usize] -= 1;
            } else {
                self.set_global_bit(idx, order, false);
            }
        }
    }

    /// Whether frame `idx` heads a free block of `order` that may merge
    /// (`page_is_buddy`): marked, same order, and globally free in lazy mode.
    #[inline]
    fn is_mergeable_head(&self, f: &PageFrame, idx: FrameIdx, order: u32) -> bool {
        f.page_type() == PageType::Buddy
            && f.order() == Some(order)
            && !f.test(PageFlags::LOCALLY_FREE)
            && (!LAZY || self.global_bit(idx, order))
    }

    // ----- freeing ---------------------------------------------------------------

    /// Frees the block of `order` at `pfn` (index `idx`) onto the lists of
    /// `mt`, merging it with free buddies (`__free_one_page`,
    /// `mm/page_alloc.c`). In lazy mode the block becomes globally free and
    /// merges only with globally free buddies.
    #[doc(alias = "__free_one_page")]
    pub(crate) fn free_one_page(
        &mut self,
        mut idx: FrameIdx,
        mut pfn: Pfn,
        mut order: u32,
        mt: MigrateType,
        fpi_to_tail: bool,
    ) {
        if order > PAGEBLOCK_ORDER {
            self.pb.set_range(pfn, order, mt);
        }
        let mut buddy_pfn = pfn;
        while order < MAX_PAGE_ORDER {
            buddy_pfn = pfn.buddy(order);
            let Some(bidx) = self.map.index_of(buddy_pfn) else {
                break;
            };
            let Some(bf) = self.map.frame(bidx) else {
                break;
            };
            if !self.is_mergeable_head(bf, bidx, order) {
                break;
            }
            let buddy_mt = bf.migratetype();
            if order >= PAGEBLOCK_ORDER
                && buddy_mt != mt
                && (!mt.is_mergeable() || !buddy_mt.is_mergeable())
            {
                break;
            }
            self.del_free(bidx, order, buddy_mt, false);
            if buddy_mt != mt {
                self.pb.set_range(buddy_pfn, order, mt);
            }
            self.stats.merges += 1;
            idx = idx.min(bidx);
            pfn = Pfn(pfn.0 & buddy_pfn.0);
            order += 1;
        }
        let tail = fpi_to_tail || self.buddy_merge_likely(pfn, buddy_pfn, order);
        self.add_free(idx, order, mt, false, tail);
    }

    /// Whether the block of `order` at `pfn`, whose buddy `buddy_pfn` is not
    /// free, is likely to merge soon: the buddy of its parent is free
    /// (`buddy_merge_likely`, `mm/page_alloc.c`).
    fn buddy_merge_likely(&self, pfn: Pfn, buddy_pfn: Pfn, order: u32) -> bool {
        if order >= MAX_PAGE_ORDER - 1 {
            return false;
        }
        let higher = Pfn(pfn.0 & buddy_pfn.0);
        let higher_buddy = higher.buddy(order + 1);
        match self.map.index_of(higher_buddy) {
            Some(i) => self
                .map
                .frame(i)
                .is_some_and(|f| self.is_mergeable_head(f, i, order + 1)),
            None => false,
        }
    }

    /// Checks that `pfn` heads an allocated block of `order`; returns its index.
    #[inline]
    pub(crate) fn validate(&self, pfn: Pfn, order: u32) -> Result<FrameIdx, PageError> {
        if order > MAX_PAGE_ORDER {
            return Err(PageError::OrderTooLarge {
                order,
                max: MAX_PAGE_ORDER,
            });
        }
        let idx = self.map.index_of(pfn).ok_or(PageError::OutOfRange(pfn))?;
        let f = self.map.frame(idx).ok_or(PageError::OutOfRange(pfn))?;
        if f.test(PageFlags::RESERVED) {
            return Err(PageError::Reserved(pfn));
        }
        if !pfn.is_aligned(order) {
            return Err(PageError::Misaligned { pfn, order });
        }
        if matches!(f.page_type(), PageType::Buddy | PageType::Pcp) {
            return Err(PageError::DoubleFree(pfn));
        }
        let allocated = match f.order() {
            Some(o) if f.refcount() > 0 => o,
            _ => return Err(PageError::NotAllocated(pfn)),
        };
        if allocated != order {
            return Err(PageError::WrongOrder {
                pfn,
                allocated,
                given: order,
            });
        }
        Ok(idx)
    }

    /// Frees a validated allocated block, applying the DELAY-2 rules in lazy mode.
    #[inline]
    fn free_validated(&mut self, idx: FrameIdx, pfn: Pfn, order: u32) {
        let o = order as usize;
        let mt = self.pb.get(pfn);
        // The slack before the free: the block still counts as allocated.
        let slack = self.nr_alloc[o].saturating_sub(self.nr_local[o]);
        self.nr_alloc[o] = self.nr_alloc[o].saturating_sub(1);
        self.stats.frees[o] += 1;
        if LAZY && slack >= 2 {
            // Lazy state: the block becomes locally free, no coalescing
            // (`add_free` rewrites every field of the head).
            self.add_free(idx, order, mt, true, false);
            return;
        }
        // The head drops its allocated state (`put_page_testzero`); if it
        // merges into a block headed elsewhere it must look like any tail.
        if let Some(f) = self.map.frame(idx) {
            f.set_refcount(0);
            f.set_order(None);
            f.set_private(0);
        }
        if !LAZY {
            self.free_one_page(idx, pfn, order, mt, false);
            return;
        }
        // Reclaiming (slack 1) or accelerated (slack 0): globally free and coalesce.
        self.free_one_page(idx, pfn, order, mt, false);
        if slack == 0 {
            self.convert_one_local(order);
        }
    }

    /// Lazy mode: makes one locally free block of `order` globally free and
    /// coalesces it. Returns `false` when there is none.
    fn convert_one_local(&mut self, order: u32) -> bool {
        let lists = &self.local_list[order as usize];
        let Some((mt, idx)) = MigrateType::ALL
            .iter()
            .find_map(|&mt| lists[mt.index()].front().map(|idx| (mt, idx)))
        else {
            return false;
        };
        self.del_free(idx, order, mt, true);
        let pfn = self.map.pfn_of(idx);
        self.free_one_page(idx, pfn, order, mt, false);
        true
    }

    /// Lazy mode: converts every locally free block of the orders below
    /// `order` to globally free and coalesces. Returns whether any was converted.
    fn coalesce_below(&mut self, order: u32) -> bool {
        let mut any = false;
        for o in 0..order {
            while self.nr_local[o as usize] > 0 && self.convert_one_local(o) {
                any = true;
            }
        }
        any
    }

    /// Frees a block allocated with `order` (`__free_pages`).
    #[inline]
    pub(crate) fn free(&mut self, pfn: Pfn, order: u32) -> Result<(), PageError> {
        let idx = self.validate(pfn, order)?;
        self.free_validated(idx, pfn, order);
        Ok(())
    }

    /// Frees `nr_pages` order-0 pages from `pfn` after checking all of them
    /// (`free_pages_exact`).
    pub(crate) fn free_exact(&mut self, pfn: Pfn, nr_pages: usize) -> Result<(), PageError> {
        if nr_pages == 0 {
            return Err(PageError::ZeroSize);
        }
        let end = pfn
            .0
            .checked_add(nr_pages)
            .ok_or(PageError::OutOfRange(pfn))?;
        for p in pfn.0..end {
            self.validate(Pfn(p), 0)?;
        }
        let first = self.map.index_of(pfn).ok_or(PageError::OutOfRange(pfn))?;
        for (i, p) in (pfn.0..end).enumerate() {
            // All pages were checked present and allocated; an allocated
            // range never spans a hole, so the indices are consecutive.
            self.free_validated(first + i as FrameIdx, Pfn(p), 0);
        }
        Ok(())
    }

    /// Turns the allocated block of `order` at `pfn` into order-0 pages (`split_page`).
    pub(crate) fn split(&mut self, pfn: Pfn, order: u32) -> Result<(), PageError> {
        let idx = self.validate(pfn, order)?;
        if order == 0 {
            return Ok(());
        }
        let map = &*self.map;
        let mt = map
            .frame(idx)
            .map_or(MigrateType::Movable, PageFrame::migratetype);
        for i in 0..(1u32 << order) {
            if let Some(f) = map.frame(idx + i) {
                f.set_refcount(1);
                f.set_order(Some(0));
                f.set_page_type(PageType::None);
                f.set_private(0);
                f.set_migratetype(mt);
            }
        }
        let o = order as usize;
        self.nr_alloc[o] = self.nr_alloc[o].saturating_sub(1);
        self.nr_alloc[0] += 1 << order;
        // Fewer allocated blocks of this order: keep `L <= A` (slack >= 0).
        if LAZY && self.nr_local[o] > self.nr_alloc[o] {
            self.convert_one_local(order);
        }
        Ok(())
    }

    /// Hands `range` to the allocator (`__free_pages_core` for every maximal
    /// aligned block, with `FPI_TO_TAIL`).
    #[doc(alias = "__free_pages_core")]
    pub(crate) fn add_free_range(&mut self, range: PfnRange) -> Result<(), PageError> {
        let bad = |why| PageError::BadRange {
            start: range.start,
            end: range.end,
            why,
        };
        if range.end < range.start {
            return Err(bad("ends before it starts"));
        }
        if range.is_empty() {
            return Ok(());
        }
        let (start, end) = (range.start.0, range.end.0);
        let first = self
            .map
            .index_of(range.start)
            .ok_or(bad("not in the memory map"))?;
        let last = self
            .map
            .index_of(Pfn(end - 1))
            .ok_or(bad("not in the memory map"))?;
        if (last - first) as usize != end - 1 - start {
            return Err(bad("crosses a hole in the memory map"));
        }
        let map = &*self.map;
        if (first..=last).any(|i| map.frame(i).is_none_or(|f| !f.test(PageFlags::RESERVED))) {
            return Err(bad("some frames are already managed"));
        }
        for i in first..=last {
            if let Some(f) = map.frame(i) {
                f.clear(PageFlags::RESERVED | PageFlags::LOCALLY_FREE);
                f.set_refcount(0);
                f.set_order(None);
                f.set_page_type(PageType::None);
                f.set_private(0);
            }
        }
        self.managed += range.len();
        let mut p = start;
        while p < end {
            let align = p.trailing_zeros();
            let fits = usize::BITS - 1 - (end - p).leading_zeros();
            let order = align.min(fits).min(MAX_PAGE_ORDER);
            let idx = first + (p - start) as FrameIdx;
            let mt = self.pb.get(Pfn(p));
            self.free_one_page(idx, Pfn(p), order, mt, true);
            p += 1 << order;
        }
        Ok(())
    }

    /// Lazy mode: makes every locally free block globally free, lowest order
    /// first, coalescing as it goes.
    pub(crate) fn drain(&mut self) {
        if !LAZY {
            return;
        }
        for o in 0..=MAX_PAGE_ORDER {
            while self.nr_local[o as usize] > 0 && self.convert_one_local(o) {}
        }
    }

    // ----- allocation --------------------------------------------------------------

    /// Takes the first block of (`order`, `mt`), locally free ones first.
    /// The head keeps its free marker until `prep_new_page` overwrites it.
    #[inline(always)]
    fn take_head(&mut self, order: u32, mt: MigrateType) -> Option<FrameIdx> {
        let (o, m) = (order as usize, mt.index());
        if LAZY && let Some(idx) = self.local_list[o][m].front() {
            self.unlink_free(idx, order, mt, true);
            return Some(idx);
        }
        let idx = self.free_list[o][m].front()?;
        self.unlink_free(idx, order, mt, false);
        Some(idx)
    }

    /// The first block of (`order`, `mt`) without taking it, with whether it is locally free.
    fn peek_head(&self, order: u32, mt: MigrateType) -> Option<(FrameIdx, bool)> {
        let (o, m) = (order as usize, mt.index());
        if LAZY && let Some(idx) = self.local_list[o][m].front() {
            return Some((idx, true));
        }
        self.free_list[o][m].front().map(|idx| (idx, false))
    }

    /// Splits the block of `high` headed by `idx` down to `low`, putting each
    /// upper half at the head of the lists of `mt` (`expand`, `mm/page_alloc.c`).
    /// In lazy mode the halves are globally free.
    fn expand(&mut self, idx: FrameIdx, low: u32, mut high: u32, mt: MigrateType) {
        let mut size = 1u32 << high;
        while high > low {
            high -= 1;
            size >>= 1;
            self.add_free(idx + size, high, mt, false, false);
            self.stats.splits += 1;
        }
    }

    /// Takes the smallest block of `mt` that holds `order` and splits it
    /// (`__rmqueue_smallest`, `mm/page_alloc.c`).
    #[doc(alias = "__rmqueue_smallest")]
    #[inline]
    fn rmqueue_smallest(&mut self, order: u32, mt: MigrateType) -> Option<FrameIdx> {
        for current in order..=MAX_PAGE_ORDER {
            if self.nr_free[current as usize] == 0 {
                continue;
            }
            if let Some(idx) = self.take_head(current, mt) {
                self.expand(idx, order, current, mt);
                return Some(idx);
            }
        }
        None
    }

    /// The first fallback type of `start_mt` with a free block of `order`
    /// (`find_suitable_fallback`).
    fn find_fallback(&self, order: u32, start_mt: MigrateType) -> Option<MigrateType> {
        if self.nr_free[order as usize] == 0 {
            return None;
        }
        start_mt.fallbacks().iter().copied().find(|&fb| {
            let (o, m) = (order as usize, fb.index());
            !self.free_list[o][m].is_empty() || (LAZY && !self.local_list[o][m].is_empty())
        })
    }

    /// Looks for the largest fallback block and tries to claim its pageblock(s)
    /// for `start_mt` (`__rmqueue_claim`).
    #[doc(alias = "__rmqueue_claim")]
    fn rmqueue_claim(&mut self, order: u32, start_mt: MigrateType) -> Option<FrameIdx> {
        for current in (order..=MAX_PAGE_ORDER).rev() {
            if !should_try_claim_block(current, start_mt) {
                break;
            }
            let Some(fb) = self.find_fallback(current, start_mt) else {
                continue;
            };
            let Some((idx, local)) = self.peek_head(current, fb) else {
                continue;
            };
            if let Some(got) = self.try_to_claim_block(idx, local, current, order, start_mt, fb) {
                return Some(got);
            }
        }
        None
    }

    /// Takes the smallest fallback block without retagging its pageblock
    /// (`__rmqueue_steal`); the split halves stay on the fallback type's lists.
    #[doc(alias = "__rmqueue_steal")]
    fn rmqueue_steal(&mut self, order: u32, start_mt: MigrateType) -> Option<FrameIdx> {
        for current in order..=MAX_PAGE_ORDER {
            let Some(fb) = self.find_fallback(current, start_mt) else {
                continue;
            };
            let idx = self.take_head(current, fb)?;
            self.expand(idx, order, current, fb);
            return Some(idx);
        }
        None
    }

    /// Claims the pageblock(s) of the free block `idx` of `current` order for
    /// `start_mt` if the rules allow, then allocates (`try_to_claim_block`).
    fn try_to_claim_block(
        &mut self,
        idx: FrameIdx,
        local: bool,
        current: u32,
        order: u32,
        start_mt: MigrateType,
        block_mt: MigrateType,
    ) -> Option<FrameIdx> {
        let pfn = self.map.pfn_of(idx);
        if current >= PAGEBLOCK_ORDER {
            // The block holds whole pageblocks: take them all.
            self.del_free(idx, current, block_mt, local);
            self.pb.set_range(pfn, current, start_mt);
            self.expand(idx, order, current, start_mt);
            return Some(idx);
        }
        let census = self.pageblock_census(pfn);
        let pb_type = self.pb.get(pfn);
        let alike = if start_mt == MigrateType::Movable {
            census.movable
        } else if pb_type == MigrateType::Movable {
            census.present.saturating_sub(census.free + census.movable)
        } else {
            0
        };
        // Half a pageblock (`1 << (pageblock_order - 1)`); half the present
        // frames for a partial pageblock.
        if census.free + alike >= census.present.div_ceil(2) {
            self.move_freepages_block(pfn, start_mt);
            self.pb.set(pfn, start_mt);
            return self.rmqueue_smallest(order, start_mt);
        }
        None
    }

    /// Counts free, movable and present pages of the pageblock of `pfn`
    /// (`prep_move_freepages_block`). A partial pageblock counts only its
    /// present frames.
    fn pageblock_census(&self, pfn: Pfn) -> PageblockCensus {
        let mut c = PageblockCensus {
            free: 0,
            movable: 0,
            present: 0,
        };
        let map = &*self.map;
        for (base, len) in pageblock_runs(map, pfn) {
            c.present += len;
            let mut i = 0;
            while i < len {
                let Some(f) = map.frame(base + i as FrameIdx) else {
                    break;
                };
                match (f.page_type(), f.order()) {
                    (PageType::Buddy, Some(o)) => {
                        c.free += 1 << o;
                        i += 1 << o;
                    }
                    _ => {
                        if !f.test(PageFlags::RESERVED) && f.test(PageFlags::LRU) {
                            c.movable += 1;
                        }
                        i += 1;
                    }
                }
            }
        }
        c
    }

    /// Moves every free block of the pageblock of `pfn` to the tail of the
    /// lists of `mt` (`__move_freepages_block`); locally free blocks stay
    /// locally free.
    fn move_freepages_block(&mut self, pfn: Pfn, mt: MigrateType) {
        // A second handle on the map, so the lists can change while we walk.
        let map = Arc::clone(&self.map);
        for (base, len) in pageblock_runs(&map, pfn) {
            let mut i = 0;
            while i < len {
                let idx = base + i as FrameIdx;
                let Some(f) = map.frame(idx) else { break };
                let Some(order) = f.order().filter(|_| f.page_type() == PageType::Buddy) else {
                    i += 1;
                    continue;
                };
                let (old, local) = (f.migratetype(), f.test(PageFlags::LOCALLY_FREE));
                if old != mt {
                    self.del_free(idx, order, old, local);
                    self.add_free(idx, order, mt, local, true);
                }
                i += 1 << order;
            }
        }
    }

    /// Allocates a block of `order` for `mt` (`__rmqueue`): the type's own
    /// lists, then (lazy) coalescing of locally free smaller blocks, then a
    /// claim, then a steal.
    #[doc(alias = "__rmqueue")]
    #[inline]
    pub(crate) fn alloc(&mut self, order: u32, mt: MigrateType) -> Result<Pfn, PageError> {
        if order > MAX_PAGE_ORDER {
            return Err(PageError::OrderTooLarge {
                order,
                max: MAX_PAGE_ORDER,
            });
        }
        let mut got = self.rmqueue_smallest(order, mt);
        if LAZY && got.is_none() && self.coalesce_below(order) {
            got = self.rmqueue_smallest(order, mt);
        }
        if got.is_none() && !mt.fallbacks().is_empty() {
            got = self.rmqueue_claim(order, mt);
            if got.is_none() {
                got = self.rmqueue_steal(order, mt);
            }
        }
        let Some(idx) = got else {
            self.stats.failures[order as usize] += 1;
            return Err(PageError::NoBlock { order });
        };
        // `prep_new_page`: every field of the head is rewritten.
        let map = &*self.map;
        if let Some(f) = map.frame(idx) {
            f.set_refcount(1);
            f.set_order(Some(order));
            f.set_page_type(PageType::None);
            f.set_private(0);
            f.set_migratetype(mt);
            if LAZY {
                f.clear(PageFlags::LOCALLY_FREE);
            }
        }
        self.nr_alloc[order as usize] += 1;
        self.stats.allocs[order as usize] += 1;
        Ok(map.pfn_of(idx))
    }

    // ----- queries -------------------------------------------------------------------

    /// Free pages on the lists.
    pub(crate) fn free_pages(&self) -> usize {
        self.nr_free.iter().enumerate().map(|(o, n)| n << o).sum()
    }

    /// Blocks of `order` on the lists of `mt`.
    pub(crate) fn nr_free_mt(&self, order: u32, mt: MigrateType) -> usize {
        let o = order as usize;
        if o >= NR_PAGE_ORDERS {
            return 0;
        }
        self.free_list[o][mt.index()].len() + self.local_list[o][mt.index()].len()
    }
}
