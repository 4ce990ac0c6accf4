//! `GlobalKmalloc` as the global allocator: this test binary allocates
//! through kmalloc (the example's `#[global_allocator]` is compiled in), runs
//! the example's workload in-process, and runs the example binary when
//! `cargo test` has built it.

#![cfg(feature = "std")]

#[path = "../examples/global_kmalloc.rs"]
mod example;

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/global_kmalloc`, next to this test's `deps` directory.
fn example_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?.join("examples");
    let path = dir.join(format!("global_kmalloc{}", std::env::consts::EXE_SUFFIX));
    path.is_file().then_some(path)
}

#[test]
fn the_example_runs_on_kmalloc_in_process_and_as_a_binary() {
    let before = example::KMALLOC.stats();
    example::main();
    let after = example::KMALLOC.stats();
    assert!(after.kmallocs - before.kmallocs > 50_000, "{after:?}");
    assert_eq!(after.errors, 0);
    // A String made now is a kmalloc object of this machine.
    let text = String::from("kmalloc");
    let mm = example::KMALLOC.memory_manager().unwrap();
    let ptr = core::ptr::NonNull::new(text.as_ptr().cast_mut()).unwrap();
    assert_eq!(
        mm.slab().unwrap().cache_of(ptr).as_deref(),
        Some("kmalloc-8")
    );

    match example_binary() {
        Some(path) => {
            let output = Command::new(&path).output().unwrap();
            let stdout = String::from_utf8(output.stdout).unwrap();
            assert!(
                output.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(stdout.starts_with("global kmalloc: kmallocs="), "{stdout}");
            assert!(
                stdout.lines().next().unwrap().ends_with(" errors=0"),
                "{stdout}"
            );
            assert!(
                stdout.lines().any(|l| l.starts_with("kmalloc-")),
                "{stdout}"
            );
        }
        None => {
            println!("note: the example binary is not built; only the in-process run was checked")
        }
    }
}
