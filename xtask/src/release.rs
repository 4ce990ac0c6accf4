//! `cargo xtask release <major|minor|patch|X.Y.Z> [--dry-run]`: house style rules 23 and 24.
//!
//! 1. Refuse a dirty tree, a branch other than `main`, or an existing `vX.Y.Z` tag.
//! 2. From `cargo metadata --no-deps`, compute the publish set and its topological order; fail on a
//!    member that is neither publishable (with metadata, at the lockstep version) nor `publish = false`.
//! 3. Fail if `## [Unreleased]` has no entries, or an entry starts with an unknown crate.
//! 4. Bump `workspace.package.version` and the sibling versions in `[workspace.dependencies]`, then
//!    `cargo update --workspace`.
//! 5. Move `[Unreleased]` into a dated section and refresh the compare links.
//! 6. Run the CI gates (`ci::run`) and, when installed and a previous release exists, semver-checks.
//! 7. `cargo publish --workspace --dry-run`.
//! 8. Commit "Release X.Y.Z" with the manifest, lockfile and changelog only.
//! 9. `cargo publish --workspace`; if it fails partway, publish crate by crate in topological
//!    order, skipping versions that are already on the registry.
//! 10. Tag `vX.Y.Z` (annotated), push, and print the next steps.
//!
//! With `--dry-run`, steps 2–7 run in a temporary `git worktree` that is removed afterwards, so the
//! checkout stays byte-identical; steps 8–10 are printed instead of run.
//!
//! The pure parts (version arithmetic, manifest and changelog rewriting, metadata reading and
//! ordering) are separate functions with unit tests in `release/tests.rs`.

#[cfg(test)]
mod tests;

use core::fmt;
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail, ensure};
use xshell::{Shell, cmd};

use crate::{cargo, ci, json, manifest};

/// The only branch releases are cut from.
const RELEASE_BRANCH: &str = "main";

/// The files a release commit may change.
const RELEASE_FILES: &[&str] = &["Cargo.toml", "Cargo.lock", "CHANGELOG.md"];

/// Runs the release described in the module docs.
pub(crate) fn run(sh: &Shell, root: &Path, bump: &str, dry_run: bool) -> anyhow::Result<()> {
    let root_manifest =
        fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    let current = workspace_version(&root_manifest)?;
    let next = current.bump(bump)?;
    let tag = format!("v{next}");
    eprintln!(
        "release: {current} -> {next}{}",
        if dry_run { " (dry run)" } else { "" }
    );

    // Step 1.
    preflight(sh, &tag)?;

    if dry_run {
        let worktree = TempWorktree::create(root, &next)?;
        let work_sh = Shell::new()?;
        work_sh.change_dir(&worktree.path);
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            // Share one build cache between dry runs instead of rebuilding everything in a fresh
            // worktree; `target/` is ignored build output, not part of the checkout.
            work_sh.set_var(
                "CARGO_TARGET_DIR",
                root.join("target").join("release-dry-run"),
            );
        }
        let order = prepare(&work_sh, &worktree.path, &current, &next)?;
        eprintln!("\n==> release: changes a release commit would contain");
        cmd!(work_sh, "git --no-pager diff --stat").run()?;
        cmd!(work_sh, "git --no-pager diff -- Cargo.toml CHANGELOG.md").run()?;
        println!(
            "\nDry run of {next} succeeded; the checkout is unchanged. A real release would now run:"
        );
        for command in next_commands(&next, &order) {
            println!("    {command}");
        }
        return Ok(());
    }

    let order = prepare(sh, root, &current, &next)?;

    // Step 8.
    step("commit");
    let message = commit_message(&next);
    cmd!(sh, "git add {RELEASE_FILES...}").run()?;
    cmd!(sh, "git commit -m {message}").run()?;

    // Step 9.
    publish(sh, &order)?;

    // Step 10.
    step("tag and push");
    cmd!(sh, "git tag -a {tag} -m {message}").run()?;
    cmd!(sh, "git push --atomic origin {RELEASE_BRANCH} {tag}").run()?;
    println!("\nReleased {next}. Next steps:");
    println!("    - create a GitHub release for {tag} from its CHANGELOG.md section;");
    println!(
        "    - check that docs.rs built every crate: {}",
        order.join(", ")
    );
    Ok(())
}

