//! The facade over real host memory: pages handed out are real memory, and
//! `get_zeroed_page` really zeroes.

#![cfg(feature = "std")]

use std::sync::Arc;

use kmm::{
    Backing, GFP_KERNEL, MachineConfig, MachineLayout, MemoryManager, MemorySpec, PAGE_SIZE, Pfn,
};
use kmm_host::HostMemory;

fn machine() -> (Arc<HostMemory>, MemoryManager) {
    let layout = MachineLayout::x86_64(32 << 20);
    let host = Arc::new(HostMemory::new(&layout.present_ranges(), layout.lowmem_end()).unwrap());
    let mm = MemoryManager::boot(MachineConfig {
        memory: MemorySpec::Size(32 << 20),
        backing: Backing::Custom(host.clone()),
        ..MachineConfig::default()
    })
    .unwrap();
    (host, mm)
}

/// A zoned page allocator (no per-CPU lists, one CPU) over host memory laid
/// out as `layout`.
fn zoned_on_host(
    layout: MachineLayout,
) -> (
    Arc<HostMemory>,
    kmm_zone::ZonedAllocator<kmm_buddy::EagerBuddy>,
) {
    let host = Arc::new(HostMemory::new(&layout.present_ranges(), layout.lowmem_end()).unwrap());
    let cfg = kmm_zone::ZonedConfig {
        layout,
        pcp: false,
        min_free_kbytes: None,
    };
    let za =
        kmm_zone::ZonedAllocator::new(cfg, Arc::new(kmm_percpu::FixedCpu::new(1)), host.clone())
            .unwrap();
    (host, za)
}

fn read(host: &HostMemory, pfn: Pfn) -> Vec<u8> {
    let mut bytes = vec![0xffu8; PAGE_SIZE];
    // SAFETY: the test owns the frame (allocated to it and not freed), and no
    // reference to its bytes exists while pread fills `bytes`.
    unsafe { host.read_frame(pfn, 0, &mut bytes) }.unwrap();
    bytes
}

#[test]
fn get_zeroed_page_really_zeroes_a_dirty_page() {
    let (host, mm) = machine();
    let pfn = mm.alloc_pages(GFP_KERNEL, 0).unwrap();
    // SAFETY: the frame was just allocated to this test; no reference to its
    // bytes exists.
    unsafe { host.write_frame(pfn, 0, &[0xa5; PAGE_SIZE]) }.unwrap();
    assert!(read(&host, pfn).iter().all(|&b| b == 0xa5));
    mm.free_pages(pfn, 0).unwrap();
    let z = mm.get_zeroed_page(GFP_KERNEL).unwrap();
    assert_eq!(z, pfn, "the per-CPU list hands back the page just freed");
    assert!(read(&host, z).iter().all(|&b| b == 0));
}

#[test]
fn the_direct_map_is_the_memory_behind_the_frames() {
    let (host, mm) = machine();
    let addr = mm.pages().get_free_pages(GFP_KERNEL, 1).unwrap();
    let pfn = mm
        .pages()
        .phys()
        .virt_to_pfn(addr.as_ptr() as usize)
        .unwrap();
    // SAFETY: the two pages were allocated to this test, and the direct map
    // makes them valid for 2 * PAGE_SIZE bytes.
    let bytes = unsafe { core::slice::from_raw_parts_mut(addr.as_ptr(), 2 * PAGE_SIZE) };
    bytes[..PAGE_SIZE].fill(1);
    bytes[PAGE_SIZE..].fill(2);
    assert!(read(&host, pfn).iter().all(|&b| b == 1));
    assert!(read(&host, Pfn(pfn.0 + 1)).iter().all(|&b| b == 2));
    mm.pages().free_pages_addr(addr, 1).unwrap();
}

