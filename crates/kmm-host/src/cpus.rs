//! `HostCpus`: a `CpuContext` where each OS thread binds itself to a CPU slot.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, OnceLock};

use kmm_percpu::CpuContext;
use rustix::thread::{MembarrierCommand, membarrier};

use crate::HostError;

/// Tells machines apart in the thread-local state, so that one thread can run
/// on several `HostCpus` at once without mixing them up. Numbers start at 1:
/// 0 in `LAST_CPU` means no machine.
static NEXT_MACHINE: AtomicU64 = AtomicU64::new(1);

/// The process's registration for private expedited `membarrier`, made by
/// the first exclusive binding (`Err` holds the errno if the host refused).
static MEMBARRIER: OnceLock<Result<(), rustix::io::Errno>> = OnceLock::new();

/// `HostCpus::users` of a CPU that a thread holds exclusively.
const EXCLUSIVE: usize = usize::MAX;

/// What a thread's entry counts in `HostCpus::users` for its CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    None,
    Shared,
    Exclusive,
}

/// What one thread knows about itself on one machine. An entry exists only
/// while the thread is bound or has preemption disabled.
#[derive(Clone, Copy, Debug)]
struct ThreadCpu {
    machine: u64,
    cpu: usize,
    bound: bool,
    preempt: usize,
    claim: Claim,
}

impl ThreadCpu {
    /// The entry as `LAST_CPU` mirrors it.
    fn mirror(&self) -> Mirror {
        (
            self.machine,
            self.cpu,
            u8::from(self.claim == Claim::Exclusive),
        )
    }
}

/// `(machine, cpu, exclusive)` of one entry of `THREAD_CPUS`, `exclusive`
/// 0 or 1. Not a `bool`: `LocalKey::with` reads the value through an
/// `Option`, and a `bool` would give that `Option` a niche, so every read
/// would test the byte against 2.
type Mirror = (u64, usize, u8);

/// `LAST_CPU` of a thread with no entry.
const NO_MIRROR: Mirror = (0, 0, 0);

