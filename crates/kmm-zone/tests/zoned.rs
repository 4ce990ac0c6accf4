//! API tests of `ZonedAllocator`, run for both buddy backends: zone
//! selection and fallback, watermarks and reserves, failure reasons, the
//! per-CPU lists, misuse, zeroing, `alloc_pages_exact`, random operation
//! sequences and two threads on two CPUs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{ThreadCpus, VecMemory, boot, buddy_free, pcp_pages};
use kmm_buddy::{BuddyBackend, EagerBuddy, LazyBuddy};
use kmm_gfp::{
    GFP_ATOMIC, GFP_DMA, GFP_DMA32, GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT,
    Gfp, ZoneType,
};
use kmm_page::{
    MAX_PAGE_ORDER, NoMemory, PAGE_SIZE, PageAllocator, PageError, PageType, Pfn, PfnRange,
};
use kmm_zone::{Arch, MachineLayout, ZoneSnapshot, ZonedAllocator, ZonedConfig};
use proptest::prelude::*;

/// Instantiates a generic test for each backend.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn eager() {
                super::$name::<kmm_buddy::EagerBuddy>();
            }
            #[test]
            fn lazy() {
                super::$name::<kmm_buddy::LazyBuddy>();
            }
        }
    )*};
}

both_backends!(
    gfp_dma_stays_below_16_mib,
    gfp_kernel_never_gets_highmem,
    kernel_falls_back_downward,
    kernel_falls_back_downward_through_pcp,
    pcp_pages_wait_behind_the_watermark,
    atomic_dips_below_min,
    kernel_drains_pcp_before_failing,
    failure_reasons,
    pcp_refill_and_drain,
    pcp_off_caches_nothing,
    misuse_leaves_state_unchanged,
    zeroed_pages_are_zero,
    get_free_pages_without_memory,
    exact_allocations,
    two_threads_on_two_cpus,
);

/// Snapshots without what legitimately changes over a run: the counters,
/// and the migrate types of pageblocks (stealing is permanent, as in Linux).
fn normalized(mut s: Vec<ZoneSnapshot>) -> Vec<ZoneSnapshot> {
    for z in &mut s {
        z.stats = Default::default();
        z.nr_free_mt = Default::default();
        z.pageblocks = Default::default();
    }
    s
}

fn managed<B: BuddyBackend>(a: &ZonedAllocator<B>) -> usize {
    a.snapshots().iter().map(|s| s.managed).sum()
}

fn allocated<B: BuddyBackend>(a: &ZonedAllocator<B>) -> usize {
    managed(a) - buddy_free(a) - pcp_pages(a)
}

fn zone_free<B: BuddyBackend>(a: &ZonedAllocator<B>, zone: ZoneType) -> usize {
    a.snapshots()
        .iter()
        .find(|s| s.zone == zone)
        .map_or(0, |s| s.free_pages)
}

/// Allocates with `gfp` and `order` until the first error; returns the
/// blocks and the error.
fn exhaust<B: BuddyBackend>(a: &ZonedAllocator<B>, gfp: Gfp, order: u32) -> (Vec<Pfn>, PageError) {
    let mut got = Vec::new();
    loop {
        match a.alloc_pages(gfp, order) {
            Ok(pfn) => got.push(pfn),
            Err(e) => return (got, e),
        }
    }
}

fn gfp_dma_stays_below_16_mib<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    let a = boot::<B>(MachineLayout::x86_64(64 << 20), true, None, 1);
    let (got, err) = exhaust(&a, GFP_DMA, 0);
    assert!(got.len() > 3000, "{}", got.len());
    assert!(
        got.iter()
            .all(|p| p.0 < 4096 && a.zone_of(*p) == Some(ZoneType::Dma))
    );
    assert_eq!(
        err,
        PageError::BelowWatermark {
            order: 0,
            watermark: "min"
        }
    );
    // DMA32 was not touched.
    assert_eq!(zone_free(&a, ZoneType::Dma32), 12288);
    a.check_invariants().unwrap();
}

