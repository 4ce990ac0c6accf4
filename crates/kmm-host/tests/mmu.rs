//! `HostMmu` seen from outside: bytes written through the window land in the
//! frames, highmem frames become reachable, and `/proc/self/maps` shows one
//! host mapping per run of frames and a reservation wherever nothing is mapped.

use std::sync::Arc;

use kmm_host::{HostMemory, HostMmu};
use kmm_page::{Mmu, MmuError, PAGE_SIZE, Pfn, PfnRange, PhysMemory, Prot, VirtAddr};

/// Lowmem frames `[0, 64)`, a hole `[64, 80)`, highmem frames `[80, 96)`.
fn memory() -> Arc<HostMemory> {
    Arc::new(HostMemory::new(&[PfnRange::new(0, 64), PfnRange::new(80, 96)], Pfn(64)).unwrap())
}

/// A host MMU over a window of `pages` pages.
fn host_mmu(memory: &Arc<HostMemory>, pages: usize) -> HostMmu {
    HostMmu::with_window_size(Arc::clone(memory), pages * PAGE_SIZE).unwrap()
}

/// The address of page `i` of the window.
fn page(mmu: &HostMmu, i: usize) -> VirtAddr {
    VirtAddr(mmu.window().0.0 + i * PAGE_SIZE)
}

/// One line of `/proc/self/maps`.
#[derive(Debug, PartialEq, Eq)]
struct Vma {
    start: usize,
    end: usize,
    perms: String,
    memfd: bool,
}

/// The host mappings that overlap `[start, end)`, clipped to it, in address
/// order. Clipping matters: the tests of this binary run in parallel, and a
/// neighbouring reservation made or dropped meanwhile merges with (or splits
/// from) the mappings at the window's edges in the kernel's view.
fn vmas(start: VirtAddr, end: VirtAddr) -> Vec<Vma> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (lo, hi) = fields.next()?.split_once('-')?;
            let lo = usize::from_str_radix(lo, 16).ok()?;
            let hi = usize::from_str_radix(hi, 16).ok()?;
            let perms = fields.next()?.to_owned();
            (lo < end.0 && start.0 < hi).then(|| Vma {
                start: lo.max(start.0),
                end: hi.min(end.0),
                perms,
                memfd: line.contains("memfd:kmm-phys"),
            })
        })
        .collect()
}

/// Asserts that one inaccessible reservation covers `[start, end)`. It may
/// reach past the window: another test's reservation right next to it merges
/// with it in the kernel's view, since the tests of this binary run in parallel.
fn assert_one_reservation(start: VirtAddr, end: VirtAddr) {
    let found = vmas(start, end);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].start <= start.0 && end.0 <= found[0].end,
        "{found:?}"
    );
    assert_eq!((found[0].perms.as_str(), found[0].memfd), ("---p", false));
}

/// The memfd mappings inside the window of `mmu`.
fn frame_vmas(mmu: &HostMmu) -> Vec<Vma> {
    let (start, end) = mmu.window();
    vmas(start, end).into_iter().filter(|v| v.memfd).collect()
}

/// A byte pattern that differs on every page and at every offset.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 7 + i / PAGE_SIZE * 13) as u8)
        .collect()
}

#[test]
fn writes_through_a_vmalloc_address_land_in_each_frame() {
    let mem = memory();
    let mmu = host_mmu(&mem, 64);
    // Three scattered lowmem frames at consecutive addresses, as vmalloc maps them.
    let frames = [Pfn(40), Pfn(5), Pfn(17)];
    let va = page(&mmu, 8);
    for (i, &pfn) in frames.iter().enumerate() {
        mmu.map(VirtAddr(va.0 + i * PAGE_SIZE), pfn, Prot::KERNEL)
            .unwrap();
    }
    assert_eq!(mmu.mapped_pages(), 3);
    let data = pattern(3 * PAGE_SIZE);
    let p = mmu.as_ptr(va).unwrap();
    // SAFETY: the three pages are mapped read-write for as long as `mmu`
    // lives, and this test owns the frames behind them.
    unsafe {
        p.as_ptr()
            .copy_from_nonoverlapping(data.as_ptr(), data.len())
    };
    for (i, &pfn) in frames.iter().enumerate() {
        let frame = mem.direct_map(pfn).unwrap();
        // SAFETY: the direct map is valid for `PAGE_SIZE` bytes, and nobody
        // writes the frame while this slice lives.
        let bytes = unsafe { std::slice::from_raw_parts(frame.as_ptr(), PAGE_SIZE) };
        assert_eq!(
            bytes,
            &data[i * PAGE_SIZE..(i + 1) * PAGE_SIZE],
            "frame {pfn}"
        );
        assert_eq!(
            mmu.translate(VirtAddr(va.0 + i * PAGE_SIZE + 123)),
            Some(pfn)
        );
    }
    // Writes through the direct map show up in the window, too.
    let frame = mem.direct_map(Pfn(5)).unwrap();
    // SAFETY: as above; the window pointer is read only after the write.
    unsafe {
        frame.as_ptr().add(9).write(0xee);
        assert_eq!(
            mmu.as_ptr(VirtAddr(va.0 + PAGE_SIZE + 9)).unwrap().read(),
            0xee
        );
    }
}

