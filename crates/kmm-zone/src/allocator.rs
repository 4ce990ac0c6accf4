//! `ZonedAllocator`: the zoned page allocator of `mm/page_alloc.c`. One
//! buddy per zone behind the zone lock, per-CPU page lists in front of it,
//! watermarks with `lowmem_reserve`, and zonelist fallback from the highest
//! zone a gfp allows downward.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};

use crossbeam_utils::CachePadded;
use kmm_buddy::{BuddyBackend, FreeBlock};
use kmm_gfp::{
    AllocFlags, Gfp, MigrateType, Watermark, ZoneConfig, ZoneType, gfp_migratetype,
    gfp_pfmemalloc_flags, gfp_to_alloc_flags, gfp_zone,
};
use kmm_page::{
    FrameIdx, FrameList, MAX_PAGE_ORDER, MemMap, PAGE_ALLOC_COSTLY_ORDER, PAGE_SHIFT, PAGE_SIZE,
    PageAllocator, PageError, PageFlags, PageFrame, PageType, Pfn, PhysMemory, get_order,
};
use kmm_percpu::CpuContext;
use spin::Mutex;

use crate::error::ZoneError;
use crate::layout::{MachineLayout, ZoneSpec};
use crate::snapshot::{PcpSnapshot, Watermarks, ZoneSnapshot};
use crate::wmark::{
    calculate_min_free_kbytes, nr_pcp_alloc, setup_per_zone_lowmem_reserve, setup_per_zone_wmarks,
    watermark_free_ok, zone_batchsize, zone_highsize, zone_highsize_max,
};

/// Orders served by the per-CPU lists (`pcp_allowed_order`, THP order excluded).
const PCP_MAX_ORDER: u32 = PAGE_ALLOC_COSTLY_ORDER;
/// Lists per CPU per zone: one per (order, pcp migrate type) (`NR_PCP_LISTS` without THP).
pub const NR_PCP_LISTS: usize = MigrateType::PCPTYPES * (PCP_MAX_ORDER as usize + 1);

/// How a [`ZonedAllocator`] is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZonedConfig {
    /// The machine.
    pub layout: MachineLayout,
    /// Whether order-0..=3 requests go through per-CPU page lists.
    pub pcp: bool,
    /// `vm.min_free_kbytes`; `None` computes it as Linux does at boot
    /// (`calculate_min_free_kbytes`), except on toy layouts, where `None`
    /// means 0 and every watermark is 0.
    pub min_free_kbytes: Option<usize>,
}

/// Which list of a CPU's pcp lists holds blocks of `order` and `mt` (`order_to_pindex`).
const fn pindex(order: u32, mt: MigrateType) -> usize {
    MigrateType::PCPTYPES * order as usize + mt.index()
}

/// The order of the blocks on list `pindex` (`pindex_to_order`).
const fn pindex_order(pindex: usize) -> u32 {
    (pindex / MigrateType::PCPTYPES) as u32
}

/// One CPU's page lists in one zone (`struct per_cpu_pages`).
///
/// `repr(C)` keeps `count` and `allocated` apart: adjacent, the compiler
/// updates both with one 16-byte load, which stalls on the two 8-byte stores
/// the previous call made (a failed store-to-load forward, a quarter of the
/// free path's time when measured).
#[derive(Debug)]
#[repr(C)]
struct PcpLists {
    /// Pages on the lists.
    count: usize,
    lists: [FrameList; NR_PCP_LISTS],
    /// Pages handed out from these lists minus pages freed to them; the
    /// zone's allocated pages are the sum of these and the zone's own count.
    allocated: isize,
}

impl PcpLists {
    /// Hands out the first block of list `pi` (of blocks of `order`), marked
    /// allocated; `None` if the list is empty.
    #[inline(always)]
    fn take(&mut self, map: &MemMap, pi: usize, order: u32) -> Option<Pfn> {
        let idx = self.lists[pi].pop_front(map)?;
        self.count -= 1 << order;
        self.allocated += 1 << order;
        unmark_pcp(map, idx);
        Some(map.pfn_of(idx))
    }

    fn new() -> PcpLists {
        PcpLists {
            lists: core::array::from_fn(|_| FrameList::new()),
            count: 0,
            allocated: 0,
        }
    }
}

/// What the zone lock protects.
#[derive(Debug)]
struct ZoneLocked<B> {
    buddy: B,
    /// Pages handed out straight from the buddy minus pages freed straight to it.
    allocated: isize,
}

/// One zone (`struct zone`).
struct Zone<B: BuddyBackend> {
    zone: ZoneType,
    map: Arc<MemMap>,
    /// Take it with [`Zone::lock`], which republishes the counters below.
    locked: Mutex<ZoneLocked<B>>,
    /// The buddy's free pages as of the last unlock (`NR_FREE_PAGES`, read
    /// without the lock by the watermark test, as Linux reads its vmstat).
    free_pages: CachePadded<AtomicUsize>,
    /// Bit `o` set when some per-CPU-type free list of order `o` is non-empty
    /// as of the last unlock (the order part of the watermark test).
    free_orders: AtomicU32,
    managed: usize,
    watermarks: Watermarks,
    lowmem_reserve: Vec<usize>,
    batch: usize,
    high: usize,
    high_max: usize,
    /// One entry per CPU, empty when the lists are off.
    pcp: Vec<CachePadded<Mutex<PcpLists>>>,
}

impl<B: BuddyBackend> Zone<B> {
    /// Takes the zone lock (`zone->lock`).
    fn lock(&self) -> ZoneGuard<'_, B> {
        ZoneGuard {
            zone: self,
            guard: self.locked.lock(),
        }
    }
}

/// The zone lock held; on release it publishes the buddy's free page count
/// and free orders for the lock-free watermark test.
struct ZoneGuard<'a, B: BuddyBackend> {
    zone: &'a Zone<B>,
    guard: spin::MutexGuard<'a, ZoneLocked<B>>,
}

impl<B: BuddyBackend> core::ops::Deref for ZoneGuard<'_, B> {
    type Target = ZoneLocked<B>;

    fn deref(&self) -> &ZoneLocked<B> {
        &self.guard
    }
}

impl<B: BuddyBackend> core::ops::DerefMut for ZoneGuard<'_, B> {
    fn deref_mut(&mut self) -> &mut ZoneLocked<B> {
        &mut self.guard
    }
}

impl<B: BuddyBackend> Drop for ZoneGuard<'_, B> {
    fn drop(&mut self) {
        // The lock is still held here: the guard field drops after this body.
        let buddy = &self.guard.buddy;
        self.zone.free_pages.store(buddy.free_pages(), Relaxed);
        self.zone.free_orders.store(free_order_mask(buddy), Relaxed);
    }
}