#[test]
fn populate_host_memory_makes_a_host_machine_resident() {
    let mm: MemoryManager = MemoryManager::boot(MachineConfig {
        memory: MemorySpec::Size(32 << 20),
        backing: Backing::Host,
        ..MachineConfig::default()
    })
    .unwrap();
    let p = mm.kmalloc(100, GFP_KERNEL).unwrap();
    // SAFETY: kmalloc handed out 100 bytes (128 usable) to this test.
    unsafe { p.as_ptr().write_bytes(0x5a, 100) };
    assert!(mm.populate_host_memory().unwrap());
    // SAFETY: as above; populating changes no byte.
    let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), 100) };
    assert!(bytes.iter().all(|&b| b == 0x5a));
    mm.kfree(Some(p)).unwrap();

    // Memory the facade did not make itself is left to its owner.
    let (_host, custom) = machine();
    assert!(!custom.populate_host_memory().unwrap());
}

#[test]
fn virt_to_page_agrees_with_the_memory_at_every_page_of_the_direct_map() {
    use kmm_page::{PageAllocator, PfnRange, PhysMemory};
    use kmm_zone::Arch;

    // A hole inside ZONE_DMA, then DMA, Normal and HighMem: three lowmem
    // ranges (the zone allocator's fast path knows only the largest) and
    // frames past the direct map.
    let layout = MachineLayout::from_ranges(
        Arch::X86_32,
        &[PfnRange::new(0, 1000), PfnRange::new(2000, 240_000)],
    );
    let (host, za) = zoned_on_host(layout);
    // What `virt_to_page` means: the memory's `virt_to_pfn`, then the frame.
    let expected = |addr: usize| {
        let pfn = host.virt_to_pfn(addr)?;
        Some((pfn, za.pfn_to_page(pfn)? as *const _))
    };
    let got = |addr: usize| {
        za.virt_to_page(addr)
            .map(|(pfn, frame)| (pfn, frame as *const _))
    };
    // The quick answer, where there is one, is the same.
    let quick = |addr: usize| {
        za.virt_to_page_quick(addr)
            .map(|(pfn, frame)| (pfn, frame as *const _))
    };
    let base = host.linear_map_base().unwrap();
    let end = host.linear_map_end().unwrap();
    let mut found = 0;
    let mut quickly = 0;
    for page in 0..(end - base) / PAGE_SIZE + 6 {
        for offset in [0, 1, PAGE_SIZE - 1] {
            let addr = (base + page * PAGE_SIZE + offset).wrapping_sub(3 * PAGE_SIZE);
            let want = expected(addr);
            found += usize::from(want.is_some());
            assert_eq!(got(addr), want, "address {addr:#x}");
            if let Some(answer) = quick(addr) {
                quickly += 1;
                assert_eq!(Some(answer), want, "address {addr:#x}");
            }
        }
    }
    // Every lowmem frame, each at three offsets, and none of the hole.
    assert_eq!(found, 3 * (1000 + (kmm_zone::MAX_LOWMEM_PFN_X86_32 - 2000)));
    // The quick range is ZONE_NORMAL's lowmem, the largest range that is a
    // whole zone map (from 16 MiB, frame 4096).
    assert_eq!(quickly, 3 * (kmm_zone::MAX_LOWMEM_PFN_X86_32 - 4096));
    for addr in [0, 1, base - 1, end, usize::MAX] {
        assert_eq!(got(addr), None, "address {addr:#x}");
        assert_eq!(quick(addr), None, "address {addr:#x}");
    }
}

#[test]
fn the_quick_lookup_covers_the_higher_of_two_zones_as_large() {
    use kmm_gfp::ZoneType;
    use kmm_page::{PageAllocator, PhysMemory};

    // 32 MiB on x86-64: ZONE_DMA and ZONE_DMA32 hold 16 MiB each, and
    // `GFP_KERNEL` pages (every kmalloc slab) come from ZONE_DMA32, so that
    // is the zone `kfree`'s quick lookup must cover.
    let layout = MachineLayout::x86_64(32 << 20);
    let (host, za) = zoned_on_host(layout);
    let pfn = za.alloc_pages(GFP_KERNEL, 0).unwrap();
    assert_eq!(za.zone_of(pfn), Some(ZoneType::Dma32));
    let addr = host.direct_map(pfn).unwrap().as_ptr().addr();
    let quick = za.virt_to_page_quick(addr).map(|(p, _)| p);
    assert_eq!(quick, Some(pfn));
    za.free_pages(pfn, 0).unwrap();
}
