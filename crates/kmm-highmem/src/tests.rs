//! Unit tests of the internals: the page table's hashing and the count
//! overflow that no test can reach through four billion `kmap` calls.

use alloc::sync::Arc;
use alloc::vec::Vec;

use kmm_page::{NoMemory, PAGE_SIZE, Pfn, SoftMmu, VirtAddr};
use kmm_percpu::FixedCpu;

use crate::hash::{PA_HASH_ORDER, PageTable};
use crate::{Highmem, HighmemError};

const BASE: VirtAddr = VirtAddr(0xff80_0000);

/// A machine where every frame is highmem, with `slots` pkmap slots and one CPU.
fn highmem(slots: usize) -> Highmem {
    let fixmap = VirtAddr(BASE.0 + slots * PAGE_SIZE);
    let end = VirtAddr(fixmap.0 + Highmem::fixmap_pages(1) * PAGE_SIZE);
    let mmu = Arc::new(SoftMmu::new(BASE, end).unwrap());
    Highmem::new(
        mmu,
        Arc::new(NoMemory),
        Arc::new(FixedCpu::new(1)),
        BASE,
        slots,
        fixmap,
    )
    .unwrap()
}

#[test]
fn page_table_finds_inserted_pages_and_forgets_removed_ones() {
    let mut t = PageTable::new();
    // Consecutive frames and frames that differ in high bits only.
    let pages: Vec<Pfn> = (0..300).map(|i| Pfn(i * 7919 + (i << 40))).collect();
    for (slot, &p) in pages.iter().enumerate() {
        assert_eq!(t.get(p), None);
        t.insert(p, slot);
    }
    assert_eq!(t.len(), pages.len());
    for (slot, &p) in pages.iter().enumerate() {
        assert_eq!(t.get(p), Some(slot));
    }
    assert_eq!(t.remove(pages[10]), Some(10));
    assert_eq!(t.remove(pages[10]), None);
    assert_eq!(t.get(pages[10]), None);
    assert_eq!(t.get(pages[11]), Some(11));
    assert_eq!(t.len(), pages.len() - 1);
    assert_eq!(t.iter().count(), pages.len() - 1);
}

#[test]
fn page_table_spreads_consecutive_frames_over_the_buckets() {
    let mut t = PageTable::new();
    let buckets = 1usize << PA_HASH_ORDER;
    for i in 0..buckets {
        t.insert(Pfn(0x40000 + i), i);
    }
    let longest = t.longest_bucket();
    assert!(
        longest <= 4,
        "{buckets} consecutive frames, a bucket of {longest}"
    );
}

#[test]
fn a_full_count_is_an_error_and_changes_nothing() {
    let hm = highmem(2);
    let p = Pfn(1 << 20);
    let addr = hm.kmap(p).unwrap().into_raw();
    let nr = hm.pkmap_nr(addr).unwrap();
    {
        // Stand in for `u32::MAX - 2` more kmaps.
        let mut st = hm.pkmap.lock();
        st.count[nr] = u32::MAX;
        st.users = u32::MAX as usize - 1;
    }
    hm.check_invariants().unwrap();
    let before = hm.pkmap_stats();
    assert!(matches!(hm.kmap(p), Err(HighmemError::TooManyUsers(q)) if q == p));
    assert!(matches!(hm.try_kmap(p), Err(HighmemError::TooManyUsers(q)) if q == p));
    assert_eq!(hm.pkmap_count(nr), Some(u32::MAX));
    assert_eq!(hm.pkmap_stats(), before);
    // One kunmap makes room again.
    hm.kunmap(p).unwrap();
    assert_eq!(hm.kmap(p).unwrap().into_raw(), addr);
    hm.check_invariants().unwrap();
}

#[test]
fn check_invariants_notices_a_broken_count() {
    let hm = highmem(2);
    let addr = hm.kmap(Pfn(5)).unwrap().into_raw();
    let nr = hm.pkmap_nr(addr).unwrap();
    hm.pkmap.lock().count[nr] = 3;
    assert!(hm.check_invariants().is_err());
    hm.pkmap.lock().count[nr] = 2;
    hm.check_invariants().unwrap();
    // A slot that claims to be free while it is mapped.
    {
        let mut st = hm.pkmap.lock();
        st.count[nr] = 0;
        st.page[nr] = None;
    }
    assert!(hm.check_invariants().is_err());
}
