//! The per-CPU allocator against a model (a `BTreeMap` of live allocations
//! with each CPU's first word), and with real threads each updating its own
//! CPU's copy while another allocates and frees.

use std::collections::BTreeMap;
use std::sync::Barrier;
use std::thread;

use kmm_percpu::{FixedCpu, HeapChunks, PercpuAllocator, PercpuError, PercpuPtr};
use proptest::prelude::*;

const NR_CPUS: usize = 3;

/// One live allocation in the model.
#[derive(Clone, Debug)]
struct Live {
    size: usize,
    align: usize,
    /// The first `u32` of each CPU's copy.
    words: [u32; NR_CPUS],
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_shift: u32,
    },
    Free(usize),
    FreeStale(usize),
    Write {
        which: usize,
        cpu: usize,
        value: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop_oneof![1usize..64, 64usize..4096, 4096usize..=32768], 0u32..=12)
            .prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        3 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::FreeStale),
        2 => (any::<usize>(), 0..NR_CPUS, any::<u32>())
            .prop_map(|(which, cpu, value)| Op::Write { which, cpu, value }),
    ]
}

/// Checks the allocator against the model: invariants, per-CPU addresses,
/// contents, alignment, no overlap, and the maps' bits for every allocation.
fn check(pcpu: &PercpuAllocator<HeapChunks>, model: &BTreeMap<PercpuPtr, Live>) {
    pcpu.check_invariants().unwrap();
    let unit = pcpu.unit_size();
    let chunks = pcpu.chunks_info();
    let mut end_of_last = 0;
    let mut used_bits = 0;
    for (&p, live) in model {
        let rounded = live.size.next_multiple_of(4);
        assert!(
            p.addr() >= end_of_last,
            "{p:?} overlaps the allocation before"
        );
        end_of_last = p.addr() + rounded;
        used_bits += rounded / 4;
        for cpu in 0..NR_CPUS {
            let ptr = pcpu.per_cpu_ptr(p, cpu).unwrap().as_ptr() as usize;
            assert_eq!(ptr, p.addr() + cpu * unit);
            assert_eq!(ptr % live.align, 0);
            assert_eq!(pcpu.per_cpu_read::<u32>(p, cpu), Ok(live.words[cpu]));
        }
        let chunk = chunks
            .iter()
            .find(|c| p.addr() >= c.base && p.addr() < c.base + unit)
            .unwrap();
        let (start, end) = (
            (p.addr() - chunk.base) / 4,
            (p.addr() - chunk.base + rounded) / 4,
        );
        assert!(chunk.alloc_map.all_in(start..end));
        assert_eq!(
            (chunk.bound_map.get(start), chunk.bound_map.get(end)),
            (Some(true), Some(true))
        );
        assert!(chunk.bound_map.none_in(start + 1..end));
    }
    let hidden: usize = chunks
        .iter()
        .map(|c| (c.start_offset + c.end_offset) / 4)
        .sum();
    let ones: usize = chunks.iter().map(|c| c.alloc_map.count_ones()).sum();
    assert_eq!(ones, hidden + used_bits);
    assert_eq!(
        chunks.iter().map(|c| c.nr_alloc).sum::<usize>(),
        model.len()
    );
    for c in &chunks {
        assert_eq!(c.free_bytes, 4 * c.alloc_map.count_zeros());
    }
}

