//! `LocalCache`: a caller-held CPU slab of one cache, for hot loops.

use core::fmt;
use core::ptr::NonNull;

use kmm_gfp::Gfp;
use kmm_page::PageAllocator;
use kmm_percpu::CpuContext;

use crate::SlabError;
use crate::allocator::{KmemCache, SlabAllocator};
use crate::cache::{Cache, CpuSlab, HeldPush, NIL, NO_SLAB, cold};
use crate::layout::Divisor;
use crate::raw;

/// A slab of one cache frozen to its holder rather than to a CPU: the
/// caller's own `struct kmem_cache_cpu`, from
/// [`SlabAllocator::local_cache`].
///
/// [`LocalCache::alloc`] and [`LocalCache::free`] pop and push the held
/// slab's freelist with no atomic read-modify-write, no CPU lookup and no
/// lock (a free pointer is still read and written as an atomic word, a
/// plain move on x86-64),
/// which is what Linux's `kmem_cache_alloc_bulk` and `kmem_cache_free_bulk`
/// do for a batch under one `local_lock`, here for as long as the value
/// lives. Everything else is SLUB's: an empty freelist takes the slab's
/// remote frees or another partial or new slab (`___slab_alloc`); a free of
/// an object outside the held slab goes to its own slab (`__slab_free`),
/// and so does any free of a held-slab object through
/// [`SlabAllocator::kmem_cache_free`], from any thread, since the slab is
/// frozen. Dropping the value (or [`LocalCache::flush`]) gives the slab
/// back to the node (`deactivate_slab`).
///
/// Misuse is refused as by [`SlabAllocator::kmem_cache_free`], with
/// nothing changed: a foreign pointer, the middle of an object, an object
/// of another cache, and a double free of the object freed last.
///
/// While a slab is held, its free objects count as allocated: in
/// `/proc/slabinfo`'s active objects (as Linux counts a CPU slab's) and in
/// [`SlabAllocator::kmem_cache_destroy`], which refuses with
/// [`SlabError::LiveObjects`] until the local cache drops. The holder
/// never blocks anyone: other threads and the holder's own
/// `kmem_cache_alloc` calls use the CPU slabs as before.
///
/// A debug cache never freezes a slab, so a local cache of one takes the
/// checked paths of `kmem_cache_alloc` and `kmem_cache_free` on every call.
///
/// A local cache stays on the thread that made it (it is neither `Send`
/// nor `Sync`), as a CPU's slab stays with its CPU.
pub struct LocalCache<
    'a,
    P: PageAllocator + ?Sized = dyn PageAllocator,
    C: CpuContext + ?Sized = dyn CpuContext,
> {
    slab: &'a SlabAllocator<P, C>,
    cache: &'a Cache,
    /// The held slab, in the state a closed CPU slot's is.
    c: CpuSlab,
    /// The held slab's base plus the cache's free-pointer offset: object
    /// `off`'s free pointer is at `fp + off`. Kept with `c` by `sync`.
    fp: *mut u8,
    /// The cache's slot size as a [`Divisor`], copied here so that `free`
    /// reads nothing behind the cache pointer.
    slot: Divisor,
}

impl<P: PageAllocator + ?Sized, C: CpuContext + ?Sized> SlabAllocator<P, C> {
    /// A [`LocalCache`] of `cache`, holding no slab until its first
    /// allocation.
    ///
    /// # Errors
    ///
    /// [`SlabError::InvalidArgs`] for a cache of another allocator,
    /// [`SlabError::Destroyed`].
    pub fn local_cache<'a>(
        &'a self,
        cache: &'a KmemCache,
    ) -> Result<LocalCache<'a, P, C>, SlabError> {
        self.check_handle(cache)?;
        let cache = &*cache.inner;
        Ok(LocalCache {
            slab: self,
            cache,
            c: CpuSlab::EMPTY,
            fp: core::ptr::null_mut(),
            slot: cache.slot,
        })
    }
}

