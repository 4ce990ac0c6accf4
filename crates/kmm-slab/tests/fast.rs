//! `kmalloc_fast` and `kfree_fast`, the lockless per-CPU halves of `kmalloc`
//! and `kfree`: they serve exactly the CPU freelists of the kmalloc caches,
//! and decline everything else with the whole state unchanged, leaving it to
//! `kmalloc` and `kfree` (which report the misuse). Each check runs on a
//! shared CPU (compare-exchange) and on an exclusive one (plain stores).

mod common;

use core::ptr::NonNull;

use common::{Machine, boot, boot_sole};
use kmm_gfp::{GFP_DMA, GFP_KERNEL, Gfp};
use kmm_percpu::FixedCpu;
use kmm_slab::{FastFree, KmemCache, SlabError, SlabFlags, ZERO_SIZE_PTR};

fn at(p: NonNull<u8>, off: usize) -> NonNull<u8> {
    NonNull::new(p.as_ptr().wrapping_add(off)).unwrap()
}

/// Both kinds of CPU: a `FixedCpu` of two CPUs, shared, then held alone.
fn machines() -> [(Machine, std::sync::Arc<FixedCpu>); 2] {
    [boot(2), boot_sole(2)]
}

#[test]
fn the_fast_halves_pop_and_push_the_cpu_freelist() {
    for (m, _) in machines() {
        let free0 = m.buddy_free();
        // No CPU slab yet: nothing to pop, and nothing changes.
        let before = m.digest();
        assert_eq!(m.slab.kmalloc_fast(64, GFP_KERNEL), None);
        assert_eq!(m.digest(), before);
        // `kmalloc` takes a slab for the CPU; the fast half pops the next one.
        let p = m.slab.kmalloc(64, GFP_KERNEL).unwrap();
        let q = m.slab.kmalloc_fast(50, GFP_KERNEL).unwrap();
        assert_ne!(p, q);
        assert_eq!(m.slab.cache_of(q).as_deref(), Some("kmalloc-64"));
        assert_eq!(m.slab.ksize(q), Ok(64));
        // SAFETY: `q` is a live 64-byte object.
        unsafe { q.as_ptr().write_bytes(0x5a, 64) };
        let row = |m: &Machine| {
            let rows = m.slab.slabinfo_rows();
            rows.iter()
                .find(|r| r.name == "kmalloc-64")
                .unwrap()
                .active_objs
        };
        assert_eq!(row(&m), 2);
        // The fast free pushes it back: the next pop (either half) returns it,
        // and a second free of the head is a double free for `kfree`.
        assert!(m.slab.kfree_fast(q));
        assert_eq!(row(&m), 1);
        let before = m.digest();
        assert!(matches!(
            m.slab.kfree(Some(q)),
            Err(SlabError::DoubleFree { .. })
        ));
        assert_eq!(m.digest(), before);
        assert_eq!(m.slab.kmalloc_fast(64, GFP_KERNEL), Some(q));
        assert!(m.slab.kfree_fast(q));
        assert_eq!(m.slab.kmalloc(64, GFP_KERNEL), Ok(q));
        m.slab.kfree(Some(q)).unwrap();
        m.slab.kfree(Some(p)).unwrap();
        m.slab.check_invariants().unwrap();
        m.assert_all_pages_back(free0);
    }
}

#[test]
fn kmalloc_fast_declines_what_kmalloc_does_more_for() {
    for (m, _) in machines() {
        // Warm every CPU slab a decline could wrongly reach.
        let warm: Vec<_> = [8, 64, 8192]
            .iter()
            .map(|&s| m.slab.kmalloc(s, GFP_KERNEL).unwrap())
            .collect();
        let before = m.digest();
        // Zero bytes, a large kmalloc, zeroing, and a `dma-kmalloc` cache
        // whose CPU freelist is empty.
        for (size, gfp) in [
            (0, GFP_KERNEL),
            (8193, GFP_KERNEL),
            (1 << 20, GFP_KERNEL),
            (64, GFP_KERNEL | Gfp::ZERO),
            (64, GFP_DMA),
        ] {
            assert_eq!(m.slab.kmalloc_fast(size, gfp), None, "{size} {gfp:?}");
            assert_eq!(m.digest(), before);
        }
        for p in warm {
            m.slab.kfree(Some(p)).unwrap();
        }
    }
}

/// One pointer of each kind the fast free must tell apart, made on CPU 0
/// (where the caller then frees): an object of its kmalloc-128 slab, a
/// large kmalloc, an object of a `kmem_cache` of the same size, an object
/// of CPU 1's kmalloc-128 slab (remote on CPU 0), and a foreign block.
struct Spread {
    p: NonNull<u8>,
    large: NonNull<u8>,
    c: KmemCache,
    obj: NonNull<u8>,
    remote: NonNull<u8>,
    foreign: Box<u64>,
}

