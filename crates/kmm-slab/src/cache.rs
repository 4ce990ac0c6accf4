//! The SLUB machinery: caches, per-CPU slabs, node partial lists, slab
//! creation and discard, and the debug checks (`mm/slub.c`).
//!
//! Locking, as in SLUB: each CPU's active ("frozen") slab has a lockless
//! freelist, popped and pushed with one compare-exchange of the freelist
//! head and a transaction id packed in one word (`this_cpu_cmpxchg` of
//! `freelist` and `tid`; see [`CpuSlot`]). The slow paths and the flushes
//! close a CPU's slot first, which makes them its only user until they
//! publish it again. A thread that holds its CPU exclusively (see
//! [`CpuContext::current_cpu_exclusive`]) pops and pushes with plain loads and
//! stores instead, raising the slot's `busy` flag around them; a thread
//! closing another CPU's slot then calls [`CpuContext::remote_fence`] and
//! waits for that flag to fall ([`CpuSlot::close_all`]). A free to a slab that is not the CPU's pushes onto the
//! slab's own freelist with one compare-exchange of its packed freelist and
//! counters (`__slab_free`); the slab's state and the node partial list sit
//! behind the cache's node lock (`list_lock`), which such a free takes first
//! when it moves the slab between lists. The order is: close
//! the CPU slot, then take the node lock. A slab is freed only under the node
//! lock after it is unlinked from everything, and a frozen slab is unfrozen
//! only by a thread holding its CPU slot closed, which is what keeps every
//! [`SlabMem`] used below valid. The one read that may land on a slab being
//! flushed, or on an object just handed out, is the fast path's read of a
//! free pointer; its value is then discarded (`raw::load_free_word`).
//!
//! No heap allocation happens on any allocation or free path (the slab table
//! grows by one chunk every 1024 slabs, outside the cache locks), so a global
//! allocator built on this crate does not recurse into a lock it holds.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, compiler_fence,
};

use crossbeam_utils::{Backoff, CachePadded};
use kmm_gfp::Gfp;
use kmm_page::{PAGE_SIZE, PageAllocator, PageFlags, PageFrame, PageType, Pfn};
use kmm_percpu::CpuContext;
use spin::{Mutex, MutexGuard};

use crate::allocator::SlabAllocator;
use crate::layout::{
    Divisor, ObjectLayout, POISON_END, POISON_FREE, POISON_INUSE, SLUB_RED_ACTIVE,
    SLUB_RED_INACTIVE, SlotIndex, TRACK_SIZE,
};
use crate::raw::{self, SlabMem};
use crate::{SlabError, SlabFlags};

/// "No object": the end of a freelist, in the free pointer of its last
/// object and in every freelist head (`u32::MAX`, far above any object
/// offset: a slab is at most 4 MiB). Not `usize::MAX`: one value for the
/// packed 32-bit heads and the free-pointer words lets the fast paths store
/// and load heads as they are, with no conversion.
pub(crate) const NIL: usize = u32::MAX as usize;
/// "No slab" in a slab id field and in list links.
pub(crate) const NO_SLAB: u32 = u32::MAX;

/// Slab states (`SlabMeta::state`).
pub(crate) const S_DEAD: u32 = 0;
pub(crate) const S_FULL: u32 = 1;
pub(crate) const S_PARTIAL: u32 = 2;
/// `S_FROZEN + cpu`: the active slab of `cpu`.
pub(crate) const S_FROZEN: u32 = 3;

/// The gfp bits a cache passes on to the page allocator
/// (`GFP_RECLAIM_MASK | GFP_CONSTRAINT_MASK`).
pub(crate) const GFP_SLAB_PASS: Gfp = Gfp::DIRECT_RECLAIM
    .union(Gfp::KSWAPD_RECLAIM)
    .union(Gfp::HIGH)
    .union(Gfp::IO)
    .union(Gfp::FS)
    .union(Gfp::NOWARN)
    .union(Gfp::RETRY_MAYFAIL)
    .union(Gfp::NOFAIL)
    .union(Gfp::NORETRY)
    .union(Gfp::MEMALLOC)
    .union(Gfp::NOMEMALLOC)
    .union(Gfp::HARDWALL)
    .union(Gfp::THISNODE);

/// One slab's descriptor (`struct slab`). Fields are atomics read and written
/// with relaxed ordering under the locks named in the module docs, except
/// `fc`, which frees change without a lock.
#[derive(Debug, Default)]
pub(crate) struct SlabMeta {
    /// Owning cache id + 1; 0 while the entry is unused.
    pub(crate) cache: AtomicU32,
    pub(crate) pfn: AtomicUsize,
    pub(crate) base: AtomicPtr<u8>,
    pub(crate) order: AtomicU32,
    pub(crate) objects: AtomicU32,
    pub(crate) state: AtomicU32,
    /// The slab's own freelist and counters in one word (`freelist` and
    /// `counters`, changed together as by `cmpxchg_double_slab`): the first
    /// free object's offset, the list's length, and whether the slab is
    /// frozen (some CPU's active slab). See [`fc_pack`].
    pub(crate) fc: AtomicU64,
    /// Partial-list links; `next` also links free descriptor ids and discards.
    pub(crate) next: AtomicU32,
    pub(crate) prev: AtomicU32,
}

impl SlabMeta {
    #[inline]
    fn len(&self) -> usize {
        PAGE_SIZE << self.order.load(Relaxed)
    }

    /// `(freelist head, free objects, frozen)`.
    #[inline]
    pub(crate) fn fc(&self) -> (usize, u32, bool) {
        fc_unpack(self.fc.load(Acquire))
    }

    /// The number of objects on the slab's own freelist.
    pub(crate) fn nr_free(&self) -> u32 {
        self.fc().1
    }

    /// Sets the whole word, for a caller no free can race with (a debug
    /// cache under its node lock, a slab not yet handed out, a dead slab).
    fn set_fc(&self, head: usize, nr_free: u32, frozen: bool) {
        self.fc.store(fc_pack(head, nr_free, frozen), Release);
    }

    /// Takes the whole freelist, leaving it empty and frozen or not
    /// (`get_freelist`, or freezing a partial slab); `(head, length)`.
    fn take_fc(&self, frozen: bool) -> (usize, u32) {
        let (head, nr, _) = fc_unpack(self.fc.swap(fc_pack(NIL, 0, frozen), AcqRel));
        (head, nr)
    }
}

/// The frozen bit of [`SlabMeta::fc`].
const FC_FROZEN: u64 = 1 << 63;

/// Packs a slab's freelist head (32 bits), free count (31 bits) and frozen bit.
#[inline]
fn fc_pack(head: usize, nr_free: u32, frozen: bool) -> u64 {
    let frozen = if frozen { FC_FROZEN } else { 0 };
    u64::from(head32(head)) | (u64::from(nr_free & 0x7fff_ffff) << 32) | frozen
}

/// `fc_pack(off, nr + 1, frozen)` for `fc == fc_pack(head, nr, frozen)`:
/// an object pushed, in three additions (as [`bump`] does for the CPU
/// word). The count stays below 2^31 (a slab holds at most 2^19 objects),
/// so nothing carries into the frozen bit.
#[inline(always)]
fn fc_push(fc: u64, head: usize, off: usize) -> u64 {
    debug_assert!(fc as u32 as usize == head && off < NIL);
    let new = fc
        .wrapping_sub(head as u64)
        .wrapping_add(off as u64)
        .wrapping_add(1 << 32);
    debug_assert_eq!(fc_unpack(new), (off, fc_unpack(fc).1 + 1, fc_unpack(fc).2));
    new
}

/// Whether a free to a slab whose own list reads `(head, nr, frozen)`
/// moves it between the node's lists: a full slab gets a free object, or
/// a slab of `objects` objects becomes empty. A frozen slab is on no list.
#[inline(always)]
fn moves_lists(nr: u32, head: usize, frozen: bool, objects: u32) -> bool {
    !frozen && (head == NIL || nr + 1 == objects)
}

/// One attempt of `__slab_free`'s push of the object at `off` onto a slab
/// whose word read `fc` (first object `head`): links the object to `head`
/// and compare-exchanges the word; `false` if a concurrent free or freeze
/// changed it (the caller reads it again).
#[inline(always)]
fn push_once(
    cache: &Cache,
    meta: &SlabMeta,
    mem: &SlabMem,
    fc: u64,
    head: usize,
    off: usize,
) -> bool {
    mem.write_word(off + cache.layout.offset, head);
    meta.fc
        .compare_exchange(fc, fc_push(fc, head, off), AcqRel, Relaxed)
        .is_ok()
}

/// `(head, free count, frozen)` of a packed slab word.
#[inline]
fn fc_unpack(fc: u64) -> (usize, u32, bool) {
    (
        head_off(fc as u32),
        ((fc >> 32) as u32) & 0x7fff_ffff,
        fc & FC_FROZEN != 0,
    )
}

/// The free-list word of a [`CpuSlot`] when the slot is closed: a slow path
/// or a flush owns the CPU slab until it publishes again. Far above any
/// object offset (a slab is at most 4 MiB), and below `i32::MAX`, so that
/// the free fast paths test for it with an immediate operand.
const F_CLOSED: u32 = i32::MAX as u32 - 1;
const _: () = assert!(F_CLOSED as usize > PAGE_SIZE << kmm_page::MAX_PAGE_ORDER);
/// "No object" in the packed free-list word.
const F_NIL: u32 = u32::MAX;

/// Packs a CPU freelist head and a transaction id into one word, the
/// `freelist_aba_t` pair that SLUB changes with one `cmpxchg_double`.
#[inline]
fn pack(head: u32, tid: u32) -> u64 {
    (u64::from(tid) << 32) | u64::from(head)
}

/// `(head, tid)` of a packed word.
#[inline]
fn unpack(ft: u64) -> (u32, u32) {
    (ft as u32, (ft >> 32) as u32)
}

/// A freelist offset (or [`NIL`]) as it sits in a packed word: the same
/// value (offsets of a slab stay far below `F_CLOSED`: a slab is at most
/// 4 MiB).
#[inline]
fn head32(off: usize) -> u32 {
    debug_assert!(off <= NIL && off != F_CLOSED as usize);
    off as u32
}

/// A packed head (never `F_CLOSED`) as a freelist offset: the same value,
/// [`F_NIL`] being [`NIL`].
#[inline]
fn head_off(head: u32) -> usize {
    debug_assert!(head != F_CLOSED);
    head as usize
}

/// `pack(head32(new), tid + 1)` for `ft == pack(head, tid)`: the head
/// replaced and the transaction id bumped in three additions, where
/// unpacking and packing again takes masks and shifts. `new` is an object
/// offset or [`NIL`], so it fits the low half, which holds exactly `head`:
/// nothing borrows from or carries into the id but the `1 << 32`, whose
/// carry out of the top is the id's wrap.
#[inline(always)]
fn bump(ft: u64, head: u32, new: usize) -> u64 {
    debug_assert!(ft as u32 == head && new <= NIL);
    ft.wrapping_sub(u64::from(head))
        .wrapping_add(new as u64)
        .wrapping_add(1 << 32)
}

/// Why a CPU slot's pop handed out nothing (the slot is unchanged).
#[derive(Clone, Copy, Debug)]
pub(crate) enum PopMiss {
    /// A closed slot, an empty freelist or no slab: the slow path's case.
    Slow,
    /// The first free object's free pointer points outside the slab (a
    /// write after free): `ft` as read, and the object.
    Corrupted { ft: u64, obj: *mut u8 },
}

/// Why a CPU slot's push took nothing (the slot is unchanged).
#[derive(Clone, Copy, Debug)]
pub(crate) enum PushMiss {
    /// A closed slot, or an object outside the CPU slab: the slow path's case.
    Slow,
    /// Offset `off` of the CPU slab (whose last object starts at `last`)
    /// is not an object start, or is the freelist's head (a double free).
    Bad { off: usize, last: usize },
}

