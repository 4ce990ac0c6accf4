//! `BrLock<T>`: a reader-writer lock whose readers count themselves on a
//! cache line per CPU (the kernel's "big reader" lock, `percpu_rw_semaphore`
//! in `kernel/locking/percpu-rwsem.c`), for data read on every per-CPU access
//! and written rarely: readers on different CPUs share no cache line, and a
//! writer waits for every CPU's count to fall to zero.

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::fmt;
use core::hint::spin_loop;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{
    AtomicBool, AtomicUsize,
    Ordering::{Relaxed, Release, SeqCst},
};

use crossbeam_utils::CachePadded;

/// A reader-writer lock with one reader count per CPU.
///
/// A reader raises its CPU's count and then checks the writer flag; a writer
/// raises the flag and then waits for every count to be zero. Both orders are
/// `SeqCst`, so of a reader and a writer that start together at least one
/// sees the other (a Dekker handshake): the reader backs off, or the writer
/// waits. Readers that use the same count still share its line; the count is
/// chosen by the caller, normally the CPU it runs on.
pub(crate) struct BrLock<T> {
    /// Set while a writer holds the lock or waits for readers to leave.
    writer: AtomicBool,
    /// Readers inside, counted on the line of the CPU each chose.
    readers: Box<[CachePadded<AtomicUsize>]>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&T` to readers on several threads at once only
// while no writer holds `&mut T` (the handshake above), and `&mut T` to one
// writer at a time (the flag is taken by compare-exchange): the rules of
// `RwLock`, which is `Sync` for `T: Send + Sync` and `Send` for `T: Send`.
unsafe impl<T: Send + Sync> Sync for BrLock<T> {}
// SAFETY: as above; moving the lock moves the `T`.
unsafe impl<T: Send> Send for BrLock<T> {}

impl<T> BrLock<T> {
    /// A lock around `data` with `nr_counts` reader counts (at least one).
    pub(crate) fn new(data: T, nr_counts: usize) -> BrLock<T> {
        BrLock {
            writer: AtomicBool::new(false),
            readers: (0..nr_counts.max(1))
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
            data: UnsafeCell::new(data),
        }
    }

    /// Shared access, counted on count `cpu` (taken modulo the number of
    /// counts, so any number is safe).
    #[inline]
    pub(crate) fn read(&self, cpu: usize) -> BrReadGuard<'_, T> {
        // The modulo only for a number beyond the counts: it is a division,
        // and this is on every per-CPU access.
        let count = match self.readers.get(cpu) {
            Some(count) => count,
            None => &self.readers[cpu % self.readers.len()],
        };
        loop {
            count.fetch_add(1, SeqCst);
            if !self.writer.load(SeqCst) {
                return BrReadGuard { lock: self, count };
            }
            // A writer is in or waiting: step aside until it is done.
            count.fetch_sub(1, Release);
            while self.writer.load(Relaxed) {
                spin_loop();
            }
        }
    }

    /// Exclusive access: takes the writer flag, then waits for every
    /// reader to leave.
    pub(crate) fn write(&self) -> BrWriteGuard<'_, T> {
        while self
            .writer
            .compare_exchange_weak(false, true, SeqCst, Relaxed)
            .is_err()
        {
            spin_loop();
        }
        for count in self.readers.iter() {
            while count.load(SeqCst) != 0 {
                spin_loop();
            }
        }
        BrWriteGuard { lock: self }
    }

    /// The data, through a unique borrow of the lock (no locking needed).
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: fmt::Debug> fmt::Debug for BrLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrLock")
            .field("counts", &self.readers.len())
            .finish_non_exhaustive()
    }
}

/// Shared access to a [`BrLock`]'s data until dropped.
pub(crate) struct BrReadGuard<'a, T> {
    lock: &'a BrLock<T>,
    count: &'a AtomicUsize,
}

impl<T> Deref for BrReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this reader's count is raised and it saw the writer flag
        // clear after raising it, so no writer holds `&mut T` until the
        // count falls (a writer waits for it), and readers only share `&T`.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> Drop for BrReadGuard<'_, T> {
    fn drop(&mut self) {
        // Release: this reader's accesses come before a writer that then
        // sees the count fall.
        self.count.fetch_sub(1, Release);
    }
}

/// Exclusive access to a [`BrLock`]'s data until dropped.
pub(crate) struct BrWriteGuard<'a, T> {
    lock: &'a BrLock<T>,
}

impl<T> Deref for BrWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this writer holds the flag and saw every count at zero
        // after raising it, so no reader is inside, and new readers back off
        // until the flag falls.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for BrWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and the `&mut self` borrow makes this the
        // only reference handed out by the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for BrWriteGuard<'_, T> {
    fn drop(&mut self) {
        // Release: the writer's changes come before any reader that then
        // sees the flag clear.
        self.lock.writer.store(false, Release);
    }
}

#[cfg(test)]
mod tests;
