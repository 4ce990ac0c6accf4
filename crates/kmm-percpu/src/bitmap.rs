//! `Bitmap`: a fixed-length bit array over 64-bit words, with the range
//! searches the per-CPU area allocator needs (`find_next_bit`,
//! `find_next_zero_bit`, `bitmap_set`, `bitmap_clear` of `include/linux/bitmap.h`).
//!
//! The crate keeps its own instead of `bitvec`, whose pointer encoding
//! Miri reports as undefined behaviour under Stacked Borrows
//! (ferrilab/bitvec#193), and Miri runs on this crate in CI.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

const WORD: usize = 64;

/// A fixed-length array of bits, least significant bit of word 0 first.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bitmap {
    words: Vec<u64>,
    len: usize,
}

/// The bits of word `w` that lie in `range` (absolute bit indices).
fn mask(w: usize, range: &Range<usize>) -> u64 {
    let lo = range.start.saturating_sub(w * WORD).min(WORD);
    let hi = range.end.saturating_sub(w * WORD).min(WORD);
    if lo >= hi {
        return 0;
    }
    let upper = if hi == WORD { u64::MAX } else { (1 << hi) - 1 };
    upper & !((1u64 << lo) - 1)
}

impl Bitmap {
    /// `len` bits, all `value`.
    pub fn new(len: usize, value: bool) -> Bitmap {
        let mut map = Bitmap {
            words: vec![0; len.div_ceil(WORD)],
            len,
        };
        if value {
            map.fill(0..len, true);
        }
        map
    }

    /// The number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bits at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bit `i`, or `None` if `i >= len`.
    pub fn get(&self, i: usize) -> Option<bool> {
        (i < self.len).then(|| self.bit(i))
    }

    /// Bit `i`; `i < len`.
    pub(crate) fn bit(&self, i: usize) -> bool {
        debug_assert!(i < self.len);
        self.words[i / WORD] >> (i % WORD) & 1 == 1
    }

    /// Sets bit `i` to `value`; `i < len`.
    pub(crate) fn set(&mut self, i: usize, value: bool) {
        self.fill(i..i + 1, value);
    }

    /// Sets every bit in `range` to `value`; `range.end <= len`.
    pub(crate) fn fill(&mut self, range: Range<usize>, value: bool) {
        debug_assert!(range.end <= self.len);
        if range.start >= range.end {
            return;
        }
        for w in range.start / WORD..range.end.div_ceil(WORD) {
            let m = mask(w, &range);
            if value {
                self.words[w] |= m;
            } else {
                self.words[w] &= !m;
            }
        }
    }

    /// The words `range` touches, with the bits outside `range` cleared;
    /// `invert` looks at the zero bits instead.
    fn scan(
        &self,
        range: Range<usize>,
        invert: bool,
    ) -> impl DoubleEndedIterator<Item = (usize, u64)> + '_ {
        let end = range.end.min(self.len);
        let range = range.start.min(end)..end;
        let words = if range.is_empty() {
            0..0
        } else {
            range.start / WORD..range.end.div_ceil(WORD)
        };
        words.map(move |w| {
            let bits = if invert {
                !self.words[w]
            } else {
                self.words[w]
            };
            (w, bits & mask(w, &range))
        })
    }

    /// The first set bit in `range` (`find_next_bit`).
    pub fn first_one_in(&self, range: Range<usize>) -> Option<usize> {
        self.scan(range, false)
            .find(|&(_, bits)| bits != 0)
            .map(|(w, bits)| w * WORD + bits.trailing_zeros() as usize)
    }

    /// The first clear bit in `range` (`find_next_zero_bit`).
    pub fn first_zero_in(&self, range: Range<usize>) -> Option<usize> {
        self.scan(range, true)
            .find(|&(_, bits)| bits != 0)
            .map(|(w, bits)| w * WORD + bits.trailing_zeros() as usize)
    }

    /// The last set bit in `range`.
    pub fn last_one_in(&self, range: Range<usize>) -> Option<usize> {
        self.scan(range, false)
            .rev()
            .find(|&(_, bits)| bits != 0)
            .map(|(w, bits)| w * WORD + (WORD - 1 - bits.leading_zeros() as usize))
    }

    /// Whether every bit in `range` is set (true for an empty range).
    pub fn all_in(&self, range: Range<usize>) -> bool {
        range.end <= self.len && self.first_zero_in(range).is_none()
    }

    /// Whether no bit in `range` is set (true for an empty range).
    pub fn none_in(&self, range: Range<usize>) -> bool {
        self.first_one_in(range).is_none()
    }

    /// The number of set bits.
    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The number of clear bits.
    pub fn count_zeros(&self) -> usize {
        self.len - self.count_ones()
    }

    /// The indices of the set bits, in order.
    pub fn iter_ones(&self) -> impl Iterator<Item = usize> + '_ {
        let mut next = 0;
        core::iter::from_fn(move || {
            let one = self.first_one_in(next..self.len)?;
            next = one + 1;
            Some(one)
        })
    }
}

impl fmt::Debug for Bitmap {
    /// The bits as `0` and `1`, bit 0 first, in groups of 8.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bitmap[")?;
        for i in 0..self.len {
            if i > 0 && i % 8 == 0 {
                f.write_str("_")?;
            }
            f.write_str(if self.bit(i) { "1" } else { "0" })?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests;
