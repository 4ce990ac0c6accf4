//! `EagerBuddy`: Linux's buddy allocator, which merges a freed block with its
//! buddies at once (`__free_one_page` in `mm/page_alloc.c`).

use crate::freearea::Core;

/// Linux's buddy allocator over the frames of one [`MemMap`](kmm_page::MemMap):
/// `free_area[order].free_list[migratetype]` with `nr_free` per order.
///
/// - A free block's head frame has [`PageType::Buddy`](kmm_page::PageType::Buddy),
///   its order recorded in the frame and in `private`, the migrate type of
///   its list, and reference count 0. An allocated head has reference count 1,
///   its order recorded and no type.
/// - [`alloc`](crate::BuddyBackend::alloc) is `__rmqueue`: the smallest block
///   of the requested type (`__rmqueue_smallest`, `expand()` putting upper
///   halves at the head of the lower lists), then claiming a fallback type's
///   pageblock(s) (`__rmqueue_claim`, with the "half a pageblock" rule below
///   pageblock order), then stealing a fallback block (`__rmqueue_steal`).
/// - [`free`](crate::BuddyBackend::free) merges with free buddies up to
///   `MAX_PAGE_ORDER` (not across pageblocks of unmergeable types) and puts
///   the result at the tail of its list when `buddy_merge_likely()` says the
///   parent's buddy is free, at the head otherwise.
/// - Migrate types are kept per pageblock (`PAGEBLOCK_ORDER` = 9); a free
///   block always sits on the list of its pageblock's type.
pub struct EagerBuddy {
    pub(crate) inner: Core<false>,
}

impl_buddy_backend!(EagerBuddy, "eager");
