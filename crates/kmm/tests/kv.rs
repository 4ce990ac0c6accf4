//! `kvmalloc` and its family through the facade: kmalloc first, vmalloc for
//! what kmalloc cannot serve above a page, `kvfree` by the address, and
//! `kvrealloc` across the two; misuse refused with the state unchanged.

#![cfg(feature = "std")]

use core::ptr::NonNull;

use proptest::prelude::*;

use kmm::kv::{KVMALLOC_CALLER, KVMALLOC_MAX_SIZE, KVREALLOC_CALLER, kmalloc_gfp_adjust};
use kmm::{
    Backing, DefaultBuddy, GFP_ATOMIC, GFP_KERNEL, Gfp, KmmError, MachineConfig, MemoryManager,
    MemorySpec, PAGE_SIZE, Pfn, SlabError, VirtAddr, VmallocError, ZERO_SIZE_PTR,
};

type Mm = MemoryManager<DefaultBuddy>;

fn boot(mem: u64) -> Mm {
    let mm = MemoryManager::boot(MachineConfig {
        memory: MemorySpec::Size(mem),
        backing: Backing::Host,
        ..MachineConfig::default()
    })
    .unwrap();
    mm.check_invariants().unwrap();
    mm
}

/// Everything a refused call must leave alone.
fn state(mm: &Mm) -> String {
    let mut s = String::new();
    for file in Mm::PROC_FILES {
        s.push_str(&mm.proc(file).unwrap());
    }
    s.push_str(&format!("{:?}", mm.summary()));
    s
}

/// [`state`] but for the count of failed page allocations, which a refused
/// allocation adds to.
fn state_but_failures(mm: &Mm) -> String {
    let s = state(mm);
    s[..s.rfind(", failures:").unwrap()].to_owned()
}

fn is_vmalloc(mm: &Mm, p: NonNull<u8>) -> bool {
    mm.is_vmalloc_addr(VirtAddr(p.as_ptr().addr()))
}

/// The `/proc/vmallocinfo` lines whose caller is `caller`.
fn areas_of(mm: &Mm, caller: &str) -> Vec<String> {
    mm.proc("/proc/vmallocinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(caller))
        .map(str::to_owned)
        .collect()
}

/// Empties the caches and the per-CPU lists, and checks that as many pages
/// are allocated as `before`, with the allocators' invariants.
fn all_pages_back(mm: &Mm, before: usize) {
    mm.slab().unwrap().shrink_all();
    mm.drain_all_pages();
    assert_eq!(mm.summary().allocated_pages, before);
    mm.check_invariants().unwrap();
}

fn fill(p: NonNull<u8>, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: the block has at least `len` bytes of host memory.
        unsafe { p.as_ptr().add(i).write(seed.wrapping_add(i as u8)) };
    }
}

fn holds(p: NonNull<u8>, len: usize, seed: u8) -> bool {
    // SAFETY: as in `fill`.
    (0..len).all(|i| unsafe { p.as_ptr().add(i).read() } == seed.wrapping_add(i as u8))
}

fn zeroed(p: NonNull<u8>, from: usize, to: usize) -> bool {
    // SAFETY: as in `fill`.
    (from..to).all(|i| unsafe { p.as_ptr().add(i).read() } == 0)
}

/// Takes every free page, order 0, then gives back every other one, then
/// takes every block of two pages left: plenty of free memory and no free
/// block above order 0. Returns the blocks kept, with their orders.
fn fragment(mm: &Mm) -> Vec<(Pfn, u32)> {
    mm.drain_all_pages();
    let mut taken = Vec::new();
    while let Ok(pfn) = mm.alloc_pages(GFP_KERNEL, 0) {
        taken.push(pfn);
    }
    taken.sort_unstable();
    let mut kept = Vec::new();
    for (i, pfn) in taken.into_iter().enumerate() {
        if i % 2 == 0 {
            mm.free_pages(pfn, 0).unwrap();
        } else {
            kept.push((pfn, 0));
        }
    }
    mm.drain_all_pages();
    // The blocks the first loop left below the watermark, now above it.
    while let Ok(pfn) = mm.alloc_pages(GFP_KERNEL, 1) {
        kept.push((pfn, 1));
    }
    mm.drain_all_pages();
    kept
}

