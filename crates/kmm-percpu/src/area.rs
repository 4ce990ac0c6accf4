//! `AreaMap`: the bitmap area allocator of one per-CPU chunk (`pcpu_alloc_area`
//! and `pcpu_free_area` in `mm/percpu.c`), one bit per 4-byte fragment.
//!
//! `alloc_map` has a bit set for every fragment in use. `bound_map` has one
//! more bit than `alloc_map`; an allocation sets the bound bit at its first
//! fragment and at the fragment just past its end, and clears the bound bits
//! in between, so a free finds the size by looking for the next bound bit.
//! A free clears only `alloc_map`, as the kernel does: bound bits left behind
//! in free space mean nothing and are overwritten by the next allocation.
//! Hidden regions (the static area before, and the unused tail after, the
//! first chunk's allocatable regions) are marked in use once, at creation.

use alloc::format;
use alloc::string::String;

use crate::Bitmap;

/// The bytes one bit of the maps stands for (`PCPU_MIN_ALLOC_SIZE`, `include/linux/percpu.h`).
pub(crate) const FRAGMENT: usize = 4;

/// The allocation and boundary bitmaps of one chunk, with its free-byte count.
#[derive(Clone, Debug)]
pub(crate) struct AreaMap {
    alloc_map: Bitmap,
    bound_map: Bitmap,
    free_bytes: usize,
    /// Live allocations, hidden regions not counted.
    nr_alloc: usize,
    /// Fragments hidden at the start (in use from creation, never freed).
    start_bits: usize,
    /// Fragments hidden at the end.
    end_bits: usize,
}

impl AreaMap {
    /// A map of `nbits` fragments whose first `start_bits` and last
    /// `end_bits` fragments are hidden (`pcpu_alloc_first_chunk` marks the
    /// same regions in use). Requires `start_bits + end_bits <= nbits`.
    pub(crate) fn new(nbits: usize, start_bits: usize, end_bits: usize) -> AreaMap {
        debug_assert!(start_bits + end_bits <= nbits);
        let mut map = AreaMap {
            alloc_map: Bitmap::new(nbits, false),
            bound_map: Bitmap::new(nbits + 1, false),
            free_bytes: nbits * FRAGMENT,
            nr_alloc: 0,
            start_bits,
            end_bits,
        };
        map.bound_map.set(0, true);
        map.bound_map.set(nbits, true);
        if start_bits > 0 {
            map.mark(0, start_bits);
        }
        if end_bits > 0 {
            map.mark(nbits - end_bits, end_bits);
        }
        map
    }

    /// Marks `bits` fragments from `bit` in use and sets their bound bits.
    fn mark(&mut self, bit: usize, bits: usize) {
        self.alloc_map.fill(bit..bit + bits, true);
        self.bound_map.set(bit, true);
        self.bound_map.fill(bit + 1..bit + bits, false);
        self.bound_map.set(bit + bits, true);
        self.free_bytes -= bits * FRAGMENT;
    }

    /// The number of fragments.
    pub(crate) fn nbits(&self) -> usize {
        self.alloc_map.len()
    }

    /// Free bytes in the whole map (`chunk->free_bytes`).
    pub(crate) fn free_bytes(&self) -> usize {
        self.free_bytes
    }

    /// Live allocations, hidden regions not counted.
    pub(crate) fn nr_alloc(&self) -> usize {
        self.nr_alloc
    }

    /// The hidden fragments at the start.
    pub(crate) fn start_bits(&self) -> usize {
        self.start_bits
    }

    /// The hidden fragments at the end.
    pub(crate) fn end_bits(&self) -> usize {
        self.end_bits
    }

    /// The allocation bitmap.
    pub(crate) fn alloc_map(&self) -> &Bitmap {
        &self.alloc_map
    }

    /// The boundary bitmap (one bit longer than the allocation bitmap).
    pub(crate) fn bound_map(&self) -> &Bitmap {
        &self.bound_map
    }

    /// Finds the first run of `bits` free fragments in `[lo, hi)` whose start
    /// is a multiple of `align_bits`, marks it in use and returns its first
    /// fragment (`pcpu_find_block_fit` plus `pcpu_alloc_area`), or `None`,
    /// with nothing changed, if there is none.
    ///
    /// Requires `bits > 0`, `align_bits` a power of two, `lo <= hi <= nbits`.
    pub(crate) fn alloc(
        &mut self,
        bits: usize,
        align_bits: usize,
        lo: usize,
        hi: usize,
    ) -> Option<usize> {
        let mut from = lo;
        loop {
            let zero = self.alloc_map.first_zero_in(from..hi)?;
            let start = zero.next_multiple_of(align_bits);
            let end = start.checked_add(bits)?;
            if end > hi {
                return None;
            }
            match self.alloc_map.last_one_in(start..end) {
                // The run is broken: go on past the last fragment in use.
                Some(one) => from = one + 1,
                None => {
                    self.mark(start, bits);
                    self.nr_alloc += 1;
                    return Some(start);
                }
            }
        }
    }