/// A CPU's slab (`struct kmem_cache_cpu`), read and changed without a lock.
///
/// `ft` packs the CPU freelist's first object with a transaction id (`tid`)
/// that every change bumps, as SLUB's `freelist` and `tid` pair: the fast
/// paths pop and push with one compare-exchange of `ft`, which fails if any
/// other thread changed the list in between. The other fields describe the
/// frozen slab and change only while the slot is closed (`ft` holds
/// `F_CLOSED`): a slow path closes the slot with a compare-exchange, owns it
/// until [`CpuGuard`] drops, and publishes the fields before `ft`
/// (release), so a fast path that reads `ft`, the fields, and `ft` again
/// unchanged (acquire) has seen the fields that go with that `ft`.
///
/// A thread that holds the CPU exclusively is the only one that pops and
/// pushes, so it uses plain loads and stores of `ft` (the kernel's unlocked
/// `this_cpu_cmpxchg`), with `busy` raised around them. Only a thread
/// closing the slot from elsewhere can then race with it, and it uses
/// [`CpuSlot::close_all`], which waits for `busy` to fall after a
/// [`CpuContext::remote_fence`] and closes again if a plain store of the
/// owner overwrote its close.
///
/// Every reason for an allocation to leave the fast path fails one test,
/// `head <= last`: `F_CLOSED` and `F_NIL` are far above any object offset
/// (a slab is at most 4 MiB), and a slot without a slab publishes `F_NIL`.
/// A debug cache never freezes a slab, so all its calls take the slow paths.
#[derive(Debug)]
pub(crate) struct CpuSlot {
    ft: AtomicU64,
    /// 1 while the exclusive owner is inside a fast path.
    busy: AtomicU32,
    base: AtomicPtr<u8>,
    /// Offset of the last object start of the frozen slab.
    last: AtomicUsize,
    len: AtomicUsize,
    slab: AtomicU32,
    /// The cache's free-pointer offset (`s->offset`), a constant kept
    /// beside `ft` so that the fast paths find it on the line they already
    /// read: a `kfree` that reached the slot through the frame need not
    /// load the cache before it stores the free pointer.
    offset: usize,
    /// The cache's slot size (`s->size`) as a [`Divisor`], a constant kept
    /// here for the same reason: the free fast paths' object-start test
    /// needs nothing from the cache.
    slot: Divisor,
}

impl CpuSlot {
    /// An empty slot of a cache whose objects are laid out as `layout`.
    pub(crate) fn new(layout: &ObjectLayout) -> CpuSlot {
        CpuSlot {
            ft: AtomicU64::new(pack(F_NIL, 0)),
            busy: AtomicU32::new(0),
            base: AtomicPtr::new(core::ptr::null_mut()),
            last: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            slab: AtomicU32::new(NO_SLAB),
            offset: layout.offset,
            slot: Divisor::new(layout.size),
        }
    }

    /// Whether `off` is a multiple of the slot size: an object start, for
    /// the free fast paths, whose caches have no left red zone (they have
    /// no debug flags) and whose caller checked `off <= last`.
    #[inline(always)]
    fn is_slot_start(&self, off: usize) -> bool {
        self.slot.divides(off)
    }

    /// Closes the slot and returns its state to the caller alone until the
    /// guard drops (`local_lock` + taking `c->freelist` in `___slab_alloc`).
    /// Waits while another thread holds it closed.
    pub(crate) fn close(&self) -> CpuGuard<'_> {
        let backoff = Backoff::new();
        loop {
            let ft = self.ft.load(Relaxed);
            let (head, tid) = unpack(ft);
            let tid = tid.wrapping_add(1);
            if head != F_CLOSED
                && self
                    .ft
                    .compare_exchange_weak(ft, pack(F_CLOSED, tid), Acquire, Relaxed)
                    .is_ok()
            {
                let c = CpuSlab {
                    slab: self.slab.load(Relaxed),
                    base: self.base.load(Relaxed),
                    len: self.len.load(Relaxed),
                    last: self.last.load(Relaxed),
                    freelist: head_off(head),
                };
                return CpuGuard { slot: self, c, tid };
            }
            backoff.snooze();
        }
    }

    /// Closes every slot of a cache from any thread, including slots that an
    /// exclusive owner uses with plain stores: closes each, fences
    /// ([`CpuContext::remote_fence`]), waits until no owner is inside a fast
    /// path, and closes again any slot whose close an owner's store, begun
    /// before it, overwrote. Afterwards every owner sees the slots closed
    /// and takes its slow path, which waits for them to open.
    pub(crate) fn close_all<'s>(
        slots: Slots<'s>,
        cpus: &(impl CpuContext + ?Sized),
    ) -> alloc::vec::Vec<CpuGuard<'s>> {
        // The vector is allocated before any slot closes: a global allocator
        // built on this crate must not allocate while its own slot is closed.
        let mut guards = alloc::vec::Vec::with_capacity(slots.len());
        guards.extend(slots.iter().map(|s| s.close()));
        loop {
            cpus.remote_fence();
            let mut lost = false;
            for (slot, guard) in slots.iter().zip(guards.iter_mut()) {
                let backoff = Backoff::new();
                while slot.busy.load(Acquire) != 0 {
                    backoff.snooze();
                }
                if slot.ft.load(Acquire) != pack(F_CLOSED, guard.tid) {
                    // An owner's store reopened the slot: close it again, and
                    // drop the stale copy unpublished.
                    core::mem::forget(core::mem::replace(guard, slot.close()));
                    lost = true;
                }
            }
            if !lost {
                return guards;
            }
        }
    }

    /// Enters a fast path as the CPU's exclusive owner: raises `busy`, then
    /// (ordered by the owner's half of the handshake, a compiler fence) reads
    /// the packed word, the slab base and the last object offset. The
    /// caller must call [`CpuSlot::leave`] before any other slot operation.
    #[inline]
    fn enter(&self) -> (u64, *mut u8, usize) {
        self.busy.store(1, Relaxed);
        compiler_fence(SeqCst);
        let ft = self.ft.load(Acquire);
        (ft, self.base.load(Relaxed), self.last.load(Relaxed))
    }

    /// Leaves an owner's fast path, publishing what it did.
    #[inline]
    fn leave(&self) {
        self.busy.store(0, Release);
    }

    /// A consistent view of the open slot for the fast paths: the packed
    /// word, the slab base and the last object offset; `None` while closed
    /// or when the slot changed under the reads (the caller retries).
    #[inline]
    fn snapshot(&self) -> Option<(u64, *mut u8, usize)> {
        let ft = self.ft.load(Acquire);
        let base = self.base.load(Acquire);
        let last = self.last.load(Acquire);
        if self.ft.load(Acquire) != ft {
            return None;
        }
        Some((ft, base, last))
    }

    /// The exclusive owner's pop of the first free object of the CPU
    /// freelist (the fast path of `slab_alloc_node`). On a miss nothing
    /// changed. Only for the thread the `CpuContext` says holds this CPU
    /// alone: the word is stored plainly, so a second popper could be handed
    /// the same object.
    #[expect(
        unsafe_code,
        reason = "the fast path reads the free pointer of a free object"
    )]
    #[inline(always)]
    pub(crate) fn owner_pop(&self) -> Result<*mut u8, PopMiss> {
        let (ft, base, last) = self.enter();
        let (head, _) = unpack(ft);
        let off = head as usize;
        // One test covers a closed slot, an empty freelist and a slot
        // without a slab (see `CpuSlot`).
        if off > last {
            self.leave();
            return Err(PopMiss::Slow);
        }
        // SAFETY: `base + off` is the first free object of this CPU's slab,
        // which only this thread pops while the slot is open; the word is
        // aligned and inside the direct map.
        let next = unsafe { raw::load_free_word(base, off + self.offset) };
        // Both tests at once, one branch: whether the list ends here
        // depends on the program, the corruption test never fails.
        if (next > last) & (next != NIL) {
            self.leave();
            return Err(PopMiss::Corrupted {
                ft,
                obj: base.wrapping_add(off),
            });
        }
        self.ft.store(bump(ft, head, next), Release);
        self.leave();
        Ok(base.wrapping_add(off))
    }

    /// After [`PopMiss::Corrupted`] on an exclusive owner's pop that read
    /// `ft`: drops the rest of the freelist, unless a remote closer changed
    /// the word since.
    #[cold]
    #[inline(never)]
    fn owner_drop_list(&self, ft: u64) {
        let (now, _, _) = self.enter();
        if now == ft {
            let (_, tid) = unpack(ft);
            self.ft.store(pack(F_NIL, tid.wrapping_add(1)), Release);
        }
        self.leave();
    }

    /// The same pop for a thread that may share its CPU: one
    /// compare-exchange of the packed word, retried while other threads
    /// change it. On a miss nothing changed.
    #[expect(
        unsafe_code,
        reason = "the fast path reads a free pointer without holding the slab"
    )]
    #[inline(always)]
    pub(crate) fn shared_pop(&self) -> Result<*mut u8, PopMiss> {
        loop {
            let Some((ft, base, last)) = self.snapshot() else {
                continue;
            };
            let (head, tid) = unpack(ft);
            let off = head as usize;
            if off > last {
                return Err(PopMiss::Slow);
            }
            // SAFETY: `base + off` was the first free object of this CPU's
            // slab at the snapshot; see `raw::load_free_word` for the race
            // with a thread that pops it first, after which the value read
            // is thrown away because the compare-exchange below fails.
            let next = unsafe { raw::load_free_word(base, off + self.offset) };
            // One branch, as in `owner_pop`.
            if (next > last) & (next != NIL) {
                return Err(PopMiss::Corrupted {
                    ft,
                    obj: base.wrapping_add(off),
                });
            }
            if self
                .ft
                .compare_exchange(ft, pack(head32(next), tid.wrapping_add(1)), AcqRel, Relaxed)
                .is_ok()
            {
                return Ok(base.wrapping_add(off));
            }
        }
    }

    /// The exclusive owner's push of the object at `addr`, given back by
    /// its owner, onto the CPU freelist when it lies in the CPU slab (the
    /// fast path of `do_slab_free`). On a miss nothing changed. Only for the
    /// CPU's exclusive owner, as [`CpuSlot::owner_pop`].
    #[expect(
        unsafe_code,
        reason = "the fast path writes the free pointer of a freed object"
    )]
    #[inline(always)]
    pub(crate) fn owner_push(&self, addr: usize) -> Result<(), PushMiss> {
        let (ft, base, last) = self.enter();
        let (head, _) = unpack(ft);
        let off = addr.wrapping_sub(base.addr());
        // A slot without a slab has a null base and `last == 0`, so `off`
        // is the address itself, above `last`.
        if head == F_CLOSED || off > last {
            self.leave();
            return Err(PushMiss::Slow);
        }
        if !self.is_slot_start(off) || off == head as usize {
            self.leave();
            return Err(PushMiss::Bad { off, last });
        }
        // SAFETY: `base + off` is an object start of this CPU's slab
        // (`off <= last`), and the object is the caller's, given back:
        // nobody else writes it. The word is aligned (the slab is
        // page-aligned, and a cache without debug flags has whole-word
        // slots and free-pointer offset, as `Cache::new` asserts) and inside
        // the direct map, which stays mapped while the allocator lives.
        unsafe { raw::store_free_word(base, off + self.offset, head_off(head)) };
        self.ft.store(bump(ft, head, off), Release);
        self.leave();
        Ok(())
    }

    /// The same push for a thread that may share its CPU: one
    /// compare-exchange of the packed word, retried while other threads
    /// change it. On a miss nothing changed.
    #[expect(
        unsafe_code,
        reason = "the fast path writes the free pointer of a freed object"
    )]
    #[inline(always)]
    pub(crate) fn shared_push(&self, addr: usize) -> Result<(), PushMiss> {
        loop {
            let Some((ft, base, last)) = self.snapshot() else {
                continue;
            };
            let (head, tid) = unpack(ft);
            let off = addr.wrapping_sub(base.addr());
            if head == F_CLOSED || off > last {
                return Err(PushMiss::Slow);
            }
            // The snapshot is consistent, so the verdict is about the slab
            // this CPU held at that moment.
            if !self.is_slot_start(off) || off == head as usize {
                return Err(PushMiss::Bad { off, last });
            }
            // SAFETY: as in `owner_push`; a delayed pop of another thread
            // may read the word, atomically (see `raw::load_free_word`).
            unsafe { raw::store_free_word(base, off + self.offset, head_off(head)) };
            if self
                .ft
                .compare_exchange(ft, pack(off as u32, tid.wrapping_add(1)), AcqRel, Relaxed)
                .is_ok()
            {
                return Ok(());
            }
        }
    }
}

