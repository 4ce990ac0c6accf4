//! The command line: `kmm-sim [run SCRIPT [--keep-going] [--echo] [--picture FILE.svg] | repl |
//! replay TRACE [--compare system,talc] [--mem SIZE] [--lazy-memory] [--quiet]]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::replay::ReplayArgs;

/// Simulate Linux memory management: boot a machine, run scripts, print /proc files.
///
/// With no subcommand, kmm-sim runs its built-in demo and writes kmm-demo.svg.
#[derive(Debug, Parser)]
#[command(name = "kmm-sim", version, about, long_about)]
pub(crate) struct Cli {
    /// What to do; the demo when absent.
    #[command(subcommand)]
    pub(crate) mode: Option<Mode>,
}

/// The subcommands.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Run a scenario script (one command a line; `-` reads standard input).
    Run {
        /// The script file.
        script: PathBuf,
        /// Go on after a failing command; the exit status is still 1.
        #[arg(long)]
        keep_going: bool,
        /// Print each command before its output, as the demo does.
        #[arg(long)]
        echo: bool,
        /// Write a picture of physical memory at the end of the script.
        #[arg(long, value_name = "FILE.svg")]
        picture: Option<PathBuf>,
    },
    /// Read commands from standard input; errors are reported and the session goes on.
    Repl,
    /// Replay a malloc trace through kmalloc and report time and memory.
    Replay(ReplayArgs),
}

#[cfg(test)]
mod tests;
