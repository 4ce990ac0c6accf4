//! The guards that hold a mapping: `KmapGuard` for `kmap`, `AtomicKmap` for
//! `kmap_atomic` and `LocalKmap` for `kmap_local_page`.

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use kmm_page::{Pfn, VirtAddr};

use crate::{Highmem, LocalKind};

macro_rules! guard_accessors {
    () => {
        /// The virtual address of the page.
        pub fn addr(&self) -> VirtAddr {
            self.addr
        }

        /// The mapped frame.
        pub fn pfn(&self) -> Pfn {
            self.pfn
        }

        /// A pointer to the first byte of the page when the mapping is memory
        /// of this process: the direct map of a lowmem frame, or
        /// [`Mmu::as_ptr`](kmm_page::Mmu::as_ptr) of the slot (real memory on
        /// the host MMU, `None` on a software page table).
        ///
        /// The pointer is valid while the mapping lasts; whoever dereferences
        /// it must own the frame's bytes.
        pub fn as_ptr(&self) -> Option<NonNull<u8>> {
            self.hm.ptr_of(self.pfn, self.addr)
        }
    };
}

/// One user of a `kmap` of a page; dropping it is `kunmap`.
///
/// [`KmapGuard::into_raw`] keeps the mapping past the guard, to be released
/// with [`Highmem::kunmap`].
#[must_use = "the page is unmapped as soon as the guard is dropped"]
pub struct KmapGuard<'a> {
    hm: &'a Highmem,
    pfn: Pfn,
    addr: VirtAddr,
}

impl<'a> KmapGuard<'a> {
    pub(crate) fn new(hm: &'a Highmem, pfn: Pfn, addr: VirtAddr) -> KmapGuard<'a> {
        KmapGuard { hm, pfn, addr }
    }

    guard_accessors!();

    /// Keeps the mapping and returns its address; release it later with
    /// [`Highmem::kunmap`] of the frame.
    pub fn into_raw(self) -> VirtAddr {
        ManuallyDrop::new(self).addr
    }
}

impl Drop for KmapGuard<'_> {
    fn drop(&mut self) {
        // The guard holds one user of the page, so this succeeds unless the
        // user was taken away by an explicit `kunmap`, which is the caller's error.
        let _ = self.hm.kunmap(self.pfn);
    }
}

impl fmt::Debug for KmapGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmapGuard")
            .field("pfn", &self.pfn)
            .field("addr", &self.addr)
            .finish()
    }
}

/// A `kmap_atomic` mapping: a slot of this CPU's stack, with preemption
/// disabled; dropping it is `kunmap_atomic`.
///
/// The kernel wants these released newest first. A guard dropped while a
/// newer mapping of its CPU lives keeps its slot (and preemption disabled)
/// until the newer ones are released, then goes with them, so guards may be
/// dropped in any order. The explicit [`Highmem::kunmap_atomic`] does not
/// defer: out of order it fails with
/// [`HighmemError::NotLifo`](crate::HighmemError::NotLifo). The guard is
/// neither `Send` nor `Sync`: the mapping belongs to the CPU it was made on.
#[must_use = "the page is unmapped as soon as the guard is dropped"]
pub struct AtomicKmap<'a> {
    hm: &'a Highmem,
    pfn: Pfn,
    addr: VirtAddr,
    _not_send: PhantomData<*const ()>,
}

impl<'a> AtomicKmap<'a> {
    pub(crate) fn new(hm: &'a Highmem, pfn: Pfn, addr: VirtAddr) -> AtomicKmap<'a> {
        AtomicKmap {
            hm,
            pfn,
            addr,
            _not_send: PhantomData,
        }
    }

    guard_accessors!();

    /// Keeps the mapping, with preemption disabled, and returns its address;
    /// release it later with [`Highmem::kunmap_atomic`].
    pub fn into_raw(self) -> VirtAddr {
        ManuallyDrop::new(self).addr
    }
}

impl Drop for AtomicKmap<'_> {
    fn drop(&mut self) {
        self.hm.release_local(self.addr, LocalKind::Atomic);
    }
}

impl fmt::Debug for AtomicKmap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicKmap")
            .field("pfn", &self.pfn)
            .field("addr", &self.addr)
            .finish()
    }
}

/// A `kmap_local_page` mapping: a slot of this CPU's stack; dropping it is
/// `kunmap_local`.
///
/// The release order and the thread binding of [`AtomicKmap`] apply.
#[must_use = "the page is unmapped as soon as the guard is dropped"]
pub struct LocalKmap<'a> {
    hm: &'a Highmem,
    pfn: Pfn,
    addr: VirtAddr,
    _not_send: PhantomData<*const ()>,
}

impl<'a> LocalKmap<'a> {
    pub(crate) fn new(hm: &'a Highmem, pfn: Pfn, addr: VirtAddr) -> LocalKmap<'a> {
        LocalKmap {
            hm,
            pfn,
            addr,
            _not_send: PhantomData,
        }
    }

    guard_accessors!();

    /// Keeps the mapping and returns its address; release it later with
    /// [`Highmem::kunmap_local`].
    pub fn into_raw(self) -> VirtAddr {
        ManuallyDrop::new(self).addr
    }
}

impl Drop for LocalKmap<'_> {
    fn drop(&mut self) {
        self.hm.release_local(self.addr, LocalKind::Local);
    }
}

impl fmt::Debug for LocalKmap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKmap")
            .field("pfn", &self.pfn)
            .field("addr", &self.addr)
            .finish()
    }
}
