//! Peer benches: kmm's kmalloc as Rust's global allocator beside talc and
//! the system allocator, on the workloads those peers publish.
//!
//! # How the three are compared
//!
//! One `#[global_allocator]` ([`Dispatch`]) serves every allocation of the
//! process. A static atomic selects where new allocations go: the system
//! allocator (the default, so criterion's own bookkeeping runs on it),
//! [`GlobalKmalloc`] (a 512 MiB, 2-CPU machine booted on host memory), or a
//! [`TalcLock`] over a 256 MiB static arena. A bench switches the selection on
//! for its timed loop only. Frees and reallocs are routed by address (inside
//! talc's arena, inside the kmm machine's direct map, or else the system
//! allocator's), so a block may be freed after the selection changed, and
//! criterion's allocations made while kmalloc or talc is selected are safe.
//! All three pay the dispatch: an atomic load per allocation; per free a
//! range check on talc's arena and, for kmalloc's and the system allocator's
//! blocks, `GlobalKmalloc`'s own direct-map check; per realloc both checks.
//! A realloc stays within one allocator (talc may grow in place, the system
//! allocator may `mremap`, `GlobalKmalloc` stays in place while the block's kmalloc bucket holds the new size, as `krealloc` does) unless the block
//! belongs to another one than the selected allocator; then it moves across.
//!
//! # The workloads
//!
//! * `peers/global_pair_{64,512,4096}`: one `alloc` + `dealloc` pair of that
//!   size through each allocator's own `GlobalAlloc`, called directly (the
//!   dispatcher is not in the way): what the global allocator costs a
//!   program per short-lived object.
//! * `peers/random_actions_200B` and `peers/random_actions_30KB`: talc's
//!   "random actions". Each action allocates (3 in 7), frees a random live
//!   block (3 in 7) or reallocs a random live block to a new random size
//!   (1 in 7); sizes are uniform in `1..=200` or `1..=30_000` bytes,
//!   alignment 8. At most 300 blocks are live: an allocation with 300 live
//!   becomes a free, a free or realloc with none live becomes an allocation.
//!   The live set starts full (300 blocks, untimed) and carries over from
//!   sample to sample, so it wanders over `0..=300` blocks. The actions go
//!   through the global allocator (`std::alloc::{alloc, dealloc, realloc}`),
//!   the same way as the ArceOS workloads. Every allocator sees the same
//!   sequence (a fixed-seed splitmix64). Reported: time per action.
//! * `peers/vec_push_3M`, `peers/vec_rand_free_25K_64`,
//!   `peers/vec_rand_free_7500_520`, `peers/btree_map_50K`: the collection
//!   benches of ArceOS's `allocator` crate, as its `benches/collections.rs`
//!   runs them: push 3,000,000 `u32`s into a `Vec` growing from empty; make
//!   `n` blocks that are each a `Vec<u64>` with capacity 64 (512 bytes) or
//!   520 (4,160 bytes), then free them in a shuffled order; 50,000 steps on a
//!   `BTreeMap<Vec<u8>, u32>` where 1 step in 5 pops the first entry (if any)
//!   and the others insert the key `"key_{value}"` (a heap-allocated byte
//!   string) for a random `u32` value, then clear the map. Reported: time per
//!   whole workload.
//!
//! # Heap efficiency
//!
//! talc's "heap efficiency" is the share of an arena that holds live
//! requested bytes when an allocation first fails. It is not a time, so it is
//! computed once before the criterion benches and printed as a table: talc on
//! a 32 MiB arena, kmalloc on a freshly booted 32 MiB machine (the share
//! counts the page allocator's reserved frames, watermarks and lowmem
//! reserves against kmm, as they are memory the machine has and kmalloc
//! cannot get). The system allocator takes memory from the OS on demand and
//! has no arena to fill, so the metric does not apply to it.

#![expect(
    unsafe_code,
    reason = "a global allocator and the direct `GlobalAlloc` calls of the benches are unsafe"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write as _;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use kmm::{
    Arch, Backing, GFP_KERNEL, GlobalKmalloc, MachineConfig, MemoryManager, MemorySpec, PAGE_SIZE,
};
use talc::TalcCell;
use talc::TalcLock;
use talc::source::Claim;

// ---------------------------------------------------------------------------
// The allocators and the dispatching global allocator.
// ---------------------------------------------------------------------------

