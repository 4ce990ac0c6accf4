//! Object layout and slab order as SLUB computes them (`calculate_alignment`,
//! `calculate_sizes`, `calculate_order` in `mm/slub.c`), and the kmalloc size
//! classes (`kmalloc_index`, `kmalloc_size_index` in `include/linux/slab.h`
//! and `mm/slab_common.c`).

use kmm_page::{MAX_PAGE_ORDER, PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE, get_order};

use crate::SlabFlags;

/// `cache_line_size()` on x86.
pub const CACHE_LINE_SIZE: usize = 64;
/// `sizeof(void *)`: the free pointer and the red zone word.
pub(crate) const WORD: usize = 8;
/// `ARCH_SLAB_MINALIGN` / `ARCH_KMALLOC_MINALIGN`.
pub const ARCH_SLAB_MINALIGN: usize = 8;
/// `MAX_OBJS_PER_PAGE` (`mm/slub.c`).
pub const MAX_OBJS_PER_PAGE: usize = 32767;
/// `slub_max_order` default: `PAGE_ALLOC_COSTLY_ORDER`.
pub const SLUB_MAX_ORDER: u32 = PAGE_ALLOC_COSTLY_ORDER;
/// `MIN_PARTIAL` (`mm/slub.c`).
pub const MIN_PARTIAL: usize = 5;
/// `MAX_PARTIAL` (`mm/slub.c`).
pub const MAX_PARTIAL: usize = 10;
/// `sizeof(struct track)` with a stack-depot handle (x86_64): address,
/// handle, cpu, pid and a timestamp.
pub(crate) const TRACK_SIZE: usize = 32;

/// `POISON_INUSE`: padding and fresh slab bytes.
pub const POISON_INUSE: u8 = 0x5a;
/// `POISON_FREE`: the bytes of a free object.
pub const POISON_FREE: u8 = 0x6b;
/// `POISON_END`: the last byte of a free object.
pub const POISON_END: u8 = 0xa5;
/// `SLUB_RED_INACTIVE`: red zone of a free object.
pub const SLUB_RED_INACTIVE: u8 = 0xbb;
/// `SLUB_RED_ACTIVE`: red zone of an allocated object.
pub const SLUB_RED_ACTIVE: u8 = 0xcc;

const fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

/// `calculate_alignment` (`mm/slab_common.c`): the cache-line rule of
/// `SLAB_HWCACHE_ALIGN` (halved while the object fits in half), at least
/// `ARCH_SLAB_MINALIGN`, rounded up to a word.
pub fn calculate_alignment(flags: SlabFlags, align: usize, size: usize) -> usize {
    let mut align = align;
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = CACHE_LINE_SIZE;
        while size <= ralign / 2 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align = align.max(ARCH_SLAB_MINALIGN);
    align_up(align, WORD)
}

/// Where everything sits in an object slot (`struct kmem_cache` fields set by `calculate_sizes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectLayout {
    /// `object_size`: what the caller asked for.
    pub object_size: usize,
    /// `size`: the slot size, the stride of objects in a slab (slabinfo's `objsize`).
    pub size: usize,
    /// `align`.
    pub align: usize,
    /// `inuse`: the object plus its right red zone; metadata starts here.
    pub inuse: usize,
    /// `offset`: where the free pointer sits, from the object start.
    pub offset: usize,
    /// `red_left_pad`: bytes of left red zone before each object.
    pub red_left_pad: usize,
    /// Slab order (`oo_order(s->oo)`).
    pub order: u32,
    /// Objects per slab of that order (`oo_objects(s->oo)`).
    pub objects: usize,
    /// The fallback order (`s->min`): `get_order(size)`.
    pub min_order: u32,
    /// Objects in a fallback slab.
    pub min_objects: usize,
    /// Whether free objects are poisoned (`__OBJECT_POISON`: `SLAB_POISON` without a ctor).
    pub object_poison: bool,
}

impl ObjectLayout {
    /// Where the `STORE_USER` tracks start (`get_info_end`).
    pub(crate) fn info_end(&self) -> usize {
        if self.offset >= self.inuse {
            self.offset + WORD
        } else {
            self.inuse
        }
    }
}

/// Objects that fit in a slab of `order` (`order_objects`).
pub const fn order_objects(order: u32, size: usize) -> usize {
    (PAGE_SIZE << order) / size
}

/// `fls`: the position of the highest set bit, 1-based; `fls(0) == 0`.
pub const fn fls(x: usize) -> u32 {
    usize::BITS - x.leading_zeros()
}

