//! `SlabAllocator`: the public face of the slab layer (`kmem_cache_*`,
//! `kmalloc` and friends, `/proc/slabinfo`, the slab lines of `/proc/meminfo`).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crossbeam_utils::CachePadded;
use kmm_gfp::Gfp;
use kmm_page::{PAGE_SIZE, PageAllocator, PageFlags, PageType, Pfn, get_order};
use kmm_percpu::CpuContext;
use spin::{Mutex, Once};

use crate::cache::{
    Cache, CpuSlot, EARLY, KmallocSlots, Lookup, NO_SLAB, NOT_EARLY, PushMiss, SLAB_ID_BITS,
    SLAB_ID_MASK, SlabMeta,
};
use crate::layout::{
    ARCH_SLAB_MINALIGN, DMA_KMALLOC_NAMES, KMALLOC_CLASSES, KMALLOC_CREATE_ORDER,
    KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, KMALLOC_NAMES, calculate_alignment, calculate_sizes,
    kmalloc_class, kmalloc_index, kmalloc_size, min_partial,
};
use crate::table::Table;
use crate::{SlabError, SlabFlags};

/// `ZERO_SIZE_PTR`: what `kmalloc(0)` returns (address 16, never dereferenceable).
pub const ZERO_SIZE_PTR: NonNull<u8> = match NonNull::new(core::ptr::without_provenance_mut(16)) {
    Some(p) => p,
    None => NonNull::dangling(),
};

/// `ZERO_OR_NULL_PTR`: null or at most `ZERO_SIZE_PTR`.
fn zero_or_null(p: NonNull<u8>) -> bool {
    p.as_ptr().addr() <= 16
}

/// What [`SlabAllocator::kfree_fast_split`] did with a pointer.
#[must_use = "a `Slow` free is finished by `kfree_slow`, a declined one by `kfree`"]
#[derive(Debug)]
pub enum FastFree {
    /// The object is on this CPU's freelist.
    Freed,
    /// A kmalloc object outside this CPU's slab: nothing changed yet, and
    /// [`SlabAllocator::kfree_slow`] finishes the free.
    Slow(SlowFree),
    /// Nothing changed; [`SlabAllocator::kfree`] frees or reports.
    Declined,
}

/// A kmalloc object [`SlabAllocator::kfree_fast_split`] found outside this
/// CPU's slab, with the cache and slab its frame names, for
/// [`SlabAllocator::kfree_slow`] (which checks them again). Neither `Copy`
/// nor `Clone`: one free each.
#[derive(Debug)]
pub struct SlowFree {
    obj: NonNull<u8>,
    /// The frame's `private` word: the cache's place in `early` and the
    /// slab's id. Two fields, so that the token travels in two registers.
    word: u32,
}

/// Slab descriptors: 2048 chunks of 1024 (up to 2 Mi slabs, whose ids fit
/// the `SLAB_ID_BITS` of a slab frame's `private` word).
const SLAB_DIR: usize = 2048;
const SLAB_CHUNK: usize = 1024;
const _: () = assert!(SLAB_DIR * SLAB_CHUNK <= 1 << SLAB_ID_BITS);
/// Caches ever created: 256 chunks of 256.
const CACHE_DIR: usize = 256;
const CACHE_CHUNK: usize = 256;

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// The slab lines of `/proc/meminfo`, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlabMeminfo {
    /// `SReclaimable`: slab pages of `SLAB_RECLAIM_ACCOUNT` caches.
    pub reclaimable_kb: u64,
    /// `SUnreclaim`: other slab pages and large kmalloc blocks.
    pub unreclaimable_kb: u64,
}

impl SlabMeminfo {
    /// `Slab`: the sum of both.
    pub fn slab_kb(&self) -> u64 {
        self.reclaimable_kb + self.unreclaimable_kb
    }
}

/// One row of `/proc/slabinfo` (`struct slabinfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlabInfo {
    /// The cache name.
    pub name: String,
    /// Objects allocated to callers (exact, see the crate docs).
    pub active_objs: usize,
    /// Objects in all slabs.
    pub num_objs: usize,
    /// The slot size (`s->size`).
    pub objsize: usize,
    /// Objects per slab of the preferred order.
    pub objperslab: usize,
    /// Pages per slab of the preferred order.
    pub pagesperslab: usize,
    /// Slabs (active and total are the same under SLUB).
    pub num_slabs: usize,
    /// Pages in all slabs.
    pub pages: usize,
}

/// A handle to a slab cache (`struct kmem_cache *`): cheap to clone; every
/// use after [`SlabAllocator::kmem_cache_destroy`] is [`SlabError::Destroyed`].
#[derive(Clone)]
pub struct KmemCache {
    pub(crate) inner: Arc<Cache>,
}

impl fmt::Debug for KmemCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KmemCache").field(&self.inner.name).finish()
    }
}

impl KmemCache {
    /// The cache name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    /// `object_size`: the size asked for.
    pub fn object_size(&self) -> usize {
        self.inner.layout.object_size
    }
    /// `size`: the slot size (slabinfo's `objsize`).
    pub fn size(&self) -> usize {
        self.inner.layout.size
    }
    /// The object alignment.
    pub fn align(&self) -> usize {
        self.inner.layout.align
    }
    /// The preferred slab order.
    pub fn order(&self) -> u32 {
        self.inner.layout.order
    }
    /// Objects per slab of the preferred order.
    pub fn objects_per_slab(&self) -> usize {
        self.inner.layout.objects
    }
    /// `min_partial`.
    pub fn min_partial(&self) -> usize {
        self.inner.min_partial
    }
    /// The flags.
    pub fn flags(&self) -> SlabFlags {
        self.inner.flags
    }
    /// Offset of the free pointer from the object start (`s->offset`).
    pub fn free_pointer_offset(&self) -> usize {
        self.inner.layout.offset
    }
    /// Bytes of left red zone (`red_left_pad`).
    pub fn red_left_pad(&self) -> usize {
        self.inner.layout.red_left_pad
    }
    /// `inuse`: object plus right red zone.
    pub fn inuse(&self) -> usize {
        self.inner.layout.inuse
    }
}

