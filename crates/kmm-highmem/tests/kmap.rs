//! API tests of the permanent kmaps: `kmap`, `try_kmap`, `kunmap`,
//! `page_address` and `flush_all_zero_pkmaps`, on the software page table.

pub mod common;

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::sync::{Arc, mpsc};

use common::{HIGH, LOWMEM, PKMAP_BASE, TestPhys, counts, machine, snapshot};
use kmm_highmem::{Highmem, HighmemError, KM_MAX_IDX, LAST_PKMAP};
use kmm_page::{Mmu, MmuError, NoMemory, PAGE_SIZE, Pfn, Prot, SoftMmu, VirtAddr};
use kmm_percpu::{CpuContext, FixedCpu};

fn high(i: usize) -> Pfn {
    Pfn(HIGH.0 + i)
}

#[test]
fn lowmem_kmap_is_page_address_without_a_slot() {
    let m = machine(4, 1);
    for pfn in (0..LOWMEM).map(Pfn) {
        let direct = m.hm.page_address(pfn).expect("lowmem has a direct map");
        let g = m.hm.kmap(pfn).unwrap();
        assert_eq!(g.addr(), direct);
        assert_eq!(Some(g.addr()), m.phys.direct_map_addr(pfn));
        assert_eq!(g.as_ptr().map(|p| p.as_ptr().addr()), Some(direct.0));
        let t = m.hm.try_kmap(pfn).unwrap();
        assert_eq!(t.addr(), direct);
        assert_eq!(counts(&m.hm), vec![0; 4]);
        assert_eq!(m.mmu.mapped_pages(), 0);
    }
    // `kunmap` of a lowmem page does nothing, as in the kernel.
    assert_eq!(m.hm.kunmap(Pfn(0)), Ok(()));
    m.hm.check_invariants().unwrap();
}

#[test]
fn highmem_kmap_takes_a_slot_and_page_address_finds_it() {
    let m = machine(4, 1);
    let p = high(0);
    assert_eq!(m.hm.page_address(p), None);
    let g = m.hm.kmap(p).unwrap();
    let nr = m.hm.pkmap_nr(g.addr()).expect("a pkmap address");
    assert_eq!(m.hm.pkmap_addr(nr), Some(g.addr()));
    assert_eq!(m.hm.page_address(p), Some(g.addr()));
    assert_eq!(m.mmu.translate(g.addr()), Some(p));
    // One user: count 2.
    assert_eq!(m.hm.pkmap_count(nr), Some(2));
    // The software page table is numbers, not memory.
    assert_eq!(g.as_ptr(), None);
    m.hm.check_invariants().unwrap();

    // A second kmap of the same page shares the slot.
    let g2 = m.hm.kmap(p).unwrap();
    assert_eq!(g2.addr(), g.addr());
    assert_eq!(m.hm.pkmap_count(nr), Some(3));
    assert_eq!(m.hm.pkmap_stats().users, 2);
    drop(g2);
    drop(g);
    // No users, but mapped until the next flush.
    assert_eq!(m.hm.pkmap_count(nr), Some(1));
    assert_eq!(m.hm.page_address(p), Some(m.hm.pkmap_addr(nr).unwrap()));
    m.hm.check_invariants().unwrap();

    // kmap of a count-1 page reuses its slot without a flush.
    let g3 = m.hm.kmap(p).unwrap();
    assert_eq!(m.hm.pkmap_nr(g3.addr()), Some(nr));
    assert_eq!(m.hm.pkmap_count(nr), Some(2));
    drop(g3);

    m.hm.flush_all_zero_pkmaps();
    assert_eq!(counts(&m.hm), vec![0; 4]);
    assert_eq!(m.hm.page_address(p), None);
    assert_eq!(m.mmu.mapped_pages(), 0);
    m.hm.check_invariants().unwrap();
}

#[test]
fn kunmap_of_an_unmapped_page_is_an_error_and_changes_nothing() {
    let m = machine(4, 1);
    let held = m.hm.kmap(high(1)).unwrap();
    let pages = [high(0), high(1)];
    let before = snapshot(&m, pages);
    assert_eq!(m.hm.kunmap(high(0)), Err(HighmemError::NotMapped(high(0))));
    assert_eq!(snapshot(&m, pages), before);

    // A page whose slot has count 1 has no user left to drop.
    let g = m.hm.kmap(high(0)).unwrap();
    drop(g);
    let before = snapshot(&m, pages);
    assert_eq!(m.hm.kunmap(high(0)), Err(HighmemError::NotMapped(high(0))));
    assert_eq!(snapshot(&m, pages), before);
    drop(held);
    m.hm.check_invariants().unwrap();
}

