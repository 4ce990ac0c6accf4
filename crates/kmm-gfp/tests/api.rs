//! API-level tests: the crate used the way a zone allocator and a script
//! reader use it, through the public interface only.

use kmm_gfp::{
    GFP_ATOMIC, GFP_DMA, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT, Gfp, GfpError,
    WatermarkCheck, WatermarkPolicy, ZoneConfig, ZoneType, effective_min,
    zone_watermark_unusable_free,
};

/// A toy zone: its type, free pages, and min/low/high watermarks.
struct Zone {
    kind: ZoneType,
    free: usize,
    marks: [usize; 3],
}

/// Whether `zone` passes `check` for an order-0 request (no lowmem reserve).
fn passes(zone: &Zone, check: WatermarkCheck) -> bool {
    if check.skips_watermarks() {
        return zone.free > 0;
    }
    let usable = zone
        .free
        .saturating_sub(zone_watermark_unusable_free(0, check.flags, 0, 0));
    usable > effective_min(zone.marks[check.watermark.index()], check.flags)
}

/// The zone an order-0 request for `gfp` is served from: walk the zonelist
/// from the highest allowed zone down, trying each check in turn.
fn pick(zones: &[Zone], config: ZoneConfig, gfp: Gfp) -> Result<Option<ZoneType>, GfpError> {
    let highest = gfp.zone(config)?;
    let policy = WatermarkPolicy::new(gfp, 0);
    for check in policy.checks() {
        let eligible = zones.iter().rev().filter(|zone| zone.kind <= highest);
        if let Some(zone) = eligible.into_iter().find(|zone| passes(zone, check)) {
            return Ok(Some(zone.kind));
        }
    }
    Ok(None)
}

/// Checks which zone serves the gfp string `text`.
fn check_pick(zones: &[Zone], text: &str, expected: Result<Option<ZoneType>, GfpError>) {
    let gfp: Gfp = text.parse().expect("test strings are valid");
    assert_eq!(pick(zones, ZoneConfig::X86_64, gfp), expected, "{text}");
}

#[test]
fn a_tight_machine_serves_each_mask_as_linux_would() {
    // Normal sits between min (1000) and low (1250); DMA32 is below 3/8 of
    // its min; DMA is comfortable; Movable is empty.
    let zones = [
        Zone {
            kind: ZoneType::Dma,
            free: 900,
            marks: [100, 125, 150],
        },
        Zone {
            kind: ZoneType::Dma32,
            free: 300,
            marks: [1000, 1250, 1500],
        },
        Zone {
            kind: ZoneType::Normal,
            free: 1100,
            marks: [1000, 1250, 1500],
        },
        Zone {
            kind: ZoneType::Movable,
            free: 0,
            marks: [32, 40, 48],
        },
    ];
    // The fast path (low) fails on Normal and DMA32 and falls back to DMA.
    check_pick(&zones, "GFP_KERNEL", Ok(Some(ZoneType::Dma)));
    check_pick(&zones, "GFP_DMA", Ok(Some(ZoneType::Dma)));
    // Without DMA's headroom, the slow path serves Normal above min.
    let no_dma = &zones[1..];
    check_pick(no_dma, "GFP_KERNEL", Ok(Some(ZoneType::Normal)));
    check_pick(no_dma, "GFP_HIGHUSER_MOVABLE", Ok(Some(ZoneType::Normal)));
    // DMA32 alone: only GFP_ATOMIC may dig to 3/8 of min, and 300 is not enough.
    let dma32_only = &zones[1..2];
    check_pick(dma32_only, "GFP_ATOMIC", Ok(None));
    check_pick(
        dma32_only,
        "GFP_KERNEL|__GFP_MEMALLOC",
        Ok(Some(ZoneType::Dma32)),
    );
    check_pick(
        dma32_only,
        "GFP_KERNEL|__GFP_MEMALLOC|__GFP_NOMEMALLOC",
        Ok(None),
    );
    // A bad zone combination is an error, not a panic.
    let bad = GFP_DMA | Gfp::DMA32;
    assert_eq!(
        pick(&zones, ZoneConfig::X86_64, bad),
        Err(GfpError::BadZone { gfp: bad })
    );
}

#[test]
fn atomic_digs_deeper_than_kernel_and_nowait() {
    let zone = [Zone {
        kind: ZoneType::Normal,
        free: 600,
        marks: [1000, 1250, 1500],
    }];
    assert_eq!(pick(&zone, ZoneConfig::X86_64, GFP_KERNEL), Ok(None));
    assert_eq!(pick(&zone, ZoneConfig::X86_64, GFP_NOWAIT), Ok(None));
    assert_eq!(
        pick(&zone, ZoneConfig::X86_64, GFP_ATOMIC),
        Ok(Some(ZoneType::Normal))
    );
    assert_eq!(
        pick(&zone, ZoneConfig::X86_64, GFP_KERNEL | Gfp::HIGH),
        Ok(Some(ZoneType::Normal))
    );
    assert_eq!(GFP_HIGHUSER_MOVABLE.to_string(), "GFP_HIGHUSER_MOVABLE");
}
