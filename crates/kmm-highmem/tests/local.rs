//! API tests of the per-CPU stack mappings: `kmap_atomic`/`kunmap_atomic`
//! and `kmap_local_page`/`kunmap_local`.

pub mod common;

use std::sync::Arc;

use common::{HIGH, LOWMEM, PKMAP_BASE, machine, snapshot};
use kmm_highmem::{Highmem, HighmemError, KM_MAX_IDX, LocalKind};
use kmm_host::HostCpus;
use kmm_page::{Mmu, MmuError, NoMemory, PAGE_SIZE, Pfn, SoftMmu, VirtAddr};

fn high(i: usize) -> Pfn {
    Pfn(HIGH.0 + i)
}

#[test]
fn kmap_atomic_disables_preemption_until_the_guard_drops() {
    let m = machine(4, 2);
    let g = m.hm.kmap_atomic(high(0)).unwrap();
    assert_eq!(m.cpus.preempt_count(), 1);
    // The caller keeps its CPU.
    assert!(m.cpus.set_current(1).is_err());
    assert_eq!(m.mmu.translate(g.addr()), Some(high(0)));
    assert_eq!(m.hm.fixmap_window().0, g.addr());
    // Stack mappings are not pkmap mappings.
    assert_eq!(m.hm.page_address(high(0)), None);
    assert_eq!(m.hm.kmap_local_depth(0), Ok(1));
    m.hm.check_invariants().unwrap();
    drop(g);
    assert_eq!(m.cpus.preempt_count(), 0);
    assert_eq!(m.hm.kmap_local_depth(0), Ok(0));
    assert_eq!(m.mmu.mapped_pages(), 0);
    m.cpus.set_current(1).unwrap();
}

#[test]
fn each_cpu_has_its_own_slots() {
    let m = machine(4, 2);
    let a = m.hm.kmap_atomic(high(0)).unwrap().into_raw();
    m.hm.kunmap_atomic(a).unwrap();
    m.cpus.set_current(1).unwrap();
    let b = m.hm.kmap_atomic(high(0)).unwrap();
    assert_eq!(b.addr().0, a.0 + KM_MAX_IDX * PAGE_SIZE);
    assert_eq!(m.hm.kmap_local_depth(1), Ok(1));
    assert_eq!(m.hm.kmap_local_depth(0), Ok(0));
    drop(b);
}

#[test]
fn sixteen_nest_and_the_seventeenth_is_refused() {
    let m = machine(4, 1);
    let mut addrs = Vec::new();
    for i in 0..KM_MAX_IDX {
        let g = m.hm.kmap_atomic(high(i)).unwrap();
        assert_eq!(m.mmu.translate(g.addr()), Some(high(i)));
        addrs.push(g.into_raw());
    }
    assert_eq!(m.hm.kmap_local_depth(0), Ok(KM_MAX_IDX));
    let pages = (0..=KM_MAX_IDX).map(high);
    let before = snapshot(&m, pages.clone());
    assert!(matches!(
        m.hm.kmap_atomic(high(KM_MAX_IDX)),
        Err(HighmemError::StackFull { cpu: 0 })
    ));
    assert!(matches!(
        m.hm.kmap_local_page(high(KM_MAX_IDX)),
        Err(HighmemError::StackFull { cpu: 0 })
    ));
    assert_eq!(snapshot(&m, pages), before);
    assert_eq!(m.cpus.preempt_count(), KM_MAX_IDX);
    // Lowmem pages take no slot, so they still map.
    let low = m.hm.kmap_atomic(Pfn(1)).unwrap();
    assert_eq!(Some(low.addr()), m.hm.page_address(Pfn(1)));
    drop(low);
    m.hm.check_invariants().unwrap();
    for addr in addrs.into_iter().rev() {
        m.hm.kunmap_atomic(addr).unwrap();
    }
    // Balanced: back to index 0 with preemption enabled.
    assert_eq!(m.hm.kmap_local_depth(0), Ok(0));
    assert_eq!(m.cpus.preempt_count(), 0);
    assert_eq!(m.mmu.mapped_pages(), 0);
}

