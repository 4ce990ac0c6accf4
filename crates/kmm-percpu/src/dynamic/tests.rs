//! Unit tests of the dynamic allocator's internals: slots, request checks,
//! first-chunk layout, slot relocation and the giving back of empty chunks.

use alloc::vec::Vec;

use super::{fragments, size_to_slot};
use crate::{
    ChunkInfo, NumberChunks, PAGE_SIZE, PERCPU_DYNAMIC_RESERVE, PERCPU_MODULE_RESERVE,
    PercpuAllocator, PercpuError,
};

/// A numbers-only allocator for `nr_cpus` CPUs with a static area.
fn numbers(nr_cpus: usize, static_size: usize) -> PercpuAllocator<NumberChunks> {
    PercpuAllocator::new(NumberChunks::new(0x10_0000), nr_cpus, static_size).unwrap()
}

/// The dynamic chunks (all but the first).
fn dynamic_chunks(pcpu: &PercpuAllocator<NumberChunks>) -> Vec<ChunkInfo> {
    pcpu.chunks_info()
        .into_iter()
        .filter(|c| !c.first)
        .collect()
}

#[test]
fn size_to_slot_follows_the_kernel_formula() {
    // `max(fls(size) - 5 + 2, 1)`: sizes up to 15 bytes share slot 1.
    let slots: Vec<usize> = [1, 4, 15, 16, 31, 32, 4096, 32768, 36864]
        .iter()
        .map(|&s| size_to_slot(s))
        .collect();
    assert_eq!(slots, [1, 1, 1, 2, 2, 3, 10, 13, 13]);
    assert_eq!(size_to_slot(0), 1);
}

#[test]
fn requests_round_to_fragments() {
    assert_eq!(fragments(1, 1), Ok((1, 1)));
    assert_eq!(fragments(5, 2), Ok((2, 1)));
    assert_eq!(fragments(8, 8), Ok((2, 2)));
    assert_eq!(fragments(32768, 4096), Ok((8192, 1024)));
    for (size, align) in [(0, 4), (32769, 4), (8, 3), (8, 0), (8, 8192)] {
        assert_eq!(
            fragments(size, align),
            Err(PercpuError::IllegalSizeOrAlign { size, align })
        );
    }
}

#[test]
fn the_first_chunk_is_static_reserved_dynamic() {
    let pcpu = numbers(3, 1000);
    assert_eq!(pcpu.static_size(), 1000);
    assert_eq!(pcpu.reserved_size(), PERCPU_MODULE_RESERVE);
    // 1000 + 8 KiB + 28 KiB rounds up to 10 pages; the dynamic region takes the slack.
    assert_eq!(pcpu.unit_size(), 10 * PAGE_SIZE);
    assert_eq!(
        pcpu.dyn_size(),
        10 * PAGE_SIZE - 1000 - PERCPU_MODULE_RESERVE
    );
    assert!(pcpu.dyn_size() >= PERCPU_DYNAMIC_RESERVE);
    let chunks = pcpu.chunks_info();
    assert_eq!(chunks.len(), 1);
    let first = &chunks[0];
    assert!(first.first && !first.backed);
    assert_eq!((first.start_offset, first.end_offset), (1000, 0));
    assert_eq!(first.free_bytes, 10 * PAGE_SIZE - 1000);
    assert_eq!(first.contig_bytes, pcpu.dyn_size());
    assert_eq!(first.populated_pages, 10);
    assert_eq!(first.slot, size_to_slot(pcpu.dyn_size()));
    assert_eq!(pcpu.nr_pages(), 30);
    pcpu.check_invariants().unwrap();
}

#[test]
fn no_cpus_means_the_boot_cpu() {
    let pcpu = numbers(0, 0);
    assert_eq!(pcpu.nr_cpus(), 1);
    assert_eq!(pcpu.unit_size(), 9 * PAGE_SIZE);
    assert_eq!((pcpu.unit_offset(0), pcpu.unit_offset(1)), (Some(0), None));
}

