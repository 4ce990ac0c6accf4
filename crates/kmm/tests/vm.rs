//! Kernel virtual memory through the facade: vmalloc over real host memory
//! and over a software MMU, kmap of highmem frames, the interrupt stacks and
//! per-CPU chunks in `/proc/vmallocinfo`, the `/proc/meminfo` lines, and
//! misuse that is refused with the state unchanged, on both buddy backends.

use kmm::vm::{X86_32_PKMAP_BASE, X86_64_VMALLOC_START};
use kmm::{
    Arch, Backing, BuddyBackend, EagerBuddy, FixedCpu, GFP_HIGHUSER, GFP_KERNEL, HighmemError,
    KmmError, LazyBuddy, MachineConfig, MemoryManager, MemorySpec, PAGE_SIZE, PercpuError,
    VirtAddr, VmallocError, ZoneType,
};

fn boot<B: BuddyBackend>(arch: Arch, bytes: u64, backing: Backing) -> MemoryManager<B> {
    let mm = MemoryManager::boot(MachineConfig {
        arch,
        memory: MemorySpec::Size(bytes),
        backing,
        ..MachineConfig::default()
    })
    .unwrap();
    mm.check_invariants().unwrap();
    mm
}

fn backings() -> Vec<Backing> {
    vec![Backing::NoMemory, Backing::Host]
}

/// Everything a refused call must leave alone.
fn state<B: BuddyBackend>(mm: &MemoryManager<B>) -> String {
    let mut s = String::new();
    for file in MemoryManager::<B>::PROC_FILES {
        s.push_str(&mm.proc(file).unwrap());
    }
    for cpu in 0..mm.nr_cpus() {
        s.push_str(&format!(
            "{:?}",
            mm.highmem().kmap_local_stack(cpu).unwrap()
        ));
    }
    s.push_str(&format!("{:?}", mm.highmem().pkmap_stats()));
    s.push_str(&format!("{:?}", mm.percpu().unwrap().chunks_info()));
    s
}

fn vmalloc_writes_reach_each_frame_through_the_direct_map<B: BuddyBackend>() {
    let mm: MemoryManager<B> = boot(Arch::X86_64, 64 << 20, Backing::Host);
    let a = mm.vmalloc(3 * PAGE_SIZE - 10, GFP_KERNEL).unwrap();
    assert!(mm.is_vmalloc_addr(a));
    let mut frames = Vec::new();
    for i in 0..3 {
        let va = VirtAddr(a.0 + i * PAGE_SIZE);
        let ptr = mm.vmalloc_space().as_ptr(va).expect("host memory");
        // SAFETY: the area was vmalloc'ed by this test and is not freed yet,
        // so its page `i` is mapped and nobody else touches it.
        unsafe { ptr.as_ptr().write_bytes(0x10 + i as u8, PAGE_SIZE) };
        frames.push(mm.vmalloc_to_page(va).unwrap());
    }
    assert_eq!(mm.vmalloc_to_page(VirtAddr(a.0 + 3 * PAGE_SIZE)), None);
    for (i, pfn) in frames.iter().enumerate() {
        let direct = mm
            .pages()
            .phys()
            .direct_map(*pfn)
            .expect("x86-64 frames are lowmem");
        // SAFETY: the frame belongs to the area this test owns; nothing
        // writes it while the slice lives.
        let bytes = unsafe { core::slice::from_raw_parts(direct.as_ptr(), PAGE_SIZE) };
        assert!(bytes.iter().all(|&b| b == 0x10 + i as u8), "page {i}");
    }
    mm.vfree(a).unwrap();
    mm.check_invariants().unwrap();
}

