//! Unit tests: the kernel facts of `linux-mm-reference.md` §4.3–4.5 and §5,
//! checked row by row, plus property tests of the invariants.

use alloc::format;
use alloc::string::{String, ToString};

use proptest::prelude::*;

use crate::*;

// ---------------------------------------------------------------------------
// Helpers: every test goes through one of these.

/// Checks that `gfp` has the kernel value `value` (named `name` in failures).
fn check_value(name: &str, gfp: Gfp, value: u32) {
    assert_eq!(
        gfp.bits(),
        value,
        "{name} should be {value:#x}, is {:#x}",
        gfp.bits()
    );
}

/// Checks `gfp_zone` of the zone modifier bits `bits` on `zones`; `None`
/// means the combination must be rejected as `GFP_ZONE_BAD`.
fn check_zone(bits: u32, zones: ZoneConfig, expected: Option<ZoneType>) {
    let gfp = Gfp::from_bits_retain(bits);
    let got = gfp_zone(gfp, zones);
    match expected {
        Some(zone) => assert_eq!(got, Ok(zone), "gfp_zone({bits:#x}) on {zones:?}"),
        None => assert_eq!(
            got,
            Err(GfpError::BadZone { gfp }),
            "gfp_zone({bits:#x}) on {zones:?}"
        ),
    }
}

/// Checks the slow-path alloc flags of `gfp` at `order`.
fn check_alloc_flags(gfp: Gfp, order: u32, expected: AllocFlags) {
    assert_eq!(
        gfp_to_alloc_flags(gfp, order),
        expected,
        "gfp_to_alloc_flags({gfp}, {order})"
    );
}

/// Checks the slow path's effective minimum for `gfp` when `WMARK_MIN` is `min`.
fn check_slow_min(gfp: Gfp, min: usize, expected: usize) {
    let policy = WatermarkPolicy::new(gfp, 0);
    assert_eq!(policy.slow.watermark, Watermark::Min);
    assert_eq!(
        policy.slow.min_free(min),
        expected,
        "slow-path minimum of {gfp} at min={min}"
    );
}

/// Checks that `gfp` prints as `text` and that `text` parses back to `gfp`.
fn check_display(gfp: Gfp, text: &str) {
    assert_eq!(gfp.to_string(), text);
    assert_eq!(text.parse::<Gfp>(), Ok(gfp), "parse of {text:?}");
}

/// Checks that parsing `text` gives `expected`.
fn check_parse(text: &str, expected: Result<Gfp, GfpError>) {
    assert_eq!(text.parse::<Gfp>(), expected, "parse of {text:?}");
}

/// A model of steps 1–3 of `__zone_watermark_ok` for order 0, built from the
/// crate's pieces the way a zone allocator would use them.
fn order0_watermark_ok(
    free: usize,
    mark: usize,
    lowmem_reserve: usize,
    check: WatermarkCheck,
) -> bool {
    if check.skips_watermarks() {
        return true;
    }
    let usable = free.saturating_sub(zone_watermark_unusable_free(0, check.flags, 0, 0));
    usable > check.min_free(mark) + lowmem_reserve
}

// ---------------------------------------------------------------------------
// §5.1: the bits.

#[test]
fn single_bits_have_the_kernel_values() {
    let table: [(&str, Gfp, u32); 23] = [
        ("__GFP_DMA", __GFP_DMA, 0x01),
        ("__GFP_HIGHMEM", __GFP_HIGHMEM, 0x02),
        ("__GFP_DMA32", __GFP_DMA32, 0x04),
        ("__GFP_MOVABLE", __GFP_MOVABLE, 0x08),
        ("__GFP_RECLAIMABLE", __GFP_RECLAIMABLE, 0x10),
        ("__GFP_HIGH", __GFP_HIGH, 0x20),
        ("__GFP_IO", __GFP_IO, 0x40),
        ("__GFP_FS", __GFP_FS, 0x80),
        ("__GFP_ZERO", __GFP_ZERO, 0x100),
        ("__GFP_DIRECT_RECLAIM", __GFP_DIRECT_RECLAIM, 0x400),
        ("__GFP_KSWAPD_RECLAIM", __GFP_KSWAPD_RECLAIM, 0x800),
        ("__GFP_WRITE", __GFP_WRITE, 0x1000),
        ("__GFP_NOWARN", __GFP_NOWARN, 0x2000),
        ("__GFP_RETRY_MAYFAIL", __GFP_RETRY_MAYFAIL, 0x4000),
        ("__GFP_NOFAIL", __GFP_NOFAIL, 0x8000),
        ("__GFP_NORETRY", __GFP_NORETRY, 0x1_0000),
        ("__GFP_MEMALLOC", __GFP_MEMALLOC, 0x2_0000),
        ("__GFP_COMP", __GFP_COMP, 0x4_0000),
        ("__GFP_NOMEMALLOC", __GFP_NOMEMALLOC, 0x8_0000),
        ("__GFP_HARDWALL", __GFP_HARDWALL, 0x10_0000),
        ("__GFP_THISNODE", __GFP_THISNODE, 0x20_0000),
        ("__GFP_ACCOUNT", __GFP_ACCOUNT, 0x40_0000),
        ("__GFP_ZEROTAGS", __GFP_ZEROTAGS, 0x80_0000),
    ];
    let mut union = 0;
    for (name, gfp, value) in table {
        check_value(name, gfp, value);
        assert_eq!(value.count_ones(), 1, "{name} is one bit");
        // The kernel name looks the same constant up.
        assert_eq!(Gfp::from_kernel_name(name), Some(gfp));
        union |= value;
    }
    // The named bits are exactly the 23 bits above; bit 9 stays unused.
    assert_eq!(Gfp::all().bits(), union);
    assert_eq!(Gfp::all().bits() & 0x200, 0);
    assert_eq!(Gfp::all().iter().count(), 23);
}

