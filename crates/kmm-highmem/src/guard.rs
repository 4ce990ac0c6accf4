//! The guards that hold a mapping: `KmapGuard` for `kmap`, `StackKmap` for
//! `kmap_atomic` and `kmap_local_page` (aliased `AtomicKmap` and `LocalKmap`).

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

/// A mapping in a slot of this CPU's stack of temporary mappings: a
/// `kmap_atomic` one ([`AtomicKmap`], with preemption disabled; dropping it
/// is `kunmap_atomic`) or a `kmap_local_page` one ([`LocalKmap`]; dropping it
/// is `kunmap_local`). [`StackKmap::kind`] tells which.
///
/// The kernel wants these released newest first. A guard dropped while a
/// newer mapping of its CPU lives keeps its slot (and, for `kmap_atomic`,
/// preemption disabled) until the newer ones are released, then goes with
/// them, so guards may be dropped in any order. The explicit
/// [`Highmem::kunmap_atomic`] and [`Highmem::kunmap_local`] do not defer: out
/// of order they fail with
/// [`HighmemError::NotLifo`](crate::HighmemError::NotLifo). The guard is
/// neither `Send` nor `Sync`: the mapping belongs to the CPU it was made on.
#[must_use = "the page is unmapped as soon as the guard is dropped"]
pub struct StackKmap<'a> {
    hm: &'a Highmem,
    pfn: Pfn,
    addr: VirtAddr,
    kind: LocalKind,
    _not_send: PhantomData<*const ()>,
}

/// The guard of [`Highmem::kmap_atomic`].
pub type AtomicKmap<'a> = StackKmap<'a>;

/// The guard of [`Highmem::kmap_local_page`].
pub type LocalKmap<'a> = StackKmap<'a>;

impl<'a> StackKmap<'a> {
    pub(crate) fn new(hm: &'a Highmem, pfn: Pfn, addr: VirtAddr, kind: LocalKind) -> StackKmap<'a> {
        StackKmap {
            hm,
            pfn,
            addr,
            kind,
            _not_send: PhantomData,
        }
    }

    guard_accessors!();

    /// Which call made the mapping.
    pub fn kind(&self) -> LocalKind {
        self.kind
    }

    /// Keeps the mapping (a `kmap_atomic` one with preemption disabled) and
    /// returns its address; release it later with [`Highmem::kunmap_atomic`]
    /// or [`Highmem::kunmap_local`], as [`StackKmap::kind`] says.
    pub fn into_raw(self) -> VirtAddr {
        ManuallyDrop::new(self).addr
    }
}

impl Drop for StackKmap<'_> {
    fn drop(&mut self) {
        self.hm.release_local(self.addr, self.kind);
    }
}

impl fmt::Debug for StackKmap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackKmap")
            .field("kind", &self.kind)
            .field("pfn", &self.pfn)
            .field("addr", &self.addr)
            .finish()
    }
}
