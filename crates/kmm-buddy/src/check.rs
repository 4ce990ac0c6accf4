//! Read-only views of the free area: the list dump behind `free_blocks` and
//! the structural check behind `check_invariants`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use bitvec::vec::BitVec;
use kmm_gfp::MigrateType;
use kmm_page::{
    FrameIdx, MAX_PAGE_ORDER, NR_PAGE_ORDERS, PAGEBLOCK_ORDER, PageFlags, PageType, Pfn,
};

use crate::backend::FreeBlock;
use crate::freearea::Core;

impl<const LAZY: bool> Core<LAZY> {
    /// Every free block, by order, then migrate type, then list order
    /// (locally free blocks before globally free ones).
    pub(crate) fn free_blocks(&self) -> Vec<FreeBlock> {
        let map = &*self.map;
        let mut out = Vec::with_capacity(self.nr_free.iter().sum());
        for o in 0..NR_PAGE_ORDERS {
            for mt in MigrateType::ALL {
                for (locally_free, list) in [
                    (true, &self.local_list[o][mt.index()]),
                    (false, &self.free_list[o][mt.index()]),
                ] {
                    out.extend(list.iter(map).map(|idx| FreeBlock {
                        pfn: map.pfn_of(idx),
                        order: o as u32,
                        migratetype: mt,
                        locally_free,
                    }));
                }
            }
        }
        out
    }

    /// Checks one block on list (`order`, `mt`, `local`) and marks its frames in `covered`.
    fn check_free_head(
        &self,
        idx: FrameIdx,
        order: u32,
        mt: MigrateType,
        local: bool,
        covered: &mut BitVec,
    ) -> Result<(), String> {
        let map = &*self.map;
        let f = map
            .frame(idx)
            .ok_or_else(|| format!("list ({order}, {mt}) holds bad index {idx}"))?;
        let pfn = map.pfn_of(idx);
        let what = format!("free block at pfn {pfn} on list ({order}, {mt}, local={local})");
        if f.page_type() != PageType::Buddy {
            return Err(format!(
                "{what}: head type is {:?}, not Buddy",
                f.page_type()
            ));
        }
        if f.order() != Some(order) || f.private() != order {
            return Err(format!(
                "{what}: head records order {:?}, private {}",
                f.order(),
                f.private()
            ));
        }
        if f.migratetype() != mt {
            return Err(format!(
                "{what}: head records migrate type {}",
                f.migratetype()
            ));
        }
        if f.refcount() != 0 {
            return Err(format!("{what}: head reference count {}", f.refcount()));
        }
        if f.test(PageFlags::LOCALLY_FREE) != local {
            return Err(format!("{what}: LOCALLY_FREE flag disagrees with the list"));
        }
        if LAZY && self.global_bit(idx, order) == local {
            return Err(format!(
                "{what}: globally-free bitmap disagrees with the list"
            ));
        }
        if !pfn.is_aligned(order) {
            return Err(format!("{what}: not aligned to its order"));
        }
        let size = 1usize << order;
        let last = pfn.0 + size - 1;
        if map.index_of(Pfn(last)) != Some(idx + (size - 1) as FrameIdx) {
            return Err(format!("{what}: runs past the memory map or across a hole"));
        }
        for i in 0..size {
            let j = idx as usize + i;
            if covered.get(j).is_some_and(|b| *b) {
                return Err(format!(
                    "{what}: frame {} is already in another free block",
                    pfn.0 + i
                ));
            }
            covered.set(j, true);
            let Some(t) = map.frame(j as FrameIdx) else {
                return Err(format!("{what}: frame {} has no metadata", pfn.0 + i));
            };
            if t.test(PageFlags::RESERVED) {
                return Err(format!("{what}: frame {} is reserved", pfn.0 + i));
            }
            // Tails of a free block look free (`page_expected_state`).
            if i > 0
                && (t.refcount() != 0 || t.order().is_some() || t.page_type() != PageType::None)
            {
                return Err(format!(
                    "{what}: tail frame {} has refcount {}, order {:?}, type {:?}",
                    pfn.0 + i,
                    t.refcount(),
                    t.order(),
                    t.page_type()
                ));
            }
        }
        let pageblocks = 1usize << order.saturating_sub(PAGEBLOCK_ORDER);
        for b in 0..pageblocks {
            let p = Pfn(pfn.0 + (b << PAGEBLOCK_ORDER));
            if self.pb.get(p) != mt {
                return Err(format!(
                    "{what}: pageblock of pfn {p} is {}",
                    self.pb.get(p)
                ));
            }
        }
        // No coexisting free buddies, unless the pageblock rule keeps them apart.
        if !local && order < MAX_PAGE_ORDER {
            let buddy = pfn.buddy(order);
            if let Some(bidx) = map.index_of(buddy)
                && let Some(bf) = map.frame(bidx)
                && bf.page_type() == PageType::Buddy
                && bf.order() == Some(order)
                && !bf.test(PageFlags::LOCALLY_FREE)
            {
                let bmt = bf.migratetype();
                let apart = order >= PAGEBLOCK_ORDER
                    && bmt != mt
                    && (!mt.is_mergeable() || !bmt.is_mergeable());
                if !apart {
                    return Err(format!("{what}: its buddy at pfn {buddy} is free too"));
                }
            }
        }
        Ok(())
    }

