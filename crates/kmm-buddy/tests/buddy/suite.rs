//! The behaviour every backend shares, written once as generic functions and
//! instantiated for `EagerBuddy` and `LazyBuddy` by `buddy_suite!`.

use kmm_buddy::{BuddyBackend, EagerBuddy, LazyBuddy};
use kmm_page::gfp::MigrateType::{self, Movable, Reclaimable, Unmovable};
use kmm_page::{MAX_PAGE_ORDER, PageError, PageType, Pfn, PfnRange};

use crate::common::{alloc, blocks, buddy, check_nr_free, check_rejected, free, nr_free, ok};

/// The worked example: 16 frames, only 5, 10 and 12..16 free. An order-1
/// request splits the order-2 block 12..16, returns 12 and leaves 14..16.
fn worked_example<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 16)], &[(5, 6), (10, 11), (12, 16)]);
    check_nr_free(&b, &[2, 0, 1]);
    assert_eq!(b.managed_pages(), 6);
    assert_eq!(alloc(&mut b, 1, Movable), 12);
    check_nr_free(&b, &[2, 1]);
    assert_eq!(blocks(&b), [(5, 0), (10, 0), (14, 1)]);
    assert_eq!(b.stats().splits, 1);
    assert_eq!(b.free_pages(), 4);
}

/// Frames 0 and 1 allocated; freeing 0 then 1 leaves one order-1 block at 0
/// (at once for eager, after `drain` for every backend).
fn merge_example<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 2)], &[(0, 2)]);
    check_nr_free(&b, &[0, 1]);
    assert_eq!(alloc(&mut b, 0, Movable), 0);
    assert_eq!(alloc(&mut b, 0, Movable), 1);
    check_nr_free(&b, &[]);
    free(&mut b, 0, 0);
    check_nr_free(&b, &[1]);
    free(&mut b, 1, 0);
    if B::NAME == "eager" {
        check_nr_free(&b, &[0, 1]);
    }
    b.drain();
    check_nr_free(&b, &[0, 1]);
    assert_eq!(blocks(&b), [(0, 1)]);
}

/// `expand()` from the reference: order 0 out of an order-3 block at 0 puts
/// 4 on order 2, 2 on order 1, 1 on order 0 and returns 0.
fn expand_halves<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 8)], &[(0, 8)]);
    assert_eq!(alloc(&mut b, 0, Movable), 0);
    assert_eq!(blocks(&b), [(1, 0), (2, 1), (4, 2)]);
    assert_eq!(b.stats().splits, 3);
}

/// Order-0 allocations from one order-10 block come out in address order.
fn order0_in_address_order<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 1024)], &[(0, 1024)]);
    let got: Vec<usize> = (0..64).map(|_| alloc(&mut b, 0, Movable)).collect();
    assert_eq!(got, (0..64).collect::<Vec<_>>());
}

/// A range added in pieces coalesces as if added whole.
fn pieces_coalesce<B: BuddyBackend>() {
    let whole: B = buddy(&[(0, 2048)], &[(0, 2048)]);
    let pieces: B = buddy(
        &[(0, 2048)],
        &[(1500, 2048), (3, 1024), (0, 3), (1024, 1500)],
    );
    check_nr_free(&whole, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    assert_eq!(nr_free(&pieces), nr_free(&whole));
    assert_eq!(blocks(&pieces), blocks(&whole));
}

/// Boot blocks are maximal aligned blocks, movable, in every pageblock.
fn boot_blocks_and_pageblocks<B: BuddyBackend>() {
    // Two banks with a hole: 3..700 and 1030..1100.
    let b: B = buddy(&[(3, 700), (1030, 1100)], &[(3, 700), (1030, 1100)]);
    let mut expect = Vec::new();
    for (s, e) in [(3usize, 700usize), (1030, 1100)] {
        let mut p = s;
        while p < e {
            let o = p
                .trailing_zeros()
                .min(usize::BITS - 1 - (e - p).leading_zeros())
                .min(10);
            expect.push((p, o));
            p += 1 << o;
        }
    }
    expect.sort_unstable();
    assert_eq!(blocks(&b), expect);
    assert!(
        b.free_blocks()
            .iter()
            .all(|f| f.migratetype == Movable && !f.locally_free)
    );
    // Pageblocks 0 and 1 (frames 3..700) and 2 (frames 1030..1100).
    let mut counts = [0; MigrateType::COUNT];
    counts[Movable.index()] = 3;
    assert_eq!(b.pageblock_counts(), counts);
    assert_eq!(b.free_pages(), 697 + 70);
    ok(&b);
}

/// Free heads carry the buddy marker and their order in `private`; allocated
/// heads carry reference count 1 and their order.
fn frame_markers<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 1024)], &[(0, 1024)]);
    let p = alloc(&mut b, 3, Unmovable);
    let map = b.mem_map().clone();
    let head = map.pfn_to_page(Pfn(p)).unwrap();
    assert_eq!(
        (head.refcount(), head.order(), head.page_type()),
        (1, Some(3), PageType::None)
    );
    for blk in b.free_blocks() {
        let f = map.pfn_to_page(blk.pfn).unwrap();
        assert_eq!(f.page_type(), PageType::Buddy);
        assert_eq!(
            (f.order(), f.private(), f.refcount()),
            (Some(blk.order), blk.order, 0)
        );
        assert_eq!(f.migratetype(), blk.migratetype);
    }
}