#[test]
fn a_highmem_frame_is_reachable_in_the_window() {
    let mem = memory();
    let mmu = host_mmu(&mem, 16);
    let va = page(&mmu, 3);
    assert!(mem.direct_map(Pfn(90)).is_none());
    mmu.map(va, Pfn(90), Prot::KERNEL).unwrap();
    let p = mmu.as_ptr(va).unwrap();
    let data = pattern(PAGE_SIZE);
    // SAFETY: the page is mapped read-write and this test owns frame 90.
    unsafe {
        p.as_ptr()
            .copy_from_nonoverlapping(data.as_ptr(), PAGE_SIZE)
    };
    let mut back = vec![0; PAGE_SIZE];
    // SAFETY: nobody writes frame 90 during the call.
    unsafe { mem.read_frame(Pfn(90), 0, &mut back).unwrap() };
    assert_eq!(back, data);
    // And a write to the file is seen through the window.
    // SAFETY: no reference to the frame's bytes exists during the call.
    unsafe { mem.write_frame(Pfn(90), 100, &[1, 2, 3]).unwrap() };
    // SAFETY: the page is mapped; nobody writes it now.
    let seen = unsafe { std::slice::from_raw_parts(p.as_ptr().add(100), 3) };
    assert_eq!(seen, [1, 2, 3]);
    assert_eq!(mmu.lookup(va), Some((Pfn(90), Prot::KERNEL)));
}

#[test]
fn unmap_puts_an_inaccessible_reservation_back() {
    let mem = memory();
    let mmu = host_mmu(&mem, 16);
    let (start, end) = mmu.window();
    // Before anything is mapped, the window is one inaccessible reservation.
    assert_one_reservation(start, end);
    let va = page(&mmu, 4);
    mmu.map(va, Pfn(7), Prot::READ).unwrap();
    let at = |a: VirtAddr| vmas(a, VirtAddr(a.0 + PAGE_SIZE));
    assert_eq!(
        at(va),
        [Vma {
            start: va.0,
            end: va.0 + PAGE_SIZE,
            perms: "r--s".into(),
            memfd: true
        }]
    );
    assert_eq!(mmu.unmap(va), Ok(Pfn(7)));
    assert_eq!(mmu.translate(va), None);
    assert_eq!(mmu.as_ptr(va), None);
    assert_eq!(mmu.mapped_pages(), 0);
    // The reservation is whole again: the page merged back into it.
    assert_one_reservation(start, end);
    // The page can be mapped again, to another frame.
    mmu.map(va, Pfn(85), Prot::KERNEL).unwrap();
    assert_eq!(at(va)[0].perms, "rw-s");
    assert_eq!(mmu.unmap(va), Ok(Pfn(85)));
}

#[test]
fn a_contiguous_run_is_one_host_mapping() {
    let mem = memory();
    let mmu = host_mmu(&mem, 32);
    let va = page(&mmu, 10);
    mmu.map_range(va, Pfn(20), 8, Prot::KERNEL).unwrap();
    assert_eq!(
        frame_vmas(&mmu),
        [Vma {
            start: va.0,
            end: va.0 + 8 * PAGE_SIZE,
            perms: "rw-s".into(),
            memfd: true
        }]
    );
    for i in 0..8 {
        assert_eq!(
            mmu.translate(VirtAddr(va.0 + i * PAGE_SIZE)),
            Some(Pfn(20 + i))
        );
    }
    // Unmapping a page in the middle splits the run in two.
    assert_eq!(mmu.unmap(VirtAddr(va.0 + 3 * PAGE_SIZE)), Ok(Pfn(23)));
    assert_eq!(frame_vmas(&mmu).len(), 2);
    assert_eq!(mmu.mapped_pages(), 7);
}