/// Memory of the kmm machine behind [`KMALLOC`].
const KMM_MACHINE_BYTES: u64 = 512 << 20;

/// CPUs of the kmm machine behind [`KMALLOC`].
const KMM_MACHINE_CPUS: usize = 2;

/// Bytes of talc's arena.
const TALC_ARENA_BYTES: usize = 256 << 20;

/// talc's arena: zero-initialised, so it lives in `.bss` and only the pages
/// talc touches cost memory.
static mut TALC_ARENA: [u8; TALC_ARENA_BYTES] = [0; TALC_ARENA_BYTES];

/// kmalloc, booted on its first allocation.
static KMALLOC: GlobalKmalloc = GlobalKmalloc::new(KMM_MACHINE_BYTES, KMM_MACHINE_CPUS);

/// talc with a spinlock, claiming [`TALC_ARENA`] on its first allocation.
static TALC: TalcLock<RawSpin, Claim> = TalcLock::new(
    // SAFETY: `TALC_ARENA` is valid for reads and writes for the whole
    // program, and nothing but this `Claim` ever touches it (the static is
    // private to this file and only its address is read elsewhere).
    unsafe { Claim::array(&raw mut TALC_ARENA) },
);

/// talc allocations that failed and went to the system allocator instead.
static TALC_FALLBACKS: AtomicUsize = AtomicUsize::new(0);

/// Where new allocations go, a [`Which`] as `u8`.
static CURRENT: AtomicU8 = AtomicU8::new(Which::System as u8);

#[global_allocator]
static GLOBAL: Dispatch = Dispatch;

/// One of the three allocators compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Which {
    /// [`std::alloc::System`].
    System = 0,
    /// [`KMALLOC`].
    Kmalloc = 1,
    /// [`TALC`].
    Talc = 2,
}

impl Which {
    /// All three, in the order the benches run them.
    const ALL: [Which; 3] = [Which::Kmalloc, Which::Talc, Which::System];

    /// The criterion function name.
    fn name(self) -> &'static str {
        match self {
            Which::System => "system",
            Which::Kmalloc => "kmalloc",
            Which::Talc => "talc",
        }
    }

    /// The allocator new allocations go to now.
    fn current() -> Which {
        match CURRENT.load(Ordering::Relaxed) {
            1 => Which::Kmalloc,
            2 => Which::Talc,
            _ => Which::System,
        }
    }

    /// The allocator that handed out `ptr`: talc if it lies in talc's arena,
    /// kmalloc if it lies in the kmm machine's direct map, else the system
    /// allocator.
    fn owner(ptr: *mut u8) -> Which {
        if in_talc_arena(ptr) {
            Which::Talc
        } else if KMALLOC.owns(ptr) {
            Which::Kmalloc
        } else {
            Which::System
        }
    }
}

/// Whether `ptr` lies in talc's arena.
fn in_talc_arena(ptr: *mut u8) -> bool {
    let base = (&raw const TALC_ARENA).addr();
    ptr.addr().wrapping_sub(base) < TALC_ARENA_BYTES
}

/// Selects where new allocations go until dropped (then the system allocator).
#[derive(Debug)]
struct Using;

impl Using {
    /// New allocations go to `which` until the guard drops.
    fn new(which: Which) -> Using {
        CURRENT.store(which as u8, Ordering::Relaxed);
        Using
    }
}

impl Drop for Using {
    fn drop(&mut self) {
        CURRENT.store(Which::System as u8, Ordering::Relaxed);
    }
}

/// A test-and-test-and-set spinlock for [`TalcLock`] (talc's own examples
/// use the equivalent `spinning_top::RawSpinlock`).
#[derive(Debug)]
struct RawSpin(AtomicBool);

// SAFETY: the lock is held from a successful `false -> true` exchange until
// `unlock` stores `false`; only one thread can win the exchange while the flag
// is `true`, so at most one guard exists at a time. Acquire on locking and
// Release on unlocking order the critical sections. Unlocking on another
// thread is harmless for a flag, so guards may be `Send`.
unsafe impl talc::lock_api::RawMutex for RawSpin {
    const INIT: RawSpin = RawSpin(AtomicBool::new(false));

    type GuardMarker = talc::lock_api::GuardSend;

