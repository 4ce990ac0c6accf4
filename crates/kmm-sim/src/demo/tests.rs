//! Unit tests of the demo script's shape (running it is an integration test).

use super::*;
use crate::script::{ArchArg, Command, MemoryArg, parse_line};

/// The demo's commands, in order; every line must parse.
fn commands() -> Vec<Command> {
    SCRIPT
        .lines()
        .enumerate()
        .filter_map(|(index, line)| match parse_line(line) {
            Ok(command) => command,
            Err(error) => panic!("demo line {}: {error}", index + 1),
        })
        .collect()
}

#[test]
fn the_demo_parses_and_boots_both_machines() {
    let boots: Vec<_> = commands()
        .into_iter()
        .filter_map(|command| match command {
            Command::Boot(args) => Some((args.arch, args.memory, args.cpus)),
            _ => None,
        })
        .collect();
    assert_eq!(
        boots,
        [
            (Some(ArchArg::X86_64), MemoryArg::Size(64 << 20), Some(2)),
            (Some(ArchArg::X86_32), MemoryArg::Size(2 << 30), Some(2)),
        ]
    );
}

#[test]
fn the_demo_shows_every_proc_file_a_picture_and_summaries() {
    let commands = commands();
    for file in [
        "/proc/buddyinfo",
        "/proc/pagetypeinfo",
        "/proc/zoneinfo",
        "/proc/meminfo",
        "/proc/vmallocinfo",
        "/proc/slabinfo",
    ] {
        assert!(commands.contains(&Command::Cat(file.to_owned())), "{file}");
    }
    assert!(commands.contains(&Command::Picture("kmm-demo.svg".into())));
    assert!(commands.contains(&Command::Drain));
    assert_eq!(commands.last(), Some(&Command::Summary));
    for gfp in [
        "GFP_KERNEL",
        "GFP_DMA",
        "GFP_ATOMIC",
        "GFP_HIGHUSER_MOVABLE",
        "GFP_HIGHUSER",
    ] {
        let used = commands.iter().any(
            |command| matches!(command, Command::AllocPages { gfp: Some(text), .. } if text == gfp),
        );
        assert!(used, "{gfp}");
    }
}