fn gfp_kernel_never_gets_highmem<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    let a = boot::<B>(MachineLayout::x86_32(1 << 30), true, None, 1);
    let first = a.alloc_pages(GFP_HIGHUSER, 0).unwrap();
    assert_eq!(a.zone_of(first), Some(ZoneType::HighMem));
    assert!(a.page_address(first).is_none());
    let (got, _) = exhaust(&a, GFP_KERNEL, MAX_PAGE_ORDER);
    assert!(!got.is_empty());
    let zones: Vec<ZoneType> = got.iter().map(|p| a.zone_of(*p).unwrap()).collect();
    assert!(zones.iter().all(|z| *z != ZoneType::HighMem));
    assert!(got.iter().all(|p| p.0 + 1024 <= a.layout().lowmem_end().0));
    assert_eq!(zones[0], ZoneType::Normal);
    assert!(zones.contains(&ZoneType::Dma));
    a.check_invariants().unwrap();
}

fn kernel_falls_back_downward<B: BuddyBackend>() {
    falls_back_downward::<B>(false);
}

/// The same with the per-CPU lists on, where an allocation first tries the
/// inline fast path (the zonelist's first populated zone, its low watermark,
/// a block on this CPU's list) and must fall back exactly as the full walk.
fn kernel_falls_back_downward_through_pcp<B: BuddyBackend>() {
    falls_back_downward::<B>(true);
}

/// Pages on a zone's per-CPU lists are not free pages for the watermark
/// (`rmqueue_bulk` takes them off `NR_FREE_PAGES`): once the zone's buddy is
/// at its low watermark, a request goes to the next zone down even while
/// this CPU's list of the top zone holds a block; and the first populated
/// zone is the one tried first.
fn pcp_pages_wait_behind_the_watermark<B: BuddyBackend>() {
    let a = three_zones::<B>(65536, 16384, true);
    let normal = |a: &ZonedAllocator<B>| {
        let snaps = a.snapshots();
        let s = snaps.iter().find(|s| s.zone == ZoneType::Normal).unwrap();
        (s.free_pages, s.watermarks.low + s.lowmem_reserve[2])
    };
    // With blocks waiting on DMA32's list, GFP_KERNEL still starts at
    // Normal, the first populated zone of its zonelist.
    let mut got = vec![a.alloc_page(GFP_DMA32).unwrap()];
    assert_eq!(a.zone_of(got[0]), Some(ZoneType::Dma32));
    assert!(pcp_pages(&a) > 0);
    let p = a.alloc_page(GFP_KERNEL).unwrap();
    assert_eq!(a.zone_of(p), Some(ZoneType::Normal));
    got.push(p);
    // Allocate until a request leaves Normal.
    loop {
        let p = a.alloc_page(GFP_KERNEL).unwrap();
        let zone = a.zone_of(p).unwrap();
        got.push(p);
        if zone != ZoneType::Normal {
            assert_eq!(zone, ZoneType::Dma32);
            break;
        }
    }
    let (free, low) = normal(&a);
    assert!(free <= low, "left Normal with {free} free above {low}");
    // A Normal page freed now goes to this CPU's list, not to the buddy.
    let back = *got
        .iter()
        .find(|&&p| a.zone_of(p) == Some(ZoneType::Normal))
        .unwrap();
    got.retain(|&p| p != back);
    a.free_pages(back, 0).unwrap();
    assert_eq!(normal(&a).0, free);
    assert!(pcp_pages(&a) > 0);
    // Still below the watermark: the next request is DMA32's, not the block
    // waiting on Normal's list.
    let p = a.alloc_page(GFP_KERNEL).unwrap();
    assert_eq!(a.zone_of(p), Some(ZoneType::Dma32));
    got.push(p);
    // GFP_DMA32 starts at DMA32 and GFP_DMA at DMA, whatever Normal holds.
    let p = a.alloc_page(GFP_DMA32).unwrap();
    assert_eq!(a.zone_of(p), Some(ZoneType::Dma32));
    got.push(p);
    let p = a.alloc_page(GFP_DMA).unwrap();
    assert_eq!(a.zone_of(p), Some(ZoneType::Dma));
    got.push(p);
    for p in got {
        a.free_pages(p, 0).unwrap();
    }
}

