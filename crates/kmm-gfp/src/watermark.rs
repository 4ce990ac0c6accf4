//! Allocation flags (`ALLOC_*` in `mm/internal.h`), how a gfp mask turns into
//! them (`gfp_to_alloc_flags` in `mm/page_alloc.c`), and how they lower the
//! watermark a zone must stay above (`__zone_watermark_ok`).

use crate::flags::Gfp;
use crate::types::{MigrateType, ZoneType};
use crate::zone::{ZoneConfig, gfp_migratetype};

/// A zone watermark (`enum zone_watermarks` in `include/linux/mmzone.h`).
///
/// `WMARK_PROMO` (6.0+, for memory tiering) is left out: no allocation path
/// tests it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Watermark {
    /// `WMARK_MIN`: the slow path's mark; below it only reserve users go.
    Min = 0,
    /// `WMARK_LOW`: the fast path's mark; kswapd wakes below it.
    Low = 1,
    /// `WMARK_HIGH`: kswapd reclaims until a zone is back above it.
    High = 2,
}

impl Watermark {
    /// All watermarks, lowest first.
    pub const ALL: [Watermark; 3] = [Watermark::Min, Watermark::Low, Watermark::High];

    /// The index into `zone->_watermark[]`, which is also the value of the
    /// `ALLOC_WMARK_*` bits.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The watermark with index `index`, if any.
    pub const fn from_index(index: usize) -> Option<Watermark> {
        match index {
            0 => Some(Watermark::Min),
            1 => Some(Watermark::Low),
            2 => Some(Watermark::High),
            _ => None,
        }
    }

    /// The lowercase name `/proc/zoneinfo` prints (`min`, `low`, `high`).
    pub const fn name(self) -> &'static str {
        match self {
            Watermark::Min => "min",
            Watermark::Low => "low",
            Watermark::High => "high",
        }
    }

    /// The alloc flags that select this watermark (`ALLOC_WMARK_*`).
    pub const fn alloc_flags(self) -> AllocFlags {
        AllocFlags::from_bits_retain(self as u32)
    }
}

impl core::fmt::Display for Watermark {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

bitflags::bitflags! {
    /// The page allocator's internal flags (`ALLOC_*` in `mm/internal.h`).
    ///
    /// The low two bits are not flags but the index of the watermark to test
    /// (`ALLOC_WMARK_MASK`): read it with [`AllocFlags::watermark`], set it
    /// with [`AllocFlags::with_watermark`]. `ALLOC_WMARK_MIN` is 0, so it is
    /// the associated constant [`AllocFlags::WMARK_MIN`] rather than a flag.
    ///
    /// Values are those of Linux 6.15+ with `CONFIG_MMU` and
    /// `CONFIG_ZONE_DMA32` (without DMA32 the kernel defines
    /// `ALLOC_NOFRAGMENT` as 0; without an MMU, `ALLOC_OOM` is
    /// `ALLOC_NO_WATERMARKS`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct AllocFlags: u32 {
        /// `ALLOC_WMARK_LOW`: test the low watermark.
        const WMARK_LOW = 0x01;
        /// `ALLOC_WMARK_HIGH`: test the high watermark.
        const WMARK_HIGH = 0x02;
        /// `ALLOC_WMARK_MASK`: the watermark index bits.
        const WMARK_MASK = 0x03;
        /// `ALLOC_NO_WATERMARKS`: skip the watermark test entirely.
        const NO_WATERMARKS = 0x04;
        /// `ALLOC_OOM`: an OOM victim; the min watermark is halved again.
        const OOM = 0x08;
        /// `ALLOC_NON_BLOCK` (`ALLOC_HARDER` before 6.3): the caller cannot
        /// block; with `MIN_RESERVE` it takes another quarter of the min
        /// watermark.
        #[doc(alias = "ALLOC_HARDER")]
        const NON_BLOCK = 0x10;
        /// `ALLOC_MIN_RESERVE` (`ALLOC_HIGH` before 6.3): `__GFP_HIGH`, may
        /// use half of the min watermark. Same value as `__GFP_HIGH`.
        #[doc(alias = "ALLOC_HIGH")]
        const MIN_RESERVE = 0x20;
        /// `ALLOC_CPUSET`: enforce the cpuset.
        const CPUSET = 0x40;
        /// `ALLOC_CMA`: may use `MIGRATE_CMA` pageblocks (movable requests).
        const CMA = 0x80;
        /// `ALLOC_NOFRAGMENT`: do not steal from other pageblock types on the
        /// first pass.
        const NOFRAGMENT = 0x100;
        /// `ALLOC_HIGHATOMIC`: may use `MIGRATE_HIGHATOMIC` reserves.
        const HIGHATOMIC = 0x200;
        /// `ALLOC_TRYLOCK` (6.15+): only trylock the zone lock.
        const TRYLOCK = 0x400;
        /// `ALLOC_KSWAPD`: may wake kswapd. Same value as `__GFP_KSWAPD_RECLAIM`.
        const KSWAPD = 0x800;
    }
}

