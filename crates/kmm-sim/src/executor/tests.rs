//! Unit tests of the executor: results, names, and unchanged state after every refused command.

use super::*;
use crate::script::parse_line;

/// Parses and runs `line` on `session`, returning what it printed or the error message.
fn run(session: &mut Session, line: &str) -> Result<String, String> {
    let command = parse_line(line)
        .map_err(|e| e.to_string())?
        .expect("a command");
    let mut out = Vec::new();
    session
        .execute(&command, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).expect("utf-8 output"))
}

/// Runs `line`, which must succeed.
fn ok(session: &mut Session, line: &str) -> String {
    run(session, line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// Everything a refused command must leave alone: the `/proc` files, the counters and the names.
fn state(session: &mut Session) -> String {
    let mut text = String::new();
    for file in [
        "/proc/buddyinfo",
        "/proc/pagetypeinfo",
        "/proc/zoneinfo",
        "/proc/meminfo",
        "/proc/vmallocinfo",
        "/proc/slabinfo",
    ] {
        text.push_str(&ok(session, &format!("cat {file}")));
    }
    text.push_str(&ok(session, "summary"));
    text.push_str(&format!("{:?}", names(session)));
    text
}

/// The live names and what they stand for.
fn names(session: &Session) -> Vec<(String, Allocation)> {
    match &session.machine {
        Some(AnyMachine::Eager(machine)) => machine.names.clone().into_iter().collect(),
        Some(AnyMachine::Lazy(machine)) => machine.names.clone().into_iter().collect(),
        None => Vec::new(),
    }
}

/// Checks the memory manager's own invariants.
fn check_invariants(session: &Session) {
    let result = match &session.machine {
        Some(AnyMachine::Eager(machine)) => machine.mm.check_invariants(),
        Some(AnyMachine::Lazy(machine)) => machine.mm.check_invariants(),
        None => Ok(()),
    };
    result.expect("invariants hold");
}

/// Runs `line`, expects it to fail with a message starting `expected`, and checks that the
/// state is exactly as before.
fn refused(session: &mut Session, line: &str, expected: &str) {
    let before = state(session);
    let error = run(session, line).expect_err(line);
    assert!(error.starts_with(expected), "{line}: {error}");
    assert_eq!(state(session), before, "{line} changed the state");
    check_invariants(session);
}

/// A toy machine of 16 frames, all free.
fn toy() -> Session {
    let mut session = Session::default();
    ok(&mut session, "boot pages=16 backing=none");
    session
}

#[test]
fn the_worked_example_allocates_at_frame_12() {
    let mut session = Session::default();
    let boot = ok(&mut session, "boot pages=16 free=5,10,12-15 buddy=eager");
    assert_eq!(
        boot,
        "boot: arch=x86_64 mem=64K pages=16 cpus=2 pcp=off buddy=eager backing=host zones=Normal[0-15]\n"
    );
    assert_eq!(
        ok(&mut session, "alloc_pages A order=1"),
        "A: pfn=12 order=1 zone=Normal\n"
    );
    assert_eq!(
        names(&session),
        [(
            "A".to_owned(),
            Allocation::Pages {
                pfn: Pfn(12),
                order: 1
            }
        )]
    );
    check_invariants(&session);
}

#[test]
fn commands_before_boot_fail() {
    let mut session = Session::default();
    assert_eq!(
        run(&mut session, "summary").unwrap_err(),
        "no machine yet: a script must boot first (e.g. 'boot mem=64M')"
    );
    assert!(ok(&mut session, "help").contains("alloc_pages NAME order=N"));
}

#[test]
fn a_failed_boot_keeps_the_old_machine() {
    let mut session = toy();
    ok(&mut session, "alloc_pages A order=2");
    refused(
        &mut session,
        "boot pages=16 cpus=0",
        "bad machine configuration",
    );
    assert_eq!(names(&session).len(), 1);
}

#[test]
fn a_new_boot_forgets_the_old_names() {
    let mut session = toy();
    ok(&mut session, "alloc_pages A order=2");
    ok(&mut session, "boot pages=8 backing=none");
    assert!(names(&session).is_empty());
    ok(&mut session, "alloc_pages A order=0");
}

#[test]
fn refused_allocations_change_nothing() {
    let mut session = toy();
    ok(&mut session, "alloc_pages A order=1");
    refused(&mut session, "alloc_pages A order=0", "name 'A' is in use");
    refused(&mut session, "get_zeroed_page A", "name 'A' is in use");
    refused(
        &mut session,
        "alloc_pages_exact A size=4096",
        "name 'A' is in use",
    );
    refused(
        &mut session,
        "alloc_pages B order=0 gfp=GFP_NOPE",
        "bad gfp 'GFP_NOPE'",
    );
    refused(
        &mut session,
        "alloc_pages B order=11",
        "order 11 is above MAX_PAGE_ORDER (10)",
    );
    // 14 frames are free, but not 16 in one block.
    refused(
        &mut session,
        "alloc_pages B order=4",
        "every allowed zone is below its min watermark",
    );
    refused(
        &mut session,
        "cpu 2",
        "cpu 2 does not exist (the machine has 2 CPUs)",
    );
    refused(
        &mut session,
        "cat /proc/slabinfo2",
        "no such file: /proc/slabinfo2",
    );
}

#[test]
fn refused_frees_change_nothing() {
    let mut session = toy();
    ok(&mut session, "alloc_pages A order=1");
    ok(&mut session, "alloc_pages_exact E size=12000");
    ok(&mut session, "alloc_pages B order=0");
    ok(&mut session, "free_pages B");
    refused(&mut session, "free_pages B", "no live allocation named 'B'");
    refused(
        &mut session,
        "free_pages_exact Nope",
        "no live allocation named 'Nope'",
    );
    refused(
        &mut session,
        "free_pages E",
        "'E' came from alloc_pages_exact",
    );
    refused(
        &mut session,
        "free_pages_exact A",
        "'A' came from alloc_pages",
    );
    let Some((_, Allocation::Pages { pfn, .. })) =
        names(&session).into_iter().find(|(n, _)| n == "A")
    else {
        panic!("A is live");
    };
    // The wrong order, and a double free by frame number.
    refused(
        &mut session,
        &format!("free_pages pfn={} order=0", pfn.0),
        &format!(
            "pfn {} was allocated with order 1, freed with order 0",
            pfn.0
        ),
    );
    ok(&mut session, "alloc_pages C order=0");
    let c = names(&session)
        .into_iter()
        .find(|(n, _)| n == "C")
        .unwrap()
        .1;
    let Allocation::Pages { pfn: c_pfn, .. } = c else {
        panic!("C is a page")
    };
    ok(&mut session, &format!("free_pages pfn={} order=0", c_pfn.0));
    refused(
        &mut session,
        &format!("free_pages pfn={} order=0", c_pfn.0),
        &format!("double free of pfn {}", c_pfn.0),
    );
}

#[test]
fn freeing_by_frame_number_releases_the_name() {
    let mut session = toy();
    let line = ok(&mut session, "alloc_pages A order=2");
    let pfn = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("pfn="))
        .unwrap()
        .to_owned();
    ok(&mut session, &format!("free_pages pfn={pfn} order=2"));
    assert!(names(&session).is_empty());
    ok(&mut session, "alloc_pages A order=0");
    check_invariants(&session);
}

#[test]
fn exact_allocations_report_pages() {
    let mut session = toy();
    let line = ok(&mut session, "alloc_pages_exact X size=20000");
    assert!(line.starts_with("X: pfn="), "{line}");
    assert!(line.ends_with(" pages=5 zone=Normal\n"), "{line}");
    let free_before = ok(&mut session, "summary");
    ok(&mut session, "free_pages_exact X");
    assert_ne!(ok(&mut session, "summary"), free_before);
    assert!(names(&session).is_empty());
    check_invariants(&session);
}

#[test]
fn get_zeroed_page_needs_memory_behind_the_frames() {
    let mut session = Session::default();
    ok(&mut session, "boot pages=16");
    let line = ok(&mut session, "get_zeroed_page Z");
    assert!(
        line.starts_with("Z: pfn=") && line.ends_with(" order=0 zone=Normal\n"),
        "{line}"
    );
    ok(&mut session, "free_pages Z");
    // Without memory behind the frames there is nothing to zero.
    let mut session = toy();
    refused(
        &mut session,
        "get_zeroed_page Z",
        "get_zeroed_page needs memory behind the frames; this machine booted with backing=none",
    );
}

#[test]
fn the_summary_names_the_backend_chosen_at_boot() {
    for buddy in ["eager", "lazy"] {
        let mut session = Session::default();
        let boot = ok(
            &mut session,
            &format!("boot pages=16 backing=none buddy={buddy}"),
        );
        assert!(boot.contains(&format!(" buddy={buddy} ")), "{boot}");
        ok(&mut session, "alloc_pages A order=0");
        ok(&mut session, "alloc_pages B order=0");
        ok(&mut session, "free_pages A");
        ok(&mut session, "free_pages B");
        ok(&mut session, "drain");
        let summary = ok(&mut session, "summary");
        assert!(
            summary.starts_with(&format!("summary: buddy={buddy} pages=16 free=16 ")),
            "{summary}"
        );
        // After a drain both backends hold one order-4 block.
        let buddyinfo = ok(&mut session, "cat /proc/buddyinfo");
        assert_eq!(
            buddyinfo.split_whitespace().nth(8),
            Some("1"),
            "{buddyinfo}"
        );
        check_invariants(&session);
    }
}

#[test]
fn boot_lines_list_the_zones() {
    let mut session = Session::default();
    let boot = ok(&mut session, "boot mem=64M backing=none buddy=eager");
    assert_eq!(
        boot,
        "boot: arch=x86_64 mem=64M pages=16384 cpus=2 pcp=on buddy=eager backing=none \
         zones=DMA[0-4095],DMA32[4096-16383]\n"
    );
}

#[test]
fn short_sizes_use_the_biggest_exact_unit() {
    assert_eq!(short_size(64 << 10), "64K");
    assert_eq!(short_size(64 << 20), "64M");
    assert_eq!(short_size(2 << 30), "2G");
    assert_eq!(short_size(1536 << 20), "1536M");
    assert_eq!(short_size(1 << 40), "1T");
    assert_eq!(short_size(4097), "4097");
    assert_eq!(short_size(0), "0");
}

#[test]
fn the_default_backend_is_the_one_the_features_chose() {
    let mut session = Session::default();
    let boot = ok(&mut session, "boot pages=16 backing=none");
    let name = <kmm::DefaultBuddy as kmm::BuddyBackend>::NAME;
    assert!(boot.contains(&format!(" buddy={name} ")), "{boot}");
}

#[test]
fn refused_vm_commands_change_nothing() {
    let mut session = Session::default();
    ok(&mut session, "boot arch=x86_32 mem=2G backing=none");
    ok(&mut session, "alloc_pages A order=0 gfp=GFP_HIGHUSER");
    ok(&mut session, "alloc_pages B order=0 gfp=GFP_HIGHUSER");
    let e = ok(&mut session, "vmalloc E 3");
    assert!(e.starts_with("E: addr=0xf88"), "{e}");
    assert!(e.ends_with(" size=4096 pages=1\n"), "{e}");
    let g = ok(&mut session, "kmap_atomic G A");
    let g2 = ok(&mut session, "kmap_atomic G2 B");
    ok(&mut session, "alloc_percpu H size=4");
    refused(&mut session, "kunmap_atomic G", "highmem: ");
    refused(
        &mut session,
        "kunmap G2",
        "'G2' came from kmap_atomic: free it with kunmap_atomic",
    );
    refused(&mut session, "vmalloc E 8K", "name 'E' is in use");
    refused(
        &mut session,
        "vmalloc X 8K gfp=GFP_NOPE",
        "bad gfp 'GFP_NOPE'",
    );
    refused(&mut session, "vmalloc X 4G", "vmalloc: ");
    refused(&mut session, "kmap F E", "'E' is not a page allocation");
    refused(
        &mut session,
        "alloc_percpu X size=40000",
        "percpu: illegal size",
    );
    refused(
        &mut session,
        "free_percpu E",
        "'E' came from vmalloc: free it with vfree",
    );
    refused(
        &mut session,
        "cpu 1",
        "cannot move to cpu 1: preemption is disabled",
    );
    assert_ne!(g, g2);
    ok(&mut session, "kunmap_atomic G2");
    ok(&mut session, "kunmap_atomic G");
    ok(&mut session, "cpu 1");
    ok(&mut session, "vfree E");
    refused(&mut session, "vfree E", "no live allocation named 'E'");
    ok(&mut session, "free_percpu H");
    check_invariants(&session);
}

/// A 64 MiB machine with memory behind its frames.
fn host() -> Session {
    let mut session = Session::default();
    ok(&mut session, "boot mem=64M backing=host");
    session
}

#[test]
fn kmalloc_names_its_size_class_or_its_order() {
    let mut session = host();
    let line = ok(&mut session, "kmalloc A 100");
    assert!(line.starts_with("A: addr=0x"), "{line}");
    assert!(line.ends_with(" cache=kmalloc-128\n"), "{line}");
    let line = ok(&mut session, "kzalloc Z 8193");
    assert!(line.ends_with(" order=2\n"), "{line}");
    assert!(ok(&mut session, "cat /proc/slabinfo").contains("\nkmalloc-128 "));
    ok(&mut session, "kfree A");
    ok(&mut session, "kfree Z");
    assert!(names(&session).is_empty());
    check_invariants(&session);
}

#[test]
fn kvmalloc_says_whether_kmalloc_or_vmalloc_served_it() {
    let mut session = host();
    let line = ok(&mut session, "kvmalloc A 100");
    assert!(
        line.starts_with("A: addr=0x") && line.ends_with(" cache=kmalloc-128\n"),
        "{line}"
    );
    let line = ok(&mut session, "kvmalloc B 9000");
    assert!(line.ends_with(" order=2\n"), "{line}");
    // Above KMALLOC_MAX_SIZE, vmalloc: its area in /proc/vmallocinfo.
    let line = ok(&mut session, "kvzalloc C 5M");
    assert!(
        line.starts_with("C: addr=0x") && line.ends_with(" vmalloc pages=1280\n"),
        "{line}"
    );
    let info = ok(&mut session, "cat /proc/vmallocinfo");
    assert!(
        info.contains(" 5246976 MemoryManager::kvmalloc pages=1280 vmalloc"),
        "{info}"
    );
    refused(&mut session, "kvmalloc C 10", "name 'C' is in use");
    refused(
        &mut session,
        "kfree C",
        "'C' came from kvmalloc: free it with kvfree",
    );
    refused(
        &mut session,
        "kvfree nobody",
        "no live allocation named 'nobody'",
    );
    ok(&mut session, "kmalloc K 64");
    refused(
        &mut session,
        "kvfree K",
        "'K' came from kmalloc: free it with kfree",
    );
    for name in ["A", "B", "C"] {
        ok(&mut session, &format!("kvfree {name}"));
    }
    ok(&mut session, "kfree K");
    assert!(names(&session).is_empty());
    assert!(!ok(&mut session, "cat /proc/vmallocinfo").contains("kvmalloc"));
    check_invariants(&session);
}

#[test]
fn slab_caches_run_from_create_to_destroy() {
    let mut session = host();
    assert_eq!(
        ok(
            &mut session,
            "kmem_cache_create obj size=192 flags=SLAB_HWCACHE_ALIGN"
        ),
        "obj: cache=obj objsize=192 objperslab=21 pagesperslab=1\n"
    );
    let line = ok(&mut session, "kmem_cache_alloc O obj");
    assert!(
        line.starts_with("O: addr=0x") && line.ends_with(" cache=obj\n"),
        "{line}"
    );
    refused(
        &mut session,
        "kmem_cache_destroy obj",
        "slab: cache obj still has 1 allocated objects",
    );
    ok(&mut session, "kmem_cache_free O");
    assert_eq!(
        ok(&mut session, "kmem_cache_shrink obj"),
        "obj: slabs=0 pages=0\n"
    );
    ok(&mut session, "kmem_cache_destroy obj");
    assert!(!ok(&mut session, "cat /proc/slabinfo").contains("obj "));
    check_invariants(&session);
}

#[test]
fn refused_slab_commands_change_nothing() {
    let mut session = host();
    ok(&mut session, "kmalloc A 64");
    ok(&mut session, "kmem_cache_create c size=32");
    ok(&mut session, "kmem_cache_alloc O c");
    ok(&mut session, "alloc_pages P order=0");
    refused(&mut session, "kmalloc A 64", "name 'A' is in use");
    refused(
        &mut session,
        "kmalloc B 64 gfp=GFP_NOPE",
        "bad gfp 'GFP_NOPE'",
    );
    refused(
        &mut session,
        "kmalloc B 5M",
        "slab: 5242880 bytes is above the largest allocation",
    );
    refused(
        &mut session,
        "kmem_cache_create c size=32",
        "cache 'c' exists",
    );
    refused(
        &mut session,
        "kmem_cache_create d size=32 align=3",
        "slab: invalid arguments",
    );
    refused(&mut session, "kmem_cache_alloc O c", "name 'O' is in use");
    refused(
        &mut session,
        "kmem_cache_alloc Q nosuch",
        "no cache named 'nosuch'",
    );
    refused(
        &mut session,
        "kfree O",
        "'O' came from kmem_cache_alloc: free it with kmem_cache_free",
    );
    refused(
        &mut session,
        "kmem_cache_free A",
        "'A' came from kmalloc: free it with kfree",
    );
    refused(
        &mut session,
        "kfree P",
        "'P' came from alloc_pages: free it with free_pages",
    );
    refused(
        &mut session,
        "kfree nobody",
        "no live allocation named 'nobody'",
    );
    refused(
        &mut session,
        "kmem_cache_shrink nosuch",
        "no cache named 'nosuch'",
    );
    refused(
        &mut session,
        "kmem_cache_destroy c",
        "slab: cache c still has 1 allocated objects",
    );
}

#[test]
fn slab_commands_need_memory_behind_the_frames() {
    let mut session = toy();
    refused(
        &mut session,
        "kmalloc A 64",
        "kmalloc needs memory behind the frames; this machine booted with backing=none",
    );
    refused(
        &mut session,
        "kzalloc A 64",
        "kzalloc needs memory behind the frames",
    );
    refused(
        &mut session,
        "kmem_cache_create c size=32",
        "kmem_cache_create needs memory behind the frames",
    );
    refused(&mut session, "kmem_cache_alloc A c", "no cache named 'c'");
}