/// Free descriptor ids: a stack linked through `SlabMeta::next`.
#[derive(Debug)]
struct IdState {
    next_unused: u32,
    free_head: u32,
}

/// The SLUB slab allocator and kmalloc over any [`PageAllocator`].
///
/// The kmalloc caches, `kmalloc-8` to `kmalloc-8k` and `dma-kmalloc-8` to
/// `dma-kmalloc-8k`, are created eagerly by [`SlabAllocator::new`] (with no
/// slabs: pages are taken on the first allocation), as Linux's
/// `create_kmalloc_caches` does at boot.
pub struct SlabAllocator<P: ?Sized = dyn PageAllocator, C: ?Sized = dyn CpuContext> {
    pub(crate) pages: Arc<P>,
    pub(crate) cpus: Arc<C>,
    pub(crate) slabs: Table<SlabMeta, SLAB_CHUNK>,
    ids: Mutex<IdState>,
    caches: Table<Once<Arc<Cache>>, CACHE_CHUNK>,
    next_cache: AtomicU32,
    /// Live caches in creation order (`slab_caches`).
    list: Mutex<Vec<Arc<Cache>>>,
    /// The caches created at boot by id: `kmalloc-*` at `kmalloc_index - 1`,
    /// `dma-kmalloc-*` [`KMALLOC_CLASSES`] further on, as slab frames name
    /// them (see `cache::SLAB_ID_BITS`).
    pub(crate) early: Vec<Arc<Cache>>,
    /// The CPU slots of the `early` caches, a row per CPU (`nr_slots` rows)
    /// with a slot per cache: `kfree` reaches a kmalloc object's slot from
    /// the CPU and the frame's cache position with arithmetic alone, not
    /// through the cache.
    pub(crate) kcpu: Box<[KmallocSlots]>,
    /// Slots per cache: the CPU count (at least 1), for every cache.
    pub(crate) nr_slots: usize,
    large_lock: Mutex<()>,
    large_pages: AtomicUsize,
    pub(crate) instance: u64,
    /// The low 24 bits of `instance`, kept in large kmalloc frames.
    pub(crate) tag: u32,
    pub(crate) large_name: Arc<str>,
    pub(crate) internal_errors: AtomicUsize,
    pub(crate) track_seq: AtomicUsize,
}

impl<P: PageAllocator + ?Sized, C: CpuContext + ?Sized> fmt::Debug for SlabAllocator<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlabAllocator")
            .field("caches", &self.list.lock().len())
            .field("large_pages", &self.large_pages.load(Relaxed))
            .field("nr_cpus", &self.cpus.nr_cpus())
            .finish_non_exhaustive()
    }
}

impl SlabAllocator {
    /// The kmalloc cache name for `size` bytes with `gfp` (`kmalloc-128`,
    /// `dma-kmalloc-64`); `None` for 0 bytes and above `KMALLOC_MAX_CACHE_SIZE`.
    pub fn kmalloc_cache_name(size: usize, gfp: Gfp) -> Option<&'static str> {
        let i = kmalloc_index(size).filter(|&i| i > 0)?;
        Some(if gfp.contains(Gfp::DMA) {
            DMA_KMALLOC_NAMES[i]
        } else {
            KMALLOC_NAMES[i]
        })
    }
}

impl<P: PageAllocator + ?Sized, C: CpuContext + ?Sized> SlabAllocator<P, C> {
    /// Boots the slab layer (`kmem_cache_init` + `create_kmalloc_caches`):
    /// creates the 13 `kmalloc-*` and the 13 `dma-kmalloc-*` caches, eagerly.
    ///
    /// # Errors
    ///
    /// Only [`SlabError::TooMany`] in theory (the cache table holds 65536).
    pub fn new(pages: Arc<P>, cpus: Arc<C>) -> Result<Self, SlabError> {
        let instance = NEXT_INSTANCE.fetch_add(1, Relaxed);
        let nr_slots = cpus.nr_cpus().max(1);
        let mut sa = SlabAllocator {
            pages,
            cpus,
            slabs: Table::new(SLAB_DIR),
            ids: Mutex::new(IdState {
                next_unused: 0,
                free_head: NO_SLAB,
            }),
            caches: Table::new(CACHE_DIR),
            next_cache: AtomicU32::new(0),
            list: Mutex::new(Vec::new()),
            early: Vec::new(),
            kcpu: Box::default(),
            nr_slots,
            large_lock: Mutex::new(()),
            large_pages: AtomicUsize::new(0),
            instance,
            tag: (instance & 0xff_ffff) as u32,
            large_name: Arc::from("large-kmalloc"),
            internal_errors: AtomicUsize::new(0),
            track_seq: AtomicUsize::new(1),
        };
        for dma in [false, true] {
            for &i in &KMALLOC_CREATE_ORDER {
                let size = kmalloc_size(i);
                let align = if size.is_power_of_two() {
                    size.max(ARCH_SLAB_MINALIGN)
                } else {
                    ARCH_SLAB_MINALIGN
                };
                let (name, flags) = if dma {
                    (
                        DMA_KMALLOC_NAMES[i],
                        SlabFlags::KMALLOC | SlabFlags::CACHE_DMA,
                    )
                } else {
                    (KMALLOC_NAMES[i], SlabFlags::KMALLOC)
                };
                let k = i - 1 + if dma { KMALLOC_CLASSES } else { 0 };
                let cache = sa.create(name, size, align, flags, None, k as u32)?;
                debug_assert_eq!(cache.id as usize, k);
            }
        }
        // Ids are handed out in order from 0, so these are all caches so far,
        // each at its `early` index.
        sa.early = (0..sa.next_cache.load(Relaxed))
            .map_while(|id| sa.cache_by_id(id).cloned())
            .collect();
        // Each kmalloc cache was made above (`create` returns its error
        // otherwise), so this holds; `Early` and `kcpu` index by it.
        if sa.early.len() != EARLY {
            return Err(SlabError::TooMany("caches"));
        }
        sa.kcpu = (0..sa.nr_slots)
            .map(|_| {
                KmallocSlots(core::array::from_fn(|k| {
                    CachePadded::new(CpuSlot::new(&sa.early[k].layout))
                }))
            })
            .collect();
        Ok(sa)
    }

