//! The `/proc` files Linux prints about physical memory, rendered from zone
//! snapshots: `/proc/buddyinfo`, `/proc/pagetypeinfo`, `/proc/zoneinfo` and
//! `/proc/meminfo`.
//!
//! Every function here is pure: it takes [`ZoneSnapshot`]s (one per zone of
//! the machine's layout, in zone order, populated or not) and returns the text
//! of the file.
//! Every line a renderer prints is byte-for-byte the line a Linux 6.x kernel
//! (current mainline, with `CONFIG_CMA` and `CONFIG_MEMORY_ISOLATION`, without
//! `CONFIG_NUMA`) prints for the same numbers.
//! Lines for things kmm does not model are left out rather than filled with
//! made-up values; each function's docs list what it prints and what it omits.
//! The formats come from `mm/vmstat.c` (`frag_show_print`,
//! `pagetypeinfo_show`, `zoneinfo_show_print`) and `fs/proc/meminfo.c`
//! (`meminfo_proc_show`, `show_val_kb`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use kmm_gfp::{MigrateType, ZoneType};
use kmm_page::{NR_PAGE_ORDERS, PAGE_SHIFT, PAGEBLOCK_ORDER};
use kmm_zone::snapshot::ZoneSnapshot;

#[cfg(test)]
mod tests;

/// Appends formatted text to a `String`.
///
/// Formatting into a `String` cannot fail, so the `fmt::Result` carries no
/// information and is dropped here once instead of at every call.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// `pagetypeinfo_showfree_print` stops walking a free list at this many
/// entries and prints `>100000` instead of the length.
const FREE_LIST_WALK_CAP: usize = 100_000;

/// The two header lines of `/proc/slabinfo` version 2.1 (`print_slabinfo_header`
/// in `mm/slab_common.c`): the whole file of a machine without a slab layer
/// (no memory behind its frames); the rows come from
/// `kmm_slab::SlabAllocator::slabinfo`.
pub const SLABINFO_HEADER: &str = "slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n";

/// Renders `/proc/buddyinfo`: one line per populated zone with the number of
/// free blocks of each order.
///
/// Each line is `"Node %d, zone %8s "` followed by `"%6lu "` for every order
/// from 0 to `MAX_PAGE_ORDER` (11 columns) and a newline; the space before the
/// newline is part of the format.
/// Unpopulated zones print nothing, and no zone populated means an empty file.
/// Linux: `frag_show` and `frag_show_print` in `mm/vmstat.c`.
#[doc(alias = "frag_show")]
#[doc(alias = "frag_show_print")]
pub fn buddyinfo(zones: &[ZoneSnapshot]) -> String {
    let mut out = String::new();
    for z in zones.iter().filter(|z| z.populated) {
        put!(out, "Node {}, zone {:>8} ", z.node, z.zone.name());
        for blocks in z.nr_free {
            put!(out, "{blocks:>6} ");
        }
        out.push('\n');
    }
    out
}

