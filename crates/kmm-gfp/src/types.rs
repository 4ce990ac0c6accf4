//! Zone types and migrate types, the two things a gfp mask selects.

/// A memory zone type, as in `enum zone_type` of `include/linux/mmzone.h`.
///
/// The discriminant is the zone index kmm uses everywhere (in `PageFrame`
/// flags, zonelists and `/proc` output): the x86-64 and x86-32 layouts use
/// subsets of these, and an absent zone is simply unpopulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ZoneType {
    /// `ZONE_DMA`: the first 16 MiB on x86, for ISA-era DMA devices.
    Dma = 0,
    /// `ZONE_DMA32`: below 4 GiB on x86-64, for 32-bit DMA devices.
    Dma32 = 1,
    /// `ZONE_NORMAL`: permanently mapped memory.
    Normal = 2,
    /// `ZONE_HIGHMEM`: memory without a permanent kernel mapping (32-bit only).
    HighMem = 3,
    /// `ZONE_MOVABLE`: only movable allocations.
    Movable = 4,
}

impl ZoneType {
    /// Number of zone types.
    pub const COUNT: usize = 5;
    /// All zone types, lowest index first.
    pub const ALL: [ZoneType; 5] = [
        ZoneType::Dma,
        ZoneType::Dma32,
        ZoneType::Normal,
        ZoneType::HighMem,
        ZoneType::Movable,
    ];

    /// The name Linux prints for this zone (`zone_names[]` in `mm/page_alloc.c`).
    pub const fn name(self) -> &'static str {
        match self {
            ZoneType::Dma => "DMA",
            ZoneType::Dma32 => "DMA32",
            ZoneType::Normal => "Normal",
            ZoneType::HighMem => "HighMem",
            ZoneType::Movable => "Movable",
        }
    }

    /// The zone index (`zone_idx`).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The zone type with index `index`, if any.
    pub const fn from_index(index: usize) -> Option<ZoneType> {
        match index {
            0 => Some(ZoneType::Dma),
            1 => Some(ZoneType::Dma32),
            2 => Some(ZoneType::Normal),
            3 => Some(ZoneType::HighMem),
            4 => Some(ZoneType::Movable),
            _ => None,
        }
    }

    /// Whether the zone counts as lowmem for watermark sizing
    /// (`is_highmem_idx` and `ZONE_MOVABLE` are excluded).
    pub const fn is_lowmem(self) -> bool {
        !matches!(self, ZoneType::HighMem | ZoneType::Movable)
    }
}

impl core::fmt::Display for ZoneType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A page mobility type, as in `enum migratetype` of `include/linux/mmzone.h`
/// (modern order: unmovable, movable, reclaimable, then the special types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum MigrateType {
    /// `MIGRATE_UNMOVABLE`.
    Unmovable = 0,
    /// `MIGRATE_MOVABLE`.
    Movable = 1,
    /// `MIGRATE_RECLAIMABLE`.
    Reclaimable = 2,
    /// `MIGRATE_HIGHATOMIC` (= `MIGRATE_PCPTYPES`).
    HighAtomic = 3,
    /// `MIGRATE_CMA`.
    Cma = 4,
    /// `MIGRATE_ISOLATE`.
    Isolate = 5,
}

impl MigrateType {
    /// Number of migrate types (`MIGRATE_TYPES`).
    pub const COUNT: usize = 6;
    /// Number of types that have per-CPU page lists (`MIGRATE_PCPTYPES`).
    pub const PCPTYPES: usize = 3;
    /// All migrate types in index order.
    pub const ALL: [MigrateType; 6] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
        MigrateType::Cma,
        MigrateType::Isolate,
    ];

    /// The name `/proc/pagetypeinfo` prints (`migratetype_names[]`).
    pub const fn name(self) -> &'static str {
        match self {
            MigrateType::Unmovable => "Unmovable",
            MigrateType::Movable => "Movable",
            MigrateType::Reclaimable => "Reclaimable",
            MigrateType::HighAtomic => "HighAtomic",
            MigrateType::Cma => "CMA",
            MigrateType::Isolate => "Isolate",
        }
    }

    /// The index of this type.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The migrate type with index `index`, if any.
    pub const fn from_index(index: usize) -> Option<MigrateType> {
        match index {
            0 => Some(MigrateType::Unmovable),
            1 => Some(MigrateType::Movable),
            2 => Some(MigrateType::Reclaimable),
            3 => Some(MigrateType::HighAtomic),
            4 => Some(MigrateType::Cma),
            5 => Some(MigrateType::Isolate),
            _ => None,
        }
    }

    /// Whether free blocks of this type may merge with blocks of another type
    /// (`migratetype_is_mergeable`: only the three per-CPU types).
    pub const fn is_mergeable(self) -> bool {
        (self as usize) < Self::PCPTYPES
    }

    /// The fallback order when this type's free lists are empty
    /// (`fallbacks[]` in `mm/page_alloc.c`); empty for the special types.
    pub const fn fallbacks(self) -> &'static [MigrateType] {
        match self {
            MigrateType::Unmovable => &[MigrateType::Reclaimable, MigrateType::Movable],
            MigrateType::Movable => &[MigrateType::Reclaimable, MigrateType::Unmovable],
            MigrateType::Reclaimable => &[MigrateType::Unmovable, MigrateType::Movable],
            _ => &[],
        }
    }
}

impl core::fmt::Display for MigrateType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
