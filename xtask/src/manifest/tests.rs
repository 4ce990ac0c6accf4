//! Tests for the line-based manifest reader.

use super::{entries, inline_table, replace_string_value, sections, string_array, string_value};

const MANIFEST: &str = r#"# A comment line.
[workspace]
resolver = "3"
members = [
    "crates/*", # Every crate.
    "xtask",
]

[workspace.package]
version = "0.1.0"
description = """
Two
lines"""

[workspace.dependencies]
"kmm-gfp" = { path = "crates/kmm-gfp", version = "0.1.0" }
hash = { version = "1", features = ["a#b"] } # The `#` inside the string is not a comment.

[[bench]]
name = "b"
"#;

#[test]
fn reads_sections_and_entries() {
    assert_eq!(
        sections(MANIFEST),
        [
            "workspace",
            "workspace.package",
            "workspace.dependencies",
            "bench"
        ]
    );
    let entries = entries(MANIFEST);
    let summary: Vec<(&str, &str, usize)> = entries
        .iter()
        .map(|e| (e.section.as_str(), e.key.as_str(), e.line))
        .collect();
    assert_eq!(
        summary,
        [
            ("workspace", "resolver", 2),
            ("workspace", "members", 3),
            ("workspace.package", "version", 9),
            ("workspace.package", "description", 10),
            ("workspace.dependencies", "kmm-gfp", 15),
            ("workspace.dependencies", "hash", 16),
            ("bench", "name", 19),
        ]
    );
    assert_eq!(
        string_array(&entries[1].value),
        Some(vec!["crates/*".to_owned(), "xtask".to_owned()])
    );
    assert_eq!(entries[3].value, "\"\"\" Two lines\"\"\"");
    assert_eq!(
        entries[5].value,
        "{ version = \"1\", features = [\"a#b\"] }"
    );
}

#[test]
fn inline_tables_and_strings() {
    let fields =
        inline_table(r#"{ path = "a", version = "=0.1.0", features = ["x", "y"] }"#).unwrap();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["path", "version", "features"]);
    assert_eq!(string_value(&fields[1].1), Some("=0.1.0"));
    assert_eq!(inline_table("{}"), Some(Vec::new()));
    assert_eq!(inline_table("\"1.0\""), None);
    assert_eq!(string_value("'literal'"), Some("literal"));
    assert_eq!(string_value("true"), None);
    assert_eq!(string_array("[]"), Some(Vec::new()));
    assert_eq!(string_array("[1, 2]"), None);
}

#[test]
fn replaces_string_values() {
    let check = |line: &str, key: &str, expected: Option<&str>| {
        assert_eq!(
            replace_string_value(line, key, "0.2.0").as_deref(),
            expected,
            "{line}"
        );
    };
    check(
        r#"version = "0.1.0""#,
        "version",
        Some(r#"version = "0.2.0""#),
    );
    check(
        r#"version="0.1.0" # Comment."#,
        "version",
        Some(r#"version="0.2.0" # Comment."#),
    );
    check(
        r#"kmm = { path = "crates/kmm", version = "=0.1.0", default-features = false }"#,
        "version",
        Some(r#"kmm = { path = "crates/kmm", version = "=0.2.0", default-features = false }"#),
    );
    // Keys that merely end in or start with `version` are left alone.
    check(r#"rust-version = "1.88""#, "version", None);
    check("version.workspace = true", "version", None);
    check(
        r#"x = { path = "p", rust-version = "1", version = "0.1.0" }"#,
        "version",
        Some(r#"x = { path = "p", rust-version = "1", version = "0.2.0" }"#),
    );
}
