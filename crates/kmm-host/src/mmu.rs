//! `HostMmu`: an `Mmu` whose window is real address space of this process,
//! where a mapped page is the memfd page of its frame.
//!
//! This module holds the crate's `unsafe` code for mappings. Its soundness
//! rests on private state that nothing else can change: the window is one
//! reservation made in [`HostMmu::with_window_size`] and unmapped only when
//! the `HostMmu` drops; every `mmap` of this module is `MAP_FIXED` inside the
//! window, so it replaces only pages of the window, never memory of another
//! object; and the module itself never reads or writes a byte of the window.
//!
//! Linux checks the map count (`vm.max_map_count`) before it removes
//! anything, so a `MAP_FIXED` call that fails for that reason leaves the old
//! page in place and the window stays reserved. The module relies on the host
//! keeping the old page on any failure; older kernels could drop it when they
//! ran out of kernel memory halfway through a `MAP_FIXED` call.

use std::fmt;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kmm_page::{Mmu, MmuError, PAGE_SIZE, Pfn, Prot, SoftMmu, VirtAddr};
use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use crate::{HostError, HostMemory};

/// The host protection for `prot`.
fn prot_flags(prot: Prot) -> ProtFlags {
    let mut flags = ProtFlags::empty();
    for (p, f) in [
        (Prot::READ, ProtFlags::READ),
        (Prot::WRITE, ProtFlags::WRITE),
        (Prot::EXEC, ProtFlags::EXEC),
    ] {
        if prot.contains(p) {
            flags |= f;
        }
    }
    flags
}

/// The error for a failed `mmap` in the window: `ENOMEM` is the map count
/// (`vm.max_map_count`, checked in `mm/mmap.c`, `do_mmap`, and before every
/// split of a mapping), anything else is passed on as its errno.
fn mmu_error(errno: Errno) -> MmuError {
    if errno == Errno::NOMEM {
        MmuError::MapCountExhausted
    } else {
        MmuError::Host(errno.raw_os_error())
    }
}

/// The reserved window: `len` bytes at `base`, each page either an anonymous
/// `PROT_NONE` reservation or a shared mapping of one memfd page.
struct Window {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: `Window` owns a range of address space, not data: the pointer is
// only ever passed to `mmap`/`munmap` and offset to hand out raw pointers,
// and a mapping is valid from every thread of the process.
unsafe impl Send for Window {}
// SAFETY: As for `Send`: `&Window` gives no access to the bytes of the
// window, only addresses, and the module never reads or writes them.
unsafe impl Sync for Window {}

impl Window {
    /// The reservation flags: never backed, never counted against overcommit.
    const RESERVE: MapFlags = MapFlags::PRIVATE.union(MapFlags::NORESERVE);

    /// Reserves `len` bytes (a multiple of `PAGE_SIZE`) of address space,
    /// inaccessible.
    fn reserve(len: usize) -> Result<Window, HostError> {
        // SAFETY: The address hint is null, so the host picks an unused
        // range: no existing Rust object is replaced or aliased.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(std::ptr::null_mut(), len, ProtFlags::empty(), Self::RESERVE)
        }
        .map_err(HostError::io("mmap"))?;
        match NonNull::new(ptr.cast::<u8>()) {
            Some(base) => Ok(Window { base, len }),
            None => Err(HostError::Io {
                op: "mmap",
                source: std::io::Error::other("the host reserved the window at address 0"),
            }),
        }
    }

    /// The address `offset` bytes into the window, with the window's provenance.
    fn at(&self, offset: usize) -> *mut u8 {
        self.base.as_ptr().wrapping_add(offset)
    }