#[test]
fn into_raw_keeps_the_mapping_until_an_explicit_kunmap() {
    let m = machine(4, 1);
    let addr = m.hm.kmap(high(0)).unwrap().into_raw();
    let nr = m.hm.pkmap_nr(addr).unwrap();
    assert_eq!(m.hm.pkmap_count(nr), Some(2));
    m.hm.kunmap(high(0)).unwrap();
    assert_eq!(m.hm.pkmap_count(nr), Some(1));
    assert_eq!(m.hm.kunmap(high(0)), Err(HighmemError::NotMapped(high(0))));
}

#[test]
fn slots_are_handed_out_cyclically_and_a_count_one_slot_waits_for_the_flush() {
    let m = machine(4, 1);
    // The scan starts after slot 0, as `last_pkmap_nr` starts at 0.
    let a = m.hm.kmap(high(0)).unwrap();
    assert_eq!(m.hm.pkmap_nr(a.addr()), Some(1));
    drop(a);
    assert_eq!(counts(&m.hm), vec![0, 1, 0, 0]);
    let b = m.hm.kmap(high(1)).unwrap();
    let c = m.hm.kmap(high(2)).unwrap();
    assert_eq!(counts(&m.hm), vec![0, 1, 2, 2]);
    assert_eq!(m.hm.pkmap_stats().flushes, 0);
    // The scan wraps to slot 0: that flushes slot 1, and slot 0 is taken.
    let d = m.hm.kmap(high(3)).unwrap();
    assert_eq!(m.hm.pkmap_nr(d.addr()), Some(0));
    assert_eq!(m.hm.pkmap_stats().flushes, 1);
    assert_eq!(counts(&m.hm), vec![2, 0, 2, 2]);
    assert_eq!(m.hm.page_address(high(0)), None);
    // Now slot 1 is free again.
    let e = m.hm.kmap(high(4)).unwrap();
    assert_eq!(m.hm.pkmap_nr(e.addr()), Some(1));
    m.hm.check_invariants().unwrap();
    drop((b, c, d, e));
}

#[test]
fn a_count_one_slot_is_reused_only_through_a_flush() {
    let m = machine(2, 1);
    // Slot 1, then slot 0 (wrapping flushes nothing).
    let a = m.hm.kmap(high(0)).unwrap();
    let b = m.hm.kmap(high(1)).unwrap();
    assert_eq!(counts(&m.hm), vec![2, 2]);
    drop(a);
    assert_eq!(counts(&m.hm), vec![2, 1]);
    let flushes = m.hm.pkmap_stats().flushes;
    // The only candidate has count 1: it is handed out after a flush.
    let c = m.hm.kmap(high(2)).unwrap();
    assert_eq!(m.hm.pkmap_nr(c.addr()), Some(1));
    assert_eq!(m.hm.pkmap_stats().flushes, flushes + 1);
    assert_eq!(m.hm.page_address(high(0)), None);
    assert_eq!(m.mmu.translate(c.addr()), Some(high(2)));
    m.hm.check_invariants().unwrap();
    drop((b, c));
}

#[test]
fn try_kmap_fails_with_no_slot_and_changes_nothing() {
    let m = machine(3, 1);
    let held: Vec<_> = (0..3).map(|i| m.hm.kmap(high(i)).unwrap()).collect();
    let pages = (0..4).map(high);
    let before = snapshot(&m, pages.clone());
    assert!(matches!(m.hm.try_kmap(high(3)), Err(HighmemError::NoSlot)));
    assert_eq!(snapshot(&m, pages), before);
    // A page that already holds a slot does not need a new one.
    let again = m.hm.try_kmap(high(1)).unwrap();
    assert_eq!(again.addr(), held[1].addr());
    // Lowmem pages never need one.
    assert!(m.hm.try_kmap(Pfn(0)).is_ok());
    m.hm.check_invariants().unwrap();
}

#[test]
fn a_refused_mapping_is_an_error_and_changes_nothing() {
    let m = machine(2, 1);
    // The software page table cannot hold this frame number.
    let bad = Pfn(usize::MAX);
    let before = snapshot(&m, [bad]);
    assert!(matches!(
        m.hm.kmap(bad),
        Err(HighmemError::Mmu(MmuError::NoFrame(_)))
    ));
    assert_eq!(snapshot(&m, [bad]), before);

    // The same when the chosen slot still holds an unused page: that page
    // keeps its slot, and no flush is counted.
    let a = m.hm.kmap(high(0)).unwrap();
    let b = m.hm.kmap(high(1)).unwrap();
    drop(a);
    let before = snapshot(&m, [high(0), high(1), bad]);
    assert!(matches!(
        m.hm.try_kmap(bad),
        Err(HighmemError::Mmu(MmuError::NoFrame(_)))
    ));
    assert_eq!(snapshot(&m, [high(0), high(1), bad]), before);
    m.hm.check_invariants().unwrap();
    drop(b);
}

