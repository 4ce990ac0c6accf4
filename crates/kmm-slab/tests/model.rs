//! Model-based property test: random create/alloc/free/shrink/destroy on
//! several caches (sizes 1..8192, several alignments and flags) and kmalloc,
//! checked against a shadow model after every step.

mod common;

use core::ptr::NonNull;
use std::collections::BTreeMap;

use common::{boot, boot_sole};
use kmm_gfp::GFP_KERNEL;
use kmm_slab::{FastFree, KmemCache, SlabError, SlabFlags};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Create {
        size: usize,
        align: usize,
        flags: u8,
    },
    Alloc {
        cache: usize,
        cpu: usize,
    },
    /// `fast`: try `kmalloc_fast` first (then `kmalloc` if it declines).
    Kmalloc {
        size: usize,
        cpu: usize,
        fast: bool,
    },
    /// `fast`: try `kfree_fast` or `kfree_fast_split` first (then `kfree`
    /// if it declines).
    Free {
        which: usize,
        cpu: usize,
        fast: bool,
    },
    /// `kmem_cache_alloc_bulk` of `n` objects.
    AllocBulk {
        cache: usize,
        cpu: usize,
        n: usize,
    },
    /// `kmem_cache_free_bulk` of up to `n` live objects of the cache.
    FreeBulk {
        cache: usize,
        cpu: usize,
        n: usize,
    },
    Shrink {
        cache: usize,
    },
    Destroy {
        cache: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (1usize..=8192, prop::sample::select(vec![0usize, 8, 16, 64, 256]), 0u8..8)
            .prop_map(|(size, align, flags)| Op::Create { size, align, flags }),
        8 => (0usize..6, 0usize..2).prop_map(|(cache, cpu)| Op::Alloc { cache, cpu }),
        3 => (0usize..20000, 0usize..2, any::<bool>())
            .prop_map(|(size, cpu, fast)| Op::Kmalloc { size, cpu, fast }),
        8 => (any::<usize>(), 0usize..2, any::<bool>())
            .prop_map(|(which, cpu, fast)| Op::Free { which, cpu, fast }),
        2 => (0usize..6, 0usize..2, 0usize..40)
            .prop_map(|(cache, cpu, n)| Op::AllocBulk { cache, cpu, n }),
        2 => (0usize..6, 0usize..2, 0usize..40)
            .prop_map(|(cache, cpu, n)| Op::FreeBulk { cache, cpu, n }),
        1 => (0usize..6).prop_map(|cache| Op::Shrink { cache }),
        1 => (0usize..6).prop_map(|cache| Op::Destroy { cache }),
    ]
}

/// One live allocation in the model.
#[derive(Clone, Debug)]
struct Live {
    /// Index in `caches`, or `None` for kmalloc.
    cache: Option<usize>,
    size: usize,
    tag: u8,
}

fn stamp(p: NonNull<u8>, size: usize, tag: u8) {
    // SAFETY: `p` is a live allocation of at least `size` bytes.
    unsafe {
        p.as_ptr().write(tag);
        p.as_ptr().add(size - 1).write(tag);
    }
}

fn check_stamp(p: NonNull<u8>, size: usize, tag: u8) -> bool {
    // SAFETY: `p` is a live allocation of at least `size` bytes.
    unsafe { p.as_ptr().read() == tag && p.as_ptr().add(size - 1).read() == tag }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn slab_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops, false)?;
    }

    /// The same on CPUs the test's thread holds exclusively: the fast paths
    /// pop and push with plain stores, and the slots are closed from outside
    /// through the fence handshake (slabinfo, shrink, destroy, checks).
    #[test]
    fn slab_matches_model_on_exclusive_cpus(ops in prop::collection::vec(op(), 1..160)) {
        run(&ops, true)?;
    }
}

