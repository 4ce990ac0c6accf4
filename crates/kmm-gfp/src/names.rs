//! Printing and parsing gfp masks by name, as the kernel's `show_gfp_flags`
//! and `%pGg` print them (`include/trace/events/mmflags.h`, `lib/vsprintf.c`).

use alloc::string::ToString;
use core::fmt;
use core::str::FromStr;

use crate::error::GfpError;
use crate::flags::Gfp;

/// The names the kernel prints, in the order of `__def_gfpflag_names`: the
/// composites first, most bits first, then every single bit in bit order.
///
/// Printing takes each entry whose bits are all still unprinted, so a mask
/// comes out as its largest composites plus the bits they leave over.
pub const GFP_FLAG_NAMES: [(&str, Gfp); 37] = [
    ("GFP_TRANSHUGE", Gfp::TRANSHUGE),
    ("GFP_TRANSHUGE_LIGHT", Gfp::TRANSHUGE_LIGHT),
    ("GFP_HIGHUSER_MOVABLE", Gfp::HIGHUSER_MOVABLE),
    ("GFP_HIGHUSER", Gfp::HIGHUSER),
    ("GFP_USER", Gfp::USER),
    ("GFP_KERNEL_ACCOUNT", Gfp::KERNEL_ACCOUNT),
    ("GFP_KERNEL", Gfp::KERNEL),
    ("GFP_NOFS", Gfp::NOFS),
    ("GFP_ATOMIC", Gfp::ATOMIC),
    ("GFP_NOIO", Gfp::NOIO),
    ("GFP_NOWAIT", Gfp::NOWAIT),
    ("GFP_DMA", Gfp::DMA),
    ("GFP_DMA32", Gfp::DMA32),
    ("__GFP_RECLAIM", Gfp::RECLAIM),
    ("__GFP_DMA", Gfp::DMA),
    ("__GFP_HIGHMEM", Gfp::HIGHMEM),
    ("__GFP_DMA32", Gfp::DMA32),
    ("__GFP_MOVABLE", Gfp::MOVABLE),
    ("__GFP_RECLAIMABLE", Gfp::RECLAIMABLE),
    ("__GFP_HIGH", Gfp::HIGH),
    ("__GFP_IO", Gfp::IO),
    ("__GFP_FS", Gfp::FS),
    ("__GFP_ZERO", Gfp::ZERO),
    ("__GFP_DIRECT_RECLAIM", Gfp::DIRECT_RECLAIM),
    ("__GFP_KSWAPD_RECLAIM", Gfp::KSWAPD_RECLAIM),
    ("__GFP_WRITE", Gfp::WRITE),
    ("__GFP_NOWARN", Gfp::NOWARN),
    ("__GFP_RETRY_MAYFAIL", Gfp::RETRY_MAYFAIL),
    ("__GFP_NOFAIL", Gfp::NOFAIL),
    ("__GFP_NORETRY", Gfp::NORETRY),
    ("__GFP_MEMALLOC", Gfp::MEMALLOC),
    ("__GFP_COMP", Gfp::COMP),
    ("__GFP_NOMEMALLOC", Gfp::NOMEMALLOC),
    ("__GFP_HARDWALL", Gfp::HARDWALL),
    ("__GFP_THISNODE", Gfp::THISNODE),
    ("__GFP_ACCOUNT", Gfp::ACCOUNT),
    ("__GFP_ZEROTAGS", Gfp::ZEROTAGS),
];

impl Gfp {
    /// The mask named `name`: a single bit (`__GFP_ZERO`) or a composite
    /// (`GFP_KERNEL`, `__GFP_RECLAIM`), spelled exactly as in the kernel.
    pub fn from_kernel_name(name: &str) -> Option<Gfp> {
        GFP_FLAG_NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|&(_, gfp)| gfp)
    }

    /// Writes the names of `self`, `|`-separated, in `show_gfp_flags` order;
    /// bits without a name (only possible through
    /// [`Gfp::from_bits_retain`]) come last as one hex number.
    fn write_names(self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.bits();
        let mut first = true;
        for (name, gfp) in GFP_FLAG_NAMES {
            if left & gfp.bits() != gfp.bits() {
                continue;
            }
            if !first {
                f.write_str("|")?;
            }
            f.write_str(name)?;
            first = false;
            left &= !gfp.bits();
        }
        if left != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{left:#x}")?;
        }
        Ok(())
    }
}

/// Prints the mask like the kernel's `show_gfp_flags`: composites first
/// (`GFP_KERNEL|__GFP_ZERO`), `0` for the empty mask.
///
/// The alternate form (`{:#}`) prints it like `%pGg` in kernel messages,
/// with the hex value in front: `0xdc0(GFP_KERNEL|__GFP_ZERO)`.
impl fmt::Display for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{:#x}(", self.bits())?;
            self.write_names(f)?;
            f.write_str(")")
        } else if self.is_empty() {
            f.write_str("0")
        } else {
            self.write_names(f)
        }
    }
}

/// Prints `Gfp(` + the [`Display`](fmt::Display) form + `)`.
impl fmt::Debug for Gfp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gfp({self})")
    }
}

/// Parses `|`-separated kernel names and numbers, such as
/// `"GFP_KERNEL|__GFP_ZERO"`, `"GFP_ATOMIC | __GFP_NOWARN"`, `"0xcc0"` or `"0"`.
///
/// Each part may be a single-bit name, a composite name, a hex number with a
/// `0x` prefix, or a decimal number; spaces around the parts are ignored.
/// The kernel's trace spelling `none` of the empty mask is accepted too.
impl FromStr for Gfp {
    type Err = GfpError;

    fn from_str(s: &str) -> Result<Gfp, GfpError> {
        let mut gfp = Gfp::empty();
        for part in s.split('|') {
            gfp |= parse_part(part.trim())?;
        }
        Ok(gfp)
    }
}

/// Parses one `|`-separated part of a gfp string.
fn parse_part(part: &str) -> Result<Gfp, GfpError> {
    if part.is_empty() {
        return Err(GfpError::EmptyName);
    }
    if part == "none" {
        return Ok(Gfp::empty());
    }
    let number = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        // `from_str_radix` would also take a sign; a gfp number has none.
        if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            u32::from_str_radix(hex, 16).ok()
        } else {
            None
        }
    } else if part.starts_with(|c: char| c.is_ascii_digit()) {
        part.parse::<u32>().ok()
    } else {
        return Gfp::from_kernel_name(part).ok_or_else(|| GfpError::UnknownName(part.to_string()));
    };
    let bits = number.ok_or_else(|| GfpError::InvalidNumber(part.to_string()))?;
    Gfp::from_bits(bits).ok_or(GfpError::UnknownBits(bits))
}
