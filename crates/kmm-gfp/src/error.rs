//! The one error type of this crate.

use alloc::string::String;

use crate::flags::Gfp;

/// What can be wrong with a gfp mask or with its text form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GfpError {
    /// The zone modifiers form a combination that `GFP_ZONE_BAD` forbids
    /// (more than one of `__GFP_DMA`, `__GFP_DMA32` and `__GFP_HIGHMEM`);
    /// the kernel stops at a `VM_BUG_ON` in `gfp_zone`.
    #[error("invalid zone modifiers {} in gfp {:#x} (GFP_ZONE_BAD)", .gfp.zone_modifiers(), .gfp.bits())]
    BadZone {
        /// The whole mask that was given.
        gfp: Gfp,
    },
    /// A name in a gfp string is neither a kernel flag nor a composite.
    ///
    /// Removed flags such as `__GFP_WAIT`, `__GFP_COLD` or `__GFP_ATOMIC` are
    /// unknown too.
    #[error("unknown gfp flag name `{0}`")]
    UnknownName(String),
    /// A number in a gfp string has bits that no modelled kernel flag uses
    /// (bit 9, or the config-dependent bits from bit 24 up).
    #[error("gfp value {0:#x} has bits no gfp flag uses")]
    UnknownBits(u32),
    /// A number in a gfp string does not parse as a 32-bit value.
    #[error("`{0}` is not a valid 32-bit gfp number")]
    InvalidNumber(String),
    /// A gfp string, or one of its `|`-separated parts, is empty.
    #[error("empty flag name in gfp string")]
    EmptyName,
}
