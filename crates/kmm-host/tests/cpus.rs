//! API tests of `HostCpus`: threads bind to CPU slots, preemption keeps a
//! thread on its CPU, and `kmm_percpu` guards stay exclusive across threads.

use std::sync::Barrier;
use std::thread;

use kmm_host::{HostCpus, HostError};
use kmm_percpu::{CpuContext, PerCpu};

/// Checks the calling thread's state on `cpus`: current CPU, binding, preemption count.
fn check(cpus: &HostCpus, cpu: usize, bound: Option<usize>, preempt: usize) {
    assert_eq!(
        (cpus.current_cpu(), cpus.bound_cpu(), cpus.preempt_count()),
        (cpu, bound, preempt)
    );
}

#[test]
fn an_unbound_thread_runs_as_cpu_0() {
    let cpus = HostCpus::new(4);
    assert_eq!(cpus.nr_cpus(), 4);
    check(&cpus, 0, None, 0);
    assert_eq!(HostCpus::new(0).nr_cpus(), 1);
}

#[test]
fn binding_moves_the_thread_until_dropped() {
    let cpus = HostCpus::new(4);
    let binding = cpus.bind(3).unwrap();
    assert_eq!(binding.cpu(), 3);
    check(&cpus, 3, Some(3), 0);
    drop(binding);
    check(&cpus, 0, None, 0);
}

#[test]
fn bad_bindings_are_refused_and_change_nothing() {
    let cpus = HostCpus::new(2);
    assert!(matches!(
        cpus.bind(2),
        Err(HostError::CpuOutOfRange { cpu: 2, nr_cpus: 2 })
    ));
    check(&cpus, 0, None, 0);
    let _on = cpus.bind(1).unwrap();
    assert!(matches!(
        cpus.bind(0),
        Err(HostError::AlreadyBound { cpu: 1 })
    ));
    check(&cpus, 1, Some(1), 0);
}

#[test]
fn a_thread_with_preemption_disabled_cannot_move() {
    let cpus = HostCpus::new(2);
    let v = PerCpu::new(2, |cpu| cpu);
    let guard = v.get_cpu_var(&cpus).unwrap();
    assert!(matches!(
        cpus.bind(1),
        Err(HostError::PreemptDisabled { cpu: 1, count: 1 })
    ));
    check(&cpus, 0, None, 1);
    drop(guard);
    let binding = cpus.bind(1).unwrap();
    // Unbinding while holding CPU 1's copy waits until the copy is released.
    let guard = v.get_cpu_var(&cpus).unwrap();
    drop(binding);
    check(&cpus, 1, None, 1);
    assert_eq!(*guard, 1);
    drop(guard);
    check(&cpus, 0, None, 0);
}

#[test]
fn unmatched_preempt_enable_leaves_the_counter_at_zero() {
    let cpus = HostCpus::new(1);
    cpus.preempt_enable();
    check(&cpus, 0, None, 0);
}

#[test]
fn two_bound_threads_see_different_cpus() {
    let cpus = HostCpus::new(2);
    let both_bound = Barrier::new(2);
    let seen: Vec<usize> = thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|cpu| {
                let (cpus, both_bound) = (&cpus, &both_bound);
                s.spawn(move || {
                    let _on = cpus.bind(cpu).unwrap();
                    both_bound.wait();
                    // Both threads are bound now; each still sees its own CPU.
                    let seen = cpus.current_cpu();
                    both_bound.wait();
                    seen
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(seen, [0, 1]);
    // The binding and preemption state of the spawned threads did not leak into this one.
    check(&cpus, 0, None, 0);
}

#[test]
fn preemption_is_counted_per_thread() {
    let cpus = HostCpus::new(2);
    cpus.preempt_disable();
    thread::scope(|s| {
        s.spawn(|| {
            assert_eq!(cpus.preempt_count(), 0);
            let _on = cpus.bind(1).unwrap();
        });
    });
    check(&cpus, 0, None, 1);
    cpus.preempt_enable();
}

/// Iterations per thread.
const ROUNDS: u64 = 200;

/// A non-atomic read-modify-write through a guard; lost updates would show
/// that two guards overlapped.
fn slow_increment(v: &PerCpu<u64>, cpus: &HostCpus) {
    let mut guard = v.get_cpu_var(cpus).unwrap();
    let seen = *guard;
    thread::yield_now();
    *guard = seen + 1;
}

#[test]
fn get_cpu_var_keeps_each_cpu_slot_exclusive() {
    let cpus = HostCpus::new(2);
    let v = PerCpu::new(2, |_| 0u64);
    // Two threads on CPU 1 and two on CPU 0 (one bound, one never bound).
    thread::scope(|s| {
        for cpu in [Some(1), Some(1), Some(0), None] {
            let (cpus, v) = (&cpus, &v);
            s.spawn(move || {
                let _on = cpu.map(|cpu| cpus.bind(cpu).unwrap());
                for _ in 0..ROUNDS {
                    slow_increment(v, cpus);
                }
                assert_eq!(cpus.preempt_count(), 0);
            });
        }
    });
    assert_eq!(*v.per_cpu(0).unwrap(), 2 * ROUNDS);
    assert_eq!(*v.per_cpu(1).unwrap(), 2 * ROUNDS);
}

#[test]
fn one_thread_on_several_machines_keeps_each_cpu() {
    // `current_cpu` answers from a one-entry mirror of the thread's table;
    // binding and unbinding in any order must keep every machine's answer.
    let (a, b, c) = (HostCpus::new(4), HostCpus::new(4), HostCpus::new(4));
    let on_a = a.bind(1).unwrap();
    let on_b = b.bind(2).unwrap();
    let on_c = c.bind(3).unwrap();
    check(&a, 1, Some(1), 0);
    check(&b, 2, Some(2), 0);
    check(&c, 3, Some(3), 0);
    drop(on_a);
    check(&a, 0, None, 0);
    check(&b, 2, Some(2), 0);
    check(&c, 3, Some(3), 0);
    drop(on_c);
    check(&b, 2, Some(2), 0);
    check(&c, 0, None, 0);
    let again = a.bind(3).unwrap();
    check(&a, 3, Some(3), 0);
    drop(on_b);
    check(&a, 3, Some(3), 0);
    check(&b, 0, None, 0);
    drop(again);
    for m in [&a, &b, &c] {
        check(m, 0, None, 0);
    }
}

#[test]
fn an_exclusive_cpu_belongs_to_one_thread() {
    let cpus = HostCpus::new(3);
    let mine = cpus.bind_exclusive(1).unwrap();
    assert!(mine.is_exclusive());
    assert_eq!(cpus.current_cpu_exclusive(), (1, true));
    check(&cpus, 1, Some(1), 0);
    // The remote side of the handshake works while an owner exists.
    cpus.remote_fence();
    thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(cpus.bind(1), Err(HostError::CpuBusy { cpu: 1 })));
            assert!(matches!(
                cpus.bind_exclusive(1),
                Err(HostError::CpuBusy { cpu: 1 })
            ));
            // A refused bind leaves the thread where it was.
            assert_eq!(cpus.current_cpu_exclusive(), (0, false));
            // A shared binding elsewhere blocks an exclusive one there.
            let _on = cpus.bind(2).unwrap();
            assert_eq!(cpus.current_cpu_exclusive(), (2, false));
        });
    });
    drop(mine);
    assert_eq!(cpus.current_cpu_exclusive(), (0, false));
    thread::scope(|s| {
        s.spawn(|| {
            let other = cpus.bind_exclusive(1).unwrap();
            assert_eq!(cpus.current_cpu_exclusive(), (1, true));
            drop(other);
            assert_eq!(cpus.current_cpu_exclusive(), (0, false));
        });
    });
}