#[test]
fn associated_and_free_constants_agree() {
    let pairs = [
        (Gfp::DMA, __GFP_DMA),
        (Gfp::HIGHMEM, __GFP_HIGHMEM),
        (Gfp::DMA32, __GFP_DMA32),
        (Gfp::MOVABLE, __GFP_MOVABLE),
        (Gfp::RECLAIMABLE, __GFP_RECLAIMABLE),
        (Gfp::HIGH, __GFP_HIGH),
        (Gfp::IO, __GFP_IO),
        (Gfp::FS, __GFP_FS),
        (Gfp::ZERO, __GFP_ZERO),
        (Gfp::DIRECT_RECLAIM, __GFP_DIRECT_RECLAIM),
        (Gfp::KSWAPD_RECLAIM, __GFP_KSWAPD_RECLAIM),
        (Gfp::WRITE, __GFP_WRITE),
        (Gfp::NOWARN, __GFP_NOWARN),
        (Gfp::RETRY_MAYFAIL, __GFP_RETRY_MAYFAIL),
        (Gfp::NOFAIL, __GFP_NOFAIL),
        (Gfp::NORETRY, __GFP_NORETRY),
        (Gfp::MEMALLOC, __GFP_MEMALLOC),
        (Gfp::COMP, __GFP_COMP),
        (Gfp::NOMEMALLOC, __GFP_NOMEMALLOC),
        (Gfp::HARDWALL, __GFP_HARDWALL),
        (Gfp::THISNODE, __GFP_THISNODE),
        (Gfp::ACCOUNT, __GFP_ACCOUNT),
        (Gfp::ZEROTAGS, __GFP_ZEROTAGS),
        (Gfp::RECLAIM, __GFP_RECLAIM),
        (Gfp::ZONEMASK, GFP_ZONEMASK),
        (Gfp::ATOMIC, GFP_ATOMIC),
        (Gfp::KERNEL, GFP_KERNEL),
        (Gfp::KERNEL_ACCOUNT, GFP_KERNEL_ACCOUNT),
        (Gfp::NOWAIT, GFP_NOWAIT),
        (Gfp::NOIO, GFP_NOIO),
        (Gfp::NOFS, GFP_NOFS),
        (Gfp::USER, GFP_USER),
        (Gfp::DMA, GFP_DMA),
        (Gfp::DMA32, GFP_DMA32),
        (Gfp::HIGHUSER, GFP_HIGHUSER),
        (Gfp::HIGHUSER_MOVABLE, GFP_HIGHUSER_MOVABLE),
        (Gfp::TRANSHUGE_LIGHT, GFP_TRANSHUGE_LIGHT),
        (Gfp::TRANSHUGE, GFP_TRANSHUGE),
    ];
    for (associated, free) in pairs {
        assert_eq!(associated, free);
    }
}

// ---------------------------------------------------------------------------
// §5.2: the composites.

