//! A model-based property test: random vmalloc, vzalloc, vmap, vfree,
//! vunmap, double frees and purges against a shadow model of the live
//! areas, with `check_invariants` after every step.

pub mod common;

use std::collections::BTreeMap;

use common::{Machine, machine};
use kmm_gfp::GFP_KERNEL;
use kmm_page::{PAGE_SIZE, Pfn, Prot, VirtAddr};
use kmm_vmalloc::{AreaKind, VmallocError};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Vmalloc(usize),
    Vzalloc(usize),
    Vmap(usize),
    Free(usize),
    Vunmap(usize),
    DoubleFree(usize),
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..=3 * PAGE_SIZE + 7).prop_map(Op::Vmalloc),
        1 => (1usize..=2 * PAGE_SIZE).prop_map(Op::Vzalloc),
        2 => (1usize..=3).prop_map(Op::Vmap),
        4 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::Vunmap),
        1 => any::<usize>().prop_map(Op::DoubleFree),
        1 => Just(Op::Purge),
    ]
}

/// A live area of the model.
#[derive(Debug)]
struct Live {
    pages: usize,
    kind: AreaKind,
    /// For vmap'ed areas, the frames the test owns and gives back after.
    frames: Vec<Pfn>,
}

/// Checks the machine against the model.
fn check(m: &Machine, live: &BTreeMap<usize, Live>, free0: usize, owned: usize) {
    m.vm.check_invariants().unwrap();
    let mut end = 0;
    let mut held = 0;
    for (&start, l) in live {
        assert!(start >= end, "areas overlap");
        let area = m.vm.find_vm_area(VirtAddr(start)).unwrap();
        assert_eq!((area.start.0, area.kind), (start, Some(l.kind)));
        assert_eq!(area.size(), (l.pages + 1) * PAGE_SIZE);
        for (i, &pfn) in area.pages.iter().enumerate() {
            assert_eq!(
                m.vm.vmalloc_to_page(VirtAddr(start + i * PAGE_SIZE)),
                Some(pfn)
            );
        }
        assert_eq!(m.vm.vmalloc_to_page(VirtAddr(area.end.0 - PAGE_SIZE)), None);
        if l.kind == AreaKind::Vmap {
            assert_eq!(area.pages, l.frames);
        } else {
            held += l.pages;
        }
        end = area.end.0;
    }
    assert_eq!(m.vm.nr_vmalloc_pages(), held);
    assert_eq!(m.free_pages() + held + owned, free0);
    let busy = m.vm.areas().iter().filter(|a| a.kind.is_some()).count();
    assert_eq!(busy, live.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn vmalloc_matches_the_model(
        ops in proptest::collection::vec(op(), 1..60),
        lazy_max in 0usize..24,
        va_pages in 24usize..96,
    ) {
        let m = machine(128, va_pages, 2);
        m.vm.set_lazy_max_pages(lazy_max);
        let free0 = m.free_pages();
        let mut live: BTreeMap<usize, Live> = BTreeMap::new();
        let mut freed: Vec<usize> = Vec::new();
        let mut owned = 0;
        for op in ops {
            match op {
                Op::Vmalloc(size) | Op::Vzalloc(size) => {
                    let r = if matches!(op, Op::Vmalloc(_)) {
                        m.vm.vmalloc(size, GFP_KERNEL, "model")
                    } else {
                        m.vm.vzalloc(size, GFP_KERNEL, "model")
                    };
                    match r {
                        Ok(a) => {
                            let pages = size.div_ceil(PAGE_SIZE);
                            let new = Live { pages, kind: AreaKind::Vmalloc, frames: vec![] };
                            prop_assert!(live.insert(a.0, new).is_none(), "address reused while live");
                        }
                        Err(VmallocError::NoVirtualSpace { .. } | VmallocError::NoMemory(_)) => {}
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Vmap(n) => {
                    let frames: Vec<Pfn> = (0..n).filter_map(|_| m.pages.alloc_pages(GFP_KERNEL, 0).ok()).collect();
                    owned += frames.len();
                    if frames.is_empty() {
                        continue;
                    }
                    match m.vm.vmap(&frames, Prot::KERNEL, "model_vmap") {
                        Ok(a) => {
                            let new = Live { pages: frames.len(), kind: AreaKind::Vmap, frames };
                            prop_assert!(live.insert(a.0, new).is_none(), "address reused while live");
                        }
                        Err(VmallocError::NoVirtualSpace { .. }) => {
                            for f in frames {
                                m.pages.free_pages(f, 0).unwrap();
                                owned -= 1;
                            }
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Free(i) | Op::Vunmap(i) => {
                    let Some(&start) = live.keys().nth(i % live.len().max(1)) else { continue };
                    let kind = live[&start].kind;
                    let unmap = matches!(op, Op::Vunmap(_));
                    let r = if unmap { m.vm.vunmap(VirtAddr(start)) } else { m.vm.vfree(VirtAddr(start)) };
                    if unmap && kind == AreaKind::Vmalloc {
                        prop_assert_eq!(r, Err(VmallocError::NotVmap(VirtAddr(start))));
                    } else {
                        prop_assert_eq!(r, Ok(()));
                        let l = live.remove(&start).unwrap();
                        for f in l.frames {
                            m.pages.free_pages(f, 0).unwrap();
                            owned -= 1;
                        }
                        freed.push(start);
                    }
                }
                Op::DoubleFree(i) => {
                    let Some(&start) = freed.get(i % freed.len().max(1)) else { continue };
                    if live.contains_key(&start) {
                        continue;
                    }
                    let r = m.vm.vfree(VirtAddr(start));
                    prop_assert!(matches!(r, Err(VmallocError::DoubleFree(_) | VmallocError::NotAnArea(_))), "{:?}", r);
                }
                Op::Purge => m.vm.purge(),
            }
            check(&m, &live, free0, owned);
        }
        // Free everything: every frame is back and the space is one free range.
        for (start, l) in core::mem::take(&mut live) {
            m.vm.vfree(VirtAddr(start)).unwrap();
            for f in l.frames {
                m.pages.free_pages(f, 0).unwrap();
            }
        }
        m.vm.purge();
        prop_assert_eq!(m.free_pages(), free0);
        prop_assert_eq!(m.mmu.mapped_pages(), 0);
        prop_assert_eq!(m.vm.free_ranges(), vec![(m.vm.start(), m.vm.end())]);
        prop_assert_eq!(m.vm.vmallocinfo(), "");
        m.vm.check_invariants().unwrap();
    }
}
