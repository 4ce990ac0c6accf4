//! Unit tests of `Bitmap`: range fills across words, searches, counts, and
//! a proptest against a `Vec<bool>`.

use alloc::vec::Vec;
use core::ops::Range;

use proptest::prelude::*;

use super::Bitmap;

#[test]
fn fills_and_searches_across_word_boundaries() {
    let mut map = Bitmap::new(200, false);
    map.fill(60..130, true);
    assert_eq!(
        (map.len(), map.count_ones(), map.count_zeros()),
        (200, 70, 130)
    );
    assert_eq!(map.first_one_in(0..200), Some(60));
    assert_eq!(map.last_one_in(0..200), Some(129));
    assert_eq!(map.first_zero_in(60..200), Some(130));
    assert_eq!(map.last_one_in(0..64), Some(63));
    assert_eq!(
        (map.first_one_in(130..200), map.first_zero_in(61..129)),
        (None, None)
    );
    assert!(map.all_in(60..130) && !map.all_in(59..130) && map.none_in(130..200));
    map.set(64, false);
    assert_eq!(map.first_zero_in(60..130), Some(64));
    assert_eq!(
        (map.get(64), map.get(65), map.get(200)),
        (Some(false), Some(true), None)
    );
    let full = Bitmap::new(130, true);
    assert_eq!((full.count_ones(), full.first_zero_in(0..130)), (130, None));
    assert_eq!(Bitmap::new(0, true).iter_ones().count(), 0);
}

#[test]
fn ranges_beyond_the_end_are_clipped() {
    let map = Bitmap::new(70, true);
    assert_eq!(map.last_one_in(0..1000), Some(69));
    assert_eq!(map.first_zero_in(0..1000), None);
    assert!(!map.all_in(0..71));
    assert_eq!(map.first_one_in(80..90), None);
}

fn range(len: usize) -> impl Strategy<Value = Range<usize>> {
    (0..=len, 0..=len).prop_map(|(a, b)| a.min(b)..a.max(b))
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 128 })
    })]

    #[test]
    fn matches_a_vector_of_bools(
        fills in proptest::collection::vec((range(150), any::<bool>()), 0..12),
        query in range(150),
    ) {
        let mut map = Bitmap::new(150, false);
        let mut model = [false; 150];
        for (r, v) in fills {
            map.fill(r.clone(), v);
            model[r].fill(v);
        }
        let find = |want: bool| query.clone().find(|&i| model[i] == want);
        prop_assert_eq!(map.first_one_in(query.clone()), find(true));
        prop_assert_eq!(map.first_zero_in(query.clone()), find(false));
        prop_assert_eq!(map.last_one_in(query.clone()), query.clone().rev().find(|&i| model[i]));
        prop_assert_eq!(map.iter_ones().collect::<Vec<_>>(), (0..150).filter(|&i| model[i]).collect::<Vec<_>>());
        prop_assert_eq!(map.count_ones(), model.iter().filter(|&&b| b).count());
    }
}
