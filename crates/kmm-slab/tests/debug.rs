//! SLUB debug: poisoning catches a planted use after free, red zones catch
//! planted overruns and underruns, `STORE_USER` records the last users.

mod common;

use core::ptr::NonNull;

use common::boot;
use kmm_gfp::GFP_KERNEL;
use kmm_slab::{SlabError, SlabFlags};

/// Writes `byte` at `p + off`.
///
/// # Safety
///
/// `p + off` is inside slab memory that the slab layer holds (so it is mapped
/// and no one else owns it), and no other thread touches it.
unsafe fn poke(p: NonNull<u8>, off: isize, byte: u8) {
    // SAFETY: guaranteed by the caller.
    unsafe { p.as_ptr().offset(off).write(byte) };
}

#[test]
fn layout_with_debug_flags() {
    let (m, _) = boot(1);
    let c = m
        .slab
        .kmem_cache_create("dbg", 100, 0, SlabFlags::POISON | SlabFlags::RED_ZONE, None)
        .unwrap();
    // 100 -> 104 (word), inuse 104 (right red zone 4 bytes), free pointer at 104,
    // +8 = 112, +8 trailing red-zone word = 120, left pad 8 = 128.
    assert_eq!(
        (
            c.inuse(),
            c.free_pointer_offset(),
            c.red_left_pad(),
            c.size()
        ),
        (104, 104, 8, 128)
    );
    let d = m
        .slab
        .kmem_cache_create("dbg8", 8, 0, SlabFlags::RED_ZONE, None)
        .unwrap();
    // 8 == object size: one more word of red zone; 8 is not < 8, so the free pointer stays inside.
    assert_eq!((d.inuse(), d.free_pointer_offset(), d.size()), (16, 0, 32));
    let u = m
        .slab
        .kmem_cache_create("dbgu", 64, 0, SlabFlags::STORE_USER, None)
        .unwrap();
    assert_eq!(u.size(), 64 + 2 * 32);
    assert_eq!(
        m.slab
            .ksize(m.slab.kmem_cache_alloc(&u, GFP_KERNEL).unwrap()),
        Ok(64)
    );
}

#[test]
fn poison_catches_a_planted_use_after_free() {
    let (m, _) = boot(1);
    let c = m
        .slab
        .kmem_cache_create("uaf", 64, 0, SlabFlags::POISON, None)
        .unwrap();
    let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    // A new object of a poison cache still holds the free poison (as in SLUB).
    // SAFETY: `p` is a live 64-byte object.
    let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), 64) };
    assert!(bytes[..63].iter().all(|&b| b == 0x6b) && bytes[63] == 0xa5);
    m.slab.kmem_cache_free(&c, p).unwrap();
    // SAFETY: `p` was freed but its slab still holds it (the cache has one
    // slab, nothing shrinks it), so the bytes are mapped and owned by the slab
    // layer; writing after free is exactly the bug this test plants.
    unsafe { poke(p, 10, 0x00) };
    // The freed object is the next one handed out (LIFO), and the check finds the write.
    assert_eq!(
        m.slab.kmem_cache_alloc(&c, GFP_KERNEL),
        Err(SlabError::Poisoned {
            cache: "uaf".into(),
            object: p.as_ptr().addr(),
            offset: 10,
            byte: 0
        })
    );
    // The object was repaired and stays free: the cache goes on working.
    m.slab.check_invariants().unwrap();
    let q = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    assert_eq!(q, p);
    m.slab.kmem_cache_free(&c, q).unwrap();
    assert_eq!(m.slab.kmem_cache_shrink(&c), Ok(true));
}

#[test]
fn poison_catches_a_write_to_the_last_byte() {
    let (m, _) = boot(1);
    let c = m
        .slab
        .kmem_cache_create("uaf_end", 40, 0, SlabFlags::POISON, None)
        .unwrap();
    let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    m.slab.kmem_cache_free(&c, p).unwrap();
    // SAFETY: as above: freed, still in a held slab, planted bug.
    unsafe { poke(p, 39, 0x6b) };
    assert!(matches!(
        m.slab.kmem_cache_alloc(&c, GFP_KERNEL),
        Err(SlabError::Poisoned {
            offset: 39,
            byte: 0x6b,
            ..
        })
    ));
}

#[test]
fn red_zone_catches_planted_overrun_and_underrun() {
    let (m, _) = boot(1);
    let c = m
        .slab
        .kmem_cache_create("rz", 100, 0, SlabFlags::RED_ZONE, None)
        .unwrap();
    let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    // SAFETY: byte 100 is the first right red-zone byte of a live object of
    // a held slab; the overrun is the planted bug.
    unsafe { poke(p, 100, 0x41) };
    assert_eq!(
        m.slab.kmem_cache_free(&c, p),
        Err(SlabError::RedZone {
            cache: "rz".into(),
            object: p.as_ptr().addr(),
            offset: 100,
            byte: 0x41
        })
    );
    // The free went through with the zone restored.
    m.slab.check_invariants().unwrap();
    let q = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    // SAFETY: byte -1 is the last left red-zone byte of a live object of a held slab.
    unsafe { poke(q, -1, 0x42) };
    assert!(matches!(
        m.slab.kmem_cache_free(&c, q),
        Err(SlabError::RedZone {
            offset: -1,
            byte: 0x42,
            ..
        })
    ));
    // Writing inside the object is fine.
    let r = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    // SAFETY: `r` is a live 100-byte object.
    unsafe { r.as_ptr().write_bytes(0x11, 100) };
    m.slab.kmem_cache_free(&c, r).unwrap();
    assert_eq!(m.slab.kmem_cache_shrink(&c), Ok(true));
}

#[test]
fn red_zone_of_a_free_object_is_checked_on_allocation() {
    let (m, _) = boot(1);
    let c = m
        .slab
        .kmem_cache_create(
            "rzfree",
            24,
            0,
            SlabFlags::RED_ZONE | SlabFlags::POISON,
            None,
        )
        .unwrap();
    let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    m.slab.kmem_cache_free(&c, p).unwrap();
    // SAFETY: byte 24 is the right red zone of a free object of a held slab.
    unsafe { poke(p, 24, 0) };
    assert!(matches!(
        m.slab.kmem_cache_alloc(&c, GFP_KERNEL),
        Err(SlabError::RedZone {
            offset: 24,
            byte: 0,
            ..
        })
    ));
    assert!(m.slab.kmem_cache_alloc(&c, GFP_KERNEL).is_ok());
}

#[test]
fn store_user_records_alloc_and_free() {
    let (m, cpus) = boot(2);
    let c = m
        .slab
        .kmem_cache_create("tracked", 64, 0, SlabFlags::STORE_USER, None)
        .unwrap();
    let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    let [alloc, free] = m.slab.object_tracks(p).unwrap();
    assert_eq!(alloc.0, 0);
    assert_eq!(free.1, 0, "never freed");
    cpus.set_current(1).unwrap();
    m.slab.kmem_cache_free(&c, p).unwrap();
    let q = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    assert_eq!(q, p);
    let [alloc2, free2] = m.slab.object_tracks(q).unwrap();
    assert_eq!((free2.0, alloc2.0), (1, 1));
    assert!(alloc.1 < free2.1 && free2.1 < alloc2.1);
    assert_eq!(
        m.slab.object_tracks(m.slab.kmalloc(8, GFP_KERNEL).unwrap()),
        None
    );
}
