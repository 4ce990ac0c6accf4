#![doc = include_str!("../README.md")]
#![no_std]
// The crate hands out raw per-CPU memory (`per_cpu_ptr`), so it cannot forbid
// `unsafe`; it denies it everywhere but in `memory`, the one small module
// whose private fields carry the soundness argument.
#![deny(unsafe_code)]

extern crate alloc;

mod area;
mod bitmap;
#[expect(
    unsafe_code,
    reason = "a lock: readers' shared and the writer's exclusive access to its data"
)]
mod brlock;
mod counter;
mod cpu;
mod dynamic;
mod error;
mod fixed;
#[expect(
    unsafe_code,
    reason = "chunk memory: allocation, zeroing and atomic access to per-CPU copies"
)]
mod memory;
mod percpu_counter;
mod preempt;
mod statics;
mod var;

pub use bitmap::Bitmap;
pub use counter::Counter;
pub use cpu::CpuContext;
pub use dynamic::{
    ChunkInfo, PAGE_SIZE, PCPU_MIN_ALLOC_SIZE, PCPU_MIN_UNIT_SIZE, PERCPU_DYNAMIC_RESERVE,
    PERCPU_MODULE_RESERVE, PercpuAllocator, PercpuPtr,
};
pub use error::{PerCpuError, PercpuError};
pub use fixed::FixedCpu;
pub use memory::{ChunkMemory, ChunkSource, HeapChunks, NumberChunks, PercpuWord};
pub use percpu_counter::{PercpuCounter, percpu_counter_batch};
pub use preempt::PreemptGuard;
pub use statics::StaticPercpu;
pub use var::{CpuVarGuard, Iter, PerCpu, PerCpuGuard, put_cpu_var};

#[cfg(test)]
mod tests;
