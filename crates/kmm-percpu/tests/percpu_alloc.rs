//! API tests of the dynamic per-CPU allocator: per-CPU copies, zeroing,
//! alignment, typed `this_cpu_*` operations, static variables, the reserved
//! region, `/proc/meminfo`, chunk sources, and every error with the state
//! unchanged after it.

use core::cell::Cell;

use kmm_percpu::{
    ChunkInfo, ChunkMemory, ChunkSource, FixedCpu, HeapChunks, NumberChunks, PAGE_SIZE,
    PERCPU_MODULE_RESERVE, PercpuAllocator, PercpuError, PercpuPtr, define_per_cpu,
};

/// A heap-backed allocator for `nr_cpus` CPUs and no static area.
fn heap(nr_cpus: usize) -> PercpuAllocator<HeapChunks> {
    PercpuAllocator::new(HeapChunks, nr_cpus, 0).unwrap()
}

/// Everything observable about an allocator's state.
fn snapshot<S: ChunkSource>(pcpu: &PercpuAllocator<S>) -> (Vec<ChunkInfo>, usize) {
    (pcpu.chunks_info(), pcpu.nr_pages())
}

/// Checks that `result` is `err` and that the state is as in `before`.
fn check_refused<S: ChunkSource, T: core::fmt::Debug>(
    pcpu: &PercpuAllocator<S>,
    before: &(Vec<ChunkInfo>, usize),
    result: Result<T, PercpuError>,
    err: PercpuError,
) {
    assert_eq!(result.unwrap_err(), err);
    assert_eq!(&snapshot(pcpu), before);
    pcpu.check_invariants().unwrap();
}

#[test]
fn copies_are_distinct_zeroed_and_apart_by_the_unit_size() {
    let pcpu = heap(4);
    let p = pcpu.alloc(64, 16).unwrap();
    let ptrs: Vec<usize> = (0..4)
        .map(|cpu| pcpu.per_cpu_ptr(p, cpu).unwrap().as_ptr() as usize)
        .collect();
    for (cpu, &addr) in ptrs.iter().enumerate() {
        assert_eq!(addr, ptrs[0] + cpu * pcpu.unit_size());
        assert_eq!(addr % 16, 0);
        assert_eq!(pcpu.per_cpu_addr(p, cpu).unwrap(), addr);
        assert_eq!(pcpu.per_cpu_read::<u64>(p.byte_add(56), cpu).unwrap(), 0);
    }
    assert_eq!(ptrs[0], p.addr());
}

#[test]
fn writes_to_one_copy_are_invisible_in_the_others() {
    let pcpu = heap(3);
    let p = pcpu.alloc_percpu::<[u32; 4]>().unwrap();
    pcpu.per_cpu_write::<u32>(p.byte_add(8), 1, 0xdead).unwrap();
    let word = |cpu| pcpu.per_cpu_read::<u32>(p.byte_add(8), cpu).unwrap();
    assert_eq!([word(0), word(1), word(2)], [0, 0xdead, 0]);
    // The same through the raw pointer of CPU 2.
    let raw = pcpu.per_cpu_ptr(p, 2).unwrap().cast::<u32>();
    // SAFETY: the pointer is to CPU 2's copy of a live 16-byte allocation,
    // aligned for `u32`, and no other thread touches it.
    unsafe { raw.add(2).write(7) };
    assert_eq!([word(0), word(1), word(2)], [0, 0xdead, 7]);
}

#[test]
fn reused_memory_is_zeroed_again() {
    let pcpu = heap(2);
    let p = pcpu.alloc(16, 8).unwrap();
    for cpu in 0..2 {
        pcpu.per_cpu_write::<u64>(p, cpu, u64::MAX).unwrap();
        pcpu.per_cpu_write::<u64>(p.byte_add(8), cpu, 5).unwrap();
    }
    pcpu.free_percpu(p).unwrap();
    let q = pcpu.alloc(16, 8).unwrap();
    assert_eq!(q, p);
    for cpu in 0..2 {
        assert_eq!(pcpu.per_cpu_read::<u64>(q, cpu), Ok(0));
        assert_eq!(pcpu.per_cpu_read::<u64>(q.byte_add(8), cpu), Ok(0));
    }
}

