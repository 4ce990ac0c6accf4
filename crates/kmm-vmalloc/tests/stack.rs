//! Kernel stacks: `THREAD_SIZE` stacks from the page allocator, whose
//! overruns land in the neighbour, and vmap'ed stacks, whose overruns hit
//! the guard page below them; per-CPU interrupt stacks.

pub mod common;

use common::{VMALLOC_START, machine, va};
use kmm_gfp::GFP_KERNEL;
use kmm_page::{PAGE_SIZE, PageError, Pfn, VirtAddr};
use kmm_vmalloc::VmallocError;
use kmm_vmalloc::stack::{
    IRQ_STACK_CALLER, StackError, THREAD_STACK_CALLER, ThreadSize, alloc_thread_stack, irq_stacks,
};

#[test]
fn thread_sizes() {
    assert_eq!(
        (
            ThreadSize::X86_64.order(),
            ThreadSize::X86_64.bytes(),
            ThreadSize::X86_64.pages()
        ),
        (2, 16 * 1024, 4)
    );
    assert_eq!(
        (ThreadSize::X86_32.order(), ThreadSize::X86_32.bytes()),
        (1, 8 * 1024)
    );
    assert_eq!(
        ThreadSize::from_order(3).map(ThreadSize::bytes),
        Some(32 * 1024)
    );
    assert_eq!(ThreadSize::from_order(4), None);
}

#[test]
fn direct_stack_overrun_corrupts_the_neighbour() {
    let m = machine(64, 64, 1);
    let free = m.free_pages();
    for size in [ThreadSize::X86_64, ThreadSize::X86_32] {
        let below = m.pages.alloc_pages(GFP_KERNEL, size.order()).unwrap();
        let stack = alloc_thread_stack(&m.pages, GFP_KERNEL, size).unwrap();
        let frames = stack.frames();
        assert!(stack.pfn().is_aligned(size.order()));
        assert_eq!(frames.end.0 - frames.start.0, size.pages());
        // The whole stack is reachable.
        let all = stack.write_at(0, size.bytes()).unwrap();
        assert_eq!(
            all,
            (frames.start.0..frames.end.0).map(Pfn).collect::<Vec<_>>()
        );
        // Eight bytes below the lowest byte: silently in the frame below,
        // which is not the stack's.
        let hit = stack.write_at(-8, 8).unwrap();
        assert_eq!(hit, vec![Pfn(stack.pfn().0 - 1)]);
        assert!(!frames.contains(hit[0]));
        assert_eq!(stack.base(), None, "no memory behind a NoMemory machine");
        stack.free().unwrap();
        m.pages.free_pages(below, size.order()).unwrap();
    }
    assert_eq!(m.free_pages(), free);
}

#[test]
fn vmap_stack_overrun_hits_the_guard_page() {
    let m = machine(64, 64, 1);
    let free = m.free_pages();
    let s = m.vm.vmap_stack(ThreadSize::X86_64, GFP_KERNEL).unwrap();
    let start = VirtAddr(VMALLOC_START);
    assert_eq!(
        (s.guard(), s.bottom(), s.top()),
        (start, va(start, 1), va(start, 5))
    );
    assert_eq!(s.frames().len(), 4);
    assert_eq!(m.free_pages(), free - 4);

    // Every byte of the stack is mapped, through the MMU.
    assert_eq!(s.write_at(0, 16 * 1024).unwrap(), s.frames());
    assert_eq!(s.check_access(VirtAddr(s.top().0 - 1)), Ok(s.frames()[3]));
    // One byte past the end (stacks grow down): the guard page.
    assert_eq!(
        s.write_at(-1, 1),
        Err(StackError::Overflow {
            va: VirtAddr(s.bottom().0 - 1)
        })
    );
    assert_eq!(
        s.write_at(-64, 128),
        Err(StackError::Overflow {
            va: VirtAddr(s.bottom().0 - 64)
        })
    );
    assert_eq!(
        s.check_access(s.guard()),
        Err(StackError::Overflow { va: s.guard() })
    );
    assert_eq!(m.vm.vmalloc_to_page(s.guard()), None);
    // Past the guard, or above the top: not this stack's.
    let past = VirtAddr(s.guard().0.wrapping_sub(1));
    assert_eq!(s.check_access(past), Err(StackError::NotInStack(past)));
    assert_eq!(
        s.write_at(16 * 1024, 1),
        Err(StackError::NotInStack(s.top()))
    );
    let low = VirtAddr(s.bottom().0.wrapping_add_signed(isize::MIN));
    assert_eq!(s.write_at(isize::MIN, 1), Err(StackError::NotInStack(low)));
    assert_eq!(
        s.write_at(isize::MAX, 1),
        Err(StackError::OutOfRange {
            offset: isize::MAX,
            len: 1
        })
    );

    // A second stack: the first one's top guard and its own bottom guard
    // separate them.
    let t = m.vm.vmap_stack(ThreadSize::X86_32, GFP_KERNEL).unwrap();
    assert_eq!(t.guard(), va(s.top(), 1));
    assert_eq!(
        t.write_at(-1, 1),
        Err(StackError::Overflow {
            va: VirtAddr(t.bottom().0 - 1)
        })
    );
    assert_eq!(
        m.vm.vmallocinfo(),
        format!(
            "0xffffc90000000000-0xffffc90000006000   24576 {THREAD_STACK_CALLER} pages=4 vmalloc N0=4\n\
             0xffffc90000006000-0xffffc9000000a000   16384 {THREAD_STACK_CALLER} pages=2 vmalloc N0=2\n"
        )
    );
    assert_eq!(m.vm.check_invariants(), Ok(()));
    m.vm.free_vmap_stack(s).unwrap();
    m.vm.free_vmap_stack(t).unwrap();
    assert_eq!(m.free_pages(), free);
    assert_eq!(m.vm.check_invariants(), Ok(()));
}

