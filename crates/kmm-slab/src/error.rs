//! `SlabError`: every way a slab or kmalloc call can fail or report a bug.

use alloc::sync::Arc;

use kmm_page::PageError;

/// Why a slab or kmalloc call failed, or what a debug check found.
///
/// Errors for bad caller input (a foreign pointer, the middle of an object, a
/// double free, the wrong cache, an overflowing size) leave the allocator
/// exactly as it was. Debug reports ([`SlabError::Poisoned`],
/// [`SlabError::RedZone`]) describe damage that already happened; the
/// damaged bytes are restored, as SLUB's `restore_bytes` does, so the cache
/// stays usable. Cache names are shared strings, so building an error never
/// allocates.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlabError {
    /// The page allocator refused the pages for a new slab or a large kmalloc.
    #[error("out of memory: {0}")]
    NoMemory(PageError),
    /// The object is already free.
    #[error("double free of object {object:#x} in cache {cache}")]
    DoubleFree {
        /// The cache.
        cache: Arc<str>,
        /// The object's address.
        object: usize,
    },
    /// The address is not in any slab or large kmalloc allocation of this allocator.
    #[error("{addr:#x} was not handed out by this slab allocator")]
    ForeignPointer {
        /// The address.
        addr: usize,
    },
    /// The address is inside a slab (or a large kmalloc) but not at the start of an object.
    #[error("{addr:#x} is not the start of an object of cache {cache}")]
    NotObjectStart {
        /// The address.
        addr: usize,
        /// The cache whose slab holds it (`large-kmalloc` for a large allocation).
        cache: Arc<str>,
    },
    /// `kmem_cache_free` was given an object of another cache.
    #[error("object {addr:#x} belongs to cache {actual}, not {given}")]
    WrongCache {
        /// The object's address.
        addr: usize,
        /// The cache the caller named.
        given: Arc<str>,
        /// The cache the object belongs to.
        actual: Arc<str>,
    },
    /// `kmem_cache_destroy` of a cache that still has allocated objects; the cache stays usable.
    #[error("cache {cache} still has {count} allocated objects")]
    LiveObjects {
        /// The cache.
        cache: Arc<str>,
        /// How many objects are still allocated.
        count: usize,
    },
    /// `n * size` overflows (`kmalloc_array`, `kcalloc`).
    #[error("size computation overflows")]
    Overflow,
    /// The request is above `KMALLOC_MAX_SIZE` (4 MiB) or the largest slab object.
    #[error("{size} bytes is above the largest allocation ({max} bytes)")]
    TooLarge {
        /// The size asked for.
        size: usize,
        /// The largest size allowed.
        max: usize,
    },
    /// `SLAB_POISON`: a free object was written to (use after free), found when it was allocated.
    #[error(
        "poison overwritten in cache {cache}, object {object:#x}, offset {offset}: byte {byte:#04x}"
    )]
    Poisoned {
        /// The cache.
        cache: Arc<str>,
        /// The object's address.
        object: usize,
        /// Offset of the first bad byte from the object start.
        offset: usize,
        /// The byte found there.
        byte: u8,
    },
    /// `SLAB_RED_ZONE`: a guard byte around an object was overwritten (an overrun or underrun).
    #[error(
        "red zone overwritten in cache {cache}, object {object:#x}, offset {offset}: byte {byte:#04x}"
    )]
    RedZone {
        /// The cache.
        cache: Arc<str>,
        /// The object's address.
        object: usize,
        /// Offset of the first bad byte from the object start (negative: the left red zone).
        offset: isize,
        /// The byte found there.
        byte: u8,
    },
    /// A free pointer inside a free object points outside its slab: the
    /// object was written after it was freed. The rest of that freelist is
    /// dropped (its objects leak) instead of being followed.
    #[error("freelist of cache {cache} corrupted at object {object:#x}")]
    Corrupted {
        /// The cache.
        cache: Arc<str>,
        /// The object whose free pointer was bad.
        object: usize,
    },
    /// The cache was destroyed.
    #[error("cache {cache} was destroyed")]
    Destroyed {
        /// The cache.
        cache: Arc<str>,
    },
    /// Invalid arguments (empty name, zero size, alignment not a power of two,
    /// unknown flags, a cache of another allocator, destroying a kmalloc cache).
    #[error("invalid arguments: {0}")]
    InvalidArgs(&'static str),
    /// The table of slabs or caches is full.
    #[error("too many {0}")]
    TooMany(&'static str),
}
