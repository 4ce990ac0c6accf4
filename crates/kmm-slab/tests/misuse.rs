//! Every misuse is a typed error and leaves the whole state unchanged
//! (slabinfo, meminfo, invariants and the buddy's free pages).

mod common;

use core::ptr::NonNull;

use common::boot;
use kmm_gfp::GFP_KERNEL;
use kmm_slab::{SlabError, SlabFlags};

fn at(p: NonNull<u8>, off: usize) -> NonNull<u8> {
    NonNull::new(p.as_ptr().wrapping_add(off)).unwrap()
}

#[test]
fn kfree_of_foreign_pointers() {
    let (m, _) = boot(1);
    let live = m.slab.kmalloc(64, GFP_KERNEL).unwrap();
    let before = m.digest();
    let mut stack = 0u64;
    let on_stack = NonNull::from(&mut stack).cast::<u8>();
    let heap = Box::new([0u8; 64]);
    let on_heap = NonNull::from(&*heap).cast::<u8>();
    for p in [on_stack, on_heap] {
        assert_eq!(
            m.slab.kfree(Some(p)),
            Err(SlabError::ForeignPointer {
                addr: p.as_ptr().addr()
            })
        );
        assert!(matches!(
            m.slab.ksize(p),
            Err(SlabError::ForeignPointer { .. })
        ));
        assert_eq!(m.slab.cache_of(p), None);
    }
    // A direct-map page that the page allocator handed to someone else.
    let pfn = m.pages.alloc_pages(GFP_KERNEL, 0).unwrap();
    let other = m.pages.page_address(pfn).unwrap();
    let before2 = m.digest();
    assert_eq!(
        m.slab.kfree(Some(other)),
        Err(SlabError::ForeignPointer {
            addr: other.as_ptr().addr()
        })
    );
    assert_eq!(m.digest(), before2);
    m.pages.free_pages(pfn, 0).unwrap();
    assert_eq!(m.digest(), before);
    m.slab.kfree(Some(live)).unwrap();
}

#[test]
fn kfree_of_the_middle_of_an_object() {
    let (m, cpus) = boot(2);
    let p = m.slab.kmalloc(128, GFP_KERNEL).unwrap();
    let large = m.slab.kmalloc(20000, GFP_KERNEL).unwrap();
    let before = m.digest();
    for off in [1, 8, 64, 127] {
        let q = at(p, off);
        let want = Err(SlabError::NotObjectStart {
            addr: q.as_ptr().addr(),
            cache: "kmalloc-128".into(),
        });
        assert_eq!(m.slab.kfree(Some(q)), want);
        // From the other CPU the remote path must refuse it too.
        cpus.set_current(1).unwrap();
        assert_eq!(m.slab.kfree(Some(q)), want);
        cpus.set_current(0).unwrap();
        assert_eq!(m.digest(), before);
    }
    for off in [8, 4096, 8192 + 5] {
        let q = at(large, off);
        assert!(
            matches!(m.slab.kfree(Some(q)), Err(SlabError::NotObjectStart { .. })),
            "{off}"
        );
        assert!(matches!(
            m.slab.krealloc(Some(q), 10, GFP_KERNEL),
            Err(SlabError::NotObjectStart { .. })
        ));
        assert_eq!(m.digest(), before);
    }
    m.slab.kfree(Some(p)).unwrap();
    m.slab.kfree(Some(large)).unwrap();
}

#[test]
fn kfree_past_the_last_object_of_a_slab() {
    // kmalloc-96: 42 objects in a page, then 64 bytes that are no object.
    let (m, cpus) = boot(2);
    let first = m.slab.kmalloc(96, GFP_KERNEL).unwrap();
    let per = 4096 / 96;
    let tail = at(first, per * 96);
    assert_eq!(
        tail.as_ptr().addr() % 4096,
        per * 96,
        "the first object starts its slab"
    );
    let before = m.digest();
    for cpu in [0, 1] {
        // From the slab's CPU (the fast path refuses, `__slab_free` reports)
        // and from another (straight to `__slab_free`).
        cpus.set_current(cpu).unwrap();
        for q in [tail, at(tail, 8), at(tail, 63)] {
            assert_eq!(
                m.slab.kfree(Some(q)),
                Err(SlabError::NotObjectStart {
                    addr: q.as_ptr().addr(),
                    cache: "kmalloc-96".into()
                })
            );
            assert_eq!(m.digest(), before);
        }
    }
    cpus.set_current(0).unwrap();
    m.slab.kfree(Some(first)).unwrap();
}

