//! Unit tests: `FixedCpu`, guard bookkeeping, errors that leave the state unchanged, counters.

use alloc::format;
use alloc::vec::Vec;

use proptest::prelude::*;

use crate::{CpuContext, CpuVarGuard, FixedCpu, PerCpu, PerCpuError, PreemptGuard, put_cpu_var};

/// Every copy of `v`, in CPU order.
fn values<T: Clone>(v: &PerCpu<T>) -> Vec<T> {
    v.iter().map(|g| (*g).clone()).collect()
}

/// Checks the state of a `FixedCpu`: its current CPU and its preemption counter.
fn check_cpu(ctx: &FixedCpu, cpu: usize, preempt: usize) {
    assert_eq!((ctx.current_cpu(), ctx.preempt_count()), (cpu, preempt));
}

#[test]
fn fixed_cpu_starts_on_cpu_0_and_moves() {
    let ctx = FixedCpu::new(4);
    assert_eq!(ctx.nr_cpus(), 4);
    check_cpu(&ctx, 0, 0);
    ctx.set_current(3).unwrap();
    check_cpu(&ctx, 3, 0);
}

#[test]
fn fixed_cpu_with_no_cpus_has_the_boot_cpu() {
    let ctx = FixedCpu::new(0);
    assert_eq!(ctx.nr_cpus(), 1);
    check_cpu(&ctx, 0, 0);
}

#[test]
fn set_current_out_of_range_is_refused_and_changes_nothing() {
    let ctx = FixedCpu::new(2);
    ctx.set_current(1).unwrap();
    assert_eq!(
        ctx.set_current(2),
        Err(PerCpuError::CpuOutOfRange { cpu: 2, nr_cpus: 2 })
    );
    check_cpu(&ctx, 1, 0);
}

#[test]
fn set_current_while_preemption_is_disabled_is_refused() {
    let ctx = FixedCpu::new(2);
    let v = PerCpu::new(2, |cpu| cpu);
    let guard = v.get_cpu_var(&ctx).unwrap();
    assert_eq!(
        ctx.set_current(1),
        Err(PerCpuError::PreemptDisabled { cpu: 1, count: 1 })
    );
    check_cpu(&ctx, 0, 1);
    assert_eq!((CpuVarGuard::cpu(&guard), *guard), (0, 0));
    put_cpu_var(guard);
    ctx.set_current(1).unwrap();
    check_cpu(&ctx, 1, 0);
}

#[test]
fn unmatched_preempt_enable_leaves_the_counter_at_zero() {
    let ctx = FixedCpu::new(1);
    ctx.preempt_enable();
    check_cpu(&ctx, 0, 0);
    ctx.preempt_disable();
    check_cpu(&ctx, 0, 1);
}

#[test]
fn nested_guards_keep_the_preempt_counter_balanced() {
    let ctx = FixedCpu::new(2);
    ctx.set_current(1).unwrap();
    let a = PerCpu::new(2, |_| 0u32);
    let b = PerCpu::new(2, |_| 0u64);
    {
        let mut ga = a.get_cpu_var(&ctx).unwrap();
        check_cpu(&ctx, 1, 1);
        {
            let mut gb = b.get_cpu_var(&ctx).unwrap();
            check_cpu(&ctx, 1, 2);
            let p = PreemptGuard::new(&ctx);
            assert_eq!(p.cpu(), 1);
            check_cpu(&ctx, 1, 3);
            drop(p);
            *gb += 7;
            // A remote copy is reachable while this CPU's copies are held.
            *b.per_cpu(0).unwrap() += 1;
            check_cpu(&ctx, 1, 2);
        }
        *ga += 3;
        check_cpu(&ctx, 1, 1);
    }
    check_cpu(&ctx, 1, 0);
    assert_eq!(values(&a), [0, 3]);
    assert_eq!(values(&b), [1, 7]);
}

#[test]
fn try_get_cpu_var_reports_a_held_copy_and_restores_preemption() {
    let ctx = FixedCpu::new(2);
    let v = PerCpu::new(2, |cpu| cpu * 10);
    let mut held = v.get_cpu_var(&ctx).unwrap();
    *held += 1;
    assert_eq!(
        v.try_get_cpu_var(&ctx).unwrap_err(),
        PerCpuError::Busy { cpu: 0 }
    );
    check_cpu(&ctx, 0, 1);
    assert_eq!(format!("{v:?}"), "[<in use>, 10]");
    put_cpu_var(held);
    let again = v.try_get_cpu_var(&ctx).unwrap();
    assert_eq!(*again, 1);
    check_cpu(&ctx, 0, 1);
    drop(again);
    check_cpu(&ctx, 0, 0);
}