/// The state of a closed [`CpuSlot`], owned by the thread that closed it.
#[derive(Debug)]
pub(crate) struct CpuSlab {
    pub(crate) slab: u32,
    pub(crate) base: *mut u8,
    len: usize,
    /// Offset of the last object start; an offset at or below it is inside the objects.
    pub(crate) last: usize,
    pub(crate) freelist: usize,
}

impl CpuSlab {
    /// No slab: every allocation's `freelist <= last` and every free's
    /// `off <= last` fail (see [`CpuSlot`]).
    pub(crate) const EMPTY: CpuSlab = CpuSlab {
        slab: NO_SLAB,
        base: core::ptr::null_mut(),
        len: 0,
        last: 0,
        freelist: NIL,
    };

    fn clear(&mut self) {
        *self = Self::EMPTY;
    }

    /// The free fast path on a slab this thread holds (a closed CPU slot's,
    /// or a [`crate::LocalCache`]'s): pushes the object at `addr` onto the
    /// freelist if it is an object start of the slab and not the list's
    /// head. `fp` is the slab's base plus the cache's free-pointer offset,
    /// `slot` the cache's slot size. Nothing changes unless it returns
    /// [`HeldPush::Pushed`].
    #[expect(
        unsafe_code,
        reason = "the fast path writes the free pointer of a freed object"
    )]
    #[inline(always)]
    pub(crate) fn push_held(&mut self, fp: *mut u8, slot: Divisor, addr: usize) -> HeldPush {
        // Without a slab `base` is null and `last` 0: only address 0, which
        // no object has, would be inside. `off <= last` is below 2^32, and
        // a held slab's objects start at whole slots (its cache has no left
        // red zone, having no debug flags).
        let head = self.freelist;
        let off = addr.wrapping_sub(self.base.addr());
        if off > self.last || !slot.divides(off) {
            return HeldPush::Elsewhere;
        }
        if off == head {
            return HeldPush::Head;
        }
        // SAFETY: `base + off` is an object start of a slab only this
        // thread links (its CPU slot is closed, or a local cache holds it),
        // and the object is the caller's, given back, so no one else writes
        // it. The word is aligned (a page-aligned slab, whole-word slots
        // and free-pointer offset in a cache without debug flags) and inside
        // the direct map, which stays mapped while the allocator lives.
        unsafe { raw::store_free_word(fp, off, head) };
        self.freelist = off;
        HeldPush::Pushed
    }
}

/// What [`CpuSlab::push_held`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeldPush {
    /// The object is on the held freelist.
    Pushed,
    /// Not an object start of the held slab: another slab's object, or a
    /// misuse, for `__slab_free` to free or report.
    Elsewhere,
    /// The freelist's head: a double free.
    Head,
}

/// A closed CPU slot; dropping it publishes the (possibly changed) state and
/// opens the slot again.
#[derive(Debug)]
pub(crate) struct CpuGuard<'a> {
    slot: &'a CpuSlot,
    c: CpuSlab,
    tid: u32,
}

impl Deref for CpuGuard<'_> {
    type Target = CpuSlab;
    fn deref(&self) -> &CpuSlab {
        &self.c
    }
}

impl DerefMut for CpuGuard<'_> {
    fn deref_mut(&mut self) -> &mut CpuSlab {
        &mut self.c
    }
}

impl Drop for CpuGuard<'_> {
    fn drop(&mut self) {
        let s = self.slot;
        // The fast paths rely on this to send a slot without a slab down the
        // slow path: `last == 0` fails every free's `off <= last` (the
        // offset from a null base is the address itself), and the published
        // head is `F_NIL`, which fails every allocation's `head <= last`.
        debug_assert!(!self.c.base.is_null() || self.c.last == 0);
        let head = if self.c.base.is_null() {
            F_NIL
        } else {
            head32(self.c.freelist)
        };
        s.slab.store(self.c.slab, Relaxed);
        s.len.store(self.c.len, Relaxed);
        s.last.store(self.c.last, Release);
        s.base.store(self.c.base, Release);
        s.ft.store(pack(head, self.tid.wrapping_add(1)), Release);
    }
}

/// A cache's node (`struct kmem_cache_node`): the partial list and counters.
#[derive(Debug)]
pub(crate) struct Node {
    head: u32,
    tail: u32,
    pub(crate) nr_partial: usize,
    pub(crate) nr_slabs: usize,
    pub(crate) total_objects: usize,
    pub(crate) pages: usize,
}

/// A slab cache (`struct kmem_cache`).
pub(crate) struct Cache {
    pub(crate) id: u32,
    pub(crate) owner: u64,
    pub(crate) name: Arc<str>,
    pub(crate) flags: SlabFlags,
    pub(crate) layout: ObjectLayout,
    pub(crate) ctor: Option<fn(NonNull<u8>)>,
    pub(crate) debug: bool,
    pub(crate) min_partial: usize,
    pub(crate) allocflags: Gfp,
    pub(crate) slot: Divisor,
    /// The slot index test of `__slab_free`'s validation.
    pub(crate) ix: SlotIndex,
    pub(crate) destroyed: AtomicBool,
    /// The cache's position in `SlabAllocator::early` (the kmalloc
    /// caches), [`NOT_EARLY`] for the others; kept in its slab frames (see
    /// [`SLAB_ID_BITS`]).
    pub(crate) early: u32,
    /// The CPU slots (`s->cpu_slab`) of a cache that is not in
    /// `SlabAllocator::early`; empty for those, whose slots the allocator
    /// keeps in one table (`SlabAllocator::kcpu`). Reach them through
    /// `SlabAllocator::slots`.
    cpu: Box<[CachePadded<CpuSlot>]>,
    pub(crate) node: Mutex<Node>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name)
            .field("flags", &self.flags)
            .field("layout", &self.layout)
            .field("destroyed", &self.destroyed.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// `Err(SlabError::Destroyed)` once the cache is destroyed: what every
    /// path that may meet a destroyed cache (the handle checks and the slow
    /// paths, since the fast paths never look) refuses it with.
    #[inline]
    pub(crate) fn check_alive(&self) -> Result<(), SlabError> {
        if self.destroyed.load(Relaxed) {
            return Err(SlabError::Destroyed {
                cache: self.name.clone(),
            });
        }
        Ok(())
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "a constructor of one plain struct"
    )]
    pub(crate) fn new(
        id: u32,
        owner: u64,
        name: Arc<str>,
        flags: SlabFlags,
        layout: ObjectLayout,
        ctor: Option<fn(NonNull<u8>)>,
        early: u32,
        nr_cpus: usize,
        min_partial: usize,
    ) -> Cache {
        // The free fast paths store free pointers without testing their
        // alignment: only caches without debug flags take them.
        debug_assert!(
            flags.intersects(crate::flags::DEBUG_FLAGS)
                || (layout.size.is_multiple_of(size_of::<usize>())
                    && layout.offset.is_multiple_of(size_of::<usize>()))
        );
        let mut allocflags = Gfp::COMP;
        if flags.contains(SlabFlags::CACHE_DMA) {
            allocflags |= Gfp::DMA;
        }
        if flags.contains(SlabFlags::RECLAIM_ACCOUNT) {
            allocflags |= Gfp::RECLAIMABLE;
        }
        Cache {
            id,
            owner,
            name,
            flags,
            layout,
            ctor,
            debug: flags.intersects(crate::flags::DEBUG_FLAGS),
            min_partial,
            allocflags,
            slot: Divisor::new(layout.size),
            ix: SlotIndex::new(layout.size),
            destroyed: AtomicBool::new(false),
            early,
            // An early cache's slots are the allocator's.
            cpu: (0..if early == NOT_EARLY {
                nr_cpus.max(1)
            } else {
                0
            })
                .map(|_| CachePadded::new(CpuSlot::new(&layout)))
                .collect(),
            node: Mutex::new(Node {
                head: NO_SLAB,
                tail: NO_SLAB,
                nr_partial: 0,
                nr_slabs: 0,
                total_objects: 0,
                pages: 0,
            }),
        }
    }

    /// Offset of the last object start in a slab of `objects` objects.
    fn last_off(&self, objects: usize) -> usize {
        objects.saturating_sub(1) * self.layout.size + self.layout.red_left_pad
    }

    /// Whether `off` (from the slab base) is an object start below `last`.
    #[inline]
    fn is_object_start(&self, off: usize, last: usize) -> bool {
        if off > last || off < self.layout.red_left_pad {
            return false;
        }
        self.is_stride(off - self.layout.red_left_pad)
    }

    /// Whether `rel` is a multiple of the slot size.
    #[inline(always)]
    fn is_stride(&self, rel: usize) -> bool {
        self.slot.divides(rel)
    }

    fn addr_of(mem: &SlabMem, off: usize) -> usize {
        mem.base().as_ptr().addr().wrapping_add(off)
    }
}

/// What the frame of an address says it belongs to (`virt_to_slab` / `virt_to_folio`).
pub(crate) enum Lookup {
    /// A slab: its descriptor id, and its cache's position in
    /// `SlabAllocator::early` ([`NOT_EARLY`] for other caches). See
    /// [`SLAB_ID_BITS`].
    Slab {
        id: u32,
        early: u32,
    },
    Large {
        pfn: Pfn,
        order: u32,
    },
}

/// A slab frame's `private` word holds the slab's descriptor id in its low
/// `SLAB_ID_BITS` bits, and above them the position of its cache in
/// `SlabAllocator::early` (the kmalloc caches), or [`NOT_EARLY`], which
/// fails the test against [`EARLY`] that `kfree` makes anyway: `kfree` of
/// a kmalloc object finds its cache from the frame alone, without the
/// descriptor table and the cache table (Linux's `struct slab` has
/// `slab_cache` for the same reason).
pub(crate) const SLAB_ID_BITS: u32 = 21;
pub(crate) const SLAB_ID_MASK: u32 = (1 << SLAB_ID_BITS) - 1;
/// The cache position a slab frame holds for a cache not in
/// `SlabAllocator::early`: all ones above [`SLAB_ID_BITS`].
pub(crate) const NOT_EARLY: u32 = u32::MAX >> SLAB_ID_BITS;
const _: () = assert!(NOT_EARLY as usize >= EARLY);

/// A cache as the fast paths take it: at hand (`&Cache`), or a kmalloc
/// cache named by its place in `SlabAllocator::early` ([`Early`]) and
/// loaded only where a slow path or a report needs it, so that a kmalloc
/// fast path reads nothing of its cache (its CPU slot has what it needs).
pub(crate) trait CacheRef<'c>: Copy {
    /// The cache.
    fn get(self) -> &'c Cache;
}

impl<'c> CacheRef<'c> for &'c Cache {
    #[inline(always)]
    fn get(self) -> &'c Cache {
        self
    }
}

/// A kmalloc cache by its position in `SlabAllocator::early`, made only by
/// [`SlabAllocator::early_at`] for a position below [`EARLY`].
#[derive(Clone, Copy)]
pub(crate) struct Early<'c> {
    /// `SlabAllocator::early` by a thin reference: the pair fits two
    /// registers.
    caches: &'c alloc::vec::Vec<Arc<Cache>>,
    k: usize,
}

impl<'c> CacheRef<'c> for Early<'c> {
    #[inline(always)]
    fn get(self) -> &'c Cache {
        // `k < EARLY`, and `early` holds the `EARLY` kmalloc caches
        // (`SlabAllocator::new` refuses to finish otherwise).
        &self.caches[self.k]
    }
}

/// The number of kmalloc caches, `kmalloc-*` and `dma-kmalloc-*`, all
/// made at boot: `SlabAllocator::early` holds them in that order.
pub(crate) const EARLY: usize = 2 * crate::layout::KMALLOC_CLASSES;

/// One CPU's slots of the kmalloc caches, in `early` order (a row of
/// `SlabAllocator::kcpu`): `kfree` reaches a kmalloc object's slot with
/// the CPU's row and the cache position its frame holds.
#[derive(Debug)]
pub(crate) struct KmallocSlots(pub(crate) [CachePadded<CpuSlot>; EARLY]);

