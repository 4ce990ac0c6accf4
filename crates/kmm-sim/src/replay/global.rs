//! What the baselines share: a [`ReplayHeap`](crate::replay::heap::ReplayHeap)'s requests made
//! through a [`GlobalAlloc`] (the system allocator, talc), with one rule for layouts.
#![expect(unsafe_code, reason = "`GlobalAlloc` is an unsafe interface")]

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

use crate::replay::heap::{Handle, HeapError, MALLOC_ALIGN};

/// The layout of a request of `size` bytes aligned to `align`: a zero size as one byte (a
/// unique pointer, as glibc's `malloc(0)` gives), alignments up to [`MALLOC_ALIGN`] as
/// `default_align`, larger ones as asked.
pub(crate) fn request_layout(
    size: usize,
    align: usize,
    default_align: usize,
) -> Result<Layout, HeapError> {
    let align = if align <= MALLOC_ALIGN {
        default_align
    } else {
        align
    };
    Layout::from_size_align(size.max(1), align).map_err(|_| HeapError::TooLarge {
        size,
        limit: isize::MAX as usize - (align - 1),
        limit_name: "isize::MAX",
    })
}

/// A [`GlobalAlloc`] and the alignment it is asked for when the trace asked for none above
/// [`MALLOC_ALIGN`].
#[derive(Debug)]
pub(crate) struct Requests<'a, A: GlobalAlloc> {
    /// The allocator.
    pub(crate) alloc: &'a A,
    /// The alignment of plain requests.
    pub(crate) default_align: usize,
}

impl<A: GlobalAlloc> Requests<'_, A> {
    /// The layout of a request (see [`request_layout`]).
    pub(crate) fn layout(&self, size: usize, align: usize) -> Result<Layout, HeapError> {
        request_layout(size, align, self.default_align)
    }

    /// `ReplayHeap::alloc`.
    pub(crate) fn alloc(&self, size: usize, align: usize) -> Result<Handle, HeapError> {
        let layout = self.layout(size, align)?;
        // SAFETY: `layout` has a non-zero size (`layout` rounds 0 up to 1).
        let ptr = unsafe { self.alloc.alloc(layout) };
        NonNull::new(ptr)
            .map(Handle::new)
            .ok_or(HeapError::OutOfMemory { size })
    }

    /// `ReplayHeap::free`.
    ///
    /// # Safety
    ///
    /// `handle` is live and came from [`Requests::alloc`] or [`Requests::realloc`] on the same
    /// allocator and default alignment, with this size and alignment.
    pub(crate) unsafe fn free(
        &self,
        handle: Handle,
        size: usize,
        align: usize,
    ) -> Result<(), HeapError> {
        let layout = self.layout(size, align)?;
        // SAFETY: the caller's promise, and the same size and alignment map to this same layout.
        unsafe { self.alloc.dealloc(handle.as_ptr().as_ptr(), layout) };
        Ok(())
    }

    /// `ReplayHeap::realloc`: on failure the allocator leaves the object as it was.
    ///
    /// # Safety
    ///
    /// As for [`Requests::free`], with `old_size` the object's size.
    pub(crate) unsafe fn realloc(
        &self,
        handle: Handle,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> Result<Handle, HeapError> {
        let old = self.layout(old_size, align)?;
        let new = self.layout(new_size, align)?;
        // SAFETY: 1. the caller promises `handle` is live, from this allocator, allocated with
        // `old` (the same mapping of size and alignment); 2. `new.size()` is non-zero and,
        // rounded up to the alignment, does not overflow `isize` (`Layout::from_size_align`
        // checked it).
        let ptr = unsafe {
            self.alloc
                .realloc(handle.as_ptr().as_ptr(), old, new.size())
        };
        NonNull::new(ptr)
            .map(Handle::new)
            .ok_or(HeapError::OutOfMemory { size: new_size })
    }
}