/// Steps 2–7, run in `dir` (the checkout, or the dry run's worktree); returns the publish order.
fn prepare(
    sh: &Shell,
    dir: &Path,
    current: &Version,
    next: &Version,
) -> anyhow::Result<Vec<String>> {
    let cargo = cargo();

    // Step 2.
    step("publish set");
    let metadata = cmd!(sh, "{cargo} metadata --no-deps --format-version 1").read()?;
    let packages = packages_from_metadata(&metadata)?;
    let order = publish_order(&packages, current)?;
    eprintln!("publish order: {}", order.join(" -> "));

    // Step 3.
    step("changelog");
    let changelog_path = dir.join("CHANGELOG.md");
    let changelog = fs::read_to_string(&changelog_path).context("reading CHANGELOG.md")?;
    let known: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    check_unreleased(&changelog, &known)?;

    // Step 4.
    step("bump versions");
    let manifest_path = dir.join("Cargo.toml");
    let root_manifest = fs::read_to_string(&manifest_path)?;
    let repository = workspace_repository(&root_manifest)?;
    fs::write(
        &manifest_path,
        bump_manifest(&root_manifest, current, next)?,
    )?;
    cmd!(sh, "{cargo} update --workspace").run()?;

    // Step 5.
    let date = today();
    fs::write(
        &changelog_path,
        release_changelog(&changelog, next, &date, &repository)?,
    )?;

    let changed = cmd!(sh, "git status --porcelain").read()?;
    for line in changed.lines() {
        let file = line.get(3..).unwrap_or(line);
        ensure!(
            RELEASE_FILES.contains(&file),
            "the release touched an unexpected file: {line}"
        );
    }

    // Step 6.
    step("gates");
    ci::run(sh, dir)?;
    semver_checks(sh, previous_release(&changelog).is_some())?;

    // Step 7. The bump is not committed yet, so `--allow-dirty` is needed; the check above made
    // sure the only changes are the release files.
    step("cargo publish --workspace --dry-run");
    cmd!(sh, "{cargo} publish --workspace --dry-run --allow-dirty").run()?;
    Ok(order)
}

/// Step 1: refuses a dirty tree, the wrong branch, or an existing tag.
fn preflight(sh: &Shell, tag: &str) -> anyhow::Result<()> {
    step("preflight");
    cmd!(sh, "git rev-parse --verify --quiet HEAD")
        .quiet()
        .ignore_stdout()
        .run()
        .context("the repository has no commits yet")?;
    let status = cmd!(sh, "git status --porcelain").read()?;
    ensure!(
        status.is_empty(),
        "the working tree is dirty; commit or remove these first:\n{status}"
    );
    let branch = cmd!(sh, "git symbolic-ref --quiet --short HEAD")
        .read()
        .unwrap_or_default();
    ensure!(
        branch == RELEASE_BRANCH,
        "releases are cut from `{RELEASE_BRANCH}`, but HEAD is {}",
        if branch.is_empty() {
            "detached".to_owned()
        } else {
            format!("on `{branch}`")
        }
    );
    let existing = cmd!(sh, "git tag --list {tag}").read()?;
    ensure!(existing.is_empty(), "the tag {tag} already exists");
    Ok(())
}

/// Runs `cargo semver-checks` when it is installed and there is a released version to compare with.
fn semver_checks(sh: &Shell, has_previous_release: bool) -> anyhow::Result<()> {
    let cargo = cargo();
    if !has_previous_release {
        eprintln!("semver-checks: skipped, this is the first release");
        return Ok(());
    }
    let installed = cmd!(sh, "{cargo} semver-checks --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    if installed {
        cmd!(sh, "{cargo} semver-checks --workspace").run()?;
    } else {
        eprintln!(
            "semver-checks: skipped, `cargo semver-checks` is not installed (cargo install cargo-semver-checks)"
        );
    }
    Ok(())
}

/// Step 9: publishes the workspace, falling back to one crate at a time.
fn publish(sh: &Shell, order: &[String]) -> anyhow::Result<()> {
    let cargo = cargo();
    step("cargo publish --workspace");
    if cmd!(sh, "{cargo} publish --workspace").run().is_ok() {
        return Ok(());
    }
    // `cargo publish --workspace` is not atomic: publish what is left, in dependency order.
    eprintln!("cargo publish --workspace failed; publishing crate by crate");
    for krate in order {
        let output = cmd!(sh, "{cargo} publish -p {krate}")
            .ignore_status()
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprint!("{stderr}");
        if output.status.success() {
            continue;
        }
        if stderr.contains("already exists") || stderr.contains("already uploaded") {
            eprintln!("{krate}: this version is already published, skipping");
            continue;
        }
        bail!(
            "publishing {krate} failed; fix the cause and rerun `cargo publish -p` for the remaining crates"
        );
    }
    Ok(())
}

