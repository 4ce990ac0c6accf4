//! `HostCpus`: a `CpuContext` where each OS thread binds itself to a CPU slot.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use kmm_percpu::CpuContext;

use crate::HostError;

/// Tells machines apart in the thread-local state, so that one thread can run
/// on several `HostCpus` at once without mixing them up.
static NEXT_MACHINE: AtomicU64 = AtomicU64::new(0);

/// What one thread knows about itself on one machine. An entry exists only
/// while the thread is bound or has preemption disabled.
#[derive(Clone, Copy, Debug)]
struct ThreadCpu {
    machine: u64,
    cpu: usize,
    bound: bool,
    preempt: usize,
}

thread_local! {
    static THREAD_CPUS: RefCell<Vec<ThreadCpu>> = const { RefCell::new(Vec::new()) };
    /// `(machine + 1, cpu)` of one entry of `THREAD_CPUS`, kept equal to it,
    /// so that `current_cpu` (on every allocation) is one thread-local read
    /// for the machine a thread uses; `(0, 0)` exactly when `THREAD_CPUS` is
    /// empty, so that a thread bound nowhere (CPU 0) needs no search either.
    static LAST_CPU: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
}

/// A [`CpuContext`] for real threads: each OS thread binds itself to one of
/// `nr_cpus` CPU slots with [`HostCpus::bind`], and `current_cpu` is that slot,
/// read from a thread-local. A thread that never bound runs as CPU 0. Several
/// threads may share a CPU, as several tasks share one in the kernel.
///
/// Preemption is counted per thread. While a thread's count is above zero it
/// stays on its CPU: [`HostCpus::bind`] is refused, and dropping a
/// [`CpuBinding`] takes effect only when the count returns to zero.
///
/// This is what `preempt_disable` promises, made real with `kmm_percpu`:
/// holding a `get_cpu_var` guard keeps that CPU's slot exclusive. A second
/// thread bound to the same CPU waits for the slot instead of running
/// alongside, as a task scheduled on a CPU whose current task has preemption
/// disabled would.
#[derive(Debug)]
pub struct HostCpus {
    nr_cpus: usize,
    machine: u64,
}

impl HostCpus {
    /// A machine with `nr_cpus` CPU slots; no thread is bound yet.
    ///
    /// A machine always has its boot CPU, so `nr_cpus == 0` is taken as 1.
    pub fn new(nr_cpus: usize) -> HostCpus {
        HostCpus {
            nr_cpus: nr_cpus.max(1),
            machine: NEXT_MACHINE.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Binds the calling thread to `cpu` until the returned binding drops,
    /// after which the thread runs as CPU 0 again.
    ///
    /// # Errors
    ///
    /// [`HostError::CpuOutOfRange`] if `cpu >= nr_cpus`,
    /// [`HostError::AlreadyBound`] if the thread is bound on this machine
    /// (drop that binding first), [`HostError::PreemptDisabled`] while the
    /// thread has preemption disabled, and [`HostError::ThreadExiting`] while
    /// the thread's locals are being destroyed. The thread's CPU is unchanged
    /// after any of them.
    pub fn bind(&self, cpu: usize) -> Result<CpuBinding<'_>, HostError> {
        if cpu >= self.nr_cpus {
            return Err(HostError::CpuOutOfRange {
                cpu,
                nr_cpus: self.nr_cpus,
            });
        }
        self.update(|entry| {
            if entry.bound {
                return Err(HostError::AlreadyBound { cpu: entry.cpu });
            }
            if entry.preempt != 0 {
                return Err(HostError::PreemptDisabled {
                    cpu,
                    count: entry.preempt,
                });
            }
            entry.cpu = cpu;
            entry.bound = true;
            Ok(())
        })
        .unwrap_or(Err(HostError::ThreadExiting))?;
        Ok(CpuBinding {
            cpus: self,
            cpu,
            _not_send: PhantomData,
        })
    }

    /// The CPU the calling thread is bound to on this machine, if any.
    pub fn bound_cpu(&self) -> Option<usize> {
        self.read()
            .filter(|entry| entry.bound)
            .map(|entry| entry.cpu)
    }

    /// The calling thread's preemption counter on this machine (`preempt_count()`).
    pub fn preempt_count(&self) -> usize {
        self.read().map_or(0, |entry| entry.preempt)
    }

    /// The calling thread's entry for this machine, if it has one.
    fn read(&self) -> Option<ThreadCpu> {
        THREAD_CPUS
            .try_with(|cpus| {
                cpus.borrow()
                    .iter()
                    .find(|e| e.machine == self.machine)
                    .copied()
            })
            .ok()
            .flatten()
    }

    /// Applies `f` to the calling thread's entry for this machine (a fresh
    /// one, on CPU 0, if it has none), then drops the entry if it says nothing
    /// (unbound, preemption enabled). `None` if the thread's locals are gone.
    fn update<R>(&self, f: impl FnOnce(&mut ThreadCpu) -> R) -> Option<R> {
        THREAD_CPUS
            .try_with(|cpus| {
                let mut cpus = cpus.borrow_mut();
                let i = match cpus.iter().position(|e| e.machine == self.machine) {
                    Some(i) => i,
                    None => {
                        let fresh = ThreadCpu {
                            machine: self.machine,
                            cpu: 0,
                            bound: false,
                            preempt: 0,
                        };
                        cpus.push(fresh);
                        cpus.len() - 1
                    }
                };
                let result = f(&mut cpus[i]);
                let key = self.machine + 1;
                let mirrored = LAST_CPU.with(|last| last.get().0);
                if !cpus[i].bound && cpus[i].preempt == 0 {
                    cpus.swap_remove(i);
                    if mirrored == key {
                        // Mirror another entry, or none when none is left.
                        let next = cpus.first().map_or((0, 0), |e| (e.machine + 1, e.cpu));
                        LAST_CPU.with(|last| last.set(next));
                    }
                } else if mirrored == key || mirrored == 0 {
                    LAST_CPU.with(|last| last.set((key, cpus[i].cpu)));
                }
                result
            })
            .ok()
    }
}

impl CpuContext for HostCpus {
    fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }

    #[inline]
    fn current_cpu(&self) -> usize {
        let (key, cpu) = LAST_CPU.with(Cell::get);
        if key == self.machine + 1 {
            return cpu;
        }
        if key == 0 {
            return 0;
        }
        self.read().map_or(0, |entry| entry.cpu)
    }

    fn preempt_disable(&self) {
        self.update(|entry| entry.preempt = entry.preempt.saturating_add(1));
    }

    /// Re-enables preemption; an unmatched call leaves the counter at 0 (the
    /// kernel would warn about the underflow). When the count reaches 0 after
    /// the thread's binding was dropped, the thread moves back to CPU 0.
    fn preempt_enable(&self) {
        self.update(|entry| entry.preempt = entry.preempt.saturating_sub(1));
    }
}

/// The calling thread's binding to a CPU of a [`HostCpus`], from
/// [`HostCpus::bind`]. Dropping it unbinds the thread (at once, or when its
/// preemption count returns to zero). It is neither `Send` nor `Sync`: it
/// belongs to the thread that bound.
#[derive(Debug)]
#[must_use = "the thread is unbound as soon as the binding is dropped"]
pub struct CpuBinding<'a> {
    cpus: &'a HostCpus,
    cpu: usize,
    _not_send: PhantomData<*const ()>,
}

impl CpuBinding<'_> {
    /// The CPU the thread is bound to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

impl Drop for CpuBinding<'_> {
    fn drop(&mut self) {
        self.cpus.update(|entry| entry.bound = false);
    }
}

#[cfg(test)]
mod tests;
