//! `SlabFlags`: the `SLAB_*` flags of `kmem_cache_create` (`include/linux/slab.h`),
//! with the kernel's names for parsing and printing.

use core::fmt;
use core::str::FromStr;

bitflags::bitflags! {
    /// Cache creation flags (`slab_flags_t`, `include/linux/slab.h`).
    ///
    /// The values are the classic fixed ones (before 6.8 made them
    /// config-dependent enum positions). Display and [`FromStr`] use the
    /// kernel names joined by `|`, for example `SLAB_HWCACHE_ALIGN|SLAB_POISON`;
    /// the empty set prints as `0`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct SlabFlags: u32 {
        /// `SLAB_CONSISTENCY_CHECKS`: exact double-free and freelist checks on every free.
        const CONSISTENCY_CHECKS = 0x0000_0100;
        /// `SLAB_RED_ZONE`: guard bytes around each object, checked on free and allocation.
        const RED_ZONE = 0x0000_0400;
        /// `SLAB_POISON`: free objects are filled with `0x6b`, ending in `0xa5`, checked on allocation.
        const POISON = 0x0000_0800;
        /// `SLAB_KMALLOC`: one of the kmalloc caches (set by the slab layer itself).
        const KMALLOC = 0x0000_1000;
        /// `SLAB_HWCACHE_ALIGN`: align objects to the cache line.
        const HWCACHE_ALIGN = 0x0000_2000;
        /// `SLAB_CACHE_DMA`: slab pages come from `ZONE_DMA`.
        const CACHE_DMA = 0x0000_4000;
        /// `SLAB_STORE_USER`: record the last allocation and free of each object.
        const STORE_USER = 0x0001_0000;
        /// `SLAB_RECLAIM_ACCOUNT`: pages count as `SReclaimable` and are allocated `__GFP_RECLAIMABLE`.
        const RECLAIM_ACCOUNT = 0x0002_0000;
        /// `SLAB_PANIC`: the kernel panics when creation fails; kmm returns the error anyway.
        const PANIC = 0x0004_0000;
        /// `SLAB_NO_MERGE`: never alias the cache (kmm never merges caches, so this changes nothing).
        const NO_MERGE = 0x0100_0000;
        /// `SLAB_ACCOUNT`: charge to a memory cgroup (kmm has no cgroups, so this changes nothing).
        const ACCOUNT = 0x0400_0000;
    }
}

/// The flags that switch a cache to SLUB's debug paths (`SLAB_DEBUG_FLAGS`).
pub(crate) const DEBUG_FLAGS: SlabFlags = SlabFlags::CONSISTENCY_CHECKS
    .union(SlabFlags::RED_ZONE)
    .union(SlabFlags::POISON)
    .union(SlabFlags::STORE_USER);

/// The kernel name of every flag, in bit order.
const NAMES: [(SlabFlags, &str); 11] = [
    (SlabFlags::CONSISTENCY_CHECKS, "SLAB_CONSISTENCY_CHECKS"),
    (SlabFlags::RED_ZONE, "SLAB_RED_ZONE"),
    (SlabFlags::POISON, "SLAB_POISON"),
    (SlabFlags::KMALLOC, "SLAB_KMALLOC"),
    (SlabFlags::HWCACHE_ALIGN, "SLAB_HWCACHE_ALIGN"),
    (SlabFlags::CACHE_DMA, "SLAB_CACHE_DMA"),
    (SlabFlags::STORE_USER, "SLAB_STORE_USER"),
    (SlabFlags::RECLAIM_ACCOUNT, "SLAB_RECLAIM_ACCOUNT"),
    (SlabFlags::PANIC, "SLAB_PANIC"),
    (SlabFlags::NO_MERGE, "SLAB_NO_MERGE"),
    (SlabFlags::ACCOUNT, "SLAB_ACCOUNT"),
];

impl fmt::Display for SlabFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("0");
        }
        let mut first = true;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let unknown = self.bits() & !SlabFlags::all().bits();
        if unknown != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{unknown:#x}")?;
        }
        Ok(())
    }
}

/// Why a string is not a set of slab flags.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown slab flag in {0:?}")]
pub struct ParseSlabFlagsError(pub alloc::string::String);

impl FromStr for SlabFlags {
    type Err = ParseSlabFlagsError;

    /// Parses kernel names joined by `|` (spaces around names allowed); `0`
    /// or the empty string is the empty set.
    fn from_str(s: &str) -> Result<SlabFlags, ParseSlabFlagsError> {
        let s = s.trim();
        if s.is_empty() || s == "0" {
            return Ok(SlabFlags::empty());
        }
        let mut flags = SlabFlags::empty();
        for word in s.split('|') {
            let word = word.trim();
            let found = NAMES
                .iter()
                .find(|(_, name)| *name == word)
                .map(|(flag, _)| *flag);
            match found {
                Some(flag) => flags |= flag,
                None => return Err(ParseSlabFlagsError(s.into())),
            }
        }
        Ok(flags)
    }
}
