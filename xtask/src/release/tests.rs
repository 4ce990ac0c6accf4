//! Tests for the pure parts of `release`: versions, manifest and changelog rewriting, and the
//! publish order.

use std::collections::BTreeSet;

use super::{
    Package, Version, bump_manifest, check_unreleased, civil_from_days, packages_from_metadata,
    publish_order, release_changelog,
};

fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

#[test]
fn version_bumps() {
    let check = |current: &str, how: &str, expected: &str| {
        assert_eq!(
            v(current).bump(how).unwrap().to_string(),
            expected,
            "{current} {how}"
        );
    };
    check("0.1.0", "patch", "0.1.1");
    check("0.1.7", "minor", "0.2.0");
    check("0.9.3", "major", "1.0.0");
    check("1.2.3", "1.2.4", "1.2.4");
    check("1.2.3", "2.0.0", "2.0.0");
    for bad in [
        "1.2.3", "1.2.2", "0.9.9", "1.2", "1.2.3.4", "v1.2.4", "1.02.4", "1.2.x", "huge", "",
    ] {
        assert!(v("1.2.3").bump(bad).is_err(), "{bad} should be refused");
    }
}

const ROOT: &str = r#"[workspace]
members = ["crates/*"]

[workspace.package]
version = "0.1.0"
rust-version = "1.88"

[workspace.dependencies]
# Siblings.
kmm-gfp = { path = "crates/kmm-gfp", version = "0.1.0" }
kmm = { path = "crates/kmm", version = "=0.1.0", default-features = false }
# Third parties keep their versions.
anyhow = "0.1.0"
thiserror = { version = "0.1.0", default-features = false }
"#;

#[test]
fn manifest_bump() {
    let bumped = bump_manifest(ROOT, &v("0.1.0"), &v("0.2.0")).unwrap();
    let expected = ROOT
        .replacen("version = \"0.1.0\"\nrust", "version = \"0.2.0\"\nrust", 1)
        .replace(
            "crates/kmm-gfp\", version = \"0.1.0\"",
            "crates/kmm-gfp\", version = \"0.2.0\"",
        )
        .replace("version = \"=0.1.0\"", "version = \"=0.2.0\"");
    assert_eq!(bumped, expected);
    assert!(bumped.contains("anyhow = \"0.1.0\""));
    assert!(bumped.contains("thiserror = { version = \"0.1.0\""));

    // A workspace that is not at the expected version, or whose siblings are out of step, is refused.
    assert!(bump_manifest(ROOT, &v("0.1.1"), &v("0.2.0")).is_err());
    let skewed = ROOT.replace(
        "crates/kmm-gfp\", version = \"0.1.0\"",
        "crates/kmm-gfp\", version = \"0.0.9\"",
    );
    let err = bump_manifest(&skewed, &v("0.1.0"), &v("0.2.0")).unwrap_err();
    assert!(err.to_string().contains("kmm-gfp"), "{err}");
}

const CHANGELOG: &str = "# Changelog

All notable changes are listed here.

## [Unreleased]

### Added