#[test]
fn alignment_up_to_a_page_is_honoured_in_every_unit() {
    let pcpu = heap(2);
    pcpu.alloc(4, 4).unwrap();
    for shift in 0..=12 {
        let align = 1 << shift;
        let p = pcpu.alloc(12, align).unwrap();
        for cpu in 0..2 {
            let addr = pcpu.per_cpu_ptr(p, cpu).unwrap().as_ptr() as usize;
            assert_eq!(addr % align, 0, "align {align} cpu {cpu}");
        }
    }
    pcpu.check_invariants().unwrap();
}

#[test]
fn illegal_sizes_and_alignments_are_refused_without_change() {
    let pcpu = heap(2);
    pcpu.alloc(8, 8).unwrap();
    let before = snapshot(&pcpu);
    for (size, align) in [
        (0, 4),
        (32769, 4),
        (usize::MAX, 4),
        (8, 3),
        (8, 0),
        (8, 2 * PAGE_SIZE),
    ] {
        let err = PercpuError::IllegalSizeOrAlign { size, align };
        check_refused(&pcpu, &before, pcpu.alloc(size, align), err);
        check_refused(&pcpu, &before, pcpu.alloc_reserved(size, align), err);
    }
    check_refused(
        &pcpu,
        &before,
        pcpu.alloc_percpu::<()>(),
        PercpuError::IllegalSizeOrAlign { size: 0, align: 1 },
    );
    // The largest legal request works.
    pcpu.alloc(32768, PAGE_SIZE).unwrap();
}

#[test]
fn double_foreign_and_interior_frees_are_refused_without_change() {
    let pcpu = heap(2);
    let p = pcpu.alloc(32, 4).unwrap();
    let q = pcpu.alloc(32, 4).unwrap();
    pcpu.free_percpu(p).unwrap();
    let before = snapshot(&pcpu);
    let not_allocated = |addr| PercpuError::NotAllocated { addr };
    check_refused(&pcpu, &before, pcpu.free_percpu(p), not_allocated(p.addr()));
    let inside = q.byte_add(4);
    check_refused(
        &pcpu,
        &before,
        pcpu.free_percpu(inside),
        not_allocated(inside.addr()),
    );
    let odd = q.byte_add(1);
    check_refused(
        &pcpu,
        &before,
        pcpu.free_percpu(odd),
        not_allocated(odd.addr()),
    );
    // Another allocator's pointer, and a made-up one.
    let other = heap(2);
    let theirs = other.alloc(32, 4).unwrap();
    let foreign = |addr| PercpuError::Foreign { addr };
    check_refused(
        &pcpu,
        &before,
        pcpu.free_percpu(theirs),
        foreign(theirs.addr()),
    );
    let made_up = PercpuPtr::from_addr(8);
    check_refused(&pcpu, &before, pcpu.free_percpu(made_up), foreign(8));
    // CPU 1's copy is not a handle: it lies beyond unit 0 of the chunk.
    let cpu1 = PercpuPtr::from_addr(pcpu.per_cpu_addr(q, 1).unwrap());
    check_refused(&pcpu, &before, pcpu.free_percpu(cpu1), foreign(cpu1.addr()));
    pcpu.free_percpu(q).unwrap();
    other.free_percpu(theirs).unwrap();
}

