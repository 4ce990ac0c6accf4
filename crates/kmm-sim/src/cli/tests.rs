//! Unit tests of the command line.

use clap::CommandFactory;

use super::*;

/// Parses `args` (without the program name).
fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("kmm-sim").chain(args.iter().copied()))
}

#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn no_arguments_means_the_demo() {
    assert_eq!(parse(&[]).unwrap().mode, None);
}

#[test]
fn run_takes_a_script_and_flags() {
    let mode = parse(&["run", "s.kmm", "--keep-going", "--picture", "m.svg"])
        .unwrap()
        .mode;
    assert_eq!(
        mode,
        Some(Mode::Run {
            script: PathBuf::from("s.kmm"),
            keep_going: true,
            echo: false,
            picture: Some(PathBuf::from("m.svg")),
        })
    );
    let mode = parse(&["run", "--echo", "-"]).unwrap().mode;
    assert_eq!(
        mode,
        Some(Mode::Run {
            script: PathBuf::from("-"),
            keep_going: false,
            echo: true,
            picture: None
        })
    );
}

#[test]
fn repl_takes_nothing() {
    assert_eq!(parse(&["repl"]).unwrap().mode, Some(Mode::Repl));
    assert!(parse(&["repl", "x"]).is_err());
}

#[test]
fn mistakes_are_usage_errors() {
    assert_eq!(
        parse(&["run"]).unwrap_err().kind(),
        clap::error::ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        parse(&["bench", "t.gz"]).unwrap_err().kind(),
        clap::error::ErrorKind::InvalidSubcommand
    );
    assert_eq!(
        parse(&["replay"]).unwrap_err().kind(),
        clap::error::ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        parse(&["replay", "t.gz", "--compare", "glibc"])
            .unwrap_err()
            .kind(),
        clap::error::ErrorKind::InvalidValue
    );
    assert_eq!(
        parse(&["replay", "t.gz", "--mem", "12X"])
            .unwrap_err()
            .kind(),
        clap::error::ErrorKind::ValueValidation
    );
    assert_eq!(
        parse(&["--version"]).unwrap_err().kind(),
        clap::error::ErrorKind::DisplayVersion
    );
}

#[test]
fn replay_takes_a_trace_and_options() {
    use crate::replay::{Baseline, ReplayArgs};
    let replay = |trace: &str, compare, mem, lazy_memory, quiet| {
        Some(Mode::Replay(ReplayArgs {
            trace: PathBuf::from(trace),
            compare,
            mem,
            lazy_memory,
            quiet,
        }))
    };
    assert_eq!(
        parse(&["replay", "t.gz"]).unwrap().mode,
        replay("t.gz", vec![], 256 << 20, false, false)
    );
    assert_eq!(
        parse(&["replay", "--compare", "system", "--mem", "1G", "-q", "t"])
            .unwrap()
            .mode,
        replay("t", vec![Baseline::System], 1 << 30, false, true)
    );
    assert_eq!(
        parse(&["replay", "--lazy-memory", "t"]).unwrap().mode,
        replay("t", vec![], 256 << 20, true, false)
    );
}
