//! `PercpuAllocator`: the dynamic per-CPU allocator of `mm/percpu.c`
//! (`__alloc_percpu`, `free_percpu`, `per_cpu_ptr`), over chunks of one
//! unit per CPU with a bitmap area allocator in each.
//!
//! # The model
//!
//! A chunk is `nr_cpus` units of `unit_size` bytes side by side; an
//! allocation at offset `off` occupies `off` in every unit. A [`PercpuPtr`]
//! is the address of the allocation in unit 0, like the kernel's
//! (unbiased) `__percpu` pointer, and [`PercpuAllocator::per_cpu_ptr`] adds
//! `cpu × unit_size`. The first chunk is made at boot:
//!
//! ```text
//! | static | reserved (8 KiB) | dynamic (28 KiB) | unused tail | × nr_cpus
//! ```
//!
//! The unit size is the first chunk's regions rounded up to a page, and at
//! least [`PCPU_MIN_UNIT_SIZE`]; every later chunk comes from the
//! [`ChunkSource`] with the same unit size and is dynamic throughout. Chunks
//! sit on slot lists by their largest free run (`pcpu_chunk_slot`), and an
//! allocation tries the fullest chunks that might fit first. A dynamic chunk
//! that becomes empty goes to the free slot; all empty chunks but one are
//! given back at once (the kernel defers this to its balance work).
//!
//! Pages of a chunk count as populated from the first allocation that
//! touches them until the chunk is given back (the first chunk is populated
//! at boot); [`PercpuAllocator::nr_pages`] is their number times the units,
//! the `Percpu` line of `/proc/meminfo`. The kernel also depopulates empty
//! pages of chunks under memory pressure; this model does not.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::area::{AreaMap, FRAGMENT};
use crate::brlock::BrLock;
use crate::memory::{WordOp, word_align};
use crate::{Bitmap, ChunkMemory, ChunkSource, CpuContext, PercpuError, PercpuWord};

/// The page size the allocator lays chunks out in (4 KiB, as on x86).
pub const PAGE_SIZE: usize = 4096;

/// The smallest allocation, and the granule of every size and offset
/// (`PCPU_MIN_ALLOC_SIZE`, `include/linux/percpu.h`).
pub const PCPU_MIN_ALLOC_SIZE: usize = FRAGMENT;

/// The smallest unit size, and the largest allocation (`PCPU_MIN_UNIT_SIZE`,
/// `include/linux/percpu.h`).
pub const PCPU_MIN_UNIT_SIZE: usize = 32 * 1024;

/// The reserved region of the first chunk, for module static variables
/// (`PERCPU_MODULE_RESERVE`, `include/linux/percpu.h`).
pub const PERCPU_MODULE_RESERVE: usize = 8 * 1024;

/// The dynamic region of the first chunk (`PERCPU_DYNAMIC_RESERVE`,
/// `include/linux/percpu.h`: 28 KiB on 64-bit, 20 KiB on 32-bit).
pub const PERCPU_DYNAMIC_RESERVE: usize = if cfg!(target_pointer_width = "64") {
    28 * 1024
} else {
    20 * 1024
};

/// Sizes of 1 to 31 bytes share a slot (`PCPU_SLOT_BASE_SHIFT`, `mm/percpu.c`).
const PCPU_SLOT_BASE_SHIFT: u32 = 5;

/// A dynamic per-CPU allocation or static variable: its address in unit 0
/// of its chunk, like the kernel's `__percpu` pointer. It is a number, not a
/// pointer, and every use checks it against the allocator, so making one
/// with [`PercpuPtr::from_addr`] is harmless.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PercpuPtr(usize);

impl PercpuPtr {
    /// The handle at address `addr` in unit 0.
    pub const fn from_addr(addr: usize) -> PercpuPtr {
        PercpuPtr(addr)
    }

    /// The address in unit 0.
    pub const fn addr(self) -> usize {
        self.0
    }

    /// The handle `bytes` further on, for a field of a per-CPU structure
    /// (wrapping; a handle outside any allocation is refused when used).
    pub const fn byte_add(self, bytes: usize) -> PercpuPtr {
        PercpuPtr(self.0.wrapping_add(bytes))
    }
}

impl fmt::Debug for PercpuPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PercpuPtr({:#x})", self.0)
    }
}

/// One chunk as seen by tests and the simulator ([`PercpuAllocator::chunks_info`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChunkInfo {
    /// The address of unit 0 (the chunk's base address).
    pub base: usize,
    /// Whether this is the first chunk, made at boot.
    pub first: bool,
    /// Whether real memory is behind the chunk.
    pub backed: bool,
    /// Bytes per unit.
    pub unit_size: usize,
    /// Units in the chunk (one per possible CPU).
    pub nr_units: usize,
    /// Bytes hidden at the start of each unit (the first chunk's static area).
    pub start_offset: usize,
    /// Bytes hidden at the end of each unit (the first chunk's unused tail).
    pub end_offset: usize,
    /// Free bytes per unit (`chunk->free_bytes`).
    pub free_bytes: usize,
    /// The largest free run of the chunk's dynamic region, in bytes (`contig_hint`).
    pub contig_bytes: usize,
    /// The slot list the chunk sits on.
    pub slot: usize,
    /// Live dynamic and reserved allocations.
    pub nr_alloc: usize,
    /// Populated pages per unit.
    pub populated_pages: usize,
    /// One bit per 4-byte fragment, set when in use.
    pub alloc_map: Bitmap,
    /// One bit per fragment and one more: set at each allocation's start and just past its end.
    pub bound_map: Bitmap,
}