/// An x86-64 machine of DMA, DMA32 (frames up to `low`) and `normal`
/// frames of Normal from 4 GiB, with the per-CPU lists on or off, used by
/// this thread as CPU 0.
fn three_zones<B: BuddyBackend>(low: usize, normal: usize, pcp: bool) -> ZonedAllocator<B> {
    ThreadCpus::bind(0);
    let layout = MachineLayout::from_ranges(
        Arch::X86_64,
        &[
            PfnRange::new(0, low),
            PfnRange::new(0x10_0000, 0x10_0000 + normal),
        ],
    );
    boot::<B>(layout, pcp, None, 1)
}

fn falls_back_downward<B: BuddyBackend>(pcp: bool) {
    let a = three_zones::<B>(8192, 4096, pcp);
    let boot_snap = a.snapshots();
    // GFP_KERNEL's highest zone is Normal, index 2 of this layout.
    let highest = 2;
    let mut got = Vec::new();
    let err = loop {
        let before = a.snapshots();
        match a.alloc_page(GFP_KERNEL) {
            Ok(p) => {
                let zone = a.zone_of(p).unwrap();
                assert!(zone <= ZoneType::Normal);
                // A lower zone serves only when every higher one failed the
                // fast path's low watermark (with the reserve against Normal).
                for s in before
                    .iter()
                    .filter(|s| s.populated && s.zone > zone && s.zone <= ZoneType::Normal)
                {
                    assert!(
                        s.free_pages <= s.watermarks.low + s.lowmem_reserve[highest],
                        "{zone} served while {} had {} free",
                        s.zone,
                        s.free_pages
                    );
                }
                got.push((p, zone));
            }
            Err(e) => break e,
        }
    };
    assert_eq!(
        err,
        PageError::BelowWatermark {
            order: 0,
            watermark: "min"
        }
    );
    assert_eq!(got[0].1, ZoneType::Normal);
    for z in [ZoneType::Normal, ZoneType::Dma32, ZoneType::Dma] {
        assert!(got.iter().any(|g| g.1 == z), "{z} unused");
    }
    // Each zone stopped at its min watermark plus the reserve against Normal requests.
    for s in a.snapshots() {
        if s.populated {
            assert_eq!(
                s.free_pages,
                s.watermarks.min + s.lowmem_reserve[highest],
                "{}",
                s.zone
            );
        }
    }
    for (p, _) in got {
        a.free_pages(p, 0).unwrap();
    }
    a.drain_all_pages();
    assert_eq!(normalized(a.snapshots()), normalized(boot_snap));
}

fn atomic_dips_below_min<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    let a = boot::<B>(MachineLayout::toy(4096, None), false, Some(1024), 1);
    let w = a.snapshots()[0].watermarks;
    assert_eq!(w.min, 256);
    let (kernel, err) = exhaust(&a, GFP_KERNEL, 0);
    assert_eq!(
        err,
        PageError::BelowWatermark {
            order: 0,
            watermark: "min"
        }
    );
    assert_eq!(buddy_free(&a), w.min);
    assert_eq!(kernel.len(), 4096 - w.min);
    // GFP_NOWAIT has no reserve access either.
    assert_eq!(
        a.alloc_page(GFP_NOWAIT),
        Err(PageError::BelowWatermark {
            order: 0,
            watermark: "min"
        })
    );
    // GFP_ATOMIC goes down to min - min/2 - (min - min/2)/4 = 37.5 % of min.
    let half = w.min - w.min / 2;
    let atomic_floor = half - half / 4;
    let (atomic, err) = exhaust(&a, GFP_ATOMIC, 0);
    assert_eq!(
        err,
        PageError::BelowWatermark {
            order: 0,
            watermark: "min"
        }
    );
    assert_eq!(atomic.len(), w.min - atomic_floor);
    assert_eq!(buddy_free(&a), atomic_floor);
    // __GFP_NOMEMALLOC beats __GFP_MEMALLOC; __GFP_MEMALLOC alone ignores watermarks.
    assert!(
        a.alloc_page(GFP_ATOMIC | Gfp::MEMALLOC | Gfp::NOMEMALLOC)
            .is_err()
    );
    let (memalloc, err) = exhaust(&a, GFP_ATOMIC | Gfp::MEMALLOC, 0);
    assert_eq!(err, PageError::NoBlock { order: 0 });
    assert_eq!(memalloc.len(), atomic_floor);
    assert_eq!(buddy_free(&a), 0);
    a.check_invariants().unwrap();
}

