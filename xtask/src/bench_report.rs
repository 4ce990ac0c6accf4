//! `cargo xtask bench-report`: a Markdown table of criterion's latest medians, for
//! `docs/benchmarks.md`.
//!
//! Criterion stores each benchmark's latest run as `<criterion>/<group>/<function>[/<value>]/new/`
//! with `estimates.json` (the statistics) and `benchmark.json` (the ids as written in the bench).
//! This reads the median point estimate of every benchmark and prints, per group, each function's
//! median and its ratio to the group's baseline: the function named `system`, else `eager`, else
//! the alphabetically first one (house style rules 18 and 19: report ratios to the in-run baseline).

#[cfg(test)]
mod tests;

use core::cmp::Ordering;
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, ensure};

use crate::json;

/// The functions that serve as a group's baseline, in order of preference.
const BASELINES: &[&str] = &["system", "eager"];

/// One benchmark's median.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measurement {
    /// Criterion's group id, e.g. `buddy/order0_pair`.
    pub(crate) group: String,
    /// The function id within the group, e.g. `eager`.
    pub(crate) function: String,
    /// The parameter of a parameterised benchmark, if any.
    pub(crate) value: Option<String>,
    /// The median time per iteration in nanoseconds.
    pub(crate) median_ns: f64,
}

/// Reads every benchmark under `criterion_dir` and renders the report.
pub(crate) fn report(criterion_dir: &Path) -> anyhow::Result<String> {
    let measurements = read_measurements(criterion_dir)?;
    ensure!(
        !measurements.is_empty(),
        "no criterion results under {}; run `cargo bench` first",
        criterion_dir.display()
    );
    Ok(render(&measurements))
}

/// Finds every `new/estimates.json` under `criterion_dir` and reads its median.
pub(crate) fn read_measurements(criterion_dir: &Path) -> anyhow::Result<Vec<Measurement>> {
    let mut files = Vec::new();
    find_estimates(criterion_dir, &mut files)
        .with_context(|| format!("reading criterion output under {}", criterion_dir.display()))?;
    let mut out = Vec::new();
    for estimates_path in files {
        let new_dir = estimates_path
            .parent()
            .context("estimates.json has a parent")?;
        let estimates = json::parse(&fs::read_to_string(&estimates_path)?)
            .with_context(|| format!("parsing {}", estimates_path.display()))?;
        let median_ns = estimates
            .get("median")
            .and_then(|m| m.get("point_estimate"))
            .and_then(json::Value::as_f64)
            .with_context(|| {
                format!("{} has no median.point_estimate", estimates_path.display())
            })?;
        let (group, function, value) = benchmark_ids(criterion_dir, new_dir)?;
        out.push(Measurement {
            group,
            function,
            value,
            median_ns,
        });
    }
    Ok(out)
}

/// Returns `(group, function, value)` from `benchmark.json`, or from the directory names when that
/// file is missing (criterion's directory names replace some characters, so the file is preferred).
fn benchmark_ids(
    criterion_dir: &Path,
    new_dir: &Path,
) -> anyhow::Result<(String, String, Option<String>)> {
    if let Ok(text) = fs::read_to_string(new_dir.join("benchmark.json")) {
        let ids = json::parse(&text)
            .with_context(|| format!("parsing {}/benchmark.json", new_dir.display()))?;
        let field = |key: &str| {
            ids.get(key)
                .and_then(json::Value::as_str)
                .map(str::to_owned)
        };
        if let (Some(group), Some(function)) = (field("group_id"), field("function_id")) {
            return Ok((group, function, field("value_str")));
        }
    }
    let bench_dir = new_dir.parent().context("a `new` directory has a parent")?;
    let relative = bench_dir.strip_prefix(criterion_dir)?;
    let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
    let group = parts
        .next()
        .context("benchmark directory outside a group")?;
    let rest: Vec<String> = parts.collect();
    ensure!(
        !rest.is_empty(),
        "benchmark {} has no function directory",
        relative.display()
    );
    Ok((group, rest.join("/"), None))
}

/// Collects `*/new/estimates.json` files; criterion's `base`, `change` and `report` directories
/// hold no `new` directory and are passed over.
fn find_estimates(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries = fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if entry.file_name() == "new" {
            let estimates = path.join("estimates.json");
            if estimates.is_file() {
                out.push(estimates);
            }
        } else {
            find_estimates(&path, out)?;
        }
    }
    Ok(())
}

/// The measurements of one group that share a parameter (or have none).
type Block<'a> = (Option<&'a str>, Vec<&'a Measurement>);

/// Orders parameters numerically when both are numbers (`64` before `4096`), else as text.
fn compare_values(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a.map(str::parse::<f64>), b.map(str::parse::<f64>)) {
        (Some(Ok(x)), Some(Ok(y))) => x.total_cmp(&y),
        _ => a.cmp(&b),
    }
}

/// Renders the Markdown table: one block of rows per group (and parameter), baseline first.
pub(crate) fn render(measurements: &[Measurement]) -> String {
    let mut groups: BTreeMap<&str, Vec<Block<'_>>> = BTreeMap::new();
    for m in measurements {
        let blocks = groups.entry(m.group.as_str()).or_default();
        match blocks
            .iter_mut()
            .find(|(value, _)| *value == m.value.as_deref())
        {
            Some((_, rows)) => rows.push(m),
            None => blocks.push((m.value.as_deref(), vec![m])),
        }
    }
    let blocks = groups.into_iter().flat_map(|(group, mut blocks)| {
        blocks.sort_by(|(a, _), (b, _)| compare_values(*a, *b));
        blocks
            .into_iter()
            .map(move |(value, rows)| (group, value, rows))
    });
    let mut out =
        String::from("| Group | Function | Median | Ratio to baseline |\n|---|---|---:|---:|\n");
    for (group, value, mut rows) in blocks {
        rows.sort_by(|a, b| a.function.cmp(&b.function));
        let baseline_index = BASELINES
            .iter()
            .find_map(|name| {
                rows.iter()
                    .position(|m| m.function.eq_ignore_ascii_case(name))
            })
            .unwrap_or(0);
        let baseline = rows.remove(baseline_index);
        rows.insert(0, baseline);
        let group_label = match value {
            Some(value) => format!("`{group}` ({value})"),
            None => format!("`{group}`"),
        };
        for (i, m) in rows.iter().enumerate() {
            let shown_group = if i == 0 { group_label.as_str() } else { "" };
            let ratio = if i == 0 {
                "baseline".to_owned()
            } else {
                format_ratio(m.median_ns / baseline.median_ns)
            };
            out.push_str(&format!(
                "| {shown_group} | `{}` | {} | {ratio} |\n",
                m.function,
                format_duration(m.median_ns)
            ));
        }
    }
    out
}

/// Formats a ratio with two decimals, e.g. `1.63×`.
fn format_ratio(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{ratio:.2}×")
    } else {
        "n/a".to_owned()
    }
}

/// Formats nanoseconds with a unit that keeps three or four significant digits.
fn format_duration(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}
