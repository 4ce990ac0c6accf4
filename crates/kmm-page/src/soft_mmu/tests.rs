//! Unit tests of `SoftMmu`: the `Mmu` contract, errors that change nothing,
//! all-or-nothing ranges, two threads, and a model-based property test.

extern crate std;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use proptest::prelude::*;

use crate::{Mmu, MmuError, PAGE_SIZE, Pfn, Prot, SoftMmu, VirtAddr};

/// The start of the windows under test: the x86-64 `VMALLOC_START`.
const START: usize = 0xffff_c900_0000_0000;
/// The number of pages in the windows under test.
const PAGES: usize = 64;

/// The address of page `i` of the window.
fn page(i: usize) -> VirtAddr {
    VirtAddr(START + i * PAGE_SIZE)
}

/// A fresh table over pages `[0, PAGES)`.
fn mmu() -> SoftMmu {
    SoftMmu::new(page(0), page(PAGES)).unwrap()
}

/// Every mapping, as `(page index, pfn, prot)`.
fn table(mmu: &SoftMmu) -> Vec<(usize, usize, Prot)> {
    mmu.mappings()
        .map(|(va, pfn, prot)| ((va.0 - START) / PAGE_SIZE, pfn.0, prot))
        .collect()
}

/// Checks the whole table, and that the count and `for_each_mapping` agree with it.
fn check(mmu: &SoftMmu, expected: &[(usize, usize, Prot)]) {
    assert_eq!(table(mmu), expected);
    assert_eq!(mmu.mapped_pages(), expected.len());
    let mut seen = Vec::new();
    mmu.for_each_mapping(|va, pfn, prot| seen.push((va, pfn, prot)));
    assert_eq!(seen, mmu.mappings().collect::<Vec<_>>());
}

#[test]
fn new_checks_the_window() {
    let w = SoftMmu::new(page(0), page(PAGES)).unwrap();
    assert_eq!(w.window(), (page(0), page(PAGES)));
    check(&w, &[]);
    let odd = VirtAddr(START + 1);
    assert_eq!(
        SoftMmu::new(odd, page(4)).unwrap_err(),
        MmuError::Misaligned(odd)
    );
    assert_eq!(
        SoftMmu::new(page(0), odd).unwrap_err(),
        MmuError::Misaligned(odd)
    );
    assert_eq!(
        SoftMmu::new(page(4), page(4)).unwrap_err(),
        MmuError::OutsideWindow(page(4))
    );
    assert_eq!(
        SoftMmu::new(page(4), page(2)).unwrap_err(),
        MmuError::OutsideWindow(page(2))
    );
    let huge = page(SoftMmu::MAX_WINDOW_PAGES + 1);
    assert_eq!(
        SoftMmu::new(page(0), huge).unwrap_err(),
        MmuError::OutsideWindow(huge)
    );
}

#[test]
fn map_translate_unmap() {
    let mmu = mmu();
    mmu.map(page(3), Pfn(100), Prot::KERNEL).unwrap();
    mmu.map(page(0), Pfn(7), Prot::READ).unwrap();
    check(&mmu, &[(0, 7, Prot::READ), (3, 100, Prot::KERNEL)]);
    for k in [0, 1, PAGE_SIZE - 1] {
        assert_eq!(mmu.translate(VirtAddr(page(3).0 + k)), Some(Pfn(100)));
    }
    assert_eq!(mmu.lookup(page(0)), Some((Pfn(7), Prot::READ)));
    assert_eq!(mmu.translate(page(4)), None);
    assert_eq!(mmu.translate(page(PAGES)), None);
    assert_eq!(mmu.translate(VirtAddr(START - 1)), None);
    assert_eq!(mmu.as_ptr(page(3)), None);
    assert_eq!(mmu.unmap(page(3)), Ok(Pfn(100)));
    assert_eq!(mmu.translate(page(3)), None);
    check(&mmu, &[(0, 7, Prot::READ)]);
    // Frame 0 and an empty protection are ordinary values.
    mmu.map(page(PAGES - 1), Pfn(0), Prot::empty()).unwrap();
    assert_eq!(mmu.translate(page(PAGES - 1)), Some(Pfn(0)));
    check(&mmu, &[(0, 7, Prot::READ), (PAGES - 1, 0, Prot::empty())]);
    mmu.flush_tlb_range(page(0), page(PAGES));
}