    /// The length in fragments of the live allocation that starts at `bit`,
    /// or `None` if none does (a free fragment, the inside of an allocation,
    /// a hidden region, or out of range).
    pub(crate) fn alloc_len(&self, bit: usize) -> Option<usize> {
        if bit < self.start_bits || bit >= self.nbits() - self.end_bits {
            return None;
        }
        if !self.alloc_map.bit(bit) || !self.bound_map.bit(bit) {
            return None;
        }
        Some(self.next_bound(bit) - bit)
    }

    /// The bound bit after `bit` (there is always one: the last bit is set).
    fn next_bound(&self, bit: usize) -> usize {
        let end = self.bound_map.len();
        self.bound_map.first_one_in(bit + 1..end).unwrap_or(end)
    }

    /// The live allocation that contains fragment `bit`, as its first
    /// fragment and length, or `None` if the fragment is free, hidden or out of range.
    pub(crate) fn containing(&self, bit: usize) -> Option<(usize, usize)> {
        if bit < self.start_bits || bit >= self.nbits() - self.end_bits || !self.alloc_map.bit(bit)
        {
            return None;
        }
        // No bound bit lies strictly inside an allocation, so the last bound
        // bit at or before `bit` is the start of the one containing it.
        let start = self.bound_map.last_one_in(0..bit + 1)?;
        Some((start, self.next_bound(start) - start))
    }

    /// Frees the live allocation that starts at `bit` and returns its length
    /// in fragments (`pcpu_free_area`), or `None`, with nothing changed, if
    /// none starts there.
    pub(crate) fn free(&mut self, bit: usize) -> Option<usize> {
        let bits = self.alloc_len(bit)?;
        self.alloc_map.fill(bit..bit + bits, false);
        self.free_bytes += bits * FRAGMENT;
        self.nr_alloc -= 1;
        Some(bits)
    }

    /// The longest run of free fragments in `[lo, hi)` (the chunk's `contig_hint`).
    pub(crate) fn contig(&self, lo: usize, hi: usize) -> usize {
        let mut best = 0;
        let mut at = lo;
        while let Some(start) = self.alloc_map.first_zero_in(at..hi) {
            let end = self.alloc_map.first_one_in(start..hi).unwrap_or(hi);
            best = best.max(end - start);
            at = end;
        }
        best
    }

    /// Checks the map against itself: `free_bytes` counts the zero bits,
    /// the end bound bits are set, every run of used fragments splits at
    /// bound bits into allocations, and their count is `nr_alloc` plus the
    /// hidden regions.
    pub(crate) fn check(&self) -> Result<(), String> {
        let nbits = self.nbits();
        if self.bound_map.len() != nbits + 1 {
            return Err(format!(
                "bound_map has {} bits for {nbits} fragments",
                self.bound_map.len()
            ));
        }
        let zeros = self.alloc_map.count_zeros();
        if self.free_bytes != zeros * FRAGMENT {
            return Err(format!(
                "free_bytes {} but {zeros} free fragments",
                self.free_bytes
            ));
        }
        if !self.bound_map.bit(0) || !self.bound_map.bit(nbits) {
            return Err("the bound bits at 0 and at the end must be set".into());
        }
        let mut areas = 0;
        let mut at = 0;
        while let Some(start) = self.alloc_map.first_one_in(at..nbits) {
            if !self.bound_map.bit(start) {
                return Err(format!(
                    "fragment {start} starts a used run without a bound bit"
                ));
            }
            let end = self.next_bound(start);
            if let Some(zero) = self.alloc_map.first_zero_in(start..end) {
                return Err(format!(
                    "allocation at {start}..{end} has a free fragment at {zero}"
                ));
            }
            areas += 1;
            at = end;
        }
        let hidden_ok =
            |lo: usize, bits: usize| bits == 0 || (self.alloc_len_any(lo) == Some(bits));
        if !hidden_ok(0, self.start_bits) || !hidden_ok(nbits - self.end_bits, self.end_bits) {
            return Err("a hidden region is not one allocation".into());
        }
        let hidden = usize::from(self.start_bits > 0) + usize::from(self.end_bits > 0);
        if areas != self.nr_alloc + hidden {
            return Err(format!(
                "{areas} areas in the maps, but nr_alloc {} and {hidden} hidden regions",
                self.nr_alloc
            ));
        }
        Ok(())
    }

    /// Like [`AreaMap::alloc_len`], hidden regions included.
    fn alloc_len_any(&self, bit: usize) -> Option<usize> {
        (self.alloc_map.bit(bit) && self.bound_map.bit(bit)).then(|| self.next_bound(bit) - bit)
    }
}

#[cfg(test)]
mod tests;
