//! `FrameList`: a doubly linked list threaded through the frames of a
//! [`MemMap`], the way Linux threads `buddy_list`, `pcp_list` and `slab_list`
//! through `struct page`.
//!
//! Links are 32-bit frame indices rather than pointers, which keeps
//! [`PageFrame`](crate::PageFrame) at 24 bytes and the whole list safe code:
//! a misused list can corrupt other lists of the same map, never memory.
//! (`intrusive-collections` needs raw-pointer adapters and an `unsafe`
//! cursor to unlink an arbitrary member, which the buddy does on every merge.)

use core::sync::atomic::Ordering::Relaxed;

use crate::frame::{NIL, UNLINKED};
use crate::memmap::{FrameIdx, MemMap};

/// A list of frames of one [`MemMap`], with O(1) insertion and removal anywhere.
///
/// A frame is on at most one list at a time (it has one link). The list does
/// not remember its map: every call takes the same map the frames belong to.
#[derive(Clone, Debug)]
pub struct FrameList {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for FrameList {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}

impl FrameList {
    /// An empty list.
    #[inline]
    pub const fn new() -> FrameList {
        FrameList {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    /// The number of frames on the list.
    #[inline]
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first frame.
    #[inline]
    pub fn front(&self) -> Option<FrameIdx> {
        (self.head != NIL).then_some(self.head)
    }

    /// The last frame.
    #[inline]
    pub fn back(&self) -> Option<FrameIdx> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// Puts `idx` first (`list_add`). Returns `false`, changing nothing, if
    /// the frame does not exist or is already on a list.
    #[must_use]
    #[inline]
    pub fn push_front(&mut self, map: &MemMap, idx: FrameIdx) -> bool {
        let Some(f) = map.frame(idx) else {
            return false;
        };
        if f.is_linked() {
            return false;
        }
        f.prev.store(NIL, Relaxed);
        f.next.store(self.head, Relaxed);
        match map.frame(self.head) {
            Some(h) => h.prev.store(idx, Relaxed),
            None => self.tail = idx,
        }
        self.head = idx;
        self.len += 1;
        true
    }

    /// Puts `idx` last (`list_add_tail`). Returns `false`, changing nothing,
    /// if the frame does not exist or is already on a list.
    #[must_use]
    #[inline]
    pub fn push_back(&mut self, map: &MemMap, idx: FrameIdx) -> bool {
        let Some(f) = map.frame(idx) else {
            return false;
        };
        if f.is_linked() {
            return false;
        }
        f.next.store(NIL, Relaxed);
        f.prev.store(self.tail, Relaxed);
        match map.frame(self.tail) {
            Some(t) => t.next.store(idx, Relaxed),
            None => self.head = idx,
        }
        self.tail = idx;
        self.len += 1;
        true
    }

    /// Takes the first frame off the list.
    #[inline]
    pub fn pop_front(&mut self, map: &MemMap) -> Option<FrameIdx> {
        let idx = self.front()?;
        self.unlink(map, idx);
        Some(idx)
    }

    /// Takes the last frame off the list.
    #[inline]
    pub fn pop_back(&mut self, map: &MemMap) -> Option<FrameIdx> {
        let idx = self.back()?;
        self.unlink(map, idx);
        Some(idx)
    }

    /// Takes `idx` off the list (`list_del`). Returns `false`, changing
    /// nothing, if the frame is on no list. The frame must be on *this* list;
    /// the owner knows which list a frame is on from the frame's state (a free
    /// buddy head's type, order and migrate type name its list).
    #[must_use]
    #[inline]
    pub fn remove(&mut self, map: &MemMap, idx: FrameIdx) -> bool {
        match map.frame(idx) {
            Some(f) if f.is_linked() && self.len > 0 => {
                self.unlink(map, idx);
                true
            }
            _ => false,
        }
    }

    #[inline(always)]
    fn unlink(&mut self, map: &MemMap, idx: FrameIdx) {
        let Some(f) = map.frame(idx) else { return };
        let next = f.next.load(Relaxed);
        let prev = f.prev.load(Relaxed);
        match map.frame(prev) {
            Some(p) => p.next.store(next, Relaxed),
            None => self.head = next,
        }
        match map.frame(next) {
            Some(n) => n.prev.store(prev, Relaxed),
            None => self.tail = prev,
        }
        f.next.store(UNLINKED, Relaxed);
        f.prev.store(UNLINKED, Relaxed);
        self.len -= 1;
    }

    /// Iterates over the frames from first to last.
    #[inline]
    pub fn iter<'a>(&self, map: &'a MemMap) -> FrameListIter<'a> {
        FrameListIter {
            map,
            cur: self.head,
            left: self.len,
        }
    }
}

/// Iterator over a [`FrameList`], front to back.
#[derive(Debug)]
pub struct FrameListIter<'a> {
    map: &'a MemMap,
    cur: u32,
    left: usize,
}

impl Iterator for FrameListIter<'_> {
    type Item = FrameIdx;

    #[inline]
    fn next(&mut self) -> Option<FrameIdx> {
        if self.left == 0 {
            return None;
        }
        let f = self.map.frame(self.cur)?;
        let idx = self.cur;
        self.cur = f.next.load(Relaxed);
        self.left -= 1;
        Some(idx)
    }
}