/// A chunk: its memory, its area map and where it sits.
#[derive(Debug)]
struct Chunk {
    mem: ChunkMemory,
    map: AreaMap,
    first: bool,
    /// The fragments dynamic allocations may use: `[lo, hi)`.
    lo: usize,
    hi: usize,
    /// The largest free run in `[lo, hi)`, in fragments.
    contig: usize,
    slot: usize,
    /// One bit per page of a unit.
    populated: Bitmap,
}

/// A registered static variable: where it is, how big, and its name.
#[derive(Clone, Copy, Debug)]
struct StaticVar {
    name: &'static str,
    size: usize,
}

/// Everything behind the lock.
#[derive(Debug)]
struct State {
    /// Chunks by base address.
    chunks: BTreeMap<usize, Chunk>,
    /// `slots[s]` lists the base addresses of the chunks on slot `s`.
    slots: Vec<Vec<usize>>,
    /// The first chunk's base address.
    first: usize,
    /// Offsets of static variables by the address of their descriptor.
    statics: BTreeMap<usize, usize>,
    /// Static variables by offset.
    static_offs: BTreeMap<usize, StaticVar>,
    /// The next free byte of the static area.
    static_next: usize,
    /// Populated pages, one unit's worth (`pcpu_nr_populated`).
    nr_populated: usize,
}

/// The dynamic per-CPU allocator: `alloc_percpu`, `__alloc_percpu`,
/// `free_percpu`, `per_cpu_ptr` and the `this_cpu_*` operations of
/// `mm/percpu.c` and `include/linux/percpu-defs.h` (see the module docs of
/// `dynamic.rs` for the model).
///
/// One reader-writer lock guards the chunks (the kernel's `pcpu_lock` and
/// `pcpu_alloc_mutex`): allocation and free take it for writing, lookups and
/// typed accesses for reading. Its readers count themselves on a cache line
/// per CPU (a "big reader" lock), so CPUs updating their own copies run side
/// by side without sharing a line.
pub struct PercpuAllocator<S: ChunkSource> {
    source: S,
    nr_units: usize,
    unit_size: usize,
    static_size: usize,
    reserved_size: usize,
    dyn_size: usize,
    state: BrLock<State>,
}

/// The slot of a free run of `bytes` bytes (`__pcpu_size_to_slot`).
fn size_to_slot(bytes: usize) -> usize {
    let fls = (usize::BITS - bytes.leading_zeros()) as usize;
    (fls + 2)
        .saturating_sub(PCPU_SLOT_BASE_SHIFT as usize)
        .max(1)
}

/// Checks a request and returns its size and alignment in fragments.
fn fragments(size: usize, align: usize) -> Result<(usize, usize), PercpuError> {
    if size == 0 || size > PCPU_MIN_UNIT_SIZE || !align.is_power_of_two() || align > PAGE_SIZE {
        return Err(PercpuError::IllegalSizeOrAlign { size, align });
    }
    Ok((
        size.div_ceil(FRAGMENT),
        align.max(PCPU_MIN_ALLOC_SIZE) / FRAGMENT,
    ))
}

