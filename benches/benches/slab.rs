//! Slab benches: the `kmem_cache` fast path, and a `LocalCache`'s, against a
//! bare `Vec` push/pop, kmalloc pairs across sizes against the system
//! allocator, batches of sixteen objects one by one and in bulk, and the
//! fast path on 1 and 2 threads (and on 2 threads of
//! separate machines, the host's own ceiling for two busy threads). kmm runs
//! two ways: on a CPU the thread may share (`HostCpus::bind`, compare-exchange fast paths) and
//! on a CPU it holds alone (`HostCpus::bind_exclusive`, plain loads and
//! stores).

#![expect(
    unsafe_code,
    reason = "the system allocator baseline is called through `GlobalAlloc`"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kmm_buddy::EagerBuddy;
use kmm_gfp::GFP_KERNEL;
use kmm_host::{HostCpus, HostMemory};
use kmm_percpu::CpuContext;
use kmm_slab::{SlabAllocator, SlabFlags};
use kmm_zone::{MachineLayout, ZonedAllocator, ZonedConfig};

/// The slab layer over concrete page and CPU types, as a kernel or a
/// program instantiates it: the seam calls inline.
type Slab = SlabAllocator<ZonedAllocator<EagerBuddy>, HostCpus>;

/// A 256 MiB x86-64 machine on host memory with `cpus` CPUs, and its slab layer.
fn machine(cpus: usize) -> (Arc<HostCpus>, Slab) {
    let layout = MachineLayout::x86_64(256 << 20);
    let mem = HostMemory::new(&layout.present_ranges(), layout.lowmem_end()).expect("host memory");
    let cfg = ZonedConfig {
        layout,
        pcp: true,
        min_free_kbytes: None,
    };
    let host_cpus = Arc::new(HostCpus::new(cpus));
    let ctx: Arc<dyn CpuContext> = host_cpus.clone();
    let pages =
        Arc::new(ZonedAllocator::<EagerBuddy>::new(cfg, ctx.clone(), Arc::new(mem)).expect("boot"));
    let slab = SlabAllocator::new(pages, host_cpus.clone()).expect("slab");
    (host_cpus, slab)
}

/// Binds the calling thread to CPU 1, alone or shared, and names the bench
/// of `what` in that mode.
fn bind_to_1<'c>(
    cpus: &'c HostCpus,
    exclusive: bool,
    what: &str,
) -> (kmm_host::CpuBinding<'c>, String) {
    if exclusive {
        (cpus.bind_exclusive(1).unwrap(), format!("{what}_exclusive"))
    } else {
        (cpus.bind(1).unwrap(), what.to_owned())
    }
}

fn cache_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("slab/cache_pair");
    let mut v: Vec<u64> = Vec::with_capacity(16);
    g.bench_function("vec_push_pop", |b| {
        b.iter(|| {
            // The popped value is returned as a plain `u64`: black-boxing the
            // `Option<u64>` itself costs a store-forwarding stall (two 8-byte
            // stores read back as one 16-byte load) that would triple the
            // baseline and flatter everything measured against it.
            v.push(black_box(7));
            v.pop().unwrap_or_default()
        })
    });
    let (cpus, slab) = machine(2);
    let cache = slab
        .kmem_cache_create("bench-64", 64, 0, SlabFlags::empty(), None)
        .unwrap();
    for exclusive in [false, true] {
        let (_bound, name) = bind_to_1(&cpus, exclusive, "kmem_cache");
        g.bench_function(name, |b| {
            b.iter(|| {
                let p = slab.kmem_cache_alloc(&cache, GFP_KERNEL).unwrap();
                slab.kmem_cache_free(&cache, black_box(p)).unwrap();
            })
        });
    }
    // The same pair on a slab the caller holds (`LocalCache`): no CPU to
    // find, no atomic, every check kept.
    let mut local = slab.local_cache(&cache).unwrap();
    g.bench_function("local_cache", |b| {
        b.iter(|| {
            let p = local.alloc(GFP_KERNEL).unwrap();
            local.free(black_box(p)).unwrap();
        })
    });
    g.finish();
}

