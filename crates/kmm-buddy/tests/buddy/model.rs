//! Model-based property tests: random maps with holes, random operation
//! sequences, and a `BTreeMap` of live allocations as the reference model.
//! Every step is checked against the model and the backend's own invariants.

use std::collections::{BTreeMap, HashSet};

use kmm_buddy::{BuddyBackend, EagerBuddy, LazyBuddy};
use kmm_page::gfp::MigrateType;
use kmm_page::{MAX_PAGE_ORDER, NR_PAGE_ORDERS, PageError, Pfn};
use proptest::prelude::*;

use crate::common::{buddy, nr_free, ok, snapshot};

/// The frames of a test map and the ranges handed to the allocator.
#[derive(Clone, Debug)]
struct Layout {
    present: Vec<(usize, usize)>,
    added: Vec<(usize, usize)>,
}

/// Up to three banks (touching or with holes), each cut into pieces of which
/// some are added, in forward or reverse order.
fn layout() -> impl Strategy<Value = Layout> {
    let bank = (
        0usize..700,
        1usize..1500,
        prop::collection::vec((1usize..600, 0u8..4), 1..6),
    );
    (
        0usize..2048,
        prop::collection::vec(bank, 1..4),
        any::<bool>(),
    )
        .prop_map(|(base, banks, rev)| {
            let (mut present, mut added) = (Vec::new(), Vec::new());
            let mut p = base;
            for (gap, len, pieces) in banks {
                let (s, e) = (p + gap, p + gap + len);
                present.push((s, e));
                let mut q = s;
                for i in 0.. {
                    if q >= e {
                        break;
                    }
                    let (plen, skip) = pieces[i % pieces.len()];
                    let end = (q + plen).min(e);
                    // One piece in four stays reserved.
                    if skip != 0 {
                        added.push((q, end));
                    }
                    q = end;
                }
                p = e;
            }
            if rev {
                added.reverse();
            }
            Layout { present, added }
        })
}

#[derive(Clone, Debug)]
enum Op {
    Alloc { order: u32, mt: MigrateType },
    Free { pick: usize },
    Split { pick: usize },
    AllocExact { pages: usize, mt: MigrateType },
    Misuse { seed: usize, order: u32, kind: u8 },
    Drain,
}

fn order() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..=3, 3 => 4u32..=MAX_PAGE_ORDER, 1 => Just(MAX_PAGE_ORDER + 1)]
}

fn migratetype() -> impl Strategy<Value = MigrateType> {
    prop_oneof![
        3 => Just(MigrateType::Movable),
        2 => Just(MigrateType::Unmovable),
        2 => Just(MigrateType::Reclaimable),
        1 => Just(MigrateType::HighAtomic),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (order(), migratetype()).prop_map(|(order, mt)| Op::Alloc { order, mt }),
        5 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Split { pick }),
        1 => (1usize..70, migratetype()).prop_map(|(pages, mt)| Op::AllocExact { pages, mt }),
        2 => (any::<usize>(), 0u32..=MAX_PAGE_ORDER + 1, 0u8..4)
            .prop_map(|(seed, order, kind)| Op::Misuse { seed, order, kind }),
        1 => Just(Op::Drain),
    ];
    prop::collection::vec(op, 1..200)
}

/// A live allocation in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Live {
    /// A block of this order (freed with `free`).
    Block(u32),
    /// A run of order-0 pages from `alloc_exact` (freed with `free_exact`).
    Exact(usize),
}

impl Live {
    fn len(self) -> usize {
        match self {
            Live::Block(o) => 1 << o,
            Live::Exact(n) => n,
        }
    }
}

/// The reference model: live allocations by first frame.
struct Model {
    live: BTreeMap<usize, Live>,
    span: (usize, usize),
    managed: Vec<bool>,
}

impl Model {
    fn new(layout: &Layout) -> Model {
        let start = layout.present.iter().map(|r| r.0).min().unwrap_or(0);
        let end = layout.present.iter().map(|r| r.1).max().unwrap_or(0);
        let mut managed = vec![false; end - start];
        for &(s, e) in &layout.added {
            managed[s - start..e - start]
                .iter_mut()
                .for_each(|m| *m = true);
        }
        Model {
            live: BTreeMap::new(),
            span: (start, end),
            managed,
        }
    }

    fn insert(&mut self, pfn: usize, live: Live) {
        if let Some((&p, l)) = self.live.range(..=pfn).next_back() {
            assert!(
                p + l.len() <= pfn,
                "allocation at {pfn} overlaps live {p}+{}",
                l.len()
            );
        }
        if let Some((&p, _)) = self.live.range(pfn..).next() {
            assert!(
                pfn + live.len() <= p,
                "allocation at {pfn}+{} overlaps live {p}",
                live.len()
            );
        }
        self.live.insert(pfn, live);
    }

