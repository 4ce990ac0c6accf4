//! Unit tests of the system-allocator heap: layouts, zero-size requests, alignment, realloc.

use super::*;
use std::alloc::Layout;

use crate::replay::heap::MALLOC_ALIGN;

/// The layout the system allocator is asked for.
fn layout(size: usize, align: usize) -> Result<Layout, HeapError> {
    REQUESTS.layout(size, align)
}

#[test]
fn default_alignment_asks_for_plain_malloc() {
    assert_eq!(layout(100, MALLOC_ALIGN).unwrap().align(), 1);
    assert_eq!(layout(100, 8).unwrap().align(), 1);
    assert_eq!(
        layout(100, 64).unwrap(),
        Layout::from_size_align(100, 64).unwrap()
    );
    // `malloc(0)` returns a unique pointer: one byte here.
    assert_eq!(layout(0, MALLOC_ALIGN).unwrap().size(), 1);
    assert!(matches!(
        layout(usize::MAX - 8, MALLOC_ALIGN),
        Err(HeapError::TooLarge {
            limit_name: "isize::MAX",
            ..
        })
    ));
}

#[test]
fn objects_are_distinct_aligned_and_keep_their_bytes_through_realloc() {
    let mut heap = SystemHeap::new();
    let zero = heap.alloc(0, MALLOC_ALIGN).unwrap();
    let other_zero = heap.alloc(0, MALLOC_ALIGN).unwrap();
    assert_ne!(zero, other_zero);
    let aligned = heap.alloc(100, 4096).unwrap();
    assert_eq!(aligned.as_ptr().as_ptr() as usize % 4096, 0);
    let small = heap.alloc(3, MALLOC_ALIGN).unwrap();
    // SAFETY: `small` is a live 3-byte object.
    unsafe { small.as_ptr().as_ptr().copy_from([7u8, 8, 9].as_ptr(), 3) };
    // SAFETY: `small` is live, allocated with 3 bytes and the default alignment.
    let grown = unsafe { heap.realloc(small, 3, MALLOC_ALIGN, 100_000) }.unwrap();
    let mut kept = [0u8; 3];
    // SAFETY: `grown` is live with 100000 bytes, the first 3 kept from `small`.
    unsafe { grown.as_ptr().as_ptr().copy_to(kept.as_mut_ptr(), 3) };
    assert_eq!(kept, [7, 8, 9]);
    // SAFETY: each handle is live, freed once with the size and alignment it was allocated with.
    unsafe {
        heap.free(grown, 100_000, MALLOC_ALIGN).unwrap();
        heap.free(aligned, 100, 4096).unwrap();
        heap.free(zero, 0, MALLOC_ALIGN).unwrap();
        heap.free(other_zero, 0, MALLOC_ALIGN).unwrap();
    }
    assert_eq!(heap.footprint(), None);
    assert_eq!(heap.name(), "system");
}
