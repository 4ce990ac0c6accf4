//! API tests of `VmallocSpace`: area layout and guard pages, frames given
//! back, lazy purge, errors with unchanged state, `/proc` output, highmem.

pub mod common;

use common::{Machine, VMALLOC_START, machine, machine_with, va, zoned};
use kmm_gfp::{__GFP_HIGHMEM, GFP_DMA, GFP_KERNEL, Gfp, ZoneType};
use kmm_page::{MmuError, PAGE_SIZE, PageError, Pfn, PfnRange, Prot, VirtAddr};
use kmm_vmalloc::{AreaKind, VmallocError, VmallocMeminfo, lazy_max_pages};
use kmm_zone::MachineLayout;

/// Everything observable about a machine, to show that an error changed nothing.
#[derive(Debug, PartialEq)]
struct State {
    info: String,
    free_ranges: Vec<(VirtAddr, VirtAddr)>,
    free_pages: usize,
    mapped: usize,
    meminfo: VmallocMeminfo,
    lazy: usize,
}

fn state(m: &Machine) -> State {
    State {
        info: m.vm.vmallocinfo(),
        free_ranges: m.vm.free_ranges(),
        free_pages: m.free_pages(),
        mapped: m.mmu.mapped_pages(),
        meminfo: m.vm.meminfo(),
        lazy: m.vm.nr_lazy_pages(),
    }
}

/// Runs `op`, expects `err`, and checks that nothing changed.
fn check_err<T: core::fmt::Debug>(
    m: &Machine,
    op: impl FnOnce() -> Result<T, VmallocError>,
    err: VmallocError,
) {
    let before = state(m);
    assert_eq!(op().unwrap_err(), err);
    assert_eq!(state(m), before);
    assert_eq!(m.vm.check_invariants(), Ok(()));
}

/// Checks one vmalloc'ed area of `n` pages at `a`: every page maps the
/// frame the area lists, the guard page after it maps nothing.
fn check_area(m: &Machine, a: VirtAddr, n: usize) {
    let area = m.vm.find_vm_area(a).unwrap();
    assert_eq!((area.start, area.addr), (a, a));
    assert_eq!(area.size(), (n + 1) * PAGE_SIZE);
    assert_eq!(area.pages.len(), n);
    for (i, &pfn) in area.pages.iter().enumerate() {
        assert_eq!(m.vm.vmalloc_to_page(va(a, i)), Some(pfn));
        assert_eq!(m.vm.vmalloc_to_page(VirtAddr(va(a, i).0 + 123)), Some(pfn));
        assert!(m.vm.is_vmalloc_addr(va(a, i)));
    }
    assert_eq!(m.vm.vmalloc_to_page(va(a, n)), None, "guard page");
    assert_eq!(m.vm.vmalloc_to_page(VirtAddr(area.end.0 - PAGE_SIZE)), None);
}

#[test]
fn vmalloc_1_16_256_pages_with_guards() {
    let m = machine(1024, 2048, 1);
    let free = m.free_pages();
    let start = VirtAddr(VMALLOC_START);
    let a1 = m.vm.vmalloc(PAGE_SIZE, GFP_KERNEL, "one").unwrap();
    let a16 =
        m.vm.vmalloc(16 * PAGE_SIZE - 1, GFP_KERNEL, "sixteen")
            .unwrap();
    let a256 =
        m.vm.vmalloc(255 * PAGE_SIZE + 1, GFP_KERNEL, "many")
            .unwrap();
    // First fit from the lowest address, each area followed by its guard.
    assert_eq!((a1, a16, a256), (start, va(start, 2), va(start, 19)));
    for (a, n) in [(a1, 1), (a16, 16), (a256, 256)] {
        check_area(&m, a, n);
    }
    assert_eq!(m.free_pages(), free - 273);
    assert_eq!(m.mmu.mapped_pages(), 273);
    assert_eq!(m.vm.nr_vmalloc_pages(), 273);

    // No two areas overlap, and an unmapped page follows each.
    let areas = m.vm.areas();
    for w in areas.windows(2) {
        assert!(w[0].end <= w[1].start);
    }
    for a in [a1, a16, a256] {
        m.vm.vfree(a).unwrap();
    }
    assert_eq!(m.free_pages(), free);
    assert_eq!(m.mmu.mapped_pages(), 0);
    assert_eq!(m.vm.nr_vmalloc_pages(), 0);
    assert_eq!(m.vm.check_invariants(), Ok(()));
}