/// The CPU slots of one cache, by CPU: its own, or for a kmalloc cache its
/// column of `SlabAllocator::kcpu`.
#[derive(Clone, Copy)]
pub(crate) enum Slots<'c> {
    Own(&'c [CachePadded<CpuSlot>]),
    Kmalloc(&'c [KmallocSlots], usize),
}

impl<'c> Slots<'c> {
    /// The number of slots (one per CPU of the machine, at least one).
    pub(crate) fn len(self) -> usize {
        match self {
            Slots::Own(own) => own.len(),
            Slots::Kmalloc(rows, _) => rows.len(),
        }
    }

    /// CPU `cpu`'s slot.
    pub(crate) fn get(self, cpu: usize) -> Option<&'c CachePadded<CpuSlot>> {
        match self {
            Slots::Own(own) => own.get(cpu),
            Slots::Kmalloc(rows, k) => rows.get(cpu)?.0.get(k),
        }
    }

    /// Every slot, by CPU.
    pub(crate) fn iter(self) -> impl Iterator<Item = &'c CachePadded<CpuSlot>> {
        (0..self.len()).filter_map(move |cpu| self.get(cpu))
    }
}

/// A CPU slot of a cache, the CPU's number, and whether the caller holds
/// the CPU exclusively ([`SlabAllocator::this_cpu`]).
pub(crate) type SlotAt<'a> = (&'a CachePadded<CpuSlot>, usize, bool);

/// The `S_FROZEN` state of `cpu`.
fn frozen(cpu: usize) -> u32 {
    S_FROZEN + cpu as u32
}

/// The "CPU" whose frozen slabs are held by [`crate::LocalCache`]s: their
/// state is `frozen(LOCAL)`, `u32::MAX`, far above any CPU's.
pub(crate) const LOCAL: usize = (u32::MAX - S_FROZEN) as usize;

impl<P: PageAllocator + ?Sized, C: CpuContext + ?Sized> SlabAllocator<P, C> {
    /// The CPU slots of `cache`: its own, or for a kmalloc cache its column
    /// of [`SlabAllocator::kcpu`].
    #[inline]
    pub(crate) fn slots<'c>(&'c self, cache: &'c Cache) -> Slots<'c> {
        match cache.early {
            NOT_EARLY => Slots::Own(&cache.cpu),
            k => Slots::Kmalloc(&self.kcpu, k as usize),
        }
    }

    /// Cache `early[k]` and this CPU's slot of it, as
    /// [`SlabAllocator::this_cpu`] gives it, found by indexing
    /// [`SlabAllocator::kcpu`] rather than through the cache; `None` if
    /// there is no such cache, or for a CPU beyond the machine (whose
    /// callers take the cache from `early` and its slot from `this_cpu`,
    /// out of line: a third way to the slot here would make the fast paths
    /// test the exclusivity flag anew).
    #[inline(always)]
    pub(crate) fn early_at(
        &self,
        k: usize,
        (cpu, exclusive): (usize, bool),
    ) -> Option<(Early<'_>, SlotAt<'_>)> {
        let slot = self.kcpu.get(cpu)?.0.get(k)?;
        let cache = Early {
            caches: &self.early,
            k,
        };
        Some((cache, (slot, cpu, exclusive)))
    }

