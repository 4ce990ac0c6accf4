//! `LocalLocks<T>`: one `T` per CPU, each behind Linux's `local_lock_t`.
//!
//! In the kernel, `local_lock(&pcp->lock)` only disables preemption: the
//! data belongs to the CPU, the CPU runs one task at a time, and another CPU
//! that must touch it (a drain) asks the CPU with an interrupt. Here a CPU
//! may be shared by several threads, so each CPU's data carries a lock flag,
//! and the lock costs what the caller's [`CpuContext`] allows:
//!
//! - the thread that holds its CPU exclusively
//!   ([`CpuContext::current_cpu_exclusive`]) takes its own CPU's lock with
//!   plain stores: it raises `busy`, runs a compiler fence, and checks that
//!   no other thread holds `held`, the kernel's `local_lock` plus the
//!   interrupt it may receive;
//! - a thread that shares its CPU takes `held` with a compare-exchange (a
//!   spin lock: its CPU has no exclusive owner to race with);
//! - a thread locking another CPU's data takes `held`, then calls
//!   [`CpuContext::remote_fence`] and waits until that CPU's owner is not
//!   inside (`busy == 0`): the asymmetric Dekker handshake the slab layer's
//!   CPU slots use. Either the owner sees `held` and backs off, or the remote
//!   thread sees `busy` and waits.
//!
//! This module holds the crate's `UnsafeCell` for the data; its soundness
//! rests on the handshake above and on the `CpuContext` safety contract
//! (exclusivity is true, and `remote_fence` reaches every owner).

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicBool, AtomicU32, compiler_fence};

use crossbeam_utils::{Backoff, CachePadded};

use crate::CpuContext;

/// One CPU's `T` and its lock state.
struct Local<T> {
    /// 1 while the CPU's exclusive owner is inside a critical section it
    /// entered with plain stores.
    busy: AtomicU32,
    /// Whether a thread holds the lock through the flag (every taker but the
    /// owner's fast path).
    held: AtomicBool,
    data: UnsafeCell<T>,
}

/// One `T` per CPU, each behind a `local_lock_t` (see the module docs): the
/// per-CPU page lists of a zone, for example. Take this CPU's with
/// [`LocalLocks::this_cpu`] and any CPU's with [`LocalLocks::lock`].
pub struct LocalLocks<T> {
    cpus: Box<[CachePadded<Local<T>>]>,
}

// SAFETY: the data of each CPU is reached only through a `LocalGuard`, and a
// guard exists for at most one thread at a time (the handshake in the module
// docs), so sharing the locks across threads shares no `&mut T`; `T: Send`
// because a guard may hand the data to whichever thread holds the lock.
unsafe impl<T: Send> Sync for LocalLocks<T> {}

/// Exclusive access to one CPU's `T`, until dropped.
#[must_use = "the lock is released when the guard drops"]
pub struct LocalGuard<'a, T> {
    local: &'a Local<T>,
    /// Taken by the CPU's owner with `busy` (else with `held`).
    owner: bool,
}

impl<T> LocalLocks<T> {
    /// Locks for `nr_cpus` CPUs (at least one), CPU `i` holding `init(i)`.
    pub fn new(nr_cpus: usize, mut init: impl FnMut(usize) -> T) -> LocalLocks<T> {
        LocalLocks {
            cpus: (0..nr_cpus.max(1))
                .map(|cpu| {
                    CachePadded::new(Local {
                        busy: AtomicU32::new(0),
                        held: AtomicBool::new(false),
                        data: UnsafeCell::new(init(cpu)),
                    })
                })
                .collect(),
        }
    }

    /// The number of CPUs.
    pub fn len(&self) -> usize {
        self.cpus.len()
    }

