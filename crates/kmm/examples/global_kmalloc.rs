//! Ordinary Rust code (collections, strings, over-aligned boxes, threads)
//! running with kmalloc as the global allocator, then where the memory went:
//! the counters of [`GlobalKmalloc`] and the busiest rows of `/proc/slabinfo`.
//!
//! Run it with `cargo run -p kmm --example global_kmalloc`.

use std::collections::{BTreeMap, HashMap};
use std::thread;

use kmm::GlobalKmalloc;

/// A 256 MiB machine with 4 CPUs, booted by the first allocation.
#[global_allocator]
pub(crate) static KMALLOC: GlobalKmalloc = GlobalKmalloc::new(256 << 20, 4);

/// A cache line.
#[repr(align(64))]
struct Line([u8; 64]);

/// A page.
#[repr(align(4096))]
struct Page([u8; 4096]);

/// Runs the workload and prints the report.
pub(crate) fn main() {
    // Collections and strings.
    let mut numbers: Vec<u64> = (0..100_000).collect();
    numbers.retain(|n| n % 3 == 0);
    assert_eq!(
        numbers.iter().sum::<u64>(),
        (0..100_000u64).filter(|n| n % 3 == 0).sum()
    );
    let mut words: HashMap<String, usize> = HashMap::new();
    for i in 0..20_000 {
        *words.entry(format!("word{}", i % 1000)).or_default() += 1;
    }
    assert_eq!(words.len(), 1000);
    assert!(words.values().all(|&count| count == 20));
    let tree: BTreeMap<u32, String> = (0..5000).map(|i| (i, i.to_string().repeat(3))).collect();
    assert_eq!(tree[&4321], "432143214321");

    // Over-aligned allocations keep their alignment.
    let lines: Vec<Box<Line>> = (0..200).map(|i| Box::new(Line([i as u8; 64]))).collect();
    assert!(lines.iter().all(|l| (&raw const **l).addr() % 64 == 0));
    assert!(lines.iter().enumerate().all(|(i, l)| l.0[63] == i as u8));
    let pages: Vec<Box<Page>> = (0..8).map(|_| Box::new(Page([7; 4096]))).collect();
    assert!(
        pages
            .iter()
            .all(|p| (&raw const **p).addr() % 4096 == 0 && p.0[4095] == 7)
    );

    // Threads, each bound to a CPU of the machine as it first allocates.
    let workers: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                let mut text = String::new();
                let mut parts = Vec::new();
                for i in 0..10_000 {
                    let part = format!("{t}:{i};");
                    text.push_str(&part);
                    parts.push(part);
                }
                parts.retain(|p| p.ends_with("7;"));
                (text.len(), parts.len())
            })
        })
        .collect();
    for worker in workers {
        let (len, kept) = worker.join().expect("the worker ran");
        assert!(len > 50_000);
        assert_eq!(kept, 1000);
    }

    // Above KMALLOC_MAX_SIZE (4 MiB) the system allocator serves.
    let big = vec![1u8; 8 << 20];
    assert_eq!(big.iter().map(|&b| usize::from(b)).sum::<usize>(), 8 << 20);
    drop(big);

    let stats = KMALLOC.stats();
    let mm = KMALLOC.memory_manager().expect("the machine booted");
    println!(
        "global kmalloc: kmallocs={} fallbacks={} errors={}",
        stats.kmallocs, stats.fallbacks, stats.errors
    );
    let slab = mm.slab().expect("host memory has a slab layer");
    let mut rows = slab.slabinfo_rows();
    rows.sort_by_key(|r| core::cmp::Reverse(r.active_objs));
    for row in rows.iter().take(5) {
        println!(
            "{:<16} active_objs={} num_objs={} objsize={} slabs={}",
            row.name, row.active_objs, row.num_objs, row.objsize, row.num_slabs
        );
    }
    assert!(stats.kmallocs > stats.fallbacks, "{stats:?}");
    assert_eq!(stats.errors, 0);
    drop((numbers, words, tree, lines, pages));
}
