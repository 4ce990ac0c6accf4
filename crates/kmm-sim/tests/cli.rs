//! Tests of the `kmm-sim` binary: the worked example, the output contract, error handling,
//! the REPL and the demo.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The scripts shipped with the crate.
fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// A directory of its own for one test, removed afterwards.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("kmm-sim-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of the binary printed.
struct Run {
    /// The exit code.
    code: Option<i32>,
    /// Standard output.
    out: String,
    /// Standard error.
    err: String,
}

/// Runs `kmm-sim ARGS` in `dir` with `stdin` as standard input.
fn kmm_sim_in(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmm-sim"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        code: status.code(),
        out: String::from_utf8(stdout).unwrap(),
        err: String::from_utf8(stderr).unwrap(),
    }
}

/// Runs `kmm-sim ARGS` in the crate directory.
fn kmm_sim(args: &[&str], stdin: &str) -> Run {
    kmm_sim_in(Path::new(env!("CARGO_MANIFEST_DIR")), args, stdin)
}

/// Runs `script` from standard input with `run - FLAGS`.
fn run_script(script: &str, flags: &[&str]) -> Run {
    let mut args = vec!["run", "-"];
    args.extend_from_slice(flags);
    kmm_sim(&args, script)
}

/// The lines of `text` that start with `prefix`.
fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .collect()
}

/// The value of `key=` in a result line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn the_worked_example_prints_the_expected_output() {
    let script = scripts().join("worked-example.kmm");
    // The expected output was written for the default backend, the eager
    // buddy; built with `kmm/lazy-buddy` only the backend's name changes.
    let expected = std::fs::read_to_string(scripts().join("worked-example.out"))
        .unwrap()
        .replace(
            "buddy=eager",
            &format!("buddy={}", <kmm::DefaultBuddy as kmm::BuddyBackend>::NAME),
        );
    let run = kmm_sim(&["run", script.to_str().unwrap()], "");
    assert_eq!(run.err, "");
    assert_eq!(run.out, expected);
    assert_eq!(run.code, Some(0));
}

/// Replaces every `addr=0x...` (a host address, different on every run) with `addr=ADDR`.
fn without_addresses(text: &str) -> String {
    text.lines()
        .map(|line| {
            line.split(' ')
                .map(|token| match token.strip_prefix("addr=0x") {
                    Some(hex) if hex.chars().all(|c| c.is_ascii_hexdigit()) && !hex.is_empty() => {
                        "addr=ADDR"
                    }
                    _ => token,
                })
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        })
        .collect()
}

#[test]
fn the_slab_script_prints_the_expected_output() {
    let script = scripts().join("slab.kmm");
    let expected = std::fs::read_to_string(scripts().join("slab.out"))
        .unwrap()
        .replace(
            "buddy=eager",
            &format!("buddy={}", <kmm::DefaultBuddy as kmm::BuddyBackend>::NAME),
        );
    let run = kmm_sim(&["run", script.to_str().unwrap()], "");
    assert_eq!(run.err, "");
    assert_eq!(run.code, Some(0));
    // Every object line has a real, distinct host address.
    let addrs: Vec<&str> = run
        .out
        .lines()
        .filter_map(|line| field(line, "addr"))
        .collect();
    assert_eq!(addrs.len(), 7, "{}", run.out);
    for addr in &addrs {
        assert!(addr.starts_with("0x") && addr.len() > 3, "{addr}");
    }
    let mut distinct = addrs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), addrs.len());
    // Objects of one cache lie one slot apart.
    let slot = |name: &str| {
        let text = field(lines_starting(&run.out, name)[0], "addr").unwrap();
        usize::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
    };
    assert_eq!(slot("I2:") - slot("I1:"), 192);
    assert_eq!(without_addresses(&run.out), expected);
}

