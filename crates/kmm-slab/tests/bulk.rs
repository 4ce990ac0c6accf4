//! `kmem_cache_alloc_bulk` and `kmem_cache_free_bulk`: whole batches across
//! refills on shared and exclusive CPUs, zeroing, debug caches, all or
//! nothing when memory runs out, and every refusal.

mod common;

use core::ptr::NonNull;

use common::{boot, boot_sole};
use kmm_gfp::{GFP_KERNEL, Gfp};
use kmm_slab::{SlabError, SlabFlags};

fn none() -> NonNull<u8> {
    NonNull::dangling()
}

/// Active objects of the cache named `name` in `/proc/slabinfo`.
fn active(m: &common::Machine, name: &str) -> usize {
    let rows = m.slab.slabinfo_rows();
    rows.into_iter()
        .find(|r| r.name == name)
        .unwrap()
        .active_objs
}

#[test]
fn a_batch_spans_refills_and_comes_back_whole() {
    for exclusive in [false, true] {
        let (m, _cpus) = if exclusive { boot_sole(2) } else { boot(2) };
        let free0 = m.buddy_free();
        let c = m
            .slab
            .kmem_cache_create("batch", 200, 0, SlabFlags::empty(), None)
            .unwrap();
        let per = c.objects_per_slab();
        // A few objects first, so that the batch starts on a used CPU slab.
        let first: Vec<_> = (0..3)
            .map(|_| m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap())
            .collect();
        let mut objs = vec![none(); 3 * per + 5];
        m.slab
            .kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut objs)
            .unwrap();
        let mut all: Vec<usize> = objs
            .iter()
            .chain(&first)
            .map(|p| p.as_ptr().addr())
            .collect();
        all.sort_unstable();
        assert!(all.windows(2).all(|w| w[1] - w[0] >= c.size()), "overlap");
        for (i, &p) in objs.iter().enumerate() {
            assert_eq!(m.slab.cache_of(p).as_deref(), Some("batch"));
            assert_eq!(p.as_ptr().addr() % c.align(), 0);
            // SAFETY: `p` is a live 200-byte object.
            unsafe { p.as_ptr().write_bytes(i as u8, 200) };
        }
        assert_eq!(active(&m, "batch"), objs.len() + first.len());
        m.slab.check_invariants().unwrap();
        for (i, &p) in objs.iter().enumerate() {
            // SAFETY: as above.
            assert_eq!(unsafe { p.as_ptr().add(199).read() }, i as u8);
        }
        m.slab.kmem_cache_free_bulk(&c, &objs).unwrap();
        m.slab.kmem_cache_free_bulk(&c, &first).unwrap();
        assert_eq!(active(&m, "batch"), 0);
        m.slab.check_invariants().unwrap();
        // An empty batch allocates and frees nothing.
        m.slab
            .kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut [])
            .unwrap();
        m.slab.kmem_cache_free_bulk(&c, &[]).unwrap();
        m.slab.kmem_cache_destroy(&c).unwrap();
        m.assert_all_pages_back(free0);
    }
}

#[test]
fn a_zeroing_batch_zeroes_every_object() {
    let (m, _) = boot(1);
    let c = m
        .slab
        .kmem_cache_create("dirty", 96, 0, SlabFlags::empty(), None)
        .unwrap();
    let mut objs = vec![none(); 40];
    m.slab
        .kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut objs)
        .unwrap();
    for &p in &objs {
        // SAFETY: `p` is a live 96-byte object.
        unsafe { p.as_ptr().write_bytes(0xee, 96) };
    }
    m.slab.kmem_cache_free_bulk(&c, &objs).unwrap();
    m.slab
        .kmem_cache_alloc_bulk(&c, GFP_KERNEL | Gfp::ZERO, &mut objs)
        .unwrap();
    for &p in &objs {
        // SAFETY: as above.
        let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), 96) };
        assert!(bytes.iter().all(|&b| b == 0));
    }
    m.slab.kmem_cache_free_bulk(&c, &objs).unwrap();
    m.slab.check_invariants().unwrap();
}

#[test]
fn a_debug_cache_checks_every_object_of_a_batch() {
    let (m, _) = boot(1);
    let c = m
        .slab
        .kmem_cache_create("dbg", 64, 0, SlabFlags::POISON | SlabFlags::RED_ZONE, None)
        .unwrap();
    let mut objs = vec![none(); 10];
    m.slab
        .kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut objs)
        .unwrap();
    m.slab.kmem_cache_free_bulk(&c, &objs).unwrap();
    // A write after free in the batch's last object is found when the next
    // batch takes it again, and the batch gives back what it had taken.
    // SAFETY: the object is free in a slab the cache keeps (nothing shrinks it).
    unsafe { objs[9].as_ptr().add(3).write(0) };
    let before = active(&m, "dbg");
    let err = m
        .slab
        .kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut objs)
        .unwrap_err();
    assert!(matches!(err, SlabError::Poisoned { .. }), "{err:?}");
    assert_eq!(active(&m, "dbg"), before);
    m.slab.check_invariants().unwrap();
    // A double free inside a batch: the first free goes through, the second
    // is refused with its index.
    let mut two = [none(); 2];
    m.slab
        .kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut two)
        .unwrap();
    let (i, err) = m
        .slab
        .kmem_cache_free_bulk(&c, &[two[0], two[1], two[0]])
        .unwrap_err();
    assert_eq!(i, 2);
    assert!(matches!(err, SlabError::DoubleFree { .. }), "{err:?}");
    m.slab.check_invariants().unwrap();
}

