//! `PerCpu<T>`: one value per possible CPU, each in its own cache line, and the
//! guards that reach them (`get_cpu_var`, `per_cpu`, `this_cpu_*`).
//!
//! Each copy sits behind its own spin lock. On the owner CPU the lock is never
//! contended, because a holder of [`CpuVarGuard`] has preemption disabled and
//! nobody else runs on that CPU; the lock is what lets safe code rely on that
//! promise: a second thread that claims the same CPU (or reaches the copy with
//! [`PerCpu::per_cpu`]) waits instead of aliasing the copy.

use alloc::boxed::Box;
use core::fmt;
use core::iter::FusedIterator;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use crossbeam_utils::CachePadded;
use spin::{Mutex, MutexGuard};

use crate::{Counter, CpuContext, PerCpuError, PreemptGuard};

/// One value of `T` per possible CPU: the model of `DEFINE_PER_CPU`
/// (`include/linux/percpu-defs.h`).
///
/// Each copy lives in its own cache-line-padded slot, so CPUs updating their
/// own copies never share a cache line, as the per-CPU units of
/// `mm/percpu.c` never do.
///
/// Do not take a second guard on a copy while holding one on the same thread:
/// [`PerCpu::get_cpu_var`], [`PerCpu::per_cpu`], [`PerCpu::iter`] and the
/// `this_cpu_*` helpers wait for the copy, which would never be released.
/// [`PerCpu::try_get_cpu_var`] reports [`PerCpuError::Busy`] instead.
pub struct PerCpu<T> {
    slots: Box<[CachePadded<Mutex<T>>]>,
}

impl<T> PerCpu<T> {
    /// Builds `nr_cpus` copies, the copy of CPU `cpu` being `init(cpu)`.
    #[doc(alias = "DEFINE_PER_CPU")]
    pub fn new(nr_cpus: usize, mut init: impl FnMut(usize) -> T) -> PerCpu<T> {
        PerCpu {
            slots: (0..nr_cpus)
                .map(|cpu| CachePadded::new(Mutex::new(init(cpu))))
                .collect(),
        }
    }

    /// The number of copies (`nr_cpu_ids` of the machine this was built for).
    pub fn nr_cpus(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, cpu: usize) -> Result<&Mutex<T>, PerCpuError> {
        Ok(cpu_slot(&self.slots, cpu)?)
    }

