//! The seam between the replay engine and an allocator: the [`ReplayHeap`] trait, and
//! [`Objects`], the table of live objects that owns their handles and touches their memory.
//!
//! A replay treats memory a little as a program would: it writes the first and the last byte of
//! every object it allocates, and checks them when the object is reallocated or freed.
//! That costs two stores and two loads per object and catches an allocator that hands out
//! overlapping objects, loses bytes in a realloc, or frees the wrong memory.
//! This module is where the raw pointers are dereferenced; its soundness argument is that
//! [`Objects`] holds every handle the heap gave out, with the size and alignment it was asked
//! for, and lets go of a handle exactly when it passes it back to the heap.
#![expect(
    unsafe_code,
    reason = "a replay touches the memory an allocator hands out through raw pointers"
)]

use std::fmt;
use std::ptr::NonNull;

use thiserror::Error;

/// The alignment of plain `malloc` on x86-64; a heap may treat any smaller requested alignment
/// as this one.
pub(crate) const MALLOC_ALIGN: usize = 16;

/// An object handed out by a [`ReplayHeap`]: the address of its first byte.
///
/// For a zero-size object the address may be a token that must not be dereferenced (kmalloc's
/// `ZERO_SIZE_PTR`); the replay never touches the bytes of zero-size objects.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handle(NonNull<u8>);

impl Handle {
    /// A handle for the object at `ptr`.
    pub(crate) fn new(ptr: NonNull<u8>) -> Handle {
        Handle(ptr)
    }

    /// The object's address.
    pub(crate) fn as_ptr(self) -> NonNull<u8> {
        self.0
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({:p})", self.0)
    }
}

/// Why a heap did not serve a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum HeapError {
    /// The request is above what the heap serves at all (kmalloc: `KMALLOC_MAX_SIZE`).
    #[error("{size} bytes is above {limit_name} ({limit} bytes)")]
    TooLarge {
        /// The size requested.
        size: usize,
        /// The largest size the heap serves.
        limit: usize,
        /// The limit's name, as the report prints it (`KMALLOC_MAX_SIZE`).
        limit_name: &'static str,
    },
    /// The heap ran out of memory.
    #[error("out of memory for {size} bytes")]
    OutOfMemory {
        /// The size requested.
        size: usize,
    },
    /// Anything else the heap reports (for a free: an allocator bug).
    #[error("{0}")]
    Other(String),
}

/// What a heap holds from the memory below it, for the kmm side's memory report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FootprintInfo {
    /// Pages the heap holds now: slab pages, pages of large kmallocs, vmalloc pages.
    pub(crate) pages_held: u64,
    /// The size of a page in bytes.
    pub(crate) page_size: u64,
    /// Bytes in slab objects that no request uses: per object, the object size minus the
    /// bytes requested, plus the slabs' free objects and leftover tails (`/proc/slabinfo` counts).
    pub(crate) slab_waste_bytes: u64,
    /// The most pages the heap has held at once, if it keeps that count itself (the replay
    /// samples [`pages_held`](FootprintInfo::pages_held) otherwise).
    pub(crate) peak_pages_held: Option<u64>,
}

/// An allocator a trace can be replayed through: the kmm side (kmalloc) or a baseline (the
/// system allocator).
///
/// The replay calls it from one thread; a realloc or free always names a handle this heap gave
/// out and that is still live, with the size and alignment it was allocated with.
///
/// # Safety
///
/// An implementer promises that a handle returned by [`alloc`](ReplayHeap::alloc) or
/// [`realloc`](ReplayHeap::realloc) for `size > 0` bytes points to `size` bytes that are valid
/// for reads and writes, overlap no other live object, and stay so until the handle is passed
/// to [`free`](ReplayHeap::free) or [`realloc`](ReplayHeap::realloc); and that a successful
/// realloc returns the first `min(old size, new size)` bytes unchanged.
pub(crate) unsafe trait ReplayHeap {
    /// A short name for reports (`kmm`, `system`).
    fn name(&self) -> &str;