    /// Maps `pages` memfd pages from `pfn` at `offset` of the window, with one
    /// `mmap(MAP_SHARED | MAP_FIXED)`. The caller checked that the pages lie
    /// inside the window and that every frame has memory.
    fn map_frames(
        &self,
        memory: &HostMemory,
        offset: usize,
        pfn: Pfn,
        pages: usize,
        prot: Prot,
    ) -> Result<(), Errno> {
        debug_assert!(offset + pages * PAGE_SIZE <= self.len);
        // SAFETY: The `memfd` contract asks that the descriptor reach only
        // frames the caller owns and never map others writable, so that no
        // access races with the frames' owners. This mapping makes one more
        // address for the frames, as the direct map is one, and this module
        // never reads or writes through it: the bytes are reached only by
        // whoever dereferences a pointer from `HostMmu::as_ptr`, which is
        // their `unsafe` act, on the same terms as a pointer from the direct
        // map. The descriptor is used for this call only.
        let fd = unsafe { memory.memfd() };
        // SAFETY: 1. `[offset, offset + pages * PAGE_SIZE)` lies inside the
        // window (checked by the caller), so `MAP_FIXED` replaces only pages
        // of the window, which hold no Rust object: they are reservations or
        // frame mappings, reached only through raw pointers whose users
        // answer for their lifetime (see `HostMmu`). 2. Every frame has memory
        // (checked by the caller), so the file covers the mapped range, and
        // it is sealed against shrinking, so every byte stays backed.
        unsafe {
            rustix::mm::mmap(
                self.at(offset).cast(),
                pages * PAGE_SIZE,
                prot_flags(prot),
                MapFlags::SHARED | MapFlags::FIXED,
                fd,
                (pfn.0 * PAGE_SIZE) as u64,
            )
        }
        .map(drop)
    }