#[test]
fn pages_need_not_be_contiguous() {
    let m = machine(64, 64, 1);
    // Take every frame, then give back every other one.
    let taken: Vec<Pfn> = (0..64)
        .map(|_| m.pages.alloc_pages(GFP_KERNEL, 0).unwrap())
        .collect();
    for pfn in taken.iter().step_by(2) {
        m.pages.free_pages(*pfn, 0).unwrap();
    }
    let a =
        m.vm.vmalloc(8 * PAGE_SIZE, GFP_KERNEL, "scattered")
            .unwrap();
    let frames = m.vm.find_vm_area(a).unwrap().pages;
    assert!(frames.windows(2).all(|w| w[1].0.abs_diff(w[0].0) > 1));
    check_area(&m, a, 8);
    assert_eq!(m.vm.check_invariants(), Ok(()));
}

#[test]
fn lazy_purge_reuses_after_the_threshold() {
    let m = machine(256, 256, 1);
    assert_eq!(m.vm.lazy_max_pages(), lazy_max_pages(1));
    assert_eq!(lazy_max_pages(1), 8192);
    assert_eq!(lazy_max_pages(4), 3 * 8192);
    assert_eq!(lazy_max_pages(8), 4 * 8192);
    m.vm.set_lazy_max_pages(10);
    let start = VirtAddr(VMALLOC_START);
    let free = m.free_pages();

    // Four areas of two pages and a guard: at 0, 3, 6 and 9 pages.
    let a: Vec<VirtAddr> = (0..4)
        .map(|_| m.vm.vmalloc(2 * PAGE_SIZE, GFP_KERNEL, "lazy").unwrap())
        .collect();
    assert_eq!(a, vec![start, va(start, 3), va(start, 6), va(start, 9)]);
    for &x in &a[..3] {
        m.vm.vfree(x).unwrap();
    }
    // Unmapped and the frames back at once, but the addresses wait.
    assert_eq!(m.vm.nr_lazy_pages(), 9);
    assert_eq!(m.vm.nr_purges(), 0);
    assert_eq!(m.free_pages(), free - 2);
    assert_eq!(m.vm.vmalloc_to_page(a[0]), None);
    assert_eq!(m.vm.vfree(a[1]), Err(VmallocError::DoubleFree(a[1])));
    let e = m.vm.vmalloc(2 * PAGE_SIZE, GFP_KERNEL, "lazy").unwrap();
    assert_eq!(e, va(start, 12), "a lazily freed range is not reused");
    assert_eq!(m.vm.check_invariants(), Ok(()));

    // The fourth free brings 12 pages > 10: one purge, the ranges come back.
    m.vm.vfree(a[3]).unwrap();
    assert_eq!((m.vm.nr_lazy_pages(), m.vm.nr_purges()), (0, 1));
    assert_eq!(m.vm.free_ranges()[0], (start, va(start, 12)));
    let f = m.vm.vmalloc(5 * PAGE_SIZE, GFP_KERNEL, "reuse").unwrap();
    assert_eq!(f, start, "the purged range is reused first fit");
    // After the purge, the old address is no area at all.
    assert_eq!(m.vm.vfree(a[3]), Err(VmallocError::NotAnArea(a[3])));
    assert_eq!(m.vm.check_invariants(), Ok(()));
}

#[test]
fn out_of_room_purges_and_retries() {
    let m = machine(64, 8, 1);
    let a = m.vm.vmalloc(3 * PAGE_SIZE, GFP_KERNEL, "a").unwrap();
    let b = m.vm.vmalloc(3 * PAGE_SIZE, GFP_KERNEL, "b").unwrap();
    assert_eq!(m.vm.free_ranges(), vec![]);
    m.vm.vfree(a).unwrap();
    assert_eq!(m.vm.nr_lazy_pages(), 4);
    let c = m.vm.vmalloc(3 * PAGE_SIZE, GFP_KERNEL, "c").unwrap();
    assert_eq!((c, m.vm.nr_purges(), m.vm.nr_lazy_pages()), (a, 1, 0));
    // Full, and nothing lazily freed to purge: a typed error, no change.
    check_err(
        &m,
        || m.vm.vmalloc(PAGE_SIZE, GFP_KERNEL, "d"),
        VmallocError::NoVirtualSpace {
            size: 2 * PAGE_SIZE,
        },
    );
    m.vm.vfree(b).unwrap();
    m.vm.vfree(c).unwrap();
    m.vm.purge();
    assert_eq!(
        m.vm.free_ranges(),
        vec![(VirtAddr(VMALLOC_START), va(VirtAddr(VMALLOC_START), 8))]
    );
}