    fn lock(&self) {
        while !self.try_lock() {
            while self.0.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
    }

    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The global allocator: new blocks from the selected allocator, old blocks
/// back to the one that handed them out.
#[derive(Debug)]
struct Dispatch;

impl Dispatch {
    /// Allocates `layout` from `which` (`zero`: zeroed); talc falls back to
    /// the system allocator if its arena is exhausted (counted).
    ///
    /// # Safety
    ///
    /// As [`GlobalAlloc::alloc`].
    unsafe fn alloc_from(which: Which, layout: Layout, zero: bool) -> *mut u8 {
        let ptr = match which {
            // SAFETY: the caller's promises about `layout` are passed on.
            Which::System => unsafe { Self::system_alloc(layout, zero) },
            Which::Kmalloc if zero => {
                // SAFETY: as above.
                unsafe { KMALLOC.alloc_zeroed(layout) }
            }
            // SAFETY: as above.
            Which::Kmalloc => unsafe { KMALLOC.alloc(layout) },
            Which::Talc if zero => {
                // SAFETY: as above.
                unsafe { TALC.alloc_zeroed(layout) }
            }
            // SAFETY: as above.
            Which::Talc => unsafe { TALC.alloc(layout) },
        };
        if !ptr.is_null() || which != Which::Talc {
            return ptr;
        }
        TALC_FALLBACKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { Self::system_alloc(layout, zero) }
    }

    /// Allocates `layout` from the system allocator (`zero`: zeroed).
    ///
    /// # Safety
    ///
    /// As [`GlobalAlloc::alloc`].
    unsafe fn system_alloc(layout: Layout, zero: bool) -> *mut u8 {
        if zero {
            // SAFETY: the caller's promises about `layout` are passed on.
            unsafe { System.alloc_zeroed(layout) }
        } else {
            // SAFETY: as above.
            unsafe { System.alloc(layout) }
        }
    }

    /// Moves the block at `ptr` (of `layout`) to a new block of `new_size`
    /// bytes from `to`, freeing the old one; null (old block untouched) if
    /// the allocation fails.
    ///
    /// # Safety
    ///
    /// As [`GlobalAlloc::realloc`].
    unsafe fn move_block(
        &self,
        to: Which,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        // SAFETY: the caller promises `new_size`, rounded up to the
        // alignment, does not overflow `isize`, and `layout.align()` is a
        // power of two.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (the caller's promise).
        let new = unsafe { Self::alloc_from(to, new_layout, false) };
        if !new.is_null() {
            // SAFETY: both blocks are live and distinct, and each holds at
            // least `min(old, new)` bytes.
            unsafe { ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` is live with `layout` and given back once.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

// SAFETY: every block comes from one of three sound allocators and goes back
// to the same one: talc's blocks lie in its arena and nobody else's do (the
// arena is a private static); kmalloc's blocks lie in its machine's direct map
// and `GlobalKmalloc::dealloc` itself sends every other pointer to the system
// allocator, exactly as it routes its own fallbacks; the rest are the system
// allocator's. Each allocator's layout promises are passed on unchanged.
unsafe impl GlobalAlloc for Dispatch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's promises are passed on.
        unsafe { Self::alloc_from(Which::current(), layout, false) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's promises are passed on.
        unsafe { Self::alloc_from(Which::current(), layout, true) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_talc_arena(ptr) {
            // SAFETY: `ptr` lies in talc's arena, so talc handed it out for
            // `layout`; the caller gives it back once.
            unsafe { TALC.dealloc(ptr, layout) }
        } else {
            // SAFETY: `ptr` came from kmalloc or the system allocator with
            // `layout`, and `GlobalKmalloc::dealloc` sends it to whichever of
            // the two it belongs to (by the same direct-map test).
            unsafe { KMALLOC.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let to = Which::current();
        let from = Which::owner(ptr);
        if from != to {
            // SAFETY: the caller's promises are passed on.
            return unsafe { self.move_block(to, ptr, layout, new_size) };
        }
        match from {
            // SAFETY: `ptr` is the system allocator's with `layout` (see
            // `Which::owner`), and the caller's promises are passed on.
            Which::System => unsafe { System.realloc(ptr, layout, new_size) },
            // SAFETY: `ptr` is kmalloc's with `layout` (or, were the test
            // wrong, the system allocator's, which `GlobalKmalloc` routes the
            // same way); the caller's promises are passed on.
            Which::Kmalloc => unsafe { KMALLOC.realloc(ptr, layout, new_size) },
            Which::Talc => {
                // SAFETY: `ptr` lies in talc's arena, so it is talc's with
                // `layout`; the caller's promises are passed on.
                let new = unsafe { TALC.realloc(ptr, layout, new_size) };
                if !new.is_null() {
                    return new;
                }
                TALC_FALLBACKS.fetch_add(1, Ordering::Relaxed);
                // SAFETY: talc failed and left the block as it was.
                unsafe { self.move_block(Which::System, ptr, layout, new_size) }
            }
        }
    }
}

/// Makes sure kmalloc's machine is booted and talc has claimed its arena,
/// so neither start-up lands in a timed loop.
fn boot_allocators() {
    for which in [Which::Kmalloc, Which::Talc] {
        let _using = Using::new(which);
        drop(black_box(Box::new(0u64)));
    }
}

/// Warns if an allocator did not serve what it was asked to.
fn report_fallbacks() {
    let talc = TALC_FALLBACKS.load(Ordering::Relaxed);
    let kmm = KMALLOC.stats();
    eprintln!(
        "peers: talc fell back to the system allocator {talc} times; kmalloc served {} \
         allocations, the system allocator {} in its place (re-entrant or above \
         KMALLOC_MAX_SIZE), kfree errors {}",
        kmm.kmallocs, kmm.fallbacks, kmm.errors
    );
}

// ---------------------------------------------------------------------------
// A small fixed-seed PRNG.
// ---------------------------------------------------------------------------

/// splitmix64 (Steele, Lea and Flood): tiny, fast and good enough to pick
/// actions and sizes.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), by multiply-shift.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The seed of every random sequence here (the one ArceOS's benches use).
const SEED: u64 = 0xdead_beef;

// ---------------------------------------------------------------------------
// talc's random actions.
// ---------------------------------------------------------------------------

/// Most blocks live at once in the random-actions workload.
const RA_MAX_LIVE: usize = 300;

/// The random-actions workload: live blocks and the action generator.
#[derive(Debug)]
struct RandomActions {
    /// Actions and sizes.
    rng: Rng,
    /// Largest size asked for.
    max_size: usize,
    /// Live blocks, from the global allocator.
    live: Vec<(NonNull<u8>, Layout)>,
}

impl RandomActions {
    /// A workload with sizes in `1..=max_size`, its live set filled (from the
    /// allocator selected now).
    fn new(max_size: usize) -> RandomActions {
        let mut ra = RandomActions {
            rng: Rng::new(SEED),
            max_size,
            live: Vec::with_capacity(RA_MAX_LIVE),
        };
        while ra.live.len() < RA_MAX_LIVE {
            ra.alloc();
        }
        ra
    }

    /// A random layout of the workload.
    fn layout(&mut self) -> Layout {
        let size = 1 + self.rng.below(self.max_size);
        Layout::from_size_align(size, 8).expect("small sizes make valid layouts")
    }

    /// Allocates a random block.
    fn alloc(&mut self) {
        let layout = self.layout();
        // SAFETY: the layout's size is at least 1.
        let ptr = unsafe { std::alloc::alloc(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        self.live.push((ptr, layout));
    }

    /// Frees a random live block (there is one).
    fn free(&mut self) {
        let i = self.rng.below(self.live.len());
        let (ptr, layout) = self.live.swap_remove(i);
        // SAFETY: the block is live with `layout` and leaves the live set.
        unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
    }

    /// Reallocs a random live block (there is one) to a random size.
    fn realloc(&mut self) {
        let i = self.rng.below(self.live.len());
        let new_layout = self.layout();
        let (ptr, layout) = self.live[i];
        // SAFETY: the block is live with `layout`; the new size is non-zero
        // and small, with the same alignment.
        let new = unsafe { std::alloc::realloc(ptr.as_ptr(), layout, new_layout.size()) };
        let new = NonNull::new(new).unwrap_or_else(|| std::alloc::handle_alloc_error(new_layout));
        self.live[i] = (new, new_layout);
    }

    /// One action: allocate (3 in 7), free (3 in 7) or realloc (1 in 7),
    /// within the bounds on the live set.
    fn step(&mut self) {
        let action = self.rng.below(7);
        let live = self.live.len();
        if live == 0 || (action < 3 && live < RA_MAX_LIVE) {
            self.alloc();
        } else if action < 6 {
            self.free();
        } else {
            self.realloc();
        }
    }

    /// Runs `n` actions and returns how long they took.
    fn run(&mut self, n: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            self.step();
        }
        start.elapsed()
    }
}

impl Drop for RandomActions {
    fn drop(&mut self) {
        for (ptr, layout) in self.live.drain(..) {
            // SAFETY: each live block is given back once, with its layout.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
        }
    }
}

/// talc's random actions with sizes up to 200 bytes and up to 30 KB.
fn random_actions(c: &mut Criterion) {
    boot_allocators();
    for (label, max_size) in [("200B", 200), ("30KB", 30_000)] {
        let mut g = c.benchmark_group(format!("peers/random_actions_{label}"));
        g.sample_size(20);
        for which in Which::ALL {
            let mut ra = {
                let _using = Using::new(which);
                RandomActions::new(max_size)
            };
            g.bench_function(which.name(), |b| {
                b.iter_custom(|iters| {
                    let _using = Using::new(which);
                    ra.run(iters)
                })
            });
            drop(ra);
        }
        g.finish();
    }
}

/// One `alloc` + `dealloc` of `layout` on `heap`, called directly (no
/// dispatch), the object written once so that it is used.
#[inline(always)]
fn global_pair<A: GlobalAlloc>(heap: &A, layout: Layout) {
    // SAFETY: a non-zero size; the block is written within its size and
    // freed once, with its layout, by the allocator that made it.
    unsafe {
        let p = heap.alloc(black_box(layout));
        assert!(!p.is_null());
        p.write(1);
        heap.dealloc(black_box(p), layout);
    }
}

/// An `alloc` + `dealloc` pair through each allocator's own `GlobalAlloc`
/// (no dispatch in between), at sizes in the small and the page-sized
/// range: what a `#[global_allocator]` costs a program per object.
fn global_pairs(c: &mut Criterion) {
    boot_allocators();
    for size in [64, 512, 4096] {
        let layout = Layout::from_size_align(size, 8).expect("a valid layout");
        let mut g = c.benchmark_group(format!("peers/global_pair_{size}"));
        g.bench_function("kmalloc", |b| b.iter(|| global_pair(&KMALLOC, layout)));
        g.bench_function("talc", |b| b.iter(|| global_pair(&TALC, layout)));
        g.bench_function("system", |b| b.iter(|| global_pair(&System, layout)));
        g.finish();
    }
}

// ---------------------------------------------------------------------------
// ArceOS's collection benches.
// ---------------------------------------------------------------------------

/// Pushes `n` `u32`s into a `Vec` that starts empty.
fn vec_push(n: usize) {
    let mut v: Vec<u32> = Vec::new();
    for _ in 0..n {
        v.push(black_box(0xdead_beef));
    }
    drop(black_box(v));
}

/// Makes `n` blocks of `blk_len` `u64`s, then frees them in a shuffled order.
fn vec_rand_free(n: usize, blk_len: usize) {
    let mut blocks = Vec::new();
    for _ in 0..n {
        blocks.push(Vec::<u64>::with_capacity(blk_len));
    }
    let mut rng = Rng::new(SEED);
    let mut order: Vec<usize> = Vec::with_capacity(n);
    order.extend(0..n);
    // Fisher-Yates.
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    for i in order {
        blocks[i] = Vec::new();
    }
    drop(black_box(blocks));
}

/// `n` steps on a `BTreeMap` with heap-allocated keys: 1 in 5 pops the
/// first entry (if any), the others insert `"key_{value}"`.
fn btree_map(n: usize) {
    let mut rng = Rng::new(SEED);
    let mut m: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    for _ in 0..n {
        let r = rng.next_u64();
        if r.is_multiple_of(5) && !m.is_empty() {
            m.pop_first();
        } else {
            let value = (r >> 32) as u32;
            let mut key = Vec::new();
            write!(&mut key, "key_{value}").expect("writing to a Vec cannot fail");
            m.insert(key, value);
        }
    }
    m.clear();
    drop(black_box(m));
}

/// ArceOS's four collection benches, each on the three allocators.
fn arceos(c: &mut Criterion) {
    boot_allocators();
    let workloads: [(&str, fn()); 4] = [
        ("vec_push_3M", || vec_push(black_box(3_000_000))),
        ("vec_rand_free_25K_64", || {
            vec_rand_free(black_box(25_000), black_box(64))
        }),
        ("vec_rand_free_7500_520", || {
            vec_rand_free(black_box(7_500), black_box(520))
        }),
        ("btree_map_50K", || btree_map(black_box(50_000))),
    ];
    for (name, work) in workloads {
        let mut g = c.benchmark_group(format!("peers/{name}"));
        g.sample_size(10);
        for which in Which::ALL {
            g.bench_function(which.name(), |b| {
                b.iter_custom(|iters| {
                    let _using = Using::new(which);
                    let start = Instant::now();
                    for _ in 0..iters {
                        work();
                    }
                    start.elapsed()
                })
            });
        }
        g.finish();
    }
    report_fallbacks();
}

// ---------------------------------------------------------------------------
// talc's heap efficiency.
// ---------------------------------------------------------------------------

/// Bytes of the arena (talc) and of the machine (kmm) filled for efficiency.
const HE_BYTES: usize = 32 << 20;

/// Fills per configuration, each on a fresh heap and its own seed.
const HE_TRIALS: u64 = 3;

/// A heap to fill: allocate, free and resize requested sizes.
trait Heap {
    /// A block of `size` bytes, or `None` when out of memory.
    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>>;
    /// Frees a block of `size` bytes from [`Heap::alloc`] or [`Heap::realloc`].
    fn free(&mut self, ptr: NonNull<u8>, size: usize);
    /// Resizes a block; `None` (the block unchanged) when out of memory.
    fn realloc(&mut self, ptr: NonNull<u8>, size: usize, new_size: usize) -> Option<NonNull<u8>>;
}

/// talc on an arena borrowed for the heap's lifetime.
struct TalcHeap<'a> {
    /// talc, claiming the arena on first use.
    talc: TalcCell<Claim>,
    /// The arena, borrowed exclusively while talc may use it.
    _arena: PhantomData<&'a mut [u8]>,
}

impl core::fmt::Debug for TalcHeap<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TalcHeap").finish_non_exhaustive()
    }
}

impl<'a> TalcHeap<'a> {
    /// A fresh talc on `arena` (whatever an earlier heap left in it).
    fn new(arena: &'a mut [u8]) -> TalcHeap<'a> {
        // SAFETY: the arena is valid for reads and writes and borrowed
        // exclusively for `'a`, which the heap (and so talc) cannot outlive.
        let talc = TalcCell::new(unsafe { Claim::new(arena.as_mut_ptr(), arena.len()) });
        TalcHeap {
            talc,
            _arena: PhantomData,
        }
    }

    /// The layout of a `size`-byte block.
    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).expect("small sizes make valid layouts")
    }
}

impl Heap for TalcHeap<'_> {
    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        // SAFETY: `size` is at least 1.
        NonNull::new(unsafe { self.talc.alloc(Self::layout(size)) })
    }

