//! Zone sizing arithmetic from `mm/page_alloc.c`: `min_free_kbytes`, the
//! watermarks, `lowmem_reserve[]`, the per-CPU list `batch` and `high`, and
//! the watermark test. Pure functions of page counts, so the numbers can be
//! checked against the kernel's.

use alloc::vec;
use alloc::vec::Vec;

use kmm_gfp::{AllocFlags, ZoneType, effective_min, zone_watermark_unusable_free};
use kmm_page::{PAGE_SHIFT, PAGE_SIZE};

use crate::snapshot::Watermarks;

/// `SWAP_CLUSTER_MAX`: the smallest `WMARK_MIN` of a highmem or movable zone.
pub const SWAP_CLUSTER_MAX: usize = 32;
/// `watermark_scale_factor` default: the low/high gap is at least 10/10000 of the zone.
pub const WATERMARK_SCALE_FACTOR: usize = 10;
/// Lower bound of the computed `min_free_kbytes`.
pub const MIN_FREE_KBYTES_LOW: usize = 128;
/// Upper bound of the computed `min_free_kbytes` (256 MiB).
pub const MIN_FREE_KBYTES_HIGH: usize = 262_144;
/// `MIN_PERCPU_PAGELIST_HIGH_FRACTION`: `high_max` is at most managed/8 per zone.
pub const MIN_PERCPU_PAGELIST_HIGH_FRACTION: usize = 8;

/// `int_sqrt`: the largest `r` with `r * r <= x`.
pub fn int_sqrt(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    // Newton's method from an overestimate; converges to the floor.
    let mut r = 1u64 << (64 - x.leading_zeros()).div_ceil(2);
    loop {
        let next = (r + x / r) / 2;
        if next >= r {
            return r;
        }
        r = next;
    }
}

/// `min_free_kbytes` as Linux computes it at boot (`calculate_min_free_kbytes`,
/// `mm/page_alloc.c`): `int_sqrt(lowmem_kbytes * 16)` clamped to
/// `[128, 262144]`, where `lowmem_kbytes` is `nr_free_buffer_pages()` in
/// KiB: the managed pages of the zones `GFP_USER` may use (everything up to
/// `Normal`), less their high watermarks, which are still 0 at that point.
pub fn calculate_min_free_kbytes(buffer_pages: usize) -> usize {
    let kbytes = (buffer_pages as u64) * (PAGE_SIZE as u64 >> 10);
    let v = int_sqrt(kbytes.saturating_mul(16)) as usize;
    v.clamp(MIN_FREE_KBYTES_LOW, MIN_FREE_KBYTES_HIGH)
}

/// Whether the zone is sized like lowmem for `WMARK_MIN` (neither highmem nor movable).
fn is_lowmem(zone: ZoneType) -> bool {
    zone.is_lowmem()
}

/// The watermarks of every zone (`__setup_per_zone_wmarks`,
/// `mm/page_alloc.c`), for zones given as `(type, managed pages)`.
///
/// `pages_min = min_free_kbytes / 4` is shared among the lowmem zones in
/// proportion to their managed pages; highmem and movable zones get
/// `clamp(managed / 1024, 32, 128)`; the gap between marks is
/// `max(share / 4, managed * 10 / 10000)`.
#[doc(alias = "__setup_per_zone_wmarks")]
pub fn setup_per_zone_wmarks(
    min_free_kbytes: usize,
    zones: &[(ZoneType, usize)],
) -> Vec<Watermarks> {
    let pages_min = (min_free_kbytes >> (PAGE_SHIFT - 10)) as u64;
    let lowmem_pages: u64 = zones
        .iter()
        .filter(|(z, _)| is_lowmem(*z))
        .map(|&(_, m)| m as u64)
        .sum();
    zones
        .iter()
        .map(|&(zone, managed)| {
            let managed = managed as u64;
            let tmp = (pages_min * managed).checked_div(lowmem_pages).unwrap_or(0);
            let min = if is_lowmem(zone) {
                tmp
            } else {
                (managed / 1024).clamp(SWAP_CLUSTER_MAX as u64, 128)
            };
            // `mult_frac(managed, watermark_scale_factor, 10000)`.
            let scaled = (managed / 10_000) * WATERMARK_SCALE_FACTOR as u64
                + (managed % 10_000) * WATERMARK_SCALE_FACTOR as u64 / 10_000;
            let delta = (tmp >> 2).max(scaled);
            let low = min + delta;
            let high = low + delta;
            Watermarks {
                min: min as usize,
                low: low as usize,
                high: high as usize,
                promo: (high + delta) as usize,
                boost: 0,
            }
        })
        .collect()
}

