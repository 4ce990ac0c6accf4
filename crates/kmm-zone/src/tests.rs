//! Unit tests: layouts, the sizing arithmetic against the reference's
//! numbers, the watermark test, and layout validation.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use kmm_buddy::EagerBuddy;
use kmm_gfp::ZoneType;
use kmm_page::{NoMemory, Pfn, PfnRange};
use kmm_percpu::FixedCpu;

use kmm_gfp::{AllocFlags, gfp_to_alloc_flags};

use crate::wmark::{
    calculate_min_free_kbytes, int_sqrt, nr_pcp_alloc, setup_per_zone_lowmem_reserve,
    setup_per_zone_wmarks, watermark_free_ok, zone_batchsize, zone_highsize,
};
use crate::{Arch, MachineLayout, Watermarks, ZoneError, ZoneSpec, ZonedAllocator, ZonedConfig};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn sizes(layout: &MachineLayout) -> Vec<(ZoneType, usize)> {
    layout
        .zones
        .iter()
        .map(|z| (z.zone, layout.present_pages(z.zone)))
        .collect()
}

fn check_layout(layout: &MachineLayout, expected: &[(ZoneType, usize)]) {
    assert_eq!(sizes(layout), expected);
}

#[test]
fn x86_64_64mib_layout() {
    let l = MachineLayout::x86_64(64 * MIB);
    check_layout(
        &l,
        &[
            (ZoneType::Dma, 4096),
            (ZoneType::Dma32, 12288),
            (ZoneType::Normal, 0),
            (ZoneType::Movable, 0),
        ],
    );
    assert_eq!(l.lowmem_end(), Pfn(16384));
    assert_eq!(
        l.present_ranges(),
        vec![PfnRange::new(0, 4096), PfnRange::new(4096, 16384)]
    );
}

#[test]
fn x86_64_8gib_layout_has_the_pci_hole() {
    let l = MachineLayout::x86_64(8 * GIB);
    let three_gib = ((3 * GIB) >> 12) as usize;
    let four_gib = ((4 * GIB) >> 12) as usize;
    check_layout(
        &l,
        &[
            (ZoneType::Dma, 4096),
            (ZoneType::Dma32, three_gib - 4096),
            (ZoneType::Normal, ((5 * GIB) >> 12) as usize),
            (ZoneType::Movable, 0),
        ],
    );
    // Nothing is present inside the hole.
    assert!(
        l.present_ranges()
            .iter()
            .all(|r| r.end.0 <= three_gib || r.start.0 >= four_gib)
    );
    assert_eq!(
        l.zones[2].present,
        vec![PfnRange::new(
            four_gib,
            four_gib + ((5 * GIB) >> 12) as usize
        )]
    );
    assert_eq!(l.lowmem_end(), Pfn(four_gib + ((5 * GIB) >> 12) as usize));
}

#[test]
fn x86_32_2gib_layout() {
    let l = MachineLayout::x86_32(2 * GIB);
    let lowmem = ((896 * MIB) >> 12) as usize;
    check_layout(
        &l,
        &[
            (ZoneType::Dma, 4096),
            (ZoneType::Normal, lowmem - 4096),
            (ZoneType::HighMem, ((2 * GIB) >> 12) as usize - lowmem),
            (ZoneType::Movable, 0),
        ],
    );
    assert_eq!(l.lowmem_end(), Pfn(lowmem));
    // Below 896 MiB there is no highmem, and lowmem ends with memory.
    let small = MachineLayout::x86_32(512 * MIB);
    assert_eq!(small.present_pages(ZoneType::HighMem), 0);
    assert_eq!(small.lowmem_end(), Pfn(((512 * MIB) >> 12) as usize));
}

#[test]
fn from_ranges_splits_at_zone_boundaries() {
    let l = MachineLayout::from_ranges(
        Arch::X86_64,
        &[
            PfnRange::new(4000, 5000),
            PfnRange::new(0x100000 - 10, 0x100000 + 10),
        ],
    );
    assert_eq!(l.zones[0].present, vec![PfnRange::new(4000, 4096)]);
    assert_eq!(
        l.zones[1].present,
        vec![
            PfnRange::new(4096, 5000),
            PfnRange::new(0x100000 - 10, 0x100000)
        ]
    );
    assert_eq!(
        l.zones[2].present,
        vec![PfnRange::new(0x100000, 0x100000 + 10)]
    );
    assert!(l.zones[3].present.is_empty());
}

#[test]
fn toy_layout() {
    let l = MachineLayout::toy(100, Some(vec![PfnRange::new(10, 20)]));
    assert_eq!(l.arch, None);
    assert_eq!(l.zones.len(), 1);
    assert_eq!(l.zones[0].zone, ZoneType::Normal);
    assert_eq!(l.zones[0].free, vec![PfnRange::new(10, 20)]);
    assert_eq!(l.lowmem_end(), Pfn(100));
}

