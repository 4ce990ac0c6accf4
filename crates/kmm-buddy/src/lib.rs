#![doc = include_str!("../README.md")]
//!
//! # Crate features
//!
//! - `debug-invariants` (off by default): run
//!   [`check_invariants`](BuddyBackend::check_invariants) after every
//!   operation that changes state and panic on the first violation. Slow; for
//!   tests and fuzzing. Unit tests of this crate always run with the checks.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[macro_use]
mod macros;

mod backend;
mod check;
mod eager;
mod freearea;
mod lazy;
mod pageblock;

pub use backend::{BuddyBackend, BuddyStats, FreeBlock};
pub use eager::EagerBuddy;
pub use lazy::{DelayCounts, LazyBuddy};

#[cfg(test)]
mod tests;
