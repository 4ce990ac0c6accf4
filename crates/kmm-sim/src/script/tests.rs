//! Unit tests of the script parser: sizes, pfn lists, `key=value` arguments and errors.

use super::*;

/// Parses `line`, expecting a command.
fn parse(line: &str) -> Command {
    match parse_line(line) {
        Ok(Some(command)) => command,
        other => panic!("{line:?} parsed to {other:?}"),
    }
}

/// Parses `line`, expecting an error, and returns its message.
fn error(line: &str) -> String {
    match parse_line(line) {
        Err(error) => error.to_string(),
        other => panic!("{line:?} parsed to {other:?}, expected an error"),
    }
}

/// A toy boot with the given free ranges.
fn toy(pages: usize, free: &[(usize, usize)]) -> Command {
    let free = free
        .iter()
        .map(|&(first, last)| InclusiveRange { first, last })
        .collect();
    Command::Boot(BootArgs {
        memory: MemoryArg::Toy {
            pages,
            free: Some(free),
        },
        ..BootArgs::default()
    })
}

#[test]
fn sizes_take_binary_suffixes_and_plain_bytes() {
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("16K"), Ok(16 << 10));
    assert_eq!(parse_size("64M"), Ok(64 << 20));
    assert_eq!(parse_size("64MiB"), Ok(64 << 20));
    assert_eq!(parse_size("2G"), Ok(2 << 30));
    assert_eq!(parse_size("2g"), Ok(2 << 30));
    assert_eq!(parse_size("1T"), Ok(1 << 40));
    assert_eq!(parse_size("0"), Ok(0));
}

#[test]
fn bad_sizes_say_why() {
    assert!(parse_size("").unwrap_err().contains("expected a size"));
    assert!(parse_size("M").unwrap_err().contains("expected a size"));
    assert!(
        parse_size("64X")
            .unwrap_err()
            .contains("unknown size suffix 'X'")
    );
    assert!(parse_size("-1").unwrap_err().contains("expected a size"));
    assert!(
        parse_size("99999999999999999999")
            .unwrap_err()
            .contains("too large")
    );
    assert!(
        parse_size("17179869184G")
            .unwrap_err()
            .contains("too large")
    );
}

#[test]
fn numbers_are_decimal_or_hex() {
    assert_eq!(parse_number("12"), Ok(12));
    assert_eq!(parse_number("0x1f"), Ok(31));
    assert!(parse_number("").is_err());
    assert!(parse_number("+3").is_err());
    assert!(parse_number("1.5").is_err());
    assert!(parse_number("0x").is_err());
    assert_eq!(
        parse_number("99999999999999999999999"),
        Err("number too large".to_owned())
    );
}

#[test]
fn pfn_lists_hold_single_frames_and_inclusive_ranges() {
    let ranges = parse_pfn_list("5,10,12-15").unwrap();
    let expected = [(5, 5), (10, 10), (12, 15)];
    assert_eq!(ranges.len(), expected.len());
    for (range, (first, last)) in ranges.iter().zip(expected) {
        assert_eq!((range.first, range.last), (first, last));
    }
    assert_eq!(
        parse_pfn_list("7-7").unwrap(),
        [InclusiveRange { first: 7, last: 7 }]
    );
}

#[test]
fn bad_pfn_lists_say_why() {
    assert!(parse_pfn_list("").unwrap_err().contains("empty item"));
    assert!(parse_pfn_list("5,,6").unwrap_err().contains("empty item"));
    assert!(parse_pfn_list("5,").unwrap_err().contains("empty item"));
    assert!(
        parse_pfn_list("15-12")
            .unwrap_err()
            .contains("ends before it starts")
    );
    assert!(
        parse_pfn_list("1-")
            .unwrap_err()
            .contains("'1-': expected a number")
    );
    assert!(
        parse_pfn_list("a")
            .unwrap_err()
            .contains("expected a number")
    );
    assert!(
        parse_pfn_list("1-4,3")
            .unwrap_err()
            .contains("'3' overlaps '1-4'")
    );
}

#[test]
fn blank_lines_and_comments_are_no_commands() {
    assert_eq!(parse_line(""), Ok(None));
    assert_eq!(parse_line("   \t "), Ok(None));
    assert_eq!(parse_line("# boot mem=64M"), Ok(None));
    assert_eq!(parse_line("   # indented comment"), Ok(None));
}