#[test]
fn composites_have_the_kernel_values() {
    check_value("__GFP_RECLAIM", __GFP_RECLAIM, 0xc00);
    check_value("GFP_ZONEMASK", GFP_ZONEMASK, 0x0f);
    check_value("GFP_ATOMIC", GFP_ATOMIC, 0x820);
    check_value("GFP_KERNEL", GFP_KERNEL, 0xcc0);
    check_value("GFP_KERNEL_ACCOUNT", GFP_KERNEL_ACCOUNT, 0x40_0cc0);
    check_value("GFP_NOWAIT", GFP_NOWAIT, 0x2800);
    check_value("GFP_NOIO", GFP_NOIO, 0xc00);
    check_value("GFP_NOFS", GFP_NOFS, 0xc40);
    check_value("GFP_USER", GFP_USER, 0x10_0cc0);
    check_value("GFP_DMA", GFP_DMA, 0x01);
    check_value("GFP_DMA32", GFP_DMA32, 0x04);
    check_value("GFP_HIGHUSER", GFP_HIGHUSER, 0x10_0cc2);
    check_value("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE, 0x10_0cca);
}

#[test]
fn transhuge_masks_follow_their_definitions() {
    // GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | __GFP_COMP |
    // __GFP_NOMEMALLOC | __GFP_NOWARN) & ~__GFP_RECLAIM.
    let light =
        (GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN) & !__GFP_RECLAIM;
    assert_eq!(GFP_TRANSHUGE_LIGHT, light);
    assert!(!GFP_TRANSHUGE_LIGHT.intersects(__GFP_RECLAIM));
    assert_eq!(GFP_TRANSHUGE, GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM);
    assert!(GFP_TRANSHUGE.allows_blocking());
    assert!(!GFP_TRANSHUGE.contains(__GFP_KSWAPD_RECLAIM));
    check_value("GFP_TRANSHUGE_LIGHT", GFP_TRANSHUGE_LIGHT, 0x1c_20ca);
    check_value("GFP_TRANSHUGE", GFP_TRANSHUGE, 0x1c_24ca);
}

#[test]
fn reference_gfp_invariants_hold() {
    assert!(GFP_KERNEL.contains(__GFP_DIRECT_RECLAIM));
    assert!(!GFP_ATOMIC.contains(__GFP_DIRECT_RECLAIM));
    assert!(!GFP_NOWAIT.contains(__GFP_HIGH));
    assert!(gfpflags_allow_blocking(GFP_KERNEL));
    assert!(gfpflags_allow_blocking(GFP_NOIO));
    assert!(!gfpflags_allow_blocking(GFP_ATOMIC));
    assert!(!gfpflags_allow_blocking(GFP_NOWAIT));
    assert!(!gfpflags_allow_blocking(GFP_TRANSHUGE_LIGHT));
    assert_eq!(__GFP_RECLAIM, __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM);
    assert_eq!(GFP_KERNEL_ACCOUNT, GFP_KERNEL | __GFP_ACCOUNT);
    assert_eq!(GFP_HIGHUSER, GFP_USER | __GFP_HIGHMEM);
}

#[test]
fn historic_wait_values_mean_other_flags_today() {
    // 2.6-era GFP_KERNEL was __GFP_WAIT|__GFP_IO|__GFP_FS = 0x10|0x40|0x80.
    let old_kernel = Gfp::from_bits(0xd0);
    assert_eq!(old_kernel, Some(__GFP_RECLAIMABLE | __GFP_IO | __GFP_FS));
    assert!(old_kernel.is_some_and(|gfp| !gfp.allows_blocking()));
    assert_ne!(old_kernel, Some(GFP_KERNEL));
    // The old __GFP_WAIT bit is __GFP_RECLAIMABLE now, and does not block.
    let old_wait = Gfp::from_bits_retain(0x10);
    assert_eq!(old_wait, __GFP_RECLAIMABLE);
    assert!(!old_wait.allows_blocking());
    // Old __GFP_COLD (0x100) is __GFP_ZERO, old __GFP_NOWARN (0x200) unused.
    assert_eq!(Gfp::from_bits(0x100), Some(__GFP_ZERO));
    assert_eq!(Gfp::from_bits(0x200), None);
    // The removed names are not accepted.
    check_parse(
        "__GFP_WAIT",
        Err(GfpError::UnknownName("__GFP_WAIT".to_string())),
    );
    check_parse(
        "__GFP_ATOMIC",
        Err(GfpError::UnknownName("__GFP_ATOMIC".to_string())),
    );
}

// ---------------------------------------------------------------------------
// §4.5: gfp_zone.

/// The zone modifier bits, for readable table rows.
const DMA: u32 = 0x1;
const HIGHMEM: u32 = 0x2;
const DMA32: u32 = 0x4;
const MOVABLE: u32 = 0x8;

#[test]
fn gfp_zone_table_with_every_zone() {
    let all = ZoneConfig::ALL;
    check_zone(0, all, Some(ZoneType::Normal));
    check_zone(DMA, all, Some(ZoneType::Dma));
    check_zone(HIGHMEM, all, Some(ZoneType::HighMem));
    check_zone(DMA32, all, Some(ZoneType::Dma32));
    check_zone(MOVABLE, all, Some(ZoneType::Normal));
    check_zone(MOVABLE | DMA, all, Some(ZoneType::Dma));
    check_zone(MOVABLE | HIGHMEM, all, Some(ZoneType::Movable));
    check_zone(MOVABLE | DMA32, all, Some(ZoneType::Dma32));
}

#[test]
fn gfp_zone_table_on_x86_64() {
    let x86_64 = ZoneConfig::X86_64;
    check_zone(0, x86_64, Some(ZoneType::Normal));
    check_zone(DMA, x86_64, Some(ZoneType::Dma));
    check_zone(HIGHMEM, x86_64, Some(ZoneType::Normal));
    check_zone(DMA32, x86_64, Some(ZoneType::Dma32));
    check_zone(MOVABLE, x86_64, Some(ZoneType::Normal));
    check_zone(MOVABLE | DMA, x86_64, Some(ZoneType::Dma));
    check_zone(MOVABLE | HIGHMEM, x86_64, Some(ZoneType::Movable));
    check_zone(MOVABLE | DMA32, x86_64, Some(ZoneType::Dma32));
}

#[test]
fn gfp_zone_table_on_x86_32() {
    let x86_32 = ZoneConfig::X86_32;
    check_zone(0, x86_32, Some(ZoneType::Normal));
    check_zone(DMA, x86_32, Some(ZoneType::Dma));
    check_zone(HIGHMEM, x86_32, Some(ZoneType::HighMem));
    check_zone(DMA32, x86_32, Some(ZoneType::Normal));
    check_zone(MOVABLE, x86_32, Some(ZoneType::Normal));
    check_zone(MOVABLE | DMA, x86_32, Some(ZoneType::Dma));
    check_zone(MOVABLE | HIGHMEM, x86_32, Some(ZoneType::Movable));
    check_zone(MOVABLE | DMA32, x86_32, Some(ZoneType::Normal));
}

#[test]
fn gfp_zone_falls_back_when_zones_are_missing() {
    let normal = ZoneConfig::NORMAL_ONLY;
    for bits in [
        0,
        DMA,
        HIGHMEM,
        DMA32,
        MOVABLE,
        MOVABLE | DMA,
        MOVABLE | HIGHMEM,
        MOVABLE | DMA32,
    ] {
        check_zone(bits, normal, Some(ZoneType::Normal));
    }
    // Without ZONE_MOVABLE a movable highmem request lands where it would
    // fall to: HighMem on 32-bit, Normal on 64-bit.
    let no_movable_32 = ZoneConfig {
        movable: false,
        ..ZoneConfig::X86_32
    };
    check_zone(MOVABLE | HIGHMEM, no_movable_32, Some(ZoneType::HighMem));
    let no_movable_64 = ZoneConfig {
        movable: false,
        ..ZoneConfig::X86_64
    };
    check_zone(MOVABLE | HIGHMEM, no_movable_64, Some(ZoneType::Normal));
}

#[test]
fn gfp_zone_rejects_the_bad_combinations_everywhere() {
    let bad = [
        DMA | HIGHMEM,
        DMA | DMA32,
        DMA32 | HIGHMEM,
        DMA | DMA32 | HIGHMEM,
        MOVABLE | HIGHMEM | DMA,
        MOVABLE | DMA32 | DMA,
        MOVABLE | DMA32 | HIGHMEM,
        MOVABLE | DMA32 | DMA | HIGHMEM,
    ];
    for zones in [
        ZoneConfig::ALL,
        ZoneConfig::X86_64,
        ZoneConfig::X86_32,
        ZoneConfig::NORMAL_ONLY,
    ] {
        for bits in bad {
            check_zone(bits, zones, None);
        }
    }
    // GFP_ZONE_BAD as the kernel defines it: one bit per bad combination.
    let kernel_bad = bad.iter().fold(0u16, |acc, &bits| acc | 1 << bits);
    assert_eq!(GFP_ZONE_BAD, kernel_bad);
    assert_eq!(GFP_ZONE_BAD, 0xe8e8);
}

#[test]
fn gfp_zone_error_keeps_the_whole_mask() {
    let gfp = GFP_KERNEL | __GFP_DMA | __GFP_HIGHMEM;
    let err = gfp_zone_x86_64(gfp);
    assert_eq!(err, Err(GfpError::BadZone { gfp }));
    // The mask the caller holds is untouched, and still valid without the bad bit.
    assert_eq!(gfp.bits(), 0xcc3);
    assert_eq!(gfp_zone_x86_64(gfp - __GFP_HIGHMEM), Ok(ZoneType::Dma));
    let message = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        message,
        "invalid zone modifiers GFP_DMA|__GFP_HIGHMEM in gfp 0xcc3 (GFP_ZONE_BAD)"
    );
}