#[test]
fn int_sqrt_is_the_floor() {
    for x in (0u64..5000).chain([u64::MAX, u64::MAX - 1, 1 << 62, (1 << 32) - 1]) {
        let r = int_sqrt(x);
        assert!(r.checked_mul(r).is_some_and(|s| s <= x), "{x}: {r}");
        assert!((r + 1).checked_mul(r + 1).is_none_or(|s| s > x), "{x}: {r}");
    }
}

#[test]
fn min_free_kbytes_matches_the_reference_table() {
    // Section 4.2: 16 MiB -> 512 KiB, 64 MiB -> 1 MiB, 1 GiB -> 4 MiB, 4 GiB -> 8 MiB, 16 GiB -> 16 MiB.
    for (mem, kb) in [
        (16 * MIB, 512),
        (64 * MIB, 1024),
        (GIB, 4096),
        (4 * GIB, 8192),
        (16 * GIB, 16384),
    ] {
        assert_eq!(calculate_min_free_kbytes((mem >> 12) as usize), kb, "{mem}");
    }
    assert_eq!(calculate_min_free_kbytes(1), 128);
    assert_eq!(calculate_min_free_kbytes(usize::MAX / 8), 262_144);
}

#[test]
fn booted_machines_compute_min_free_kbytes() {
    for (mem, kb) in [(64 * MIB, 1024), (GIB, 4096)] {
        let a = boot_eager(MachineLayout::x86_64(mem), None);
        assert_eq!(a.min_free_kbytes(), kb);
    }
    // x86-32: highmem does not count (GFP_USER stops at Normal).
    let a = boot_eager(MachineLayout::x86_32(GIB), None);
    let lowmem = ((896 * MIB) >> 12) as usize;
    assert_eq!(a.min_free_kbytes(), calculate_min_free_kbytes(lowmem));
    assert_eq!(
        a.min_free_kbytes(),
        int_sqrt(lowmem as u64 * 4 * 16) as usize
    );
}

#[test]
fn lowmem_reserve_matches_the_i386_example() {
    // Section 4.2: DMA 4096, Normal 200704, HighMem 57344 managed pages.
    let zones = [
        (ZoneType::Dma, 4096),
        (ZoneType::Normal, 200_704),
        (ZoneType::HighMem, 57_344),
        (ZoneType::Movable, 0),
    ];
    let r = setup_per_zone_lowmem_reserve(&zones);
    assert_eq!(r[0], vec![0, 784, 1008, 1008]);
    assert_eq!(r[1], vec![0, 0, 1792, 1792]);
    assert_eq!(r[2], vec![0; 4]);
    assert_eq!(r[3], vec![0; 4]);
}

#[test]
fn lowmem_reserve_is_zero_for_empty_zones_and_monotonic() {
    let zones = [
        (ZoneType::Dma, 0),
        (ZoneType::Dma32, 1000),
        (ZoneType::Normal, 64_000),
        (ZoneType::Movable, 320),
    ];
    let r = setup_per_zone_lowmem_reserve(&zones);
    assert_eq!(r[0], vec![0; 4]);
    assert_eq!(r[1], vec![0, 0, 250, 251]);
    assert_eq!(r[2], vec![0, 0, 0, 10]);
    for row in &r {
        assert!(row.windows(2).all(|w| w[0] <= w[1]));
    }
}

#[test]
fn watermarks_follow_setup_per_zone_wmarks() {
    // x86-64 with 1 GiB: min_free_kbytes 4096, pages_min 1024 over 262144 lowmem pages.
    let zones = [
        (ZoneType::Dma, 4096),
        (ZoneType::Dma32, 258_048),
        (ZoneType::Normal, 0),
        (ZoneType::Movable, 0),
    ];
    let w = setup_per_zone_wmarks(4096, &zones);
    // DMA: tmp = 1024 * 4096 / 262144 = 16, delta = max(4, 4).
    assert_eq!(
        w[0],
        Watermarks {
            min: 16,
            low: 20,
            high: 24,
            promo: 28,
            boost: 0
        }
    );
    // DMA32: tmp = 1008, delta = max(252, 258048 * 10 / 10000 = 258).
    assert_eq!(
        w[1],
        Watermarks {
            min: 1008,
            low: 1266,
            high: 1524,
            promo: 1782,
            boost: 0
        }
    );
    assert_eq!(w[2], Watermarks::default());
    // An empty movable zone still gets SWAP_CLUSTER_MAX.
    assert_eq!(
        w[3],
        Watermarks {
            min: 32,
            low: 32,
            high: 32,
            promo: 32,
            boost: 0
        }
    );
    // Highmem: clamp(managed / 1024, 32, 128).
    let hz = [(ZoneType::Normal, 100_000), (ZoneType::HighMem, 57_344)];
    assert_eq!(setup_per_zone_wmarks(1024, &hz)[1].min, 56);
    let hz = [(ZoneType::Normal, 100_000), (ZoneType::HighMem, 1 << 20)];
    assert_eq!(setup_per_zone_wmarks(1024, &hz)[1].min, 128);
    for z in &w {
        assert!(z.min <= z.low && z.low <= z.high && z.high <= z.promo);
        assert_eq!(z.low - z.min, z.high - z.low);
    }
    // The lowmem mins add up to pages_min, up to rounding.
    let sum: usize = w[..3].iter().map(|z| z.min).sum();
    assert!(sum <= 1024 && sum + 3 >= 1024);
}

