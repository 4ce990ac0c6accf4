//! Tests of `kmm-sim replay` through the binary: the command line, the `trace:` line of the
//! published traces, and the errors for unreadable and malformed traces.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::Compression;
use flate2::write::GzEncoder;

/// What one run of the binary printed.
struct Run {
    /// The exit code.
    code: Option<i32>,
    /// Standard output.
    out: String,
    /// Standard error.
    err: String,
}

/// Runs `kmm-sim ARGS` (standard input empty, so never a terminal).
fn kmm_sim(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_kmm-sim"))
        .args(args)
        .output()
        .unwrap();
    Run {
        code: status.code(),
        out: String::from_utf8(stdout).unwrap(),
        err: String::from_utf8(stderr).unwrap(),
    }
}

/// A file of its own under the temporary directory, removed afterwards.
struct TempFile(PathBuf);

impl TempFile {
    /// A file named `name` holding `bytes`.
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("kmm-sim-replay-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }

    /// The path as a string argument.
    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The value of `key=` in a result line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
}

/// Checks the end of a replay through kmalloc: exit status 0, nothing on standard error, a
/// `kmm: ops=<events>` line and a `kmm-memory:` line with `failed=<failed>` and the reason.
/// (The replay fails with an error unless every frame came back after it.)
fn check_kmm_side(run: &Run, events: u64, failed: &str) {
    assert_eq!(run.err, "");
    assert_eq!(run.code, Some(0));
    let lines: Vec<&str> = run.out.lines().collect();
    assert!(
        lines[1].starts_with(&format!("kmm: ops={events} time=")),
        "{}",
        run.out
    );
    assert!(
        lines[2].starts_with("kmm-memory: peak_pages="),
        "{}",
        run.out
    );
    assert!(
        lines[2].contains(&format!(" failed={failed} pages_at_peak_live=")),
        "{}",
        run.out
    );
    let pages = field(lines[2], "peak_pages")
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let at_peak = field(lines[2], "pages_at_peak_live")
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(pages >= at_peak && at_peak > 0, "{}", run.out);
}

#[test]
fn replay_is_a_subcommand_with_its_options() {
    let run = kmm_sim(&["--help"]);
    assert_eq!(run.code, Some(0));
    assert!(run.out.contains("replay"), "{}", run.out);
    let run = kmm_sim(&["replay", "--help"]);
    assert_eq!(run.code, Some(0));
    for option in [
        "--compare",
        "--mem",
        "--lazy-memory",
        "--quiet",
        "[default: 256M]",
        "system",
    ] {
        assert!(
            run.out.contains(option),
            "{option} missing from:\n{}",
            run.out
        );
    }
    let run = kmm_sim(&["replay", "t.gz", "--mem", "lots"]);
    assert_eq!(run.code, Some(2));
    assert!(run.err.contains("--mem"), "{}", run.err);
    assert_eq!(run.out, "");
}

#[test]
fn a_gzipped_trace_prints_its_trace_line_first() {
    let text = "a 0 100\na 1 0\na 2 64 4096\nr 0 3 200\nf 1\nf 2\n";
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    // Named without `.gz`: the gzip magic is enough.
    let file = TempFile::new("small.trace", &encoder.finish().unwrap());
    let run = kmm_sim(&["replay", file.arg(), "--compare", "system"]);
    let name = file.0.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        run.out.lines().next(),
        Some(
            format!(
                "trace: {name} events=6 allocs=3 frees=2 reallocs=1 peak_live_bytes=264 \
                 peak_live_objects=4 live_at_end=1"
            )
            .as_str()
        )
    );
    check_kmm_side(&run, 6, "0");
    assert_eq!(run.out.lines().count(), 5, "{}", run.out);
    assert!(
        run.out
            .lines()
            .nth(3)
            .unwrap()
            .starts_with("system: ops=6 ")
    );
}

#[test]
fn unreadable_and_malformed_traces_are_errors() {
    let run = kmm_sim(&["replay", "/nonexistent/kmm-sim/none.trace.gz"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.out, "");
    assert!(
        run.err
            .starts_with("error: cannot read /nonexistent/kmm-sim/none.trace.gz: "),
        "{}",
        run.err
    );

    let file = TempFile::new("bad.trace", b"a 0 1\nm 0 1\n");
    let run = kmm_sim(&["replay", file.arg()]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.out, "");
    assert_eq!(
        run.err,
        format!(
            "error: {}: line 2: unknown event 'm' (expected a, f or r)\n",
            file.arg()
        )
    );

    let file = TempFile::new("rule.trace", b"a 0 1\na 1 1\nr 0 1 9\n");
    let run = kmm_sim(&["replay", file.arg()]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.err,
        format!(
            "error: {}: line 3: realloc result names id 1, which is still live\n",
            file.arg()
        )
    );
}

#[test]
fn the_published_traces_print_their_readme_counts() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/traces"
    ));
    if !dir.is_dir() {
        println!(
            "note: {} does not exist; the published traces are not checked",
            dir.display()
        );
        return;
    }
    // File, events, peak live objects, live at end (objects, bytes): `traces/README.md`.
    // And the requests above 4 MiB, which kmalloc refuses.
    let published = [
        ("py-compileall.trace.gz", 718_014, 85_087, 559, "0"),
        ("gcc-cc1.trace.gz", 476_534, 6_146, 5_713, "0"),
        (
            "sqlite3.trace.gz",
            2_451_341,
            8_049,
            16,
            "2 (above KMALLOC_MAX_SIZE 4 MiB)",
        ),
    ];
    for (file, events, peak_objects, live_at_end, failed) in published {
        let path = dir.join(file);
        let run = kmm_sim(&["replay", path.to_str().unwrap(), "--quiet"]);
        let line = run.out.lines().next().unwrap_or_default();
        assert!(line.starts_with(&format!("trace: {file} ")), "{line}");
        assert_eq!(field(line, "events"), Some(events.to_string().as_str()));
        assert_eq!(
            field(line, "peak_live_objects"),
            Some(peak_objects.to_string().as_str())
        );
        assert_eq!(
            field(line, "live_at_end"),
            Some(live_at_end.to_string().as_str())
        );
        let count = |key| field(line, key).unwrap().parse::<u64>().unwrap();
        assert_eq!(count("allocs") + count("frees") + count("reallocs"), events);
        check_kmm_side(&run, events, failed);
    }
}
