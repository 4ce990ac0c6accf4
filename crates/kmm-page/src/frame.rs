//! `PageFrame`, kmm's `struct page`: 24 bytes of metadata per frame (Linux: 64).
//!
//! Every field is an atomic used with relaxed ordering. The owner of a frame
//! (the buddy under its zone lock, a CPU's page list under its lock, a slab)
//! is the only writer; the lock that gives ownership orders the accesses.
//! Atomics make the frames `Sync` without `unsafe`, and on x86 a relaxed
//! atomic load or store is a plain `mov`.

use core::fmt;
use core::sync::atomic::{AtomicI32, AtomicU32, Ordering::Relaxed};

use kmm_gfp::{MigrateType, ZoneType};

bitflags::bitflags! {
    /// Page flags (`enum pageflags` in `include/linux/page-flags.h`), the
    /// ones kmm uses, in the low 16 bits of the frame's flags word.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PageFlags: u16 {
        /// `PG_locked`.
        const LOCKED = 1 << 0;
        /// `PG_referenced`.
        const REFERENCED = 1 << 1;
        /// `PG_uptodate`.
        const UPTODATE = 1 << 2;
        /// `PG_dirty`.
        const DIRTY = 1 << 3;
        /// `PG_lru`.
        const LRU = 1 << 4;
        /// `PG_head`: first page of a compound page.
        const HEAD = 1 << 5;
        /// A tail page of a compound page (Linux marks tails with `compound_head | 1`).
        const TAIL = 1 << 6;
        /// `PG_active`.
        const ACTIVE = 1 << 7;
        /// `PG_reserved`: never handed to the buddy allocator (memblock-reserved).
        const RESERVED = 1 << 8;
        /// `PG_private`: `private` holds owner data.
        const PRIVATE = 1 << 9;
        /// `PG_workingset` (SLUB: slab is on a node partial list).
        const WORKINGSET = 1 << 10;
        /// kmm: a lazy buddy's *locally free* block head (not coalescible, Barkley–Lee).
        const LOCALLY_FREE = 1 << 11;
        /// kmm: the frame is highmem (no permanent kernel mapping).
        const HIGHMEM = 1 << 12;
        /// kmm: a slab's frame (set by the slab layer).
        const SLAB = 1 << 13;
    }
}

/// What a frame is used as (`page_type`, top byte `PGTY_*` in 6.12+).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum PageType {
    /// No type: an ordinary page (allocated, a tail, or reserved).
    #[default]
    None = 0,
    /// `PGTY_buddy`: head of a free block on a buddy free list.
    Buddy = 1,
    /// Head of a free block on a per-CPU page list (Linux has no marker; kmm
    /// keeps one so a double free through the pcp lists is detected).
    Pcp = 2,
    /// `PGTY_slab`: belongs to a slab.
    Slab = 3,
    /// `PGTY_large_kmalloc`: a large kmalloc allocation.
    LargeKmalloc = 4,
    /// `PGTY_table`: a page table.
    Table = 5,
    /// `PGTY_guard`: a debug guard page.
    Guard = 6,
    /// `PGTY_offline`.
    Offline = 7,
}

impl PageType {
    #[inline]
    const fn from_bits(bits: u32) -> PageType {
        match bits {
            1 => PageType::Buddy,
            2 => PageType::Pcp,
            3 => PageType::Slab,
            4 => PageType::LargeKmalloc,
            5 => PageType::Table,
            6 => PageType::Guard,
            7 => PageType::Offline,
            _ => PageType::None,
        }
    }
}

/// Sentinel for "no frame" in list links.
pub(crate) const NIL: u32 = u32::MAX;
/// Sentinel for "not on any list".
pub(crate) const UNLINKED: u32 = u32::MAX - 1;

