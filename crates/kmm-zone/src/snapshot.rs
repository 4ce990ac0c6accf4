//! Point-in-time views of a zone, what the `/proc` renderers print.

use alloc::vec::Vec;

use kmm_buddy::BuddyStats;
use kmm_gfp::{MigrateType, ZoneType};
use kmm_page::NR_PAGE_ORDERS;

/// A zone's watermarks, in pages (`zone->_watermark[]` plus `watermark_boost`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// `WMARK_MIN`.
    pub min: usize,
    /// `WMARK_LOW`.
    pub low: usize,
    /// `WMARK_HIGH`.
    pub high: usize,
    /// `WMARK_PROMO`.
    pub promo: usize,
    /// `watermark_boost` (always 0 in kmm: nothing boosts it yet).
    pub boost: usize,
}

/// One CPU's page list state in one zone (`struct per_cpu_pages`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcpSnapshot {
    /// The CPU.
    pub cpu: usize,
    /// Pages held on the lists.
    pub count: usize,
    /// Drain threshold.
    pub high: usize,
    /// Refill and drain unit.
    pub batch: usize,
}

/// Everything `/proc/buddyinfo`, `/proc/pagetypeinfo`, `/proc/zoneinfo` and
/// `/proc/meminfo` print about one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSnapshot {
    /// NUMA node (always 0).
    pub node: usize,
    /// The zone.
    pub zone: ZoneType,
    /// Whether the zone has managed pages (`populated_zone`).
    pub populated: bool,
    /// First frame of the span (`zone_start_pfn`).
    pub start_pfn: usize,
    /// Frames in the span, holes included.
    pub spanned: usize,
    /// Frames present.
    pub present: usize,
    /// Frames handed to the buddy allocator.
    pub managed: usize,
    /// Free pages on the buddy lists (`NR_FREE_PAGES`; pcp pages excluded).
    pub free_pages: usize,
    /// Watermarks.
    pub watermarks: Watermarks,
    /// `lowmem_reserve[]`, one entry per zone of the node's layout, in zone order.
    pub lowmem_reserve: Vec<usize>,
    /// `free_area[order].nr_free`.
    pub nr_free: [usize; NR_PAGE_ORDERS],
    /// Blocks per order on each migrate type's list, indexed `[mt][order]`.
    pub nr_free_mt: [[usize; NR_PAGE_ORDERS]; MigrateType::COUNT],
    /// Pageblocks of each migrate type.
    pub pageblocks: [usize; MigrateType::COUNT],
    /// Per-CPU page lists, one entry per CPU (empty when pcp lists are off).
    pub pcp: Vec<PcpSnapshot>,
    /// The buddy's counters.
    pub stats: BuddyStats,
}