    fn free(&mut self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller passes a live block of talc's with its size.
        unsafe { self.talc.dealloc(ptr.as_ptr(), Self::layout(size)) }
    }

    fn realloc(&mut self, ptr: NonNull<u8>, size: usize, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: a live block of talc's with its size; `new_size` is at
        // least 1 and small.
        NonNull::new(unsafe {
            self.talc
                .realloc(ptr.as_ptr(), Self::layout(size), new_size)
        })
    }
}

/// kmalloc on a freshly booted machine.
#[derive(Debug)]
struct KmmHeap {
    /// The machine.
    mm: MemoryManager,
}

impl KmmHeap {
    /// An x86-64 machine with [`HE_BYTES`] of host memory and one CPU.
    fn new() -> KmmHeap {
        let config = MachineConfig {
            arch: Arch::X86_64,
            memory: MemorySpec::Size(HE_BYTES as u64),
            cpus: 1,
            pcp: None,
            min_free_kbytes: None,
            backing: Backing::Host,
        };
        KmmHeap {
            mm: MemoryManager::boot(config).expect("boot a machine for kmalloc"),
        }
    }
}

impl Heap for KmmHeap {
    fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        self.mm.kmalloc(size, GFP_KERNEL).ok()
    }

    fn free(&mut self, ptr: NonNull<u8>, _size: usize) {
        self.mm
            .kfree(Some(ptr))
            .expect("kfree of a live kmalloc block");
    }

    fn realloc(&mut self, ptr: NonNull<u8>, _size: usize, new_size: usize) -> Option<NonNull<u8>> {
        self.mm.krealloc(Some(ptr), new_size, GFP_KERNEL).ok()
    }
}