#[test]
fn boot_reads_every_key() {
    let command = parse(
        "boot arch=x86_32 mem=2G cpus=4 pcp=off min_free_kbytes=1024 backing=none buddy=lazy # c",
    );
    let expected = BootArgs {
        memory: MemoryArg::Size(2 << 30),
        cpus: Some(4),
        arch: Some(ArchArg::X86_32),
        pcp: Some(false),
        min_free_kbytes: Some(1024),
        backing: Some(BackingArg::None),
        buddy: Some(BuddyArg::Lazy),
    };
    assert_eq!(command, Command::Boot(expected));
    assert_eq!(parse("boot"), Command::Boot(BootArgs::default()));
}

#[test]
fn boot_makes_toy_machines() {
    assert_eq!(
        parse("boot pages=16 free=5,10,12-15"),
        toy(16, &[(5, 5), (10, 10), (12, 15)])
    );
    assert_eq!(
        parse("boot pages=16"),
        Command::Boot(BootArgs {
            memory: MemoryArg::Toy {
                pages: 16,
                free: None
            },
            ..BootArgs::default()
        })
    );
}

#[test]
fn boot_refuses_inconsistent_memory() {
    assert_eq!(
        error("boot mem=64M pages=16"),
        "'boot': mem= and pages= exclude each other"
    );
    assert_eq!(error("boot free=1-3"), "'boot': free= needs pages=");
    assert_eq!(
        error("boot pages=16 free=12-16"),
        "bad value '12-16' for free=: the machine has frames 0-15 only"
    );
    assert_eq!(
        error("boot pages=0"),
        "bad value '0' for pages=: a machine needs at least one frame"
    );
    assert_eq!(
        error("boot arch=arm64"),
        "bad value 'arm64' for arch=: expected x86_64 or x86_32"
    );
    assert_eq!(
        error("boot pcp=yes"),
        "bad value 'yes' for pcp=: expected on or off"
    );
    assert_eq!(
        error("boot mem=64Q"),
        "bad value '64Q' for mem=: unknown size suffix 'Q' (use K, M, G or T)"
    );
}

#[test]
fn key_value_errors_name_the_key() {
    assert_eq!(
        error("boot memory=64M"),
        "'boot' has no key 'memory' (it takes: mem= pages= free= cpus= arch= pcp= \
         min_free_kbytes= backing= buddy=)"
    );
    assert_eq!(error("boot cpus=1 cpus=2"), "'cpus=' is given twice");
    assert_eq!(error("boot 64M"), "expected key=value, found '64M'");
    assert_eq!(error("alloc_pages A"), "'alloc_pages' needs order=");
    assert_eq!(
        error("alloc_pages A order=x"),
        "bad value 'x' for order=: expected a number"
    );
    assert_eq!(
        error("alloc_pages A order=1 size=3"),
        "'alloc_pages' has no key 'size' (it takes: order= gfp=)"
    );
}

#[test]
fn allocations_take_a_name_and_keys() {
    assert_eq!(
        parse("alloc_pages A order=1"),
        Command::AllocPages {
            name: "A".to_owned(),
            order: 1,
            gfp: None
        }
    );
    assert_eq!(
        parse("alloc_pages buf_2 gfp=GFP_KERNEL|__GFP_ZERO order=3"),
        Command::AllocPages {
            name: "buf_2".to_owned(),
            order: 3,
            gfp: Some("GFP_KERNEL|__GFP_ZERO".to_owned()),
        }
    );
    assert_eq!(
        parse("get_zeroed_page Z gfp=GFP_DMA"),
        Command::GetZeroedPage {
            name: "Z".to_owned(),
            gfp: Some("GFP_DMA".to_owned())
        }
    );
    assert_eq!(
        parse("alloc_pages_exact X size=20K"),
        Command::AllocPagesExact {
            name: "X".to_owned(),
            size: 20 << 10,
            gfp: None
        }
    );
    assert_eq!(
        parse("free_pages_exact X"),
        Command::FreePagesExact {
            name: "X".to_owned()
        }
    );
}

#[test]
fn names_are_identifiers() {
    assert_eq!(
        error("alloc_pages order=1"),
        "'alloc_pages' needs a name first, as in 'alloc_pages A ...'"
    );
    assert_eq!(
        error("get_zeroed_page"),
        "'get_zeroed_page' needs a name first, as in 'get_zeroed_page A ...'"
    );
    assert!(error("alloc_pages 1A order=1").starts_with("bad name '1A'"));
    assert!(error("alloc_pages a-b order=1").starts_with("bad name 'a-b'"));
    assert_eq!(
        error("free_pages_exact X size=3"),
        "'free_pages_exact' has no key 'size' (it takes: no keys)"
    );
}

