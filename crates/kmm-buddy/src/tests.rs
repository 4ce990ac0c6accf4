//! Unit tests of the internals: pageblock indexing, the globally-free bitmap,
//! head/tail insertion and the DELAY-2 counter transitions. Every operation
//! here also runs `check_invariants` (unit tests enable the check).

use alloc::sync::Arc;
use alloc::vec::Vec;

use kmm_gfp::MigrateType;
use kmm_page::{MemMap, PageFlags, Pfn, PfnRange};

use crate::pageblock::Pageblocks;
use crate::{BuddyBackend, DelayCounts, EagerBuddy, LazyBuddy};

fn map(ranges: &[(usize, usize)]) -> Arc<MemMap> {
    let r: Vec<PfnRange> = ranges.iter().map(|&(s, e)| PfnRange::new(s, e)).collect();
    Arc::new(MemMap::new(&r).unwrap())
}

fn backend<B: BuddyBackend>(ranges: &[(usize, usize)]) -> B {
    let mut b = B::new(map(ranges));
    for &(s, e) in ranges {
        b.add_free_range(PfnRange::new(s, e)).unwrap();
    }
    b
}

/// Checks which pageblock entry each frame maps to.
fn check_pageblocks(ranges: &[(usize, usize)], expected: &[(usize, Option<usize>)], count: usize) {
    let pb = Pageblocks::new(&map(ranges));
    for &(pfn, idx) in expected {
        assert_eq!(pb.index(Pfn(pfn)), idx, "pageblock entry of pfn {pfn}");
    }
    assert_eq!(pb.counts()[MigrateType::Movable.index()], count);
}

#[test]
fn pageblocks_single_partial() {
    // A tiny map is one (partial) pageblock.
    check_pageblocks(&[(0, 16)], &[(0, Some(0)), (15, Some(0)), (600, None)], 1);
}

#[test]
fn pageblocks_with_holes() {
    // Pageblocks 0, 1 (700..800 shares none with 0..5), 2 and 3; nothing for the hole.
    check_pageblocks(
        &[(0, 5), (700, 800), (1030, 2000)],
        &[
            (0, Some(0)),
            (4, Some(0)),
            (700, Some(1)),
            (1030, Some(2)),
            (1999, Some(3)),
            (5000, None),
        ],
        4,
    );
    // Two ranges inside one pageblock share its entry.
    check_pageblocks(&[(0, 100), (200, 300)], &[(50, Some(0)), (250, Some(0))], 1);
    // A far range gets its own entry after a large hole.
    check_pageblocks(
        &[(0, 10), (1 << 30, (1 << 30) + 10)],
        &[(5, Some(0)), (1 << 30, Some(1))],
        2,
    );
}

#[test]
fn pageblock_set_range_covers_large_blocks() {
    let mut pb = Pageblocks::new(&map(&[(0, 2048)]));
    pb.set_range(Pfn(1024), 10, MigrateType::Unmovable);
    assert_eq!(pb.get(Pfn(1023)), MigrateType::Movable);
    assert_eq!(pb.get(Pfn(1024)), MigrateType::Unmovable);
    assert_eq!(pb.get(Pfn(1536)), MigrateType::Unmovable);
    assert_eq!(pb.counts()[MigrateType::Unmovable.index()], 2);
}

fn order0_list<B: BuddyBackend>(b: &B) -> Vec<usize> {
    b.free_blocks()
        .iter()
        .filter(|f| f.order == 0)
        .map(|f| f.pfn.0)
        .collect()
}

#[test]
fn boot_blocks_go_to_the_tail() {
    // `FPI_TO_TAIL`: blocks added later sit behind earlier ones.
    let mut b = EagerBuddy::new(map(&[(0, 16)]));
    for (s, e) in [(5, 6), (3, 4), (9, 10)] {
        b.add_free_range(PfnRange::new(s, e)).unwrap();
    }
    assert_eq!(order0_list(&b), [5, 3, 9]);
}

#[test]
fn eager_free_inserts_at_tail_when_merge_is_likely() {
    let mut b: EagerBuddy = backend(&[(0, 16)]);
    for want in 0..6 {
        assert_eq!(b.alloc(0, MigrateType::Movable), Ok(Pfn(want)));
    }
    // Free lists now: 6 (order 1), 8 (order 3).
    // 3: buddy 2 allocated, parent's buddy 0..2 allocated: head.
    b.free(Pfn(3), 0).unwrap();
    // 5: buddy 4 allocated, but the parent's buddy 6..8 is free: tail.
    b.free(Pfn(5), 0).unwrap();
    assert_eq!(order0_list(&b), [3, 5]);
    assert_eq!(b.alloc(0, MigrateType::Movable), Ok(Pfn(3)));
    // The lazy buddy keeps both locally free instead, last freed first.
    let mut l: LazyBuddy = backend(&[(0, 16)]);
    for _ in 0..6 {
        l.alloc(0, MigrateType::Movable).unwrap();
    }
    l.free(Pfn(3), 0).unwrap();
    l.free(Pfn(5), 0).unwrap();
    assert_eq!(order0_list(&l), [5, 3]);
}

