//! `cargo xtask ci`: the CI gates, in order, stopping at the first failure.
//!
//! The list mirrors `.ci/run` step for step (house style rules 8 and 23.6): formatting, clippy
//! with default and with all features, the README's test command, the facade's backend feature
//! matrix, a bare-metal build of the `no_std` crates, rustdoc with warnings denied, Miri where a
//! nightly toolchain with Miri can be had, and the simulator's demo.
//! `cargo xtask release` runs the same gates, so a new gate is added here and in `.ci/run`.

use std::{fs, path::Path};

use anyhow::{Context, ensure};
use xshell::{Shell, cmd};

use crate::{cargo, target_dir};

/// The crates that must build for a bare-metal target, i.e. without `std`.
///
/// The facade `kmm` is among them; the build uses `--no-default-features --features eager-buddy`.
pub(crate) const NO_STD_CRATES: &[&str] = &[
    "kmm-gfp",
    "kmm-page",
    "kmm-percpu",
    "kmm-buddy",
    "kmm-zone",
    "kmm-vmalloc",
    "kmm-highmem",
    "kmm-slab",
    "kmm",
];

/// The bare-metal target of the `no_std` build.
pub(crate) const NO_STD_TARGET: &str = "x86_64-unknown-none";

/// The crates with `unsafe` code or locks that Miri can run; `kmm-host` maps memory with `mmap`
/// and `memfd`, which Miri cannot.
const MIRI_CRATES: &[&str] = &["kmm-page", "kmm-percpu"];

/// The crates of which Miri runs only the unit tests: their integration tests use `kmm-host`
/// (`kmm-slab`'s unit tests run slabs on heap memory).
const MIRI_LIB_CRATES: &[&str] = &["kmm-slab"];

/// Runs every gate in the workspace at `root`; `sh` must be in `root`.
pub(crate) fn run(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    let cargo = cargo();
    // As in `.ci/run`: warnings fail every build, not only clippy.
    let rustflags = format!(
        "{} -D warnings",
        std::env::var("RUSTFLAGS").unwrap_or_default()
    );
    let _rustflags = sh.push_env("RUSTFLAGS", rustflags.trim());

    step("cargo fmt --all -- --check");
    cmd!(sh, "{cargo} fmt --all -- --check").run()?;

    step("cargo clippy --workspace --all-targets -- -D warnings");
    cmd!(
        sh,
        "{cargo} clippy --workspace --all-targets -- -D warnings"
    )
    .run()?;

    step("cargo clippy --workspace --all-targets --all-features -- -D warnings");
    cmd!(
        sh,
        "{cargo} clippy --workspace --all-targets --all-features -- -D warnings"
    )
    .run()?;

    step("README test command: cargo test --workspace");
    cmd!(sh, "{cargo} test --workspace").run()?;

    // Each backend alone, both at once (the default set plus `lazy-buddy`), and the simulator on
    // the lazy backend.
    step("facade feature matrix");
    cmd!(
        sh,
        "{cargo} test -p kmm --no-default-features --features lazy-buddy,std"
    )
    .run()?;
    cmd!(sh, "{cargo} test -p kmm --features lazy-buddy").run()?;
    cmd!(sh, "{cargo} test -p kmm-sim --features kmm/lazy-buddy").run()?;

    step(&format!("no_std build for {NO_STD_TARGET}"));
    ensure_target_installed(sh, NO_STD_TARGET)?;
    let packages = NO_STD_CRATES.iter().flat_map(|krate| ["-p", krate]);
    cmd!(sh, "{cargo} build --target {NO_STD_TARGET} {packages...} --no-default-features --features eager-buddy")
        .run()?;

    step("cargo doc --workspace --no-deps, warnings denied");
    cmd!(sh, "{cargo} doc --workspace --no-deps")
        .env("RUSTDOCFLAGS", "-Dwarnings")
        .run()?;

    step("Miri");
    miri(sh)?;

    step("simulator demo");
    simulator_demo(sh, root)?;

    step("all green");
    Ok(())
}

/// Installs a rustup target unless the toolchain already has it, so a machine with the target
/// preinstalled never needs the network for this step.
fn ensure_target_installed(sh: &Shell, target: &str) -> anyhow::Result<()> {
    let installed = cmd!(sh, "rustup target list --installed")
        .read()
        .context("running rustup")?;
    if !installed.lines().any(|line| line.trim() == target) {
        cmd!(sh, "rustup target add {target}").run()?;
    }
    Ok(())
}

/// Runs the Miri tests when a nightly toolchain with Miri is installed or installable, and says
/// so when it is not, as `.ci/run` does.
///
/// This goes through the `cargo` on `PATH`, not `$CARGO`: only rustup's proxy understands
/// `+nightly`, and `$CARGO` names one toolchain's own binary.
fn miri(sh: &Shell) -> anyhow::Result<()> {
    let quietly = |command: xshell::Cmd<'_>| {
        command
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
    };
    // Asking rustup to install an installed toolchain still costs a round trip to the update
    // server, so look first.
    let available = quietly(cmd!(sh, "cargo +nightly miri --version"))
        || quietly(cmd!(
            sh,
            "rustup toolchain install nightly --profile minimal --component miri,rust-src"
        ));
    if !available {
        eprintln!("skipped: the nightly toolchain with Miri could not be installed");
        return Ok(());
    }
    let packages = MIRI_CRATES.iter().flat_map(|krate| ["-p", krate]);
    // Warnings are not denied here: nightly lints change faster than the code.
    let _no_deny = sh.push_env("RUSTFLAGS", "");
    cmd!(sh, "cargo +nightly miri test {packages...}").run()?;
    let lib_packages = MIRI_LIB_CRATES.iter().flat_map(|krate| ["-p", krate]);
    cmd!(sh, "cargo +nightly miri test {lib_packages...} --lib").run()?;
    Ok(())
}

/// Runs the simulator's built-in demo in a scratch directory and checks that it drew its picture.
fn simulator_demo(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    let simulator = target_dir(root).join("debug").join("kmm-sim");
    let scratch = sh.create_temp_dir()?;
    let _dir = sh.push_dir(scratch.path());
    cmd!(sh, "{simulator}").ignore_stdout().run()?;
    let picture = scratch.path().join("kmm-demo.svg");
    let size = fs::metadata(&picture).map_or(0, |m| m.len());
    ensure!(
        size > 0,
        "the simulator demo did not write {}",
        picture.display()
    );
    Ok(())
}

/// Prints a step banner, so a failure in a long log is easy to place.
fn step(name: &str) {
    eprintln!("\n==> xtask ci: {name}");
}