#[test]
fn bad_calls_leave_the_table_unchanged() {
    let mmu = mmu();
    mmu.map(page(5), Pfn(50), Prot::KERNEL).unwrap();
    let before = [(5, 50, Prot::KERNEL)];
    let odd = VirtAddr(page(6).0 + 8);
    let below = VirtAddr(START - PAGE_SIZE);
    let cases = [
        (
            mmu.map(odd, Pfn(1), Prot::KERNEL),
            MmuError::Misaligned(odd),
        ),
        (
            mmu.map(below, Pfn(1), Prot::KERNEL),
            MmuError::OutsideWindow(below),
        ),
        (
            mmu.map(page(PAGES), Pfn(1), Prot::KERNEL),
            MmuError::OutsideWindow(page(PAGES)),
        ),
        (
            mmu.map(page(5), Pfn(1), Prot::READ),
            MmuError::AlreadyMapped {
                va: page(5),
                pfn: Pfn(50),
            },
        ),
        (
            mmu.map(page(6), Pfn(usize::MAX), Prot::KERNEL),
            MmuError::NoFrame(Pfn(usize::MAX)),
        ),
        (
            mmu.map(page(6), Pfn(1 << 61), Prot::KERNEL),
            MmuError::NoFrame(Pfn(1 << 61)),
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, Err(want));
        check(&mmu, &before);
    }
    for (va, want) in [
        (odd, MmuError::Misaligned(odd)),
        (below, MmuError::OutsideWindow(below)),
        (page(PAGES), MmuError::OutsideWindow(page(PAGES))),
        (page(6), MmuError::NotMapped(page(6))),
    ] {
        assert_eq!(mmu.unmap(va), Err(want));
        check(&mmu, &before);
    }
    // The largest frame that fits in an entry maps.
    let top = Pfn((1 << 61) - 2);
    mmu.map(page(6), top, Prot::KERNEL).unwrap();
    assert_eq!(mmu.unmap(page(6)), Ok(top));
    check(&mmu, &before);
}

#[test]
fn map_range_is_all_or_nothing() {
    let mmu = mmu();
    mmu.map(page(10), Pfn(999), Prot::READ).unwrap();
    let before = [(10, 999, Prot::READ)];
    // A conflict in the middle of the range maps nothing.
    assert_eq!(
        mmu.map_range(page(6), Pfn(200), 8, Prot::KERNEL),
        Err(MmuError::AlreadyMapped {
            va: page(10),
            pfn: Pfn(999)
        })
    );
    check(&mmu, &before);
    // So does a range that runs out of the window, or past the largest frame.
    assert_eq!(
        mmu.map_range(page(PAGES - 2), Pfn(200), 3, Prot::KERNEL),
        Err(MmuError::OutsideWindow(page(PAGES - 2)))
    );
    assert_eq!(
        mmu.map_range(page(0), Pfn((1 << 61) - 3), 3, Prot::KERNEL),
        Err(MmuError::NoFrame(Pfn((1 << 61) - 1)))
    );
    assert_eq!(
        mmu.map_range(page(0), Pfn(usize::MAX - 1), 3, Prot::KERNEL),
        Err(MmuError::NoFrame(Pfn(usize::MAX - 1)))
    );
    check(&mmu, &before);
    // An empty range maps nothing and succeeds.
    mmu.map_range(page(0), Pfn(1), 0, Prot::KERNEL).unwrap();
    check(&mmu, &before);
    // A range that fits maps every page to consecutive frames.
    mmu.map_range(page(11), Pfn(200), 3, Prot::KERNEL).unwrap();
    check(
        &mmu,
        &[
            (10, 999, Prot::READ),
            (11, 200, Prot::KERNEL),
            (12, 201, Prot::KERNEL),
            (13, 202, Prot::KERNEL),
        ],
    );
}

