//! `SlabMem`: the bytes of one slab (or one large kmalloc block), the only
//! place where the slab layer reads or writes memory.
//!
//! # Soundness
//!
//! The slab layer owns the bytes of every page block the page allocator has
//! handed to it, from `alloc_pages` until the matching `free_pages`: the
//! `PageAllocator` contract says no other live allocation holds those frames,
//! and the `PhysMemory` contract says their direct-map bytes are valid,
//! disjoint from other frames and untouched by the memory itself. The frames
//! also carry a `Slab`/`LargeKmalloc` page type or the `TAIL` flag while the
//! slab layer holds them, so the page allocator refuses to free them behind
//! its back.
//!
//! A [`SlabMem`] is made with the unsafe [`SlabMem::new`], whose caller
//! promises that the block is held for as long as the value is used; the slab
//! layer builds one under the lock that keeps the slab alive (the CPU lock of
//! a frozen slab, the node lock otherwise) and drops it before the lock. Every
//! access is then bounds-checked against the block, so no offset computed from
//! caller input can reach outside it. Pointers handed to users are derived
//! from the block's own pointer, so they carry its provenance.
//!
//! Objects handed out belong to their callers, who reach them only through
//! raw pointers; the slab layer writes an object's bytes only while it is
//! free (free pointer, poison, red zones) or at the moment it is handed out
//! or taken back (zeroing, red zones, the constructor). A caller who writes a
//! freed object concurrently with the slab layer's accesses races, which is
//! the caller's undefined behaviour; a sequential use after free is exactly
//! what `SLAB_POISON` detects.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The bytes of one slab or large kmalloc block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlabMem {
    base: NonNull<u8>,
    len: usize,
}

impl SlabMem {
    /// The `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// `base..base + len` is the direct-map memory of a page block that the
    /// slab layer holds (allocated to it and not freed) for as long as the
    /// returned value or any copy of it is used, and `base` carries the
    /// provenance of that memory.
    #[inline]
    pub(crate) unsafe fn new(base: NonNull<u8>, len: usize) -> SlabMem {
        SlabMem { base, len }
    }

    /// The block's length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The block's first byte.
    #[inline]
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    #[inline]
    fn check(&self, off: usize, n: usize) -> bool {
        off.checked_add(n).is_some_and(|end| end <= self.len)
    }

    /// A pointer to byte `off` (`off <= len`), with the block's provenance.
    #[inline]
    pub(crate) fn ptr(&self, off: usize) -> Option<NonNull<u8>> {
        if off > self.len {
            return None;
        }
        // SAFETY: `off <= len`, so the result stays inside the block or one
        // past its end, which is inside the same allocated object.
        Some(unsafe { self.base.add(off) })
    }

    /// Reads the word at `off` (a free pointer), `None` if out of bounds.
    #[inline]
    pub(crate) fn read_word(&self, off: usize) -> Option<usize> {
        if !self.check(off, size_of::<usize>()) {
            return None;
        }
        // SAFETY: `off + 8 <= len`, so the word is inside the block, which is
        // valid for reads and writes while held (`new`'s contract).
        let p = unsafe { self.base.add(off).cast::<usize>() };
        // SAFETY: as just said, with the block's provenance.
        if let Some(word) = unsafe { atomic_word(p.as_ptr()) } {
            return Some(word.load(Ordering::Relaxed));
        }
        // SAFETY: inside the held block; the read is unaligned-tolerant.
        Some(unsafe { p.read_unaligned() })
    }

    /// Writes the word at `off`; returns `false` (and writes nothing) if out of bounds.
    #[inline]
    pub(crate) fn write_word(&self, off: usize, value: usize) -> bool {
        if !self.check(off, size_of::<usize>()) {
            return false;
        }
        // SAFETY: as in `read_word`, and the block is valid for writes.
        let p = unsafe { self.base.add(off).cast::<usize>() };
        // SAFETY: as in `read_word`.
        if let Some(word) = unsafe { atomic_word(p.as_ptr()) } {
            word.store(value, Ordering::Relaxed);
        } else {
            // SAFETY: inside the held block; the write is unaligned-tolerant.
            unsafe { p.write_unaligned(value) };
        }
        true
    }