#[test]
fn kvmalloc_takes_kmalloc_while_kmalloc_can() {
    let mm = boot(64 << 20);
    let before = mm.summary().allocated_pages;
    for (size, usable) in [
        (100, 128),
        (PAGE_SIZE, PAGE_SIZE),
        (8193, 16384),
        (4 << 20, 4 << 20),
    ] {
        let p = mm.kvmalloc(size, GFP_KERNEL).unwrap();
        assert!(!is_vmalloc(&mm, p), "{size} bytes came from vmalloc");
        assert_eq!(mm.ksize(p).unwrap(), usable);
        fill(p, size, 3);
        mm.kvfree(Some(p)).unwrap();
    }
    assert_eq!(mm.kvmalloc(0, GFP_KERNEL).unwrap(), ZERO_SIZE_PTR);
    mm.kvfree(Some(ZERO_SIZE_PTR)).unwrap();
    mm.kvfree(None).unwrap();
    assert!(areas_of(&mm, KVMALLOC_CALLER).is_empty());
    all_pages_back(&mm, before);
}

#[test]
fn kvmalloc_falls_back_to_vmalloc_above_kmalloc_max_size() {
    let mm = boot(64 << 20);
    let before = mm.summary().allocated_pages;
    let size = (5 << 20) + 100;
    let p = mm.kvmalloc(size, GFP_KERNEL).unwrap();
    assert!(is_vmalloc(&mm, p));
    let areas = areas_of(&mm, KVMALLOC_CALLER);
    assert_eq!(areas.len(), 1, "{areas:?}");
    // The area: its pages and a guard page, `pages=` the pages mapped.
    let pages = size.div_ceil(PAGE_SIZE);
    assert!(
        areas[0].contains(&format!(" {} ", (pages + 1) * PAGE_SIZE))
            && areas[0].contains(&format!("pages={pages} ")),
        "{}",
        areas[0]
    );
    fill(p, size, 7);
    assert!(holds(p, size, 7));
    mm.kvfree(Some(p)).unwrap();
    assert!(areas_of(&mm, KVMALLOC_CALLER).is_empty());

    let z = mm.kvzalloc(size, GFP_KERNEL).unwrap();
    assert!(is_vmalloc(&mm, z) && zeroed(z, 0, size));
    mm.kvfree(Some(z)).unwrap();
    let c = mm.kvcalloc(1 << 20, 6, GFP_KERNEL).unwrap();
    assert!(is_vmalloc(&mm, c) && zeroed(c, 0, 6 << 20));
    mm.kvfree(Some(c)).unwrap();

    all_pages_back(&mm, before);
}

