#![doc = include_str!("../README.md")]
#![no_std]

extern crate alloc;

mod addr;
mod alloc_api;
mod frame;
mod list;
mod memmap;
mod mmu;
mod phys;
mod soft_mmu;

pub use addr::{
    MAX_PAGE_ORDER, NR_PAGE_ORDERS, PAGE_ALLOC_COSTLY_ORDER, PAGE_SHIFT, PAGE_SIZE,
    PAGEBLOCK_ORDER, Pfn, PhysAddr, VirtAddr, get_order,
};
pub use alloc_api::{PageAllocator, PageError};
pub use frame::{PageFlags, PageFrame, PageType};
pub use kmm_gfp as gfp;
pub use list::{FrameList, FrameListIter};
pub use memmap::{FrameIdx, MAX_FRAMES, MemMap, MemMapError, PfnRange};
pub use mmu::{Mmu, MmuError, Prot};
pub use phys::{NoMemory, PhysMemory};
pub use soft_mmu::SoftMmu;

#[cfg(test)]
mod tests;
