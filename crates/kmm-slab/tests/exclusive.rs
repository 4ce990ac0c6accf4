//! Exclusive owners (plain loads and stores on the fast paths) freeing
//! objects that another CPU allocated, through the remote free path, with
//! every count and invariant checked after each free; and every misuse on
//! an exclusive CPU refused with nothing changed.

mod common;

use core::ptr::NonNull;

use common::{Machine, boot_sole};
use kmm_gfp::GFP_KERNEL;
use kmm_slab::{KmemCache, SlabError, SlabFlags};

/// `active_objs` of `name` in slabinfo.
fn active(m: &Machine, name: &str) -> usize {
    m.slab
        .slabinfo_rows()
        .into_iter()
        .find(|r| r.name == name)
        .map_or(0, |r| r.active_objs)
}

/// A 64-byte cache and `n` objects of it allocated on CPU 0, each stamped
/// with its index.
fn setup(m: &Machine, n: usize) -> (KmemCache, Vec<NonNull<u8>>) {
    let c = m
        .slab
        .kmem_cache_create("owned", 64, 0, SlabFlags::empty(), None)
        .unwrap();
    let ps: Vec<_> = (0..n)
        .map(|i| {
            let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
            // SAFETY: `p` is a live 64-byte object.
            unsafe { p.as_ptr().cast::<usize>().write(i) };
            p
        })
        .collect();
    (c, ps)
}

#[test]
fn frees_from_another_exclusive_cpu_keep_every_count() {
    let (m, cpus) = boot_sole(2);
    let free0 = m.buddy_free();
    let (c, mut ps) = setup(&m, 300);
    // CPU 1 has no slab of this cache: every free is a remote one.
    cpus.set_current(1).unwrap();
    let freed: Vec<_> = ps.drain(..100).collect();
    for (i, &p) in freed.iter().enumerate() {
        // SAFETY: `p` is still a live 64-byte object.
        assert_eq!(unsafe { p.as_ptr().cast::<usize>().read() }, i);
        m.slab.kmem_cache_free(&c, p).unwrap();
        assert_eq!(active(&m, "owned"), 300 - i - 1);
        m.slab.check_invariants().unwrap();
    }
    // CPU 1 now allocates from the partial slabs those frees made.
    for _ in 0..20 {
        ps.push(m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap());
        m.slab.check_invariants().unwrap();
    }
    assert_eq!(active(&m, "owned"), 220);
    assert!(!m.slab.kmem_cache_shrink(&c).unwrap());
    m.slab.check_invariants().unwrap();
    assert_eq!(active(&m, "owned"), 220);
    for p in ps {
        m.slab.kmem_cache_free(&c, p).unwrap();
    }
    m.slab.check_invariants().unwrap();
    m.slab.kmem_cache_destroy(&c).unwrap();
    m.assert_all_pages_back(free0);
}

#[test]
fn kmalloc_objects_freed_from_another_exclusive_cpu() {
    let (m, cpus) = boot_sole(2);
    let free0 = m.buddy_free();
    let ps: Vec<_> = (0..200)
        .map(|_| m.slab.kmalloc(100, GFP_KERNEL).unwrap())
        .collect();
    cpus.set_current(1).unwrap();
    for &p in &ps {
        m.slab.kfree(Some(p)).unwrap();
    }
    m.slab.check_invariants().unwrap();
    assert_eq!(active(&m, "kmalloc-128"), 0);
    let p = m.slab.kmalloc(120, GFP_KERNEL).unwrap();
    assert_eq!(active(&m, "kmalloc-128"), 1);
    m.slab.kfree(Some(p)).unwrap();
    m.assert_all_pages_back(free0);
}

#[test]
fn misuse_on_an_exclusive_cpu_changes_nothing() {
    let (m, cpus) = boot_sole(2);
    let (c, ps) = setup(&m, 100);
    let other = m
        .slab
        .kmem_cache_create("other", 64, 0, SlabFlags::empty(), None)
        .unwrap();
    let theirs = m.slab.kmem_cache_alloc(&other, GFP_KERNEL).unwrap();
    cpus.set_current(1).unwrap();
    m.slab.kmem_cache_free(&c, ps[0]).unwrap();
    let before = m.digest();
    // The object just freed, freed again: the head of its slab's freelist.
    assert_eq!(
        m.slab.kmem_cache_free(&c, ps[0]),
        Err(SlabError::DoubleFree {
            cache: "owned".into(),
            object: ps[0].as_ptr().addr()
        })
    );
    assert_eq!(
        m.slab.kfree(Some(ps[0])),
        Err(SlabError::DoubleFree {
            cache: "owned".into(),
            object: ps[0].as_ptr().addr()
        })
    );
    // The middle of an object, an object of another cache, a large kmalloc.
    let inside = NonNull::new(ps[1].as_ptr().wrapping_add(8)).unwrap();
    assert!(matches!(
        m.slab.kmem_cache_free(&c, inside),
        Err(SlabError::NotObjectStart { .. })
    ));
    assert!(matches!(
        m.slab.kfree(Some(inside)),
        Err(SlabError::NotObjectStart { .. })
    ));
    assert!(matches!(
        m.slab.kmem_cache_free(&c, theirs),
        Err(SlabError::WrongCache { .. })
    ));
    let big = m.slab.kmalloc(64 << 10, GFP_KERNEL).unwrap();
    let before_big = m.digest();
    assert!(matches!(
        m.slab.kmem_cache_free(&c, big),
        Err(SlabError::WrongCache { .. })
    ));
    assert_eq!(m.digest(), before_big);
    m.slab.kfree(Some(big)).unwrap();
    assert_eq!(m.digest(), before);
    // Destroy with live objects: refused, nothing moves.
    assert_eq!(
        m.slab.kmem_cache_destroy(&c),
        Err(SlabError::LiveObjects {
            cache: "owned".into(),
            count: 99
        })
    );
    assert_eq!(m.digest(), before);
    for &p in &ps[1..] {
        m.slab.kmem_cache_free(&c, p).unwrap();
    }
    m.slab.kmem_cache_free(&other, theirs).unwrap();
    m.slab.kmem_cache_destroy(&c).unwrap();
    m.slab.kmem_cache_destroy(&other).unwrap();
    m.slab.check_invariants().unwrap();
}