/// How a heap is filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    /// Only allocations.
    Plain,
    /// talc's mix: allocate (5 in 10), free a random live block (1 in 10),
    /// realloc a random live block to a new random size (4 in 10; a failed
    /// realloc leaves the block as it was).
    Churn,
}

/// Fills `heap` with blocks of `1..=max_size` bytes until an allocation
/// fails; returns the bytes requested by the blocks live then (all freed
/// before returning).
fn fill(heap: &mut impl Heap, max_size: usize, mode: Fill, seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    let mut live: Vec<(NonNull<u8>, usize)> = Vec::new();
    loop {
        let action = match mode {
            Fill::Plain => 0,
            Fill::Churn => rng.below(10),
        };
        let size = 1 + rng.below(max_size);
        if action < 5 || live.is_empty() {
            match heap.alloc(size) {
                Some(ptr) => live.push((ptr, size)),
                None => break,
            }
        } else if action == 5 {
            let (ptr, old) = live.swap_remove(rng.below(live.len()));
            heap.free(ptr, old);
        } else {
            let i = rng.below(live.len());
            let (ptr, old) = live[i];
            if let Some(new) = heap.realloc(ptr, old, size) {
                live[i] = (new, size);
            }
        }
    }
    let bytes = live.iter().map(|&(_, size)| size).sum();
    for (ptr, size) in live {
        heap.free(ptr, size);
    }
    bytes
}

