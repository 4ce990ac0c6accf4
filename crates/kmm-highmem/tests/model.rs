//! Model-based property tests: random sequences of `kmap`, `kunmap`, flushes
//! and stack mappings against a shadow model, with the invariants of the
//! reference (§10) checked after every operation.

pub mod common;

use std::collections::HashMap;

use common::{LOWMEM, counts, machine, snapshot};
use kmm_highmem::{HighmemError, KM_MAX_IDX, LocalKind};
use kmm_page::{PAGE_SIZE, Pfn, VirtAddr};
use proptest::prelude::*;

/// Frames `[0, LOWMEM)` are lowmem, the rest of `[0, PAGES)` highmem.
const PAGES: usize = 20;
const SLOTS: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Op {
    Kmap(usize),
    Kunmap(usize),
    Flush,
    Map(LocalKind, usize),
    Unmap(LocalKind, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![Just(LocalKind::Atomic), Just(LocalKind::Local)];
    prop_oneof![
        4 => (0..PAGES).prop_map(Op::Kmap),
        3 => (0..PAGES).prop_map(Op::Kunmap),
        1 => Just(Op::Flush),
        2 => (kind.clone(), 0..PAGES).prop_map(|(k, p)| Op::Map(k, p)),
        2 => (kind, 0..KM_MAX_IDX + 2).prop_map(|(k, i)| Op::Unmap(k, i)),
    ]
}

/// What the model expects of the machine.
#[derive(Default)]
struct Model {
    /// Outstanding `kmap` calls per highmem frame.
    users: HashMap<Pfn, usize>,
    /// The highmem stack mappings, oldest first.
    stack: Vec<(VirtAddr, Pfn, LocalKind)>,
    /// Outstanding `kmap_atomic` calls on lowmem frames.
    lowmem_atomic: usize,
}

fn is_low(p: Pfn) -> bool {
    p.0 < LOWMEM
}

/// Checks the counts after a step that may have flushed: slots other than
/// `except` keep their count, except that a flush turns every 1 into 0.
fn check_others(before: &[u32], after: &[u32], flushed: bool, except: Option<usize>) {
    for (nr, (&b, &a)) in before.iter().zip(after).enumerate() {
        if Some(nr) == except {
            continue;
        }
        let expected = if flushed && b == 1 { 0 } else { b };
        assert_eq!(a, expected, "slot {nr}: count {b} became {a}");
    }
}

fn run(ops: &[Op]) {
    let m = machine(SLOTS, 1);
    let hm = &m.hm;
    let pages = || (0..PAGES).map(Pfn);
    let mut model = Model::default();
    let (fixmap, _) = hm.fixmap_window();
    for &op in ops {
        let before = snapshot(&m, pages());
        let counts_before = counts(hm);
        let flushes_before = hm.pkmap_stats().flushes;
        match op {
            Op::Kmap(i) => {
                let p = Pfn(i);
                let old_addr = hm.page_address(p);
                let result = hm.try_kmap(p).map(|g| g.into_raw());
                if is_low(p) {
                    // Lowmem: exactly `page_address`, no slot.
                    assert_eq!(result, Ok(old_addr.unwrap()));
                    assert_eq!(counts(hm), counts_before);
                } else if let Some(a) = old_addr {
                    // Mapped already: the same address, one more user.
                    assert_eq!(result, Ok(a));
                    let nr = hm.pkmap_nr(a).unwrap();
                    assert_eq!(hm.pkmap_count(nr), Some(counts_before[nr] + 1));
                    check_others(&counts_before, &counts(hm), false, Some(nr));
                    *model.users.entry(p).or_default() += 1;
                } else if counts_before.iter().all(|&c| c >= 2) {
                    assert_eq!(result, Err(HighmemError::NoSlot));
                    assert_eq!(snapshot(&m, pages()), before);
                } else {
                    let a = result.unwrap();
                    let nr = hm.pkmap_nr(a).expect("a pkmap address");
                    let flushed = hm.pkmap_stats().flushes > flushes_before;
                    // A count-1 slot is handed out only through a flush.
                    assert!(counts_before[nr] == 0 || (counts_before[nr] == 1 && flushed));
                    assert_eq!(hm.pkmap_count(nr), Some(2));
                    assert_eq!(hm.page_address(p), Some(a));
                    check_others(&counts_before, &counts(hm), flushed, Some(nr));
                    *model.users.entry(p).or_default() += 1;
                }
            }
            Op::Kunmap(i) => {
                let p = Pfn(i);
                let users = model.users.get(&p).copied().unwrap_or(0);
                let result = hm.kunmap(p);
                if is_low(p) {
                    assert_eq!(result, Ok(()));
                    assert_eq!(snapshot(&m, pages()), before);
                } else if users == 0 {
                    assert_eq!(result, Err(HighmemError::NotMapped(p)));
                    assert_eq!(snapshot(&m, pages()), before);
                } else {
                    assert_eq!(result, Ok(()));
                    let nr = hm.pkmap_nr(hm.page_address(p).unwrap()).unwrap();
                    assert_eq!(hm.pkmap_count(nr), Some(counts_before[nr] - 1));
                    check_others(&counts_before, &counts(hm), false, Some(nr));
                    model.users.insert(p, users - 1);
                }
            }
            Op::Flush => {
                hm.flush_all_zero_pkmaps();
                check_others(&counts_before, &counts(hm), true, None);
                assert!(!counts(hm).contains(&1), "a count of 1 survived the flush");
            }
            Op::Map(kind, i) => {
                let p = Pfn(i);
                let result = match kind {
                    LocalKind::Atomic => hm.kmap_atomic(p).map(|g| g.into_raw()),
                    LocalKind::Local => hm.kmap_local_page(p).map(|g| g.into_raw()),
                };
                if is_low(p) {
                    assert_eq!(result, Ok(hm.page_address(p).unwrap()));
                    if kind == LocalKind::Atomic {
                        model.lowmem_atomic += 1;
                    }
                } else if model.stack.len() == KM_MAX_IDX {
                    assert_eq!(result, Err(HighmemError::StackFull { cpu: 0 }));
                    assert_eq!(snapshot(&m, pages()), before);
                } else {
                    let a = result.unwrap();
                    assert_eq!(a.0, fixmap.0 + model.stack.len() * PAGE_SIZE);
                    model.stack.push((a, p, kind));
                }
            }
            Op::Unmap(kind, k) => {
                let low = hm.page_address(Pfn(0)).unwrap();
                let depth = model.stack.len();
                // An entry of the stack, a lowmem address, or the slot above the top.
                let (addr, entry) = if k < depth {
                    (model.stack[k].0, Some(k))
                } else if k == depth {
                    (low, None)
                } else {
                    (VirtAddr(fixmap.0 + depth * PAGE_SIZE), None)
                };
                let result = match kind {
                    LocalKind::Atomic => hm.kunmap_atomic(addr),
                    LocalKind::Local => hm.kunmap_local(addr),
                };
                let expected = match entry {
                    Some(k) if k + 1 < depth => Err(HighmemError::NotLifo {
                        addr,
                        top: model.stack[depth - 1].0,
                    }),
                    Some(k) if model.stack[k].2 != kind => Err(HighmemError::WrongKind {
                        addr,
                        mapped_by: model.stack[k].2,
                    }),
                    Some(_) => Ok(()),
                    None if addr == low && kind == LocalKind::Local => Ok(()),
                    None if addr == low && model.lowmem_atomic > 0 => Ok(()),
                    None => Err(HighmemError::NotLocalMapped(addr)),
                };
                assert_eq!(result, expected, "releasing {addr:?} as {kind:?}");
                match (result, entry) {
                    (Ok(()), Some(_)) => {
                        model.stack.pop();
                    }
                    (Ok(()), None) if kind == LocalKind::Atomic => model.lowmem_atomic -= 1,
                    (Ok(()), None) => {}
                    (Err(_), _) => assert_eq!(snapshot(&m, pages()), before),
                }
            }
        }
        check_model(&m, &model);
    }
    // Unwind everything: balanced mappings leave nothing behind.
    while let Some((addr, _, kind)) = model.stack.pop() {
        match kind {
            LocalKind::Atomic => hm.kunmap_atomic(addr).unwrap(),
            LocalKind::Local => hm.kunmap_local(addr).unwrap(),
        }
    }
    for _ in 0..model.lowmem_atomic {
        hm.kunmap_atomic(hm.page_address(Pfn(0)).unwrap()).unwrap();
    }
    for (&p, &users) in &model.users {
        for _ in 0..users {
            hm.kunmap(p).unwrap();
        }
    }
    assert_eq!(hm.kmap_local_depth(0), Ok(0));
    assert_eq!(m.cpus.preempt_count(), 0);
    assert_eq!(hm.pkmap_stats().users, 0);
    assert_eq!(hm.pkmap_stats().in_use, 0);
    hm.flush_all_zero_pkmaps();
    assert_eq!(m.mmu.mapped_pages(), 0);
}

fn check_model(m: &common::Machine, model: &Model) {
    let hm = &m.hm;
    hm.check_invariants().unwrap();
    // Σ (count - 1) over the slots in use is the number of outstanding kmaps,
    // and each mapped page's count is its users plus one.
    let outstanding: usize = model.users.values().sum();
    assert_eq!(hm.pkmap_stats().users, outstanding);
    for (&p, &users) in &model.users {
        if users > 0 {
            let nr = hm.pkmap_nr(hm.page_address(p).unwrap()).unwrap();
            assert_eq!(hm.pkmap_count(nr), Some(users as u32 + 1));
        }
    }
    // A page holds at most one slot.
    let mut seen = HashMap::new();
    for p in (LOWMEM..PAGES).map(Pfn) {
        if let Some(a) = hm.page_address(p) {
            assert!(seen.insert(a, p).is_none(), "two pages at {a:?}");
        }
    }
    let depth = model.stack.len();
    assert!(depth <= KM_MAX_IDX);
    assert_eq!(hm.kmap_local_depth(0), Ok(depth));
    assert_eq!(hm.kmap_local_stack(0).unwrap(), model.stack);
    assert_eq!(m.cpus.preempt_count(), depth + model.lowmem_atomic);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_operations_follow_the_model(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops);
    }
}

#[test]
fn guards_dropped_in_any_order_leave_the_stack_empty() {
    let m = machine(SLOTS, 1);
    let guards: Vec<_> = (0..5)
        .map(|i| m.hm.kmap_atomic(Pfn(LOWMEM + i)).unwrap())
        .collect();
    assert_eq!(m.cpus.preempt_count(), 5);
    let addrs: Vec<_> = guards.iter().map(|g| g.addr()).collect();
    // A `Vec` drops its elements oldest first: out of LIFO order.
    let mut guards = guards;
    let newest = guards.pop().unwrap();
    drop(guards);
    // The older four wait for the newest...
    assert_eq!(m.hm.kmap_local_depth(0), Ok(5));
    assert_eq!(m.cpus.preempt_count(), 5);
    m.hm.check_invariants().unwrap();
    // ...but the explicit release still insists on LIFO order.
    assert_eq!(
        m.hm.kunmap_atomic(addrs[0]),
        Err(HighmemError::NotLocalMapped(addrs[0]))
    );
    drop(newest);
    assert_eq!(m.hm.kmap_local_depth(0), Ok(0));
    assert_eq!(m.cpus.preempt_count(), 0);
    assert_eq!(m.mmu.mapped_pages(), 0);
}