    fn pick(&self, pick: usize) -> Option<(usize, Live)> {
        if self.live.is_empty() {
            return None;
        }
        self.live
            .iter()
            .nth(pick % self.live.len())
            .map(|(&p, &l)| (p, l))
    }

    /// Whether `pfn` is currently an allocated page of order 0 on its own.
    fn is_order0_page(&self, pfn: usize) -> bool {
        match self.live.range(..=pfn).next_back() {
            Some((&p, &Live::Exact(n))) => pfn < p + n,
            Some((&p, &Live::Block(0))) => p == pfn,
            _ => false,
        }
    }

    /// Whether `free(pfn, order)` is a correct call.
    fn free_is_valid(&self, pfn: usize, order: u32) -> bool {
        self.live.get(&pfn) == Some(&Live::Block(order)) || (order == 0 && self.is_order0_page(pfn))
    }
}

/// Checks the backend against the model and its own invariants.
fn verify<B: BuddyBackend>(b: &B, model: &Model) {
    ok(b);
    let (start, end) = model.span;
    let mut cover = vec![0u8; end - start];
    let mut mark = |p: usize, len: usize| {
        for q in p..p + len {
            assert!(
                q >= start && q < end,
                "{}: frame {q} outside the map",
                B::NAME
            );
            cover[q - start] += 1;
        }
    };
    let blocks = b.free_blocks();
    let mut per_order = [0usize; NR_PAGE_ORDERS];
    let mut global = HashSet::new();
    for f in &blocks {
        per_order[f.order as usize] += 1;
        mark(f.pfn.0, 1 << f.order);
        if !f.locally_free {
            global.insert((f.pfn.0, f.order));
        }
    }
    for (&p, &l) in &model.live {
        mark(p, l.len());
    }
    for (i, (&c, &m)) in cover.iter().zip(&model.managed).enumerate() {
        assert_eq!(
            c,
            u8::from(m),
            "{}: frame {} covered {c} times (managed: {m})",
            B::NAME,
            start + i
        );
    }
    assert_eq!(
        per_order,
        nr_free(b),
        "{}: nr_free disagrees with the lists",
        B::NAME
    );
    // No two coalescible (globally) free buddies; every pageblock type here is mergeable.
    for &(p, o) in &global {
        if o < MAX_PAGE_ORDER {
            assert!(
                !global.contains(&(p ^ (1 << o), o)),
                "{}: free buddies {p} at order {o}",
                B::NAME
            );
        }
    }
    let live_pages: usize = model.live.values().map(|l| l.len()).sum();
    assert_eq!(b.free_pages() + live_pages, b.managed_pages());
}

/// Checks a failed allocation: nothing big enough was left for a type with fallbacks.
fn check_no_block<B: BuddyBackend>(b: &B, order: u32, mt: MigrateType) {
    if !mt.fallbacks().is_empty() {
        assert!(
            b.largest_free_order().is_none_or(|o| o < order),
            "{}: order {order} failed with a block of order {:?} free",
            B::NAME,
            b.largest_free_order()
        );
    }
}

