//! Stand-in heaps for tests: [`PagedHeap`], which behaves like kmalloc where the replay can see
//! it (a size limit, `ZERO_SIZE_PTR`, pages, a footprint), and [`FaultyHeap`], which breaks the
//! [`ReplayHeap`] promises on purpose so that tests see the replay catch it.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use crate::replay::heap::{FootprintInfo, Handle, HeapError, ReplayHeap};
use crate::replay::system::SystemHeap;

/// The page size of the stand-ins.
pub(crate) const PAGE: u64 = 4096;

/// A kmalloc look-alike over the system allocator: every object of `size > 0` bytes takes
/// `size.div_ceil(4096)` whole pages of its budget, requests above `max_size` fail as above
/// `KMALLOC_MAX_SIZE`, and a zero-size request returns a token that is never dereferenced, as
/// `ZERO_SIZE_PTR` is.
#[derive(Debug)]
pub(crate) struct PagedHeap {
    /// Where the memory really comes from.
    system: SystemHeap,
    /// The largest request served.
    pub(crate) max_size: usize,
    /// Pages it may hold at once; beyond that, allocations fail as out of memory.
    pub(crate) page_budget: u64,
    /// Whether it reports its own peak of pages.
    pub(crate) track_peak: bool,
    /// Pages held now.
    pages: u64,
    /// The most pages held at once.
    peak: u64,
    /// Bytes of the pages held that no request uses.
    waste: u64,
    /// Objects live, zero-size ones included.
    objects: u64,
    /// How many times `check_invariants` ran.
    pub(crate) checks: Cell<u64>,
    /// Whether `make_resident` fails.
    pub(crate) refuse_resident: bool,
}

impl PagedHeap {
    /// A heap with kmalloc's 4 MiB limit and no page budget.
    pub(crate) fn new() -> PagedHeap {
        PagedHeap {
            system: SystemHeap::new(),
            max_size: 4 << 20,
            page_budget: u64::MAX,
            track_peak: false,
            pages: 0,
            peak: 0,
            waste: 0,
            objects: 0,
            checks: Cell::new(0),
            refuse_resident: false,
        }
    }

    /// The token for zero-size objects, like kmalloc's `ZERO_SIZE_PTR`.
    fn zero_size() -> Handle {
        Handle::new(NonNull::dangling())
    }

    /// Pages for an object of `size` bytes.
    fn pages_for(size: usize) -> u64 {
        (size as u64).div_ceil(PAGE)
    }

    /// Refuses `size` if it is too large or does not fit the budget once `released` pages are
    /// given back.
    fn admit(&self, size: usize, released: u64) -> Result<(), HeapError> {
        if size > self.max_size {
            return Err(HeapError::TooLarge {
                size,
                limit: self.max_size,
                limit_name: "KMALLOC_MAX_SIZE",
            });
        }
        if self.pages - released + PagedHeap::pages_for(size) > self.page_budget {
            return Err(HeapError::OutOfMemory { size });
        }
        Ok(())
    }

    /// Accounts an object of `size` bytes coming or going.
    fn account(&mut self, size: usize, coming: bool) {
        let pages = PagedHeap::pages_for(size);
        let waste = pages * PAGE - size as u64;
        if coming {
            self.pages += pages;
            self.waste += waste;
            self.peak = self.peak.max(self.pages);
        } else {
            self.pages -= pages;
            self.waste -= waste;
        }
    }
}

// SAFETY: objects of `size > 0` bytes are `SystemHeap` objects of that size, which keep the
// promises; zero-size objects are never dereferenced by the contract's own terms.
unsafe impl ReplayHeap for PagedHeap {
    fn name(&self) -> &str {
        "paged"
    }

    fn alloc(&mut self, size: usize, align: usize) -> Result<Handle, HeapError> {
        self.admit(size, 0)?;
        let handle = if size == 0 {
            PagedHeap::zero_size()
        } else {
            self.system.alloc(size, align)?
        };
        self.account(size, true);
        self.objects += 1;
        Ok(handle)
    }

