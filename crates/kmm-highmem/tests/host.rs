//! Highmem on host memory: a kmapped highmem frame is real memory, and what
//! is written through the mapping is the frame's content.

use std::sync::Arc;

use kmm_highmem::{Highmem, HighmemError};
use kmm_host::{HostCpus, HostMemory, HostMmu};
use kmm_page::{Mmu, MmuError, PAGE_SIZE, Pfn, PfnRange, VirtAddr};

/// Frames `[0, 16)` are lowmem, `[16, 64)` highmem.
const LOWMEM_END: Pfn = Pfn(16);
const END: Pfn = Pfn(64);
const SLOTS: usize = 8;
const CPUS: usize = 2;

struct HostMachine {
    hm: Highmem,
    memory: Arc<HostMemory>,
    mmu: Arc<HostMmu>,
}

fn host_machine() -> HostMachine {
    let memory = Arc::new(
        HostMemory::new(
            &[PfnRange {
                start: Pfn(0),
                end: END,
            }],
            LOWMEM_END,
        )
        .unwrap(),
    );
    let pages = SLOTS + Highmem::fixmap_pages(CPUS);
    let mmu = Arc::new(HostMmu::with_window_size(memory.clone(), pages * PAGE_SIZE).unwrap());
    let (start, _) = mmu.window();
    let hm = Highmem::new(
        mmu.clone(),
        memory.clone(),
        Arc::new(HostCpus::new(CPUS)),
        start,
        SLOTS,
        VirtAddr(start.0 + SLOTS * PAGE_SIZE),
    )
    .unwrap();
    HostMachine { hm, memory, mmu }
}

/// Writes `data` at `offset` through `ptr` and reads it back from the memfd.
///
/// The caller owns the frame and keeps its mapping alive during the call.
fn write_and_read_back(memory: &HostMemory, ptr: core::ptr::NonNull<u8>, pfn: Pfn, data: &[u8]) {
    let offset = 123;
    assert!(offset + data.len() <= PAGE_SIZE);
    // SAFETY: `ptr` is the first byte of a mapping of `pfn` that the caller's
    // guard keeps alive, so the `data.len()` bytes at `offset` lie inside the
    // page; the test owns the frame and nothing else touches it.
    unsafe {
        ptr.as_ptr()
            .add(offset)
            .copy_from_nonoverlapping(data.as_ptr(), data.len());
    }
    let mut back = vec![0; data.len()];
    // SAFETY: nobody writes the frame during the read: this thread is the only
    // user of the frame and its write above is complete.
    unsafe { memory.read_frame(pfn, offset, &mut back) }.unwrap();
    assert_eq!(back, data);
}

#[test]
fn writing_through_a_kmap_of_highmem_writes_the_frame() {
    let m = host_machine();
    let pfn = Pfn(40);
    assert_eq!(m.hm.page_address(pfn), None);
    let g = m.hm.kmap(pfn).unwrap();
    let ptr = g.as_ptr().expect("the host MMU maps real memory");
    assert_eq!(ptr.as_ptr().addr(), g.addr().0);
    write_and_read_back(&m.memory, ptr, pfn, b"written through kmap");
    // A second kmap shares the slot and sees the same bytes.
    let g2 = m.hm.kmap(pfn).unwrap();
    assert_eq!(g2.addr(), g.addr());
    drop((g, g2));
    m.hm.check_invariants().unwrap();
}

#[test]
fn writing_through_kmap_atomic_and_kmap_local_writes_the_frame() {
    let m = host_machine();
    let a = m.hm.kmap_atomic(Pfn(20)).unwrap();
    let l = m.hm.kmap_local_page(Pfn(21)).unwrap();
    write_and_read_back(&m.memory, a.as_ptr().unwrap(), Pfn(20), b"atomic");
    write_and_read_back(&m.memory, l.as_ptr().unwrap(), Pfn(21), b"local");
    drop(l);
    drop(a);
    assert_eq!(m.mmu.mapped_pages(), 0);
    m.hm.check_invariants().unwrap();
}

#[test]
fn lowmem_kmap_on_the_host_is_the_direct_map() {
    let m = host_machine();
    let pfn = Pfn(3);
    let g = m.hm.kmap(pfn).unwrap();
    assert_eq!(Some(g.addr()), m.hm.page_address(pfn));
    let ptr = g.as_ptr().unwrap();
    assert_eq!(ptr.as_ptr().addr(), g.addr().0);
    write_and_read_back(&m.memory, ptr, pfn, b"lowmem");
    assert_eq!(m.mmu.mapped_pages(), 0);
}

#[test]
fn a_frame_without_memory_is_refused_and_changes_nothing() {
    let m = host_machine();
    let missing = Pfn(END.0 + 10);
    assert!(matches!(
        m.hm.kmap(missing),
        Err(HighmemError::Mmu(MmuError::NoFrame(_)))
    ));
    assert_eq!(m.hm.page_address(missing), None);
    assert_eq!(m.hm.pkmap_stats().free, SLOTS);
    assert_eq!(m.mmu.mapped_pages(), 0);
    m.hm.check_invariants().unwrap();
}