impl AllocFlags {
    /// `ALLOC_WMARK_MIN`: test the min watermark (index 0, no bits).
    pub const WMARK_MIN: AllocFlags = AllocFlags::empty();

    /// `ALLOC_RESERVES`: the flags that may go below the min watermark.
    pub const RESERVES: AllocFlags = AllocFlags::NON_BLOCK
        .union(AllocFlags::MIN_RESERVE)
        .union(AllocFlags::HIGHATOMIC)
        .union(AllocFlags::OOM);

    /// The watermark these flags test; `None` for index 3 (`WMARK_PROMO`),
    /// which no allocation uses.
    pub const fn watermark(self) -> Option<Watermark> {
        Watermark::from_index((self.bits() & AllocFlags::WMARK_MASK.bits()) as usize)
    }

    /// These flags with the watermark index replaced by `mark`'s.
    pub const fn with_watermark(self, mark: Watermark) -> AllocFlags {
        self.difference(AllocFlags::WMARK_MASK)
            .union(mark.alloc_flags())
    }

    /// Whether the flags grant any access below the min watermark
    /// (`alloc_flags & ALLOC_RESERVES`).
    pub const fn has_reserves(self) -> bool {
        self.intersects(AllocFlags::RESERVES)
    }
}

/// `ALLOC_WMARK_MIN` (0), see [`AllocFlags::WMARK_MIN`].
pub const ALLOC_WMARK_MIN: AllocFlags = AllocFlags::WMARK_MIN;
/// `ALLOC_WMARK_LOW` (1), see [`AllocFlags::WMARK_LOW`].
pub const ALLOC_WMARK_LOW: AllocFlags = AllocFlags::WMARK_LOW;
/// `ALLOC_WMARK_HIGH` (2), see [`AllocFlags::WMARK_HIGH`].
pub const ALLOC_WMARK_HIGH: AllocFlags = AllocFlags::WMARK_HIGH;
/// `ALLOC_WMARK_MASK` (3), see [`AllocFlags::WMARK_MASK`].
pub const ALLOC_WMARK_MASK: AllocFlags = AllocFlags::WMARK_MASK;
/// `ALLOC_NO_WATERMARKS` (`0x4`), see [`AllocFlags::NO_WATERMARKS`].
pub const ALLOC_NO_WATERMARKS: AllocFlags = AllocFlags::NO_WATERMARKS;
/// `ALLOC_OOM` (`0x8`), see [`AllocFlags::OOM`].
pub const ALLOC_OOM: AllocFlags = AllocFlags::OOM;
/// `ALLOC_NON_BLOCK` (`0x10`), see [`AllocFlags::NON_BLOCK`].
#[doc(alias = "ALLOC_HARDER")]
pub const ALLOC_NON_BLOCK: AllocFlags = AllocFlags::NON_BLOCK;
/// `ALLOC_MIN_RESERVE` (`0x20`), see [`AllocFlags::MIN_RESERVE`].
#[doc(alias = "ALLOC_HIGH")]
pub const ALLOC_MIN_RESERVE: AllocFlags = AllocFlags::MIN_RESERVE;
/// `ALLOC_CPUSET` (`0x40`), see [`AllocFlags::CPUSET`].
pub const ALLOC_CPUSET: AllocFlags = AllocFlags::CPUSET;
/// `ALLOC_CMA` (`0x80`), see [`AllocFlags::CMA`].
pub const ALLOC_CMA: AllocFlags = AllocFlags::CMA;
/// `ALLOC_NOFRAGMENT` (`0x100`), see [`AllocFlags::NOFRAGMENT`].
pub const ALLOC_NOFRAGMENT: AllocFlags = AllocFlags::NOFRAGMENT;
/// `ALLOC_HIGHATOMIC` (`0x200`), see [`AllocFlags::HIGHATOMIC`].
pub const ALLOC_HIGHATOMIC: AllocFlags = AllocFlags::HIGHATOMIC;
/// `ALLOC_TRYLOCK` (`0x400`), see [`AllocFlags::TRYLOCK`].
pub const ALLOC_TRYLOCK: AllocFlags = AllocFlags::TRYLOCK;
/// `ALLOC_KSWAPD` (`0x800`), see [`AllocFlags::KSWAPD`].
pub const ALLOC_KSWAPD: AllocFlags = AllocFlags::KSWAPD;
/// `ALLOC_RESERVES`, see [`AllocFlags::RESERVES`].
pub const ALLOC_RESERVES: AllocFlags = AllocFlags::RESERVES;