    unsafe fn free(&mut self, handle: Handle, size: usize, align: usize) -> Result<(), HeapError> {
        if size > 0 {
            // SAFETY: the caller's promise, passed on: `size > 0` objects are system objects.
            unsafe { self.system.free(handle, size, align) }?;
        }
        self.account(size, false);
        self.objects -= 1;
        Ok(())
    }

    unsafe fn realloc(
        &mut self,
        handle: Handle,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> Result<Handle, HeapError> {
        self.admit(new_size, PagedHeap::pages_for(old_size))?;
        let moved = if old_size == 0 {
            self.system.alloc(new_size, align)?
        } else {
            // SAFETY: the caller's promise, passed on.
            unsafe { self.system.realloc(handle, old_size, align, new_size) }?
        };
        self.account(old_size, false);
        self.account(new_size, true);
        Ok(moved)
    }

    fn make_resident(&mut self) -> Result<(), String> {
        if self.refuse_resident {
            return Err("the stand-in heap's memory cannot be made resident".to_owned());
        }
        Ok(())
    }

    fn footprint(&self) -> Option<FootprintInfo> {
        Some(FootprintInfo {
            pages_held: self.pages,
            page_size: PAGE,
            slab_waste_bytes: self.waste,
            peak_pages_held: self.track_peak.then_some(self.peak),
        })
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.checks.set(self.checks.get() + 1);
        Ok(())
    }

    fn verify_empty(&mut self) -> Result<(), String> {
        if self.pages == 0 && self.objects == 0 {
            Ok(())
        } else {
            Err(format!(
                "{} pages and {} objects still held",
                self.pages, self.objects
            ))
        }
    }
}

/// How a [`FaultyHeap`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Objects come from a 4 KiB arena every 16 bytes, so objects above 16 bytes overlap the
    /// next one; frees do nothing.
    Overlap,
    /// A realloc returns fresh zeroed memory instead of moving the contents.
    ReallocLosesBytes,
    /// Every free reports an error (after really freeing).
    FreeFails,
    /// The heap says it still holds memory after everything was freed.
    NotEmpty,
}

/// A heap that breaks the [`ReplayHeap`] promises in one way.
///
/// A replay it breaks stops halfway with objects still out; the heap frees them when it is
/// dropped, so that the tests leak nothing (Miri checks).
#[derive(Debug)]
pub(crate) struct FaultyHeap {
    /// The misbehaviour.
    fault: Fault,
    /// Where well-behaved requests go.
    system: SystemHeap,
    /// The system objects out, by address: handle, size and alignment.
    out: BTreeMap<usize, (Handle, usize, usize)>,
    /// The zero-initialized arena of [`Fault::Overlap`].
    arena: Vec<u8>,
    /// The offset of the next arena object.
    next: usize,
}

impl FaultyHeap {
    /// The size of the arena.
    const ARENA: usize = 4096;

    /// The largest object the arena hands out.
    const ARENA_MAX: usize = 1024;

    /// A heap with `fault`.
    pub(crate) fn new(fault: Fault) -> FaultyHeap {
        FaultyHeap {
            fault,
            system: SystemHeap::new(),
            out: BTreeMap::new(),
            arena: vec![0; FaultyHeap::ARENA],
            next: 0,
        }
    }

    /// A system object of `size` bytes, recorded as out.
    fn system_alloc(&mut self, size: usize, align: usize) -> Result<Handle, HeapError> {
        let handle = self.system.alloc(size, align)?;
        self.out
            .insert(handle.as_ptr().as_ptr() as usize, (handle, size, align));
        Ok(handle)
    }

    /// Frees a system object and forgets it.
    ///
    /// # Safety
    ///
    /// `handle` is a live system object of this heap with `size` bytes and alignment `align`.
    unsafe fn system_free(
        &mut self,
        handle: Handle,
        size: usize,
        align: usize,
    ) -> Result<(), HeapError> {
        self.out.remove(&(handle.as_ptr().as_ptr() as usize));
        // SAFETY: the caller's promise, passed on.
        unsafe { self.system.free(handle, size, align) }
    }

