#![doc = include_str!("../README.md")]
#![no_std]
// `deny`, not `forbid`: `intrusive_adapter!` expands to an `unsafe impl Adapter`
// under its own `#[allow(unsafe_code)]`. No code of this crate uses `unsafe`.
#![deny(unsafe_code)]

extern crate alloc;

mod area;
mod error;
mod space;
pub mod stack;

pub use area::AreaKind;
pub use error::{FreeFailure, VmallocError};
pub use space::{VmAreaInfo, VmallocMeminfo, VmallocSpace, lazy_max_pages};

#[cfg(test)]
mod tests;
