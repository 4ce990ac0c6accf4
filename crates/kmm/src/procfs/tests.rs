//! Tests for the `/proc` renderers.
//!
//! The expected texts were written line by line from Linux's format strings
//! in `mm/vmstat.c` and `fs/proc/meminfo.c` (and cross-checked with
//! `printf(1)` fed those format strings), never produced by the renderers.
//! The property tests parse the rendered files back and check that they agree
//! with each other and with the snapshots.

use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};

use kmm_buddy::BuddyStats;
use kmm_gfp::MigrateType::{self, Cma, Movable, Reclaimable, Unmovable};
use kmm_gfp::ZoneType;
use kmm_page::NR_PAGE_ORDERS;
use kmm_zone::snapshot::{PcpSnapshot, Watermarks, ZoneSnapshot};
use proptest::prelude::*;

use super::{MeminfoInput, buddyinfo, meminfo, pagetypeinfo, zoneinfo};

/// No free blocks at any order.
const Z: [usize; NR_PAGE_ORDERS] = [0; NR_PAGE_ORDERS];

/// Asserts that a rendered file is exactly the expected text.
fn check(actual: String, expected: &str) {
    assert_eq!(
        actual, expected,
        "\n--- rendered ---\n{actual}--- expected ---\n{expected}"
    );
}

/// A zone with the given span and page counts and nothing free; populated
/// when it has managed pages.
fn zone(
    zone: ZoneType,
    start_pfn: usize,
    [spanned, present, managed]: [usize; 3],
    lowmem_reserve: &[usize],
) -> ZoneSnapshot {
    ZoneSnapshot {
        node: 0,
        zone,
        populated: managed > 0,
        start_pfn,
        spanned,
        present,
        managed,
        free_pages: 0,
        watermarks: Watermarks::default(),
        lowmem_reserve: lowmem_reserve.to_vec(),
        nr_free: Z,
        nr_free_mt: [Z; MigrateType::COUNT],
        pageblocks: [0; MigrateType::COUNT],
        pcp: Vec::new(),
        stats: BuddyStats::default(),
    }
}

/// An unpopulated zone of a layout with `nr_zones` zones.
fn empty(zone_type: ZoneType, nr_zones: usize) -> ZoneSnapshot {
    zone(zone_type, 0, [0, 0, 0], &vec![0; nr_zones])
}

/// Watermarks in `/proc/zoneinfo` order: boost, min, low, high, promo.
fn wmarks([boost, min, low, high, promo]: [usize; 5]) -> Watermarks {
    Watermarks {
        min,
        low,
        high,
        promo,
        boost,
    }
}

/// Per-CPU lists as `(cpu, count, high, batch)`.
fn pcps(lists: &[(usize, usize, usize, usize)]) -> Vec<PcpSnapshot> {
    lists
        .iter()
        .map(|&(cpu, count, high, batch)| PcpSnapshot {
            cpu,
            count,
            high,
            batch,
        })
        .collect()
}

/// Puts free blocks on the given lists and derives, as a consistent zone
/// would, `nr_free` (blocks per order over all lists) and `free_pages`.
fn set_free(z: &mut ZoneSnapshot, lists: &[(MigrateType, [usize; NR_PAGE_ORDERS])]) {
    z.nr_free_mt = [Z; MigrateType::COUNT];
    for &(mt, blocks) in lists {
        z.nr_free_mt[mt.index()] = blocks;
    }
    derive_free(z);
}

/// Recomputes `nr_free` and `free_pages` from `nr_free_mt`.
fn derive_free(z: &mut ZoneSnapshot) {
    z.nr_free = Z;
    for list in &z.nr_free_mt {
        for (order, blocks) in list.iter().enumerate() {
            z.nr_free[order] += blocks;
        }
    }
    z.free_pages = z
        .nr_free
        .iter()
        .enumerate()
        .map(|(order, blocks)| blocks << order)
        .sum();
}