// Layout of the flags word.
const PG_MASK: u32 = 0xffff;
const ZONE_SHIFT: u32 = 16;
const ZONE_MASK: u32 = 0x7 << ZONE_SHIFT;
const MT_SHIFT: u32 = 19;
const MT_MASK: u32 = 0x7 << MT_SHIFT;
const ORDER_SHIFT: u32 = 22;
const ORDER_MASK: u32 = 0xf << ORDER_SHIFT;
const NO_ORDER: u32 = 0xf;
const TYPE_SHIFT: u32 = 26;
const TYPE_MASK: u32 = 0xf << TYPE_SHIFT;

/// The metadata of one page frame (`struct page`).
///
/// Layout (24 bytes): a list link of two 32-bit frame indices (Linux's
/// `lru`/`buddy_list`/`pcp_list`/`slab_list` union), a flags word packing
/// [`PageFlags`], the zone, the migrate type, the block order and the
/// [`PageType`], then `_refcount`, `_mapcount` and `private`.
pub struct PageFrame {
    pub(crate) next: AtomicU32,
    pub(crate) prev: AtomicU32,
    flags: AtomicU32,
    refcount: AtomicI32,
    mapcount: AtomicI32,
    private: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<PageFrame>() == 24);

impl Default for PageFrame {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}

impl PageFrame {
    /// A frame that is on no list, has no flags, zone `DMA`, no order, no
    /// type, reference count 0 and map count 0 (`_mapcount == -1`).
    #[inline]
    pub const fn new() -> PageFrame {
        PageFrame {
            next: AtomicU32::new(UNLINKED),
            prev: AtomicU32::new(UNLINKED),
            flags: AtomicU32::new(NO_ORDER << ORDER_SHIFT),
            refcount: AtomicI32::new(0),
            mapcount: AtomicI32::new(-1),
            private: AtomicU32::new(0),
        }
    }

    #[inline]
    fn update(&self, mask: u32, value: u32) {
        let old = self.flags.load(Relaxed);
        self.flags.store((old & !mask) | (value & mask), Relaxed);
    }

    /// The page flags.
    #[inline]
    pub fn flags(&self) -> PageFlags {
        PageFlags::from_bits_retain((self.flags.load(Relaxed) & PG_MASK) as u16)
    }

    /// Whether all of `flags` are set.
    #[inline]
    pub fn test(&self, flags: PageFlags) -> bool {
        self.flags().contains(flags)
    }

    /// Sets `flags` (`SetPageXxx`).
    #[inline]
    pub fn set(&self, flags: PageFlags) {
        let f = self.flags() | flags;
        self.update(PG_MASK, u32::from(f.bits()));
    }

    /// Clears `flags` (`ClearPageXxx`).
    #[inline]
    pub fn clear(&self, flags: PageFlags) {
        let f = self.flags() - flags;
        self.update(PG_MASK, u32::from(f.bits()));
    }

    /// The zone this frame belongs to (`page_zonenum`).
    #[inline]
    pub fn zone(&self) -> ZoneType {
        let idx = (self.flags.load(Relaxed) & ZONE_MASK) >> ZONE_SHIFT;
        ZoneType::from_index(idx as usize).unwrap_or(ZoneType::Normal)
    }

    /// Records the zone this frame belongs to (`set_page_zone`).
    #[inline]
    pub fn set_zone(&self, zone: ZoneType) {
        self.update(ZONE_MASK, (zone as u32) << ZONE_SHIFT);
    }

    /// The migrate type recorded in the frame (the free list it is on, or the
    /// type it was allocated for).
    #[inline]
    pub fn migratetype(&self) -> MigrateType {
        let idx = (self.flags.load(Relaxed) & MT_MASK) >> MT_SHIFT;
        MigrateType::from_index(idx as usize).unwrap_or(MigrateType::Unmovable)
    }

    /// Records the migrate type.
    #[inline]
    pub fn set_migratetype(&self, mt: MigrateType) {
        self.update(MT_MASK, (mt as u32) << MT_SHIFT);
    }

