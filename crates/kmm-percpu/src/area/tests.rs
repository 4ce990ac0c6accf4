//! Unit tests of `AreaMap`: placement, bound bits, free, hints, hidden
//! regions, and a model-based proptest.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::{AreaMap, FRAGMENT};

/// The indices of the set bits of `bits`.
fn ones(bits: &crate::Bitmap) -> Vec<usize> {
    bits.iter_ones().collect()
}

/// Checks a map's self-consistency, its free bytes and its live allocation count.
fn check(map: &AreaMap, free_bits: usize, nr_alloc: usize) {
    map.check().unwrap();
    assert_eq!(
        (map.free_bytes(), map.nr_alloc()),
        (free_bits * FRAGMENT, nr_alloc)
    );
}

#[test]
fn a_new_map_is_free_with_bound_bits_at_both_ends() {
    let map = AreaMap::new(16, 0, 0);
    check(&map, 16, 0);
    assert_eq!(ones(map.alloc_map()), [] as [usize; 0]);
    assert_eq!(ones(map.bound_map()), [0, 16]);
    assert_eq!(map.contig(0, 16), 16);
}

#[test]
fn hidden_regions_are_in_use_and_bounded() {
    let map = AreaMap::new(16, 3, 2);
    check(&map, 11, 0);
    assert_eq!(ones(map.alloc_map()), [0, 1, 2, 14, 15]);
    assert_eq!(ones(map.bound_map()), [0, 3, 14, 16]);
    assert_eq!(map.contig(0, 16), 11);
    // Hidden regions are not allocations: they can be neither found nor freed.
    assert_eq!(map.alloc_len(0), None);
    assert_eq!(map.containing(1), None);
    assert_eq!(map.alloc_len(14), None);
}

#[test]
fn alloc_sets_bound_bits_at_start_and_past_the_end() {
    let mut map = AreaMap::new(16, 0, 0);
    assert_eq!(map.alloc(3, 1, 0, 16), Some(0));
    assert_eq!(map.alloc(2, 1, 0, 16), Some(3));
    check(&map, 11, 2);
    assert_eq!(ones(map.alloc_map()), [0, 1, 2, 3, 4]);
    assert_eq!(ones(map.bound_map()), [0, 3, 5, 16]);
    assert_eq!((map.alloc_len(0), map.alloc_len(3)), (Some(3), Some(2)));
    assert_eq!(map.containing(2), Some((0, 3)));
    assert_eq!(map.containing(4), Some((3, 2)));
    assert_eq!((map.alloc_len(1), map.containing(5)), (None, None));
}

#[test]
fn alloc_aligns_and_skips_runs_that_are_too_short() {
    let mut map = AreaMap::new(32, 0, 0);
    assert_eq!(map.alloc(1, 1, 0, 32), Some(0));
    // Aligned to 4 fragments: the first candidate is 4.
    assert_eq!(map.alloc(2, 4, 0, 32), Some(4));
    assert_eq!(map.alloc(1, 1, 0, 32), Some(1));
    // Fragments 2..4 are free but too short for 3; 6..9 fits.
    assert_eq!(map.alloc(3, 1, 0, 32), Some(6));
    assert_eq!(map.alloc(2, 1, 0, 32), Some(2));
    check(&map, 32 - 9, 5);
    assert_eq!(map.contig(0, 32), 23);
}

#[test]
fn alloc_stays_in_its_window_and_fails_without_change() {
    let mut map = AreaMap::new(16, 0, 0);
    assert_eq!(map.alloc(4, 1, 8, 12), Some(8));
    let before = map.clone();
    assert_eq!(map.alloc(1, 1, 8, 12), None);
    assert_eq!(map.alloc(9, 1, 0, 16), None);
    assert_eq!(map.alloc(4, 16, 1, 16), None);
    assert_eq!(
        (map.alloc_map(), map.bound_map(), map.free_bytes()),
        (before.alloc_map(), before.bound_map(), before.free_bytes())
    );
    assert_eq!(map.alloc(8, 8, 0, 16), Some(0));
    check(&map, 4, 2);
}

