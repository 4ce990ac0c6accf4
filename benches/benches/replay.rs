//! Replay benches: the start of each published malloc trace (`shared/traces/*.trace.gz`, beside
//! the workspace) replayed through kmalloc, the system allocator and talc.
//!
//! Each trace is cut to its first [`PREFIX_EVENTS`] events (200,000: about 42% of gcc-cc1, 28%
//! of py-compileall and 8% of sqlite3; `KMM_BENCH_REPLAY_EVENTS` sets another count, `0` for
//! whole traces), parsed once into a vector by the small parser below, and replayed as
//! `kmm-sim replay` does: objects live in a flat table indexed by trace ID, their first and last
//! bytes are written when they are allocated or moved, and an ID whose allocation was refused
//! holds nothing until it dies.
//! One criterion iteration replays the whole prefix and then frees what it left live, so each
//! heap starts the next one empty; the throughput is in trace events (the prefix's length), so
//! the time per event is the time per iteration divided by that count.
//!
//! - `replay/<trace>/kmalloc`: `kmalloc`, `krealloc` and `kfree` of a `kmm::MemoryManager` booted
//!   on 256 MiB of host memory, with one CPU and per-CPU page lists on, as `kmm-sim replay`
//!   boots it. Requests above `KMALLOC_MAX_SIZE` (4 MiB) are refused; alignments above 8 are
//!   met by rounding the size up to a multiple of the alignment.
//! - `replay/<trace>/system`: `std::alloc::System` (glibc `malloc`, `realloc`, `free`; the
//!   aligned path only for the trace's `ALIGN` requests).
//! - `replay/<trace>/talc`: a `talc::TalcCell` over one arena taken from the system allocator
//!   before timing: 4 bytes per byte of the prefix's peak of live bytes, 64 bytes per object of
//!   its peak of live objects, plus 64 MiB.
//!
//! Without the traces directory the benches print a note and measure nothing.

#![expect(
    unsafe_code,
    reason = "the heaps hand out raw memory, which the replay writes, through unsafe interfaces"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::read::MultiGzDecoder;
use kmm::{Arch, Backing, GFP_KERNEL, MachineConfig, MemoryManager, MemorySpec};
use talc::TalcCell;
use talc::source::Manual;

/// Events replayed from the start of each trace, unless `KMM_BENCH_REPLAY_EVENTS` says
/// otherwise.
const PREFIX_EVENTS: usize = 200_000;

/// The published traces.
const TRACES: [&str; 3] = [
    "gcc-cc1.trace.gz",
    "py-compileall.trace.gz",
    "sqlite3.trace.gz",
];

/// `malloc`'s alignment on x86-64: a trace's `a` line without `ALIGN` asks for this.
const MALLOC_ALIGN: usize = 16;

/// One trace event (`traces/README.md`).
#[derive(Debug, Clone, Copy)]
enum Event {
    /// `a ID SIZE [ALIGN]`.
    Alloc { id: u32, size: usize, align: usize },
    /// `f ID`.
    Free { id: u32 },
    /// `r OLDID NEWID SIZE`.
    Realloc { old: u32, new: u32, size: usize },
}

/// The first events of a trace and what a replay needs to know about them.
#[derive(Debug)]
struct Prefix {
    /// The events.
    events: Vec<Event>,
    /// One more than the largest ID named.
    ids: usize,
    /// The most bytes live at once.
    peak_bytes: u64,
    /// The most objects live at once.
    peak_objects: u64,
}