#[test]
fn double_free_is_refused() {
    let (m, _) = boot(1);
    let p = m.slab.kmalloc(32, GFP_KERNEL).unwrap();
    let large = m.slab.kmalloc(9000, GFP_KERNEL).unwrap();
    m.slab.kfree(Some(p)).unwrap();
    m.slab.kfree(Some(large)).unwrap();
    let before = m.digest();
    assert!(matches!(
        m.slab.kfree(Some(p)),
        Err(SlabError::DoubleFree { .. })
    ));
    assert!(matches!(
        m.slab.kfree(Some(large)),
        Err(SlabError::ForeignPointer { .. })
    ));
    assert_eq!(m.digest(), before);
    // A debug cache catches a double free of any object, not just the last one freed.
    let c = m
        .slab
        .kmem_cache_create("checked", 40, 0, SlabFlags::CONSISTENCY_CHECKS, None)
        .unwrap();
    let a = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    let b = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    m.slab.kmem_cache_free(&c, a).unwrap();
    m.slab.kmem_cache_free(&c, b).unwrap();
    let before = m.digest();
    assert_eq!(
        m.slab.kmem_cache_free(&c, a),
        Err(SlabError::DoubleFree {
            cache: "checked".into(),
            object: a.as_ptr().addr()
        })
    );
    assert_eq!(m.digest(), before);
}

#[test]
fn wrong_cache_and_destroyed_cache() {
    let (m, _) = boot(1);
    let a = m
        .slab
        .kmem_cache_create("a", 64, 0, SlabFlags::empty(), None)
        .unwrap();
    let b = m
        .slab
        .kmem_cache_create("b", 64, 0, SlabFlags::empty(), None)
        .unwrap();
    let x = m.slab.kmem_cache_alloc(&a, GFP_KERNEL).unwrap();
    let k = m.slab.kmalloc(64, GFP_KERNEL).unwrap();
    let before = m.digest();
    assert_eq!(
        m.slab.kmem_cache_free(&b, x),
        Err(SlabError::WrongCache {
            addr: x.as_ptr().addr(),
            given: "b".into(),
            actual: "a".into()
        })
    );
    assert!(matches!(
        m.slab.kmem_cache_free(&b, k),
        Err(SlabError::WrongCache { .. })
    ));
    assert_eq!(m.digest(), before);
    m.slab.kmem_cache_destroy(&b).unwrap();
    let before = m.digest();
    assert_eq!(
        m.slab.kmem_cache_alloc(&b, GFP_KERNEL),
        Err(SlabError::Destroyed { cache: "b".into() })
    );
    assert_eq!(
        m.slab.kmem_cache_destroy(&b),
        Err(SlabError::Destroyed { cache: "b".into() })
    );
    assert_eq!(
        m.slab.kmem_cache_shrink(&b),
        Err(SlabError::Destroyed { cache: "b".into() })
    );
    // The fast paths never look at `destroyed`: a free reaches the slow
    // path, which refuses it, even with an object of a live cache.
    assert_eq!(
        m.slab.kmem_cache_free(&b, x),
        Err(SlabError::Destroyed { cache: "b".into() })
    );
    assert_eq!(m.digest(), before);
    m.slab.kmem_cache_free(&a, x).unwrap();
    m.slab.kfree(Some(k)).unwrap();
}

#[test]
fn destroy_with_live_objects_keeps_the_cache() {
    let (m, cpus) = boot(2);
    let c = m
        .slab
        .kmem_cache_create("busy", 100, 0, SlabFlags::empty(), None)
        .unwrap();
    let a = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    cpus.set_current(1).unwrap();
    let b = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    let before = m.digest();
    assert_eq!(
        m.slab.kmem_cache_destroy(&c),
        Err(SlabError::LiveObjects {
            cache: "busy".into(),
            count: 2
        })
    );
    assert_eq!(m.digest(), before);
    // Still usable.
    let d = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    for p in [a, b, d] {
        m.slab.kmem_cache_free(&c, p).unwrap();
    }
    m.slab.kmem_cache_destroy(&c).unwrap();
    assert!(!m.slab.slabinfo().contains("busy"));
}