    /// Puts a fresh inaccessible reservation at the page at `offset`,
    /// dropping the frame mapped there. The caller checked that the page
    /// lies inside the window.
    fn reserve_again(&self, offset: usize) -> Result<(), Errno> {
        debug_assert!(offset + PAGE_SIZE <= self.len);
        // SAFETY: The page lies inside the window (checked by the caller), so
        // `MAP_FIXED` replaces only a page of the window, which holds no Rust
        // object; a raw pointer into it that someone still holds is theirs to
        // stop using (see `HostMmu`).
        unsafe {
            rustix::mm::mmap_anonymous(
                self.at(offset).cast(),
                PAGE_SIZE,
                ProtFlags::empty(),
                Self::RESERVE | MapFlags::FIXED,
            )
        }
        .map(drop)
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is exactly the reservation made in
        // `Window::reserve`, unmapped only here, and every mapping inside it
        // was made by this module. Its owner, `HostMmu`, is going away, and
        // pointers from `as_ptr` are valid only while the mapping and the
        // `HostMmu` live. A failure cannot be reported from `drop`; it would
        // leave the range mapped, which is safe.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// An [`Mmu`] over a reserved window of this process's address space, where
/// mapping frame `pfn` at `va` maps the memfd page of `pfn` of a
/// [`HostMemory`] there with `mmap(MAP_SHARED | MAP_FIXED)`.
///
/// A vmalloc area is thus truly virtually contiguous over scattered frames,
/// and a highmem frame, which has no direct map, shows up at its kmap slot:
/// writing through [`Mmu::as_ptr`] writes the frame, and the bytes are seen
/// through its direct map or [`HostMemory::read_frame`]. An unmapped page of
/// the window is an inaccessible reservation, so a stray access faults.
///
/// [`Mmu::map_range`] maps a run of physically contiguous frames with one
/// `mmap`, which is one host mapping (VMA). Each separate mapping counts
/// against `vm.max_map_count` (65530 by default); running out is
/// [`MmuError::MapCountExhausted`], with nothing changed. A software table
/// ([`SoftMmu`]) records what is mapped, so [`Mmu::translate`] and the
/// `AlreadyMapped`/`NotMapped` answers need no system call; a lock orders the
/// mapping calls, so the table and the host always agree between calls.
///
/// # Pointers
///
/// [`Mmu::as_ptr`] and [`Mmu::unmap`] are safe: the pointer is raw, and
/// dereferencing it is the caller's `unsafe` act, whose conditions are that
/// the page is still mapped to the frame (neither unmapped nor remapped, and
/// the `HostMmu` not dropped) and that the caller owns the frame's bytes, as
/// for a pointer from [`PhysMemory::direct_map`](kmm_page::PhysMemory::direct_map).
/// Keeping the mapping alive while a pointer is in use is thus the caller's
/// responsibility; the mapping APIs built on this trait (vmalloc, kmap)
/// return guards for that reason.
pub struct HostMmu {
    window: Window,
    table: SoftMmu,
    /// Held across each change, so that the table and the host mappings agree.
    lock: Mutex<()>,
    memory: Arc<HostMemory>,
}

impl HostMmu {
    /// The window size of [`HostMmu::new`]: 256 MiB, 65536 pages.
    pub const DEFAULT_WINDOW_SIZE: usize = 256 << 20;

    /// A host MMU over a window of [`HostMmu::DEFAULT_WINDOW_SIZE`] bytes,
    /// mapping frames of `memory`.
    ///
    /// # Errors
    ///
    /// As for [`HostMmu::with_window_size`].
    pub fn new(memory: Arc<HostMemory>) -> Result<HostMmu, HostError> {
        HostMmu::with_window_size(memory, Self::DEFAULT_WINDOW_SIZE)
    }

    /// A host MMU over a window of `size` bytes, rounded up to whole pages,
    /// mapping frames of `memory`. The window is reserved with one
    /// `mmap(PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)`, which
    /// costs address space only.
    ///
    /// The host's page size must be [`PAGE_SIZE`] (4 KiB, as on x86-64);
    /// with larger host pages, mapping a frame fails with
    /// [`MmuError::Host`] (`EINVAL`).
    ///
    /// # Errors
    ///
    /// [`HostError::Io`] for `mmap` if the host refuses the reservation, or
    /// with `EINVAL` for an empty window, or `ENOMEM` for a window larger than
    /// [`SoftMmu::MAX_WINDOW_PAGES`] pages.
    pub fn with_window_size(memory: Arc<HostMemory>, size: usize) -> Result<HostMmu, HostError> {
        let pages = size.div_ceil(PAGE_SIZE);
        let refuse = |errno: Errno| HostError::Io {
            op: "mmap",
            source: errno.into(),
        };
        if pages == 0 {
            return Err(refuse(Errno::INVAL));
        }
        if pages > SoftMmu::MAX_WINDOW_PAGES {
            return Err(refuse(Errno::NOMEM));
        }
        let window = Window::reserve(pages * PAGE_SIZE)?;
        let start = window.base.as_ptr().addr();
        let table = SoftMmu::new(VirtAddr(start), VirtAddr(start + window.len))
            .map_err(|_| refuse(Errno::NOMEM))?;
        Ok(HostMmu {
            window,
            table,
            lock: Mutex::new(()),
            memory,
        })
    }

    /// The physical memory whose frames this MMU maps.
    pub fn memory(&self) -> &Arc<HostMemory> {
        &self.memory
    }

    /// The number of pages mapped.
    pub fn mapped_pages(&self) -> usize {
        self.table.mapped_pages()
    }

    /// The frame and protection mapped at the page holding `va`, if any.
    pub fn lookup(&self, va: VirtAddr) -> Option<(Pfn, Prot)> {
        self.table.lookup(va)
    }

    /// Takes the lock that orders changes. It guards no data, so a poisoned
    /// lock is as good as a clean one.
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The window offset of `va`, whose `pages` pages must all lie inside the window.
    fn offset(&self, va: VirtAddr, pages: usize) -> Result<usize, MmuError> {
        if va.page_offset() != 0 {
            return Err(MmuError::Misaligned(va));
        }
        let offset = va.0.checked_sub(self.window.base.as_ptr().addr());
        let end = pages
            .checked_mul(PAGE_SIZE)
            .zip(offset)
            .and_then(|(bytes, offset)| offset.checked_add(bytes));
        match (offset, end) {
            (Some(offset), Some(end)) if end <= self.window.len => Ok(offset),
            _ => Err(MmuError::OutsideWindow(va)),
        }
    }
}

impl Mmu for HostMmu {
    fn window(&self) -> (VirtAddr, VirtAddr) {
        self.table.window()
    }

    /// Maps the memfd page of `pfn` at `va` (the `set_pte` of
    /// `mm/vmalloc.c`, `vmap_pte_range`, done by the host).
    ///
    /// Errors, in the order they are checked: [`MmuError::Misaligned`],
    /// [`MmuError::OutsideWindow`], [`MmuError::NoFrame`] for a frame of no
    /// range of the [`HostMemory`], [`MmuError::AlreadyMapped`], and from the
    /// host [`MmuError::MapCountExhausted`] or [`MmuError::Host`].
    fn map(&self, va: VirtAddr, pfn: Pfn, prot: Prot) -> Result<(), MmuError> {
        self.map_range(va, pfn, 1, prot)
    }

    /// Maps the run of frames from `pfn` at `va` with one `mmap`, which is
    /// one host mapping; all or nothing, with the errors of [`Mmu::map`]
    /// checked over the whole run.
    fn map_range(&self, va: VirtAddr, pfn: Pfn, pages: usize, prot: Prot) -> Result<(), MmuError> {
        let _order = self.lock();
        let offset = self.offset(va, pages)?;
        if pages == 0 {
            return Ok(());
        }
        for i in 0..pages {
            let frame = pfn.checked_add(i).ok_or(MmuError::NoFrame(pfn))?;
            if !self.memory.has_frame(frame) {
                return Err(MmuError::NoFrame(frame));
            }
        }
        for i in 0..pages {
            let page = VirtAddr(va.0 + i * PAGE_SIZE);
            if let Some((old, _)) = self.table.lookup(page) {
                return Err(MmuError::AlreadyMapped { va: page, pfn: old });
            }
        }
        self.window
            .map_frames(&self.memory, offset, pfn, pages, prot)
            .map_err(mmu_error)?;
        // The lock is held and every page was checked free, so the table
        // takes the run; recording it after the host mapping means that a
        // page the table shows is a page the host maps.
        self.table.map_range(va, pfn, pages, prot)
    }

    /// Unmaps `va`, putting an inaccessible reservation back in its place,
    /// and returns its frame (`vunmap_pte_range` in `mm/vmalloc.c`).
    ///
    /// Errors: [`MmuError::Misaligned`], [`MmuError::OutsideWindow`],
    /// [`MmuError::NotMapped`], and from the host
    /// [`MmuError::MapCountExhausted`] (unmapping a page in the middle of a
    /// run splits its host mapping in two) or [`MmuError::Host`].
    fn unmap(&self, va: VirtAddr) -> Result<Pfn, MmuError> {
        let _order = self.lock();
        let offset = self.offset(va, 1)?;
        if self.table.translate(va).is_none() {
            return Err(MmuError::NotMapped(va));
        }
        self.window.reserve_again(offset).map_err(mmu_error)?;
        self.table.unmap(va)
    }

    fn translate(&self, va: VirtAddr) -> Option<Pfn> {
        self.table.translate(va)
    }

    /// A pointer to the byte at `va`, when its page is mapped. It is valid
    /// for as long as the page stays mapped to the same frame and this
    /// `HostMmu` lives; see the type's docs.
    fn as_ptr(&self, va: VirtAddr) -> Option<NonNull<u8>> {
        self.table.translate(va)?;
        let offset = va.0 - self.window.base.as_ptr().addr();
        NonNull::new(self.window.at(offset))
    }
}

impl fmt::Debug for HostMmu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostMmu")
            .field("window", &self.table.window())
            .field("mapped_pages", &self.table.mapped_pages())
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