    /// The order of the block this frame heads, free or allocated, if any.
    #[inline]
    pub fn order(&self) -> Option<u32> {
        let o = (self.flags.load(Relaxed) & ORDER_MASK) >> ORDER_SHIFT;
        (o != NO_ORDER).then_some(o)
    }

    /// Records (or with `None` forgets) the order of the block this frame heads.
    #[inline]
    pub fn set_order(&self, order: Option<u32>) {
        let o = match order {
            Some(o) if o < NO_ORDER => o,
            _ => NO_ORDER,
        };
        self.update(ORDER_MASK, o << ORDER_SHIFT);
    }

    /// The page type.
    #[inline]
    pub fn page_type(&self) -> PageType {
        PageType::from_bits((self.flags.load(Relaxed) & TYPE_MASK) >> TYPE_SHIFT)
    }

    /// Sets the page type (`__SetPageBuddy` and friends; `PageType::None` clears it).
    #[inline]
    pub fn set_page_type(&self, ty: PageType) {
        self.update(TYPE_MASK, (ty as u32) << TYPE_SHIFT);
    }

    /// The reference count (`page_count`): 0 for a free frame, at least 1 for an allocated head.
    #[inline]
    pub fn refcount(&self) -> i32 {
        self.refcount.load(Relaxed)
    }

    /// Sets the reference count (`set_page_count`).
    #[inline]
    pub fn set_refcount(&self, count: i32) {
        self.refcount.store(count, Relaxed);
    }

    /// Takes a reference (`get_page`); returns the new count.
    #[inline]
    pub fn get_ref(&self) -> i32 {
        self.refcount.fetch_add(1, Relaxed) + 1
    }

    /// Drops a reference (`put_page_testzero`); returns the new count. Does
    /// nothing and returns 0 when the count is already 0.
    #[inline]
    pub fn put_ref(&self) -> i32 {
        let mut c = self.refcount.load(Relaxed);
        while c > 0 {
            match self
                .refcount
                .compare_exchange_weak(c, c - 1, Relaxed, Relaxed)
            {
                Ok(_) => return c - 1,
                Err(now) => c = now,
            }
        }
        0
    }

    /// The map count (`page_mapcount`: `_mapcount + 1`).
    #[inline]
    pub fn mapcount(&self) -> i32 {
        self.mapcount.load(Relaxed) + 1
    }

    /// Sets the map count (stored biased by −1, as Linux's `_mapcount`).
    #[inline]
    pub fn set_mapcount(&self, count: i32) {
        self.mapcount.store(count - 1, Relaxed);
    }

    /// The owner's private word (`page_private`): a free buddy head keeps its
    /// order here, a slab keeps its slab id.
    #[inline]
    pub fn private(&self) -> u32 {
        self.private.load(Relaxed)
    }

    /// Sets the private word (`set_page_private`).
    #[inline]
    pub fn set_private(&self, value: u32) {
        self.private.store(value, Relaxed);
    }

    /// Whether the frame is on some frame list.
    #[inline]
    pub fn is_linked(&self) -> bool {
        self.next.load(Relaxed) != UNLINKED
    }

    /// Resets every field to the state of [`PageFrame::new`] except the zone.
    #[inline]
    pub fn reset(&self) {
        let zone = self.zone();
        self.next.store(UNLINKED, Relaxed);
        self.prev.store(UNLINKED, Relaxed);
        self.flags.store(NO_ORDER << ORDER_SHIFT, Relaxed);
        self.set_zone(zone);
        self.refcount.store(0, Relaxed);
        self.mapcount.store(-1, Relaxed);
        self.private.store(0, Relaxed);
    }
}

impl fmt::Debug for PageFrame {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageFrame")
            .field("flags", &self.flags())
            .field("zone", &self.zone())
            .field("migratetype", &self.migratetype())
            .field("order", &self.order())
            .field("type", &self.page_type())
            .field("refcount", &self.refcount())
            .field("mapcount", &self.mapcount())
            .field("private", &self.private())
            .finish()
    }
}
