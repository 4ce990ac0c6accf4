//! `kvmalloc` and its family (`mm/slub.c`, `mm/util.c`): kmalloc first, and
//! vmalloc when kmalloc cannot serve a request larger than a page; `kvfree`
//! tells the two apart by the address, as `is_vmalloc_addr` does.
//!
//! A kvmalloc block is a pointer either way: a kmalloc object in the direct
//! map, or the first byte of a vmalloc area. The second exists only where
//! vmalloc maps real memory of this process (the host MMU, whose kernel
//! virtual addresses are the host addresses of the mapped bytes), which is
//! also the only kind of machine with a slab layer.

use core::ptr::NonNull;

use kmm_buddy::BuddyBackend;
use kmm_gfp::Gfp;
use kmm_page::{PAGE_SIZE, VirtAddr};
use kmm_percpu::CpuContext;
use kmm_slab::{SlabError, ZERO_SIZE_PTR};
use kmm_vmalloc::{AreaKind, VmallocError};

use crate::{KmmError, MemoryManager};

/// The caller of [`MemoryManager::kvmalloc`]'s vmalloc areas in
/// `/proc/vmallocinfo`.
pub const KVMALLOC_CALLER: &str = "MemoryManager::kvmalloc";

/// The caller of the vmalloc areas [`MemoryManager::kvrealloc`] moves a block
/// to, in `/proc/vmallocinfo`.
pub const KVREALLOC_CALLER: &str = "MemoryManager::kvrealloc";

/// The largest request kvmalloc passes on to vmalloc: `INT_MAX` ("don't even
/// allow crazy sizes").
pub const KVMALLOC_MAX_SIZE: usize = i32::MAX as usize;

/// The flags kvmalloc tries kmalloc with (`kmalloc_gfp_adjust`): above a
/// page, no failure report and no direct reclaim (unless the caller asks for
/// `__GFP_RETRY_MAYFAIL`, preferring contiguous memory), and never
/// `__GFP_NOFAIL`, which the vmalloc fallback implements.
#[must_use]
pub const fn kmalloc_gfp_adjust(gfp: Gfp, size: usize) -> Gfp {
    if size <= PAGE_SIZE {
        return gfp;
    }
    let mut gfp = gfp.union(Gfp::NOWARN);
    if !gfp.contains(Gfp::RETRY_MAYFAIL) {
        gfp = gfp.difference(Gfp::DIRECT_RECLAIM);
    }
    gfp.difference(Gfp::NOFAIL)
}

/// Whether a kmalloc refusal leaves kvmalloc its vmalloc fallback: a lack of
/// memory or a request above kmalloc's largest, not a refused pointer.
fn kmalloc_ran_short(error: &KmmError) -> bool {
    matches!(
        error,
        KmmError::Slab(SlabError::NoMemory(_) | SlabError::TooLarge { .. })
    )
}

impl<B: BuddyBackend, C: ?Sized + CpuContext> MemoryManager<B, C> {
    /// Allocates `size` bytes, physically contiguous if kmalloc can, else
    /// virtually contiguous (`kvmalloc`, `__kvmalloc_node_noprof` in
    /// `mm/slub.c`): kmalloc with [`kmalloc_gfp_adjust`]'s flags, then, for a
    /// request above a page that kmalloc could not serve, vmalloc with `gfp`
    /// as given, when it allows blocking. Free it with
    /// [`MemoryManager::kvfree`]. `kvmalloc(0)` is kmalloc's zero-size
    /// pointer.
    ///
    /// # Errors
    ///
    /// kmalloc's error for a request of a page or less, or when `gfp` does
    /// not allow blocking; [`SlabError::TooLarge`] above
    /// [`KVMALLOC_MAX_SIZE`]; else vmalloc's error. Nothing is left
    /// allocated.
    pub fn kvmalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmmError> {
        self.kvmalloc_caller(size, gfp, KVMALLOC_CALLER)
    }

    /// [`MemoryManager::kvmalloc`] with `__GFP_ZERO` (`kvzalloc`).
    ///
    /// # Errors
    ///
    /// As [`MemoryManager::kvmalloc`].
    pub fn kvzalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmmError> {
        self.kvmalloc(size, gfp | Gfp::ZERO)
    }