fn kernel_drains_pcp_before_failing<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    let a = boot::<B>(MachineLayout::toy(8192, None), true, Some(1024), 2);
    let min = a.snapshots()[0].watermarks.min;
    // Park pages on CPU 1's lists, then exhaust from CPU 0.
    ThreadCpus::bind(1);
    let parked: Vec<Pfn> = (0..40).map(|_| a.alloc_page(GFP_KERNEL).unwrap()).collect();
    for p in &parked {
        a.free_page(*p).unwrap();
    }
    assert!(pcp_pages(&a) > 0);
    ThreadCpus::bind(0);
    let (_, err) = exhaust(&a, GFP_KERNEL, 0);
    assert_eq!(
        err,
        PageError::BelowWatermark {
            order: 0,
            watermark: "min"
        }
    );
    assert_eq!(
        pcp_pages(&a),
        0,
        "the failing blocking request drained every CPU"
    );
    assert!(buddy_free(&a) <= min);
    a.check_invariants().unwrap();
}

fn failure_reasons<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    // Frames 0 and 1024 stay reserved, so no order-10 block can ever form.
    let free = vec![PfnRange::new(1, 1024), PfnRange::new(1025, 2048)];
    let a = boot::<B>(MachineLayout::toy(2048, Some(free)), true, None, 1);
    assert_eq!(
        a.alloc_pages(GFP_KERNEL, 11),
        Err(PageError::OrderTooLarge {
            order: 11,
            max: MAX_PAGE_ORDER
        })
    );
    let bad = Gfp::DMA | Gfp::DMA32;
    assert_eq!(a.alloc_page(bad), Err(PageError::BadGfpZone(bad.bits())));
    assert_eq!(allocated(&a), 0);
    // Enough free pages for the watermark (2046 - 1023 > 0), but no block.
    let before = normalized(a.snapshots());
    assert_eq!(
        a.alloc_pages(GFP_KERNEL, MAX_PAGE_ORDER),
        Err(PageError::NoBlock {
            order: MAX_PAGE_ORDER
        })
    );
    assert_eq!(normalized(a.snapshots()), before);
    // With 1024 pages allocated, fewer than 1024 remain: the order-10
    // watermark (free - 1023 > 0) fails first.
    let big = a.alloc_pages(GFP_KERNEL, 9).unwrap();
    let big2 = a.alloc_pages(GFP_KERNEL, 9).unwrap();
    assert_eq!(
        a.alloc_pages(GFP_KERNEL, MAX_PAGE_ORDER),
        Err(PageError::BelowWatermark {
            order: MAX_PAGE_ORDER,
            watermark: "min"
        })
    );
    a.free_pages(big, 9).unwrap();
    a.free_pages(big2, 9).unwrap();
    a.drain_all_pages();
    assert_eq!(normalized(a.snapshots()), before);
    a.check_invariants().unwrap();
}

