//! The typed errors of highmem mappings.

use kmm_page::{MmuError, Pfn, VirtAddr};
use kmm_percpu::PerCpuError;

/// Which kind of stack mapping a slot holds: `kmap_atomic` disables
/// preemption, `kmap_local_page` only pins the caller to its CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalKind {
    /// Made by [`Highmem::kmap_atomic`](crate::Highmem::kmap_atomic).
    Atomic,
    /// Made by [`Highmem::kmap_local_page`](crate::Highmem::kmap_local_page).
    Local,
}

/// Why a highmem operation was refused.
///
/// Every error leaves the mapping state, the per-CPU stacks and the
/// preemption counter exactly as they were before the call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HighmemError {
    /// Every pkmap slot has users, and the caller asked not to wait
    /// ([`Highmem::try_kmap`](crate::Highmem::try_kmap)).
    #[error("all pkmap slots are in use")]
    NoSlot,
    /// `kunmap` of a highmem page that has no outstanding `kmap` (the kernel's
    /// `BUG()` in `kunmap_high`).
    #[error("pfn {0} is not kmapped")]
    NotMapped(Pfn),
    /// The page already has `u32::MAX - 1` users, the most a `pkmap_count` holds.
    #[error("pfn {0} has too many kmap users")]
    TooManyUsers(Pfn),
    /// `kunmap_atomic`/`kunmap_local` of an address that is not a current
    /// stack mapping of the caller's CPU.
    #[error("{0:#x} is not a kmap_atomic/kmap_local mapping of this cpu")]
    NotLocalMapped(VirtAddr),
    /// `kunmap_atomic`/`kunmap_local` of a stack mapping that is not the most
    /// recent one: local mappings are released in LIFO order.
    #[error("{addr:#x} is not the most recent kmap_local mapping (that is {top:#x})")]
    NotLifo {
        /// The address the caller released.
        addr: VirtAddr,
        /// The most recent mapping, the only one that may be released now.
        top: VirtAddr,
    },
    /// `kunmap_atomic` of a `kmap_local_page` mapping or `kunmap_local` of a
    /// `kmap_atomic` one (they restore preemption differently).
    #[error("{addr:#x} was mapped by {mapped_by:?}, not released by its counterpart")]
    WrongKind {
        /// The address the caller released.
        addr: VirtAddr,
        /// How it was mapped.
        mapped_by: LocalKind,
    },
    /// The CPU already holds `KM_MAX_IDX` (16) stack mappings.
    #[error("cpu {cpu} already holds {max} kmap_local mappings", max = crate::KM_MAX_IDX)]
    StackFull {
        /// The CPU whose stack is full.
        cpu: usize,
    },
    /// The pkmap window has no slots (`last_pkmap == 0`).
    #[error("the pkmap window needs at least one slot")]
    NoPkmapSlots,
    /// A window base is not page aligned.
    #[error("window base {0:#x} is not page aligned")]
    Misaligned(VirtAddr),
    /// A window does not fit in the MMU's mappable window.
    #[error("window [{start:#x}, +{pages} pages) is outside the mmu window")]
    OutsideWindow {
        /// The first address of the window.
        start: VirtAddr,
        /// Its size in pages.
        pages: usize,
    },
    /// The pkmap and fixmap windows overlap.
    #[error("the pkmap and fixmap windows overlap")]
    WindowsOverlap,
    /// The MMU refused a mapping (for example a frame without memory), or a
    /// window page is already mapped when the windows are set up.
    #[error(transparent)]
    Mmu(#[from] MmuError),
    /// The CPU context reported a CPU this machine has no stack for.
    #[error(transparent)]
    PerCpu(#[from] PerCpuError),
}
