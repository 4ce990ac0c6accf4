//! Kernel virtual memory benches: vmalloc+vfree of 1, 16 and 256 pages on
//! the software and the host MMU, kmap+kunmap of a page that stays mapped,
//! a kmap_atomic pair, per-CPU counters (`PerCpu`, `alloc_percpu` and the
//! batching `PercpuCounter`) against one shared `AtomicU64` with two
//! threads, and kmalloc against vmalloc through the facade for the same
//! sizes.

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kmm::{
    Arch, Backing, EagerBuddy, GFP_HIGHUSER, GFP_KERNEL, MachineConfig, MemoryManager, MemorySpec,
    PAGE_SIZE,
};
use kmm_host::HostCpus;
use kmm_percpu::{FixedCpu, HeapChunks, PerCpu, PercpuAllocator, PercpuCounter};

/// A machine of `bytes` on the buddy named here (benches name the backend).
fn machine(arch: Arch, bytes: u64, backing: Backing) -> MemoryManager<EagerBuddy> {
    MemoryManager::boot(MachineConfig {
        arch,
        memory: MemorySpec::Size(bytes),
        backing,
        ..MachineConfig::default()
    })
    .unwrap()
}

fn vmalloc_pairs(c: &mut Criterion) {
    let soft = machine(Arch::X86_64, 256 << 20, Backing::NoMemory);
    let host = machine(Arch::X86_64, 256 << 20, Backing::Host);
    for pages in [1usize, 16, 256] {
        let mut g = c.benchmark_group(format!("vmalloc/pages_{pages}"));
        for (name, mm) in [("soft_mmu", &soft), ("host_mmu", &host)] {
            g.bench_function(name, |b| {
                b.iter(|| {
                    let a = mm
                        .vmalloc(black_box(pages * PAGE_SIZE), GFP_KERNEL)
                        .unwrap();
                    mm.vfree(black_box(a)).unwrap();
                })
            });
        }
        g.finish();
    }
}

fn highmem(c: &mut Criterion) {
    // Without memory behind the frames every frame needs a slot.
    let mm = machine(Arch::X86_32, 2 << 30, Backing::NoMemory);
    let pfn = mm.alloc_pages(GFP_HIGHUSER, 0).unwrap();
    let hm = mm.highmem();
    let mut g = c.benchmark_group("highmem/kmap_cached");
    // Another holder keeps the page mapped, so every kmap finds its slot.
    let holder = hm.kmap(pfn).unwrap();
    g.bench_function("soft_mmu", |b| {
        b.iter(|| {
            let map = hm.kmap(black_box(pfn)).unwrap();
            black_box(map.addr());
        })
    });
    drop(holder);
    g.finish();
    let mut g = c.benchmark_group("highmem/kmap_atomic_pair");
    g.bench_function("soft_mmu", |b| {
        b.iter(|| {
            let map = hm.kmap_atomic(black_box(pfn)).unwrap();
            black_box(map.addr());
        })
    });
    g.finish();
}

/// Runs `work(thread, n)` on two threads at once and returns the time the
/// slower one took, from a common start.
fn two_threads(iters: u64, work: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let start = Barrier::new(2);
    thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    work(t, iters);
                    t0.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn percpu_counter(c: &mut Criterion) {
    let mut g = c.benchmark_group("percpu/counter_2_threads");
    let counter: PerCpu<u64> = PerCpu::new(2, |_| 0);
    let cpus = [FixedCpu::new(2), FixedCpu::new(2)];
    cpus[1].set_current(1).unwrap();
    g.bench_function("percpu", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, n| {
                for _ in 0..n {
                    counter.this_cpu_add(&cpus[t], black_box(1)).unwrap();
                }
            })
        })
    });
    let dynamic = PercpuAllocator::new(HeapChunks, 2, 0).unwrap();
    let ptr = dynamic.alloc_percpu::<u64>().unwrap();
    g.bench_function("percpu_dynamic", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, n| {
                for _ in 0..n {
                    dynamic
                        .this_cpu_add(ptr, &cpus[t], black_box(1u64))
                        .unwrap();
                }
            })
        })
    });
    // `lib/percpu_counter.c`'s counter: each thread's CPU of its own
    // `FixedCpu` (a compare-exchange of the CPU's delta), then each thread
    // bound alone to a host CPU (a plain store, as the kernel's `this_cpu_add`).
    let batching = PercpuCounter::new(2, 0);
    g.bench_function("percpu_counter", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, n| {
                for _ in 0..n {
                    batching.add(&cpus[t], black_box(1)).unwrap();
                }
            })
        })
    });
    let host = HostCpus::new(3);
    let exclusive = PercpuCounter::new(3, 0);
    g.bench_function("percpu_counter_exclusive", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, n| {
                let _bind = host.bind_exclusive(t + 1).unwrap();
                for _ in 0..n {
                    exclusive.add(&host, black_box(1)).unwrap();
                }
            })
        })
    });
    let shared = AtomicU64::new(0);
    g.bench_function("atomic_u64", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|_, n| {
                for _ in 0..n {
                    shared.fetch_add(black_box(1), Ordering::Relaxed);
                }
            })
        })
    });
    g.finish();
    black_box((counter.sum(), shared.load(Ordering::Relaxed)));
    black_box((batching.sum(), exclusive.sum()));
}

/// The kernel's choice between physically and virtually contiguous memory:
/// a kmalloc+kfree pair against a vmalloc+vfree pair of the same size, on
/// host memory through the facade.
fn kmalloc_vs_vmalloc(c: &mut Criterion) {
    let mm = machine(Arch::X86_64, 256 << 20, Backing::Host);
    for size in [PAGE_SIZE, 16 * PAGE_SIZE, 256 * PAGE_SIZE] {
        let mut g = c.benchmark_group(format!("contiguous/bytes_{size}"));
        g.bench_function("kmalloc", |b| {
            b.iter(|| {
                let p = mm.kmalloc(black_box(size), GFP_KERNEL).unwrap();
                mm.kfree(Some(black_box(p))).unwrap();
            })
        });
        g.bench_function("vmalloc", |b| {
            b.iter(|| {
                let a = mm.vmalloc(black_box(size), GFP_KERNEL).unwrap();
                mm.vfree(black_box(a)).unwrap();
            })
        });
        g.finish();
    }
}

criterion_group!(
    benches,
    vmalloc_pairs,
    highmem,
    percpu_counter,
    kmalloc_vs_vmalloc
);
criterion_main!(benches);