    /// Always `false`: there is at least one CPU.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Locks the calling CPU's `T` (`local_lock`), and returns the CPU's
    /// number with the guard: with plain stores if the caller holds its CPU
    /// exclusively, else with the lock flag. A context that reports a CPU
    /// beyond these locks (breaking its contract) gets CPU `cpu % len` the
    /// remote way.
    #[inline]
    pub fn this_cpu(&self, cpus: &(impl CpuContext + ?Sized)) -> (usize, LocalGuard<'_, T>) {
        let (cpu, exclusive) = cpus.current_cpu_exclusive();
        let Some(local) = self.cpus.get(cpu) else {
            let cpu = cpu % self.cpus.len();
            return (cpu, self.lock(cpu, cpus));
        };
        if exclusive {
            local.busy.store(1, Relaxed);
            // Orders the store above before the load below in this thread;
            // `remote_fence` in a remote taker supplies the other half.
            compiler_fence(SeqCst);
            if !local.held.load(Acquire) {
                return (cpu, LocalGuard { local, owner: true });
            }
            // Another thread holds it: wait for the flag like anyone else.
            local.busy.store(0, Release);
        }
        // No exclusive owner can be inside: either the caller is the owner,
        // or the caller runs as this CPU without holding it, which the
        // `CpuContext` contract says means the CPU has no owner.
        local.acquire();
        (
            cpu,
            LocalGuard {
                local,
                owner: false,
            },
        )
    }

    /// Locks CPU `cpu`'s `T` from any thread: takes the flag, fences
    /// ([`CpuContext::remote_fence`]) and waits for the CPU's exclusive
    /// owner, if any, to leave. For drains and statistics; the CPU itself
    /// uses [`LocalLocks::this_cpu`].
    ///
    /// # Panics
    ///
    /// If `cpu` is not below [`LocalLocks::len`].
    pub fn lock(&self, cpu: usize, cpus: &(impl CpuContext + ?Sized)) -> LocalGuard<'_, T> {
        let local = &self.cpus[cpu];
        local.acquire();
        cpus.remote_fence();
        let backoff = Backoff::new();
        while local.busy.load(Acquire) != 0 {
            backoff.snooze();
        }
        LocalGuard {
            local,
            owner: false,
        }
    }

    /// CPU `cpu`'s data, for a caller that owns the locks outright.
    pub fn get_mut(&mut self, cpu: usize) -> Option<&mut T> {
        self.cpus.get_mut(cpu).map(|l| l.data.get_mut())
    }
}

impl<T> Local<T> {
    /// Takes the lock flag, spinning while another thread holds it.
    fn acquire(&self) {
        let backoff = Backoff::new();
        while self
            .held
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            backoff.snooze();
        }
    }
}

impl<T> Deref for LocalGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard is the only way to the data, and while it lives
        // no other thread holds one for this CPU (the handshake in the
        // module docs), so no `&mut T` exists elsewhere.
        unsafe { &*self.local.data.get() }
    }
}

impl<T> DerefMut for LocalGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only
        // reference through this guard.
        unsafe { &mut *self.local.data.get() }
    }
}

impl<T> Drop for LocalGuard<'_, T> {
    fn drop(&mut self) {
        if self.owner {
            self.local.busy.store(0, Release);
        } else {
            self.local.held.store(false, Release);
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for LocalLocks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLocks")
            .field("cpus", &self.cpus.len())
            .finish_non_exhaustive()
    }
}

