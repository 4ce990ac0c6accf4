//! Drives an executor through script lines: numbering, error reports, `--keep-going`, the REPL.
//!
//! The runner parses each line, hands the command to an [`Execute`] implementation and reports
//! failures as `error: line N: <reason>` on the error stream.
//! It is generic over the executor so that its rules (stop at the first failure unless
//! `--keep-going`, never stop in the REPL) are tested with a stand-in machine.

use std::fmt;
use std::io::{self, BufRead, Write};

use crate::script::{self, Command};

/// Something that runs parsed commands, printing results to `out`.
pub(crate) trait Execute {
    /// Why a command failed; its `Display` is the reason printed after `error: line N: `.
    type Error: fmt::Display;

    /// Runs one command; on error the state must be as before the call.
    fn execute(&mut self, command: &Command, out: &mut dyn Write) -> Result<(), Self::Error>;
}

/// How the runner treats failures and echoes input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Options {
    /// Go on after a failing command (the exit status still says it failed).
    pub(crate) keep_going: bool,
    /// Print each command line (as `kmm> LINE`) and each comment before running it.
    pub(crate) echo: bool,
}

/// Runs lines through an executor and counts failures.
pub(crate) struct Runner<'io, E> {
    /// The machine the commands run on.
    executor: E,
    /// Where results go (standard output).
    out: &'io mut dyn Write,
    /// Where errors go (standard error).
    err: &'io mut dyn Write,
    /// Failure and echo rules.
    options: Options,
    /// How many lines failed so far.
    failures: usize,
}

impl<E: fmt::Debug> fmt::Debug for Runner<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("executor", &self.executor)
            .field("options", &self.options)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl<'io, E: Execute> Runner<'io, E> {
    /// A runner over `executor`, printing to `out` and `err`.
    pub(crate) fn new(
        executor: E,
        out: &'io mut dyn Write,
        err: &'io mut dyn Write,
        options: Options,
    ) -> Self {
        Runner {
            executor,
            out,
            err,
            options,
            failures: 0,
        }
    }

    /// How many lines have failed.
    pub(crate) fn failures(&self) -> usize {
        self.failures
    }

    /// Runs one command outside any script line (such as the final `--picture`), reporting a
    /// failure as `error: <reason>`; returns whether it succeeded.
    pub(crate) fn run_command(&mut self, command: &Command) -> bool {
        match self.executor.execute(command, self.out) {
            Ok(()) => true,
            Err(reason) => {
                self.failures += 1;
                self.report(format_args!("error: {reason}"));
                false
            }
        }
    }

    /// Runs line `number` (counted from 1); returns whether it succeeded (blank lines and
    /// comments always do).
    pub(crate) fn run_line(&mut self, number: usize, line: &str) -> bool {
        if self.options.echo {
            self.echo(line);
        }
        let result = match script::parse_line(line) {
            Ok(None) => return true,
            Ok(Some(command)) => self
                .executor
                .execute(&command, self.out)
                .map_err(|e| e.to_string()),
            Err(parse) => Err(parse.to_string()),
        };
        match result {
            Ok(()) => true,
            Err(reason) => {
                self.failures += 1;
                self.report(format_args!("error: line {number}: {reason}"));
                false
            }
        }
    }

    /// Runs a whole script, stopping at the first failing line unless `keep_going`; returns
    /// whether every line succeeded.
    pub(crate) fn run_script(&mut self, text: &str) -> bool {
        for (index, line) in text.lines().enumerate() {
            if !self.run_line(index + 1, line) && !self.options.keep_going {
                break;
            }
        }
        let _ = self.out.flush();
        self.failures == 0
    }

    /// Reads lines from `input` until its end or `quit`/`exit`, writing `prompt` before each
    /// one when given; failing lines are reported and the session goes on.
    pub(crate) fn run_repl(
        &mut self,
        input: &mut dyn BufRead,
        prompt: Option<&str>,
    ) -> io::Result<()> {
        let mut line = String::new();
        let mut number = 0;
        loop {
            if let Some(prompt) = prompt {
                write!(self.out, "{prompt}")?;
                self.out.flush()?;
            }
            line.clear();
            if input.read_line(&mut line)? == 0 {
                if prompt.is_some() {
                    writeln!(self.out)?;
                }
                break;
            }
            number += 1;
            if matches!(line.trim(), "quit" | "exit") {
                break;
            }
            self.run_line(number, line.trim_end_matches(['\n', '\r']));
            self.out.flush()?;
        }
        Ok(())
    }

    /// The executor, for tests to inspect.
    #[cfg(test)]
    pub(crate) fn executor(&mut self) -> &mut E {
        &mut self.executor
    }

    /// Prints a line before running it: comments and blank lines as they are, commands after
    /// a `kmm> ` prompt.
    fn echo(&mut self, line: &str) {
        let trimmed = line.trim();
        let _ = if trimmed.is_empty() || trimmed.starts_with('#') {
            writeln!(self.out, "{trimmed}")
        } else {
            writeln!(self.out, "kmm> {trimmed}")
        };
    }

    /// Writes an error line after flushing the results printed before it, so both streams
    /// read in order on a terminal.
    fn report(&mut self, message: fmt::Arguments<'_>) {
        let _ = self.out.flush();
        let _ = writeln!(self.err, "{message}");
    }
}

#[cfg(test)]
mod tests;