#[test]
fn errors_leave_the_state_unchanged() {
    let m = machine(64, 256, 1);
    let a = m.vm.vmalloc(2 * PAGE_SIZE, GFP_KERNEL, "a").unwrap();
    let p = m.pages.alloc_pages(GFP_KERNEL, 0).unwrap();
    let b = m.vm.vmap(&[p], Prot::KERNEL, "b").unwrap();

    check_err(
        &m,
        || m.vm.vmalloc(0, GFP_KERNEL, "x"),
        VmallocError::ZeroSize,
    );
    check_err(
        &m,
        || m.vm.vzalloc(0, GFP_KERNEL, "x"),
        VmallocError::ZeroSize,
    );
    check_err(
        &m,
        || m.vm.vmap(&[], Prot::KERNEL, "x"),
        VmallocError::ZeroSize,
    );
    check_err(
        &m,
        || m.vm.vmalloc(usize::MAX, GFP_KERNEL, "x"),
        VmallocError::SizeOverflow { size: usize::MAX },
    );
    check_err(
        &m,
        || m.vm.vmalloc_array(usize::MAX / 2, 3, GFP_KERNEL, "x"),
        VmallocError::SizeOverflow { size: usize::MAX },
    );
    check_err(
        &m,
        || m.vm.vmalloc(256 * PAGE_SIZE, GFP_KERNEL, "x"),
        VmallocError::NoVirtualSpace {
            size: 257 * PAGE_SIZE,
        },
    );
    // More pages than the allocator has: every page taken is given back.
    check_err(
        &m,
        || m.vm.vmalloc(100 * PAGE_SIZE, GFP_KERNEL, "x"),
        VmallocError::NoMemory(PageError::BelowWatermark {
            order: 0,
            watermark: "min",
        }),
    );
    // Above the total RAM, once it is known.
    m.vm.set_totalram_pages(Some(64));
    check_err(
        &m,
        || m.vm.vmalloc(65 * PAGE_SIZE, GFP_KERNEL, "x"),
        VmallocError::TooLarge {
            pages: 65,
            totalram: 64,
        },
    );
    check_err(
        &m,
        || m.vm.vmalloc(usize::MAX, GFP_KERNEL, "x"),
        VmallocError::TooLarge {
            pages: usize::MAX >> 12,
            totalram: 64,
        },
    );
    m.vm.set_totalram_pages(None);
    // The MMU refuses the second frame: the first is unmapped again.
    check_err(
        &m,
        || m.vm.vmap(&[p, Pfn(usize::MAX)], Prot::KERNEL, "x"),
        VmallocError::Mmu(MmuError::NoFrame(Pfn(usize::MAX))),
    );

    // Bad frees.
    check_err(
        &m,
        || m.vm.vfree(VirtAddr(a.0 + 8)),
        VmallocError::Misaligned(VirtAddr(a.0 + 8)),
    );
    check_err(
        &m,
        || m.vm.vfree(va(a, 1)),
        VmallocError::NotAnArea(va(a, 1)),
    );
    check_err(
        &m,
        || m.vm.vfree(va(a, 2)),
        VmallocError::NotAnArea(va(a, 2)),
    );
    check_err(
        &m,
        || m.vm.vfree(VirtAddr(0x1000)),
        VmallocError::NotAnArea(VirtAddr(0x1000)),
    );
    check_err(&m, || m.vm.vunmap(a), VmallocError::NotVmap(a));
    // vfree(NULL) is a no-op.
    let before = state(&m);
    assert_eq!(m.vm.vfree(VirtAddr(0)), Ok(()));
    assert_eq!(state(&m), before);

    // Double frees, before and after the purge.
    m.vm.vfree(a).unwrap();
    check_err(&m, || m.vm.vfree(a), VmallocError::DoubleFree(a));
    m.vm.vunmap(b).unwrap();
    check_err(&m, || m.vm.vunmap(b), VmallocError::DoubleFree(b));
    m.vm.purge();
    check_err(&m, || m.vm.vfree(a), VmallocError::NotAnArea(a));
    check_err(&m, || m.vm.vunmap(b), VmallocError::NotAnArea(b));
    // vunmap left the frame to its owner.
    m.pages.free_pages(p, 0).unwrap();
    assert_eq!(m.free_pages(), 64);
}

