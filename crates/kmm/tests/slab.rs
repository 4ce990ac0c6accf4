//! The slab layer through the facade: kmalloc size classes, slab caches,
//! `/proc/slabinfo` and the slab lines of `/proc/meminfo`, misuse refused
//! with the state unchanged, and the typed error of a machine without
//! memory, on both buddy backends.

#![cfg(feature = "std")]

use core::ptr::NonNull;
use std::sync::Arc;

use kmm::{
    Backing, BuddyBackend, EagerBuddy, GFP_DMA, GFP_KERNEL, Gfp, KmemCache, KmmError, LazyBuddy,
    MachineConfig, MachineLayout, MemoryManager, MemorySpec, PAGE_SIZE, SlabAllocator, SlabError,
    SlabFlags,
};

fn boot<B: BuddyBackend>(backing: Backing) -> MemoryManager<B> {
    let mm = MemoryManager::boot(MachineConfig {
        memory: MemorySpec::Size(64 << 20),
        backing,
        ..MachineConfig::default()
    })
    .unwrap();
    mm.check_invariants().unwrap();
    mm
}

/// The host backing and a custom backing of host memory.
fn backings() -> Vec<Backing> {
    let layout = MachineLayout::x86_64(64 << 20);
    let host = kmm_host::HostMemory::new(&layout.present_ranges(), layout.lowmem_end()).unwrap();
    vec![Backing::Host, Backing::Custom(Arc::new(host))]
}

/// Everything a refused call must leave alone.
fn state<B: BuddyBackend>(mm: &MemoryManager<B>) -> String {
    let mut s = String::new();
    for file in MemoryManager::<B>::PROC_FILES {
        s.push_str(&mm.proc(file).unwrap());
    }
    s.push_str(&format!("{:?}", mm.summary()));
    s
}

fn meminfo_kb(text: &str, label: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(label)).map(|l| {
        l[label.len()..]
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap()
    })
}

fn kmalloc_uses_the_size_classes<B: BuddyBackend>() {
    for backing in backings() {
        let mm: MemoryManager<B> = boot(backing);
        let slab = mm.slab().expect("memory behind the frames");
        for (size, class) in [
            (1, "kmalloc-8"),
            (100, "kmalloc-128"),
            (129, "kmalloc-192"),
            (8192, "kmalloc-8k"),
        ] {
            let p = mm.kmalloc(size, GFP_KERNEL).unwrap();
            assert_eq!(slab.cache_of(p).as_deref(), Some(class), "{size}");
            assert_eq!(
                SlabAllocator::kmalloc_cache_name(size, GFP_KERNEL),
                Some(class)
            );
            assert!(mm.ksize(p).unwrap() >= size);
            mm.kfree(Some(p)).unwrap();
        }
        let d = mm.kmalloc(64, GFP_DMA).unwrap();
        assert_eq!(slab.cache_of(d).as_deref(), Some("dma-kmalloc-64"));
        mm.kfree(Some(d)).unwrap();
        // Above 8 KiB the page allocator serves kmalloc directly.
        let big = mm.kmalloc(3 * PAGE_SIZE, GFP_KERNEL).unwrap();
        assert_eq!(mm.ksize(big).unwrap(), 4 * PAGE_SIZE);
        assert_eq!(slab.large_kmalloc_pages(), 4);
        mm.kfree(Some(big)).unwrap();
        assert_eq!(slab.large_kmalloc_pages(), 0);
        mm.check_invariants().unwrap();
    }
}

fn kzalloc_zeroes_and_krealloc_keeps_the_contents<B: BuddyBackend>() {
    let mm: MemoryManager<B> = boot(Backing::Host);
    let p = mm.kmalloc(200, GFP_KERNEL).unwrap();
    // SAFETY: `p` is a live 200-byte allocation of this test.
    unsafe { p.as_ptr().write_bytes(0xab, 200) };
    mm.kfree(Some(p)).unwrap();
    let z = mm.kzalloc(200, GFP_KERNEL).unwrap();
    // SAFETY: `z` is a live 200-byte allocation of this test.
    let bytes = unsafe { core::slice::from_raw_parts(z.as_ptr(), 200) };
    assert!(bytes.iter().all(|&b| b == 0));
    // SAFETY: as above; nothing else refers to `z`'s bytes.
    unsafe { z.as_ptr().write_bytes(0x5c, 200) };
    let r = mm.krealloc(Some(z), 5000, GFP_KERNEL).unwrap();
    assert_eq!(
        mm.slab().unwrap().cache_of(r).as_deref(),
        Some("kmalloc-8k")
    );
    // SAFETY: `r` is a live allocation of at least 5000 bytes.
    let bytes = unsafe { core::slice::from_raw_parts(r.as_ptr(), 200) };
    assert!(bytes.iter().all(|&b| b == 0x5c));
    mm.kfree(Some(r)).unwrap();
    mm.check_invariants().unwrap();
}