fn pcp_refill_and_drain<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    let a = boot::<B>(MachineLayout::toy(65536, None), true, None, 2);
    let s = &a.snapshots()[0];
    let (batch, high) = (s.pcp[0].batch, s.pcp[0].high);
    assert_eq!((batch, high), (15, 60));
    // The first allocation refills `batch` pages and takes the first.
    let p0 = a.alloc_page(GFP_KERNEL).unwrap();
    assert_eq!(a.snapshots()[0].pcp[0].count, batch - 1);
    assert_eq!(a.snapshots()[0].pcp[1].count, 0);
    assert_eq!(buddy_free(&a), 65536 - batch);
    let cached: Vec<Pfn> = a.pcp_blocks().iter().map(|b| b.2).collect();
    assert_eq!(
        cached,
        (1..batch).map(|i| Pfn(p0.0 + i)).collect::<Vec<_>>()
    );
    // They come out in physical order, then the next refill.
    let mut live = vec![p0];
    for i in 1..batch {
        let p = a.alloc_page(GFP_KERNEL).unwrap();
        assert_eq!(p, Pfn(p0.0 + i));
        live.push(p);
    }
    assert_eq!(a.snapshots()[0].pcp[0].count, 0);
    for _ in 0..70 - batch {
        live.push(a.alloc_page(GFP_KERNEL).unwrap());
    }
    let mut count = a.snapshots()[0].pcp[0].count;
    assert_eq!(count + live.len() + buddy_free(&a), 65536);
    // Frees go to the head; at `high`, `batch` pages go back to the buddy.
    let mut drained = 0;
    for (i, p) in live.iter().enumerate() {
        a.free_page(*p).unwrap();
        count += 1;
        if count >= high {
            count -= batch;
            drained += 1;
        }
        let s = &a.snapshots()[0];
        assert_eq!(s.pcp[0].count, count, "after {} frees", i + 1);
        assert_eq!(s.free_pages + count + live.len() - i - 1, 65536);
        assert_eq!(
            a.pcp_blocks().first().map(|b| b.2),
            if count > 0 { Some(*p) } else { None }
        );
    }
    assert!(drained > 0);
    // Another CPU has its own lists.
    ThreadCpus::bind(1);
    let q = a.alloc_page(GFP_KERNEL).unwrap();
    assert_eq!(a.snapshots()[0].pcp[1].count, batch - 1);
    assert_eq!(a.snapshots()[0].pcp[0].count, count);
    a.free_page(q).unwrap();
    a.check_invariants().unwrap();
    // Draining returns everything.
    a.drain_all_pages();
    assert_eq!(pcp_pages(&a), 0);
    assert!(a.pcp_blocks().is_empty());
    assert_eq!(buddy_free(&a), 65536);
    assert_eq!(a.snapshots()[0].nr_free[MAX_PAGE_ORDER as usize], 64);
    // Higher orders refill `max(batch >> order, 2)` blocks.
    ThreadCpus::bind(0);
    let big = a.alloc_pages(GFP_KERNEL, 3).unwrap();
    let blocks = kmm_zone::wmark::nr_pcp_alloc(high, batch, 0, 3);
    assert_eq!(blocks, 2);
    assert_eq!(a.snapshots()[0].pcp[0].count, (blocks - 1) * 8);
    assert!(a.pcp_blocks().iter().all(|b| b.3 == 3));
    a.free_pages(big, 3).unwrap();
    a.check_invariants().unwrap();
}

fn pcp_off_caches_nothing<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    let a = boot::<B>(MachineLayout::toy(4096, None), false, None, 2);
    assert!(a.snapshots()[0].pcp.is_empty());
    let pages: Vec<Pfn> = (0..100)
        .map(|_| a.alloc_page(GFP_KERNEL).unwrap())
        .collect();
    assert_eq!(buddy_free(&a), 4096 - 100);
    assert!(a.pcp_blocks().is_empty());
    for p in pages {
        a.free_page(p).unwrap();
    }
    assert_eq!(buddy_free(&a), 4096);
    a.check_invariants().unwrap();
}

fn misuse_leaves_state_unchanged<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    let a = boot::<B>(
        MachineLayout::toy(4096, Some(vec![PfnRange::new(0, 2048)])),
        true,
        None,
        1,
    );
    let p = a.alloc_page(GFP_KERNEL).unwrap();
    let q = a.alloc_pages(GFP_KERNEL, 2).unwrap();
    a.free_page(p).unwrap();
    assert_eq!(a.pfn_to_page(p).map(|f| f.page_type()), Some(PageType::Pcp));
    let snap = normalized(a.snapshots());
    let blocks = a.pcp_blocks();
    let cases = [
        (a.free_page(p), PageError::DoubleFree(p)),
        (
            a.free_pages(q, 1),
            PageError::WrongOrder {
                pfn: q,
                allocated: 2,
                given: 1,
            },
        ),
        (
            a.free_page(Pfn(q.0 + 1)),
            PageError::NotAllocated(Pfn(q.0 + 1)),
        ),
        (a.free_page(Pfn(3000)), PageError::Reserved(Pfn(3000))),
        (a.free_page(Pfn(5000)), PageError::OutOfRange(Pfn(5000))),
        (
            a.free_pages(Pfn(1), 1),
            PageError::Misaligned {
                pfn: Pfn(1),
                order: 1,
            },
        ),
        (
            a.free_pages(q, 11),
            PageError::OrderTooLarge {
                order: 11,
                max: MAX_PAGE_ORDER,
            },
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, Err(want));
        assert_eq!(normalized(a.snapshots()), snap);
        assert_eq!(a.pcp_blocks(), blocks);
    }
    a.free_pages(q, 2).unwrap();
    // A block freed straight to the buddy (order above the pcp orders).
    let r = a.alloc_pages(GFP_KERNEL, 5).unwrap();
    a.free_pages(r, 5).unwrap();
    assert_eq!(a.free_pages(r, 5), Err(PageError::DoubleFree(r)));
    a.check_invariants().unwrap();
}