impl<S: ChunkSource> PercpuAllocator<S> {
    /// Sets up the first chunk for `nr_cpus` CPUs with a static area of
    /// `static_size` bytes (`pcpu_setup_first_chunk`, `mm/percpu.c`), taking
    /// its memory from `source`. `nr_cpus == 0` is taken as 1 (the boot CPU).
    ///
    /// # Errors
    ///
    /// [`PercpuError::StaticTooLarge`] if the unit size would overflow or
    /// the static area is above 1 GiB, and whatever `source` reports for the
    /// first chunk's memory.
    pub fn new(source: S, nr_cpus: usize, static_size: usize) -> Result<Self, PercpuError> {
        let nr_units = nr_cpus.max(1);
        let too_large = PercpuError::StaticTooLarge { static_size };
        if static_size > 1 << 30 {
            return Err(too_large);
        }
        let static_size = static_size.next_multiple_of(FRAGMENT);
        let size_sum = (static_size + PERCPU_MODULE_RESERVE + PERCPU_DYNAMIC_RESERVE)
            .next_multiple_of(PAGE_SIZE);
        let unit_size = size_sum.max(PCPU_MIN_UNIT_SIZE);
        // As in `pcpu_build_alloc_info`, rounding up to a page grows the dynamic region.
        let dyn_size = size_sum - static_size - PERCPU_MODULE_RESERVE;
        let chunk_bytes = unit_size.checked_mul(nr_units).ok_or(too_large)?;
        let mut alloc = PercpuAllocator {
            source,
            nr_units,
            unit_size,
            static_size,
            reserved_size: PERCPU_MODULE_RESERVE,
            dyn_size,
            state: BrLock::new(
                State {
                    chunks: BTreeMap::new(),
                    slots: Vec::new(),
                    first: 0,
                    statics: BTreeMap::new(),
                    static_offs: BTreeMap::new(),
                    static_next: 0,
                    nr_populated: 0,
                },
                nr_units,
            ),
        };
        let mem = alloc.source.alloc_chunk(chunk_bytes)?;
        let state = alloc.state.get_mut();
        alloc_check_chunk(&alloc.source, state, mem, chunk_bytes).map(|mem| {
            let nbits = unit_size / FRAGMENT;
            let lo = (static_size + PERCPU_MODULE_RESERVE) / FRAGMENT;
            let hi = lo + dyn_size / FRAGMENT;
            let nr_pages = unit_size / PAGE_SIZE;
            let base = mem.addr();
            let map = AreaMap::new(nbits, static_size / FRAGMENT, nbits - hi);
            state.slots = (0..=size_to_slot(unit_size) + 1)
                .map(|_| Vec::new())
                .collect();
            state.first = base;
            state.nr_populated = nr_pages;
            let chunk = Chunk {
                mem,
                contig: map.contig(lo, hi),
                map,
                first: true,
                lo,
                hi,
                slot: 0,
                populated: Bitmap::new(nr_pages, true),
            };
            state.chunks.insert(base, chunk);
            relocate(state, base, unit_size);
            // The static area is zero, as `.data..percpu` without initialisers would be.
            if let Some(c) = state.chunks.get(&base) {
                for cpu in 0..nr_units {
                    c.mem.zero(cpu * unit_size, static_size);
                }
            }
        })?;
        Ok(alloc)
    }

    /// Possible CPUs, which is units per chunk (`pcpu_nr_units`).
    pub fn nr_cpus(&self) -> usize {
        self.nr_units
    }

    /// Bytes per unit (`pcpu_unit_size`).
    pub fn unit_size(&self) -> usize {
        self.unit_size
    }

    /// The offset of CPU `cpu`'s unit from unit 0 in every chunk (`__per_cpu_offset[cpu]`
    /// relative to unit 0), or `None` if the CPU does not exist.
    pub fn unit_offset(&self, cpu: usize) -> Option<usize> {
        (cpu < self.nr_units).then(|| cpu * self.unit_size)
    }

    /// Bytes of the first chunk's static area (rounded up to 4).
    pub fn static_size(&self) -> usize {
        self.static_size
    }

    /// Bytes of the first chunk's reserved region.
    pub fn reserved_size(&self) -> usize {
        self.reserved_size
    }

    /// Bytes of the first chunk's dynamic region.
    pub fn dyn_size(&self) -> usize {
        self.dyn_size
    }

    /// The chunk source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// Allocates `size` bytes aligned to `align` in every CPU's unit, zeroed
    /// in all of them (`pcpu_alloc` via `__alloc_percpu`, `mm/percpu.c`).
    /// Sizes round up to a multiple of 4, alignments below 4 become 4.
    ///
    /// # Errors
    ///
    /// [`PercpuError::IllegalSizeOrAlign`] for `size == 0`, `size > 32768`,
    /// or `align` not a power of two or above a page;
    /// [`PercpuError::OutOfMemory`] (or the source's own error) if no chunk
    /// has room and the source has no new chunk. Nothing changes.
    #[doc(alias = "__alloc_percpu")]
    #[doc(alias = "pcpu_alloc")]
    pub fn alloc(&self, size: usize, align: usize) -> Result<PercpuPtr, PercpuError> {
        let (bits, align_bits) = fragments(size, align)?;
        let mut state = self.state.write();
        let st = &mut *state;
        let first_slot = size_to_slot(bits * FRAGMENT);
        for slot in first_slot..st.slots.len() {
            let mut i = 0;
            while let Some(&base) = st.slots[slot].get(i) {
                i += 1;
                if let Some(ptr) = self.try_chunk(st, base, bits, align_bits) {
                    return Ok(ptr);
                }
            }
        }
        // No chunk has room: make one (`pcpu_create_chunk`).
        let chunk_bytes = self.unit_size * self.nr_units;
        let mem = self
            .source
            .alloc_chunk(chunk_bytes)
            .map_err(|err| match err {
                PercpuError::OutOfMemory { .. } => PercpuError::OutOfMemory { size, chunk_bytes },
                other => other,
            })?;
        let mem = alloc_check_chunk(&self.source, st, mem, chunk_bytes)?;
        let base = mem.addr();
        let nbits = self.unit_size / FRAGMENT;
        let map = AreaMap::new(nbits, 0, 0);
        st.chunks.insert(
            base,
            Chunk {
                mem,
                map,
                first: false,
                lo: 0,
                hi: nbits,
                contig: nbits,
                slot: 0,
                populated: Bitmap::new(self.unit_size / PAGE_SIZE, false),
            },
        );
        relocate(st, base, self.unit_size);
        // An empty chunk of the unit size fits every legal request.
        self.try_chunk(st, base, bits, align_bits)
            .ok_or(PercpuError::OutOfMemory { size, chunk_bytes })
    }