#[test]
fn kvmalloc_falls_back_when_no_contiguous_block_is_left() {
    let mm = boot(64 << 20);
    let kept = fragment(&mm);
    let size = 1 << 20;
    // kmalloc cannot have an order-8 block, and is asked without reclaim.
    let e = mm.kmalloc(size, kmalloc_gfp_adjust(GFP_KERNEL, size));
    assert!(
        matches!(e, Err(KmmError::Slab(SlabError::NoMemory(_)))),
        "{e:?}"
    );
    let p = mm.kvmalloc(size, GFP_KERNEL).unwrap();
    assert!(is_vmalloc(&mm, p));
    fill(p, size, 11);
    assert!(holds(p, size, 11));

    // No fallback without blocking: kmalloc's error, and nothing taken but
    // the failure counted.
    let s = state_but_failures(&mm);
    let e = mm.kvmalloc(size, GFP_ATOMIC);
    assert!(
        matches!(e, Err(KmmError::Slab(SlabError::NoMemory(_)))),
        "{e:?}"
    );
    assert_eq!(state_but_failures(&mm), s);
    // A page or less stays with kmalloc: kmalloc-4k falls back to order-0
    // slabs (`s->min`), where kmalloc-8k's one-object minimum is order 1.
    let small = mm.kvmalloc(PAGE_SIZE, GFP_KERNEL).unwrap();
    assert!(!is_vmalloc(&mm, small));
    let above = mm.kvmalloc(PAGE_SIZE + 1, GFP_KERNEL).unwrap();
    assert!(is_vmalloc(&mm, above));
    assert_eq!(areas_of(&mm, KVMALLOC_CALLER).len(), 2);
    mm.kvfree(Some(small)).unwrap();
    mm.kvfree(Some(above)).unwrap();
    // krealloc runs short the same way: the block moves to vmalloc.
    let k = mm.kvmalloc(100, GFP_KERNEL).unwrap();
    fill(k, 100, 2);
    let m = mm.kvrealloc(Some(k), size, GFP_KERNEL).unwrap();
    assert!(is_vmalloc(&mm, m) && holds(m, 100, 2));
    assert_eq!(areas_of(&mm, KVREALLOC_CALLER).len(), 1);
    mm.kvfree(Some(m)).unwrap();

    mm.kvfree(Some(p)).unwrap();
    for (pfn, order) in kept {
        mm.free_pages(pfn, order).unwrap();
    }
    mm.check_invariants().unwrap();
}

#[test]
fn kvmalloc_refuses_overflow_and_crazy_sizes_taking_nothing() {
    let mm = boot(64 << 20);
    let s = state(&mm);
    assert!(matches!(
        mm.kvmalloc_array(usize::MAX / 2, 4, GFP_KERNEL),
        Err(KmmError::Slab(SlabError::Overflow))
    ));
    assert!(matches!(
        mm.kvcalloc(usize::MAX, 2, GFP_KERNEL),
        Err(KmmError::Slab(SlabError::Overflow))
    ));
    let e = mm.kvmalloc(KVMALLOC_MAX_SIZE + 1, GFP_KERNEL);
    assert!(
        matches!(e, Err(KmmError::Slab(SlabError::TooLarge { size, max }))
            if size == KVMALLOC_MAX_SIZE + 1 && max == KVMALLOC_MAX_SIZE),
        "{e:?}"
    );
    // More than the machine has: vmalloc's refusal.
    let e = mm.kvmalloc(128 << 20, GFP_KERNEL);
    assert!(matches!(e, Err(KmmError::Vmalloc(_))), "{e:?}");
    assert_eq!(state(&mm), s);
}

#[test]
fn kvfree_refuses_what_kvmalloc_did_not_hand_out() {
    let mm = boot(64 << 20);
    let v = mm.kvmalloc(5 << 20, GFP_KERNEL).unwrap();
    let k = mm.kvmalloc(300, GFP_KERNEL).unwrap();
    let s = state(&mm);
    // SAFETY: both offsets stay inside the blocks.
    let (v_mid, k_mid) = unsafe { (v.add(PAGE_SIZE), k.add(8)) };
    assert!(matches!(
        mm.kvfree(Some(v_mid)),
        Err(KmmError::Vmalloc(VmallocError::NotAnArea(_)))
    ));
    assert!(matches!(
        mm.kvfree(Some(k_mid)),
        Err(KmmError::Slab(SlabError::NotObjectStart { .. }))
    ));
    let mut local = 0u64;
    let e = mm.kvfree(Some(NonNull::from(&mut local).cast()));
    assert!(matches!(e, Err(KmmError::Slab(_))), "{e:?}");
    assert_eq!(state(&mm), s);

    mm.kvfree(Some(v)).unwrap();
    mm.kvfree(Some(k)).unwrap();
    let s = state(&mm);
    assert!(
        mm.kvfree(Some(v)).is_err(),
        "a double free of a vmalloc block"
    );
    assert!(
        mm.kvfree(Some(k)).is_err(),
        "a double free of a kmalloc block"
    );
    assert_eq!(state(&mm), s);
    mm.check_invariants().unwrap();
}

