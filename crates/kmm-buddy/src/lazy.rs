//! `LazyBuddy`: the buddy allocator with Barkley and Lee's DELAY-2 lazy
//! coalescing ("A Lazy Buddy System Bounded by Two Coalescing Delays",
//! SOSP '89; the SVR4 kernel memory allocator).

use kmm_page::NR_PAGE_ORDERS;

use crate::freearea::Core;

/// A buddy allocator that defers coalescing by the DELAY-2 slack rule.
///
/// Per order (size class) it counts `A` allocated, `L` *locally free* and
/// `G` *globally free* blocks; the slack is `D = A − L`. A locally free block
/// sits on its free list (at the head, flagged
/// [`PageFlags::LOCALLY_FREE`](kmm_page::PageFlags::LOCALLY_FREE)) but is never
/// merged; a globally free block is marked in a per-order bitmap and merged
/// with its globally free buddy at once, as in [`EagerBuddy`](crate::EagerBuddy).
///
/// Freeing a block of order `i`:
/// - `D ≥ 2`: it becomes locally free (no merging at all);
/// - `D == 1`: it becomes globally free and coalesces;
/// - `D == 0`: it becomes globally free and coalesces, and one locally free
///   block of order `i` is made globally free and coalesced too.
///
/// Allocating takes a locally free block first, then a globally free one, then
/// splits a larger block. **Choice:** the halves a split leaves behind are
/// globally free (the paper's rule, `G += 1`), so splitting never creates
/// uncoalescible blocks. When no block of the requested type exists at the
/// order or above, the locally free blocks of the lower orders are made
/// globally free and coalesced before falling back to other migrate types
/// and before failing. [`drain`](crate::BuddyBackend::drain) makes every
/// locally free block globally free. `split_page` lowers `A` of the split
/// order; if that would make `D` negative, one locally free block of that
/// order is made globally free.
///
/// The free lists hold locally free blocks ahead of globally free ones;
/// kmm keeps them in two lists per (order, migrate type), which is the same
/// thing with O(1) access to each part.
pub struct LazyBuddy {
    pub(crate) inner: Core<true>,
}

impl_buddy_backend!(LazyBuddy, "lazy");

/// The DELAY-2 counters of one order of a [`LazyBuddy`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayCounts {
    /// `A`: allocated blocks of the order.
    pub allocated: usize,
    /// `L`: locally free blocks (on a list, not coalescible).
    pub locally_free: usize,
    /// `G`: globally free blocks (on a list, coalesced).
    pub globally_free: usize,
}

impl DelayCounts {
    /// `N = A + L + G`: blocks of the order that exist.
    pub const fn blocks(&self) -> usize {
        self.allocated + self.locally_free + self.globally_free
    }

    /// The slack `D = A − L` (never negative in a consistent allocator).
    pub const fn slack(&self) -> isize {
        self.allocated as isize - self.locally_free as isize
    }
}

impl LazyBuddy {
    /// The DELAY-2 counters of `order` (all zero above `MAX_PAGE_ORDER`).
    pub fn delay_counts(&self, order: u32) -> DelayCounts {
        let o = order as usize;
        if o >= NR_PAGE_ORDERS {
            return DelayCounts::default();
        }
        let c = &self.inner;
        DelayCounts {
            allocated: c.nr_alloc[o],
            locally_free: c.nr_local[o],
            globally_free: c.nr_free[o] - c.nr_local[o],
        }
    }
}