impl Spread {
    fn new(m: &Machine, cpus: &FixedCpu) -> Spread {
        let p = m.slab.kmalloc(128, GFP_KERNEL).unwrap();
        let large = m.slab.kmalloc(20_000, GFP_KERNEL).unwrap();
        let c = m
            .slab
            .kmem_cache_create("fast-test", 128, 0, SlabFlags::empty(), None)
            .unwrap();
        let obj = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
        cpus.set_current(1).unwrap();
        let remote = m.slab.kmalloc(128, GFP_KERNEL).unwrap();
        cpus.set_current(0).unwrap();
        Spread {
            p,
            large,
            c,
            obj,
            remote,
            foreign: Box::new(0),
        }
    }

    /// Every pointer but the remote object, which a fast free of any kind
    /// declines: nothing it could push, or a misuse `kfree` reports.
    fn declined(&self) -> [(&'static str, NonNull<u8>); 5] {
        [
            ("ZERO_SIZE_PTR", ZERO_SIZE_PTR),
            ("the middle of a CPU slab's object", at(self.p, 8)),
            ("a large kmalloc", self.large),
            ("a kmem_cache object", self.obj),
            ("a foreign pointer", NonNull::from(&*self.foreign).cast()),
        ]
    }
}

#[test]
fn kfree_fast_declines_everything_but_a_cpu_slab_object() {
    for (m, cpus) in machines() {
        let free0 = m.buddy_free();
        let spread = Spread::new(&m, &cpus);
        let before = m.digest();
        let remote = ("another CPU's slab", spread.remote);
        for (what, ptr) in spread.declined().into_iter().chain([remote]) {
            assert!(!m.slab.kfree_fast(ptr), "{what}");
            assert_eq!(m.digest(), before, "{what}");
        }
        // `kfree` then does what the fast half left: report or free.
        let Spread {
            p,
            large,
            c,
            obj,
            remote,
            foreign,
        } = spread;
        assert!(matches!(
            m.slab.kfree(Some(at(p, 8))),
            Err(SlabError::NotObjectStart { .. })
        ));
        assert!(matches!(
            m.slab.kfree(Some(NonNull::from(&*foreign).cast())),
            Err(SlabError::ForeignPointer { .. })
        ));
        for ptr in [p, large, obj, remote] {
            m.slab.kfree(Some(ptr)).unwrap();
        }
        m.slab.kmem_cache_destroy(&c).unwrap();
        m.assert_all_pages_back(free0);
    }
}

/// The kind of [`FastFree`], for messages.
fn kind(f: &FastFree) -> &'static str {
    match f {
        FastFree::Freed => "Freed",
        FastFree::Slow(_) => "Slow",
        FastFree::Declined => "Declined",
    }
}

#[test]
fn kfree_fast_split_hands_another_slabs_object_to_kfree_slow() {
    for (m, cpus) in machines() {
        let free0 = m.buddy_free();
        let spread = Spread::new(&m, &cpus);
        let before = m.digest();
        // Everything `kfree` must look at afresh is declined, as by `kfree_fast`.
        for (what, ptr) in spread.declined() {
            let f = m.slab.kfree_fast_split(ptr);
            assert!(matches!(f, FastFree::Declined), "{what}: {}", kind(&f));
            assert_eq!(m.digest(), before, "{what}");
        }
        let Spread {
            p,
            large,
            c,
            obj,
            remote,
            ..
        } = spread;
        // Another slab's object: nothing changes until `kfree_slow`, which
        // checks it as `kfree` does, then frees it to its slab.
        let FastFree::Slow(middle) = m.slab.kfree_fast_split(at(remote, 8)) else {
            panic!("the middle of another slab's object is for the slab free");
        };
        assert_eq!(m.digest(), before);
        assert!(matches!(
            m.slab.kfree_slow(middle),
            Err(SlabError::NotObjectStart { .. })
        ));
        assert_eq!(m.digest(), before);
        let FastFree::Slow(rest) = m.slab.kfree_fast_split(remote) else {
            panic!("another CPU's slab object is for the slab free");
        };
        assert_eq!(m.digest(), before);
        m.slab.kfree_slow(rest).unwrap();
        assert_ne!(m.digest(), before);
        m.slab.check_invariants().unwrap();
        // Freed again, it is refused as a double free, with nothing changed.
        let after = m.digest();
        let FastFree::Slow(again) = m.slab.kfree_fast_split(remote) else {
            panic!("a freed object of another slab is for the slab free");
        };
        assert!(matches!(
            m.slab.kfree_slow(again),
            Err(SlabError::DoubleFree { .. })
        ));
        assert_eq!(m.digest(), after);
        // This CPU's own object is pushed at once.
        assert!(matches!(m.slab.kfree_fast_split(p), FastFree::Freed));
        for ptr in [large, obj] {
            m.slab.kfree(Some(ptr)).unwrap();
        }
        m.slab.kmem_cache_destroy(&c).unwrap();
        m.slab.check_invariants().unwrap();
        m.assert_all_pages_back(free0);
    }
}