fn zeroed_pages_are_zero<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    let cfg = ZonedConfig {
        layout: MachineLayout::toy(256, None),
        pcp: true,
        min_free_kbytes: None,
    };
    let mem = Arc::new(VecMemory::new(256, 256));
    let a = ZonedAllocator::<B>::new(cfg, Arc::new(ThreadCpus(1)), mem).unwrap();
    let addr = a.get_free_page(GFP_KERNEL).unwrap();
    // SAFETY: the page is ours: `PAGE_SIZE` writable bytes at `addr`.
    unsafe { addr.as_ptr().write_bytes(0xaa, PAGE_SIZE) };
    a.free_pages_addr(addr, 0).unwrap();
    let z = a.get_zeroed_page(GFP_KERNEL).unwrap();
    assert_eq!(z, addr, "the per-CPU list hands back the page just freed");
    // SAFETY: the page is ours and `PAGE_SIZE` bytes long.
    let bytes = unsafe { core::slice::from_raw_parts(z.as_ptr(), PAGE_SIZE) };
    assert!(bytes.iter().all(|&b| b == 0));
    // __GFP_ZERO on a larger block.
    let pfn = a.alloc_pages(GFP_KERNEL, 2).unwrap();
    let base = a.page_address(pfn).unwrap();
    // SAFETY: four pages of ours.
    unsafe { base.as_ptr().write_bytes(0x55, 4 * PAGE_SIZE) };
    a.free_pages(pfn, 2).unwrap();
    let again = a.alloc_pages(GFP_KERNEL | Gfp::ZERO, 2).unwrap();
    assert_eq!(again, pfn);
    // SAFETY: four pages of ours.
    let bytes = unsafe { core::slice::from_raw_parts(base.as_ptr(), 4 * PAGE_SIZE) };
    assert!(bytes.iter().all(|&b| b == 0));
    // Foreign and unaligned addresses are refused.
    let local = 0u64;
    let foreign = core::ptr::NonNull::from(&local).cast::<u8>();
    assert!(matches!(
        a.free_pages_addr(foreign, 0),
        Err(PageError::OutOfRange(_))
    ));
    let inside = z.map_addr(|x| x.checked_add(8).unwrap());
    assert!(matches!(
        a.free_pages_addr(inside, 0),
        Err(PageError::Misaligned { .. })
    ));
    a.free_pages_addr(z, 0).unwrap();
    a.free_pages(again, 2).unwrap();
    assert_eq!(allocated(&a), 0);
    assert!(a.phys_memory().has_memory());
    a.check_invariants().unwrap();
}

fn get_free_pages_without_memory<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    let a = boot::<B>(MachineLayout::toy(256, None), true, None, 1);
    let before = a.snapshots();
    let err = a.get_free_pages(GFP_KERNEL, 1).unwrap_err();
    assert_eq!(err, PageError::NoBackingMemory);
    assert_eq!(
        a.get_zeroed_page(GFP_KERNEL).unwrap_err(),
        PageError::NoBackingMemory
    );
    assert_eq!(
        a.snapshots(),
        before,
        "refused before allocating: nothing changed"
    );
    // __GFP_HIGHMEM is stripped: the block comes from lowmem, here the DMA zone.
    let layout = MachineLayout::from_ranges(
        Arch::X86_32,
        &[
            PfnRange::new(0, 2048),
            PfnRange::new(229_376, 229_376 + 2048),
        ],
    );
    let cfg = ZonedConfig {
        layout,
        pcp: true,
        min_free_kbytes: None,
    };
    // The buffer is allocated zeroed and lazily, so the hole costs nothing.
    let mem = Arc::new(VecMemory::new(229_376 + 2048, 229_376));
    let b = ZonedAllocator::<B>::new(cfg, Arc::new(ThreadCpus(1)), mem).unwrap();
    let high = b.alloc_page(GFP_HIGHUSER).unwrap();
    assert_eq!(b.zone_of(high), Some(ZoneType::HighMem));
    assert!(b.page_address(high).is_none(), "highmem has no direct map");
    let addr = b.get_free_page(GFP_HIGHUSER).unwrap();
    let pfn = b.phys().virt_to_pfn(addr.as_ptr() as usize).unwrap();
    assert_eq!(b.zone_of(pfn), Some(ZoneType::Dma));
    b.free_pages_addr(addr, 0).unwrap();
    b.free_page(high).unwrap();
    a.check_invariants().unwrap();
    b.check_invariants().unwrap();
}