/// Bit `o` set when a per-CPU migrate type has a free block of order `o`.
fn free_order_mask<B: BuddyBackend>(buddy: &B) -> u32 {
    let mut mask = 0;
    for o in 0..=MAX_PAGE_ORDER {
        let pcp_types = &MigrateType::ALL[..MigrateType::PCPTYPES];
        if pcp_types.iter().any(|&t| buddy.nr_free_mt(o, t) > 0) {
            mask |= 1 << o;
        }
    }
    mask
}

/// Why one pass over the zonelist failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Miss {
    /// Every populated zone failed the watermark.
    Watermark,
    /// Some zone passed but had no block (or there was no populated zone).
    NoBlock,
}

/// The zoned page allocator (`mm/page_alloc.c`): zones of a [`MachineLayout`],
/// each with a `B` buddy, watermarks, `lowmem_reserve` and, optionally,
/// per-CPU page lists.
///
/// Reclaim is not modelled: no kswapd and no direct reclaim, compaction or
/// OOM killer. The only thing the slow path of a blocking request
/// (`__GFP_DIRECT_RECLAIM`) does besides retrying at the min watermark is what
/// `__alloc_pages_direct_reclaim` does after reclaim fails: drain every CPU's
/// page lists and retry once.
///
/// Locks: a CPU's page lists, then the zone lock (the kernel's order). The
/// allocator is `Send + Sync`.
pub struct ZonedAllocator<B: BuddyBackend> {
    layout: MachineLayout,
    zone_config: ZoneConfig,
    zones: Vec<Zone<B>>,
    min_free_kbytes: usize,
    pcp_on: bool,
    cpus: Arc<dyn CpuContext>,
    phys: Arc<dyn PhysMemory>,
    /// `phys.linear_map_base()`, for `virt_to_page` by arithmetic.
    linear: Option<usize>,
    /// The lowmem frame ranges, largest first, for `virt_to_page`.
    lowmem_ranges: Box<[FrameRange]>,
    /// `virt_to_page`'s fast path: the largest lowmem range that is all of
    /// its zone's map (where nearly every slab page lies), or an empty
    /// range when the memory has no linear direct map or no zone map is a
    /// single lowmem range.
    main: MainRange,
    linear_base: usize,
    /// The zonelist's head for each combination of the four zone modifier
    /// bits (`gfp & GFP_ZONEMASK`), for the allocation fast path.
    zonelist_heads: [ZonelistHead; 16],
    /// The position in `zones` of the zone with the most frames, where a
    /// free looks for its frame first.
    largest: usize,
    /// Internal operations that a backend refused (should stay 0; reported
    /// by `check_invariants`).
    internal_errors: AtomicUsize,
}

impl<B: BuddyBackend> fmt::Debug for ZonedAllocator<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZonedAllocator")
            .field("backend", &B::NAME)
            .field("layout", &self.layout)
            .field("min_free_kbytes", &self.min_free_kbytes)
            .field("pcp", &self.pcp_on)
            .field("nr_cpus", &self.cpus.nr_cpus())
            .finish_non_exhaustive()
    }
}

/// A run of lowmem frames of one zone's map: frames `start..start + len`
/// are entries `base..base + len` of `frames` (the zone map's own array).
#[derive(Clone, Debug)]
struct FrameRange {
    start: usize,
    len: usize,
    base: usize,
    frames: Arc<[PageFrame]>,
}

impl FrameRange {
    /// Whether the range is all of its zone map's frames, in order: frame
    /// `start + i` is entry `i` of `frames`, for every entry.
    fn is_whole_map(&self) -> bool {
        self.base == 0 && self.len == self.frames.len()
    }
}

/// The range of `virt_to_page`'s fast path: frames `start..start +
/// frames.len()` are `frames`, all of a zone map (see
/// [`FrameRange::is_whole_map`]), so the array's own bounds test is the
/// range test.
#[derive(Clone, Debug)]
struct MainRange {
    start: usize,
    frames: Arc<[PageFrame]>,
}

/// Where a zonelist starts: the highest zone a gfp's zone modifiers allow
/// (`gfp_zone`) and the first populated zone from there down, as positions
/// in `ZonedAllocator::zones`; both [`NO_ZONE`] for an invalid combination
/// or when no zone is populated. Zones do not change size after boot, so
/// the walk `get_page_from_freelist` starts with is known per combination.
#[derive(Clone, Copy, Debug)]
struct ZonelistHead {
    highest: u8,
    first: u8,
}

/// No zone (see [`ZonelistHead`]).
const NO_ZONE: u8 = u8::MAX;

/// The lowmem ranges of every zone, largest first (where most frees land),
/// and of two as large the higher first: the higher zone is where
/// `GFP_KERNEL` allocations land (on a 32 MiB x86-64 machine, `ZONE_DMA` and
/// `ZONE_DMA32` both span 16 MiB, and the slabs are all in `ZONE_DMA32`).
fn lowmem_ranges<B: BuddyBackend>(zones: &[Zone<B>], lowmem_end: Pfn) -> Box<[FrameRange]> {
    let mut out: Vec<FrameRange> = Vec::new();
    for z in zones {
        for r in z.map.ranges() {
            let end = r.end.min(lowmem_end);
            if r.start >= end {
                continue;
            }
            if let Some(base) = z.map.index_of(r.start) {
                out.push(FrameRange {
                    start: r.start.0,
                    len: end.0 - r.start.0,
                    base: base as usize,
                    frames: z.map.frames(),
                });
            }
        }
    }
    out.sort_by_key(|r| core::cmp::Reverse((r.len, r.start)));
    out.into_boxed_slice()
}

/// Checks the shape of a layout: zones strictly ascending, present ranges
/// disjoint, free ranges inside their zone's present ranges, some memory.
fn validate_layout(layout: &MachineLayout) -> Result<(), ZoneError> {
    if layout.zones.is_empty() {
        return Err(ZoneError::NoZones);
    }
    for w in layout.zones.windows(2) {
        if w[0].zone >= w[1].zone {
            return Err(ZoneError::ZoneOrder(w[1].zone));
        }
    }
    let all = layout.present_ranges();
    if all.is_empty() {
        return Err(ZoneError::Empty);
    }
    for w in all.windows(2) {
        if w[0].end > w[1].start {
            return Err(ZoneError::Overlap { a: w[0], b: w[1] });
        }
    }
    for spec in &layout.zones {
        if let Some(arch) = layout.arch {
            if !arch.zones().contains(&spec.zone) {
                return Err(ZoneError::ZoneNotInArch {
                    zone: spec.zone,
                    arch,
                });
            }
            let bounds = arch.zone_bounds(spec.zone);
            if let Some(&range) = spec
                .present
                .iter()
                .find(|r| !r.is_empty() && (r.start < bounds.start || r.end > bounds.end))
            {
                return Err(ZoneError::OutsideZone {
                    zone: spec.zone,
                    range,
                });
            }
        }
        for &range in spec.free.iter().filter(|r| !r.is_empty()) {
            let inside = spec
                .present
                .iter()
                .any(|p| p.start <= range.start && range.end <= p.end);
            if !inside {
                return Err(ZoneError::FreeNotPresent {
                    zone: spec.zone,
                    range,
                });
            }
        }
    }
    Ok(())
}