#[test]
fn kvrealloc_keeps_the_bytes_across_kmalloc_and_vmalloc() {
    let mm = boot(64 << 20);
    let before = mm.summary().allocated_pages;
    let p = mm.kvrealloc(None, 100, GFP_KERNEL).unwrap();
    fill(p, 100, 5);
    // Within kmalloc: krealloc's rules (the same block while ksize holds it).
    let p = mm.kvrealloc(Some(p), 120, GFP_KERNEL).unwrap();
    assert!(!is_vmalloc(&mm, p) && holds(p, 100, 5));
    // Past KMALLOC_MAX_SIZE: a vmalloc block with the old bytes.
    let big = (4 << 20) + 8;
    let v = mm.kvrealloc(Some(p), big, GFP_KERNEL).unwrap();
    assert!(is_vmalloc(&mm, v) && holds(v, 100, 5));
    assert_eq!(areas_of(&mm, KVREALLOC_CALLER).len(), 1);
    fill(v, big, 9);
    // Shrinking keeps the area; with __GFP_ZERO the tail is zeroed.
    let w = mm
        .kvrealloc(Some(v), 1 << 20, GFP_KERNEL | Gfp::ZERO)
        .unwrap();
    assert_eq!(w, v);
    assert!(holds(w, 1 << 20, 9) && zeroed(w, 1 << 20, 1025 * PAGE_SIZE));
    // Growing within its pages keeps it too; past them it moves, every
    // mapped byte copied.
    let w = mm.kvrealloc(Some(w), 1025 * PAGE_SIZE, GFP_KERNEL).unwrap();
    assert_eq!(w, v);
    let x = mm.kvrealloc(Some(w), 6 << 20, GFP_KERNEL).unwrap();
    assert_ne!(x, v);
    assert!(is_vmalloc(&mm, x) && holds(x, 1 << 20, 9) && zeroed(x, 1 << 20, 1025 * PAGE_SIZE));
    // A vmalloc block stays in vmalloc when it shrinks below a page.
    let y = mm.kvrealloc(Some(x), 10, GFP_KERNEL).unwrap();
    assert_eq!(y, x);
    // Zero bytes frees it.
    assert_eq!(mm.kvrealloc(Some(y), 0, GFP_KERNEL).unwrap(), ZERO_SIZE_PTR);
    assert!(areas_of(&mm, KVREALLOC_CALLER).is_empty());
    all_pages_back(&mm, before);
}

#[test]
fn kvrealloc_refuses_a_bad_block_and_keeps_the_old_on_failure() {
    let mm = boot(64 << 20);
    let v = mm.kvmalloc(5 << 20, GFP_KERNEL).unwrap();
    fill(v, 5 << 20, 1);
    let s = state(&mm);
    // SAFETY: inside the block.
    let mid = unsafe { v.add(PAGE_SIZE) };
    assert!(matches!(
        mm.kvrealloc(Some(mid), 100, GFP_KERNEL),
        Err(KmmError::Vmalloc(VmallocError::NotAnArea(_)))
    ));
    // More than the machine has: the allocation fails, the block stays.
    assert!(mm.kvrealloc(Some(v), 200 << 20, GFP_KERNEL).is_err());
    assert_eq!(state(&mm), s);
    assert!(holds(v, 5 << 20, 1));
    let k = mm.kvmalloc(64, GFP_KERNEL).unwrap();
    let s = state(&mm);
    assert!(mm.kvrealloc(Some(k), 200 << 20, GFP_KERNEL).is_err());
    assert_eq!(state(&mm), s);
    mm.kvfree(Some(k)).unwrap();
    mm.kvfree(Some(v)).unwrap();
    mm.check_invariants().unwrap();
}

