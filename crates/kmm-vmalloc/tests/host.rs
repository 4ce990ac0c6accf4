//! vmalloc on host memory: bytes written through a vmalloc address land in
//! the scattered frames, as seen through their direct map, and a vmap'ed
//! stack's guard page is not mapped at all.

#![cfg(target_os = "linux")]

use std::sync::Arc;

use kmm_buddy::EagerBuddy;
use kmm_gfp::GFP_KERNEL;
use kmm_host::{HostMemory, HostMmu};
use kmm_page::{PAGE_SIZE, PageAllocator, Pfn, PfnRange, PhysMemory, VirtAddr};
use kmm_percpu::FixedCpu;
use kmm_vmalloc::VmallocSpace;
use kmm_vmalloc::stack::{StackError, ThreadSize};
use kmm_zone::{MachineLayout, ZonedAllocator, ZonedConfig};

/// A 256-frame machine on host memory, and a vmalloc space over a 64-page
/// host window.
fn host_machine() -> (
    Arc<ZonedAllocator<EagerBuddy>>,
    Arc<HostMemory>,
    VmallocSpace,
) {
    let memory = Arc::new(HostMemory::new(&[PfnRange::new(0, 256)], Pfn(256)).unwrap());
    let cfg = ZonedConfig {
        layout: MachineLayout::toy(256, None),
        pcp: false,
        min_free_kbytes: Some(0),
    };
    let zoned = Arc::new(
        ZonedAllocator::<EagerBuddy>::new(cfg, Arc::new(FixedCpu::new(1)), memory.clone()).unwrap(),
    );
    let mmu = Arc::new(HostMmu::with_window_size(memory.clone(), 64 * PAGE_SIZE).unwrap());
    let pages: Arc<dyn PageAllocator> = zoned.clone();
    let vm = VmallocSpace::with_window(pages, mmu, 1).unwrap();
    (zoned, memory, vm)
}

#[test]
fn write_through_vmalloc_read_through_the_direct_map() {
    let (zoned, memory, vm) = host_machine();
    // Dirty some frames and give them back, so that vzalloc must zero.
    let dirty: Vec<Pfn> = (0..8)
        .map(|_| zoned.alloc_pages(GFP_KERNEL, 0).unwrap())
        .collect();
    for &pfn in &dirty {
        let p = memory.direct_map(pfn).unwrap();
        // SAFETY: 1. the direct map is valid for `PAGE_SIZE` bytes of the
        // frame; 2. the frame is allocated to this test, nobody else uses it.
        unsafe { p.as_ptr().write_bytes(0xaa, PAGE_SIZE) };
        zoned.free_pages(pfn, 0).unwrap();
    }

    let n = 5;
    let a = vm.vzalloc(n * PAGE_SIZE, GFP_KERNEL, "host_test").unwrap();
    let p = vm.as_ptr(a).unwrap();
    assert_eq!(vm.as_ptr(VirtAddr(a.0 + n * PAGE_SIZE)), None, "guard page");
    // SAFETY: 1. the area's `n` pages are mapped contiguously from `a`, and
    // `as_ptr` points into the host window that maps them; 2. the area's
    // frames belong to this test until `vfree` below.
    let bytes = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), n * PAGE_SIZE) };
    assert!(bytes.iter().all(|&b| b == 0), "vzalloc zeroes");
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }

    let frames = vm.find_vm_area(a).unwrap().pages;
    assert_eq!(frames.len(), n);
    assert!(
        frames.iter().any(|f| dirty.contains(f)),
        "the zero check saw a dirtied frame"
    );
    for (k, &pfn) in frames.iter().enumerate() {
        assert_eq!(vm.vmalloc_to_page(VirtAddr(a.0 + k * PAGE_SIZE)), Some(pfn));
        let d = memory.direct_map(pfn).unwrap();
        // SAFETY: 1. the direct map is valid for `PAGE_SIZE` bytes of the
        // frame; 2. the frame belongs to this test and no `&mut` to its
        // bytes is used while this shared slice lives.
        let page = unsafe { core::slice::from_raw_parts(d.as_ptr(), PAGE_SIZE) };
        for (i, &b) in page.iter().enumerate() {
            assert_eq!(b, ((k * PAGE_SIZE + i) % 251) as u8);
        }
    }
    vm.vfree(a).unwrap();
    assert_eq!(vm.as_ptr(a), None);
    assert_eq!(vm.check_invariants(), Ok(()));
}

#[test]
fn vmap_stack_guard_page_is_not_mapped_on_the_host() {
    let (_zoned, _memory, vm) = host_machine();
    let s = vm.vmap_stack(ThreadSize::X86_64, GFP_KERNEL).unwrap();
    assert_eq!(vm.mmu().translate(s.guard()), None);
    assert_eq!(vm.as_ptr(s.guard()), None);
    assert_eq!(vm.as_ptr(VirtAddr(s.bottom().0 - 1)), None);
    assert_eq!(vm.as_ptr(s.top()), None, "the guard above");
    let bottom = vm.as_ptr(s.bottom()).unwrap();
    // SAFETY: 1. the stack's 16 KiB from `bottom` are mapped contiguously in
    // the host window; 2. the stack's frames belong to this test.
    unsafe {
        bottom
            .as_ptr()
            .write_bytes(0x5a, ThreadSize::X86_64.bytes())
    };
    assert_eq!(
        s.write_at(-1, 1),
        Err(StackError::Overflow {
            va: VirtAddr(s.bottom().0 - 1)
        })
    );
    vm.free_vmap_stack(s).unwrap();
    assert_eq!(vm.check_invariants(), Ok(()));
}
