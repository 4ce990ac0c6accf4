//! `cargo xtask tidy`: house-style checks that neither rustfmt nor clippy make.
//!
//! Each check is a pure function from file contents to a list of problems, so the unit tests can
//! show that every check fires; `run` applies them to the workspace and reports all problems at once.
//! The same entry point runs as the `tidy` test, so `cargo test` fails on a violation.
//!
//! The checks:
//! - every `.rs` file under `crates/`, `xtask/` and `benches/` opens with a `//!` paragraph, or with
//!   `#![doc = include_str!(…)]` that pulls the docs from a README;
//! - no `.rs` file uses the should-panic or ignore test attributes (rule 17: assert the known-wrong
//!   behaviour and leave a FIXME instead);
//! - no `.rs`, `.md` or `.toml` file has trailing whitespace;
//! - every sibling in the root `[workspace.dependencies]` has both `path` and `version`, and no
//!   member's dev-dependency on a sibling by `path` carries a `version` (rule 4);
//! - every crate under `crates/` opts into lints, and every workspace member is either
//!   `publish = false` or carries the metadata crates.io shows (rule 21);
//! - `CHANGELOG.md` starts its sections with `## [Unreleased]` (rule 20).

#[cfg(test)]
mod tests;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

use crate::manifest::{self, Entry};

/// Directories whose `.rs` files must open with crate or module docs.
const DOC_HEADER_ROOTS: &[&str] = &["crates", "xtask", "benches"];

/// Directories never scanned: build output and git's own files.
const SKIPPED_DIRS: &[&str] = &["target", ".git"];

/// Package metadata every published crate needs; each may also be inherited with `.workspace`.
const PUBLISH_METADATA: &[&str] = &[
    "description",
    "license",
    "repository",
    "readme",
    "keywords",
    "categories",
];

/// The attribute openings tidy bans, built with `concat!` so this file does not contain them.
const BANNED_ATTRIBUTES: &[&str] = &[concat!("#[", "should_panic"), concat!("#[", "ignore")];

/// Runs every check on the workspace at `root` and fails with the list of problems.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let problems = check_workspace(root)?;
    if problems.is_empty() {
        println!("tidy: ok");
        return Ok(());
    }
    bail!(
        "tidy found {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    )
}

/// Applies every check to the workspace at `root` and returns the problems, each prefixed with
/// its file.
fn check_workspace(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut report = |path: &Path, found: Vec<String>| {
        let shown = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        problems.extend(found.into_iter().map(|p| format!("{shown}: {p}")));
    };

    let mut files = Vec::new();
    collect_files(root, &mut files)?;
    for path in &files {
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !matches!(ext, "rs" | "md" | "toml") {
            continue;
        }
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        report(path, check_trailing_whitespace(&text));
        if ext == "rs" {
            report(path, check_banned_attributes(&text));
            let relative = path.strip_prefix(root).unwrap_or(path);
            if DOC_HEADER_ROOTS.iter().any(|dir| relative.starts_with(dir)) {
                report(path, check_doc_header(&text).into_iter().collect());
            }
        }
    }

    let root_manifest_path = root.join("Cargo.toml");
    let root_manifest = read(&root_manifest_path)?;
    report(
        &root_manifest_path,
        check_workspace_dependencies(&root_manifest),
    );

    for member in workspace_members(root, &root_manifest)? {
        let manifest_path = member.join("Cargo.toml");
        let text = read(&manifest_path)?;
        let under_crates = member
            .strip_prefix(root)
            .is_ok_and(|m| m.starts_with("crates"));
        let mut found = check_member_manifest(&text, under_crates);
        found.extend(check_readme_exists(&member, &text));
        report(&manifest_path, found);
    }

    let changelog_path = root.join("CHANGELOG.md");
    match fs::read_to_string(&changelog_path) {
        Ok(text) => report(&changelog_path, check_changelog(&text)),
        Err(_) => report(&changelog_path, vec!["missing".to_owned()]),
    }
    Ok(problems)
}

fn read(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Collects every file under `dir`, skipping `SKIPPED_DIRS` and not following symlinks.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let file_type = entry.file_type()?;
        let path = entry.path();
        if file_type.is_dir() {
            if !SKIPPED_DIRS.iter().any(|s| entry.file_name() == *s) {
                collect_files(&path, out)?;
            }
        } else if file_type.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Expands the root manifest's `workspace.members` (plain paths and `dir/*` globs) into member
/// directories that contain a `Cargo.toml`.
pub(crate) fn workspace_members(root: &Path, root_manifest: &str) -> anyhow::Result<Vec<PathBuf>> {
    let entries = manifest::entries(root_manifest);
    let members = manifest::in_section(&entries, "workspace")
        .find(|e| e.key == "members")
        .and_then(|e| manifest::string_array(&e.value))
        .context("the root Cargo.toml has no `workspace.members` array")?;
    let mut dirs = Vec::new();
    for member in members {
        let member = member.trim_end_matches('/');
        if let Some(parent) = member.strip_suffix("/*") {
            let mut found = Vec::new();
            for entry in
                fs::read_dir(root.join(parent)).with_context(|| format!("listing {parent}"))?
            {
                let path = entry?.path();
                if path.join("Cargo.toml").is_file() {
                    found.push(path);
                }
            }
            found.sort();
            dirs.extend(found);
        } else if member.contains('*') {
            bail!("unsupported glob in workspace.members: {member}");
        } else {
            dirs.push(root.join(member));
        }
    }
    Ok(dirs)
}

/// Checks that the first non-blank line is a `//!` doc comment or a README include.
fn check_doc_header(text: &str) -> Option<String> {
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(line) if line.starts_with("//!") || line.starts_with("#![doc = include_str!(") => None,
        _ => Some("does not start with a `//!` doc comment".to_owned()),
    }
}