/// `sysctl_lowmem_reserve_ratio[]` defaults: DMA 256, DMA32 256, Normal 32,
/// HighMem 0, Movable 0 (0 means no reserve).
pub const fn lowmem_reserve_ratio(zone: ZoneType) -> usize {
    match zone {
        ZoneType::Dma | ZoneType::Dma32 => 256,
        ZoneType::Normal => 32,
        ZoneType::HighMem | ZoneType::Movable => 0,
    }
}

/// `lowmem_reserve[]` of every zone (`setup_per_zone_lowmem_reserve`,
/// `mm/page_alloc.c`), for zones given in zone order as `(type, managed
/// pages)`: entry `j` of zone `i` is the managed pages of zones `i+1..=j`
/// divided by zone `i`'s ratio; 0 for `j <= i`, for a ratio of 0, and for an
/// empty zone `i`.
pub fn setup_per_zone_lowmem_reserve(zones: &[(ZoneType, usize)]) -> Vec<Vec<usize>> {
    zones
        .iter()
        .enumerate()
        .map(|(i, &(zone, managed))| {
            let ratio = lowmem_reserve_ratio(zone);
            let clear = ratio == 0 || managed == 0;
            let mut reserve = vec![0; zones.len()];
            let mut upper = 0usize;
            for (j, slot) in reserve.iter_mut().enumerate().skip(i + 1) {
                upper += zones[j].1;
                *slot = if clear { 0 } else { upper / ratio };
            }
            reserve
        })
        .collect()
}

/// `rounddown_pow_of_two` (0 for 0).
fn rounddown_pow_of_two(x: usize) -> usize {
    if x == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - x.leading_zeros())
    }
}

/// The per-CPU list refill and drain unit (`zone_batchsize`,
/// `mm/page_alloc.c`, then `max(1, ..)` as `zone_set_pageset_high_and_batch`
/// applies): `b = max(1, min(managed >> 10, 1 MiB / PAGE_SIZE) / 4)`, then
/// `rounddown_pow_of_two(b + b / 2) - 1`; 63 for zones of 1 GiB and more.
pub fn zone_batchsize(managed: usize) -> usize {
    let b = (managed >> 10).min((1 << 20) / PAGE_SIZE) / 4;
    let b = b.max(1);
    (rounddown_pow_of_two(b + b / 2) - 1).max(1)
}

/// The per-CPU list drain threshold (`zone_highsize`, `mm/page_alloc.c`,
/// with `percpu_pagelist_high_fraction` 0): the zone's low watermark split
/// over the CPUs, at least `4 * batch`. This is `high_min`, the value a CPU's
/// `high` starts from.
pub fn zone_highsize(low_wmark: usize, batch: usize, nr_cpus: usize) -> usize {
    (low_wmark / nr_cpus.max(1)).max(batch << 2)
}

/// The upper bound `high` may grow to (`high_max`: `zone_highsize` with the
/// fraction `MIN_PERCPU_PAGELIST_HIGH_FRACTION`): managed/8 split over the
/// CPUs, at least `4 * batch`. kmm reports it but keeps `high` at `high_min`.
pub fn zone_highsize_max(managed: usize, batch: usize, nr_cpus: usize) -> usize {
    (managed / MIN_PERCPU_PAGELIST_HIGH_FRACTION / nr_cpus.max(1)).max(batch << 2)
}

/// How many blocks of `order` a refill takes from the buddy (`nr_pcp_alloc`,
/// `mm/page_alloc.c`, with `alloc_factor` 0 and a fixed `high`): `batch`,
/// for order 0 at most `max(high - count - batch, batch)`, then scaled to
/// `max(batch >> order, 2)` when above 1; 1 when the lists are disabled
/// (`high < batch`).
pub fn nr_pcp_alloc(high: usize, batch: usize, count: usize, order: u32) -> usize {
    if high < batch {
        return 1;
    }
    let mut n = batch;
    if order == 0 {
        let max_nr_alloc = high.saturating_sub(count).saturating_sub(batch).max(batch);
        n = n.min(max_nr_alloc);
    }
    if n > 1 { (n >> order).max(2) } else { n }
}

/// The page-count half of `__zone_watermark_ok` (`mm/page_alloc.c`): after
/// taking away the pages the request cannot use (`2^order - 1`; kmm keeps no
/// highatomic or CMA reserves), are more than `mark`, lowered for callers
/// with reserve rights ([`effective_min`]), plus `lowmem_reserve` pages free?
/// The other half, whether a block of the order exists, is the buddy's answer.
#[doc(alias = "__zone_watermark_ok")]
pub fn watermark_free_ok(
    free: usize,
    order: u32,
    mark: usize,
    reserve: usize,
    flags: AllocFlags,
) -> bool {
    let unusable = zone_watermark_unusable_free(order, flags, 0, 0);
    let Some(usable) = free.checked_sub(unusable) else {
        return false;
    };
    usable > effective_min(mark, flags).saturating_add(reserve)
}