#[test]
fn access_to_freed_foreign_or_ill_fitting_handles_is_refused() {
    let pcpu = heap(2);
    let small = pcpu.alloc(4, 4).unwrap();
    let wide = pcpu.alloc(16, 8).unwrap();
    let freed = pcpu.alloc(8, 8).unwrap();
    pcpu.free_percpu(freed).unwrap();
    let before = snapshot(&pcpu);
    let ctx = FixedCpu::new(4);
    check_refused(
        &pcpu,
        &before,
        pcpu.per_cpu_read::<u64>(small, 0),
        PercpuError::OutOfBounds {
            addr: small.addr(),
            size: 8,
        },
    );
    check_refused(
        &pcpu,
        &before,
        pcpu.per_cpu_read::<u64>(wide.byte_add(4), 0),
        PercpuError::Misaligned {
            addr: wide.addr() + 4,
            align: 8,
        },
    );
    check_refused(
        &pcpu,
        &before,
        pcpu.per_cpu_ptr(freed, 0),
        PercpuError::NotLive { addr: freed.addr() },
    );
    check_refused(
        &pcpu,
        &before,
        pcpu.per_cpu_ptr(wide, 2),
        PercpuError::CpuOutOfRange { cpu: 2, nr_cpus: 2 },
    );
    check_refused(
        &pcpu,
        &before,
        pcpu.per_cpu_ptr(PercpuPtr::from_addr(4), 0),
        PercpuError::Foreign { addr: 4 },
    );
    ctx.set_current(3).unwrap();
    check_refused(
        &pcpu,
        &before,
        pcpu.this_cpu_add::<u64>(wide, &ctx, 1),
        PercpuError::CpuOutOfRange { cpu: 3, nr_cpus: 2 },
    );
    assert_eq!(ctx.preempt_count(), 0);
    assert_eq!(pcpu.per_cpu_sum::<u64>(wide), Ok(0));
}

#[test]
fn this_cpu_operations_touch_only_this_cpu_and_restore_preemption() {
    let pcpu = heap(3);
    let p = pcpu.alloc_percpu::<u64>().unwrap();
    let ctx = FixedCpu::new(3);
    ctx.set_current(1).unwrap();
    pcpu.this_cpu_inc::<u64>(p, &ctx).unwrap();
    pcpu.this_cpu_add(p, &ctx, 10u64).unwrap();
    assert_eq!(pcpu.this_cpu_add_return(p, &ctx, 5u64), Ok(16));
    pcpu.this_cpu_sub(p, &ctx, 4u64).unwrap();
    pcpu.this_cpu_dec::<u64>(p, &ctx).unwrap();
    assert_eq!(pcpu.this_cpu_read::<u64>(p, &ctx), Ok(11));
    ctx.set_current(2).unwrap();
    pcpu.this_cpu_write(p, &ctx, 7u64).unwrap();
    assert_eq!(pcpu.this_cpu_xchg(p, &ctx, 9u64), Ok(7));
    assert_eq!(ctx.preempt_count(), 0);
    let copies: Vec<u64> = (0..3)
        .map(|cpu| pcpu.per_cpu_read(p, cpu).unwrap())
        .collect();
    assert_eq!(copies, [0, 11, 9]);
    assert_eq!(pcpu.per_cpu_sum::<u64>(p), Ok(20));
    // Counters wrap, and a signed view of the same bytes sums to the right total.
    pcpu.this_cpu_sub(p, &ctx, 10u64).unwrap();
    assert_eq!(pcpu.per_cpu_read::<i64>(p, 2), Ok(-1));
    assert_eq!(pcpu.per_cpu_sum::<i64>(p), Ok(10));
    let this = pcpu.this_cpu_ptr(p, &ctx).unwrap();
    assert_eq!(this, pcpu.per_cpu_ptr(p, 2).unwrap());
}

#[test]
fn numbers_only_chunks_place_areas_but_hold_no_contents() {
    let pcpu = PercpuAllocator::new(NumberChunks::new(0xffff_c900_0000_0000), 2, 0).unwrap();
    let p = pcpu.alloc(64, 64).unwrap();
    let base = pcpu.chunks_info()[0].base;
    assert_eq!(base, 0xffff_c900_0000_0000);
    assert_eq!(p.addr(), base + PERCPU_MODULE_RESERVE);
    assert_eq!(pcpu.per_cpu_addr(p, 1), Ok(p.addr() + pcpu.unit_size()));
    let before = snapshot(&pcpu);
    let not_backed = PercpuError::NotBacked { addr: base };
    check_refused(&pcpu, &before, pcpu.per_cpu_ptr(p, 0), not_backed);
    check_refused(&pcpu, &before, pcpu.per_cpu_read::<u32>(p, 0), not_backed);
    pcpu.free_percpu(p).unwrap();
}