impl<T: fmt::Debug> fmt::Debug for LocalGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::Arc;
    use std::vec::Vec;

    use super::LocalLocks;
    use crate::{CpuContext, FixedCpu};

    /// One thread that holds every CPU it moves to exclusively.
    struct Owner(FixedCpu);

    // SAFETY: used from one thread only, so the CPU it reports exclusive is
    // no other thread's; with no other thread, a plain fence reaches it.
    unsafe impl CpuContext for Owner {
        fn nr_cpus(&self) -> usize {
            self.0.nr_cpus()
        }
        fn current_cpu(&self) -> usize {
            self.0.current_cpu()
        }
        fn preempt_disable(&self) {}
        fn preempt_enable(&self) {}
        fn current_cpu_exclusive(&self) -> (usize, bool) {
            (self.0.current_cpu(), true)
        }
    }

    #[test]
    fn each_cpu_locks_its_own_data_and_remote_locks_reach_any() {
        let ctx = FixedCpu::new(3);
        let locks = LocalLocks::new(3, |cpu| cpu * 10);
        assert_eq!(locks.len(), 3);
        for cpu in 0..3 {
            ctx.set_current(cpu).unwrap();
            let (at, mut g) = locks.this_cpu(&ctx);
            assert_eq!((at, *g), (cpu, cpu * 10));
            *g += 1;
        }
        for cpu in 0..3 {
            assert_eq!(*locks.lock(cpu, &ctx), cpu * 10 + 1);
        }
    }

    #[test]
    fn the_owner_takes_its_cpu_with_plain_stores_and_remote_takers_after_it() {
        let owner = Owner(FixedCpu::new(2));
        owner.0.set_current(1).unwrap();
        let mut locks = LocalLocks::new(2, |_| Vec::new());
        {
            let (cpu, mut g) = locks.this_cpu(&owner);
            assert_eq!(cpu, 1);
            assert!(g.owner, "the owner's fast path");
            g.push(1);
        }
        {
            // A remote taker (the same thread, as another CPU would) waits for
            // no one: the owner left.
            let mut g = locks.lock(1, &owner);
            assert!(!g.owner);
            g.push(2);
            // While it holds the flag, the owner's fast path would back off;
            // the flag is what it checks.
            assert!(locks.cpus[1].held.load(Relaxed));
        }
        let (_, g) = locks.this_cpu(&owner);
        assert!(g.owner && !locks.cpus[1].held.load(Relaxed));
        drop(g);
        assert_eq!(locks.get_mut(1).unwrap(), &[1, 2]);
        assert_eq!(locks.get_mut(0).unwrap(), &Vec::<i32>::new());
        assert!(locks.get_mut(2).is_none());
    }

    #[test]
    fn a_cpu_beyond_the_locks_is_taken_the_remote_way() {
        // A context with more CPUs than the locks (a broken contract) still
        // gets mutual exclusion, on CPU `cpu % len`, never the owner's path.
        let owner = Owner(FixedCpu::new(5));
        owner.0.set_current(4).unwrap();
        let locks = LocalLocks::new(3, |_| 0u32);
        let (cpu, g) = locks.this_cpu(&owner);
        assert_eq!(cpu, 1);
        assert!(!g.owner);
    }

    #[test]
    fn threads_sharing_cpus_exclude_each_other() {
        // Shared CPUs (never exclusive): the lock flag alone; remote takers
        // mixed in. Every increment must survive.
        const THREADS: usize = 4;
        const ROUNDS: usize = if cfg!(miri) { 20 } else { 5_000 };
        let ctx = Arc::new(FixedCpu::new(2));
        let locks = Arc::new(LocalLocks::new(2, |_| (0usize, 0usize)));
        let remote = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ctx, locks, remote) = (ctx.clone(), locks.clone(), remote.clone());
                std::thread::spawn(move || {
                    for i in 0..ROUNDS {
                        // `FixedCpu`'s CPU is the machine's, not the thread's:
                        // every thread runs as CPU 0 here, sharing it.
                        let mut g = if (t + i) % 3 == 0 {
                            remote.fetch_add(1, Relaxed);
                            locks.lock(1, &*ctx)
                        } else {
                            locks.this_cpu(&*ctx).1
                        };
                        // A non-atomic read-modify-write in two steps.
                        let v = g.0;
                        g.1 += 1;
                        g.0 = v + 1;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let remote = remote.load(Relaxed);
        let c0 = *locks.lock(0, &*ctx);
        let c1 = *locks.lock(1, &*ctx);
        assert_eq!(c1, (remote, remote));
        assert_eq!(c0.0 + c1.0, THREADS * ROUNDS);
        assert_eq!(c0, (THREADS * ROUNDS - remote, THREADS * ROUNDS - remote));
    }
}
