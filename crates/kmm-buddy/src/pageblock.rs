//! Per-pageblock migrate types (`pageblock_flags` in `mm/page_alloc.c`), kept
//! in one byte per pageblock of the map.
//!
//! A pageblock is the aligned group of `2^PAGEBLOCK_ORDER` frames that share a
//! migrate type. Only pageblocks that hold at least one present frame get an
//! entry, so a map with large holes costs nothing for the holes; a pageblock
//! that is only partly present (a tiny map, or the edge of a range) counts as
//! one pageblock.

use alloc::vec::Vec;

use kmm_gfp::MigrateType;
use kmm_page::{MemMap, PAGEBLOCK_ORDER, Pfn};

/// A run of consecutive pageblock numbers with entries at `base..`.
#[derive(Clone, Copy, Debug)]
struct PbSection {
    /// First pageblock number (`pfn >> PAGEBLOCK_ORDER`).
    start: usize,
    /// One past the last pageblock number.
    end: usize,
    /// Index of the first entry in `Pageblocks::types`.
    base: usize,
}

/// The migrate type of every pageblock that holds a present frame.
#[derive(Clone, Debug)]
pub(crate) struct Pageblocks {
    sections: Vec<PbSection>,
    types: Vec<MigrateType>,
}

impl Pageblocks {
    /// One `MIGRATE_MOVABLE` entry per pageblock of `map` that holds a
    /// present frame (`memmap_init` marks every pageblock movable at boot).
    pub(crate) fn new(map: &MemMap) -> Pageblocks {
        let mut sections: Vec<PbSection> = Vec::new();
        let mut total = 0usize;
        for r in map.ranges() {
            let first = r.start.0 >> PAGEBLOCK_ORDER;
            let last = (r.end.0 - 1) >> PAGEBLOCK_ORDER;
            match sections.last_mut() {
                // The range starts inside the last pageblock already counted.
                Some(s) if s.end > first => {
                    let added = (last + 1).saturating_sub(s.end);
                    s.end = s.end.max(last + 1);
                    total += added;
                }
                Some(s) if s.end == first => {
                    s.end = last + 1;
                    total += last + 1 - first;
                }
                _ => {
                    sections.push(PbSection {
                        start: first,
                        end: last + 1,
                        base: total,
                    });
                    total += last + 1 - first;
                }
            }
        }
        Pageblocks {
            sections,
            types: alloc::vec![MigrateType::Movable; total],
        }
    }

    /// The entry index of the pageblock holding `pfn`, if it has one.
    #[inline]
    pub(crate) fn index(&self, pfn: Pfn) -> Option<usize> {
        let n = pfn.0 >> PAGEBLOCK_ORDER;
        let s = if let [only] = self.sections.as_slice() {
            only
        } else {
            let i = self.sections.partition_point(|s| s.end <= n);
            self.sections.get(i)?
        };
        (s.start <= n && n < s.end).then(|| s.base + (n - s.start))
    }

    /// The migrate type of the pageblock holding `pfn` (`get_pfnblock_migratetype`).
    /// A frame without an entry (never the case for a present frame) reads as movable.
    #[inline]
    pub(crate) fn get(&self, pfn: Pfn) -> MigrateType {
        self.index(pfn)
            .map_or(MigrateType::Movable, |i| self.types[i])
    }

    /// Sets the migrate type of the pageblock holding `pfn` (`set_pageblock_migratetype`).
    pub(crate) fn set(&mut self, pfn: Pfn, mt: MigrateType) {
        if let Some(i) = self.index(pfn) {
            self.types[i] = mt;
        }
    }

    /// Sets the type of every pageblock of the block of `order` at `pfn`
    /// (`change_pageblock_range`); a block below a pageblock retags its pageblock.
    pub(crate) fn set_range(&mut self, pfn: Pfn, order: u32, mt: MigrateType) {
        let blocks = 1usize << order.saturating_sub(PAGEBLOCK_ORDER);
        for b in 0..blocks {
            self.set(Pfn(pfn.0 + (b << PAGEBLOCK_ORDER)), mt);
        }
    }

    /// The number of pageblocks of each type, indexed by `MigrateType::index`.
    pub(crate) fn counts(&self) -> [usize; MigrateType::COUNT] {
        let mut c = [0; MigrateType::COUNT];
        for t in &self.types {
            c[t.index()] += 1;
        }
        c
    }
}