#[test]
fn new_rejects_bad_layouts_and_maps_nothing() {
    let cpus: Arc<dyn CpuContext> = Arc::new(FixedCpu::new(2));
    let phys = Arc::new(TestPhys::new());
    let end = VirtAddr(PKMAP_BASE.0 + 64 * PAGE_SIZE);
    let mmu = Arc::new(SoftMmu::new(PKMAP_BASE, end).unwrap());
    let fixmap = VirtAddr(PKMAP_BASE.0 + 8 * PAGE_SIZE);
    let new = |pkmap: VirtAddr, slots: usize, fixmap: VirtAddr| {
        Highmem::new(
            mmu.clone(),
            phys.clone(),
            cpus.clone(),
            pkmap,
            slots,
            fixmap,
        )
        .map(|_| ())
    };
    assert_eq!(new(PKMAP_BASE, 0, fixmap), Err(HighmemError::NoPkmapSlots));
    let odd = VirtAddr(PKMAP_BASE.0 + 1);
    assert_eq!(new(odd, 4, fixmap), Err(HighmemError::Misaligned(odd)));
    assert_eq!(new(PKMAP_BASE, 4, odd), Err(HighmemError::Misaligned(odd)));
    // 2 CPUs need 32 fixmap pages; 8 + 32 fits in 64, 40 + 32 does not.
    let late = VirtAddr(PKMAP_BASE.0 + 40 * PAGE_SIZE);
    assert_eq!(
        new(PKMAP_BASE, 4, late),
        Err(HighmemError::OutsideWindow {
            start: late,
            pages: 2 * KM_MAX_IDX
        })
    );
    assert_eq!(
        new(PKMAP_BASE, 65, fixmap),
        Err(HighmemError::OutsideWindow {
            start: PKMAP_BASE,
            pages: 65
        })
    );
    let below = VirtAddr(PKMAP_BASE.0 - PAGE_SIZE);
    assert!(matches!(
        new(below, 4, fixmap),
        Err(HighmemError::OutsideWindow { .. })
    ));
    assert_eq!(
        new(PKMAP_BASE, 9, fixmap),
        Err(HighmemError::WindowsOverlap)
    );
    assert_eq!(mmu.mapped_pages(), 0);

    // A window page that is mapped already.
    let busy = VirtAddr(PKMAP_BASE.0 + 3 * PAGE_SIZE);
    mmu.map(busy, Pfn(5), Prot::KERNEL).unwrap();
    assert_eq!(
        new(PKMAP_BASE, 4, fixmap),
        Err(HighmemError::Mmu(MmuError::AlreadyMapped {
            va: busy,
            pfn: Pfn(5)
        }))
    );
    assert_eq!(mmu.mapped_pages(), 1);
    assert_eq!(new(PKMAP_BASE, 3, fixmap), Ok(()));
}

#[test]
fn the_default_window_has_1024_slots() {
    let slots = LAST_PKMAP;
    let fixmap = VirtAddr(PKMAP_BASE.0 + slots * PAGE_SIZE);
    let end = VirtAddr(fixmap.0 + Highmem::fixmap_pages(1) * PAGE_SIZE);
    let mmu = Arc::new(SoftMmu::new(PKMAP_BASE, end).unwrap());
    let hm = Highmem::new(
        mmu,
        Arc::new(NoMemory),
        Arc::new(FixedCpu::new(1)),
        PKMAP_BASE,
        slots,
        fixmap,
    )
    .unwrap();
    assert_eq!(hm.last_pkmap(), 1024);
    assert_eq!(hm.pkmap_window(), (PKMAP_BASE, fixmap));
    assert_eq!(hm.pkmap_count(1024), None);
    // Every slot can be used at once.
    let guards: Vec<_> = (0..slots)
        .map(|i| hm.try_kmap(Pfn(1 << 20 | i)).unwrap())
        .collect();
    assert_eq!(hm.pkmap_stats().in_use, 1024);
    assert!(matches!(
        hm.try_kmap(Pfn(1 << 21)),
        Err(HighmemError::NoSlot)
    ));
    hm.check_invariants().unwrap();
    drop(guards);
    assert_eq!(hm.pkmap_stats().unused, 1024);
    hm.flush_all_zero_pkmaps();
    assert_eq!(hm.pkmap_stats().free, 1024);
}