/// Reads the first `limit` events of the gzipped trace at `path` (all of them for 0); the
/// published traces are well formed, so this only checks what it needs to go on.
fn load(path: &Path, limit: usize) -> Result<Prefix, String> {
    let file = File::open(path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut input = BufReader::with_capacity(1 << 18, MultiGzDecoder::new(file));
    let (mut events, mut live) = (Vec::new(), Vec::<Option<u64>>::new());
    let (mut bytes, mut objects, mut peak_bytes, mut peak_objects) = (0u64, 0u64, 0, 0);
    let mut line = String::new();
    while limit == 0 || events.len() < limit {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => return Err(format!("{}: {error}", path.display())),
        }
        let bad = || format!("{}: bad line {:?}", path.display(), line.trim_end());
        let fields: Vec<u64> = line[1..]
            .split_ascii_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let id = |index: usize| fields.get(index).and_then(|&id| u32::try_from(id).ok());
        let size = |index: usize| {
            fields
                .get(index)
                .and_then(|&size| usize::try_from(size).ok())
        };
        let event = match line.as_bytes()[0] {
            b'a' => Event::Alloc {
                id: id(0).ok_or_else(bad)?,
                size: size(1).ok_or_else(bad)?,
                align: size(2).unwrap_or(MALLOC_ALIGN),
            },
            b'f' => Event::Free {
                id: id(0).ok_or_else(bad)?,
            },
            b'r' => Event::Realloc {
                old: id(0).ok_or_else(bad)?,
                new: id(1).ok_or_else(bad)?,
                size: size(2).ok_or_else(bad)?,
            },
            _ => return Err(bad()),
        };
        // Live bytes and objects, for the talc arena; a realloc's old and new object count
        // together for an instant, as in the tracer.
        let (born, died) = match event {
            Event::Alloc { id, size, .. } => (Some((id, size)), None),
            Event::Free { id } => (None, Some(id)),
            Event::Realloc { old, new, size } => (Some((new, size)), Some(old)),
        };
        if let Some((id, size)) = born {
            let id = id as usize;
            if live.len() <= id {
                live.resize(id + 1, None);
            }
            live[id] = Some(size as u64);
            (bytes, objects) = (bytes + size as u64, objects + 1);
            (peak_bytes, peak_objects) = (peak_bytes.max(bytes), peak_objects.max(objects));
        }
        if let Some(id) = died {
            let size = live
                .get_mut(id as usize)
                .and_then(Option::take)
                .ok_or_else(bad)?;
            (bytes, objects) = (bytes - size, objects - 1);
        }
        events.push(event);
    }
    Ok(Prefix {
        events,
        ids: live.len(),
        peak_bytes,
        peak_objects,
    })
}

/// An allocator a prefix is replayed through.
///
/// # Safety
///
/// A pointer returned for `size > 0` bytes points to `size` bytes valid for reads and writes
/// that overlap no other live object until it is freed or reallocated; a successful realloc
/// keeps the first `min(old, new)` bytes, a failed one leaves the object live.
unsafe trait Heap {
    /// `size` bytes aligned to `align` (16: `malloc`'s default); `None` if refused.
    fn alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>>;

    /// Frees an object.
    ///
    /// # Safety
    ///
    /// `ptr` is live, from this heap, allocated with `size` and `align`.
    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize, align: usize);

    /// Resizes an object to `new` bytes (never 0); `None` if refused.
    ///
    /// # Safety
    ///
    /// As for [`Heap::free`], with `old` bytes.
    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        old: usize,
        align: usize,
        new: usize,
    ) -> Option<NonNull<u8>>;
}

/// A live object of a replay.
#[derive(Debug, Clone, Copy)]
struct Object {
    /// Its first byte.
    ptr: NonNull<u8>,
    /// Bytes requested.
    size: usize,
    /// Alignment requested.
    align: usize,
}

/// Writes the first and the last byte of an object, as a program would touch its memory.
///
/// # Safety
///
/// `object` is live in a [`Heap`].
unsafe fn touch(object: Object) {
    if object.size > 0 {
        // SAFETY: the `Heap` contract makes the object's `size > 0` bytes writable.
        unsafe {
            object.ptr.as_ptr().write(0x5a);
            object.ptr.as_ptr().add(object.size - 1).write(0xa5);
        }
    }
}

/// Replays `prefix` through `heap` with the object table `objects` (empty, `prefix.ids` long),
/// then frees what is left; returns the requests the heap refused.
fn replay<H: Heap>(heap: &mut H, prefix: &Prefix, objects: &mut [Option<Object>]) -> u64 {
    let mut refused = 0;
    for &event in &prefix.events {
        match event {
            Event::Alloc { id, size, align } => {
                objects[id as usize] = heap.alloc(size, align).map(|ptr| {
                    let object = Object { ptr, size, align };
                    // SAFETY: the heap just returned `ptr` for `size` bytes.
                    unsafe { touch(object) };
                    object
                });
                refused += u64::from(objects[id as usize].is_none());
            }
            Event::Free { id } => {
                if let Some(object) = objects[id as usize].take() {
                    // SAFETY: the table held `object` as the heap returned it, and lets go of it.
                    unsafe { heap.free(object.ptr, object.size, object.align) };
                }
            }
            Event::Realloc { old, new, size } => {
                let moved = match objects[old as usize].take() {
                    // SAFETY: as for a free; on failure the object is still live and freed here.
                    Some(object) => unsafe {
                        let moved = heap.realloc(object.ptr, object.size, object.align, size);
                        if moved.is_none() {
                            heap.free(object.ptr, object.size, object.align);
                        }
                        moved.map(|ptr| Object {
                            ptr,
                            size,
                            ..object
                        })
                    },
                    None => heap.alloc(size, MALLOC_ALIGN).map(|ptr| Object {
                        ptr,
                        size,
                        align: MALLOC_ALIGN,
                    }),
                };
                if let Some(object) = moved {
                    // SAFETY: the heap just returned the object for `size` bytes.
                    unsafe { touch(object) };
                }
                refused += u64::from(moved.is_none());
                objects[new as usize] = moved;
            }
        }
    }
    for object in objects.iter_mut().filter_map(Option::take) {
        // SAFETY: as for a free.
        unsafe { heap.free(object.ptr, object.size, object.align) };
    }
    refused
}

