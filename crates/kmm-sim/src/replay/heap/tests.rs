//! Unit tests of the object table: marks written and checked, refused requests, and the faults
//! it catches.

use super::doubles::{Fault, FaultyHeap, PagedHeap};
use super::*;
use crate::replay::system::SystemHeap;

/// How many objects and bytes a table holds.
fn holding<H: ReplayHeap + ?Sized>(objects: &Objects<'_, H>) -> (usize, u64) {
    (objects.held(), objects.held_bytes())
}

#[test]
fn objects_come_and_go_with_their_bytes() {
    let mut heap = SystemHeap::new();
    let mut objects = Objects::new(&mut heap, 4);
    objects.alloc(0, 100, MALLOC_ALIGN).unwrap();
    objects.alloc(1, 1, MALLOC_ALIGN).unwrap();
    objects.alloc(2, 0, MALLOC_ALIGN).unwrap();
    objects.alloc(3, 64, 4096).unwrap();
    assert_eq!(holding(&objects), (4, 165));
    assert_eq!(objects.realloc(0, 0, 10), Err(ObjectError::Occupied(0)));
    objects.free(1).unwrap();
    objects.realloc(0, 1, 5000).unwrap();
    objects.realloc(1, 0, 7).unwrap();
    objects.realloc(3, 1, 100).unwrap();
    assert_eq!(holding(&objects), (3, 107));
    assert_eq!(objects.free_all(), Ok(3));
    assert_eq!(holding(&objects), (0, 0));
}

#[test]
fn refused_table_operations_change_nothing() {
    let mut heap = SystemHeap::new();
    let mut objects = Objects::new(&mut heap, 2);
    objects.alloc(0, 10, MALLOC_ALIGN).unwrap();
    objects.alloc(1, 20, MALLOC_ALIGN).unwrap();
    assert_eq!(
        objects.alloc(0, 5, MALLOC_ALIGN),
        Err(ObjectError::Occupied(0))
    );
    assert_eq!(objects.realloc(0, 1, 5), Err(ObjectError::Occupied(1)));
    assert_eq!(
        objects.alloc(2, 5, MALLOC_ALIGN),
        Err(ObjectError::OutOfRange(2))
    );
    assert_eq!(objects.free(7), Err(ObjectError::OutOfRange(7)));
    assert_eq!(objects.realloc(0, 9, 5), Err(ObjectError::OutOfRange(9)));
    assert_eq!(holding(&objects), (2, 30));
    // Both objects are intact: their marks check out as they are freed.
    assert_eq!(objects.free_all(), Ok(2));
}

#[test]
fn an_id_without_memory_frees_as_a_no_op_and_reallocs_as_a_fresh_object() {
    let mut heap = PagedHeap::new();
    let mut objects = Objects::new(&mut heap, 3);
    assert_eq!(objects.free(0), Ok(()));
    objects.realloc(0, 1, 64).unwrap();
    assert_eq!(holding(&objects), (1, 64));
    objects.free(1).unwrap();
    assert_eq!(objects.heap_mut().verify_empty(), Ok(()));
}

#[test]
fn zero_size_objects_are_live_but_never_touched() {
    // `PagedHeap` hands out a dangling token for size 0, as kmalloc hands out `ZERO_SIZE_PTR`:
    // touching it would crash (or upset Miri).
    let mut heap = PagedHeap::new();
    let mut objects = Objects::new(&mut heap, 2);
    objects.alloc(0, 0, MALLOC_ALIGN).unwrap();
    assert_eq!(holding(&objects), (1, 0));
    assert_eq!(
        objects.alloc(0, 0, MALLOC_ALIGN),
        Err(ObjectError::Occupied(0))
    );
    objects.realloc(0, 1, 300).unwrap();
    objects.realloc(1, 0, 1).unwrap();
    assert_eq!(holding(&objects), (1, 1));
    objects.free(0).unwrap();
    assert_eq!(objects.heap_mut().verify_empty(), Ok(()));
}

#[test]
fn a_refused_allocation_leaves_the_id_without_memory() {
    let mut heap = PagedHeap::new();
    heap.max_size = 100;
    let mut objects = Objects::new(&mut heap, 2);
    let too_large = HeapError::TooLarge {
        size: 101,
        limit: 100,
        limit_name: "KMALLOC_MAX_SIZE",
    };
    assert_eq!(
        objects.alloc(0, 101, MALLOC_ALIGN),
        Err(ObjectError::Failed(too_large.clone()))
    );
    assert_eq!(holding(&objects), (0, 0));
    // A refused realloc frees the old object (the trace says it died).
    objects.alloc(0, 50, MALLOC_ALIGN).unwrap();
    assert_eq!(
        objects.realloc(0, 1, 101),
        Err(ObjectError::Failed(too_large))
    );
    assert_eq!(holding(&objects), (0, 0));
    assert_eq!(objects.free(1), Ok(()));
    assert_eq!(objects.heap_mut().verify_empty(), Ok(()));
}

#[test]
fn overlapping_objects_are_caught_when_freed() {
    let mut heap = FaultyHeap::new(Fault::Overlap);
    let mut objects = Objects::new(&mut heap, 2);
    // Object 0 spans arena bytes 0..17 and object 1 starts at byte 16: its first mark lands
    // on object 0's last byte.
    objects.alloc(0, 17, MALLOC_ALIGN).unwrap();
    objects.alloc(1, 17, MALLOC_ALIGN).unwrap();
    // The first two tags are 1 and 2: object 0's last byte should be !1, and is 2.
    assert_eq!(
        objects.free(0),
        Err(ObjectError::Corrupted {
            id: 0,
            size: 17,
            offset: 16,
            expected: 0xfe,
            found: 2,
        })
    );
    // The corrupted object is kept, not freed.
    assert_eq!(holding(&objects), (2, 34));
}

#[test]
fn a_realloc_that_loses_bytes_is_caught() {
    let mut heap = FaultyHeap::new(Fault::ReallocLosesBytes);
    let mut objects = Objects::new(&mut heap, 2);
    objects.alloc(0, 100, MALLOC_ALIGN).unwrap();
    let error = objects.realloc(0, 1, 200).unwrap_err();
    assert!(
        matches!(
            error,
            ObjectError::Corrupted {
                id: 1,
                size: 200,
                offset: 0,
                found: 0,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "id 1 is corrupted: byte 0 of 200 is 0x00, expected 0x01"
    );
}

#[test]
fn a_failing_free_is_reported_and_the_object_let_go() {
    let mut heap = FaultyHeap::new(Fault::FreeFails);
    let mut objects = Objects::new(&mut heap, 1);
    objects.alloc(0, 8, MALLOC_ALIGN).unwrap();
    assert_eq!(
        objects.free(0),
        Err(ObjectError::FreeFailed {
            id: 0,
            error: HeapError::Other("free went wrong".to_owned())
        })
    );
    assert_eq!(holding(&objects), (0, 0));
}

#[test]
fn tags_avoid_zero_and_all_ones() {
    let mut heap = SystemHeap::new();
    let mut objects = Objects::new(&mut heap, 1);
    let tags: Vec<u8> = (0..600).map(|_| objects.next_tag()).collect();
    assert!(tags.iter().all(|&tag| tag != 0 && tag != 0xff));
    assert_eq!(tags[0], 1);
    assert_eq!(tags[253], 254);
    assert_eq!(tags[254], 1);
}