/// Runs `ops` on a fresh backend; returns `nr_free` right after boot and
/// after freeing everything and draining.
fn run<B: BuddyBackend>(
    layout: &Layout,
    ops: &[Op],
) -> ([usize; NR_PAGE_ORDERS], [usize; NR_PAGE_ORDERS]) {
    let mut b: B = buddy(&layout.present, &layout.added);
    let mut model = Model::new(layout);
    verify(&b, &model);
    let boot = nr_free(&b);
    for op in ops {
        match *op {
            Op::Alloc { order, mt } => match b.alloc(order, mt) {
                Ok(pfn) => {
                    assert!(order <= MAX_PAGE_ORDER && pfn.is_aligned(order));
                    let head = b.mem_map().pfn_to_page(pfn).unwrap();
                    assert_eq!((head.refcount(), head.order()), (1, Some(order)));
                    model.insert(pfn.0, Live::Block(order));
                }
                Err(PageError::OrderTooLarge { .. }) => assert!(order > MAX_PAGE_ORDER),
                Err(PageError::NoBlock { order: o }) => {
                    assert_eq!(o, order);
                    check_no_block(&b, order, mt);
                }
                Err(e) => panic!("{}: unexpected alloc error {e}", B::NAME),
            },
            Op::Free { pick } => {
                if let Some((p, l)) = model.pick(pick) {
                    match l {
                        Live::Block(o) => b.free(Pfn(p), o).unwrap(),
                        Live::Exact(n) => b.free_exact(Pfn(p), n).unwrap(),
                    }
                    model.live.remove(&p);
                }
            }
            Op::Split { pick } => {
                if let Some((p, l)) = model.pick(pick) {
                    match l {
                        Live::Block(o) => {
                            b.split(Pfn(p), o).unwrap();
                            model.live.remove(&p);
                            for i in 0..1 << o {
                                model.insert(p + i, Live::Block(0));
                            }
                        }
                        // Each page of an exact run is an order-0 allocation already.
                        Live::Exact(_) => b.split(Pfn(p), 0).unwrap(),
                    }
                }
            }
            Op::AllocExact { pages, mt } => match b.alloc_exact(pages, mt) {
                Ok(pfn) => model.insert(pfn.0, Live::Exact(pages)),
                Err(PageError::NoBlock { order }) => check_no_block(&b, order, mt),
                Err(e) => panic!("{}: unexpected alloc_exact error {e}", B::NAME),
            },
            Op::Misuse { seed, order, kind } => misuse(&mut b, &model, seed, order, kind),
            Op::Drain => b.drain(),
        }
        verify(&b, &model);
    }
    // Free everything, drain, and compare with the boot state.
    let live: Vec<(usize, Live)> = model.live.iter().map(|(&p, &l)| (p, l)).collect();
    for (p, l) in live.into_iter().rev() {
        match l {
            Live::Block(o) => b.free(Pfn(p), o).unwrap(),
            Live::Exact(n) => b.free_exact(Pfn(p), n).unwrap(),
        }
        model.live.remove(&p);
    }
    b.drain();
    verify(&b, &model);
    let end = nr_free(&b);
    assert_eq!(
        end,
        boot,
        "{}: freeing everything did not restore the boot state",
        B::NAME
    );
    (boot, end)
}

/// A call the model says is wrong must fail and change nothing.
fn misuse<B: BuddyBackend>(b: &mut B, model: &Model, seed: usize, order: u32, kind: u8) {
    let (start, end) = model.span;
    let pfn = match (kind, model.pick(seed)) {
        // Somewhere in or just around the map (holes, reserved frames, free frames).
        (0, _) | (_, None) => (start + seed % (end - start + 8)).saturating_sub(4),
        // A live head, freed with some order.
        (1, Some((p, _))) => p,
        // Inside a live allocation.
        (_, Some((p, l))) => p + (seed >> 8) % l.len(),
    };
    let before = snapshot(b);
    if !model.free_is_valid(pfn, order) {
        assert!(
            b.free(Pfn(pfn), order).is_err(),
            "{}: free({pfn}, {order}) accepted",
            B::NAME
        );
        assert!(
            b.split(Pfn(pfn), order).is_err(),
            "{}: split({pfn}, {order}) accepted",
            B::NAME
        );
    }
    let n = 1 + seed % 9;
    if !(pfn..pfn + n).all(|p| model.is_order0_page(p)) {
        let near: Vec<_> = model.live.range(pfn.saturating_sub(64)..pfn + n).collect();
        let frames: Vec<_> = (pfn..pfn + n)
            .map(|p| {
                b.mem_map()
                    .pfn_to_page(Pfn(p))
                    .map(|f| (f.refcount(), f.order(), f.page_type()))
            })
            .collect();
        assert!(
            b.free_exact(Pfn(pfn), n).is_err(),
            "{}: free_exact({pfn}, {n}) accepted {near:?} {frames:?}",
            B::NAME
        );
    }
    assert_eq!(
        snapshot(b),
        before,
        "{}: a rejected call changed the state",
        B::NAME
    );
}

/// The number of cases: `PROPTEST_CASES` if set (for long local runs), else `default`.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Instantiates the model test for each backend.
macro_rules! model_tests {
    ($($name:ident: $ty:ty),* $(,)?) => {
        proptest! {
            #![proptest_config(cases(96))]
            $(
                #[test]
                fn $name(layout in layout(), ops in ops()) {
                    run::<$ty>(&layout, &ops);
                }
            )*
        }
    };
}

model_tests!(eager_matches_model: EagerBuddy, lazy_matches_model: LazyBuddy);

proptest! {
    #![proptest_config(cases(48))]

    /// The same work on both backends ends, after a drain, in the same
    /// `nr_free` per order, which is the boot state.
    #[test]
    fn eager_and_lazy_end_alike(layout in layout(), ops in ops()) {
        let (boot_e, end_e) = run::<EagerBuddy>(&layout, &ops);
        let (boot_l, end_l) = run::<LazyBuddy>(&layout, &ops);
        prop_assert_eq!(boot_e, boot_l);
        prop_assert_eq!(end_e, end_l);
    }
}
