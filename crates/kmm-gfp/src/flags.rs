//! The `gfp_t` bits and their composites (`include/linux/gfp_types.h`), with
//! one kernel-named constant for every bit and every composite.

bitflags::bitflags! {
    /// A `gfp_t` mask: how an allocation may be served.
    ///
    /// Bit values are today's kernel's (stable since 6.3, written as an enum of
    /// bit numbers since 6.10), taken from `include/linux/gfp_types.h`. Bit 9
    /// (`0x200`) is unused: it was `__GFP_ATOMIC` from 4.4 to 6.2. The
    /// config-dependent bits above bit 23 (`__GFP_SKIP_ZERO`,
    /// `__GFP_SKIP_KASAN`, `__GFP_NOLOCKDEP`, `__GFP_NO_OBJ_EXT`) move with the
    /// kernel configuration and are not modelled.
    ///
    /// The named flags of this type are the single bits; the composites
    /// (`GFP_KERNEL` and friends) are associated constants such as
    /// [`Gfp::KERNEL`] and free constants such as [`GFP_KERNEL`].
    ///
    /// [`Display`](core::fmt::Display) prints a mask the way the kernel's
    /// `show_gfp_flags` does, and [`FromStr`](core::str::FromStr) reads that
    /// form back (see [`GfpError`](crate::GfpError) for what it rejects):
    ///
    /// ```
    /// use kmm_gfp::{GFP_KERNEL, Gfp, __GFP_ZERO};
    ///
    /// let gfp: Gfp = "GFP_KERNEL | __GFP_ZERO".parse()?;
    /// assert_eq!(gfp, GFP_KERNEL | __GFP_ZERO);
    /// assert_eq!(gfp.to_string(), "GFP_KERNEL|__GFP_ZERO");
    /// assert_eq!(format!("{gfp:#}"), "0xdc0(GFP_KERNEL|__GFP_ZERO)");
    /// # Ok::<(), kmm_gfp::GfpError>(())
    /// ```
    ///
    /// # Historic `__GFP_WAIT` layout
    ///
    /// Study material written for 2.6-era kernels uses another numbering, in
    /// which `__GFP_WAIT` (0x10) meant "may sleep". Linux 4.4 split it into
    /// [`__GFP_DIRECT_RECLAIM`] (may sleep in reclaim) and
    /// [`__GFP_KSWAPD_RECLAIM`] (may wake kswapd), together [`__GFP_RECLAIM`],
    /// and removed it. The old values must not be reused with this type, since
    /// most of them now name other flags:
    ///
    /// | 2.6-era flag | old value | what that value means today |
    /// |---|---|---|
    /// | `__GFP_WAIT` | `0x10` | `__GFP_RECLAIMABLE` |
    /// | `__GFP_COLD` | `0x100` | `__GFP_ZERO` |
    /// | `__GFP_NOWARN` | `0x200` | unused (was `__GFP_ATOMIC` in 4.4–6.2) |
    /// | `__GFP_REPEAT` | `0x400` | `__GFP_DIRECT_RECLAIM` |
    /// | `__GFP_NOFAIL` | `0x800` | `__GFP_KSWAPD_RECLAIM` |
    /// | `__GFP_ZERO` | `0x8000` | `__GFP_NOFAIL` |
    /// | `GFP_KERNEL` | `0xd0` | `__GFP_RECLAIMABLE\|__GFP_IO\|__GFP_FS` |
    ///
    /// The old `GFP_ATOMIC` was `__GFP_HIGH` alone and the old `GFP_NOIO` was
    /// `__GFP_WAIT` alone; their modern spellings are [`GFP_ATOMIC`] and
    /// [`GFP_NOIO`]. "Can this allocation sleep?" is now
    /// [`gfpflags_allow_blocking`].
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Gfp: u32 {
        /// `__GFP_DMA`: zone modifier, `ZONE_DMA`.
        const DMA = 0x01;
        /// `__GFP_HIGHMEM`: zone modifier, may use `ZONE_HIGHMEM`.
        const HIGHMEM = 0x02;
        /// `__GFP_DMA32`: zone modifier, `ZONE_DMA32`.
        const DMA32 = 0x04;
        /// `__GFP_MOVABLE`: movable page (and `ZONE_MOVABLE` with `HIGHMEM`).
        const MOVABLE = 0x08;
        /// `__GFP_RECLAIMABLE`: reclaimable page (slab with `SLAB_RECLAIM_ACCOUNT`).
        const RECLAIMABLE = 0x10;
        /// `__GFP_HIGH`: high priority, may dip below the min watermark.
        const HIGH = 0x20;
        /// `__GFP_IO`: may start physical I/O.
        const IO = 0x40;
        /// `__GFP_FS`: may call into filesystems.
        const FS = 0x80;
        /// `__GFP_ZERO`: return zeroed memory.
        const ZERO = 0x100;
        /// `__GFP_DIRECT_RECLAIM`: may sleep in direct reclaim (half of the
        /// old `__GFP_WAIT`, whose value `0x10` is now `__GFP_RECLAIMABLE`).
        #[doc(alias = "__GFP_WAIT")]
        const DIRECT_RECLAIM = 0x400;
        /// `__GFP_KSWAPD_RECLAIM`: may wake kswapd at the low watermark.
        const KSWAPD_RECLAIM = 0x800;
        /// `__GFP_WRITE`: the page will be dirtied.
        const WRITE = 0x1000;
        /// `__GFP_NOWARN`: no failure report.
        const NOWARN = 0x2000;
        /// `__GFP_RETRY_MAYFAIL`: retry hard, may fail (was `__GFP_REPEAT`).
        const RETRY_MAYFAIL = 0x4000;
        /// `__GFP_NOFAIL`: never fail.
        const NOFAIL = 0x8000;
        /// `__GFP_NORETRY`: fail early.
        const NORETRY = 0x1_0000;
        /// `__GFP_MEMALLOC`: ignore watermarks.
        const MEMALLOC = 0x2_0000;
        /// `__GFP_COMP`: make a compound page.
        const COMP = 0x4_0000;
        /// `__GFP_NOMEMALLOC`: never touch emergency reserves.
        const NOMEMALLOC = 0x8_0000;
        /// `__GFP_HARDWALL`: enforce the cpuset.
        const HARDWALL = 0x10_0000;
        /// `__GFP_THISNODE`: no node fallback.
        const THISNODE = 0x20_0000;
        /// `__GFP_ACCOUNT`: charge to kmemcg.
        const ACCOUNT = 0x40_0000;
        /// `__GFP_ZEROTAGS`: zero memory tags with the memory.
        const ZEROTAGS = 0x80_0000;
    }
}