#[test]
fn kmalloc_gfp_adjust_is_linuxs() {
    assert_eq!(kmalloc_gfp_adjust(GFP_KERNEL, PAGE_SIZE), GFP_KERNEL);
    let big = kmalloc_gfp_adjust(GFP_KERNEL | Gfp::NOFAIL, PAGE_SIZE + 1);
    assert!(big.contains(Gfp::NOWARN));
    assert!(!big.contains(Gfp::DIRECT_RECLAIM) && !big.contains(Gfp::NOFAIL));
    assert!(big.contains(Gfp::KSWAPD_RECLAIM), "kswapd still woken");
    let mayfail = kmalloc_gfp_adjust(GFP_KERNEL | Gfp::RETRY_MAYFAIL, PAGE_SIZE + 1);
    assert!(mayfail.contains(Gfp::DIRECT_RECLAIM));
}

#[test]
fn a_machine_without_memory_has_no_kvmalloc() {
    let mm: Mm = MemoryManager::boot(MachineConfig {
        memory: MemorySpec::Size(64 << 20),
        backing: Backing::NoMemory,
        ..MachineConfig::default()
    })
    .unwrap();
    assert!(matches!(
        mm.kvmalloc(100, GFP_KERNEL),
        Err(KmmError::NoSlab)
    ));
    assert!(matches!(
        mm.kvmalloc(5 << 20, GFP_KERNEL),
        Err(KmmError::NoSlab)
    ));
    mm.kvfree(None).unwrap();
}

#[test]
fn a_page_or_less_never_falls_back_even_where_vmalloc_could_serve_it() {
    // x86-32 with highmem: vmalloc takes highmem pages, kmalloc cannot.
    let mm: Mm = MemoryManager::boot(MachineConfig {
        arch: kmm::Arch::X86_32,
        memory: MemorySpec::Size(1 << 30),
        backing: Backing::Host,
        ..MachineConfig::default()
    })
    .unwrap();
    mm.drain_all_pages();
    let mut lowmem = Vec::new();
    while let Ok(pfn) = mm.alloc_pages(GFP_KERNEL, 0) {
        lowmem.push(pfn);
    }
    let e = mm.kvmalloc(PAGE_SIZE, GFP_KERNEL);
    assert!(
        matches!(e, Err(KmmError::Slab(SlabError::NoMemory(_)))),
        "{e:?}"
    );
    let p = mm.kvmalloc(PAGE_SIZE + 1, GFP_KERNEL).unwrap();
    assert!(is_vmalloc(&mm, p));
    fill(p, PAGE_SIZE + 1, 4);
    assert!(holds(p, PAGE_SIZE + 1, 4));
    mm.kvfree(Some(p)).unwrap();
    for pfn in lowmem {
        mm.free_pages(pfn, 0).unwrap();
    }
    mm.check_invariants().unwrap();
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, zero: bool },
    Realloc { which: usize, size: usize },
    Free { which: usize },
}

/// Sizes from a few bytes to past `KMALLOC_MAX_SIZE`, most of them small.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0usize),
        4 => 1usize..600,
        2 => 600usize..20_000,
        1 => 20_000usize..(3usize << 20),
        2 => (4usize << 20) - 4096..(6usize << 20),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (size(), any::<bool>()).prop_map(|(size, zero)| Op::Alloc { size, zero }),
        2 => (any::<usize>(), size()).prop_map(|(which, size)| Op::Realloc { which, size }),
        3 => any::<usize>().prop_map(|which| Op::Free { which }),
    ]
}

/// The bytes of a live block the model checks: its first and last 64 and a
/// run in the middle (all of a small block).
fn probes(size: usize) -> Vec<usize> {
    if size <= 192 {
        return (0..size).collect();
    }
    let mut at: Vec<usize> = (0..64).chain(size - 64..size).collect();
    at.extend(size / 2..size / 2 + 64);
    at
}

