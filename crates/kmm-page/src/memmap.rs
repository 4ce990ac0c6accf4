//! `MemMap`, the `mem_map` array: one [`PageFrame`] per present frame, over
//! physical ranges with holes (SPARSEMEM-like: holes have no frames at all).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::addr::Pfn;
use crate::frame::PageFrame;

/// The index of a frame inside a [`MemMap`] (dense over present frames).
pub type FrameIdx = u32;

/// Largest number of frames one map holds (indices `u32::MAX - 1` and up are list sentinels).
pub const MAX_FRAMES: usize = (u32::MAX - 2) as usize;

/// A half-open range of frame numbers `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PfnRange {
    /// The first frame.
    pub start: Pfn,
    /// One past the last frame.
    pub end: Pfn,
}

impl PfnRange {
    /// The range `[start, end)`.
    #[inline]
    pub const fn new(start: usize, end: usize) -> PfnRange {
        PfnRange {
            start: Pfn(start),
            end: Pfn(end),
        }
    }

    /// The number of frames.
    #[inline]
    pub const fn len(&self) -> usize {
        self.end.0.saturating_sub(self.start.0)
    }

    /// Whether the range holds no frame.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `pfn` lies in the range.
    #[inline]
    pub const fn contains(&self, pfn: Pfn) -> bool {
        self.start.0 <= pfn.0 && pfn.0 < self.end.0
    }

    /// The frame numbers as a `Range<usize>`.
    #[inline]
    pub const fn as_range(&self) -> Range<usize> {
        self.start.0..self.end.0
    }
}

/// Why a [`MemMap`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemMapError {
    /// Two ranges overlap.
    #[error("memory ranges {a:?} and {b:?} overlap")]
    Overlap {
        /// The first range.
        a: PfnRange,
        /// The second range.
        b: PfnRange,
    },
    /// More frames than a map can index.
    #[error("{frames} frames exceed the {max} a memory map can hold")]
    TooLarge {
        /// Frames asked for.
        frames: usize,
        /// The limit.
        max: usize,
    },
}

#[derive(Clone, Copy, Debug)]
struct Section {
    start: usize,
    end: usize,
    base: u32,
}

/// One [`PageFrame`] per present frame of a set of physical ranges.
///
/// Frames are stored densely, so a hole costs nothing; [`MemMap::pfn_to_page`]
/// answers `None` for a frame in a hole (`pfn_valid` is false). The map never
/// grows or moves once built.
pub struct MemMap {
    frames: Arc<[PageFrame]>,
    sections: Vec<Section>,
}

impl MemMap {
    /// Builds the map for `ranges` (any order; empty ranges are ignored).
    /// Every frame starts as [`PageFrame::new`] with [`PageFlags::RESERVED`](crate::PageFlags::RESERVED)
    /// set and a reference count of 1, as memblock-reserved pages are at boot:
    /// handing frames to an allocator clears both.
    #[inline]
    pub fn new(ranges: &[PfnRange]) -> Result<MemMap, MemMapError> {
        let mut sorted: Vec<PfnRange> = ranges.iter().copied().filter(|r| !r.is_empty()).collect();
        sorted.sort_by_key(|r| r.start);
        for w in sorted.windows(2) {
            if w[0].end > w[1].start {
                return Err(MemMapError::Overlap { a: w[0], b: w[1] });
            }
        }
        let total: usize = sorted.iter().map(PfnRange::len).sum();
        if total > MAX_FRAMES {
            return Err(MemMapError::TooLarge {
                frames: total,
                max: MAX_FRAMES,
            });
        }
        let mut sections = Vec::with_capacity(sorted.len());
        let mut base = 0u32;
        for r in &sorted {
            // Merge ranges that touch, so a buddy block may span them.
            if let Some(last) = sections.last_mut() {
                let last: &mut Section = last;
                if last.end == r.start.0 {
                    last.end = r.end.0;
                    base += r.len() as u32;
                    continue;
                }
            }
            sections.push(Section {
                start: r.start.0,
                end: r.end.0,
                base,
            });
            base += r.len() as u32;
        }
        let frames: Arc<[PageFrame]> = (0..total)
            .map(|_| {
                let f = PageFrame::new();
                f.set(crate::PageFlags::RESERVED);
                f.set_refcount(1);
                f
            })
            .collect();
        Ok(MemMap { frames, sections })
    }

