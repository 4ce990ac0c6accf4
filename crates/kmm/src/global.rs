//! [`GlobalKmalloc`]: kmalloc as Rust's global allocator (feature `std`).
//!
//! The first allocation boots a machine on host memory whose CPUs are host
//! threads (`kmm_host::HostCpus`); every later allocation is a `kmalloc`, every
//! deallocation a `kfree` (`mm/slub.c`). Each thread is bound to a CPU of the
//! machine, round-robin from CPU 1, the first time it allocates, so threads
//! spread over the per-CPU slabs and page lists as tasks spread over CPUs. A
//! thread that finds its CPU free holds it alone (`HostCpus::bind_exclusive`)
//! until it exits, so its slab fast paths need no locked instructions, as on
//! a kernel CPU; otherwise (CPU 0, where unbound threads run, or a CPU
//! another thread holds) it shares a CPU. A thread binds on each machine it
//! allocates from, once.
//!
//! On a CPU held alone, `alloc` and `dealloc` first try the lockless halves
//! alone ([`SlabAllocator::kmalloc_fast`], [`SlabAllocator::kfree_fast_split`]),
//! inline and without a call, and leave every other case to an out-of-line
//! slow path: `alloc` is a leaf function, which a global allocator called
//! once per object needs to be as fast as glibc's `malloc`. A free of an
//! object outside the CPU's slab goes from the fast path straight to the
//! slab free ([`SlabAllocator::kfree_slow`]), without a second lookup. Allocations are
//! counted in a thread-local and added to the machine on the thread's slow
//! paths and when it exits (see [`GlobalKmallocStats::kmallocs`]). `realloc`
//! keeps a block while the bucket its old layout asked for holds the new
//! size, as `krealloc` does.
//!
//! Three cases go to [`std::alloc::System`] instead: allocations made while the
//! thread is already inside kmm (booting the machine, or a `Vec` the CPU
//! bookkeeping grows in the middle of a `kmalloc`), requests kmalloc cannot
//! serve (above `KMALLOC_MAX_SIZE` after alignment rounding, or out of memory),
//! and every allocation if the machine could not boot. A deallocation goes
//! back to kmalloc exactly when the pointer lies in the machine's direct map,
//! and to the system allocator otherwise.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, RefCell};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use crossbeam_utils::CachePadded;
use std::alloc::System;

use kmm_gfp::GFP_KERNEL;
use kmm_host::{CpuBinding, HostCpus};
use kmm_percpu::CpuContext;
use kmm_slab::{FastFree, KMALLOC_MAX_SIZE, SlabAllocator, SlabError, SlowFree};

use crate::{
    Arch, Backing, DefaultBuddy, MachineConfig, MemoryManager, MemorySpec, ZonedAllocator,
};

std::thread_local! {
    /// Whether this thread is inside kmm now (re-entrant calls go to `System`).
    static IN_KMM: Cell<bool> = const { Cell::new(false) };
    /// The machine total that [`PENDING`] belongs to: the machine whose
    /// slow path this thread took last. The fast path counts only for it.
    static PENDING_FOR: Cell<Option<&'static AtomicUsize>> = const { Cell::new(None) };
    /// Allocations this thread's fast paths served, not yet added to
    /// [`PENDING_FOR`]: a plain thread-local increment per allocation, added
    /// on the thread's next slow path and when it exits.
    static PENDING: Cell<usize> = const { Cell::new(0) };
    /// This thread's CPU bindings, one per machine it allocated from, given
    /// back when the thread exits (see [`Bindings`]).
    static BINDINGS: RefCell<Bindings> = const { RefCell::new(Bindings(Vec::new())) };
}

