//! `SoftMmu`: a software page table, the `Mmu` of `no_std` builds and
//! deterministic tests.
//!
//! The table is one atomic entry per page of the window, so every operation
//! is a compare-and-swap on a few entries: no lock, no `unsafe`, and the
//! exact `AlreadyMapped`/`NotMapped` answers the `Mmu` contract asks for fall
//! out of the swap that failed. The entries are allocated when the table is
//! built (safe Rust offers no lock-free lazy allocation), so the window is
//! capped at [`SoftMmu::MAX_WINDOW_PAGES`] pages.

#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::addr::{PAGE_SIZE, Pfn, VirtAddr};
use crate::mmu::{Mmu, MmuError, Prot};

/// How many low bits of an entry hold the [`Prot`] bits.
const PROT_BITS: u32 = 3;
/// The mask of the [`Prot`] bits in an entry.
const PROT_MASK: u64 = (1 << PROT_BITS) - 1;

/// The entry of a page that maps `pfn` with `prot`, or `None` if the frame
/// number is too large for an entry. Zero is the unmapped entry, so the frame
/// is stored plus one.
fn encode(pfn: Pfn, prot: Prot) -> Option<u64> {
    let stored = u64::try_from(pfn.0).ok()?.checked_add(1)?;
    if stored.leading_zeros() < PROT_BITS {
        return None;
    }
    Some((stored << PROT_BITS) | u64::from(prot.bits()))
}

/// The frame and protection an entry maps, or `None` for the unmapped entry.
fn decode(entry: u64) -> Option<(Pfn, Prot)> {
    let stored = entry >> PROT_BITS;
    if stored == 0 {
        return None;
    }
    // An entry is only ever built by `encode` from a `usize` frame number, so
    // the conversion cannot fail; `None` keeps the walk total all the same.
    let pfn = usize::try_from(stored - 1).ok()?;
    // The low bits came from `Prot::bits`, so truncation drops nothing.
    Some((
        Pfn(pfn),
        Prot::from_bits_truncate((entry & PROT_MASK) as u8),
    ))
}

/// A software page table over the window `[start, end)`: the kernel's page
/// tables for the vmalloc, pkmap and fixmap areas, with addresses that are
/// numbers only.
///
/// Each page of the window has one atomic entry, `0` when unmapped and
/// otherwise the frame plus one, shifted, with the [`Prot`] bits below it.
/// [`Mmu::map`] and [`Mmu::unmap`] are a single atomic swap each, so threads
/// may map and unmap distinct pages concurrently without a lock, and the
/// table is deterministic: the same calls give the same table. It hands out
/// no memory: [`Mmu::as_ptr`] is always `None`, and the bytes of a mapped
/// frame are reached through the direct map of a `PhysMemory`.
///
/// ```
/// use kmm_page::{Mmu, MmuError, PAGE_SIZE, Pfn, Prot, SoftMmu, VirtAddr};
///
/// let start = VirtAddr(0xffff_c900_0000_0000);
/// let mmu = SoftMmu::new(start, VirtAddr(start.0 + 16 * PAGE_SIZE))?;
/// mmu.map(start, Pfn(42), Prot::KERNEL)?;
/// assert_eq!(mmu.translate(VirtAddr(start.0 + 100)), Some(Pfn(42)));
/// assert_eq!(
///     mmu.map(start, Pfn(7), Prot::KERNEL),
///     Err(MmuError::AlreadyMapped { va: start, pfn: Pfn(42) })
/// );
/// assert_eq!(mmu.unmap(start), Ok(Pfn(42)));
/// assert_eq!(mmu.translate(start), None);
/// # Ok::<(), MmuError>(())
/// ```
pub struct SoftMmu {
    start: VirtAddr,
    end: VirtAddr,
    /// One entry per page of the window.
    entries: Box<[AtomicU64]>,
    /// The number of non-zero entries.
    mapped: AtomicUsize,
}

