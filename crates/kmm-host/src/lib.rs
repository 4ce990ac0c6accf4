#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]

mod cpus;
mod error;
#[expect(
    unsafe_code,
    reason = "the direct map is an mmap handed out as raw pointers"
)]
mod memory;

pub use cpus::{CpuBinding, HostCpus};
pub use error::HostError;
pub use memory::HostMemory;
