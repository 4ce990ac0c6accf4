//! Chunk memory and where it comes from: the `ChunkSource` seam, the
//! `HeapChunks` and `NumberChunks` sources, and the typed atomic accesses of
//! the `this_cpu_*` operations.
//!
//! This is the crate's only module with `unsafe` code. Its soundness rests
//! on the private fields of [`ChunkMemory`]: a backed chunk's pointer is
//! valid for reads and writes of `len` bytes for as long as the value
//! exists (promised by [`ChunkMemory::from_raw`], or by `alloc_zeroed` for
//! heap chunks), `ChunkMemory` is neither `Clone` nor `Copy`, and only the
//! heap flag set by [`HeapChunks`] lets a chunk be deallocated.

use alloc::alloc::{alloc_zeroed, dealloc};
use alloc::vec::Vec;
use core::alloc::Layout;
use core::fmt;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize, Ordering::Relaxed,
};

use spin::Mutex;

use crate::{Counter, PAGE_SIZE, PercpuError};

/// The memory of one chunk: `nr_cpus` units side by side, unit `cpu` at
/// byte `cpu × unit_size`, either real memory or only a range of addresses.
///
/// A chunk source hands one out per [`ChunkSource::alloc_chunk`] and gets it
/// back through [`ChunkSource::free_chunk`]. It is neither `Clone` nor
/// `Copy`, so the same memory cannot be handed out twice.
pub struct ChunkMemory {
    addr: usize,
    len: usize,
    /// The memory, for a backed chunk; `None` for numbers only.
    ptr: Option<NonNull<u8>>,
    /// Set only by [`HeapChunks`]: the memory came from `alloc_zeroed` with
    /// `Layout::from_size_align(len, PAGE_SIZE)`.
    heap: bool,
}

// SAFETY: a `ChunkMemory` owns its memory region, like a `Box<[u8]>`; the
// per-CPU allocator synchronises every access to it through its lock or
// through atomics, so it may move to and be shared with other threads.
unsafe impl Send for ChunkMemory {}
// SAFETY: as for `Send`: shared access only reads the fields, and the
// memory itself is reached through atomics or under the allocator's lock.
unsafe impl Sync for ChunkMemory {}

