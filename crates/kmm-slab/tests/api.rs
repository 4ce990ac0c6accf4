//! API tests: kmalloc size classes, large kmalloc, krealloc, caches, ctor,
//! alignment, remote frees, slabinfo and meminfo.

mod common;

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use common::boot;
use kmm_gfp::{GFP_DMA, GFP_KERNEL, Gfp, ZoneType};
use kmm_page::{PAGE_SIZE, PageAllocator};
use kmm_slab::{
    SlabAllocator, SlabError, SlabFlags, ZERO_SIZE_PTR, kmalloc_index, kmalloc_size_roundup,
};

fn zone_of(m: &common::Machine, p: NonNull<u8>) -> ZoneType {
    let pfn = m
        .pages
        .phys_memory()
        .virt_to_pfn(p.as_ptr().addr())
        .unwrap();
    m.pages.zone_of(pfn).unwrap()
}

#[test]
fn kmalloc_classes_match_kmalloc_index() {
    let (m, _) = boot(2);
    let expect = |n: usize| match n {
        1..=8 => 8,
        9..=16 => 16,
        17..=32 => 32,
        33..=64 => 64,
        65..=96 => 96,
        97..=128 => 128,
        129..=192 => 192,
        _ => n.next_power_of_two(),
    };
    for size in (1..=8192)
        .step_by(7)
        .chain([65, 96, 97, 128, 129, 192, 193, 256, 257, 8192])
    {
        let p = m.slab.kmalloc(size, GFP_KERNEL).unwrap();
        let class = expect(size);
        assert_eq!(m.slab.ksize(p).unwrap(), class, "size {size}");
        assert_eq!(kmalloc_size_roundup(size), Some(class));
        let name = SlabAllocator::kmalloc_cache_name(size, GFP_KERNEL).unwrap();
        assert_eq!(m.slab.cache_of(p).as_deref(), Some(name));
        // Power-of-two classes align to their size, others to their largest power-of-two divisor.
        let align = 1 << class.trailing_zeros();
        assert_eq!(p.as_ptr().addr() % align, 0, "size {size}");
        m.slab.kfree(Some(p)).unwrap();
    }
    assert_eq!(
        SlabAllocator::kmalloc_cache_name(97, GFP_KERNEL),
        Some("kmalloc-128")
    );
    assert_eq!(
        SlabAllocator::kmalloc_cache_name(193, GFP_KERNEL),
        Some("kmalloc-256")
    );
    assert_eq!(
        SlabAllocator::kmalloc_cache_name(65, GFP_KERNEL),
        Some("kmalloc-96")
    );
    assert_eq!(
        SlabAllocator::kmalloc_cache_name(64, GFP_DMA),
        Some("dma-kmalloc-64")
    );
    assert_eq!(SlabAllocator::kmalloc_cache_name(8193, GFP_KERNEL), None);
    assert_eq!(kmalloc_index(8193), None);
    m.slab.check_invariants().unwrap();
}

#[test]
fn kmalloc_zero_and_null() {
    let (m, _) = boot(1);
    let before = m.digest();
    let z = m.slab.kmalloc(0, GFP_KERNEL).unwrap();
    assert_eq!(z, ZERO_SIZE_PTR);
    assert_eq!(z.as_ptr().addr(), 16);
    assert_eq!(m.slab.ksize(z), Ok(0));
    m.slab.kfree(Some(z)).unwrap();
    m.slab.kfree(None).unwrap();
    assert_eq!(m.digest(), before);
}

#[test]
fn large_kmalloc_goes_to_the_page_allocator() {
    let (m, _) = boot(1);
    let free0 = m.buddy_free();
    let p = m.slab.kmalloc(8193, GFP_KERNEL).unwrap();
    assert_eq!(p.as_ptr().addr() % PAGE_SIZE, 0);
    assert_eq!(m.slab.ksize(p), Ok(16384));
    assert_eq!(m.slab.cache_of(p), None);
    assert_eq!(m.slab.meminfo().unreclaimable_kb, 16);
    assert_eq!(m.buddy_free(), free0 - 4);
    let big = m.slab.kmalloc(4 << 20, GFP_KERNEL).unwrap();
    assert_eq!(m.slab.ksize(big), Ok(4 << 20));
    assert_eq!(
        m.slab.kmalloc((4 << 20) + 1, GFP_KERNEL),
        Err(SlabError::TooLarge {
            size: (4 << 20) + 1,
            max: 4 << 20
        })
    );
    m.slab.kfree(Some(p)).unwrap();
    m.slab.kfree(Some(big)).unwrap();
    assert_eq!(m.slab.meminfo().unreclaimable_kb, 0);
    assert_eq!(m.buddy_free(), free0);
}

