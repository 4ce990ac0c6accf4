//! The built-in demo: `scripts/demo.kmm`, run with its commands echoed.
//!
//! `kmm-sim` without arguments runs this script, so the binary shows what kmm can do without any
//! file around it; the script writes its picture to `kmm-demo.svg` in the current directory.

use crate::runner::Options;

/// The demo script, embedded in the binary.
pub(crate) const SCRIPT: &str = include_str!("../scripts/demo.kmm");

/// How the demo runs: commands echoed, stop at the first failure.
pub(crate) const OPTIONS: Options = Options {
    keep_going: false,
    echo: true,
};

#[cfg(test)]
mod tests;