#[test]
fn free_pages_takes_a_name_or_a_block() {
    assert_eq!(
        parse("free_pages A"),
        Command::FreePages(FreeTarget::Name("A".to_owned()))
    );
    assert_eq!(
        parse("free_pages pfn=12 order=1"),
        Command::FreePages(FreeTarget::Pfn { pfn: 12, order: 1 })
    );
    assert_eq!(
        parse("free_pages order=1 pfn=0x10"),
        Command::FreePages(FreeTarget::Pfn { pfn: 16, order: 1 })
    );
    assert_eq!(error("free_pages pfn=12"), "'free_pages' needs order=");
    assert_eq!(
        error("free_pages"),
        "'free_pages' needs a name, or pfn= and order="
    );
    assert_eq!(
        error("free_pages A order=1"),
        "'free_pages' has no key 'order' (it takes: no keys)"
    );
}

#[test]
fn simple_commands_take_their_positional_argument() {
    assert_eq!(parse("drain"), Command::Drain);
    assert_eq!(parse("summary"), Command::Summary);
    assert_eq!(parse("help"), Command::Help);
    assert_eq!(parse("cpu 1"), Command::Cpu(1));
    assert_eq!(
        parse("cat /proc/buddyinfo"),
        Command::Cat("/proc/buddyinfo".to_owned())
    );
    assert_eq!(
        parse("picture out/mem.svg"),
        Command::Picture(PathBuf::from("out/mem.svg"))
    );
    assert_eq!(error("drain now"), "'drain' does not take 'now'");
    assert_eq!(error("cpu"), "'cpu' needs a CPU number, as in 'cpu 1'");
    assert_eq!(
        error("cpu one"),
        "bad value 'one' for cpu=: expected a number"
    );
    assert_eq!(error("cat a b"), "'cat' does not take 'b'");
}

#[test]
fn later_commands_are_not_available_yet() {
    for word in ["kcalloc", "krealloc"] {
        assert_eq!(
            error(&format!("{word} B 100")),
            format!("'{word}' is not available yet")
        );
    }
    for word in ["kmap_local_page", "kunmap_local"] {
        assert_eq!(error(word), format!("'{word}' is not available yet"));
    }
}

#[test]
fn vmalloc_kmap_and_percpu_commands_parse() {
    let parse = |line: &str| parse_line(line).unwrap().unwrap();
    assert_eq!(
        parse("vmalloc E 40000"),
        Command::Vmalloc {
            name: "E".to_owned(),
            size: 40000,
            gfp: None,
            zero: false
        }
    );
    assert_eq!(
        parse("vzalloc E 64K gfp=GFP_KERNEL"),
        Command::Vmalloc {
            name: "E".to_owned(),
            size: 64 << 10,
            gfp: Some("GFP_KERNEL".to_owned()),
            zero: true
        }
    );
    assert_eq!(
        parse("vfree E"),
        Command::Vfree {
            name: "E".to_owned()
        }
    );
    assert_eq!(
        parse("kmap F A"),
        Command::Kmap {
            name: "F".to_owned(),
            page: "A".to_owned(),
            atomic: false
        }
    );
    assert_eq!(
        parse("kunmap_atomic G"),
        Command::Kunmap {
            name: "G".to_owned(),
            atomic: true
        }
    );
    assert_eq!(
        parse("alloc_percpu H size=8"),
        Command::AllocPercpu {
            name: "H".to_owned(),
            size: 8,
            align: 8
        }
    );
    assert_eq!(
        parse("free_percpu H"),
        Command::FreePercpu {
            name: "H".to_owned()
        }
    );
    assert_eq!(
        error("vmalloc E"),
        "'vmalloc' needs a size, as in 'vmalloc E 40000'"
    );
    assert_eq!(
        error("vmalloc E lots"),
        "bad value 'lots' for size=: expected a size such as 4096, 16K, 64M or 2G"
    );
    assert_eq!(
        error("kmap F"),
        "'kmap' needs the name of a page allocation, as in 'kmap F A'"
    );
    assert_eq!(error("kmap F A B"), "expected key=value, found 'B'");
    assert_eq!(error("alloc_percpu H"), "'alloc_percpu' needs size=");
}