#[test]
fn exclusive_bindings_are_refused_where_others_run() {
    let cpus = HostCpus::new(2);
    // CPU 0 always has the unbound threads.
    assert!(matches!(
        cpus.bind_exclusive(0),
        Err(HostError::CpuBusy { cpu: 0 })
    ));
    assert!(matches!(
        cpus.bind_exclusive(2),
        Err(HostError::CpuOutOfRange { cpu: 2, nr_cpus: 2 })
    ));
    check(&cpus, 0, None, 0);
    let bound = Barrier::new(2);
    let done = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            let _on = cpus.bind(1).unwrap();
            bound.wait();
            done.wait();
        });
        bound.wait();
        assert!(matches!(
            cpus.bind_exclusive(1),
            Err(HostError::CpuBusy { cpu: 1 })
        ));
        check(&cpus, 0, None, 0);
        done.wait();
    });
    // The shared binding is gone with its thread's drop: CPU 1 is free again.
    let mine = cpus.bind_exclusive(1).unwrap();
    assert_eq!(mine.cpu(), 1);
}

#[test]
fn an_exclusive_cpu_is_kept_until_preemption_comes_back() {
    let cpus = HostCpus::new(2);
    let mine = cpus.bind_exclusive(1).unwrap();
    cpus.preempt_disable();
    drop(mine);
    // Still running as CPU 1, and still alone there.
    assert_eq!(cpus.current_cpu_exclusive(), (1, true));
    thread::scope(|s| {
        s.spawn(|| assert!(matches!(cpus.bind(1), Err(HostError::CpuBusy { cpu: 1 }))));
    });
    cpus.preempt_enable();
    assert_eq!(cpus.current_cpu_exclusive(), (0, false));
    thread::scope(|s| {
        s.spawn(|| assert!(cpus.bind(1).is_ok()));
    });
}

#[test]
fn an_owned_binding_keeps_its_machine_and_gives_the_cpu_back() {
    let cpus = std::sync::Arc::new(HostCpus::new(3));
    let weak = std::sync::Arc::downgrade(&cpus);
    // Refusals are the borrowed bindings' and change nothing.
    assert!(matches!(
        cpus.bind_owned(0, true),
        Err(HostError::CpuBusy { cpu: 0 })
    ));
    assert!(matches!(
        cpus.bind_owned(7, false),
        Err(HostError::CpuOutOfRange { cpu: 7, .. })
    ));
    check(&cpus, 0, None, 0);
    let hold = cpus.bind_owned(2, true).unwrap();
    assert!(hold.is_exclusive());
    assert_eq!(hold.cpu(), 2);
    let machine = std::sync::Arc::clone(&cpus);
    // The binding alone keeps the machine alive.
    drop(cpus);
    assert!(weak.upgrade().is_some());
    check(&machine, 2, Some(2), 0);
    assert_eq!(machine.current_cpu_exclusive(), (2, true));
    thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                machine.bind(2),
                Err(HostError::CpuBusy { cpu: 2 })
            ));
        });
    });
    drop(hold);
    check(&machine, 0, None, 0);
    thread::scope(|s| {
        s.spawn(|| {
            let b = machine.bind_exclusive(2).unwrap();
            assert!(b.is_exclusive());
        });
    });
    let shared = machine.bind_owned(1, false).unwrap();
    assert!(!shared.is_exclusive());
    check(&machine, 1, Some(1), 0);
    drop(machine);
    drop(shared);
    assert!(weak.upgrade().is_none());
}
