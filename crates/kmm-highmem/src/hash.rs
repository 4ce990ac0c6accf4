//! The page → pkmap slot table: the model of `page_address_htable` in
//! `mm/highmem.c` (`HASHED_PAGE_VIRTUAL`, 128 buckets).

use alloc::vec::Vec;

use kmm_page::Pfn;

/// log2 of the number of buckets (`PA_HASH_ORDER` in `mm/highmem.c`).
pub(crate) const PA_HASH_ORDER: u32 = 7;

/// The multiplier of `hash_64` (`GOLDEN_RATIO_64`, `include/linux/hash.h`).
const GOLDEN_RATIO_64: u64 = 0x61C8_8646_80B5_83EB;

/// Which pkmap slot each kmapped highmem page occupies.
///
/// A page appears at most once: [`PageTable::insert`] is only called for a
/// page that [`PageTable::get`] did not find.
#[derive(Debug)]
pub(crate) struct PageTable {
    buckets: Vec<Vec<(Pfn, usize)>>,
    len: usize,
}

/// The bucket of `pfn` (`hash_64(pfn, PA_HASH_ORDER)`).
fn bucket_of(pfn: Pfn) -> usize {
    let h = (pfn.0 as u64).wrapping_mul(GOLDEN_RATIO_64) >> (64 - PA_HASH_ORDER);
    h as usize
}

impl PageTable {
    /// An empty table.
    pub(crate) fn new() -> PageTable {
        PageTable {
            buckets: (0..1usize << PA_HASH_ORDER).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    /// The slot of `pfn`, if it is kmapped.
    pub(crate) fn get(&self, pfn: Pfn) -> Option<usize> {
        self.buckets[bucket_of(pfn)]
            .iter()
            .find(|&&(p, _)| p == pfn)
            .map(|&(_, slot)| slot)
    }

    /// Records that `pfn` occupies `slot` (`set_page_address(page, vaddr)`).
    pub(crate) fn insert(&mut self, pfn: Pfn, slot: usize) {
        self.buckets[bucket_of(pfn)].push((pfn, slot));
        self.len += 1;
    }

    /// Forgets `pfn` (`set_page_address(page, NULL)`); returns its slot.
    pub(crate) fn remove(&mut self, pfn: Pfn) -> Option<usize> {
        let bucket = &mut self.buckets[bucket_of(pfn)];
        let i = bucket.iter().position(|&(p, _)| p == pfn)?;
        self.len -= 1;
        Some(bucket.swap_remove(i).1)
    }

    /// The number of pages in the table.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The number of pages in the fullest bucket.
    #[cfg(test)]
    pub(crate) fn longest_bucket(&self) -> usize {
        self.buckets.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Every `(page, slot)` pair, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Pfn, usize)> + '_ {
        self.buckets.iter().flatten().copied()
    }
}