impl<B: BuddyBackend> ZonedAllocator<B> {
    /// Boots the allocator: one memory map and one buddy per zone, the free
    /// ranges handed to the buddies (`memblock_free_all`), then
    /// `min_free_kbytes`, the watermarks, `lowmem_reserve` and the per-CPU
    /// list sizes (`init_per_zone_wmark_min`, `zone_pcp_init`).
    ///
    /// # Errors
    ///
    /// [`ZoneError`] for a layout without memory, with zones out of order,
    /// overlapping ranges, free ranges that are not present, or ranges the
    /// memory map or the buddy refuse.
    pub fn new(
        cfg: ZonedConfig,
        cpus: Arc<dyn CpuContext>,
        phys: Arc<dyn PhysMemory>,
    ) -> Result<Self, ZoneError> {
        let layout = cfg.layout;
        validate_layout(&layout)?;
        let nr_cpus = cpus.nr_cpus().max(1);
        let mut built: Vec<(ZoneType, Arc<MemMap>, B)> = Vec::with_capacity(layout.zones.len());
        for ZoneSpec {
            zone,
            present,
            free,
        } in &layout.zones
        {
            let map = Arc::new(MemMap::new(present)?);
            for (_, frame) in map.iter() {
                frame.set_zone(*zone);
                if *zone == ZoneType::HighMem {
                    frame.set(PageFlags::HIGHMEM);
                }
            }
            let mut buddy = B::new(Arc::clone(&map));
            for &range in free.iter().filter(|r| !r.is_empty()) {
                buddy
                    .add_free_range(range)
                    .map_err(|source| ZoneError::Buddy {
                        zone: *zone,
                        range,
                        source,
                    })?;
            }
            built.push((*zone, map, buddy));
        }
        let sizes: Vec<(ZoneType, usize)> = built
            .iter()
            .map(|(z, _, b)| (*z, b.managed_pages()))
            .collect();
        let min_free_kbytes = match (cfg.min_free_kbytes, layout.arch) {
            (Some(k), _) => k,
            (None, None) => 0,
            (None, Some(_)) => calculate_min_free_kbytes(
                sizes
                    .iter()
                    .filter(|(z, _)| *z <= ZoneType::Normal)
                    .map(|(_, m)| m)
                    .sum(),
            ),
        };
        let watermarks = if cfg.min_free_kbytes.is_none() && layout.arch.is_none() {
            alloc::vec![Watermarks::default(); sizes.len()]
        } else {
            setup_per_zone_wmarks(min_free_kbytes, &sizes)
        };
        let reserves = setup_per_zone_lowmem_reserve(&sizes);
        let zones: Vec<Zone<B>> = built
            .into_iter()
            .zip(watermarks)
            .zip(reserves)
            .map(|(((zone, map, buddy), watermarks), lowmem_reserve)| {
                let managed = buddy.managed_pages();
                let batch = zone_batchsize(managed);
                let pcp = if cfg.pcp {
                    (0..nr_cpus)
                        .map(|_| CachePadded::new(Mutex::new(PcpLists::new())))
                        .collect()
                } else {
                    Vec::new()
                };
                let free_pages = CachePadded::new(AtomicUsize::new(buddy.free_pages()));
                let free_orders = AtomicU32::new(free_order_mask(&buddy));
                Zone {
                    zone,
                    map,
                    locked: Mutex::new(ZoneLocked {
                        buddy,
                        allocated: 0,
                    }),
                    free_pages,
                    free_orders,
                    managed,
                    watermarks,
                    lowmem_reserve,
                    batch,
                    high: zone_highsize(watermarks.low, batch, nr_cpus),
                    high_max: zone_highsize_max(managed, batch, nr_cpus),
                    pcp,
                }
            })
            .collect();
        let has = |z: ZoneType| layout.zones.iter().any(|s| s.zone == z);
        let zone_config = ZoneConfig {
            dma: has(ZoneType::Dma),
            dma32: has(ZoneType::Dma32),
            highmem: has(ZoneType::HighMem),
            movable: has(ZoneType::Movable),
        };
        let linear = phys.linear_map_base();
        let lowmem_ranges = lowmem_ranges::<B>(&zones, layout.lowmem_end());
        // The largest range that is its zone map's whole array, so that one
        // bounds test of the array is `virt_to_page`'s whole range test.
        let main = match linear.and(lowmem_ranges.iter().find(|r| r.is_whole_map())) {
            Some(r) => MainRange {
                start: r.start,
                frames: r.frames.clone(),
            },
            None => MainRange {
                start: 0,
                frames: Arc::from(Vec::new()),
            },
        };
        let zonelist_heads = core::array::from_fn(|m| {
            let none = ZonelistHead {
                highest: NO_ZONE,
                first: NO_ZONE,
            };
            let gfp = Gfp::from_bits_truncate(m as u32);
            let Ok(top) = gfp_zone(gfp, zone_config) else {
                return none;
            };
            let Some(highest) = zones.iter().rposition(|z| z.zone <= top) else {
                return none;
            };
            let first = zones[..=highest].iter().rposition(|z| z.managed != 0);
            match (u8::try_from(highest), first.map(u8::try_from)) {
                (Ok(highest), Some(Ok(first))) => ZonelistHead { highest, first },
                _ => none,
            }
        });
        let largest = (0..zones.len())
            .max_by_key(|&i| zones[i].managed)
            .unwrap_or(0);
        Ok(ZonedAllocator {
            layout,
            zone_config,
            zones,
            min_free_kbytes,
            pcp_on: cfg.pcp,
            cpus,
            phys,
            linear,
            lowmem_ranges,
            main,
            linear_base: linear.unwrap_or(0),
            zonelist_heads,
            largest,
            internal_errors: AtomicUsize::new(0),
        })
    }

    /// The machine layout.
    pub fn layout(&self) -> &MachineLayout {
        &self.layout
    }

    /// `vm.min_free_kbytes` in effect.
    pub fn min_free_kbytes(&self) -> usize {
        self.min_free_kbytes
    }

    /// The memory behind the frames.
    pub fn phys(&self) -> &Arc<dyn PhysMemory> {
        &self.phys
    }

    /// The CPUs.
    pub fn cpus(&self) -> &Arc<dyn CpuContext> {
        &self.cpus
    }

    /// The `high_max` bound of each zone's per-CPU lists, in layout order
    /// (reported only: kmm keeps `high` at `high_min`).
    pub fn pcp_high_max(&self) -> Vec<(ZoneType, usize)> {
        self.zones.iter().map(|z| (z.zone, z.high_max)).collect()
    }

    fn zone_pos(&self, pfn: Pfn) -> Option<usize> {
        self.zones.iter().position(|z| z.map.contains(pfn))
    }

