//! The typed errors of per-CPU access.

/// Why a per-CPU operation was refused. The state is unchanged after every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PerCpuError {
    /// The CPU number is not below the number of possible CPUs.
    #[error("cpu {cpu} does not exist: there are {nr_cpus} possible cpus")]
    CpuOutOfRange {
        /// The CPU asked for.
        cpu: usize,
        /// The number of possible CPUs.
        nr_cpus: usize,
    },
    /// The caller tried to move to another CPU while preemption is disabled.
    #[error("cannot move to cpu {cpu}: preemption is disabled (preempt count {count})")]
    PreemptDisabled {
        /// The CPU asked for.
        cpu: usize,
        /// The preemption counter at the time of the call.
        count: usize,
    },
    /// The CPU's copy is held by another guard (a non-blocking access found it in use).
    #[error("the copy of cpu {cpu} is in use by another guard")]
    Busy {
        /// The CPU whose copy is held.
        cpu: usize,
    },
}
