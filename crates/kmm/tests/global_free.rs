//! `GlobalKmalloc::dealloc` of blocks outside the CPU's slab: the fast half
//! hands them to the slab free (`__slab_free`) without a second lookup, which
//! frees each once and refuses a second free.

#![cfg(feature = "std")]
#![expect(unsafe_code, reason = "the allocator is driven through `GlobalAlloc`")]

use core::alloc::{GlobalAlloc, Layout};

use kmm::GlobalKmalloc;

/// Active objects of `cache` in `heap`'s `/proc/slabinfo`.
fn active(heap: &GlobalKmalloc, cache: &str) -> usize {
    let slab = heap.memory_manager().unwrap().slab().unwrap();
    let rows = slab.slabinfo_rows();
    rows.iter().find(|r| r.name == cache).unwrap().active_objs
}

#[test]
fn frees_of_other_slabs_objects_finish_in_their_slabs() {
    let heap = GlobalKmalloc::new(32 << 20, 2);
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: a non-zero size; every block is written within its size and
    // freed with its layout, once but for the first, whose second free
    // `GlobalKmalloc` refuses (its memory stays the machine's either way).
    unsafe {
        let first = heap.alloc(layout);
        heap.dealloc(first, layout);
        assert_eq!(heap.this_cpu().map(|(_, alone)| alone), Some(true));
        let before = active(&heap, "kmalloc-64");
        // Ten slabs' worth (64 objects each): all but the last are off the
        // CPU by the end, so freeing in allocation order takes the slab free.
        let blocks: Vec<*mut u8> = (0..640u32)
            .map(|i| {
                let p = heap.alloc(layout);
                assert!(!p.is_null());
                p.cast::<u32>().write(i);
                p
            })
            .collect();
        assert_eq!(active(&heap, "kmalloc-64"), before + 640);
        for (i, &p) in blocks.iter().enumerate() {
            assert_eq!(p.cast::<u32>().read(), i as u32, "block {i} corrupted");
            heap.dealloc(p, layout);
            if i == 0 {
                // Freed again while its slab lives on, off the CPU: the slab
                // free refuses it (counted, nothing freed twice).
                heap.dealloc(p, layout);
                assert_eq!(heap.stats().errors, 1);
                assert_eq!(active(&heap, "kmalloc-64"), before + 639);
            }
        }
        assert_eq!(active(&heap, "kmalloc-64"), before);
    }
    let stats = heap.stats();
    assert_eq!((stats.fallbacks, stats.errors), (0, 1), "{stats:?}");
    let slab = heap.memory_manager().unwrap().slab().unwrap();
    slab.check_invariants().unwrap();
}