impl SoftMmu {
    /// The largest window, in pages, that [`SoftMmu::new`] accepts: 16 GiB
    /// of address space, whose table takes 32 MiB.
    pub const MAX_WINDOW_PAGES: usize = 1 << 22;

    /// Builds an empty page table for the window `[start, end)`.
    ///
    /// # Errors
    ///
    /// [`MmuError::Misaligned`] if `start` or `end` is not page aligned, and
    /// [`MmuError::OutsideWindow`] with `end` if the window is empty, ends
    /// before it starts, or is larger than [`SoftMmu::MAX_WINDOW_PAGES`]
    /// pages (or than the memory for its table).
    pub fn new(start: VirtAddr, end: VirtAddr) -> Result<SoftMmu, MmuError> {
        for a in [start, end] {
            if a.page_offset() != 0 {
                return Err(MmuError::Misaligned(a));
            }
        }
        let pages = end.0.saturating_sub(start.0) / PAGE_SIZE;
        if pages == 0 || pages > Self::MAX_WINDOW_PAGES {
            return Err(MmuError::OutsideWindow(end));
        }
        let mut entries = Vec::new();
        if entries.try_reserve_exact(pages).is_err() {
            return Err(MmuError::OutsideWindow(end));
        }
        entries.extend((0..pages).map(|_| AtomicU64::new(0)));
        Ok(SoftMmu {
            start,
            end,
            entries: entries.into_boxed_slice(),
            mapped: AtomicUsize::new(0),
        })
    }

    /// The number of pages mapped.
    pub fn mapped_pages(&self) -> usize {
        self.mapped.load(Ordering::Acquire)
    }

    /// The frame and protection mapped at the page holding `va`, if any.
    pub fn lookup(&self, va: VirtAddr) -> Option<(Pfn, Prot)> {
        let index = va.0.checked_sub(self.start.0)? / PAGE_SIZE;
        decode(self.entries.get(index)?.load(Ordering::Acquire))
    }

    /// Calls `f(va, pfn, prot)` for every mapped page, in address order.
    ///
    /// Pages mapped or unmapped by other threads during the walk may or may
    /// not be seen.
    pub fn for_each_mapping(&self, mut f: impl FnMut(VirtAddr, Pfn, Prot)) {
        for (va, pfn, prot) in self.mappings() {
            f(va, pfn, prot);
        }
    }

