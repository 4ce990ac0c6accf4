//! Eager and lazy buddies behind the whole page allocator: the same random
//! sequence of requests on both, invariants after every step, and after
//! everything is freed and drained, `/proc/buddyinfo` identical for both
//! backends and equal to what it was right after boot.

use kmm::{
    Backing, BuddyBackend, EagerBuddy, GFP_ATOMIC, GFP_DMA, GFP_HIGHUSER_MOVABLE, GFP_KERNEL,
    LazyBuddy, MachineConfig, MemoryManager, MemorySpec, Pfn, PfnRange,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc { gfp: usize, order: u32 },
    Free { which: usize },
    Cpu(usize),
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..4usize, 0..=6u32).prop_map(|(gfp, order)| Op::Alloc { gfp, order }),
        4 => any::<usize>().prop_map(|which| Op::Free { which }),
        1 => (0..2usize).prop_map(Op::Cpu),
        1 => Just(Op::Drain),
    ]
}

fn config(holes: bool) -> MachineConfig {
    let memory = if holes {
        // Two banks with a hole: DMA (the first 16 MiB) and part of DMA32.
        MemorySpec::Ranges(vec![
            PfnRange::new(0, 3000),
            PfnRange::new(3100, 4096),
            PfnRange::new(5000, 9000),
        ])
    } else {
        MemorySpec::Size(48 << 20)
    };
    MachineConfig {
        memory,
        backing: Backing::NoMemory,
        ..MachineConfig::default()
    }
}

/// Runs `ops`, checking invariants after each, then frees everything and
/// drains; returns buddyinfo at boot and at the end.
fn run<B: BuddyBackend>(ops: &[Op], holes: bool) -> (String, String) {
    let mm: MemoryManager<B> = MemoryManager::boot(config(holes)).unwrap();
    let boot = mm.proc("/proc/buddyinfo").unwrap();
    let gfps = [GFP_KERNEL, GFP_DMA, GFP_ATOMIC, GFP_HIGHUSER_MOVABLE];
    let mut live: Vec<(Pfn, u32)> = Vec::new();
    for op in ops {
        match *op {
            Op::Alloc { gfp, order } => {
                if let Ok(p) = mm.alloc_pages(gfps[gfp], order) {
                    assert!(
                        live.iter()
                            .all(|&(q, o)| p.0 + (1 << order) <= q.0 || q.0 + (1 << o) <= p.0),
                        "overlap"
                    );
                    live.push((p, order));
                }
            }
            Op::Free { which } if !live.is_empty() => {
                let (p, o) = live.swap_remove(which % live.len());
                mm.free_pages(p, o).unwrap();
            }
            Op::Free { .. } => {}
            Op::Cpu(c) => mm.set_cpu(c).unwrap(),
            Op::Drain => mm.drain_all_pages(),
        }
        mm.check_invariants().unwrap();
    }
    for (p, o) in live {
        mm.free_pages(p, o).unwrap();
    }
    mm.drain_all_pages();
    mm.check_invariants().unwrap();
    (boot, mm.proc("/proc/buddyinfo").unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn both_backends_return_to_the_boot_state(ops in prop::collection::vec(op(), 1..150), holes in any::<bool>()) {
        let (eager_boot, eager_end) = run::<EagerBuddy>(&ops, holes);
        let (lazy_boot, lazy_end) = run::<LazyBuddy>(&ops, holes);
        prop_assert_eq!(&eager_boot, &lazy_boot);
        prop_assert_eq!(&eager_end, &eager_boot);
        prop_assert_eq!(&lazy_end, &lazy_boot);
    }
}