    /// The page allocator underneath.
    pub fn page_allocator(&self) -> &Arc<P> {
        &self.pages
    }

    /// The CPU context the per-CPU slots are chosen by. Asking it for the
    /// calling thread's CPU just before a `kmalloc` lets the compiler share
    /// the query with the one inside (the same object, reached the same way).
    #[inline]
    pub fn cpu_context(&self) -> &Arc<C> {
        &self.cpus
    }

    /// The cache with id `id`. A reference, not a clone: the hot paths must
    /// not touch the `Arc`'s shared count, which would bounce between CPUs.
    #[inline(always)]
    pub(crate) fn cache_by_id(&self, id: u32) -> Option<&Arc<Cache>> {
        self.caches.get(id as usize)?.get()
    }

    pub(crate) fn alloc_slab_id(&self) -> Option<u32> {
        let mut ids = self.ids.lock();
        if ids.free_head != NO_SLAB {
            let id = ids.free_head;
            ids.free_head = self.meta(id).map_or(NO_SLAB, |m| m.next.load(Relaxed));
            return Some(id);
        }
        let id = ids.next_unused;
        if id as usize >= self.slabs.capacity() {
            return None;
        }
        self.slabs.get_or_alloc(id as usize)?;
        ids.next_unused += 1;
        Some(id)
    }

    /// How many slab ids were ever handed out: every slab's id is below it
    /// (ids come in order from 0, and freed ones are reused first).
    pub(crate) fn slab_ids_issued(&self) -> usize {
        self.ids.lock().next_unused as usize
    }

    pub(crate) fn release_slab_id(&self, id: u32) {
        let mut ids = self.ids.lock();
        if let Some(m) = self.meta(id) {
            m.next.store(ids.free_head, Relaxed);
            ids.free_head = id;
        }
    }

