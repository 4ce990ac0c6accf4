//! Machine layouts: which physical frames exist and which zone each belongs
//! to, as the x86 architecture code sets them up (`zone_sizes_init` in
//! `arch/x86/mm/init.c`), plus toy single-zone machines.

use alloc::vec;
use alloc::vec::Vec;

use kmm_gfp::ZoneType;
use kmm_page::{PAGE_SHIFT, Pfn, PfnRange};

/// The first frame above `ZONE_DMA` on x86 (`MAX_DMA_PFN`, 16 MiB).
pub const MAX_DMA_PFN: usize = (16 << 20) >> PAGE_SHIFT;
/// The first frame above `ZONE_DMA32` on x86-64 (`MAX_DMA32_PFN`, 4 GiB).
pub const MAX_DMA32_PFN: usize = 1 << (32 - PAGE_SHIFT);
/// The first highmem frame on x86-32 with the default 128 MiB vmalloc
/// reserve (`max_low_pfn` for machines with more than 896 MiB).
pub const MAX_LOWMEM_PFN_X86_32: usize = (896 << 20) >> PAGE_SHIFT;
/// Where the PCI hole starts on the x86-64 layouts built here (3 GiB).
pub const PCI_HOLE_START_PFN: usize = (3 << 30) >> PAGE_SHIFT;

/// The architecture whose zone boundaries a layout follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86-64: `DMA` below 16 MiB, `DMA32` below 4 GiB, `Normal` above, `Movable`.
    X86_64,
    /// x86-32: `DMA` below 16 MiB, `Normal` below 896 MiB, `HighMem` above, `Movable`.
    X86_32,
}

impl Arch {
    /// The zones this architecture configures, in zone order.
    pub const fn zones(self) -> &'static [ZoneType] {
        match self {
            Arch::X86_64 => &[
                ZoneType::Dma,
                ZoneType::Dma32,
                ZoneType::Normal,
                ZoneType::Movable,
            ],
            Arch::X86_32 => &[
                ZoneType::Dma,
                ZoneType::Normal,
                ZoneType::HighMem,
                ZoneType::Movable,
            ],
        }
    }

    /// The frame range zone `zone` may cover on this architecture
    /// (`Movable` is empty: nothing carves it out).
    pub const fn zone_bounds(self, zone: ZoneType) -> PfnRange {
        match (self, zone) {
            (_, ZoneType::Dma) => PfnRange::new(0, MAX_DMA_PFN),
            (Arch::X86_64, ZoneType::Dma32) => PfnRange::new(MAX_DMA_PFN, MAX_DMA32_PFN),
            (Arch::X86_64, ZoneType::Normal) => PfnRange::new(MAX_DMA32_PFN, usize::MAX),
            (Arch::X86_32, ZoneType::Normal) => PfnRange::new(MAX_DMA_PFN, MAX_LOWMEM_PFN_X86_32),
            (Arch::X86_32, ZoneType::HighMem) => PfnRange::new(MAX_LOWMEM_PFN_X86_32, usize::MAX),
            _ => PfnRange::new(0, 0),
        }
    }
}

/// One zone of a layout: the frames it holds and the frames handed to its
/// buddy allocator at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSpec {
    /// The zone.
    pub zone: ZoneType,
    /// Present frames (`present_pages`); the zone's `mem_map` covers exactly these.
    pub present: Vec<PfnRange>,
    /// Frames handed to the buddy allocator at boot (`managed_pages`); a
    /// subset of `present`, the rest stays reserved.
    pub free: Vec<PfnRange>,
}

/// The physical memory of a machine, split into zones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineLayout {
    /// The architecture, or `None` for a toy machine (one `Normal` zone,
    /// no watermarks unless asked for).
    pub arch: Option<Arch>,
    /// Every zone of the layout, in zone order, empty ones included.
    pub zones: Vec<ZoneSpec>,
}

/// Frames `[start, end)` of `mem_bytes` bytes of RAM from address 0.
fn pages_of(bytes: u64) -> usize {
    (bytes >> PAGE_SHIFT) as usize
}

/// The intersection of two ranges, if not empty.
fn intersect(a: PfnRange, b: PfnRange) -> Option<PfnRange> {
    let start = a.start.0.max(b.start.0);
    let end = a.end.0.min(b.end.0);
    (start < end).then_some(PfnRange::new(start, end))
}

