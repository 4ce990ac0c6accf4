//! Zone selection (`gfp_zone`) and mobility grouping (`gfp_migratetype`), as
//! in `include/linux/gfp.h`.

use crate::error::GfpError;
use crate::flags::Gfp;
use crate::types::{MigrateType, ZoneType};

/// Which of the optional zones a machine has: the kernel's `CONFIG_ZONE_DMA`,
/// `CONFIG_ZONE_DMA32` and `CONFIG_HIGHMEM`, plus whether a `ZONE_MOVABLE`
/// was carved out. `ZONE_NORMAL` always exists.
///
/// [`gfp_zone`] uses it the way the kernel's `OPT_ZONE_*` macros do: a
/// modifier naming an absent zone selects `ZONE_NORMAL` instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ZoneConfig {
    /// `ZONE_DMA` exists (`CONFIG_ZONE_DMA`).
    pub dma: bool,
    /// `ZONE_DMA32` exists (`CONFIG_ZONE_DMA32`).
    pub dma32: bool,
    /// `ZONE_HIGHMEM` exists (`CONFIG_HIGHMEM`, 32-bit only).
    pub highmem: bool,
    /// `ZONE_MOVABLE` exists (`kernelcore=`/`movablecore=` or hotplug).
    pub movable: bool,
}

impl ZoneConfig {
    /// x86-64: DMA (16 MiB), DMA32 (4 GiB), Normal and Movable.
    pub const X86_64: ZoneConfig = ZoneConfig {
        dma: true,
        dma32: true,
        highmem: false,
        movable: true,
    };

    /// x86-32: DMA (16 MiB), Normal (to about 896 MiB), HighMem and Movable.
    pub const X86_32: ZoneConfig = ZoneConfig {
        dma: true,
        dma32: false,
        highmem: true,
        movable: true,
    };

    /// Every zone type kmm knows.
    pub const ALL: ZoneConfig = ZoneConfig {
        dma: true,
        dma32: true,
        highmem: true,
        movable: true,
    };

    /// `ZONE_NORMAL` alone, as on a machine without DMA limits or highmem.
    pub const NORMAL_ONLY: ZoneConfig = ZoneConfig {
        dma: false,
        dma32: false,
        highmem: false,
        movable: false,
    };

    /// Whether `zone` exists in this configuration.
    pub const fn contains(self, zone: ZoneType) -> bool {
        match zone {
            ZoneType::Dma => self.dma,
            ZoneType::Dma32 => self.dma32,
            ZoneType::Normal => true,
            ZoneType::HighMem => self.highmem,
            ZoneType::Movable => self.movable,
        }
    }

    /// The zones of this configuration, lowest index first.
    pub fn zones(self) -> impl Iterator<Item = ZoneType> {
        ZoneType::ALL
            .into_iter()
            .filter(move |&zone| self.contains(zone))
    }

    /// The zone that stands in for `zone`: `zone` itself if it exists;
    /// otherwise `ZONE_NORMAL` (the kernel's `OPT_ZONE_*`), except that a
    /// missing `ZONE_MOVABLE` falls to the zone a movable allocation would
    /// walk to next, `ZONE_HIGHMEM` if present.
    const fn resolve(self, zone: ZoneType) -> ZoneType {
        if self.contains(zone) {
            zone
        } else if matches!(zone, ZoneType::Movable) && self.highmem {
            ZoneType::HighMem
        } else {
            ZoneType::Normal
        }
    }
}

/// The x86-64 layout, [`ZoneConfig::X86_64`].
impl Default for ZoneConfig {
    fn default() -> ZoneConfig {
        ZoneConfig::X86_64
    }
}

/// `GFP_ZONE_TABLE` as an array indexed by the four zone modifier bits: the
/// highest zone each combination may use when every zone exists, or `None`
/// for the combinations in `GFP_ZONE_BAD`.
const GFP_ZONE_TABLE: [Option<ZoneType>; 16] = {
    let mut table = [None; 16];
    let (dma, highmem, dma32, movable) = (0x1, 0x2, 0x4, 0x8);
    table[0] = Some(ZoneType::Normal);
    table[dma] = Some(ZoneType::Dma);
    table[highmem] = Some(ZoneType::HighMem);
    table[dma32] = Some(ZoneType::Dma32);
    table[movable] = Some(ZoneType::Normal);
    table[movable | dma] = Some(ZoneType::Dma);
    table[movable | highmem] = Some(ZoneType::Movable);
    table[movable | dma32] = Some(ZoneType::Dma32);
    table
};

