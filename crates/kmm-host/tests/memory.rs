//! API tests of `HostMemory`: the direct map is real memory shared with the
//! memfd, highmem and holes have no direct map, clearing zeroes both kinds of
//! frame, and a large machine is sparse.

use std::time::{Duration, Instant};

use kmm_host::{HostError, HostMemory};
use kmm_page::{MAX_PAGE_ORDER, PAGE_SIZE, Pfn, PfnRange, PhysMemory};

/// Frames [0, 16) and [32, 64) with a hole between; highmem from frame 48.
fn machine() -> HostMemory {
    HostMemory::new(&[PfnRange::new(0, 16), PfnRange::new(32, 64)], Pfn(48)).unwrap()
}

#[test]
fn the_direct_map_is_aligned_to_the_largest_buddy_block() {
    // kmalloc's power-of-two sizes are naturally aligned only if a block of
    // 2^order frames is aligned in the direct map as it is in frame numbers.
    // Several maps in a row, since the host picks the addresses.
    let block = PAGE_SIZE << MAX_PAGE_ORDER;
    let maps: Vec<HostMemory> = (0..8)
        .map(|i| HostMemory::new(&[PfnRange::new(0, 64 + i * 1000)], Pfn(64 + i * 1000)).unwrap())
        .collect();
    for mem in &maps {
        let base = mem.direct_map(Pfn(0)).unwrap().as_ptr().addr();
        assert_eq!(base % block, 0, "direct map at {base:#x}");
    }
}

/// A byte pattern that differs per frame and per offset.
fn pattern(pfn: Pfn) -> Vec<u8> {
    (0..PAGE_SIZE)
        .map(|i| (pfn.0 * 7 + i * 13 + 1) as u8)
        .collect()
}

/// Frame `pfn`'s bytes, read through the memfd.
fn read(mem: &HostMemory, pfn: Pfn) -> Vec<u8> {
    let mut buf = vec![0u8; PAGE_SIZE];
    // SAFETY: the test owns every frame and nobody writes during the read.
    unsafe { mem.read_frame(pfn, 0, &mut buf) }.unwrap();
    buf
}

/// Fills frame `pfn` with its pattern: through the direct map for lowmem,
/// through the memfd for highmem.
fn fill(mem: &HostMemory, pfn: Pfn) {
    let data = pattern(pfn);
    match mem.direct_map(pfn) {
        // SAFETY: `direct_map` promises `PAGE_SIZE` writable bytes, the test
        // owns the frame, and `data` is a separate allocation of `PAGE_SIZE` bytes.
        Some(p) => unsafe {
            p.as_ptr()
                .copy_from_nonoverlapping(data.as_ptr(), PAGE_SIZE)
        },
        // SAFETY: the test owns the frame; nothing else refers to it.
        None => unsafe { mem.write_frame(pfn, 0, &data) }.unwrap(),
    }
}

#[test]
fn writes_through_the_direct_map_reach_the_memfd() {
    let mem = machine();
    assert!(mem.has_memory());
    for pfn in [0, 1, 15, 32, 47].map(Pfn) {
        fill(&mem, pfn);
    }
    for pfn in [0, 1, 15, 32, 47].map(Pfn) {
        assert_eq!(read(&mem, pfn), pattern(pfn), "frame {pfn}");
    }
    // Untouched frames read as zeros.
    assert_eq!(read(&mem, Pfn(2)), vec![0; PAGE_SIZE]);
}

#[test]
fn writes_through_the_memfd_show_in_the_direct_map() {
    let mem = machine();
    // SAFETY: the test owns frame 33; nothing else refers to it.
    unsafe { mem.write_frame(Pfn(33), 100, b"kmm") }.unwrap();
    let p = mem.direct_map(Pfn(33)).unwrap();
    let mut seen = [0u8; 3];
    // SAFETY: `p` is valid for `PAGE_SIZE` bytes, and 100..103 lies inside;
    // the test owns the frame.
    unsafe {
        p.as_ptr()
            .add(100)
            .copy_to_nonoverlapping(seen.as_mut_ptr(), 3)
    };
    assert_eq!(&seen, b"kmm");
}

#[test]
fn direct_map_addresses_are_aligned_distinct_and_invert() {
    let mem = machine();
    let mut seen = Vec::new();
    for pfn in (0..16).chain(32..48).map(Pfn) {
        let p = mem.direct_map(pfn).unwrap().as_ptr().addr();
        assert_eq!(p % PAGE_SIZE, 0);
        for offset in [0, 1, PAGE_SIZE - 1] {
            assert_eq!(mem.virt_to_pfn(p + offset), Some(pfn));
        }
        seen.push(p);
    }
    seen.sort_unstable();
    assert!(seen.windows(2).all(|w| w[1] - w[0] >= PAGE_SIZE));
    // The direct map is one linear mapping: frame 32 sits 32 frames above frame 0.
    let base = mem.direct_map(Pfn(0)).unwrap().as_ptr().addr();
    assert_eq!(
        mem.direct_map(Pfn(32)).unwrap().as_ptr().addr(),
        base + 32 * PAGE_SIZE
    );
    // Addresses in the hole, below the map and past lowmem are not direct-map addresses.
    assert_eq!(mem.virt_to_pfn(base + 20 * PAGE_SIZE), None);
    assert_eq!(mem.virt_to_pfn(base - 1), None);
    assert_eq!(mem.virt_to_pfn(base + 48 * PAGE_SIZE), None);
    assert_eq!(mem.virt_to_pfn(0), None);
    assert_eq!(mem.virt_to_pfn(usize::MAX), None);
}

