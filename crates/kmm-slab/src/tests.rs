//! Unit tests: layout and order arithmetic against the kernel's worked
//! examples, and small end-to-end runs over heap-backed memory, one of them
//! with threads sharing a CPU (Miri-friendly, so Miri checks the lockless
//! fast path's synchronisation), one as a CPU's exclusive owner.

extern crate std;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;

use kmm_gfp::GFP_KERNEL;
use kmm_page::{PAGE_SIZE, PageAllocator, Pfn, PhysMemory};
use kmm_percpu::{CpuContext, FixedCpu};

use crate::layout::{
    Divisor, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, SlotIndex, calculate_alignment,
    calculate_order, calculate_sizes, kmalloc_class, kmalloc_index, kmalloc_size,
    kmalloc_size_for_align, kmalloc_size_roundup, min_objects_for, min_partial,
};
use crate::{SlabAllocator, SlabError, SlabFlags};

#[test]
fn sizes_rounded_for_an_alignment_land_in_classes_aligned_to_it() {
    assert_eq!(kmalloc_size_for_align(5, 8), Some(5));
    assert_eq!(kmalloc_size_for_align(0, 16), Some(0));
    assert_eq!(kmalloc_size_for_align(100, 16), Some(112));
    assert_eq!(kmalloc_size_for_align(4368, 4096), Some(8192));
    assert_eq!(kmalloc_size_for_align(usize::MAX - 8, 16), None);
    // Sizes up to two pages, every alignment up to a page: the class
    // the rounded size falls in has a slot size (or block) that is a multiple
    // of the alignment or a power of two at least as large.
    for shift in 4..=12 {
        let align = 1usize << shift;
        // Every size natively; a sample under Miri, which is slow.
        for size in (1..=8192).step_by(if cfg!(miri) { 61 } else { 1 }) {
            let rounded = kmalloc_size_for_align(size, align).unwrap();
            assert!(rounded >= size && rounded.is_multiple_of(align));
            let class = kmalloc_size_roundup(rounded).unwrap();
            assert!(
                class.is_multiple_of(align),
                "size {size} align {align}: class {class}"
            );
        }
    }
}

#[test]
fn kmalloc_index_matches_the_kernel_table() {
    let cases = [
        (0, 0),
        (1, 3),
        (8, 3),
        (9, 4),
        (16, 4),
        (17, 5),
        (32, 5),
        (33, 6),
        (64, 6),
        (65, 1),
        (96, 1),
        (97, 7),
        (128, 7),
        (129, 2),
        (192, 2),
        (193, 8),
        (256, 8),
        (257, 9),
        (1024, 10),
        (1025, 11),
        (4096, 12),
        (4097, 13),
        (8192, 13),
    ];
    for (size, idx) in cases {
        assert_eq!(kmalloc_index(size), Some(idx), "size {size}");
    }
    assert_eq!(kmalloc_index(8193), None);
}

#[test]
fn kmalloc_size_roundup_is_the_class_size_then_whole_blocks() {
    // The table lookup agrees with `kmalloc_size(kmalloc_index(size))` at
    // every size a slab cache serves (a sample under Miri).
    for size in (0..=KMALLOC_MAX_CACHE_SIZE).step_by(if cfg!(miri) { 37 } else { 1 }) {
        let class = kmalloc_size(kmalloc_index(size).unwrap());
        assert_eq!(kmalloc_size_roundup(size), Some(class), "size {size}");
    }
    for size in [1, 8, 9, 96, 97, 192, 193, 8191, 8192] {
        let class = kmalloc_size(kmalloc_index(size).unwrap());
        assert_eq!(kmalloc_size_roundup(size), Some(class), "size {size}");
    }
    // Above, the power-of-two block of the page allocator, up to the largest.
    assert_eq!(kmalloc_size_roundup(8193), Some(4 * PAGE_SIZE));
    assert_eq!(kmalloc_size_roundup(3 * PAGE_SIZE), Some(4 * PAGE_SIZE));
    assert_eq!(
        kmalloc_size_roundup(KMALLOC_MAX_SIZE),
        Some(KMALLOC_MAX_SIZE)
    );
    assert_eq!(kmalloc_size_roundup(KMALLOC_MAX_SIZE + 1), None);
    assert_eq!(kmalloc_size_roundup(usize::MAX), None);
}