#[test]
fn pcp_sizing() {
    assert_eq!(zone_batchsize(1 << 20), 63);
    assert_eq!(zone_batchsize(65_536), 15);
    assert_eq!(zone_batchsize(1024), 1);
    assert_eq!(zone_batchsize(0), 1);
    assert_eq!(zone_highsize(1266, 63, 2), 633);
    assert_eq!(zone_highsize(0, 15, 4), 60);
    // Refills: order 0 takes `batch` bounded by the room left under `high`.
    assert_eq!(nr_pcp_alloc(60, 15, 0, 0), 15);
    assert_eq!(nr_pcp_alloc(60, 15, 40, 0), 15);
    assert_eq!(nr_pcp_alloc(633, 63, 0, 0), 63);
    assert_eq!(nr_pcp_alloc(60, 15, 0, 1), 7);
    assert_eq!(nr_pcp_alloc(60, 15, 0, 3), 2);
    assert_eq!(nr_pcp_alloc(4, 1, 0, 0), 1);
    assert_eq!(nr_pcp_alloc(0, 1, 0, 2), 1);
}

#[test]
fn watermark_test_and_reserves() {
    let kernel = gfp_to_alloc_flags(kmm_gfp::GFP_KERNEL, 0);
    let atomic = gfp_to_alloc_flags(kmm_gfp::GFP_ATOMIC, 0);
    let nowait = gfp_to_alloc_flags(kmm_gfp::GFP_NOWAIT, 0);
    assert_eq!(kernel.watermark(), Some(kmm_gfp::Watermark::Min));
    assert!(atomic.contains(AllocFlags::MIN_RESERVE | AllocFlags::NON_BLOCK));
    // GFP_KERNEL: free must exceed min (1000) + reserve.
    assert!(watermark_free_ok(1001, 0, 1000, 0, kernel));
    assert!(!watermark_free_ok(1000, 0, 1000, 0, kernel));
    assert!(!watermark_free_ok(1100, 0, 1000, 100, kernel));
    // GFP_ATOMIC: 1000 - 500 = 500, 500 - 125 = 375 (37.5 %).
    assert!(watermark_free_ok(376, 0, 1000, 0, atomic));
    assert!(!watermark_free_ok(375, 0, 1000, 0, atomic));
    // GFP_NOWAIT gets no discount (6.3+).
    assert!(!watermark_free_ok(1000, 0, 1000, 0, nowait));
    // __GFP_HIGH while blocking: half of min.
    let high = gfp_to_alloc_flags(kmm_gfp::GFP_KERNEL | kmm_gfp::Gfp::HIGH, 0);
    assert!(watermark_free_ok(501, 0, 1000, 0, high));
    assert!(!watermark_free_ok(500, 0, 1000, 0, high));
    // Order 3 cannot use 7 of the free pages.
    assert!(!watermark_free_ok(1007, 3, 1000, 0, kernel));
    assert!(watermark_free_ok(1008, 3, 1000, 0, kernel));
}

fn boot_eager(layout: MachineLayout, min_free_kbytes: Option<usize>) -> ZonedAllocator<EagerBuddy> {
    let cfg = ZonedConfig {
        layout,
        pcp: true,
        min_free_kbytes,
    };
    ZonedAllocator::new(cfg, Arc::new(FixedCpu::new(2)), Arc::new(NoMemory)).expect("boot")
}

fn try_boot(layout: MachineLayout) -> Result<ZonedAllocator<EagerBuddy>, ZoneError> {
    let cfg = ZonedConfig {
        layout,
        pcp: true,
        min_free_kbytes: None,
    };
    ZonedAllocator::new(cfg, Arc::new(FixedCpu::new(1)), Arc::new(NoMemory))
}

