//! `kmm-sim`: boots a simulated machine on the `kmm` memory manager, runs scenario scripts or an
//! interactive session, prints Linux's `/proc` files and draws pictures of physical memory.
//!
//! The modules follow the way a line travels: [`cli`] reads the command line, [`script`] parses
//! a line into a command, [`runner`] numbers lines and reports failures, [`executor`] runs a
//! command on the machine, [`picture`] draws it and [`demo`] holds the built-in script.
//! [`replay`] replays recorded malloc traces; its heap modules are the only ones with `unsafe`.
#![deny(unsafe_code)]

mod cli;
mod demo;
mod executor;
mod picture;
mod replay;
mod runner;
mod script;

use std::fs;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Mode};
use crate::executor::Session;
use crate::runner::{Options, Runner};
use crate::script::Command;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut err = io::stderr();
    let ok = match cli.mode {
        None => {
            let mut runner = Runner::new(Session::default(), &mut out, &mut err, demo::OPTIONS);
            runner.run_script(demo::SCRIPT)
        }
        Some(Mode::Run {
            script,
            keep_going,
            echo,
            picture,
        }) => {
            let options = Options { keep_going, echo };
            match read_script(&script) {
                Ok(text) => {
                    let mut runner = Runner::new(Session::default(), &mut out, &mut err, options);
                    let ran = runner.run_script(&text);
                    // The picture is drawn even after a failure: it shows the state the
                    // script stopped in.
                    let drew =
                        picture.is_none_or(|path| runner.run_command(&Command::Picture(path)));
                    ran && drew
                }
                Err(error) => {
                    let _ = writeln!(err, "error: cannot read {}: {error}", script.display());
                    false
                }
            }
        }
        Some(Mode::Repl) => {
            let stdin = io::stdin();
            let prompt = stdin.is_terminal().then_some("kmm> ");
            let options = Options {
                keep_going: true,
                echo: false,
            };
            let mut runner = Runner::new(Session::default(), &mut out, &mut err, options);
            match runner.run_repl(&mut stdin.lock(), prompt) {
                Ok(()) => runner.failures() == 0,
                Err(error) => {
                    drop(runner);
                    let _ = writeln!(err, "error: {error}");
                    false
                }
            }
        }
        Some(Mode::Replay(args)) => replay::run(&args, &mut out, &mut err),
    };
    let flushed = out.flush().is_ok();
    if ok && flushed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Reads a script file, or standard input for `-`.
fn read_script(path: &Path) -> io::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        fs::read_to_string(path)
    }
}