#[test]
fn the_highmem_script_prints_the_expected_output() {
    let script = scripts().join("highmem.kmm");
    let expected = std::fs::read_to_string(scripts().join("highmem.out"))
        .unwrap()
        .replace(
            "buddy=eager",
            &format!("buddy={}", <kmm::DefaultBuddy as kmm::BuddyBackend>::NAME),
        );
    let run = kmm_sim(&["run", script.to_str().unwrap(), "--keep-going"], "");
    // The one refused line: kunmap_atomic of the older of two nested mappings.
    assert_eq!(
        run.err,
        "error: line 26: highmem: 0xfffdf000 is not the most recent kmap_local mapping \
         (that is 0xfffe0000)\n"
    );
    assert_eq!(run.out, expected);
    assert_eq!(run.code, Some(1));
    // Both kmaps of A share slot 1; vmallocinfo sizes include the guard page.
    let f = lines_starting(&run.out, "F:");
    let f2 = lines_starting(&run.out, "F2:");
    assert_eq!(field(f[0], "addr"), field(f2[0], "addr"));
    assert_eq!(field(f[0], "slot"), Some("1"));
    assert_eq!(
        field(lines_starting(&run.out, "E:")[0], "pages"),
        Some("10")
    );
    assert!(
        run.out.contains(
            "0xf8808000-0xf8813000   45056 MemoryManager::vmalloc pages=10 vmalloc N0=10\n"
        )
    );
}

#[test]
fn vm_commands_refuse_misuse_and_go_on() {
    let run = run_script(
        "boot mem=64M\nalloc_pages A order=0\nvmalloc E 8K\nvfree A\nfree_pages E\nkmap F E\n\
         kunmap A\nkunmap_atomic Z\nvfree E\nvfree E\nalloc_percpu H size=0\n\
         alloc_percpu H size=4 align=4\nkmap F A\nkunmap_atomic F\nkunmap F\nfree_percpu H\n",
        &["--keep-going"],
    );
    assert_eq!(run.code, Some(1));
    let errors: Vec<&str> = run.err.lines().collect();
    assert_eq!(
        errors,
        [
            "error: line 4: 'A' came from alloc_pages: free it with free_pages",
            "error: line 5: 'E' came from vmalloc: free it with vfree",
            "error: line 6: 'E' is not a page allocation: kmap maps the first frame of an alloc_pages result",
            "error: line 7: 'A' came from alloc_pages: free it with free_pages",
            "error: line 8: no live allocation named 'Z'",
            "error: line 10: no live allocation named 'E'",
            "error: line 11: percpu: illegal size (0) or align (8) for percpu allocation",
            "error: line 14: 'F' came from kmap: free it with kunmap",
        ]
    );
    // On x86-64 host memory every frame is lowmem: kmap gives the direct map, no slot.
    let f = lines_starting(&run.out, "F:")[0];
    assert_eq!(field(f, "slot"), None);
    assert_eq!(field(lines_starting(&run.out, "H:")[0], "chunk"), Some("0"));
}

#[test]
fn every_allocation_line_starts_with_its_name() {
    let script = "\
boot mem=64M cpus=2
alloc_pages A order=0
alloc_pages Big order=5 gfp=GFP_KERNEL
alloc_pages Dma order=1 gfp=GFP_DMA
alloc_pages Mov order=2 gfp=GFP_HIGHUSER_MOVABLE
alloc_pages At order=0 gfp=GFP_ATOMIC
get_zeroed_page Z
get_zeroed_page Zd gfp=GFP_DMA
alloc_pages_exact X size=20000
summary
";
    let run = run_script(script, &[]);
    assert_eq!(run.err, "");
    assert_eq!(run.code, Some(0));
    let results: Vec<&str> = run
        .out
        .lines()
        .filter(|line| line.contains("pfn="))
        .collect();
    let names = ["A", "Big", "Dma", "Mov", "At", "Z", "Zd", "X"];
    assert_eq!(results.len(), names.len(), "{}", run.out);
    for (line, name) in results.iter().zip(names) {
        assert!(line.starts_with(&format!("{name}: pfn=")), "{line}");
        let pfn: usize = field(line, "pfn").unwrap().parse().unwrap();
        let zone = field(line, "zone").unwrap();
        assert!(["DMA", "DMA32"].contains(&zone), "{line}");
        // ZONE_DMA is the first 16 MiB: frames below 4096.
        assert_eq!(zone == "DMA", pfn < 4096, "{line}");
        if name == "X" {
            // 20000 bytes are 5 pages.
            assert_eq!(field(line, "pages"), Some("5"), "{line}");
        } else {
            let order: u32 = field(line, "order").unwrap().parse().unwrap();
            assert_eq!(
                pfn % (1 << order),
                0,
                "blocks are aligned to their order: {line}"
            );
        }
    }
    for line in lines_starting(&run.out, "Dma:")
        .iter()
        .chain(&lines_starting(&run.out, "Zd:"))
    {
        assert_eq!(field(line, "zone"), Some("DMA"), "{line}");
    }
    assert_eq!(
        field(lines_starting(&run.out, "Big:")[0], "order"),
        Some("5")
    );
}