fn exact_allocations<B: BuddyBackend>() {
    ThreadCpus::bind(0);
    for pcp in [false, true] {
        let a = boot::<B>(MachineLayout::toy(1024, None), pcp, None, 1);
        assert_eq!(a.alloc_pages_exact(0, GFP_KERNEL), Err(PageError::ZeroSize));
        let size = 5 * PAGE_SIZE - 100;
        let p = a.alloc_pages_exact(size, GFP_KERNEL).unwrap();
        assert_eq!(allocated(&a), 5);
        for i in 0..5 {
            assert_eq!(a.pfn_to_page(Pfn(p.0 + i)).unwrap().refcount(), 1);
        }
        a.check_invariants().unwrap();
        // Freeing more than was allocated fails and frees nothing.
        let before = normalized(a.snapshots());
        assert!(a.free_pages_exact(p, 6 * PAGE_SIZE).is_err());
        assert_eq!(normalized(a.snapshots()), before);
        assert_eq!(a.free_pages_exact(p, 0), Err(PageError::ZeroSize));
        a.free_pages_exact(p, size).unwrap();
        assert_eq!(allocated(&a), 0);
        a.drain_all_pages();
        assert_eq!(a.snapshots()[0].nr_free[MAX_PAGE_ORDER as usize], 1);
        a.check_invariants().unwrap();
    }
}

fn two_threads_on_two_cpus<B: BuddyBackend>() {
    let layout = MachineLayout::from_ranges(Arch::X86_64, &[PfnRange::new(0, 16384)]);
    let a = Arc::new(boot::<B>(layout, true, None, 2));
    let boot_snap = normalized(a.snapshots());
    let handles: Vec<_> = (0..2)
        .map(|cpu| {
            let a = Arc::clone(&a);
            std::thread::spawn(move || {
                ThreadCpus::bind(cpu);
                let mut seed = 0x9e37_79b9_u64 + cpu as u64;
                let mut live: Vec<(Pfn, u32)> = Vec::new();
                for _ in 0..3000 {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let r = (seed >> 33) as usize;
                    if !r.is_multiple_of(3) || live.is_empty() {
                        let order = (r / 3 % 4) as u32;
                        let gfp = if r.is_multiple_of(2) {
                            GFP_KERNEL
                        } else {
                            GFP_ATOMIC
                        };
                        if let Ok(p) = a.alloc_pages(gfp, order) {
                            live.push((p, order));
                        }
                    } else {
                        let (p, o) = live.swap_remove(r / 3 % live.len());
                        a.free_pages(p, o).unwrap();
                    }
                }
                live
            })
        })
        .collect();
    let mut leftover: Vec<(Pfn, u32)> = Vec::new();
    for h in handles {
        leftover.extend(h.join().unwrap());
    }
    a.check_invariants().unwrap();
    // Blocks from both CPUs are freed from CPU 0 (remote frees).
    ThreadCpus::bind(0);
    let mut seen = BTreeMap::new();
    for (p, o) in leftover {
        assert!(seen.insert(p, o).is_none(), "{p:?} handed out twice");
        a.free_pages(p, o).unwrap();
    }
    a.check_invariants().unwrap();
    a.drain_all_pages();
    assert_eq!(normalized(a.snapshots()), boot_snap);
}

// ---------------------------------------------------------------- proptest