#[test]
fn two_threads_map_and_unmap_distinct_pages() {
    let rounds = if cfg!(miri) { 4 } else { 200 };
    let mmu = mmu();
    std::thread::scope(|s| {
        for t in 0..2 {
            let mmu = &mmu;
            s.spawn(move || {
                // Thread `t` owns the pages of its parity.
                for r in 0..rounds {
                    for i in (t..PAGES).step_by(2) {
                        mmu.map(page(i), Pfn(i * 1000 + r), Prot::KERNEL).unwrap();
                    }
                    for i in (t..PAGES).step_by(2) {
                        assert_eq!(mmu.translate(page(i)), Some(Pfn(i * 1000 + r)));
                        assert_eq!(mmu.unmap(page(i)), Ok(Pfn(i * 1000 + r)));
                    }
                }
                for i in (t..PAGES).step_by(2) {
                    mmu.map(page(i), Pfn(i), Prot::READ).unwrap();
                }
            });
        }
    });
    let expected: Vec<_> = (0..PAGES).map(|i| (i, i, Prot::READ)).collect();
    check(&mmu, &expected);
}

/// One operation of the property test, on page indices that run one past the window.
#[derive(Clone, Debug)]
enum Op {
    Map {
        page: usize,
        pfn: usize,
        prot: u8,
    },
    MapRange {
        page: usize,
        pfn: usize,
        pages: usize,
    },
    Unmap {
        page: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let page = 0..=PAGES;
    prop_oneof![
        (page.clone(), 0..64usize, 0..8u8).prop_map(|(page, pfn, prot)| Op::Map {
            page,
            pfn,
            prot
        }),
        (page.clone(), 0..64usize, 0..6usize).prop_map(|(page, pfn, pages)| Op::MapRange {
            page,
            pfn,
            pages
        }),
        page.prop_map(|page| Op::Unmap { page }),
    ]
}

proptest! {
    // Under Miri, few cases, and no regression file (Miri isolates the file system).
    #![proptest_config(ProptestConfig {
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 128 })
    })]

    /// A random sequence of maps and unmaps matches a `BTreeMap` from page to
    /// frame, errors included, and failed calls leave the table as it was.
    #[test]
    fn matches_a_btreemap_model(ops in proptest::collection::vec(op(), 0..60)) {
        let mmu = mmu();
        let mut model: BTreeMap<usize, (usize, Prot)> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Map { page: i, pfn, prot } => {
                    let prot = Prot::from_bits_truncate(prot);
                    let want = if i >= PAGES {
                        Err(MmuError::OutsideWindow(page(i)))
                    } else if let Some(&(old, _)) = model.get(&i) {
                        Err(MmuError::AlreadyMapped { va: page(i), pfn: Pfn(old) })
                    } else {
                        model.insert(i, (pfn, prot));
                        Ok(())
                    };
                    prop_assert_eq!(mmu.map(page(i), Pfn(pfn), prot), want);
                }
                Op::MapRange { page: i, pfn, pages } => {
                    let conflict = (i..i + pages).find(|p| model.contains_key(p));
                    let want = if i + pages > PAGES {
                        Err(MmuError::OutsideWindow(page(i)))
                    } else if let Some(p) = conflict {
                        Err(MmuError::AlreadyMapped { va: page(p), pfn: Pfn(model[&p].0) })
                    } else {
                        for k in 0..pages {
                            model.insert(i + k, (pfn + k, Prot::KERNEL));
                        }
                        Ok(())
                    };
                    prop_assert_eq!(mmu.map_range(page(i), Pfn(pfn), pages, Prot::KERNEL), want);
                }
                Op::Unmap { page: i } => {
                    let want = if i >= PAGES {
                        Err(MmuError::OutsideWindow(page(i)))
                    } else {
                        model.remove(&i).map(|(pfn, _)| Pfn(pfn)).ok_or(MmuError::NotMapped(page(i)))
                    };
                    prop_assert_eq!(mmu.unmap(page(i)), want);
                }
            }
            let expected: Vec<_> = model.iter().map(|(&i, &(pfn, prot))| (i, pfn, prot)).collect();
            prop_assert_eq!(table(&mmu), expected);
            prop_assert_eq!(mmu.mapped_pages(), model.len());
            for i in 0..=PAGES {
                prop_assert_eq!(mmu.translate(page(i)), model.get(&i).map(|&(pfn, _)| Pfn(pfn)));
            }
        }
    }
}