    /// Tries to place an area in the chunk at `base`, and on success
    /// populates, zeroes and relocates it.
    fn try_chunk(
        &self,
        st: &mut State,
        base: usize,
        bits: usize,
        align_bits: usize,
    ) -> Option<PercpuPtr> {
        let chunk = st.chunks.get_mut(&base)?;
        if chunk.contig < bits {
            return None;
        }
        let bit = chunk.map.alloc(bits, align_bits, chunk.lo, chunk.hi)?;
        self.place(st, base, bit, bits);
        Some(PercpuPtr(base + bit * FRAGMENT))
    }

    /// The bookkeeping after `bits` fragments at `bit` of chunk `base` were
    /// allocated: hints, slot, populated pages, zeroing.
    fn place(&self, st: &mut State, base: usize, bit: usize, bits: usize) {
        let Some(chunk) = st.chunks.get_mut(&base) else {
            return;
        };
        let (off, len) = (bit * FRAGMENT, bits * FRAGMENT);
        chunk.contig = chunk.map.contig(chunk.lo, chunk.hi);
        let mut newly = 0;
        for page in off / PAGE_SIZE..(off + len).div_ceil(PAGE_SIZE) {
            if !chunk.populated.bit(page) {
                chunk.populated.set(page, true);
                newly += 1;
            }
        }
        for cpu in 0..self.nr_units {
            chunk.mem.zero(cpu * self.unit_size + off, len);
        }
        st.nr_populated += newly;
        relocate(st, base, self.unit_size);
    }

    /// Allocates room for one `T` in every CPU's unit, zeroed
    /// (`alloc_percpu`, `include/linux/percpu.h`).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::alloc`] with `size_of::<T>()` and
    /// `align_of::<T>()`: a zero-sized `T` is refused.
    pub fn alloc_percpu<T>(&self) -> Result<PercpuPtr, PercpuError> {
        self.alloc(size_of::<T>(), align_of::<T>())
    }

    /// Allocates from the first chunk's reserved region
    /// (`__alloc_reserved_percpu`, `mm/percpu.c`: module static variables).
    ///
    /// # Errors
    ///
    /// [`PercpuError::IllegalSizeOrAlign`] as for [`PercpuAllocator::alloc`],
    /// [`PercpuError::ReservedFull`] if the region has no room. Nothing changes.
    #[doc(alias = "__alloc_reserved_percpu")]
    pub fn alloc_reserved(&self, size: usize, align: usize) -> Result<PercpuPtr, PercpuError> {
        let (bits, align_bits) = fragments(size, align)?;
        let mut state = self.state.write();
        let st = &mut *state;
        let base = st.first;
        let lo = self.static_size / FRAGMENT;
        let hi = lo + self.reserved_size / FRAGMENT;
        let chunk = st
            .chunks
            .get_mut(&base)
            .ok_or(PercpuError::ReservedFull { size, align })?;
        let bit = chunk
            .map
            .alloc(bits, align_bits, lo, hi)
            .ok_or(PercpuError::ReservedFull { size, align })?;
        self.place(st, base, bit, bits);
        Ok(PercpuPtr(base + bit * FRAGMENT))
    }

    /// Frees a dynamic or reserved allocation (`free_percpu`, `mm/percpu.c`).
    /// A dynamic chunk left empty goes to the free slot; if that makes two
    /// empty chunks, the older ones are given back to the source.
    ///
    /// A handle freed and then allocated again at the same address frees
    /// the new allocation, as in the kernel: handles carry no generation.
    ///
    /// # Errors
    ///
    /// [`PercpuError::Foreign`] if `p` lies in no chunk of this allocator;
    /// [`PercpuError::NotAllocated`] if no live allocation starts at `p`
    /// (freed twice, inside an allocation, a static variable). Nothing changes.
    pub fn free_percpu(&self, p: PercpuPtr) -> Result<(), PercpuError> {
        let addr = p.0;
        let mut state = self.state.write();
        let st = &mut *state;
        let base = chunk_of(st, addr, self.unit_size).ok_or(PercpuError::Foreign { addr })?;
        let chunk = st
            .chunks
            .get_mut(&base)
            .ok_or(PercpuError::Foreign { addr })?;
        let off = addr - base;
        if !off.is_multiple_of(FRAGMENT) {
            return Err(PercpuError::NotAllocated { addr });
        }
        chunk
            .map
            .free(off / FRAGMENT)
            .ok_or(PercpuError::NotAllocated { addr })?;
        chunk.contig = chunk.map.contig(chunk.lo, chunk.hi);
        let emptied = !chunk.first && chunk.map.nr_alloc() == 0;
        relocate(st, base, self.unit_size);
        if emptied {
            self.balance_free(st);
        }
        Ok(())
    }