#[test]
fn vmap_maps_given_frames_and_vunmap_keeps_them() {
    let m = machine(64, 64, 1);
    let frames = [Pfn(40), Pfn(3), Pfn(4), Pfn(17)];
    // Reserve these frames in the allocator so nobody else gets them.
    let block = m.pages.alloc_pages(GFP_KERNEL, 6).unwrap();
    assert_eq!(block, Pfn(0));
    let free = m.free_pages();
    let a = m.vm.vmap(&frames, Prot::READ, "vmap_test").unwrap();
    for (i, &pfn) in frames.iter().enumerate() {
        assert_eq!(m.vm.vmalloc_to_page(va(a, i)), Some(pfn));
        assert_eq!(m.mmu.lookup(va(a, i)), Some((pfn, Prot::READ)));
    }
    assert_eq!(m.vm.vmalloc_to_page(va(a, 4)), None);
    assert_eq!(m.vm.find_vm_area(a).unwrap().kind, Some(AreaKind::Vmap));
    assert_eq!(m.vm.meminfo().used_kb, 0, "vmap pages are not VmallocUsed");
    m.vm.vunmap(a).unwrap();
    assert_eq!(m.vm.vmalloc_to_page(a), None);
    assert_eq!(m.free_pages(), free);
    // vfree of a vmap'ed area unmaps it and frees no page, as in Linux.
    let b = m.vm.vmap(&frames, Prot::KERNEL, "vmap_test").unwrap();
    m.vm.vfree(b).unwrap();
    assert_eq!(m.free_pages(), free);
    assert_eq!(m.mmu.mapped_pages(), 0);
    assert_eq!(m.vm.check_invariants(), Ok(()));
}

#[test]
fn vmallocinfo_format() {
    let m = machine(64, 64, 1);
    let a =
        m.vm.vmalloc(PAGE_SIZE, GFP_KERNEL, "bpf_prog_alloc_no_stats+0x4a/0x1f0")
            .unwrap();
    let b =
        m.vm.vzalloc(
            3 * PAGE_SIZE,
            GFP_KERNEL,
            "alloc_large_system_hash+0x127/0x246",
        )
        .unwrap();
    let c =
        m.vm.vmap(&[Pfn(60), Pfn(61)], Prot::KERNEL, "vmap_caller+0x1/0x2")
            .unwrap();
    let d = m.vm.vmalloc(PAGE_SIZE, GFP_KERNEL, "").unwrap();
    m.vm.vfree(b).unwrap();
    assert_eq!(
        (a.0, c.0, d.0),
        (
            VMALLOC_START,
            VMALLOC_START + 0x6000,
            VMALLOC_START + 0x9000
        )
    );
    assert_eq!(
        m.vm.vmallocinfo(),
        "\
0xffffc90000000000-0xffffc90000002000    8192 bpf_prog_alloc_no_stats+0x4a/0x1f0 pages=1 vmalloc N0=1
0xffffc90000002000-0xffffc90000006000   16384 unpurged vm_area
0xffffc90000006000-0xffffc90000009000   12288 vmap_caller+0x1/0x2 vmap
0xffffc90000009000-0xffffc9000000b000    8192 pages=1 vmalloc N0=1
"
    );
    // Parse back: end - start == size, size == (pages + 1) * PAGE_SIZE.
    for line in m.vm.vmallocinfo().lines() {
        let mut f = line.split_whitespace();
        let (s, e) = f.next().unwrap().split_once('-').unwrap();
        let parse = |x: &str| usize::from_str_radix(x.trim_start_matches("0x"), 16).unwrap();
        let size: usize = f.next().unwrap().parse().unwrap();
        assert_eq!(parse(e) - parse(s), size);
        if let Some(p) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("pages="))
        {
            assert_eq!((p.parse::<usize>().unwrap() + 1) * PAGE_SIZE, size);
        }
    }
}

#[test]
fn meminfo_lines() {
    let m = machine(64, 4096, 1);
    let _a = m.vm.vmalloc(5 * PAGE_SIZE, GFP_KERNEL, "a").unwrap();
    let b = m.vm.vmalloc(2 * PAGE_SIZE, GFP_KERNEL, "b").unwrap();
    let info = m.vm.meminfo();
    assert_eq!(
        info,
        VmallocMeminfo {
            total_kb: 4096 * 4,
            used_kb: 7 * 4,
            chunk_kb: 0
        }
    );
    assert_eq!(
        info.to_string(),
        "VmallocTotal:      16384 kB\nVmallocUsed:          28 kB\nVmallocChunk:          0 kB\n"
    );
    m.vm.vfree(b).unwrap();
    assert_eq!(m.vm.meminfo().used_kb, 20);
}

