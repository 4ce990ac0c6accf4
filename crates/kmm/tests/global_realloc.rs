//! `GlobalKmalloc::realloc` is `krealloc`: in place while the bucket holds the
//! new size, otherwise a move into the right size class with the contents kept.

#![expect(unsafe_code, reason = "the allocator is driven through `GlobalAlloc`")]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use kmm::GlobalKmalloc;

#[test]
fn realloc_stays_in_place_within_the_bucket_and_moves_beyond_it() {
    let heap = GlobalKmalloc::new(64 << 20, 2);
    let layout = Layout::from_size_align(20, 8).unwrap();
    // SAFETY: non-zero size; every pointer below is used within the bytes its
    // layout gives and freed once with its current layout.
    unsafe {
        let p = heap.alloc(layout);
        assert!(!p.is_null());
        for i in 0..20 {
            p.add(i).write(i as u8);
        }
        let slab = heap.memory_manager().unwrap().slab().unwrap();
        assert_eq!(
            slab.cache_of(NonNull::new(p).unwrap()).as_deref(),
            Some("kmalloc-32")
        );
        // 20 -> 30 bytes: kmalloc-32 holds it, the pointer stays.
        let q = heap.realloc(p, layout, 30);
        assert_eq!(q, p);
        // 30 -> 100 bytes: kmalloc-128, a new object with the bytes copied.
        let r = heap.realloc(q, Layout::from_size_align(30, 8).unwrap(), 100);
        assert_ne!(r, q);
        assert_eq!(
            slab.cache_of(NonNull::new(r).unwrap()).as_deref(),
            Some("kmalloc-128")
        );
        for i in 0..20 {
            assert_eq!(r.add(i).read(), i as u8);
        }
        // The old object went back: freeing it again is refused by kfree.
        assert!(slab.kfree(NonNull::new(q)).is_err());
        heap.dealloc(r, Layout::from_size_align(100, 8).unwrap());
        // Over-aligned layouts above a page do not take the in-place path.
        let big = Layout::from_size_align(8192, 8192).unwrap();
        let b = heap.alloc(big);
        assert!(b.addr().is_multiple_of(8192));
        let c = heap.realloc(b, big, 8000);
        assert!(c.addr().is_multiple_of(8192));
        heap.dealloc(c, Layout::from_size_align(8000, 8192).unwrap());
    }
    let stats = heap.stats();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(stats.kmallocs >= 3, "{stats:?}");
}