/// The commands a real release runs after the dry run's last step.
fn next_commands(next: &Version, order: &[String]) -> Vec<String> {
    let message = commit_message(next);
    vec![
        format!("git add {}", RELEASE_FILES.join(" ")),
        format!("git commit -m \"{message}\""),
        format!(
            "cargo publish --workspace    # fallback, in order: {}",
            order.join(", ")
        ),
        format!("git tag -a v{next} -m \"{message}\""),
        format!("git push --atomic origin {RELEASE_BRANCH} v{next}"),
    ]
}

fn commit_message(next: &Version) -> String {
    format!("Release {next}")
}

fn step(name: &str) {
    eprintln!("\n==> xtask release: {name}");
}

/// A `git worktree` in a temporary directory, removed on drop.
struct TempWorktree {
    repo: PathBuf,
    path: PathBuf,
}

impl TempWorktree {
    fn create(repo: &Path, next: &Version) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("kmm-release-{next}-{}", std::process::id()));
        let sh = Shell::new()?;
        sh.change_dir(repo);
        cmd!(sh, "git worktree add --quiet --detach {path} HEAD").run()?;
        Ok(TempWorktree {
            repo: repo.to_path_buf(),
            path,
        })
    }
}

impl Drop for TempWorktree {
    fn drop(&mut self) {
        let Ok(sh) = Shell::new() else {
            return;
        };
        sh.change_dir(&self.repo);
        let path = &self.path;
        if cmd!(sh, "git worktree remove --force {path}")
            .quiet()
            .run()
            .is_err()
        {
            eprintln!(
                "could not remove the worktree {}; run `git worktree prune`",
                path.display()
            );
        }
    }
}

/// A `MAJOR.MINOR.PATCH` version; pre-release and build suffixes are not used in this workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version {
    major: u64,
    minor: u64,
    patch: u64,
}

