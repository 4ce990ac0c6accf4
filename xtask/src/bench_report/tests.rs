//! Tests for `bench-report`: reading a criterion directory and rendering the table.

use std::fs;

use super::{Measurement, read_measurements, render, report};

fn m(group: &str, function: &str, value: Option<&str>, median_ns: f64) -> Measurement {
    Measurement {
        group: group.to_owned(),
        function: function.to_owned(),
        value: value.map(str::to_owned),
        median_ns,
    }
}

#[test]
fn render_picks_baselines() {
    let table = render(&[
        m("buddy/order0_pair", "lazy", None, 30.0),
        m("buddy/order0_pair", "System", None, 20.0),
        m("buddy/order0_pair", "eager", None, 25.0),
        m("slab/cache_pair", "lazy", None, 3_000.0),
        m("slab/cache_pair", "eager", None, 1_500.0),
        m("replay/trace", "b", None, 2.5e6),
        m("replay/trace", "a", None, 5.0e6),
        m("sizes", "eager", Some("4096"), 1.5e9),
        m("sizes", "eager", Some("64"), 10.0),
        m("sizes", "lazy", Some("64"), 15.0),
    ]);
    let expected = "\
| Group | Function | Median | Ratio to baseline |
|---|---|---:|---:|
| `buddy/order0_pair` | `System` | 20.0 ns | baseline |
|  | `eager` | 25.0 ns | 1.25× |
|  | `lazy` | 30.0 ns | 1.50× |
| `replay/trace` | `a` | 5.00 ms | baseline |
|  | `b` | 2.50 ms | 0.50× |
| `sizes` (64) | `eager` | 10.0 ns | baseline |
|  | `lazy` | 15.0 ns | 1.50× |
| `sizes` (4096) | `eager` | 1.50 s | baseline |
| `slab/cache_pair` | `eager` | 1.50 µs | baseline |
|  | `lazy` | 3.00 µs | 2.00× |
";
    assert_eq!(table, expected);
}

#[test]
fn reads_a_criterion_directory() {
    let dir = std::env::temp_dir().join(format!("xtask-bench-report-{}", std::process::id()));
    let write = |relative: &str, text: &str| {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    let estimates = |median: f64| {
        format!(
            r#"{{"mean":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0}},"point_estimate":999.0,"standard_error":0.1}},"median":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0}},"point_estimate":{median},"standard_error":0.1}}}}"#
        )
    };
    // Criterion writes the group `buddy/order0_pair` to the directory `buddy_order0_pair`.
    write(
        "buddy_order0_pair/eager/new/estimates.json",
        &estimates(40.0),
    );
    write(
        "buddy_order0_pair/eager/new/benchmark.json",
        r#"{"group_id":"buddy/order0_pair","function_id":"eager","value_str":null,"throughput":null}"#,
    );
    write(
        "buddy_order0_pair/system/new/estimates.json",
        &estimates(20.0),
    );
    write(
        "buddy_order0_pair/system/new/benchmark.json",
        r#"{"group_id":"buddy/order0_pair","function_id":"system","value_str":null,"throughput":null}"#,
    );
    // Without `benchmark.json`, the directory names stand in; `base`, `change` and `report` are skipped.
    write("plain/lazy/new/estimates.json", &estimates(7.0));
    write("plain/lazy/base/estimates.json", &estimates(1.0));
    write("plain/lazy/change/estimates.json", &estimates(1.0));
    write("plain/report/index.html", "<html></html>");
    write("report/index.html", "<html></html>");

    let mut found = read_measurements(&dir).unwrap();
    found.sort_by(|a, b| (&a.group, &a.function).cmp(&(&b.group, &b.function)));
    assert_eq!(
        found,
        [
            m("buddy/order0_pair", "eager", None, 40.0),
            m("buddy/order0_pair", "system", None, 20.0),
            m("plain", "lazy", None, 7.0)
        ]
    );
    let table = report(&dir).unwrap();
    assert!(
        table.contains("|  | `eager` | 40.0 ns | 2.00× |"),
        "{table}"
    );

    fs::remove_dir_all(&dir).unwrap();
    // No results at all is an error, not an empty table.
    fs::create_dir_all(&dir).unwrap();
    assert!(report(&dir).is_err());
    fs::remove_dir_all(&dir).unwrap();
}