    fn create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<fn(NonNull<u8>)>,
        early: u32,
    ) -> Result<Arc<Cache>, SlabError> {
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(SlabError::InvalidArgs(
                "cache names are non-empty and have no spaces",
            ));
        }
        if size == 0 {
            return Err(SlabError::InvalidArgs("object size 0"));
        }
        if size > KMALLOC_MAX_SIZE {
            return Err(SlabError::TooLarge {
                size,
                max: KMALLOC_MAX_SIZE,
            });
        }
        if align != 0 && !align.is_power_of_two() {
            return Err(SlabError::InvalidArgs("alignment is not a power of two"));
        }
        if align > KMALLOC_MAX_SIZE {
            return Err(SlabError::InvalidArgs("alignment above KMALLOC_MAX_SIZE"));
        }
        if SlabFlags::from_bits(flags.bits()).is_none() {
            return Err(SlabError::InvalidArgs("unknown slab flags"));
        }
        let nr_cpus = self.nr_slots;
        let align = calculate_alignment(flags, align, size);
        let layout = calculate_sizes(size, align, flags, ctor.is_some(), nr_cpus).ok_or(
            SlabError::TooLarge {
                size,
                max: KMALLOC_MAX_SIZE,
            },
        )?;
        let id = self.next_cache.fetch_add(1, Relaxed);
        let slot = self
            .caches
            .get_or_alloc(id as usize)
            .ok_or(SlabError::TooMany("caches"))?;
        let cache = Arc::new(Cache::new(
            id,
            self.instance,
            Arc::from(name),
            flags,
            layout,
            ctor,
            early,
            nr_cpus,
            min_partial(layout.size),
        ));
        slot.call_once(|| Arc::clone(&cache));
        self.list.lock().push(Arc::clone(&cache));
        Ok(cache)
    }

    /// Refuses a handle of another allocator. Enough for the fast paths of
    /// `kmem_cache_alloc` and `kmem_cache_free`: a destroyed cache's CPU
    /// slots are empty, so both reach their slow paths, which refuse it.
    #[inline(always)]
    pub(crate) fn check_owner(&self, cache: &KmemCache) -> Result<(), SlabError> {
        if cache.inner.owner != self.instance {
            return Err(SlabError::InvalidArgs(
                "the cache belongs to another slab allocator",
            ));
        }
        Ok(())
    }

    pub(crate) fn check_handle(&self, cache: &KmemCache) -> Result<(), SlabError> {
        self.check_owner(cache)?;
        cache.inner.check_alive()
    }

    /// Creates a cache of `size`-byte objects (`kmem_cache_create`, `mm/slab_common.c`).
    ///
    /// `align` 0 means the default (8); `SLAB_HWCACHE_ALIGN` raises it to the
    /// cache line as `calculate_alignment` does. `ctor` runs on every object
    /// when its slab is created, not on each allocation; it must not allocate
    /// from the cache it constructs. Caches are never merged.
    ///
    /// # Errors
    ///
    /// [`SlabError::InvalidArgs`] for an empty name or one with spaces, size
    /// 0, an alignment that is not a power of two or above 4 MiB, or the
    /// internal `SLAB_KMALLOC` flag; [`SlabError::TooLarge`] above
    /// `KMALLOC_MAX_SIZE`. Nothing is created on error (`SLAB_PANIC` does not panic).
    pub fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<fn(NonNull<u8>)>,
    ) -> Result<KmemCache, SlabError> {
        if flags.contains(SlabFlags::KMALLOC) {
            return Err(SlabError::InvalidArgs(
                "SLAB_KMALLOC is reserved for the kmalloc caches",
            ));
        }
        Ok(KmemCache {
            inner: self.create(name, size, align, flags, ctor, NOT_EARLY)?,
        })
    }

    /// Allocates an object (`kmem_cache_alloc`, `mm/slub.c`): the CPU freelist
    /// without any other lock on the fast path. `__GFP_ZERO` zeroes it.
    ///
    /// # Errors
    ///
    /// [`SlabError::NoMemory`] when a new slab is needed and the page
    /// allocator refuses, [`SlabError::Destroyed`], and the debug reports
    /// [`SlabError::Poisoned`], [`SlabError::RedZone`] and [`SlabError::Corrupted`].
    #[inline(always)]
    pub fn kmem_cache_alloc(&self, cache: &KmemCache, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        self.check_owner(cache)?;
        self.cache_alloc(&cache.inner, gfp)
    }

    /// Allocates a zeroed object (`kmem_cache_zalloc`).
    ///
    /// # Errors
    ///
    /// As [`SlabAllocator::kmem_cache_alloc`].
    pub fn kmem_cache_zalloc(&self, cache: &KmemCache, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        self.kmem_cache_alloc(cache, gfp | Gfp::ZERO)
    }

    /// Frees an object (`kmem_cache_free`, `mm/slub.c`).
    ///
    /// # Errors
    ///
    /// [`SlabError::ForeignPointer`], [`SlabError::NotObjectStart`],
    /// [`SlabError::WrongCache`], [`SlabError::DoubleFree`] (always for debug
    /// caches; for others when the object is the last one freed on its
    /// freelist, as `SLAB_FREELIST_HARDENED` checks), [`SlabError::Destroyed`]:
    /// nothing changes. [`SlabError::RedZone`] reports an overrun found while
    /// freeing; the object is freed anyway, with its red zone restored.
    #[inline(always)]
    pub fn kmem_cache_free(&self, cache: &KmemCache, obj: NonNull<u8>) -> Result<(), SlabError> {
        self.check_owner(cache)?;
        self.cache_free(&cache.inner, obj, None)
    }

    /// Flushes the per-CPU slabs and frees every empty slab (`kmem_cache_shrink`);
    /// `true` iff the cache holds no slab afterwards.
    ///
    /// # Errors
    ///
    /// [`SlabError::Destroyed`].
    pub fn kmem_cache_shrink(&self, cache: &KmemCache) -> Result<bool, SlabError> {
        self.check_handle(cache)?;
        Ok(self.shrink(&cache.inner))
    }

    /// Destroys a cache (`kmem_cache_destroy`, `mm/slab_common.c`).
    ///
    /// # Errors
    ///
    /// [`SlabError::LiveObjects`] if objects are still allocated: nothing
    /// changes and the cache stays usable; [`SlabError::Destroyed`] the second
    /// time; [`SlabError::InvalidArgs`] for a handle of another allocator.
    pub fn kmem_cache_destroy(&self, cache: &KmemCache) -> Result<(), SlabError> {
        self.check_handle(cache)?;
        let c = &cache.inner;
        let mut discard = Vec::new();
        {
            let mut guards = CpuSlot::close_all(self.slots(c), &*self.cpus);
            let mut n = c.node.lock();
            let live = n
                .total_objects
                .saturating_sub(self.free_objects(c, &n, &guards));
            if live > 0 {
                return Err(SlabError::LiveObjects {
                    cache: c.name.clone(),
                    count: live,
                });
            }
            if c.destroyed.swap(true, Relaxed) {
                return Err(SlabError::Destroyed {
                    cache: c.name.clone(),
                });
            }
            // Empty every CPU slot before opening it again: the fast paths
            // do not look at `destroyed`, so nothing may be left to pop, and
            // every later call must miss and reach a slow path that looks.
            for g in &mut guards {
                let d = self.deactivate(c, g, &mut n);
                if d != NO_SLAB {
                    discard.push(d);
                }
            }
        }
        for id in discard {
            self.free_slab(id);
        }
        self.shrink(c);
        self.list.lock().retain(|x| !Arc::ptr_eq(x, c));
        Ok(())
    }

    /// The position among the kmalloc caches of the cache for `size` bytes
    /// (`kmalloc_slab`): the `dma-kmalloc` one with `GFP_DMA`; `None` for a
    /// large kmalloc.
    #[inline(always)]
    fn kmalloc_slab(size: usize, gfp: Gfp) -> Option<usize> {
        let k = kmalloc_class(size)?;
        let dma = if gfp.contains(Gfp::DMA) {
            KMALLOC_CLASSES
        } else {
            0
        };
        Some(k + dma)
    }

    /// `kmalloc` from the kmalloc cache at position `k`, on the CPU `on`
    /// (its number and whether the caller holds it exclusively).
    #[inline(always)]
    fn kmalloc_at(
        &self,
        k: usize,
        on: (usize, bool),
        size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        match self.early_at(k, on) {
            Some((cache, at)) => self.cache_alloc_at(cache, at, gfp),
            None => self.kmalloc_elsewhere(k, on, size, gfp),
        }
    }

    /// [`SlabAllocator::kmalloc_at`] on a CPU beyond the machine (CPU 0's
    /// slot, shared, as [`SlabAllocator::this_cpu`] gives it).
    #[cold]
    #[inline(never)]
    fn kmalloc_elsewhere(
        &self,
        k: usize,
        on: (usize, bool),
        size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        match self.early.get(k) {
            Some(cache) => self.cache_alloc_at(&**cache, self.this_cpu(cache, on), gfp),
            None => self.kmalloc_large(size, gfp),
        }
    }

    /// [`SlabAllocator::kmalloc_at`] when the CPU context has no quick
    /// answer ([`CpuContext::current_cpu_quick`]).
    #[inline(never)]
    fn kmalloc_searched(&self, k: usize, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        self.kmalloc_at(k, self.cpus.current_cpu_exclusive(), size, gfp)
    }

    /// Allocates `size` bytes (`kmalloc`, `include/linux/slab.h`): from the
    /// kmalloc cache of `kmalloc_index(size)` (the `dma-kmalloc` one with
    /// `GFP_DMA`) up to 8 KiB, straight from the page allocator above.
    /// `kmalloc(0)` is [`ZERO_SIZE_PTR`]. `__GFP_HIGHMEM`/`__GFP_DMA32` are
    /// dropped, as `kmalloc_fix_flags` does.
    ///
    /// # Errors
    ///
    /// [`SlabError::TooLarge`] above `KMALLOC_MAX_SIZE` (4 MiB),
    /// [`SlabError::NoMemory`].
    #[inline(always)]
    pub fn kmalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        let gfp = gfp - (Gfp::HIGHMEM | Gfp::DMA32);
        let Some(k) = Self::kmalloc_slab(size, gfp) else {
            if size == 0 {
                return Ok(ZERO_SIZE_PTR);
            }
            return self.kmalloc_large(size, gfp);
        };
        match self.cpus.current_cpu_quick() {
            Some(on) => self.kmalloc_at(k, on, size, gfp),
            None => self.kmalloc_searched(k, size, gfp),
        }
    }

    /// The lockless per-CPU half of [`SlabAllocator::kmalloc`] alone: the
    /// object `kmalloc(size, gfp)` would pop off this CPU's freelist, or
    /// `None`, with nothing changed, whenever `kmalloc` would do more: a
    /// request for zero bytes, above 8 KiB or with `__GFP_ZERO`; a CPU the
    /// context has no quick answer for ([`CpuContext::current_cpu_quick`]);
    /// an empty or closed CPU freelist, or a corrupted free pointer (which
    /// `kmalloc` then reports). A caller that gets `None` calls `kmalloc`.
    ///
    /// `kmalloc` is this pop followed by the slow paths. The split is for a
    /// wrapper that must stay cheap per call, such as a global allocator:
    /// this path makes no call, so a function built on it saves no
    /// registers until it leaves for the slow path.
    #[inline(always)]
    pub fn kmalloc_fast(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        if gfp.contains(Gfp::ZERO) {
            return None;
        }
        let k = Self::kmalloc_slab(size, gfp - (Gfp::HIGHMEM | Gfp::DMA32))?;
        let (_, (slot, _, exclusive)) = self.early_at(k, self.cpus.current_cpu_quick()?)?;
        let obj = if exclusive {
            slot.owner_pop()
        } else {
            slot.shared_pop()
        };
        NonNull::new(obj.ok()?)
    }

    /// The lockless per-CPU half of [`SlabAllocator::kfree`] alone: `true`
    /// when `ptr` was a kmalloc object of this CPU's slab and is now on its
    /// freelist; `false`, with nothing changed, whenever `kfree` would do
    /// more or refuse: an object of another slab or of a `kmem_cache`, a
    /// large kmalloc, [`ZERO_SIZE_PTR`], a pointer outside the page
    /// allocator's quick range ([`PageAllocator::virt_to_page_quick`]), a
    /// CPU the context has no quick answer for, and every misuse (`kfree`
    /// then reports it). A caller that gets `false` calls `kfree`.
    #[inline(always)]
    pub fn kfree_fast(&self, ptr: NonNull<u8>) -> bool {
        matches!(self.kfree_fast_split(ptr), FastFree::Freed)
    }

    /// [`SlabAllocator::kfree_fast`], telling apart the one decline whose
    /// rest the caller can finish without a second lookup: a kmalloc object
    /// outside this CPU's slab ([`FastFree::Slow`]), which
    /// [`SlabAllocator::kfree_slow`] frees to its own slab (`__slab_free`).
    /// Every other decline is [`FastFree::Declined`], with nothing changed,
    /// and the caller calls `kfree`.
    #[inline(always)]
    pub fn kfree_fast_split(&self, ptr: NonNull<u8>) -> FastFree {
        let addr = ptr.as_ptr().addr();
        let Some((_, f)) = self.pages.virt_to_page_quick(addr) else {
            return FastFree::Declined;
        };
        if !f.test(PageFlags::SLAB) {
            return FastFree::Declined;
        }
        let word = f.private();
        let early = word >> SLAB_ID_BITS;
        let Some(on) = self.cpus.current_cpu_quick() else {
            return FastFree::Declined;
        };
        let Some((_, (slot, _, exclusive))) = self.early_at(early as usize, on) else {
            return FastFree::Declined;
        };
        let pushed = if exclusive {
            slot.owner_push(addr)
        } else {
            slot.shared_push(addr)
        };
        match pushed {
            Ok(()) => FastFree::Freed,
            Err(PushMiss::Slow) => FastFree::Slow(SlowFree { obj: ptr, word }),
            Err(PushMiss::Bad { .. }) => FastFree::Declined,
        }
    }

    /// The rest of a `kfree` that [`SlabAllocator::kfree_fast_split`]
    /// began: `__slab_free` of the object to its slab, with every check
    /// `kfree` makes there.
    ///
    /// # Errors
    ///
    /// As [`SlabAllocator::kfree`] (a double free, an object of a slab
    /// since destroyed), with nothing changed.
    #[inline]
    pub fn kfree_slow(&self, free: SlowFree) -> Result<(), SlabError> {
        let SlowFree { obj, word } = free;
        match self.early.get((word >> SLAB_ID_BITS) as usize) {
            Some(cache) => self.free_slow(cache, obj, Some(word & SLAB_ID_MASK)),
            None => Err(SlabError::ForeignPointer {
                addr: obj.as_ptr().addr(),
            }),
        }
    }

    /// `kmalloc(size, gfp | __GFP_ZERO)` (`kzalloc`).
    ///
    /// # Errors
    ///
    /// As [`SlabAllocator::kmalloc`].
    pub fn kzalloc(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        self.kmalloc(size, gfp | Gfp::ZERO)
    }

    /// `n * size` bytes, refusing overflow (`kmalloc_array`).
    ///
    /// # Errors
    ///
    /// [`SlabError::Overflow`] (nothing allocated), else as [`SlabAllocator::kmalloc`].
    pub fn kmalloc_array(&self, n: usize, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        let bytes = n.checked_mul(size).ok_or(SlabError::Overflow)?;
        self.kmalloc(bytes, gfp)
    }

    /// Zeroed `n * size` bytes, refusing overflow (`kcalloc`).
    ///
    /// # Errors
    ///
    /// As [`SlabAllocator::kmalloc_array`].
    pub fn kcalloc(&self, n: usize, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        self.kmalloc_array(n, size, gfp | Gfp::ZERO)
    }

    /// `___kmalloc_large_node`: a compound block of `get_order(size)` marked `LargeKmalloc`.
    fn kmalloc_large(&self, size: usize, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        if size > KMALLOC_MAX_SIZE {
            return Err(SlabError::TooLarge {
                size,
                max: KMALLOC_MAX_SIZE,
            });
        }
        let order = get_order(size);
        let pfn = self
            .pages
            .alloc_pages(gfp | Gfp::COMP, order)
            .map_err(SlabError::NoMemory)?;
        let Some(base) = self.block_base(pfn, order) else {
            let _ = self.pages.free_pages(pfn, order);
            return Err(SlabError::NoMemory(kmm_page::PageError::NoAddress(pfn)));
        };
        let _g = self.large_lock.lock();
        self.mark_large(pfn, order);
        self.large_pages.fetch_add(1 << order, Relaxed);
        Ok(base)
    }

    /// Marks the frames of a large kmalloc block: the head carries the type,
    /// this allocator's tag and the order; tails their index.
    fn mark_large(&self, pfn: Pfn, order: u32) {
        for i in 0..(1usize << order) {
            if let Some(f) = self.pages.pfn_to_page(Pfn(pfn.0 + i)) {
                if i == 0 {
                    f.set_page_type(PageType::LargeKmalloc);
                    f.set_private((self.tag << 8) | order);
                    if order > 0 {
                        f.set(PageFlags::HEAD);
                    }
                } else {
                    f.set(PageFlags::TAIL);
                    f.set_private(i as u32);
                }
            }
        }
    }

    fn free_large(&self, addr: usize, pfn: Pfn, order: u32) -> Result<(), SlabError> {
        let _g = self.large_lock.lock();
        // `let … else`, not `ok_or`: an error value built up front costs its
        // drop on every successful call.
        let Some(head) = self.pages.pfn_to_page(pfn) else {
            return Err(SlabError::ForeignPointer { addr });
        };
        if head.page_type() != PageType::LargeKmalloc || head.private() != (self.tag << 8) | order {
            return Err(SlabError::ForeignPointer { addr });
        }
        if self.block_base(pfn, 0).map(|b| b.as_ptr().addr()) != Some(addr) {
            return Err(SlabError::NotObjectStart {
                addr,
                cache: self.large_name.clone(),
            });
        }
        let clear = |this: &Self| {
            for i in 0..(1usize << order) {
                if let Some(f) = this.pages.pfn_to_page(Pfn(pfn.0 + i)) {
                    f.clear(PageFlags::HEAD | PageFlags::TAIL);
                    f.set_private(0);
                    if i == 0 {
                        f.set_page_type(PageType::None);
                    }
                }
            }
        };
        clear(self);
        if let Err(e) = self.pages.free_pages(pfn, order) {
            // Put the marks back: the block stays a live large kmalloc.
            self.mark_large(pfn, order);
            return Err(SlabError::NoMemory(e));
        }
        self.large_pages.fetch_sub(1 << order, Relaxed);
        Ok(())
    }

    /// Frees memory from `kmalloc` or `kmem_cache_alloc` (`kfree`, `mm/slub.c`):
    /// the frame says which slab and cache, so no size is needed. `None`
    /// and [`ZERO_SIZE_PTR`] are no-ops.
    ///
    /// # Errors
    ///
    /// [`SlabError::ForeignPointer`], [`SlabError::NotObjectStart`],
    /// [`SlabError::DoubleFree`]: nothing changes; and the
    /// [`SlabAllocator::kmem_cache_free`] reports.
    #[inline(always)]
    pub fn kfree(&self, ptr: Option<NonNull<u8>>) -> Result<(), SlabError> {
        let Some(p) = ptr else {
            return Ok(());
        };
        if zero_or_null(p) {
            return Ok(());
        }
        let addr = p.as_ptr().addr();
        match self.lookup(addr)? {
            Lookup::Large { pfn, order } => self.free_large(addr, pfn, order),
            Lookup::Slab { id, early } => match self.cpus.current_cpu_quick() {
                Some(on) => self.kfree_slab(p, id, early, on),
                None => self.kfree_slab_searched(p, id, early),
            },
        }
    }

    /// `kfree` of `p`, in slab `id` of the cache the frame names (`early`,
    /// see [`Lookup::Slab`]), on the CPU `on`: a kmalloc cache and its CPU
    /// slots straight from the frame; others through the slab's descriptor.
    #[inline(always)]
    fn kfree_slab(
        &self,
        p: NonNull<u8>,
        id: u32,
        early: u32,
        on: (usize, bool),
    ) -> Result<(), SlabError> {
        if let Some((cache, at)) = self.early_at(early as usize, on) {
            return self.cache_free_at(cache, at, p, Some(id));
        }
        let cache = self
            .meta(id)
            .and_then(|meta| meta.cache.load(Relaxed).checked_sub(1))
            .and_then(|c| self.cache_by_id(c));
        match cache {
            Some(cache) => self.cache_free_at(&**cache, self.this_cpu(cache, on), p, Some(id)),
            None => Err(SlabError::ForeignPointer {
                addr: p.as_ptr().addr(),
            }),
        }
    }

    /// [`SlabAllocator::kfree_slab`] when the CPU context has no quick
    /// answer ([`CpuContext::current_cpu_quick`]).
    #[inline(never)]
    fn kfree_slab_searched(&self, p: NonNull<u8>, id: u32, early: u32) -> Result<(), SlabError> {
        self.kfree_slab(p, id, early, self.cpus.current_cpu_exclusive())
    }

    /// The usable size of an allocation (`ksize`, `__ksize` in `mm/slab_common.c`):
    /// the slot size for plain caches, `object_size` with red zones or poison,
    /// `inuse` with `SLAB_STORE_USER`, the block size for large kmallocs; 0
    /// for [`ZERO_SIZE_PTR`].
    ///
    /// # Errors
    ///
    /// [`SlabError::ForeignPointer`], [`SlabError::NotObjectStart`].
    pub fn ksize(&self, ptr: NonNull<u8>) -> Result<usize, SlabError> {
        if zero_or_null(ptr) {
            return Ok(0);
        }
        let addr = ptr.as_ptr().addr();
        if let Lookup::Large { pfn, order } = self.lookup(addr)? {
            if self.block_base(pfn, 0).map(|b| b.as_ptr().addr()) != Some(addr) {
                return Err(SlabError::NotObjectStart {
                    addr,
                    cache: self.large_name.clone(),
                });
            }
            return Ok(PAGE_SIZE << order);
        }
        let (cache, _) = self.object_of(addr)?;
        Ok(slab_ksize(cache))
    }

    /// Resizes an allocation (`krealloc`, `mm/slab_common.c`): `None` (or
    /// [`ZERO_SIZE_PTR`]) is `kmalloc`; `new_size == 0` frees and returns
    /// [`ZERO_SIZE_PTR`]; the same pointer when the current bucket holds
    /// `new_size` (spare bytes zeroed with `__GFP_ZERO`); otherwise a new
    /// allocation, a copy of the old contents, and a free of the old one.
    ///
    /// # Errors
    ///
    /// As [`SlabAllocator::ksize`] and [`SlabAllocator::kmalloc`]; the old
    /// allocation is untouched on error.
    pub fn krealloc(
        &self,
        ptr: Option<NonNull<u8>>,
        new_size: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        let Some(p) = ptr.filter(|&p| !zero_or_null(p)) else {
            return self.kmalloc(new_size, gfp);
        };
        let addr = p.as_ptr().addr();
        // Bucket size (`object_size` for slabs, block size for large) and the old memory.
        let (ks, old) = match self.lookup(addr)? {
            Lookup::Large { pfn, order } => {
                if self.block_base(pfn, 0).map(|b| b.as_ptr().addr()) != Some(addr) {
                    return Err(SlabError::NotObjectStart {
                        addr,
                        cache: self.large_name.clone(),
                    });
                }
                (
                    PAGE_SIZE << order,
                    self.large_mem(pfn, order).map(|m| (m, 0)),
                )
            }
            Lookup::Slab { id, .. } => {
                let (cache, mem, off) = self.held_object(addr, id)?;
                (cache.layout.object_size, Some((mem, off)))
            }
        };
        let Some((old_mem, old_off)) = old else {
            return Err(SlabError::ForeignPointer { addr });
        };
        if new_size == 0 {
            self.kfree(Some(p))?;
            return Ok(ZERO_SIZE_PTR);
        }
        if new_size <= ks {
            if gfp.contains(Gfp::ZERO) {
                old_mem.fill(old_off + new_size, ks - new_size, 0);
            }
            return Ok(p);
        }
        let new = self.kmalloc(new_size, gfp)?;
        let new_addr = new.as_ptr().addr();
        let dst = match self.lookup(new_addr) {
            Ok(Lookup::Large { pfn, order }) => self.large_mem(pfn, order).map(|m| (m, 0)),
            Ok(Lookup::Slab { id, .. }) => self.object_mem((new_addr, id)),
            Err(_) => None,
        };
        let copied = dst.is_some_and(|(d, doff)| {
            self.copy_object((&old_mem, old_off), (&d, doff), ks.min(new_size))
        });
        if !copied {
            let _ = self.kfree(Some(new));
            return Err(SlabError::ForeignPointer { addr: new_addr });
        }
        self.kfree(Some(p))?;
        Ok(new)
    }

    /// The name of the cache that holds `ptr` (anywhere inside a slab of it),
    /// `None` for large kmallocs and foreign pointers.
    pub fn cache_of(&self, ptr: NonNull<u8>) -> Option<String> {
        let Ok(Lookup::Slab { id, .. }) = self.lookup(ptr.as_ptr().addr()) else {
            return None;
        };
        let meta = self.meta(id)?;
        let cache = self.cache_by_id(meta.cache.load(Relaxed).checked_sub(1)?)?;
        let name = {
            let _n = cache.node.lock();
            let base = meta.base.load(Relaxed).addr();
            let inside =
                ptr.as_ptr().addr().wrapping_sub(base) < (PAGE_SIZE << meta.order.load(Relaxed));
            (meta.cache.load(Relaxed) == cache.id + 1 && inside).then(|| Arc::clone(&cache.name))
        }?;
        Some(String::from(&*name))
    }

    /// The `SLAB_STORE_USER` records of a live object of a `STORE_USER`
    /// cache: `(cpu, sequence number)` of its last allocation and of its last
    /// free (sequence 0: never freed). `None` for other objects.
    pub fn object_tracks(&self, ptr: NonNull<u8>) -> Option<[(usize, usize); 2]> {
        let addr = ptr.as_ptr().addr();
        let Ok(Lookup::Slab { id, .. }) = self.lookup(addr) else {
            return None;
        };
        let meta = self.meta(id)?;
        let (cache, off) = self.object_of(addr).ok()?;
        if !cache.flags.contains(SlabFlags::STORE_USER) {
            return None;
        }
        let _n = cache.node.lock();
        self.read_tracks(cache, meta, off)
    }

    /// One row per live cache, newest first (the order of `slab_caches`).
    pub fn slabinfo_rows(&self) -> Vec<SlabInfo> {
        let caches: Vec<Arc<Cache>> = self.list.lock().iter().rev().cloned().collect();
        caches
            .iter()
            .map(|c| {
                let (live, total, slabs, pages) = self.cache_counts(c);
                SlabInfo {
                    name: String::from(&*c.name),
                    active_objs: live,
                    num_objs: total,
                    objsize: c.layout.size,
                    objperslab: c.layout.objects,
                    pagesperslab: 1 << c.layout.order,
                    num_slabs: slabs,
                    pages,
                }
            })
            .collect()
    }

    /// `/proc/slabinfo`, version 2.1 (`slab_show` in `mm/slab_common.c`),
    /// every cache including the kmalloc ones. Under SLUB the tunables and
    /// `sharedavail` are 0 and active slabs equal all slabs.
    pub fn slabinfo(&self) -> String {
        let mut out = String::from(
            "slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n",
        );
        for r in self.slabinfo_rows() {
            let _ = writeln!(
                out,
                "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
                r.name,
                r.active_objs,
                r.num_objs,
                r.objsize,
                r.objperslab,
                r.pagesperslab,
                0,
                0,
                0,
                r.num_slabs,
                r.num_slabs,
                0
            );
        }
        out
    }

    /// The slab lines of `/proc/meminfo`: slab pages of `SLAB_RECLAIM_ACCOUNT`
    /// caches are reclaimable; other slab pages and large kmallocs are not.
    pub fn meminfo(&self) -> SlabMeminfo {
        let caches: Vec<Arc<Cache>> = self.list.lock().clone();
        let kb = (PAGE_SIZE / 1024) as u64;
        let mut m = SlabMeminfo {
            reclaimable_kb: 0,
            unreclaimable_kb: self.large_pages.load(Relaxed) as u64 * kb,
        };
        for c in &caches {
            let pages = c.node.lock().pages as u64;
            if c.flags.contains(SlabFlags::RECLAIM_ACCOUNT) {
                m.reclaimable_kb += pages * kb;
            } else {
                m.unreclaimable_kb += pages * kb;
            }
        }
        m
    }

    /// Pages held by large kmallocs.
    pub fn large_kmalloc_pages(&self) -> usize {
        self.large_pages.load(Relaxed)
    }

    /// Pages held by slabs of every cache.
    pub fn slab_pages(&self) -> usize {
        let caches: Vec<Arc<Cache>> = self.list.lock().clone();
        caches.iter().map(|c| c.node.lock().pages).sum()
    }

    /// Flushes every CPU slab and frees every empty slab of every cache
    /// (`kmem_cache_shrink` on all of them, as `drop_slab` would).
    pub fn shrink_all(&self) {
        let caches: Vec<Arc<Cache>> = self.list.lock().clone();
        for c in &caches {
            self.shrink(c);
        }
    }

    /// Checks every cache: freelists are acyclic and hold only object starts,
    /// counts match the node counters, states match the lists and CPUs,
    /// frames are marked with their slab; and no internal error happened.
    ///
    /// Call it while no other thread frees objects: a free to a slab that
    /// stays on its list takes no lock (`__slab_free`), so a concurrent one
    /// can make a freelist and its count disagree for a moment.
    ///
    /// # Errors
    ///
    /// A description of the first inconsistency.
    pub fn check_invariants(&self) -> Result<(), String> {
        let caches: Vec<Arc<Cache>> = self.list.lock().clone();
        for c in &caches {
            self.check_cache(c)?;
        }
        let errs = self.internal_errors.load(Relaxed);
        if errs != 0 {
            return Err(format!(
                "{errs} internal errors (page allocator refused a slab's pages)"
            ));
        }
        Ok(())
    }
}

/// `slab_ksize` (`mm/slab.h`).
fn slab_ksize(c: &Cache) -> usize {
    if c.flags.intersects(SlabFlags::RED_ZONE | SlabFlags::POISON) {
        c.layout.object_size
    } else if c.flags.contains(SlabFlags::STORE_USER) {
        c.layout.inuse
    } else {
        c.layout.size
    }
}

#[expect(
    dead_code,
    reason = "compile-time check that the allocator is Send + Sync"
)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<SlabAllocator>();
    is::<KmemCache>();
}

// The largest kmalloc class really is the largest cache size.
const _: () = assert!(kmalloc_size(13) == KMALLOC_MAX_CACHE_SIZE);