thread_local! {
    static THREAD_CPUS: RefCell<Vec<ThreadCpu>> = const { RefCell::new(Vec::new()) };
    /// `(machine, cpu, exclusive)` of one entry of `THREAD_CPUS`, kept equal
    /// to it, so that `current_cpu` (on every allocation) is one thread-local
    /// read for the machine a thread uses; machine 0 exactly when
    /// `THREAD_CPUS` is empty, so that a thread bound nowhere (CPU 0) needs
    /// no search either.
    static LAST_CPU: Cell<Mirror> = const { Cell::new(NO_MIRROR) };
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
///
/// # Exclusive CPUs
///
/// [`HostCpus::bind_exclusive`] gives a thread a CPU no other thread runs
/// as, the way a kernel CPU runs one task at a time, so per-CPU fast paths
/// (the slab layer's) can skip bus-locked instructions for it
/// ([`CpuContext::current_cpu_exclusive`]). A thread that must reach into
/// an exclusive CPU's data calls [`CpuContext::remote_fence`], which is
/// Linux's `membarrier` (private expedited) while any exclusive binding
/// exists: the stand-in for the interrupt a kernel would send. CPU 0 cannot
/// be held exclusively, since every unbound thread runs as CPU 0.
#[derive(Debug)]
pub struct HostCpus {
    nr_cpus: usize,
    machine: u64,
    /// Per CPU: how many threads are bound to it (or have preemption
    /// disabled while bound to it), or `EXCLUSIVE`.
    users: Box<[AtomicUsize]>,
    /// How many CPUs are held exclusively.
    exclusive: AtomicUsize,
}

impl HostCpus {
    /// A machine with `nr_cpus` CPU slots; no thread is bound yet.
    ///
    /// A machine always has its boot CPU, so `nr_cpus == 0` is taken as 1.
    pub fn new(nr_cpus: usize) -> HostCpus {
        let nr_cpus = nr_cpus.max(1);
        HostCpus {
            nr_cpus,
            machine: NEXT_MACHINE.fetch_add(1, Ordering::Relaxed),
            users: (0..nr_cpus).map(|_| AtomicUsize::new(0)).collect(),
            exclusive: AtomicUsize::new(0),
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
    /// thread has preemption disabled, [`HostError::CpuBusy`] while another
    /// thread holds `cpu` exclusively, and [`HostError::ThreadExiting`]
    /// while the thread's locals are being destroyed. The thread's CPU is
    /// unchanged after any of them.
    pub fn bind(&self, cpu: usize) -> Result<CpuBinding<'_>, HostError> {
        self.bind_as(cpu, Claim::Shared)
    }

    /// Binds the calling thread to `cpu` and no other thread, until the
    /// returned binding drops: while it lasts, no other thread can bind to
    /// `cpu`, and [`CpuContext::current_cpu_exclusive`] says so to the
    /// per-CPU fast paths. The first exclusive binding of the process
    /// registers it for `membarrier`.
    ///
    /// A binding that is forgotten (`mem::forget`) keeps its CPU claimed for
    /// the machine's life.
    ///
    /// # Errors
    ///
    /// Those of [`HostCpus::bind`]; [`HostError::CpuBusy`] also when another
    /// thread is bound to `cpu`, and always for CPU 0 (where the unbound
    /// threads run); [`HostError::Io`] if the host refuses `membarrier`.
    /// Nothing changes after any of them.
    pub fn bind_exclusive(&self, cpu: usize) -> Result<CpuBinding<'_>, HostError> {
        if cpu < self.nr_cpus {
            MEMBARRIER
                .get_or_init(|| membarrier(MembarrierCommand::RegisterPrivateExpedited))
                .map_err(HostError::io("membarrier"))?;
        }
        self.bind_as(cpu, Claim::Exclusive)
    }

    /// [`HostCpus::bind`] (or, with `exclusive`, [`HostCpus::bind_exclusive`])
    /// for a binding that keeps its machine alive: it holds a clone of the
    /// `Arc`, so it can live in a struct beside the machine it binds to
    /// (a heap, a global allocator's thread-local) without a borrow.
    ///
    /// # Errors
    ///
    /// As [`HostCpus::bind`] and [`HostCpus::bind_exclusive`].
    pub fn bind_owned(
        self: &Arc<Self>,
        cpu: usize,
        exclusive: bool,
    ) -> Result<CpuBinding<'static>, HostError> {
        let b = if exclusive {
            self.bind_exclusive(cpu)?
        } else {
            self.bind(cpu)?
        };
        let (cpu, exclusive) = (b.cpu, b.exclusive);
        // The binding moves to the owning form: the thread stays bound.
        core::mem::forget(b);
        Ok(CpuBinding {
            cpus: Machine::Owned(Arc::clone(self)),
            cpu,
            exclusive,
            _not_send: PhantomData,
        })
    }

    /// [`HostCpus::bind`] with the claim to make on the CPU.
    fn bind_as(&self, cpu: usize, claim: Claim) -> Result<CpuBinding<'_>, HostError> {
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
            self.claim(cpu, claim)?;
            entry.cpu = cpu;
            entry.bound = true;
            entry.claim = claim;
            Ok(())
        })
        .unwrap_or(Err(HostError::ThreadExiting))?;
        Ok(CpuBinding {
            cpus: Machine::Borrowed(self),
            cpu,
            exclusive: claim == Claim::Exclusive,
            _not_send: PhantomData,
        })
    }

    /// Counts the caller in `users[cpu]`.
    fn claim(&self, cpu: usize, claim: Claim) -> Result<(), HostError> {
        let users = &self.users[cpu];
        let busy = HostError::CpuBusy { cpu };
        match claim {
            Claim::None => Ok(()),
            Claim::Shared => users
                .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                    (n != EXCLUSIVE).then(|| n + 1)
                })
                .map(drop)
                .map_err(|_| busy),
            Claim::Exclusive => {
                if cpu == 0 {
                    return Err(busy);
                }
                users
                    .compare_exchange(0, EXCLUSIVE, Ordering::Acquire, Ordering::Relaxed)
                    .map_err(|_| busy)?;
                // The owner's half of the handshake with `remote_fence`: a
                // remote thread either sees the count or its own stores are
                // seen by every fast-path load the owner makes after this.
                self.exclusive.fetch_add(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                Ok(())
            }
        }
    }

    /// Undoes [`HostCpus::claim`] when a thread leaves `cpu`.
    fn release(&self, cpu: usize, claim: Claim) {
        match claim {
            Claim::None => {}
            Claim::Shared => {
                self.users[cpu].fetch_sub(1, Ordering::Release);
            }
            Claim::Exclusive => {
                self.exclusive.fetch_sub(1, Ordering::SeqCst);
                self.users[cpu].store(0, Ordering::Release);
            }
        }
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
                            claim: Claim::None,
                        };
                        cpus.push(fresh);
                        cpus.len() - 1
                    }
                };
                let result = f(&mut cpus[i]);
                let key = self.machine;
                let mirrored = LAST_CPU.with(|last| last.get().0);
                if !cpus[i].bound && cpus[i].preempt == 0 {
                    // The thread leaves its CPU.
                    let gone = cpus.swap_remove(i);
                    self.release(gone.cpu, gone.claim);
                    if mirrored == key {
                        // Mirror another entry, or none when none is left.
                        let next = cpus.first().map_or(NO_MIRROR, ThreadCpu::mirror);
                        LAST_CPU.with(|last| last.set(next));
                    }
                } else if mirrored == key || mirrored == 0 {
                    let mirror = cpus[i].mirror();
                    LAST_CPU.with(|last| last.set(mirror));
                }
                result
            })
            .ok()
    }
}

