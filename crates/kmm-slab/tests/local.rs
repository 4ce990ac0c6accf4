//! `LocalCache`: a caller-held CPU slab. Objects, refills and the slab's
//! return; every misuse refused with nothing changed; remote frees to a
//! held slab; destroy while held; debug caches through it; a property test
//! against a model.

mod common;

use core::ptr::NonNull;
use std::collections::BTreeMap;

use common::{boot, boot_sole};
use kmm_gfp::{GFP_KERNEL, Gfp};
use kmm_slab::{KmemCache, SlabError, SlabFlags, SlabInfo};
use proptest::prelude::*;

fn at(p: NonNull<u8>, off: usize) -> NonNull<u8> {
    NonNull::new(p.as_ptr().wrapping_add(off)).unwrap()
}

/// A cache of `size`-byte objects without flags, which freezes slabs.
fn plain(m: &common::Machine, name: &str, size: usize) -> KmemCache {
    m.slab
        .kmem_cache_create(name, size, 0, SlabFlags::empty(), None)
        .unwrap()
}

/// The active objects of the cache named `name` in `/proc/slabinfo`.
fn active(m: &common::Machine, name: &str) -> usize {
    row(m, name).active_objs
}

/// The `/proc/slabinfo` row of the cache named `name`.
fn row(m: &common::Machine, name: &str) -> SlabInfo {
    let rows = m.slab.slabinfo_rows();
    rows.into_iter().find(|r| r.name == name).unwrap()
}

#[test]
fn objects_come_from_held_slabs_and_go_back_when_it_drops() {
    for exclusive in [false, true] {
        let (m, _cpus) = if exclusive { boot_sole(2) } else { boot(2) };
        let free0 = m.buddy_free();
        let c = plain(&m, "loc", 72);
        let per = c.objects_per_slab();
        let mut local = m.slab.local_cache(&c).unwrap();
        assert_eq!(local.name(), "loc");
        // Three slabs and a half: refills from new slabs as each runs dry.
        let n = 3 * per + per / 2;
        let objs: Vec<_> = (0..n).map(|_| local.alloc(GFP_KERNEL).unwrap()).collect();
        let mut sorted: Vec<usize> = objs.iter().map(|p| p.as_ptr().addr()).collect();
        sorted.sort_unstable();
        assert!(
            sorted.windows(2).all(|w| w[1] - w[0] >= c.size()),
            "objects overlap"
        );
        for (i, &p) in objs.iter().enumerate() {
            assert_eq!(p.as_ptr().addr() % c.align(), 0);
            assert_eq!(m.slab.cache_of(p).as_deref(), Some("loc"));
            // SAFETY: `p` is a live 72-byte object.
            unsafe { p.as_ptr().write_bytes(i as u8, 72) };
        }
        m.slab.check_invariants().unwrap();
        // Freed in reverse order, all but the held slab's go to their own slabs.
        for (i, &p) in objs.iter().enumerate().rev() {
            // SAFETY: as above.
            assert_eq!(unsafe { p.as_ptr().add(71).read() }, i as u8, "contents");
            local.free(p).unwrap();
            m.slab.check_invariants().unwrap();
        }
        // The held slab's free objects count as allocated until it goes back.
        assert!(active(&m, "loc") <= per);
        drop(local);
        assert_eq!(active(&m, "loc"), 0);
        m.slab.check_invariants().unwrap();
        assert_eq!(m.slab.kmem_cache_shrink(&c), Ok(true));
        m.slab.kmem_cache_destroy(&c).unwrap();
        m.assert_all_pages_back(free0);
    }
}