/// `ALLOC_CMA` for movable requests (`gfp_to_alloc_flags_cma` in
/// `mm/page_alloc.c`, as with `CONFIG_CMA`).
const fn cma_flags(gfp: Gfp) -> AllocFlags {
    if matches!(gfp_migratetype(gfp), MigrateType::Movable) {
        AllocFlags::CMA
    } else {
        AllocFlags::empty()
    }
}

/// `ALLOC_KSWAPD` if `gfp` has `__GFP_KSWAPD_RECLAIM` (the kernel copies the
/// bit across, as the two have the same value).
const fn kswapd_flags(gfp: Gfp) -> AllocFlags {
    if gfp.contains(Gfp::KSWAPD_RECLAIM) {
        AllocFlags::KSWAPD
    } else {
        AllocFlags::empty()
    }
}

/// The alloc flags of the page allocator's slow path for `gfp` and `order`
/// (`gfp_to_alloc_flags` in `mm/page_alloc.c`, rules of Linux 6.3+).
///
/// - Always `ALLOC_WMARK_MIN | ALLOC_CPUSET`; `__GFP_HIGH` adds
///   `ALLOC_MIN_RESERVE` and `__GFP_KSWAPD_RECLAIM` adds `ALLOC_KSWAPD`.
/// - Without `__GFP_DIRECT_RECLAIM` (the caller cannot block): unless
///   `__GFP_NOMEMALLOC`, `ALLOC_NON_BLOCK`, plus `ALLOC_HIGHATOMIC` for
///   `order > 0` with `__GFP_HIGH`; and `__GFP_HIGH` drops `ALLOC_CPUSET`.
/// - Movable requests get `ALLOC_CMA`.
/// - `__GFP_MEMALLOC` without `__GFP_NOMEMALLOC` adds `ALLOC_NO_WATERMARKS`.
///
/// The last rule is `__gfp_pfmemalloc_flags`, which the kernel applies on
/// the slow path's retry, where it replaces the flags by
/// `ALLOC_NO_WATERMARKS` plus the CMA and kswapd bits; here it is folded in,
/// so one call gives the flags of the slow path's most permissive attempt
/// ([`WatermarkPolicy`] keeps the two attempts apart). What depends on the
/// task rather than the mask is not modelled: realtime tasks get
/// `ALLOC_MIN_RESERVE`, `PF_MEMALLOC` tasks `ALLOC_NO_WATERMARKS` and OOM
/// victims `ALLOC_OOM`; callers that model such tasks can OR them in.
///
/// ```
/// use kmm_gfp::{AllocFlags, GFP_ATOMIC, gfp_to_alloc_flags};
///
/// assert_eq!(
///     gfp_to_alloc_flags(GFP_ATOMIC, 0),
///     AllocFlags::WMARK_MIN | AllocFlags::MIN_RESERVE | AllocFlags::KSWAPD | AllocFlags::NON_BLOCK,
/// );
/// ```
pub const fn gfp_to_alloc_flags(gfp: Gfp, order: u32) -> AllocFlags {
    slow_path_flags(gfp, order).union(gfp_pfmemalloc_flags(gfp))
}