#[test]
fn lazy_delay2_transitions() {
    let mut b: LazyBuddy = backend(&[(0, 1024)]);
    for want in 0..4 {
        assert_eq!(b.alloc(0, MigrateType::Movable), Ok(Pfn(want)));
    }
    let counts = |a, l, g| DelayCounts {
        allocated: a,
        locally_free: l,
        globally_free: g,
    };
    assert_eq!(b.delay_counts(0), counts(4, 0, 0));
    // D = 4 and D = 2: locally free, nothing merges.
    b.free(Pfn(0), 0).unwrap();
    assert_eq!(b.delay_counts(0), counts(3, 1, 0));
    b.free(Pfn(1), 0).unwrap();
    assert_eq!(b.delay_counts(0), counts(2, 2, 0));
    assert_eq!(b.delay_counts(0).slack(), 0);
    let map = b.mem_map().clone();
    assert!(
        map.pfn_to_page(Pfn(1))
            .unwrap()
            .test(PageFlags::LOCALLY_FREE)
    );
    let merges = b.stats().merges;
    // D = 0: 2 becomes globally free (its buddy 3 is allocated) and one
    // locally free block (1, the list head) is converted; 1's buddy 0 is
    // still locally free, so nothing merges.
    b.free(Pfn(2), 0).unwrap();
    assert_eq!(b.delay_counts(0), counts(1, 1, 2));
    assert_eq!(b.stats().merges, merges);
    assert!(b.inner.global_bit(map.index_of(Pfn(1)).unwrap(), 0));
    assert!(!b.inner.global_bit(map.index_of(Pfn(0)).unwrap(), 0));
    // D = 0 again: 3 merges with 2, then 0 is converted and everything
    // coalesces back to one order-10 block without a drain.
    b.free(Pfn(3), 0).unwrap();
    assert_eq!(b.delay_counts(0), counts(0, 0, 0));
    assert_eq!(b.nr_free(10), 1);
    assert_eq!(b.free_blocks().len(), 1);
}

#[test]
fn lazy_reuses_locally_free_blocks_without_splitting() {
    let mut b: LazyBuddy = backend(&[(0, 1024)]);
    let pages: Vec<Pfn> = (0..8)
        .map(|_| b.alloc(0, MigrateType::Movable).unwrap())
        .collect();
    b.free(pages[5], 0).unwrap();
    b.free(pages[6], 0).unwrap();
    let (splits, merges) = (b.stats().splits, b.stats().merges);
    // Locally free blocks come back first, last freed first.
    assert_eq!(b.alloc(0, MigrateType::Movable), Ok(pages[6]));
    assert_eq!(b.alloc(0, MigrateType::Movable), Ok(pages[5]));
    assert_eq!((b.stats().splits, b.stats().merges), (splits, merges));
}

#[test]
fn lazy_coalesces_when_an_order_runs_short() {
    // 16 frames: take all as order 0, free them all but 15 (most stay
    // locally free), then ask for order 2: the locally free blocks must be
    // coalesced instead of failing.
    let mut b: LazyBuddy = backend(&[(0, 16)]);
    for _ in 0..16 {
        b.alloc(0, MigrateType::Movable).unwrap();
    }
    for p in 0..15 {
        b.free(Pfn(p), 0).unwrap();
    }
    assert!(b.delay_counts(0).locally_free > 0);
    assert_eq!(b.alloc(3, MigrateType::Movable), Ok(Pfn(0)));
    assert_eq!(b.stats().failures[3], 0);
}

#[test]
fn lazy_split_keeps_slack_non_negative() {
    let mut b: LazyBuddy = backend(&[(0, 64)]);
    let blocks: Vec<Pfn> = (0..4)
        .map(|_| b.alloc(2, MigrateType::Movable).unwrap())
        .collect();
    // A = 4: two frees go locally free (D = 4, then 2).
    b.free(blocks[0], 2).unwrap();
    b.free(blocks[1], 2).unwrap();
    assert_eq!(b.delay_counts(2).slack(), 0);
    // Splitting an allocated order-2 block lowers A below L unless a
    // locally free block is converted.
    b.split(blocks[2], 2).unwrap();
    assert!(b.delay_counts(2).slack() >= 0);
    assert_eq!(b.delay_counts(0).allocated, 4);
}

#[test]
fn eager_drain_is_a_no_op() {
    let mut b: EagerBuddy = backend(&[(0, 64)]);
    let p = b.alloc(0, MigrateType::Movable).unwrap();
    let before = b.free_blocks();
    b.drain();
    assert_eq!(b.free_blocks(), before);
    b.free(p, 0).unwrap();
    assert_eq!(b.nr_free(6), 1);
}
