//! `PercpuCounter` against a model (one exact total), and with real threads
//! adding on their own CPUs and on a shared one.

use core::cmp::Ordering;
use std::sync::Barrier;
use std::thread;

use kmm_percpu::{FixedCpu, PerCpuError, PercpuCounter};
use proptest::prelude::*;

const NR_CPUS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// `add` on a CPU (one beyond the machine is refused).
    Add {
        cpu: usize,
        amount: i64,
    },
    /// `add_batch` with its own batch (0 and below fold every add).
    AddBatch {
        cpu: usize,
        amount: i64,
        batch: i32,
    },
    Set(i64),
    FoldCpu(usize),
    Compare(i64),
}

fn op() -> impl Strategy<Value = Op> {
    // Amounts mostly small, so that deltas build up; sometimes past any batch.
    let amount = prop_oneof![6 => -40i64..40, 1 => any::<i64>()];
    prop_oneof![
        8 => (0..=NR_CPUS, amount.clone()).prop_map(|(cpu, amount)| Op::Add { cpu, amount }),
        3 => (0..NR_CPUS, amount, -2i32..80).prop_map(|(cpu, amount, batch)| Op::AddBatch {
            cpu,
            amount,
            batch,
        }),
        1 => (-1000i64..1000).prop_map(Op::Set),
        1 => (0..=NR_CPUS).prop_map(Op::FoldCpu),
        2 => prop_oneof![-300i64..300, any::<i64>()].prop_map(Op::Compare),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::with_cases(if cfg!(miri) { 3 } else { 128 })
    })]

    /// After every operation the exact sum is the model's total, every CPU's
    /// delta is below the largest batch it was added with, the rough read
    /// is off by no more than the deltas, and comparisons agree with the model.
    #[test]
    fn the_counter_against_a_model(
        start in -100i64..100,
        ops in proptest::collection::vec(op(), 0..if cfg!(miri) { 16 } else { 80 }),
    ) {
        let c = PercpuCounter::new(NR_CPUS, start);
        let ctx = FixedCpu::new(NR_CPUS + 1);
        let mut total = start;
        // The largest batch each CPU's delta was last built up under.
        let mut bound = [c.batch(); NR_CPUS];
        for op in ops {
            match op {
                Op::Add { cpu, amount } => {
                    ctx.set_current(cpu).unwrap();
                    let before = (c.read(), c.sum());
                    match c.add(&ctx, amount) {
                        Ok(()) => total = total.wrapping_add(amount),
                        Err(e) => {
                            prop_assert_eq!(e, PerCpuError::CpuOutOfRange { cpu, nr_cpus: NR_CPUS });
                            prop_assert_eq!((c.read(), c.sum()), before);
                        }
                    }
                }
                Op::AddBatch { cpu, amount, batch } => {
                    ctx.set_current(cpu).unwrap();
                    c.add_batch(&ctx, amount, batch).unwrap();
                    total = total.wrapping_add(amount);
                    bound[cpu] = bound[cpu].max(batch);
                }
                Op::Set(v) => {
                    c.set(v);
                    total = v;
                }
                Op::FoldCpu(cpu) => {
                    let before = c.sum();
                    match c.fold_cpu(cpu) {
                        Ok(()) => prop_assert_eq!(c.cpu_delta(cpu), Ok(0)),
                        Err(e) => prop_assert_eq!(e, PerCpuError::CpuOutOfRange { cpu, nr_cpus: NR_CPUS }),
                    }
                    prop_assert_eq!(c.sum(), before);
                }
                Op::Compare(rhs) => {
                    // Exact whenever the deltas stay within the default batch.
                    if (0..NR_CPUS).all(|cpu| c.cpu_delta(cpu).unwrap().unsigned_abs() < c.batch().unsigned_abs()) {
                        prop_assert_eq!(c.compare(rhs), total.cmp(&rhs));
                    }
                }
            }
            prop_assert_eq!(c.sum(), total);
            let mut pending = 0i64;
            for (cpu, &limit) in bound.iter().enumerate() {
                let delta = c.cpu_delta(cpu).unwrap();
                prop_assert!(i64::from(delta).abs() < i64::from(limit).max(1), "cpu {} delta {} limit {}", cpu, delta, limit);
                pending += i64::from(delta);
            }
            prop_assert_eq!(c.read().wrapping_add(pending), total);
        }
    }
}

#[test]
fn threads_on_their_own_and_on_a_shared_cpu_lose_no_add() {
    const ROUNDS: i64 = if cfg!(miri) { 40 } else { 1_000_000 };
    let c = PercpuCounter::new(2, 0);
    // Two threads share CPU 0 (their adds compare-exchange one delta), a
    // third runs as CPU 1, and a fourth keeps summing and comparing.
    let cpus = [FixedCpu::new(2), FixedCpu::new(2)];
    cpus[1].set_current(1).unwrap();
    let per_thread = |t: i64| {
        (0..ROUNDS)
            .map(|i| if i % 3 == 0 { -t } else { t })
            .sum::<i64>()
    };
    let expected: i64 = (1..=3).map(per_thread).sum();
    // The adders start together, so that the two on CPU 0 overlap.
    let start = Barrier::new(3);
    thread::scope(|s| {
        let (c, start) = (&c, &start);
        let adders: Vec<_> = [(1i64, &cpus[0]), (2, &cpus[0]), (3, &cpus[1])]
            .into_iter()
            .map(|(t, ctx)| {
                s.spawn(move || {
                    start.wait();
                    for i in 0..ROUNDS {
                        c.add(ctx, if i % 3 == 0 { -t } else { t }).unwrap();
                    }
                })
            })
            .collect();
        s.spawn(move || {
            for _ in 0..if cfg!(miri) { 5 } else { 2_000 } {
                // Every partial sum lies between the smallest and largest
                // prefix totals, which are within [-ROUNDS * 6, ROUNDS * 6].
                assert!(c.sum().abs() <= ROUNDS * 6);
                assert_eq!(c.compare(i64::MAX), Ordering::Less);
            }
        });
        for a in adders {
            a.join().unwrap();
        }
    });
    assert_eq!(c.sum(), expected);
    let slack = i64::from(c.batch()) * 2;
    assert!(
        (c.read() - expected).abs() < slack,
        "{} vs {expected}",
        c.read()
    );
}