- `kmm-buddy`: Lazy coalescing ([#3](https://example.invalid/3)).
- **Breaking:** `kmm-gfp`, `kmm-zone`: Renamed `Gfp` to `GfpFlags`.

### Removed

## [0.1.0] - 2025-01-01

### Added

- `kmm`: First release.

[Unreleased]: https://github.com/kmm-rs/kmm/compare/v0.1.0...HEAD
[0.1.0]: https://github.com/kmm-rs/kmm/releases/tag/v0.1.0
";

#[test]
fn changelog_move() {
    let released = release_changelog(
        CHANGELOG,
        &v("0.2.0"),
        "2025-06-30",
        "https://github.com/kmm-rs/kmm",
    )
    .unwrap();
    let expected = "# Changelog

All notable changes are listed here.

## [Unreleased]

## [0.2.0] - 2025-06-30

### Added

- `kmm-buddy`: Lazy coalescing ([#3](https://example.invalid/3)).
- **Breaking:** `kmm-gfp`, `kmm-zone`: Renamed `Gfp` to `GfpFlags`.

## [0.1.0] - 2025-01-01

### Added

- `kmm`: First release.

[Unreleased]: https://github.com/kmm-rs/kmm/compare/v0.2.0...HEAD
[0.2.0]: https://github.com/kmm-rs/kmm/compare/v0.1.0...v0.2.0
[0.1.0]: https://github.com/kmm-rs/kmm/releases/tag/v0.1.0
";
    assert_eq!(released, expected);

    // After the move, `[Unreleased]` is empty, so a second release is refused.
    let known = BTreeSet::from(["kmm", "kmm-buddy", "kmm-gfp", "kmm-zone"]);
    assert!(check_unreleased(&released, &known).is_err());
}

#[test]
fn changelog_first_release() {
    let first = "# Changelog\n\n## [Unreleased]\n\n### Added\n\n- `kmm`: Everything.\n";
    let released = release_changelog(
        first,
        &v("0.1.0"),
        "2025-01-01",
        "https://github.com/kmm-rs/kmm",
    )
    .unwrap();
    let expected = "# Changelog

## [Unreleased]

## [0.1.0] - 2025-01-01

### Added

- `kmm`: Everything.

[Unreleased]: https://github.com/kmm-rs/kmm/compare/v0.1.0...HEAD
[0.1.0]: https://github.com/kmm-rs/kmm/releases/tag/v0.1.0
";
    assert_eq!(released, expected);
}

#[test]
fn unreleased_checks() {
    let known = BTreeSet::from(["kmm", "kmm-buddy", "kmm-gfp", "kmm-zone"]);
    check_unreleased(CHANGELOG, &known).unwrap();

    let unknown = CHANGELOG.replace("`kmm-buddy`: Lazy", "`kmm-bogus`: Lazy");
    let err = check_unreleased(&unknown, &known).unwrap_err();
    assert!(
        err.to_string().contains("unknown crate `kmm-bogus`"),
        "{err}"
    );

    let breaking_unknown = CHANGELOG.replace("`kmm-gfp`, `kmm-zone`:", "`kmm-gfp`, `kmm-zones`:");
    let err = check_unreleased(&breaking_unknown, &known).unwrap_err();
    assert!(
        err.to_string().contains("unknown crate `kmm-zones`"),
        "{err}"
    );

    // Prose entries, and other subsections such as new dependencies, name no crate.
    let prose = CHANGELOG.replace("- `kmm-buddy`: Lazy", "- Workspace: lazy");
    check_unreleased(&prose, &known).unwrap();
    let dependencies = CHANGELOG.replace(
        "### Removed",
        "### Dependencies\n\n- `bitvec`: for the lazy buddy.",
    );
    check_unreleased(&dependencies, &known).unwrap();
    let dependencies_only =
        "# Changelog\n\n## [Unreleased]\n\n### Dependencies\n\n- `bitvec`: new.\n";
    check_unreleased(dependencies_only, &known).unwrap();

    let empty = "# Changelog\n\n## [Unreleased]\n\n### Added\n\n## [0.1.0] - 2025-01-01\n\n- `kmm`: First.\n";
    let err = check_unreleased(empty, &known).unwrap_err();
    assert!(err.to_string().contains("no entries"), "{err}");

    assert!(check_unreleased("# Changelog\n", &known).is_err());
}

#[test]
fn dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(59), (1970, 3, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    assert_eq!(civil_from_days(20_088), (2024, 12, 31));
}

/// A trimmed `cargo metadata --no-deps` document: `kmm` depends on `kmm-zone` and `kmm-gfp`,
/// `kmm-zone` on `kmm-gfp`; `kmm-sim` is unpublished; dev-dependencies do not constrain the order.
const METADATA: &str = r#"{"packages":[
 {"name":"kmm","version":"0.1.0","publish":null,"description":"d","license":"MIT","repository":"r","readme":"README.md",
  "keywords":["k"],"categories":["c"],
  "dependencies":[{"name":"kmm-zone","kind":null,"path":"/w/crates/kmm-zone"},
                  {"name":"kmm-gfp","kind":null,"path":"/w/crates/kmm-gfp"},
                  {"name":"thiserror","kind":null}]},
 {"name":"kmm-gfp","version":"0.1.0","publish":null,"description":"d","license":"MIT","repository":"r","readme":"README.md",
  "keywords":["k"],"categories":["c"],
  "dependencies":[{"name":"kmm","kind":"dev","path":"/w/crates/kmm"}]},
 {"name":"kmm-zone","version":"0.1.0","publish":null,"description":"d","license":"MIT","repository":"r","readme":"README.md",
  "keywords":["k"],"categories":["c"],
  "dependencies":[{"name":"kmm-gfp","kind":null,"path":"/w/crates/kmm-gfp"}]},
 {"name":"kmm-sim","version":"0.1.0","publish":[],"description":null,"license":"MIT","repository":null,"readme":null,
  "keywords":[],"categories":[],
  "dependencies":[{"name":"kmm","kind":null,"path":"/w/crates/kmm"}]}
],"workspace_members":[],"version":1}"#;

#[test]
fn metadata_and_order() {
    let packages = packages_from_metadata(METADATA).unwrap();
    let sim = packages.iter().find(|p| p.name == "kmm-sim").unwrap();
    assert!(!sim.publish);
    assert_eq!(
        sim.missing_metadata,
        [
            "description",
            "repository",
            "readme",
            "keywords",
            "categories"
        ]
    );
    let kmm = packages.iter().find(|p| p.name == "kmm").unwrap();
    assert_eq!(kmm.local_deps, ["kmm-zone", "kmm-gfp"]);
    assert!(
        packages
            .iter()
            .find(|p| p.name == "kmm-gfp")
            .unwrap()
            .local_deps
            .is_empty()
    );

    assert_eq!(
        publish_order(&packages, &v("0.1.0")).unwrap(),
        ["kmm-gfp", "kmm-zone", "kmm"]
    );
    // A version out of lockstep is refused.
    assert!(publish_order(&packages, &v("0.2.0")).is_err());
}

fn package(name: &str, deps: &[&str]) -> Package {
    Package {
        name: name.to_owned(),
        version: "1.0.0".to_owned(),
        publish: true,
        local_deps: deps.iter().map(|d| (*d).to_owned()).collect(),
        missing_metadata: Vec::new(),
    }
}

#[test]
fn order_respects_every_edge() {
    let packages = vec![
        package("e", &["d", "a"]),
        package("d", &["b", "c"]),
        package("c", &["a"]),
        package("b", &["a"]),
        package("a", &[]),
        package("f", &[]),
    ];
    let order = publish_order(&packages, &v("1.0.0")).unwrap();
    assert_eq!(order, ["a", "b", "c", "d", "e", "f"]);
    for p in &packages {
        let at = order.iter().position(|n| *n == p.name).unwrap();
        for dep in &p.local_deps {
            assert!(
                order.iter().position(|n| n == dep).unwrap() < at,
                "{dep} before {}",
                p.name
            );
        }
    }
}

#[test]
fn order_refusals() {
    let cycle = vec![
        package("a", &["b"]),
        package("b", &["a"]),
        package("c", &[]),
    ];
    let err = publish_order(&cycle, &v("1.0.0")).unwrap_err();
    assert!(err.to_string().contains("cycle: a, b"), "{err}");

    let mut unpublished_dep = vec![package("a", &["sim"]), package("sim", &[])];
    unpublished_dep[1].publish = false;
    let err = publish_order(&unpublished_dep, &v("1.0.0")).unwrap_err();
    assert!(
        err.to_string()
            .contains("`a` depends on `sim`, which is not published"),
        "{err}"
    );

    let mut bare = vec![package("a", &[])];
    bare[0].missing_metadata = vec!["description"];
    let err = publish_order(&bare, &v("1.0.0")).unwrap_err();
    assert!(
        err.to_string()
            .contains("neither publishable nor `publish = false`"),
        "{err}"
    );
}