/// A thread's CPU bindings. Dropped when the thread exits: it adds the
/// thread's [`PENDING`] count to its machine, then gives the CPUs back
/// (before `kmm_host`'s own table goes, which the first binding registered
/// first).
struct Bindings(Vec<CpuBinding<'static>>);

impl Drop for Bindings {
    fn drop(&mut self) {
        settle(None, 0);
    }
}

/// How many allocations a thread keeps in [`PENDING`] before a slow path
/// of its adds them to the machine's total: one atomic addition per so
/// many slow-path allocations (a thread sharing its CPU takes the slow
/// path every time).
const PENDING_MAX: usize = 64;

/// Counts `extra` allocations for the machine whose total is `next`
/// (`None`: none; the thread is exiting), in [`PENDING`] while they stay
/// few. A change of machine, a full [`PENDING`], or an exiting thread (with
/// [`BINDINGS`] gone, nothing would add a count kept for later) adds what is
/// pending to the machine it belongs to.
fn settle(next: Option<&'static AtomicUsize>, extra: usize) {
    let exiting = BINDINGS.try_with(|_| ()).is_err();
    let last = PENDING_FOR.with(Cell::get);
    let pending = PENDING.with(Cell::get);
    if !exiting
        && let (Some(last), Some(next)) = (last, next)
        && ptr::eq(last, next)
    {
        let n = pending + extra;
        if n < PENDING_MAX {
            PENDING.with(|p| p.set(n));
        } else {
            PENDING.with(|p| p.set(0));
            next.fetch_add(n, Relaxed);
        }
        return;
    }
    if let Some(last) = last {
        last.fetch_add(pending, Relaxed);
    }
    PENDING.with(|p| p.set(0));
    PENDING_FOR.with(|f| f.set(if exiting { None } else { next }));
    if extra > 0
        && let Some(total) = next.or(last)
    {
        total.fetch_add(extra, Relaxed);
    }
}

/// The slab layer of a [`GlobalKmalloc`]'s machine.
type HostSlab = SlabAllocator<ZonedAllocator<DefaultBuddy>, HostCpus>;

/// The machine behind a [`GlobalKmalloc`].
struct Machine {
    /// The memory manager, on its `HostCpus` by type (the slab fast paths
    /// read the thread's CPU without an indirect call).
    mm: MemoryManager<DefaultBuddy, HostCpus>,
    /// The slab layer of `mm` (the same `Arc`), so that the hot paths need
    /// not test whether `mm` has one.
    slab: Arc<HostSlab>,
    /// Its CPUs, to bind threads to: leaked (a few words per booted
    /// allocator, which lives as long as the program) so that a thread's
    /// exclusive binding can live in a thread-local.
    cpus: &'static HostCpus,
    /// Allocations kmalloc served, but for those still pending in running
    /// threads ([`PENDING`]): leaked, like `cpus`, so that a thread-local
    /// can name it, and on a cache line of its own, which only the slow
    /// paths write.
    kmallocs: &'static AtomicUsize,
    /// The direct map's address range, `[start, end)`: the whole mapping,
    /// holes included (they are mapped inaccessible, so nothing else can
    /// be placed there).
    direct_map: core::ops::Range<usize>,
}

impl Machine {
    /// Whether the calling thread's [`PENDING`] count is this machine's.
    #[inline(always)]
    fn counts_pending(&self) -> bool {
        PENDING_FOR
            .with(Cell::get)
            .is_some_and(|f| ptr::eq(f, self.kmallocs))
    }

    /// Whether the calling thread holds its CPU of this machine alone, as
    /// its slab fast paths will see it (the one question they ask first, so
    /// the two share it).
    #[inline(always)]
    fn cpu_held_alone(&self) -> bool {
        matches!(self.slab.cpu_context().current_cpu_quick(), Some((_, true)))
    }
}

/// kmalloc as a [`GlobalAlloc`]: `#[global_allocator] static A: GlobalKmalloc = GlobalKmalloc::new(256 << 20, 4);`.
///
/// Alignment: kmalloc objects are aligned to 8 bytes, objects of a
/// power-of-two size are aligned to their size (`kmalloc`'s guarantee,
/// `include/linux/slab.h`), `kmalloc-96` and `kmalloc-192` objects to the
/// powers of two that divide their size, and large kmallocs to their block.
/// So a layout with an alignment above 8 is served as a kmalloc of its size
/// rounded up to a multiple of the alignment, which always lands in a size
/// class aligned enough.
pub struct GlobalKmalloc {
    /// Memory of the machine in bytes.
    mem: u64,
    /// CPUs of the machine.
    nr_cpus: usize,
    /// The machine, booted on first use. One test of the `Once` says
    /// whether it is there: a failed boot is kept in `failed`, not in the
    /// `Once`, so the hot paths do not test an `Option` inside it as well.
    machine: spin::Once<Machine>,
    /// Whether the machine could not boot (then every allocation goes to
    /// the system allocator without booting again).
    failed: AtomicBool,
    /// The CPU the next thread is bound to.
    next_cpu: AtomicUsize,
    /// Allocations the system allocator served.
    fallbacks: AtomicUsize,
    /// `kfree` calls that failed (a bug: they should never happen).
    errors: AtomicUsize,
}

impl core::fmt::Debug for GlobalKmalloc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GlobalKmalloc")
            .field("mem", &self.mem)
            .field("nr_cpus", &self.nr_cpus)
            .field("booted", &self.machine.is_completed())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Counters of a [`GlobalKmalloc`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalKmallocStats {
    /// Allocations `kmalloc` served. A thread counts its allocations in a
    /// thread-local first and adds them on its next slow path (every few
    /// dozen allocations at most, and whenever it refills a CPU slab) and
    /// when it exits, so the figure includes every allocation of the
    /// calling thread and of exited threads, and may lag by a few dozen per
    /// other running thread (as jemalloc's merged thread-cache counts do).
    pub kmallocs: usize,
    /// Allocations the system allocator served (re-entrant, too large, or no machine).
    pub fallbacks: usize,
    /// `kfree` calls that failed; always 0 unless kmm has a bug.
    pub errors: usize,
}

/// Runs `f` with this thread marked as inside kmm; `None` (run nothing) if it
/// already is, or if its thread-locals are gone.
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    let entered = IN_KMM.try_with(|flag| !flag.replace(true)).unwrap_or(false);
    if !entered {
        return None;
    }
    let result = f();
    let _ = IN_KMM.try_with(|flag| flag.set(false));
    Some(result)
}

impl GlobalKmalloc {
    /// An allocator whose machine (booted on first use) has `mem` bytes and
    /// `nr_cpus` CPUs (at least one).
    pub const fn new(mem: u64, nr_cpus: usize) -> GlobalKmalloc {
        GlobalKmalloc {
            mem,
            nr_cpus: if nr_cpus == 0 { 1 } else { nr_cpus },
            machine: spin::Once::new(),
            failed: AtomicBool::new(false),
            next_cpu: AtomicUsize::new(0),
            fallbacks: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
        }
    }

    /// The counters so far (see [`GlobalKmallocStats::kmallocs`] on what
    /// running threads have not added yet).
    pub fn stats(&self) -> GlobalKmallocStats {
        GlobalKmallocStats {
            kmallocs: self.machine.get().map_or(0, |m| {
                let mine = if m.counts_pending() {
                    PENDING.with(Cell::get)
                } else {
                    0
                };
                m.kmallocs.load(Relaxed) + mine
            }),
            fallbacks: self.fallbacks.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }

    /// The memory manager, once booted (`None` before the first allocation or
    /// if the machine could not boot). Allocating while using it is fine:
    /// the thread is not inside kmm then.
    pub fn memory_manager(&self) -> Option<&MemoryManager<DefaultBuddy, HostCpus>> {
        self.machine.get().map(|m| &m.mm)
    }

    /// The CPU the calling thread runs as on this allocator's machine, and
    /// whether it holds that CPU alone; `None` before the machine booted.
    /// A thread that has not allocated yet runs as CPU 0, shared.
    pub fn this_cpu(&self) -> Option<(usize, bool)> {
        Some(self.machine.get()?.cpus.current_cpu_exclusive())
    }

    /// The machine, booted on the first call; `None` if it could not boot.
    /// Runs inside [`guarded`], so everything boot allocates comes from the
    /// system allocator.
    #[inline]
    fn machine(&self) -> Option<&Machine> {
        match self.machine.get() {
            Some(machine) => Some(machine),
            None => self.boot(),
        }
    }

    /// Boots the machine unless a boot failed before; the first thread to
    /// get here boots it while any others wait (and try again themselves if
    /// it fails).
    #[cold]
    #[inline(never)]
    fn boot(&self) -> Option<&Machine> {
        if self.failed.load(Relaxed) {
            return None;
        }
        let booted: Result<&Machine, ()> = self.machine.try_call_once(|| {
            let cpus = Arc::new(HostCpus::new(self.nr_cpus));
            let config = MachineConfig {
                arch: Arch::X86_64,
                memory: MemorySpec::Size(self.mem),
                cpus: self.nr_cpus,
                pcp: Some(true),
                min_free_kbytes: None,
                backing: Backing::Host,
            };
            let mm = MemoryManager::boot_with(config, cpus.clone()).map_err(drop)?;
            let cpus: &'static HostCpus = Box::leak(Box::new(cpus));
            let slab = mm.slab.clone().ok_or(())?;
            let kmallocs: &'static AtomicUsize =
                Box::leak(Box::new(CachePadded::new(AtomicUsize::new(0))));
            let phys = mm.pages().phys();
            let direct_map = phys
                .linear_map_base()
                .zip(phys.linear_map_end())
                .ok_or(())?;
            Ok(Machine {
                mm,
                slab,
                cpus,
                kmallocs,
                direct_map: direct_map.0..direct_map.1,
            })
        });
        if booted.is_err() {
            self.failed.store(true, Relaxed);
        }
        booted.ok()
    }

    /// Binds the calling thread to a CPU of `machine` on its first
    /// allocation there (a thread-local read once it is bound: `HostCpus`'
    /// mirror of the machine it used last).
    #[inline]
    fn ensure_bound(&self, machine: &Machine) {
        if machine.slab.cpu_context().current_cpu_quick().is_none() {
            self.bind_searched(machine);
        }
    }

    /// [`GlobalKmalloc::ensure_bound`] when the thread's mirror answers for
    /// another machine or for none: a search of its bindings.
    #[cold]
    #[inline(never)]
    fn bind_searched(&self, machine: &Machine) {
        if machine.cpus.bound_cpu().is_none() {
            Self::bind_thread(machine.cpus, self.next_cpu.fetch_add(1, Relaxed));
        }
    }

    /// Binds the calling thread, the `n`th to allocate, to a CPU: CPU
    /// `(n + 1) % nr_cpus` alone if it is free and not CPU 0, else shared.
    /// The binding lasts until the thread exits ([`BINDINGS`]); with no
    /// thread-locals left to keep it in (the thread is exiting), it is given
    /// back at once.
    fn bind_thread(cpus: &'static HostCpus, n: usize) {
        let cpu = (n + 1) % cpus.nr_cpus();
        let binding = cpus.bind_exclusive(cpu).or_else(|_| cpus.bind(cpu));
        if let Ok(binding) = binding {
            // The vector grows inside kmm, so from the system allocator.
            let _ = BINDINGS.try_with(|b| b.borrow_mut().0.push(binding));
        }
    }

    /// The kmalloc size for `layout` (see the type's docs on alignment).
    fn kmalloc_size(layout: Layout) -> Option<usize> {
        let size = kmm_slab::kmalloc_size_for_align(layout.size().max(1), layout.align())?;
        (size <= KMALLOC_MAX_SIZE).then_some(size)
    }

    /// `kmalloc` for `layout`, or `None` to fall back.
    fn try_kmalloc(&self, layout: Layout, zero: bool) -> Option<NonNull<u8>> {
        let size = Self::kmalloc_size(layout)?;
        guarded(|| {
            let machine = self.machine()?;
            self.ensure_bound(machine);
            let slab = &machine.slab;
            let ptr = if zero {
                slab.kzalloc(size, GFP_KERNEL)
            } else {
                slab.kmalloc(size, GFP_KERNEL)
            }
            .ok()?;
            if ptr.as_ptr().addr() & (layout.align() - 1) != 0 {
                // Not expected (see the alignment argument); give it back.
                let _ = slab.kfree(Some(ptr));
                return None;
            }
            settle(Some(machine.kmallocs), 1);
            Some(ptr)
        })
        .flatten()
    }

    /// The fast path of `alloc`: an object popped off the thread's CPU
    /// freelist ([`SlabAllocator::kmalloc_fast`]), or `None` for
    /// [`GlobalKmalloc::allocate`]. It makes no call, so `alloc` saves no
    /// register when it returns from here; it needs no re-entrancy guard,
    /// as it allocates nothing and takes no lock (a pop in the middle of a
    /// slow path of the same thread is what an interrupt's `kmalloc` is to
    /// a kernel CPU). It serves only a thread that holds its CPU alone (a
    /// thread sharing one pops with a compare-exchange on the slow path:
    /// serving it here too would cost this path its registers), and only
    /// one whose last slow path was on this machine, since it counts the
    /// allocation in the thread's [`PENDING`], which belongs to that machine.
    /// Alignments above 8 take the slow path, which checks the object's
    /// alignment.
    #[inline(always)]
    fn alloc_fast(&self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.align() > 8 {
            return None;
        }
        let machine = self.machine.get()?;
        if !machine.counts_pending() || !machine.cpu_held_alone() {
            return None;
        }
        let ptr = machine.slab.kmalloc_fast(layout.size(), GFP_KERNEL)?;
        PENDING.with(|p| p.set(p.get() + 1));
        Some(ptr)
    }

    /// Allocates `layout` from kmalloc or the system allocator.
    ///
    /// # Safety
    ///
    /// As [`GlobalAlloc::alloc`].
    #[inline(never)]
    unsafe fn allocate(&self, layout: Layout, zero: bool) -> *mut u8 {
        if let Some(ptr) = self.try_kmalloc(layout, zero) {
            return ptr.as_ptr();
        }
        self.fallbacks.fetch_add(1, Relaxed);
        if zero {
            // SAFETY: the caller's layout promises are passed on unchanged.
            unsafe { System.alloc_zeroed(layout) }
        } else {
            // SAFETY: as above.
            unsafe { System.alloc(layout) }
        }
    }

    /// Whether `ptr` lies in the machine's direct map, so that it is (or
    /// was) kmalloc's and `dealloc` gives it to `kfree`: a compare against
    /// the map's bounds. Lets a program that dispatches between several
    /// allocators route a block without asking each.
    #[inline]
    pub fn owns(&self, ptr: *const u8) -> bool {
        self.owner_of(ptr.cast_mut()).is_some()
    }

    /// The machine, if `ptr` lies in its direct map (so kmalloc handed it
    /// out): a compare against the map's bounds.
    #[inline]
    fn owner_of(&self, ptr: *mut u8) -> Option<&Machine> {
        self.machine
            .get()
            .filter(|m| m.direct_map.contains(&ptr.addr()))
    }
}

// SAFETY: kmalloc objects are host memory of this process (the machine runs on
// `Backing::Host`), at least `kmalloc_size(layout) >= layout.size()` bytes,
// aligned to `layout.align()` (checked before returning on the slow path; on
// the fast path the alignment is at most 8, which every kmalloc object has),
// shared with no other live object until `kfree`. A pointer is passed to
// `kfree` exactly when it lies in the machine's direct map, which only
// kmalloc's pointers do (the system allocator never returns memory inside
// that mapping while it exists, and the machine lives as long as the
// allocator); `kfree_fast_split` takes only pointers whose frame lies in the
// direct map's quick range, and declines every other one, changing nothing
// (its `Slow` token, for such a pointer only, goes to `kfree_slow`, the rest
// of `kfree`). All others go back to `System`, which handed them out with the
// same layout.
unsafe impl GlobalAlloc for GlobalKmalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(ptr) = self.alloc_fast(layout) {
            return ptr.as_ptr();
        }
        // SAFETY: the caller's promises are passed on.
        unsafe { self.allocate(layout, false) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's promises are passed on.
        unsafe { self.allocate(layout, true) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(machine) = self.machine.get()
            && machine.cpu_held_alone()
            && let Some(p) = NonNull::new(ptr)
        {
            match machine.slab.kfree_fast_split(p) {
                FastFree::Freed => return,
                FastFree::Slow(free) => return self.free_to_slab(machine, free),
                FastFree::Declined => {}
            }
        }
        // SAFETY: the caller's promises are passed on.
        unsafe { self.deallocate(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // `krealloc`'s rule: the same block while its bucket holds the new
        // size. The bucket is worked out from the old layout, as `alloc`
        // asked for it, so it is never more than the block's real one (a
        // block shrunk in place keeps a bigger bucket than its layout says,
        // and only moves sooner for it); the alignment is the same.
        if let Some(old) = Self::kmalloc_size(layout)
            && kmm_slab::kmalloc_size_roundup(old).is_some_and(|bucket| new_size <= bucket)
            && self.owner_of(ptr).is_some()
        {
            return ptr;
        }
        // SAFETY: the caller promises `new_size` rounded to the alignment does
        // not overflow `isize`, and the alignment is a power of two.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: the caller's promises for `new_layout` hold (non-zero size).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least
            // `min(old, new)` bytes long.
            unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` is live with `layout`, given back once.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

impl GlobalKmalloc {
    /// The slow path of `dealloc` for a kmalloc object outside this CPU's
    /// slab, which the fast path found: the rest of its `kfree`
    /// (`__slab_free`), without looking the object up again.
    #[inline(never)]
    fn free_to_slab(&self, machine: &Machine, free: SlowFree) {
        self.kfree_guarded(|| machine.slab.kfree_slow(free));
    }

    /// Runs a `kfree` (or its rest) under the re-entrancy guard. One that
    /// refused (or re-entered) is counted, and its object leaked rather than
    /// kmalloc memory handed to the system allocator.
    #[inline]
    fn kfree_guarded(&self, kfree: impl FnOnce() -> Result<(), SlabError>) {
        if guarded(|| kfree().ok()).flatten().is_none() {
            self.errors.fetch_add(1, Relaxed);
        }
    }

    /// The slow path of `dealloc`: `kfree` of a kmalloc object, or the
    /// system allocator's `dealloc` of one of its blocks.
    ///
    /// # Safety
    ///
    /// As [`GlobalAlloc::dealloc`].
    #[inline(never)]
    unsafe fn deallocate(&self, ptr: *mut u8, layout: Layout) {
        if let Some(machine) = self.owner_of(ptr) {
            self.kfree_guarded(|| machine.slab.kfree(NonNull::new(ptr)));
            return;
        }
        // SAFETY: `ptr` is not kmalloc's, so the system allocator returned it
        // for `layout`, and the caller gives it back once.
        unsafe { System.dealloc(ptr, layout) }
    }
}
