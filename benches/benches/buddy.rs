//! Buddy benches: order-0 pairs with and without per-CPU lists, and mixed
//! orders 0–4 churn (steady random churn and bursts over a standing live set)
//! on `EagerBuddy`, `LazyBuddy` and `buddy_system_allocator`.

use std::hint::black_box;

use buddy_system_allocator::FrameAllocator;
use criterion::{Criterion, criterion_group, criterion_main};
use kmm_benches::{FRAMES, Rng, bare_buddy, zoned};
use kmm_buddy::{BuddyBackend, EagerBuddy, LazyBuddy};
use kmm_gfp::{GFP_KERNEL, MigrateType};
use kmm_page::Pfn;

/// Live blocks kept during churn: a quarter of memory at mean order 2.
const LIVE: usize = FRAMES / 16;

fn order0_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("buddy/order0_pair");
    let pcp_on = zoned::<EagerBuddy>(true);
    g.bench_function("zoned_pcp_on", |b| {
        b.iter(|| {
            let p = pcp_on.alloc_pages(black_box(GFP_KERNEL), 0).unwrap();
            pcp_on.free_pages(black_box(p), 0).unwrap();
        })
    });
    let pcp_off = zoned::<EagerBuddy>(false);
    g.bench_function("zoned_pcp_off", |b| {
        b.iter(|| {
            let p = pcp_off.alloc_pages(black_box(GFP_KERNEL), 0).unwrap();
            pcp_off.free_pages(black_box(p), 0).unwrap();
        })
    });
    let mut bare = bare_buddy::<EagerBuddy>();
    g.bench_function("bare_eager", |b| {
        b.iter(|| {
            let p = bare.alloc(black_box(0), MigrateType::Unmovable).unwrap();
            bare.free(black_box(p), 0).unwrap();
        })
    });
    let mut peer = FrameAllocator::<11>::new();
    peer.add_frame(0, FRAMES);
    g.bench_function("buddy_system_allocator", |b| {
        b.iter(|| {
            let p = peer.alloc(black_box(1)).unwrap();
            peer.dealloc(black_box(p), 1);
        })
    });
    g.finish();
}

/// One churn step: free a random live block, allocate one of a random order 0–4.
fn churn_kmm<B: BuddyBackend>(b: &mut B, live: &mut Vec<(Pfn, u32)>, rng: &mut Rng) {
    let i = rng.below(live.len());
    let (p, o) = live.swap_remove(i);
    b.free(p, o).unwrap();
    let order = rng.below(5) as u32;
    let p = b.alloc(order, MigrateType::Unmovable).unwrap();
    live.push((p, order));
}

fn prefill_kmm<B: BuddyBackend>(b: &mut B, rng: &mut Rng) -> Vec<(Pfn, u32)> {
    (0..LIVE)
        .map(|_| {
            let order = rng.below(5) as u32;
            (b.alloc(order, MigrateType::Unmovable).unwrap(), order)
        })
        .collect()
}

fn mixed_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("buddy/mixed_churn");
    let mut eager = bare_buddy::<EagerBuddy>();
    let mut rng = Rng::new();
    let mut live = prefill_kmm(&mut eager, &mut rng);
    g.bench_function("eager", |b| {
        b.iter(|| churn_kmm(&mut eager, &mut live, &mut rng))
    });

    let mut lazy = bare_buddy::<LazyBuddy>();
    let mut rng = Rng::new();
    let mut live = prefill_kmm(&mut lazy, &mut rng);
    g.bench_function("lazy", |b| {
        b.iter(|| churn_kmm(&mut lazy, &mut live, &mut rng))
    });

    let mut peer = FrameAllocator::<11>::new();
    peer.add_frame(0, FRAMES);
    let mut rng = Rng::new();
    let mut live: Vec<(usize, usize)> = (0..LIVE)
        .map(|_| {
            let n = 1 << rng.below(5);
            (peer.alloc(n).unwrap(), n)
        })
        .collect();
    g.bench_function("buddy_system_allocator", |b| {
        b.iter(|| {
            let i = rng.below(live.len());
            let (p, n) = live.swap_remove(i);
            peer.dealloc(p, n);
            let n = 1 << rng.below(5);
            live.push((peer.alloc(n).unwrap(), n));
        })
    });
    g.finish();
}

/// Blocks allocated and freed per burst.
const BURST: usize = 64;

/// One burst: allocate `BURST` blocks of random orders 0–4 on top of the
/// standing live set, then free them in a random order. This is the pattern
/// lazy coalescing is for: an eager buddy merges the freed blocks back and
/// splits them again for the next burst.
fn burst_kmm<B: BuddyBackend>(b: &mut B, burst: &mut Vec<(Pfn, u32)>, rng: &mut Rng) {
    for _ in 0..BURST {
        let order = rng.below(5) as u32;
        burst.push((b.alloc(order, MigrateType::Unmovable).unwrap(), order));
    }
    while !burst.is_empty() {
        let (p, o) = burst.swap_remove(rng.below(burst.len()));
        b.free(p, o).unwrap();
    }
}

fn burst_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("buddy/burst_churn");
    let mut eager = bare_buddy::<EagerBuddy>();
    let mut rng = Rng::new();
    let _standing = prefill_kmm(&mut eager, &mut rng);
    let mut burst = Vec::with_capacity(BURST);
    g.bench_function("eager", |b| {
        b.iter(|| burst_kmm(&mut eager, &mut burst, &mut rng))
    });

    let mut lazy = bare_buddy::<LazyBuddy>();
    let mut rng = Rng::new();
    let _standing = prefill_kmm(&mut lazy, &mut rng);
    g.bench_function("lazy", |b| {
        b.iter(|| burst_kmm(&mut lazy, &mut burst, &mut rng))
    });

    let mut peer = FrameAllocator::<11>::new();
    peer.add_frame(0, FRAMES);
    let mut rng = Rng::new();
    let _standing: Vec<usize> = (0..LIVE)
        .map(|_| peer.alloc(1 << rng.below(5)).unwrap())
        .collect();
    let mut burst: Vec<(usize, usize)> = Vec::with_capacity(BURST);
    g.bench_function("buddy_system_allocator", |b| {
        b.iter(|| {
            for _ in 0..BURST {
                let n = 1 << rng.below(5);
                burst.push((peer.alloc(n).unwrap(), n));
            }
            while !burst.is_empty() {
                let (p, n) = burst.swap_remove(rng.below(burst.len()));
                peer.dealloc(p, n);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, order0_pair, mixed_churn, burst_churn);
criterion_main!(benches);