/// Splitting a block gives order-0 pages that are freed one by one.
fn split_then_free_pages<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 1024)], &[(0, 1024)]);
    let p = alloc(&mut b, 2, Movable);
    b.split(Pfn(p), 2).unwrap();
    ok(&b);
    let map = b.mem_map().clone();
    for i in 0..4 {
        let f = map.pfn_to_page(Pfn(p + i)).unwrap();
        assert_eq!((f.refcount(), f.order()), (1, Some(0)));
    }
    // The whole block is no longer freeable as one.
    check_rejected(
        &mut b,
        PageError::WrongOrder {
            pfn: Pfn(p),
            allocated: 0,
            given: 2,
        },
        |b| b.free(Pfn(p), 2),
    );
    for i in [2, 0, 3, 1] {
        free(&mut b, p + i, 0);
    }
    b.drain();
    check_nr_free(&b, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
}

/// `alloc_exact` keeps exactly the pages asked for; `free_exact` returns them.
fn exact<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 1024)], &[(0, 1024)]);
    let p = b.alloc_exact(5, Movable).unwrap();
    ok(&b);
    assert_eq!(p, Pfn(0));
    assert_eq!(b.free_pages(), 1024 - 5);
    // Pages 5..8 went back: free blocks cover exactly 5..1024.
    let covered: usize = blocks(&b)
        .iter()
        .map(|&(p, o)| {
            assert!(p >= 5);
            1 << o
        })
        .sum();
    assert_eq!(covered, 1024 - 5);
    b.free_exact(p, 5).unwrap();
    b.drain();
    check_nr_free(&b, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(b.alloc_exact(0, Movable), Err(PageError::ZeroSize));
}

/// Freeing everything in any order restores the boot state.
fn free_all_restores_boot_state<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 3000), (4096, 5000)], &[(7, 3000), (4096, 5000)]);
    let boot = blocks(&b);
    let mut live = Vec::new();
    for i in 0..300u32 {
        let order = (i * 7) % 6;
        let mt = [Movable, Unmovable, Reclaimable][(i % 3) as usize];
        if let Ok(p) = b.alloc(order, mt) {
            live.push((p, order));
        }
        if i % 3 == 2 {
            let (p, o) = live.swap_remove((i as usize * 13) % live.len());
            free(&mut b, p.0, o);
        }
    }
    ok(&b);
    while let Some((p, o)) = live.pop() {
        free(&mut b, p.0, o);
    }
    b.drain();
    ok(&b);
    assert_eq!(blocks(&b), boot);
}

/// An unmovable request in a movable zone claims the whole order-10 block's
/// pageblocks; the freed block goes back on the unmovable lists.
fn fallback_claims_large_block<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 1024)], &[(0, 1024)]);
    assert_eq!(alloc(&mut b, 0, Unmovable), 0);
    let mut counts = [0; MigrateType::COUNT];
    counts[Unmovable.index()] = 2;
    assert_eq!(b.pageblock_counts(), counts);
    assert_eq!(b.nr_free_mt(9, Unmovable), 1);
    free(&mut b, 0, 0);
    b.drain();
    assert_eq!(b.nr_free_mt(10, Unmovable), 1);
    // A movable request now claims it back.
    assert_eq!(alloc(&mut b, 0, Movable), 0);
    assert_eq!(b.pageblock_counts()[Movable.index()], 2);
}