    /// Gives back every empty chunk but the first on the free slot
    /// (`pcpu_balance_free`, `mm/percpu.c`).
    fn balance_free(&self, st: &mut State) {
        let free_slot = st.slots.len() - 1;
        let surplus: Vec<usize> = st.slots[free_slot].iter().skip(1).copied().collect();
        for base in surplus {
            st.slots[free_slot].retain(|&b| b != base);
            if let Some(chunk) = st.chunks.remove(&base) {
                st.nr_populated -= chunk.populated.count_ones();
                self.source.free_chunk(chunk.mem);
            }
        }
    }

    /// The address of CPU `cpu`'s copy of `p` (`per_cpu_ptr`,
    /// `include/linux/percpu-defs.h`), for any chunk, backed or not.
    ///
    /// # Errors
    ///
    /// [`PercpuError::CpuOutOfRange`], [`PercpuError::Foreign`], and
    /// [`PercpuError::NotLive`] if `p` is not inside a live allocation or
    /// registered static variable.
    pub fn per_cpu_addr(&self, p: PercpuPtr, cpu: usize) -> Result<usize, PercpuError> {
        let st = self.state.read(cpu);
        let (base, off) = self.resolve(&st, p, cpu, 1)?;
        Ok(base + cpu * self.unit_size + off)
    }