/// Renders `/proc/pagetypeinfo`: free blocks per order and migrate type, and
/// pageblocks per migrate type, for every populated zone.
///
/// The whole file is printed as Linux 6.x prints it for a node with memory:
///
/// - `"Page block order: %d\n"`, `"Pages per block:  %lu\n"` (two spaces) and
///   an empty line;
/// - the header `"%-43s "` of `Free pages count per migrate type at order`
///   followed by `"%6d "` for each order and a newline, then for every
///   populated zone and every migrate type (`Unmovable`, `Movable`,
///   `Reclaimable`, `HighAtomic`, `CMA`, `Isolate`: a kernel with
///   `CONFIG_CMA` and `CONFIG_MEMORY_ISOLATION`) a row
///   `"Node %4d, zone %8s, type %12s "` followed by `"%s%6lu "` per order
///   (the prefix is `>` when the list holds 100000 or more blocks, because
///   Linux stops counting there, and the count then reads 100000) and a
///   newline;
/// - an empty line and the header `"%-23s"` of `Number of blocks type `
///   followed by `"%12s "` for each migrate type name and a newline, then
///   per populated zone `"Node %d, zone %8s "` followed by `"%12lu "` per
///   migrate type and a newline.
///
/// The `Number of mixed blocks` table that follows with `CONFIG_PAGE_OWNER` is
/// omitted: kmm keeps no page owner records.
/// A node without populated zones prints nothing, as `pagetypeinfo_show`
/// skips memoryless nodes.
/// `pageblock_order` is normally [`kmm_page::PAGEBLOCK_ORDER`]; an order of
/// 64 or more has no `unsigned long` page count and prints `0` pages per
/// block.
/// Linux: `pagetypeinfo_show`, `pagetypeinfo_showfree_print` and
/// `pagetypeinfo_showblockcount_print` in `mm/vmstat.c`.
#[doc(alias = "pagetypeinfo_show")]
#[doc(alias = "pagetypeinfo_showfree_print")]
#[doc(alias = "pagetypeinfo_showblockcount_print")]
pub fn pagetypeinfo(zones: &[ZoneSnapshot], pageblock_order: u32) -> String {
    let pages_per_block = 1u64.checked_shl(pageblock_order).unwrap_or(0);
    let mut out = String::new();
    for node in zones.chunk_by(|a, b| a.node == b.node) {
        let populated: Vec<&ZoneSnapshot> = node.iter().filter(|z| z.populated).collect();
        if populated.is_empty() {
            continue;
        }
        put!(out, "Page block order: {pageblock_order}\n");
        put!(out, "Pages per block:  {pages_per_block}\n");
        out.push('\n');

        put!(out, "{:<43} ", "Free pages count per migrate type at order");
        for order in 0..NR_PAGE_ORDERS {
            put!(out, "{order:>6} ");
        }
        out.push('\n');
        for z in &populated {
            for mt in MigrateType::ALL {
                put!(
                    out,
                    "Node {:>4}, zone {:>8}, type {:>12} ",
                    z.node,
                    z.zone.name(),
                    mt.name()
                );
                for blocks in z.nr_free_mt[mt.index()] {
                    if blocks >= FREE_LIST_WALK_CAP {
                        put!(out, ">{FREE_LIST_WALK_CAP:>6} ");
                    } else {
                        put!(out, "{blocks:>6} ");
                    }
                }
                out.push('\n');
            }
        }

        put!(out, "\n{:<23}", "Number of blocks type ");
        for mt in MigrateType::ALL {
            put!(out, "{:>12} ", mt.name());
        }
        out.push('\n');
        for z in &populated {
            put!(out, "Node {}, zone {:>8} ", z.node, z.zone.name());
            for blocks in z.pageblocks {
                put!(out, "{blocks:>12} ");
            }
            out.push('\n');
        }
    }
    out
}

