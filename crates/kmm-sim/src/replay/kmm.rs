//! The kmm side of `kmm-sim replay`: kmalloc, from the `kmm` facade, as a
//! [`ReplayHeap`].
//!
//! [`kmm_heap`] boots an x86-64 machine with the given memory on host memory (so objects are
//! real memory of this process), two host CPUs and per-CPU page lists on, binds the replaying
//! thread to CPU 1 alone (a replay runs on one thread, which then holds its CPU as a kernel task
//! holds one: the slab fast paths use plain loads and stores, no locked instructions), and
//! serves the trace with `kmalloc`, `krealloc` and `kfree`. (The binding makes the heap
//! `!Send`: it stays on the thread that built it.) Like any wrapper that must stay cheap per call,
//! `alloc` and `free` try kmalloc's and kfree's lockless halves inline (`kmalloc_fast`,
//! `kfree_fast_split`) and leave the rest of each, and every error, to functions out of line.
//! Requests above `KMALLOC_MAX_SIZE` (4 MiB) are refused as [`HeapError::TooLarge`] and counted
//! as `failed` by the replay; they are not served from vmalloc.
//! kmalloc guarantees natural alignment for power-of-two sizes only, so an alignment above the
//! default is met by rounding the size up to a multiple of it (see [`KmmHeap::effective_size`]).
#![expect(
    unsafe_code,
    reason = "implementing `ReplayHeap` is a promise about the memory kmalloc hands out"
)]

use std::ptr::NonNull;
use std::sync::Arc;

use kmm::slab::{FastFree, SlowFree};
use kmm::{
    Arch, Backing, DefaultBuddy, GFP_KERNEL, KMALLOC_MAX_CACHE_SIZE, KMALLOC_MAX_SIZE, KmmError,
    MachineConfig, MemoryManager, MemorySpec, PAGE_SIZE, SlabError,
};
use kmm_host::{CpuBinding, HostCpus};

use crate::replay::heap::{FootprintInfo, Handle, HeapError, ReplayHeap};

/// kmalloc over a booted machine, as a replay heap.
#[derive(Debug)]
pub(crate) struct KmmHeap {
    /// The machine.
    mm: MemoryManager<DefaultBuddy, HostCpus>,
    /// The replaying thread's hold on CPU 1 (`None` if the host refused it: the thread then
    /// runs as CPU 0, sharing it), which keeps its `HostCpus` alive.
    _cpu: Option<CpuBinding<'static>>,
    /// Pages allocated right after boot (the machine's own: interrupt stacks, per-CPU chunks),
    /// which must be all that is allocated once the replay freed everything.
    boot_allocated: usize,
    /// Bytes requested by the live objects.
    requested: u64,
    /// Bytes requested by the live large kmallocs (above `KMALLOC_MAX_CACHE_SIZE`, straight
    /// from the page allocator): the rest of [`KmmHeap::requested`] sits in slab caches. Two
    /// running sums rather than one of slab bytes, so that a free adds or takes away without
    /// working out the request's size class.
    large_requested: u64,
}

/// Builds the kmalloc heap on a machine with `mem` bytes of memory.
pub(crate) fn kmm_heap(mem: u64) -> Result<Box<dyn ReplayHeap>, String> {
    Ok(Box::new(KmmHeap::new(mem)?))
}

impl KmmHeap {
    /// Boots the machine.
    pub(crate) fn new(mem: u64) -> Result<KmmHeap, String> {
        let host = Arc::new(HostCpus::new(2));
        let mm = MemoryManager::boot_with(
            MachineConfig {
                arch: Arch::X86_64,
                memory: MemorySpec::Size(mem),
                cpus: 2,
                pcp: Some(true),
                min_free_kbytes: None,
                backing: Backing::Host,
            },
            host.clone(),
        )
        .map_err(|error| format!("cannot boot a {mem}-byte machine for kmalloc: {error}"))?;
        mm.drain_all_pages();
        let boot_allocated = mm.summary().allocated_pages;
        Ok(KmmHeap {
            mm,
            _cpu: host.bind_owned(1, true).ok(),
            boot_allocated,
            requested: 0,
            large_requested: 0,
        })
    }