const GFPS: [Gfp; 8] = [
    GFP_KERNEL,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_DMA32,
    GFP_HIGHUSER_MOVABLE,
    GFP_NOWAIT.union(Gfp::RECLAIMABLE),
    GFP_KERNEL.union(Gfp::ZERO),
    GFP_ATOMIC.union(Gfp::MEMALLOC),
];

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize, u32),
    Free(usize),
    Exact(usize),
    Cpu(usize),
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..GFPS.len(), 0..=MAX_PAGE_ORDER).prop_map(|(g, o)| Op::Alloc(g, o)),
        4 => (0..usize::MAX).prop_map(Op::Free),
        1 => (1..20usize).prop_map(Op::Exact),
        1 => (0..2usize).prop_map(Op::Cpu),
        1 => Just(Op::Drain),
    ]
}

fn random_ops<B: BuddyBackend>(ops: &[Op]) -> Result<(), TestCaseError> {
    ThreadCpus::bind(0);
    let layout = MachineLayout::from_ranges(
        Arch::X86_64,
        &[
            PfnRange::new(0, 6144),
            PfnRange::new(0x10_0000, 0x10_0000 + 4096),
        ],
    );
    let a = boot::<B>(layout, true, None, 2);
    let boot_snap = normalized(a.snapshots());
    // Live allocations: first frame -> (order, or exact page count).
    let mut live: BTreeMap<Pfn, Result<u32, usize>> = BTreeMap::new();
    for op in ops {
        match *op {
            Op::Alloc(g, order) => {
                let gfp = GFPS[g];
                if let Ok(p) = a.alloc_pages(gfp, order) {
                    prop_assert!(p.is_aligned(order));
                    let zone = a.zone_of(p).unwrap();
                    let limit = kmm_gfp::gfp_zone(gfp, kmm_gfp::ZoneConfig::X86_64).unwrap();
                    prop_assert!(zone <= limit, "{zone} above {limit}");
                    prop_assert_eq!(a.pfn_to_page(p).unwrap().refcount(), 1);
                    prop_assert!(live.insert(p, Ok(order)).is_none());
                }
            }
            Op::Exact(pages) => {
                if let Ok(p) = a.alloc_pages_exact(pages * PAGE_SIZE, GFP_KERNEL) {
                    prop_assert!(live.insert(p, Err(pages)).is_none());
                }
            }
            Op::Free(i) => {
                if !live.is_empty() {
                    let p = *live.keys().nth(i % live.len()).unwrap();
                    match live.remove(&p).unwrap() {
                        Ok(order) => a.free_pages(p, order).unwrap(),
                        Err(pages) => a.free_pages_exact(p, pages * PAGE_SIZE).unwrap(),
                    }
                }
            }
            Op::Cpu(cpu) => ThreadCpus::bind(cpu),
            Op::Drain => a.drain_all_pages(),
        }
        a.check_invariants().map_err(TestCaseError::fail)?;
        // No two live allocations overlap.
        let mut end = 0;
        for (p, k) in &live {
            prop_assert!(p.0 >= end);
            end = p.0
                + match k {
                    Ok(o) => 1 << o,
                    Err(n) => *n,
                };
        }
    }
    for (p, k) in core::mem::take(&mut live) {
        match k {
            Ok(order) => a.free_pages(p, order).unwrap(),
            Err(pages) => a.free_pages_exact(p, pages * PAGE_SIZE).unwrap(),
        }
    }
    a.drain_all_pages();
    a.check_invariants().map_err(TestCaseError::fail)?;
    prop_assert_eq!(normalized(a.snapshots()), boot_snap);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_ops_eager(ops in proptest::collection::vec(op(), 1..150)) {
        random_ops::<EagerBuddy>(&ops)?;
    }

    #[test]
    fn random_ops_lazy(ops in proptest::collection::vec(op(), 1..150)) {
        random_ops::<LazyBuddy>(&ops)?;
    }
}

#[test]
fn no_memory_and_page_allocator_trait() {
    let a = boot::<EagerBuddy>(MachineLayout::toy(64, None), true, None, 1);
    let dynamic: &dyn PageAllocator = &a;
    let p = dynamic.alloc_pages(GFP_KERNEL, 1).unwrap();
    assert_eq!(dynamic.pfn_to_page(p).unwrap().order(), Some(1));
    assert!(!dynamic.phys_memory().has_memory());
    dynamic.free_pages(p, 1).unwrap();
    let _ = NoMemory;
}