#[test]
fn kmalloc_class_is_the_kernel_index_less_one() {
    for size in 1..=KMALLOC_MAX_CACHE_SIZE {
        assert_eq!(
            kmalloc_class(size),
            kmalloc_index(size).map(|i| i - 1),
            "size {size}"
        );
    }
    for size in [0, KMALLOC_MAX_CACHE_SIZE + 1, usize::MAX] {
        assert_eq!(kmalloc_class(size), None, "size {size}");
    }
}

#[test]
fn slab_order_worked_examples() {
    assert_eq!(min_objects_for(8), 20);
    assert_eq!(min_objects_for(4), 16);
    assert_eq!(min_objects_for(1), 8);
    // 8 CPUs: kmalloc-8 order 0 (512 objects), kmalloc-512 order 2, 4k and 8k order 3.
    assert_eq!(calculate_order(8, 8), Some(0));
    assert_eq!(calculate_order(512, 8), Some(2));
    assert_eq!(calculate_order(4096, 8), Some(3));
    assert_eq!(calculate_order(8192, 8), Some(3));
    // 4 CPUs: kmalloc-512 order 1.
    assert_eq!(calculate_order(512, 4), Some(1));
    // One object bigger than an order-3 slab: get_order(size).
    assert_eq!(calculate_order(100_000, 2), Some(5));
    assert_eq!(calculate_order(PAGE_SIZE << 11, 2), None);
}

#[test]
fn alignment_and_sizes() {
    assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 100), 64);
    assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 20), 32);
    assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 8), 8);
    assert_eq!(calculate_alignment(SlabFlags::empty(), 0, 8), 8);
    assert_eq!(calculate_alignment(SlabFlags::empty(), 4, 8), 8);
    let l = calculate_sizes(100, 8, SlabFlags::empty(), false, 2).unwrap();
    // Free pointer in the middle: ALIGN_DOWN(100 / 2, 8) = 48.
    assert_eq!(
        (l.size, l.inuse, l.offset, l.red_left_pad),
        (104, 104, 48, 0)
    );
    let l = calculate_sizes(100, 8, SlabFlags::empty(), true, 2).unwrap();
    assert_eq!((l.size, l.offset), (112, 104));
    assert_eq!(min_partial(8), 5);
    assert_eq!(min_partial(1 << 20), 10);
    assert_eq!(min_partial(8192), 6);
}

#[test]
fn caches_without_debug_flags_have_whole_word_slots_and_free_pointers() {
    // The free fast paths store the free pointer without testing its
    // alignment, relying on this for every cache that takes them.
    let word = size_of::<usize>();
    let flag_sets = [
        SlabFlags::empty(),
        SlabFlags::HWCACHE_ALIGN,
        SlabFlags::RECLAIM_ACCOUNT | SlabFlags::CACHE_DMA,
    ];
    for flags in flag_sets {
        for align in [0, 1, 2, 4, 8, 16, 64, 256, 4096] {
            for size in (1..=8192).step_by(if cfg!(miri) { 97 } else { 1 }) {
                for ctor in [false, true] {
                    let a = calculate_alignment(flags, align, size);
                    let l = calculate_sizes(size, a, flags, ctor, 2).unwrap();
                    assert!(
                        l.size.is_multiple_of(word) && l.offset.is_multiple_of(word),
                        "size {size} align {align} {flags:?} ctor {ctor}: {l:?}"
                    );
                }
            }
        }
    }
}

/// Slot sizes for the division tests: powers of two, odd multiples of a
/// word, a debug-sized 4104, and the largest slab's size.
const SLOT_SIZES: [usize; 14] = [
    8,
    16,
    24,
    40,
    64,
    96,
    104,
    192,
    1000,
    3000,
    4104,
    8192,
    100_000,
    1 << 22,
];