#[test]
fn a_huge_static_area_is_refused() {
    let err = PercpuAllocator::new(NumberChunks::new(0x10_0000), 2, usize::MAX).unwrap_err();
    assert_eq!(
        err,
        PercpuError::StaticTooLarge {
            static_size: usize::MAX
        }
    );
}

#[test]
fn chunks_move_between_slots_as_they_fill_and_empty() {
    let pcpu = numbers(2, 0);
    // A 32 KiB area does not fit the first chunk's 28 KiB: a new chunk.
    let big = pcpu.alloc(32 * 1024, 4).unwrap();
    let dynamic = dynamic_chunks(&pcpu);
    assert_eq!(dynamic.len(), 1);
    assert_eq!(big.addr(), dynamic[0].base);
    assert_eq!(dynamic[0].contig_bytes, 4096);
    assert_eq!(dynamic[0].slot, size_to_slot(4096));
    assert_eq!(dynamic[0].populated_pages, 8);
    pcpu.check_invariants().unwrap();
    // Filling the rest sends it to slot 0 (full).
    let rest = pcpu.alloc(4096, 4096).unwrap();
    assert_eq!(dynamic_chunks(&pcpu)[0].slot, 0);
    // Emptying it puts it on the free slot, and it stays (one empty chunk is kept).
    pcpu.free_percpu(big).unwrap();
    pcpu.free_percpu(rest).unwrap();
    let dynamic = dynamic_chunks(&pcpu);
    assert_eq!(dynamic.len(), 1);
    assert_eq!(dynamic[0].slot, size_to_slot(pcpu.unit_size()) + 1);
    assert_eq!(dynamic[0].alloc_map.count_ones(), 0);
    assert_eq!(pcpu.source().live(), 2);
    pcpu.check_invariants().unwrap();
}

#[test]
fn a_second_empty_chunk_is_given_back() {
    let pcpu = numbers(2, 0);
    let a = pcpu.alloc(32 * 1024, 4).unwrap();
    let b = pcpu.alloc(32 * 1024, 4).unwrap();
    assert_eq!(pcpu.nr_chunks(), 3);
    let pages = pcpu.nr_pages();
    pcpu.free_percpu(a).unwrap();
    assert_eq!(pcpu.nr_chunks(), 3);
    pcpu.free_percpu(b).unwrap();
    // `b`'s chunk emptied last and sits first on the free slot; `a`'s goes back.
    let dynamic = dynamic_chunks(&pcpu);
    assert_eq!(dynamic.len(), 1);
    assert_eq!(dynamic[0].base, b.addr());
    assert_eq!(pcpu.source().live(), 2);
    assert_eq!(pcpu.nr_pages(), pages - 2 * 8);
    pcpu.check_invariants().unwrap();
    // Small requests still go to the first chunk, which is not full.
    let first = pcpu.chunks_info()[0].base;
    let c = pcpu.alloc(8, 8).unwrap();
    assert_eq!(c.addr(), first + PERCPU_MODULE_RESERVE);
    // The empty chunk is used before a new one is made.
    let d = pcpu.alloc(32 * 1024, 4).unwrap();
    assert_eq!(d, b);
    assert_eq!(pcpu.source().live(), 2);
    pcpu.check_invariants().unwrap();
}

#[test]
fn small_requests_fill_the_first_chunk_before_a_new_one() {
    let pcpu = numbers(1, 0);
    let first = pcpu.chunks_info()[0].base;
    let mut ptrs = Vec::new();
    for _ in 0..pcpu.dyn_size() / 1024 {
        let p = pcpu.alloc(1024, 4).unwrap();
        assert!(p.addr() >= first && p.addr() < first + pcpu.unit_size());
        ptrs.push(p);
    }
    assert_eq!(pcpu.nr_chunks(), 1);
    assert_eq!(pcpu.chunks_info()[0].slot, 0);
    let spill = pcpu.alloc(4, 4).unwrap();
    assert_eq!(pcpu.nr_chunks(), 2);
    assert!(spill.addr() >= first + pcpu.unit_size());
    pcpu.check_invariants().unwrap();
}