/// Renders `/proc/zoneinfo` for the lines kmm models, every zone of the
/// layout, populated or not.
///
/// Printed, each exactly as `zoneinfo_show_print` prints it (Linux 6.7 and
/// later for the per-CPU lines):
///
/// - `"Node %d, zone %8s"` (no trailing space);
/// - `"\n  pages free     %lu"` (`NR_FREE_PAGES`, buddy lists only), then
///   `boost`, `min`, `low`, `high`, `promo`, `spanned`, `present`, `managed`
///   and `cma`, each `"\n        %-9s%lu"` (`cma` is the zone's CMA
///   pageblocks times `1 << PAGEBLOCK_ORDER`, what `zone->cma_pages` counts);
/// - `"\n        protection: (%ld"`, `", %ld"` for each further
///   `lowmem_reserve` entry, and `")"` (an empty `lowmem_reserve` prints
///   `()`);
/// - for an unpopulated zone, a newline, and nothing more;
/// - for a populated zone, the zone counters kmm has, each
///   `"\n      %-12s %lu"`: `nr_free_pages`, `nr_free_pages_blocks` (free
///   pages in blocks of order `PAGEBLOCK_ORDER` or more, `Isolate` lists
///   excluded; the counter recent kernels keep for `defrag_mode`) and
///   `nr_free_cma` (free pages on the `CMA` lists);
/// - `"\n  pagesets"`, then per CPU `"\n    cpu: %i"` and the
///   `count:    %i`, `high:     %i` and `batch:    %i` lines (each
///   `"\n              "` first);
/// - `"\n  node_unreclaimable:  %u"` (always 0: kmm has no `kswapd`, so
///   `kswapd_failures` never grows), `"\n  start_pfn:           %lu"` and a
///   newline.
///
/// Omitted, because kmm does not model them:
///
/// - the `per-node stats` header and its lines after the first populated zone
///   of a node (kmm keeps no node counters: no LRU, page cache, slab or
///   working-set statistics);
/// - the zone counters other than the three above (`nr_zone_inactive_anon`,
///   `nr_zone_active_anon`, `nr_zone_inactive_file`, `nr_zone_active_file`,
///   `nr_zone_unevictable`, `nr_zone_write_pending`, `nr_mlock`, `nr_bounce`,
///   `nr_zspages`, `nr_unaccepted`) and the `CONFIG_NUMA` event counters
///   (`numa_hit` and the rest; kmm has one node);
/// - the per-CPU `high_min:` and `high_max:` lines (kmm does not auto-tune
///   `pcp->high`, so there is no range to print);
/// - the per-CPU `vm stats threshold:` line (kmm updates its counters exactly,
///   with no per-CPU deltas to fold, so there is no threshold);
/// - the `reserved_highatomic:` and `free_highatomic:` lines that the newest
///   kernels print after `start_pfn:` (kmm's reference `mm/vmstat.c` ends
///   with `start_pfn:`).
///
/// Linux: `zoneinfo_show` and `zoneinfo_show_print` in `mm/vmstat.c`.
#[doc(alias = "zoneinfo_show")]
#[doc(alias = "zoneinfo_show_print")]
pub fn zoneinfo(zones: &[ZoneSnapshot]) -> String {
    let mut out = String::new();
    for z in zones {
        let wm = &z.watermarks;
        put!(out, "Node {}, zone {:>8}", z.node, z.zone.name());
        put!(out, "\n  pages free     {}", z.free_pages);
        for (name, value) in [
            ("boost", wm.boost),
            ("min", wm.min),
            ("low", wm.low),
            ("high", wm.high),
            ("promo", wm.promo),
            ("spanned", z.spanned),
            ("present", z.present),
            ("managed", z.managed),
            ("cma", cma_pages(z)),
        ] {
            put!(out, "\n        {name:<9}{value}");
        }
        out.push_str("\n        protection: (");
        for (i, reserve) in z.lowmem_reserve.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            put!(out, "{reserve}");
        }
        out.push(')');
        if !z.populated {
            out.push('\n');
            continue;
        }

        for (name, value) in [
            ("nr_free_pages", z.free_pages),
            ("nr_free_pages_blocks", free_pages_in_pageblocks(z)),
            ("nr_free_cma", free_pages_of(z, MigrateType::Cma)),
        ] {
            put!(out, "\n      {name:<12} {value}");
        }

        out.push_str("\n  pagesets");
        for pcp in &z.pcp {
            put!(out, "\n    cpu: {}", pcp.cpu);
            put!(out, "\n              count:    {}", pcp.count);
            put!(out, "\n              high:     {}", pcp.high);
            put!(out, "\n              batch:    {}", pcp.batch);
        }
        put!(out, "\n  node_unreclaimable:  {}", 0);
        put!(out, "\n  start_pfn:           {}", z.start_pfn);
        out.push('\n');
    }
    out
}

/// What [`meminfo`] prints: the zones, whether the kernel has highmem, and
/// the figures other subsystems report, each line printed only when known.
///
/// Build it with [`MeminfoInput::new`] and set the optional fields that apply;
/// new optional fields will be added as kmm models more subsystems.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeminfoInput {
    /// Every zone of the machine, in zone order.
    pub zones: Vec<ZoneSnapshot>,
    /// Whether the kernel has `CONFIG_HIGHMEM` (an x86-32 layout): adds the
    /// `HighTotal`, `HighFree`, `LowTotal` and `LowFree` lines.
    pub highmem: bool,
    /// Reclaimable slab memory in KiB (`NR_SLAB_RECLAIMABLE_B`).
    pub slab_reclaimable_kb: Option<u64>,
    /// Unreclaimable slab memory in KiB (`NR_SLAB_UNRECLAIMABLE_B`, large
    /// `kmalloc` allocations included).
    pub slab_unreclaimable_kb: Option<u64>,
    /// Size of the vmalloc address range in KiB (`VMALLOC_TOTAL >> 10`).
    pub vmalloc_total_kb: Option<u64>,
    /// Memory backing vmalloc areas in KiB (`vmalloc_nr_pages()`).
    pub vmalloc_used_kb: Option<u64>,
    /// Memory of the per-CPU allocator in KiB (`pcpu_nr_pages()`).
    pub percpu_kb: Option<u64>,
}