    /// The size kmalloc is asked for: `size` rounded up to a multiple of `align` when `align`
    /// is above kmalloc's minimum alignment (8), which lands in a class whose objects are
    /// aligned to `align` (see `kmalloc_size_for_align`). kmalloc itself refuses sizes above
    /// `KMALLOC_MAX_SIZE`.
    #[inline]
    fn effective_size(size: usize, align: usize) -> Result<usize, HeapError> {
        // `align` is a power of two (the `ReplayHeap` contract).
        kmm::slab::kmalloc_size_for_align(size, align).ok_or(HeapError::TooLarge {
            size,
            limit: KMALLOC_MAX_SIZE,
            limit_name: "KMALLOC_MAX_SIZE",
        })
    }

    /// Whether a request of `size` bytes aligned to `align` is a large kmalloc, served by the
    /// page allocator rather than a slab cache: its rounded size (see
    /// [`KmmHeap::effective_size`]) is above `KMALLOC_MAX_CACHE_SIZE`. Rounding to an alignment
    /// up to that size, a power of two, never crosses it, and a larger alignment always does (a
    /// request of 0 bytes counts no bytes either way).
    #[inline]
    fn is_large(size: usize, align: usize) -> bool {
        size > KMALLOC_MAX_CACHE_SIZE || align > KMALLOC_MAX_CACHE_SIZE
    }

    /// Counts a request of `size` bytes (aligned to `align`) as live.
    #[inline]
    fn count(&mut self, size: usize, align: usize) {
        self.requested += size as u64;
        if Self::is_large(size, align) {
            self.large_requested += size as u64;
        }
    }

    /// Counts a request of `size` bytes (aligned to `align`) as gone.
    #[inline]
    fn uncount(&mut self, size: usize, align: usize) {
        self.requested -= size as u64;
        if Self::is_large(size, align) {
            self.large_requested -= size as u64;
        }
    }

    /// Checks that a new object honours `align` (the report is built out of line).
    #[inline]
    fn check_aligned(ptr: NonNull<u8>, size: usize, align: usize) -> Result<(), HeapError> {
        if align > 8 && size > 0 && ptr.as_ptr().addr() & align.wrapping_sub(1) != 0 {
            return Err(misaligned(ptr, size, align));
        }
        Ok(())
    }

    /// The slab layer (every machine `KmmHeap::new` boots has one: host memory).
    #[inline]
    fn slab(&self) -> Option<&kmm::SlabAllocator<kmm::ZonedAllocator<DefaultBuddy>, HostCpus>> {
        self.mm.slab()
    }

    /// `alloc` past kmalloc's lockless pop: the whole of `kmalloc`.
    #[inline(never)]
    fn alloc_rest(&mut self, size: usize, align: usize) -> Result<Handle, HeapError> {
        let rounded = Self::effective_size(size, align)?;
        let ptr = self
            .mm
            .kmalloc(rounded, GFP_KERNEL)
            .map_err(|error| heap_error(error, size))?;
        Self::check_aligned(ptr, size, align)?;
        self.count(size, align);
        Ok(Handle::new(ptr))
    }

    /// `free` of an object outside this CPU's slab: the rest of its `kfree`, on its slab.
    #[inline(never)]
    fn free_to_slab(&mut self, rest: SlowFree, size: usize, align: usize) -> Result<(), HeapError> {
        let slab = self
            .slab()
            .ok_or_else(|| HeapError::Other("no slab layer".into()))?;
        let freed = slab.kfree_slow(rest);
        self.freed(freed, size, align)
    }

    /// `free` of what kfree's lockless half declined: the whole of `kfree`.
    #[inline(never)]
    fn free_rest(&mut self, handle: Handle, size: usize, align: usize) -> Result<(), HeapError> {
        let freed = self.mm.kfree(Some(handle.as_ptr()));
        self.freed(freed, size, align)
    }

    /// The end of a `free` out of line: the request (`size` bytes aligned to `align`) is
    /// gone if kfree took the object, else kfree's report.
    fn freed(
        &mut self,
        freed: Result<(), impl std::fmt::Display>,
        size: usize,
        align: usize,
    ) -> Result<(), HeapError> {
        freed.map_err(|error| HeapError::Other(error.to_string()))?;
        self.uncount(size, align);
        Ok(())
    }
}

/// The replay's error for an object kmalloc returned at an address not aligned as asked.
#[cold]
#[inline(never)]
fn misaligned(ptr: NonNull<u8>, size: usize, align: usize) -> HeapError {
    HeapError::Other(format!(
        "kmalloc returned {:p} for {size} bytes, not aligned to {align}",
        ptr.as_ptr()
    ))
}

