//! Tests for `tidy`: each check fires on a bad input and stays quiet on a good one, and the
//! workspace itself passes.

use super::{
    check_banned_attributes, check_changelog, check_doc_header, check_member_manifest,
    check_trailing_whitespace, check_workspace_dependencies,
};

/// Runs every check on this workspace, so `cargo test` fails on a house-style violation.
#[test]
fn tidy() -> anyhow::Result<()> {
    super::run(&crate::project_root())
}

const GOOD_CRATE: &str = r#"[package]
name = "kmm-good"
description = "Good."
readme = "README.md"
keywords = ["a"]
categories = ["b"]
version.workspace = true
license.workspace = true
repository.workspace = true

[dependencies]
kmm-gfp.workspace = true

[dev-dependencies]
kmm-page = { path = "../kmm-page" }
proptest.workspace = true

[lints]
workspace = true
"#;

#[test]
fn doc_header() {
    assert_eq!(check_doc_header("//! Docs.\nfn f() {}\n"), None);
    assert_eq!(check_doc_header("\n\n//! Docs after blank lines.\n"), None);
    assert_eq!(
        check_doc_header("#![doc = include_str!(\"../README.md\")]\n#![no_std]\n"),
        None
    );
    assert!(check_doc_header("// A plain comment.\n//! Docs.\n").is_some());
    assert!(check_doc_header("#![no_std]\n//! Docs.\n").is_some());
    assert!(check_doc_header("#![doc = \"inline\"]\n").is_some());
    assert!(check_doc_header("").is_some());
}

#[test]
fn banned_attributes() {
    let should_panic = concat!("#[", "should_panic", "]");
    let should_panic_expected = concat!("#[", "should_panic", "(expected = \"x\")]");
    let ignore = concat!("#[", "ignore", "]");
    let ignore_reason = concat!("#[", "ignore", " = \"slow\"]");
    for attribute in [should_panic, should_panic_expected, ignore, ignore_reason] {
        let text = format!("//! Docs.\n\n#[test]\n    {attribute}\nfn t() {{}}\n");
        let problems = check_banned_attributes(&text);
        assert_eq!(problems.len(), 1, "{attribute}: {problems:?}");
        assert!(problems[0].starts_with("line 4:"), "{problems:?}");
    }
    // Mentions in comments, and attributes that merely share a prefix, are fine.
    let mention = format!("//! Never use `{should_panic}`.\n// Nor `{ignore}`.\n");
    assert_eq!(check_banned_attributes(&mention), Vec::<String>::new());
    let prefix = concat!("#[", "ignored_by_nothing", "]\n");
    assert_eq!(check_banned_attributes(prefix), Vec::<String>::new());
}

#[test]
fn trailing_whitespace() {
    assert_eq!(check_trailing_whitespace("a\nb\n"), Vec::<String>::new());
    assert_eq!(
        check_trailing_whitespace("a \nb\n\tc\t\n"),
        vec!["line 1: trailing whitespace", "line 3: trailing whitespace"]
    );
    assert_eq!(
        check_trailing_whitespace("line  \r\n"),
        vec!["line 1: trailing whitespace"]
    );
}

#[test]
fn workspace_dependencies() {
    let good = r#"[workspace.dependencies]
kmm-gfp = { path = "crates/kmm-gfp", version = "0.1.0" }
kmm = { path = "crates/kmm", version = "0.1.0", default-features = false } # A comment.
bitflags = "2.6"
thiserror = { version = "2", default-features = false }

[workspace.dependencies.kmm-page]
path = "crates/kmm-page"
version = "0.1.0"
"#;
    assert_eq!(check_workspace_dependencies(good), Vec::<String>::new());

    let bad = r#"[workspace.dependencies]
kmm-gfp = { path = "crates/kmm-gfp" }

[workspace.dependencies.kmm-page]
path = "crates/kmm-page"
"#;
    let problems = check_workspace_dependencies(bad);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("`kmm-gfp`"));
    assert!(problems[1].contains("`kmm-page`"));
}

#[test]
fn member_manifest() {
    assert_eq!(
        check_member_manifest(GOOD_CRATE, true),
        Vec::<String>::new()
    );

    // A crate with its own lint tables is fine too.
    let own_lints = GOOD_CRATE.replace(
        "[lints]\nworkspace = true\n",
        "[lints.rust]\nmissing_docs = \"warn\"\n",
    );
    assert_eq!(
        check_member_manifest(&own_lints, true),
        Vec::<String>::new()
    );

    // No lints at all: flagged under `crates/`, not elsewhere.
    let no_lints = GOOD_CRATE.replace("[lints]\nworkspace = true\n", "");
    assert_eq!(check_member_manifest(&no_lints, true).len(), 1);
    assert_eq!(
        check_member_manifest(&no_lints, false),
        Vec::<String>::new()
    );

    // Missing metadata: one problem per field, unless the crate is unpublished.
    let bare = "[package]\nname = \"kmm-bare\"\nversion = \"0.1.0\"\n\n[lints]\nworkspace = true\n";
    let problems = check_member_manifest(bare, true);
    assert_eq!(problems.len(), 6, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.starts_with("`kmm-bare` is published but lacks"))
    );
    let unpublished = bare.replace(
        "version = \"0.1.0\"",
        "version = \"0.1.0\"\npublish = false",
    );
    assert_eq!(
        check_member_manifest(&unpublished, true),
        Vec::<String>::new()
    );

    // A path dev-dependency must not carry a version.
    let versioned_dev = GOOD_CRATE.replace(
        "kmm-page = { path = \"../kmm-page\" }",
        "kmm-page = { path = \"../kmm-page\", version = \"0.1.0\" }",
    );
    let problems = check_member_manifest(&versioned_dev, true);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("dev-dependency `kmm-page`"));
}

#[test]
fn changelog() {
    let good = "# Changelog\n\n## [Unreleased]\n\n### Added\n\n## [0.1.0] - 2025-01-01\n";
    assert_eq!(check_changelog(good), Vec::<String>::new());
    assert_eq!(
        check_changelog("# Changelog\n\n## [0.1.0] - 2025-01-01\n\n## [Unreleased]\n").len(),
        1
    );
    assert_eq!(check_changelog("# Changelog\n").len(), 1);
}
