//! Threads on different CPUs: one allocates and fills, the other checks and
//! frees (remote frees to slabs frozen on the first CPU), both ways at once.
//! Threads sharing one CPU: their lockless pops and pushes race on the same
//! CPU freelist while another thread keeps flushing it. Threads holding
//! their CPUs exclusively (plain loads and stores on the fast path) while
//! another thread keeps closing their slots from outside.

mod common;

use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use common::{Machine, SendPtr, boot_host};
use kmm_gfp::GFP_KERNEL;
use kmm_slab::{KmemCache, SlabFlags};

const ROUNDS: usize = 20_000;

fn fill(p: SendPtr, size: usize, seed: usize) {
    // SAFETY: `p` is a live allocation of `size` bytes owned by this thread now.
    let s = unsafe { core::slice::from_raw_parts_mut(p.0.as_ptr(), size) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = (seed.wrapping_mul(31).wrapping_add(i)) as u8;
    }
}

fn verify(p: SendPtr, size: usize, seed: usize) -> bool {
    // SAFETY: `p` is a live allocation of `size` bytes owned by this thread now.
    let s = unsafe { core::slice::from_raw_parts(p.0.as_ptr(), size) };
    s.iter()
        .enumerate()
        .all(|(i, &b)| b == (seed.wrapping_mul(31).wrapping_add(i)) as u8)
}

/// A live object of a churning worker: where, its fill seed, and whether
/// it came from the cache (else from kmalloc).
type Live = (SendPtr, usize, bool);

/// One worker's churn: `ops` steps keeping up to 64 live objects of `size`
/// bytes, each filled when allocated and checked when freed, freed in a
/// scrambled order; every other allocation comes from kmalloc when `mix`.
/// `worker` tells workers' seeds and rhythms apart. Returns what is live.
fn churn(
    m: &Machine,
    cache: &KmemCache,
    size: usize,
    ops: usize,
    worker: usize,
    mix: bool,
) -> Vec<Live> {
    let mut live: Vec<Live> = Vec::new();
    for i in 0..ops {
        let seed = worker * 10_000_000 + i;
        if live.len() < 64 && !(i * 7 + worker).is_multiple_of(3) {
            let from_cache = !mix || i % 2 == 0;
            let p = if from_cache {
                m.slab.kmem_cache_alloc(cache, GFP_KERNEL).unwrap()
            } else {
                m.slab.kmalloc(size, GFP_KERNEL).unwrap()
            };
            fill(SendPtr(p), size, seed);
            live.push((SendPtr(p), seed, from_cache));
        } else if !live.is_empty() {
            let object = live.swap_remove((i * 31) % live.len());
            give_back(m, cache, size, object);
        }
    }
    live
}

/// Checks a churned object's contents and frees it the way it was allocated.
fn give_back(m: &Machine, cache: &KmemCache, size: usize, (p, seed, from_cache): Live) {
    assert!(verify(p, size, seed), "object corrupted");
    if from_cache {
        m.slab.kmem_cache_free(cache, p.0).unwrap();
    } else {
        m.slab.kfree(Some(p.0)).unwrap();
    }
}

#[test]
fn alloc_on_one_cpu_free_on_another() {
    alloc_here_free_there(false);
}

/// The same between two CPUs their threads hold exclusively: each frees the
/// other's objects (remote frees to slabs frozen on the other CPU) while its
/// own fast paths use plain stores.
#[test]
fn alloc_on_one_exclusive_cpu_free_on_another() {
    alloc_here_free_there(true);
}