/// Below pageblock order an unmovable request claims the pageblock when half
/// of it is free or alike ("half a pageblock").
fn fallback_claims_half_pageblock<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 512)], &[(0, 512)]);
    assert_eq!(alloc(&mut b, 8, Movable), 0);
    assert_eq!(alloc(&mut b, 0, Unmovable), 256);
    assert_eq!(b.pageblock_counts()[Unmovable.index()], 1);
    assert!(b.free_blocks().iter().all(|f| f.migratetype == Unmovable));
}

/// A small movable request in a mostly allocated unmovable pageblock steals a
/// block without retagging the pageblock.
fn fallback_steals_small_block<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 512)], &[(0, 512)]);
    assert_eq!(alloc(&mut b, 0, Unmovable), 0); // claims the pageblock
    assert_eq!(alloc(&mut b, 8, Unmovable), 256);
    assert_eq!(alloc(&mut b, 7, Unmovable), 128);
    // 127 free pages < 256: no claim; the smallest fallback block is stolen.
    assert_eq!(alloc(&mut b, 0, Movable), 1);
    assert_eq!(b.pageblock_counts()[Unmovable.index()], 1);
    assert!(b.free_blocks().iter().all(|f| f.migratetype == Unmovable));
}

/// A failed allocation counts a failure and changes nothing else.
fn exhaustion<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 16)], &[(0, 16)]);
    let before = blocks(&b);
    assert_eq!(b.alloc(5, Movable), Err(PageError::NoBlock { order: 5 }));
    assert_eq!(
        b.alloc(0, MigrateType::HighAtomic),
        Err(PageError::NoBlock { order: 0 })
    );
    assert_eq!(blocks(&b), before);
    assert_eq!(b.stats().failures[5], 1);
    assert_eq!(b.stats().failures[0], 1);
    for i in 0..16 {
        assert_eq!(alloc(&mut b, 0, Movable), i);
    }
    assert_eq!(b.alloc(0, Movable), Err(PageError::NoBlock { order: 0 }));
    assert_eq!(b.free_pages(), 0);
    assert_eq!(b.largest_free_order(), None);
    ok(&b);
}

// ----- misuse: every error, with the state unchanged ---------------------------------

fn misuse_double_free<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 64)], &[(0, 64)]);
    let p = alloc(&mut b, 0, Movable);
    let _q = alloc(&mut b, 0, Movable);
    free(&mut b, p, 0);
    check_rejected(&mut b, PageError::DoubleFree(Pfn(p)), |b| b.free(Pfn(p), 0));
    // A free block head (here the order-4 block at 16) is a double free too.
    check_rejected(&mut b, PageError::DoubleFree(Pfn(16)), |b| {
        b.free(Pfn(16), 4)
    });
    check_rejected(&mut b, PageError::DoubleFree(Pfn(16)), |b| {
        b.split(Pfn(16), 4)
    });
}

fn misuse_wrong_order<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 64)], &[(0, 64)]);
    let p = alloc(&mut b, 2, Movable);
    check_rejected(
        &mut b,
        PageError::WrongOrder {
            pfn: Pfn(p),
            allocated: 2,
            given: 1,
        },
        |b| b.free(Pfn(p), 1),
    );
    check_rejected(
        &mut b,
        PageError::WrongOrder {
            pfn: Pfn(p),
            allocated: 2,
            given: 3,
        },
        |b| b.free(Pfn(p), 3),
    );
    check_rejected(
        &mut b,
        PageError::WrongOrder {
            pfn: Pfn(p),
            allocated: 2,
            given: 0,
        },
        |b| b.split(Pfn(p), 0),
    );
}

fn misuse_not_allocated<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 64)], &[(0, 64)]);
    let p = alloc(&mut b, 2, Movable);
    // Tail frames of an allocated block.
    check_rejected(&mut b, PageError::NotAllocated(Pfn(p + 1)), |b| {
        b.free(Pfn(p + 1), 0)
    });
    check_rejected(&mut b, PageError::NotAllocated(Pfn(p + 2)), |b| {
        b.free(Pfn(p + 2), 1)
    });
    // A frame inside a free block that was never allocated.
    check_rejected(&mut b, PageError::NotAllocated(Pfn(33)), |b| {
        b.free(Pfn(33), 0)
    });
    check_rejected(&mut b, PageError::NotAllocated(Pfn(33)), |b| {
        b.split(Pfn(33), 0)
    });
}

