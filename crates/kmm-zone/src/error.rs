//! `ZoneError`: why a machine layout cannot be booted.

use kmm_gfp::ZoneType;
use kmm_page::{MemMapError, PageError, PfnRange};

use crate::layout::Arch;

/// Why [`ZonedAllocator::new`](crate::ZonedAllocator::new) refused a layout.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    /// The layout lists no zone.
    #[error("the layout has no zones")]
    NoZones,
    /// No zone has a present frame.
    #[error("the layout has no memory")]
    Empty,
    /// A zone is listed out of zone order, or twice.
    #[error("zone {0} is listed out of zone order or twice")]
    ZoneOrder(ZoneType),
    /// Two present ranges overlap.
    #[error("present ranges {a:?} and {b:?} overlap")]
    Overlap {
        /// The lower range.
        a: PfnRange,
        /// The range that starts inside it.
        b: PfnRange,
    },
    /// A zone the architecture does not configure.
    #[error("{arch:?} has no zone {zone}")]
    ZoneNotInArch {
        /// The zone.
        zone: ZoneType,
        /// The architecture.
        arch: Arch,
    },
    /// A present range lies outside its zone's bounds on this architecture.
    #[error("range {range:?} lies outside zone {zone}")]
    OutsideZone {
        /// The zone.
        zone: ZoneType,
        /// The range.
        range: PfnRange,
    },
    /// A free range is not inside one present range of its zone.
    #[error("free range {range:?} of zone {zone} is not present memory of that zone")]
    FreeNotPresent {
        /// The zone.
        zone: ZoneType,
        /// The range.
        range: PfnRange,
    },
    /// The memory map could not be built.
    #[error(transparent)]
    Map(#[from] MemMapError),
    /// The buddy refused a free range (for example, free ranges that overlap).
    #[error("zone {zone}: handing {range:?} to the buddy failed: {source}")]
    Buddy {
        /// The zone.
        zone: ZoneType,
        /// The range.
        range: PfnRange,
        /// The buddy's error.
        source: PageError,
    },
}