    /// The zone of `pfn` and the frame's index in its map: one section
    /// lookup finds both. The largest zone, where most frames are, is asked
    /// first.
    #[inline(always)]
    fn zone_index_of(&self, pfn: Pfn) -> Option<(&Zone<B>, FrameIdx)> {
        if let Some(z) = self.zones.get(self.largest)
            && let Some(idx) = z.map.index_of(pfn)
        {
            return Some((z, idx));
        }
        self.zones
            .iter()
            .find_map(|z| z.map.index_of(pfn).map(|idx| (z, idx)))
    }

    /// The zone that holds `pfn` (`page_zonenum`), `None` for frames this
    /// allocator does not know.
    pub fn zone_of(&self, pfn: Pfn) -> Option<ZoneType> {
        self.zone_pos(pfn).map(|i| self.zones[i].zone)
    }

    /// The metadata of `pfn` (`pfn_to_page`).
    pub fn pfn_to_page(&self, pfn: Pfn) -> Option<&PageFrame> {
        let (zone, idx) = self.zone_index_of(pfn)?;
        zone.map.frame(idx)
    }

    /// The direct-map address of `pfn` (`page_address`): `None` for highmem
    /// frames, unknown frames and frames without memory behind them.
    pub fn page_address(&self, pfn: Pfn) -> Option<NonNull<u8>> {
        match self.zone_of(pfn)? {
            ZoneType::HighMem => None,
            _ => self.phys.direct_map(pfn),
        }
    }

    /// The CPU the caller runs on, clamped to the lists that exist.
    ///
    /// No preemption guard is taken: the list's own lock keeps it consistent
    /// (Linux pins the task only so that it keeps using the local list), and
    /// a caller that moved to another CPU meanwhile would simply use that
    /// CPU's list under that list's lock. This keeps the fast path at one
    /// atomic read-modify-write per call.
    fn this_cpu(&self, zone: &Zone<B>) -> usize {
        let cpu = self.cpus.current_cpu();
        // A division costs more than the rest of the fast path: only a
        // context that breaks its contract (`current_cpu < nr_cpus`) needs it.
        if cpu < zone.pcp.len() {
            cpu
        } else {
            cpu % zone.pcp.len().max(1)
        }
    }

    // ----------------------------------------------------------------- alloc

    /// Allocates `2^order` contiguous frames (`alloc_pages`, `mm/page_alloc.c`).
    ///
    /// The fast path tests every zone of the zonelist against its low
    /// watermark; the slow path retests at the min watermark with the gfp's
    /// alloc flags (`GFP_ATOMIC` may go down to 37.5 % of min,
    /// `__GFP_MEMALLOC` ignores watermarks unless `__GFP_NOMEMALLOC`), and a
    /// blocking request then drains the per-CPU lists and retries once. No
    /// reclaim is modelled. `__GFP_ZERO` zeroes the frames.
    ///
    /// # Errors
    ///
    /// [`PageError::OrderTooLarge`], [`PageError::BadGfpZone`],
    /// [`PageError::BelowWatermark`] when every allowed zone failed its
    /// watermark, [`PageError::NoBlock`] when some zone passed but had no block.
    pub fn alloc_pages(&self, gfp: Gfp, order: u32) -> Result<Pfn, PageError> {
        if let Some(pfn) = self.alloc_pcp_fast(gfp, order) {
            if gfp.contains(Gfp::ZERO) {
                self.zero_frames(pfn, order);
            }
            return Ok(pfn);
        }
        if order > MAX_PAGE_ORDER {
            return Err(PageError::OrderTooLarge {
                order,
                max: MAX_PAGE_ORDER,
            });
        }
        let highest =
            gfp_zone(gfp, self.zone_config).map_err(|_| PageError::BadGfpZone(gfp.bits()))?;
        let highest_idx = self
            .zones
            .iter()
            .rposition(|z| z.zone <= highest)
            .ok_or(PageError::NoBlock { order })?;
        let mt = gfp_migratetype(gfp);
        let pfn = self.alloc_pages_slowpath(gfp, order, mt, highest_idx)?;
        if gfp.contains(Gfp::ZERO) {
            self.zero_frames(pfn, order);
        }
        Ok(pfn)
    }

    /// The common case of the first `get_page_from_freelist` pass (the low
    /// watermark), inline: the zonelist's first populated zone passes its
    /// watermark and this CPU's list of the order and type has a block.
    /// `None`, with nothing changed, in every other case, which the full
    /// walk then handles as before (a refill from the buddy included).
    #[inline]
    fn alloc_pcp_fast(&self, gfp: Gfp, order: u32) -> Option<Pfn> {
        if order > PCP_MAX_ORDER || !self.pcp_on {
            return None;
        }
        let mt = gfp_migratetype(gfp);
        if !mt.is_mergeable() {
            return None;
        }
        let head = self.zonelist_heads[gfp.zone_modifiers().bits() as usize];
        let zone = self.zones.get(usize::from(head.first))?;
        let reserve = *zone.lowmem_reserve.get(usize::from(head.highest))?;
        let free = zone.free_pages.load(Relaxed);
        let low = zone.watermarks.low;
        if !watermark_free_ok(free, order, low, reserve, AllocFlags::WMARK_LOW) {
            return None;
        }
        if order > 0 && zone.free_orders.load(Relaxed) >> order == 0 {
            return None;
        }
        let cpu = self.this_cpu(zone);
        zone.pcp
            .get(cpu)?
            .lock()
            .take(&zone.map, pindex(order, mt), order)
    }

    fn alloc_pages_slowpath(
        &self,
        gfp: Gfp,
        order: u32,
        mt: MigrateType,
        highest_idx: usize,
    ) -> Result<Pfn, PageError> {
        let fail = |miss: Miss, flags: AllocFlags| match miss {
            Miss::NoBlock => PageError::NoBlock { order },
            Miss::Watermark => PageError::BelowWatermark {
                order,
                watermark: flags.watermark().map_or("min", Watermark::name),
            },
        };
        // Fast path (`get_page_from_freelist` with `ALLOC_WMARK_LOW`).
        if let Ok(pfn) = self.get_page_from_freelist(order, mt, highest_idx, AllocFlags::WMARK_LOW)
        {
            return Ok(pfn);
        }
        // Slow path: the min watermark with the gfp's reserve rights;
        // `__GFP_MEMALLOC` is tried on its own retry, as the kernel does.
        let mut flags = gfp_to_alloc_flags(gfp, order) - AllocFlags::NO_WATERMARKS;
        let mut miss = match self.get_page_from_freelist(order, mt, highest_idx, flags) {
            Ok(pfn) => return Ok(pfn),
            Err(m) => m,
        };
        let reserve = gfp_pfmemalloc_flags(gfp);
        if !reserve.is_empty() {
            flags = reserve;
            miss = match self.get_page_from_freelist(order, mt, highest_idx, flags) {
                Ok(pfn) => return Ok(pfn),
                Err(m) => m,
            };
        }
        if gfp.contains(Gfp::DIRECT_RECLAIM) {
            // `__alloc_pages_direct_reclaim`: after (unmodelled) reclaim
            // fails, drain the per-CPU lists and retry once.
            self.drain_all_pages();
            miss = match self.get_page_from_freelist(order, mt, highest_idx, flags) {
                Ok(pfn) => return Ok(pfn),
                Err(m) => m,
            };
        }
        Err(fail(miss, flags))
    }

