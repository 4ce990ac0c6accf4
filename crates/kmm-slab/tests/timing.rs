//! A rough timing of the fast paths (the real measurement is criterion's);
//! it asserts only that the fast path works in a loop, and prints ns per pair.

mod common;

use std::time::Instant;

use common::boot;
use kmm_gfp::GFP_KERNEL;
use kmm_slab::SlabFlags;

#[test]
fn fast_path_pair_timing() {
    let (m, _) = boot(1);
    let c = m
        .slab
        .kmem_cache_create("pair", 64, 0, SlabFlags::empty(), None)
        .unwrap();
    let n = 200_000;
    for _ in 0..1000 {
        let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
        m.slab.kmem_cache_free(&c, p).unwrap();
    }
    let t = Instant::now();
    for _ in 0..n {
        let p = m.slab.kmem_cache_alloc(&c, GFP_KERNEL).unwrap();
        m.slab
            .kmem_cache_free(&c, core::hint::black_box(p))
            .unwrap();
    }
    let cache_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let t = Instant::now();
    for _ in 0..n {
        let p = m
            .slab
            .kmalloc(core::hint::black_box(100), GFP_KERNEL)
            .unwrap();
        m.slab.kfree(Some(core::hint::black_box(p))).unwrap();
    }
    let kmalloc_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    let t = Instant::now();
    for _ in 0..n {
        let v = core::hint::black_box(vec![0u8; 100]);
        drop(v);
    }
    let sys_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    println!(
        "kmem_cache pair {cache_ns:.1} ns, kmalloc(100) pair {kmalloc_ns:.1} ns, system alloc pair {sys_ns:.1} ns"
    );
    assert_eq!(m.slab.check_invariants(), Ok(()));
}