#[test]
fn composite_masks_select_the_reference_zones() {
    assert_eq!(gfp_zone_x86_64(GFP_KERNEL), Ok(ZoneType::Normal));
    assert_eq!(gfp_zone_x86_64(GFP_ATOMIC), Ok(ZoneType::Normal));
    assert_eq!(gfp_zone_x86_64(GFP_USER), Ok(ZoneType::Normal));
    assert_eq!(gfp_zone_x86_64(GFP_DMA), Ok(ZoneType::Dma));
    assert_eq!(gfp_zone_x86_64(GFP_DMA32), Ok(ZoneType::Dma32));
    assert_eq!(
        gfp_zone(GFP_HIGHUSER, ZoneConfig::X86_32),
        Ok(ZoneType::HighMem)
    );
    assert_eq!(
        gfp_zone(GFP_HIGHUSER, ZoneConfig::X86_64),
        Ok(ZoneType::Normal)
    );
    assert_eq!(gfp_zone_x86_64(GFP_HIGHUSER_MOVABLE), Ok(ZoneType::Movable));
    assert_eq!(
        GFP_HIGHUSER_MOVABLE.zone(ZoneConfig::X86_32),
        Ok(ZoneType::Movable)
    );
    assert_eq!(gfp_zone_x86_64(GFP_TRANSHUGE), Ok(ZoneType::Movable));
}

#[test]
fn zone_config_lists_its_zones() {
    use alloc::vec::Vec;
    let zones: Vec<ZoneType> = ZoneConfig::X86_64.zones().collect();
    assert_eq!(
        zones,
        [
            ZoneType::Dma,
            ZoneType::Dma32,
            ZoneType::Normal,
            ZoneType::Movable
        ]
    );
    let zones: Vec<ZoneType> = ZoneConfig::X86_32.zones().collect();
    assert_eq!(
        zones,
        [
            ZoneType::Dma,
            ZoneType::Normal,
            ZoneType::HighMem,
            ZoneType::Movable
        ]
    );
    let zones: Vec<ZoneType> = ZoneConfig::NORMAL_ONLY.zones().collect();
    assert_eq!(zones, [ZoneType::Normal]);
    assert_eq!(ZoneConfig::ALL.zones().count(), ZoneType::COUNT);
    assert_eq!(ZoneConfig::default(), ZoneConfig::X86_64);
}

// ---------------------------------------------------------------------------
// §5 invariants: gfp_migratetype.

#[test]
fn gfp_migratetype_follows_the_mobility_bits() {
    assert_eq!(gfp_migratetype(GFP_HIGHUSER_MOVABLE), MigrateType::Movable);
    assert_eq!(gfp_migratetype(GFP_KERNEL), MigrateType::Unmovable);
    assert_eq!(gfp_migratetype(GFP_ATOMIC), MigrateType::Unmovable);
    assert_eq!(
        gfp_migratetype(GFP_KERNEL | __GFP_RECLAIMABLE),
        MigrateType::Reclaimable
    );
    assert_eq!(GFP_TRANSHUGE.migratetype(), MigrateType::Movable);
    // Both bits: the kernel warns and the shift gives MIGRATE_HIGHATOMIC.
    assert_eq!(
        gfp_migratetype(__GFP_MOVABLE | __GFP_RECLAIMABLE),
        MigrateType::HighAtomic
    );
}

// ---------------------------------------------------------------------------
// §4.4: alloc flags.

#[test]
fn alloc_flags_have_the_kernel_values() {
    let table: [(AllocFlags, u32); 16] = [
        (ALLOC_WMARK_MIN, 0),
        (ALLOC_WMARK_LOW, 1),
        (ALLOC_WMARK_HIGH, 2),
        (ALLOC_WMARK_MASK, 3),
        (ALLOC_NO_WATERMARKS, 0x4),
        (ALLOC_OOM, 0x8),
        (ALLOC_NON_BLOCK, 0x10),
        (ALLOC_MIN_RESERVE, 0x20),
        (ALLOC_CPUSET, 0x40),
        (ALLOC_CMA, 0x80),
        (ALLOC_NOFRAGMENT, 0x100),
        (ALLOC_HIGHATOMIC, 0x200),
        (ALLOC_TRYLOCK, 0x400),
        (ALLOC_KSWAPD, 0x800),
        (ALLOC_RESERVES, 0x10 | 0x20 | 0x200 | 0x8),
        (AllocFlags::WMARK_MIN, 0),
    ];
    for (flags, value) in table {
        assert_eq!(flags.bits(), value, "{flags:?}");
    }
    // The two shortcuts gfp_to_alloc_flags relies on.
    assert_eq!(ALLOC_MIN_RESERVE.bits(), __GFP_HIGH.bits());
    assert_eq!(ALLOC_KSWAPD.bits(), __GFP_KSWAPD_RECLAIM.bits());
}

#[test]
fn watermark_index_round_trips() {
    for mark in Watermark::ALL {
        assert_eq!(Watermark::from_index(mark.index()), Some(mark));
        assert_eq!(mark.alloc_flags().watermark(), Some(mark));
        let flags = (ALLOC_CPUSET | ALLOC_WMARK_HIGH).with_watermark(mark);
        assert_eq!(flags.watermark(), Some(mark));
        assert!(flags.contains(ALLOC_CPUSET));
    }
    assert_eq!(Watermark::from_index(3), None);
    assert_eq!(ALLOC_WMARK_MASK.watermark(), None);
    assert_eq!(AllocFlags::empty().watermark(), Some(Watermark::Min));
    assert_eq!(Watermark::Low.to_string(), "low");
    assert_eq!(
        WatermarkCheck::from_flags(ALLOC_WMARK_MASK | ALLOC_CMA),
        None
    );
    let check = WatermarkCheck::from_flags(ALLOC_WMARK_LOW | ALLOC_CMA);
    assert_eq!(check.map(|c| c.watermark), Some(Watermark::Low));
}