fn kmap_of_a_highmem_frame_writes_the_frame<B: BuddyBackend>() {
    let mm: MemoryManager<B> = boot(Arch::X86_32, 2 << 30, Backing::Host);
    let pfn = mm.alloc_pages(GFP_HIGHUSER, 0).unwrap();
    assert_eq!(mm.zone_of(pfn), Some(ZoneType::HighMem));
    assert_eq!(mm.pages().phys().direct_map(pfn), None);
    {
        let map = mm.highmem().kmap(pfn).unwrap();
        let (lo, hi) = mm.highmem().pkmap_window();
        assert!(lo <= map.addr() && map.addr() < hi);
        // SAFETY: the frame was allocated to this test and is kmapped while
        // the guard lives.
        unsafe { map.as_ptr().unwrap().as_ptr().write_bytes(0x5a, PAGE_SIZE) };
    }
    // A second mapping of the same frame, elsewhere, sees the bytes.
    let at = mm.kmap_atomic(pfn).unwrap();
    let ptr = mm.vmalloc_space().mmu().as_ptr(at).unwrap();
    // SAFETY: the frame is ours and mapped at `at` until kunmap_atomic.
    let bytes = unsafe { core::slice::from_raw_parts(ptr.as_ptr(), PAGE_SIZE) };
    assert!(bytes.iter().all(|&b| b == 0x5a));
    mm.kunmap_atomic(at).unwrap();
    mm.free_pages(pfn, 0).unwrap();
    mm.check_invariants().unwrap();
}

fn vmallocinfo_lists_the_irq_stacks_and_the_first_percpu_chunk<B: BuddyBackend>() {
    for backing in backings() {
        let mm: MemoryManager<B> = boot(Arch::X86_64, 64 << 20, backing);
        let info = mm.proc("/proc/vmallocinfo").unwrap();
        let stacks: Vec<&str> = info
            .lines()
            .filter(|l| l.contains(" irq_init_percpu_irqstack "))
            .collect();
        assert_eq!(stacks.len(), mm.nr_cpus(), "{info}");
        for line in &stacks {
            // A 16 KiB stack with a guard page below and one above.
            assert!(
                line.ends_with(" 24576 irq_init_percpu_irqstack pages=4 vmalloc N0=4"),
                "{line}"
            );
        }
        assert_eq!(mm.irq_stacks().len(), mm.nr_cpus());
        let chunks = info
            .lines()
            .filter(|l| l.contains(" pcpu_get_vm_areas "))
            .count();
        assert_eq!(chunks, 1, "{info}");
        // Addresses rise through the file, and each size is end - start.
        let mut prev = 0;
        for line in info.lines() {
            let (range, rest) = line.split_once(' ').unwrap();
            let (s, e) = range.split_once('-').unwrap();
            let s = usize::from_str_radix(&s[2..], 16).unwrap();
            let e = usize::from_str_radix(&e[2..], 16).unwrap();
            assert!(s >= prev);
            prev = e;
            let size: usize = rest.split_whitespace().next().unwrap().parse().unwrap();
            assert_eq!(e - s, size);
        }
        if !mm.virtual_layout().host {
            assert!(
                info.starts_with(&format!("0x{X86_64_VMALLOC_START:x}-")),
                "{info}"
            );
        }
    }
}

fn meminfo<B: BuddyBackend>(mm: &MemoryManager<B>, label: &str) -> u64 {
    let text = mm.proc("/proc/meminfo").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label} in {text}"));
    line[16..24].trim().parse().unwrap()
}

fn meminfo_has_the_vmalloc_and_percpu_lines<B: BuddyBackend>() {
    for backing in backings() {
        let mm: MemoryManager<B> = boot(Arch::X86_64, 64 << 20, backing);
        assert_eq!(meminfo(&mm, "VmallocTotal:"), 1 << 20);
        assert_eq!(meminfo(&mm, "VmallocChunk:"), 0);
        let used = meminfo(&mm, "VmallocUsed:");
        // Two interrupt stacks of 16 KiB.
        assert_eq!(used, 32);
        let a = mm.vzalloc(40000, GFP_KERNEL).unwrap();
        assert_eq!(meminfo(&mm, "VmallocUsed:"), used + 40);
        mm.vfree(a).unwrap();
        assert_eq!(meminfo(&mm, "VmallocUsed:"), used);
        let percpu = mm.percpu().unwrap().nr_pages() as u64 * 4;
        assert!(percpu > 0);
        assert_eq!(meminfo(&mm, "Percpu:"), percpu);
    }
}