/// Two threads, each allocating and filling objects that the other checks
/// and frees; on CPUs 0 and 1 shared, or 1 and 2 held exclusively.
fn alloc_here_free_there(exclusive: bool) {
    let (m, cpus) = boot_host(3);
    let free0 = m.buddy_free();
    let cache = m
        .slab
        .kmem_cache_create("stress", 72, 0, SlabFlags::empty(), None)
        .unwrap();
    let (to1, from0) = mpsc::sync_channel::<(SendPtr, usize, usize, bool)>(256);
    let (to0, from1) = mpsc::sync_channel::<(SendPtr, usize, usize, bool)>(256);
    thread::scope(|s| {
        for (cpu, tx, rx) in [(0usize, to1, from1), (1, to0, from0)] {
            let (m, cpus, cache) = (&m, &cpus, &cache);
            s.spawn(move || {
                let _bind = if exclusive {
                    cpus.bind_exclusive(cpu + 1).unwrap()
                } else {
                    cpus.bind(cpu).unwrap()
                };
                let mut sent = 0;
                let mut got = 0;
                while sent < ROUNDS || got < ROUNDS {
                    if sent < ROUNDS {
                        let seed = cpu * 1_000_000 + sent;
                        let (p, size, from_cache) = if sent % 2 == 0 {
                            (
                                m.slab.kmem_cache_alloc(cache, GFP_KERNEL).unwrap(),
                                72,
                                true,
                            )
                        } else {
                            let size = 1 + (seed * 7919) % 3000;
                            (m.slab.kmalloc(size, GFP_KERNEL).unwrap(), size, false)
                        };
                        fill(SendPtr(p), size, seed);
                        tx.send((SendPtr(p), size, seed, from_cache)).unwrap();
                        sent += 1;
                    }
                    while let Ok((p, size, seed, from_cache)) = if sent < ROUNDS {
                        rx.try_recv().map_err(|_| ())
                    } else {
                        rx.recv().map_err(|_| ())
                    } {
                        assert!(verify(p, size, seed), "object corrupted");
                        if from_cache {
                            m.slab.kmem_cache_free(cache, p.0).unwrap();
                        } else {
                            m.slab.kfree(Some(p.0)).unwrap();
                        }
                        got += 1;
                        if got == ROUNDS {
                            break;
                        }
                    }
                }
            });
        }
    });
    m.slab.check_invariants().unwrap();
    let row = m
        .slab
        .slabinfo_rows()
        .into_iter()
        .find(|r| r.name == "stress")
        .unwrap();
    assert_eq!(row.active_objs, 0);
    assert_eq!(m.slab.kmem_cache_shrink(&cache), Ok(true));
    m.assert_all_pages_back(free0);
}

#[test]
fn threads_sharing_a_cpu_race_on_its_freelist() {
    const THREADS: usize = 3;
    const OPS: usize = 200_000;
    let (m, cpus) = boot_host(2);
    let free0 = m.buddy_free();
    let cache = m
        .slab
        .kmem_cache_create("shared", 48, 0, SlabFlags::empty(), None)
        .unwrap();
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let (m, cpus, cache, done) = (&m, &cpus, &cache, &done);
        // The flusher closes every CPU slot over and over (shrink, slabinfo),
        // so the fast paths keep meeting a slot that changed under them.
        s.spawn(move || {
            let _bind = cpus.bind(1).unwrap();
            while !done.load(Ordering::Relaxed) {
                m.slab.kmem_cache_shrink(cache).unwrap();
                assert!(m.slab.slabinfo().contains("shared"));
                thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let _bind = cpus.bind(0).unwrap();
                    churn(m, cache, 48, OPS, t, false)
                })
            })
            .collect();
        // Each worker's leftovers are freed by the next worker's thread, so
        // frees of objects another thread allocated on the same CPU happen too.
        let joined: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        // Stop the flusher before a worker's panic is passed on.
        done.store(true, Ordering::Relaxed);
        for live in joined {
            let live = live.unwrap_or_else(|e| std::panic::resume_unwind(e));
            for object in live {
                give_back(m, cache, 48, object);
            }
        }
    });
    m.slab.check_invariants().unwrap();
    assert_eq!(m.slab.kmem_cache_shrink(&cache), Ok(true));
    m.slab.kmem_cache_destroy(&cache).unwrap();
    m.assert_all_pages_back(free0);
}

#[test]
fn exclusive_owners_meet_a_flusher_from_outside() {
    const OPS: usize = 300_000;
    let (m, cpus) = boot_host(3);
    let free0 = m.buddy_free();
    let cache = m
        .slab
        .kmem_cache_create("owned", 40, 0, SlabFlags::empty(), None)
        .unwrap();
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let (m, cpus, cache, done) = (&m, &cpus, &cache, &done);
        // The flusher runs as CPU 0 and closes the owners' slots over and
        // over (shrink, slabinfo), each time through the fence handshake.
        s.spawn(move || {
            while !done.load(Ordering::Relaxed) {
                m.slab.kmem_cache_shrink(cache).unwrap();
                assert!(m.slab.slabinfo().contains("owned"));
            }
        });
        let workers: Vec<_> = (1..3)
            .map(|cpu| {
                s.spawn(move || {
                    let bind = cpus.bind_exclusive(cpu).unwrap();
                    assert!(bind.is_exclusive());
                    // Half from the cache, half from kmalloc-64.
                    churn(m, cache, 40, OPS, cpu, true)
                })
            })
            .collect();
        let joined: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        done.store(true, Ordering::Relaxed);
        for live in joined {
            let live = live.unwrap_or_else(|e| std::panic::resume_unwind(e));
            for object in live {
                give_back(m, cache, 40, object);
            }
        }
    });
    m.slab.check_invariants().unwrap();
    assert_eq!(m.slab.kmem_cache_shrink(&cache), Ok(true));
    m.slab.kmem_cache_destroy(&cache).unwrap();
    m.assert_all_pages_back(free0);
}
