#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod counter;
mod cpu;
mod error;
mod fixed;
mod preempt;
mod var;

pub use counter::Counter;
pub use cpu::CpuContext;
pub use error::PerCpuError;
pub use fixed::FixedCpu;
pub use preempt::PreemptGuard;
pub use var::{CpuVarGuard, Iter, PerCpu, PerCpuGuard, put_cpu_var};

#[cfg(test)]
mod tests;