#[test]
fn free_clears_the_allocation_and_leaves_bound_bits() {
    let mut map = AreaMap::new(16, 0, 0);
    map.alloc(3, 1, 0, 16).unwrap();
    map.alloc(2, 1, 0, 16).unwrap();
    assert_eq!(map.free(0), Some(3));
    check(&map, 14, 1);
    assert_eq!(ones(map.alloc_map()), [3, 4]);
    // The kernel leaves the bound bits of a freed area: they mean nothing in free space.
    assert_eq!(ones(map.bound_map()), [0, 3, 5, 16]);
    // Freeing twice, or inside an allocation, is refused.
    assert_eq!(map.free(0), None);
    assert_eq!(map.free(4), None);
    check(&map, 14, 1);
    // A larger area over the stale bound bit clears it.
    assert_eq!(map.alloc(3, 1, 0, 16), Some(0));
    assert_eq!(map.alloc(4, 1, 0, 16), Some(5));
    map.free(3).unwrap();
    assert_eq!(map.alloc(5, 1, 0, 16), Some(9));
    assert_eq!(map.alloc(2, 1, 0, 16), Some(3));
    assert_eq!(ones(map.bound_map()), [0, 3, 5, 9, 14, 16]);
    check(&map, 2, 4);
}

#[test]
fn contig_finds_the_longest_free_run_in_a_window() {
    let mut map = AreaMap::new(20, 0, 0);
    for _ in 0..10 {
        map.alloc(2, 1, 0, 20).unwrap();
    }
    map.free(2).unwrap();
    map.free(8).unwrap();
    map.free(10).unwrap();
    map.free(12).unwrap();
    assert_eq!(map.contig(0, 20), 6);
    assert_eq!(map.contig(0, 9), 2);
    assert_eq!(map.contig(9, 20), 5);
    assert_eq!(map.contig(16, 20), 0);
}

#[derive(Clone, Debug)]
enum Op {
    Alloc { bits: usize, align_shift: u32 },
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..12, 0u32..4).prop_map(|(bits, align_shift)| Op::Alloc { bits, align_shift }),
        (0usize..64).prop_map(Op::Free),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 128 })
    })]

    /// Random allocations and frees against a model of live areas
    /// (first fragment → length): the map places every area in free space,
    /// aligned, finds it again, and refuses what the model does not hold.
    #[test]
    fn matches_a_model_of_live_areas(ops in proptest::collection::vec(op(), 0..60)) {
        const NBITS: usize = 64;
        let mut map = AreaMap::new(NBITS, 2, 3);
        let (lo, hi) = (2, NBITS - 3);
        let mut model: BTreeMap<usize, usize> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Alloc { bits, align_shift } => {
                    let align = 1 << align_shift;
                    let used = |bit: usize| model.range(..=bit).next_back().is_some_and(|(&s, &l)| bit < s + l);
                    let fits = (lo..hi).filter(|s| s % align == 0).find(|&s| s + bits <= hi && (s..s + bits).all(|b| !used(b)));
                    let got = map.alloc(bits, align, lo, hi);
                    // First fit: the lowest aligned free run.
                    prop_assert_eq!(got, fits);
                    if let Some(start) = got {
                        model.insert(start, bits);
                    }
                }
                Op::Free(bit) => {
                    let want = model.remove(&bit);
                    prop_assert_eq!(map.free(bit), want);
                }
            }
            map.check().map_err(TestCaseError::fail)?;
            prop_assert_eq!(map.nr_alloc(), model.len());
            let live: usize = model.values().sum();
            prop_assert_eq!(map.free_bytes(), (NBITS - 5 - live) * FRAGMENT);
            for (&start, &len) in &model {
                prop_assert_eq!(map.alloc_len(start), Some(len));
                prop_assert_eq!(map.containing(start + len - 1), Some((start, len)));
                prop_assert!(map.bound_map().bit(start) && map.bound_map().bit(start + len));
                prop_assert!(map.bound_map().none_in(start + 1..start + len));
            }
        }
        let starts: Vec<usize> = model.keys().copied().collect();
        for start in starts {
            map.free(start).unwrap();
        }
        prop_assert_eq!(ones(map.alloc_map()), [0, 1, 61, 62, 63]);
    }
}