#[test]
fn kzalloc_kcalloc_zero_memory() {
    let (m, _) = boot(1);
    // Dirty some objects first so zeroing is observable.
    let mut ps = vec![];
    for _ in 0..8 {
        let p = m.slab.kmalloc(200, GFP_KERNEL).unwrap();
        // SAFETY: `p` is a live 200-byte allocation (kmalloc-256).
        unsafe { p.as_ptr().write_bytes(0xee, 200) };
        ps.push(p);
    }
    for p in ps {
        m.slab.kfree(Some(p)).unwrap();
    }
    for _ in 0..8 {
        let p = m.slab.kzalloc(200, GFP_KERNEL).unwrap();
        // SAFETY: `p` is a live 200-byte allocation.
        let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), 200) };
        assert!(bytes.iter().all(|&b| b == 0));
        let q = m.slab.kcalloc(25, 8, GFP_KERNEL).unwrap();
        // SAFETY: `q` is a live 200-byte allocation.
        let bytes = unsafe { core::slice::from_raw_parts(q.as_ptr(), 200) };
        assert!(bytes.iter().all(|&b| b == 0));
        m.slab.kfree(Some(p)).unwrap();
        m.slab.kfree(Some(q)).unwrap();
    }
}

#[test]
fn krealloc_in_place_grow_and_free() {
    let (m, _) = boot(1);
    let p = m.slab.kmalloc(100, GFP_KERNEL).unwrap();
    // SAFETY: `p` is a live 100-byte allocation.
    unsafe { p.as_ptr().write_bytes(0x42, 100) };
    assert_eq!(m.slab.krealloc(Some(p), 128, GFP_KERNEL), Ok(p));
    assert_eq!(m.slab.krealloc(Some(p), 10, GFP_KERNEL), Ok(p));
    let q = m.slab.krealloc(Some(p), 5000, GFP_KERNEL).unwrap();
    assert_ne!(q, p);
    assert_eq!(m.slab.ksize(q), Ok(8192));
    // SAFETY: `q` is a live 5000-byte allocation holding the copied 128 bytes.
    let bytes = unsafe { core::slice::from_raw_parts(q.as_ptr(), 100) };
    assert!(bytes.iter().all(|&b| b == 0x42));
    assert!(m.slab.kfree(Some(p)).is_err(), "the old object was freed");
    let r = m.slab.krealloc(Some(q), 20000, GFP_KERNEL).unwrap();
    assert_eq!(r.as_ptr().addr() % PAGE_SIZE, 0);
    // SAFETY: `r` is a live 20000-byte allocation holding the copied bytes.
    let bytes = unsafe { core::slice::from_raw_parts(r.as_ptr(), 100) };
    assert!(bytes.iter().all(|&b| b == 0x42));
    assert_eq!(m.slab.krealloc(Some(r), 0, GFP_KERNEL), Ok(ZERO_SIZE_PTR));
    let s = m.slab.krealloc(None, 64, GFP_KERNEL).unwrap();
    assert_eq!(m.slab.cache_of(s).as_deref(), Some("kmalloc-64"));
    m.slab.kfree(Some(s)).unwrap();
    m.slab.shrink_all();
    assert_eq!(m.slab.slab_pages(), 0);
    assert_eq!(m.slab.large_kmalloc_pages(), 0);
}

#[test]
fn gfp_dma_uses_dma_caches_from_zone_dma() {
    let (m, _) = boot(1);
    let p = m.slab.kmalloc(64, GFP_DMA | GFP_KERNEL).unwrap();
    assert_eq!(m.slab.cache_of(p).as_deref(), Some("dma-kmalloc-64"));
    assert_eq!(zone_of(&m, p), ZoneType::Dma);
    let q = m.slab.kmalloc(64, GFP_KERNEL | Gfp::HIGHMEM).unwrap();
    assert_eq!(m.slab.cache_of(q).as_deref(), Some("kmalloc-64"));
    assert_ne!(zone_of(&m, q), ZoneType::Dma);
    let c = m
        .slab
        .kmem_cache_create("dmabuf", 300, 0, SlabFlags::CACHE_DMA, None)
        .unwrap();
    let o = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    assert_eq!(zone_of(&m, o), ZoneType::Dma);
    for x in [p, q, o] {
        m.slab.kfree(Some(x)).unwrap();
    }
}