    /// One pass over the zonelist (`get_page_from_freelist`): from the
    /// highest allowed zone down, skipping empty zones, the first zone that
    /// passes its watermark and has a block serves the request.
    fn get_page_from_freelist(
        &self,
        order: u32,
        mt: MigrateType,
        highest_idx: usize,
        flags: AllocFlags,
    ) -> Result<Pfn, Miss> {
        let mut miss = Miss::NoBlock;
        let mut any_populated = false;
        let mut any_passed = false;
        for zone in self.zones[..=highest_idx].iter().rev() {
            if zone.managed == 0 {
                continue;
            }
            any_populated = true;
            // The order part of `__zone_watermark_ok`: with no free block of
            // this order or above on the buddy lists, the per-CPU lists are
            // not consulted; the buddy is still asked, so that a lazy
            // backend may coalesce (an eager one fails, as Linux does).
            let mut use_pcp = true;
            if !flags.contains(AllocFlags::NO_WATERMARKS) {
                let mark = match flags.watermark() {
                    Some(Watermark::Low) => zone.watermarks.low,
                    Some(Watermark::High) => zone.watermarks.high,
                    _ => zone.watermarks.min,
                };
                let free = zone.free_pages.load(Relaxed);
                let ok =
                    watermark_free_ok(free, order, mark, zone.lowmem_reserve[highest_idx], flags);
                if order > 0 {
                    use_pcp = zone.free_orders.load(Relaxed) >> order != 0;
                }
                if !ok {
                    continue;
                }
            }
            any_passed = true;
            if let Ok(pfn) = self.rmqueue(zone, order, mt, use_pcp) {
                return Ok(pfn);
            }
        }
        if any_populated && !any_passed {
            miss = Miss::Watermark;
        }
        Err(miss)
    }

    /// Takes a block from a zone (`rmqueue`): through this CPU's lists for
    /// small orders, straight from the buddy otherwise.
    fn rmqueue(
        &self,
        zone: &Zone<B>,
        order: u32,
        mt: MigrateType,
        use_pcp: bool,
    ) -> Result<Pfn, PageError> {
        if use_pcp && self.pcp_on && order <= PCP_MAX_ORDER && mt.is_mergeable() {
            return self.rmqueue_pcplist(zone, order, mt);
        }
        let mut locked = zone.lock();
        let pfn = locked.buddy.alloc(order, mt)?;
        locked.allocated += 1 << order;
        Ok(pfn)
    }

    /// `rmqueue_pcplist`: the head of this CPU's list, refilled with
    /// `nr_pcp_alloc` blocks from the buddy (`rmqueue_bulk`, appended in the
    /// order the buddy hands them out) when empty.
    fn rmqueue_pcplist(
        &self,
        zone: &Zone<B>,
        order: u32,
        mt: MigrateType,
    ) -> Result<Pfn, PageError> {
        let cpu = self.this_cpu(zone);
        let mut pcp = zone.pcp[cpu].lock();
        let pi = pindex(order, mt);
        if pcp.lists[pi].is_empty() {
            let n = nr_pcp_alloc(zone.high, zone.batch, pcp.count, order);
            let mut locked = zone.lock();
            for _ in 0..n {
                let Ok(pfn) = locked.buddy.alloc(order, mt) else {
                    break;
                };
                let Some(idx) = zone.map.index_of(pfn) else {
                    self.internal_errors.fetch_add(1, Relaxed);
                    break;
                };
                mark_pcp(&zone.map, idx, order);
                if !pcp.lists[pi].push_back(&zone.map, idx) {
                    unmark_pcp(&zone.map, idx);
                    if locked.buddy.free(pfn, order).is_err() {
                        self.internal_errors.fetch_add(1, Relaxed);
                    }
                    break;
                }
                pcp.count += 1 << order;
            }
        }
        pcp.take(&zone.map, pi, order)
            .ok_or(PageError::NoBlock { order })
    }

