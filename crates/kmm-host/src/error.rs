//! `HostError`: why the host platform refused a request.

use kmm_page::{Pfn, PfnRange};

/// Why a [`HostMemory`](crate::HostMemory) or [`HostCpus`](crate::HostCpus)
/// request failed. Bad input leaves the state unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Two of the memory ranges given to [`HostMemory::new`](crate::HostMemory::new) overlap.
    #[error("memory ranges {a:?} and {b:?} overlap")]
    Overlap {
        /// The lower range.
        a: PfnRange,
        /// The range that starts inside it.
        b: PfnRange,
    },
    /// The ranges reach further than a file offset or the address space can.
    #[error("memory up to frame {end} is more than the host can back")]
    TooLarge {
        /// One past the highest frame asked for.
        end: Pfn,
    },
    /// The frame has no memory behind it (a hole, or beyond the last range).
    #[error("frame {pfn} has no memory")]
    NoMemory {
        /// The frame asked for.
        pfn: Pfn,
    },
    /// A byte range runs past the end of its frame.
    #[error("{len} bytes at offset {offset} run past the end of a frame")]
    OutOfFrame {
        /// The offset inside the frame.
        offset: usize,
        /// The number of bytes.
        len: usize,
    },
    /// A system call failed.
    #[error("{op} failed")]
    Io {
        /// The system call.
        op: &'static str,
        /// What the host said.
        #[source]
        source: std::io::Error,
    },
    /// The CPU number is not below the number of CPUs.
    #[error("cpu {cpu} does not exist: there are {nr_cpus} cpus")]
    CpuOutOfRange {
        /// The CPU asked for.
        cpu: usize,
        /// The number of CPUs.
        nr_cpus: usize,
    },
    /// The thread is already bound to a CPU of this machine.
    #[error("this thread is already bound to cpu {cpu}")]
    AlreadyBound {
        /// The CPU the thread is bound to.
        cpu: usize,
    },
    /// The thread tried to move to another CPU while preemption is disabled.
    #[error("cannot bind to cpu {cpu}: preemption is disabled (preempt count {count})")]
    PreemptDisabled {
        /// The CPU asked for.
        cpu: usize,
        /// The thread's preemption counter.
        count: usize,
    },
    /// Another thread runs as this CPU, so it cannot be held exclusively, or
    /// a thread holds it exclusively, so no other can bind to it. CPU 0 is
    /// never exclusive: every unbound thread runs as CPU 0.
    #[error("cpu {cpu} is in use by another thread")]
    CpuBusy {
        /// The CPU asked for.
        cpu: usize,
    },
    /// The thread is exiting and its thread-local CPU state is gone.
    #[error("the thread is exiting and can no longer bind to a cpu")]
    ThreadExiting,
}

impl HostError {
    /// Wraps the error of system call `op`.
    pub(crate) fn io(op: &'static str) -> impl FnOnce(rustix::io::Errno) -> HostError {
        move |errno| HostError::Io {
            op,
            source: errno.into(),
        }
    }
}