#[test]
fn the_fast_path_is_lifo_on_the_held_slab() {
    let (m, _) = boot(1);
    let c = plain(&m, "lifo", 64);
    let mut local = m.slab.local_cache(&c).unwrap();
    let a = local.alloc(GFP_KERNEL).unwrap();
    let b = local.alloc(GFP_KERNEL).unwrap();
    local.free(a).unwrap();
    local.free(b).unwrap();
    assert_eq!(local.alloc(GFP_KERNEL).unwrap(), b);
    assert_eq!(local.alloc(GFP_KERNEL).unwrap(), a);
    // `__GFP_ZERO` zeroes what the fast path would hand out.
    // SAFETY: `a` is a live 64-byte object.
    unsafe { a.as_ptr().write_bytes(0xee, 64) };
    local.free(a).unwrap();
    let z = local.alloc(GFP_KERNEL | Gfp::ZERO).unwrap();
    assert_eq!(z, a);
    // SAFETY: `z` is a live 64-byte object.
    let bytes = unsafe { core::slice::from_raw_parts(z.as_ptr(), 64) };
    assert!(bytes.iter().all(|&x| x == 0));
    local.free(z).unwrap();
    local.free(b).unwrap();
    // The held slab's first and last objects go through the fast path too:
    // the last freed comes back first.
    let per = c.objects_per_slab();
    let mut sorted: Vec<_> = (0..per).map(|_| local.alloc(GFP_KERNEL).unwrap()).collect();
    sorted.sort_unstable();
    let (first, last) = (sorted[0], sorted[per - 1]);
    assert_eq!(
        last.as_ptr().addr() - first.as_ptr().addr(),
        (per - 1) * c.size()
    );
    local.free(sorted[1]).unwrap();
    local.free(last).unwrap();
    assert_eq!(local.alloc(GFP_KERNEL), Ok(last));
    local.free(last).unwrap();
    local.free(first).unwrap();
    assert_eq!(local.alloc(GFP_KERNEL), Ok(first));
    // All but `sorted[1]` and `last` are live.
    let free = [sorted[1], last];
    for p in sorted.into_iter().filter(|p| !free.contains(p)) {
        local.free(p).unwrap();
    }
}

#[test]
fn misuse_is_refused_and_changes_nothing() {
    let (m, _) = boot(2);
    let c = plain(&m, "held", 96);
    let other = plain(&m, "other", 96);
    let mut local = m.slab.local_cache(&c).unwrap();
    let a = local.alloc(GFP_KERNEL).unwrap();
    let b = local.alloc(GFP_KERNEL).unwrap();
    local.free(b).unwrap();
    let o = m.slab.kmem_cache_alloc(&other, GFP_KERNEL).unwrap();
    let k = m.slab.kmalloc(96, GFP_KERNEL).unwrap();
    let mut stack = 0u64;
    let on_stack = NonNull::from(&mut stack).cast::<u8>();
    let before = m.digest();
    let cases = [
        (
            b,
            SlabError::DoubleFree {
                cache: "held".into(),
                object: b.as_ptr().addr(),
            },
        ),
        (
            at(a, 8),
            SlabError::NotObjectStart {
                addr: a.as_ptr().addr() + 8,
                cache: "held".into(),
            },
        ),
        (
            at(a, 95),
            SlabError::NotObjectStart {
                addr: a.as_ptr().addr() + 95,
                cache: "held".into(),
            },
        ),
        (
            o,
            SlabError::WrongCache {
                addr: o.as_ptr().addr(),
                given: "held".into(),
                actual: "other".into(),
            },
        ),
        (
            k,
            SlabError::WrongCache {
                addr: k.as_ptr().addr(),
                given: "held".into(),
                actual: "kmalloc-96".into(),
            },
        ),
        (
            on_stack,
            SlabError::ForeignPointer {
                addr: on_stack.as_ptr().addr(),
            },
        ),
    ];
    for (p, want) in cases {
        assert_eq!(local.free(p), Err(want));
        assert_eq!(m.digest(), before);
    }
    // The local cache goes on working.
    assert_eq!(local.alloc(GFP_KERNEL).unwrap(), b);
    local.free(b).unwrap();
    local.free(a).unwrap();
    m.slab.kmem_cache_free(&other, o).unwrap();
    m.slab.kfree(Some(k)).unwrap();
    // A cache of another allocator is refused.
    let (m2, _) = boot(1);
    let foreign = plain(&m2, "far", 32);
    assert!(matches!(
        m.slab.local_cache(&foreign),
        Err(SlabError::InvalidArgs(_))
    ));
}