fn slab_caches_and_slabinfo<B: BuddyBackend>() {
    let mm: MemoryManager<B> = boot(Backing::Host);
    let info = mm.proc("/proc/slabinfo").unwrap();
    let mut lines = info.lines();
    assert_eq!(lines.next(), Some("slabinfo - version: 2.1"));
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("# name            <active_objs> <num_objs> <objsize>")
    );
    assert!(
        info.lines()
            .any(|l| l.split_whitespace().next() == Some("kmalloc-128"))
    );

    let cache = mm
        .kmem_cache_create(
            "inode_cache",
            600,
            0,
            SlabFlags::HWCACHE_ALIGN | SlabFlags::RECLAIM_ACCOUNT,
            None,
        )
        .unwrap();
    let objs: Vec<NonNull<u8>> = (0..10)
        .map(|_| mm.kmem_cache_alloc(&cache, GFP_KERNEL).unwrap())
        .collect();
    let info = mm.proc("/proc/slabinfo").unwrap();
    let row = info
        .lines()
        .find(|l| l.starts_with("inode_cache "))
        .expect("a row for the new cache");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "10", "active objects: {row}");
    assert_eq!(cols[3], cache.size().to_string());

    let meminfo = mm.proc("/proc/meminfo").unwrap();
    let reclaimable = meminfo_kb(&meminfo, "SReclaimable:").unwrap();
    let unreclaimable = meminfo_kb(&meminfo, "SUnreclaim:").unwrap();
    assert_eq!(
        meminfo_kb(&meminfo, "Slab:"),
        Some(reclaimable + unreclaimable)
    );
    assert_eq!(meminfo_kb(&meminfo, "KReclaimable:"), Some(reclaimable));
    let m = mm.slab().unwrap().meminfo();
    assert_eq!(
        (reclaimable, unreclaimable),
        (m.reclaimable_kb, m.unreclaimable_kb)
    );
    assert!(
        reclaimable >= (cache.order() as u64 + 1) * 4,
        "the inode slab is reclaimable"
    );

    // A cache with live objects is not destroyed, and nothing changes.
    let before = state(&mm);
    assert!(matches!(
        mm.kmem_cache_destroy(&cache),
        Err(KmmError::Slab(SlabError::LiveObjects { count: 10, .. }))
    ));
    assert_eq!(state(&mm), before);
    for o in objs {
        mm.kmem_cache_free(&cache, o).unwrap();
    }
    mm.kmem_cache_shrink(&cache).unwrap();
    mm.kmem_cache_destroy(&cache).unwrap();
    assert!(!mm.proc("/proc/slabinfo").unwrap().contains("inode_cache"));
    mm.check_invariants().unwrap();
}

fn kfree_of_a_foreign_pointer_changes_nothing<B: BuddyBackend>() {
    let mm: MemoryManager<B> = boot(Backing::Host);
    let keep = mm.kmalloc(64, GFP_KERNEL).unwrap();
    let mut local = [0u64; 4];
    let foreign = NonNull::from(&mut local).cast::<u8>();
    let before = state(&mm);
    assert!(matches!(
        mm.kfree(Some(foreign)),
        Err(KmmError::Slab(SlabError::ForeignPointer { .. }))
    ));
    assert_eq!(state(&mm), before);
    // The middle of a live object is refused too.
    let middle = NonNull::new(keep.as_ptr().wrapping_add(8)).unwrap();
    assert!(matches!(
        mm.kfree(Some(middle)),
        Err(KmmError::Slab(SlabError::NotObjectStart { .. }))
    ));
    assert_eq!(state(&mm), before);
    assert!(matches!(
        mm.kmalloc(5 << 20, GFP_KERNEL),
        Err(KmmError::Slab(SlabError::TooLarge { .. }))
    ));
    assert_eq!(state(&mm), before);
    mm.kfree(Some(keep)).unwrap();
    mm.check_invariants().unwrap();
}

fn no_memory_has_no_slab_layer<B: BuddyBackend>() {
    let mm: MemoryManager<B> = boot(Backing::NoMemory);
    assert!(mm.slab().is_none());
    let before = state(&mm);
    assert!(matches!(mm.kmalloc(64, GFP_KERNEL), Err(KmmError::NoSlab)));
    assert!(matches!(
        mm.kmem_cache_create("c", 64, 0, SlabFlags::empty(), None),
        Err(KmmError::NoSlab)
    ));
    assert_eq!(state(&mm), before);
    assert_eq!(
        mm.proc("/proc/slabinfo").unwrap(),
        kmm::procfs::SLABINFO_HEADER
    );
    assert!(!mm.proc("/proc/meminfo").unwrap().contains("Slab:"));
}