/// `gfp_to_alloc_flags` exactly as the kernel computes it, without the
/// `__gfp_pfmemalloc_flags` step.
const fn slow_path_flags(gfp: Gfp, order: u32) -> AllocFlags {
    let mut flags = AllocFlags::WMARK_MIN
        .union(AllocFlags::CPUSET)
        .union(kswapd_flags(gfp));
    if gfp.contains(Gfp::HIGH) {
        flags = flags.union(AllocFlags::MIN_RESERVE);
    }
    if !gfp.contains(Gfp::DIRECT_RECLAIM) {
        if !gfp.contains(Gfp::NOMEMALLOC) {
            flags = flags.union(AllocFlags::NON_BLOCK);
            if order > 0 && flags.contains(AllocFlags::MIN_RESERVE) {
                flags = flags.union(AllocFlags::HIGHATOMIC);
            }
        }
        // A non-blocking `__GFP_HIGH` request ignores the cpuset rather than fail.
        if flags.contains(AllocFlags::MIN_RESERVE) {
            flags = flags.difference(AllocFlags::CPUSET);
        }
    }
    flags.union(cma_flags(gfp))
}

/// The part of `__gfp_pfmemalloc_flags` (`mm/page_alloc.c`) that the mask
/// decides: `ALLOC_NO_WATERMARKS` for `__GFP_MEMALLOC`, nothing if
/// `__GFP_NOMEMALLOC` is also set (it always wins).
pub const fn gfp_pfmemalloc_flags(gfp: Gfp) -> AllocFlags {
    if gfp.contains(Gfp::MEMALLOC) && !gfp.contains(Gfp::NOMEMALLOC) {
        AllocFlags::NO_WATERMARKS
    } else {
        AllocFlags::empty()
    }
}

/// The flags the fast path adds for the first pass over the zonelist
/// (`alloc_flags_nofragment` in `mm/page_alloc.c`, on a single node):
/// `ALLOC_KSWAPD` for `__GFP_KSWAPD_RECLAIM`, and `ALLOC_NOFRAGMENT` when the
/// preferred zone is `ZONE_NORMAL` and a `ZONE_DMA32` exists below it, so that
/// the first pass spreads over Normal and DMA32 before it mixes pageblock
/// types. The `defrag_mode` sysctl (6.15+) is not modelled.
pub const fn alloc_flags_nofragment(
    gfp: Gfp,
    preferred: ZoneType,
    zones: ZoneConfig,
) -> AllocFlags {
    let flags = kswapd_flags(gfp);
    if matches!(preferred, ZoneType::Normal) && zones.dma32 {
        flags.union(AllocFlags::NOFRAGMENT)
    } else {
        flags
    }
}

