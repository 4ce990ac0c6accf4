#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod error;
mod guard;
mod hash;
mod highmem;

pub use error::{HighmemError, LocalKind};
pub use guard::{AtomicKmap, KmapGuard, LocalKmap, StackKmap};
pub use highmem::{Highmem, KM_MAX_IDX, LAST_PKMAP, PkmapStats};

#[cfg(test)]
mod tests;