#[test]
fn highmem_pages_are_accepted() {
    // An x86-32 PC with 1 GiB: DMA, Normal up to 896 MiB, HighMem above.
    let zoned = zoned(MachineLayout::x86_32(1 << 30));
    // VMALLOC_START on i386: 8 MiB above the end of lowmem (PAGE_OFFSET 3 GiB).
    let m = machine_with(zoned, 0xf880_0000, 1024, 1);
    // GFP_KERNEL: vmalloc adds __GFP_HIGHMEM, as Linux does.
    let a = m.vm.vmalloc(4 * PAGE_SIZE, GFP_KERNEL, "hi").unwrap();
    let explicit =
        m.vm.vmalloc(PAGE_SIZE, GFP_KERNEL | __GFP_HIGHMEM, "hi2")
            .unwrap();
    let dma = m.vm.vmalloc(PAGE_SIZE, GFP_DMA, "dma").unwrap();
    let zone = |addr| {
        let pages = m.vm.find_vm_area(addr).unwrap().pages;
        let zones: Vec<_> = pages.iter().map(|&p| m.zoned.zone_of(p).unwrap()).collect();
        zones
    };
    assert_eq!(zone(a), vec![ZoneType::HighMem; 4]);
    assert_eq!(zone(explicit), vec![ZoneType::HighMem]);
    assert_eq!(zone(dma), vec![ZoneType::Dma]);
    check_area(&m, a, 4);
    assert_eq!(
        m.vm.vmallocinfo().lines().next(),
        Some("0xf8800000-0xf8805000   20480 hi pages=4 vmalloc N0=4")
    );
    let highmem = PfnRange::new(224 * 1024, 256 * 1024);
    assert!(
        m.vm.find_vm_area(a)
            .unwrap()
            .pages
            .iter()
            .all(|p| highmem.contains(*p))
    );
    for x in [a, explicit, dma] {
        m.vm.vfree(x).unwrap();
    }
    assert_eq!(m.vm.check_invariants(), Ok(()));
    assert_eq!(
        m.vm.vmalloc(PAGE_SIZE, Gfp::DMA | Gfp::DMA32, "bad")
            .map(|_| ()),
        Err(VmallocError::NoMemory(PageError::BadGfpZone(
            (Gfp::DMA | Gfp::DMA32).bits()
        )))
    );
}

#[test]
fn new_rejects_bad_ranges() {
    let m = machine(16, 16, 1);
    let start = VirtAddr(VMALLOC_START);
    let bad = |s: usize, e: usize, why| {
        let r = kmm_vmalloc::VmallocSpace::new(
            m.pages.clone(),
            m.mmu.clone(),
            VirtAddr(s),
            VirtAddr(e),
            1,
        );
        assert_eq!(
            r.map(|_| ()),
            Err(VmallocError::BadRange {
                start: VirtAddr(s),
                end: VirtAddr(e),
                why
            })
        );
    };
    bad(start.0 + 1, start.0 + PAGE_SIZE, "not page aligned");
    bad(start.0, start.0, "empty");
    bad(start.0, start.0 + 17 * PAGE_SIZE, "outside the MMU window");
    // A sub-range of the window is fine.
    let sub = kmm_vmalloc::VmallocSpace::new(
        m.pages.clone(),
        m.mmu.clone(),
        va(start, 4),
        va(start, 8),
        2,
    )
    .unwrap();
    assert_eq!(sub.vmalloc(PAGE_SIZE, GFP_KERNEL, "sub"), Ok(va(start, 4)));
    assert!(!sub.is_vmalloc_addr(start));
    assert!(!sub.is_vmalloc_addr(va(start, 8)));
    assert_eq!(sub.vmalloc_to_page(start), None);
    assert_eq!(
        sub.as_ptr(va(start, 4)),
        None,
        "a software MMU gives no pointers"
    );
}

#[test]
fn two_threads_allocate_and_free() {
    let m = machine(512, 1024, 2);
    m.vm.set_lazy_max_pages(16);
    let free = m.free_pages();
    std::thread::scope(|s| {
        for t in 0..2 {
            let vm = &m.vm;
            s.spawn(move || {
                let mut held = Vec::new();
                for i in 0..200 {
                    let size = ((i * 7 + t) % 5 + 1) * PAGE_SIZE;
                    held.push(vm.vmalloc(size, GFP_KERNEL, "thread").unwrap());
                    if i % 3 == 0 {
                        vm.vfree(held.swap_remove(held.len() / 2)).unwrap();
                    }
                    if held.len() > 20 {
                        vm.vfree(held.remove(0)).unwrap();
                    }
                }
                for a in held {
                    vm.vfree(a).unwrap();
                }
            });
        }
    });
    m.vm.purge();
    assert_eq!(m.free_pages(), free);
    assert_eq!(m.mmu.mapped_pages(), 0);
    assert_eq!(m.vm.check_invariants(), Ok(()));
}