fn misuse_out_of_range<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 16), (32, 48)], &[(0, 16), (32, 48)]);
    let _p = alloc(&mut b, 0, Movable);
    check_rejected(&mut b, PageError::OutOfRange(Pfn(5000)), |b| {
        b.free(Pfn(5000), 0)
    });
    check_rejected(&mut b, PageError::OutOfRange(Pfn(20)), |b| {
        b.free(Pfn(20), 0)
    });
    check_rejected(&mut b, PageError::OutOfRange(Pfn(usize::MAX)), |b| {
        b.free(Pfn(usize::MAX), 0)
    });
    check_rejected(&mut b, PageError::OutOfRange(Pfn(20)), |b| {
        b.split(Pfn(20), 0)
    });
}

fn misuse_reserved<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 16)], &[(0, 8)]);
    check_rejected(&mut b, PageError::Reserved(Pfn(8)), |b| b.free(Pfn(8), 0));
    check_rejected(&mut b, PageError::Reserved(Pfn(12)), |b| b.free(Pfn(12), 2));
    check_rejected(&mut b, PageError::Reserved(Pfn(12)), |b| {
        b.split(Pfn(12), 2)
    });
}

fn misuse_misaligned<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 64)], &[(0, 64)]);
    let p = alloc(&mut b, 2, Movable);
    check_rejected(
        &mut b,
        PageError::Misaligned {
            pfn: Pfn(p + 2),
            order: 2,
        },
        |b| b.free(Pfn(p + 2), 2),
    );
    check_rejected(
        &mut b,
        PageError::Misaligned {
            pfn: Pfn(p + 1),
            order: 1,
        },
        |b| b.split(Pfn(p + 1), 1),
    );
}

fn misuse_order_too_large<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 2048)], &[(0, 2048)]);
    let p = alloc(&mut b, MAX_PAGE_ORDER, Movable);
    let too_big = PageError::OrderTooLarge {
        order: 11,
        max: MAX_PAGE_ORDER,
    };
    check_rejected(&mut b, too_big.clone(), |b| b.alloc(11, Movable));
    check_rejected(&mut b, too_big.clone(), |b| b.free(Pfn(p), 11));
    check_rejected(&mut b, too_big, |b| b.split(Pfn(p), 11));
    check_rejected(
        &mut b,
        PageError::OrderTooLarge {
            order: 40,
            max: MAX_PAGE_ORDER,
        },
        |b| b.alloc(40, Movable),
    );
}

fn misuse_bad_ranges<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 16), (32, 48)], &[(0, 8)]);
    let bad = |s, e, why| PageError::BadRange {
        start: Pfn(s),
        end: Pfn(e),
        why,
    };
    check_rejected(&mut b, bad(4, 12, "some frames are already managed"), |b| {
        b.add_free_range(PfnRange::new(4, 12))
    });
    check_rejected(&mut b, bad(0, 8, "some frames are already managed"), |b| {
        b.add_free_range(PfnRange::new(0, 8))
    });
    check_rejected(
        &mut b,
        bad(8, 40, "crosses a hole in the memory map"),
        |b| b.add_free_range(PfnRange::new(8, 40)),
    );
    check_rejected(&mut b, bad(40, 60, "not in the memory map"), |b| {
        b.add_free_range(PfnRange::new(40, 60))
    });
    check_rejected(&mut b, bad(12, 10, "ends before it starts"), |b| {
        b.add_free_range(PfnRange {
            start: Pfn(12),
            end: Pfn(10),
        })
    });
    // An empty range adds nothing.
    let before = crate::common::snapshot(&b);
    b.add_free_range(PfnRange::new(12, 12)).unwrap();
    assert_eq!(crate::common::snapshot(&b), before);
    // The frames beyond the overlap are still reserved and can be added.
    b.add_free_range(PfnRange::new(8, 16)).unwrap();
    check_nr_free(&b, &[0, 0, 0, 0, 1]);
}