    /// Checks every structural invariant; describes the first violation.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let map = &*self.map;
        let n = map.len();
        let mut covered: BitVec = BitVec::repeat(false, n);
        let mut heads = 0usize;
        for o in 0..NR_PAGE_ORDERS {
            let (mut all, mut local_all) = (0usize, 0usize);
            for mt in MigrateType::ALL {
                for (local, list) in [
                    (true, &self.local_list[o][mt.index()]),
                    (false, &self.free_list[o][mt.index()]),
                ] {
                    if local && !LAZY && !list.is_empty() {
                        return Err(format!("eager buddy has locally free blocks at order {o}"));
                    }
                    let mut walked = 0usize;
                    for idx in list.iter(map) {
                        walked += 1;
                        self.check_free_head(idx, o as u32, mt, local, &mut covered)?;
                    }
                    if walked != list.len() {
                        return Err(format!(
                            "list ({o}, {mt}, local={local}) has length {} but {walked} links",
                            list.len()
                        ));
                    }
                    all += walked;
                    if local {
                        local_all += walked;
                    }
                }
            }
            if all != self.nr_free[o] {
                return Err(format!(
                    "nr_free[{o}] is {} but the lists hold {all}",
                    self.nr_free[o]
                ));
            }
            if local_all != self.nr_local[o] {
                return Err(format!(
                    "L[{o}] is {} but the lists hold {local_all}",
                    self.nr_local[o]
                ));
            }
            if LAZY {
                let global = all - local_all;
                let bits = self.global.get(o).map_or(0, |b| b.count_ones());
                if bits != global {
                    return Err(format!(
                        "order {o}: {bits} bitmap bits for {global} globally free blocks"
                    ));
                }
                if self.nr_local[o] > self.nr_alloc[o] {
                    return Err(format!(
                        "order {o}: slack A - L < 0 (A = {}, L = {})",
                        self.nr_alloc[o], self.nr_local[o]
                    ));
                }
            }
            heads += all;
        }
        let (mut marked, mut unreserved, mut free_frames) = (0usize, 0usize, 0usize);
        for i in 0..n {
            let Some(f) = map.frame(i as FrameIdx) else {
                continue;
            };
            if f.page_type() == PageType::Buddy {
                marked += 1;
            } else if f.test(PageFlags::LOCALLY_FREE) {
                return Err(format!(
                    "pfn {} is LOCALLY_FREE but no free head",
                    map.pfn_of(i as FrameIdx)
                ));
            }
            if !f.test(PageFlags::RESERVED) {
                unreserved += 1;
            }
            if covered.get(i).is_some_and(|b| *b) {
                free_frames += 1;
            }
        }
        if marked != heads {
            return Err(format!(
                "{marked} frames are marked Buddy but the lists hold {heads} blocks"
            ));
        }
        if unreserved != self.managed {
            return Err(format!(
                "{unreserved} unreserved frames but managed_pages is {}",
                self.managed
            ));
        }
        let free = self.free_pages();
        if free_frames != free {
            return Err(format!(
                "free blocks cover {free_frames} frames but free_pages is {free}"
            ));
        }
        let allocated: usize = self.nr_alloc.iter().enumerate().map(|(o, a)| a << o).sum();
        if free + allocated != self.managed {
            return Err(format!(
                "managed {} != free {free} + allocated {allocated}",
                self.managed
            ));
        }
        Ok(())
    }
}