    /// This CPU's slot of `cache` with the CPU's number (slot 0 if the
    /// context reports a CPU beyond the machine). The third value says
    /// whether the caller holds the CPU exclusively.
    #[inline(always)]
    pub(crate) fn this_cpu<'c>(
        &'c self,
        cache: &'c Cache,
        (cpu, exclusive): (usize, bool),
    ) -> SlotAt<'c> {
        match cache.cpu.get(cpu) {
            Some(slot) => (slot, cpu, exclusive),
            None => {
                let (slot, on) = self.this_cpu_elsewhere(cache, cpu);
                (slot, on, exclusive && on == cpu)
            }
        }
    }

    /// [`SlabAllocator::this_cpu`] for a CPU beyond the cache's own slots:
    /// an `early` cache, whose slots are in [`SlabAllocator::kcpu`], or a CPU
    /// beyond the machine (slot 0). Returns the slot and the CPU it is for:
    /// a pair, which comes back in registers, where the triple would come
    /// back through memory and make every fast path store its own triple
    /// to the stack too.
    #[cold]
    #[inline(never)]
    fn this_cpu_elsewhere<'c>(
        &'c self,
        cache: &'c Cache,
        cpu: usize,
    ) -> (&'c CachePadded<CpuSlot>, usize) {
        let slots = self.slots(cache);
        match slots.get(cpu) {
            Some(slot) => (slot, cpu),
            // Every cache has a slot per CPU of the machine, at least one.
            None => (slots.get(0).expect("every cache has a CPU slot"), 0),
        }
    }

    /// The memory of the frozen slab of `c`.
    #[expect(unsafe_code, reason = "the slab layer owns its slabs' bytes")]
    #[inline]
    fn cpu_mem(c: &CpuSlab) -> Option<SlabMem> {
        let base = NonNull::new(c.base)?;
        // SAFETY: `c` is the state of a CPU slot its caller holds closed, and
        // it holds a frozen slab: the slab is unfrozen (and only then
        // freeable) only by a thread that closed the slot, so its pages stay
        // allocated to the slab layer while the returned value is used, which
        // ends before the caller opens the slot again.
        Some(unsafe { SlabMem::new(base, c.len) })
    }

    /// The memory of a slab, for a caller holding the node lock of its cache
    /// (or holding one of its objects, which keeps it from being discarded).
    #[expect(unsafe_code, reason = "the slab layer owns its slabs' bytes")]
    fn slab_mem(meta: &SlabMeta) -> Option<SlabMem> {
        let base = NonNull::new(meta.base.load(Relaxed))?;
        if meta.state.load(Relaxed) == S_DEAD {
            return None;
        }
        // SAFETY: the slab is live (state checked, and a slab dies only
        // under the node lock), and it stays live while the value is used:
        // the caller holds the node lock, or frees one of the slab's
        // allocated objects, and a slab is discarded only when empty. So its
        // `PAGE_SIZE << order` bytes at `base` are held by the slab layer.
        Some(unsafe { SlabMem::new(base, meta.len()) })
    }

    /// The memory of a large kmalloc block being handed out or taken back.
    #[expect(
        unsafe_code,
        reason = "the slab layer owns its large kmalloc blocks' bytes"
    )]
    pub(crate) fn large_mem(&self, pfn: Pfn, order: u32) -> Option<SlabMem> {
        let base = self.block_base(pfn, order)?;
        // SAFETY: the caller holds the block (just allocated, or validated as
        // a live large kmalloc under the large lock), and `block_base` checked
        // that its pages are contiguous in the direct map.
        Some(unsafe { SlabMem::new(base, PAGE_SIZE << order) })
    }

    /// The direct-map address of a block, if every page of it is mapped contiguously.
    pub(crate) fn block_base(&self, pfn: Pfn, order: u32) -> Option<NonNull<u8>> {
        let phys = self.pages.phys_memory();
        let base = phys.direct_map(pfn)?;
        let last = (1usize << order) - 1;
        if last > 0 && phys.linear_map_base().is_some() {
            // In a linear direct map every mapped frame sits at its place,
            // so the block is contiguous when its last frame is mapped: a
            // buddy block spans no hole (its frames are present frames of
            // one zone), so the frames between are mapped too.
            return phys.direct_map(Pfn(pfn.0 + last)).map(|_| base);
        }
        for i in 1..=last {
            let p = phys.direct_map(Pfn(pfn.0 + i))?;
            if p.as_ptr().addr() != base.as_ptr().addr() + i * PAGE_SIZE {
                return None;
            }
        }
        Some(base)
    }

    /// The `private` word of the frames of slab `id` of `cache` (see
    /// [`SLAB_ID_BITS`]).
    fn frame_word(cache: &Cache, id: u32) -> u32 {
        id | cache.early << SLAB_ID_BITS
    }

    #[inline(always)]
    pub(crate) fn meta(&self, id: u32) -> Option<&SlabMeta> {
        self.slabs.get(id as usize)
    }

    /// `virt_to_slab`: which slab (or large kmalloc) holds `addr`.
    #[inline(always)]
    pub(crate) fn lookup(&self, addr: usize) -> Result<Lookup, SlabError> {
        // The frame from arithmetic inline; any other way out of line, so
        // that the common case tests the frame's flags with no merge first.
        match self.pages.virt_to_page_quick(addr) {
            Some((pfn, f)) => self.lookup_frame(addr, pfn, f),
            None => self.lookup_searched(addr),
        }
    }

    /// What the frame `f` (number `pfn`) of `addr` says it belongs to.
    #[inline(always)]
    fn lookup_frame(&self, addr: usize, pfn: Pfn, f: &PageFrame) -> Result<Lookup, SlabError> {
        // Errors are built only on the way out, out of line: an error value
        // made up front costs its drop on every successful `kfree`.
        if f.test(PageFlags::SLAB) {
            let word = f.private();
            return Ok(Lookup::Slab {
                id: word & SLAB_ID_MASK,
                early: word >> SLAB_ID_BITS,
            });
        }
        if f.page_type() == PageType::LargeKmalloc && f.private() >> 8 == self.tag {
            return Ok(Lookup::Large {
                pfn,
                order: f.private() & 0xff,
            });
        }
        Err(self.lookup_miss(addr, Some((pfn, f))))
    }

    /// [`SlabAllocator::lookup`] for an address outside the page
    /// allocator's quick range ([`PageAllocator::virt_to_page_quick`]).
    #[cold]
    #[inline(never)]
    fn lookup_searched(&self, addr: usize) -> Result<Lookup, SlabError> {
        match self.pages.virt_to_page(addr) {
            Some((pfn, f)) => self.lookup_frame(addr, pfn, f),
            None => Err(self.lookup_miss(addr, None)),
        }
    }

    /// Why `addr`, whose frame [`SlabAllocator::lookup`] found (or not), is
    /// neither a slab object nor a large kmalloc: inside a large kmalloc (a
    /// tail page of one), or foreign.
    #[cold]
    #[inline(never)]
    fn lookup_miss(&self, addr: usize, frame: Option<(Pfn, &PageFrame)>) -> SlabError {
        if let Some((pfn, f)) = frame
            && f.test(PageFlags::TAIL)
        {
            let head = pfn.0.checked_sub(f.private() as usize).map(Pfn);
            if let Some(h) = head.and_then(|h| self.pages.pfn_to_page(h))
                && h.page_type() == PageType::LargeKmalloc
                && h.private() >> 8 == self.tag
            {
                return SlabError::NotObjectStart {
                    addr,
                    cache: self.large_name.clone(),
                };
            }
        }
        SlabError::ForeignPointer { addr }
    }

    /// Frees the object at `obj` of `cache` (`kmem_cache_free` / `slab_free`);
    /// `slab` is the object's slab descriptor id when the caller has already
    /// looked it up (`kfree`), so the slow path need not look again.
    #[inline(always)]
    pub(crate) fn cache_free(
        &self,
        cache: &Cache,
        obj: NonNull<u8>,
        slab: Option<u32>,
    ) -> Result<(), SlabError> {
        match self.cpus.current_cpu_quick() {
            Some(on) => self.cache_free_at(cache, self.this_cpu(cache, on), obj, slab),
            None => self.cache_free_searched(cache, obj, slab),
        }
    }

    /// [`SlabAllocator::cache_free`] when the CPU context has no quick
    /// answer ([`CpuContext::current_cpu_quick`]).
    #[inline(never)]
    fn cache_free_searched(
        &self,
        cache: &Cache,
        obj: NonNull<u8>,
        slab: Option<u32>,
    ) -> Result<(), SlabError> {
        let on = self.cpus.current_cpu_exclusive();
        self.cache_free_at(cache, self.this_cpu(cache, on), obj, slab)
    }

    /// [`SlabAllocator::cache_free`] with this CPU's slot of the cache at
    /// hand, as [`SlabAllocator::this_cpu`] returns it (`kfree` finds a
    /// kmalloc cache's slot from the frame).
    #[inline(always)]
    pub(crate) fn cache_free_at<'c>(
        &'c self,
        cache: impl CacheRef<'c>,
        (slot, _, exclusive): SlotAt<'_>,
        obj: NonNull<u8>,
        slab: Option<u32>,
    ) -> Result<(), SlabError> {
        // Debug caches never hold a CPU slab (their objects are checked
        // under the node lock), so their frees miss the fast paths below.
        if exclusive {
            self.owner_free(cache, slot, obj, slab)
        } else {
            self.shared_free(cache, slot, obj, slab)
        }
    }

    /// [`SlabAllocator::cache_free`] for a thread that may share its CPU:
    /// the push is a compare-exchange of the packed word.
    #[inline]
    fn shared_free<'c>(
        &'c self,
        cache: impl CacheRef<'c>,
        slot: &CpuSlot,
        obj: NonNull<u8>,
        slab: Option<u32>,
    ) -> Result<(), SlabError> {
        let addr = obj.as_ptr().addr();
        match slot.shared_push(addr) {
            Ok(()) => Ok(()),
            Err(PushMiss::Slow) => self.free_slow(cache.get(), obj, slab),
            Err(PushMiss::Bad { off, last }) => {
                Err(cold::bad_cpu_free(cache.get(), addr, off, last))
            }
        }
    }

    /// [`SlabAllocator::cache_free`] for the CPU's exclusive owner: the same
    /// checks and push, with a plain store of the packed word.
    #[inline(always)]
    fn owner_free<'c>(
        &'c self,
        cache: impl CacheRef<'c>,
        slot: &CpuSlot,
        obj: NonNull<u8>,
        slab: Option<u32>,
    ) -> Result<(), SlabError> {
        let addr = obj.as_ptr().addr();
        match slot.owner_push(addr) {
            Ok(()) => Ok(()),
            Err(PushMiss::Slow) => self.free_slow(cache.get(), obj, slab),
            Err(PushMiss::Bad { off, last }) => {
                Err(cold::bad_cpu_free(cache.get(), addr, off, last))
            }
        }
    }

    /// Checks that `meta` (looked up from the frame of `addr`) is a live slab
    /// of `cache` holding an object that starts at `addr`; returns the
    /// object's offset, the slab's memory and its number of objects, each
    /// field of `meta` read once. The caller holds the node lock, or frees
    /// the object (which keeps the slab alive while it is allocated).
    #[inline(always)]
    fn validate(
        &self,
        cache: &Cache,
        meta: &SlabMeta,
        addr: usize,
    ) -> Result<(usize, SlabMem, u32), SlabError> {
        if meta.cache.load(Relaxed) != cache.id + 1 {
            return Err(self.not_of_cache(cache, meta, addr));
        }
        let Some(mem) = Self::slab_mem(meta) else {
            return Err(SlabError::ForeignPointer { addr });
        };
        let off = addr.wrapping_sub(mem.base().as_ptr().addr());
        let objects = meta.objects.load(Relaxed);
        // One test: `off` is an object start of the slab (objects start
        // `red_left_pad` into their slots).
        let rel = off.wrapping_sub(cache.layout.red_left_pad);
        if cache.ix.index(rel) >= u64::from(objects) {
            return Err(if off >= mem.len() {
                SlabError::ForeignPointer { addr }
            } else {
                cold::not_object_start(cache, addr)
            });
        }
        Ok((off, mem, objects))
    }

    /// Why an object of the slab `meta` is not one of `cache`'s: the cache
    /// its slab records (`WrongCache`), or no cache of this allocator.
    #[cold]
    #[inline(never)]
    fn not_of_cache(&self, cache: &Cache, meta: &SlabMeta, addr: usize) -> SlabError {
        let owner = meta.cache.load(Relaxed);
        match owner.checked_sub(1).and_then(|c| self.cache_by_id(c)) {
            Some(actual) if actual.owner == self.instance => SlabError::WrongCache {
                addr,
                given: cache.name.clone(),
                actual: actual.name.clone(),
            },
            _ => SlabError::ForeignPointer { addr },
        }
    }

    /// `__slab_free`: frees to the slab's own freelist (remote frees, and
    /// every free of a debug cache), taking the node lock only when the
    /// slab changes lists; a debug cache's objects are checked first, under
    /// the lock ([`SlabAllocator::free_debug`]).
    #[inline(never)]
    pub(crate) fn free_slow(
        &self,
        cache: &Cache,
        obj: NonNull<u8>,
        slab: Option<u32>,
    ) -> Result<(), SlabError> {
        // The fast paths never look at `destroyed`: a destroyed cache has no
        // CPU slab, so its frees all come here.
        cache.check_alive()?;
        let addr = obj.as_ptr().addr();
        let id = match slab {
            Some(id) => id,
            None => match self.lookup(addr)? {
                Lookup::Slab { id, .. } => id,
                Lookup::Large { .. } => {
                    return Err(SlabError::WrongCache {
                        addr,
                        given: cache.name.clone(),
                        actual: self.large_name.clone(),
                    });
                }
            },
        };
        // `let … else`, not `ok_or`: an error value built up front costs its
        // drop on every successful free.
        let Some(meta) = self.meta(id) else {
            return Err(SlabError::ForeignPointer { addr });
        };
        if cache.debug {
            return self.free_debug(cache, id, meta, addr);
        }
        let (off, mem, objects) = self.validate(cache, meta, addr)?;
        self.slab_push_unlocked(cache, id, meta, (off, &mem, objects))
    }

    /// [`SlabAllocator::free_slow`] for a debug cache: under the node lock,
    /// refuses a double free (the object on the slab's freelist), checks
    /// the red zones, poisons the object and records the free, then frees
    /// it. A red zone found overwritten is reported after the free.
    #[inline(never)]
    fn free_debug(
        &self,
        cache: &Cache,
        id: u32,
        meta: &SlabMeta,
        addr: usize,
    ) -> Result<(), SlabError> {
        let node = cache.node.lock();
        let (off, mem, objects) = self.validate(cache, meta, addr)?;
        if self.on_freelist(cache, meta, &mem, off) {
            return Err(cold::double_free(cache, addr));
        }
        let report = self
            .check_red_zones(cache, &mem, off, SLUB_RED_ACTIVE)
            .err();
        self.init_object(cache, &mem, off, false);
        self.store_user(cache, &mem, off, 1);
        self.slab_push(cache, id, meta, (off, &mem, objects), Some(node))?;
        match report {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// [`SlabAllocator::slab_push`] without the node lock, for the free
    /// that moves the slab between no lists (the common case: a partial or
    /// frozen slab that does not become empty), with the free that does
    /// left out of line, so that the common one saves fewer registers.
    #[inline(always)]
    fn slab_push_unlocked(
        &self,
        cache: &Cache,
        id: u32,
        meta: &SlabMeta,
        (off, mem, objects): (usize, &SlabMem, u32),
    ) -> Result<(), SlabError> {
        loop {
            let fc = meta.fc.load(Acquire);
            let (head, nr, frozen) = fc_unpack(fc);
            if off == head {
                return Err(cold::double_free(cache, Cache::addr_of(mem, off)));
            }
            if moves_lists(nr, head, frozen, objects) {
                return self.slab_push(cache, id, meta, (off, mem, objects), None);
            }
            if push_once(cache, meta, mem, fc, head, off) {
                return Ok(());
            }
        }
    }

    /// The free proper of `__slab_free`: pushes the object at `off` of slab
    /// `id` (with `objects` objects) with one compare-exchange of the slab's
    /// freelist and counters. A slab that was full, or becomes empty, and is
    /// not frozen moves between lists, which needs the node lock, taken
    /// (unless `node` holds it already) before the compare-exchange that
    /// makes the move; an empty slab beyond `min_partial` goes back to the
    /// page allocator.
    #[inline(never)]
    fn slab_push<'c>(
        &self,
        cache: &'c Cache,
        id: u32,
        meta: &SlabMeta,
        (off, mem, objects): (usize, &SlabMem, u32),
        mut node: Option<MutexGuard<'c, Node>>,
    ) -> Result<(), SlabError> {
        let (nr_free, moves) = loop {
            let fc = meta.fc.load(Acquire);
            let (head, nr, frozen) = fc_unpack(fc);
            if off == head {
                return Err(cold::double_free(cache, Cache::addr_of(mem, off)));
            }
            let moves = moves_lists(nr, head, frozen, objects);
            if moves && node.is_none() {
                node = Some(cache.node.lock());
                continue;
            }
            if push_once(cache, meta, mem, fc, head, off) {
                break (nr + 1, moves);
            }
        };
        let mut discard = NO_SLAB;
        if let Some(mut n) = node
            && moves
        {
            let empty = nr_free == objects;
            match meta.state.load(Relaxed) {
                S_FULL => {
                    if empty && n.nr_partial >= cache.min_partial {
                        self.unlink_dead(cache, &mut n, id, meta);
                        discard = id;
                    } else {
                        meta.state.store(S_PARTIAL, Relaxed);
                        self.add_partial(&mut n, id, true);
                    }
                }
                S_PARTIAL if empty && n.nr_partial >= cache.min_partial => {
                    self.remove_partial(&mut n, id);
                    self.unlink_dead(cache, &mut n, id, meta);
                    discard = id;
                }
                _ => {}
            }
        }
        if discard != NO_SLAB {
            self.free_slab(discard);
        }
        Ok(())
    }

    /// A debug cache's partial slab whose freelist is corrupt (at the object
    /// at `addr`): drops the freelist, makes the slab full so no allocation
    /// walks it again, and returns the report. The caller holds the node lock.
    fn drop_corrupt_freelist(
        &self,
        cache: &Cache,
        n: &mut Node,
        id: u32,
        meta: &SlabMeta,
        addr: usize,
    ) -> SlabError {
        meta.set_fc(NIL, 0, false);
        self.remove_partial(n, id);
        meta.state.store(S_FULL, Relaxed);
        SlabError::Corrupted {
            cache: cache.name.clone(),
            object: addr,
        }
    }

    /// `on_freelist`: whether `off` is on the slab's own freelist (bounded walk).
    fn on_freelist(&self, cache: &Cache, meta: &SlabMeta, mem: &SlabMem, off: usize) -> bool {
        let mut cur = meta.fc().0;
        let last = cache.last_off(meta.objects.load(Relaxed) as usize);
        let mut steps = 0;
        while cur != NIL && cur <= last && steps <= meta.objects.load(Relaxed) {
            if cur == off {
                return true;
            }
            cur = mem.read_word(cur + cache.layout.offset).unwrap_or(NIL);
            steps += 1;
        }
        false
    }

    /// Allocates an object of `cache` (`slab_alloc_node`).
    #[inline(always)]
    pub(crate) fn cache_alloc(&self, cache: &Cache, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        match self.cpus.current_cpu_quick() {
            Some(on) => self.cache_alloc_at(cache, self.this_cpu(cache, on), gfp),
            None => self.cache_alloc_searched(cache, gfp),
        }
    }

    /// [`SlabAllocator::cache_alloc`] when the CPU context has no quick
    /// answer ([`CpuContext::current_cpu_quick`]).
    #[inline(never)]
    fn cache_alloc_searched(&self, cache: &Cache, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        let on = self.cpus.current_cpu_exclusive();
        self.cache_alloc_at(cache, self.this_cpu(cache, on), gfp)
    }

    /// [`SlabAllocator::cache_alloc`] with this CPU's slot of the cache at
    /// hand, as [`SlabAllocator::this_cpu`] returns it.
    #[inline(always)]
    pub(crate) fn cache_alloc_at<'c>(
        &'c self,
        cache: impl CacheRef<'c>,
        (slot, cpu, exclusive): SlotAt<'_>,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        // A debug cache's CPU slots stay empty, so it reaches `alloc_slow`,
        // which sends it to `alloc_debug`.
        if exclusive {
            self.owner_alloc(cache, slot, cpu, gfp)
        } else {
            self.shared_alloc(cache, slot, cpu, gfp)
        }
    }

    /// [`SlabAllocator::cache_alloc`] for a thread that may share its CPU:
    /// the pop is a compare-exchange of the packed word.
    #[inline]
    fn shared_alloc<'c>(
        &'c self,
        cache: impl CacheRef<'c>,
        slot: &CpuSlot,
        cpu: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        loop {
            match slot.shared_pop() {
                Ok(obj) => return self.handed(cache, obj, gfp),
                Err(PopMiss::Slow) => return self.alloc_slow(cache.get(), slot, cpu, gfp),
                Err(PopMiss::Corrupted { ft, obj }) => {
                    // Drop the rest of the list if it is still this CPU's,
                    // and report; else look again.
                    let (_, tid) = unpack(ft);
                    if slot
                        .ft
                        .compare_exchange(ft, pack(F_NIL, tid.wrapping_add(1)), AcqRel, Relaxed)
                        .is_ok()
                    {
                        return Err(cold::corrupted(cache.get(), obj.addr()));
                    }
                }
            }
        }
    }

    /// [`SlabAllocator::cache_alloc`] for the CPU's exclusive owner: the same
    /// pop, with a plain store of the packed word.
    #[inline(always)]
    fn owner_alloc<'c>(
        &'c self,
        cache: impl CacheRef<'c>,
        slot: &CpuSlot,
        cpu: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        match slot.owner_pop() {
            Ok(obj) => self.handed(cache, obj, gfp),
            Err(PopMiss::Slow) => self.alloc_slow(cache.get(), slot, cpu, gfp),
            Err(PopMiss::Corrupted { ft, obj }) => {
                slot.owner_drop_list(ft);
                Err(cold::corrupted(cache.get(), obj.addr()))
            }
        }
    }

    /// A popped object as the fast paths return it: as is in the common
    /// case, through [`SlabAllocator::hand_out`] (out of line) when it must
    /// be zeroed or is null.
    #[inline(always)]
    fn handed<'c>(
        &'c self,
        cache: impl CacheRef<'c>,
        obj: *mut u8,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        match NonNull::new(obj) {
            Some(obj) if !gfp.contains(Gfp::ZERO) => Ok(obj),
            _ => self.hand_out(cache.get(), obj, gfp),
        }
    }

    /// The object at `obj`, just taken off a freelist and now the caller's,
    /// zeroed if `gfp` asks.
    #[expect(unsafe_code, reason = "the slab layer owns its slabs' bytes")]
    #[inline(never)]
    pub(crate) fn hand_out(
        &self,
        cache: &Cache,
        obj: *mut u8,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        let Some(obj) = NonNull::new(obj) else {
            return Err(SlabError::Corrupted {
                cache: cache.name.clone(),
                object: 0,
            });
        };
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: the object's `size` bytes lie inside a slab the slab
            // layer holds, which cannot be freed while this object is
            // allocated; `obj` carries the slab's provenance.
            let mem = unsafe { SlabMem::new(obj, cache.layout.size) };
            mem.fill(0, cache.layout.object_size, 0);
        }
        Ok(obj)
    }

    /// Pops the first object of a closed slot's freelist.
    #[inline]
    pub(crate) fn cpu_pop(
        &self,
        cache: &Cache,
        c: &mut CpuSlab,
    ) -> Result<Option<*mut u8>, SlabError> {
        let off = c.freelist;
        if off == NIL {
            return Ok(None);
        }
        let Some(mem) = Self::cpu_mem(c) else {
            return Ok(None);
        };
        let next = mem.read_word(off + cache.layout.offset).unwrap_or(NIL - 1);
        // Every offset on a freelist is an object start, hence a whole
        // number of words (the `LocalCache` fast path relies on it).
        if next != NIL && (next > c.last || !next.is_multiple_of(size_of::<usize>())) {
            // The free pointer was overwritten: drop the rest of the list.
            c.freelist = NIL;
            return Err(SlabError::Corrupted {
                cache: cache.name.clone(),
                object: Cache::addr_of(&mem, off),
            });
        }
        c.freelist = next;
        Ok(mem.ptr(off).map(NonNull::as_ptr))
    }

    /// `___slab_alloc`: closes the slot, then pops from what was pushed
    /// meanwhile, or refills the CPU freelist from the slab's remote frees,
    /// the node partial list, or a new slab, and pops.
    #[inline(never)]
    fn alloc_slow(
        &self,
        cache: &Cache,
        slot: &CpuSlot,
        cpu: usize,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        if cache.debug {
            return self.alloc_debug(cache, gfp);
        }
        let obj = self.refill_and_pop(cache, slot, cpu, gfp)?;
        self.hand_out(cache, obj, gfp)
    }

    /// The body of [`SlabAllocator::alloc_slow`]: the object popped.
    fn refill_and_pop(
        &self,
        cache: &Cache,
        slot: &CpuSlot,
        cpu: usize,
        gfp: Gfp,
    ) -> Result<*mut u8, SlabError> {
        let mut c = slot.close();
        cache.check_alive()?;
        self.refill(cache, &mut c, cpu, gfp)
    }

    /// The body of [`SlabAllocator::refill_and_pop`] on a CPU slab its
    /// caller owns (a closed slot's, or a [`crate::LocalCache`]'s, whose
    /// "CPU" is [`LOCAL`]): pops what was pushed meanwhile, or refills from
    /// the slab's remote frees, the node partial list, or a new slab, and pops.
    pub(crate) fn refill(
        &self,
        cache: &Cache,
        c: &mut CpuSlab,
        cpu: usize,
        gfp: Gfp,
    ) -> Result<*mut u8, SlabError> {
        if let Some(obj) = self.cpu_pop(cache, c)? {
            return Ok(obj);
        }
        {
            let mut n = cache.node.lock();
            if c.slab != NO_SLAB
                && let Some(meta) = self.meta(c.slab)
            {
                // `get_freelist`: take over the objects freed remotely.
                let (remote, _) = meta.take_fc(true);
                if remote != NIL {
                    c.freelist = remote;
                } else {
                    let d = self.deactivate(cache, c, &mut n);
                    debug_assert_eq!(d, NO_SLAB);
                }
            }
            if c.freelist == NIL {
                c.clear();
                if let Some(id) = self.pop_partial(&mut n) {
                    self.freeze(cache, c, &mut n, id, cpu);
                }
            }
        }
        if let Some(obj) = self.cpu_pop(cache, c)? {
            return Ok(obj);
        }
        let id = self.new_slab(cache, gfp)?;
        let Some(meta) = self.meta(id) else {
            return Err(SlabError::TooMany("slabs"));
        };
        {
            let mut n = cache.node.lock();
            Self::account_new(&mut n, meta);
            self.freeze(cache, c, &mut n, id, cpu);
        }
        self.cpu_pop(cache, c)?.ok_or_else(|| SlabError::Corrupted {
            cache: cache.name.clone(),
            object: 0,
        })
    }

    /// The slow path of [`crate::LocalCache::alloc`]: a debug cache's
    /// allocation, or a refill of the local slab `c` and its first object.
    #[inline(never)]
    pub(crate) fn local_alloc_slow(
        &self,
        cache: &Cache,
        c: &mut CpuSlab,
        gfp: Gfp,
    ) -> Result<NonNull<u8>, SlabError> {
        // A cache destroyed while the local cache held no slab.
        cache.check_alive()?;
        if cache.debug {
            return self.alloc_debug(cache, gfp);
        }
        let obj = self.refill(cache, c, LOCAL, gfp)?;
        self.hand_out(cache, obj, gfp)
    }

    /// Gives a [`crate::LocalCache`]'s slab back to the node
    /// (`deactivate_slab`), freeing it if it is empty beyond `min_partial`.
    pub(crate) fn release_local(&self, cache: &Cache, c: &mut CpuSlab) {
        let discard = self.deactivate(cache, c, &mut cache.node.lock());
        if discard != NO_SLAB {
            self.free_slab(discard);
        }
    }

    fn account_new(n: &mut Node, meta: &SlabMeta) {
        n.nr_slabs += 1;
        n.total_objects += meta.objects.load(Relaxed) as usize;
        n.pages += 1 << meta.order.load(Relaxed);
    }

    /// Makes partial slab `id` the CPU slab of `c`.
    fn freeze(&self, cache: &Cache, c: &mut CpuSlab, _locked: &mut Node, id: u32, cpu: usize) {
        // The fast paths skip the debug checks because of this.
        debug_assert!(!cache.debug, "a debug cache's slab frozen to a CPU");
        let Some(meta) = self.meta(id) else { return };
        meta.state.store(frozen(cpu), Relaxed);
        c.slab = id;
        c.base = meta.base.load(Relaxed);
        c.len = meta.len();
        c.last = cache.last_off(meta.objects.load(Relaxed) as usize);
        c.freelist = meta.take_fc(true).0;
    }

    /// `deactivate_slab`: gives the CPU slab back to the node; returns the
    /// slab id if it must be discarded (already unlinked), else `NO_SLAB`.
    pub(crate) fn deactivate(&self, cache: &Cache, c: &mut CpuSlab, n: &mut Node) -> u32 {
        let id = c.slab;
        let Some(meta) = (id != NO_SLAB).then(|| self.meta(id)).flatten() else {
            c.clear();
            return NO_SLAB;
        };
        let mem = Self::cpu_mem(c).filter(|_| c.freelist != NIL);
        let (tail, steps) = match &mem {
            Some(mem) => {
                let (tail, steps, cut) = Self::cpu_list_end(cache, c, mem);
                if cut {
                    mem.write_word(tail + cache.layout.offset, NIL);
                }
                (tail, steps)
            }
            None => (NIL, 0),
        };
        // Splice it before the slab's own list and unfreeze, in one
        // compare-exchange against concurrent remote frees.
        let nr_free = loop {
            let fc = meta.fc.load(Acquire);
            let (head, nr, _) = fc_unpack(fc);
            let new = match &mem {
                Some(mem) => {
                    mem.write_word(tail + cache.layout.offset, head);
                    fc_pack(c.freelist, nr + steps, false)
                }
                None => fc_pack(head, nr, false),
            };
            if meta.fc.compare_exchange(fc, new, AcqRel, Relaxed).is_ok() {
                break nr + steps;
            }
        };
        c.clear();
        if nr_free == meta.objects.load(Relaxed) && n.nr_partial >= cache.min_partial {
            self.unlink_dead(cache, n, id, meta);
            return id;
        }
        if nr_free > 0 {
            meta.state.store(S_PARTIAL, Relaxed);
            self.add_partial(n, id, false);
        } else {
            meta.state.store(S_FULL, Relaxed);
        }
        NO_SLAB
    }

    /// Takes slab `id` out of the counters and marks it dead (it is on no list).
    fn unlink_dead(&self, _cache: &Cache, n: &mut Node, _id: u32, meta: &SlabMeta) {
        let objects = meta.objects.load(Relaxed) as usize;
        n.nr_slabs -= 1;
        n.total_objects -= objects;
        n.pages -= 1 << meta.order.load(Relaxed);
        meta.state.store(S_DEAD, Relaxed);
        meta.set_fc(NIL, 0, false);
    }

    fn add_partial(&self, n: &mut Node, id: u32, tail: bool) {
        let Some(meta) = self.meta(id) else { return };
        if tail {
            meta.next.store(NO_SLAB, Relaxed);
            meta.prev.store(n.tail, Relaxed);
            match self.meta(n.tail) {
                Some(t) => t.next.store(id, Relaxed),
                None => n.head = id,
            }
            n.tail = id;
        } else {
            meta.prev.store(NO_SLAB, Relaxed);
            meta.next.store(n.head, Relaxed);
            match self.meta(n.head) {
                Some(h) => h.prev.store(id, Relaxed),
                None => n.tail = id,
            }
            n.head = id;
        }
        n.nr_partial += 1;
    }

    fn remove_partial(&self, n: &mut Node, id: u32) {
        let Some(meta) = self.meta(id) else { return };
        let (prev, next) = (meta.prev.load(Relaxed), meta.next.load(Relaxed));
        match self.meta(prev) {
            Some(p) => p.next.store(next, Relaxed),
            None => n.head = next,
        }
        match self.meta(next) {
            Some(x) => x.prev.store(prev, Relaxed),
            None => n.tail = prev,
        }
        meta.next.store(NO_SLAB, Relaxed);
        meta.prev.store(NO_SLAB, Relaxed);
        n.nr_partial -= 1;
    }

    fn pop_partial(&self, n: &mut Node) -> Option<u32> {
        let id = n.head;
        if id == NO_SLAB {
            return None;
        }
        self.remove_partial(n, id);
        Some(id)
    }

    /// The partial slabs of a node, head first (for checks and shrink).
    pub(crate) fn partial_ids(&self, n: &Node, mut f: impl FnMut(u32)) {
        let mut id = n.head;
        let mut steps = 0;
        while id != NO_SLAB && steps <= n.nr_partial {
            f(id);
            id = self.meta(id).map_or(NO_SLAB, |m| m.next.load(Relaxed));
            steps += 1;
        }
    }

    /// `allocate_slab` + `shuffle_freelist`/`setup_object`: a new slab with
    /// every object on its own freelist, in address order. Not yet counted
    /// in the node; its state is `S_FULL` until the caller places it.
    fn new_slab(&self, cache: &Cache, gfp: Gfp) -> Result<u32, SlabError> {
        let l = &cache.layout;
        let page_gfp = (gfp & GFP_SLAB_PASS) | cache.allocflags;
        let (pfn, order) = match self
            .pages
            .alloc_pages(page_gfp | Gfp::NOWARN | Gfp::NORETRY, l.order)
        {
            Ok(pfn) => (pfn, l.order),
            Err(e) if l.min_order >= l.order => return Err(SlabError::NoMemory(e)),
            Err(_) => match self.pages.alloc_pages(page_gfp, l.min_order) {
                Ok(pfn) => (pfn, l.min_order),
                Err(e) => return Err(SlabError::NoMemory(e)),
            },
        };
        let Some(base) = self.block_base(pfn, order) else {
            let _ = self.pages.free_pages(pfn, order);
            return Err(SlabError::NoMemory(kmm_page::PageError::NoAddress(pfn)));
        };
        let id = match self.alloc_slab_id() {
            Some(id) => id,
            None => {
                let _ = self.pages.free_pages(pfn, order);
                return Err(SlabError::TooMany("slabs"));
            }
        };
        let Some(meta) = self.meta(id) else {
            let _ = self.pages.free_pages(pfn, order);
            return Err(SlabError::TooMany("slabs"));
        };
        let objects = (PAGE_SIZE << order) / l.size;
        meta.pfn.store(pfn.0, Relaxed);
        meta.base.store(base.as_ptr(), Relaxed);
        meta.order.store(order, Relaxed);
        meta.objects.store(objects as u32, Relaxed);
        meta.state.store(S_FULL, Relaxed);
        meta.next.store(NO_SLAB, Relaxed);
        meta.prev.store(NO_SLAB, Relaxed);
        // The frames say which slab they belong to (`slab_set_pfmemalloc`, `__folio_set_slab`).
        let word = Self::frame_word(cache, id);
        for i in 0..(1usize << order) {
            if let Some(f) = self.pages.pfn_to_page(Pfn(pfn.0 + i)) {
                f.set_private(word);
                if i == 0 {
                    f.set_page_type(PageType::Slab);
                    f.set(PageFlags::SLAB);
                    if order > 0 {
                        f.set(PageFlags::HEAD);
                    }
                } else {
                    f.set(PageFlags::SLAB | PageFlags::TAIL);
                }
            }
        }
        meta.cache.store(cache.id + 1, Relaxed);
        let Some(mem) = Self::slab_mem(meta) else {
            return Err(SlabError::TooMany("slabs"));
        };
        if cache.flags.contains(SlabFlags::POISON) {
            mem.fill(0, mem.len(), POISON_INUSE);
        }
        if cache.debug || cache.ctor.is_some() {
            for k in 0..objects {
                let off = k * l.size + l.red_left_pad;
                if cache.debug {
                    self.init_object(cache, &mem, off, false);
                }
                if let (Some(ctor), Some(p)) = (cache.ctor, mem.ptr(off)) {
                    ctor(p);
                }
            }
        }
        // The freelist, in address order; after the constructors, which may
        // write anywhere in their objects (a free pointer inside the object
        // is the allocator's until the object is handed out).
        mem.write_chain(l.red_left_pad, l.size, objects, l.offset, NIL);
        meta.set_fc(l.red_left_pad, objects as u32, false);
        Ok(id)
    }

    /// `__free_slab`: clears the frames and gives the pages back (the slab is dead).
    pub(crate) fn free_slab(&self, id: u32) {
        let Some(meta) = self.meta(id) else { return };
        let pfn = Pfn(meta.pfn.load(Relaxed));
        let order = meta.order.load(Relaxed);
        for i in 0..(1usize << order) {
            if let Some(f) = self.pages.pfn_to_page(Pfn(pfn.0 + i)) {
                f.clear(PageFlags::SLAB | PageFlags::HEAD | PageFlags::TAIL);
                f.set_private(0);
                if i == 0 {
                    f.set_page_type(PageType::None);
                }
            }
        }
        meta.cache.store(0, Relaxed);
        meta.base.store(core::ptr::null_mut(), Relaxed);
        if self.pages.free_pages(pfn, order).is_err() {
            self.internal_errors.fetch_add(1, Relaxed);
        }
        self.release_slab_id(id);
    }

    /// Frees a chain of dead slabs linked through `next`.
    fn free_slab_chain(&self, mut id: u32) {
        while id != NO_SLAB {
            let next = self.meta(id).map_or(NO_SLAB, |m| m.next.load(Relaxed));
            self.free_slab(id);
            id = next;
        }
    }

    /// `__kmem_cache_do_shrink`: flushes every CPU slab, frees every empty
    /// slab regardless of `min_partial`; `true` if no slab remains.
    pub(crate) fn shrink(&self, cache: &Cache) -> bool {
        let mut chain = NO_SLAB;
        let mut push = |this: &Self, id: u32| {
            if let Some(m) = this.meta(id) {
                m.next.store(chain, Relaxed);
            }
            chain = id;
        };
        for mut c in CpuSlot::close_all(self.slots(cache), &*self.cpus) {
            let mut n = cache.node.lock();
            let d = self.deactivate(cache, &mut c, &mut n);
            if d != NO_SLAB {
                push(self, d);
            }
        }
        let empty_left;
        {
            let mut n = cache.node.lock();
            let mut id = n.head;
            let mut steps = 0;
            let bound = n.nr_partial;
            while id != NO_SLAB && steps < bound {
                let Some(m) = self.meta(id) else { break };
                let next = m.next.load(Relaxed);
                if m.nr_free() == m.objects.load(Relaxed) {
                    self.remove_partial(&mut n, id);
                    self.unlink_dead(cache, &mut n, id, m);
                    push(self, id);
                }
                id = next;
                steps += 1;
            }
            empty_left = n.nr_slabs == 0;
        }
        self.free_slab_chain(chain);
        empty_left
    }

    /// Objects allocated to callers, and the node counters, with every lock
    /// of the cache held: `(live, total_objects, nr_slabs, pages)`.
    pub(crate) fn cache_counts(&self, cache: &Cache) -> (usize, usize, usize, usize) {
        let guards = CpuSlot::close_all(self.slots(cache), &*self.cpus);
        let n = cache.node.lock();
        let free = self.free_objects(cache, &n, &guards);
        let live = n.total_objects.saturating_sub(free);
        (live, n.total_objects, n.nr_slabs, n.pages)
    }

    /// The free objects of a cache whose CPU slots the caller holds closed,
    /// with its node lock held: the CPU freelists, the frozen slabs' own
    /// lists, and the partial slabs (`count_partial`); full slabs have none.
    /// Frees to partial slabs take no lock, so under concurrent frees the
    /// count is a moment's snapshot, as Linux's is.
    pub(crate) fn free_objects(&self, cache: &Cache, n: &Node, cpus: &[CpuGuard<'_>]) -> usize {
        let mut free = 0usize;
        for c in cpus {
            free += self.cpu_free(cache, c);
            if let Some(meta) = self.meta(c.slab) {
                free += meta.nr_free() as usize;
            }
        }
        self.partial_ids(n, |id| {
            if let Some(meta) = self.meta(id) {
                free += meta.nr_free() as usize;
            }
        });
        free
    }

    /// The length of a closed slot's freelist (the fast paths keep no count).
    pub(crate) fn cpu_free(&self, cache: &Cache, c: &CpuSlab) -> usize {
        match Self::cpu_mem(c).filter(|_| c.freelist != NIL) {
            Some(mem) => Self::cpu_list_end(cache, c, &mem).1 as usize,
            None => 0,
        }
    }

    /// The last object of a closed slot's non-empty freelist and the list's
    /// length: a walk of at most a slab's objects that stops early at a free
    /// pointer leaving the objects (overwritten after a free). `cut` says
    /// the walk stopped with the tail's free pointer not `NIL`.
    fn cpu_list_end(cache: &Cache, c: &CpuSlab, mem: &SlabMem) -> (usize, u32, bool) {
        let bound = c.len / cache.layout.size;
        let mut tail = c.freelist;
        let mut steps = 1usize;
        loop {
            let next = mem.read_word(tail + cache.layout.offset).unwrap_or(NIL);
            if next == NIL {
                return (tail, steps as u32, false);
            }
            if next > c.last || steps >= bound {
                return (tail, steps as u32, true);
            }
            tail = next;
            steps += 1;
        }
    }

    /// `alloc_single_from_partial` / `alloc_single_from_new_slab`: the debug
    /// path, one object at a time under the node lock, checked before it is
    /// handed out.
    fn alloc_debug(&self, cache: &Cache, gfp: Gfp) -> Result<NonNull<u8>, SlabError> {
        for _ in 0..2 {
            {
                let mut n = cache.node.lock();
                cache.check_alive()?;
                let id = n.head;
                if let Some(meta) = self.meta(id)
                    && let Some(mem) = Self::slab_mem(meta)
                {
                    let (off, nr, _) = meta.fc();
                    let addr = Cache::addr_of(&mem, off);
                    let last = cache.last_off(meta.objects.load(Relaxed) as usize);
                    if off == NIL || !cache.is_object_start(off, last) {
                        // The list head itself is bad.
                        return Err(self.drop_corrupt_freelist(cache, &mut n, id, meta, addr));
                    }
                    if let Err(e) = self.check_free_object(cache, &mem, off) {
                        // `restore_bytes`: repair, keep the object free, report.
                        self.init_object(cache, &mem, off, false);
                        return Err(e);
                    }
                    let next = mem.read_word(off + cache.layout.offset).unwrap_or(NIL - 1);
                    if next != NIL && !cache.is_object_start(next, last) {
                        return Err(self.drop_corrupt_freelist(cache, &mut n, id, meta, addr));
                    }
                    let nr_free = nr - 1;
                    meta.set_fc(next, nr_free, false);
                    if nr_free == 0 {
                        self.remove_partial(&mut n, id);
                        meta.state.store(S_FULL, Relaxed);
                    }
                    self.init_object(cache, &mem, off, true);
                    self.store_user(cache, &mem, off, 0);
                    if gfp.contains(Gfp::ZERO) {
                        mem.fill(off, cache.layout.object_size, 0);
                    }
                    return mem.ptr(off).ok_or(SlabError::ForeignPointer { addr });
                }
            }
            let id = self.new_slab(cache, gfp)?;
            let mut n = cache.node.lock();
            if let Some(meta) = self.meta(id) {
                Self::account_new(&mut n, meta);
                meta.state.store(S_PARTIAL, Relaxed);
                self.add_partial(&mut n, id, false);
            }
        }
        Err(SlabError::Corrupted {
            cache: cache.name.clone(),
            object: 0,
        })
    }

    /// `init_object`: red zones (active or inactive) and, for a free object, poison.
    fn init_object(&self, cache: &Cache, mem: &SlabMem, off: usize, active: bool) {
        let l = &cache.layout;
        let red = if active {
            SLUB_RED_ACTIVE
        } else {
            SLUB_RED_INACTIVE
        };
        if cache.flags.contains(SlabFlags::RED_ZONE) {
            mem.fill(off - l.red_left_pad, l.red_left_pad, red);
            mem.fill(off + l.object_size, l.inuse - l.object_size, red);
        }
        if l.object_poison && !active && l.object_size > 0 {
            mem.fill(off, l.object_size - 1, POISON_FREE);
            mem.write_byte(off + l.object_size - 1, POISON_END);
        }
    }

    /// `check_object` for a free object about to be handed out: poison and inactive red zones.
    fn check_free_object(&self, cache: &Cache, mem: &SlabMem, off: usize) -> Result<(), SlabError> {
        self.check_red_zones(cache, mem, off, SLUB_RED_INACTIVE)?;
        let l = &cache.layout;
        if l.object_poison && l.object_size > 0 {
            let bad = mem
                .first_mismatch(off, l.object_size - 1, POISON_FREE)
                .or_else(|| {
                    let last = off + l.object_size - 1;
                    mem.read_byte(last)
                        .filter(|&b| b != POISON_END)
                        .map(|b| (last, b))
                });
            if let Some((at, byte)) = bad {
                return Err(SlabError::Poisoned {
                    cache: cache.name.clone(),
                    object: Cache::addr_of(mem, off),
                    offset: at - off,
                    byte,
                });
            }
        }
        Ok(())
    }

    /// Checks the left and right red zones of the object at `off` for `red`.
    fn check_red_zones(
        &self,
        cache: &Cache,
        mem: &SlabMem,
        off: usize,
        red: u8,
    ) -> Result<(), SlabError> {
        let l = &cache.layout;
        if !cache.flags.contains(SlabFlags::RED_ZONE) {
            return Ok(());
        }
        let bad = mem
            .first_mismatch(off - l.red_left_pad, l.red_left_pad, red)
            .or_else(|| mem.first_mismatch(off + l.object_size, l.inuse - l.object_size, red));
        match bad {
            Some((at, byte)) => Err(SlabError::RedZone {
                cache: cache.name.clone(),
                object: Cache::addr_of(mem, off),
                offset: at as isize - off as isize,
                byte,
            }),
            None => Ok(()),
        }
    }

    /// `set_track`: records the CPU and a sequence number of the last
    /// allocation (`which == 0`) or free (`which == 1`) of the object.
    fn store_user(&self, cache: &Cache, mem: &SlabMem, off: usize, which: usize) {
        if !cache.flags.contains(SlabFlags::STORE_USER) {
            return;
        }
        let at = off + cache.layout.info_end() + which * TRACK_SIZE;
        let when = self.track_seq.fetch_add(1, Relaxed);
        mem.write_word(at, 0);
        mem.write_word(at + 8, self.cpus.current_cpu());
        mem.write_word(at + 16, 0);
        mem.write_word(at + 24, when);
    }

    /// The `STORE_USER` tracks of the object at `off` of the slab behind `meta`
    /// (caller holds the node lock): `(cpu, sequence)` of the last allocation and free.
    pub(crate) fn read_tracks(
        &self,
        cache: &Cache,
        meta: &SlabMeta,
        off: usize,
    ) -> Option<[(usize, usize); 2]> {
        let mem = Self::slab_mem(meta)?;
        let at = off + cache.layout.info_end();
        let get = |w: usize| -> Option<(usize, usize)> {
            let t = at + w * TRACK_SIZE;
            Some((mem.read_word(t + 8)?, mem.read_word(t + 24)?))
        };
        Some([get(0)?, get(1)?])
    }

    /// For `ksize`/`krealloc`/`cache_of`: the cache and object offset of a
    /// live slab object at `addr`, validated under the node lock.
    pub(crate) fn object_of(&self, addr: usize) -> Result<(&Arc<Cache>, usize), SlabError> {
        let Lookup::Slab { id, .. } = self.lookup(addr)? else {
            return Err(SlabError::ForeignPointer { addr });
        };
        // `let … else`, not `ok_or`: see `free_large`.
        let Some(meta) = self.meta(id) else {
            return Err(SlabError::ForeignPointer { addr });
        };
        let owner = meta.cache.load(Relaxed);
        let Some(cache) = owner.checked_sub(1).and_then(|c| self.cache_by_id(c)) else {
            return Err(SlabError::ForeignPointer { addr });
        };
        let (off, _, _) = {
            let _n = cache.node.lock();
            self.validate(cache, meta, addr)?
        };
        Ok((cache, off))
    }

    /// Copies `n` bytes between two live allocations (for `krealloc`).
    pub(crate) fn copy_object(
        &self,
        src: (&SlabMem, usize),
        dst: (&SlabMem, usize),
        n: usize,
    ) -> bool {
        src.0.copy_to(src.1, dst.0, dst.1, n)
    }

    /// The memory of slab `id`, which holds the live object at `addr` (kept
    /// alive by that object), and the object's offset in it.
    pub(crate) fn object_mem(&self, (addr, id): (usize, u32)) -> Option<(SlabMem, usize)> {
        let meta = self.meta(id)?;
        let mem = Self::slab_mem(meta)?;
        Some((mem, addr.wrapping_sub(mem.base().as_ptr().addr())))
    }

    /// For `krealloc`: the cache, slab memory and offset of the object at
    /// `addr` in slab `id` (as [`SlabAllocator::lookup`] found it), which the
    /// caller holds, so that its slab stays live: validated without the node
    /// lock, as a free is.
    pub(crate) fn held_object(
        &self,
        addr: usize,
        id: u32,
    ) -> Result<(&Arc<Cache>, SlabMem, usize), SlabError> {
        // `let … else`, not `ok_or`: see `free_large`.
        let Some(meta) = self.meta(id) else {
            return Err(SlabError::ForeignPointer { addr });
        };
        let owner = meta.cache.load(Relaxed).checked_sub(1);
        let Some(cache) = owner.and_then(|c| self.cache_by_id(c)) else {
            return Err(SlabError::ForeignPointer { addr });
        };
        let (off, mem, _) = self.validate(cache, meta, addr)?;
        Ok((cache, mem, off))
    }

    /// Checks a cache's structure with all its locks held.
    pub(crate) fn check_cache(&self, cache: &Cache) -> Result<(), alloc::string::String> {
        use alloc::format;
        let mut guards = CpuSlot::close_all(self.slots(cache), &*self.cpus);
        let n = cache.node.lock();
        let name = &cache.name;
        // The fast paths skip the debug checks only because of this.
        if cache.debug
            && let Some(cpu) = guards
                .iter()
                .position(|g| g.slab != NO_SLAB || !g.base.is_null() || g.freelist != NIL)
        {
            return Err(format!("{name}: debug cache holds a CPU slab on CPU {cpu}"));
        }
        // Every free object's address, to find one on two lists.
        let mut listed_free = alloc::collections::BTreeSet::new();
        let mut walk = |mem: &SlabMem,
                        head: usize,
                        last: usize,
                        what: &str|
         -> Result<usize, alloc::string::String> {
            let mut cur = head;
            let mut count = 0usize;
            while cur != NIL {
                if !cache.is_object_start(cur, last) {
                    return Err(format!("{name}: {what} holds bad offset {cur}"));
                }
                if !listed_free.insert(Cache::addr_of(mem, cur)) {
                    return Err(format!("{name}: {what} has a cycle or shares {cur}"));
                }
                count += 1;
                cur = mem.read_word(cur + cache.layout.offset).unwrap_or(NIL - 1);
            }
            Ok(count)
        };
        let mut slabs = 0usize;
        let mut objects = 0usize;
        let mut free = 0usize;
        let mut cpu_listed = 0usize;
        let mut pages = 0usize;
        let mut partial = 0usize;
        let mut local_own = 0usize;
        // Only the ids handed out so far, not the whole first chunk of the
        // table: every slab of the cache was given its id before the locks
        // above were taken, or after, when it is not counted either.
        for (id, meta) in self.slabs.iter().take(self.slab_ids_issued()) {
            if meta.cache.load(Relaxed) != cache.id + 1 {
                continue;
            }
            let state = meta.state.load(Relaxed);
            if state == S_DEAD {
                return Err(format!("{name}: dead slab {id} still owned"));
            }
            let Some(mem) = Self::slab_mem(meta) else {
                return Err(format!("{name}: slab {id} has no memory"));
            };
            slabs += 1;
            let objs = meta.objects.load(Relaxed) as usize;
            objects += objs;
            let order = meta.order.load(Relaxed);
            pages += 1 << order;
            if objs != (PAGE_SIZE << order) / cache.layout.size {
                return Err(format!(
                    "{name}: slab {id} has {objs} objects for order {order}"
                ));
            }
            let last = cache.last_off(objs);
            let (head, nr_free, frozen_bit) = meta.fc();
            let own = walk(&mem, head, last, "slab freelist")?;
            if own != nr_free as usize {
                return Err(format!(
                    "{name}: slab {id} freelist has {own}, counted {nr_free}"
                ));
            }
            if frozen_bit != (state >= S_FROZEN) {
                return Err(format!(
                    "{name}: slab {id} in state {state} has frozen bit {frozen_bit}"
                ));
            }
            free += own;
            let pfn = meta.pfn.load(Relaxed);
            let word = Self::frame_word(cache, id as u32);
            for i in 0..(1usize << order) {
                let f = self
                    .pages
                    .pfn_to_page(Pfn(pfn + i))
                    .ok_or(format!("{name}: slab {id} frame missing"))?;
                let ok = f.test(PageFlags::SLAB)
                    && f.private() == word
                    && (i == 0) == (f.page_type() == PageType::Slab)
                    && (i > 0) == f.test(PageFlags::TAIL);
                if !ok {
                    return Err(format!("{name}: slab {id} frame {i} badly marked: {f:?}"));
                }
            }
            match state {
                S_FULL if own != 0 => {
                    return Err(format!("{name}: full slab {id} has free objects"));
                }
                S_PARTIAL => {
                    partial += 1;
                    if own == 0 {
                        return Err(format!("{name}: partial slab {id} is full"));
                    }
                }
                // A local cache's slab: its CPU freelist is the holder's
                // alone, out of sight, and every object on either of its
                // lists counts as allocated until the holder gives it back.
                s if s == frozen(LOCAL) => local_own += own,
                s if s >= S_FROZEN => {
                    let cpu = (s - S_FROZEN) as usize;
                    let c = guards
                        .get_mut(cpu)
                        .ok_or(format!("{name}: slab {id} frozen by unknown cpu"))?;
                    if c.slab != id as u32 {
                        return Err(format!(
                            "{name}: slab {id} frozen by cpu {cpu}, which holds {}",
                            c.slab
                        ));
                    }
                    let count = walk(&mem, c.freelist, last, "cpu freelist")?;
                    cpu_listed += count;
                    if own + count > objs {
                        return Err(format!(
                            "{name}: slab {id} has more free objects than objects"
                        ));
                    }
                }
                _ => {}
            }
        }
        let mut listed = 0usize;
        let mut bad = None;
        self.partial_ids(&n, |id| {
            listed += 1;
            if self.meta(id).map(|m| m.state.load(Relaxed)) != Some(S_PARTIAL) {
                bad = Some(id);
            }
        });
        if let Some(id) = bad {
            return Err(format!(
                "{name}: slab {id} on the partial list is not partial"
            ));
        }
        if listed != n.nr_partial || partial != n.nr_partial {
            return Err(format!(
                "{name}: nr_partial {} but {listed} listed, {partial} partial",
                n.nr_partial
            ));
        }
        if (slabs, objects, pages) != (n.nr_slabs, n.total_objects, n.pages) {
            return Err(format!(
                "{name}: counted slabs/objects/pages {:?}, node says {:?}",
                (slabs, objects, pages),
                (n.nr_slabs, n.total_objects, n.pages)
            ));
        }
        let counted = self.free_objects(cache, &n, &guards);
        if counted + local_own != free + cpu_listed {
            return Err(format!(
                "{name}: {} free objects on the lists, {} of them a local cache's, {counted} counted",
                free + cpu_listed,
                local_own
            ));
        }
        for (cpu, c) in guards.iter().enumerate() {
            if c.slab != NO_SLAB
                && self.meta(c.slab).map(|m| m.state.load(Relaxed)) != Some(frozen(cpu))
            {
                return Err(format!(
                    "{name}: cpu {cpu} holds slab {} that is not frozen by it",
                    c.slab
                ));
            }
        }
        Ok(())
    }
}

/// Error values built off the fast paths: building one clones the cache
/// name's `Arc`, which the hot code should neither inline nor pay for.
pub(crate) mod cold {
    use super::Cache;
    use crate::SlabError;

    #[cold]
    #[inline(never)]
    pub(super) fn not_object_start(cache: &Cache, addr: usize) -> SlabError {
        SlabError::NotObjectStart {
            addr,
            cache: cache.name.clone(),
        }
    }

    /// A free into the CPU's slab at offset `off` that is refused: not an
    /// object start, or the object freed last (a double free).
    #[cold]
    #[inline(never)]
    pub(super) fn bad_cpu_free(cache: &Cache, addr: usize, off: usize, last: usize) -> SlabError {
        if cache.is_object_start(off, last) {
            double_free(cache, addr)
        } else {
            not_object_start(cache, addr)
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn double_free(cache: &Cache, object: usize) -> SlabError {
        SlabError::DoubleFree {
            cache: cache.name.clone(),
            object,
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn corrupted(cache: &Cache, object: usize) -> SlabError {
        SlabError::Corrupted {
            cache: cache.name.clone(),
            object,
        }
    }
}