fn x86_32_layout_is_linux_like<B: BuddyBackend>() {
    let mm: MemoryManager<B> = boot(Arch::X86_32, 2 << 30, Backing::NoMemory);
    let l = mm.virtual_layout();
    // PAGE_OFFSET + 896 MiB of lowmem + VMALLOC_OFFSET.
    assert_eq!(
        l.vmalloc_start,
        VirtAddr(0xc000_0000 + (896 << 20) + (8 << 20))
    );
    assert_eq!(l.vmalloc_end, VirtAddr(X86_32_PKMAP_BASE - 2 * PAGE_SIZE));
    assert_eq!(l.pkmap_base, VirtAddr(X86_32_PKMAP_BASE));
    assert_eq!(l.fixmap_end, VirtAddr(0xffff_f000));
    assert_eq!(
        meminfo(&mm, "VmallocTotal:"),
        ((X86_32_PKMAP_BASE - 2 * PAGE_SIZE - 0xf880_0000) >> 10) as u64
    );
    let info = mm.proc("/proc/vmallocinfo").unwrap();
    assert!(
        info.lines().all(|l| l.as_bytes()[10] == b'-'),
        "8 hex digits: {info}"
    );
    // Without memory every frame needs a slot; the same page shares it.
    let pfn = mm.alloc_pages(GFP_HIGHUSER, 0).unwrap();
    let a = mm.kmap(pfn).unwrap();
    assert_eq!(mm.kmap(pfn).unwrap(), a);
    // `map_new_virtual` advances `last_pkmap_nr` before it looks: slot 1 first.
    assert_eq!(mm.highmem().pkmap_nr(a), Some(1));
    mm.kunmap(pfn).unwrap();
    mm.kunmap(pfn).unwrap();
    mm.check_invariants().unwrap();
}

fn misuse_is_refused_and_changes_nothing<B: BuddyBackend>() {
    for backing in backings() {
        let mm: MemoryManager<B> = boot(Arch::X86_32, 2 << 30, backing);
        let a = mm.vmalloc(5 * PAGE_SIZE, GFP_KERNEL).unwrap();
        let high = [
            mm.alloc_pages(GFP_HIGHUSER, 0).unwrap(),
            mm.alloc_pages(GFP_HIGHUSER, 0).unwrap(),
        ];
        let first = mm.kmap_atomic(high[0]).unwrap();
        let second = mm.kmap_atomic(high[1]).unwrap();
        let p = mm.alloc_percpu(8, 8).unwrap();
        let before = state(&mm);

        let outside = VirtAddr(0x1000);
        assert!(matches!(
            mm.vfree(outside),
            Err(KmmError::Vmalloc(VmallocError::NotAnArea(x))) if x == outside
        ));
        let stack = mm.irq_stacks()[0].guard();
        assert!(matches!(
            mm.vfree(stack),
            Err(KmmError::Vmalloc(VmallocError::NotAnArea(_)))
        ));
        assert!(matches!(
            mm.kunmap_atomic(first),
            Err(KmmError::Highmem(HighmemError::NotLifo { addr, top })) if addr == first && top == second
        ));
        assert!(matches!(
            mm.kunmap(high[0]),
            Err(KmmError::Highmem(HighmemError::NotMapped(pfn))) if pfn == high[0]
        ));
        assert!(matches!(
            mm.alloc_percpu(0, 8),
            Err(KmmError::Percpu(PercpuError::IllegalSizeOrAlign {
                size: 0,
                align: 8
            }))
        ));
        // A machine with an atomic kmap cannot move to another CPU.
        assert!(matches!(mm.set_cpu(1), Err(KmmError::Cpu(_))));
        assert_eq!(state(&mm), before);

        mm.vfree(a).unwrap();
        let after_free = state(&mm);
        assert!(matches!(
            mm.vfree(a),
            Err(KmmError::Vmalloc(VmallocError::DoubleFree(x))) if x == a
        ));
        mm.free_percpu(p).unwrap();
        let after_percpu = state(&mm);
        assert_ne!(after_free, after_percpu);
        assert!(matches!(
            mm.free_percpu(p),
            Err(KmmError::Percpu(PercpuError::NotAllocated { .. }))
        ));
        assert_eq!(state(&mm), after_percpu);

        mm.kunmap_atomic(second).unwrap();
        mm.kunmap_atomic(first).unwrap();
        mm.set_cpu(1).unwrap();
        mm.check_invariants().unwrap();
    }
}