#[test]
fn kunmap_atomic_out_of_lifo_order_is_an_error_and_changes_nothing() {
    let m = machine(4, 1);
    let first = m.hm.kmap_atomic(high(0)).unwrap().into_raw();
    let second = m.hm.kmap_atomic(high(1)).unwrap().into_raw();
    let before = snapshot(&m, [high(0), high(1)]);
    assert_eq!(
        m.hm.kunmap_atomic(first),
        Err(HighmemError::NotLifo {
            addr: first,
            top: second
        })
    );
    assert_eq!(snapshot(&m, [high(0), high(1)]), before);
    // An address inside the page counts as the page.
    m.hm.kunmap_atomic(VirtAddr(second.0 + 100)).unwrap();
    m.hm.kunmap_atomic(first).unwrap();
    assert_eq!(m.cpus.preempt_count(), 0);
}

#[test]
fn releasing_what_is_not_mapped_is_an_error_and_changes_nothing() {
    let m = machine(4, 1);
    let (fix_start, _) = m.hm.fixmap_window();
    let before = snapshot(&m, []);
    // Empty stack.
    assert_eq!(
        m.hm.kunmap_atomic(fix_start),
        Err(HighmemError::NotLocalMapped(fix_start))
    );
    // Neither fixmap nor direct map.
    let stray = VirtAddr(0x1000);
    assert_eq!(
        m.hm.kunmap_local(stray),
        Err(HighmemError::NotLocalMapped(stray))
    );
    // A pkmap address is not a stack mapping either.
    assert_eq!(
        m.hm.kunmap_atomic(PKMAP_BASE),
        Err(HighmemError::NotLocalMapped(PKMAP_BASE))
    );
    // A lowmem address without an outstanding `kmap_atomic`.
    let low = m.hm.page_address(Pfn(0)).unwrap();
    assert_eq!(
        m.hm.kunmap_atomic(low),
        Err(HighmemError::NotLocalMapped(low))
    );
    assert_eq!(snapshot(&m, []), before);

    // A fixmap slot above the top of the stack.
    let g = m.hm.kmap_atomic(high(0)).unwrap();
    let above = VirtAddr(g.addr().0 + PAGE_SIZE);
    let before = snapshot(&m, [high(0)]);
    assert_eq!(
        m.hm.kunmap_atomic(above),
        Err(HighmemError::NotLocalMapped(above))
    );
    assert_eq!(snapshot(&m, [high(0)]), before);
    drop(g);
}

#[test]
fn atomic_and_local_mappings_are_released_by_their_own_counterpart() {
    let m = machine(4, 1);
    let a = m.hm.kmap_atomic(high(0)).unwrap().into_raw();
    let l = m.hm.kmap_local_page(high(1)).unwrap().into_raw();
    let before = snapshot(&m, []);
    assert_eq!(
        m.hm.kunmap_atomic(l),
        Err(HighmemError::WrongKind {
            addr: l,
            mapped_by: LocalKind::Local
        })
    );
    assert_eq!(snapshot(&m, []), before);
    m.hm.kunmap_local(l).unwrap();
    assert_eq!(
        m.hm.kunmap_local(a),
        Err(HighmemError::WrongKind {
            addr: a,
            mapped_by: LocalKind::Atomic
        })
    );
    m.hm.kunmap_atomic(a).unwrap();
    assert_eq!(m.cpus.preempt_count(), 0);
    assert_eq!(m.hm.kmap_local_depth(0), Ok(0));
}