    /// A pointer to CPU `cpu`'s copy of `p` (`per_cpu_ptr`,
    /// `include/linux/percpu-defs.h`).
    ///
    /// The pointer stays valid until `p`'s allocation is freed (chunks are
    /// given back only when empty). Reading or writing through it is the
    /// caller's `unsafe` business: the copy may be accessed at the same time
    /// by its CPU, so use atomics or the typed operations.
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::per_cpu_addr`], and [`PercpuError::NotBacked`]
    /// for a chunk with no memory behind it.
    pub fn per_cpu_ptr(&self, p: PercpuPtr, cpu: usize) -> Result<NonNull<u8>, PercpuError> {
        let st = self.state.read(cpu);
        let (base, off) = self.resolve(&st, p, cpu, 1)?;
        let chunk = st
            .chunks
            .get(&base)
            .ok_or(PercpuError::Foreign { addr: p.0 })?;
        chunk
            .mem
            .ptr_at(cpu * self.unit_size + off)
            .ok_or(PercpuError::NotBacked { addr: base })
    }

    /// A pointer to this CPU's copy of `p` (`this_cpu_ptr`): the copy of
    /// `ctx.current_cpu()`. As in the kernel, the caller keeps preemption
    /// disabled (a [`PreemptGuard`](crate::PreemptGuard)) while it uses the pointer, or the task
    /// may move and use another CPU's copy.
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::per_cpu_ptr`].
    pub fn this_cpu_ptr(
        &self,
        p: PercpuPtr,
        ctx: &dyn CpuContext,
    ) -> Result<NonNull<u8>, PercpuError> {
        self.per_cpu_ptr(p, ctx.current_cpu())
    }

    /// Finds `len` bytes at `p` inside a live allocation or static variable:
    /// the chunk's base and the offset in the unit.
    fn resolve(
        &self,
        st: &State,
        p: PercpuPtr,
        cpu: usize,
        len: usize,
    ) -> Result<(usize, usize), PercpuError> {
        if cpu >= self.nr_units {
            return Err(PercpuError::CpuOutOfRange {
                cpu,
                nr_cpus: self.nr_units,
            });
        }
        let addr = p.0;
        let base = chunk_of(st, addr, self.unit_size).ok_or(PercpuError::Foreign { addr })?;
        let chunk = st.chunks.get(&base).ok_or(PercpuError::Foreign { addr })?;
        let off = addr - base;
        let (start, size) = if chunk.first && off < self.static_size {
            let (start, size) = st
                .static_offs
                .range(..=off)
                .next_back()
                .map(|(&start, var)| (start, var.size))
                .filter(|&(start, size)| off < start + size)
                .ok_or(PercpuError::NotLive { addr })?;
            (start, size)
        } else {
            let (bit, bits) = chunk
                .map
                .containing(off / FRAGMENT)
                .ok_or(PercpuError::NotLive { addr })?;
            (bit * FRAGMENT, bits * FRAGMENT)
        };
        if off + len > start + size {
            return Err(PercpuError::OutOfBounds { addr, size: len });
        }
        Ok((base, off))
    }

    /// Applies a typed operation to CPU `cpu`'s copy under the read lock.
    fn word<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        cpu: usize,
        op: WordOp<T>,
    ) -> Result<T, PercpuError> {
        let st = self.state.read(cpu);
        let (base, off) = self.resolve(&st, p, cpu, size_of::<T>())?;
        let chunk = st
            .chunks
            .get(&base)
            .ok_or(PercpuError::Foreign { addr: p.0 })?;
        if !chunk.mem.is_backed() {
            return Err(PercpuError::NotBacked { addr: base });
        }
        let align = word_align::<T>();
        if !p.0.is_multiple_of(align) {
            return Err(PercpuError::Misaligned { addr: p.0, align });
        }
        chunk
            .mem
            .apply(cpu * self.unit_size + off, op)
            .ok_or(PercpuError::Misaligned { addr: p.0, align })
    }

    /// Reads CPU `cpu`'s copy of the `T` at `p` (`*per_cpu_ptr(p, cpu)`), atomically.
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::per_cpu_ptr`], and [`PercpuError::OutOfBounds`]
    /// or [`PercpuError::Misaligned`] if a `T` does not fit at `p`.
    pub fn per_cpu_read<T: PercpuWord>(&self, p: PercpuPtr, cpu: usize) -> Result<T, PercpuError> {
        self.word(p, cpu, WordOp::Read)
    }

    /// Writes CPU `cpu`'s copy of the `T` at `p`, atomically.
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::per_cpu_read`]; nothing is written.
    pub fn per_cpu_write<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        cpu: usize,
        value: T,
    ) -> Result<(), PercpuError> {
        self.word(p, cpu, WordOp::Xchg(value)).map(drop)
    }

    /// The wrapping sum of every CPU's copy of the `T` at `p`, read one at a
    /// time (the loop of `percpu_counter_sum`, `lib/percpu_counter.c`).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::per_cpu_read`].
    pub fn per_cpu_sum<T: PercpuWord>(&self, p: PercpuPtr) -> Result<T, PercpuError> {
        (0..self.nr_units).try_fold(T::ZERO, |sum, cpu| {
            Ok(sum.wrapping_add(self.per_cpu_read::<T>(p, cpu)?))
        })
    }

    /// Applies `op` to this CPU's copy. Preemption is not touched: the
    /// operation is one atomic access, safe against preemption on its own as
    /// the kernel's `this_cpu_*` instructions are, and a task that moves
    /// between choosing the copy and the access updates the copy of the CPU
    /// it ran on.
    fn this_cpu<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        ctx: &dyn CpuContext,
        op: WordOp<T>,
    ) -> Result<T, PercpuError> {
        self.word(p, ctx.current_cpu(), op)
    }

    /// Reads this CPU's copy (`this_cpu_read`, `include/linux/percpu-defs.h`).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::per_cpu_read`] for `ctx.current_cpu()`; the
    /// preemption counter is back where it was.
    pub fn this_cpu_read<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        ctx: &dyn CpuContext,
    ) -> Result<T, PercpuError> {
        self.this_cpu(p, ctx, WordOp::Read)
    }

    /// Writes this CPU's copy (`this_cpu_write`).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::this_cpu_read`]; nothing is written.
    pub fn this_cpu_write<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        ctx: &dyn CpuContext,
        value: T,
    ) -> Result<(), PercpuError> {
        self.this_cpu(p, ctx, WordOp::Xchg(value)).map(drop)
    }

    /// Replaces this CPU's copy and returns the old value (`this_cpu_xchg`).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::this_cpu_read`]; nothing is written.
    pub fn this_cpu_xchg<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        ctx: &dyn CpuContext,
        value: T,
    ) -> Result<T, PercpuError> {
        self.this_cpu(p, ctx, WordOp::Xchg(value))
    }

    /// Adds `delta` to this CPU's copy, wrapping (`this_cpu_add`).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::this_cpu_read`]; nothing is written.
    pub fn this_cpu_add<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        ctx: &dyn CpuContext,
        delta: T,
    ) -> Result<(), PercpuError> {
        self.this_cpu(p, ctx, WordOp::Add(delta)).map(drop)
    }

    /// Adds `delta` to this CPU's copy and returns the new value (`this_cpu_add_return`).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::this_cpu_read`]; nothing is written.
    pub fn this_cpu_add_return<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        ctx: &dyn CpuContext,
        delta: T,
    ) -> Result<T, PercpuError> {
        Ok(self
            .this_cpu(p, ctx, WordOp::Add(delta))?
            .wrapping_add(delta))
    }

    /// Subtracts `delta` from this CPU's copy, wrapping (`this_cpu_sub`).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::this_cpu_read`]; nothing is written.
    pub fn this_cpu_sub<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        ctx: &dyn CpuContext,
        delta: T,
    ) -> Result<(), PercpuError> {
        self.this_cpu(p, ctx, WordOp::Sub(delta)).map(drop)
    }

    /// Adds one to this CPU's copy (`this_cpu_inc`).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::this_cpu_read`]; nothing is written.
    pub fn this_cpu_inc<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        ctx: &dyn CpuContext,
    ) -> Result<(), PercpuError> {
        self.this_cpu_add(p, ctx, T::ONE)
    }

    /// Subtracts one from this CPU's copy (`this_cpu_dec`).
    ///
    /// # Errors
    ///
    /// As [`PercpuAllocator::this_cpu_read`]; nothing is written.
    pub fn this_cpu_dec<T: PercpuWord>(
        &self,
        p: PercpuPtr,
        ctx: &dyn CpuContext,
    ) -> Result<(), PercpuError> {
        self.this_cpu_sub(p, ctx, T::ONE)
    }

    /// Places a static variable in the first chunk's static area and
    /// returns its handle (the boot-time copy of `.data..percpu` into each
    /// unit; see [`define_per_cpu!`](crate::define_per_cpu)). Every CPU's
    /// copy starts zeroed. Variables go one after another, each aligned.
    ///
    /// # Errors
    ///
    /// [`PercpuError::StaticAlreadyRegistered`] if `var` is registered with
    /// this allocator already; [`PercpuError::StaticAreaFull`] if it does not
    /// fit, or needs an alignment above a page. Nothing changes.
    pub fn register_static<T>(
        &self,
        var: &'static crate::StaticPercpu<T>,
    ) -> Result<PercpuPtr, PercpuError> {
        let key = var.key();
        let (name, size, align) = (var.name(), size_of::<T>(), align_of::<T>());
        let mut state = self.state.write();
        let st = &mut *state;
        if st.statics.contains_key(&key) {
            return Err(PercpuError::StaticAlreadyRegistered { name });
        }
        let full = PercpuError::StaticAreaFull { name, size, align };
        // Zero-sized variables still get a fragment, so addresses stay distinct.
        let room = size.max(1).next_multiple_of(FRAGMENT);
        let off = st.static_next.next_multiple_of(align.max(FRAGMENT));
        if align > PAGE_SIZE || off + room > self.static_size {
            return Err(full);
        }
        let base = st.first;
        if let Some(chunk) = st.chunks.get(&base) {
            for cpu in 0..self.nr_units {
                chunk.mem.zero(cpu * self.unit_size + off, room);
            }
        }
        st.static_next = off + room;
        st.statics.insert(key, off);
        st.static_offs.insert(off, StaticVar { name, size: room });
        Ok(PercpuPtr(base + off))
    }

    /// The handle of a registered static variable.
    ///
    /// # Errors
    ///
    /// [`PercpuError::StaticNotRegistered`] if `var` is not registered with this allocator.
    pub fn static_ptr<T>(
        &self,
        var: &'static crate::StaticPercpu<T>,
    ) -> Result<PercpuPtr, PercpuError> {
        let st = self.state.read(0);
        st.statics
            .get(&var.key())
            .map(|&off| PercpuPtr(st.first + off))
            .ok_or(PercpuError::StaticNotRegistered { name: var.name() })
    }

    /// Populated pages times units: the `Percpu` line of `/proc/meminfo`
    /// in pages (`pcpu_nr_pages`, `mm/percpu.c`).
    #[doc(alias = "pcpu_nr_pages")]
    pub fn nr_pages(&self) -> usize {
        self.state.read(0).nr_populated * self.nr_units
    }

    /// The `/proc/meminfo` line for per-CPU memory, as `fs/proc/meminfo.c`
    /// prints it: `Percpu:` padded to 16 characters, the size in kB in 8, ` kB`.
    pub fn meminfo_line(&self) -> String {
        format!(
            "{:<16}{:>8} kB",
            "Percpu:",
            self.nr_pages() * (PAGE_SIZE / 1024)
        )
    }

    /// The number of chunks, the first included.
    pub fn nr_chunks(&self) -> usize {
        self.state.read(0).chunks.len()
    }

    /// Every chunk, in address order.
    pub fn chunks_info(&self) -> Vec<ChunkInfo> {
        let st = self.state.read(0);
        st.chunks
            .iter()
            .map(|(&base, c)| ChunkInfo {
                base,
                first: c.first,
                backed: c.mem.is_backed(),
                unit_size: self.unit_size,
                nr_units: self.nr_units,
                start_offset: c.map.start_bits() * FRAGMENT,
                end_offset: c.map.end_bits() * FRAGMENT,
                free_bytes: c.map.free_bytes(),
                contig_bytes: c.contig * FRAGMENT,
                slot: c.slot,
                nr_alloc: c.map.nr_alloc(),
                populated_pages: c.populated.count_ones(),
                alloc_map: c.map.alloc_map().clone(),
                bound_map: c.map.bound_map().clone(),
            })
            .collect()
    }

    /// Checks every invariant of the chunks and slots; the error says which
    /// one broke. Meant for tests (like talc's `scan_for_errors`).
    pub fn check_invariants(&self) -> Result<(), String> {
        let st = self.state.read(0);
        let free_slot = st.slots.len() - 1;
        let mut populated = 0;
        let mut end_of_last = 0;
        let mut empty = 0;
        for (&base, c) in &st.chunks {
            let at = |what: String| format!("chunk {base:#x}: {what}");
            c.map.check().map_err(at)?;
            if base < end_of_last {
                return Err(at("overlaps the chunk before".into()));
            }
            end_of_last = base + c.mem.len();
            if c.mem.len() < self.unit_size * self.nr_units || base % PAGE_SIZE != 0 {
                return Err(at(format!("memory of {} bytes", c.mem.len())));
            }
            if c.map.nbits() * FRAGMENT != self.unit_size {
                return Err(at("the maps do not cover the unit".into()));
            }
            let contig = c.map.contig(c.lo, c.hi);
            if c.contig != contig {
                return Err(at(format!(
                    "contig hint {} but {contig} free in a row",
                    c.contig
                )));
            }
            let slot = chunk_slot(c, self.unit_size, free_slot);
            if c.slot != slot || st.slots[slot].iter().filter(|&&b| b == base).count() != 1 {
                return Err(at(format!(
                    "should sit once on slot {slot}, sits on {}",
                    c.slot
                )));
            }
            for bit in c.map.alloc_map().iter_ones() {
                if !c.populated.bit(bit * FRAGMENT / PAGE_SIZE) {
                    return Err(at(format!(
                        "fragment {bit} is in use on an unpopulated page"
                    )));
                }
            }
            if c.first != (base == st.first) || (c.first && c.populated.count_zeros() > 0) {
                return Err(at(
                    "the first chunk is fully populated, and only it is first".into(),
                ));
            }
            if !c.first && c.map.nr_alloc() == 0 {
                empty += 1;
            }
            populated += c.populated.count_ones();
        }
        if st.slots.iter().map(Vec::len).sum::<usize>() != st.chunks.len() {
            return Err("the slot lists do not hold every chunk exactly once".into());
        }
        if populated != st.nr_populated {
            return Err(format!(
                "nr_populated {} but {populated} pages populated",
                st.nr_populated
            ));
        }
        if empty > 1 {
            return Err(format!("{empty} empty dynamic chunks, want at most one"));
        }
        let mut next = 0;
        for (&off, var) in &st.static_offs {
            if off < next || off + var.size > st.static_next || st.static_next > self.static_size {
                return Err(format!(
                    "static variable {} at {off} overlaps or overflows",
                    var.name
                ));
            }
            next = off + var.size;
        }
        if st.statics.len() != st.static_offs.len() {
            return Err("the two tables of static variables disagree".into());
        }
        Ok(())
    }
}

