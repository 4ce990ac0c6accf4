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
        // SAFETY: 1. `off + 8 <= len`, so the read is inside the block; 2. the
        // block is valid for reads while held (`new`'s contract); 3. the
        // read is unaligned-tolerant.
        Some(unsafe { self.base.add(off).cast::<usize>().read_unaligned() })
    }

    /// Writes the word at `off`; returns `false` (and writes nothing) if out of bounds.
    #[inline]
    pub(crate) fn write_word(&self, off: usize, value: usize) -> bool {
        if !self.check(off, size_of::<usize>()) {
            return false;
        }
        // SAFETY: as in `read_word`, and the block is valid for writes.
        unsafe { self.base.add(off).cast::<usize>().write_unaligned(value) };
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