    /// This CPU's copy, locked, for one `this_cpu_*` operation. Preemption
    /// is not touched: in the kernel these operations are safe against
    /// preemption on their own (one instruction, or interrupts off around
    /// the generic fallback), and here the copy's lock makes the operation
    /// whole. A task that moves between choosing the CPU and taking the lock
    /// updates the copy of the CPU it ran on, as a kernel task preempted
    /// just before the instruction would.
    fn this_cpu_slot(&self, ctx: &dyn CpuContext) -> Result<MutexGuard<'_, T>, PerCpuError> {
        Ok(self.slot(ctx.current_cpu())?.lock())
    }

    /// Disables preemption and returns this CPU's copy (`get_cpu_var`,
    /// `include/linux/percpu-defs.h`); dropping the guard is `put_cpu_var`.
    ///
    /// The guard is the only access to the copy while it lives: another
    /// thread that runs on the same CPU waits for it, and so does this call if
    /// the copy is held. [`PerCpu::try_get_cpu_var`] does not wait.
    ///
    /// # Errors
    ///
    /// [`PerCpuError::CpuOutOfRange`] if `ctx` runs on a CPU this `PerCpu` has
    /// no copy for (the two were built for machines with different numbers of
    /// CPUs). Preemption is enabled again (the counter is unchanged) and no
    /// copy is touched.
    pub fn get_cpu_var<'a>(
        &'a self,
        ctx: &'a dyn CpuContext,
    ) -> Result<CpuVarGuard<'a, T>, PerCpuError> {
        let preempt = PreemptGuard::new(ctx);
        // On error `preempt` drops here, which re-enables preemption.
        let slot = self.slot(preempt.cpu())?;
        Ok(CpuVarGuard {
            guard: slot.lock(),
            preempt,
            _not_send: PhantomData,
        })
    }

    /// Like [`PerCpu::get_cpu_var`], but returns an error instead of waiting
    /// when the copy is held.
    ///
    /// # Errors
    ///
    /// [`PerCpuError::CpuOutOfRange`] if `ctx` runs on a CPU without a copy,
    /// [`PerCpuError::Busy`] if the copy is held by another guard. Preemption
    /// is enabled again (the counter is unchanged) after either.
    pub fn try_get_cpu_var<'a>(
        &'a self,
        ctx: &'a dyn CpuContext,
    ) -> Result<CpuVarGuard<'a, T>, PerCpuError> {
        let preempt = PreemptGuard::new(ctx);
        let cpu = preempt.cpu();
        let slot = self.slot(cpu)?;
        match slot.try_lock() {
            Some(guard) => Ok(CpuVarGuard {
                guard,
                preempt,
                _not_send: PhantomData,
            }),
            None => Err(PerCpuError::Busy { cpu }),
        }
    }

    /// The copy of CPU `cpu`, from any CPU (`per_cpu`, `include/linux/percpu-defs.h`).
    ///
    /// Preemption is not touched; the guard waits for, and then excludes, any
    /// other guard on the same copy, so the cross-CPU access that the kernel
    /// leaves to the caller's care is safe here.
    ///
    /// # Errors
    ///
    /// [`PerCpuError::CpuOutOfRange`] if `cpu >= nr_cpus()`.
    #[doc(alias = "per_cpu_ptr")]
    pub fn per_cpu(&self, cpu: usize) -> Result<PerCpuGuard<'_, T>, PerCpuError> {
        let slot = self.slot(cpu)?;
        Ok(PerCpuGuard {
            guard: slot.lock(),
            cpu,
        })
    }

    /// Exclusive access to the copy of CPU `cpu` without locking: `&mut self`
    /// already proves nobody else holds a guard.
    ///
    /// # Errors
    ///
    /// [`PerCpuError::CpuOutOfRange`] if `cpu >= nr_cpus()`.
    pub fn get_mut(&mut self, cpu: usize) -> Result<&mut T, PerCpuError> {
        let nr_cpus = self.slots.len();
        match self.slots.get_mut(cpu) {
            Some(slot) => Ok(slot.get_mut()),
            None => Err(PerCpuError::CpuOutOfRange { cpu, nr_cpus }),
        }
    }

    /// Every copy in CPU order, one guard at a time (`for_each_possible_cpu`
    /// over `per_cpu`). Each guard waits for its copy; drop it before taking
    /// the next to hold one copy at a time.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            percpu: self,
            next: 0,
        }
    }

    /// Every copy in CPU order, mutably and without locking (`&mut self` proves exclusivity).
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = &mut T> + '_ {
        self.slots.iter_mut().map(|slot| slot.get_mut())
    }

    /// Calls `f(cpu, copy)` for every possible CPU in order
    /// (`for_each_possible_cpu`, `include/linux/cpumask.h`), holding one copy at a time.
    pub fn for_each_possible_cpu(&self, mut f: impl FnMut(usize, &mut T)) {
        for (cpu, slot) in self.slots.iter().enumerate() {
            f(cpu, &mut slot.lock());
        }
    }

    /// A copy of this CPU's value (`this_cpu_read`, `include/linux/percpu-defs.h`).
    ///
    /// # Errors
    ///
    /// As [`PerCpu::get_cpu_var`]: [`PerCpuError::CpuOutOfRange`] if `ctx`
    /// runs on a CPU without a copy, with every copy and the preemption
    /// counter unchanged.
    pub fn this_cpu_read(&self, ctx: &dyn CpuContext) -> Result<T, PerCpuError>
    where
        T: Clone,
    {
        Ok(self.this_cpu_slot(ctx)?.clone())
    }

    /// Replaces this CPU's value (`this_cpu_write`).
    ///
    /// # Errors
    ///
    /// As [`PerCpu::get_cpu_var`]: [`PerCpuError::CpuOutOfRange`] if `ctx`
    /// runs on a CPU without a copy, with every copy and the preemption
    /// counter unchanged.
    pub fn this_cpu_write(&self, ctx: &dyn CpuContext, value: T) -> Result<(), PerCpuError> {
        *self.this_cpu_slot(ctx)? = value;
        Ok(())
    }

    /// Replaces this CPU's value and returns the old one (`this_cpu_xchg`).
    ///
    /// # Errors
    ///
    /// As [`PerCpu::get_cpu_var`]: [`PerCpuError::CpuOutOfRange`] if `ctx`
    /// runs on a CPU without a copy, with every copy and the preemption
    /// counter unchanged.
    pub fn this_cpu_xchg(&self, ctx: &dyn CpuContext, value: T) -> Result<T, PerCpuError> {
        Ok(core::mem::replace(&mut *self.this_cpu_slot(ctx)?, value))
    }
}