/// kmalloc of a booted machine, replayed by a thread that holds CPU 1 of
/// two exclusively, as `kmm-sim replay` does.
struct Kmalloc {
    mm: MemoryManager<kmm::DefaultBuddy, kmm_host::HostCpus>,
    _cpu: kmm_host::CpuBinding<'static>,
}

impl Kmalloc {
    /// A 256 MiB x86-64 machine on host memory with two CPUs and per-CPU
    /// page lists, and the bench thread's exclusive hold on CPU 1 (released
    /// when the heap drops).
    fn boot() -> Kmalloc {
        let host = std::sync::Arc::new(kmm_host::HostCpus::new(2));
        let mm = MemoryManager::boot_with(
            MachineConfig {
                arch: Arch::X86_64,
                memory: MemorySpec::Size(256 << 20),
                cpus: 2,
                pcp: Some(true),
                min_free_kbytes: None,
                backing: Backing::Host,
            },
            host.clone(),
        )
        .expect("a 256 MiB machine boots");
        let hold = host.bind_owned(1, true).expect("CPU 1 is free");
        Kmalloc { mm, _cpu: hold }
    }

    /// The size kmalloc is asked for: a multiple of `align` above kmalloc's own 8 bytes, which
    /// lands in a size class whose objects are aligned to it.
    /// `align` is a power of two (the trace format); an overflowing size
    /// asks for more than kmalloc serves, so it is refused.
    fn size(size: usize, align: usize) -> usize {
        kmm::slab::kmalloc_size_for_align(size, align).unwrap_or(usize::MAX)
    }
}

// SAFETY: the machine runs on host memory, so a kmalloc object of `n > 0` bytes is `n` bytes of
// this process's memory, shared with no other live object until kfree or krealloc; krealloc
// keeps the first `min(old, new)` bytes and leaves the object alone when it fails.
unsafe impl Heap for Kmalloc {
    fn alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.mm.kmalloc(Self::size(size, align), GFP_KERNEL).ok()
    }

    unsafe fn free(&mut self, ptr: NonNull<u8>, _size: usize, _align: usize) {
        self.mm.kfree(Some(ptr)).expect("kfree of a live object");
    }

    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        _old: usize,
        align: usize,
        new: usize,
    ) -> Option<NonNull<u8>> {
        let size = Self::size(new, align);
        self.mm.krealloc(Some(ptr), size, GFP_KERNEL).ok()
    }
}

/// The layout a `malloc`-like heap gets: `min_align` for the default alignment, one byte for a
/// zero-size request (`malloc(0)` returns a unique pointer).
fn layout(size: usize, align: usize, min_align: usize) -> Layout {
    let align = if align <= MALLOC_ALIGN {
        min_align
    } else {
        align
    };
    Layout::from_size_align(size.max(1), align).expect("trace sizes fit a layout")
}

/// A `GlobalAlloc` as a replay heap: the system allocator (plain requests asked with
/// alignment 1, so that it calls plain `malloc`) or talc (plain requests asked with
/// `MALLOC_ALIGN`).
struct ViaGlobalAlloc<'a, A: GlobalAlloc> {
    /// The allocator.
    alloc: &'a A,
    /// The alignment of requests the trace gives no alignment above `MALLOC_ALIGN`.
    default_align: usize,
}