/// The default `slub_min_objects`: `4 * (fls(nr_cpus) + 1)`.
pub const fn min_objects_for(nr_cpus: usize) -> usize {
    4 * (fls(nr_cpus) as usize + 1)
}

fn calc_slab_order(size: usize, min_order: u32, max_order: u32, fract_leftover: usize) -> u32 {
    let mut order = min_order;
    while order <= max_order {
        let slab_size = PAGE_SIZE << order;
        if slab_size % size <= slab_size / fract_leftover {
            break;
        }
        order += 1;
    }
    order
}

/// `calculate_order` (`mm/slub.c`): enough objects per slab for `nr_cpus`,
/// little waste, order at most `slub_max_order` unless one object needs more.
/// `None` if one object does not fit in a block of `MAX_PAGE_ORDER`.
pub fn calculate_order(size: usize, nr_cpus: usize) -> Option<u32> {
    let max_objects = order_objects(SLUB_MAX_ORDER, size).max(1);
    let min_objects = min_objects_for(nr_cpus).min(max_objects);
    let min_order = get_order(min_objects.saturating_mul(size));
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE {
        return Some(get_order(size * MAX_OBJS_PER_PAGE) - 1);
    }
    let mut fraction = 16;
    while fraction > 1 {
        let order = calc_slab_order(size, min_order, SLUB_MAX_ORDER, fraction);
        if order <= SLUB_MAX_ORDER {
            return Some(order);
        }
        fraction /= 2;
    }
    let order = get_order(size);
    (order <= MAX_PAGE_ORDER).then_some(order)
}

/// `calculate_sizes` (`mm/slub.c`) for a cache of `object_size` bytes with
/// alignment `align` (already through [`calculate_alignment`]); `None` if the
/// slot does not fit in the largest block.
pub fn calculate_sizes(
    object_size: usize,
    align: usize,
    flags: SlabFlags,
    has_ctor: bool,
    nr_cpus: usize,
) -> Option<ObjectLayout> {
    let mut size = align_up(object_size, WORD);
    let object_poison = flags.contains(SlabFlags::POISON) && !has_ctor;
    if flags.contains(SlabFlags::RED_ZONE) && size == object_size {
        size += WORD;
    }
    let inuse = size;
    let kmalloc_orig_size =
        flags.contains(SlabFlags::STORE_USER) && flags.contains(SlabFlags::KMALLOC);
    let offset = if flags.contains(SlabFlags::POISON)
        || has_ctor
        || (flags.contains(SlabFlags::RED_ZONE) && (object_size < WORD || kmalloc_orig_size))
    {
        let o = size;
        size += WORD;
        o
    } else {
        (object_size / 2) / WORD * WORD
    };
    if flags.contains(SlabFlags::STORE_USER) {
        size += 2 * TRACK_SIZE;
        if flags.contains(SlabFlags::KMALLOC) {
            size += 4;
        }
    }
    let mut red_left_pad = 0;
    if flags.contains(SlabFlags::RED_ZONE) {
        size += WORD;
        red_left_pad = align_up(WORD, align);
        size += red_left_pad;
    }
    let size = align_up(size, align);
    let order = calculate_order(size, nr_cpus)?;
    let objects = order_objects(order, size);
    let min_order = get_order(size);
    Some(ObjectLayout {
        object_size,
        size,
        align,
        inuse,
        offset,
        red_left_pad,
        order,
        objects,
        min_order,
        min_objects: order_objects(min_order, size),
        object_poison,
    })
}

/// `min_partial` of a cache (`set_min_partial`): `ilog2(size) / 2` clamped to `[MIN_PARTIAL, MAX_PARTIAL]`.
pub fn min_partial(size: usize) -> usize {
    let half = (size.max(1).ilog2() / 2) as usize;
    half.clamp(MIN_PARTIAL, MAX_PARTIAL)
}

/// `KMALLOC_SHIFT_LOW`.
pub const KMALLOC_SHIFT_LOW: u32 = 3;
/// `KMALLOC_SHIFT_HIGH`: `PAGE_SHIFT + 1`.
pub const KMALLOC_SHIFT_HIGH: u32 = 13;
/// `KMALLOC_MAX_CACHE_SIZE`: the largest kmalloc served by a slab cache (two pages).
pub const KMALLOC_MAX_CACHE_SIZE: usize = 1 << KMALLOC_SHIFT_HIGH;
/// `KMALLOC_MAX_SIZE`: the largest kmalloc (`MAX_PAGE_ORDER + PAGE_SHIFT`).
pub const KMALLOC_MAX_SIZE: usize = PAGE_SIZE << MAX_PAGE_ORDER;
/// `KMALLOC_MIN_SIZE`.
pub const KMALLOC_MIN_SIZE: usize = 1 << KMALLOC_SHIFT_LOW;