    /// Allocates `size` bytes (maybe 0) aligned to `align`, a power of two; alignments up to
    /// [`MALLOC_ALIGN`] mean the `malloc` default.
    fn alloc(&mut self, size: usize, align: usize) -> Result<Handle, HeapError>;

    /// Frees an object; an error means the heap found itself inconsistent.
    ///
    /// # Safety
    ///
    /// `handle` came from this heap's `alloc` or `realloc` with `size` bytes and alignment
    /// `align`, and has not been freed or reallocated since.
    unsafe fn free(&mut self, handle: Handle, size: usize, align: usize) -> Result<(), HeapError>;

    /// Resizes an object to `new_size` bytes (never 0), keeping its first
    /// `min(old_size, new_size)` bytes; on success `handle` is dead, on failure it is still live
    /// and unchanged.
    ///
    /// # Safety
    ///
    /// As for [`free`](ReplayHeap::free): `handle` is live, from this heap, with `old_size` bytes
    /// and alignment `align`.
    unsafe fn realloc(
        &mut self,
        handle: Handle,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> Result<Handle, HeapError>;

    /// Makes the memory the heap allocates from resident before the clock starts, when that
    /// memory is fixed: a machine's RAM, an arena. A kernel's RAM and an embedded heap's arena
    /// never fault; memory taken from the host does on first touch, which would time the
    /// host's page faults rather than the allocator. The default does nothing, which is right
    /// for the system allocator: it takes memory from the host as it grows, and faults are part
    /// of its cost.
    fn make_resident(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// What the heap holds from the memory below it; `None` for heaps that cannot say (the
    /// system allocator).
    fn footprint(&self) -> Option<FootprintInfo> {
        None
    }

    /// Checks the heap's own invariants (debug checks during a replay).
    fn check_invariants(&self) -> Result<(), String> {
        Ok(())
    }

    /// Called once every object has been freed: checks that the heap gave everything back
    /// (for kmm: every frame back in the buddy allocator).
    fn verify_empty(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Why an operation on [`Objects`] did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum ObjectError {
    /// The heap did not serve an allocation or realloc; the ID now holds no memory.
    #[error("{0}")]
    Failed(HeapError),
    /// A free failed inside the heap.
    #[error("the heap failed to free id {id}: {error}")]
    FreeFailed {
        /// The object.
        id: u32,
        /// What the heap said.
        error: HeapError,
    },
    /// A byte the replay wrote was not there when it looked again.
    #[error(
        "id {id} is corrupted: byte {offset} of {size} is {found:#04x}, expected {expected:#04x}"
    )]
    Corrupted {
        /// The object.
        id: u32,
        /// Its size.
        size: usize,
        /// The byte that changed.
        offset: usize,
        /// What the replay wrote.
        expected: u8,
        /// What it read back.
        found: u8,
    },
    /// An allocation into an ID that still holds memory.
    #[error("id {0} still holds an object")]
    Occupied(u32),
    /// An ID outside the table.
    #[error("id {0} is outside the object table")]
    OutOfRange(u32),
}

/// One entry of the object table.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The object, if the ID holds memory.
    handle: Option<Handle>,
    /// Its size in bytes.
    size: usize,
    /// The log2 of its alignment.
    align_shift: u8,
    /// The value of its first byte; its last byte is the complement.
    tag: u8,
}

impl Slot {
    /// A slot holding nothing.
    const EMPTY: Slot = Slot {
        handle: None,
        size: 0,
        align_shift: 0,
        tag: 0,
    };

    /// The alignment in bytes.
    fn align(self) -> usize {
        1 << self.align_shift
    }
}

/// The live objects of a replay, one slot per trace ID, over the heap that allocated them.
///
/// An ID that holds no memory (never allocated, freed, or whose allocation failed) frees as a
/// no-op and reallocs as a fresh allocation, as `krealloc(NULL, n)` does.
/// Objects still held when the table is dropped are leaked, not freed.
pub(crate) struct Objects<'h, H: ?Sized> {
    /// The heap every handle came from.
    heap: &'h mut H,
    /// The objects by ID.
    slots: Vec<Slot>,
    /// The tag of the last object allocated.
    last_tag: u8,
    /// How many slots hold a handle.
    held: usize,
    /// The bytes requested by the objects held.
    held_bytes: u64,
}