#[test]
fn gfp_to_alloc_flags_follows_the_6_3_rules() {
    let min = ALLOC_WMARK_MIN;
    // Blocking requests keep the cpuset and get no reserve bits.
    check_alloc_flags(GFP_KERNEL, 0, min | ALLOC_CPUSET | ALLOC_KSWAPD);
    check_alloc_flags(GFP_KERNEL, 5, min | ALLOC_CPUSET | ALLOC_KSWAPD);
    check_alloc_flags(GFP_NOIO, 0, min | ALLOC_CPUSET | ALLOC_KSWAPD);
    // __GFP_HIGH while blocking: the min reserve, cpuset still enforced.
    check_alloc_flags(
        GFP_KERNEL | __GFP_HIGH,
        0,
        min | ALLOC_CPUSET | ALLOC_KSWAPD | ALLOC_MIN_RESERVE,
    );
    // GFP_ATOMIC: non-blocking __GFP_HIGH, ignores the cpuset.
    let atomic = min | ALLOC_KSWAPD | ALLOC_MIN_RESERVE | ALLOC_NON_BLOCK;
    check_alloc_flags(GFP_ATOMIC, 0, atomic);
    check_alloc_flags(GFP_ATOMIC, 1, atomic | ALLOC_HIGHATOMIC);
    // GFP_NOWAIT: non-blocking without __GFP_HIGH, no high-atomic access.
    check_alloc_flags(
        GFP_NOWAIT,
        0,
        min | ALLOC_CPUSET | ALLOC_KSWAPD | ALLOC_NON_BLOCK,
    );
    check_alloc_flags(
        GFP_NOWAIT,
        3,
        min | ALLOC_CPUSET | ALLOC_KSWAPD | ALLOC_NON_BLOCK,
    );
    // __GFP_NOMEMALLOC withholds ALLOC_NON_BLOCK but __GFP_HIGH still drops the cpuset.
    check_alloc_flags(
        GFP_ATOMIC | __GFP_NOMEMALLOC,
        2,
        min | ALLOC_KSWAPD | ALLOC_MIN_RESERVE,
    );
    // No bits at all: cannot block, cannot wake kswapd.
    check_alloc_flags(Gfp::empty(), 0, min | ALLOC_CPUSET | ALLOC_NON_BLOCK);
    // GFP_TRANSHUGE_LIGHT has __GFP_NOMEMALLOC and no reclaim bits.
    check_alloc_flags(GFP_TRANSHUGE_LIGHT, 9, min | ALLOC_CPUSET | ALLOC_CMA);
    // Movable requests may use CMA.
    check_alloc_flags(
        GFP_HIGHUSER_MOVABLE,
        0,
        min | ALLOC_CPUSET | ALLOC_KSWAPD | ALLOC_CMA,
    );
    // __GFP_MEMALLOC ignores watermarks, unless __GFP_NOMEMALLOC.
    check_alloc_flags(
        GFP_KERNEL | __GFP_MEMALLOC,
        0,
        min | ALLOC_CPUSET | ALLOC_KSWAPD | ALLOC_NO_WATERMARKS,
    );
    check_alloc_flags(
        GFP_KERNEL | __GFP_MEMALLOC | __GFP_NOMEMALLOC,
        0,
        min | ALLOC_CPUSET | ALLOC_KSWAPD,
    );
    assert_eq!(
        gfp_pfmemalloc_flags(GFP_ATOMIC | __GFP_MEMALLOC),
        ALLOC_NO_WATERMARKS
    );
    assert_eq!(gfp_pfmemalloc_flags(GFP_ATOMIC), AllocFlags::empty());
}

// ---------------------------------------------------------------------------
// §4.3: the watermark arithmetic.

#[test]
fn effective_min_matches_the_reference_numbers() {
    check_slow_min(GFP_KERNEL, 1000, 1000);
    check_slow_min(GFP_KERNEL | __GFP_HIGH, 1000, 500);
    check_slow_min(GFP_ATOMIC, 1000, 375);
    check_slow_min(GFP_NOWAIT, 1000, 1000);
    check_slow_min(GFP_KERNEL & !__GFP_DIRECT_RECLAIM, 1000, 1000);
    check_slow_min(GFP_ATOMIC | __GFP_NOMEMALLOC, 1000, 500);
    // Integer arithmetic, step by step: 7 - 7/2 = 4, 4 - 4/4 = 3.
    check_slow_min(GFP_ATOMIC, 7, 3);
    check_slow_min(GFP_ATOMIC, 0, 0);
    // OOM victims halve again: 375 - 375/2 = 188; alone 1000 - 500 = 500.
    assert_eq!(
        effective_min(1000, gfp_to_alloc_flags(GFP_ATOMIC, 0) | ALLOC_OOM),
        188
    );
    assert_eq!(effective_min(1000, ALLOC_OOM), 500);
    // ALLOC_NON_BLOCK alone and ALLOC_HIGHATOMIC alone lower nothing.
    assert_eq!(effective_min(1000, ALLOC_NON_BLOCK), 1000);
    assert_eq!(effective_min(1000, ALLOC_HIGHATOMIC), 1000);
    // The fast path never lowers its mark.
    assert_eq!(
        WatermarkPolicy::new(GFP_ATOMIC, 0).fast.min_free(1200),
        1200
    );
}