#[test]
fn bad_calls_change_nothing() {
    let mem = memory();
    let mmu = host_mmu(&mem, 16);
    let (start, end) = mmu.window();
    let va = page(&mmu, 2);
    mmu.map(va, Pfn(3), Prot::KERNEL).unwrap();
    let before = vmas(start, end);
    let odd = VirtAddr(va.0 + 8);
    let below = VirtAddr(start.0 - PAGE_SIZE);
    let errors = [
        (
            mmu.map(odd, Pfn(1), Prot::KERNEL),
            MmuError::Misaligned(odd),
        ),
        (
            mmu.map(below, Pfn(1), Prot::KERNEL),
            MmuError::OutsideWindow(below),
        ),
        (
            mmu.map(end, Pfn(1), Prot::KERNEL),
            MmuError::OutsideWindow(end),
        ),
        (
            mmu.map(page(&mmu, 5), Pfn(70), Prot::KERNEL),
            MmuError::NoFrame(Pfn(70)),
        ),
        (
            mmu.map(page(&mmu, 5), Pfn(96), Prot::KERNEL),
            MmuError::NoFrame(Pfn(96)),
        ),
        (
            mmu.map(va, Pfn(4), Prot::KERNEL),
            MmuError::AlreadyMapped { va, pfn: Pfn(3) },
        ),
        // A run through the hole, one over a mapped page, one out of the window.
        (
            mmu.map_range(page(&mmu, 5), Pfn(62), 3, Prot::KERNEL),
            MmuError::NoFrame(Pfn(64)),
        ),
        (
            mmu.map_range(page(&mmu, 0), Pfn(10), 4, Prot::KERNEL),
            MmuError::AlreadyMapped { va, pfn: Pfn(3) },
        ),
        (
            mmu.map_range(page(&mmu, 14), Pfn(10), 3, Prot::KERNEL),
            MmuError::OutsideWindow(page(&mmu, 14)),
        ),
    ];
    for (got, want) in errors {
        assert_eq!(got, Err(want));
        assert_eq!(vmas(start, end), before);
        assert_eq!(mmu.mapped_pages(), 1);
    }
    for (va, want) in [
        (odd, MmuError::Misaligned(odd)),
        (end, MmuError::OutsideWindow(end)),
        (page(&mmu, 3), MmuError::NotMapped(page(&mmu, 3))),
    ] {
        assert_eq!(mmu.unmap(va), Err(want));
        assert_eq!(vmas(start, end), before);
    }
    assert_eq!(mmu.translate(va), Some(Pfn(3)));
}

#[test]
fn two_thousand_scattered_frames_map_and_unmap() {
    const N: usize = 2000;
    let mem = Arc::new(HostMemory::new(&[PfnRange::new(0, 2 * N)], Pfn(N)).unwrap());
    let mmu = host_mmu(&mem, N + 16);
    let (start, end) = mmu.window();
    // Every other frame, lowmem and highmem alike: no two neighbours in the
    // window are neighbours in the file, so each page is a mapping of its own.
    for i in 0..N {
        mmu.map(page(&mmu, i), Pfn(2 * i), Prot::KERNEL).unwrap();
    }
    assert_eq!(frame_vmas(&mmu).len(), N);
    for i in (0..N).step_by(97) {
        let p = mmu.as_ptr(page(&mmu, i)).unwrap();
        // SAFETY: the page is mapped read-write and this test owns the frame.
        unsafe { p.as_ptr().write(i as u8) };
        let mut b = [0];
        // SAFETY: nobody writes the frame during the call.
        unsafe { mem.read_frame(Pfn(2 * i), 0, &mut b).unwrap() };
        assert_eq!(b, [i as u8]);
    }
    for i in 0..N {
        assert_eq!(mmu.unmap(page(&mmu, i)), Ok(Pfn(2 * i)));
    }
    assert_eq!(mmu.mapped_pages(), 0);
    // One inaccessible reservation covers the window again.
    assert_one_reservation(start, end);
}

#[test]
fn two_threads_map_distinct_pages() {
    let mem = memory();
    let mmu = host_mmu(&mem, 64);
    std::thread::scope(|s| {
        for t in 0..2 {
            let mmu = &mmu;
            s.spawn(move || {
                for round in 0..20 {
                    for i in (t..32).step_by(2) {
                        let pfn = Pfn((i + round) % 64);
                        mmu.map(page(mmu, i), pfn, Prot::KERNEL).unwrap();
                    }
                    for i in (t..32).step_by(2) {
                        assert_eq!(mmu.unmap(page(mmu, i)), Ok(Pfn((i + round) % 64)));
                    }
                }
            });
        }
    });
    assert_eq!(mmu.mapped_pages(), 0);
    assert_eq!(frame_vmas(&mmu), []);
}