/// The chunk whose unit 0 contains `addr`.
fn chunk_of(st: &State, addr: usize, unit_size: usize) -> Option<usize> {
    let (&base, _) = st.chunks.range(..=addr).next_back()?;
    (addr - base < unit_size).then_some(base)
}

/// The slot a chunk belongs on (`pcpu_chunk_slot`): 0 when full, the free
/// slot when wholly free, else by its largest free run.
fn chunk_slot(c: &Chunk, unit_size: usize, free_slot: usize) -> usize {
    let contig = c.contig * FRAGMENT;
    if c.map.free_bytes() < PCPU_MIN_ALLOC_SIZE || contig == 0 {
        0
    } else if contig == unit_size {
        free_slot
    } else {
        size_to_slot(contig)
    }
}

/// Moves the chunk at `base` to the slot list it now belongs on
/// (`pcpu_chunk_relocate`): to the front when it gained room, to the back
/// when it lost some. A chunk not yet on any list is put on one.
fn relocate(st: &mut State, base: usize, unit_size: usize) {
    let free_slot = st.slots.len() - 1;
    let Some(chunk) = st.chunks.get_mut(&base) else {
        return;
    };
    let old = chunk.slot;
    let new = chunk_slot(chunk, unit_size, free_slot);
    chunk.slot = new;
    let listed = st.slots[old].iter().position(|&b| b == base);
    match listed {
        Some(_) if old == new => {}
        Some(i) => {
            st.slots[old].remove(i);
            if old < new {
                st.slots[new].insert(0, base);
            } else {
                st.slots[new].push(base);
            }
        }
        None => st.slots[new].insert(0, base),
    }
}

