//! The `CpuContext` seam: which CPU the caller runs on, and preemption.

/// Which CPU the caller runs on (`smp_processor_id`), how many there are,
/// and the preemption counter (`preempt_disable`/`preempt_enable`).
///
/// Contract: `current_cpu() < nr_cpus()` always; `nr_cpus()` never changes.
/// Between `preempt_disable` and the matching `preempt_enable` the caller
/// stays on its CPU (`current_cpu` does not change). Implementations:
/// [`FixedCpu`](crate::FixedCpu) (one CPU chosen by the caller, for tests and
/// the simulator) and `kmm_host::HostCpus` (threads bound to CPU slots).
pub trait CpuContext: Send + Sync {
    /// The number of possible CPUs (`nr_cpu_ids`).
    fn nr_cpus(&self) -> usize;
    /// The CPU the caller runs on.
    fn current_cpu(&self) -> usize;
    /// Disables preemption (nests).
    fn preempt_disable(&self);
    /// Re-enables preemption (must pair with `preempt_disable`).
    fn preempt_enable(&self);
}