#[test]
fn lowmem_local_mappings_are_page_address_without_a_slot() {
    let m = machine(4, 1);
    for pfn in (0..LOWMEM).map(Pfn) {
        let direct = m.hm.page_address(pfn).unwrap();
        let l = m.hm.kmap_local_page(pfn).unwrap();
        assert_eq!(l.addr(), direct);
        // No slot and no pinning for lowmem.
        assert_eq!(m.cpus.preempt_count(), 0);
        let a = m.hm.kmap_atomic(pfn).unwrap();
        assert_eq!(a.addr(), direct);
        assert_eq!(a.as_ptr().map(|p| p.as_ptr().addr()), Some(direct.0));
        // `kmap_atomic` disables preemption even for lowmem.
        assert_eq!(m.cpus.preempt_count(), 1);
        assert_eq!(m.hm.kmap_local_depth(0), Ok(0));
        drop(a);
        drop(l);
        assert_eq!(m.cpus.preempt_count(), 0);
    }
    assert_eq!(m.mmu.mapped_pages(), 0);
}

#[test]
fn kmap_local_of_highmem_pins_the_cpu() {
    let m = machine(4, 2);
    let l = m.hm.kmap_local_page(high(3)).unwrap();
    assert_eq!(m.cpus.preempt_count(), 1);
    assert!(m.cpus.set_current(1).is_err());
    assert_eq!(m.mmu.translate(l.addr()), Some(high(3)));
    drop(l);
    assert_eq!(m.cpus.preempt_count(), 0);
}

#[test]
fn a_refused_stack_mapping_changes_nothing() {
    let m = machine(4, 1);
    let bad = Pfn(usize::MAX);
    let before = snapshot(&m, []);
    assert!(matches!(
        m.hm.kmap_atomic(bad),
        Err(HighmemError::Mmu(MmuError::NoFrame(_)))
    ));
    assert!(matches!(
        m.hm.kmap_local_page(bad),
        Err(HighmemError::Mmu(MmuError::NoFrame(_)))
    ));
    assert_eq!(snapshot(&m, []), before);
}

/// Threads bound to their own CPUs of a `HostCpus` nest stack mappings at
/// the same time; each CPU's stack stays its own.
#[test]
fn threads_on_their_own_cpus_nest_independently() {
    const CPUS: usize = 4;
    let cpus = Arc::new(HostCpus::new(CPUS));
    let slots = 8;
    let fixmap = VirtAddr(PKMAP_BASE.0 + slots * PAGE_SIZE);
    let end = VirtAddr(fixmap.0 + Highmem::fixmap_pages(CPUS) * PAGE_SIZE);
    let mmu = Arc::new(SoftMmu::new(PKMAP_BASE, end).unwrap());
    let hm = Highmem::new(
        mmu.clone(),
        Arc::new(NoMemory),
        cpus.clone(),
        PKMAP_BASE,
        slots,
        fixmap,
    )
    .unwrap();
    std::thread::scope(|s| {
        for cpu in 0..CPUS {
            let (hm, cpus, mmu) = (&hm, &cpus, &mmu);
            s.spawn(move || {
                let _bound = cpus.bind(cpu).unwrap();
                for round in 0..200 {
                    let depth = 1 + (round + cpu) % KM_MAX_IDX;
                    let guards: Vec<_> = (0..depth)
                        .map(|i| hm.kmap_atomic(Pfn(1000 * cpu + i)).unwrap())
                        .collect();
                    assert_eq!(hm.kmap_local_depth(cpu), Ok(depth));
                    assert_eq!(cpus.preempt_count(), depth);
                    for (i, g) in guards.iter().enumerate() {
                        let slot = (g.addr().0 - fixmap.0) / PAGE_SIZE;
                        assert_eq!(slot, cpu * KM_MAX_IDX + i);
                        assert_eq!(mmu.translate(g.addr()), Some(Pfn(1000 * cpu + i)));
                    }
                    // Drop newest first.
                    for g in guards.into_iter().rev() {
                        drop(g);
                    }
                    assert_eq!(cpus.preempt_count(), 0);
                }
            });
        }
    });
    for cpu in 0..CPUS {
        assert_eq!(hm.kmap_local_depth(cpu), Ok(0));
    }
    assert_eq!(mmu.mapped_pages(), 0);
    hm.check_invariants().unwrap();
}
