//! The `PhysMemory` seam: where the bytes of a frame live.

use core::ptr::NonNull;

use crate::addr::{PAGE_SIZE, Pfn};

/// Where frames live: the kernel's direct (linear) map.
///
/// [`PhysMemory::direct_map`] answers for lowmem frames and `None` for
/// highmem frames, which is what makes `kmap` necessary; a map with no memory
/// behind it ([`NoMemory`]) answers `None` for every frame.
///
/// # Safety
///
/// Implementers guarantee, for every frame `pfn` for which `direct_map`
/// returns `Some(p)`:
/// 1. `p` is aligned to [`PAGE_SIZE`] and valid for reads and writes of
///    `PAGE_SIZE` bytes for as long as the implementer lives;
/// 2. the byte ranges of distinct frames do not overlap;
/// 3. the implementer itself never reads or writes those bytes, except in
///    [`PhysMemory::clear_frames`], so whoever owns a frame (the allocator
///    that handed it out) owns its bytes.
pub unsafe trait PhysMemory: Send + Sync {
    /// The direct-map address of `pfn` (`page_address` for lowmem), or `None`
    /// for highmem frames and frames without memory.
    fn direct_map(&self, pfn: Pfn) -> Option<NonNull<u8>>;

    /// The frame whose direct-map range contains `addr` (`virt_to_page`), or
    /// `None` if `addr` is not a direct-map address.
    fn virt_to_pfn(&self, addr: usize) -> Option<Pfn>;

    /// Whether frames have real memory behind them.
    fn has_memory(&self) -> bool;

    /// The address of frame 0 in a linear direct map, if the memory has one:
    /// `Some(base)` promises that `direct_map(pfn)`, whenever it is `Some`,
    /// is `base + pfn * PAGE_SIZE`, and that `virt_to_pfn(addr)`, whenever it
    /// is `Some(pfn)`, is `(addr - base) / PAGE_SIZE` (the kernel's
    /// `__va`/`__pa` arithmetic). Page allocators use it to turn an address
    /// into a frame without asking the memory. The default is `None`.
    fn linear_map_base(&self) -> Option<usize> {
        None
    }

    /// One past the last byte of the linear direct map that
    /// [`linear_map_base`](PhysMemory::linear_map_base) starts, if the memory
    /// knows it: every direct-map address lies in `[base, end)`, so an address
    /// outside it is not one of this memory's (`virt_addr_valid`'s first
    /// test). The range may hold holes, for which `virt_to_pfn` is `None`.
    /// The default is `None`.
    fn linear_map_end(&self) -> Option<usize> {
        None
    }

    /// Fills `count` frames from `pfn` with zeros, including highmem frames
    /// (which the implementer reaches by its own means). Returns `false` if
    /// some frame has no memory behind it.
    ///
    /// # Safety
    ///
    /// The caller owns the frames: no other reference to their bytes exists
    /// for the duration of the call.
    unsafe fn clear_frames(&self, pfn: Pfn, count: usize) -> bool {
        for i in 0..count {
            let Some(p) = self.direct_map(Pfn(pfn.0 + i)) else {
                return false;
            };
            // SAFETY: 1. the trait contract makes `p` valid for `PAGE_SIZE`
            // bytes of writes; 2. the caller owns the frame, so nobody else
            // accesses these bytes now.
            unsafe { p.as_ptr().write_bytes(0, PAGE_SIZE) };
        }
        true
    }
}

/// Physical memory with no bytes behind it: frames are pure numbers. For
/// device ranges (VRAM, DMA pools, ID spaces) and fast simulation.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMemory;

// SAFETY: `direct_map` never returns an address, so the contract holds vacuously.
unsafe impl PhysMemory for NoMemory {
    fn direct_map(&self, _pfn: Pfn) -> Option<NonNull<u8>> {
        None
    }

    fn virt_to_pfn(&self, _addr: usize) -> Option<Pfn> {
        None
    }

    fn has_memory(&self) -> bool {
        false
    }

    unsafe fn clear_frames(&self, _pfn: Pfn, _count: usize) -> bool {
        false
    }
}