static CTOR_CALLS: AtomicUsize = AtomicUsize::new(0);

fn ctor(p: NonNull<u8>) {
    CTOR_CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the slab layer hands the constructor a whole 48-byte object.
    unsafe { p.as_ptr().write_bytes(0x77, 48) };
}

#[test]
fn ctor_runs_once_per_object_at_slab_creation() {
    let (m, _) = boot(1);
    let c = m
        .slab
        .kmem_cache_create("ctor_cache", 48, 0, SlabFlags::empty(), Some(ctor))
        .unwrap();
    let per_slab = c.objects_per_slab();
    let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    assert_eq!(CTOR_CALLS.load(Ordering::Relaxed), per_slab);
    // SAFETY: `p` is a live 48-byte object.
    let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), 48) };
    assert!(bytes.iter().all(|&b| b == 0x77));
    m.slab.kmem_cache_free(&c, p).unwrap();
    let q = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
    assert_eq!(
        CTOR_CALLS.load(Ordering::Relaxed),
        per_slab,
        "no ctor on reuse"
    );
    // With a ctor the free pointer lives outside the object, so the object keeps its constructed state.
    assert_eq!(c.free_pointer_offset(), 48);
    // SAFETY: `q` is a live 48-byte object.
    let bytes = unsafe { core::slice::from_raw_parts(q.as_ptr(), 48) };
    assert!(bytes.iter().all(|&b| b == 0x77));
    m.slab.kmem_cache_free(&c, q).unwrap();
}

#[test]
fn hwcache_align_and_explicit_align() {
    let (m, _) = boot(1);
    let a = m
        .slab
        .kmem_cache_create("hw100", 100, 0, SlabFlags::HWCACHE_ALIGN, None)
        .unwrap();
    assert_eq!((a.align(), a.size()), (64, 128));
    let b = m
        .slab
        .kmem_cache_create("hw20", 20, 0, SlabFlags::HWCACHE_ALIGN, None)
        .unwrap();
    assert_eq!((b.align(), b.size()), (32, 32));
    let c = m
        .slab
        .kmem_cache_create("al256", 24, 256, SlabFlags::empty(), None)
        .unwrap();
    assert_eq!((c.align(), c.size()), (256, 256));
    for cache in [&a, &b, &c] {
        let ps: Vec<_> = (0..50)
            .map(|_| m.slab.kmem_cache_alloc(cache, GFP_KERNEL).unwrap())
            .collect();
        for p in &ps {
            assert_eq!(p.as_ptr().addr() % cache.align(), 0);
        }
        for p in ps {
            m.slab.kmem_cache_free(cache, p).unwrap();
        }
    }
}

#[test]
fn remote_free_goes_back_to_the_owning_slab() {
    let (m, cpus) = boot(2);
    let c = m
        .slab
        .kmem_cache_create("remote", 256, 0, SlabFlags::empty(), None)
        .unwrap();
    let n = c.objects_per_slab() * 3;
    let ps: Vec<_> = (0..n)
        .map(|_| m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap())
        .collect();
    cpus.set_current(1).unwrap();
    for p in &ps {
        m.slab.kmem_cache_free(&c, *p).unwrap();
        m.slab.check_invariants().unwrap();
    }
    let row = m
        .slab
        .slabinfo_rows()
        .into_iter()
        .find(|r| r.name == "remote")
        .unwrap();
    assert_eq!(row.active_objs, 0);
    // CPU 0 reuses the objects freed remotely to its slab before taking new pages.
    cpus.set_current(0).unwrap();
    let slabs_before = row.num_slabs;
    let again: Vec<_> = (0..n)
        .map(|_| m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap())
        .collect();
    let row = m
        .slab
        .slabinfo_rows()
        .into_iter()
        .find(|r| r.name == "remote")
        .unwrap();
    assert_eq!(row.num_slabs, slabs_before);
    for p in again {
        m.slab.kfree(Some(p)).unwrap();
    }
    assert_eq!(m.slab.kmem_cache_shrink(&c), Ok(true));
    m.slab.check_invariants().unwrap();
}

