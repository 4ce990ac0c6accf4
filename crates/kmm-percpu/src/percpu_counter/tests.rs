//! `PercpuCounter`: batching, folding, the exact and rough reads, `set`,
//! comparisons, errors, and the exclusive-CPU path (threads and the model:
//! `tests/percpu_counter.rs`).

use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Ordering;

use super::{PercpuCounter, percpu_counter_batch};
use crate::{CpuContext, FixedCpu, PerCpuError};

/// Every CPU's delta, in CPU order.
fn deltas(c: &PercpuCounter) -> Vec<i32> {
    (0..c.nr_cpus())
        .map(|cpu| c.cpu_delta(cpu).unwrap())
        .collect()
}

/// `(read, sum, deltas)`: the whole visible state.
fn state(c: &PercpuCounter) -> (i64, i64, Vec<i32>) {
    (c.read(), c.sum(), deltas(c))
}

/// A context that runs as one CPU and says it holds it alone; each test
/// uses one from a single thread, which keeps the promise.
struct Sole(usize);

// SAFETY: every `Sole` of these tests is used by one thread only, and no
// other context in the same test answers its CPU while it is in use.
#[expect(unsafe_code, reason = "a test context that holds its CPU alone")]
unsafe impl CpuContext for Sole {
    fn nr_cpus(&self) -> usize {
        4
    }
    fn current_cpu(&self) -> usize {
        self.0
    }
    fn preempt_disable(&self) {}
    fn preempt_enable(&self) {}
    fn current_cpu_exclusive(&self) -> (usize, bool) {
        (self.0, true)
    }
}

#[test]
fn the_default_batch_is_twice_the_cpus_and_at_least_32() {
    assert_eq!(percpu_counter_batch(0), 32);
    assert_eq!(percpu_counter_batch(1), 32);
    assert_eq!(percpu_counter_batch(16), 32);
    assert_eq!(percpu_counter_batch(17), 34);
    assert_eq!(percpu_counter_batch(usize::MAX), i32::MAX);
    assert_eq!(PercpuCounter::new(64, 0).batch(), 128);
    assert_eq!(PercpuCounter::new(0, 0).nr_cpus(), 1);
}

#[test]
fn adds_stay_on_their_cpu_until_the_batch_then_fold() {
    let c = PercpuCounter::new(2, 100);
    let cpu1 = FixedCpu::new(2);
    cpu1.set_current(1).unwrap();
    c.add(&cpu1, 31).unwrap();
    // Below the batch (32): only CPU 1's delta moved; the rough read lags.
    assert_eq!(state(&c), (100, 131, vec![0, 31]));
    // 31 + 1 reaches the batch: the delta and the add fold into the total.
    c.inc(&cpu1).unwrap();
    assert_eq!(state(&c), (132, 132, vec![0, 0]));
    // Negative deltas fold at -batch.
    c.sub(&cpu1, 31).unwrap();
    assert_eq!(state(&c), (132, 101, vec![0, -31]));
    c.dec(&cpu1).unwrap();
    assert_eq!(state(&c), (100, 100, vec![0, 0]));
    // An add as large as the batch folds at once, with what was pending.
    c.add(&cpu1, 5).unwrap();
    c.add(&cpu1, -40).unwrap();
    assert_eq!(state(&c), (65, 65, vec![0, 0]));
}

#[test]
fn each_cpu_keeps_its_own_delta() {
    let c = PercpuCounter::new(3, 0);
    let ctx = FixedCpu::new(3);
    for (cpu, amount) in [(0, 7), (1, -3), (2, 20), (0, 1)] {
        ctx.set_current(cpu).unwrap();
        c.add(&ctx, amount).unwrap();
    }
    assert_eq!(state(&c), (0, 25, vec![8, -3, 20]));
    assert_eq!(c.read_positive(), 0);
    assert_eq!(c.sum_positive(), 25);
}

#[test]
fn add_batch_folds_at_the_batch_given() {
    let c = PercpuCounter::new(2, 0);
    let ctx = FixedCpu::new(2);
    c.add_batch(&ctx, 4, 5).unwrap();
    assert_eq!(state(&c), (0, 4, vec![4, 0]));
    c.add_batch(&ctx, 1, 5).unwrap();
    assert_eq!(state(&c), (5, 5, vec![0, 0]));
    // A batch of 0 or less folds every add.
    c.add_batch(&ctx, 1, 0).unwrap();
    c.add_batch(&ctx, -3, -7).unwrap();
    assert_eq!(state(&c), (3, 3, vec![0, 0]));
    // The largest batch keeps deltas up to i32::MAX - 1.
    c.add_batch(&ctx, i64::from(i32::MAX) - 1, i32::MAX)
        .unwrap();
    assert_eq!(deltas(&c), vec![i32::MAX - 1, 0]);
    c.add_batch(&ctx, 1, i32::MAX).unwrap();
    assert_eq!(
        state(&c),
        (3 + i64::from(i32::MAX), 3 + i64::from(i32::MAX), vec![0, 0])
    );
}