#[test]
fn slot_index_accepts_exactly_the_object_starts() {
    for size in SLOT_SIZES {
        let ix = SlotIndex::new(size);
        let limit = u64::MAX / size as u64;
        let step = if cfg!(miri) { 997 } else { 13 };
        // Offsets in and around a 4 MiB slab, and ones a foreign address
        // wraps to.
        let near = (0..(1usize << 22) + 2 * size).step_by(step);
        let far = [
            usize::MAX,
            usize::MAX - size + 1,
            1 << 63,
            (1 << 63) + size,
            usize::MAX / 3,
        ];
        for off in near.chain((0..64).map(|i| i * size)).chain(far) {
            let got = ix.index(off);
            if off % size == 0 {
                assert_eq!(got, (off / size) as u64, "{off} / {size}");
            } else {
                assert!(got > limit, "{off} is not a multiple of {size}: {got}");
            }
        }
    }
}

#[test]
fn divisor_tells_the_multiples_of_the_slot_size() {
    for size in SLOT_SIZES {
        let d = Divisor::new(size);
        // Miri interprets every step: there, a sparser sweep of the same range.
        let step = if cfg!(miri) { 1999 } else { 7 };
        let edges = [
            size - 1,
            size,
            size + 1,
            u32::MAX as usize,
            (u32::MAX as usize / size) * size,
        ];
        for n in (0..(1usize << 22) + 2 * size).step_by(step).chain(edges) {
            assert_eq!(d.divides(n), n % size == 0, "{n} by {size}");
        }
    }
}

/// Frames `[0, pages)` backed by one page-aligned heap buffer (Miri can run this).
struct HeapMemory {
    base: NonNull<u8>,
    pages: usize,
}

impl HeapMemory {
    fn layout(pages: usize) -> core::alloc::Layout {
        core::alloc::Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap()
    }

    fn new(pages: usize) -> HeapMemory {
        // SAFETY: the layout has a non-zero size (tests never ask for 0 pages).
        let base =
            NonNull::new(unsafe { alloc::alloc::alloc_zeroed(Self::layout(pages)) }).unwrap();
        HeapMemory { base, pages }
    }
}