/// Runs `ops` against the model, checking after every step.
fn run(ops: &[Op], exclusive: bool) -> Result<(), TestCaseError> {
    let (m, cpus) = if exclusive { boot_sole(2) } else { boot(2) };
    let free0 = m.buddy_free();
    let mut caches: Vec<(KmemCache, bool)> = Vec::new();
    let mut live: BTreeMap<usize, (NonNull<u8>, Live)> = BTreeMap::new();
    let mut tag = 0u8;
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Create { size, align, flags } => {
                let mut f = SlabFlags::empty();
                if flags & 1 != 0 {
                    f |= SlabFlags::HWCACHE_ALIGN;
                }
                if flags & 2 != 0 {
                    f |= SlabFlags::POISON;
                }
                if flags & 4 != 0 {
                    f |= SlabFlags::RED_ZONE;
                }
                let c = m
                    .slab
                    .kmem_cache_create(&format!("c{i}"), size, align, f, None)
                    .unwrap();
                prop_assert!(c.size() >= size && c.size() % c.align() == 0);
                prop_assert!(align == 0 || c.align() >= align);
                caches.push((c, true));
            }
            Op::Alloc { cache, cpu } => {
                let Some((c, alive)) = caches.get(cache) else {
                    continue;
                };
                cpus.set_current(cpu).unwrap();
                let r = m.slab.kmem_cache_alloc(c, GFP_KERNEL);
                if !alive {
                    let destroyed = matches!(r, Err(SlabError::Destroyed { .. }));
                    prop_assert!(destroyed);
                    continue;
                }
                let p = r.unwrap();
                prop_assert_eq!(p.as_ptr().addr() % c.align(), 0);
                prop_assert_eq!(m.slab.cache_of(p), Some(c.name().to_string()));
                tag = tag.wrapping_add(1);
                stamp(p, c.object_size(), tag);
                let fresh = live
                    .insert(
                        p.as_ptr().addr(),
                        (
                            p,
                            Live {
                                cache: Some(cache),
                                size: c.object_size(),
                                tag,
                            },
                        ),
                    )
                    .is_none();
                prop_assert!(fresh);
            }
            Op::Kmalloc { size, cpu, fast } => {
                cpus.set_current(cpu).unwrap();
                let quick = if fast {
                    m.slab.kmalloc_fast(size, GFP_KERNEL)
                } else {
                    None
                };
                // Only the kmalloc caches' CPU freelists serve it.
                prop_assert!(quick.is_none() || (1..=8192).contains(&size));
                let p = match quick {
                    Some(p) => p,
                    None => m.slab.kmalloc(size, GFP_KERNEL).unwrap(),
                };
                if size == 0 {
                    continue;
                }
                prop_assert!(m.slab.ksize(p).unwrap() >= size);
                tag = tag.wrapping_add(1);
                stamp(p, size, tag);
                let fresh = live
                    .insert(
                        p.as_ptr().addr(),
                        (
                            p,
                            Live {
                                cache: None,
                                size,
                                tag,
                            },
                        ),
                    )
                    .is_none();
                prop_assert!(fresh);
            }
            Op::Free { which, cpu, fast } => {
                if live.is_empty() {
                    continue;
                }
                let key = *live.keys().nth(which % live.len()).unwrap();
                let (p, l) = live.remove(&key).unwrap();
                prop_assert!(check_stamp(p, l.size, l.tag), "object contents corrupted");
                cpus.set_current(cpu).unwrap();
                // The fast half alone, or split from the slab free it
                // leaves (an object of another slab of a kmalloc cache).
                let fast_done = fast
                    && if which % 3 == 0 {
                        m.slab.kfree_fast(p)
                    } else {
                        match m.slab.kfree_fast_split(p) {
                            FastFree::Freed => true,
                            FastFree::Slow(rest) => {
                                prop_assert!(l.cache.is_none() && l.size <= 8192);
                                m.slab.kfree_slow(rest).unwrap();
                                true
                            }
                            FastFree::Declined => false,
                        }
                    };
                if fast_done {
                    // Only objects of the kmalloc caches' slabs.
                    prop_assert!(l.cache.is_none() && l.size <= 8192);
                } else {
                    match l.cache {
                        // `kfree` takes cache objects too (through the slab's
                        // descriptor, where kmalloc objects' frames name their cache).
                        Some(c) if which % 2 == 0 => {
                            m.slab.kmem_cache_free(&caches[c].0, p).unwrap()
                        }
                        Some(_) | None => m.slab.kfree(Some(p)).unwrap(),
                    }
                }
            }
            Op::AllocBulk { cache, cpu, n } => {
                let Some((c, alive)) = caches.get(cache) else {
                    continue;
                };
                cpus.set_current(cpu).unwrap();
                let mut objs = vec![NonNull::dangling(); n];
                let r = m.slab.kmem_cache_alloc_bulk(c, GFP_KERNEL, &mut objs);
                if !alive {
                    let destroyed = matches!(r, Err(SlabError::Destroyed { .. }));
                    prop_assert!(destroyed);
                    continue;
                }
                r.unwrap();
                for p in objs {
                    prop_assert_eq!(p.as_ptr().addr() % c.align(), 0);
                    prop_assert_eq!(m.slab.cache_of(p), Some(c.name().to_string()));
                    tag = tag.wrapping_add(1);
                    stamp(p, c.object_size(), tag);
                    let l = Live {
                        cache: Some(cache),
                        size: c.object_size(),
                        tag,
                    };
                    prop_assert!(live.insert(p.as_ptr().addr(), (p, l)).is_none());
                }
            }
            Op::FreeBulk { cache, cpu, n } => {
                let Some((c, true)) = caches.get(cache) else {
                    continue;
                };
                let keys: Vec<usize> = live
                    .iter()
                    .filter(|(_, (_, l))| l.cache == Some(cache))
                    .map(|(&k, _)| k)
                    .take(n)
                    .collect();
                let mut objs = Vec::with_capacity(keys.len());
                for k in keys {
                    let (p, l) = live.remove(&k).unwrap();
                    prop_assert!(check_stamp(p, l.size, l.tag), "object contents corrupted");
                    objs.push(p);
                }
                cpus.set_current(cpu).unwrap();
                prop_assert!(m.slab.kmem_cache_free_bulk(c, &objs).is_ok());
            }
            Op::Shrink { cache } => {
                let Some((c, true)) = caches.get(cache) else {
                    continue;
                };
                let empty = m.slab.kmem_cache_shrink(c).unwrap();
                let has_live = live.values().any(|(_, l)| l.cache == Some(cache));
                prop_assert_eq!(empty, !has_live);
            }
            Op::Destroy { cache } => {
                let Some((c, alive)) = caches.get_mut(cache) else {
                    continue;
                };
                let n = live
                    .values()
                    .filter(|(_, l)| l.cache == Some(cache))
                    .count();
                let r = m.slab.kmem_cache_destroy(c);
                if !*alive {
                    let destroyed = matches!(r, Err(SlabError::Destroyed { .. }));
                    prop_assert!(destroyed);
                } else if n > 0 {
                    prop_assert_eq!(
                        r,
                        Err(SlabError::LiveObjects {
                            cache: c.name().into(),
                            count: n
                        })
                    );
                } else {
                    prop_assert_eq!(r, Ok(()));
                    *alive = false;
                }
            }
        }
        // No two live objects overlap.
        let mut end = 0usize;
        for (&a, (_, l)) in &live {
            prop_assert!(a >= end, "overlap at {a:#x}");
            end = a + l.size;
        }
        // slabinfo counts match the model, and its rows are self-consistent.
        let rows = m.slab.slabinfo_rows();
        for (idx, (c, alive)) in caches.iter().enumerate() {
            let row = rows.iter().find(|r| r.name == c.name());
            prop_assert_eq!(row.is_some(), *alive);
            if let Some(r) = row {
                let n = live.values().filter(|(_, l)| l.cache == Some(idx)).count();
                prop_assert_eq!(r.active_objs, n);
                prop_assert_eq!(r.num_objs, r.num_slabs * r.objperslab);
                prop_assert_eq!(r.pages, r.num_slabs * r.pagesperslab);
            }
        }
        let kmalloc_live = live
            .values()
            .filter(|(_, l)| l.cache.is_none() && l.size <= 8192)
            .count();
        let kmalloc_active: usize = rows
            .iter()
            .filter(|r| r.name.starts_with("kmalloc-"))
            .map(|r| r.active_objs)
            .sum();
        prop_assert_eq!(kmalloc_active, kmalloc_live);
        let large: usize = live
            .values()
            .filter(|(_, l)| l.cache.is_none() && l.size > 8192)
            .map(|(_, l)| l.size.div_ceil(4096).next_power_of_two())
            .sum();
        prop_assert_eq!(m.slab.large_kmalloc_pages(), large);
        let pages: usize = rows.iter().map(|r| r.pages).sum();
        prop_assert_eq!(m.slab.meminfo().slab_kb(), 4 * (pages + large) as u64);
        m.slab.check_invariants().map_err(TestCaseError::fail)?;
    }
    // Free everything, shrink: every page is back in the buddy.
    for (_, (p, l)) in core::mem::take(&mut live) {
        prop_assert!(check_stamp(p, l.size, l.tag));
        match l.cache {
            Some(c) => m.slab.kmem_cache_free(&caches[c].0, p).unwrap(),
            None => m.slab.kfree(Some(p)).unwrap(),
        }
    }
    m.slab.shrink_all();
    prop_assert_eq!(m.slab.slab_pages(), 0);
    prop_assert_eq!(m.slab.large_kmalloc_pages(), 0);
    m.slab.check_invariants().map_err(TestCaseError::fail)?;
    prop_assert_eq!(m.buddy_free(), free0);
    Ok(())
}
