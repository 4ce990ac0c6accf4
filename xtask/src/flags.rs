//! Command-line flags of `cargo xtask`, declared with `xflags`.
//!
//! The macro generates `Xtask` with one `XtaskCmd` variant per subcommand; `--help` prints the
//! doc comments below.

use std::path::PathBuf;

xflags::xflags! {
    /// Workspace automation for kmm.
    cmd xtask {
        /// Check house-style rules that rustfmt and clippy do not: doc headers,
        /// banned test attributes, trailing whitespace, manifests and the changelog.
        cmd tidy {}

        /// Run the CI gates in order, stopping at the first failure.
        cmd ci {}

        /// Bump the lockstep version, move the changelog, run the gates and publish.
        cmd release {
            /// `major`, `minor`, `patch`, or an explicit `X.Y.Z`.
            required bump: String
            /// Do everything up to `cargo publish --dry-run` in a temporary worktree,
            /// print what would run next, and leave the checkout untouched.
            optional --dry-run
        }

        /// Print a Markdown table of criterion medians and ratios to each group's baseline.
        cmd bench-report {
            /// Criterion's output directory (default: `<target-dir>/criterion`).
            optional --criterion-dir dir: PathBuf
        }
    }
}