    /// Links `count` objects `stride` bytes apart, the first at offset
    /// `first`, into a freelist (`new_slab`): the word `fp` bytes into each
    /// object gets the next object's offset, and the last object's gets
    /// `end`. Returns `false`, writing nothing, if any of the words would lie
    /// outside the block. One bounds check covers every word, so the loop is
    /// a store and an add per object.
    pub(crate) fn write_chain(
        &self,
        first: usize,
        stride: usize,
        count: usize,
        fp: usize,
        end: usize,
    ) -> bool {
        let Some(last) = count.checked_sub(1) else {
            return true;
        };
        let last_word = last
            .checked_mul(stride)
            .and_then(|o| o.checked_add(first))
            .and_then(|o| o.checked_add(fp));
        if !last_word.is_some_and(|w| self.check(w, size_of::<usize>())) {
            return false;
        }
        let words_aligned = stride.is_multiple_of(align_of::<usize>())
            && (self.base.as_ptr().addr().wrapping_add(first + fp))
                .is_multiple_of(align_of::<usize>());
        if !words_aligned {
            // Never a layout of the caches the fast paths serve (whole-word
            // slots and free-pointer offset, a unit test checks); word by
            // word, unaligned-tolerant.
            for k in 0..count {
                let off = first + k * stride;
                let next = if k < last { off + stride } else { end };
                self.write_word(off + fp, next);
            }
            return true;
        }
        let mut off = first;
        for _ in 0..last {
            // SAFETY: `off + fp + 8 <= last_word + 8 <= len` (checked above,
            // `off <= first + last * stride`), so the word is inside the held
            // block (`new`'s contract), with its provenance, and aligned
            // (`base + first + fp` and `stride` are multiples of a word).
            unsafe { AtomicUsize::from_ptr(self.base.as_ptr().add(off + fp).cast()) }
                .store(off + stride, Ordering::Relaxed);
            off += stride;
        }
        // SAFETY: as in the loop; `off` is the last object's offset.
        unsafe { AtomicUsize::from_ptr(self.base.as_ptr().add(off + fp).cast()) }
            .store(end, Ordering::Relaxed);
        true
    }

    /// Fills `n` bytes from `off` with `byte`; `false` if out of bounds.
    #[inline]
    pub(crate) fn fill(&self, off: usize, n: usize, byte: u8) -> bool {
        if !self.check(off, n) {
            return false;
        }
        // SAFETY: `off + n <= len`, the block is valid for writes while held.
        unsafe { self.base.add(off).write_bytes(byte, n) };
        true
    }

    /// Writes one byte; `false` if out of bounds.
    #[inline]
    pub(crate) fn write_byte(&self, off: usize, byte: u8) -> bool {
        self.fill(off, 1, byte)
    }

    /// The first offset in `off..off + n` whose byte is not `byte`, with the
    /// byte found; `None` if all match or the range is out of bounds.
    pub(crate) fn first_mismatch(&self, off: usize, n: usize, byte: u8) -> Option<(usize, u8)> {
        if !self.check(off, n) {
            return None;
        }
        // SAFETY: `off + n <= len`; the block is valid for reads while held,
        // and no reference to these bytes exists (users hold raw pointers only).
        let bytes = unsafe { core::slice::from_raw_parts(self.base.add(off).as_ptr(), n) };
        bytes
            .iter()
            .position(|&b| b != byte)
            .map(|i| (off + i, bytes[i]))
    }

    /// Reads one byte, `None` if out of bounds.
    pub(crate) fn read_byte(&self, off: usize) -> Option<u8> {
        if !self.check(off, 1) {
            return None;
        }
        // SAFETY: `off < len`, inside the held block.
        Some(unsafe { self.base.add(off).read() })
    }

    /// Copies `n` bytes from `src_off` of `self` to `dst_off` of `dst`;
    /// `false` (nothing copied) if either range is out of bounds or the two
    /// ranges overlap.
    pub(crate) fn copy_to(&self, src_off: usize, dst: &SlabMem, dst_off: usize, n: usize) -> bool {
        if !self.check(src_off, n) || !dst.check(dst_off, n) {
            return false;
        }
        let s = self.base.as_ptr().addr() + src_off;
        let d = dst.base.as_ptr().addr() + dst_off;
        if s < d + n && d < s + n {
            return false;
        }
        // SAFETY: both ranges are inside held blocks (checked above) and do
        // not overlap (checked above).
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.base.add(src_off).as_ptr(),
                dst.base.add(dst_off).as_ptr(),
                n,
            );
        }
        true
    }
}