    #[expect(
        unsafe_code,
        reason = "zeroing frames through `PhysMemory::clear_frames`"
    )]
    fn zero_frames(&self, pfn: Pfn, order: u32) {
        // SAFETY: the allocator has just handed out these `2^order` frames
        // to this caller and nobody else holds them, so no other reference
        // to their bytes exists. A `false` return (no memory behind the
        // frames) leaves nothing to zero.
        let _ = unsafe { self.phys.clear_frames(pfn, 1 << order) };
    }

    /// Allocates one frame (`alloc_page`).
    ///
    /// # Errors
    ///
    /// As [`ZonedAllocator::alloc_pages`].
    pub fn alloc_page(&self, gfp: Gfp) -> Result<Pfn, PageError> {
        self.alloc_pages(gfp, 0)
    }

    /// Allocates `2^order` frames and returns their direct-map address
    /// (`__get_free_pages`, `mm/page_alloc.c`); `__GFP_HIGHMEM` is dropped
    /// from `gfp`, since highmem frames have no address.
    ///
    /// # Errors
    ///
    /// As [`ZonedAllocator::alloc_pages`]; [`PageError::NoBackingMemory`]
    /// (before allocating anything) when no memory is behind the frames, and
    /// [`PageError::NoAddress`] when the block got has no direct-map address
    /// (the block is freed again).
    #[doc(alias = "__get_free_pages")]
    pub fn get_free_pages(&self, gfp: Gfp, order: u32) -> Result<NonNull<u8>, PageError> {
        // Refuse before allocating, so that the counters and pageblock types
        // are unchanged after the error.
        if !self.phys.has_memory() {
            return Err(PageError::NoBackingMemory);
        }
        let pfn = self.alloc_pages(gfp - Gfp::HIGHMEM, order)?;
        match self.page_address(pfn) {
            Some(addr) => Ok(addr),
            None => {
                if self.free_pages(pfn, order).is_err() {
                    self.internal_errors.fetch_add(1, Relaxed);
                }
                Err(PageError::NoAddress(pfn))
            }
        }
    }

    /// One frame's address (`__get_free_page`).
    ///
    /// # Errors
    ///
    /// As [`ZonedAllocator::get_free_pages`].
    #[doc(alias = "__get_free_page")]
    pub fn get_free_page(&self, gfp: Gfp) -> Result<NonNull<u8>, PageError> {
        self.get_free_pages(gfp, 0)
    }

    /// One zeroed frame's address (`get_zeroed_page`, `mm/page_alloc.c`).
    ///
    /// # Errors
    ///
    /// As [`ZonedAllocator::get_free_pages`].
    pub fn get_zeroed_page(&self, gfp: Gfp) -> Result<NonNull<u8>, PageError> {
        self.get_free_pages(gfp | Gfp::ZERO, 0)
    }

    /// Allocates exactly `ceil(size / PAGE_SIZE)` contiguous frames
    /// (`alloc_pages_exact`, `mm/page_alloc.c`): a block of
    /// `get_order(size)` split into order-0 pages, the pages past the end
    /// freed. `__GFP_COMP` and `__GFP_HIGHMEM` are dropped from `gfp`.
    ///
    /// # Errors
    ///
    /// [`PageError::ZeroSize`] for 0, otherwise as [`ZonedAllocator::alloc_pages`].
    pub fn alloc_pages_exact(&self, size: usize, gfp: Gfp) -> Result<Pfn, PageError> {
        if size == 0 {
            return Err(PageError::ZeroSize);
        }
        let order = get_order(size);
        let nr_pages = size.div_ceil(PAGE_SIZE);
        let pfn = self.alloc_pages(gfp - (Gfp::COMP | Gfp::HIGHMEM), order)?;
        if order > 0 {
            let pos = self.zone_pos(pfn).ok_or(PageError::OutOfRange(pfn))?;
            let split = self.zones[pos].lock().buddy.split(pfn, order);
            if let Err(e) = split {
                if self.free_pages(pfn, order).is_err() {
                    self.internal_errors.fetch_add(1, Relaxed);
                }
                return Err(e);
            }
            for p in nr_pages..(1usize << order) {
                if self.free_pages(Pfn(pfn.0 + p), 0).is_err() {
                    self.internal_errors.fetch_add(1, Relaxed);
                }
            }
        }
        Ok(pfn)
    }

    // ------------------------------------------------------------------ free

    /// Frees a block allocated with the same order (`__free_pages`,
    /// `mm/page_alloc.c`): orders up to 3 go to the head of this CPU's list,
    /// which drains `batch` pages to the buddy when it reaches `high`.
    ///
    /// # Errors
    ///
    /// [`PageError::OrderTooLarge`], [`PageError::OutOfRange`] for a frame of
    /// no zone, [`PageError::DoubleFree`] for a block already free (on the
    /// buddy or a per-CPU list), and the buddy's checks (reserved,
    /// misaligned, not allocated, wrong order). Nothing changes on error.
    #[doc(alias = "__free_pages")]
    pub fn free_pages(&self, pfn: Pfn, order: u32) -> Result<(), PageError> {
        if order > MAX_PAGE_ORDER {
            return Err(PageError::OrderTooLarge {
                order,
                max: MAX_PAGE_ORDER,
            });
        }
        let (zone, idx) = self.zone_index_of(pfn).ok_or(PageError::OutOfRange(pfn))?;
        let frame = zone.map.frame(idx).ok_or(PageError::OutOfRange(pfn))?;
        if frame.page_type() == PageType::Pcp {
            return Err(PageError::DoubleFree(pfn));
        }
        let mt = pcp_list_type(frame.migratetype());
        if let Some(mt) = mt
            && self.pcp_on
            && order <= PCP_MAX_ORDER
            && check_free(frame, pfn, order).is_ok()
        {
            return self.free_to_pcp(zone, pfn, idx, order, mt);
        }
        let mut locked = zone.lock();
        locked.buddy.free(pfn, order)?;
        locked.allocated -= 1 << order;
        Ok(())
    }

    /// `free_unref_page_commit`: the block goes to the head of this CPU's
    /// list; at `count >= high`, `free_pcppages_bulk` returns `batch` pages.
    fn free_to_pcp(
        &self,
        zone: &Zone<B>,
        pfn: Pfn,
        idx: FrameIdx,
        order: u32,
        mt: MigrateType,
    ) -> Result<(), PageError> {
        let cpu = self.this_cpu(zone);
        let mut pcp = zone.pcp[cpu].lock();
        let pi = pindex(order, mt);
        // A frame still linked somewhere is not an allocated block.
        if zone.map.frame(idx).is_some_and(PageFrame::is_linked) {
            return Err(PageError::NotAllocated(pfn));
        }
        mark_pcp(&zone.map, idx, order);
        if !pcp.lists[pi].push_front(&zone.map, idx) {
            unmark_pcp(&zone.map, idx);
            return Err(PageError::NotAllocated(pfn));
        }
        pcp.count += 1 << order;
        pcp.allocated -= 1 << order;
        if pcp.count >= zone.high {
            // `nr_pcp_free` without the `free_count` scaling.
            let to_free = if zone.high < zone.batch {
                1
            } else {
                zone.batch
            };
            self.free_pcppages_bulk(zone, &mut pcp, to_free, pi);
        }
        Ok(())
    }

    /// `free_pcppages_bulk` (`mm/page_alloc.c`): returns at least `count`
    /// pages (whole blocks) to the buddy, from the tails of the lists, list
    /// by list round-robin starting with `start`.
    fn free_pcppages_bulk(&self, zone: &Zone<B>, pcp: &mut PcpLists, count: usize, start: usize) {
        let mut count = count.min(pcp.count) as isize;
        let mut p = start + NR_PCP_LISTS - 1;
        let mut locked = zone.lock();
        while count > 0 {
            let mut tries = 0;
            loop {
                p = (p + 1) % NR_PCP_LISTS;
                tries += 1;
                if !pcp.lists[p].is_empty() || tries > NR_PCP_LISTS {
                    break;
                }
            }
            if pcp.lists[p].is_empty() {
                // The count says pages remain but no list holds any.
                self.internal_errors.fetch_add(1, Relaxed);
                return;
            }
            let order = pindex_order(p);
            while let Some(idx) = pcp.lists[p].pop_back(&zone.map) {
                count -= 1 << order;
                pcp.count -= 1 << order;
                self.pcp_to_buddy(zone, &mut locked.buddy, idx, order);
                if count <= 0 {
                    break;
                }
            }
        }
    }

    /// Hands a block from a per-CPU list back to the buddy.
    fn pcp_to_buddy(&self, zone: &Zone<B>, buddy: &mut B, idx: FrameIdx, order: u32) {
        unmark_pcp(&zone.map, idx);
        if buddy.free(zone.map.pfn_of(idx), order).is_err() {
            self.internal_errors.fetch_add(1, Relaxed);
        }
    }

    /// Frees the block at direct-map address `addr` (`free_pages`,
    /// `mm/page_alloc.c`).
    ///
    /// # Errors
    ///
    /// [`PageError::OutOfRange`] for an address outside the direct map (the
    /// frame number given is `addr >> PAGE_SHIFT`), [`PageError::Misaligned`]
    /// for an address inside a page, otherwise as [`ZonedAllocator::free_pages`].
    #[doc(alias = "free_pages")]
    pub fn free_pages_addr(&self, addr: NonNull<u8>, order: u32) -> Result<(), PageError> {
        let a = addr.as_ptr().addr();
        let pfn = self
            .phys
            .virt_to_pfn(a)
            .ok_or(PageError::OutOfRange(Pfn(a >> PAGE_SHIFT)))?;
        if !a.is_multiple_of(PAGE_SIZE) {
            return Err(PageError::Misaligned { pfn, order });
        }
        self.free_pages(pfn, order)
    }

    /// Frees one frame (`free_page` of a `struct page`, `__free_page`).
    ///
    /// # Errors
    ///
    /// As [`ZonedAllocator::free_pages`].
    pub fn free_page(&self, pfn: Pfn) -> Result<(), PageError> {
        self.free_pages(pfn, 0)
    }

    /// Frees `ceil(size / PAGE_SIZE)` frames from [`alloc_pages_exact`](ZonedAllocator::alloc_pages_exact)
    /// (`free_pages_exact`, `mm/page_alloc.c`). Every frame is checked
    /// before any is freed.
    ///
    /// # Errors
    ///
    /// [`PageError::ZeroSize`] for 0, otherwise the first frame's error as
    /// [`ZonedAllocator::free_pages`] reports it; nothing is freed then.
    pub fn free_pages_exact(&self, pfn: Pfn, size: usize) -> Result<(), PageError> {
        if size == 0 {
            return Err(PageError::ZeroSize);
        }
        let nr_pages = size.div_ceil(PAGE_SIZE);
        for p in 0..nr_pages {
            let pfn = Pfn(pfn.0.checked_add(p).ok_or(PageError::OutOfRange(pfn))?);
            let frame = self.pfn_to_page(pfn).ok_or(PageError::OutOfRange(pfn))?;
            check_free(frame, pfn, 0)?;
        }
        for p in 0..nr_pages {
            self.free_pages(Pfn(pfn.0 + p), 0)?;
        }
        Ok(())
    }

    /// Returns every CPU's page lists to the buddies, then lets each buddy
    /// coalesce what it deferred (`drain_all_pages`, `mm/page_alloc.c`, plus
    /// [`BuddyBackend::drain`]).
    pub fn drain_all_pages(&self) {
        for zone in &self.zones {
            for slot in &zone.pcp {
                let mut pcp = slot.lock();
                let mut locked = zone.lock();
                for p in 0..NR_PCP_LISTS {
                    let order = pindex_order(p);
                    while let Some(idx) = pcp.lists[p].pop_back(&zone.map) {
                        pcp.count -= 1 << order;
                        self.pcp_to_buddy(zone, &mut locked.buddy, idx, order);
                    }
                }
            }
            zone.lock().buddy.drain();
        }
    }

    // ----------------------------------------------------------- inspection

    /// One snapshot per zone of the layout, in zone order, populated or not.
    pub fn snapshots(&self) -> Vec<ZoneSnapshot> {
        self.zones
            .iter()
            .map(|zone| {
                let pcp: Vec<PcpSnapshot> = zone
                    .pcp
                    .iter()
                    .enumerate()
                    .map(|(cpu, slot)| PcpSnapshot {
                        cpu,
                        count: slot.lock().count,
                        high: zone.high,
                        batch: zone.batch,
                    })
                    .collect();
                let locked = zone.lock();
                let b = &locked.buddy;
                let span = zone.map.span();
                ZoneSnapshot {
                    node: 0,
                    zone: zone.zone,
                    populated: zone.managed > 0,
                    start_pfn: span.map_or(0, |s| s.start.0),
                    spanned: span.map_or(0, |s| s.len()),
                    present: zone.map.len(),
                    managed: zone.managed,
                    free_pages: b.free_pages(),
                    watermarks: zone.watermarks,
                    lowmem_reserve: zone.lowmem_reserve.clone(),
                    nr_free: core::array::from_fn(|o| b.nr_free(o as u32)),
                    nr_free_mt: core::array::from_fn(|mt| {
                        core::array::from_fn(|o| b.nr_free_mt(o as u32, MigrateType::ALL[mt]))
                    }),
                    pageblocks: b.pageblock_counts(),
                    pcp,
                    stats: b.stats().clone(),
                }
            })
            .collect()
    }

    /// Every free block on every zone's buddy lists.
    pub fn free_blocks(&self) -> Vec<(ZoneType, FreeBlock)> {
        self.zones
            .iter()
            .flat_map(|zone| {
                let blocks = zone.lock().buddy.free_blocks();
                blocks.into_iter().map(move |b| (zone.zone, b))
            })
            .collect()
    }

    /// Every block on a per-CPU list: zone, CPU, first frame, order.
    pub fn pcp_blocks(&self) -> Vec<(ZoneType, usize, Pfn, u32)> {
        let mut out = Vec::new();
        for zone in &self.zones {
            for (cpu, slot) in zone.pcp.iter().enumerate() {
                let pcp = slot.lock();
                for (p, list) in pcp.lists.iter().enumerate() {
                    for idx in list.iter(&zone.map) {
                        out.push((zone.zone, cpu, zone.map.pfn_of(idx), pindex_order(p)));
                    }
                }
            }
        }
        out
    }

    /// Checks every buddy's invariants, every per-CPU list (frames marked
    /// `Pcp` with reference count 0 and the list's order, aligned, in the
    /// zone, counts right, no block both on a list and free in the buddy, no
    /// overlap) and conservation: buddy free + per-CPU + allocated pages ==
    /// managed pages, per zone.
    ///
    /// # Errors
    ///
    /// A description of the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        let errors = self.internal_errors.load(Relaxed);
        if errors != 0 {
            return Err(format!(
                "{errors} internal operations were refused by a buddy backend"
            ));
        }
        for zone in &self.zones {
            let name = zone.zone;
            let pcps: Vec<_> = zone.pcp.iter().map(|slot| slot.lock()).collect();
            let locked = zone.lock();
            locked
                .buddy
                .check_invariants()
                .map_err(|e| format!("zone {name}: buddy: {e}"))?;
            if locked.buddy.managed_pages() != zone.managed {
                return Err(format!("zone {name}: managed pages changed"));
            }
            // Every free or cached block, by first frame: (order, what).
            let mut blocks: BTreeMap<usize, (u32, &str)> = BTreeMap::new();
            for b in locked.buddy.free_blocks() {
                blocks.insert(b.pfn.0, (b.order, "buddy"));
            }
            let mut pcp_pages = 0usize;
            let mut allocated = locked.allocated;
            for (cpu, pcp) in pcps.iter().enumerate() {
                let mut counted = 0usize;
                for (p, list) in pcp.lists.iter().enumerate() {
                    let order = pindex_order(p);
                    for idx in list.iter(&zone.map) {
                        let pfn = zone.map.pfn_of(idx);
                        let Some(f) = zone.map.frame(idx) else {
                            return Err(format!("zone {name} cpu {cpu}: bad frame index {idx}"));
                        };
                        if f.page_type() != PageType::Pcp
                            || f.refcount() != 0
                            || f.order() != Some(order)
                        {
                            return Err(format!(
                                "zone {name} cpu {cpu}: pfn {pfn} on list {p} is {f:?}"
                            ));
                        }
                        if !pfn.is_aligned(order)
                            || (0..1usize << order).any(|i| !zone.map.contains(Pfn(pfn.0 + i)))
                        {
                            return Err(format!(
                                "zone {name} cpu {cpu}: block {pfn}/{order} misplaced"
                            ));
                        }
                        if blocks.insert(pfn.0, (order, "pcp")).is_some() {
                            return Err(format!("zone {name}: block {pfn} is on two lists"));
                        }
                        counted += 1 << order;
                    }
                }
                if counted != pcp.count {
                    return Err(format!(
                        "zone {name} cpu {cpu}: count {} but lists hold {counted} pages",
                        pcp.count
                    ));
                }
                pcp_pages += counted;
                allocated += pcp.allocated;
            }
            let mut end = 0usize;
            for (&start, &(order, what)) in &blocks {
                if start < end {
                    return Err(format!(
                        "zone {name}: {what} block {start}/{order} overlaps another"
                    ));
                }
                end = start + (1usize << order);
            }
            let free = locked.buddy.free_pages();
            if allocated < 0 || free + pcp_pages + allocated as usize != zone.managed {
                return Err(format!(
                    "zone {name}: free {free} + pcp {pcp_pages} + allocated {allocated} != managed {}",
                    zone.managed
                ));
            }
        }
        Ok(())
    }
}

