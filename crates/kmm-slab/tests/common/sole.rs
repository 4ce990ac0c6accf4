//! `SoleThread`, a CPU context for one thread that holds every CPU it moves
//! to, shared by the unit tests (`src/tests.rs`, through `#[path]`) and the
//! integration tests.

use core::borrow::Borrow;

use kmm_percpu::{CpuContext, FixedCpu};

/// One thread that holds every CPU it moves to exclusively: a [`FixedCpu`]
/// (owned or shared) that says so, which sends the slab layer down its
/// exclusive-owner paths (plain loads and stores, the fence handshake with
/// remote closers). Sound only while a single thread uses it.
pub(crate) struct SoleThread<C>(pub(crate) C);

// SAFETY: the tests use a `SoleThread` from one thread only (its contract,
// above), so the CPU it reports exclusive is no other thread's; with no other
// thread, the default fence is a fence in every owner.
unsafe impl<C: Borrow<FixedCpu> + Send + Sync> CpuContext for SoleThread<C> {
    fn nr_cpus(&self) -> usize {
        self.0.borrow().nr_cpus()
    }
    fn current_cpu(&self) -> usize {
        self.0.borrow().current_cpu()
    }
    fn preempt_disable(&self) {
        self.0.borrow().preempt_disable();
    }
    fn preempt_enable(&self) {
        self.0.borrow().preempt_enable();
    }
    fn current_cpu_exclusive(&self) -> (usize, bool) {
        (self.0.borrow().current_cpu(), true)
    }
}
