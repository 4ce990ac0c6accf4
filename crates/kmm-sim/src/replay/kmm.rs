//! The kmm side of `kmm-sim replay`: kmalloc, from the `kmm` facade, as a
//! [`ReplayHeap`](crate::replay::heap::ReplayHeap).
//!
//! FIXME(#3): the facade's kmalloc is not there yet, so [`kmm_heap`] refuses and `replay` stops
//! after printing the trace line.
//! To wire it: boot a machine with `mem` bytes, wrap its `kmalloc`, `krealloc` and `kfree` in a
//! type that implements `ReplayHeap` (an `unsafe impl`, so this module then opens with
//! `#![expect(unsafe_code, reason = "...")]`: kmalloc's objects are valid for their size until
//! `kfree`), report requests above `KMALLOC_MAX_SIZE` as `HeapError::TooLarge` with
//! `limit_name: "KMALLOC_MAX_SIZE"` (or serve them from vmalloc and say so in the footprint),
//! fill `footprint` from the slab allocator's counters, `check_invariants` from the
//! allocator's own check, and `verify_empty` with "every frame is back in the buddy".

use crate::replay::heap::ReplayHeap;

/// What `replay` prints while the kmalloc heap is missing.
pub(crate) const NOT_YET: &str = "replay needs the kmalloc heap (issue #3, in progress)";

/// Builds the kmalloc heap on a machine with `mem` bytes of memory.
///
/// FIXME(#3): returns an error until the facade's kmalloc lands.
pub(crate) fn kmm_heap(mem: u64) -> Result<Box<dyn ReplayHeap>, String> {
    let _ = mem;
    Err(NOT_YET.to_owned())
}