impl Version {
    /// Parses `X.Y.Z`.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            bail!("`{text}` is not a version of the form X.Y.Z");
        };
        let number = |part: &str| -> anyhow::Result<u64> {
            ensure!(
                !part.is_empty()
                    && part.bytes().all(|b| b.is_ascii_digit())
                    && (part == "0" || !part.starts_with('0')),
                "`{text}` is not a version of the form X.Y.Z"
            );
            Ok(part.parse()?)
        };
        Ok(Version {
            major: number(major)?,
            minor: number(minor)?,
            patch: number(patch)?,
        })
    }

    /// Returns the version after `self` for `major`, `minor`, `patch`, or an explicit `X.Y.Z`,
    /// which must be greater than `self`.
    pub(crate) fn bump(&self, how: &str) -> anyhow::Result<Self> {
        let Version {
            major,
            minor,
            patch,
        } = *self;
        let next = match how {
            "major" => Version {
                major: major + 1,
                minor: 0,
                patch: 0,
            },
            "minor" => Version {
                major,
                minor: minor + 1,
                patch: 0,
            },
            "patch" => Version {
                major,
                minor,
                patch: patch + 1,
            },
            explicit => {
                let next = Version::parse(explicit).with_context(|| {
                    format!("expected `major`, `minor`, `patch` or X.Y.Z, got `{explicit}`")
                })?;
                ensure!(
                    next > *self,
                    "{next} is not greater than the current version {self}"
                );
                next
            }
        };
        Ok(next)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Reads `workspace.package.version` from the root manifest.
fn workspace_version(root_manifest: &str) -> anyhow::Result<Version> {
    let entries = manifest::entries(root_manifest);
    let value = manifest::in_section(&entries, "workspace.package")
        .find(|e| e.key == "version")
        .and_then(|e| manifest::string_value(&e.value))
        .context("the root Cargo.toml has no `workspace.package.version`")?;
    Version::parse(value)
}

/// Reads `workspace.package.repository`, without a trailing `/` or `.git`.
fn workspace_repository(root_manifest: &str) -> anyhow::Result<String> {
    let entries = manifest::entries(root_manifest);
    let value = manifest::in_section(&entries, "workspace.package")
        .find(|e| e.key == "repository")
        .and_then(|e| manifest::string_value(&e.value))
        .context("the root Cargo.toml has no `workspace.package.repository`")?;
    let value = value.trim_end_matches('/');
    Ok(value.strip_suffix(".git").unwrap_or(value).to_owned())
}

/// Step 4 on the root manifest's text: sets `workspace.package.version` to `next` and every
/// `[workspace.dependencies]` entry that has both `path` and `version` to `next`.
///
/// Fails if the workspace version or a sibling version is not `current`, since the versions move
/// in lockstep.
pub(crate) fn bump_manifest(
    text: &str,
    current: &Version,
    next: &Version,
) -> anyhow::Result<String> {
    let entries = manifest::entries(text);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let (current, next) = (current.to_string(), next.to_string());

    let package_version = manifest::in_section(&entries, "workspace.package")
        .find(|e| e.key == "version")
        .context("the root Cargo.toml has no `workspace.package.version`")?;
    let found = manifest::string_value(&package_version.value).unwrap_or_default();
    ensure!(
        found == current,
        "`workspace.package.version` is {found}, expected {current}"
    );
    lines[package_version.line] =
        manifest::replace_string_value(&lines[package_version.line], "version", &next)
            .context("could not rewrite `workspace.package.version`")?;

    let mut siblings = 0;
    for entry in manifest::in_section(&entries, "workspace.dependencies") {
        let Some(fields) = manifest::inline_table(&entry.value) else {
            continue;
        };
        let field = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let (Some(_), Some(version)) = (field("path"), field("version")) else {
            continue;
        };
        let version = manifest::string_value(version).unwrap_or_default();
        ensure!(
            version.trim_start_matches(['=', '^', '~']) == current,
            "workspace dependency `{}` is at {version}, expected {current} (versions move in lockstep)",
            entry.key
        );
        lines[entry.line] = manifest::replace_string_value(&lines[entry.line], "version", &next)
            .with_context(|| format!("could not rewrite the version of `{}`", entry.key))?;
        siblings += 1;
    }
    ensure!(
        siblings > 0,
        "found no sibling crates in `[workspace.dependencies]`"
    );

    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// The slice of the changelog between `## [Unreleased]` and the next release heading or the link
/// definitions at the bottom, as line indices `(heading, body_start, body_end)`.
fn unreleased_span(lines: &[&str]) -> anyhow::Result<(usize, usize, usize)> {
    let heading = lines
        .iter()
        .position(|l| l.trim_end() == "## [Unreleased]")
        .context("CHANGELOG.md has no `## [Unreleased]` section")?;
    let end = lines[heading + 1..]
        .iter()
        .position(|l| l.starts_with("## ") || is_version_link(l))
        .map_or(lines.len(), |i| heading + 1 + i);
    Ok((heading, heading + 1, end))
}

/// Returns whether `line` is a link definition of the form `[Unreleased]: …` or `[X.Y.Z]: …`.
fn is_version_link(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once("]: "))
        .is_some_and(|(label, _)| label == "Unreleased" || Version::parse(label).is_ok())
}

/// The Keep a Changelog categories whose entries start with the crates they change (rule 20).
const CATEGORIES: &[&str] = &[
    "Added",
    "Changed",
    "Deprecated",
    "Removed",
    "Fixed",
    "Security",
];

/// Step 3: fails if `[Unreleased]` has no entries, or an entry in one of the `CATEGORIES` starts
/// with a crate name that is not in `known` (`` - `kmm-buddy`: … ``, optionally after
/// `**Breaking:**`).
///
/// Entries that start with prose, such as a `Workspace:` entry, and entries of other subsections,
/// such as a list of new third-party dependencies, name no crate and are not checked.
pub(crate) fn check_unreleased(changelog: &str, known: &BTreeSet<&str>) -> anyhow::Result<()> {
    let lines: Vec<&str> = changelog.lines().collect();
    let (_, start, end) = unreleased_span(&lines)?;
    let mut category = None;
    let mut entries = 0;
    let mut problems = Vec::new();
    for line in &lines[start..end] {
        if let Some(heading) = line.strip_prefix("### ") {
            category = Some(heading.trim());
            continue;
        }
        let Some(entry) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) else {
            continue;
        };
        entries += 1;
        if category.is_some_and(|c| !CATEGORIES.contains(&c)) {
            continue;
        }
        for krate in entry_crates(entry).unwrap_or_default() {
            if !known.contains(krate) {
                problems.push(format!("unknown crate `{krate}` in: {entry}"));
            }
        }
    }
    ensure!(
        entries > 0,
        "`## [Unreleased]` in CHANGELOG.md has no entries; nothing to release"
    );
    ensure!(
        problems.is_empty(),
        "CHANGELOG.md [Unreleased]:\n  {}",
        problems.join("\n  ")
    );
    Ok(())
}