// SAFETY: the system allocator and talc (whose arena `TalcHeap` owns until it is dropped) hand
// out disjoint blocks valid for their layouts, and their `realloc` keeps the first
// `min(old, new)` bytes and the old block on failure.
unsafe impl<A: GlobalAlloc> Heap for ViaGlobalAlloc<'_, A> {
    fn alloc(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        // SAFETY: the layout's size is at least 1.
        NonNull::new(unsafe { self.alloc.alloc(layout(size, align, self.default_align)) })
    }

    unsafe fn free(&mut self, ptr: NonNull<u8>, size: usize, align: usize) {
        let layout = layout(size, align, self.default_align);
        // SAFETY: the caller promises `ptr` came from this heap with this layout.
        unsafe { self.alloc.dealloc(ptr.as_ptr(), layout) };
    }

    unsafe fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        old: usize,
        align: usize,
        new: usize,
    ) -> Option<NonNull<u8>> {
        let old = layout(old, align, self.default_align);
        let new = layout(new, align, self.default_align);
        // SAFETY: the caller promises `ptr` came from this heap with `old`; `new.size()` is a
        // valid non-zero layout size for this alignment.
        NonNull::new(unsafe { self.alloc.realloc(ptr.as_ptr(), old, new.size()) })
    }
}

/// talc over an arena from the system allocator.
struct TalcHeap {
    /// The allocator, inside `arena`; dropped first.
    talc: TalcCell<Manual>,
    /// The arena's first byte.
    arena: NonNull<u8>,
    /// The arena's layout.
    arena_layout: Layout,
}

impl TalcHeap {
    /// talc over an arena for `prefix`: 4 bytes per peak live byte, 64 per peak live object,
    /// plus 64 MiB.
    fn new(prefix: &Prefix) -> TalcHeap {
        let bytes = 4 * prefix.peak_bytes + 64 * prefix.peak_objects + (64 << 20);
        let arena_layout = Layout::from_size_align(bytes as usize, 4096).expect("arena layout");
        // SAFETY: the layout's size is at least 64 MiB.
        let arena = NonNull::new(unsafe { System.alloc(arena_layout) }).expect("arena memory");
        let talc = TalcCell::new(Manual);
        // SAFETY: the arena is this heap's alone until `drop` gives it back, after which talc
        // is never used; `Manual` lets heaps be claimed by hand.
        unsafe { talc.claim(arena.as_ptr(), arena_layout.size()) }.expect("talc claims");
        TalcHeap {
            talc,
            arena,
            arena_layout,
        }
    }
}

impl Drop for TalcHeap {
    fn drop(&mut self) {
        // SAFETY: the arena came from `System.alloc(self.arena_layout)` and is freed once.
        unsafe { System.dealloc(self.arena.as_ptr(), self.arena_layout) };
    }
}

/// Benches `heap` on `prefix` as function `name` of `group`.
fn bench_heap<H: Heap>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    prefix: &Prefix,
    mut heap: H,
) {
    let mut objects = vec![None; prefix.ids];
    let refused = replay(&mut heap, prefix, &mut objects);
    if refused > 0 {
        println!("note: {name} refuses {refused} requests of this prefix (they hold nothing)");
    }
    group.bench_function(name, |b| {
        b.iter(|| replay(&mut heap, prefix, &mut objects));
    });
}

/// The traces directory beside the workspace.
fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces")
}

fn replay_traces(c: &mut Criterion) {
    let dir = traces_dir();
    if !dir.is_dir() {
        println!(
            "note: {} does not exist; the replay benches measure nothing",
            dir.display()
        );
        return;
    }
    let limit = std::env::var("KMM_BENCH_REPLAY_EVENTS")
        .ok()
        .and_then(|events| events.parse().ok())
        .unwrap_or(PREFIX_EVENTS);
    for file in TRACES {
        let prefix = match load(&dir.join(file), limit) {
            Ok(prefix) => prefix,
            Err(error) => {
                println!("note: skipping {file}: {error}");
                continue;
            }
        };
        let name = file.trim_end_matches(".trace.gz");
        let mut group = c.benchmark_group(format!("replay/{name}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(prefix.events.len() as u64));
        bench_heap(&mut group, "kmalloc", &prefix, Kmalloc::boot());
        bench_heap(
            &mut group,
            "system",
            &prefix,
            ViaGlobalAlloc {
                alloc: &System,
                default_align: 1,
            },
        );
        let talc = TalcHeap::new(&prefix);
        bench_heap(
            &mut group,
            "talc",
            &prefix,
            ViaGlobalAlloc {
                alloc: &talc.talc,
                default_align: MALLOC_ALIGN,
            },
        );
        group.finish();
    }
}

criterion_group!(benches, replay_traces);
criterion_main!(benches);
