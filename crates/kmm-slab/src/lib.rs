#![doc = include_str!("../README.md")]
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod allocator;
mod bulk;
mod cache;
mod error;
mod flags;
pub mod layout;
mod local;
#[expect(
    unsafe_code,
    reason = "the only module that reads and writes slab memory"
)]
mod raw;
mod table;

pub use allocator::{
    FastFree, KmemCache, SlabAllocator, SlabInfo, SlabMeminfo, SlowFree, ZERO_SIZE_PTR,
};
pub use error::SlabError;
pub use flags::{ParseSlabFlagsError, SlabFlags};
pub use layout::{
    KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, kmalloc_index, kmalloc_size_for_align,
    kmalloc_size_roundup,
};
pub use local::LocalCache;

#[cfg(test)]
#[expect(
    unsafe_code,
    reason = "tests plant bugs through raw pointers and provide a heap-backed `PhysMemory`"
)]
mod tests;