impl<H: ReplayHeap + ?Sized> fmt::Debug for Objects<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Objects")
            .field("heap", &self.heap.name())
            .field("slots", &self.slots.len())
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl<'h, H: ReplayHeap + ?Sized> Objects<'h, H> {
    /// An empty table for IDs `0..ids` over `heap`.
    pub(crate) fn new(heap: &'h mut H, ids: usize) -> Objects<'h, H> {
        Objects {
            heap,
            slots: vec![Slot::EMPTY; ids],
            last_tag: 0,
            held: 0,
            held_bytes: 0,
        }
    }

    /// The heap.
    pub(crate) fn heap(&self) -> &H {
        self.heap
    }

    /// The heap, for calls that do not free (`verify_empty` once the table is empty).
    pub(crate) fn heap_mut(&mut self) -> &mut H {
        self.heap
    }

    /// How many IDs hold memory.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// The bytes requested by the objects held (zero-size objects count 0).
    pub(crate) fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// Allocates `size` bytes aligned to `align` (a power of two) as `id` and marks its first
    /// and last bytes.
    pub(crate) fn alloc(&mut self, id: u32, size: usize, align: usize) -> Result<(), ObjectError> {
        let slot = self.slot(id)?;
        if slot.handle.is_some() {
            return Err(ObjectError::Occupied(id));
        }
        let handle = self.heap.alloc(size, align).map_err(ObjectError::Failed)?;
        let tag = self.next_tag();
        // SAFETY: the heap just returned `handle` for `size` bytes.
        unsafe { mark(handle, size, tag) };
        self.slots[id as usize] = Slot {
            handle: Some(handle),
            size,
            align_shift: align.trailing_zeros() as u8,
            tag,
        };
        self.held += 1;
        self.held_bytes += size as u64;
        Ok(())
    }

    /// Checks the marks of `id` and frees it; an ID without memory frees as a no-op.
    /// A corrupted object is reported and kept, not freed.
    pub(crate) fn free(&mut self, id: u32) -> Result<(), ObjectError> {
        let slot = self.slot(id)?;
        let Some(handle) = slot.handle else {
            return Ok(());
        };
        // SAFETY: the slot holds a live handle of `slot.size` bytes, marked with `slot.tag`
        // when it was stored.
        unsafe { check_marks(id, handle, slot.size, slot.tag, slot.size) }?;
        // SAFETY: the slot holds `handle` exactly as `self.heap` returned it for `slot.size`
        // bytes and `slot.align()`, and clears it below, so it is live and passed back once.
        let freed = unsafe { self.heap.free(handle, slot.size, slot.align()) };
        self.slots[id as usize] = Slot::EMPTY;
        self.held -= 1;
        self.held_bytes -= slot.size as u64;
        freed.map_err(|error| ObjectError::FreeFailed { id, error })
    }

    /// Moves the object `old` to `new` with `size` bytes, checking that the marked bytes
    /// survived.
    ///
    /// If the heap refuses, `old` is freed anyway (the trace says it died) and `new` holds no
    /// memory; if `old` held no memory, `new` is a fresh allocation.
    pub(crate) fn realloc(&mut self, old: u32, new: u32, size: usize) -> Result<(), ObjectError> {
        let slot = self.slot(old)?;
        if self.slot(new)?.handle.is_some() {
            return Err(ObjectError::Occupied(new));
        }
        let Some(handle) = slot.handle else {
            return self.alloc(new, size, slot.align().max(MALLOC_ALIGN));
        };
        // SAFETY: as in `free`, the slot holds a live, marked handle of `slot.size` bytes.
        unsafe { check_marks(old, handle, slot.size, slot.tag, slot.size) }?;
        // SAFETY: as in `free`, the slot holds `handle` as the heap returned it, with its size
        // and alignment; on success the slot is cleared and the new handle stored below, on
        // failure the old handle stays live and is freed through the slot.
        let moved = unsafe { self.heap.realloc(handle, slot.size, slot.align(), size) };
        match moved {
            Ok(moved) => {
                self.slots[old as usize] = Slot::EMPTY;
                self.slots[new as usize] = Slot {
                    handle: Some(moved),
                    size,
                    ..slot
                };
                self.held_bytes = self.held_bytes - slot.size as u64 + size as u64;
                // The old first byte must have come along, and so must the old last byte when
                // the object did not shrink.
                let kept = if size >= slot.size { slot.size } else { 1 };
                // SAFETY: the heap just returned `moved` for `size` bytes, keeping the first
                // `min(slot.size, size)` bytes of the object `mark` marked with `slot.tag`;
                // `kept` is at most that.
                unsafe { check_marks(new, moved, size, slot.tag, kept) }?;
                let tag = self.next_tag();
                self.slots[new as usize].tag = tag;
                // SAFETY: `moved` is live with `size` bytes.
                unsafe { mark(moved, size, tag) };
                Ok(())
            }
            Err(error) => {
                self.free(old)?;
                Err(ObjectError::Failed(error))
            }
        }
    }

    /// Checks and frees every object still held; returns how many there were.
    pub(crate) fn free_all(&mut self) -> Result<u64, ObjectError> {
        let mut freed = 0;
        for id in 0..self.slots.len() {
            if self.slots[id].handle.is_some() {
                // The table never grows past `u32::MAX + 1` entries: IDs are `u32`.
                self.free(id as u32)?;
                freed += 1;
            }
        }
        Ok(freed)
    }

    /// The slot of `id`.
    fn slot(&self, id: u32) -> Result<Slot, ObjectError> {
        self.slots
            .get(id as usize)
            .copied()
            .ok_or(ObjectError::OutOfRange(id))
    }

    /// A tag for a new object: cycles through 1 to 254, so that neither the first byte nor its
    /// complement is ever 0x00 or 0xff, the values of fresh or poisoned memory.
    fn next_tag(&mut self) -> u8 {
        self.last_tag = if self.last_tag >= 254 {
            1
        } else {
            self.last_tag + 1
        };
        self.last_tag
    }
}

/// Writes `tag` to the first byte of a live object of `size` bytes and its complement to the
/// last byte.
///
/// # Safety
///
/// `handle` is a live object of a [`ReplayHeap`] with `size` bytes.
unsafe fn mark(handle: Handle, size: usize, tag: u8) {
    if size == 0 {
        return;
    }
    let first = handle.as_ptr().as_ptr();
    // SAFETY: by the caller's promise and the `ReplayHeap` contract, the `size > 0` bytes at
    // `first` are valid for writes; `size - 1` is inside the object.
    unsafe {
        first.write(tag);
        if size > 1 {
            first.add(size - 1).write(!tag);
        }
    }
}

/// Checks the marks of object `id` (`size` bytes, marked with `tag` when it had `marked_size`
/// bytes): the first byte always, the last mark only if it lies inside the object now.
///
/// # Safety
///
/// `handle` is a live object of a [`ReplayHeap`] with `size` bytes, marked by [`mark`] when it
/// had `marked_size` bytes, and its first `min(size, marked_size)` bytes were kept since.
unsafe fn check_marks(
    id: u32,
    handle: Handle,
    size: usize,
    tag: u8,
    marked_size: usize,
) -> Result<(), ObjectError> {
    if size == 0 || marked_size == 0 {
        return Ok(());
    }
    let first = handle.as_ptr().as_ptr();
    let corrupted = |offset, expected, found| ObjectError::Corrupted {
        id,
        size,
        offset,
        expected,
        found,
    };
    // SAFETY: by the caller's promise the object has `size > 0` bytes, valid for reads by the
    // `ReplayHeap` contract, and `mark` initialized its first byte.
    let found = unsafe { first.read() };
    if found != tag {
        return Err(corrupted(0, tag, found));
    }
    if marked_size > 1 && marked_size <= size {
        let offset = marked_size - 1;
        // SAFETY: as above; `offset < marked_size <= size`, and `mark` initialized that byte
        // when the object had `marked_size` bytes, which it kept.
        let found = unsafe { first.add(offset).read() };
        if found != !tag {
            return Err(corrupted(offset, !tag, found));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod doubles;
#[cfg(test)]
mod tests;