impl MeminfoInput {
    /// Input with the zones and the highmem setting and no optional figures.
    pub fn new(zones: Vec<ZoneSnapshot>, highmem: bool) -> MeminfoInput {
        MeminfoInput {
            zones,
            highmem,
            ..MeminfoInput::default()
        }
    }
}

/// Renders `/proc/meminfo` for the lines kmm models, in Linux's order.
///
/// Every line is `show_val_kb`'s format: the label padded to 16 characters,
/// the value in KiB right-aligned in 8 digits, and `" kB\n"`
/// (`MemTotal:       16307388 kB`).
/// Printed, in this order:
///
/// - `MemTotal` (the zones' managed pages, `totalram_pages()`) and `MemFree`
///   (the zones' `NR_FREE_PAGES`; pages on per-CPU lists are not free here,
///   as in Linux);
/// - with [`MeminfoInput::highmem`]: `HighTotal` and `HighFree` (managed and
///   free pages of `HighMem`, and of `Movable` when the highest zone below it
///   with a span is `HighMem`, which is `is_highmem_idx` with `movable_zone`),
///   `LowTotal` and `LowFree` (the rest);
/// - `KReclaimable` (equal to `SReclaimable`: kmm has no other reclaimable
///   kernel memory) and `SReclaimable` when `slab_reclaimable_kb` is set,
///   `Slab` when both slab figures are set, `SUnreclaim` when
///   `slab_unreclaimable_kb` is set, in Linux's order `KReclaimable`, `Slab`,
///   `SReclaimable`, `SUnreclaim`;
/// - `VmallocTotal` and `VmallocUsed` when set, and `VmallocChunk` (always 0
///   since Linux 4.4) when either is set;
/// - `Percpu` when set;
/// - `CmaTotal` and `CmaFree` (`CONFIG_CMA`: pages in CMA pageblocks, and
///   free pages on the `CMA` lists).
///
/// Omitted, because kmm does not model them: `MemAvailable` (it needs
/// `totalreserve_pages` and page-cache estimates), `Buffers`, `Cached`,
/// `SwapCached`, the LRU lines (`Active`, `Inactive` and their `anon` and
/// `file` halves, `Unevictable`, `Mlocked`), `SwapTotal`, `SwapFree`,
/// `Zswap`, `Zswapped`, `Dirty`, `Writeback`, `AnonPages`, `Mapped`, `Shmem`,
/// `KernelStack`, `ShadowCallStack`, `PageTables`, `SecPageTables`,
/// `NFS_Unstable`, `Bounce`, `WritebackTmp`, `CommitLimit`, `Committed_AS`,
/// `HardwareCorrupted`, the transparent huge page lines, `Unaccepted`,
/// `Balloon`, the hugetlb lines and the architecture's `DirectMap` lines.
/// Linux: `meminfo_proc_show` in `fs/proc/meminfo.c`.
#[doc(alias = "meminfo_proc_show")]
pub fn meminfo(input: &MeminfoInput) -> String {
    let zones = &input.zones;
    let mut out = String::new();

    let total = sum_pages(zones.iter().map(|z| z.managed));
    let free = sum_pages(zones.iter().map(|z| z.free_pages));
    show_val_kb(&mut out, "MemTotal:", pages_to_kb(total));
    show_val_kb(&mut out, "MemFree:", pages_to_kb(free));

    if input.highmem {
        let movable_is_high = movable_zone(zones) == Some(ZoneType::HighMem);
        let high = |z: &&ZoneSnapshot| {
            z.zone == ZoneType::HighMem || (z.zone == ZoneType::Movable && movable_is_high)
        };
        let high_total = sum_pages(zones.iter().filter(high).map(|z| z.managed));
        let high_free = sum_pages(zones.iter().filter(high).map(|z| z.free_pages));
        show_val_kb(&mut out, "HighTotal:", pages_to_kb(high_total));
        show_val_kb(&mut out, "HighFree:", pages_to_kb(high_free));
        show_val_kb(
            &mut out,
            "LowTotal:",
            pages_to_kb(total.saturating_sub(high_total)),
        );
        show_val_kb(
            &mut out,
            "LowFree:",
            pages_to_kb(free.saturating_sub(high_free)),
        );
    }

    if let Some(reclaimable) = input.slab_reclaimable_kb {
        show_val_kb(&mut out, "KReclaimable:", reclaimable);
    }
    if let (Some(reclaimable), Some(unreclaimable)) =
        (input.slab_reclaimable_kb, input.slab_unreclaimable_kb)
    {
        show_val_kb(&mut out, "Slab:", reclaimable.saturating_add(unreclaimable));
    }
    if let Some(reclaimable) = input.slab_reclaimable_kb {
        show_val_kb(&mut out, "SReclaimable:", reclaimable);
    }
    if let Some(unreclaimable) = input.slab_unreclaimable_kb {
        show_val_kb(&mut out, "SUnreclaim:", unreclaimable);
    }

    if let Some(vmalloc_total) = input.vmalloc_total_kb {
        show_val_kb(&mut out, "VmallocTotal:", vmalloc_total);
    }
    if let Some(vmalloc_used) = input.vmalloc_used_kb {
        show_val_kb(&mut out, "VmallocUsed:", vmalloc_used);
    }
    if input.vmalloc_total_kb.is_some() || input.vmalloc_used_kb.is_some() {
        show_val_kb(&mut out, "VmallocChunk:", 0);
    }
    if let Some(percpu) = input.percpu_kb {
        show_val_kb(&mut out, "Percpu:", percpu);
    }

    let cma_total = sum_pages(zones.iter().map(cma_pages));
    let cma_free = sum_pages(zones.iter().map(|z| free_pages_of(z, MigrateType::Cma)));
    show_val_kb(&mut out, "CmaTotal:", pages_to_kb(cma_total));
    show_val_kb(&mut out, "CmaFree:", pages_to_kb(cma_free));
    out
}