    /// The next arena object: `size` bytes at the next multiple of 16.
    fn arena_alloc(&mut self, size: usize) -> Result<Handle, HeapError> {
        if size > FaultyHeap::ARENA_MAX {
            return Err(HeapError::TooLarge {
                size,
                limit: FaultyHeap::ARENA_MAX,
                limit_name: "ARENA_MAX",
            });
        }
        let offset = self.next;
        self.next = (self.next + 16) % (FaultyHeap::ARENA - FaultyHeap::ARENA_MAX);
        // `offset + size <= ARENA`, so the object lies inside the arena; `as_mut_ptr` gives a
        // pointer to the whole buffer that later calls do not invalidate.
        let ptr = self.arena.as_mut_ptr().wrapping_add(offset);
        NonNull::new(ptr)
            .map(Handle::new)
            .ok_or(HeapError::OutOfMemory { size })
    }
}

// SAFETY: this impl breaks its promises on purpose (overlapping objects, lost realloc bytes),
// but only in ways that stay defined: every object lies inside memory that is allocated and
// initialized (the zeroed arena, or system memory that the heap zeroes before handing it out),
// and the replay reads and writes it only through raw pointers, so a broken promise shows up as
// wrong byte values, not as undefined behaviour.
unsafe impl ReplayHeap for FaultyHeap {
    fn name(&self) -> &str {
        "faulty"
    }

    fn alloc(&mut self, size: usize, align: usize) -> Result<Handle, HeapError> {
        match self.fault {
            Fault::Overlap => self.arena_alloc(size),
            _ => self.system_alloc(size, align),
        }
    }

    unsafe fn free(&mut self, handle: Handle, size: usize, align: usize) -> Result<(), HeapError> {
        match self.fault {
            Fault::Overlap => Ok(()),
            fault => {
                // SAFETY: the caller's promise, passed on: other faults allocate from `system`.
                unsafe { self.system_free(handle, size, align) }?;
                if fault == Fault::FreeFails {
                    Err(HeapError::Other("free went wrong".to_owned()))
                } else {
                    Ok(())
                }
            }
        }
    }

    unsafe fn realloc(
        &mut self,
        handle: Handle,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> Result<Handle, HeapError> {
        match self.fault {
            Fault::Overlap => {
                let moved = self.arena_alloc(new_size)?;
                // SAFETY: both objects lie inside the arena; `copy` allows overlap.
                unsafe {
                    std::ptr::copy(
                        handle.as_ptr().as_ptr(),
                        moved.as_ptr().as_ptr(),
                        old_size.min(new_size),
                    );
                }
                Ok(moved)
            }
            Fault::ReallocLosesBytes => {
                let moved = self.system_alloc(new_size, align)?;
                // SAFETY: `moved` is a fresh system object of `new_size` bytes; zeroing it
                // makes the lost contents initialized, not undefined.
                unsafe { moved.as_ptr().as_ptr().write_bytes(0, new_size) };
                // SAFETY: the caller's promise, passed on.
                unsafe { self.system_free(handle, old_size, align) }?;
                Ok(moved)
            }
            Fault::FreeFails | Fault::NotEmpty => {
                // SAFETY: the caller's promise, passed on.
                let moved = unsafe { self.system.realloc(handle, old_size, align, new_size) }?;
                self.out.remove(&(handle.as_ptr().as_ptr() as usize));
                self.out
                    .insert(moved.as_ptr().as_ptr() as usize, (moved, new_size, align));
                Ok(moved)
            }
        }
    }

    fn verify_empty(&mut self) -> Result<(), String> {
        if self.fault == Fault::NotEmpty {
            Err("1 page still held".to_owned())
        } else {
            Ok(())
        }
    }
}

impl Drop for FaultyHeap {
    fn drop(&mut self) {
        for (_, (handle, size, align)) in std::mem::take(&mut self.out) {
            // SAFETY: `out` holds exactly the system objects this heap handed out and that were
            // not freed since; the replay that held them is over (it borrowed the heap).
            let _ = unsafe { self.system.free(handle, size, align) };
        }
    }
}
