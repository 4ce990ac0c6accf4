//! The `CpuContext` seam: which CPU the caller runs on, and preemption.

use core::sync::atomic::{Ordering::SeqCst, fence};

/// Which CPU the caller runs on (`smp_processor_id`), how many there are,
/// and the preemption counter (`preempt_disable`/`preempt_enable`).
///
/// Contract: `current_cpu() < nr_cpus()` always; `nr_cpus()` never changes.
/// Between `preempt_disable` and the matching `preempt_enable` the caller
/// stays on its CPU (`current_cpu` does not change). Implementations:
/// [`FixedCpu`](crate::FixedCpu) (one CPU chosen by the caller, for tests and
/// the simulator) and `kmm_host::HostCpus` (threads bound to CPU slots).
///
/// # Exclusive CPUs
///
/// In the kernel a CPU runs one task at a time, so its per-CPU data needs no
/// bus-locked instructions: `this_cpu_cmpxchg` is an ordinary instruction,
/// and another CPU that must see or change that data (a cache flush) asks the
/// CPU itself with an interrupt. A context can offer the same to its callers:
/// [`current_cpu_exclusive`](CpuContext::current_cpu_exclusive) says whether
/// the caller is the only thread that runs as its CPU, and
/// [`remote_fence`](CpuContext::remote_fence) is the interrupt's stand-in.
/// Per-CPU fast paths may then use plain loads and stores for an exclusive
/// caller, bracketed by a flag and a compiler fence, and a thread that
/// touches another CPU's data raises its own flag, calls `remote_fence`, and
/// then reads the owner's flag (an asymmetric Dekker handshake).
///
/// # Safety
///
/// Per-CPU fast paths trust the exclusivity answer for memory safety (two
/// threads both told they hold a CPU alone would pop the same object with
/// plain stores), so an implementation promises that:
///
/// - while [`current_cpu_exclusive`](CpuContext::current_cpu_exclusive)
///   answers `(cpu, true)` to a thread, no other thread's `current_cpu` or
///   `current_cpu_exclusive` answers `cpu`, no thread that was answered `cpu`
///   before the grant is still inside per-CPU code for it, and the first
///   thread keeps that CPU until it stops calling into per-CPU code for it;
/// - [`remote_fence`](CpuContext::remote_fence) is a fence in every thread
///   that holds a CPU exclusively, as documented there.
///
/// A context that never answers `true` (the default method) meets both. The
/// other promises above (`current_cpu() < nr_cpus()`, preemption) are
/// checked or tolerated where they are relied on, so breaking them is a bug
/// but not undefined behaviour.
#[expect(
    unsafe_code,
    reason = "exclusivity is a promise the slab layer's memory safety rests on"
)]
pub unsafe trait CpuContext: Send + Sync {
    /// The number of possible CPUs (`nr_cpu_ids`).
    fn nr_cpus(&self) -> usize;
    /// The CPU the caller runs on.
    fn current_cpu(&self) -> usize;
    /// Disables preemption (nests).
    fn preempt_disable(&self);
    /// Re-enables preemption (must pair with `preempt_enable`).
    fn preempt_enable(&self);

    /// The CPU the caller runs on, and whether the caller holds it
    /// exclusively: while it does, no other thread's `current_cpu` is that
    /// CPU. The default never grants exclusivity.
    ///
    /// A context that answers `true` must implement
    /// [`remote_fence`](CpuContext::remote_fence) as described there.
    #[inline]
    fn current_cpu_exclusive(&self) -> (usize, bool) {
        (self.current_cpu(), false)
    }

    /// [`current_cpu_exclusive`](CpuContext::current_cpu_exclusive) when
    /// the context can answer at once (a thread-local read, say), `None`
    /// when answering takes more (a search); the default always answers.
    /// The slab fast paths ask this first and branch on the answer as it
    /// is, leaving the other case to an out-of-line copy of themselves, so
    /// that the common case pays for no merge of the two ways of knowing.
    #[inline]
    fn current_cpu_quick(&self) -> Option<(usize, bool)> {
        Some(self.current_cpu_exclusive())
    }

    /// A full memory fence in the caller that also acts as one in every
    /// thread holding a CPU exclusively, at some point of that thread's
    /// execution between this call's start and end (`membarrier`, or an
    /// inter-processor interrupt). Its use: a thread stores to shared data,
    /// calls `remote_fence`, then loads; an exclusive owner stores, runs a
    /// compiler fence, then loads; one of the two is sure to see the other's
    /// store. The default is a plain fence, which is enough while no caller
    /// is ever exclusive.
    #[inline]
    fn remote_fence(&self) {
        fence(SeqCst);
    }
}