fn kmalloc_sizes(c: &mut Criterion) {
    let (cpus, slab) = machine(2);
    for size in [8usize, 64, 100, 512, 2048, 8192] {
        let mut g = c.benchmark_group(format!("kmalloc/size_{size}"));
        g.bench_function("system", |b| {
            b.iter(|| {
                // Both sides get the size through `black_box` only (a
                // black-boxed `Layout` would cost the system side a
                // store-forwarding stall).
                // SAFETY: the size is non-zero and 8 is a power of two; the
                // pointer is freed with the same layout right away.
                unsafe {
                    let layout = Layout::from_size_align_unchecked(black_box(size), 8);
                    let p = System.alloc(layout);
                    System.dealloc(black_box(p), layout);
                }
            })
        });
        for exclusive in [false, true] {
            let (_bound, name) = bind_to_1(&cpus, exclusive, "kmalloc");
            g.bench_function(name, |b| {
                b.iter(|| {
                    let p = slab.kmalloc(black_box(size), GFP_KERNEL).unwrap();
                    slab.kfree(Some(black_box(p))).unwrap();
                })
            });
        }
        g.finish();
    }
}

/// Objects per batch in the `slab/bulk_16` group.
const BATCH: usize = 16;

/// A batch of 64-byte objects allocated and freed: with `kmem_cache_alloc`
/// and `kmem_cache_free` one by one, and with `kmem_cache_alloc_bulk` and
/// `kmem_cache_free_bulk`, on a shared and on an exclusive CPU.
fn bulk(c: &mut Criterion) {
    let (cpus, slab) = machine(2);
    let cache = slab
        .kmem_cache_create("bench-bulk", 64, 0, SlabFlags::empty(), None)
        .unwrap();
    let mut g = c.benchmark_group(format!("slab/bulk_{BATCH}"));
    for exclusive in [false, true] {
        let (_bound, one_by_one) = bind_to_1(&cpus, exclusive, "one_by_one");
        let mut objs = [core::ptr::NonNull::dangling(); BATCH];
        g.bench_function(one_by_one, |b| {
            b.iter(|| {
                for o in objs.iter_mut() {
                    *o = slab.kmem_cache_alloc(&cache, GFP_KERNEL).unwrap();
                }
                for &o in black_box(&objs) {
                    slab.kmem_cache_free(&cache, o).unwrap();
                }
            })
        });
        let name = if exclusive { "bulk_exclusive" } else { "bulk" };
        g.bench_function(name, |b| {
            b.iter(|| {
                slab.kmem_cache_alloc_bulk(&cache, GFP_KERNEL, &mut objs)
                    .unwrap();
                slab.kmem_cache_free_bulk(&cache, black_box(&objs)).unwrap();
            })
        });
    }
    g.finish();
}

/// `iters` cache pairs on each of `threads` threads, each holding its own
/// CPU alone; the time until all are done. The threads share one cache of
/// one machine (CPUs 1 and up), or, with `alone`, each runs on a machine
/// of its own (CPU 1 of it), so that nothing of kmm is shared: what the
/// host itself allows two busy threads, the ceiling for the shared run.
fn threaded_pairs(threads: usize, iters: u64, alone: bool) -> Duration {
    let shared = (!alone).then(|| {
        let (cpus, slab) = machine(threads + 1);
        let cache = slab
            .kmem_cache_create("bench-threads", 64, 0, SlabFlags::empty(), None)
            .unwrap();
        (cpus, Arc::new(slab), cache)
    });
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (cpus, slab, cache, cpu) = match &shared {
                Some((cpus, slab, cache)) => (cpus.clone(), slab.clone(), cache.clone(), i + 1),
                None => {
                    let (cpus, slab) = machine(2);
                    let cache = slab
                        .kmem_cache_create("bench-alone", 64, 0, SlabFlags::empty(), None)
                        .unwrap();
                    (cpus, Arc::new(slab), cache, 1)
                }
            };
            let start = start.clone();
            std::thread::spawn(move || {
                let _bound = cpus.bind_exclusive(cpu).unwrap();
                start.wait();
                for _ in 0..iters {
                    let p = slab.kmem_cache_alloc(&cache, GFP_KERNEL).unwrap();
                    slab.kmem_cache_free(&cache, black_box(p)).unwrap();
                }
            })
        })
        .collect();
    let t = Instant::now();
    start.wait();
    for h in handles {
        h.join().unwrap();
    }
    t.elapsed()
}

fn threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("slab/threads");
    // Time per pair per thread: with perfect scaling all three are equal.
    g.bench_function("1_thread", |b| {
        b.iter_custom(|iters| threaded_pairs(1, iters, false))
    });
    g.bench_function("2_threads", |b| {
        b.iter_custom(|iters| threaded_pairs(2, iters, false))
    });
    g.bench_function("2_threads_sharing_nothing", |b| {
        b.iter_custom(|iters| threaded_pairs(2, iters, true))
    });
    g.finish();
}

criterion_group!(benches, cache_pair, kmalloc_sizes, bulk, threads);
criterion_main!(benches);
