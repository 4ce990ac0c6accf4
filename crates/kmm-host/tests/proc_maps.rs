//! What the host sees of a `HostMemory` in `/proc/self/maps`: one shared
//! memfd mapping, holes inaccessible, and nothing left after a drop. This is a
//! test binary with a single test, so no other test maps or unmaps memory
//! while it reads `/proc/self/maps`.

use kmm_host::HostMemory;
use kmm_page::{PAGE_SIZE, Pfn, PfnRange, PhysMemory};

/// The lines of `/proc/self/maps` whose range contains `addr`.
fn mappings_at(addr: usize) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter(|line| {
            let range = line.split_whitespace().next().unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let (lo, hi) = (
                usize::from_str_radix(lo, 16).unwrap(),
                usize::from_str_radix(hi, 16).unwrap(),
            );
            lo <= addr && addr < hi
        })
        .map(str::to_owned)
        .collect()
}

/// The permissions column (`rw-s`) of the one mapping that contains `addr`.
fn permissions_at(addr: usize) -> String {
    let lines = mappings_at(addr);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("memfd:kmm-phys"), "{lines:?}");
    lines[0].split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn the_direct_map_is_shared_has_inaccessible_holes_and_goes_on_drop() {
    // Frames [4, 8) and [12, 20), highmem from 16: holes [0, 4) and [8, 12) in lowmem.
    let mem = HostMemory::new(&[PfnRange::new(4, 8), PfnRange::new(12, 20)], Pfn(16)).unwrap();
    let frame = mem.direct_map(Pfn(4)).unwrap().as_ptr().addr();
    let base = frame - 4 * PAGE_SIZE;
    for (pfn, perms) in [
        (0, "---s"),
        (3, "---s"),
        (4, "rw-s"),
        (7, "rw-s"),
        (8, "---s"),
        (12, "rw-s"),
        (15, "rw-s"),
    ] {
        assert_eq!(permissions_at(base + pfn * PAGE_SIZE), perms, "frame {pfn}");
    }
    // Highmem is not mapped at all.
    assert!(
        mappings_at(base + 16 * PAGE_SIZE)
            .iter()
            .all(|l| !l.contains("memfd:kmm-phys"))
    );
    drop(mem);
    for pfn in [0, 4, 15] {
        assert_eq!(mappings_at(base + pfn * PAGE_SIZE), Vec::<String>::new());
    }
}