/// Returns the crate names an entry starts with: `` `a`: `` or `` `a`, `b`: ``, optionally after a
/// `**Breaking:**` marker.
fn entry_crates(entry: &str) -> Option<Vec<&str>> {
    let entry = entry.trim_start();
    let entry = entry
        .strip_prefix("**Breaking:**")
        .map_or(entry, str::trim_start);
    let (prefix, _) = entry.split_once(':')?;
    let mut crates = Vec::new();
    for part in prefix.split(',').flat_map(|p| p.split(" and ")) {
        let name = part.trim().strip_prefix('`')?.strip_suffix('`')?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return None;
        }
        crates.push(name);
    }
    Some(crates)
}

/// Returns the version of the newest released section, `## [X.Y.Z] - date`, if any.
fn previous_release(changelog: &str) -> Option<Version> {
    changelog.lines().find_map(|l| {
        let label = l.strip_prefix("## [")?.split_once(']')?.0;
        Version::parse(label).ok()
    })
}

/// Step 5: turns `[Unreleased]` into `## [next] - date`, leaves an empty `[Unreleased]` above it,
/// and refreshes the compare links at the bottom.
pub(crate) fn release_changelog(
    changelog: &str,
    next: &Version,
    date: &str,
    repository: &str,
) -> anyhow::Result<String> {
    let previous = previous_release(changelog);
    let lines: Vec<&str> = changelog.lines().collect();
    let (heading, start, end) = unreleased_span(&lines)?;
    let body = &lines[start..end];
    let body_start = body
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(body.len());
    let body_end = body
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(body_start, |i| i + 1);

    let mut out: Vec<String> = lines[..=heading].iter().map(|l| (*l).to_owned()).collect();
    out.push(String::new());
    out.push(format!("## [{next}] - {date}"));
    out.push(String::new());
    out.extend(drop_empty_subsections(&body[body_start..body_end]));
    out.push(String::new());

    let unreleased_link = format!("[Unreleased]: {repository}/compare/v{next}...HEAD");
    let release_link = match previous {
        Some(previous) => format!("[{next}]: {repository}/compare/v{previous}...v{next}"),
        None => format!("[{next}]: {repository}/releases/tag/v{next}"),
    };
    let rest = &lines[end..];
    let mut replaced = false;
    for line in rest {
        if line.starts_with("[Unreleased]: ") {
            out.push(unreleased_link.clone());
            out.push(release_link.clone());
            replaced = true;
        } else {
            out.push((*line).to_owned());
        }
    }
    if !replaced {
        while out.last().is_some_and(|l| l.trim().is_empty()) {
            out.pop();
        }
        out.push(String::new());
        out.push(unreleased_link);
        out.push(release_link);
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}

/// Returns `body` without `### Heading`s that have no entries under them.
fn drop_empty_subsections(body: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut index = 0;
    while index < body.len() {
        let line = body[index];
        if line.starts_with("### ") {
            let len = body[index + 1..]
                .iter()
                .position(|l| l.starts_with("### "))
                .unwrap_or(body.len() - index - 1);
            let section = &body[index..=index + len];
            if section[1..].iter().any(|l| !l.trim().is_empty()) {
                out.extend(section.iter().map(|l| (*l).to_owned()));
            }
            index += len + 1;
        } else {
            out.push(line.to_owned());
            index += 1;
        }
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out
}

/// A workspace member as `cargo metadata` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) version: String,
    /// `false` for `publish = false` (metadata's `"publish": []`).
    pub(crate) publish: bool,
    /// Normal and build dependencies on other workspace members, by package name.
    pub(crate) local_deps: Vec<String>,
    /// The crates.io metadata fields this package lacks.
    pub(crate) missing_metadata: Vec<&'static str>,
}

/// Reads the workspace members out of `cargo metadata --no-deps --format-version 1` output.
pub(crate) fn packages_from_metadata(text: &str) -> anyhow::Result<Vec<Package>> {
    let metadata = json::parse(text).context("parsing `cargo metadata` output")?;
    let packages = metadata
        .get("packages")
        .and_then(json::Value::as_array)
        .context("metadata has no packages")?;
    let names: BTreeSet<&str> = packages
        .iter()
        .filter_map(|p| p.get("name")?.as_str())
        .collect();
    let mut out = Vec::new();
    for package in packages {
        let field = |key: &str| package.get(key).and_then(json::Value::as_str);
        let name = field("name")
            .context("a package without a name")?
            .to_owned();
        let version = field("version")
            .context("a package without a version")?
            .to_owned();
        // `null` means "any registry"; a list (possibly empty) restricts it.
        let publish = match package.get("publish") {
            Some(json::Value::Array(registries)) => !registries.is_empty(),
            _ => true,
        };
        let mut local_deps = Vec::new();
        for dep in package
            .get("dependencies")
            .and_then(json::Value::as_array)
            .unwrap_or_default()
        {
            let dep_name = dep
                .get("name")
                .and_then(json::Value::as_str)
                .unwrap_or_default();
            let kind = dep.get("kind").and_then(json::Value::as_str);
            let is_local = dep.get("path").is_some() && names.contains(dep_name);
            if is_local && kind != Some("dev") && !local_deps.iter().any(|d| d == dep_name) {
                local_deps.push(dep_name.to_owned());
            }
        }
        let mut missing_metadata = Vec::new();
        for key in ["description", "license", "repository", "readme"] {
            if field(key).is_none_or(str::is_empty) {
                missing_metadata.push(key);
            }
        }
        for key in ["keywords", "categories"] {
            if package
                .get(key)
                .and_then(json::Value::as_array)
                .is_none_or(<[_]>::is_empty)
            {
                missing_metadata.push(key);
            }
        }
        out.push(Package {
            name,
            version,
            publish,
            local_deps,
            missing_metadata,
        });
    }
    Ok(out)
}

/// Step 2: checks that every publishable package has its metadata, the lockstep `version`, and
/// only publishable dependencies, and returns the publishable packages in dependency order
/// (dependencies first; ties broken by name, so the order is stable).
pub(crate) fn publish_order(
    packages: &[Package],
    version: &Version,
) -> anyhow::Result<Vec<String>> {
    let version = version.to_string();
    let publishable: Vec<&Package> = packages.iter().filter(|p| p.publish).collect();
    let mut problems = Vec::new();
    for package in &publishable {
        if !package.missing_metadata.is_empty() {
            problems.push(format!(
                "`{}` is neither publishable nor `publish = false`: it lacks {}",
                package.name,
                package.missing_metadata.join(", ")
            ));
        }
        if package.version != version {
            problems.push(format!(
                "`{}` is at {}, not the lockstep version {version}",
                package.name, package.version
            ));
        }
        for dep in &package.local_deps {
            if !publishable.iter().any(|p| p.name == *dep) {
                problems.push(format!(
                    "`{}` depends on `{dep}`, which is not published",
                    package.name
                ));
            }
        }
    }
    ensure!(
        problems.is_empty(),
        "cannot release:\n  {}",
        problems.join("\n  ")
    );

    let mut done: Vec<String> = Vec::new();
    let mut remaining: BTreeSet<&str> = publishable.iter().map(|p| p.name.as_str()).collect();
    while !remaining.is_empty() {
        let ready = remaining.iter().copied().find(|name| {
            let package = publishable
                .iter()
                .find(|p| p.name == *name)
                .expect("remaining holds publishable names");
            package.local_deps.iter().all(|dep| done.contains(dep))
        });
        let Some(ready) = ready else {
            let cycle: Vec<&str> = remaining.into_iter().collect();
            bail!(
                "the publishable crates depend on each other in a cycle: {}",
                cycle.join(", ")
            );
        };
        remaining.remove(ready);
        done.push(ready.to_owned());
    }
    Ok(done)
}

/// Today's date in UTC as `YYYY-MM-DD`.
fn today() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days(seconds / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Converts days since 1970-01-01 to a proleptic Gregorian `(year, month, day)`.
///
/// This is Howard Hinnant's `civil_from_days`, restricted to dates after the epoch.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