#[test]
fn try_get_cpu_var_on_a_cpu_without_a_copy_is_an_error() {
    let ctx = FixedCpu::new(3);
    ctx.set_current(2).unwrap();
    let v = PerCpu::new(2, |cpu| cpu);
    assert_eq!(
        v.try_get_cpu_var(&ctx).unwrap_err(),
        PerCpuError::CpuOutOfRange { cpu: 2, nr_cpus: 2 }
    );
    check_cpu(&ctx, 2, 0);
    assert_eq!(values(&v), [0, 1]);
}

#[test]
fn get_cpu_var_on_a_cpu_without_a_copy_is_an_error_and_changes_nothing() {
    // The context has more CPUs than the `PerCpu` has copies.
    let ctx = FixedCpu::new(4);
    ctx.set_current(3).unwrap();
    let v = PerCpu::new(2, |cpu| cpu as u32 + 100);
    let out_of_range = PerCpuError::CpuOutOfRange { cpu: 3, nr_cpus: 2 };
    assert_eq!(v.get_cpu_var(&ctx).unwrap_err(), out_of_range);
    check_cpu(&ctx, 3, 0);
    assert_eq!(v.this_cpu_add(&ctx, 5), Err(out_of_range));
    check_cpu(&ctx, 3, 0);
    assert_eq!(values(&v), [100, 101]);
    // Every other `this_cpu_*` helper is refused the same way.
    assert_eq!(v.this_cpu_add_return(&ctx, 5), Err(out_of_range));
    assert_eq!(v.this_cpu_sub(&ctx, 5), Err(out_of_range));
    assert_eq!(v.this_cpu_inc(&ctx), Err(out_of_range));
    assert_eq!(v.this_cpu_dec(&ctx), Err(out_of_range));
    assert_eq!(v.this_cpu_read(&ctx), Err(out_of_range));
    assert_eq!(v.this_cpu_write(&ctx, 7), Err(out_of_range));
    assert_eq!(v.this_cpu_xchg(&ctx, 7), Err(out_of_range));
    check_cpu(&ctx, 3, 0);
    assert_eq!(values(&v), [100, 101]);
    // A CPU that has a copy still works after the refusals.
    ctx.set_current(1).unwrap();
    assert_eq!(v.this_cpu_add_return(&ctx, 5), Ok(106));
    check_cpu(&ctx, 1, 0);
    assert_eq!(values(&v), [100, 106]);
}

#[test]
fn per_cpu_out_of_range_is_an_error_and_changes_nothing() {
    let mut v = PerCpu::new(3, |cpu| cpu as u64 + 100);
    assert_eq!(
        v.per_cpu(3).unwrap_err(),
        PerCpuError::CpuOutOfRange { cpu: 3, nr_cpus: 3 }
    );
    assert_eq!(
        v.per_cpu(usize::MAX).unwrap_err(),
        PerCpuError::CpuOutOfRange {
            cpu: usize::MAX,
            nr_cpus: 3
        }
    );
    assert_eq!(
        v.get_mut(3).unwrap_err(),
        PerCpuError::CpuOutOfRange { cpu: 3, nr_cpus: 3 }
    );
    assert_eq!(values(&v), [100, 101, 102]);
}

#[test]
fn a_percpu_without_copies_is_empty() {
    let ctx = FixedCpu::new(1);
    let v: PerCpu<u8> = PerCpu::new(0, |_| 1);
    assert_eq!(v.nr_cpus(), 0);
    assert_eq!(v.iter().len(), 0);
    assert_eq!(v.sum(), 0);
    assert_eq!(
        v.try_get_cpu_var(&ctx).unwrap_err(),
        PerCpuError::CpuOutOfRange { cpu: 0, nr_cpus: 0 }
    );
    check_cpu(&ctx, 0, 0);
}