impl Drop for HeapMemory {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc_zeroed` with this very layout.
        unsafe { alloc::alloc::dealloc(self.base.as_ptr(), Self::layout(self.pages)) };
    }
}

// SAFETY: the buffer is owned by `HeapMemory` and reached only through the
// `PhysMemory` contract; nothing in it is bound to a thread.
unsafe impl Send for HeapMemory {}
// SAFETY: `HeapMemory` itself never touches the buffer through `&self`.
unsafe impl Sync for HeapMemory {}

// SAFETY: 1. each address is `base + pfn * PAGE_SIZE` inside the buffer,
// page-aligned, valid while `self` lives; 2. distinct frames are disjoint;
// 3. `HeapMemory` never reads or writes the bytes itself.
unsafe impl PhysMemory for HeapMemory {
    fn direct_map(&self, pfn: Pfn) -> Option<NonNull<u8>> {
        (pfn.0 < self.pages)
            .then(|| NonNull::new(self.base.as_ptr().wrapping_add(pfn.0 * PAGE_SIZE)).unwrap())
    }
    fn virt_to_pfn(&self, addr: usize) -> Option<Pfn> {
        let off = addr.checked_sub(self.base.as_ptr().addr())?;
        (off / PAGE_SIZE < self.pages).then_some(Pfn(off / PAGE_SIZE))
    }
    fn has_memory(&self) -> bool {
        true
    }
}

fn boot(
    pages: usize,
    cpus: usize,
) -> (
    Arc<kmm_zone::ZonedAllocator<kmm_buddy::EagerBuddy>>,
    SlabAllocator,
    Arc<FixedCpu>,
) {
    let cpu = Arc::new(FixedCpu::new(cpus));
    let za = toy_pages(pages, cpu.clone());
    // The unit tests go through the `dyn` seams (the default type
    // parameters); the integration tests instantiate over concrete types.
    let pa: Arc<dyn PageAllocator> = za.clone();
    let ctx: Arc<dyn CpuContext> = cpu.clone();
    let slab = SlabAllocator::new(pa, ctx).unwrap();
    (za, slab, cpu)
}

/// The page allocator of a toy machine of `pages` pages of heap memory,
/// without per-CPU page lists, on CPU context `ctx`.
fn toy_pages(
    pages: usize,
    ctx: Arc<dyn CpuContext>,
) -> Arc<kmm_zone::ZonedAllocator<kmm_buddy::EagerBuddy>> {
    let cfg = kmm_zone::ZonedConfig {
        layout: kmm_zone::MachineLayout::toy(pages, None),
        pcp: false,
        min_free_kbytes: None,
    };
    Arc::new(kmm_zone::ZonedAllocator::new(cfg, ctx, Arc::new(HeapMemory::new(pages))).unwrap())
}

fn free_pages(za: &kmm_zone::ZonedAllocator<kmm_buddy::EagerBuddy>) -> usize {
    za.snapshots().iter().map(|s| s.free_pages).sum()
}

#[test]
fn end_to_end_on_heap_memory() {
    let (za, slab, cpu) = boot(64, 2);
    let free0 = free_pages(&za);
    let c = slab
        .kmem_cache_create("obj", 40, 0, SlabFlags::empty(), None)
        .unwrap();
    let mut ps = Vec::new();
    for i in 0..150u8 {
        let p = slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
        // SAFETY: `p` is a live 40-byte object.
        unsafe { p.as_ptr().write_bytes(i, 40) };
        ps.push((p, i));
    }
    let k = slab.kmalloc(300, GFP_KERNEL).unwrap();
    let big = slab.kmalloc(10_000, GFP_KERNEL).unwrap();
    let k2 = slab.krealloc(Some(k), 600, GFP_KERNEL).unwrap();
    assert_eq!(slab.ksize(k2), Ok(1024));
    cpu.set_current(1).unwrap();
    for (p, i) in ps.drain(..) {
        // SAFETY: `p` is a live 40-byte object.
        let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), 40) };
        assert!(bytes.iter().all(|&b| b == i));
        slab.kmem_cache_free(&c, p).unwrap();
    }
    assert!(matches!(
        slab.kfree(Some(NonNull::new(big.as_ptr().wrapping_add(8)).unwrap())),
        Err(SlabError::NotObjectStart { .. })
    ));
    slab.kfree(Some(big)).unwrap();
    slab.kfree(Some(k2)).unwrap();
    slab.check_invariants().unwrap();
    slab.kmem_cache_destroy(&c).unwrap();
    slab.shrink_all();
    assert_eq!(slab.slab_pages(), 0);
    assert_eq!(free_pages(&za), free0);
}

#[test]
fn debug_cache_on_heap_memory() {
    let (_za, slab, _cpu) = boot(16, 1);
    let c = slab
        .kmem_cache_create("dbg", 24, 0, SlabFlags::POISON | SlabFlags::RED_ZONE, None)
        .unwrap();
    let p = slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    slab.kmem_cache_free(&c, p).unwrap();
    // SAFETY: the freed object's slab is still held by the cache (nothing
    // shrinks it), so byte 3 is mapped slab memory; the write after free is
    // the planted bug that poisoning must report.
    unsafe { p.as_ptr().add(3).write(1) };
    assert!(matches!(
        slab.kmem_cache_alloc(&c, GFP_KERNEL),
        Err(SlabError::Poisoned {
            offset: 3,
            byte: 1,
            ..
        })
    ));
    let q = slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    // SAFETY: byte 24 is the right red zone of the live object `q` in a held slab.
    unsafe { q.as_ptr().add(24).write(7) };
    assert!(matches!(
        slab.kmem_cache_free(&c, q),
        Err(SlabError::RedZone {
            offset: 24,
            byte: 7,
            ..
        })
    ));
    slab.check_invariants().unwrap();
}

#[test]
fn threads_sharing_a_cpu_on_heap_memory() {
    // One CPU: both workers pop and push on the same CPU freelist while a
    // third thread keeps closing it (shrink and slabinfo). Objects are not
    // written, so every access Miri sees is the slab layer's own.
    let rounds = if cfg!(miri) { 24 } else { 5_000 };
    let (za, slab, _cpu) = boot(32, 1);
    let free0 = free_pages(&za);
    let c = slab
        .kmem_cache_create("shared", 32, 0, SlabFlags::empty(), None)
        .unwrap();
    let done = core::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let (slab, c, done) = (&slab, &c, &done);
        s.spawn(move || {
            while !done.load(core::sync::atomic::Ordering::Relaxed) {
                slab.kmem_cache_shrink(c).unwrap();
                if !cfg!(miri) {
                    // Counting closes every slot too (slow under Miri).
                    let _ = slab.slabinfo();
                }
                std::thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..2)
            .map(|t| {
                s.spawn(move || {
                    let mut live = Vec::new();
                    for i in 0..rounds {
                        if (i + t) % 3 != 2 {
                            live.push(Obj(slab.kmem_cache_alloc(c, GFP_KERNEL).unwrap()));
                        } else if let Some(a) = live.pop() {
                            slab.kmem_cache_free(c, a.0).unwrap();
                        }
                    }
                    live
                })
            })
            .collect();
        let lives: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        done.store(true, core::sync::atomic::Ordering::Relaxed);
        let mut all: Vec<_> = lives
            .into_iter()
            .flat_map(|l| l.unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        let n = all.len();
        all.sort_unstable_by_key(|o| o.0);
        all.dedup_by_key(|o| o.0);
        assert_eq!(all.len(), n, "an object was handed out twice");
        for a in all {
            slab.kmem_cache_free(c, a.0).unwrap();
        }
    });
    slab.check_invariants().unwrap();
    slab.kmem_cache_destroy(&c).unwrap();
    slab.shrink_all();
    assert_eq!(free_pages(&za), free0);
}

#[test]
fn a_local_cache_beside_other_threads_on_heap_memory() {
    // The holder pops and pushes its slab with no atomic read-modify-write;
    // another thread allocates from the same cache and frees the holder's
    // objects (to the held slab's own freelist), while a third shrinks.
    // Natively the objects are written, by their owners only; under Miri
    // they are not, so that every access it checks is the slab layer's
    // own (a delayed CPU-slab pop may read a word of a slab that has since
    // gone to the holder, the race `raw::load_free_word` describes).
    let rounds = if cfg!(miri) { 24 } else { 4_000 };
    let stamp = !cfg!(miri);
    let (za, slab, _cpu) = boot(32, 1);
    let free0 = free_pages(&za);
    let c = slab
        .kmem_cache_create("held", 48, 0, SlabFlags::empty(), None)
        .unwrap();
    let done = core::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel::<Obj>();
    std::thread::scope(|s| {
        let (slab, c, done) = (&slab, &c, &done);
        s.spawn(move || {
            while !done.load(core::sync::atomic::Ordering::Relaxed) {
                slab.kmem_cache_shrink(c).unwrap();
                std::thread::yield_now();
            }
        });
        let other = s.spawn(move || {
            // Frees what the holder sends, and allocates and frees its own.
            for (i, o) in rx.into_iter().enumerate() {
                if stamp {
                    // SAFETY: the holder handed `o` over, with its bytes written.
                    assert_eq!(unsafe { o.0.as_ptr().read() }, 0x5a);
                }
                slab.kmem_cache_free(c, o.0).unwrap();
                if i % 4 == 0 {
                    let p = slab.kmem_cache_alloc(c, GFP_KERNEL).unwrap();
                    if stamp {
                        // SAFETY: `p` is a live 48-byte object of this thread.
                        unsafe { p.as_ptr().write_bytes(0xa5, 48) };
                    }
                    slab.kmem_cache_free(c, p).unwrap();
                }
            }
        });
        // Stops the shrinker however this thread leaves, so that a failed
        // check fails the test instead of leaving the scope waiting for it.
        let _stop = StopOnDrop(done);
        let mut local = slab.local_cache(c).unwrap();
        let mut live = Vec::new();
        for i in 0..rounds {
            let p = local.alloc(GFP_KERNEL).unwrap();
            if stamp {
                // SAFETY: `p` is a live 48-byte object of this thread.
                unsafe { p.as_ptr().write_bytes(0x5a, 48) };
            }
            live.push(p);
            if i % 3 == 0 {
                tx.send(Obj(live.swap_remove(0))).unwrap();
            } else if i % 3 == 1 {
                local.free(live.pop().unwrap()).unwrap();
            }
        }
        drop(tx);
        other.join().unwrap();
        for p in live {
            local.free(p).unwrap();
        }
        slab.check_invariants().unwrap();
        drop(local);
    });
    slab.check_invariants().unwrap();
    slab.kmem_cache_destroy(&c).unwrap();
    slab.shrink_all();
    assert_eq!(free_pages(&za), free0);
}

/// Raises its flag when dropped, on a panic too.
struct StopOnDrop<'a>(&'a core::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, core::sync::atomic::Ordering::Relaxed);
    }
}

/// An object handed from a worker thread back to the test's thread.
struct Obj(NonNull<u8>);

// SAFETY: the pointer is only passed back to the slab layer, which is
// `Sync`, or read by the thread it was handed to after its owner stopped
// writing it.
unsafe impl Send for Obj {}

/// The integration tests' [`sole::SoleThread`]: one thread that holds its CPU exclusively.
#[path = "../tests/common/sole.rs"]
mod sole;

#[test]
fn an_exclusive_owner_on_heap_memory() {
    let owner = Arc::new(sole::SoleThread(FixedCpu::new(2)));
    let za = toy_pages(64, owner.clone());
    let free0 = free_pages(&za);
    let slab = SlabAllocator::new(za.clone(), owner.clone()).unwrap();
    let c = slab
        .kmem_cache_create("owned", 24, 0, SlabFlags::empty(), None)
        .unwrap();
    let mut ps = Vec::new();
    for i in 0..200u32 {
        let p = slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
        // SAFETY: `p` is a live 24-byte object.
        unsafe { p.as_ptr().cast::<u32>().write(i) };
        ps.push((p, i));
        if i == 100 {
            // The counts close the slot from outside the fast path.
            let info = slab.slabinfo();
            let row = info.lines().find(|l| l.starts_with("owned ")).unwrap();
            assert_eq!(row.split_whitespace().nth(1), Some("101"));
        }
    }
    // The object freed last, freed again, is refused; so is a pointer inside an object.
    let (p, _) = ps.pop().unwrap();
    slab.kmem_cache_free(&c, p).unwrap();
    assert!(matches!(
        slab.kmem_cache_free(&c, p),
        Err(SlabError::DoubleFree { .. })
    ));
    let inside = NonNull::new(ps[0].0.as_ptr().wrapping_add(4)).unwrap();
    assert!(matches!(
        slab.kmem_cache_free(&c, inside),
        Err(SlabError::NotObjectStart { .. })
    ));
    // Half are freed from CPU 1, whose slab they are not in.
    owner.0.set_current(1).unwrap();
    for (p, i) in ps.drain(..100) {
        // SAFETY: `p` is a live 24-byte object.
        assert_eq!(unsafe { p.as_ptr().cast::<u32>().read() }, i);
        slab.kmem_cache_free(&c, p).unwrap();
    }
    assert!(slab.kmem_cache_shrink(&c).is_ok());
    owner.0.set_current(0).unwrap();
    for (p, i) in ps {
        // SAFETY: `p` is a live 24-byte object.
        assert_eq!(unsafe { p.as_ptr().cast::<u32>().read() }, i);
        slab.kmem_cache_free(&c, p).unwrap();
    }
    slab.check_invariants().unwrap();
    slab.kmem_cache_destroy(&c).unwrap();
    slab.shrink_all();
    assert_eq!(slab.slab_pages(), 0);
    assert_eq!(free_pages(&za), free0);
}

/// A context whose CPU number may lie beyond the machine, as a buggy or
/// hot-plugging context might report.
struct Astray {
    inner: FixedCpu,
    /// The CPU reported while set: beyond `nr_cpus`.
    beyond: core::sync::atomic::AtomicBool,
    /// While set, `current_cpu_quick` has no answer, so the slab entry
    /// points take their out-of-line copies.
    no_quick: core::sync::atomic::AtomicBool,
}

// SAFETY: never reports exclusivity (the default `current_cpu_exclusive`),
// so the slab layer takes its compare-exchange paths, which are sound for
// any CPU number.
unsafe impl CpuContext for Astray {
    fn nr_cpus(&self) -> usize {
        self.inner.nr_cpus()
    }
    fn current_cpu(&self) -> usize {
        if self.beyond.load(core::sync::atomic::Ordering::Relaxed) {
            self.inner.nr_cpus() + 5
        } else {
            self.inner.current_cpu()
        }
    }
    fn preempt_disable(&self) {
        self.inner.preempt_disable();
    }
    fn preempt_enable(&self) {
        self.inner.preempt_enable();
    }
    fn current_cpu_quick(&self) -> Option<(usize, bool)> {
        if self.no_quick.load(core::sync::atomic::Ordering::Relaxed) {
            None
        } else {
            Some(self.current_cpu_exclusive())
        }
    }
}

/// A slab layer on a toy machine with an [`Astray`] context (CPU 0 of 2,
/// or beyond the machine; with or without quick answers), a 48-byte cache,
/// and the machine's free pages before it.
struct AstrayRig {
    za: Arc<kmm_zone::ZonedAllocator<kmm_buddy::EagerBuddy>>,
    free0: usize,
    ctx: Arc<Astray>,
    slab: SlabAllocator<kmm_zone::ZonedAllocator<kmm_buddy::EagerBuddy>, Astray>,
    cache: crate::KmemCache,
}

impl AstrayRig {
    fn new(beyond: bool, no_quick: bool) -> AstrayRig {
        let za = toy_pages(64, Arc::new(FixedCpu::new(2)));
        let free0 = free_pages(&za);
        let ctx = Arc::new(Astray {
            inner: FixedCpu::new(2),
            beyond: core::sync::atomic::AtomicBool::new(beyond),
            no_quick: core::sync::atomic::AtomicBool::new(no_quick),
        });
        let slab = SlabAllocator::new(za.clone(), ctx.clone()).unwrap();
        let cache = slab
            .kmem_cache_create("astray", 48, 0, SlabFlags::empty(), None)
            .unwrap();
        AstrayRig {
            za,
            free0,
            ctx,
            slab,
            cache,
        }
    }

    fn set(&self, flag: &core::sync::atomic::AtomicBool, on: bool) {
        flag.store(on, core::sync::atomic::Ordering::Relaxed);
    }

    /// Takes an object of the cache and a kmalloc-128 one.
    fn take(&self) -> (NonNull<u8>, NonNull<u8>) {
        let o = self.slab.kmem_cache_alloc(&self.cache, GFP_KERNEL).unwrap();
        let k = self.slab.kmalloc(100, GFP_KERNEL).unwrap();
        (o, k)
    }

    fn give_back(&self, (o, k): (NonNull<u8>, NonNull<u8>)) {
        self.slab.kmem_cache_free(&self.cache, o).unwrap();
        self.slab.kfree(Some(k)).unwrap();
        self.slab.check_invariants().unwrap();
    }

    /// Destroys the cache, and checks every page is back.
    fn finish(self) {
        self.slab.kmem_cache_destroy(&self.cache).unwrap();
        self.slab.shrink_all();
        self.slab.check_invariants().unwrap();
        assert_eq!(free_pages(&self.za), self.free0);
    }
}

#[test]
fn without_a_quick_cpu_answer_the_entry_points_use_the_same_slots() {
    let rig = AstrayRig::new(false, true);
    // Taken and given back through the out-of-line copies (CPU 0, asked
    // the long way), then taken again through the inline paths: the same
    // objects, so both ways reached CPU 0's slots.
    let objects = rig.take();
    rig.give_back(objects);
    rig.set(&rig.ctx.no_quick, false);
    assert_eq!(rig.take(), objects);
    // And back the long way, which the inline paths then see.
    rig.set(&rig.ctx.no_quick, true);
    rig.give_back(objects);
    rig.set(&rig.ctx.no_quick, false);
    assert_eq!(rig.take(), objects);
    rig.give_back(objects);
    rig.finish();
}

#[test]
fn a_cpu_beyond_the_machine_runs_on_cpu_0s_slots() {
    let rig = AstrayRig::new(true, false);
    // Taken and given back on the CPU beyond the machine, for a cache with
    // slots of its own and for a kmalloc cache (slots in the allocator's
    // table): both go through CPU 0's slot, so CPU 0 is handed the same
    // objects next, from the slabs frozen there.
    let objects = rig.take();
    rig.give_back(objects);
    rig.set(&rig.ctx.beyond, false);
    assert_eq!(rig.ctx.current_cpu(), 0);
    assert_eq!(rig.take(), objects);
    rig.give_back(objects);
    rig.finish();
}

#[test]
#[expect(unsafe_code, reason = "a `SlabMem` over a test buffer")]
fn write_chain_links_every_object_or_writes_nothing() {
    use crate::raw::SlabMem;

    let words = |buf: &[u64]| buf.iter().map(|&w| w as usize).collect::<Vec<_>>();
    let mut buf = alloc::vec![0u64; 16];
    let base = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
    // SAFETY: the buffer's 128 bytes stay allocated and unused otherwise
    // while `mem` is used, and `base` is derived from it.
    let mem = unsafe { SlabMem::new(base, 128) };
    // Cleared through `base`, so that no new borrow of the buffer invalidates it.
    // SAFETY: the buffer's 128 bytes, written through the pointer `mem` uses.
    let clear = || unsafe { base.as_ptr().write_bytes(0, 128) };
    // Four 24-byte objects from offset 8, free pointer 16 bytes in.
    assert!(mem.write_chain(8, 24, 4, 16, usize::MAX));
    let mut want = alloc::vec![0; 16];
    want[3] = 32; // object at 8, word at 24
    want[6] = 56; // object at 32, word at 48
    want[9] = 80; // object at 56, word at 72
    want[12] = usize::MAX; // object at 80, word at 96: the end
    assert_eq!(words(&buf), want);

    // Five objects end at the last word; six would write one word past the
    // block, so nothing is written.
    clear();
    assert!(mem.write_chain(8, 24, 5, 16, usize::MAX) && buf[15] as usize == usize::MAX);
    clear();
    assert!(!mem.write_chain(8, 24, 6, 16, usize::MAX));
    assert!(!mem.write_chain(0, usize::MAX / 2, 3, 0, 0));
    assert!(mem.write_chain(0, 8, 0, 0, 7));
    assert_eq!(words(&buf), alloc::vec![0; 16]);

    // Unaligned words (a stride that is not a multiple of 8) are linked too.
    assert!(mem.write_chain(0, 12, 3, 4, 1));
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let word_at = |off: usize| usize::from_ne_bytes(bytes[off..off + 8].try_into().unwrap());
    assert_eq!((word_at(4), word_at(16), word_at(28)), (12, 24, 1));
}

#[test]
fn bulk_batches_on_heap_memory() {
    // A batch across a refill, written and freed in bulk (the CPU slab's
    // objects pushed under the closed slot, the rest through `__slab_free`),
    // where Miri checks every access.
    let (za, slab, _cpu) = boot(32, 1);
    let free0 = free_pages(&za);
    let c = slab
        .kmem_cache_create("batched", 200, 0, SlabFlags::empty(), None)
        .unwrap();
    let n = c.objects_per_slab() + 3;
    let mut objs = alloc::vec![NonNull::dangling(); n];
    slab.kmem_cache_alloc_bulk(&c, GFP_KERNEL | kmm_gfp::Gfp::ZERO, &mut objs)
        .unwrap();
    for (i, &p) in objs.iter().enumerate() {
        // SAFETY: `p` is a live, zeroed 200-byte object.
        unsafe {
            assert_eq!(p.as_ptr().add(199).read(), 0);
            p.as_ptr().write_bytes(i as u8, 200);
        }
    }
    slab.check_invariants().unwrap();
    // The same object twice in a batch: refused where it comes again.
    let dup = [objs[n - 1], objs[n - 1]];
    assert!(matches!(
        slab.kmem_cache_free_bulk(&c, &dup),
        Err((1, SlabError::DoubleFree { .. }))
    ));
    slab.kmem_cache_free_bulk(&c, &objs[..n - 1]).unwrap();
    slab.check_invariants().unwrap();
    slab.kmem_cache_destroy(&c).unwrap();
    slab.shrink_all();
    assert_eq!(free_pages(&za), free0);
}
