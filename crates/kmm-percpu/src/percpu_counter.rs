//! `PercpuCounter`: the kernel's batching per-CPU counter (`lib/percpu_counter.c`).
//!
//! A counter that many CPUs change often and few read exactly (free blocks of
//! a filesystem, open files, committed memory) keeps a small delta per CPU
//! and folds it into a shared total only when it reaches the batch. An add
//! touches the CPU's own cache line; the shared total and its lock are taken
//! once per `batch` units of change.

use alloc::boxed::Box;
use core::cmp::Ordering;
use core::fmt;
use core::sync::atomic::{AtomicI32, AtomicI64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;
use spin::Mutex;

use crate::var::cpu_slot;
use crate::{CpuContext, PerCpuError};

/// The default batch for a machine of `nr_cpus` CPUs: `max(32, 2 * nr_cpus)`
/// (`percpu_counter_batch`, set by `compute_batch_value` in
/// `lib/percpu_counter.c`), saturating at `i32::MAX`.
pub fn percpu_counter_batch(nr_cpus: usize) -> i32 {
    i32::try_from(nr_cpus.saturating_mul(2))
        .unwrap_or(i32::MAX)
        .max(32)
}

/// A batching per-CPU counter (`struct percpu_counter`,
/// `include/linux/percpu_counter.h`).
///
/// The value is [`PercpuCounter::sum`]: the folded total plus every CPU's
/// unfolded delta. [`PercpuCounter::read`] returns the folded total alone,
/// without a lock; it differs from the sum by less than `batch` per CPU.
///
/// An add on a CPU the context holds exclusively
/// ([`CpuContext::current_cpu_exclusive`]) is a plain load and store of the
/// CPU's delta, like the kernel's `this_cpu_add`; on a CPU that threads share
/// it is a compare-exchange of the delta. Either way it takes the lock only to
/// fold. As in the kernel, [`PercpuCounter::set`] is not atomic with adds that
/// run at the same time: an add racing with it may be lost or kept.
pub struct PercpuCounter {
    /// `fbc->lock`: serializes folds, [`PercpuCounter::set`] and
    /// [`PercpuCounter::sum`].
    lock: Mutex<()>,
    /// `fbc->count`: the folded total, written under `lock` and read without
    /// it by [`PercpuCounter::read`].
    count: AtomicI64,
    /// `fbc->counters`: each CPU's delta not yet folded, in its own cache line.
    counters: Box<[CachePadded<AtomicI32>]>,
    /// The batch of [`PercpuCounter::add`].
    batch: i32,
}

impl PercpuCounter {
    /// A counter for a machine of `nr_cpus` CPUs, starting at `amount`
    /// (`percpu_counter_init`), with the default batch
    /// [`percpu_counter_batch`]`(nr_cpus)`. A machine always has its boot
    /// CPU, so `nr_cpus == 0` is taken as 1.
    pub fn new(nr_cpus: usize, amount: i64) -> PercpuCounter {
        let nr_cpus = nr_cpus.max(1);
        PercpuCounter {
            lock: Mutex::new(()),
            count: AtomicI64::new(amount),
            counters: (0..nr_cpus)
                .map(|_| CachePadded::new(AtomicI32::new(0)))
                .collect(),
            batch: percpu_counter_batch(nr_cpus),
        }
    }

    /// The number of per-CPU deltas (the machine's possible CPUs).
    pub fn nr_cpus(&self) -> usize {
        self.counters.len()
    }

    /// The batch [`PercpuCounter::add`] folds at.
    pub fn batch(&self) -> i32 {
        self.batch
    }

    fn slot(&self, cpu: usize) -> Result<&AtomicI32, PerCpuError> {
        Ok(cpu_slot(&self.counters, cpu)?)
    }

    /// Adds `amount` with the default batch (`percpu_counter_add`).
    ///
    /// # Errors
    ///
    /// [`PerCpuError::CpuOutOfRange`] if `ctx` runs on a CPU this counter
    /// has no delta for; nothing changes.
    #[inline]
    pub fn add(&self, ctx: &dyn CpuContext, amount: i64) -> Result<(), PerCpuError> {
        self.add_batch(ctx, amount, self.batch)
    }

    /// Subtracts `amount` with the default batch (`percpu_counter_sub`),
    /// wrapping.
    ///
    /// # Errors
    ///
    /// As [`PercpuCounter::add`].
    #[inline]
    pub fn sub(&self, ctx: &dyn CpuContext, amount: i64) -> Result<(), PerCpuError> {
        self.add(ctx, amount.wrapping_neg())
    }

    /// Adds 1 (`percpu_counter_inc`).
    ///
    /// # Errors
    ///
    /// As [`PercpuCounter::add`].
    #[inline]
    pub fn inc(&self, ctx: &dyn CpuContext) -> Result<(), PerCpuError> {
        self.add(ctx, 1)
    }

    /// Subtracts 1 (`percpu_counter_dec`).
    ///
    /// # Errors
    ///
    /// As [`PercpuCounter::add`].
    #[inline]
    pub fn dec(&self, ctx: &dyn CpuContext) -> Result<(), PerCpuError> {
        self.add(ctx, -1)
    }

    /// Adds `amount` to this CPU's delta, or, if the delta would reach
    /// `batch` either way, folds the delta and `amount` into the total under
    /// the lock (`percpu_counter_add_batch`). A `batch` of 0 or less folds
    /// every add. The total wraps, as the kernel's does.
    ///
    /// # Errors
    ///
    /// As [`PercpuCounter::add`].
    #[inline]
    pub fn add_batch(
        &self,
        ctx: &dyn CpuContext,
        amount: i64,
        batch: i32,
    ) -> Result<(), PerCpuError> {
        let (cpu, exclusive) = ctx.current_cpu_exclusive();
        let slot = self.slot(cpu)?;
        let mut delta = slot.load(Relaxed);
        loop {
            let Some(new) = within_batch(delta, amount, batch) else {
                self.fold(slot, amount);
                return Ok(());
            };
            if exclusive {
                // No other thread runs as this CPU, and only this CPU's adds
                // change its delta (`set` and `fold_cpu` aside, which race
                // with adds in the kernel too): a plain store, as
                // `this_cpu_add` is an ordinary instruction there.
                slot.store(new, Relaxed);
                return Ok(());
            }
            match slot.compare_exchange_weak(delta, new, Relaxed, Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => delta = now,
            }
        }
    }

    /// Folds the CPU's delta at `slot` and `amount` into the total.
    #[cold]
    #[inline(never)]
    fn fold(&self, slot: &AtomicI32, amount: i64) {
        let _lock = self.lock.lock();
        let delta = slot.swap(0, Relaxed);
        let count = self
            .count
            .load(Relaxed)
            .wrapping_add(i64::from(delta))
            .wrapping_add(amount);
        self.count.store(count, Relaxed);
    }

    /// The folded total, without the lock (`percpu_counter_read`): off from
    /// [`PercpuCounter::sum`] by less than the batch per CPU.
    #[inline]
    pub fn read(&self) -> i64 {
        self.count.load(Relaxed)
    }

    /// [`PercpuCounter::read`], or 0 if it is negative
    /// (`percpu_counter_read_positive`): the folded total can go below 0
    /// while the sum is positive.
    #[inline]
    pub fn read_positive(&self) -> i64 {
        self.read().max(0)
    }

    /// The exact value: the total plus every CPU's delta, under the lock
    /// (`percpu_counter_sum`). Adds that run meanwhile may or may not be
    /// counted, as in the kernel.
    pub fn sum(&self) -> i64 {
        let _lock = self.lock.lock();
        self.counters
            .iter()
            .fold(self.count.load(Relaxed), |sum, delta| {
                sum.wrapping_add(i64::from(delta.load(Relaxed)))
            })
    }

    /// [`PercpuCounter::sum`], or 0 if it is negative
    /// (`percpu_counter_sum_positive`).
    pub fn sum_positive(&self) -> i64 {
        self.sum().max(0)
    }

    /// Sets the counter to `amount`: every delta to 0 and the total to
    /// `amount`, under the lock (`percpu_counter_set`).
    pub fn set(&self, amount: i64) {
        let _lock = self.lock.lock();
        for delta in self.counters.iter() {
            delta.store(0, Relaxed);
        }
        self.count.store(amount, Relaxed);
    }

    /// Compares the counter with `rhs` (`percpu_counter_compare`), with the
    /// default batch.
    pub fn compare(&self, rhs: i64) -> Ordering {
        self.compare_batch(rhs, self.batch)
    }

    /// Compares the counter with `rhs` (`__percpu_counter_compare`): from the
    /// folded total alone when it is further from `rhs` than `batch` times
    /// the number of CPUs (so no delta can change the answer), else from
    /// [`PercpuCounter::sum`].
    pub fn compare_batch(&self, rhs: i64, batch: i32) -> Ordering {
        let rough = self.read();
        let slack = i128::from(batch) * self.counters.len() as i128;
        if i128::from(rough.abs_diff(rhs)) > slack {
            return rough.cmp(&rhs);
        }
        self.sum().cmp(&rhs)
    }

    /// CPU `cpu`'s delta not yet folded (`*per_cpu_ptr(fbc->counters, cpu)`).
    ///
    /// # Errors
    ///
    /// [`PerCpuError::CpuOutOfRange`] if `cpu >= nr_cpus()`.
    pub fn cpu_delta(&self, cpu: usize) -> Result<i32, PerCpuError> {
        Ok(self.slot(cpu)?.load(Relaxed))
    }

    /// Folds CPU `cpu`'s delta into the total, as the kernel does for every
    /// counter when a CPU goes offline (`percpu_counter_cpu_dead`). The sum
    /// is unchanged.
    ///
    /// # Errors
    ///
    /// [`PerCpuError::CpuOutOfRange`] if `cpu >= nr_cpus()`; nothing changes.
    pub fn fold_cpu(&self, cpu: usize) -> Result<(), PerCpuError> {
        self.fold(self.slot(cpu)?, 0);
        Ok(())
    }
}

/// The delta after adding `amount` to `delta`, if it stays strictly between
/// `-batch` and `batch` (the kernel folds when `count >= batch || count <=
/// -batch`); `None` when the add must fold.
#[inline]
fn within_batch(delta: i32, amount: i64, batch: i32) -> Option<i32> {
    let new = i64::from(delta).checked_add(amount)?;
    let batch = i64::from(batch);
    if new >= batch || new <= -batch {
        return None;
    }
    // |new| < batch <= i32::MAX, so it fits.
    i32::try_from(new).ok()
}

impl fmt::Debug for PercpuCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PercpuCounter")
            .field("count", &self.read())
            .field("nr_cpus", &self.counters.len())
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