#[test]
fn sums_wrap_and_extreme_amounts_do_not_panic() {
    let c = PercpuCounter::new(2, i64::MAX);
    let ctx = FixedCpu::new(2);
    c.inc(&ctx).unwrap();
    assert_eq!(c.sum(), i64::MIN);
    c.add(&ctx, 40).unwrap();
    assert_eq!(c.read(), i64::MIN.wrapping_add(40));
    c.set(0);
    c.sub(&ctx, i64::MIN).unwrap();
    c.add(&ctx, i64::MAX).unwrap();
    assert_eq!(state(&c), (-1, -1, vec![0, 0]));
    assert_eq!((c.read_positive(), c.sum_positive()), (0, 0));
}

#[test]
fn set_clears_every_delta() {
    let c = PercpuCounter::new(2, 0);
    let ctx = FixedCpu::new(2);
    c.add(&ctx, 9).unwrap();
    ctx.set_current(1).unwrap();
    c.add(&ctx, -4).unwrap();
    c.set(-17);
    assert_eq!(state(&c), (-17, -17, vec![0, 0]));
}

#[test]
fn fold_cpu_moves_a_delta_into_the_total() {
    let c = PercpuCounter::new(2, 1);
    let ctx = FixedCpu::new(2);
    ctx.set_current(1).unwrap();
    c.add(&ctx, 12).unwrap();
    c.fold_cpu(1).unwrap();
    assert_eq!(state(&c), (13, 13, vec![0, 0]));
    assert_eq!(
        c.fold_cpu(2),
        Err(PerCpuError::CpuOutOfRange { cpu: 2, nr_cpus: 2 })
    );
    assert_eq!(
        c.cpu_delta(5),
        Err(PerCpuError::CpuOutOfRange { cpu: 5, nr_cpus: 2 })
    );
}

#[test]
fn a_cpu_beyond_the_counter_is_refused_and_changes_nothing() {
    let c = PercpuCounter::new(2, 3);
    let ctx = FixedCpu::new(4);
    c.add(&ctx, 6).unwrap();
    ctx.set_current(3).unwrap();
    let before = state(&c);
    let refused = Err(PerCpuError::CpuOutOfRange { cpu: 3, nr_cpus: 2 });
    assert_eq!(c.add(&ctx, 1), refused);
    assert_eq!(c.add_batch(&ctx, 100, 1), refused);
    assert_eq!(c.dec(&ctx), refused);
    assert_eq!(c.add(&Sole(3), 1), refused);
    assert_eq!(state(&c), before);
}

#[test]
fn compare_is_exact_near_the_value_and_rough_far_from_it() {
    let c = PercpuCounter::new(2, 0);
    let ctx = FixedCpu::new(2);
    c.add(&ctx, 31).unwrap();
    // The total reads 0 and the sum is 31: within 2 * 32 of the total the
    // comparison sums, so it is exact.
    assert_eq!(c.compare(31), Ordering::Equal);
    assert_eq!(c.compare(30), Ordering::Greater);
    assert_eq!(c.compare(32), Ordering::Less);
    assert_eq!(c.compare(-64), Ordering::Greater);
    // The slack is the batch times the CPUs: with both deltas at 31 the sum
    // is 62, and 40 is within 64 of the total, so it is summed.
    ctx.set_current(1).unwrap();
    c.add(&ctx, 31).unwrap();
    assert_eq!(c.compare(40), Ordering::Greater);
    c.add(&ctx, -31).unwrap();
    // Further away the total alone decides, and no delta could change that.
    assert_eq!(c.compare(65), Ordering::Less);
    assert_eq!(c.compare(i64::MIN), Ordering::Greater);
    assert_eq!(c.compare(i64::MAX), Ordering::Less);
    // A batch of 1 (slack 2) reads the total alone for 31: rough, and
    // wrong, as the kernel's would be with a batch smaller than the one
    // the counter was updated with.
    assert_eq!(c.compare_batch(31, 1), Ordering::Less);
    assert_eq!(c.compare_batch(1, 1), Ordering::Greater);
}

#[test]
fn an_exclusive_cpu_adds_with_plain_stores_and_the_same_result() {
    let c = PercpuCounter::new(4, 0);
    let (a, b) = (Sole(2), Sole(3));
    c.add(&a, 20).unwrap();
    c.add(&b, -5).unwrap();
    assert_eq!(state(&c), (0, 15, vec![0, 0, 20, -5]));
    c.add(&a, 12).unwrap();
    assert_eq!(state(&c), (32, 27, vec![0, 0, 0, -5]));
    c.add_batch(&b, -1, 2).unwrap();
    assert_eq!(state(&c), (26, 26, vec![0, 0, 0, 0]));
}