#[test]
fn frees_from_elsewhere_reach_the_held_slab_and_its_refill_takes_them() {
    let (m, cpus) = boot(2);
    let c = plain(&m, "remote", 200);
    let per = c.objects_per_slab();
    let mut local = m.slab.local_cache(&c).unwrap();
    let objs: Vec<_> = (0..per).map(|_| local.alloc(GFP_KERNEL).unwrap()).collect();
    assert_eq!(row(&m, "remote").num_slabs, 1);
    // The held slab is full; its objects are freed by another CPU's
    // `kmem_cache_free`, to the frozen slab's own freelist.
    cpus.set_current(1).unwrap();
    for &p in &objs {
        m.slab.kmem_cache_free(&c, p).unwrap();
    }
    m.slab.check_invariants().unwrap();
    // A second free of the last one, from anywhere, is refused.
    assert!(matches!(
        m.slab.kmem_cache_free(&c, objs[per - 1]),
        Err(SlabError::DoubleFree { .. })
    ));
    cpus.set_current(0).unwrap();
    // The refill takes them back without a new slab.
    let again: Vec<_> = (0..per).map(|_| local.alloc(GFP_KERNEL).unwrap()).collect();
    assert_eq!(row(&m, "remote").num_slabs, 1);
    let mut a: Vec<_> = objs.iter().map(|p| p.as_ptr().addr()).collect();
    let mut b: Vec<_> = again.iter().map(|p| p.as_ptr().addr()).collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    for p in again {
        local.free(p).unwrap();
    }
    drop(local);
    assert_eq!(active(&m, "remote"), 0);
    m.slab.check_invariants().unwrap();
}

#[test]
fn the_holder_and_other_threads_keep_using_the_cpu_slabs() {
    let (m, _) = boot(1);
    let c = plain(&m, "both", 48);
    let mut local = m.slab.local_cache(&c).unwrap();
    let l = local.alloc(GFP_KERNEL).unwrap();
    // The same thread's `kmem_cache_alloc` takes the CPU slab, another slab.
    let g = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    assert_eq!(row(&m, "both").num_slabs, 2);
    std::thread::scope(|s| {
        s.spawn(|| {
            let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
            m.slab.kmem_cache_free(&c, p).unwrap();
            // slabinfo and shrink from another thread do not wait for the holder.
            assert!(m.slab.slabinfo().contains("both"));
            assert_eq!(m.slab.kmem_cache_shrink(&c), Ok(false));
        });
    });
    // Each object may be freed either way.
    local.free(g).unwrap();
    m.slab.kmem_cache_free(&c, l).unwrap();
    drop(local);
    assert_eq!(m.slab.kmem_cache_shrink(&c), Ok(true));
    m.slab.check_invariants().unwrap();
}

#[test]
fn destroy_waits_for_the_holder_to_give_its_slab_back() {
    let (m, _) = boot(1);
    let c = plain(&m, "busy", 128);
    let mut local = m.slab.local_cache(&c).unwrap();
    let p = local.alloc(GFP_KERNEL).unwrap();
    local.free(p).unwrap();
    // Every object of the held slab counts as allocated.
    let before = m.digest();
    assert_eq!(
        m.slab.kmem_cache_destroy(&c),
        Err(SlabError::LiveObjects {
            cache: "busy".into(),
            count: c.objects_per_slab()
        })
    );
    assert_eq!(m.digest(), before);
    assert_eq!(local.alloc(GFP_KERNEL).unwrap(), p);
    local.free(p).unwrap();
    local.flush();
    m.slab.kmem_cache_destroy(&c).unwrap();
    // A local cache holding nothing finds the cache gone.
    assert!(matches!(
        local.alloc(GFP_KERNEL),
        Err(SlabError::Destroyed { .. })
    ));
    assert!(matches!(
        m.slab.local_cache(&c),
        Err(SlabError::Destroyed { .. })
    ));
    drop(local);
    m.slab.check_invariants().unwrap();
}

#[test]
fn a_planted_corrupt_free_pointer_is_reported_and_the_list_dropped() {
    // A pointer out of the slab, and one inside it that is not a whole
    // number of words (the held list's loads rely on every offset being
    // one).
    for bad in [usize::MAX / 3, 64 + 4] {
        let (m, _) = boot(1);
        let c = plain(&m, "smash", 64);
        let mut local = m.slab.local_cache(&c).unwrap();
        let a = local.alloc(GFP_KERNEL).unwrap();
        local.free(a).unwrap();
        // SAFETY: `a` is free but its slab is held, so the bytes stay
        // mapped; overwriting the free pointer (at offset 32 of a 64-byte
        // object, as SLUB places it mid-object) is the bug this test plants.
        unsafe {
            a.as_ptr()
                .add(c.free_pointer_offset())
                .cast::<usize>()
                .write_unaligned(bad)
        };
        assert_eq!(
            local.alloc(GFP_KERNEL),
            Err(SlabError::Corrupted {
                cache: "smash".into(),
                object: a.as_ptr().addr()
            }),
            "{bad:#x}"
        );
        // The rest of the held freelist is dropped; allocation goes on elsewhere.
        let b = local.alloc(GFP_KERNEL).unwrap();
        assert_ne!(b, a);
        assert_eq!(b.as_ptr().addr() % 8, 0);
        local.free(b).unwrap();
        drop(local);
        m.slab.check_invariants().unwrap();
    }
}

