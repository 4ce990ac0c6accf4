#![doc = include_str!("../README.md")]
//!
//! # Crate features
//!
//! - `eager-buddy` (default): [`DefaultBuddy`] is [`EagerBuddy`], Linux's
//!   merge-on-every-free buddy.
//! - `lazy-buddy`: [`DefaultBuddy`] is [`LazyBuddy`] (Barkley–Lee DELAY-2).
//!   Features only add: when both are on, `lazy-buddy` wins, so a downstream
//!   crate switches with `features = ["lazy-buddy"]` without turning defaults
//!   off. Both backends always compile; name them directly to hold both.
//! - `std` (default): host memory (a memfd mapped as the direct map) and host
//!   CPUs through `kmm-host`, and [`GlobalKmalloc`], kmalloc as Rust's global
//!   allocator. Without it the crate is `no_std` + `alloc`, and
//!   memory comes from [`Backing::NoMemory`] or a [`PhysMemory`] of your own.
#![no_std]
// `deny`, not `forbid`: the per-CPU chunk source hands vmalloc memory to the
// per-CPU allocator, and its module alone opts in.
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
#[expect(
    unsafe_code,
    reason = "`GlobalKmalloc` implements `GlobalAlloc`, an unsafe trait"
)]
mod global;
#[expect(
    unsafe_code,
    reason = "`kvrealloc` copies a block's bytes, which are host memory"
)]
pub mod kv;
mod manager;
#[expect(
    unsafe_code,
    reason = "per-CPU chunks: vmalloc memory handed to the per-CPU allocator"
)]
mod percpu_chunks;
pub mod procfs;
mod slab_facade;
pub mod vm;

#[cfg(feature = "std")]
pub use global::{GlobalKmalloc, GlobalKmallocStats};
pub use kmm_buddy::{BuddyBackend, BuddyStats, EagerBuddy, FreeBlock, LazyBuddy};
pub use kmm_gfp::{self as gfp, *};
pub use kmm_highmem::{self as highmem, Highmem, HighmemError};
pub use kmm_page::{
    self as page, MAX_PAGE_ORDER, NoMemory, PAGE_SIZE, PageAllocator, PageError, PageFrame, Pfn,
    PfnRange, PhysMemory,
};
pub use kmm_page::{Mmu, VirtAddr};
pub use kmm_percpu::{CpuContext, FixedCpu};
pub use kmm_percpu::{PercpuAllocator, PercpuCounter, PercpuError, PercpuPtr};
pub use kmm_slab::{
    self as slab, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, KmemCache, LocalCache, SlabAllocator,
    SlabError, SlabFlags, SlabInfo, SlabMeminfo, ZERO_SIZE_PTR,
};
pub use kmm_vmalloc::{self as vmalloc, VmallocError, VmallocSpace};
pub use kmm_zone::{Arch, MachineLayout, ZoneError, ZonedAllocator, snapshot::ZoneSnapshot};
pub use manager::{
    Backing, FrameState, KmmError, MachineConfig, MachineCpus, MemoryManager, MemorySpec, Summary,
};
pub use percpu_chunks::VmallocChunks;
pub use vm::VirtualLayout;

#[cfg(feature = "lazy-buddy")]
/// The buddy backend chosen by cargo feature: [`LazyBuddy`] (feature `lazy-buddy`).
pub type DefaultBuddy = LazyBuddy;

#[cfg(all(feature = "eager-buddy", not(feature = "lazy-buddy")))]
/// The buddy backend chosen by cargo feature: [`EagerBuddy`] (feature `eager-buddy`, the default).
pub type DefaultBuddy = EagerBuddy;

#[cfg(not(any(feature = "eager-buddy", feature = "lazy-buddy")))]
compile_error!(
    "kmm needs a buddy backend: enable feature `eager-buddy` (the default) or `lazy-buddy`"
);

#[cfg(test)]
mod tests;
