//! `kmem_cache_alloc_bulk` and `kmem_cache_free_bulk`: many objects of one
//! cache in one call.

use core::ptr::NonNull;

use kmm_gfp::Gfp;
use kmm_page::PageAllocator;
use kmm_percpu::CpuContext;

use crate::SlabError;
use crate::allocator::{KmemCache, SlabAllocator};
use crate::cache::{Cache, HeldPush, cold};

impl<P: PageAllocator + ?Sized, C: CpuContext + ?Sized> SlabAllocator<P, C> {
    /// Fills `objects` with new objects of `cache` (`kmem_cache_alloc_bulk`,
    /// `mm/slub.c`): all of them, or none.
    ///
    /// As in Linux, the CPU slab is taken once for the whole batch (the
    /// slot stays closed, as `local_lock_irqsave` holds it there) and the
    /// objects are popped off its freelist one after the other, refilling
    /// it from the slab's remote frees, a partial slab or a new slab as it
    /// runs dry (`___slab_alloc`); other threads on the same CPU wait for
    /// the batch. `__GFP_ZERO` zeroes every object, after the slot is open
    /// again. A debug cache allocates each object as `kmem_cache_alloc`
    /// does, with every check. What `objects` held before is overwritten.
    ///
    /// # Errors
    ///
    /// As [`SlabAllocator::kmem_cache_alloc`] ([`SlabError::NoMemory`],
    /// [`SlabError::Destroyed`], a corrupted free pointer, the debug
    /// reports), and [`SlabError::InvalidArgs`] for a cache of another
    /// allocator. Every object the batch had taken is freed again (Linux
    /// returns 0 the same way), so no object is left allocated; the slabs
    /// made on the way stay, as after any allocation, until a shrink. The
    /// entries of `objects` then name freed memory and must not be used.
    pub fn kmem_cache_alloc_bulk(
        &self,
        cache: &KmemCache,
        gfp: Gfp,
        objects: &mut [NonNull<u8>],
    ) -> Result<(), SlabError> {
        self.check_owner(cache)?;
        let cache = &*cache.inner;
        let taken = if cache.debug {
            self.alloc_each(cache, gfp, objects)
        } else {
            self.alloc_batch(cache, gfp, objects)
        };
        if let Err((n, error)) = taken {
            for &obj in &objects[..n] {
                // The objects were handed out just now, to this call: their
                // free cannot be refused.
                let freed = self.cache_free(cache, obj, None);
                debug_assert!(freed.is_ok(), "{freed:?}");
            }
            return Err(error);
        }
        Ok(())
    }

    /// The batch of a cache without debug flags: the CPU slot closed once,
    /// every object popped under it, then each handed out (zeroed if
    /// asked). On error, how many objects `objects` holds.
    fn alloc_batch(
        &self,
        cache: &Cache,
        gfp: Gfp,
        objects: &mut [NonNull<u8>],
    ) -> Result<(), (usize, SlabError)> {
        if objects.is_empty() {
            return cache.check_alive().map_err(|e| (0, e));
        }
        let on = self.cpus.current_cpu_exclusive();
        let (slot, cpu, _) = self.this_cpu(cache, on);
        let mut popped = 0;
        let mut failed = None;
        {
            let mut c = slot.close();
            if let Err(e) = cache.check_alive() {
                return Err((0, e));
            }
            for entry in objects.iter_mut() {
                // The closed slab's next object inline; a refill when it
                // has none.
                let obj = match self.cpu_pop(cache, &mut c) {
                    Ok(Some(obj)) => Ok(obj),
                    Ok(None) => self.refill(cache, &mut c, cpu, gfp),
                    Err(e) => Err(e),
                }
                .and_then(|obj| {
                    NonNull::new(obj).ok_or_else(|| SlabError::Corrupted {
                        cache: cache.name.clone(),
                        object: 0,
                    })
                });
                match obj {
                    Ok(obj) => *entry = obj,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                popped += 1;
            }
        }
        if let Some(e) = failed {
            return Err((popped, e));
        }
        if gfp.contains(Gfp::ZERO) {
            for &obj in objects.iter() {
                self.hand_out(cache, obj.as_ptr(), gfp)
                    .map_err(|e| (popped, e))?;
            }
        }
        Ok(())
    }

    /// The batch of a debug cache: one checked allocation per object. On
    /// error, how many objects `objects` holds.
    fn alloc_each(
        &self,
        cache: &Cache,
        gfp: Gfp,
        objects: &mut [NonNull<u8>],
    ) -> Result<(), (usize, SlabError)> {
        cache.check_alive().map_err(|e| (0, e))?;
        for (i, entry) in objects.iter_mut().enumerate() {
            *entry = self.cache_alloc(cache, gfp).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Frees `objects`, all of `cache` (`kmem_cache_free_bulk`,
    /// `mm/slub.c`), with the checks [`SlabAllocator::kmem_cache_free`]
    /// makes. The CPU slab is taken once for the batch, as for
    /// [`SlabAllocator::kmem_cache_alloc_bulk`]: objects of it go onto its
    /// freelist; every other object goes to its own slab (`__slab_free`),
    /// one by one, where Linux first groups the batch by slab
    /// (`build_detached_freelist`) to free each group with one
    /// compare-exchange.
    ///
    /// # Errors
    ///
    /// The first object refused, as `kmem_cache_free` refuses it (a foreign
    /// pointer, the middle of an object, another cache's object, a double
    /// free it can see, a destroyed cache): `(i, error)`, where the objects
    /// before `objects[i]` are freed and `objects[i]` and those after it
    /// are untouched. A handle of another allocator is `(0, InvalidArgs)`.
    /// A red-zone report from a debug cache ([`SlabError::RedZone`]) stops
    /// the batch too, but `objects[i]` is freed, as `kmem_cache_free` frees
    /// it.
    pub fn kmem_cache_free_bulk(
        &self,
        cache: &KmemCache,
        objects: &[NonNull<u8>],
    ) -> Result<(), (usize, SlabError)> {
        self.check_owner(cache).map_err(|e| (0, e))?;
        if objects.is_empty() {
            return Ok(());
        }
        self.free_batch(&cache.inner, objects)
    }

    /// The batch free: the CPU slot closed once, each object of its slab
    /// pushed onto the closed freelist with the fast path's checks (an
    /// object start, not the list's head), every other object freed to its
    /// own slab (`__slab_free`, which checks it whole), then the slab
    /// published. A debug cache has no CPU slab, so all of its objects take
    /// `__slab_free`'s checked path.
    fn free_batch(&self, cache: &Cache, objects: &[NonNull<u8>]) -> Result<(), (usize, SlabError)> {
        let on = self.cpus.current_cpu_exclusive();
        let (slot, _, _) = self.this_cpu(cache, on);
        let mut c = slot.close();
        let fp = c.base.wrapping_add(cache.layout.offset);
        for (i, &obj) in objects.iter().enumerate() {
            let addr = obj.as_ptr().addr();
            match c.push_held(fp, cache.slot, addr) {
                HeldPush::Pushed => {}
                // Another slab's object, or a misuse `__slab_free` reports
                // (the middle of an object of this slab too).
                HeldPush::Elsewhere => self.free_slow(cache, obj, None).map_err(|e| (i, e))?,
                HeldPush::Head => return Err((i, cold::double_free(cache, addr))),
            }
        }
        Ok(())
    }
}