/// Prints talc's heap-efficiency metric for talc and kmalloc.
fn heap_efficiency() {
    let start = Instant::now();
    let probe = KmmHeap::new();
    let summary = probe.mm.summary();
    let (mut wmark_min, mut wmark_low, mut reserve) = (0, 0, 0);
    for z in probe.mm.snapshots() {
        wmark_min += z.watermarks.min;
        wmark_low += z.watermarks.low;
        reserve += z.lowmem_reserve.iter().copied().max().unwrap_or(0);
    }
    drop(probe);
    let kib = |pages: usize| pages * PAGE_SIZE / 1024;
    let pct = |bytes: f64, of: usize| 100.0 * bytes / of as f64;

    println!();
    println!(
        "peers/heap_efficiency: live requested bytes when an allocation first fails, as a share \
         of {} MiB (mean of {HE_TRIALS} fills)",
        HE_BYTES >> 20
    );
    println!(
        "  kmm machine: MemTotal {} KiB, free at boot {} KiB, watermarks min {} / low {} KiB, \
         largest lowmem_reserve {} KiB",
        kib(summary.total_pages),
        kib(summary.free_pages + summary.pcp_pages),
        kib(wmark_min),
        kib(wmark_low),
        kib(reserve),
    );
    println!(
        "  {:<8} {:<6} {:<6} {:>10} {:>16}",
        "alloc", "sizes", "fill", "of arena", "of free at boot"
    );
    let free_at_boot = (summary.free_pages + summary.pcp_pages) * PAGE_SIZE;
    let mut arena = vec![0u8; HE_BYTES];
    for (label, max_size) in [("200B", 200), ("30KB", 30_000)] {
        for mode in [Fill::Plain, Fill::Churn] {
            let mode_name = match mode {
                Fill::Plain => "plain",
                Fill::Churn => "churn",
            };
            let (mut talc, mut kmm) = (0, 0);
            for trial in 0..HE_TRIALS {
                let seed = SEED + trial;
                talc += fill(&mut TalcHeap::new(&mut arena), max_size, mode, seed);
                kmm += fill(&mut KmmHeap::new(), max_size, mode, seed);
            }
            let talc = talc as f64 / HE_TRIALS as f64;
            let kmm = kmm as f64 / HE_TRIALS as f64;
            println!(
                "  {:<8} {:<6} {:<6} {:>9.2}% {:>16}",
                "talc",
                label,
                mode_name,
                pct(talc, HE_BYTES),
                "-"
            );
            println!(
                "  {:<8} {:<6} {:<6} {:>9.2}% {:>15.2}%",
                "kmalloc",
                label,
                mode_name,
                pct(kmm, HE_BYTES),
                pct(kmm, free_at_boot)
            );
        }
    }
    println!("  system: not applicable (it maps memory from the OS on demand; no arena to fill)");
    println!("  (computed in {:.2?})", start.elapsed());
    println!();
}

// ---------------------------------------------------------------------------
// Entry point.
// ---------------------------------------------------------------------------

criterion_group!(benches, global_pairs, random_actions, arceos);

fn main() {
    let listing = std::env::args().any(|a| a == "--list");
    if !listing {
        heap_efficiency();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
