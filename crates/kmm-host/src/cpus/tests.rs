//! Unit tests of the thread-local bookkeeping: entries exist only while they say something.

use super::{HostCpus, THREAD_CPUS};
use kmm_percpu::CpuContext;

/// The number of machines the calling thread has an entry for.
fn entries() -> usize {
    THREAD_CPUS.with_borrow(Vec::len)
}

#[test]
fn entries_disappear_when_unbound_and_preemptible() {
    let cpus = HostCpus::new(4);
    assert_eq!(entries(), 0);
    cpus.preempt_disable();
    assert_eq!(entries(), 1);
    cpus.preempt_enable();
    assert_eq!(entries(), 0);
    let binding = cpus.bind(2).unwrap();
    assert_eq!(entries(), 1);
    drop(binding);
    assert_eq!(entries(), 0);
    // A refused bind leaves no entry behind.
    assert!(cpus.bind(9).is_err());
    assert_eq!(entries(), 0);
}

#[test]
fn an_unbinding_waits_for_preemption_to_come_back() {
    let cpus = HostCpus::new(4);
    let binding = cpus.bind(3).unwrap();
    cpus.preempt_disable();
    drop(binding);
    assert_eq!(
        (cpus.current_cpu(), cpus.bound_cpu(), entries()),
        (3, None, 1)
    );
    cpus.preempt_enable();
    assert_eq!(
        (cpus.current_cpu(), cpus.bound_cpu(), entries()),
        (0, None, 0)
    );
}

#[test]
fn machines_get_their_own_entries() {
    let a = HostCpus::new(2);
    let b = HostCpus::new(8);
    let _on_a = a.bind(1).unwrap();
    let _on_b = b.bind(7).unwrap();
    assert_eq!(entries(), 2);
    assert_eq!((a.current_cpu(), b.current_cpu()), (1, 7));
}