/// The pcp list a freed block of type `mt` goes to: HighAtomic and CMA
/// blocks go to the movable list, isolated blocks bypass the lists.
fn pcp_list_type(mt: MigrateType) -> Option<MigrateType> {
    match mt {
        MigrateType::Unmovable | MigrateType::Movable | MigrateType::Reclaimable => Some(mt),
        MigrateType::HighAtomic | MigrateType::Cma => Some(MigrateType::Movable),
        MigrateType::Isolate => None,
    }
}

/// Whether `frame` looks like the head of an allocated block of `order`,
/// the checks a buddy makes before freeing (used before a block goes to a
/// per-CPU list instead, and by `free_pages_exact`).
fn check_free(frame: &PageFrame, pfn: Pfn, order: u32) -> Result<(), PageError> {
    if frame.test(PageFlags::RESERVED) {
        return Err(PageError::Reserved(pfn));
    }
    if !pfn.is_aligned(order) {
        return Err(PageError::Misaligned { pfn, order });
    }
    match frame.page_type() {
        PageType::Buddy | PageType::Pcp => return Err(PageError::DoubleFree(pfn)),
        PageType::None => {}
        _ => return Err(PageError::NotAllocated(pfn)),
    }
    if frame.refcount() < 1 || frame.test(PageFlags::TAIL) || frame.is_linked() {
        return Err(PageError::NotAllocated(pfn));
    }
    match frame.order() {
        Some(o) if o != order => Err(PageError::WrongOrder {
            pfn,
            allocated: o,
            given: order,
        }),
        None if order != 0 => Err(PageError::NotAllocated(pfn)),
        _ => Ok(()),
    }
}