#[test]
fn this_cpu_helpers_touch_only_this_cpu() {
    let ctx = FixedCpu::new(3);
    let v = PerCpu::new(3, |_| 0u32);
    ctx.set_current(1).unwrap();
    v.this_cpu_inc(&ctx).unwrap();
    v.this_cpu_add(&ctx, 10).unwrap();
    assert_eq!(v.this_cpu_add_return(&ctx, 5).unwrap(), 16);
    v.this_cpu_sub(&ctx, 4).unwrap();
    v.this_cpu_dec(&ctx).unwrap();
    assert_eq!(v.this_cpu_read(&ctx).unwrap(), 11);
    ctx.set_current(2).unwrap();
    v.this_cpu_write(&ctx, 7).unwrap();
    assert_eq!(v.this_cpu_xchg(&ctx, 9).unwrap(), 7);
    check_cpu(&ctx, 2, 0);
    assert_eq!(values(&v), [0, 11, 9]);
    assert_eq!(v.sum(), 20);
}

#[test]
fn counters_wrap_instead_of_overflowing() {
    let ctx = FixedCpu::new(2);
    let v = PerCpu::new(2, |_| u8::MAX);
    v.this_cpu_inc(&ctx).unwrap();
    assert_eq!(values(&v), [0, u8::MAX]);
    assert_eq!(v.sum(), u8::MAX);
    // Signed deltas: one CPU counts up, another down, and they sum to the total.
    let d = PerCpu::new(2, |_| 0i8);
    d.this_cpu_sub(&ctx, 5).unwrap();
    ctx.set_current(1).unwrap();
    d.this_cpu_add(&ctx, 8).unwrap();
    assert_eq!(values(&d), [-5, 8]);
    assert_eq!(d.sum(), 3);
}

#[test]
fn iteration_visits_every_cpu_in_order() {
    let mut v = PerCpu::new(4, |cpu| cpu * cpu);
    let seen: Vec<(usize, usize)> = v
        .iter()
        .map(|g| (crate::PerCpuGuard::cpu(&g), *g))
        .collect();
    assert_eq!(seen, [(0, 0), (1, 1), (2, 4), (3, 9)]);
    v.for_each_possible_cpu(|cpu, value| *value += cpu);
    for value in v.iter_mut() {
        *value += 1;
    }
    *v.get_mut(0).unwrap() = 50;
    assert_eq!(values(&v), [50, 3, 7, 13]);
    let mut it = v.iter();
    assert_eq!(it.size_hint(), (4, Some(4)));
    assert_eq!(it.by_ref().count(), 4);
    assert!(it.next().is_none());
}

#[test]
fn debug_output_shows_the_copies() {
    let ctx = FixedCpu::new(2);
    let v = PerCpu::new(2, |cpu| cpu + 1);
    assert_eq!(format!("{v:?}"), "[1, 2]");
    let g = v.get_cpu_var(&ctx).unwrap();
    assert_eq!(format!("{g:?}"), "CpuVarGuard { cpu: 0, value: 1 }");
    assert_eq!(
        format!("{:?}", v.per_cpu(1).unwrap()),
        "PerCpuGuard { cpu: 1, value: 2 }"
    );
    drop(g);
    assert!(format!("{ctx:?}").starts_with("FixedCpu { nr_cpus: 2"));
}

/// One step of the model test: move to a CPU, then change a copy.
#[derive(Clone, Debug)]
enum Op {
    /// `set_current(cpu)` then `this_cpu_add(delta)`.
    Add { cpu: usize, delta: u64 },
    /// `per_cpu(cpu)` overwritten with `value`.
    Write { cpu: usize, value: u64 },
    /// `set_current(cpu)` then `this_cpu_xchg(value)`.
    Xchg { cpu: usize, value: u64 },
}

fn op(nr_cpus: usize) -> impl Strategy<Value = Op> {
    // CPUs up to one past the end, so that out-of-range calls are exercised too.
    let cpu = 0..=nr_cpus;
    prop_oneof![
        (cpu.clone(), any::<u64>()).prop_map(|(cpu, delta)| Op::Add { cpu, delta }),
        (cpu.clone(), any::<u64>()).prop_map(|(cpu, value)| Op::Write { cpu, value }),
        (cpu, any::<u64>()).prop_map(|(cpu, value)| Op::Xchg { cpu, value }),
    ]
}