#[test]
fn running_out_of_memory_takes_nothing() {
    for exclusive in [false, true] {
        let (m, _cpus) = if exclusive { boot_sole(1) } else { boot(1) };
        let free0 = m.buddy_free();
        // 256 KiB objects: 64 MiB of them cannot all exist.
        let c = m
            .slab
            .kmem_cache_create("huge", 256 << 10, 0, SlabFlags::empty(), None)
            .unwrap();
        let keep = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
        let mut objs = vec![none(); 300];
        assert!(matches!(
            m.slab.kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut objs),
            Err(SlabError::NoMemory { .. })
        ));
        // Only the object taken before is allocated; the slabs made for
        // the batch go back on a shrink.
        assert_eq!(active(&m, "huge"), 1);
        m.slab.check_invariants().unwrap();
        m.slab.kmem_cache_shrink(&c).unwrap();
        m.slab.kmem_cache_free(&c, keep).unwrap();
        // Memory is usable again: a batch that fits succeeds.
        let mut some = vec![none(); 8];
        m.slab
            .kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut some)
            .unwrap();
        m.slab.kmem_cache_free_bulk(&c, &some).unwrap();
        m.slab.kmem_cache_destroy(&c).unwrap();
        m.assert_all_pages_back(free0);
    }
}

#[test]
fn a_refused_free_stops_the_batch_where_it_is() {
    let (m, _) = boot(2);
    let c = m
        .slab
        .kmem_cache_create("held", 48, 0, SlabFlags::empty(), None)
        .unwrap();
    let other = m
        .slab
        .kmem_cache_create("other", 48, 0, SlabFlags::empty(), None)
        .unwrap();
    let mut objs = vec![none(); 6];
    m.slab
        .kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut objs)
        .unwrap();
    let stranger = m.slab.kmem_cache_alloc(&other, GFP_KERNEL).unwrap();
    let mut stack = 0u64;
    let on_stack = NonNull::from(&mut stack).cast::<u8>();
    let middle = NonNull::new(objs[4].as_ptr().wrapping_add(8)).unwrap();
    for (bad, check) in [
        (on_stack, "foreign"),
        (stranger, "wrong cache"),
        (middle, "middle"),
    ] {
        let before = active(&m, "held");
        let batch = [objs[0], objs[1], bad, objs[2]];
        let (i, err) = m.slab.kmem_cache_free_bulk(&c, &batch).unwrap_err();
        assert_eq!(i, 2, "{check}");
        assert!(
            matches!(
                err,
                SlabError::ForeignPointer { .. }
                    | SlabError::WrongCache { .. }
                    | SlabError::NotObjectStart { .. }
            ),
            "{check}: {err:?}"
        );
        // The two before it are freed, the one after it is not.
        assert_eq!(active(&m, "held"), before - 2, "{check}");
        m.slab.check_invariants().unwrap();
        m.slab
            .kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut objs[..2])
            .unwrap();
    }
    // A double free inside the batch: the object freed just before.
    let before = active(&m, "held");
    let (i, err) = m
        .slab
        .kmem_cache_free_bulk(&c, &[objs[0], objs[1], objs[1], objs[2]])
        .unwrap_err();
    assert_eq!(i, 2);
    assert!(matches!(err, SlabError::DoubleFree { .. }), "{err:?}");
    assert_eq!(active(&m, "held"), before - 2);
    m.slab.check_invariants().unwrap();
    m.slab.kmem_cache_free_bulk(&c, &objs[2..]).unwrap();
    m.slab.kmem_cache_free(&other, stranger).unwrap();
    assert_eq!(active(&m, "held"), 0);
    // A destroyed cache and another allocator's handle are refused whole.
    m.slab.kmem_cache_destroy(&c).unwrap();
    let before = m.digest();
    assert!(matches!(
        m.slab.kmem_cache_alloc_bulk(&c, GFP_KERNEL, &mut objs),
        Err(SlabError::Destroyed { .. })
    ));
    assert!(matches!(
        m.slab.kmem_cache_free_bulk(&c, &objs[..1]),
        Err((0, SlabError::Destroyed { .. }))
    ));
    let (m2, _) = boot(1);
    let foreign = m2
        .slab
        .kmem_cache_create("theirs", 48, 0, SlabFlags::empty(), None)
        .unwrap();
    assert!(matches!(
        m.slab
            .kmem_cache_alloc_bulk(&foreign, GFP_KERNEL, &mut objs),
        Err(SlabError::InvalidArgs(_))
    ));
    assert!(matches!(
        m.slab.kmem_cache_free_bulk(&foreign, &objs[..1]),
        Err((0, SlabError::InvalidArgs(_)))
    ));
    assert_eq!(m.digest(), before);
}
