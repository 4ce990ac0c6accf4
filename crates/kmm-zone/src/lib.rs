#![doc = include_str!("../README.md")]
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod allocator;
mod error;
mod layout;
pub mod snapshot;
pub mod wmark;

pub use allocator::{NR_PCP_LISTS, ZonedAllocator, ZonedConfig};
pub use error::ZoneError;
pub use layout::{
    Arch, MAX_DMA_PFN, MAX_DMA32_PFN, MAX_LOWMEM_PFN_X86_32, MachineLayout, PCI_HOLE_START_PFN,
    ZoneSpec,
};
pub use snapshot::{PcpSnapshot, Watermarks, ZoneSnapshot};

#[cfg(test)]
mod tests;
