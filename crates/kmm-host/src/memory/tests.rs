//! Unit tests of the frame bookkeeping behind `HostMemory`.

use kmm_page::{PAGE_SIZE, Pfn, PfnRange};

use crate::{HostError, HostMemory};

fn memory() -> HostMemory {
    // Adjacent ranges [4, 8) and [8, 10), a hole [10, 12), then [12, 16); highmem from 9.
    HostMemory::new(
        &[
            PfnRange::new(12, 16),
            PfnRange::new(4, 8),
            PfnRange::new(8, 10),
        ],
        Pfn(9),
    )
    .unwrap()
}

#[test]
fn ranges_are_sorted_and_bounded() {
    let mem = memory();
    assert_eq!(
        mem.ranges(),
        [
            PfnRange::new(4, 8),
            PfnRange::new(8, 10),
            PfnRange::new(12, 16)
        ]
    );
    assert_eq!((mem.end_pfn(), mem.lowmem_end()), (Pfn(16), Pfn(9)));
    assert_eq!(mem.map.len, 9 * PAGE_SIZE);
}

#[test]
fn coverage_follows_the_ranges() {
    let mem = memory();
    let present: Vec<usize> = (0..20).filter(|&p| mem.has_frame(Pfn(p))).collect();
    assert_eq!(present, [4, 5, 6, 7, 8, 9, 12, 13, 14, 15]);
    // Across the seam of two adjacent ranges.
    assert!(mem.covers(Pfn(6), Pfn(10)));
    // Into the hole, from before the first range, past the end.
    assert!(!mem.covers(Pfn(9), Pfn(11)));
    assert!(!mem.covers(Pfn(3), Pfn(5)));
    assert!(!mem.covers(Pfn(15), Pfn(17)));
    // An empty span is covered wherever it is.
    assert!(mem.covers(Pfn(11), Pfn(11)));
}

#[test]
fn byte_ranges_must_stay_inside_a_frame() {
    let mem = memory();
    assert_eq!(
        mem.file_offset(Pfn(5), 10, 20).unwrap(),
        (5 * PAGE_SIZE + 10) as u64
    );
    assert_eq!(
        mem.file_offset(Pfn(5), PAGE_SIZE, 0).unwrap(),
        (6 * PAGE_SIZE) as u64
    );
    assert!(matches!(
        mem.file_offset(Pfn(5), PAGE_SIZE - 1, 2),
        Err(HostError::OutOfFrame { offset, len: 2 }) if offset == PAGE_SIZE - 1
    ));
    assert!(matches!(
        mem.file_offset(Pfn(5), usize::MAX, 1),
        Err(HostError::OutOfFrame {
            offset: usize::MAX,
            len: 1
        })
    ));
    assert!(matches!(
        mem.file_offset(Pfn(10), 0, 1),
        Err(HostError::NoMemory { pfn: Pfn(10) })
    ));
}

#[test]
fn a_machine_without_lowmem_has_no_direct_map() {
    let mem = HostMemory::new(&[PfnRange::new(0, 4)], Pfn(0)).unwrap();
    assert_eq!((mem.map.len, mem.lowmem_end()), (0, Pfn(0)));
    let empty = HostMemory::new(&[], Pfn(100)).unwrap();
    assert_eq!(
        (empty.map.len, empty.end_pfn(), empty.lowmem_end()),
        (0, Pfn(0), Pfn(0))
    );
}