#[test]
fn unknown_commands_are_named() {
    assert_eq!(
        error("allocate A order=1"),
        "unknown command 'allocate' (try 'help')"
    );
    assert_eq!(error("Boot mem=64M"), "unknown command 'Boot' (try 'help')");
}

#[test]
fn help_lists_every_command() {
    for word in [
        "boot",
        "alloc_pages",
        "free_pages",
        "get_zeroed_page",
        "alloc_pages_exact",
        "free_pages_exact",
        "drain",
        "cpu",
        "cat",
        "picture",
        "summary",
    ] {
        assert!(
            HELP.lines().any(|line| line.trim_start().starts_with(word)),
            "{word}"
        );
        assert!(
            !matches!(parse_line(word), Err(ParseError::UnknownCommand(_))),
            "{word}"
        );
    }
}

mod properties {
    //! Property tests: what the parser writes back reads the same.

    use proptest::prelude::*;

    use super::super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn sizes_round_trip(value in 0u64..1 << 20, unit in 0usize..4) {
            let (suffix, shift) = [("", 0), ("K", 10), ("M", 20), ("G", 30)][unit];
            prop_assert_eq!(parse_size(&format!("{value}{suffix}")), Ok(value << shift));
        }

        #[test]
        fn pfn_lists_round_trip(
            items in proptest::collection::vec((0usize..8, 0usize..4), 1..8)
        ) {
            // Build disjoint ranges left to right from (gap, length) pairs.
            let mut next = 0;
            let mut ranges = Vec::new();
            for (gap, length) in items {
                let first = next + gap;
                ranges.push(InclusiveRange { first, last: first + length });
                next = first + length + 1;
            }
            let text = ranges.iter().map(|range| format_range(*range)).collect::<Vec<_>>().join(",");
            prop_assert_eq!(parse_pfn_list(&text), Ok(ranges));
        }

        #[test]
        fn arbitrary_lines_never_panic(line in "\\PC{0,40}") {
            let _ = parse_line(&line);
        }
    }
}

#[test]
fn slab_commands_parse() {
    let parse = |line: &str| parse_line(line).unwrap().unwrap();
    assert_eq!(
        parse("kzalloc K 2K gfp=GFP_DMA"),
        Command::Kmalloc {
            name: "K".to_owned(),
            size: 2048,
            gfp: Some("GFP_DMA".to_owned()),
            zero: true,
        }
    );
    assert_eq!(
        parse("kvzalloc V 5M gfp=GFP_KERNEL"),
        Command::Kvmalloc {
            name: "V".to_owned(),
            size: 5 << 20,
            gfp: Some("GFP_KERNEL".to_owned()),
            zero: true,
        }
    );
    assert_eq!(
        parse("kvmalloc V 100"),
        Command::Kvmalloc {
            name: "V".to_owned(),
            size: 100,
            gfp: None,
            zero: false,
        }
    );
    assert_eq!(
        parse("kvfree V"),
        Command::Kvfree {
            name: "V".to_owned()
        }
    );
    assert!(parse_line("kvmalloc V").is_err());
    assert_eq!(
        parse(
            "kmem_cache_create inode_cache size=600 align=64 flags=SLAB_HWCACHE_ALIGN|SLAB_POISON"
        ),
        Command::KmemCacheCreate {
            cache: "inode_cache".to_owned(),
            size: 600,
            align: 64,
            flags: kmm::SlabFlags::HWCACHE_ALIGN | kmm::SlabFlags::POISON,
        }
    );
    assert_eq!(
        parse("kmem_cache_alloc O inode_cache"),
        Command::KmemCacheAlloc {
            name: "O".to_owned(),
            cache: "inode_cache".to_owned(),
        }
    );
    assert_eq!(
        parse("kmem_cache_destroy c"),
        Command::KmemCacheDestroy {
            cache: "c".to_owned()
        }
    );
    assert_eq!(
        error("kmem_cache_create c size=8 flags=SLAB_NOPE"),
        "bad value 'SLAB_NOPE' for flags=: unknown slab flag in \"SLAB_NOPE\""
    );
    assert_eq!(
        error("kmem_cache_alloc O"),
        "'kmem_cache_alloc' needs a cache, as in 'kmem_cache_alloc O inode_cache'"
    );
    assert_eq!(
        error("kmem_cache_shrink bad-name"),
        "bad name 'bad-name': a name starts with a letter or '_' and has only letters, digits and '_'"
    );
    assert_eq!(
        error("kmem_cache_frobnicate"),
        "unknown command 'kmem_cache_frobnicate' (try 'help')"
    );
}
