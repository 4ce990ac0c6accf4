#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]

mod cpus;
mod error;
#[expect(
    unsafe_code,
    reason = "the direct map is an mmap handed out as raw pointers"
)]
mod memory;
#[expect(
    unsafe_code,
    reason = "the host MMU maps frames into a reserved window with mmap(MAP_FIXED)"
)]
mod mmu;

pub use cpus::{CpuBinding, HostCpus};
pub use error::HostError;
pub use memory::HostMemory;
pub use mmu::HostMmu;
