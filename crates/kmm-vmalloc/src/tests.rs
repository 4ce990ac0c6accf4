//! Unit tests of the free-range tree (first fit, merging) and of
//! `lazy_max_pages`.

use alloc::vec;
use alloc::vec::Vec;

use crate::area::{self, AreaTree, VmapArea};
use crate::lazy_max_pages;

/// The free ranges of `tree`, as `(start, end)` pairs in address order.
fn ranges(tree: &AreaTree) -> Vec<(usize, usize)> {
    tree.iter().map(|r| (r.start, r.end)).collect()
}

/// A free tree holding `rs`.
fn tree(rs: &[(usize, usize)]) -> AreaTree {
    let mut t = area::new_tree();
    for &(s, e) in rs {
        t.insert(VmapArea::new(s, e, None));
    }
    t
}

/// Frees `[s, e)` into a tree of `before` and checks the result.
fn check_free(before: &[(usize, usize)], (s, e): (usize, usize), after: &[(usize, usize)]) {
    let mut t = tree(before);
    area::free_range(&mut t, VmapArea::new(s, e, None));
    assert_eq!(ranges(&t), after);
}

#[test]
fn first_fit_takes_the_lowest_range_that_fits() {
    let mut t = tree(&[(0, 10), (20, 50), (60, 100)]);
    assert_eq!(area::alloc_range(&mut t, 20), Some(20));
    assert_eq!(ranges(&t), vec![(0, 10), (40, 50), (60, 100)]);
    assert_eq!(area::alloc_range(&mut t, 10), Some(0));
    assert_eq!(ranges(&t), vec![(40, 50), (60, 100)]);
    assert_eq!(area::alloc_range(&mut t, 41), None);
    assert_eq!(ranges(&t), vec![(40, 50), (60, 100)]);
    assert_eq!(area::alloc_range(&mut t, 40), Some(60));
    assert_eq!(ranges(&t), vec![(40, 50)]);
}

#[test]
fn freeing_merges_with_touching_neighbours() {
    check_free(&[], (10, 20), &[(10, 20)]);
    check_free(&[(0, 10)], (10, 20), &[(0, 20)]);
    check_free(&[(20, 30)], (10, 20), &[(10, 30)]);
    check_free(&[(0, 10), (20, 30)], (10, 20), &[(0, 30)]);
    check_free(&[(0, 5), (25, 30)], (10, 20), &[(0, 5), (10, 20), (25, 30)]);
    check_free(&[(0, 10), (25, 30)], (10, 20), &[(0, 20), (25, 30)]);
    check_free(
        &[(0, 5), (20, 30), (40, 50)],
        (10, 20),
        &[(0, 5), (10, 30), (40, 50)],
    );
}

#[test]
fn lazy_max_pages_follows_fls_of_the_cpus() {
    let per = (32 << 20) / kmm_page::PAGE_SIZE;
    for (cpus, fls) in [(1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4), (64, 7)] {
        assert_eq!(lazy_max_pages(cpus), fls * per);
    }
    assert_eq!(lazy_max_pages(0), 0);
}

#[test]
fn the_space_and_stacks_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<crate::VmallocSpace>();
    send_sync::<crate::stack::VmapStack>();
    send_sync::<crate::stack::DirectStack>();
}
