//! The baseline of `kmm-sim replay --compare system`: the system allocator (`malloc`, `free`,
//! `realloc` of the C library) through [`std::alloc::System`].
//!
//! Requests with the default alignment are made with alignment 1, so that the standard library
//! calls plain `malloc` and `realloc` (which give 16-byte alignment anyway) rather than
//! `posix_memalign`; explicit alignments above 16 go through the aligned path, as
//! `posix_memalign` and `aligned_alloc` did in the traced program.
//! A zero-size request allocates one byte, as glibc's `malloc(0)` returns a unique pointer.
#![expect(
    unsafe_code,
    reason = "the system allocator's `GlobalAlloc` interface is unsafe"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;

use crate::replay::heap::{Handle, HeapError, MALLOC_ALIGN, ReplayHeap};

/// The system allocator as a [`ReplayHeap`].
#[derive(Debug, Default)]
pub(crate) struct SystemHeap;

impl SystemHeap {
    /// The system allocator.
    pub(crate) fn new() -> SystemHeap {
        SystemHeap
    }
}

/// The layout the system allocator sees for a request of `size` bytes aligned to `align`.
fn layout(size: usize, align: usize) -> Result<Layout, HeapError> {
    let align = if align <= MALLOC_ALIGN { 1 } else { align };
    Layout::from_size_align(size.max(1), align).map_err(|_| HeapError::TooLarge {
        size,
        limit: isize::MAX as usize - (align - 1),
        limit_name: "isize::MAX",
    })
}

// SAFETY: `System` returns memory valid for the layout's size (at least the size asked for),
// distinct from every other live allocation, until it is deallocated or reallocated, and its
// `realloc` keeps the first `min(old, new)` bytes.
unsafe impl ReplayHeap for SystemHeap {
    fn name(&self) -> &str {
        "system"
    }

    fn alloc(&mut self, size: usize, align: usize) -> Result<Handle, HeapError> {
        let layout = layout(size, align)?;
        // SAFETY: `layout` has a non-zero size (`layout` rounds 0 up to 1).
        let ptr = unsafe { System.alloc(layout) };
        NonNull::new(ptr)
            .map(Handle::new)
            .ok_or(HeapError::OutOfMemory { size })
    }

    unsafe fn free(&mut self, handle: Handle, size: usize, align: usize) -> Result<(), HeapError> {
        let layout = layout(size, align)?;
        // SAFETY: the caller promises that `handle` is live and came from `alloc` or `realloc`
        // with this size and alignment, which map to this same layout.
        unsafe { System.dealloc(handle.as_ptr().as_ptr(), layout) };
        Ok(())
    }

    unsafe fn realloc(
        &mut self,
        handle: Handle,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> Result<Handle, HeapError> {
        let old = layout(old_size, align)?;
        let new = layout(new_size, align)?;
        // SAFETY: 1. the caller promises `handle` is live, from this allocator, allocated with
        // `old` (the same mapping of size and alignment); 2. `new.size()` is non-zero and,
        // rounded up to the alignment, does not overflow `isize` (`Layout::from_size_align`
        // checked it).
        let ptr = unsafe { System.realloc(handle.as_ptr().as_ptr(), old, new.size()) };
        NonNull::new(ptr)
            .map(Handle::new)
            .ok_or(HeapError::OutOfMemory { size: new_size })
    }
}

#[cfg(test)]
mod tests;