/// The minimum free page count a zone must keep above for an allocation
/// testing watermark `mark` (in pages) with `flags`, before the zone's
/// `lowmem_reserve` is added: step 2 of `__zone_watermark_ok`
/// (`mm/page_alloc.c`).
///
/// Only flags in `ALLOC_RESERVES` lower it: `ALLOC_MIN_RESERVE` takes half
/// (`min -= min / 2`), and if the caller also cannot block
/// (`ALLOC_NON_BLOCK`) another quarter of the rest (`min -= min / 4`);
/// `ALLOC_OOM` halves it again. With a min watermark of 1000 pages this is
/// 1000 for `GFP_KERNEL` and `GFP_NOWAIT`, 500 for a blocking `__GFP_HIGH`
/// request and 375 for `GFP_ATOMIC`. `ALLOC_NO_WATERMARKS` is not looked at:
/// such an allocation skips the test altogether.
pub const fn effective_min(mark: usize, flags: AllocFlags) -> usize {
    let mut min = mark;
    if flags.has_reserves() {
        if flags.contains(AllocFlags::MIN_RESERVE) {
            min -= min / 2;
            if flags.contains(AllocFlags::NON_BLOCK) {
                min -= min / 4;
            }
        }
        if flags.contains(AllocFlags::OOM) {
            min -= min / 2;
        }
    }
    min
}

/// The free pages a watermark test does not count (step 1 of
/// `__zone_watermark_ok`, `__zone_watermark_unusable_free` in
/// `mm/page_alloc.c`): `2^order - 1` pages, plus the zone's reserved
/// high-atomic pageblocks for callers without reserve rights, plus free CMA
/// pages for callers without `ALLOC_CMA`. The sum saturates at `usize::MAX`.
///
/// Reserve rights here include `ALLOC_NON_BLOCK` alone: `GFP_NOWAIT` gets no
/// lower minimum, but it may count the high-atomic reserve as free.
pub const fn zone_watermark_unusable_free(
    order: u32,
    flags: AllocFlags,
    nr_reserved_highatomic: usize,
    nr_free_cma: usize,
) -> usize {
    // An order too large for the shift saturates instead of overflowing.
    let mut unusable = match 1usize.checked_shl(order) {
        Some(pages) => pages - 1,
        None => usize::MAX,
    };
    if !flags.has_reserves() {
        unusable = unusable.saturating_add(nr_reserved_highatomic);
    }
    if !flags.contains(AllocFlags::CMA) {
        unusable = unusable.saturating_add(nr_free_cma);
    }
    unusable
}

/// One watermark test: which watermark, and the flags it runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WatermarkCheck {
    /// The watermark whose value the zone looks up.
    pub watermark: Watermark,
    /// The alloc flags; their watermark bits agree with `watermark`.
    pub flags: AllocFlags,
}

impl WatermarkCheck {
    /// A check of `flags`'s own watermark, or `None` if its watermark bits
    /// are 3 (`WMARK_PROMO`).
    pub const fn from_flags(flags: AllocFlags) -> Option<WatermarkCheck> {
        match flags.watermark() {
            Some(watermark) => Some(WatermarkCheck { watermark, flags }),
            None => None,
        }
    }

    /// The minimum free count for a zone whose value of `self.watermark` is
    /// `mark` pages ([`effective_min`]).
    pub const fn min_free(self, mark: usize) -> usize {
        effective_min(mark, self.flags)
    }

    /// Whether the check is skipped (`ALLOC_NO_WATERMARKS`).
    pub const fn skips_watermarks(self) -> bool {
        self.flags.contains(AllocFlags::NO_WATERMARKS)
    }
}