/// `kmalloc_size_index`: the cache index for sizes up to 192, by `(size - 1) / 8`.
const SIZE_INDEX: [u8; 24] = [
    3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2,
];

/// `kmalloc_index` (`include/linux/slab.h`): the kmalloc cache index of
/// `size` bytes (0 for 0 bytes, 1 for kmalloc-96, 2 for kmalloc-192, `n` for
/// kmalloc-`2^n`); `None` above `KMALLOC_MAX_CACHE_SIZE`.
#[doc(alias = "__kmalloc_index")]
pub const fn kmalloc_index(size: usize) -> Option<usize> {
    if size == 0 {
        return Some(0);
    }
    if size > KMALLOC_MAX_CACHE_SIZE {
        return None;
    }
    if size <= 192 {
        return Some(SIZE_INDEX[(size - 1) / 8] as usize);
    }
    Some(fls(size - 1) as usize)
}

/// `kmalloc_index(s + 1) - 1` for every `s` below
/// [`KMALLOC_MAX_CACHE_SIZE`] in steps of 8 (the sizes a step shares share
/// a cache, since every class above 8 bytes is a multiple of 8): the
/// position among the kmalloc caches. One table for every size, where
/// Linux's `kmalloc_slab` reads `size_index` up to 192 bytes and takes
/// `fls` above, so that every size takes the same path: 1 KiB.
static SIZE_CLASS: [u8; KMALLOC_MAX_CACHE_SIZE / 8] = SIZE_CLASS_TABLE;

/// [`SIZE_CLASS`]'s contents, for const functions.
const SIZE_CLASS_TABLE: [u8; KMALLOC_MAX_CACHE_SIZE / 8] = {
    let mut t = [0; KMALLOC_MAX_CACHE_SIZE / 8];
    let mut i = 0;
    while i < t.len() {
        let s = i * 8;
        t[i] = if s < 192 {
            SIZE_INDEX[i] - 1
        } else {
            fls(s) as u8 - 1
        };
        i += 1;
    }
    t
};

/// `kmalloc_index(size) - 1`, the position of the cache for `size` bytes
/// among the kmalloc caches (kmalloc-96 first, then kmalloc-192, then
/// kmalloc-8 up); `None` for 0 bytes and above `KMALLOC_MAX_CACHE_SIZE`.
/// kmalloc's own lookup: one range test covers both ends, and one table
/// holds the position itself.
#[inline(always)]
pub(crate) fn kmalloc_class(size: usize) -> Option<usize> {
    let s = size.wrapping_sub(1);
    if s >= KMALLOC_MAX_CACHE_SIZE {
        return None;
    }
    Some(SIZE_CLASS[s / 8] as usize)
}

/// The object size of kmalloc cache `index` (`kmalloc_info[index].size`).
pub const fn kmalloc_size(index: usize) -> usize {
    match index {
        0 => 0,
        1 => 96,
        2 => 192,
        _ => 1 << index,
    }
}

/// The bucket size a kmalloc of `size` bytes really gets (`kmalloc_size_roundup`):
/// the class size up to 8 KiB, whole pages above, `None` above `KMALLOC_MAX_SIZE`.
///
/// Up to `KMALLOC_MAX_CACHE_SIZE` it is two table reads and no branch on
/// the class (`krealloc` and `GlobalKmalloc::realloc` ask it with sizes a
/// program chooses, often at random).
#[inline]
pub const fn kmalloc_size_roundup(size: usize) -> Option<usize> {
    let s = size.wrapping_sub(1);
    if s < KMALLOC_MAX_CACHE_SIZE {
        return Some(CLASS_SIZE[SIZE_CLASS_TABLE[s / 8] as usize] as usize);
    }
    if size == 0 {
        return Some(0);
    }
    if size > KMALLOC_MAX_SIZE {
        return None;
    }
    Some(PAGE_SIZE << get_order(size))
}

/// The object size of the kmalloc cache at each position of
/// [`SIZE_CLASS`] (`kmalloc_size(position + 1)`).
const CLASS_SIZE: [u16; 13] = {
    let mut t = [0; 13];
    let mut i = 0;
    while i < t.len() {
        t[i] = kmalloc_size(i + 1) as u16;
        i += 1;
    }
    t
};