impl Gfp {
    /// `GFP_ZONEMASK`: the four zone modifier bits (`0x0f`).
    pub const ZONEMASK: Gfp = Gfp::DMA
        .union(Gfp::HIGHMEM)
        .union(Gfp::DMA32)
        .union(Gfp::MOVABLE);

    /// `__GFP_RECLAIM`: both reclaim bits (`0xc00`), the modern spelling of
    /// the old `__GFP_WAIT`.
    #[doc(alias = "__GFP_WAIT")]
    pub const RECLAIM: Gfp = Gfp::DIRECT_RECLAIM.union(Gfp::KSWAPD_RECLAIM);

    /// `GFP_ATOMIC` (`0x820`): cannot sleep, may use part of the min reserve.
    pub const ATOMIC: Gfp = Gfp::HIGH.union(Gfp::KSWAPD_RECLAIM);

    /// `GFP_KERNEL` (`0xcc0`): ordinary kernel allocation, may sleep and reclaim.
    pub const KERNEL: Gfp = Gfp::RECLAIM.union(Gfp::IO).union(Gfp::FS);

    /// `GFP_KERNEL_ACCOUNT` (`0x400cc0`): `GFP_KERNEL` charged to kmemcg.
    pub const KERNEL_ACCOUNT: Gfp = Gfp::KERNEL.union(Gfp::ACCOUNT);

    /// `GFP_NOWAIT` (`0x2800`): cannot sleep, no reserve access.
    ///
    /// This is the definition of Linux 6.18 and later, which added
    /// `__GFP_NOWARN`; from 4.4 to 6.17 `GFP_NOWAIT` was `__GFP_KSWAPD_RECLAIM`
    /// alone (`0x800`). Both behave the same in the allocator.
    pub const NOWAIT: Gfp = Gfp::KSWAPD_RECLAIM.union(Gfp::NOWARN);

    /// `GFP_NOIO` (`0xc00`): may reclaim but start no I/O.
    pub const NOIO: Gfp = Gfp::RECLAIM;

    /// `GFP_NOFS` (`0xc40`): may reclaim and do I/O, but not call filesystems.
    pub const NOFS: Gfp = Gfp::RECLAIM.union(Gfp::IO);

    /// `GFP_USER` (`0x100cc0`): user allocation the kernel also accesses directly.
    pub const USER: Gfp = Gfp::RECLAIM
        .union(Gfp::IO)
        .union(Gfp::FS)
        .union(Gfp::HARDWALL);

    /// `GFP_HIGHUSER` (`0x100cc2`): user allocation that may live in highmem.
    pub const HIGHUSER: Gfp = Gfp::USER.union(Gfp::HIGHMEM);