    /// `n * size` bytes from [`MemoryManager::kvmalloc`], refusing overflow
    /// (`kvmalloc_array`).
    ///
    /// # Errors
    ///
    /// [`SlabError::Overflow`] (nothing allocated), else as
    /// [`MemoryManager::kvmalloc`].
    pub fn kvmalloc_array(&self, n: usize, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmmError> {
        let bytes = n.checked_mul(size).ok_or(SlabError::Overflow)?;
        self.kvmalloc(bytes, gfp)
    }

    /// [`MemoryManager::kvmalloc_array`], zeroed (`kvcalloc`).
    ///
    /// # Errors
    ///
    /// As [`MemoryManager::kvmalloc_array`].
    pub fn kvcalloc(&self, n: usize, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmmError> {
        self.kvmalloc_array(n, size, gfp | Gfp::ZERO)
    }

    /// Frees a block of [`MemoryManager::kvmalloc`] (`kvfree`, `mm/slub.c`):
    /// `vfree` for a vmalloc address, `kfree` for any other. `None` and the
    /// zero-size pointer are no-ops.
    ///
    /// # Errors
    ///
    /// `vfree`'s error for a vmalloc address that starts no vmalloc area (the
    /// middle of one, an area already freed), `kfree`'s for a pointer the
    /// slab layer did not hand out; nothing changes.
    pub fn kvfree(&self, ptr: Option<NonNull<u8>>) -> Result<(), KmmError> {
        let Some(ptr) = ptr else {
            return Ok(());
        };
        match self.vmalloc_block(ptr) {
            Some(addr) => self.vfree(addr),
            None => self.kfree(Some(ptr)),
        }
    }

    /// Resizes a block of [`MemoryManager::kvmalloc`] (`kvrealloc`,
    /// `mm/slub.c`), keeping its first `min(old, new_size)` bytes: `None`
    /// is [`MemoryManager::kvmalloc`]. A kmalloc block goes through
    /// `krealloc` (with [`kmalloc_gfp_adjust`]'s flags) and, if kmalloc runs
    /// short, moves to [`MemoryManager::kvmalloc`]; a vmalloc block
    /// (`vrealloc`, `mm/vmalloc.c`) stays where it is while its pages hold
    /// `new_size` bytes (with `__GFP_ZERO`, the bytes past `new_size` are
    /// zeroed, so that a later growth in place reads zeros), else moves to a
    /// new vmalloc area (all its pages copied). A new size of 0 frees the
    /// block and returns the zero-size pointer.
    ///
    /// # Errors
    ///
    /// The error of the allocation that failed, with the old block left as
    /// it was; `vfree`'s or `kfree`'s error for a pointer kvmalloc did not
    /// hand out, with nothing changed.
    pub fn kvrealloc(
        &self,
        ptr: Option<NonNull<u8>>,
        new_size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, KmmError> {
        let Some(old) = ptr else {
            return self.kvmalloc(new_size, gfp);
        };
        if let Some(addr) = self.vmalloc_block(old) {
            return self.vrealloc(old, addr, new_size, gfp);
        }
        match self.krealloc(Some(old), new_size, kmalloc_gfp_adjust(gfp, new_size)) {
            Err(error) if kmalloc_ran_short(&error) => {}
            done => return done,
        }
        // krealloc keeps blocks whose bucket holds the new size, so the old
        // block's usable size is below `new_size`: all of it is copied.
        let old_size = if old == ZERO_SIZE_PTR {
            0
        } else {
            self.ksize(old)?
        };
        let new = self.kvmalloc_caller(new_size, gfp, KVREALLOC_CALLER)?;
        // SAFETY: `old` is a live kmalloc block of `old_size` usable bytes
        // (`ksize` just said so), `new` a fresh block of `new_size >
        // old_size` bytes of host memory, distinct from it.
        unsafe { core::ptr::copy_nonoverlapping(old.as_ptr(), new.as_ptr(), old_size) };
        self.release_moved(new, self.kfree(Some(old)))
    }

    /// [`MemoryManager::kvmalloc`] with the caller its vmalloc area records.
    fn kvmalloc_caller(
        &self,
        size: usize,
        gfp: Gfp,
        caller: &'static str,
    ) -> Result<NonNull<u8>, KmmError> {
        let error = match self.kmalloc(size, kmalloc_gfp_adjust(gfp, size)) {
            Ok(ptr) => return Ok(ptr),
            Err(error) => error,
        };
        if size <= PAGE_SIZE || !gfp.allows_blocking() || !kmalloc_ran_short(&error) {
            return Err(error);
        }
        if size > KVMALLOC_MAX_SIZE {
            return Err(SlabError::TooLarge {
                size,
                max: KVMALLOC_MAX_SIZE,
            }
            .into());
        }
        self.vmalloc_ptr(size, gfp, caller)
    }

    /// `vmalloc(size, gfp)` as a pointer to its first byte.
    fn vmalloc_ptr(
        &self,
        size: usize,
        gfp: Gfp,
        caller: &'static str,
    ) -> Result<NonNull<u8>, KmmError> {
        let addr = self.vmalloc_space().vmalloc(size, gfp, caller)?;
        match self.vmalloc_space().as_ptr(addr) {
            Some(ptr) if ptr.as_ptr().addr() == addr.0 => Ok(ptr),
            // Only a machine whose vmalloc maps host memory has a slab
            // layer, so this is not reached; the area goes back unused.
            _ => {
                self.vmalloc_space().vfree(addr)?;
                Err(KmmError::NoSlab)
            }
        }
    }

    /// The vmalloc address of `ptr` when it lies in the vmalloc range
    /// (`is_vmalloc_addr`): on the host MMU a kernel virtual address is the
    /// host address of its byte.
    fn vmalloc_block(&self, ptr: NonNull<u8>) -> Option<VirtAddr> {
        let addr = VirtAddr(ptr.as_ptr().addr());
        self.vmalloc_space().is_vmalloc_addr(addr).then_some(addr)
    }

    /// `vrealloc` of the vmalloc block `old` at `addr`.
    fn vrealloc(
        &self,
        old: NonNull<u8>,
        addr: VirtAddr,
        new_size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, KmmError> {
        let area = self
            .vmalloc_space()
            .find_vm_area(addr)
            .filter(|a| a.addr == addr && a.kind == Some(AreaKind::Vmalloc))
            .ok_or(VmallocError::NotAnArea(addr))?;
        if new_size == 0 {
            self.vfree(addr)?;
            return Ok(ZERO_SIZE_PTR);
        }
        let mapped = area.pages.len() * PAGE_SIZE;
        if new_size <= mapped {
            if gfp.contains(Gfp::ZERO) {
                // SAFETY: the area maps `mapped` bytes of host memory from
                // `old`, a live block the caller hands over; the tail past
                // `new_size` is inside it.
                unsafe { old.as_ptr().add(new_size).write_bytes(0, mapped - new_size) };
            }
            return Ok(old);
        }
        let new = self.vmalloc_ptr(new_size, gfp, KVREALLOC_CALLER)?;
        // SAFETY: `old` maps `mapped` bytes, all of them the caller's block;
        // `new` is a fresh block of `new_size > mapped` bytes, distinct.
        unsafe { core::ptr::copy_nonoverlapping(old.as_ptr(), new.as_ptr(), mapped) };
        self.release_moved(new, self.vfree(addr))
    }

    /// The end of a move: `new` once the old block is freed; if freeing it
    /// failed (which the checks before the move rule out), `new` goes back
    /// and the old block stays, as on any other failure.
    fn release_moved(
        &self,
        new: NonNull<u8>,
        freed: Result<(), KmmError>,
    ) -> Result<NonNull<u8>, KmmError> {
        match freed {
            Ok(()) => Ok(new),
            Err(error) => {
                // A block kvmalloc just handed out frees.
                let _ = self.kvfree(Some(new));
                Err(error)
            }
        }
    }
}
