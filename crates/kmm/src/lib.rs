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
//!   CPUs through `kmm-host`. Without it the crate is `no_std` + `alloc`, and
//!   memory comes from [`Backing::NoMemory`] or a [`PhysMemory`] of your own.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod manager;
pub mod procfs;

pub use kmm_buddy::{BuddyBackend, BuddyStats, EagerBuddy, FreeBlock, LazyBuddy};
pub use kmm_gfp::{self as gfp, *};
pub use kmm_page::{
    self as page, MAX_PAGE_ORDER, NoMemory, PAGE_SIZE, PageAllocator, PageError, PageFrame, Pfn,
    PfnRange, PhysMemory,
};
pub use kmm_percpu::{CpuContext, FixedCpu};
pub use kmm_zone::{Arch, MachineLayout, ZoneError, ZonedAllocator, snapshot::ZoneSnapshot};
pub use manager::{
    Backing, FrameState, KmmError, MachineConfig, MemoryManager, MemorySpec, Summary,
};

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