    /// `GFP_HIGHUSER_MOVABLE` (`0x100cca`): movable user pages (page cache, anonymous memory).
    ///
    /// The kernel also sets `__GFP_SKIP_KASAN`, a bit that exists only with
    /// `CONFIG_KASAN_HW_TAGS` and is not modelled here.
    pub const HIGHUSER_MOVABLE: Gfp = Gfp::HIGHUSER.union(Gfp::MOVABLE);

    /// `GFP_TRANSHUGE_LIGHT` (`0x1c20ca`): a transparent huge page that
    /// neither reclaims nor wakes kswapd.
    pub const TRANSHUGE_LIGHT: Gfp = Gfp::HIGHUSER_MOVABLE
        .union(Gfp::COMP)
        .union(Gfp::NOMEMALLOC)
        .union(Gfp::NOWARN)
        .difference(Gfp::RECLAIM);

    /// `GFP_TRANSHUGE` (`0x1c24ca`): a transparent huge page that may direct-reclaim.
    pub const TRANSHUGE: Gfp = Gfp::TRANSHUGE_LIGHT.union(Gfp::DIRECT_RECLAIM);

    /// Whether the caller may sleep (`gfpflags_allow_blocking`).
    #[doc(alias = "gfpflags_allow_blocking")]
    pub const fn allows_blocking(self) -> bool {
        self.contains(Gfp::DIRECT_RECLAIM)
    }

    /// The zone modifier bits of this mask (`flags & GFP_ZONEMASK`).
    pub const fn zone_modifiers(self) -> Gfp {
        self.intersection(Gfp::ZONEMASK)
    }
}

/// Whether an allocation with `gfp` may sleep, i.e. has `__GFP_DIRECT_RECLAIM`
/// (`gfpflags_allow_blocking` in `include/linux/gfp.h`).
///
/// Before 4.4 this was the test for `__GFP_WAIT`.
#[doc(alias = "__GFP_WAIT")]
pub const fn gfpflags_allow_blocking(gfp: Gfp) -> bool {
    gfp.allows_blocking()
}

// The kernel-named constants. Their names are the kernel's, underscores and
// all, so that code and scripts can be read side by side with Linux.

/// `__GFP_DMA` (`0x01`), see [`Gfp::DMA`].
pub const __GFP_DMA: Gfp = Gfp::DMA;
/// `__GFP_HIGHMEM` (`0x02`), see [`Gfp::HIGHMEM`].
pub const __GFP_HIGHMEM: Gfp = Gfp::HIGHMEM;
/// `__GFP_DMA32` (`0x04`), see [`Gfp::DMA32`].
pub const __GFP_DMA32: Gfp = Gfp::DMA32;
/// `__GFP_MOVABLE` (`0x08`), see [`Gfp::MOVABLE`].
pub const __GFP_MOVABLE: Gfp = Gfp::MOVABLE;
/// `__GFP_RECLAIMABLE` (`0x10`), see [`Gfp::RECLAIMABLE`].
pub const __GFP_RECLAIMABLE: Gfp = Gfp::RECLAIMABLE;
/// `__GFP_HIGH` (`0x20`), see [`Gfp::HIGH`].
pub const __GFP_HIGH: Gfp = Gfp::HIGH;
/// `__GFP_IO` (`0x40`), see [`Gfp::IO`].
pub const __GFP_IO: Gfp = Gfp::IO;
/// `__GFP_FS` (`0x80`), see [`Gfp::FS`].
pub const __GFP_FS: Gfp = Gfp::FS;
/// `__GFP_ZERO` (`0x100`), see [`Gfp::ZERO`].
pub const __GFP_ZERO: Gfp = Gfp::ZERO;
/// `__GFP_DIRECT_RECLAIM` (`0x400`), see [`Gfp::DIRECT_RECLAIM`].
#[doc(alias = "__GFP_WAIT")]
pub const __GFP_DIRECT_RECLAIM: Gfp = Gfp::DIRECT_RECLAIM;
/// `__GFP_KSWAPD_RECLAIM` (`0x800`), see [`Gfp::KSWAPD_RECLAIM`].
pub const __GFP_KSWAPD_RECLAIM: Gfp = Gfp::KSWAPD_RECLAIM;
/// `__GFP_WRITE` (`0x1000`), see [`Gfp::WRITE`].
pub const __GFP_WRITE: Gfp = Gfp::WRITE;
/// `__GFP_NOWARN` (`0x2000`), see [`Gfp::NOWARN`].
pub const __GFP_NOWARN: Gfp = Gfp::NOWARN;
/// `__GFP_RETRY_MAYFAIL` (`0x4000`), see [`Gfp::RETRY_MAYFAIL`].
pub const __GFP_RETRY_MAYFAIL: Gfp = Gfp::RETRY_MAYFAIL;
/// `__GFP_NOFAIL` (`0x8000`), see [`Gfp::NOFAIL`].
pub const __GFP_NOFAIL: Gfp = Gfp::NOFAIL;
/// `__GFP_NORETRY` (`0x10000`), see [`Gfp::NORETRY`].
pub const __GFP_NORETRY: Gfp = Gfp::NORETRY;
/// `__GFP_MEMALLOC` (`0x20000`), see [`Gfp::MEMALLOC`].
pub const __GFP_MEMALLOC: Gfp = Gfp::MEMALLOC;
/// `__GFP_COMP` (`0x40000`), see [`Gfp::COMP`].
pub const __GFP_COMP: Gfp = Gfp::COMP;
/// `__GFP_NOMEMALLOC` (`0x80000`), see [`Gfp::NOMEMALLOC`].
pub const __GFP_NOMEMALLOC: Gfp = Gfp::NOMEMALLOC;
/// `__GFP_HARDWALL` (`0x100000`), see [`Gfp::HARDWALL`].
pub const __GFP_HARDWALL: Gfp = Gfp::HARDWALL;
/// `__GFP_THISNODE` (`0x200000`), see [`Gfp::THISNODE`].
pub const __GFP_THISNODE: Gfp = Gfp::THISNODE;
/// `__GFP_ACCOUNT` (`0x400000`), see [`Gfp::ACCOUNT`].
pub const __GFP_ACCOUNT: Gfp = Gfp::ACCOUNT;
/// `__GFP_ZEROTAGS` (`0x800000`), see [`Gfp::ZEROTAGS`].
pub const __GFP_ZEROTAGS: Gfp = Gfp::ZEROTAGS;