impl HostCpus {
    /// [`CpuContext::current_cpu_exclusive`] when the thread last used
    /// another machine: its binding to this one, if any.
    #[inline(never)]
    fn current_cpu_searched(&self) -> (usize, bool) {
        self.read()
            .map_or((0, false), |e| (e.cpu, e.claim == Claim::Exclusive))
    }
}

// SAFETY: `bind_exclusive` grants a CPU to one thread only: it is refused
// while any other thread is bound to that CPU, and every other binding to it
// is refused while the hold lasts; threads with no binding run as CPU 0,
// which is never held exclusively. A binding is not `Send` and is dropped by
// its own thread, between its calls into per-CPU code, so no thread is still
// inside such code for a CPU when it is granted to another.
// `current_cpu_exclusive` answers from the calling thread's own binding.
// `remote_fence` issues `membarrier` while any exclusive hold exists, which
// is a fence in every running thread.
#[expect(unsafe_code, reason = "implementing the unsafe `CpuContext`")]
unsafe impl CpuContext for HostCpus {
    fn nr_cpus(&self) -> usize {
        self.nr_cpus
    }

    #[inline]
    fn current_cpu(&self) -> usize {
        self.current_cpu_exclusive().0
    }

    /// One thread-local read when the thread last used this machine (the
    /// slab fast paths ask on every call, so this part is always inlined);
    /// a search of the thread's bindings otherwise.
    #[inline(always)]
    fn current_cpu_exclusive(&self) -> (usize, bool) {
        if let Some(answer) = self.current_cpu_quick() {
            return answer;
        }
        if LAST_CPU.with(Cell::get).0 == 0 {
            return (0, false);
        }
        self.current_cpu_searched()
    }

    /// The thread-local mirror's answer when it mirrors this machine.
    #[inline(always)]
    fn current_cpu_quick(&self) -> Option<(usize, bool)> {
        let (key, cpu, exclusive) = LAST_CPU.with(Cell::get);
        (key == self.machine).then_some((cpu, exclusive != 0))
    }

    /// A full fence, and `membarrier` while any CPU is held exclusively, so
    /// that it also acts as a fence in every exclusive owner.
    fn remote_fence(&self) {
        fence(Ordering::SeqCst);
        if self.exclusive.load(Ordering::SeqCst) != 0 {
            // The process registered at its first exclusive binding, so the
            // private expedited command is available; the global one (slower,
            // needing no registration) is the fallback if the host disagrees.
            let done = membarrier(MembarrierCommand::PrivateExpedited)
                .or_else(|_| membarrier(MembarrierCommand::Global));
            assert!(
                done.is_ok(),
                "membarrier failed after registering: {done:?}"
            );
        }
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
    cpus: Machine<'a>,
    cpu: usize,
    exclusive: bool,
    _not_send: PhantomData<*const ()>,
}

/// The machine a [`CpuBinding`] binds to: borrowed, or kept alive by the
/// binding ([`HostCpus::bind_owned`]).
#[derive(Debug)]
enum Machine<'a> {
    Borrowed(&'a HostCpus),
    Owned(Arc<HostCpus>),
}

impl Machine<'_> {
    fn get(&self) -> &HostCpus {
        match self {
            Machine::Borrowed(m) => m,
            Machine::Owned(m) => m,
        }
    }
}

impl CpuBinding<'_> {
    /// The CPU the thread is bound to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Whether no other thread may run as this CPU (from
    /// [`HostCpus::bind_exclusive`]).
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

impl Drop for CpuBinding<'_> {
    fn drop(&mut self) {
        self.cpus.get().update(|entry| entry.bound = false);
    }
}

#[cfg(test)]
mod tests;