/// The replay's error for a refused kmalloc.
fn heap_error(error: KmmError, size: usize) -> HeapError {
    match error {
        KmmError::Slab(SlabError::NoMemory(_)) => HeapError::OutOfMemory { size },
        KmmError::Slab(SlabError::TooLarge { max, .. }) => HeapError::TooLarge {
            size,
            limit: max,
            limit_name: "KMALLOC_MAX_SIZE",
        },
        error => HeapError::Other(error.to_string()),
    }
}

// SAFETY: the machine runs on host memory, so a kmalloc object of `n > 0` bytes is at least
// `n` bytes (its size class or its block) of real memory of this process, valid for reads and
// writes and shared with no other live object until it is passed to `kfree` or `krealloc`;
// `krealloc` copies the first `min(old, new)` bytes when it moves an object; and the replay
// calls the heap from one thread, as the simulated CPU context requires. Zero-size requests get
// `ZERO_SIZE_PTR`, which the `ReplayHeap` contract lets the replay never touch.
unsafe impl ReplayHeap for KmmHeap {
    fn name(&self) -> &str {
        "kmm"
    }

    /// Populates the machine's host memory: the whole direct map (`--mem`) becomes resident.
    fn make_resident(&mut self) -> Result<(), String> {
        self.mm
            .populate_host_memory()
            .map(drop)
            .map_err(|error| format!("cannot make the machine's memory resident: {error}"))
    }

    #[inline]
    fn alloc(&mut self, size: usize, align: usize) -> Result<Handle, HeapError> {
        // kmalloc's lockless pop inline; the rest of kmalloc, and any error, out of line.
        if let Ok(rounded) = Self::effective_size(size, align)
            && let Some(ptr) = self
                .slab()
                .and_then(|s| s.kmalloc_fast(rounded, GFP_KERNEL))
        {
            Self::check_aligned(ptr, size, align)?;
            self.count(size, align);
            return Ok(Handle::new(ptr));
        }
        self.alloc_rest(size, align)
    }

    #[inline]
    unsafe fn free(&mut self, handle: Handle, size: usize, align: usize) -> Result<(), HeapError> {
        // kfree's lockless push inline; the free to another slab, the rest of kfree and any
        // error out of line.
        match self.slab().map(|s| s.kfree_fast_split(handle.as_ptr())) {
            Some(FastFree::Freed) => {
                self.uncount(size, align);
                Ok(())
            }
            Some(FastFree::Slow(rest)) => self.free_to_slab(rest, size, align),
            Some(FastFree::Declined) | None => self.free_rest(handle, size, align),
        }
    }

    unsafe fn realloc(
        &mut self,
        handle: Handle,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> Result<Handle, HeapError> {
        let rounded = Self::effective_size(new_size, align)?;
        let ptr = self
            .mm
            .krealloc(Some(handle.as_ptr()), rounded, GFP_KERNEL)
            .map_err(|error| heap_error(error, new_size))?;
        // No alignment check here: the old object is gone, so an error could not leave it live
        // as the contract asks. krealloc keeps the object or takes a new one from kmalloc with
        // the same rounded size, which `alloc` checks.
        self.uncount(old_size, align);
        self.count(new_size, align);
        Ok(Handle::new(ptr))
    }

    fn footprint(&self) -> Option<FootprintInfo> {
        let slab = self.mm.slab()?;
        let slab_pages = slab.slab_pages() as u64;
        let large_pages = slab.large_kmalloc_pages() as u64;
        Some(FootprintInfo {
            pages_held: slab_pages + large_pages,
            page_size: PAGE_SIZE as u64,
            slab_waste_bytes: (slab_pages * PAGE_SIZE as u64)
                .saturating_sub(self.requested - self.large_requested),
            peak_pages_held: None,
        })
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.mm.check_invariants()
    }

    fn verify_empty(&mut self) -> Result<(), String> {
        let slab = self.mm.slab().ok_or("the machine has no slab layer")?;
        // Empty slabs stay with their caches (CPU slabs, up to `min_partial` partial ones)
        // until a shrink gives them back, as `drop_slab` would.
        slab.shrink_all();
        slab.check_invariants()?;
        let (slab_pages, large_pages) = (slab.slab_pages(), slab.large_kmalloc_pages());
        if slab_pages != 0 || large_pages != 0 {
            return Err(format!(
                "after freeing everything kmalloc still holds {slab_pages} slab pages and \
                 {large_pages} large kmalloc pages"
            ));
        }
        self.mm.drain_all_pages();
        self.mm.check_invariants()?;
        let allocated = self.mm.summary().allocated_pages;
        if allocated != self.boot_allocated {
            return Err(format!(
                "{allocated} pages are allocated after the replay, {} after boot",
                self.boot_allocated
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