#[test]
fn bad_sizes_and_arguments() {
    let (m, _) = boot(1);
    let before = m.digest();
    assert_eq!(
        m.slab.kcalloc(usize::MAX / 2, 4, GFP_KERNEL),
        Err(SlabError::Overflow)
    );
    assert_eq!(
        m.slab.kmalloc_array(usize::MAX, 2, GFP_KERNEL),
        Err(SlabError::Overflow)
    );
    assert!(matches!(
        m.slab.kmalloc(usize::MAX, GFP_KERNEL),
        Err(SlabError::TooLarge { .. })
    ));
    assert!(matches!(
        m.slab.kmem_cache_create("", 8, 0, SlabFlags::empty(), None),
        Err(SlabError::InvalidArgs(_))
    ));
    assert!(matches!(
        m.slab
            .kmem_cache_create("a b", 8, 0, SlabFlags::empty(), None),
        Err(SlabError::InvalidArgs(_))
    ));
    assert!(matches!(
        m.slab
            .kmem_cache_create("z", 0, 0, SlabFlags::empty(), None),
        Err(SlabError::InvalidArgs(_))
    ));
    assert!(matches!(
        m.slab
            .kmem_cache_create("z", 8, 24, SlabFlags::empty(), None),
        Err(SlabError::InvalidArgs(_))
    ));
    assert!(matches!(
        m.slab
            .kmem_cache_create("z", 8, 0, SlabFlags::KMALLOC, None),
        Err(SlabError::InvalidArgs(_))
    ));
    assert!(matches!(
        m.slab
            .kmem_cache_create("z", (4 << 20) + 1, 0, SlabFlags::empty(), None),
        Err(SlabError::TooLarge { .. })
    ));
    assert_eq!(m.digest(), before);
}

#[test]
fn handles_of_another_allocator_are_refused() {
    let (m1, _) = boot(1);
    let (m2, _) = boot(1);
    let c = m1
        .slab
        .kmem_cache_create("mine", 64, 0, SlabFlags::empty(), None)
        .unwrap();
    let before = m2.digest();
    assert!(matches!(
        m2.slab.kmem_cache_alloc(&c, GFP_KERNEL),
        Err(SlabError::InvalidArgs(_))
    ));
    let p = m1.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    assert!(matches!(
        m2.slab.kfree(Some(p)),
        Err(SlabError::ForeignPointer { .. })
    ));
    assert_eq!(m2.digest(), before);
    m1.slab.kmem_cache_free(&c, p).unwrap();
}

#[test]
fn a_corrupt_free_pointer_on_a_cpu_freelist_is_reported() {
    // On a CPU the thread shares and on one it holds alone: a free pointer
    // out of the slab is reported by the pop that reads it; one inside the
    // slab that is not a whole number of words by the pop after it, which
    // would read there.
    for exclusive in [false, true] {
        for (bad, late) in [(usize::MAX / 3, false), (64 + 4, true)] {
            let (m, _) = if exclusive {
                common::boot_sole(1)
            } else {
                boot(1)
            };
            let c = m
                .slab
                .kmem_cache_create("smash", 64, 0, SlabFlags::empty(), None)
                .unwrap();
            let a = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
            let b = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
            // A new slab's first object starts it.
            assert_eq!(a.as_ptr().addr() % 4096, 0);
            m.slab.kmem_cache_free(&c, b).unwrap();
            m.slab.kmem_cache_free(&c, a).unwrap();
            // SAFETY: `a` is free on the CPU slab, which stays (nothing
            // shrinks it); overwriting its free pointer is the planted bug.
            unsafe {
                a.as_ptr()
                    .add(c.free_pointer_offset())
                    .cast::<usize>()
                    .write_unaligned(bad)
            };
            let object = if late {
                assert_eq!(m.slab.kmem_cache_alloc(&c, GFP_KERNEL), Ok(a));
                a.as_ptr().addr() + bad
            } else {
                a.as_ptr().addr()
            };
            assert_eq!(
                m.slab.kmem_cache_alloc(&c, GFP_KERNEL),
                Err(SlabError::Corrupted {
                    cache: "smash".into(),
                    object
                }),
                "exclusive {exclusive}, {bad:#x}"
            );
            // The rest of the CPU freelist is dropped; allocation goes on.
            let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
            assert!(p != a && p != b);
            m.slab.kmem_cache_free(&c, p).unwrap();
        }
    }
}
