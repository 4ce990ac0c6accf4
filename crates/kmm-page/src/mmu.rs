//! The `Mmu` seam: mapping frames at virtual addresses, for vmalloc, kmap
//! and kernel stacks.

use core::ptr::NonNull;

use crate::addr::{PAGE_SIZE, Pfn, VirtAddr};

bitflags::bitflags! {
    /// Page protection of a mapping (the parts of `pgprot_t` kmm models).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Prot: u8 {
        /// Readable.
        const READ = 1 << 0;
        /// Writable.
        const WRITE = 1 << 1;
        /// Executable.
        const EXEC = 1 << 2;
    }
}

impl Prot {
    /// `PAGE_KERNEL`: read and write, no execute.
    pub const KERNEL: Prot = Prot::READ.union(Prot::WRITE);
}

/// Why a mapping operation failed. The page tables are unchanged after every error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MmuError {
    /// The address is not page aligned.
    #[error("virtual address {0:#x} is not page aligned")]
    Misaligned(VirtAddr),
    /// The address is outside the window this MMU maps.
    #[error("virtual address {0:#x} is outside the mappable window")]
    OutsideWindow(VirtAddr),
    /// Something is already mapped there.
    #[error("virtual address {va:#x} already maps pfn {pfn}")]
    AlreadyMapped {
        /// The address.
        va: VirtAddr,
        /// The frame mapped there.
        pfn: Pfn,
    },
    /// Nothing is mapped there.
    #[error("nothing is mapped at virtual address {0:#x}")]
    NotMapped(VirtAddr),
    /// The frame cannot be mapped (outside the physical memory, or in a hole).
    #[error("pfn {0} has no memory to map")]
    NoFrame(Pfn),
    /// The host refused another mapping (`vm.max_map_count` reached).
    #[error("the host's map count limit (vm.max_map_count) is reached")]
    MapCountExhausted,
    /// The host failed the mapping for another reason (an errno).
    #[error("the host failed to map: errno {0}")]
    Host(i32),
}

/// Maps frames at virtual addresses: the kernel page tables for the vmalloc,
/// pkmap and fixmap areas.
///
/// Contract:
/// - Addresses are page aligned and inside [`Mmu::window`]; anything else is
///   an error and changes nothing.
/// - `map` of an address that is mapped fails with [`MmuError::AlreadyMapped`];
///   `unmap` of one that is not fails with [`MmuError::NotMapped`].
/// - After `map(va, pfn, _)`, `translate(va + k)` is `Some(pfn)` for every
///   `k < PAGE_SIZE`; after `unmap(va)` it is `None`.
/// - [`Mmu::map_range`] is all or nothing.
///
/// Implementations: a software page table (`no_std`, deterministic; the
/// addresses are numbers, reached through [`Mmu::translate`] and the direct
/// map) and the host MMU of `kmm-host`, whose window is real address space
/// where a mapped page is the frame's memory, so [`Mmu::as_ptr`] gives a
/// pointer a program can write through.
pub trait Mmu: Send + Sync {
    /// The window `[start, end)` of virtual addresses this MMU maps.
    fn window(&self) -> (VirtAddr, VirtAddr);

    /// Maps the page at `va` to frame `pfn`.
    fn map(&self, va: VirtAddr, pfn: Pfn, prot: Prot) -> Result<(), MmuError>;

    /// Maps `pages` physically contiguous frames from `pfn` at `va` (the host
    /// does this with one `mmap`). All or nothing.
    fn map_range(&self, va: VirtAddr, pfn: Pfn, pages: usize, prot: Prot) -> Result<(), MmuError> {
        for i in 0..pages {
            let page_va = VirtAddr(va.0 + i * PAGE_SIZE);
            if let Err(e) = self.map(page_va, Pfn(pfn.0 + i), prot) {
                for j in 0..i {
                    let _ = self.unmap(VirtAddr(va.0 + j * PAGE_SIZE));
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Unmaps the page at `va` and returns the frame that was mapped there.
    fn unmap(&self, va: VirtAddr) -> Result<Pfn, MmuError>;

    /// The frame mapped at the page holding `va`, if any (a page-table walk,
    /// as `vmalloc_to_page` does).
    fn translate(&self, va: VirtAddr) -> Option<Pfn>;

    /// A pointer through which the caller may access the byte at `va`, when
    /// the mapping is real memory of this process (the host MMU); `None` for
    /// a software page table or an unmapped address.
    fn as_ptr(&self, va: VirtAddr) -> Option<NonNull<u8>>;

    /// Flushes the TLB for `[start, end)` (`flush_tlb_kernel_range`); a
    /// no-op where mappings take effect at once.
    fn flush_tlb_range(&self, start: VirtAddr, end: VirtAddr) {
        let _ = (start, end);
    }
}
