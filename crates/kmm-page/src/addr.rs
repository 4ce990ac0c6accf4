//! Page-granular address types: page frame numbers and physical and virtual addresses.

use core::fmt;

/// log2 of the page size (`PAGE_SHIFT`, 12 on x86).
pub const PAGE_SHIFT: u32 = 12;
/// The page size in bytes (`PAGE_SIZE`).
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// The largest buddy order (`MAX_PAGE_ORDER`, inclusive, 6.8+).
pub const MAX_PAGE_ORDER: u32 = 10;
/// The number of buddy orders (`NR_PAGE_ORDERS`).
pub const NR_PAGE_ORDERS: usize = MAX_PAGE_ORDER as usize + 1;
/// Orders above this are costly (`PAGE_ALLOC_COSTLY_ORDER`).
pub const PAGE_ALLOC_COSTLY_ORDER: u32 = 3;
/// Migrate types are tracked per block of this order (`pageblock_order`, x86-64 with hugetlb).
pub const PAGEBLOCK_ORDER: u32 = 9;

/// A page frame number: a physical address shifted right by [`PAGE_SHIFT`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Pfn(pub usize);

impl Pfn {
    /// The frame that holds physical address `addr` (`PFN_DOWN`).
    #[inline]
    pub const fn containing(addr: PhysAddr) -> Pfn {
        Pfn((addr.0 >> PAGE_SHIFT) as usize)
    }

    /// The first byte of this frame (`PFN_PHYS`).
    #[inline]
    pub const fn phys(self) -> PhysAddr {
        PhysAddr((self.0 as u64) << PAGE_SHIFT)
    }

    /// The frame number as an integer.
    #[inline]
    pub const fn get(self) -> usize {
        self.0
    }

    /// The frame `n` frames above this one, or `None` on overflow.
    #[inline]
    pub const fn checked_add(self, n: usize) -> Option<Pfn> {
        match self.0.checked_add(n) {
            Some(v) => Some(Pfn(v)),
            None => None,
        }
    }

    /// Whether this frame may start a block of `order` (`pfn & ((1 << order) - 1) == 0`).
    #[inline]
    pub const fn is_aligned(self, order: u32) -> bool {
        order < usize::BITS && self.0 & ((1usize << order) - 1) == 0
    }

    /// The buddy of the block of `order` starting here (`__find_buddy_pfn`).
    #[inline]
    pub const fn buddy(self, order: u32) -> Pfn {
        Pfn(self.0 ^ (1 << order))
    }
}

impl fmt::Debug for Pfn {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({})", self.0)
    }
}

impl fmt::Display for Pfn {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PhysAddr(pub u64);

impl PhysAddr {
    /// The address rounded down to its page.
    #[inline]
    pub const fn page_align_down(self) -> PhysAddr {
        PhysAddr(self.0 & !(PAGE_SIZE as u64 - 1))
    }

    /// The offset of the address inside its page.
    #[inline]
    pub const fn page_offset(self) -> usize {
        (self.0 & (PAGE_SIZE as u64 - 1)) as usize
    }
}

impl fmt::Debug for PhysAddr {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::LowerHex for PhysAddr {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// A kernel virtual address, as a number (addresses to dereference travel as `NonNull`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VirtAddr(pub usize);

impl VirtAddr {
    /// The address rounded down to its page.
    #[inline]
    pub const fn page_align_down(self) -> VirtAddr {
        VirtAddr(self.0 & !(PAGE_SIZE - 1))
    }

    /// The offset of the address inside its page.
    #[inline]
    pub const fn page_offset(self) -> usize {
        self.0 & (PAGE_SIZE - 1)
    }
}

impl fmt::Debug for VirtAddr {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

impl fmt::LowerHex for VirtAddr {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// The smallest order whose block holds `size` bytes (`get_order`); `get_order(0)` is 0.
pub const fn get_order(size: usize) -> u32 {
    if size <= PAGE_SIZE {
        return 0;
    }
    let pages = size.div_ceil(PAGE_SIZE);
    usize::BITS - (pages - 1).leading_zeros()
}
