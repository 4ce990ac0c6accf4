//! `cargo xtask`: the kmm workspace's automation, in the cargo-xtask style.
//!
//! One binary, one module per subcommand (`tidy`, `ci`, `release`, `bench_report`), plus two
//! small readers they share: `manifest` (line-based `Cargo.toml`) and `json` (for `cargo metadata`
//! and criterion).
//! Every external command goes through `xshell`, and cargo is always invoked through `$CARGO`
//! so that `cargo +toolchain xtask …` keeps using the same toolchain.
//! The workspace root is the parent of this crate's manifest directory.

mod bench_report;
mod ci;
mod flags;
mod json;
mod manifest;
mod release;
mod tidy;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use xshell::Shell;

fn main() -> ExitCode {
    // Print the error chain on one line per cause, without the backtrace that `anyhow`'s `Debug`
    // adds whenever `RUST_BACKTRACE` is set: a failed gate's own output says what went wrong.
    match run(flags::Xtask::from_env_or_exit()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(flags: flags::Xtask) -> anyhow::Result<()> {
    let root = project_root();
    let sh = Shell::new()?;
    sh.change_dir(&root);
    match flags.subcommand {
        flags::XtaskCmd::Tidy(_) => tidy::run(&root),
        flags::XtaskCmd::Ci(_) => ci::run(&sh, &root),
        flags::XtaskCmd::Release(cmd) => release::run(&sh, &root, &cmd.bump, cmd.dry_run),
        flags::XtaskCmd::BenchReport(cmd) => {
            let dir = cmd
                .criterion_dir
                .unwrap_or_else(|| target_dir(&root).join("criterion"));
            let table = bench_report::report(&dir)?;
            print!("{table}");
            Ok(())
        }
    }
}

/// Returns the workspace root, found from this crate's `CARGO_MANIFEST_DIR`.
fn project_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Returns the cargo binary to run: `$CARGO` when set (it is, under `cargo xtask`), else `cargo`.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Returns the target directory cargo uses for the workspace at `root`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}