    /// The number of frames in the map (`present_pages`).
    #[inline]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the map holds no frame.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The present ranges, ascending, touching ranges merged.
    #[inline]
    pub fn ranges(&self) -> impl Iterator<Item = PfnRange> + '_ {
        self.sections.iter().map(|s| PfnRange::new(s.start, s.end))
    }

    /// The lowest present frame and one past the highest (the zone span);
    /// `None` for an empty map.
    #[inline]
    pub fn span(&self) -> Option<PfnRange> {
        let first = self.sections.first()?;
        let last = self.sections.last()?;
        Some(PfnRange::new(first.start, last.end))
    }

    #[inline]
    fn section_of(&self, pfn: usize) -> Option<&Section> {
        if let [only] = self.sections.as_slice() {
            return (only.start <= pfn && pfn < only.end).then_some(only);
        }
        let i = self.sections.partition_point(|s| s.end <= pfn);
        self.sections.get(i).filter(|s| s.start <= pfn)
    }

    /// The dense index of `pfn`, or `None` if it is in a hole or outside the map.
    #[inline]
    pub fn index_of(&self, pfn: Pfn) -> Option<FrameIdx> {
        let s = self.section_of(pfn.0)?;
        Some(s.base + (pfn.0 - s.start) as u32)
    }

    /// The frame number of index `idx`.
    ///
    /// Indices come from [`MemMap::index_of`] or a frame list of this map; an
    /// index past the end gives `Pfn(usize::MAX)`.
    #[inline(always)]
    pub fn pfn_of(&self, idx: FrameIdx) -> Pfn {
        if let [only] = self.sections.as_slice() {
            return Pfn(only.start + idx as usize);
        }
        self.pfn_of_searched(idx)
    }

    /// [`MemMap::pfn_of`] in a map of several sections.
    #[inline(never)]
    fn pfn_of_searched(&self, idx: FrameIdx) -> Pfn {
        let i = self.sections.partition_point(|s| s.base <= idx);
        match i.checked_sub(1).and_then(|i| self.sections.get(i)) {
            Some(s) if (idx as usize) < self.frames.len() => Pfn(s.start + (idx - s.base) as usize),
            _ => Pfn(usize::MAX),
        }
    }

    /// Whether `pfn` has a frame here (`pfn_valid`).
    #[inline]
    pub fn contains(&self, pfn: Pfn) -> bool {
        self.section_of(pfn.0).is_some()
    }

    /// The frame of `pfn` (`pfn_to_page`), or `None` in a hole.
    #[inline]
    pub fn pfn_to_page(&self, pfn: Pfn) -> Option<&PageFrame> {
        self.index_of(pfn).map(|i| &self.frames[i as usize])
    }

    /// The frames themselves, indexed by [`FrameIdx`], shared: a page
    /// allocator keeps a copy in its address-to-frame table, so that
    /// `virt_to_page` reaches a frame without going through the map.
    pub fn frames(&self) -> Arc<[PageFrame]> {
        Arc::clone(&self.frames)
    }

    /// The frame at index `idx`; `None` past the end.
    #[inline]
    pub fn frame(&self, idx: FrameIdx) -> Option<&PageFrame> {
        self.frames.get(idx as usize)
    }

    /// The index of `page`, if it belongs to this map.
    #[inline]
    pub fn index_of_page(&self, page: &PageFrame) -> Option<FrameIdx> {
        let base = self.frames.as_ptr() as usize;
        let addr = page as *const PageFrame as usize;
        let off = addr.checked_sub(base)?;
        let idx = off / core::mem::size_of::<PageFrame>();
        let f = self.frames.get(idx)?;
        core::ptr::eq(f, page).then_some(idx as u32)
    }

    /// The frame number of `page` (`page_to_pfn`), if it belongs to this map.
    #[inline]
    pub fn page_to_pfn(&self, page: &PageFrame) -> Option<Pfn> {
        self.index_of_page(page).map(|i| self.pfn_of(i))
    }

    /// Iterates over `(pfn, frame)` for every present frame, ascending.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (Pfn, &PageFrame)> + '_ {
        self.sections.iter().flat_map(move |s| {
            (s.start..s.end).map(move |p| (Pfn(p), &self.frames[s.base as usize + (p - s.start)]))
        })
    }
}

impl fmt::Debug for MemMap {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemMap")
            .field("frames", &self.frames.len())
            .field("ranges", &self.ranges().collect::<Vec<_>>())
            .finish()
    }
}