#[test]
fn an_unknown_gfp_name_stops_the_script() {
    let script = "boot pages=16\nalloc_pages A order=0\nalloc_pages B order=0 gfp=GFP_BOGUS\nalloc_pages C order=0\n";
    let run = run_script(script, &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.err.starts_with("error: line 3: "), "{}", run.err);
    assert!(run.err.contains("GFP_BOGUS"), "{}", run.err);
    assert_eq!(run.err.lines().count(), 1);
    assert_eq!(lines_starting(&run.out, "A:").len(), 1);
    assert!(
        lines_starting(&run.out, "C:").is_empty(),
        "the script went on: {}",
        run.out
    );
}

#[test]
fn keep_going_runs_the_rest_and_exits_1() {
    let script = "boot pages=16\nalloc_pages A order=0 gfp=NOT_A_GFP\nkcalloc B 100\nalloc_pages C order=0\nfrobnicate\n";
    let run = run_script(script, &["--keep-going"]);
    assert_eq!(run.code, Some(1));
    let errors: Vec<&str> = run.err.lines().collect();
    assert_eq!(errors.len(), 3, "{}", run.err);
    assert!(errors[0].starts_with("error: line 2: "), "{}", errors[0]);
    assert_eq!(errors[1], "error: line 3: 'kcalloc' is not available yet");
    assert_eq!(
        errors[2],
        "error: line 5: unknown command 'frobnicate' (try 'help')"
    );
    assert!(lines_starting(&run.out, "A:").is_empty());
    assert_eq!(lines_starting(&run.out, "C:").len(), 1);
}

#[test]
fn a_double_free_is_refused_and_changes_nothing() {
    let script = "\
boot pages=16 free=0-3
alloc_pages A order=0
alloc_pages B order=0
free_pages A
cat /proc/buddyinfo
free_pages pfn=0 order=0
cat /proc/buddyinfo
free_pages A
cat /proc/buddyinfo
";
    let run = run_script(script, &["--keep-going"]);
    assert_eq!(run.code, Some(1));
    let errors: Vec<&str> = run.err.lines().collect();
    assert_eq!(errors.len(), 2, "{}", run.err);
    assert!(errors[0].starts_with("error: line 6: "), "{}", errors[0]);
    assert_eq!(errors[1], "error: line 8: no live allocation named 'A'");
    let buddyinfo = lines_starting(&run.out, "Node 0, zone");
    assert_eq!(buddyinfo.len(), 3);
    assert_eq!(buddyinfo[0], buddyinfo[1]);
    assert_eq!(buddyinfo[0], buddyinfo[2]);
}