#[test]
fn empty_slabs_beyond_min_partial_return_to_the_buddy() {
    let (m, _) = boot(1);
    let free0 = m.buddy_free();
    let c = m
        .slab
        .kmem_cache_create("churn", 1000, 0, SlabFlags::empty(), None)
        .unwrap();
    let per = c.objects_per_slab();
    let ps: Vec<_> = (0..per * 20)
        .map(|_| m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap())
        .collect();
    let row = m
        .slab
        .slabinfo_rows()
        .into_iter()
        .find(|r| r.name == "churn")
        .unwrap();
    assert_eq!(row.num_slabs, 20);
    for p in ps {
        m.slab.kmem_cache_free(&c, p).unwrap();
    }
    let row = m
        .slab
        .slabinfo_rows()
        .into_iter()
        .find(|r| r.name == "churn")
        .unwrap();
    // At most min_partial empty slabs stay on the partial list, plus the CPU slab.
    assert!(row.num_slabs <= c.min_partial() + 1, "{row:?}");
    assert_eq!(row.active_objs, 0);
    assert_eq!(m.slab.kmem_cache_shrink(&c), Ok(true));
    m.slab.kmem_cache_destroy(&c).unwrap();
    assert_eq!(m.buddy_free(), free0);
}

#[test]
fn slabinfo_is_byte_exact() {
    let (m, _) = boot(8);
    let ps: Vec<_> = (0..40)
        .map(|_| m.slab.kmalloc(512, GFP_KERNEL).unwrap())
        .collect();
    let info = m.slab.slabinfo();
    let mut lines = info.lines();
    assert_eq!(lines.next(), Some("slabinfo - version: 2.1"));
    assert_eq!(
        lines.next(),
        Some(
            "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"
        )
    );
    // 8 CPUs: kmalloc-512 is order 2, 32 objects per slab (the reference's worked example).
    let row = info
        .lines()
        .find(|l| l.starts_with("kmalloc-512 "))
        .unwrap();
    assert_eq!(
        row,
        "kmalloc-512           40     64    512   32    4 : tunables    0    0    0 : slabdata      2      2      0"
    );
    let row8 = info.lines().find(|l| l.starts_with("kmalloc-8 ")).unwrap();
    assert_eq!(
        row8,
        "kmalloc-8              0      0      8  512    1 : tunables    0    0    0 : slabdata      0      0      0"
    );
    let row4k = info.lines().find(|l| l.starts_with("kmalloc-4k ")).unwrap();
    assert!(row4k.contains("   4096    8    8 :"), "{row4k}");
    // Every kmalloc cache is listed, dma ones too.
    assert_eq!(
        info.lines().filter(|l| l.starts_with("kmalloc-")).count(),
        13
    );
    assert_eq!(
        info.lines()
            .filter(|l| l.starts_with("dma-kmalloc-"))
            .count(),
        13
    );
    assert_eq!(m.slab.meminfo().unreclaimable_kb, 2 * 16);
    for p in ps {
        m.slab.kfree(Some(p)).unwrap();
    }
}

#[test]
fn meminfo_splits_reclaimable() {
    let (m, _) = boot(1);
    let r = m
        .slab
        .kmem_cache_create(
            "dentry",
            192,
            0,
            SlabFlags::RECLAIM_ACCOUNT | SlabFlags::HWCACHE_ALIGN,
            None,
        )
        .unwrap();
    let p = m.slab.kmem_cache_alloc(&r, GFP_KERNEL).unwrap();
    let q = m.slab.kmalloc(100, GFP_KERNEL).unwrap();
    let mi = m.slab.meminfo();
    assert_eq!(mi.reclaimable_kb, 4 << r.order());
    assert_eq!(mi.unreclaimable_kb, 4);
    assert_eq!(mi.slab_kb(), mi.reclaimable_kb + mi.unreclaimable_kb);
    m.slab.kmem_cache_free(&r, p).unwrap();
    m.slab.kfree(Some(q)).unwrap();
}

#[test]
fn flags_print_and_parse_with_kernel_names() {
    let f = SlabFlags::HWCACHE_ALIGN | SlabFlags::POISON;
    assert_eq!(f.to_string(), "SLAB_POISON|SLAB_HWCACHE_ALIGN");
    assert_eq!("SLAB_HWCACHE_ALIGN|SLAB_POISON".parse::<SlabFlags>(), Ok(f));
    assert_eq!("0".parse::<SlabFlags>(), Ok(SlabFlags::empty()));
    assert!("SLAB_NOPE".parse::<SlabFlags>().is_err());
    assert_eq!(SlabFlags::empty().to_string(), "0");
}