#[test]
fn highmem_frames_have_no_direct_map_but_hold_data() {
    let mem = machine();
    assert_eq!(mem.lowmem_end(), Pfn(48));
    for pfn in (48..64).map(Pfn) {
        assert!(mem.has_frame(pfn));
        assert_eq!(mem.direct_map(pfn), None, "frame {pfn}");
    }
    fill(&mem, Pfn(63));
    assert_eq!(read(&mem, Pfn(63)), pattern(Pfn(63)));
}

#[test]
fn holes_and_frames_past_the_end_have_no_memory() {
    let mem = machine();
    for pfn in (16..32).chain([64, 65, usize::MAX]).map(Pfn) {
        assert!(!mem.has_frame(pfn));
        assert_eq!(mem.direct_map(pfn), None, "frame {pfn}");
        let mut buf = [7u8; 8];
        // SAFETY: nobody writes the frame during the call (it has no memory anyway).
        let err = unsafe { mem.read_frame(pfn, 0, &mut buf) }.unwrap_err();
        assert!(matches!(err, HostError::NoMemory { pfn: p } if p == pfn));
        assert_eq!(buf, [7; 8]);
        // SAFETY: as above.
        let err = unsafe { mem.write_frame(pfn, 0, &buf) }.unwrap_err();
        assert!(matches!(err, HostError::NoMemory { pfn: p } if p == pfn));
    }
}

#[test]
fn byte_ranges_past_a_frame_are_refused_and_write_nothing() {
    let mem = machine();
    fill(&mem, Pfn(40));
    // SAFETY: the test owns frame 40.
    let err = unsafe { mem.write_frame(Pfn(40), PAGE_SIZE - 2, &[0; 3]) }.unwrap_err();
    assert!(matches!(err, HostError::OutOfFrame { len: 3, .. }));
    assert_eq!(read(&mem, Pfn(40)), pattern(Pfn(40)));
    assert_eq!(read(&mem, Pfn(41)), vec![0; PAGE_SIZE]);
}

#[test]
fn clear_frames_zeroes_lowmem_and_highmem() {
    let mem = machine();
    for pfn in (32..64).map(Pfn) {
        fill(&mem, pfn);
    }
    // Frames 40..56 straddle the lowmem/highmem boundary at 48.
    // SAFETY: the test owns every frame; no reference into them is live.
    assert!(unsafe { mem.clear_frames(Pfn(40), 16) });
    for pfn in (32..64).map(Pfn) {
        let expected = if (40..56).contains(&pfn.0) {
            vec![0; PAGE_SIZE]
        } else {
            pattern(pfn)
        };
        assert_eq!(read(&mem, pfn), expected, "frame {pfn}");
    }
    // The direct map sees the zeros too.
    let p = mem.direct_map(Pfn(47)).unwrap();
    // SAFETY: `p` is valid for `PAGE_SIZE` bytes and the test owns the frame.
    let last = unsafe { p.as_ptr().add(PAGE_SIZE - 1).read() };
    assert_eq!(last, 0);
    // SAFETY: as above; a count of zero touches nothing.
    assert!(unsafe { mem.clear_frames(Pfn(20), 0) });
}

#[test]
fn clear_frames_over_a_hole_fails_and_clears_nothing() {
    let mem = machine();
    for pfn in (8..16).chain(32..36).chain(60..64).map(Pfn) {
        fill(&mem, pfn);
    }
    // SAFETY: the test owns every frame; no reference into them is live.
    unsafe {
        assert!(!mem.clear_frames(Pfn(8), 28)); // 16..32 is a hole
        assert!(!mem.clear_frames(Pfn(60), 5)); // 64 is past the end
        assert!(!mem.clear_frames(Pfn(usize::MAX - 1), 4)); // overflows
    }
    for pfn in (8..16).chain(32..36).chain(60..64).map(Pfn) {
        assert_eq!(read(&mem, pfn), pattern(pfn), "frame {pfn}");
    }
}

