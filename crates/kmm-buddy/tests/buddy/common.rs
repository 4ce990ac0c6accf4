//! Helpers shared by the suites: building a buddy, dumping its whole state,
//! and the `check` helpers the tests go through.

use std::sync::Arc;

use kmm_buddy::{BuddyBackend, BuddyStats, FreeBlock};
use kmm_page::gfp::MigrateType;
use kmm_page::{MemMap, NR_PAGE_ORDERS, PageError, PageType, Pfn, PfnRange};

/// A buddy over a map of `present` ranges with the `added` ranges handed to it, in order.
pub(crate) fn buddy<B: BuddyBackend>(present: &[(usize, usize)], added: &[(usize, usize)]) -> B {
    let ranges: Vec<PfnRange> = present.iter().map(|&(s, e)| PfnRange::new(s, e)).collect();
    let map = MemMap::new(&ranges).expect("test map is valid");
    let mut b = B::new(Arc::new(map));
    for &(s, e) in added {
        b.add_free_range(PfnRange::new(s, e))
            .expect("test range can be added");
    }
    ok(&b);
    b
}

/// Asserts `check_invariants` passes.
pub(crate) fn ok<B: BuddyBackend>(b: &B) {
    if let Err(e) = b.check_invariants() {
        panic!("{} buddy broke an invariant: {e}", B::NAME);
    }
}

/// `nr_free` for every order.
pub(crate) fn nr_free<B: BuddyBackend>(b: &B) -> [usize; NR_PAGE_ORDERS] {
    core::array::from_fn(|o| b.nr_free(o as u32))
}

/// Checks `nr_free` for the orders given; the orders after them must be empty.
pub(crate) fn check_nr_free<B: BuddyBackend>(b: &B, expected: &[usize]) {
    let mut want = [0; NR_PAGE_ORDERS];
    want[..expected.len()].copy_from_slice(expected);
    assert_eq!(nr_free(b), want, "{}: nr_free per order", B::NAME);
    ok(b);
}

/// The free blocks as `(pfn, order)`, sorted by pfn.
pub(crate) fn blocks<B: BuddyBackend>(b: &B) -> Vec<(usize, u32)> {
    let mut v: Vec<(usize, u32)> = b.free_blocks().iter().map(|f| (f.pfn.0, f.order)).collect();
    v.sort_unstable();
    v
}

/// One frame's observable fields.
type FrameDump = (
    usize,
    u16,
    MigrateType,
    Option<u32>,
    PageType,
    i32,
    i32,
    u32,
    bool,
);

/// Everything observable about a buddy.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    blocks: Vec<FreeBlock>,
    nr_free: [usize; NR_PAGE_ORDERS],
    nr_free_mt: Vec<usize>,
    free_pages: usize,
    managed: usize,
    pageblocks: [usize; MigrateType::COUNT],
    stats: BuddyStats,
    frames: Vec<FrameDump>,
}

/// Dumps the full state of `b`.
pub(crate) fn snapshot<B: BuddyBackend>(b: &B) -> Snapshot {
    let nr_free_mt = (0..NR_PAGE_ORDERS as u32)
        .flat_map(|o| MigrateType::ALL.map(|mt| b.nr_free_mt(o, mt)))
        .collect();
    let frames = b
        .mem_map()
        .iter()
        .map(|(pfn, f)| {
            (
                pfn.0,
                f.flags().bits(),
                f.migratetype(),
                f.order(),
                f.page_type(),
                f.refcount(),
                f.mapcount(),
                f.private(),
                f.is_linked(),
            )
        })
        .collect();
    Snapshot {
        blocks: b.free_blocks(),
        nr_free: nr_free(b),
        nr_free_mt,
        free_pages: b.free_pages(),
        managed: b.managed_pages(),
        pageblocks: b.pageblock_counts(),
        stats: b.stats().clone(),
        frames,
    }
}

/// Runs `op`, which must fail with `expected`, and checks that nothing changed.
pub(crate) fn check_rejected<B: BuddyBackend, T: core::fmt::Debug>(
    b: &mut B,
    expected: PageError,
    op: impl FnOnce(&mut B) -> Result<T, PageError>,
) {
    let before = snapshot(b);
    let got = op(b);
    assert_eq!(got.unwrap_err(), expected, "{}: wrong error", B::NAME);
    assert_eq!(
        snapshot(b),
        before,
        "{}: a rejected call changed the state",
        B::NAME
    );
    ok(b);
}

/// Allocates, expecting success, and returns the frame number as an integer.
pub(crate) fn alloc<B: BuddyBackend>(b: &mut B, order: u32, mt: MigrateType) -> usize {
    let pfn = b
        .alloc(order, mt)
        .unwrap_or_else(|e| panic!("{}: alloc({order}): {e}", B::NAME));
    ok(b);
    pfn.0
}

/// Frees, expecting success.
pub(crate) fn free<B: BuddyBackend>(b: &mut B, pfn: usize, order: u32) {
    b.free(Pfn(pfn), order)
        .unwrap_or_else(|e| panic!("{}: free({pfn}, {order}): {e}", B::NAME));
    ok(b);
}