    /// The mapped pages as `(va, pfn, prot)`, in address order.
    pub fn mappings(&self) -> impl Iterator<Item = (VirtAddr, Pfn, Prot)> + '_ {
        self.entries.iter().enumerate().filter_map(|(i, e)| {
            let (pfn, prot) = decode(e.load(Ordering::Acquire))?;
            Some((VirtAddr(self.start.0 + i * PAGE_SIZE), pfn, prot))
        })
    }

    /// The index of the first of `pages` pages from `va`, which must all be
    /// inside the window.
    fn index(&self, va: VirtAddr, pages: usize) -> Result<usize, MmuError> {
        if va.page_offset() != 0 {
            return Err(MmuError::Misaligned(va));
        }
        let outside = MmuError::OutsideWindow(va);
        let index = va.0.checked_sub(self.start.0).ok_or(outside.clone())? / PAGE_SIZE;
        match index.checked_add(pages) {
            Some(last) if last <= self.entries.len() => Ok(index),
            _ => Err(outside),
        }
    }

    /// Clears the entries of pages `index..index + n`, each of which this
    /// call's caller set to `first + k` frames; an entry another thread has
    /// changed since is left alone.
    fn roll_back(&self, index: usize, n: usize, first: u64) {
        for (k, slot) in self.entries[index..index + n].iter().enumerate() {
            let entry = first + ((k as u64) << PROT_BITS);
            if slot
                .compare_exchange(entry, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.mapped.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl Mmu for SoftMmu {
    fn window(&self) -> (VirtAddr, VirtAddr) {
        (self.start, self.end)
    }

    /// Maps `va` to `pfn`, as `set_pte` does for one kernel page
    /// (`mm/vmalloc.c`, `vmap_pte_range`).
    ///
    /// Errors, in the order they are checked: [`MmuError::Misaligned`],
    /// [`MmuError::OutsideWindow`], [`MmuError::NoFrame`] for a frame number
    /// too large for an entry (at or above 2^61 - 1), and
    /// [`MmuError::AlreadyMapped`].
    fn map(&self, va: VirtAddr, pfn: Pfn, prot: Prot) -> Result<(), MmuError> {
        self.map_range(va, pfn, 1, prot)
    }

    /// Maps `pages` frames from `pfn` at `va`: all the pages or, after an
    /// error, none of them. Errors are checked as for [`Mmu::map`], over the
    /// whole range: a conflict reports the first page already mapped.
    fn map_range(&self, va: VirtAddr, pfn: Pfn, pages: usize, prot: Prot) -> Result<(), MmuError> {
        let index = self.index(va, pages)?;
        if pages == 0 {
            return Ok(());
        }
        // Entries grow with the frame number, so if the last frame fits in
        // an entry, every frame of the range does.
        let last = pfn.checked_add(pages - 1).ok_or(MmuError::NoFrame(pfn))?;
        let first = encode(pfn, prot).ok_or(MmuError::NoFrame(pfn))?;
        encode(last, prot).ok_or(MmuError::NoFrame(last))?;
        for (i, slot) in self.entries[index..index + pages].iter().enumerate() {
            let entry = first + ((i as u64) << PROT_BITS);
            // Counting the page before it is mapped keeps the count at or
            // above the number of mapped pages while other threads unmap.
            self.mapped.fetch_add(1, Ordering::AcqRel);
            if let Err(old) = slot.compare_exchange(0, entry, Ordering::AcqRel, Ordering::Acquire) {
                self.mapped.fetch_sub(1, Ordering::AcqRel);
                self.roll_back(index, i, first);
                // `old` is not zero, since the swap from zero failed.
                let pfn = decode(old).map_or(Pfn(0), |(pfn, _)| pfn);
                return Err(MmuError::AlreadyMapped {
                    va: VirtAddr(va.0 + i * PAGE_SIZE),
                    pfn,
                });
            }
        }
        Ok(())
    }

    /// Unmaps `va` and returns its frame, as `ptep_get_and_clear` does
    /// (`mm/vmalloc.c`, `vunmap_pte_range`).
    ///
    /// Errors: [`MmuError::Misaligned`], [`MmuError::OutsideWindow`] and
    /// [`MmuError::NotMapped`].
    fn unmap(&self, va: VirtAddr) -> Result<Pfn, MmuError> {
        let index = self.index(va, 1)?;
        let old = self.entries[index].swap(0, Ordering::AcqRel);
        match decode(old) {
            Some((pfn, _)) => {
                self.mapped.fetch_sub(1, Ordering::AcqRel);
                Ok(pfn)
            }
            // Swapping zero for zero changed nothing.
            None => Err(MmuError::NotMapped(va)),
        }
    }

    /// The frame mapped at the page holding `va` (`vmalloc_to_page`,
    /// `mm/vmalloc.c`); any address is accepted, and `None` answers for those
    /// outside the window.
    fn translate(&self, va: VirtAddr) -> Option<Pfn> {
        self.lookup(va).map(|(pfn, _)| pfn)
    }

    /// Always `None`: the window is numbers, not memory of this process.
    fn as_ptr(&self, _va: VirtAddr) -> Option<NonNull<u8>> {
        None
    }
}

impl fmt::Debug for SoftMmu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftMmu")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("mapped_pages", &self.mapped_pages())
            .finish()
    }
}

#[cfg(test)]
mod tests;