/// A machine without memory behind its frames (so without a slab layer),
/// and a cache of `mm` to hand it.
fn no_slab_and_a_cache<B: BuddyBackend>(mm: &MemoryManager<B>) -> (MemoryManager<B>, KmemCache) {
    let bare: MemoryManager<B> = boot(Backing::NoMemory);
    let cache = mm
        .kmem_cache_create("other", 8, 0, SlabFlags::empty(), None)
        .unwrap();
    (bare, cache)
}

/// The `active_objs` column of the `/proc/slabinfo` row of cache `name`.
fn active_objs<B: BuddyBackend>(mm: &MemoryManager<B>, name: &str) -> String {
    let info = mm.proc("/proc/slabinfo").unwrap();
    let row = info
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap();
    row.split_whitespace().nth(1).unwrap().to_owned()
}

fn a_local_cache_through_the_facade<B: BuddyBackend>() {
    let mm: MemoryManager<B> = boot(Backing::Host);
    let cache = mm
        .kmem_cache_create("dentry", 192, 0, SlabFlags::HWCACHE_ALIGN, None)
        .unwrap();
    let active = |mm: &MemoryManager<B>| active_objs(mm, "dentry");
    {
        let mut local = mm.local_cache(&cache).unwrap();
        let objs: Vec<_> = (0..100).map(|_| local.alloc(GFP_KERNEL).unwrap()).collect();
        // Objects of the held slab count as allocated, free or not.
        let per = cache.objects_per_slab();
        let held = 100usize.div_ceil(per) * per;
        assert_eq!(active(&mm), held.to_string());
        for o in objs {
            local.free(o).unwrap();
        }
        mm.check_invariants().unwrap();
    }
    assert_eq!(active(&mm), "0");
    mm.kmem_cache_destroy(&cache).unwrap();
    mm.check_invariants().unwrap();
    // A machine without memory behind its frames has no slab layer.
    let (bare, other) = no_slab_and_a_cache(&mm);
    assert!(matches!(bare.local_cache(&other), Err(KmmError::NoSlab)));
}

fn bulk_batches_through_the_facade<B: BuddyBackend>() {
    let mm: MemoryManager<B> = boot(Backing::Host);
    let cache = mm
        .kmem_cache_create("skbuff", 232, 0, SlabFlags::HWCACHE_ALIGN, None)
        .unwrap();
    let active = |mm: &MemoryManager<B>| active_objs(mm, "skbuff");
    let mut objs = vec![NonNull::dangling(); 64];
    mm.kmem_cache_alloc_bulk(&cache, GFP_KERNEL | Gfp::ZERO, &mut objs)
        .unwrap();
    assert_eq!(active(&mm), "64");
    for p in &objs {
        // SAFETY: each object is live and 232 bytes long.
        let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), 232) };
        assert!(bytes.iter().all(|&b| b == 0));
    }
    mm.check_invariants().unwrap();
    // A refusal names the object: here the third, a stack address.
    let mut stack = 0u64;
    let bad = NonNull::from(&mut stack).cast::<u8>();
    let (i, err) = mm
        .kmem_cache_free_bulk(&cache, &[objs[0], objs[1], bad])
        .unwrap_err();
    assert_eq!(i, 2);
    assert!(matches!(err, KmmError::Slab(_)), "{err:?}");
    assert_eq!(active(&mm), "62");
    mm.kmem_cache_free_bulk(&cache, &objs[2..]).unwrap();
    assert_eq!(active(&mm), "0");
    mm.kmem_cache_destroy(&cache).unwrap();
    mm.check_invariants().unwrap();
    let (bare, other) = no_slab_and_a_cache(&mm);
    assert!(matches!(
        bare.kmem_cache_alloc_bulk(&other, GFP_KERNEL, &mut objs),
        Err(KmmError::NoSlab)
    ));
    assert!(matches!(
        bare.kmem_cache_free_bulk(&other, &objs),
        Err((0, KmmError::NoSlab))
    ));
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod eager {
            $(#[test] fn $name() { super::$name::<super::EagerBuddy>(); })*
        }
        mod lazy {
            $(#[test] fn $name() { super::$name::<super::LazyBuddy>(); })*
        }
    };
}

both_backends!(
    bulk_batches_through_the_facade,
    kmalloc_uses_the_size_classes,
    kzalloc_zeroes_and_krealloc_keeps_the_contents,
    slab_caches_and_slabinfo,
    kfree_of_a_foreign_pointer_changes_nothing,
    no_memory_has_no_slab_layer,
    a_local_cache_through_the_facade,
);