impl<P: PageAllocator + ?Sized, C: CpuContext + ?Sized> LocalCache<'_, P, C> {
    /// Allocates an object (`kmem_cache_alloc`): the held slab's first free
    /// object, or a refill. `__GFP_ZERO` zeroes it; `gfp` also goes to the
    /// page allocator for a new slab.
    ///
    /// # Errors
    ///
    /// As [`SlabAllocator::kmem_cache_alloc`]: [`SlabError::NoMemory`],
    /// [`SlabError::Destroyed`] (a cache destroyed while this held no slab),
    /// the debug reports, and [`SlabError::Corrupted`] for a free pointer
    /// overwritten after its object was freed (the rest of the held
    /// freelist is dropped).
    #[expect(
        unsafe_code,
        reason = "the fast path reads the free pointer of a free object and hands it out"
    )]
    #[inline(always)]
    pub fn alloc(&mut self, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        let (off, last) = (self.c.freelist, self.c.last);
        // An empty freelist (`NIL`) and no slab (`last == 0`, `NIL`) fail
        // this one test.
        if off <= last && !gfp.contains(Gfp::ZERO) {
            // SAFETY: `fp + off` is the free pointer of the first free
            // object of the held slab: the slab is frozen to this value, so
            // no one else pops it or frees the slab, and the object, being
            // free, is no one's to write. The word is inside the direct map,
            // which stays mapped while the allocator lives, and aligned:
            // every offset on the held list entered it tested to be a whole
            // number of words (an object start freed here, a pointer popped
            // here or by the refill, a slab's own list).
            let next = unsafe { raw::load_free_word_aligned(self.fp, off) };
            if next <= last && next & (size_of::<usize>() - 1) == 0 {
                self.c.freelist = next;
                // SAFETY: a held slab has a non-null base (a value holding
                // none has `last == 0` and `freelist == NIL`, which fail the
                // test above), and `off <= last` is inside it.
                return Ok(unsafe { NonNull::new_unchecked(self.c.base.wrapping_add(off)) });
            }
            return self.pop_last(off, next, gfp);
        }
        // A refill or a zeroing.
        self.alloc_slow(gfp)
    }

    /// The pop of the held list's last object (`next` is `NIL`), or the
    /// report of a corrupted free pointer (any other `next`), which the
    /// refill's first pop reads again and reports, dropping the rest of
    /// the list.
    #[cold]
    #[inline(never)]
    fn pop_last(&mut self, off: usize, next: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        match NonNull::new(self.c.base.wrapping_add(off)) {
            Some(obj) if next == NIL => {
                self.c.freelist = NIL;
                Ok(obj)
            }
            _ => self.alloc_slow(gfp),
        }
    }

    #[inline(never)]
    fn alloc_slow(&mut self, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        let r = self.slab.local_alloc_slow(self.cache, &mut self.c, gfp);
        self.sync();
        r
    }

    /// Derives the fast paths' copies from the held slab's state.
    fn sync(&mut self) {
        self.fp = self.c.base.wrapping_add(self.cache.layout.offset);
    }

    /// Frees an object of the cache (`kmem_cache_free`): onto the held
    /// slab's freelist when it is one of its objects, else to its own slab.
    ///
    /// # Errors
    ///
    /// As [`SlabAllocator::kmem_cache_free`], with nothing changed:
    /// [`SlabError::ForeignPointer`], [`SlabError::NotObjectStart`],
    /// [`SlabError::WrongCache`], [`SlabError::DoubleFree`] (for the
    /// object freed last on its freelist, as `SLAB_FREELIST_HARDENED`
    /// checks; every double free in a debug cache), [`SlabError::Destroyed`].
    #[inline(always)]
    pub fn free(&mut self, obj: NonNull<u8>) -> Result<(), SlabError> {
        let addr = obj.as_ptr().addr();
        match self.c.push_held(self.fp, self.slot, addr) {
            HeldPush::Pushed => Ok(()),
            // Another slab's object, or a misuse, which `free_slow` reports
            // (the middle of a held object too).
            HeldPush::Elsewhere => self.slab.free_slow(self.cache, obj, None),
            HeldPush::Head => Err(cold::double_free(self.cache, addr)),
        }
    }

    /// Gives the held slab back to the node, as dropping does
    /// (`deactivate_slab`): its free objects count as free again, and an
    /// empty slab beyond the cache's `min_partial` goes back to the page
    /// allocator. The next allocation takes a slab anew.
    pub fn flush(&mut self) {
        if self.c.slab != NO_SLAB {
            self.slab.release_local(self.cache, &mut self.c);
        }
        debug_assert_eq!(self.c.slab, NO_SLAB);
        self.sync();
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.cache.name
    }
}

impl<P: PageAllocator + ?Sized, C: CpuContext + ?Sized> Drop for LocalCache<'_, P, C> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<P: PageAllocator + ?Sized, C: CpuContext + ?Sized> fmt::Debug for LocalCache<'_, P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCache")
            .field("cache", &self.cache.name)
            .field("slab", &self.c.slab)
            .finish_non_exhaustive()
    }
}