#[test]
fn names_are_unique_while_live() {
    let script = "\
boot pages=16
alloc_pages A order=1
alloc_pages A order=0
free_pages A
alloc_pages A order=0
alloc_pages_exact E size=8192
free_pages E
free_pages_exact A
free_pages_exact E
alloc_pages E order=0
";
    let run = run_script(script, &["--keep-going"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.err,
        "error: line 3: name 'A' is in use: free it first or choose another name\n\
         error: line 7: 'E' came from alloc_pages_exact: free it with free_pages_exact\n\
         error: line 8: 'A' came from alloc_pages: free it with free_pages\n"
    );
    assert_eq!(lines_starting(&run.out, "A:").len(), 2);
    assert_eq!(lines_starting(&run.out, "E:").len(), 2);
}

#[test]
fn commands_need_a_machine() {
    let run = run_script("# nothing booted\ncat /proc/buddyinfo\n", &[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.err.starts_with("error: line 2: no machine yet"),
        "{}",
        run.err
    );
}

#[test]
fn bad_values_and_unknown_files_are_errors() {
    let script = "boot pages=16\nalloc_pages A order=x\ncat /proc/nonsense\ncpu 99\nalloc_pages B order=11\nboot mem=64M pages=3\n";
    let run = run_script(script, &["--keep-going"]);
    assert_eq!(run.code, Some(1));
    let errors: Vec<&str> = run.err.lines().collect();
    assert_eq!(errors.len(), 5, "{}", run.err);
    assert_eq!(
        errors[0],
        "error: line 2: bad value 'x' for order=: expected a number"
    );
    assert_eq!(errors[1], "error: line 3: no such file: /proc/nonsense");
    assert!(errors[2].starts_with("error: line 4: "));
    assert!(errors[3].starts_with("error: line 5: "));
    assert_eq!(
        errors[4],
        "error: line 6: 'boot': mem= and pages= exclude each other"
    );
}

#[test]
fn booting_again_replaces_the_machine() {
    let run = run_script(
        "boot pages=16\nalloc_pages A order=0\nboot pages=8\nalloc_pages A order=0\nsummary\n",
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.err);
    let boots = lines_starting(&run.out, "boot:");
    assert_eq!(boots.len(), 2);
    assert_eq!(field(boots[1], "pages"), Some("8"));
    let summary = lines_starting(&run.out, "summary:")[0];
    assert_eq!(field(summary, "pages"), Some("8"));
    assert_eq!(field(summary, "allocated"), Some("1"));
}

#[test]
fn the_repl_reports_errors_and_goes_on() {
    let run = kmm_sim(
        &["repl"],
        "boot pages=16\nalloc_pages A order=9\nalloc_pages B order=0\nquit\nalloc_pages C order=0\n",
    );
    assert_eq!(run.code, Some(1));
    assert!(run.err.starts_with("error: line 2: "), "{}", run.err);
    assert!(!run.out.contains("kmm>"), "no prompt without a terminal");
    assert_eq!(lines_starting(&run.out, "B:").len(), 1);
    assert!(
        lines_starting(&run.out, "C:").is_empty(),
        "quit ends the session"
    );
}

#[test]
fn picture_flag_writes_an_svg() {
    let dir = TempDir::new("picture");
    let script = dir.0.join("s.kmm");
    std::fs::write(
        &script,
        "boot pages=16 free=5,10,12-15\nalloc_pages A order=1\n",
    )
    .unwrap();
    let run = kmm_sim_in(&dir.0, &["run", "s.kmm", "--picture", "toy.svg"], "");
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert!(
        run.out
            .contains("wrote picture toy.svg: 16 frames, 16 cells of 1 frame"),
        "{}",
        run.out
    );
    let svg = std::fs::read_to_string(dir.0.join("toy.svg")).unwrap();
    assert!(svg.starts_with("<svg "));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches(r#"<rect class="cell allocated""#).count(), 2);
    assert!(svg.contains("Normal: pfn 0–15"));
}

#[test]
fn the_demo_runs_and_draws_its_picture() {
    let dir = TempDir::new("demo");
    let run = kmm_sim_in(&dir.0, &[], "");
    assert_eq!(run.err, "");
    assert_eq!(run.code, Some(0));
    assert!(
        run.out.contains("wrote picture kmm-demo.svg"),
        "{}",
        run.out
    );
    let svg = std::fs::read_to_string(dir.0.join("kmm-demo.svg")).unwrap();
    assert!(svg.contains("DMA32: pfn"));
    // The second machine is 32-bit, with HighMem, and GFP_HIGHUSER lands there.
    assert_eq!(
        field(lines_starting(&run.out, "U:")[0], "zone"),
        Some("HighMem")
    );
    assert!(
        run.out.contains("HighTotal:"),
        "meminfo of the HighMem machine"
    );
    assert_eq!(lines_starting(&run.out, "summary:").len(), 2);
    assert!(
        run.out
            .contains("Free pages count per migrate type at order")
    );
}

#[test]
fn version_and_help_work() {
    let run = kmm_sim(&["--version"], "");
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.out.trim(),
        format!("kmm-sim {}", env!("CARGO_PKG_VERSION"))
    );
    let run = kmm_sim(&["--help"], "");
    assert_eq!(run.code, Some(0));
    for word in ["run", "repl", "demo"] {
        assert!(run.out.contains(word), "{word}: {}", run.out);
    }
    let run = kmm_sim(&["run", "/no/such/script.kmm"], "");
    assert_eq!(run.code, Some(1));
    assert!(
        run.err
            .starts_with("error: cannot read /no/such/script.kmm"),
        "{}",
        run.err
    );
}