#[test]
fn a_debug_cache_takes_the_checked_paths() {
    let (m, _) = boot(1);
    let c = m
        .slab
        .kmem_cache_create("dbg", 64, 0, SlabFlags::POISON, None)
        .unwrap();
    let mut local = m.slab.local_cache(&c).unwrap();
    let p = local.alloc(GFP_KERNEL).unwrap();
    local.free(p).unwrap();
    // Any double free, caught under the node lock.
    let q = local.alloc(GFP_KERNEL).unwrap();
    let r = local.alloc(GFP_KERNEL).unwrap();
    local.free(q).unwrap();
    local.free(r).unwrap();
    assert!(matches!(local.free(q), Err(SlabError::DoubleFree { .. })));
    // A planted write after free is found on the next allocation.
    // SAFETY: `r` is free in a slab the cache keeps (nothing shrinks it).
    unsafe { r.as_ptr().add(5).write(0) };
    assert_eq!(
        local.alloc(GFP_KERNEL),
        Err(SlabError::Poisoned {
            cache: "dbg".into(),
            object: r.as_ptr().addr(),
            offset: 5,
            byte: 0
        })
    );
    drop(local);
    assert_eq!(active(&m, "dbg"), 0);
    m.slab.check_invariants().unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    /// Allocate from cache `c`'s local cache, or with `kmem_cache_alloc`.
    Alloc {
        c: usize,
        local: bool,
        cpu: usize,
        zero: bool,
    },
    /// Free a live object through the local cache of `c` (any cache's
    /// object: a wrong cache is refused) or with `kmem_cache_free`.
    Free {
        which: usize,
        local: bool,
        cpu: usize,
    },
    /// Free up to `n` live objects of cache `c` through its local cache,
    /// highest address first.
    FreeMany {
        c: usize,
        n: usize,
    },
    /// Give a local cache's slab back (and take another on next use).
    Flush {
        c: usize,
    },
    Shrink {
        c: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..2, any::<bool>(), 0usize..2, prop::bool::weighted(0.2))
            .prop_map(|(c, local, cpu, zero)| Op::Alloc { c, local, cpu, zero }),
        6 => (any::<usize>(), any::<bool>(), 0usize..2).prop_map(|(which, local, cpu)| Op::Free { which, local, cpu }),
        1 => (0usize..2, 0usize..48).prop_map(|(c, n)| Op::FreeMany { c, n }),
        1 => (0usize..2).prop_map(|c| Op::Flush { c }),
        1 => (0usize..2).prop_map(|c| Op::Shrink { c }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Two caches, each with a local cache held throughout, used beside
    /// the ordinary calls from two CPUs: no two live objects overlap, none
    /// is corrupted, the invariants hold, slabinfo counts the model's
    /// objects plus at most a held slab's, exactly after a flush; and
    /// after everything is freed every page is back in the buddy.
    #[test]
    fn local_caches_match_the_model(
        ops in prop::collection::vec(op(), 1..200),
        exclusive in any::<bool>(),
        sizes in (8usize..600, 8usize..5000),
    ) {
        let (m, cpus) = if exclusive { boot_sole(2) } else { boot(2) };
        let free0 = m.buddy_free();
        let caches = [
            m.slab.kmem_cache_create("m0", sizes.0, 0, SlabFlags::empty(), None).unwrap(),
            m.slab.kmem_cache_create("m1", sizes.1, 0, SlabFlags::HWCACHE_ALIGN, None).unwrap(),
        ];
        let mut locals = [m.slab.local_cache(&caches[0]).unwrap(), m.slab.local_cache(&caches[1]).unwrap()];
        let mut live: BTreeMap<usize, (NonNull<u8>, usize, u8)> = BTreeMap::new();
        let mut tag = 0u8;
        for op in &ops {
            let mut exact = false;
            match *op {
                Op::Alloc { c, local, cpu, zero } => {
                    cpus.set_current(cpu).unwrap();
                    let gfp = if zero { GFP_KERNEL | Gfp::ZERO } else { GFP_KERNEL };
                    let p = if local {
                        locals[c].alloc(gfp).unwrap()
                    } else {
                        m.slab.kmem_cache_alloc(&caches[c], gfp).unwrap()
                    };
                    tag = tag.wrapping_add(1);
                    let size = caches[c].object_size();
                    if zero {
                        // SAFETY: `p` is a live object of `size` bytes.
                        let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), size) };
                        prop_assert!(bytes.iter().all(|&b| b == 0), "not zeroed");
                    }
                    // SAFETY: `p` is a live object of `size` bytes.
                    unsafe { p.as_ptr().write_bytes(tag, size) };
                    prop_assert!(live.insert(p.as_ptr().addr(), (p, c, tag)).is_none());
                }
                Op::Free { which, local, cpu } => {
                    if live.is_empty() {
                        continue;
                    }
                    let key = *live.keys().nth(which % live.len()).unwrap();
                    let (p, c, t) = live[&key];
                    let size = caches[c].object_size();
                    // SAFETY: as above.
                    let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), size) };
                    // The free pointer sits mid-object in a free object
                    // only, so a live one holds its stamp whole.
                    prop_assert!(bytes.iter().all(|&b| b == t), "object corrupted");
                    cpus.set_current(cpu).unwrap();
                    // Half the local frees go to the other cache's local
                    // cache, which refuses them with nothing changed.
                    let by = if which % 2 == 0 { c } else { 1 - c };
                    if local && by != c {
                        let before = m.digest();
                        let wrong = matches!(locals[by].free(p), Err(SlabError::WrongCache { .. }));
                        prop_assert!(wrong);
                        prop_assert_eq!(m.digest(), before);
                    }
                    if local {
                        locals[c].free(p).unwrap();
                    } else {
                        m.slab.kmem_cache_free(&caches[c], p).unwrap();
                    }
                    live.remove(&key);
                }
                Op::FreeMany { c, n } => {
                    let keys: Vec<usize> = live
                        .iter()
                        .rev()
                        .filter(|&(_, &(_, lc, _))| lc == c)
                        .map(|(&k, _)| k)
                        .take(n)
                        .collect();
                    for key in keys {
                        let (p, _, t) = live.remove(&key).unwrap();
                        let size = caches[c].object_size();
                        // SAFETY: as above.
                        let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), size) };
                        prop_assert!(bytes.iter().all(|&b| b == t), "object corrupted");
                        locals[c].free(p).unwrap();
                    }
                }
                Op::Flush { c } => {
                    locals[c].flush();
                    exact = true;
                }
                Op::Shrink { c } => {
                    let empty = m.slab.kmem_cache_shrink(&caches[c]).unwrap();
                    let has_live = live.values().any(|&(_, lc, _)| lc == c);
                    prop_assert!(!empty || !has_live);
                }
            }
            let mut end = 0usize;
            for (&a, &(_, c, _)) in &live {
                prop_assert!(a >= end, "overlap at {a:#x}");
                end = a + caches[c].object_size();
            }
            m.slab.check_invariants().map_err(TestCaseError::fail)?;
            for (c, cache) in caches.iter().enumerate() {
                let n = live.values().filter(|&&(_, lc, _)| lc == c).count();
                let act = active(&m, cache.name());
                prop_assert!(act >= n && act <= n + cache.objects_per_slab(), "{} active, {} live", act, n);
                if exact && matches!(*op, Op::Flush { c: f } if f == c) {
                    prop_assert_eq!(act, n);
                }
            }
        }
        for (_, (p, c, _)) in core::mem::take(&mut live) {
            locals[c].free(p).unwrap();
        }
        drop(locals);
        for cache in &caches {
            prop_assert_eq!(active(&m, cache.name()), 0);
            m.slab.kmem_cache_destroy(cache).unwrap();
        }
        m.slab.check_invariants().map_err(TestCaseError::fail)?;
        m.assert_all_pages_back(free0);
    }
}