/// The size to ask kmalloc for so that the object is aligned to `align`, a
/// power of two: `size` itself up to `ARCH_KMALLOC_MINALIGN` (8), else
/// `size` rounded up to a multiple of `align`; `None` if that overflows.
///
/// It works because kmalloc objects of a power-of-two size are aligned to
/// their size (`include/linux/slab.h`), `kmalloc-96` and `kmalloc-192`
/// objects to the powers of two dividing their size (slabs start on a page
/// and objects follow one another), and large kmallocs to their block: a
/// multiple of `align` lands in a class aligned to at least `align`. The
/// rounding is a mask, not a division, since `align` is a power of two.
#[inline]
pub const fn kmalloc_size_for_align(size: usize, align: usize) -> Option<usize> {
    if align <= ARCH_SLAB_MINALIGN {
        return Some(size);
    }
    let mask = align - 1;
    match size.checked_add(mask) {
        Some(s) => Some(s & !mask),
        None => None,
    }
}

/// The cache name of index `index` (`kmalloc_info[index].name`) without a type prefix.
pub(crate) const KMALLOC_NAMES: [&str; 14] = [
    "",
    "kmalloc-96",
    "kmalloc-192",
    "kmalloc-8",
    "kmalloc-16",
    "kmalloc-32",
    "kmalloc-64",
    "kmalloc-128",
    "kmalloc-256",
    "kmalloc-512",
    "kmalloc-1k",
    "kmalloc-2k",
    "kmalloc-4k",
    "kmalloc-8k",
];

/// The `dma-kmalloc-*` names, by index.
pub(crate) const DMA_KMALLOC_NAMES: [&str; 14] = [
    "",
    "dma-kmalloc-96",
    "dma-kmalloc-192",
    "dma-kmalloc-8",
    "dma-kmalloc-16",
    "dma-kmalloc-32",
    "dma-kmalloc-64",
    "dma-kmalloc-128",
    "dma-kmalloc-256",
    "dma-kmalloc-512",
    "dma-kmalloc-1k",
    "dma-kmalloc-2k",
    "dma-kmalloc-4k",
    "dma-kmalloc-8k",
];

/// The number of kmalloc size classes (`kmalloc_index` 1 to 13), and of
/// `dma-kmalloc` ones.
pub(crate) const KMALLOC_CLASSES: usize = 13;

/// The order in which `create_kmalloc_caches` creates the caches of one
/// type: 96 and 192 first, then the powers of two.
pub(crate) const KMALLOC_CREATE_ORDER: [usize; 13] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];

/// Whether the slot size divides a slab offset, with one multiply and one
/// comparison (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019): for `n < 2^32`, `size` divides `n` exactly when
/// `n * c mod 2^64 < c`, with `c = (2^64 - 1) / size + 1`. Offsets inside a
/// slab (at most 4 MiB) are far below `2^32`; callers test the range first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Divisor {
    c: u64,
}

impl Divisor {
    pub(crate) fn new(size: usize) -> Divisor {
        // Slot sizes are whole words; 1 would need `c = 2^64`.
        let size = size.max(2) as u64;
        Divisor {
            c: u64::MAX / size + 1,
        }
    }

    /// Whether the size divides `n`, for `n < 2^32`.
    #[inline(always)]
    pub(crate) fn divides(self, n: usize) -> bool {
        debug_assert!(n as u64 <= u64::from(u32::MAX));
        (n as u64).wrapping_mul(self.c) < self.c
    }
}

/// The index of an object start by one multiply, and a refusal for any
/// other offset (the divisibility test by the multiplicative inverse, as in
/// Hacker's Delight, 10-17): for `size = d << k` with `d` odd and `inv` the
/// inverse of `d` modulo `2^64`, `(off * inv).rotate_right(k)` is
/// `off / size` when `size` divides `off`, and above `u64::MAX / size`
/// when it does not. So one comparison with the last index accepts exactly
/// the object starts of a slab, whatever `off` is (an offset computed from
/// a foreign address wraps to anything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotIndex {
    inv: u64,
    shift: u32,
}

impl SlotIndex {
    pub(crate) fn new(size: usize) -> SlotIndex {
        let size = size.max(1) as u64;
        let shift = size.trailing_zeros();
        let d = size >> shift;
        // Newton's iteration doubles the bits of the inverse each step; `d`
        // itself is right to 3 bits (d * d = 1 mod 8 for odd d).
        let mut inv = d;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(d.wrapping_mul(inv)));
        }
        debug_assert_eq!(d.wrapping_mul(inv), 1);
        SlotIndex { inv, shift }
    }

    /// `off / size` if `size` divides `off`, else a value above
    /// `u64::MAX / size` (so above the index of any slab's last object).
    #[inline(always)]
    pub(crate) fn index(self, off: usize) -> u64 {
        (off as u64).wrapping_mul(self.inv).rotate_right(self.shift)
    }
}