#[test]
fn booted_snapshots_carry_the_sizing() {
    let a = boot_eager(MachineLayout::x86_64(GIB), None);
    let s = a.snapshots();
    assert_eq!(s.len(), 4);
    assert_eq!(
        s.iter().map(|z| z.zone).collect::<Vec<_>>(),
        [
            ZoneType::Dma,
            ZoneType::Dma32,
            ZoneType::Normal,
            ZoneType::Movable
        ]
    );
    let expected = setup_per_zone_wmarks(4096, &sizes(a.layout()));
    let reserve = setup_per_zone_lowmem_reserve(&sizes(a.layout()));
    for (i, z) in s.iter().enumerate() {
        assert_eq!(z.watermarks, expected[i]);
        assert_eq!(z.lowmem_reserve, reserve[i]);
        assert_eq!(z.free_pages, z.managed);
        assert_eq!(z.populated, z.managed > 0);
    }
    assert_eq!(
        (s[1].start_pfn, s[1].spanned, s[1].present, s[1].managed),
        (4096, 258_048, 258_048, 258_048)
    );
    assert_eq!(s[1].pcp.len(), 2);
    assert_eq!(s[1].pcp[0].batch, 63);
    assert_eq!(s[1].pcp[0].high, zone_highsize(expected[1].low, 63, 2));
    assert!(!s[2].populated && s[2].pcp.iter().all(|p| p.count == 0));
    // A toy machine has no watermarks unless asked for.
    let toy = boot_eager(MachineLayout::toy(4096, None), None);
    assert_eq!(toy.snapshots()[0].watermarks, Watermarks::default());
    assert_eq!(toy.min_free_kbytes(), 0);
    let toy = boot_eager(MachineLayout::toy(4096, None), Some(1024));
    assert_eq!(
        toy.snapshots()[0].watermarks,
        Watermarks {
            min: 256,
            low: 320,
            high: 384,
            promo: 448,
            boost: 0
        }
    );
}

#[test]
fn bad_layouts_are_refused() {
    assert_eq!(
        try_boot(MachineLayout {
            arch: None,
            zones: vec![]
        })
        .err(),
        Some(ZoneError::NoZones)
    );
    assert_eq!(
        try_boot(MachineLayout::toy(0, None)).err(),
        Some(ZoneError::Empty)
    );
    let overlap = MachineLayout {
        arch: None,
        zones: vec![
            ZoneSpec {
                zone: ZoneType::Dma,
                present: vec![PfnRange::new(0, 10)],
                free: vec![],
            },
            ZoneSpec {
                zone: ZoneType::Normal,
                present: vec![PfnRange::new(5, 20)],
                free: vec![],
            },
        ],
    };
    assert_eq!(
        try_boot(overlap).err(),
        Some(ZoneError::Overlap {
            a: PfnRange::new(0, 10),
            b: PfnRange::new(5, 20)
        })
    );
    let order = MachineLayout {
        arch: None,
        zones: vec![
            ZoneSpec {
                zone: ZoneType::Normal,
                present: vec![PfnRange::new(0, 10)],
                free: vec![],
            },
            ZoneSpec {
                zone: ZoneType::Dma,
                present: vec![PfnRange::new(10, 20)],
                free: vec![],
            },
        ],
    };
    assert_eq!(
        try_boot(order).err(),
        Some(ZoneError::ZoneOrder(ZoneType::Dma))
    );
    assert_eq!(
        try_boot(MachineLayout::toy(10, Some(vec![PfnRange::new(5, 11)]))).err(),
        Some(ZoneError::FreeNotPresent {
            zone: ZoneType::Normal,
            range: PfnRange::new(5, 11)
        })
    );
    assert!(matches!(
        try_boot(MachineLayout::toy(
            10,
            Some(vec![PfnRange::new(0, 6), PfnRange::new(4, 8)])
        ))
        .err(),
        Some(ZoneError::Buddy {
            zone: ZoneType::Normal,
            ..
        })
    ));
    let mut wrong = MachineLayout::x86_64(64 * MIB);
    wrong.zones[0].present = vec![PfnRange::new(0, 5000)];
    wrong.zones[1].present = vec![];
    wrong.zones[1].free = vec![];
    assert_eq!(
        try_boot(wrong).err(),
        Some(ZoneError::OutsideZone {
            zone: ZoneType::Dma,
            range: PfnRange::new(0, 5000)
        })
    );
    // Reserved frames exist in the map but are not managed.
    let a = try_boot(MachineLayout::toy(100, Some(vec![PfnRange::new(0, 64)]))).expect("boot");
    let s = &a.snapshots()[0];
    assert_eq!((s.present, s.managed, s.free_pages), (100, 64, 64));
    assert!(a.pfn_to_page(Pfn(80)).is_some());
    assert!(a.pfn_to_page(Pfn(100)).is_none());
}