#[test]
fn bad_memory_maps_are_refused() {
    let err = HostMemory::new(&[PfnRange::new(0, 10), PfnRange::new(5, 20)], Pfn(20)).unwrap_err();
    assert!(
        matches!(err, HostError::Overlap { a, b } if a == PfnRange::new(0, 10) && b == PfnRange::new(5, 20))
    );
    let err = HostMemory::new(&[PfnRange::new(0, usize::MAX)], Pfn(0)).unwrap_err();
    assert!(matches!(
        err,
        HostError::TooLarge {
            end: Pfn(usize::MAX)
        }
    ));
    // Empty ranges are ignored rather than refused.
    let mem = HostMemory::new(&[PfnRange::new(3, 3), PfnRange::new(0, 2)], Pfn(1)).unwrap();
    assert_eq!(mem.ranges(), [PfnRange::new(0, 2)]);
    assert!(mem.direct_map(Pfn(0)).is_some() && mem.direct_map(Pfn(1)).is_none());
}

#[test]
fn a_4_gib_machine_boots_quickly_and_stays_sparse() {
    const GIB: usize = 1 << 30;
    let frames = 4 * GIB / PAGE_SIZE;
    let lowmem = 896 * (1 << 20) / PAGE_SIZE;
    let start = Instant::now();
    let mem = HostMemory::new(&[PfnRange::new(0, frames)], Pfn(lowmem)).unwrap();
    let boot = start.elapsed();
    assert!(boot < Duration::from_secs(2), "booting took {boot:?}");
    assert_eq!(mem.end_pfn(), Pfn(frames));
    assert!(mem.direct_map(Pfn(lowmem - 1)).is_some());
    assert!(mem.direct_map(Pfn(lowmem)).is_none());
    // Touch one frame at the bottom, one at the top of lowmem, one at the top of highmem.
    for pfn in [Pfn(0), Pfn(lowmem - 1), Pfn(frames - 1)] {
        fill(&mem, pfn);
        assert_eq!(read(&mem, pfn), pattern(pfn));
    }
    // Three frames cost at most three (transparent huge) pages, far below 4 GiB.
    let used = mem.allocated_bytes().unwrap();
    assert!(
        used >= 3 * PAGE_SIZE as u64 && used <= 3 * 2 * (1 << 20),
        "{used} bytes allocated"
    );
    // Clearing the highmem frame punches a hole: it gives memory back, never takes more.
    // SAFETY: the test owns the frame.
    assert!(unsafe { mem.clear_frames(Pfn(frames - 1), 1) });
    assert!(mem.allocated_bytes().unwrap() <= used);
    assert_eq!(read(&mem, Pfn(frames - 1)), vec![0; PAGE_SIZE]);
}

#[test]
fn host_memory_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HostMemory>();
    let mem = machine();
    std::thread::scope(|s| {
        for pfn in [Pfn(1), Pfn(33), Pfn(50)] {
            let mem = &mem;
            s.spawn(move || fill(mem, pfn));
        }
    });
    for pfn in [Pfn(1), Pfn(33), Pfn(50)] {
        assert_eq!(read(&mem, pfn), pattern(pfn));
    }
}

#[test]
fn populate_makes_the_direct_map_resident_and_keeps_its_bytes() {
    // Frames [0, 16) and [32, 64), lowmem below 48: 16 + 16 lowmem frames
    // with a PROT_NONE hole between them, which populate must skip.
    let mem = machine();
    for pfn in [Pfn(3), Pfn(40), Pfn(50)] {
        fill(&mem, pfn);
    }
    mem.populate().unwrap();
    let after = mem.allocated_bytes().unwrap();
    assert!(
        after >= 32 * PAGE_SIZE as u64,
        "{after} bytes after populate, want every lowmem frame"
    );
    for pfn in [Pfn(3), Pfn(40), Pfn(50)] {
        assert_eq!(read(&mem, pfn), pattern(pfn), "frame {pfn:?} changed");
    }
    // Untouched lowmem frames read as zero, through the map and the file.
    // SAFETY: the test owns the frame and nobody writes it meanwhile.
    let direct =
        unsafe { std::slice::from_raw_parts(mem.direct_map(Pfn(35)).unwrap().as_ptr(), PAGE_SIZE) };
    assert!(direct.iter().all(|&b| b == 0));
    // Populating again is harmless.
    mem.populate().unwrap();
    assert_eq!(mem.allocated_bytes().unwrap(), after);
}

#[test]
fn the_linear_map_spans_exactly_the_lowmem_frames() {
    // Frames [0, 16) and [32, 64), lowmem below 48: the map covers frames
    // [0, 48), the hole included, and nothing past it.
    let mem = machine();
    let base = mem.linear_map_base().unwrap();
    let end = mem.linear_map_end().unwrap();
    assert_eq!(end - base, 48 * PAGE_SIZE);
    assert_eq!(mem.direct_map(Pfn(0)).unwrap().as_ptr().addr(), base);
    assert_eq!(
        mem.direct_map(Pfn(47)).unwrap().as_ptr().addr(),
        end - PAGE_SIZE
    );
    assert_eq!(mem.virt_to_pfn(end - 1), Some(Pfn(47)));
    assert_eq!(mem.virt_to_pfn(end), None);
    assert_eq!(mem.virt_to_pfn(base + 20 * PAGE_SIZE), None, "a hole");
}
