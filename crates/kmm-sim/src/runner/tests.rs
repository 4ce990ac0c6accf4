//! Unit tests of the runner's rules, over a stand-in executor.

use std::io::Cursor;

use super::*;

/// A stand-in machine: it logs every command and fails `cat /fail`.
#[derive(Debug, Default)]
struct Recorder {
    /// The commands run, in order.
    log: Vec<Command>,
}

impl Execute for Recorder {
    type Error = String;

    fn execute(&mut self, command: &Command, out: &mut dyn Write) -> Result<(), String> {
        if *command == Command::Cat("/fail".to_owned()) {
            return Err("it failed".to_owned());
        }
        self.log.push(command.clone());
        writeln!(out, "ran {command:?}").map_err(|e| e.to_string())
    }
}

/// What one run produced.
#[derive(Debug)]
struct Run {
    /// Whether the runner reported success.
    ok: bool,
    /// Standard output.
    out: String,
    /// Standard error.
    err: String,
    /// The commands the executor ran.
    log: Vec<Command>,
    /// The failure count.
    failures: usize,
}

/// Runs `script` with `options`.
fn run(script: &str, options: Options) -> Run {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut runner = Runner::new(Recorder::default(), &mut out, &mut err, options);
    let ok = runner.run_script(script);
    let failures = runner.failures();
    let log = std::mem::take(&mut runner.executor().log);
    drop(runner);
    Run {
        ok,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        log,
        failures,
    }
}

const SCRIPT: &str = "drain\n\n# comment\ncat /fail\nsummary\nbogus\ncpu 1\n";

#[test]
fn a_script_stops_at_its_first_failure() {
    let run = run(SCRIPT, Options::default());
    assert!(!run.ok);
    assert_eq!(run.failures, 1);
    assert_eq!(run.log, [Command::Drain]);
    assert_eq!(run.err, "error: line 4: it failed\n");
    assert_eq!(run.out, "ran Drain\n");
}

#[test]
fn keep_going_runs_everything_and_still_fails() {
    let run = run(
        SCRIPT,
        Options {
            keep_going: true,
            echo: false,
        },
    );
    assert!(!run.ok);
    assert_eq!(run.failures, 2);
    assert_eq!(run.log, [Command::Drain, Command::Summary, Command::Cpu(1)]);
    assert_eq!(
        run.err,
        "error: line 4: it failed\nerror: line 6: unknown command 'bogus' (try 'help')\n"
    );
}

#[test]
fn a_clean_script_succeeds() {
    let run = run(
        "# nothing but\n\ndrain # and a comment\n",
        Options::default(),
    );
    assert!(run.ok);
    assert_eq!(run.failures, 0);
    assert_eq!(run.log, [Command::Drain]);
    assert_eq!(run.err, "");
}

#[test]
fn echo_prints_comments_and_commands() {
    let run = run(
        "# hello\n\ndrain\n",
        Options {
            keep_going: false,
            echo: true,
        },
    );
    assert_eq!(run.out, "# hello\n\nkmm> drain\nran Drain\n");
}

#[test]
fn the_repl_goes_on_after_errors_and_stops_at_quit() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut runner = Runner::new(Recorder::default(), &mut out, &mut err, Options::default());
    let mut input = Cursor::new("cat /fail\r\nnope\ndrain\nquit\nsummary\n");
    runner.run_repl(&mut input, Some("kmm> ")).unwrap();
    assert_eq!(runner.failures(), 2);
    assert_eq!(runner.executor().log, [Command::Drain]);
    drop(runner);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "kmm> kmm> kmm> ran Drain\nkmm> "
    );
    assert_eq!(
        String::from_utf8(err).unwrap(),
        "error: line 1: it failed\nerror: line 2: unknown command 'nope' (try 'help')\n"
    );
}

#[test]
fn the_repl_without_a_terminal_prints_no_prompt() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut runner = Runner::new(Recorder::default(), &mut out, &mut err, Options::default());
    runner.run_repl(&mut Cursor::new("summary"), None).unwrap();
    drop(runner);
    assert_eq!(String::from_utf8(out).unwrap(), "ran Summary\n");
    assert!(err.is_empty());
}

#[test]
fn a_command_outside_the_script_has_no_line_number() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut runner = Runner::new(Recorder::default(), &mut out, &mut err, Options::default());
    assert!(!runner.run_command(&Command::Cat("/fail".to_owned())));
    assert!(runner.run_command(&Command::Drain));
    assert_eq!(runner.failures(), 1);
    drop(runner);
    assert_eq!(String::from_utf8(err).unwrap(), "error: it failed\n");
}