fn percpu_chunks_come_from_vmalloc<B: BuddyBackend>() {
    for backing in backings() {
        let host = matches!(backing, Backing::Host);
        let mm: MemoryManager<B> = boot(Arch::X86_64, 64 << 20, backing);
        let p = mm.alloc_percpu(8, 8).unwrap();
        assert_eq!(mm.percpu_chunk_of(p), Some(0));
        assert!(mm.is_vmalloc_addr(VirtAddr(p.addr())) || host);
        assert!(
            mm.vmalloc_to_page(VirtAddr(p.addr() & !(PAGE_SIZE - 1)))
                .is_some()
        );
        let pcpu = mm.percpu().unwrap();
        assert_eq!(pcpu.chunks_info()[0].backed, host);
        if host {
            let cpus = FixedCpu::new(2);
            cpus.set_current(1).unwrap();
            pcpu.this_cpu_add(p, &cpus, 7u64).unwrap();
            assert_eq!(pcpu.per_cpu_read::<u64>(p, 0).unwrap(), 0);
            assert_eq!(pcpu.per_cpu_sum::<u64>(p).unwrap(), 7);
        }
        // Fill the first chunk and more: the second chunk is a new vmalloc area.
        let before = mm.proc("/proc/vmallocinfo").unwrap().lines().count();
        let mut big = Vec::new();
        while mm.percpu().unwrap().nr_chunks() < 2 {
            big.push(mm.alloc_percpu(4096, 8).unwrap());
        }
        assert_eq!(
            mm.proc("/proc/vmallocinfo").unwrap().lines().count(),
            before + 1
        );
        for q in big {
            mm.free_percpu(q).unwrap();
        }
        mm.free_percpu(p).unwrap();
        // `pcpu_balance_free` keeps one empty chunk besides the first.
        assert_eq!(mm.percpu().unwrap().nr_chunks(), 2);
        assert!(
            mm.percpu()
                .unwrap()
                .chunks_info()
                .iter()
                .all(|c| c.nr_alloc == 0)
        );
        mm.check_invariants().unwrap();
    }
}

fn toy_machines_take_nothing_at_boot<B: BuddyBackend>() {
    let mm: MemoryManager<B> = MemoryManager::boot(MachineConfig {
        memory: MemorySpec::Toy {
            pages: 64,
            free: None,
        },
        backing: Backing::NoMemory,
        ..MachineConfig::default()
    })
    .unwrap();
    assert_eq!(mm.proc("/proc/vmallocinfo").unwrap(), "");
    assert_eq!(mm.summary().allocated_pages, 0);
    assert_eq!(meminfo(&mm, "Percpu:"), 0);
    // The per-CPU allocator is set up on first use.
    let p = mm.alloc_percpu(4, 4).unwrap();
    assert!(meminfo(&mm, "Percpu:") > 0);
    assert!(mm.summary().allocated_pages > 0);
    mm.free_percpu(p).unwrap();
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod eager {
            use super::*;
            $(#[test] fn $name() { super::$name::<EagerBuddy>(); })*
        }
        mod lazy {
            use super::*;
            $(#[test] fn $name() { super::$name::<LazyBuddy>(); })*
        }
    };
}

both_backends!(
    vmalloc_writes_reach_each_frame_through_the_direct_map,
    kmap_of_a_highmem_frame_writes_the_frame,
    vmallocinfo_lists_the_irq_stacks_and_the_first_percpu_chunk,
    meminfo_has_the_vmalloc_and_percpu_lines,
    x86_32_layout_is_linux_like,
    misuse_is_refused_and_changes_nothing,
    percpu_chunks_come_from_vmalloc,
    toy_machines_take_nothing_at_boot,
);

#[test]
fn a_memory_manager_is_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<MemoryManager<EagerBuddy>>();
    send_sync::<MemoryManager<LazyBuddy>>();
}