#[test]
fn vmap_stack_of_another_space_is_refused() {
    let m = machine(64, 64, 1);
    let other = machine(64, 64, 1);
    let s = m.vm.vmap_stack(ThreadSize::X86_64, GFP_KERNEL).unwrap();
    let guard = s.guard();
    let o = other
        .vm
        .vmalloc(8 * PAGE_SIZE, GFP_KERNEL, "other")
        .unwrap();
    assert_eq!(o, guard, "the same address in the other space");
    let before = other.vm.vmallocinfo();
    assert_eq!(
        other.vm.free_vmap_stack(s),
        Err(VmallocError::NotAnArea(guard))
    );
    assert_eq!(other.vm.vmallocinfo(), before);
    // The stack value is consumed, but its area is still allocated in its
    // own space; vfree of the area start frees it.
    m.vm.vfree(guard).unwrap();
    assert_eq!(m.vm.check_invariants(), Ok(()));
}

#[test]
fn irq_stacks_at_boot() {
    let m = machine(64, 128, 4);
    let free = m.free_pages();
    let direct = irq_stacks(&m.pages, 4, GFP_KERNEL, ThreadSize::X86_32).unwrap();
    assert_eq!(direct.len(), 4);
    assert_eq!(m.free_pages(), free - 8);
    for s in direct {
        s.free().unwrap();
    }
    let vmapped =
        m.vm.vmap_irq_stacks(4, GFP_KERNEL, ThreadSize::X86_64)
            .unwrap();
    assert_eq!(vmapped.len(), 4);
    for (i, s) in vmapped.iter().enumerate() {
        assert_eq!(s.guard(), va(VirtAddr(VMALLOC_START), 6 * i));
        assert!(matches!(
            s.write_at(-1, 1),
            Err(StackError::Overflow { .. })
        ));
    }
    assert!(
        m.vm.vmallocinfo()
            .lines()
            .all(|l| l.contains(IRQ_STACK_CALLER))
    );
    for s in vmapped {
        m.vm.free_vmap_stack(s).unwrap();
    }
    assert_eq!(m.free_pages(), free);

    // All or nothing: 64 frames cannot give 17 CPUs a stack of 4 pages each.
    let e = irq_stacks(&m.pages, 17, GFP_KERNEL, ThreadSize::X86_64).unwrap_err();
    assert!(matches!(
        e,
        StackError::Page(PageError::BelowWatermark { .. } | PageError::NoBlock { .. })
    ));
    assert_eq!(m.free_pages(), free);
    let info = m.vm.vmallocinfo();
    let e =
        m.vm.vmap_irq_stacks(17, GFP_KERNEL, ThreadSize::X86_64)
            .unwrap_err();
    assert!(matches!(e, VmallocError::NoMemory(_)));
    assert_eq!(m.free_pages(), free);
    assert_eq!(m.vm.nr_vmalloc_pages(), 0);
    // The stacks taken before the failure were freed (lazily, as vfree does).
    assert!(m.vm.vmallocinfo().len() >= info.len());
    assert_eq!(m.vm.check_invariants(), Ok(()));
}
