//! The slab layer of a booted machine: kmalloc and the slab caches of
//! `kmm-slab` (SLUB, `mm/slub.c` and `mm/slab_common.c`), forwarded by the
//! facade.
//!
//! A machine gets a [`SlabAllocator`] at boot when its frames have memory
//! behind them (host memory or a [`PhysMemory`](kmm_page::PhysMemory) of your
//! own). On [`Backing::NoMemory`](crate::Backing::NoMemory) frames are pure
//! numbers, no object can live in them, and every call here returns
//! [`KmmError::NoSlab`].

use core::ptr::NonNull;

use kmm_buddy::BuddyBackend;
use kmm_gfp::Gfp;
use kmm_percpu::CpuContext;
use kmm_slab::{KmemCache, LocalCache, SlabAllocator, SlabFlags};
use kmm_zone::ZonedAllocator;

use crate::{KmmError, MemoryManager};

impl<B: BuddyBackend, C: ?Sized + CpuContext> MemoryManager<B, C> {
    /// The slab layer, or `None` on a machine without memory behind its frames.
    pub fn slab(&self) -> Option<&SlabAllocator<ZonedAllocator<B>, C>> {
        self.slab.as_deref()
    }

    /// The slab layer or [`KmmError::NoSlab`].
    #[inline]
    fn slab_or_err(&self) -> Result<&SlabAllocator<ZonedAllocator<B>, C>, KmmError> {
        match self.slab.as_deref() {
            Some(slab) => Ok(slab),
            None => Err(KmmError::NoSlab),
        }
    }

    /// Allocates `size` bytes (`kmalloc`, `include/linux/slab.h`): a
    /// `kmalloc-*` cache up to 8 KiB, the page allocator above, at most
    /// `KMALLOC_MAX_SIZE` (4 MiB).
    #[inline]
    pub fn kmalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmmError> {
        Ok(self.slab_or_err()?.kmalloc(size, gfp)?)
    }

    /// Allocates `size` zeroed bytes (`kzalloc`, `include/linux/slab.h`).
    pub fn kzalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, KmmError> {
        Ok(self.slab_or_err()?.kzalloc(size, gfp)?)
    }

    /// Frees memory from kmalloc or a slab cache (`kfree`, `mm/slub.c`);
    /// `None` and `ZERO_SIZE_PTR` are no-ops. A pointer the slab layer did
    /// not hand out is an error and changes nothing.
    #[inline]
    pub fn kfree(&self, ptr: Option<NonNull<u8>>) -> Result<(), KmmError> {
        Ok(self.slab_or_err()?.kfree(ptr)?)
    }

    /// The usable size of an allocation (`ksize`, `mm/slab_common.c`).
    pub fn ksize(&self, ptr: NonNull<u8>) -> Result<usize, KmmError> {
        Ok(self.slab_or_err()?.ksize(ptr)?)
    }

    /// Resizes an allocation (`krealloc`, `mm/slab_common.c`); the old
    /// allocation is untouched on error.
    pub fn krealloc(
        &self,
        ptr: Option<NonNull<u8>>,
        new_size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, KmmError> {
        Ok(self.slab_or_err()?.krealloc(ptr, new_size, gfp)?)
    }

    /// Creates a cache of `size`-byte objects (`kmem_cache_create`,
    /// `mm/slab_common.c`); `align` 0 is the default alignment.
    pub fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<fn(NonNull<u8>)>,
    ) -> Result<KmemCache, KmmError> {
        Ok(self
            .slab_or_err()?
            .kmem_cache_create(name, size, align, flags, ctor)?)
    }

    /// Allocates an object of `cache` (`kmem_cache_alloc`, `mm/slub.c`).
    pub fn kmem_cache_alloc(&self, cache: &KmemCache, gfp: Gfp) -> Result<NonNull<u8>, KmmError> {
        Ok(self.slab_or_err()?.kmem_cache_alloc(cache, gfp)?)
    }

    /// Allocates a zeroed object of `cache` (`kmem_cache_zalloc`, `include/linux/slab.h`).
    pub fn kmem_cache_zalloc(&self, cache: &KmemCache, gfp: Gfp) -> Result<NonNull<u8>, KmmError> {
        Ok(self.slab_or_err()?.kmem_cache_zalloc(cache, gfp)?)
    }

    /// Frees an object of `cache` (`kmem_cache_free`, `mm/slub.c`).
    pub fn kmem_cache_free(&self, cache: &KmemCache, obj: NonNull<u8>) -> Result<(), KmmError> {
        Ok(self.slab_or_err()?.kmem_cache_free(cache, obj)?)
    }

    /// Fills `objects` with new objects of `cache`, all or none
    /// (`kmem_cache_alloc_bulk`, `mm/slub.c`; see
    /// [`SlabAllocator::kmem_cache_alloc_bulk`]).
    pub fn kmem_cache_alloc_bulk(
        &self,
        cache: &KmemCache,
        gfp: Gfp,
        objects: &mut [NonNull<u8>],
    ) -> Result<(), KmmError> {
        Ok(self
            .slab_or_err()?
            .kmem_cache_alloc_bulk(cache, gfp, objects)?)
    }

    /// Frees `objects` of `cache` (`kmem_cache_free_bulk`, `mm/slub.c`):
    /// on error, the index of the first object refused (those before it
    /// are freed) and why (see [`SlabAllocator::kmem_cache_free_bulk`]).
    pub fn kmem_cache_free_bulk(
        &self,
        cache: &KmemCache,
        objects: &[NonNull<u8>],
    ) -> Result<(), (usize, KmmError)> {
        self.slab_or_err()
            .map_err(|e| (0, e))?
            .kmem_cache_free_bulk(cache, objects)
            .map_err(|(i, e)| (i, e.into()))
    }

    /// A [`LocalCache`] of `cache`: a slab held by the caller, whose
    /// allocations and frees take no lock, atomic or CPU lookup (see
    /// [`SlabAllocator::local_cache`]).
    pub fn local_cache<'a>(
        &'a self,
        cache: &'a KmemCache,
    ) -> Result<LocalCache<'a, ZonedAllocator<B>, C>, KmmError> {
        Ok(self.slab_or_err()?.local_cache(cache)?)
    }

    /// Gives the empty slabs of `cache` back to the page allocator
    /// (`kmem_cache_shrink`, `mm/slab_common.c`); `true` if the cache holds
    /// no slab afterwards.
    pub fn kmem_cache_shrink(&self, cache: &KmemCache) -> Result<bool, KmmError> {
        Ok(self.slab_or_err()?.kmem_cache_shrink(cache)?)
    }

    /// Destroys `cache` (`kmem_cache_destroy`, `mm/slab_common.c`); refused
    /// while it has live objects.
    pub fn kmem_cache_destroy(&self, cache: &KmemCache) -> Result<(), KmmError> {
        Ok(self.slab_or_err()?.kmem_cache_destroy(cache)?)
    }
}