/// Checks memory from the source: long enough, page aligned, overlapping no
/// chunk. Bad memory goes straight back to the source.
fn alloc_check_chunk<S: ChunkSource>(
    source: &S,
    st: &State,
    mem: ChunkMemory,
    want: usize,
) -> Result<ChunkMemory, PercpuError> {
    let (addr, len) = (mem.addr(), mem.len());
    let end = addr.checked_add(len);
    let overlaps = end.is_none_or(|end| {
        st.chunks
            .range(..end)
            .next_back()
            .is_some_and(|(&b, c)| b + c.mem.len() > addr)
    });
    if len < want || addr == 0 || addr % PAGE_SIZE != 0 || overlaps {
        source.free_chunk(mem);
        return Err(PercpuError::BadChunk { addr, len, want });
    }
    Ok(mem)
}

impl<S: ChunkSource> Drop for PercpuAllocator<S> {
    /// Gives every chunk, the first included, back to the source.
    fn drop(&mut self) {
        let st = self.state.get_mut();
        for (_, chunk) in core::mem::take(&mut st.chunks) {
            self.source.free_chunk(chunk.mem);
        }
    }
}

impl<S: ChunkSource + fmt::Debug> fmt::Debug for PercpuAllocator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PercpuAllocator")
            .field("source", &self.source)
            .field("nr_cpus", &self.nr_units)
            .field("unit_size", &self.unit_size)
            .field("nr_chunks", &self.nr_chunks())
            .field("nr_pages", &self.nr_pages())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