#[test]
fn a_source_that_runs_out_leaves_the_state_unchanged() {
    let pcpu = PercpuAllocator::new(NumberChunks::with_limit(0x10_0000, 2), 2, 0).unwrap();
    let big = pcpu.alloc(32 * 1024, 4).unwrap();
    let before = snapshot(&pcpu);
    check_refused(
        &pcpu,
        &before,
        pcpu.alloc(32 * 1024, 4),
        PercpuError::OutOfMemory {
            size: 32 * 1024,
            chunk_bytes: 2 * pcpu.unit_size(),
        },
    );
    pcpu.free_percpu(big).unwrap();
    // The empty chunk is kept and used again.
    pcpu.alloc(32 * 1024, 4).unwrap();
    assert_eq!(pcpu.source().live(), 2);
}

/// A source whose chunks are too short, or overlap the first chunk.
#[derive(Debug, Default)]
struct BadSource {
    calls: Cell<usize>,
    given_back: Cell<usize>,
}

impl ChunkSource for BadSource {
    fn alloc_chunk(&self, bytes: usize) -> Result<ChunkMemory, PercpuError> {
        self.calls.set(self.calls.get() + 1);
        match self.calls.get() {
            1 => ChunkMemory::numbers(0x10_0000, bytes),
            2 => ChunkMemory::numbers(0x20_0000, bytes - 4),
            _ => ChunkMemory::numbers(0x10_0000 + PAGE_SIZE, bytes),
        }
    }

    fn free_chunk(&self, _mem: ChunkMemory) {
        self.given_back.set(self.given_back.get() + 1);
    }
}

#[test]
fn bad_chunks_are_given_back_and_refused() {
    let pcpu = PercpuAllocator::new(BadSource::default(), 2, 0).unwrap();
    let want = 2 * pcpu.unit_size();
    let before = snapshot(&pcpu);
    check_refused(
        &pcpu,
        &before,
        pcpu.alloc(32 * 1024, 4),
        PercpuError::BadChunk {
            addr: 0x20_0000,
            len: want - 4,
            want,
        },
    );
    check_refused(
        &pcpu,
        &before,
        pcpu.alloc(32 * 1024, 4),
        PercpuError::BadChunk {
            addr: 0x10_0000 + PAGE_SIZE,
            len: want,
            want,
        },
    );
    assert_eq!(pcpu.source().given_back.get(), 2);
    drop(pcpu);
}

#[test]
fn dropping_the_allocator_gives_every_chunk_back() {
    let source = NumberChunks::new(0x10_0000);
    let pcpu = PercpuAllocator::new(&source, 2, 0).unwrap();
    pcpu.alloc(32 * 1024, 4).unwrap();
    assert_eq!(source.live(), 2);
    drop(pcpu);
    assert_eq!(source.live(), 0);
}

#[test]
fn the_reserved_region_is_separate_and_limited() {
    let pcpu = PercpuAllocator::new(HeapChunks, 2, 128).unwrap();
    let first = pcpu.chunks_info()[0].base;
    let r = pcpu.alloc_reserved(4096, 8).unwrap();
    assert_eq!(r.addr(), first + 128);
    let s = pcpu.alloc_reserved(4000, 8).unwrap();
    assert_eq!(s.addr(), first + 128 + 4096);
    let before = snapshot(&pcpu);
    check_refused(
        &pcpu,
        &before,
        pcpu.alloc_reserved(200, 8),
        PercpuError::ReservedFull {
            size: 200,
            align: 8,
        },
    );
    let d = pcpu.alloc(8, 8).unwrap();
    assert_eq!(d.addr(), first + 128 + PERCPU_MODULE_RESERVE);
    pcpu.per_cpu_write::<u64>(s, 1, 3).unwrap();
    pcpu.free_percpu(r).unwrap();
    pcpu.free_percpu(s).unwrap();
    assert_eq!(pcpu.alloc_reserved(8192, 4).unwrap(), r);
    pcpu.check_invariants().unwrap();
}

define_per_cpu! {
    /// A counter every test CPU bumps.
    static EVENTS: u64;
    static SMALL: u8;
    static PAIR: [u32; 2];
    static NEVER: u64;
}