impl MachineLayout {
    /// An x86-64 PC with `mem_bytes` of RAM from address 0. Above 3 GiB the
    /// rest of the RAM is moved above the PCI hole `[3 GiB, 4 GiB)`, as
    /// firmware remaps it. Every present frame is handed to the buddy.
    pub fn x86_64(mem_bytes: u64) -> MachineLayout {
        let pages = pages_of(mem_bytes);
        let ranges = if pages > PCI_HOLE_START_PFN {
            vec![
                PfnRange::new(0, PCI_HOLE_START_PFN),
                PfnRange::new(MAX_DMA32_PFN, MAX_DMA32_PFN + (pages - PCI_HOLE_START_PFN)),
            ]
        } else {
            vec![PfnRange::new(0, pages)]
        };
        MachineLayout::from_ranges(Arch::X86_64, &ranges)
    }

    /// An x86-32 PC with `mem_bytes` of RAM from address 0: `DMA` below
    /// 16 MiB, `Normal` up to 896 MiB, `HighMem` above. Every present frame
    /// is handed to the buddy.
    pub fn x86_32(mem_bytes: u64) -> MachineLayout {
        MachineLayout::from_ranges(Arch::X86_32, &[PfnRange::new(0, pages_of(mem_bytes))])
    }

    /// A toy machine: one `Normal` zone over frames `[0, pages)`, of which
    /// only `free` (all of them by default) are handed to the buddy.
    pub fn toy(pages: usize, free: Option<Vec<PfnRange>>) -> MachineLayout {
        let present = vec![PfnRange::new(0, pages)];
        let free = free.unwrap_or_else(|| present.clone());
        MachineLayout {
            arch: None,
            zones: vec![ZoneSpec {
                zone: ZoneType::Normal,
                present,
                free,
            }],
        }
    }

    /// Splits arbitrary `ranges` of RAM at `arch`'s zone boundaries; every
    /// present frame is handed to the buddy. Empty ranges are dropped;
    /// overlapping ranges are kept and rejected by `ZonedAllocator::new`.
    pub fn from_ranges(arch: Arch, ranges: &[PfnRange]) -> MachineLayout {
        let mut sorted: Vec<PfnRange> = ranges.iter().copied().filter(|r| !r.is_empty()).collect();
        sorted.sort_by_key(|r| (r.start, r.end));
        let zones = arch
            .zones()
            .iter()
            .map(|&zone| {
                let bounds = arch.zone_bounds(zone);
                let present: Vec<PfnRange> = sorted
                    .iter()
                    .filter_map(|&r| intersect(r, bounds))
                    .collect();
                ZoneSpec {
                    zone,
                    free: present.clone(),
                    present,
                }
            })
            .collect();
        MachineLayout {
            arch: Some(arch),
            zones,
        }
    }

    /// The first frame without a permanent kernel mapping: the start of
    /// highmem (896 MiB on x86-32 when memory reaches it), otherwise one past
    /// the last present frame (`max_low_pfn`).
    pub fn lowmem_end(&self) -> Pfn {
        let highmem_start = self
            .zones
            .iter()
            .filter(|z| z.zone == ZoneType::HighMem && z.present.iter().any(|r| !r.is_empty()))
            .flat_map(|z| z.present.iter().map(|r| r.start))
            .min();
        match (self.arch, highmem_start) {
            (Some(Arch::X86_32), Some(_)) => Pfn(MAX_LOWMEM_PFN_X86_32),
            (_, Some(start)) => start,
            _ => self
                .present_ranges()
                .iter()
                .map(|r| r.end)
                .max()
                .unwrap_or(Pfn(0)),
        }
    }

    /// Every present range of every zone, ascending, empty ranges dropped.
    pub fn present_ranges(&self) -> Vec<PfnRange> {
        let mut all: Vec<PfnRange> = self
            .zones
            .iter()
            .flat_map(|z| z.present.iter().copied())
            .filter(|r| !r.is_empty())
            .collect();
        all.sort_by_key(|r| (r.start, r.end));
        all
    }

    /// The number of present frames of the zone `zone`, 0 if the layout lacks it.
    pub fn present_pages(&self, zone: ZoneType) -> usize {
        self.zones
            .iter()
            .filter(|z| z.zone == zone)
            .flat_map(|z| z.present.iter())
            .map(PfnRange::len)
            .sum()
    }
}