#[test]
fn unusable_free_counts_reserves_and_cma() {
    assert_eq!(zone_watermark_unusable_free(0, ALLOC_WMARK_LOW, 0, 0), 0);
    assert_eq!(zone_watermark_unusable_free(3, ALLOC_WMARK_LOW, 0, 0), 7);
    // Callers without reserve rights do not count high-atomic or CMA pages.
    assert_eq!(
        zone_watermark_unusable_free(0, ALLOC_WMARK_MIN, 64, 100),
        164
    );
    assert_eq!(
        zone_watermark_unusable_free(0, ALLOC_NON_BLOCK, 64, 100),
        100
    );
    assert_eq!(zone_watermark_unusable_free(0, ALLOC_CMA, 64, 100), 64);
    assert_eq!(
        zone_watermark_unusable_free(1, ALLOC_CMA | ALLOC_OOM, 64, 100),
        1
    );
    // An absurd order saturates instead of overflowing.
    assert_eq!(
        zone_watermark_unusable_free(200, ALLOC_CMA, 0, 0),
        usize::MAX
    );
    assert_eq!(
        zone_watermark_unusable_free(63, ALLOC_WMARK_MIN, usize::MAX, 0),
        usize::MAX
    );
}

#[test]
fn kernel_allocations_stop_at_low_then_min_atomic_goes_to_three_eighths() {
    let (min, low, reserve) = (1000, 1250, 0);
    let kernel = WatermarkPolicy::new(GFP_KERNEL, 0);
    // The fast path succeeds iff free > low + lowmem_reserve.
    assert!(order0_watermark_ok(low + 1, low, reserve, kernel.fast));
    assert!(!order0_watermark_ok(low, low, reserve, kernel.fast));
    // The slow path goes down to min, no further.
    assert!(order0_watermark_ok(min + 1, min, reserve, kernel.slow));
    assert!(!order0_watermark_ok(min, min, reserve, kernel.slow));
    // GFP_ATOMIC succeeds down to 3/8 of min.
    let atomic = WatermarkPolicy::new(GFP_ATOMIC, 0);
    assert!(order0_watermark_ok(376, min, reserve, atomic.slow));
    assert!(!order0_watermark_ok(375, min, reserve, atomic.slow));
    // GFP_NOWAIT does not.
    let nowait = WatermarkPolicy::new(GFP_NOWAIT, 0);
    assert!(!order0_watermark_ok(min, min, reserve, nowait.slow));
    // lowmem_reserve adds on top of the lowered minimum.
    assert!(!order0_watermark_ok(376, min, 10, atomic.slow));
    assert!(order0_watermark_ok(386, min, 10, atomic.slow));
    // __GFP_MEMALLOC finally passes with nothing free.
    let memalloc = WatermarkPolicy::new(GFP_KERNEL | __GFP_MEMALLOC, 0);
    let last = memalloc.reserve_check();
    assert_eq!(
        last.map(|check| order0_watermark_ok(0, min, reserve, check)),
        Some(true)
    );
}

#[test]
fn watermark_policy_describes_both_paths() {
    let kernel = watermark_policy(GFP_KERNEL, 0);
    assert_eq!(
        kernel.fast,
        WatermarkCheck {
            watermark: Watermark::Low,
            flags: ALLOC_WMARK_LOW | ALLOC_KSWAPD
        }
    );
    assert_eq!(kernel.slow.watermark, Watermark::Min);
    assert_eq!(kernel.slow.flags, gfp_to_alloc_flags(GFP_KERNEL, 0));
    assert!(!kernel.no_watermarks);
    assert!(!kernel.may_use_reserves());
    assert!(kernel.wakes_kswapd());
    assert_eq!(kernel.reserve_check(), None);
    assert_eq!(kernel.checks().count(), 2);

    let atomic = watermark_policy(GFP_ATOMIC, 2);
    assert!(atomic.may_use_reserves());
    assert!(atomic.uses_highatomic());
    assert!(!watermark_policy(GFP_ATOMIC, 0).uses_highatomic());

    let nowait = watermark_policy(GFP_NOWAIT, 0);
    assert!(!nowait.may_use_reserves());
    assert!(nowait.wakes_kswapd());

    let light = watermark_policy(GFP_TRANSHUGE_LIGHT, 9);
    assert!(!light.wakes_kswapd());
    assert_eq!(light.fast.flags, ALLOC_WMARK_LOW | ALLOC_CMA);

    let memalloc = watermark_policy(GFP_HIGHUSER_MOVABLE | __GFP_MEMALLOC, 0);
    assert!(memalloc.no_watermarks);
    assert!(memalloc.may_use_reserves());
    // The slow check keeps its watermark; the last check skips it, keeping
    // only the CMA and kswapd bits, as __alloc_pages_slowpath does.
    assert!(!memalloc.slow.skips_watermarks());
    let last = memalloc.reserve_check();
    assert_eq!(
        last.map(|c| c.flags),
        Some(ALLOC_NO_WATERMARKS | ALLOC_CMA | ALLOC_KSWAPD)
    );
    assert_eq!(memalloc.checks().count(), 3);
    assert!(!watermark_policy(GFP_KERNEL | __GFP_MEMALLOC | __GFP_NOMEMALLOC, 0).no_watermarks);
}

#[test]
fn nofragment_only_for_normal_above_dma32() {
    let normal = ZoneType::Normal;
    assert_eq!(
        alloc_flags_nofragment(GFP_KERNEL, normal, ZoneConfig::X86_64),
        ALLOC_KSWAPD | ALLOC_NOFRAGMENT
    );
    assert_eq!(
        alloc_flags_nofragment(GFP_KERNEL, normal, ZoneConfig::X86_32),
        ALLOC_KSWAPD
    );
    assert_eq!(
        alloc_flags_nofragment(GFP_KERNEL, ZoneType::Dma32, ZoneConfig::X86_64),
        ALLOC_KSWAPD
    );
    assert_eq!(
        alloc_flags_nofragment(GFP_TRANSHUGE_LIGHT, ZoneType::Movable, ZoneConfig::X86_64),
        AllocFlags::empty()
    );
    assert_eq!(
        alloc_flags_nofragment(GFP_TRANSHUGE_LIGHT, normal, ZoneConfig::X86_64),
        ALLOC_NOFRAGMENT
    );
}