#[test]
fn static_variables_live_in_the_static_area() {
    let pcpu = PercpuAllocator::new(HeapChunks, 2, 24).unwrap();
    let events = EVENTS.register(&pcpu).unwrap();
    let small = SMALL.register(&pcpu).unwrap();
    let pair = pcpu.register_static(&PAIR).unwrap();
    let first = pcpu.chunks_info()[0].base;
    assert_eq!(
        [events.addr(), small.addr(), pair.addr()],
        [first, first + 8, first + 12]
    );
    assert_eq!(EVENTS.ptr(&pcpu), Ok(events));
    let ctx = FixedCpu::new(2);
    ctx.set_current(1).unwrap();
    EVENTS.this_cpu_add(&pcpu, &ctx, 5).unwrap();
    EVENTS.this_cpu_write(&pcpu, &ctx, 6).unwrap();
    assert_eq!(EVENTS.this_cpu_read(&pcpu, &ctx), Ok(6));
    SMALL.this_cpu_add(&pcpu, &ctx, 255).unwrap();
    assert_eq!(
        (EVENTS.per_cpu(&pcpu, 0), EVENTS.sum(&pcpu)),
        (Ok(0), Ok(6))
    );
    assert_eq!(
        (SMALL.per_cpu(&pcpu, 1), SMALL.per_cpu(&pcpu, 0)),
        (Ok(255), Ok(0))
    );
    pcpu.per_cpu_write::<u32>(pair.byte_add(4), 0, 9).unwrap();
    assert_eq!(pcpu.per_cpu_read::<u32>(pair, 0), Ok(0));
    // Each allocator has its own table: the same descriptor elsewhere.
    let other = PercpuAllocator::new(HeapChunks, 1, 8).unwrap();
    let elsewhere = EVENTS.register(&other).unwrap();
    assert_eq!(elsewhere.addr(), other.chunks_info()[0].base);
    assert_eq!(EVENTS.per_cpu(&other, 0), Ok(0));
    pcpu.check_invariants().unwrap();
}

#[test]
fn static_variable_errors_change_nothing() {
    let pcpu = PercpuAllocator::new(HeapChunks, 2, 12).unwrap();
    let events = EVENTS.register(&pcpu).unwrap();
    let before = snapshot(&pcpu);
    check_refused(
        &pcpu,
        &before,
        EVENTS.register(&pcpu),
        PercpuError::StaticAlreadyRegistered { name: "EVENTS" },
    );
    check_refused(
        &pcpu,
        &before,
        PAIR.register(&pcpu),
        PercpuError::StaticAreaFull {
            name: "PAIR",
            size: 8,
            align: 4,
        },
    );
    check_refused(
        &pcpu,
        &before,
        NEVER.this_cpu_read(&pcpu, &FixedCpu::new(2)),
        PercpuError::StaticNotRegistered { name: "NEVER" },
    );
    // A static variable is not a dynamic allocation: it cannot be freed.
    check_refused(
        &pcpu,
        &before,
        pcpu.free_percpu(events),
        PercpuError::NotAllocated {
            addr: events.addr(),
        },
    );
    // The unused rest of the static area is not live.
    let rest = events.byte_add(8);
    check_refused(
        &pcpu,
        &before,
        pcpu.per_cpu_ptr(rest, 0),
        PercpuError::NotLive { addr: rest.addr() },
    );
    // The last four bytes still fit a `u8`.
    assert_eq!(SMALL.register(&pcpu).unwrap(), rest);
}

#[test]
fn meminfo_counts_populated_pages_times_units() {
    let pcpu = heap(4);
    // The first chunk: 9 pages of 4 KiB per unit, all populated at boot.
    assert_eq!(pcpu.nr_pages(), 9 * 4);
    assert_eq!(pcpu.meminfo_line(), "Percpu:              144 kB");
    let p = pcpu.alloc(32 * 1024, PAGE_SIZE).unwrap();
    assert_eq!(pcpu.nr_pages(), (9 + 8) * 4);
    // The fuller chunk is tried first: the second chunk's last page fills.
    let q = pcpu.alloc(8, 8).unwrap();
    assert_eq!(q.addr(), p.addr() + 32 * 1024);
    assert_eq!(pcpu.nr_pages(), (9 + 9) * 4);
    // A second chunk that empties is kept; its pages stay populated.
    pcpu.free_percpu(p).unwrap();
    pcpu.free_percpu(q).unwrap();
    assert_eq!(pcpu.nr_pages(), (9 + 9) * 4);
    assert_eq!(pcpu.meminfo_line(), "Percpu:              288 kB");
}