fn write_probes(p: NonNull<u8>, size: usize, seed: u8) {
    for i in probes(size) {
        // SAFETY: `i < size`, inside the live block.
        unsafe { p.as_ptr().add(i).write(seed ^ i as u8) };
    }
}

/// Whether `p` holds `seed`'s probes of a block of `old` bytes, for its first
/// `kept` bytes.
fn probes_hold(p: NonNull<u8>, old: usize, kept: usize, seed: u8) -> bool {
    probes(old)
        .into_iter()
        .filter(|&i| i < kept)
        // SAFETY: `i < kept`, inside the live block.
        .all(|i| unsafe { p.as_ptr().add(i).read() } == seed ^ i as u8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Against a model of live blocks (address, size, contents): kvmalloc,
    /// kvrealloc and kvfree keep every block's bytes, no two live blocks
    /// overlap, every block is where its size says (kmalloc for a page or
    /// less, vmalloc above 4 MiB), and freeing everything gives every page
    /// back.
    #[test]
    fn the_kvmalloc_family_against_a_model(ops in prop::collection::vec(op(), 1..40)) {
        let mm = boot(64 << 20);
        let before = mm.summary().allocated_pages;
        let mut live: Vec<(NonNull<u8>, usize, u8)> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            let seed = n as u8;
            match op {
                Op::Alloc { size, zero } => {
                    let got = if zero {
                        mm.kvzalloc(size, GFP_KERNEL)
                    } else {
                        mm.kvmalloc(size, GFP_KERNEL)
                    };
                    let Ok(p) = got else { continue };
                    if size == 0 {
                        prop_assert_eq!(p, ZERO_SIZE_PTR);
                        continue;
                    }
                    // Above KMALLOC_MAX_SIZE always vmalloc, a page or less never;
                    // between, vmalloc only when memory is too fragmented for kmalloc.
                    if size > 4 << 20 {
                        prop_assert!(is_vmalloc(&mm, p));
                    } else if size <= PAGE_SIZE {
                        prop_assert!(!is_vmalloc(&mm, p));
                    }
                    if zero {
                        prop_assert!(probes(size).into_iter().all(|i| zeroed(p, i, i + 1)));
                    }
                    write_probes(p, size, seed);
                    live.push((p, size, seed));
                }
                Op::Realloc { which, size } if !live.is_empty() => {
                    let i = which % live.len();
                    let (p, old, old_seed) = live[i];
                    match mm.kvrealloc(Some(p), size, GFP_KERNEL) {
                        Ok(q) if size == 0 => {
                            prop_assert_eq!(q, ZERO_SIZE_PTR);
                            live.swap_remove(i);
                        }
                        Ok(q) => {
                            prop_assert!(probes_hold(q, old, size.min(old), old_seed));
                            write_probes(q, size, seed);
                            live[i] = (q, size, seed);
                        }
                        Err(_) => prop_assert!(probes_hold(p, old, old, old_seed)),
                    }
                }
                Op::Realloc { .. } => {}
                Op::Free { which } if !live.is_empty() => {
                    let (p, size, seed) = live.swap_remove(which % live.len());
                    prop_assert!(probes_hold(p, size, size, seed));
                    mm.kvfree(Some(p)).unwrap();
                }
                Op::Free { .. } => {}
            }
            for (a, &(p, s, _)) in live.iter().enumerate() {
                for &(q, t, _) in &live[a + 1..] {
                    let (p, q) = (p.as_ptr().addr(), q.as_ptr().addr());
                    prop_assert!(p + s <= q || q + t <= p, "blocks overlap");
                }
            }
        }
        for (p, size, seed) in live {
            prop_assert!(probes_hold(p, size, size, seed));
            mm.kvfree(Some(p)).unwrap();
        }
        prop_assert!(areas_of(&mm, KVMALLOC_CALLER).is_empty());
        prop_assert!(areas_of(&mm, KVREALLOC_CALLER).is_empty());
        all_pages_back(&mm, before);
    }
}
