#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod error;
mod flags;
mod names;
mod types;
mod watermark;
mod zone;

pub use error::GfpError;
pub use flags::*;
pub use names::GFP_FLAG_NAMES;
pub use types::*;
pub use watermark::{
    ALLOC_CMA, ALLOC_CPUSET, ALLOC_HIGHATOMIC, ALLOC_KSWAPD, ALLOC_MIN_RESERVE,
    ALLOC_NO_WATERMARKS, ALLOC_NOFRAGMENT, ALLOC_NON_BLOCK, ALLOC_OOM, ALLOC_RESERVES,
    ALLOC_TRYLOCK, ALLOC_WMARK_HIGH, ALLOC_WMARK_LOW, ALLOC_WMARK_MASK, ALLOC_WMARK_MIN,
    AllocFlags, Watermark, WatermarkCheck, WatermarkPolicy, alloc_flags_nofragment, effective_min,
    gfp_pfmemalloc_flags, gfp_to_alloc_flags, watermark_policy, zone_watermark_unusable_free,
};
pub use zone::{GFP_ZONE_BAD, ZoneConfig, gfp_migratetype, gfp_zone, gfp_zone_x86_64};

#[cfg(test)]
mod tests;