/// `__GFP_RECLAIM` (`0xc00`), see [`Gfp::RECLAIM`].
#[doc(alias = "__GFP_WAIT")]
pub const __GFP_RECLAIM: Gfp = Gfp::RECLAIM;
/// `GFP_ZONEMASK` (`0x0f`), see [`Gfp::ZONEMASK`].
pub const GFP_ZONEMASK: Gfp = Gfp::ZONEMASK;

/// `GFP_ATOMIC` (`0x820`), see [`Gfp::ATOMIC`].
pub const GFP_ATOMIC: Gfp = Gfp::ATOMIC;
/// `GFP_KERNEL` (`0xcc0`), see [`Gfp::KERNEL`].
pub const GFP_KERNEL: Gfp = Gfp::KERNEL;
/// `GFP_KERNEL_ACCOUNT` (`0x400cc0`), see [`Gfp::KERNEL_ACCOUNT`].
pub const GFP_KERNEL_ACCOUNT: Gfp = Gfp::KERNEL_ACCOUNT;
/// `GFP_NOWAIT` (`0x2800` since Linux 6.18), see [`Gfp::NOWAIT`].
pub const GFP_NOWAIT: Gfp = Gfp::NOWAIT;
/// `GFP_NOIO` (`0xc00`), see [`Gfp::NOIO`].
pub const GFP_NOIO: Gfp = Gfp::NOIO;
/// `GFP_NOFS` (`0xc40`), see [`Gfp::NOFS`].
pub const GFP_NOFS: Gfp = Gfp::NOFS;
/// `GFP_USER` (`0x100cc0`), see [`Gfp::USER`].
pub const GFP_USER: Gfp = Gfp::USER;
/// `GFP_DMA` (`0x01`): the same value as `__GFP_DMA`.
pub const GFP_DMA: Gfp = Gfp::DMA;
/// `GFP_DMA32` (`0x04`): the same value as `__GFP_DMA32`.
pub const GFP_DMA32: Gfp = Gfp::DMA32;
/// `GFP_HIGHUSER` (`0x100cc2`), see [`Gfp::HIGHUSER`].
pub const GFP_HIGHUSER: Gfp = Gfp::HIGHUSER;
/// `GFP_HIGHUSER_MOVABLE` (`0x100cca`, without `__GFP_SKIP_KASAN`), see [`Gfp::HIGHUSER_MOVABLE`].
pub const GFP_HIGHUSER_MOVABLE: Gfp = Gfp::HIGHUSER_MOVABLE;
/// `GFP_TRANSHUGE_LIGHT` (`0x1c20ca`), see [`Gfp::TRANSHUGE_LIGHT`].
pub const GFP_TRANSHUGE_LIGHT: Gfp = Gfp::TRANSHUGE_LIGHT;
/// `GFP_TRANSHUGE` (`0x1c24ca`), see [`Gfp::TRANSHUGE`].
pub const GFP_TRANSHUGE: Gfp = Gfp::TRANSHUGE;
