//! The baseline of `kmm-sim replay --compare talc`: the `talc` crate's allocator (a
//! dlmalloc-style boundary-tag allocator with binned free lists) over one fixed arena.
//!
//! [`TalcHeap::for_trace`] takes the arena from the system allocator once, before the replay's
//! clock starts, sized from the trace's peak (see [`arena_bytes`]), and hands it to a
//! [`TalcCell`] with the [`Manual`] source, so talc never asks for more memory while it is
//! timed; the arena's pages are faulted in as talc first touches them, as `malloc`'s are.
//! Requests go through talc's `GlobalAlloc` interface, which is what a program using talc as its
//! global allocator calls, including its in-place `realloc`.
//! A [`TalcCell`] rather than a `TalcLock`: the replay runs on one thread, and a lock would
//! only add a cost no other heap pays.
//!
//! The default alignment is requested as 16 bytes, `malloc`'s; talc's chunks are 32-byte
//! aligned anyway, so this costs nothing, and alignments above 32 (the trace's `ALIGN` field)
//! take talc's aligned search.
//! A zero-size request allocates one byte, as glibc's `malloc(0)` returns a unique pointer.
#![expect(
    unsafe_code,
    reason = "talc's interfaces and the arena taken from the system allocator are unsafe"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use talc::TalcCell;
use talc::source::Manual;

use crate::replay::global::Requests;
use crate::replay::heap::{Handle, HeapError, MALLOC_ALIGN, ReplayHeap};
use crate::replay::trace::TraceStats;

/// The alignment of the arena: a page, so that talc's heap starts where the memory does.
const ARENA_ALIGN: usize = 4096;

/// Room in the arena beyond what the trace's objects need: talc's bookkeeping (its bins sit at
/// the start of the arena), fragmentation and traces with tiny peaks.
const ARENA_SLACK: u64 = 64 << 20;

/// Arena bytes per byte of the trace's peak of live bytes.
const ARENA_PER_PEAK_BYTE: u64 = 4;

/// Arena bytes per object of the trace's peak of live objects: a chunk's tail word and its
/// rounding to 32 bytes cost up to 39 bytes an object, even for `malloc(0)`.
const ARENA_PER_PEAK_OBJECT: u64 = 64;

/// The size of the arena for a trace: 4 bytes per byte of its peak of live bytes, 64 bytes per
/// object of its peak of live objects, and 64 MiB; saturating, so that a trace too large for
/// this machine fails when the arena is taken, with a message.
pub(crate) fn arena_bytes(stats: &TraceStats) -> u64 {
    stats
        .peak_live_bytes
        .saturating_mul(ARENA_PER_PEAK_BYTE)
        .saturating_add(
            stats
                .peak_live_objects
                .saturating_mul(ARENA_PER_PEAK_OBJECT),
        )
        .saturating_add(ARENA_SLACK)
}

/// Memory taken from the system allocator, given back when dropped.
#[derive(Debug)]
struct Arena {
    /// Its first byte.
    base: NonNull<u8>,
    /// The layout it was allocated with.
    layout: Layout,
}

impl Arena {
    /// Takes `bytes` (rounded up to a page) from the system allocator, page-aligned.
    fn new(bytes: u64) -> Result<Arena, String> {
        let cannot = |why: &str| format!("cannot take a {bytes}-byte arena for talc: {why}");
        let size = usize::try_from(bytes)
            .ok()
            .and_then(|bytes| bytes.checked_next_multiple_of(ARENA_ALIGN))
            .ok_or_else(|| cannot("too large for this machine"))?;
        let layout = Layout::from_size_align(size, ARENA_ALIGN)
            .map_err(|_| cannot("too large for this machine"))?;
        // SAFETY: `layout` has a non-zero size: `ARENA_SLACK` alone is 64 MiB, and callers
        // with smaller arenas (tests) pass at least one byte, rounded up to a page.
        let base = unsafe { System.alloc(layout) };
        let base = NonNull::new(base).ok_or_else(|| cannot("the system allocator refused"))?;
        Ok(Arena { base, layout })
    }

    /// Makes every page of the arena resident by writing one byte of each back as it is: the
    /// host faults the page in for writing and nothing changes (talc's bookkeeping already
    /// lives in the arena). A read alone would map the host's shared zero page and leave the
    /// write fault to the replay.
    fn fault_in(&self) {
        for offset in (0..self.size()).step_by(ARENA_ALIGN) {
            // SAFETY: `offset < size`, so the byte lies inside the arena, which this `Arena`
            // owns for as long as it lives. It is copied as `MaybeUninit`, so an uninitialized
            // byte stays so, and written back unchanged; nothing else runs meanwhile (the
            // replay is single-threaded and talc is not in a call), and no reference to arena
            // memory is held across this.
            unsafe {
                let byte = self.base.as_ptr().add(offset).cast::<MaybeUninit<u8>>();
                byte.write_volatile(byte.read_volatile());
            }
        }
    }