/// `GFP_ZONE_BAD`: bit `n` is set when the zone modifier combination `n` is
/// invalid (`include/linux/gfp.h`). The set combinations are those with more
/// than one of `__GFP_DMA`, `__GFP_DMA32` and `__GFP_HIGHMEM`.
pub const GFP_ZONE_BAD: u16 = {
    let mut bad = 0u16;
    let mut bits = 0;
    while bits < 16 {
        if GFP_ZONE_TABLE[bits].is_none() {
            bad |= 1 << bits;
        }
        bits += 1;
    }
    bad
};

/// The highest zone an allocation with `gfp` may use on a machine with
/// `zones` (`gfp_zone` in `include/linux/gfp.h`).
///
/// The allocator then walks the zonelist downward from this zone. The result
/// depends only on the four zone modifiers:
///
/// | modifiers | zone |
/// |---|---|
/// | none, `__GFP_MOVABLE` | Normal |
/// | `__GFP_DMA` (± `__GFP_MOVABLE`) | DMA, or Normal without DMA |
/// | `__GFP_DMA32` (± `__GFP_MOVABLE`) | DMA32, or Normal without DMA32 |
/// | `__GFP_HIGHMEM` | HighMem, or Normal without highmem |
/// | `__GFP_HIGHMEM \| __GFP_MOVABLE` | Movable (without it: HighMem, else Normal) |
///
/// The kernel always has a `ZONE_MOVABLE` (it may be empty); here, when
/// `zones` has none, a movable request gets the zone it would fall to.
///
/// # Errors
///
/// [`GfpError::BadZone`] for the combinations the kernel rejects with
/// `VM_BUG_ON` (`GFP_ZONE_BAD`), whatever the zone configuration.
///
/// ```
/// use kmm_gfp::{GFP_DMA32, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, ZoneConfig, ZoneType, gfp_zone};
///
/// assert_eq!(gfp_zone(GFP_KERNEL, ZoneConfig::X86_64), Ok(ZoneType::Normal));
/// assert_eq!(gfp_zone(GFP_DMA32, ZoneConfig::X86_32), Ok(ZoneType::Normal));
/// assert_eq!(gfp_zone(GFP_HIGHUSER_MOVABLE, ZoneConfig::X86_64), Ok(ZoneType::Movable));
/// ```
pub const fn gfp_zone(gfp: Gfp, zones: ZoneConfig) -> Result<ZoneType, GfpError> {
    match GFP_ZONE_TABLE[gfp.zone_modifiers().bits() as usize] {
        Some(zone) => Ok(zones.resolve(zone)),
        None => Err(GfpError::BadZone { gfp }),
    }
}

/// [`gfp_zone`] on the x86-64 layout ([`ZoneConfig::X86_64`]).
///
/// # Errors
///
/// [`GfpError::BadZone`] for an invalid zone modifier combination.
pub const fn gfp_zone_x86_64(gfp: Gfp) -> Result<ZoneType, GfpError> {
    gfp_zone(gfp, ZoneConfig::X86_64)
}

/// The free-list type an allocation with `gfp` takes its pages from
/// (`gfp_migratetype` in `include/linux/gfp.h`): the mobility bits
/// `__GFP_MOVABLE` and `__GFP_RECLAIMABLE`, shifted down by 3.
///
/// Both bits together are a caller bug that the kernel only warns about
/// (`VM_WARN_ON`); the shift then yields `MIGRATE_HIGHATOMIC`, and so does
/// this function. Booting with mobility grouping disabled
/// (`page_group_by_mobility_disabled`) is not modelled.
pub const fn gfp_migratetype(gfp: Gfp) -> MigrateType {
    match (gfp.contains(Gfp::MOVABLE), gfp.contains(Gfp::RECLAIMABLE)) {
        (false, false) => MigrateType::Unmovable,
        (true, false) => MigrateType::Movable,
        (false, true) => MigrateType::Reclaimable,
        (true, true) => MigrateType::HighAtomic,
    }
}

impl Gfp {
    /// [`gfp_zone`] of this mask on a machine with `zones`.
    ///
    /// # Errors
    ///
    /// [`GfpError::BadZone`] for an invalid zone modifier combination.
    pub const fn zone(self, zones: ZoneConfig) -> Result<ZoneType, GfpError> {
        gfp_zone(self, zones)
    }

    /// [`gfp_migratetype`] of this mask.
    pub const fn migratetype(self) -> MigrateType {
        gfp_migratetype(self)
    }
}