/// How the page allocator tests watermarks for one gfp mask and order: the
/// zone allocator's whole contract with this crate.
///
/// A request first tries every eligible zone with the fast-path check
/// ([`WatermarkPolicy::fast`], the low watermark, no reserves). When all
/// fail, the slow path wakes kswapd (if `__GFP_KSWAPD_RECLAIM`) and retries
/// with [`WatermarkPolicy::slow`]: the min watermark, lowered by
/// [`effective_min`] for `__GFP_HIGH` and non-blocking callers. A
/// `__GFP_MEMALLOC` request finally ignores watermarks
/// ([`WatermarkPolicy::reserve_check`]).
///
/// ```
/// use kmm_gfp::{GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT, Watermark, WatermarkPolicy};
///
/// let kernel = WatermarkPolicy::new(GFP_KERNEL, 0);
/// assert_eq!(kernel.fast.watermark, Watermark::Low);
/// assert_eq!(kernel.slow.watermark, Watermark::Min);
/// assert_eq!(kernel.slow.min_free(1000), 1000);
/// assert_eq!(WatermarkPolicy::new(GFP_ATOMIC, 0).slow.min_free(1000), 375);
/// assert!(!WatermarkPolicy::new(GFP_NOWAIT, 0).may_use_reserves());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WatermarkPolicy {
    /// The fast path's check (`get_page_from_freelist` from
    /// `__alloc_pages`): `ALLOC_WMARK_LOW`, plus `ALLOC_KSWAPD` and
    /// `ALLOC_CMA` where the mask asks for them. kmm has no cpusets, so
    /// `ALLOC_CPUSET` is absent, as on a kernel with cpusets disabled; the
    /// zone allocator may OR in [`alloc_flags_nofragment`].
    pub fast: WatermarkCheck,
    /// The slow path's check: [`gfp_to_alloc_flags`] without
    /// `ALLOC_NO_WATERMARKS`, always at the min watermark.
    pub slow: WatermarkCheck,
    /// Whether the slow path finally ignores watermarks (`__GFP_MEMALLOC`
    /// without `__GFP_NOMEMALLOC`).
    pub no_watermarks: bool,
}

impl WatermarkPolicy {
    /// The policy for an allocation of `2^order` pages with `gfp`.
    pub const fn new(gfp: Gfp, order: u32) -> WatermarkPolicy {
        WatermarkPolicy {
            fast: WatermarkCheck {
                watermark: Watermark::Low,
                flags: AllocFlags::WMARK_LOW
                    .union(kswapd_flags(gfp))
                    .union(cma_flags(gfp)),
            },
            slow: WatermarkCheck {
                watermark: Watermark::Min,
                flags: slow_path_flags(gfp, order),
            },
            no_watermarks: !gfp_pfmemalloc_flags(gfp).is_empty(),
        }
    }

    /// The slow path's last check, which skips watermarks, if the mask
    /// allows one: `ALLOC_NO_WATERMARKS` plus the CMA and kswapd bits of the
    /// slow path, as `__alloc_pages_slowpath` builds it.
    pub const fn reserve_check(self) -> Option<WatermarkCheck> {
        if self.no_watermarks {
            let kept = self
                .slow
                .flags
                .intersection(AllocFlags::CMA.union(AllocFlags::KSWAPD));
            Some(WatermarkCheck {
                watermark: Watermark::Min,
                flags: AllocFlags::NO_WATERMARKS.union(kept),
            })
        } else {
            None
        }
    }

    /// The checks in the order the allocator tries them: fast, slow, and the
    /// reserve check if any.
    pub fn checks(self) -> impl Iterator<Item = WatermarkCheck> {
        [Some(self.fast), Some(self.slow), self.reserve_check()]
            .into_iter()
            .flatten()
    }

    /// Whether the request may go below the min watermark at all: the slow
    /// path lowers it ([`effective_min`]) or skips watermarks. `GFP_ATOMIC`
    /// may, `GFP_KERNEL` and (since 6.3) `GFP_NOWAIT` may not.
    pub const fn may_use_reserves(self) -> bool {
        self.no_watermarks
            || self
                .slow
                .flags
                .intersects(AllocFlags::MIN_RESERVE.union(AllocFlags::OOM))
    }

    /// Whether the slow path may wake kswapd (`ALLOC_KSWAPD`).
    pub const fn wakes_kswapd(self) -> bool {
        self.slow.flags.contains(AllocFlags::KSWAPD)
    }

    /// Whether the slow path may take `MIGRATE_HIGHATOMIC` reserves first
    /// (`ALLOC_HIGHATOMIC`: high-order non-blocking `__GFP_HIGH` requests).
    pub const fn uses_highatomic(self) -> bool {
        self.slow.flags.contains(AllocFlags::HIGHATOMIC)
    }
}

/// The watermark policy for `gfp` and `order`, see [`WatermarkPolicy::new`].
pub const fn watermark_policy(gfp: Gfp, order: u32) -> WatermarkPolicy {
    WatermarkPolicy::new(gfp, order)
}