impl<T: Counter> PerCpu<T> {
    /// Adds `delta` to this CPU's counter, wrapping (`this_cpu_add`).
    ///
    /// # Errors
    ///
    /// As [`PerCpu::get_cpu_var`]: [`PerCpuError::CpuOutOfRange`] if `ctx`
    /// runs on a CPU without a copy, with every copy and the preemption
    /// counter unchanged.
    pub fn this_cpu_add(&self, ctx: &dyn CpuContext, delta: T) -> Result<(), PerCpuError> {
        self.this_cpu_add_return(ctx, delta)?;
        Ok(())
    }

    /// Adds `delta` to this CPU's counter and returns the new value (`this_cpu_add_return`).
    ///
    /// # Errors
    ///
    /// As [`PerCpu::get_cpu_var`]: [`PerCpuError::CpuOutOfRange`] if `ctx`
    /// runs on a CPU without a copy, with every copy and the preemption
    /// counter unchanged.
    pub fn this_cpu_add_return(&self, ctx: &dyn CpuContext, delta: T) -> Result<T, PerCpuError> {
        let mut guard = self.this_cpu_slot(ctx)?;
        *guard = guard.wrapping_add(delta);
        Ok(*guard)
    }

    /// Subtracts `delta` from this CPU's counter, wrapping (`this_cpu_sub`).
    ///
    /// # Errors
    ///
    /// As [`PerCpu::get_cpu_var`]: [`PerCpuError::CpuOutOfRange`] if `ctx`
    /// runs on a CPU without a copy, with every copy and the preemption
    /// counter unchanged.
    pub fn this_cpu_sub(&self, ctx: &dyn CpuContext, delta: T) -> Result<(), PerCpuError> {
        let mut guard = self.this_cpu_slot(ctx)?;
        *guard = guard.wrapping_sub(delta);
        Ok(())
    }

    /// Adds one to this CPU's counter (`this_cpu_inc`).
    ///
    /// # Errors
    ///
    /// As [`PerCpu::get_cpu_var`]: [`PerCpuError::CpuOutOfRange`] if `ctx`
    /// runs on a CPU without a copy, with every copy and the preemption
    /// counter unchanged.
    pub fn this_cpu_inc(&self, ctx: &dyn CpuContext) -> Result<(), PerCpuError> {
        self.this_cpu_add(ctx, T::ONE)
    }

    /// Subtracts one from this CPU's counter (`this_cpu_dec`).
    ///
    /// # Errors
    ///
    /// As [`PerCpu::get_cpu_var`]: [`PerCpuError::CpuOutOfRange`] if `ctx`
    /// runs on a CPU without a copy, with every copy and the preemption
    /// counter unchanged.
    pub fn this_cpu_dec(&self, ctx: &dyn CpuContext) -> Result<(), PerCpuError> {
        self.this_cpu_sub(ctx, T::ONE)
    }

