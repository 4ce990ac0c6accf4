//! `FixedCpu`: a `CpuContext` whose current CPU is chosen by the caller, for tests and the simulator.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use spin::Mutex;

use crate::{CpuContext, PerCpuError};

/// A [`CpuContext`] that runs on whichever CPU the caller last chose with
/// [`FixedCpu::set_current`], starting on CPU 0.
///
/// All threads that share one `FixedCpu` run on the same CPU and share one
/// preemption counter; give each thread its own `FixedCpu` to model threads on
/// different CPUs. Moving to another CPU while preemption is disabled is
/// refused, which is what makes a [`CpuVarGuard`](crate::CpuVarGuard) keep
/// its CPU.
#[derive(Debug)]
pub struct FixedCpu {
    nr_cpus: usize,
    /// A copy of `state.cpu` that `current_cpu` reads without the lock (the
    /// per-CPU fast paths ask for it on every call); written under the lock.
    cpu: AtomicUsize,
    state: Mutex<FixedState>,
}

#[derive(Debug)]
struct FixedState {
    cpu: usize,
    preempt: usize,
}

impl FixedCpu {
    /// A context with `nr_cpus` possible CPUs, running on CPU 0.
    ///
    /// A machine always has its boot CPU, so `nr_cpus == 0` is taken as 1.
    pub fn new(nr_cpus: usize) -> FixedCpu {
        FixedCpu {
            nr_cpus: nr_cpus.max(1),
            cpu: AtomicUsize::new(0),
            state: Mutex::new(FixedState { cpu: 0, preempt: 0 }),
        }
    }

    /// Moves the caller to `cpu` (the model of the scheduler migrating a task).
    ///
    /// # Errors
    ///
    /// [`PerCpuError::CpuOutOfRange`] if `cpu >= nr_cpus`, and
    /// [`PerCpuError::PreemptDisabled`] while preemption is disabled; the
    /// current CPU is unchanged after either.
    pub fn set_current(&self, cpu: usize) -> Result<(), PerCpuError> {
        if cpu >= self.nr_cpus {
            return Err(PerCpuError::CpuOutOfRange {
                cpu,
                nr_cpus: self.nr_cpus,
            });
        }
        let mut state = self.state.lock();
        if state.preempt != 0 {
            return Err(PerCpuError::PreemptDisabled {
                cpu,
                count: state.preempt,
            });
        }
        state.cpu = cpu;
        self.cpu.store(cpu, Relaxed);
        Ok(())
    }

    /// The preemption counter: how many `preempt_disable` calls are not yet
    /// matched by `preempt_enable` (`preempt_count()` in `include/linux/preempt.h`).
    pub fn preempt_count(&self) -> usize {
        self.state.lock().preempt
    }
}

// SAFETY: `FixedCpu` never answers that a CPU is held exclusively (the
// default `current_cpu_exclusive`), and its `remote_fence` is the default
// full fence, which is all that is promised then.
#[expect(unsafe_code, reason = "implementing the unsafe `CpuContext`")]
unsafe impl CpuContext for FixedCpu {
    fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }

    fn current_cpu(&self) -> usize {
        self.cpu.load(Relaxed)
    }

    fn preempt_disable(&self) {
        let mut state = self.state.lock();
        state.preempt = state.preempt.saturating_add(1);
    }

    /// Re-enables preemption; an unmatched call leaves the counter at 0
    /// (the kernel would warn about the underflow).
    fn preempt_enable(&self) {
        let mut state = self.state.lock();
        state.preempt = state.preempt.saturating_sub(1);
    }
}