/// One `/proc/meminfo` line: the label padded to 16 characters, the KiB value
/// right-aligned in 8 digits, then `" kB"` (`show_val_kb`).
fn show_val_kb(out: &mut String, label: &str, kb: u64) {
    put!(out, "{label:<16}{kb:>8} kB\n");
}

/// Pages to KiB (`K(x)`, `x << (PAGE_SHIFT - 10)`).
fn pages_to_kb(pages: u64) -> u64 {
    pages.saturating_mul(1 << (PAGE_SHIFT - 10))
}

/// Sums page counts without overflowing.
fn sum_pages(pages: impl Iterator<Item = usize>) -> u64 {
    pages.fold(0u64, |sum, p| sum.saturating_add(p as u64))
}

/// The zone `ZONE_MOVABLE` takes its pages from (`movable_zone`, set by
/// `find_usable_zone_for_movable` in `mm/mm_init.c`): the highest zone below
/// `Movable` whose range is not empty.
fn movable_zone(zones: &[ZoneSnapshot]) -> Option<ZoneType> {
    zones
        .iter()
        .filter(|z| z.zone != ZoneType::Movable && z.spanned > 0)
        .map(|z| z.zone)
        .max()
}

/// Pages a zone holds in CMA pageblocks (`zone->cma_pages`).
fn cma_pages(z: &ZoneSnapshot) -> usize {
    z.pageblocks[MigrateType::Cma.index()].saturating_mul(1 << PAGEBLOCK_ORDER)
}

/// Pages in `blocks` free blocks of `order` (`order` < `NR_PAGE_ORDERS`).
fn block_pages(blocks: usize, order: usize) -> usize {
    blocks.saturating_mul(1 << order)
}

/// Free pages on one migrate type's lists, over all orders.
fn free_pages_of(z: &ZoneSnapshot, mt: MigrateType) -> usize {
    z.nr_free_mt[mt.index()]
        .iter()
        .enumerate()
        .fold(0, |sum, (order, &blocks)| {
            sum.saturating_add(block_pages(blocks, order))
        })
}

/// Free pages in blocks of at least a pageblock, `Isolate` lists excluded
/// (`NR_FREE_PAGES_BLOCKS`, kept by `__add_to_free_list` in
/// `mm/page_alloc.c`).
fn free_pages_in_pageblocks(z: &ZoneSnapshot) -> usize {
    MigrateType::ALL
        .into_iter()
        .filter(|&mt| mt != MigrateType::Isolate)
        .flat_map(|mt| z.nr_free_mt[mt.index()].iter().enumerate())
        .filter(|&(order, _)| order >= PAGEBLOCK_ORDER as usize)
        .fold(0, |sum, (order, &blocks)| {
            sum.saturating_add(block_pages(blocks, order))
        })
}
