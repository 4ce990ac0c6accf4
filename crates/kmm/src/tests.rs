//! Tests of the facade: booting machines, the page API end to end, and the
//! backend feature selection.

use alloc::vec;
use alloc::vec::Vec;

use crate::manager::all_frames_accounted;
use crate::*;

fn toy<B: BuddyBackend>(pages: usize, free: &[PfnRange]) -> MemoryManager<B> {
    MemoryManager::boot(MachineConfig {
        memory: MemorySpec::Toy {
            pages,
            free: Some(free.to_vec()),
        },
        cpus: 1,
        backing: Backing::NoMemory,
        ..MachineConfig::default()
    })
    .unwrap()
}

fn nr_free<B: BuddyBackend>(mm: &MemoryManager<B>) -> Vec<usize> {
    let zones = mm.snapshots();
    let z = zones.iter().find(|z| z.populated).unwrap();
    z.nr_free.to_vec()
}

macro_rules! for_both_backends {
    ($($name:ident => $body:ident;)*) => {
        mod eager {
            use super::*;
            $( #[test] fn $name() { let f: fn() = $body::<EagerBuddy>; f() } )*
        }
        mod lazy {
            use super::*;
            $( #[test] fn $name() { let f: fn() = $body::<LazyBuddy>; f() } )*
        }
    };
}

fn worked_example<B: BuddyBackend>() {
    // Frames 5, 10, 12, 13, 14, 15 free; a 2-page request splits 12-15.
    let mm: MemoryManager<B> = toy(
        16,
        &[
            PfnRange::new(5, 6),
            PfnRange::new(10, 11),
            PfnRange::new(12, 16),
        ],
    );
    assert_eq!(nr_free(&mm)[..3], [2, 0, 1]);
    let pfn = mm.alloc_pages(GFP_KERNEL, 1).unwrap();
    assert_eq!(pfn, Pfn(12));
    assert_eq!(mm.zone_of(pfn), Some(ZoneType::Normal));
    assert_eq!(nr_free(&mm)[..3], [2, 1, 0]);
    let buddyinfo = mm.proc("/proc/buddyinfo").unwrap();
    assert_eq!(
        buddyinfo,
        "Node 0, zone   Normal      2      1      0      0      0      0      0      0      0      0      0 \n"
    );
    mm.check_invariants().unwrap();
    assert!(all_frames_accounted(&mm));
}

fn merge_example<B: BuddyBackend>() {
    let mm: MemoryManager<B> = toy(2, &[PfnRange::new(0, 2)]);
    let a = mm.alloc_pages(GFP_KERNEL, 0).unwrap();
    let b = mm.alloc_pages(GFP_KERNEL, 0).unwrap();
    assert_eq!((a, b), (Pfn(0), Pfn(1)));
    mm.free_pages(Pfn(0), 0).unwrap();
    mm.free_pages(Pfn(1), 0).unwrap();
    mm.drain_all_pages();
    assert_eq!(nr_free(&mm)[..2], [0, 1]);
    mm.check_invariants().unwrap();
}

fn misuse_leaves_state_unchanged<B: BuddyBackend>() {
    let mm: MemoryManager<B> = toy(64, &[PfnRange::new(0, 64)]);
    let a = mm.alloc_pages(GFP_KERNEL, 2).unwrap();
    let before = mm.snapshots();
    assert!(matches!(
        mm.free_pages(a, 1),
        Err(KmmError::Page(PageError::WrongOrder { .. }))
    ));
    assert!(matches!(
        mm.free_pages(Pfn(a.0 + 1), 0),
        Err(KmmError::Page(PageError::NotAllocated(_)))
    ));
    assert!(matches!(
        mm.free_pages(Pfn(1000), 0),
        Err(KmmError::Page(PageError::OutOfRange(_)))
    ));
    assert!(matches!(
        mm.alloc_pages(GFP_KERNEL, 11),
        Err(KmmError::Page(PageError::OrderTooLarge { .. }))
    ));
    assert_eq!(mm.snapshots(), before);
    mm.free_pages(a, 2).unwrap();
    let after_free = mm.snapshots();
    assert!(matches!(
        mm.free_pages(a, 2),
        Err(KmmError::Page(PageError::DoubleFree(_)))
    ));
    assert_eq!(mm.snapshots(), after_free);
    assert!(matches!(
        mm.set_cpu(5),
        Err(KmmError::BadCpu { cpu: 5, nr_cpus: 1 })
    ));
}

fn free_counts_return_after_churn<B: BuddyBackend>() {
    let mm: MemoryManager<B> = MemoryManager::boot(MachineConfig {
        backing: Backing::NoMemory,
        ..MachineConfig::default()
    })
    .unwrap();
    // The interrupt stacks and the first per-CPU chunk took pages at boot,
    // through CPU 0's per-CPU list; start from empty lists.
    mm.drain_all_pages();
    let boot = mm.snapshots();
    let mut live = Vec::new();
    for i in 0..400u32 {
        mm.set_cpu((i % 2) as usize).unwrap();
        let gfp = [GFP_KERNEL, GFP_DMA, GFP_ATOMIC, GFP_HIGHUSER_MOVABLE][(i % 4) as usize];
        let order = i % 5;
        live.push((mm.alloc_pages(gfp, order).unwrap(), order));
        if i % 3 == 0 {
            let (p, o) = live.swap_remove((i as usize * 7) % live.len());
            mm.free_pages(p, o).unwrap();
        }
        mm.check_invariants().unwrap();
    }
    assert!(all_frames_accounted(&mm));
    for (p, o) in live {
        mm.free_pages(p, o).unwrap();
    }
    mm.drain_all_pages();
    let end = mm.snapshots();
    for (a, b) in boot.iter().zip(&end) {
        assert_eq!(a.nr_free, b.nr_free, "zone {}", a.zone);
        assert_eq!(a.free_pages, b.free_pages);
    }
}

fn highmem_on_x86_32<B: BuddyBackend>() {
    let mm: MemoryManager<B> = MemoryManager::boot(MachineConfig {
        arch: Arch::X86_32,
        memory: MemorySpec::Size(2 << 30),
        backing: Backing::NoMemory,
        ..MachineConfig::default()
    })
    .unwrap();
    let p = mm.alloc_pages(GFP_HIGHUSER, 0).unwrap();
    assert_eq!(mm.zone_of(p), Some(ZoneType::HighMem));
    let k = mm.alloc_pages(GFP_KERNEL, 0).unwrap();
    assert_eq!(mm.zone_of(k), Some(ZoneType::Normal));
    let d = mm.alloc_pages(GFP_DMA, 0).unwrap();
    assert_eq!(mm.zone_of(d), Some(ZoneType::Dma));
    let meminfo = mm.proc("/proc/meminfo").unwrap();
    assert!(meminfo.contains("HighTotal:"), "{meminfo}");
    assert!(meminfo.contains("LowFree:"), "{meminfo}");
}

for_both_backends! {
    worked_example_splits_the_order_2_block => worked_example;
    freeing_buddies_merges_them => merge_example;
    misuse_is_a_typed_error_and_changes_nothing => misuse_leaves_state_unchanged;
    free_counts_return_after_churn_on_two_cpus => free_counts_return_after_churn;
    x86_32_has_a_highmem_zone => highmem_on_x86_32;
}

#[test]
fn default_buddy_follows_the_features() {
    let mm: MemoryManager = MemoryManager::boot(MachineConfig {
        backing: Backing::NoMemory,
        ..MachineConfig::default()
    })
    .unwrap();
    let expected = if cfg!(feature = "lazy-buddy") {
        "lazy"
    } else {
        "eager"
    };
    assert_eq!(mm.backend_name(), expected);
}

#[test]
fn every_proc_file_renders_and_unknown_files_do_not() {
    let mm: MemoryManager = MemoryManager::boot(MachineConfig {
        backing: Backing::NoMemory,
        ..MachineConfig::default()
    })
    .unwrap();
    for path in MemoryManager::<DefaultBuddy>::PROC_FILES {
        let text = mm.proc(path).unwrap();
        assert!(text.ends_with('\n'), "{path}");
    }
    assert_eq!(mm.proc("/proc/nosuchfile"), None);
    assert_eq!(
        mm.proc("/proc/slabinfo").unwrap(),
        crate::procfs::SLABINFO_HEADER
    );
}

#[test]
fn frame_states_cover_holes_and_reserved_frames() {
    let mm: MemoryManager<EagerBuddy> = toy(8, &[PfnRange::new(2, 6)]);
    let states: Vec<FrameState> = mm.frame_states().into_iter().map(|(_, _, s)| s).collect();
    assert_eq!(
        states,
        vec![
            FrameState::Reserved,
            FrameState::Reserved,
            FrameState::Free { order: 1 },
            FrameState::Free { order: 1 },
            FrameState::Free { order: 1 },
            FrameState::Free { order: 1 },
            FrameState::Reserved,
            FrameState::Reserved,
        ]
    );
}

#[cfg(feature = "std")]
#[test]
#[expect(unsafe_code, reason = "the allocator is called through `GlobalAlloc`")]
fn global_kmalloc_threads_hold_cpus_alone_and_give_them_back() {
    extern crate std;
    use core::alloc::{GlobalAlloc, Layout};

    static KM: crate::GlobalKmalloc = crate::GlobalKmalloc::new(64 << 20, 3);
    let layout = Layout::from_size_align(40, 8).unwrap();
    // Thread n is bound to CPU (n + 1) % 3: alone on CPUs 1 and 2, shared on 0.
    // Threads run one after the other, so a CPU is free again only if the
    // thread before gave its hold back when it exited.
    let mut seen = alloc::vec::Vec::new();
    for _ in 0..6 {
        let cpu = std::thread::spawn(move || {
            // SAFETY: a non-zero-size layout; the block is freed with it.
            let p = unsafe { KM.alloc(layout) };
            assert!(!p.is_null());
            let cpu = KM.this_cpu().unwrap();
            // SAFETY: `p` came from `KM.alloc(layout)`.
            unsafe { KM.dealloc(p, layout) };
            cpu
        })
        .join()
        .unwrap();
        seen.push(cpu);
    }
    assert_eq!(
        seen,
        [
            (1, true),
            (2, true),
            (0, false),
            (1, true),
            (2, true),
            (0, false)
        ]
    );
    assert_eq!(KM.stats().errors, 0);
    assert_eq!(KM.this_cpu(), Some((0, false)));
}

#[cfg(feature = "std")]
#[test]
#[expect(unsafe_code, reason = "the allocator is called through `GlobalAlloc`")]
fn global_kmalloc_without_a_machine_serves_everything_from_the_system_allocator() {
    use core::alloc::{GlobalAlloc, Layout};

    // No machine boots with no memory.
    let heap = crate::GlobalKmalloc::new(0, 2);
    let layout = Layout::from_size_align(100, 8).unwrap();
    for round in 1..=3 {
        // SAFETY: a non-zero-size layout; the block is freed with it.
        let p = unsafe { heap.alloc(layout) };
        assert!(!p.is_null());
        // The block is real memory of its size.
        // SAFETY: `p` holds 100 bytes.
        unsafe { p.write_bytes(0xa5, 100) };
        // SAFETY: a non-zero new size; the block is live with `layout`.
        let q = unsafe { heap.realloc(p, layout, 300) };
        assert!(!q.is_null());
        // SAFETY: `q` holds 300 bytes, the first 100 copied from `p`.
        assert_eq!(unsafe { q.add(99).read() }, 0xa5);
        // SAFETY: `q` is live with 300 bytes and `layout`'s alignment.
        unsafe { heap.dealloc(q, Layout::from_size_align(300, 8).unwrap()) };
        assert!(heap.memory_manager().is_none());
        assert_eq!(heap.this_cpu(), None);
        assert_eq!(
            heap.stats(),
            crate::GlobalKmallocStats {
                kmallocs: 0,
                fallbacks: 2 * round,
                errors: 0
            }
        );
    }
}