/// Reads the free pointer at `base + off` atomically: the word a CPU
/// freelist's fast-path pop reads before its compare-exchange
/// (`get_freepointer_safe` in `mm/slub.c`). A misaligned address, which no
/// slab layout produces, reads as a value above every offset (corrupt).
///
/// # The race this read accepts
///
/// A thread may read the first object of the freelist, be delayed, and read
/// its free pointer after another thread popped that object and handed it
/// out, while the new owner writes it; or after the slab was flushed and
/// freed. The value read is then stale and the pop's compare-exchange fails,
/// because the tid changed, so the value is never used. This is the race the
/// kernel accepts on the same path. The load is atomic, so it cannot tear or
/// be torn by the slab layer's own (atomic) free-pointer stores; but it can
/// overlap a caller's plain write to its new object, which Rust's memory
/// model counts as a data race. No lock-free pop of an intrusive freelist
/// shared by threads avoids that overlap; SLUB's design, which this crate
/// models, is built on it.
///
/// # Safety
///
/// `base + off` lies inside the direct map of the machine's memory and
/// `base` carries its provenance: the direct map stays mapped and readable
/// for as long as the slab allocator holds its page allocator, whoever owns
/// the frame at the moment.
#[inline]
pub(crate) unsafe fn load_free_word(base: *mut u8, off: usize) -> usize {
    // `wrapping_add` computes the address without claiming it is in bounds.
    let p = base.wrapping_add(off).cast::<usize>();
    // SAFETY: `p` is inside the mapped direct map (the caller's promise),
    // with its provenance; the overlap with a caller's plain write is the
    // race described above.
    match unsafe { atomic_word(p) } {
        Some(word) => word.load(Ordering::Relaxed),
        None => usize::MAX - 1,
    }
}

/// [`load_free_word`] of a word the caller knows to be aligned: the
/// [`crate::LocalCache`] fast path, whose freelist offsets are all
/// word-aligned (every one was tested when it entered the list).
///
/// # Safety
///
/// As [`load_free_word`], and `base + off` is aligned to a word.
#[inline(always)]
pub(crate) unsafe fn load_free_word_aligned(base: *mut u8, off: usize) -> usize {
    let p = base.wrapping_add(off).cast::<usize>();
    debug_assert!(p.is_aligned());
    // SAFETY: aligned (the caller's promise), inside the mapped direct map
    // with its provenance; see `load_free_word` for the races.
    unsafe { AtomicUsize::from_ptr(p) }.load(Ordering::Relaxed)
}

/// Writes the free pointer at `base + off` atomically (the fast-path push),
/// so that it never races with `load_free_word` of a delayed pop. The
/// address is not tested: the fast paths free only object starts of caches
/// without debug flags, whose slots are whole words, as is the free
/// pointer's offset, in a page-aligned slab.
///
/// # Safety
///
/// As [`load_free_word`]; `base + off` is aligned to a word; and the object
/// holding the word belongs to the caller (it is being freed): no one else
/// writes it.
#[inline(always)]
pub(crate) unsafe fn store_free_word(base: *mut u8, off: usize, value: usize) {
    let p = base.wrapping_add(off).cast::<usize>();
    debug_assert!(p.is_aligned());
    // SAFETY: aligned (the caller's promise), inside the mapped direct map
    // with its provenance, and in the caller's object, so the only
    // concurrent access is a delayed pop's atomic `load_free_word`.
    unsafe { AtomicUsize::from_ptr(p) }.store(value, Ordering::Relaxed);
}

/// The word at `p` as an atomic, `None` if `p` is misaligned. Every
/// slab-layer access to a free pointer goes through here, so accesses that
/// another thread may make at the same moment are all atomic.
///
/// # Safety
///
/// `p` is valid for reads and writes of a word and carries the provenance
/// of the memory around it, for as long as the returned reference is used.
#[inline]
unsafe fn atomic_word<'a>(p: *mut usize) -> Option<&'a AtomicUsize> {
    if !p.is_aligned() {
        return None;
    }
    // SAFETY: aligned (checked) and valid for reads and writes (the
    // caller's promise); concurrent accesses by the slab layer are atomic.
    Some(unsafe { AtomicUsize::from_ptr(p) })
}