/// Marks a block as parked on a per-CPU list.
fn mark_pcp(map: &MemMap, idx: FrameIdx, order: u32) {
    if let Some(f) = map.frame(idx) {
        f.set_refcount(0);
        f.set_page_type(PageType::Pcp);
        f.set_order(Some(order));
    }
}

/// Marks a block taken off a per-CPU list as allocated (reference count 1).
fn unmark_pcp(map: &MemMap, idx: FrameIdx) {
    if let Some(f) = map.frame(idx) {
        f.set_page_type(PageType::None);
        f.set_refcount(1);
    }
}

impl<B: BuddyBackend> PageAllocator for ZonedAllocator<B> {
    fn alloc_pages(&self, gfp: Gfp, order: u32) -> Result<Pfn, PageError> {
        ZonedAllocator::alloc_pages(self, gfp, order)
    }

    fn free_pages(&self, pfn: Pfn, order: u32) -> Result<(), PageError> {
        ZonedAllocator::free_pages(self, pfn, order)
    }

    fn pfn_to_page(&self, pfn: Pfn) -> Option<&PageFrame> {
        ZonedAllocator::pfn_to_page(self, pfn)
    }

    fn phys_memory(&self) -> &dyn PhysMemory {
        &*self.phys
    }

    /// With a linear direct map this is `__pa` arithmetic and, for the
    /// largest lowmem range that is a whole zone map (where nearly every
    /// page the slab layer holds lies), one bounds test, with no call into
    /// the memory: what `kfree`
    /// pays on every call, so always inlined (a caller that names
    /// `ZonedAllocator` gets it without a call). Other addresses take
    /// `virt_to_page_rest`.
    #[inline(always)]
    fn virt_to_page(&self, addr: usize) -> Option<(Pfn, &PageFrame)> {
        if let Some(answer) = self.virt_to_page_quick(addr) {
            return Some(answer);
        }
        self.virt_to_page_rest(addr)
    }

    /// The fast path of [`PageAllocator::virt_to_page`]: the largest lowmem
    /// range that is a whole zone map, by arithmetic and one bounds test.
    #[inline(always)]
    fn virt_to_page_quick(&self, addr: usize) -> Option<(Pfn, &PageFrame)> {
        // Below the direct map the subtraction wraps to a frame number far
        // beyond any range; without a linear map `main` is empty.
        let pfn = addr.wrapping_sub(self.linear_base) / PAGE_SIZE;
        let m = &self.main;
        let frame = m.frames.get(pfn.wrapping_sub(m.start))?;
        Some((Pfn(pfn), frame))
    }
}

impl<B: BuddyBackend> ZonedAllocator<B> {
    /// [`PageAllocator::virt_to_page`] outside the largest lowmem range:
    /// the other lowmem ranges, or the memory's own `virt_to_pfn` when it
    /// has no linear direct map.
    #[cold]
    #[inline(never)]
    fn virt_to_page_rest(&self, addr: usize) -> Option<(Pfn, &PageFrame)> {
        let Some(base) = self.linear else {
            let pfn = self.phys.virt_to_pfn(addr)?;
            return Some((pfn, ZonedAllocator::pfn_to_page(self, pfn)?));
        };
        let pfn = addr.checked_sub(base)? / PAGE_SIZE;
        let r = self
            .lowmem_ranges
            .iter()
            .find(|r| pfn.wrapping_sub(r.start) < r.len)?;
        let frame = r.frames.get(r.base + (pfn - r.start))?;
        Some((Pfn(pfn), frame))
    }
}

#[expect(
    dead_code,
    reason = "compile-time check that the allocator is Send + Sync"
)]
fn assert_send_sync<B: BuddyBackend>() {
    fn is<T: Send + Sync>() {}
    is::<ZonedAllocator<B>>();
}
