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

use std::alloc::System;

use crate::replay::global::Requests;
use crate::replay::heap::{Handle, HeapError, ReplayHeap};

/// The system allocator as a [`ReplayHeap`].
#[derive(Debug, Default)]
pub(crate) struct SystemHeap;

impl SystemHeap {
    /// The system allocator.
    pub(crate) fn new() -> SystemHeap {
        SystemHeap
    }
}

/// The system allocator's requests: plain ones with alignment 1 (see the module docs).
const REQUESTS: Requests<'static, System> = Requests {
    alloc: &System,
    default_align: 1,
};

// SAFETY: `System` returns memory valid for the layout's size (at least the size asked for),
// distinct from every other live allocation, until it is deallocated or reallocated, and its
// `realloc` keeps the first `min(old, new)` bytes.
unsafe impl ReplayHeap for SystemHeap {
    fn name(&self) -> &str {
        "system"
    }

    fn alloc(&mut self, size: usize, align: usize) -> Result<Handle, HeapError> {
        REQUESTS.alloc(size, align)
    }

    unsafe fn free(&mut self, handle: Handle, size: usize, align: usize) -> Result<(), HeapError> {
        // SAFETY: the caller's promise is the one `Requests::free` asks for.
        unsafe { REQUESTS.free(handle, size, align) }
    }

    unsafe fn realloc(
        &mut self,
        handle: Handle,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> Result<Handle, HeapError> {
        // SAFETY: the caller's promise is the one `Requests::realloc` asks for.
        unsafe { REQUESTS.realloc(handle, old_size, align, new_size) }
    }
}

#[cfg(test)]
mod tests;