/// Finds the banned test attributes, ignoring comment lines.
fn check_banned_attributes(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        for needle in BANNED_ATTRIBUTES {
            let hit = trimmed.match_indices(needle).any(|(at, _)| {
                // The attribute name must end here: `]`, `(`, ` ` or `=` follows.
                matches!(
                    trimmed[at + needle.len()..].chars().next(),
                    Some(']' | '(' | ' ' | '=')
                )
            });
            if hit {
                problems.push(format!(
                    "line {}: `{needle}]` is not allowed (house style rule 17)",
                    index + 1
                ));
            }
        }
    }
    problems
}

/// Finds lines that end in spaces or tabs.
fn check_trailing_whitespace(text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.ends_with([' ', '\t']))
        .map(|(index, _)| format!("line {}: trailing whitespace", index + 1))
        .collect()
}

/// Checks that every `path` dependency in `[workspace.dependencies]` also has a `version`.
fn check_workspace_dependencies(root_manifest: &str) -> Vec<String> {
    let entries = manifest::entries(root_manifest);
    let mut problems = Vec::new();
    for (name, fields) in dependency_tables(&entries, "workspace.dependencies") {
        let has = |key: &str| fields.iter().any(|(k, _)| k == key);
        if has("path") && !has("version") {
            problems.push(format!(
                "workspace dependency `{name}` has a `path` but no `version` (house style rule 4)"
            ));
        }
    }
    problems
}

/// Checks one member manifest: lints (for crates under `crates/`), publish metadata, and
/// dev-dependencies on siblings without a version.
fn check_member_manifest(text: &str, under_crates: bool) -> Vec<String> {
    let entries = manifest::entries(text);
    let package: Vec<&Entry> = manifest::in_section(&entries, "package").collect();
    let name = package
        .iter()
        .find(|e| e.key == "name")
        .and_then(|e| manifest::string_value(&e.value))
        .unwrap_or("<unnamed>");
    let mut problems = Vec::new();

    if under_crates {
        let workspace_lints = manifest::in_section(&entries, "lints")
            .any(|e| e.key == "workspace" && e.value == "true");
        let own_lints = manifest::sections(text)
            .iter()
            .any(|s| s.starts_with("lints."));
        if !workspace_lints && !own_lints {
            problems.push(format!(
                "`{name}` has neither `[lints] workspace = true` nor its own `[lints.*]` tables (house style rule 9)"
            ));
        }
    }

    let unpublished = package
        .iter()
        .any(|e| e.key == "publish" && e.value == "false");
    if !unpublished {
        for field in PUBLISH_METADATA {
            if !package.iter().any(|e| e.sets(field)) {
                problems.push(format!(
                    "`{name}` is published but lacks `{field}`; add it or set `publish = false` (house style rule 21)"
                ));
            }
        }
    }

    let dev_sections = manifest::sections(text);
    for section in dev_sections
        .iter()
        .filter(|s| *s == "dev-dependencies" || s.ends_with(".dev-dependencies"))
    {
        for (dep, fields) in dependency_tables(&entries, section) {
            let has = |key: &str| fields.iter().any(|(k, _)| k == key);
            if has("path") && has("version") {
                problems.push(format!(
                    "dev-dependency `{dep}` is a path dependency with a `version`; drop the version (house style rule 4)"
                ));
            }
        }
    }
    problems
}

/// Checks that a `readme = "…"` file named by a manifest exists next to it.
fn check_readme_exists(member: &Path, text: &str) -> Vec<String> {
    let entries = manifest::entries(text);
    manifest::in_section(&entries, "package")
        .filter(|e| e.key == "readme")
        .filter_map(|e| manifest::string_value(&e.value))
        .filter(|readme| !member.join(readme).is_file())
        .map(|readme| format!("`readme = \"{readme}\"` names a file that does not exist"))
        .collect()
}

/// Checks that the first `## ` section of the changelog is `## [Unreleased]`.
fn check_changelog(text: &str) -> Vec<String> {
    let first_section = text
        .lines()
        .map(str::trim_end)
        .find(|l| l.starts_with("## "));
    match first_section {
        Some("## [Unreleased]") => Vec::new(),
        Some(other) => vec![format!(
            "the first section is `{other}`, not `## [Unreleased]` (house style rule 20)"
        )],
        None => vec!["has no `## [Unreleased]` section (house style rule 20)".to_owned()],
    }
}

/// Returns each dependency declared in `section`, in inline (`name = { … }`) or table
/// (`[section.name]`) form, with its fields.
/// A plain `name = "1.0"` dependency has no fields besides a `version`.
fn dependency_tables(entries: &[Entry], section: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for entry in entries {
        if entry.section == section {
            let fields = manifest::inline_table(&entry.value)
                .unwrap_or_else(|| vec![("version".to_owned(), entry.value.clone())]);
            out.push((entry.key.clone(), fields));
        } else if let Some(name) = entry
            .section
            .strip_prefix(section)
            .and_then(|s| s.strip_prefix('.'))
        {
            let name = manifest::string_value(name).unwrap_or(name).to_owned();
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some((_, fields)) => fields.push((entry.key.clone(), entry.value.clone())),
                None => out.push((name, vec![(entry.key.clone(), entry.value.clone())])),
            }
        }
    }
    out
}