#[test]
fn kmap_waits_while_every_slot_has_users() {
    let m = machine(2, 1);
    let a = m.hm.kmap(high(0)).unwrap().into_raw();
    let b = m.hm.kmap(high(1)).unwrap().into_raw();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let g = m.hm.kmap(high(2)).unwrap();
            done.store(true, Ordering::SeqCst);
            g.into_raw()
        });
        // Wait until the thread is waiting for a slot.
        while m.hm.pkmap_stats().waiters == 0 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(!done.load(Ordering::SeqCst), "kmap did not wait");
        assert_eq!(m.hm.page_address(high(2)), None);
        m.hm.kunmap(high(0)).unwrap();
        let c = waiter.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
        // The freed slot (count 1) went to the waiter after a flush.
        assert_eq!(c, a);
        assert_eq!(m.hm.page_address(high(0)), None);
        assert_eq!(m.hm.pkmap_stats().waiters, 0);
    });
    assert_eq!(m.hm.pkmap_nr(b), Some(0));
    m.hm.check_invariants().unwrap();
}

/// Who holds each slot in the threaded test: the page and its number of
/// holders, checked and updated under one lock per slot.
type SlotOwners = Vec<std::sync::Mutex<(Option<Pfn>, usize)>>;

#[test]
fn threads_share_few_slots_without_deadlock_or_two_pages_in_a_slot() {
    const SLOTS: usize = 4;
    const THREADS: usize = 8;
    const PAGES: usize = 24;
    const ROUNDS: usize = 400;
    let m = Arc::new(machine(SLOTS, 1));
    let owners: Arc<SlotOwners> = Arc::new(
        (0..SLOTS)
            .map(|_| std::sync::Mutex::new((None, 0)))
            .collect(),
    );
    // Hold every slot with pages the threads do not use, so that they start
    // by waiting.
    let blockers: Vec<_> = (0..SLOTS)
        .map(|i| m.hm.kmap(high(100 + i)).unwrap().into_raw())
        .collect();
    let (tx, rx) = mpsc::channel();
    for t in 0..THREADS {
        let (m, owners, tx) = (m.clone(), owners.clone(), tx.clone());
        std::thread::spawn(move || {
            let mut seed = 0x9e37_79b9_u32.wrapping_mul(t as u32 + 1);
            let mut result = Ok(());
            for _ in 0..ROUNDS {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                // Mostly highmem pages, shared between threads, and some lowmem.
                let pfn = Pfn(seed as usize % (PAGES + LOWMEM));
                let g = match m.hm.kmap(pfn) {
                    Ok(g) => g,
                    Err(e) => {
                        result = Err(format!("kmap({pfn:?}): {e}"));
                        break;
                    }
                };
                if let Some(nr) = m.hm.pkmap_nr(g.addr()) {
                    let mut owner = owners[nr].lock().unwrap();
                    if owner.1 > 0 && owner.0 != Some(pfn) {
                        result = Err(format!("slot {nr} holds {:?} and {pfn:?} at once", owner.0));
                        break;
                    }
                    *owner = (Some(pfn), owner.1 + 1);
                    drop(owner);
                    if m.hm.page_address(pfn) != Some(g.addr()) {
                        result = Err(format!("page_address({pfn:?}) moved while mapped"));
                        break;
                    }
                    std::thread::yield_now();
                    owners[nr].lock().unwrap().1 -= 1;
                } else if Some(g.addr()) != m.phys.direct_map_addr(pfn) {
                    result = Err(format!("lowmem {pfn:?} not at its direct map"));
                    break;
                }
                drop(g);
            }
            tx.send(result).unwrap();
        });
    }
    drop(tx);
    while m.hm.pkmap_stats().waiters == 0 {
        std::thread::yield_now();
    }
    for i in 0..SLOTS {
        m.hm.kunmap(high(100 + i)).unwrap();
    }
    assert_eq!(blockers.len(), SLOTS);
    for _ in 0..THREADS {
        let r = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a thread finished within two minutes (no deadlock)");
        r.unwrap();
    }
    let stats = m.hm.pkmap_stats();
    assert_eq!(stats.users, 0);
    assert_eq!(stats.in_use, 0);
    assert_eq!(stats.waiters, 0);
    assert!(stats.waited > 0);
    assert!(stats.flushes > 0);
    m.hm.check_invariants().unwrap();
}