impl ChunkMemory {
    /// Real memory at `ptr`, `len` bytes long, for a chunk source backed by
    /// memory of its own (the facade's vmalloc source, for one).
    ///
    /// # Errors
    ///
    /// [`PercpuError::BadChunk`] if `ptr` is not page aligned.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reads and writes of `len` bytes for as long
    /// as the returned value exists (until the source gets it back through
    /// [`ChunkSource::free_chunk`]), and nothing else may access that memory
    /// meanwhile except through pointers the per-CPU allocator hands out.
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> Result<ChunkMemory, PercpuError> {
        let addr = ptr.as_ptr().addr();
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(PercpuError::BadChunk {
                addr,
                len,
                want: len,
            });
        }
        Ok(ChunkMemory {
            addr,
            len,
            ptr: Some(ptr),
            heap: false,
        })
    }

    /// A range of `len` addresses from `addr` with no memory behind it, for
    /// simulation: the allocator places allocations in it but cannot zero
    /// or reach their contents.
    ///
    /// # Errors
    ///
    /// [`PercpuError::BadChunk`] if `addr` is zero or not page aligned, or
    /// the range wraps around the address space.
    pub fn numbers(addr: usize, len: usize) -> Result<ChunkMemory, PercpuError> {
        if addr == 0 || !addr.is_multiple_of(PAGE_SIZE) || addr.checked_add(len).is_none() {
            return Err(PercpuError::BadChunk {
                addr,
                len,
                want: len,
            });
        }
        Ok(ChunkMemory {
            addr,
            len,
            ptr: None,
            heap: false,
        })
    }

    /// The address of the first byte (unit 0 of the chunk).
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory, or `None` for a chunk of numbers only.
    pub fn as_ptr(&self) -> Option<NonNull<u8>> {
        self.ptr
    }

    /// Whether real memory is behind the addresses.
    pub fn is_backed(&self) -> bool {
        self.ptr.is_some()
    }

    /// A pointer to byte `off`, or `None` for numbers only or `off > len`.
    pub(crate) fn ptr_at(&self, off: usize) -> Option<NonNull<u8>> {
        if off > self.len {
            return None;
        }
        // `wrapping_add` keeps the provenance of `ptr`; `off <= len` keeps
        // the result inside (or one past) the memory, so it is not null.
        NonNull::new(self.ptr?.as_ptr().wrapping_add(off))
    }

    /// Zeroes `len` bytes from byte `off`; does nothing for numbers only.
    ///
    /// The caller holds the allocator's lock for writing, and the bytes
    /// belong to no live allocation that typed accessors could reach.
    pub(crate) fn zero(&self, off: usize, len: usize) {
        let Some(ptr) = self.ptr else { return };
        let in_bounds = off.checked_add(len).is_some_and(|end| end <= self.len);
        debug_assert!(in_bounds, "zeroing {len} bytes at {off} of {}", self.len);
        if !in_bounds {
            return;
        }
        // SAFETY: 1. `off + len <= self.len` (checked above), and `ptr` is
        // valid for writes of `self.len` bytes while `self` exists (the
        // contract of `from_raw`, or `alloc_zeroed` for heap chunks).
        // 2. The allocator calls this under its write lock, so no typed
        // accessor of this crate runs meanwhile.
        unsafe { ptr.as_ptr().add(off).write_bytes(0, len) };
    }

    /// The value of type `T` at byte `off` as its atomic type, or `None` if
    /// it is not backed, not in bounds or not aligned.
    fn atomic<T: PercpuWord>(&self, off: usize) -> Option<&T::Atomic> {
        let ptr = self.ptr?;
        let end = off.checked_add(size_of::<T::Atomic>())?;
        if end > self.len || !(self.addr + off).is_multiple_of(align_of::<T::Atomic>()) {
            return None;
        }
        // SAFETY: 1. `off + size_of::<T::Atomic>() <= len`, and the memory is
        // valid for reads and writes while `self` exists (see `zero`), so the
        // reference, tied to `&self`, never outlives it. 2. The address is
        // aligned for `T::Atomic` (checked above). 3. Every bit pattern is a
        // valid integer, and all access through this crate to these bytes is
        // atomic, or a `zero` under the write lock, which excludes typed access.
        Some(unsafe { ptr.add(off).cast::<T::Atomic>().as_ref() })
    }
}

impl fmt::Debug for ChunkMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkMemory")
            .field("addr", &format_args!("{:#x}", self.addr))
            .field("len", &self.len)
            .field("backed", &self.is_backed())
            .finish()
    }
}

/// Where the per-CPU allocator gets the memory of its chunks, and gives it
/// back: `pcpu_create_chunk`/`pcpu_destroy_chunk` (`mm/percpu-vm.c` maps
/// vmalloc areas; `mm/percpu-km.c` takes contiguous pages).
///
/// Contract: [`ChunkSource::alloc_chunk`] returns memory of at least `bytes`
/// bytes starting on a page boundary, not overlapping any chunk handed out
/// before and not yet given back. The allocator checks length, alignment and
/// overlap, gives a bad chunk straight back and reports
/// [`PercpuError::BadChunk`]; a source's mistakes cannot corrupt it.
/// Backed memory needs not be zeroed: the allocator zeroes every area it hands out.
/// Both methods are called with the allocator's lock held, so they must not
/// call back into the same allocator (that would wait forever).
pub trait ChunkSource {
    /// Memory for a chunk of `bytes` bytes (all its units).
    ///
    /// # Errors
    ///
    /// Whatever the source cannot provide, typically [`PercpuError::OutOfMemory`].
    fn alloc_chunk(&self, bytes: usize) -> Result<ChunkMemory, PercpuError>;