fn misuse_free_exact<B: BuddyBackend>() {
    let mut b: B = buddy(&[(0, 64)], &[(0, 64)]);
    let p = b.alloc_exact(6, Movable).unwrap().0;
    check_rejected(&mut b, PageError::ZeroSize, |b| b.free_exact(Pfn(p), 0));
    // Page 6 heads a free block: nothing may be freed, not even the first six pages.
    check_rejected(&mut b, PageError::DoubleFree(Pfn(p + 6)), |b| {
        b.free_exact(Pfn(p), 7)
    });
    // Page 7 is a tail of that free block (eager) or a free head (lazy).
    let err = b.free_exact(Pfn(p), 8).unwrap_err();
    assert!(
        matches!(err, PageError::DoubleFree(_) | PageError::NotAllocated(_)),
        "{err:?}"
    );
    check_rejected(&mut b, PageError::OutOfRange(Pfn(usize::MAX - 1)), |b| {
        b.free_exact(Pfn(usize::MAX - 1), 4)
    });
    b.free_exact(Pfn(p), 6).unwrap();
    check_rejected(&mut b, PageError::DoubleFree(Pfn(p)), |b| {
        b.free_exact(Pfn(p), 6)
    });
}

/// Instantiates every function of the suite as a `#[test]` per backend.
macro_rules! buddy_suite {
    ($($backend:ident: $ty:ty),* ; $tests:tt) => {
        $( buddy_suite!(@one $backend, $ty, $tests); )*
    };
    (@one $backend:ident, $ty:ty, [$($test:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[test]
                fn $test() {
                    super::$test::<$ty>();
                }
            )*
        }
    };
}

buddy_suite!(
    eager: super::EagerBuddy, lazy: super::LazyBuddy;
    [
    worked_example,
    merge_example,
    expand_halves,
    order0_in_address_order,
    pieces_coalesce,
    boot_blocks_and_pageblocks,
    frame_markers,
    split_then_free_pages,
    exact,
    free_all_restores_boot_state,
    fallback_claims_large_block,
    fallback_claims_half_pageblock,
    fallback_steals_small_block,
    exhaustion,
    misuse_double_free,
    misuse_wrong_order,
    misuse_not_allocated,
    misuse_out_of_range,
    misuse_reserved,
    misuse_misaligned,
    misuse_order_too_large,
    misuse_bad_ranges,
    misuse_free_exact,
    ]
);

/// The lazy buddy's intermediate state in the merge example: frame 0 is
/// locally free until the second free (slack 0) coalesces both.
#[test]
fn lazy_merge_example_is_lazy_first() {
    let mut b: LazyBuddy = buddy(&[(0, 2)], &[(0, 2)]);
    alloc(&mut b, 0, Movable);
    alloc(&mut b, 0, Movable);
    free(&mut b, 0, 0);
    let blk = b.free_blocks();
    assert_eq!(blk.len(), 1);
    assert!(blk[0].locally_free);
    assert_eq!(b.delay_counts(0).slack(), 0);
    free(&mut b, 1, 0);
    check_nr_free(&b, &[0, 1]);
}

/// Eager and lazy end in the same state after the same work and a drain.
#[test]
fn eager_and_lazy_agree_after_drain() {
    let mut e: EagerBuddy = buddy(&[(0, 4096)], &[(0, 4096)]);
    let mut l: LazyBuddy = buddy(&[(0, 4096)], &[(0, 4096)]);
    let mut live_e = Vec::new();
    let mut live_l = Vec::new();
    for i in 0..500u32 {
        let o = i % 5;
        live_e.push((alloc(&mut e, o, Movable), o));
        live_l.push((alloc(&mut l, o, Movable), o));
        if i % 2 == 1 {
            let k = (i as usize * 31) % live_e.len();
            let (p, o) = live_e.swap_remove(k);
            free(&mut e, p, o);
            let (p, o) = live_l.swap_remove(k);
            free(&mut l, p, o);
        }
    }
    for (p, o) in live_e {
        free(&mut e, p, o);
    }
    for (p, o) in live_l {
        free(&mut l, p, o);
    }
    e.drain();
    l.drain();
    assert_eq!(nr_free(&e), nr_free(&l));
    check_nr_free(&l, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4]);
    // Laziness saved work.
    assert!(l.stats().merges < e.stats().merges);
    assert!(l.stats().splits < e.stats().splits);
}