/// The toy machine: one `Normal` zone with two free order-0 pages and one
/// free order-1 block.
fn toy() -> Vec<ZoneSnapshot> {
    let mut normal = zone(ZoneType::Normal, 256, [64, 64, 60], &[0]);
    normal.watermarks = wmarks([0, 1, 2, 3, 4]);
    set_free(
        &mut normal,
        &[
            (Unmovable, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (Movable, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ],
    );
    normal.pageblocks = [0, 1, 0, 0, 0, 0];
    normal.pcp = pcps(&[(0, 2, 4, 1)]);
    vec![normal]
}

/// An x86-64 layout with `DMA` and `DMA32` populated, `Normal` and
/// `Movable` empty, two CPUs, and one free CMA block in `DMA32`.
fn x86_64() -> Vec<ZoneSnapshot> {
    let mut dma = zone(ZoneType::Dma, 1, [4095, 3998, 3976], &[0, 2931, 2931, 2931]);
    dma.watermarks = wmarks([0, 6, 9, 12, 15]);
    set_free(
        &mut dma,
        &[
            (Unmovable, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (Movable, [0, 1, 1, 0, 2, 1, 1, 0, 1, 1, 3]),
        ],
    );
    dma.pageblocks = [1, 7, 0, 0, 0, 0];
    dma.pcp = pcps(&[(0, 0, 0, 1), (1, 0, 0, 1)]);

    let mut dma32 = zone(
        ZoneType::Dma32,
        4096,
        [1_044_480, 782_298, 765_000],
        &[0, 0, 0, 0],
    );
    dma32.watermarks = wmarks([0, 1412, 1765, 2118, 2471]);
    set_free(
        &mut dma32,
        &[
            (Unmovable, [2, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
            (Movable, [1, 5, 5, 3, 5, 4, 5, 4, 3, 3, 731]),
            (Reclaimable, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (Cma, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ],
    );
    dma32.pageblocks = [27, 1987, 24, 0, 2, 0];
    dma32.pcp = pcps(&[(0, 34, 2000, 63), (1, 0, 2000, 63)]);

    vec![
        dma,
        dma32,
        empty(ZoneType::Normal, 4),
        empty(ZoneType::Movable, 4),
    ]
}

/// An x86-32 layout with `DMA`, `Normal` and `HighMem` populated and
/// `Movable` empty, one CPU.
fn x86_32() -> Vec<ZoneSnapshot> {
    let mut dma = zone(ZoneType::Dma, 1, [4095, 3998, 3977], &[0, 823, 1997, 1997]);
    dma.watermarks = wmarks([0, 17, 21, 25, 29]);
    set_free(&mut dma, &[(Movable, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3])]);
    dma.pageblocks = [0, 8, 0, 0, 0, 0];
    dma.pcp = pcps(&[(0, 0, 0, 1)]);

    let mut normal = zone(
        ZoneType::Normal,
        4096,
        [225_280, 225_280, 210_752],
        &[0, 0, 9392, 9392],
    );
    normal.watermarks = wmarks([0, 945, 1181, 1417, 1653]);
    set_free(
        &mut normal,
        &[
            (Unmovable, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (Movable, [0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 195]),
        ],
    );
    normal.pageblocks = [10, 430, 0, 0, 0, 0];
    normal.pcp = pcps(&[(0, 7, 1292, 63)]);

    let mut high = zone(
        ZoneType::HighMem,
        229_376,
        [300_544, 300_544, 300_544],
        &[0, 0, 0, 0],
    );
    high.watermarks = wmarks([0, 128, 1104, 2080, 3056]);
    set_free(&mut high, &[(Movable, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 292])]);
    high.pageblocks = [0, 587, 0, 0, 0, 0];
    high.pcp = pcps(&[(0, 0, 1516, 63)]);

    vec![dma, normal, high, empty(ZoneType::Movable, 4)]
}

/// A populated x86-32 `Movable` zone: 1000 managed pages, 500 of them free.
fn movable_x86_32() -> ZoneSnapshot {
    let mut movable = zone(
        ZoneType::Movable,
        600_000,
        [1000, 1000, 1000],
        &[0, 0, 0, 0],
    );
    set_free(
        &mut movable,
        &[(Movable, [0, 0, 125, 0, 0, 0, 0, 0, 0, 0, 0])],
    );
    movable
}

#[test]
fn toy_buddyinfo() {
    check(
        buddyinfo(&toy()),
        "Node 0, zone   Normal      2      1      0      0      0      0      0      0      0      0      0 \n",
    );
}

#[test]
fn toy_pagetypeinfo() {
    check(
        pagetypeinfo(&toy(), 9),
        concat!(
            "Page block order: 9\n",
            "Pages per block:  512\n",
            "\n",
            "Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 \n",
            "Node    0, zone   Normal, type    Unmovable      1      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type      Movable      1      1      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type          CMA      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 \n",
            "\n",
            "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate \n",
            "Node 0, zone   Normal            0            1            0            0            0            0 \n",
        ),
    );
}

#[test]
fn toy_zoneinfo() {
    check(
        zoneinfo(&toy()),
        concat!(
            "Node 0, zone   Normal\n",
            "  pages free     4\n",
            "        boost    0\n",
            "        min      1\n",
            "        low      2\n",
            "        high     3\n",
            "        promo    4\n",
            "        spanned  64\n",
            "        present  64\n",
            "        managed  60\n",
            "        cma      0\n",
            "        protection: (0)\n",
            "      nr_free_pages 4\n",
            "      nr_free_pages_blocks 0\n",
            "      nr_free_cma  0\n",
            "  pagesets\n",
            "    cpu: 0\n",
            "              count:    2\n",
            "              high:     4\n",
            "              batch:    1\n",
            "  node_unreclaimable:  0\n",
            "  start_pfn:           256\n",
        ),
    );
}

#[test]
fn toy_meminfo() {
    check(
        meminfo(&MeminfoInput::new(toy(), false)),
        concat!(
            "MemTotal:            240 kB\n",
            "MemFree:              16 kB\n",
            "CmaTotal:              0 kB\n",
            "CmaFree:               0 kB\n",
        ),
    );
}

#[test]
fn x86_64_buddyinfo_skips_empty_zones() {
    check(
        buddyinfo(&x86_64()),
        concat!(
            "Node 0, zone      DMA      1      1      1      0      2      1      1      0      1      1      3 \n",
            "Node 0, zone    DMA32      4      6      5      4      5      4      5      4      3      3    732 \n",
        ),
    );
}

#[test]
fn x86_64_pagetypeinfo() {
    check(
        pagetypeinfo(&x86_64(), 9),
        concat!(
            "Page block order: 9\n",
            "Pages per block:  512\n",
            "\n",
            "Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 \n",
            "Node    0, zone      DMA, type    Unmovable      1      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone      DMA, type      Movable      0      1      1      0      2      1      1      0      1      1      3 \n",
            "Node    0, zone      DMA, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone      DMA, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone      DMA, type          CMA      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone      DMA, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone    DMA32, type    Unmovable      2      1      0      1      0      0      0      0      0      0      0 \n",
            "Node    0, zone    DMA32, type      Movable      1      5      5      3      5      4      5      4      3      3    731 \n",
            "Node    0, zone    DMA32, type  Reclaimable      1      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone    DMA32, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone    DMA32, type          CMA      0      0      0      0      0      0      0      0      0      0      1 \n",
            "Node    0, zone    DMA32, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 \n",
            "\n",
            "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate \n",
            "Node 0, zone      DMA            1            7            0            0            0            0 \n",
            "Node 0, zone    DMA32           27         1987           24            0            2            0 \n",
        ),
    );
}

#[test]
fn x86_64_zoneinfo_prints_empty_zones_up_to_protection() {
    check(
        zoneinfo(&x86_64()),
        concat!(
            "Node 0, zone      DMA\n",
            "  pages free     3975\n",
            "        boost    0\n",
            "        min      6\n",
            "        low      9\n",
            "        high     12\n",
            "        promo    15\n",
            "        spanned  4095\n",
            "        present  3998\n",
            "        managed  3976\n",
            "        cma      0\n",
            "        protection: (0, 2931, 2931, 2931)\n",
            "      nr_free_pages 3975\n",
            "      nr_free_pages_blocks 3584\n",
            "      nr_free_cma  0\n",
            "  pagesets\n",
            "    cpu: 0\n",
            "              count:    0\n",
            "              high:     0\n",
            "              batch:    1\n",
            "    cpu: 1\n",
            "              count:    0\n",
            "              high:     0\n",
            "              batch:    1\n",
            "  node_unreclaimable:  0\n",
            "  start_pfn:           1\n",
            "Node 0, zone    DMA32\n",
            "  pages free     752980\n",
            "        boost    0\n",
            "        min      1412\n",
            "        low      1765\n",
            "        high     2118\n",
            "        promo    2471\n",
            "        spanned  1044480\n",
            "        present  782298\n",
            "        managed  765000\n",
            "        cma      1024\n",
            "        protection: (0, 0, 0, 0)\n",
            "      nr_free_pages 752980\n",
            "      nr_free_pages_blocks 751104\n",
            "      nr_free_cma  1024\n",
            "  pagesets\n",
            "    cpu: 0\n",
            "              count:    34\n",
            "              high:     2000\n",
            "              batch:    63\n",
            "    cpu: 1\n",
            "              count:    0\n",
            "              high:     2000\n",
            "              batch:    63\n",
            "  node_unreclaimable:  0\n",
            "  start_pfn:           4096\n",
            "Node 0, zone   Normal\n",
            "  pages free     0\n",
            "        boost    0\n",
            "        min      0\n",
            "        low      0\n",
            "        high     0\n",
            "        promo    0\n",
            "        spanned  0\n",
            "        present  0\n",
            "        managed  0\n",
            "        cma      0\n",
            "        protection: (0, 0, 0, 0)\n",
            "Node 0, zone  Movable\n",
            "  pages free     0\n",
            "        boost    0\n",
            "        min      0\n",
            "        low      0\n",
            "        high     0\n",
            "        promo    0\n",
            "        spanned  0\n",
            "        present  0\n",
            "        managed  0\n",
            "        cma      0\n",
            "        protection: (0, 0, 0, 0)\n",
        ),
    );
}

#[test]
fn x86_64_meminfo_has_no_highmem_lines() {
    check(
        meminfo(&MeminfoInput::new(x86_64(), false)),
        concat!(
            "MemTotal:        3075904 kB\n",
            "MemFree:         3027820 kB\n",
            "CmaTotal:           4096 kB\n",
            "CmaFree:            4096 kB\n",
        ),
    );
}

#[test]
fn x86_32_buddyinfo() {
    check(
        buddyinfo(&x86_32()),
        concat!(
            "Node 0, zone      DMA      0      0      0      0      0      0      0      0      0      1      3 \n",
            "Node 0, zone   Normal      1      2      0      0      0      0      0      0      0      0    195 \n",
            "Node 0, zone  HighMem      0      0      0      0      0      0      0      0      0      0    292 \n",
        ),
    );
}

#[test]
fn x86_32_pagetypeinfo() {
    check(
        pagetypeinfo(&x86_32(), 9),
        concat!(
            "Page block order: 9\n",
            "Pages per block:  512\n",
            "\n",
            "Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 \n",
            "Node    0, zone      DMA, type    Unmovable      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone      DMA, type      Movable      0      0      0      0      0      0      0      0      0      1      3 \n",
            "Node    0, zone      DMA, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone      DMA, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone      DMA, type          CMA      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone      DMA, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type    Unmovable      1      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type      Movable      0      2      0      0      0      0      0      0      0      0    195 \n",
            "Node    0, zone   Normal, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type          CMA      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone  HighMem, type    Unmovable      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone  HighMem, type      Movable      0      0      0      0      0      0      0      0      0      0    292 \n",
            "Node    0, zone  HighMem, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone  HighMem, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone  HighMem, type          CMA      0      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone  HighMem, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 \n",
            "\n",
            "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate \n",
            "Node 0, zone      DMA            0            8            0            0            0            0 \n",
            "Node 0, zone   Normal           10          430            0            0            0            0 \n",
            "Node 0, zone  HighMem            0          587            0            0            0            0 \n",
        ),
    );
}

#[test]
fn x86_32_zoneinfo() {
    check(
        zoneinfo(&x86_32()),
        concat!(
            "Node 0, zone      DMA\n",
            "  pages free     3584\n",
            "        boost    0\n",
            "        min      17\n",
            "        low      21\n",
            "        high     25\n",
            "        promo    29\n",
            "        spanned  4095\n",
            "        present  3998\n",
            "        managed  3977\n",
            "        cma      0\n",
            "        protection: (0, 823, 1997, 1997)\n",
            "      nr_free_pages 3584\n",
            "      nr_free_pages_blocks 3584\n",
            "      nr_free_cma  0\n",
            "  pagesets\n",
            "    cpu: 0\n",
            "              count:    0\n",
            "              high:     0\n",
            "              batch:    1\n",
            "  node_unreclaimable:  0\n",
            "  start_pfn:           1\n",
            "Node 0, zone   Normal\n",
            "  pages free     199685\n",
            "        boost    0\n",
            "        min      945\n",
            "        low      1181\n",
            "        high     1417\n",
            "        promo    1653\n",
            "        spanned  225280\n",
            "        present  225280\n",
            "        managed  210752\n",
            "        cma      0\n",
            "        protection: (0, 0, 9392, 9392)\n",
            "      nr_free_pages 199685\n",
            "      nr_free_pages_blocks 199680\n",
            "      nr_free_cma  0\n",
            "  pagesets\n",
            "    cpu: 0\n",
            "              count:    7\n",
            "              high:     1292\n",
            "              batch:    63\n",
            "  node_unreclaimable:  0\n",
            "  start_pfn:           4096\n",
            "Node 0, zone  HighMem\n",
            "  pages free     299008\n",
            "        boost    0\n",
            "        min      128\n",
            "        low      1104\n",
            "        high     2080\n",
            "        promo    3056\n",
            "        spanned  300544\n",
            "        present  300544\n",
            "        managed  300544\n",
            "        cma      0\n",
            "        protection: (0, 0, 0, 0)\n",
            "      nr_free_pages 299008\n",
            "      nr_free_pages_blocks 299008\n",
            "      nr_free_cma  0\n",
            "  pagesets\n",
            "    cpu: 0\n",
            "              count:    0\n",
            "              high:     1516\n",
            "              batch:    63\n",
            "  node_unreclaimable:  0\n",
            "  start_pfn:           229376\n",
            "Node 0, zone  Movable\n",
            "  pages free     0\n",
            "        boost    0\n",
            "        min      0\n",
            "        low      0\n",
            "        high     0\n",
            "        promo    0\n",
            "        spanned  0\n",
            "        present  0\n",
            "        managed  0\n",
            "        cma      0\n",
            "        protection: (0, 0, 0, 0)\n",
        ),
    );
}

#[test]
fn x86_32_meminfo_splits_high_and_low() {
    check(
        meminfo(&MeminfoInput::new(x86_32(), true)),
        concat!(
            "MemTotal:        2061092 kB\n",
            "MemFree:         2009108 kB\n",
            "HighTotal:       1202176 kB\n",
            "HighFree:        1196032 kB\n",
            "LowTotal:         858916 kB\n",
            "LowFree:          813076 kB\n",
            "CmaTotal:              0 kB\n",
            "CmaFree:               0 kB\n",
        ),
    );
}

#[test]
fn movable_is_highmem_when_it_takes_from_highmem() {
    let mut zones = x86_32();
    zones[3] = movable_x86_32();
    check(
        meminfo(&MeminfoInput::new(zones, true)),
        concat!(
            "MemTotal:        2065092 kB\n",
            "MemFree:         2011108 kB\n",
            "HighTotal:       1206176 kB\n",
            "HighFree:        1198032 kB\n",
            "LowTotal:         858916 kB\n",
            "LowFree:          813076 kB\n",
            "CmaTotal:              0 kB\n",
            "CmaFree:               0 kB\n",
        ),
    );
}

#[test]
fn movable_is_lowmem_when_highmem_has_no_range() {
    let mut zones = x86_32();
    zones[2] = empty(ZoneType::HighMem, 4);
    zones[3] = movable_x86_32();
    check(
        meminfo(&MeminfoInput::new(zones, true)),
        concat!(
            "MemTotal:         862916 kB\n",
            "MemFree:          815076 kB\n",
            "HighTotal:             0 kB\n",
            "HighFree:              0 kB\n",
            "LowTotal:         862916 kB\n",
            "LowFree:          815076 kB\n",
            "CmaTotal:              0 kB\n",
            "CmaFree:               0 kB\n",
        ),
    );
}

#[test]
fn meminfo_prints_optional_lines_in_linux_order() {
    let input = MeminfoInput {
        slab_reclaimable_kb: Some(1234),
        slab_unreclaimable_kb: Some(5678),
        vmalloc_total_kb: Some(34_359_738_367),
        vmalloc_used_kb: Some(20480),
        percpu_kb: Some(1024),
        ..MeminfoInput::new(toy(), false)
    };
    check(
        meminfo(&input),
        concat!(
            "MemTotal:            240 kB\n",
            "MemFree:              16 kB\n",
            "KReclaimable:       1234 kB\n",
            "Slab:               6912 kB\n",
            "SReclaimable:       1234 kB\n",
            "SUnreclaim:         5678 kB\n",
            "VmallocTotal:   34359738367 kB\n",
            "VmallocUsed:       20480 kB\n",
            "VmallocChunk:          0 kB\n",
            "Percpu:             1024 kB\n",
            "CmaTotal:              0 kB\n",
            "CmaFree:               0 kB\n",
        ),
    );
}

#[test]
fn meminfo_prints_only_the_figures_it_has() {
    let input = MeminfoInput {
        slab_unreclaimable_kb: Some(5678),
        vmalloc_used_kb: Some(8),
        ..MeminfoInput::new(toy(), false)
    };
    check(
        meminfo(&input),
        concat!(
            "MemTotal:            240 kB\n",
            "MemFree:              16 kB\n",
            "SUnreclaim:         5678 kB\n",
            "VmallocUsed:           8 kB\n",
            "VmallocChunk:          0 kB\n",
            "CmaTotal:              0 kB\n",
            "CmaFree:               0 kB\n",
        ),
    );
}

#[test]
fn meminfo_input_new_has_no_optional_figures() {
    let input = MeminfoInput::new(toy(), true);
    assert_eq!(input.zones, toy());
    assert!(input.highmem);
    let optional = [
        input.slab_reclaimable_kb,
        input.slab_unreclaimable_kb,
        input.vmalloc_total_kb,
        input.vmalloc_used_kb,
        input.percpu_kb,
    ];
    assert_eq!(optional, [None; 5]);
}

#[test]
fn pagetypeinfo_caps_long_free_lists_like_linux() {
    let mut normal = zone(ZoneType::Normal, 0, [1 << 30, 1 << 30, 1 << 30], &[0]);
    set_free(
        &mut normal,
        &[
            (Unmovable, [99_999, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (Movable, [100_000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 250_000]),
        ],
    );
    let zones = [normal];
    let text = pagetypeinfo(&zones, 9);
    let rows: Vec<&str> = text.lines().filter(|l| l.contains(", type ")).collect();
    check(
        format!("{}\n{}\n", rows[0], rows[1]),
        concat!(
            "Node    0, zone   Normal, type    Unmovable  99999      0      0      0      0      0      0      0      0      0      0 \n",
            "Node    0, zone   Normal, type      Movable >100000      0      0      0      0      0      0      0      0      0 >100000 \n",
        ),
    );
    check(
        buddyinfo(&zones),
        "Node 0, zone   Normal 199999      0      0      0      0      0      0      0      0      0 250000 \n",
    );
}

#[test]
fn nothing_populated_means_empty_buddyinfo_and_pagetypeinfo() {
    let zones = [empty(ZoneType::Dma, 2), empty(ZoneType::Normal, 2)];
    check(buddyinfo(&zones), "");
    check(pagetypeinfo(&zones, 9), "");
    check(
        meminfo(&MeminfoInput::new(zones.to_vec(), false)),
        concat!(
            "MemTotal:              0 kB\n",
            "MemFree:               0 kB\n",
            "CmaTotal:              0 kB\n",
            "CmaFree:               0 kB\n",
        ),
    );
}

#[test]
fn pagetypeinfo_prints_one_section_per_node_with_memory() {
    let mut zones = toy();
    let mut second = toy().remove(0);
    second.node = 1;
    zones.push(second);
    let mut memoryless = empty(ZoneType::Normal, 1);
    memoryless.node = 2;
    zones.push(memoryless);
    let text = pagetypeinfo(&zones, 9);
    assert_eq!(text.matches("Page block order: 9\n").count(), 2, "{text}");
    assert_eq!(text.matches("Number of blocks type ").count(), 2, "{text}");
    assert!(
        text.contains("\nNode    1, zone   Normal, type      Movable      1      1 "),
        "{text}"
    );
    assert!(
        text.contains("\nNode 1, zone   Normal            0            1 "),
        "{text}"
    );
    assert!(
        !text.contains("Node    2") && !text.contains("Node 2"),
        "{text}"
    );
}

/// The numbers after the zone name of every line that names a zone, as
/// `(zone name, numbers)`; `type` rows of `/proc/pagetypeinfo` carry the type
/// in the name, and a `>` cap marker is dropped.
fn parse_rows(text: &str) -> Vec<(String, Vec<usize>)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Node ")?;
            let (_, rest) = rest.split_once(", zone ")?;
            let mut words = rest.split_whitespace();
            let mut name = String::from(words.next()?);
            if name.ends_with(',') {
                name.pop();
                name.push(' ');
                name.push_str(words.nth(1)?);
            }
            let numbers = words
                .map(|w| w.trim_start_matches('>').parse().ok())
                .collect::<Option<_>>()?;
            Some((name, numbers))
        })
        .collect()
}

/// The value of every `/proc/zoneinfo` line starting with `key`, per zone.
fn parse_zoneinfo(text: &str, key: &str) -> Vec<(String, usize)> {
    let mut zone = String::new();
    let mut found = Vec::new();
    for line in text.lines() {
        if let Some((_, name)) = line.split_once(", zone ") {
            zone = String::from(name.trim());
        } else if let Some(value) = line.trim_start().strip_prefix(key) {
            found.push((zone.clone(), value.trim().parse().unwrap()));
        }
    }
    found
}

/// The KiB value of a `/proc/meminfo` line.
fn parse_meminfo(text: &str, label: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(label)).unwrap();
    line[16..].trim_end_matches(" kB").trim().parse().unwrap()
}

/// Random zones of one of the three layouts: random free lists on populated
/// zones, nothing on unpopulated ones, counts derived as a consistent zone
/// keeps them.
fn arb_zones() -> impl Strategy<Value = Vec<ZoneSnapshot>> {
    let layouts = [
        vec![ZoneType::Normal],
        vec![
            ZoneType::Dma,
            ZoneType::Dma32,
            ZoneType::Normal,
            ZoneType::Movable,
        ],
        vec![
            ZoneType::Dma,
            ZoneType::Normal,
            ZoneType::HighMem,
            ZoneType::Movable,
        ],
    ];
    proptest::sample::select(layouts.to_vec())
        .prop_flat_map(|layout| {
            let n = layout.len();
            let one = (
                any::<bool>(),
                proptest::array::uniform6(proptest::array::uniform11(0usize..40)),
                0usize..5000,
                0usize..300,
            );
            (Just(layout), proptest::collection::vec(one, n))
        })
        .prop_map(|(layout, specs)| {
            let n = layout.len();
            let mut start = 0;
            layout
                .into_iter()
                .zip(specs)
                .map(|(zone_type, (populated, lists, extra, pcp))| {
                    if !populated {
                        return empty(zone_type, n);
                    }
                    let mut z = zone(zone_type, start, [0, 0, 0], &vec![0; n]);
                    z.nr_free_mt = lists;
                    derive_free(&mut z);
                    z.managed = z.free_pages + pcp + extra;
                    z.present = z.managed;
                    z.spanned = z.managed;
                    z.populated = z.managed > 0;
                    z.pcp = pcps(&[(0, pcp, 2 * pcp, 1)]);
                    start += z.spanned;
                    z
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn rendered_files_agree_with_each_other(zones in arb_zones()) {
        let populated: Vec<&ZoneSnapshot> = zones.iter().filter(|z| z.populated).collect();

        let buddy = parse_rows(&buddyinfo(&zones));
        prop_assert_eq!(buddy.len(), populated.len());
        for ((name, counts), z) in buddy.iter().zip(&populated) {
            prop_assert_eq!(name.as_str(), z.zone.name());
            prop_assert_eq!(counts.len(), NR_PAGE_ORDERS);
            prop_assert_eq!(counts.as_slice(), z.nr_free.as_slice());
        }

        let pagetype = pagetypeinfo(&zones, 9);
        let (free_rows, block_rows): (Vec<_>, Vec<_>) =
            parse_rows(&pagetype).into_iter().partition(|(name, _)| name.contains(' '));
        prop_assert_eq!(free_rows.len(), populated.len() * MigrateType::COUNT);
        prop_assert_eq!(block_rows.len(), populated.len());
        for (name, counts) in &buddy {
            let mut sums = [0; NR_PAGE_ORDERS];
            for (_, row) in free_rows.iter().filter(|(n, _)| n.split(' ').next() == Some(name.as_str())) {
                for (sum, count) in sums.iter_mut().zip(row) {
                    *sum += count;
                }
            }
            prop_assert_eq!(sums.as_slice(), counts.as_slice());
        }

        let zoneinfo = zoneinfo(&zones);
        let pages_free = parse_zoneinfo(&zoneinfo, "pages free");
        let nr_free_pages = parse_zoneinfo(&zoneinfo, "nr_free_pages ");
        let managed = parse_zoneinfo(&zoneinfo, "managed");
        prop_assert_eq!(pages_free.len(), zones.len());
        prop_assert_eq!(nr_free_pages.len(), populated.len());
        let mut buddy_pages = 0;
        for (name, counts) in &buddy {
            let pages: usize = counts.iter().enumerate().map(|(order, n)| n << order).sum();
            buddy_pages += pages;
            prop_assert!(pages_free.contains(&(name.clone(), pages)));
            prop_assert!(nr_free_pages.contains(&(name.clone(), pages)));
        }
        let zoneinfo_free: usize = pages_free.iter().map(|(_, v)| v).sum();
        prop_assert_eq!(zoneinfo_free, buddy_pages);

        let meminfo = meminfo(&MeminfoInput::new(zones.clone(), true));
        prop_assert_eq!(parse_meminfo(&meminfo, "MemFree:"), 4 * buddy_pages as u64);
        let total: usize = managed.iter().map(|(_, v)| v).sum();
        prop_assert_eq!(parse_meminfo(&meminfo, "MemTotal:"), 4 * total as u64);
        prop_assert_eq!(
            parse_meminfo(&meminfo, "LowFree:") + parse_meminfo(&meminfo, "HighFree:"),
            parse_meminfo(&meminfo, "MemFree:")
        );
    }
}