proptest! {
    // Under Miri, few cases, and no regression file (Miri isolates the file system).
    #![proptest_config(ProptestConfig {
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 128 })
    })]

    /// Copies are independent: a random sequence of per-CPU updates matches a
    /// plain vector, and out-of-range CPUs are refused without a trace.
    #[test]
    fn copies_match_a_vector_model(ops in proptest::collection::vec(op(4), 0..40)) {
        let nr = 4;
        let ctx = FixedCpu::new(nr);
        let v = PerCpu::new(nr, |_| 0u64);
        let mut model = alloc::vec![0u64; nr];
        let mut current = 0;
        for op in ops {
            match op {
                Op::Add { cpu, delta } => match ctx.set_current(cpu) {
                    Ok(()) => {
                        current = cpu;
                        v.this_cpu_add(&ctx, delta).unwrap();
                        model[cpu] = model[cpu].wrapping_add(delta);
                    }
                    Err(e) => prop_assert_eq!(e, PerCpuError::CpuOutOfRange { cpu, nr_cpus: nr }),
                },
                Op::Write { cpu, value } => match v.per_cpu(cpu) {
                    Ok(mut g) => {
                        *g = value;
                        model[cpu] = value;
                    }
                    Err(e) => prop_assert_eq!(e, PerCpuError::CpuOutOfRange { cpu, nr_cpus: nr }),
                },
                Op::Xchg { cpu, value } => match ctx.set_current(cpu) {
                    Ok(()) => {
                        current = cpu;
                        let old = v.this_cpu_xchg(&ctx, value).unwrap();
                        prop_assert_eq!(old, model[cpu]);
                        model[cpu] = value;
                    }
                    Err(e) => prop_assert_eq!(e, PerCpuError::CpuOutOfRange { cpu, nr_cpus: nr }),
                },
            }
            check_cpu(&ctx, current, 0);
            prop_assert_eq!(values(&v), model.clone());
        }
        let total = model.iter().fold(0u64, |a, b| a.wrapping_add(*b));
        prop_assert_eq!(v.sum(), total);
    }
}

/// A context on CPU 1 of 2 that counts its `preempt_disable` calls.
struct CountingCpu(core::sync::atomic::AtomicUsize);

// SAFETY: never claims exclusivity (the default `current_cpu_exclusive`).
#[expect(unsafe_code, reason = "a test context")]
unsafe impl CpuContext for CountingCpu {
    fn nr_cpus(&self) -> usize {
        2
    }
    fn current_cpu(&self) -> usize {
        1
    }
    fn preempt_disable(&self) {
        self.0.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
    fn preempt_enable(&self) {}
}

#[test]
fn this_cpu_operations_leave_preemption_alone() {
    // As in the kernel, where `this_cpu_*` are safe against preemption on
    // their own; `get_cpu_var` is what disables it.
    let ctx = CountingCpu(core::sync::atomic::AtomicUsize::new(0));
    let v: PerCpu<u32> = PerCpu::new(2, |_| 0);
    v.this_cpu_add(&ctx, 5).unwrap();
    v.this_cpu_sub(&ctx, 1).unwrap();
    v.this_cpu_inc(&ctx).unwrap();
    assert_eq!(v.this_cpu_add_return(&ctx, 2), Ok(7));
    v.this_cpu_write(&ctx, 9).unwrap();
    assert_eq!(v.this_cpu_xchg(&ctx, 3), Ok(9));
    assert_eq!(v.this_cpu_read(&ctx), Ok(3));
    assert_eq!(values(&v), [0, 3]);
    assert_eq!(ctx.0.load(core::sync::atomic::Ordering::Relaxed), 0);
    // The dynamic allocator's too.
    let pcpu = crate::PercpuAllocator::new(crate::HeapChunks, 2, 0).unwrap();
    let p = pcpu.alloc_percpu::<u64>().unwrap();
    pcpu.this_cpu_add(p, &ctx, 4u64).unwrap();
    assert_eq!(pcpu.this_cpu_add_return(p, &ctx, 1u64), Ok(5));
    assert_eq!(pcpu.this_cpu_read::<u64>(p, &ctx), Ok(5));
    assert_eq!(pcpu.per_cpu_read::<u64>(p, 0), Ok(0));
    pcpu.free_percpu(p).unwrap();
    assert_eq!(ctx.0.load(core::sync::atomic::Ordering::Relaxed), 0);
    drop(v.get_cpu_var(&ctx).unwrap());
    assert_eq!(ctx.0.load(core::sync::atomic::Ordering::Relaxed), 1);
}