    /// Takes back a chunk that [`ChunkSource::alloc_chunk`] handed out.
    fn free_chunk(&self, mem: ChunkMemory);
}

/// A shared source: several allocators (or an allocator and its owner)
/// can draw on one source.
impl<S: ChunkSource + ?Sized> ChunkSource for &S {
    fn alloc_chunk(&self, bytes: usize) -> Result<ChunkMemory, PercpuError> {
        (**self).alloc_chunk(bytes)
    }

    fn free_chunk(&self, mem: ChunkMemory) {
        (**self).free_chunk(mem);
    }
}

/// A [`ChunkSource`] of real memory from the global heap
/// (`alloc_zeroed` with page alignment), standing in for vmalloc.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapChunks;

impl ChunkSource for HeapChunks {
    fn alloc_chunk(&self, bytes: usize) -> Result<ChunkMemory, PercpuError> {
        let oom = PercpuError::OutOfMemory {
            size: bytes,
            chunk_bytes: bytes,
        };
        if bytes == 0 {
            return Err(oom);
        }
        let layout = Layout::from_size_align(bytes, PAGE_SIZE).map_err(|_| oom)?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).ok_or(oom)?;
        Ok(ChunkMemory {
            addr: ptr.as_ptr().addr(),
            len: bytes,
            ptr: Some(ptr),
            heap: true,
        })
    }

    /// Deallocates heap chunks; memory that did not come from a `HeapChunks`
    /// is dropped without being freed (it is not ours to free).
    fn free_chunk(&self, mem: ChunkMemory) {
        if let (true, Some(ptr)) = (mem.heap, mem.ptr) {
            // SAFETY: only `alloc_chunk` above sets `heap`, so `ptr` came from
            // `alloc_zeroed` with this very layout (which was valid then), and
            // `mem` is consumed here, so it is freed once.
            unsafe {
                dealloc(
                    ptr.as_ptr(),
                    Layout::from_size_align_unchecked(mem.len, PAGE_SIZE),
                )
            };
        }
    }
}

/// A [`ChunkSource`] of numbers only, for the simulator: chunks are page
/// aligned address ranges from a bump pointer, with nothing behind them.
///
/// Given-back ranges are reused for chunks of the same size, and
/// [`NumberChunks::with_limit`] caps the number of chunks out at a time, to
/// model running out of vmalloc space.
#[derive(Debug)]
pub struct NumberChunks {
    state: Mutex<NumberState>,
}

#[derive(Debug)]
struct NumberState {
    next: usize,
    end: usize,
    freed: Vec<(usize, usize)>,
    live: usize,
    limit: usize,
}

impl NumberChunks {
    /// A source handing out addresses from `base` (rounded up to a page) on,
    /// without limit (until the address space runs out).
    pub fn new(base: usize) -> NumberChunks {
        NumberChunks::with_limit(base, usize::MAX)
    }

    /// Like [`NumberChunks::new`], with at most `limit` chunks out at a time.
    pub fn with_limit(base: usize, limit: usize) -> NumberChunks {
        let next = base
            .max(PAGE_SIZE)
            .checked_next_multiple_of(PAGE_SIZE)
            .unwrap_or(0);
        NumberChunks {
            state: Mutex::new(NumberState {
                next,
                end: if next == 0 { 0 } else { usize::MAX },
                freed: Vec::new(),
                live: 0,
                limit,
            }),
        }
    }

    /// The number of chunks handed out and not given back.
    pub fn live(&self) -> usize {
        self.state.lock().live
    }
}

