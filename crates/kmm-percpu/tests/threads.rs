//! API tests with real threads: each thread runs on its own `FixedCpu`, and
//! the `get_cpu_var` guard keeps its copy exclusive.

use std::sync::Barrier;
use std::thread;

use kmm_percpu::{CpuVarGuard, FixedCpu, PerCpu, PerCpuError};

/// Iterations per thread; Miri is slow, so it gets fewer.
const ROUNDS: u64 = if cfg!(miri) { 20 } else { 200 };

/// A deliberately non-atomic read-modify-write through a guard: read, let the
/// other thread run, write back. Lost updates would show that two guards
/// overlapped.
fn slow_increment(v: &PerCpu<u64>, ctx: &FixedCpu) {
    let mut guard = v.get_cpu_var(ctx).unwrap();
    let seen = *guard;
    thread::yield_now();
    *guard = seen + 1;
}

#[test]
fn threads_on_different_cpus_hold_their_copies_at_the_same_time() {
    let v = PerCpu::new(2, |cpu| cpu as u64);
    let held = Barrier::new(2);
    let checked = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            let ctx = FixedCpu::new(2);
            let mut mine = v.get_cpu_var(&ctx).unwrap();
            *mine += 10;
            held.wait();
            checked.wait();
            assert_eq!((CpuVarGuard::cpu(&mine), *mine), (0, 10));
        });
        s.spawn(|| {
            let ctx = FixedCpu::new(2);
            ctx.set_current(1).unwrap();
            held.wait();
            // CPU 0's copy is held by the other thread; ours is free.
            let mut mine = v.try_get_cpu_var(&ctx).unwrap();
            *mine += 20;
            let other = FixedCpu::new(2);
            assert_eq!(
                v.try_get_cpu_var(&other).unwrap_err(),
                PerCpuError::Busy { cpu: 0 }
            );
            assert_eq!(other.preempt_count(), 0);
            drop(mine);
            assert_eq!(ctx.preempt_count(), 0);
            checked.wait();
        });
    });
    assert_eq!(*v.per_cpu(0).unwrap(), 10);
    assert_eq!(*v.per_cpu(1).unwrap(), 21);
}

#[test]
fn threads_on_different_cpus_update_independent_copies() {
    let v = PerCpu::new(2, |_| 0u64);
    thread::scope(|s| {
        for cpu in 0..2 {
            let v = &v;
            s.spawn(move || {
                let ctx = FixedCpu::new(2);
                ctx.set_current(cpu).unwrap();
                for _ in 0..ROUNDS * (cpu as u64 + 1) {
                    slow_increment(v, &ctx);
                }
                assert_eq!(ctx.preempt_count(), 0);
            });
        }
    });
    assert_eq!(*v.per_cpu(0).unwrap(), ROUNDS);
    assert_eq!(*v.per_cpu(1).unwrap(), 2 * ROUNDS);
}

#[test]
fn threads_sharing_a_cpu_never_overlap_on_its_copy() {
    let v = PerCpu::new(2, |_| 0u64);
    let ctx = FixedCpu::new(2);
    ctx.set_current(1).unwrap();
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    slow_increment(&v, &ctx);
                }
            });
        }
    });
    assert_eq!(ctx.preempt_count(), 0);
    assert_eq!(*v.per_cpu(0).unwrap(), 0);
    assert_eq!(*v.per_cpu(1).unwrap(), 2 * ROUNDS);
}