    /// The wrapping sum of every CPU's counter, read one copy at a time, like
    /// `percpu_counter_sum` (`lib/percpu_counter.c`): exact when no CPU is
    /// updating meanwhile.
    pub fn sum(&self) -> T {
        let mut total = T::ZERO;
        self.for_each_possible_cpu(|_, value| total = total.wrapping_add(*value));
        total
    }
}

/// CPU `cpu`'s entry of a per-CPU array with one entry per possible CPU, or
/// [`PerCpuError::CpuOutOfRange`] beyond it.
pub(crate) fn cpu_slot<T>(slots: &[T], cpu: usize) -> Result<&T, PerCpuError> {
    slots.get(cpu).ok_or(PerCpuError::CpuOutOfRange {
        cpu,
        nr_cpus: slots.len(),
    })
}

impl<T: fmt::Debug> fmt::Debug for PerCpu<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Slot<'a, T>(&'a Mutex<T>);
        impl<T: fmt::Debug> fmt::Debug for Slot<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0.try_lock() {
                    Some(value) => fmt::Debug::fmt(&*value, f),
                    None => f.write_str("<in use>"),
                }
            }
        }
        f.debug_list()
            .entries(self.slots.iter().map(|slot| Slot(slot)))
            .finish()
    }
}

/// This CPU's copy of a [`PerCpu`] with preemption disabled, from
/// [`PerCpu::get_cpu_var`]; dropping it is `put_cpu_var`.
///
/// Dropping releases the copy first and re-enables preemption second, the
/// reverse of how they were taken. The guard is neither `Send` nor `Sync`: it
/// must be dropped by the thread that disabled preemption.
#[must_use = "dropping the guard at once releases the copy (put_cpu_var)"]
pub struct CpuVarGuard<'a, T> {
    // Field order is drop order: unlock the copy, then re-enable preemption.
    guard: MutexGuard<'a, T>,
    preempt: PreemptGuard<'a>,
    _not_send: PhantomData<*const ()>,
}

impl<T> CpuVarGuard<'_, T> {
    /// The CPU whose copy this is (an associated function, so that it cannot
    /// shadow a method of `T`).
    pub fn cpu(this: &Self) -> usize {
        this.preempt.cpu()
    }
}

impl<T> Deref for CpuVarGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for CpuVarGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: fmt::Debug> fmt::Debug for CpuVarGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuVarGuard")
            .field("cpu", &self.preempt.cpu())
            .field("value", &*self.guard)
            .finish()
    }
}

/// Releases this CPU's copy and re-enables preemption (`put_cpu_var`,
/// `include/linux/percpu-defs.h`); the same as dropping the guard.
pub fn put_cpu_var<T>(guard: CpuVarGuard<'_, T>) {
    drop(guard);
}

/// The copy of one CPU of a [`PerCpu`], from [`PerCpu::per_cpu`] or [`PerCpu::iter`].
#[must_use = "dropping the guard at once releases the copy"]
pub struct PerCpuGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    cpu: usize,
}

impl<T> PerCpuGuard<'_, T> {
    /// The CPU whose copy this is (an associated function, so that it cannot
    /// shadow a method of `T`).
    pub fn cpu(this: &Self) -> usize {
        this.cpu
    }
}

impl<T> Deref for PerCpuGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for PerCpuGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: fmt::Debug> fmt::Debug for PerCpuGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuGuard")
            .field("cpu", &self.cpu)
            .field("value", &*self.guard)
            .finish()
    }
}

/// The iterator of [`PerCpu::iter`]: one [`PerCpuGuard`] per possible CPU, in order.
#[derive(Debug)]
pub struct Iter<'a, T> {
    percpu: &'a PerCpu<T>,
    next: usize,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = PerCpuGuard<'a, T>;

    fn next(&mut self) -> Option<PerCpuGuard<'a, T>> {
        let guard = self.percpu.per_cpu(self.next).ok()?;
        self.next += 1;
        Some(guard)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.percpu.nr_cpus().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

impl<T> FusedIterator for Iter<'_, T> {}