    /// Its size in bytes.
    fn size(&self) -> usize {
        self.layout.size()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: `base` came from `System.alloc(self.layout)` in `Arena::new` and is freed only
        // here, once.
        unsafe { System.dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// talc over an arena, as a [`ReplayHeap`].
pub(crate) struct TalcHeap {
    /// The allocator; it points into `arena`, so it is declared (and dropped) first.
    talc: TalcCell<Manual>,
    /// The end of talc's heap, as `claim` returned it.
    heap_end: NonNull<u8>,
    /// The top of talc's reserved region while nothing is allocated: the end of its bookkeeping.
    empty_reserved_top: NonNull<u8>,
    /// The memory talc allocates from.
    arena: Arena,
}

impl fmt::Debug for TalcHeap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `TalcCell` is `Debug` only with a `Debug` binning, which talc's default is not.
        f.debug_struct("TalcHeap")
            .field("arena", &self.arena)
            .field("heap_end", &self.heap_end)
            .finish_non_exhaustive()
    }
}

impl TalcHeap {
    /// talc over an arena of `bytes` bytes (rounded up to a page).
    pub(crate) fn new(bytes: u64) -> Result<TalcHeap, String> {
        let arena = Arena::new(bytes.max(1))?;
        let talc = TalcCell::new(Manual);
        // SAFETY: the arena is memory of this process that nothing else uses: `TalcHeap` owns
        // it and gives it back only when it is dropped, after `talc` (field order); the
        // `Manual` source allows heaps to be claimed by hand.
        let heap_end =
            unsafe { talc.claim(arena.base.as_ptr(), arena.size()) }.ok_or_else(|| {
                format!(
                    "talc cannot claim a {}-byte arena (too small for its bookkeeping)",
                    arena.size()
                )
            })?;
        // SAFETY: `heap_end` is what `claim` just returned for this talc, unchanged since.
        let empty_reserved_top = unsafe { talc.reserved(heap_end) }.up_to;
        Ok(TalcHeap {
            talc,
            heap_end,
            empty_reserved_top,
            arena,
        })
    }

    /// talc over an arena sized for `stats`'s trace by [`arena_bytes`].
    pub(crate) fn for_trace(stats: &TraceStats) -> Result<TalcHeap, String> {
        TalcHeap::new(arena_bytes(stats))
    }

    /// The arena's size in bytes.
    pub(crate) fn arena_size(&self) -> usize {
        self.arena.size()
    }

    /// The bytes from the start of the arena to the end of the highest chunk talc has handed
    /// out and not got back (its bookkeeping counts as one).
    /// talc's requests: plain ones with [`MALLOC_ALIGN`], what glibc's `malloc` gives.
    fn requests(&self) -> Requests<'_, TalcCell<Manual>> {
        Requests {
            alloc: &self.talc,
            default_align: MALLOC_ALIGN,
        }
    }

    fn reserved_bytes(&self) -> usize {
        // SAFETY: `heap_end` is what `claim` returned for this talc; the heap was never resized.
        let top = unsafe { self.talc.reserved(self.heap_end) }.up_to;
        top.as_ptr().addr() - self.arena.base.as_ptr().addr()
    }
}

// SAFETY: talc hands out chunks of its arena, which is memory of this process valid for reads
// and writes, owned by this heap until it is dropped; a chunk holds at least the layout's size
// and overlaps no other live chunk until it is deallocated or reallocated; talc's `realloc`
// keeps the first `min(old, new)` bytes (in place, or by copying them before freeing the old
// chunk) and leaves the old chunk live when it fails. The replay calls the heap from one
// thread, which a `TalcCell` (not `Sync`) needs.
unsafe impl ReplayHeap for TalcHeap {
    fn name(&self) -> &str {
        "talc"
    }

    /// Touches every page of the arena, so that the host has faulted it all in.
    fn make_resident(&mut self) -> Result<(), String> {
        self.arena.fault_in();
        Ok(())
    }

    fn alloc(&mut self, size: usize, align: usize) -> Result<Handle, HeapError> {
        self.requests().alloc(size, align)
    }

    unsafe fn free(&mut self, handle: Handle, size: usize, align: usize) -> Result<(), HeapError> {
        // SAFETY: the caller's promise is the one `Requests::free` asks for.
        unsafe { self.requests().free(handle, size, align) }
    }

    unsafe fn realloc(
        &mut self,
        handle: Handle,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> Result<Handle, HeapError> {
        // SAFETY: the caller's promise is the one `Requests::realloc` asks for.
        unsafe { self.requests().realloc(handle, old_size, align, new_size) }
    }

    fn verify_empty(&mut self) -> Result<(), String> {
        // With every chunk back, talc has merged the whole arena above its bookkeeping into one
        // free gap, so its reserved region is what it was right after the claim.
        // SAFETY: `heap_end` is what `claim` returned for this talc; the heap was never resized.
        let top = unsafe { self.talc.reserved(self.heap_end) }.up_to;
        if top == self.empty_reserved_top {
            return Ok(());
        }
        Err(format!(
            "talc still has chunks allocated up to byte {} of its {}-byte arena",
            self.reserved_bytes(),
            self.arena.size()
        ))
    }
}

#[cfg(test)]
mod tests;