// ---------------------------------------------------------------------------
// §5: names.

#[test]
fn display_matches_show_gfp_flags() {
    check_display(GFP_KERNEL | __GFP_ZERO, "GFP_KERNEL|__GFP_ZERO");
    check_display(GFP_ATOMIC, "GFP_ATOMIC");
    check_display(GFP_NOWAIT, "GFP_NOWAIT");
    check_display(GFP_ATOMIC | __GFP_NOWARN, "GFP_ATOMIC|__GFP_NOWARN");
    check_display(GFP_KERNEL | __GFP_HARDWALL, "GFP_USER");
    check_display(
        GFP_HIGHUSER_MOVABLE | __GFP_ZERO,
        "GFP_HIGHUSER_MOVABLE|__GFP_ZERO",
    );
    check_display(GFP_TRANSHUGE, "GFP_TRANSHUGE");
    check_display(GFP_TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT");
    check_display(GFP_KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT");
    check_display(GFP_NOFS | __GFP_NOFAIL, "GFP_NOFS|__GFP_NOFAIL");
    // __GFP_RECLAIM has GFP_NOIO's value, and GFP_NOIO comes first.
    check_display(__GFP_RECLAIM, "GFP_NOIO");
    check_display(__GFP_DMA, "GFP_DMA");
    check_display(__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM");
    check_display(GFP_DMA | GFP_KERNEL, "GFP_KERNEL|GFP_DMA");
    check_display(
        __GFP_HIGH | __GFP_ZEROTAGS | __GFP_MOVABLE,
        "__GFP_MOVABLE|__GFP_HIGH|__GFP_ZEROTAGS",
    );
    check_display(Gfp::empty(), "0");
}

#[test]
fn display_forms_for_kernel_messages_and_debug() {
    assert_eq!(format!("{:#}", GFP_KERNEL), "0xcc0(GFP_KERNEL)");
    assert_eq!(
        format!("{:#}", GFP_HIGHUSER_MOVABLE),
        "0x100cca(GFP_HIGHUSER_MOVABLE)"
    );
    assert_eq!(format!("{:#}", Gfp::empty()), "0x0()");
    assert_eq!(
        format!("{:?}", GFP_ATOMIC | __GFP_ZERO),
        "Gfp(GFP_ATOMIC|__GFP_ZERO)"
    );
    // Bits without a name (only reachable through from_bits_retain) print in hex.
    assert_eq!(
        Gfp::from_bits_retain(0xcc0 | 0x200).to_string(),
        "GFP_KERNEL|0x200"
    );
    assert_eq!(Gfp::from_bits_retain(0x100_0000).to_string(), "0x1000000");
}

#[test]
fn every_name_parses_and_prints_as_its_first_spelling() {
    for (name, gfp) in GFP_FLAG_NAMES {
        check_parse(name, Ok(gfp));
        let first = GFP_FLAG_NAMES
            .iter()
            .find(|(_, other)| *other == gfp)
            .map(|&(n, _)| n);
        assert_eq!(Some(gfp.to_string().as_str()), first, "{name}");
    }
}

#[test]
fn parse_accepts_the_documented_forms() {
    check_parse("GFP_KERNEL|__GFP_ZERO", Ok(GFP_KERNEL | __GFP_ZERO));
    check_parse("  GFP_KERNEL |\t__GFP_ZERO  ", Ok(GFP_KERNEL | __GFP_ZERO));
    check_parse("GFP_ATOMIC", Ok(GFP_ATOMIC));
    check_parse("__GFP_HIGH|__GFP_KSWAPD_RECLAIM", Ok(GFP_ATOMIC));
    check_parse("0xcc0", Ok(GFP_KERNEL));
    check_parse("0XCC0", Ok(GFP_KERNEL));
    check_parse("3264", Ok(GFP_KERNEL));
    check_parse("0x820|__GFP_NOWARN", Ok(GFP_ATOMIC | __GFP_NOWARN));
    check_parse("0", Ok(Gfp::empty()));
    check_parse("none", Ok(Gfp::empty()));
    check_parse("GFP_KERNEL|GFP_KERNEL", Ok(GFP_KERNEL));
}

#[test]
fn parse_rejects_bad_input_with_typed_errors() {
    let unknown = |name: &str| Err(GfpError::UnknownName(name.to_string()));
    check_parse("GFP_KERNAL", unknown("GFP_KERNAL"));
    check_parse("gfp_kernel", unknown("gfp_kernel"));
    check_parse("GFP_KERNEL|__GFP_COLD", unknown("__GFP_COLD"));
    check_parse("-1", unknown("-1"));
    check_parse("", Err(GfpError::EmptyName));
    check_parse("  ", Err(GfpError::EmptyName));
    check_parse("GFP_KERNEL|", Err(GfpError::EmptyName));
    check_parse("GFP_KERNEL||__GFP_ZERO", Err(GfpError::EmptyName));
    check_parse("0x200", Err(GfpError::UnknownBits(0x200)));
    check_parse("0x2000000", Err(GfpError::UnknownBits(0x200_0000)));
    check_parse("0x", Err(GfpError::InvalidNumber("0x".to_string())));
    check_parse("0x+10", Err(GfpError::InvalidNumber("0x+10".to_string())));
    check_parse(
        "0x1_0000",
        Err(GfpError::InvalidNumber("0x1_0000".to_string())),
    );
    check_parse(
        "0x100000000",
        Err(GfpError::InvalidNumber("0x100000000".to_string())),
    );
    check_parse("12abc", Err(GfpError::InvalidNumber("12abc".to_string())));

    // A failed parse leaves the caller's mask as it was.
    let mut gfp = GFP_KERNEL;
    let result = "GFP_KERNEL|bogus".parse::<Gfp>();
    if let Ok(parsed) = result.clone() {
        gfp = parsed;
    }
    assert_eq!(result, Err(GfpError::UnknownName("bogus".to_string())));
    assert_eq!(gfp, GFP_KERNEL);
}

#[test]
fn error_messages_name_the_problem() {
    let messages: [(GfpError, &str); 4] = [
        (
            GfpError::UnknownName(String::from("__GFP_WAIT")),
            "unknown gfp flag name `__GFP_WAIT`",
        ),
        (
            GfpError::UnknownBits(0x200),
            "gfp value 0x200 has bits no gfp flag uses",
        ),
        (
            GfpError::InvalidNumber(String::from("0x")),
            "`0x` is not a valid 32-bit gfp number",
        ),
        (GfpError::EmptyName, "empty flag name in gfp string"),
    ];
    for (error, message) in messages {
        assert_eq!(error.to_string(), message);
    }
}

// ---------------------------------------------------------------------------
// Properties.

/// Any mask of known bits.
fn any_gfp() -> impl Strategy<Value = Gfp> {
    any::<u32>().prop_map(Gfp::from_bits_truncate)
}

/// Any zone configuration.
fn any_zones() -> impl Strategy<Value = ZoneConfig> {
    any::<[bool; 4]>().prop_map(|[dma, dma32, highmem, movable]| ZoneConfig {
        dma,
        dma32,
        highmem,
        movable,
    })
}

/// Any alloc flags.
fn any_alloc_flags() -> impl Strategy<Value = AllocFlags> {
    any::<u32>().prop_map(AllocFlags::from_bits_truncate)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn display_then_parse_round_trips(gfp in any_gfp()) {
        let text = gfp.to_string();
        prop_assert_eq!(text.parse::<Gfp>(), Ok(gfp));
        // The %pGg form carries the same value in front.
        let alternate = format!("{gfp:#}");
        let hex = format!("{:#x}", gfp.bits());
        prop_assert!(alternate.starts_with(&hex));
    }

    #[test]
    fn display_uses_each_bit_once(gfp in any_gfp()) {
        let text = gfp.to_string();
        let mut seen = Gfp::empty();
        if !gfp.is_empty() {
            for part in text.split('|') {
                let named = Gfp::from_kernel_name(part);
                prop_assert!(named.is_some(), "{} in {}", part, text);
                let named = named.unwrap_or_default();
                prop_assert!(!seen.intersects(named), "{} repeats bits in {}", part, text);
                seen |= named;
            }
        }
        prop_assert_eq!(seen, gfp);
    }

    #[test]
    fn gfp_zone_depends_only_on_the_zone_bits(gfp in any_gfp(), zones in any_zones()) {
        // Errors differ only in the mask they carry back.
        prop_assert_eq!(gfp_zone(gfp, zones).ok(), gfp_zone(gfp.zone_modifiers(), zones).ok());
        prop_assert_eq!(gfp_zone(gfp, zones).is_err(), gfp_zone(gfp.zone_modifiers(), zones).is_err());
    }

    #[test]
    fn gfp_zone_returns_an_existing_zone_or_the_bad_error(gfp in any_gfp(), zones in any_zones()) {
        let bits = gfp.zone_modifiers().bits();
        match gfp_zone(gfp, zones) {
            Ok(zone) => {
                prop_assert!(zones.contains(zone));
                prop_assert_eq!(GFP_ZONE_BAD >> bits & 1, 0);
                // A zone is only ever reached by asking for it or something above it.
                if zone == ZoneType::Movable {
                    prop_assert!(gfp.contains(__GFP_MOVABLE | __GFP_HIGHMEM));
                }
                if zone == ZoneType::HighMem {
                    prop_assert!(gfp.contains(__GFP_HIGHMEM));
                }
            }
            Err(error) => {
                prop_assert_eq!(error, GfpError::BadZone { gfp });
                prop_assert_eq!(GFP_ZONE_BAD >> bits & 1, 1);
            }
        }
    }

    #[test]
    fn gfp_migratetype_is_the_shifted_mobility_bits(gfp in any_gfp()) {
        let index = ((gfp.bits() & 0x18) >> 3) as usize;
        prop_assert_eq!(Some(gfp_migratetype(gfp)), MigrateType::from_index(index));
    }

    #[test]
    fn effective_min_never_raises_the_mark(mark in 0usize..1 << 40, flags in any_alloc_flags()) {
        let min = effective_min(mark, flags);
        prop_assert!(min <= mark);
        // More reserve rights never raise it either.
        prop_assert!(effective_min(mark, flags | ALLOC_OOM) <= min);
        // With no reserve flag the mark is untouched.
        prop_assert_eq!(effective_min(mark, flags - ALLOC_RESERVES), mark);
    }

    #[test]
    fn atomic_reaches_three_eighths_of_min(mark in 0usize..1 << 40) {
        let min = WatermarkPolicy::new(GFP_ATOMIC, 0).slow.min_free(mark);
        // Two rounded steps stay within two pages of 3/8.
        prop_assert!(min.abs_diff(mark * 3 / 8) <= 2, "{} vs {}", min, mark * 3 / 8);
        prop_assert_eq!(WatermarkPolicy::new(GFP_KERNEL, 0).slow.min_free(mark), mark);
    }

    #[test]
    fn non_blocking_requests_are_the_non_block_ones(gfp in any_gfp(), order in 0u32..11) {
        let flags = gfp_to_alloc_flags(gfp, order);
        let non_blocking = !gfp.allows_blocking() && !gfp.contains(__GFP_NOMEMALLOC);
        prop_assert_eq!(flags.contains(ALLOC_NON_BLOCK), non_blocking);
        prop_assert_eq!(flags.contains(ALLOC_MIN_RESERVE), gfp.contains(__GFP_HIGH));
        prop_assert_eq!(flags.contains(ALLOC_KSWAPD), gfp.contains(__GFP_KSWAPD_RECLAIM));
        prop_assert_eq!(flags.watermark(), Some(Watermark::Min));
        if flags.contains(ALLOC_HIGHATOMIC) {
            prop_assert!(order > 0 && non_blocking && gfp.contains(__GFP_HIGH));
        }
    }
}