/// The model's `which`-th live allocation, if any.
fn nth(model: &BTreeMap<PercpuPtr, Live>, which: usize) -> Option<PercpuPtr> {
    (!model.is_empty()).then(|| *model.keys().nth(which % model.len()).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::with_cases(if cfg!(miri) { 3 } else { 96 })
    })]

    #[test]
    fn matches_a_model_of_live_allocations(
        ops in proptest::collection::vec(op(), 0..if cfg!(miri) { 12 } else { 60 }),
    ) {
        let pcpu = PercpuAllocator::new(HeapChunks, NR_CPUS, 40).unwrap();
        let mut model: BTreeMap<PercpuPtr, Live> = BTreeMap::new();
        let mut freed: Vec<PercpuPtr> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { size, align_shift } => {
                    let align = 1 << align_shift;
                    let p = pcpu.alloc(size, align).unwrap();
                    prop_assert!(!model.contains_key(&p));
                    freed.retain(|&f| f != p);
                    model.insert(p, Live { size, align, words: [0; NR_CPUS] });
                }
                Op::Free(which) => {
                    if let Some(p) = nth(&model, which) {
                        pcpu.free_percpu(p).unwrap();
                        model.remove(&p);
                        freed.push(p);
                    }
                }
                Op::FreeStale(which) => {
                    if !freed.is_empty() {
                        let p = freed[which % freed.len()];
                        let before = (pcpu.chunks_info(), pcpu.nr_pages());
                        let err = pcpu.free_percpu(p).unwrap_err();
                        // The chunk may have been given back since.
                        let refused = matches!(
                            err,
                            PercpuError::NotAllocated { .. } | PercpuError::Foreign { .. }
                        );
                        prop_assert!(refused, "unexpected error {:?}", err);
                        prop_assert_eq!(before, (pcpu.chunks_info(), pcpu.nr_pages()));
                    }
                }
                Op::Write { which, cpu, value } => {
                    if let Some(p) = nth(&model, which) {
                        pcpu.per_cpu_write::<u32>(p, cpu, value).unwrap();
                        model.get_mut(&p).unwrap().words[cpu] = value;
                    }
                }
            }
            check(&pcpu, &model);
        }
        for &p in model.keys() {
            pcpu.free_percpu(p).unwrap();
        }
        check(&pcpu, &BTreeMap::new());
        for c in pcpu.chunks_info() {
            if c.first {
                prop_assert_eq!(c.alloc_map.count_ones(), (c.start_offset + c.end_offset) / 4);
            } else {
                prop_assert_eq!(c.alloc_map.count_ones(), 0);
            }
        }
        prop_assert!(pcpu.nr_chunks() <= 2);
    }
}

/// Iterations per thread; Miri is slow, so it gets fewer.
const ROUNDS: u64 = if cfg!(miri) { 10 } else { 2000 };

#[test]
fn threads_update_their_own_copies_while_another_allocates() {
    let pcpu = PercpuAllocator::new(HeapChunks, 2, 0).unwrap();
    let counter = pcpu.alloc_percpu::<u64>().unwrap();
    let start = Barrier::new(3);
    thread::scope(|s| {
        for cpu in 0..2 {
            let (pcpu, start) = (&pcpu, &start);
            s.spawn(move || {
                let ctx = FixedCpu::new(2);
                ctx.set_current(cpu).unwrap();
                start.wait();
                for _ in 0..ROUNDS * (cpu as u64 + 1) {
                    pcpu.this_cpu_inc::<u64>(counter, &ctx).unwrap();
                }
                assert_eq!(ctx.preempt_count(), 0);
            });
        }
        s.spawn(|| {
            start.wait();
            // Churn that makes and gives back chunks next to the counters.
            for round in 0..ROUNDS / 10 + 1 {
                let a = pcpu.alloc(32 * 1024, 8).unwrap();
                let b = pcpu.alloc(100, 4).unwrap();
                pcpu.per_cpu_write::<u32>(b, 1, round as u32).unwrap();
                pcpu.free_percpu(a).unwrap();
                pcpu.free_percpu(b).unwrap();
            }
        });
    });
    assert_eq!(pcpu.per_cpu_read::<u64>(counter, 0), Ok(ROUNDS));
    assert_eq!(pcpu.per_cpu_read::<u64>(counter, 1), Ok(2 * ROUNDS));
    assert_eq!(pcpu.per_cpu_sum::<u64>(counter), Ok(3 * ROUNDS));
    pcpu.check_invariants().unwrap();
}

#[test]
fn threads_sharing_a_cpu_lose_no_updates() {
    let pcpu = PercpuAllocator::new(HeapChunks, 2, 0).unwrap();
    let counter = pcpu.alloc_percpu::<u32>().unwrap();
    let ctx = FixedCpu::new(2);
    ctx.set_current(1).unwrap();
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    pcpu.this_cpu_add(counter, &ctx, 1u32).unwrap();
                }
            });
        }
    });
    assert_eq!(pcpu.per_cpu_read::<u32>(counter, 1), Ok(2 * ROUNDS as u32));
    assert_eq!(pcpu.per_cpu_read::<u32>(counter, 0), Ok(0));
    assert_eq!(ctx.preempt_count(), 0);
}