impl ChunkSource for NumberChunks {
    fn alloc_chunk(&self, bytes: usize) -> Result<ChunkMemory, PercpuError> {
        let oom = PercpuError::OutOfMemory {
            size: bytes,
            chunk_bytes: bytes,
        };
        let mut st = self.state.lock();
        if st.live >= st.limit {
            return Err(oom);
        }
        let addr = if let Some(i) = st.freed.iter().position(|&(_, len)| len == bytes) {
            st.freed.swap_remove(i).0
        } else {
            let span = bytes.checked_next_multiple_of(PAGE_SIZE).ok_or(oom)?;
            let addr = st.next;
            let next = addr.checked_add(span).filter(|&n| n <= st.end).ok_or(oom)?;
            st.next = next;
            addr
        };
        let mem = ChunkMemory::numbers(addr, bytes).map_err(|_| oom)?;
        st.live += 1;
        Ok(mem)
    }

    fn free_chunk(&self, mem: ChunkMemory) {
        let mut st = self.state.lock();
        st.live = st.live.saturating_sub(1);
        st.freed.push((mem.addr, mem.len));
    }
}

mod sealed {
    /// The atomic operations behind [`PercpuWord`](super::PercpuWord).
    pub trait Sealed: Sized {
        /// The atomic type of the same size.
        type Atomic;
        /// `load(Relaxed)`.
        fn load(a: &Self::Atomic) -> Self;
        /// `fetch_add(Relaxed)`, wrapping; returns the old value.
        fn fetch_add(a: &Self::Atomic, v: Self) -> Self;
        /// `fetch_sub(Relaxed)`, wrapping; returns the old value.
        fn fetch_sub(a: &Self::Atomic, v: Self) -> Self;
        /// `swap(Relaxed)`; returns the old value.
        fn swap(a: &Self::Atomic, v: Self) -> Self;
    }
}

/// An integer the typed `this_cpu_*` operations of
/// [`PercpuAllocator`](crate::PercpuAllocator) work on, through the atomic
/// type of the same size (sealed: implemented for the fixed-size integers
/// that have atomics on every target the crate builds for).
///
/// Each operation is one relaxed atomic instruction on this CPU's copy, as
/// `this_cpu_add` is one `%gs`-relative instruction on x86.
pub trait PercpuWord: Counter + sealed::Sealed {}

macro_rules! impl_word {
    ($($t:ty => $a:ty),* $(,)?) => {$(
        impl sealed::Sealed for $t {
            type Atomic = $a;
            fn load(a: &$a) -> $t { a.load(Relaxed) }
            fn fetch_add(a: &$a, v: $t) -> $t { a.fetch_add(v, Relaxed) }
            fn fetch_sub(a: &$a, v: $t) -> $t { a.fetch_sub(v, Relaxed) }
            fn swap(a: &$a, v: $t) -> $t { a.swap(v, Relaxed) }
        }
        impl PercpuWord for $t {}
    )*};
}

impl_word!(
    u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize,
);

/// A typed operation on one copy, applied by [`ChunkMemory::apply`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum WordOp<T> {
    /// Read the value.
    Read,
    /// Write the value; yields the old one.
    Xchg(T),
    /// Add, wrapping; yields the old value.
    Add(T),
    /// Subtract, wrapping; yields the old value.
    Sub(T),
}

impl ChunkMemory {
    /// Applies `op` to the `T` at byte `off` and returns the value before
    /// it, or `None` if it is not backed, not in bounds or not aligned (the
    /// caller checks those first, to report which).
    pub(crate) fn apply<T: PercpuWord>(&self, off: usize, op: WordOp<T>) -> Option<T> {
        let a = self.atomic::<T>(off)?;
        Some(match op {
            WordOp::Read => T::load(a),
            WordOp::Xchg(v) => T::swap(a, v),
            WordOp::Add(v) => T::fetch_add(a, v),
            WordOp::Sub(v) => T::fetch_sub(a, v),
        })
    }
}

/// The alignment [`PercpuWord`] `T` needs in per-CPU memory.
pub(crate) fn word_align<T: PercpuWord>() -> usize {
    align_of::<T::Atomic>()
}
