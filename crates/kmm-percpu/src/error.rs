//! The typed errors of per-CPU access.

/// Why a per-CPU operation was refused. The state is unchanged after every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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

/// Why the per-CPU allocator ([`PercpuAllocator`](crate::PercpuAllocator))
/// refused a request. The allocator's state is unchanged after every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PercpuError {
    /// The size or alignment is illegal: `size == 0`, `size` above
    /// [`PCPU_MIN_UNIT_SIZE`](crate::PCPU_MIN_UNIT_SIZE), `align` not a power
    /// of two, or `align` above [`PAGE_SIZE`](crate::PAGE_SIZE) (the WARN
    /// "illegal size or align for percpu allocation" of `mm/percpu.c`).
    #[error("illegal size ({size}) or align ({align}) for percpu allocation")]
    IllegalSizeOrAlign {
        /// The size asked for, in bytes.
        size: usize,
        /// The alignment asked for, in bytes.
        align: usize,
    },
    /// No chunk has room and the chunk source could not provide a new one.
    #[error(
        "out of per-cpu memory: no room for {size} bytes and no new chunk of {chunk_bytes} bytes"
    )]
    OutOfMemory {
        /// The size asked for, in bytes.
        size: usize,
        /// The size of the chunk that could not be obtained, in bytes.
        chunk_bytes: usize,
    },
    /// The reserved region of the first chunk has no room for the request.
    #[error("the reserved per-cpu region has no room for {size} bytes aligned to {align}")]
    ReservedFull {
        /// The size asked for, in bytes.
        size: usize,
        /// The alignment asked for, in bytes.
        align: usize,
    },
    /// The address lies in no chunk of this allocator.
    #[error("{addr:#x} is not a per-cpu address of this allocator")]
    Foreign {
        /// The address given.
        addr: usize,
    },
    /// The address lies in a chunk, but no live dynamic allocation starts
    /// there: it was freed already, points inside an allocation, or into the
    /// static area.
    #[error("no live per-cpu allocation starts at {addr:#x} (freed twice?)")]
    NotAllocated {
        /// The address given.
        addr: usize,
    },
    /// The address lies in a chunk but in no live allocation or static variable.
    #[error("{addr:#x} is not inside a live per-cpu allocation")]
    NotLive {
        /// The address given.
        addr: usize,
    },
    /// A typed access does not fit in the allocation the address points into.
    #[error("a {size}-byte access at {addr:#x} runs past the end of its per-cpu allocation")]
    OutOfBounds {
        /// The address given.
        addr: usize,
        /// The size of the access, in bytes.
        size: usize,
    },
    /// A typed access is not aligned for its type.
    #[error("{addr:#x} is not aligned to {align} bytes")]
    Misaligned {
        /// The address given.
        addr: usize,
        /// The alignment the type needs, in bytes.
        align: usize,
    },
    /// The CPU number is not below the number of units per chunk.
    #[error("cpu {cpu} has no unit: there are {nr_cpus} possible cpus")]
    CpuOutOfRange {
        /// The CPU asked for.
        cpu: usize,
        /// The number of possible CPUs (units per chunk).
        nr_cpus: usize,
    },
    /// The chunk has no memory behind it (a [`NumberChunks`](crate::NumberChunks)
    /// chunk): addresses are numbers only, and contents cannot be reached.
    #[error("per-cpu chunk at {addr:#x} has no memory behind it")]
    NotBacked {
        /// The address of the chunk's first unit.
        addr: usize,
    },
    /// A chunk source handed out memory that is too small or not page aligned.
    #[error("chunk source returned {len} bytes at {addr:#x}, want {want} page-aligned bytes")]
    BadChunk {
        /// The address of the memory returned.
        addr: usize,
        /// Its length, in bytes.
        len: usize,
        /// The length asked for, in bytes.
        want: usize,
    },
    /// The static area is too small for another static variable.
    #[error(
        "static per-cpu variable {name} ({size} bytes, align {align}) does not fit in the static area"
    )]
    StaticAreaFull {
        /// The variable's name.
        name: &'static str,
        /// Its size, in bytes.
        size: usize,
        /// Its alignment, in bytes.
        align: usize,
    },
    /// The static variable is already registered with this allocator.
    #[error("static per-cpu variable {name} is already registered")]
    StaticAlreadyRegistered {
        /// The variable's name.
        name: &'static str,
    },
    /// The static variable was not registered with this allocator.
    #[error("static per-cpu variable {name} is not registered with this allocator")]
    StaticNotRegistered {
        /// The variable's name.
        name: &'static str,
    },
    /// The static size asked for at boot makes the unit size overflow.
    #[error("static area of {static_size} bytes is too large")]
    StaticTooLarge {
        /// The static size asked for, in bytes.
        static_size: usize,
    },
}
