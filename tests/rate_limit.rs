//! Exercise 11 against a real Valkey: what each limiter lets through under
//! three times the load it allows. (No database is read: the keys still name
//! the configured one.)

mod support;

use serde_json::Value;
use support::{cli_against, valkey_url, JsonRun, TestPrefix, DEFAULT_MYSQL_URL};

fn rate_limit(prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    let dir = tempfile::tempdir().unwrap();
    let args = [&["rate-limit"], args, &["--json"]].concat();
    let output = cli_against(dir.path(), DEFAULT_MYSQL_URL, prefix, &valkey_url(), &args)
        .output()
        .unwrap();
    JsonRun::from_output(&output)
}

fn limiter<'a>(run: &'a JsonRun, name: &str) -> &'a Value {
    run.json["limiters"]
        .as_array()
        .unwrap_or_else(|| panic!("no limiters: {}", run.stderr))
        .iter()
        .find(|l| l["limiter"] == name)
        .unwrap_or_else(|| panic!("no {name} in {}", run.json))
}

#[test]
fn the_token_bucket_allows_within_five_percent_of_the_limit_over_three_seconds() {
    let prefix = TestPrefix::new("rate_token");
    let run = rate_limit(
        &prefix,
        &[
            "--limiter",
            "token-bucket",
            "--limit",
            "100/s",
            "--clients",
            "10",
            "--rate",
            "30",
            "--duration",
            "3",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let bucket = limiter(&run, "token-bucket");
    let per_second = bucket["allowed_per_second"].as_f64().unwrap();
    assert!((95.0..=105.0).contains(&per_second), "{per_second} allowed/s: {bucket}");
    // The clients offered far more than the limit: the bucket really denied.
    let requests = bucket["requests"].as_u64().unwrap();
    assert!(requests >= 2 * bucket["allowed"].as_u64().unwrap(), "{bucket}");
    assert_eq!(bucket["commands_per_decision"], 1.0);
    assert!(prefix.keys().is_empty(), "{:?}", prefix.keys());
}

#[test]
fn the_sliding_log_holds_the_limit_in_any_second_and_the_fixed_window_in_each_window() {
    let prefix = TestPrefix::new("rate_windows");
    let run = rate_limit(
        &prefix,
        &[
            "--limiter",
            "all",
            "--limit",
            "50/s",
            "--clients",
            "10",
            "--rate",
            "20",
            "--duration",
            "3",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let log = limiter(&run, "sliding-log");
    // Requests stamped 1 ms apart can reach Valkey out of order, so a second
    // may hold a request or two more than the limit; a fixed window's may hold twice it.
    assert!(log["max_in_any_second"].as_u64().unwrap() <= 53, "{log}");
    let log_rate = log["allowed_per_second"].as_f64().unwrap();
    assert!((45.0..=50.0).contains(&log_rate), "{log_rate}: {log}");
    let fixed = limiter(&run, "fixed-window");
    // Each window allows 50; a 3-second run touches 3 or 4 windows.
    let allowed = fixed["allowed"].as_u64().unwrap();
    assert!((140..=200).contains(&allowed), "{fixed}");
    assert!(fixed["max_in_any_second"].as_u64().unwrap() <= 100, "{fixed}");
    assert!(prefix.keys().is_empty(), "{:?}", prefix.keys());
}

#[test]
fn a_limit_per_hour_is_rejected_with_the_forms_it_takes() {
    let prefix = TestPrefix::new("rate_bad");
    let run = rate_limit(&prefix, &["--limit", "100/h"]);
    assert_eq!(run.code, Some(6));
    assert_eq!(
        run.stderr,
        "error: --limit '100/h' is not a rate; write it as requests per second or minute, e.g. 100/s or 6000/min\n"
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn the_token_bucket_limit_holds_fleet_wide_across_three_processes() {
    let prefix = TestPrefix::new("rate_fleet");
    let run = rate_limit(
        &prefix,
        &[
            "--limiter",
            "token-bucket",
            "--processes",
            "3",
            "--clients",
            "4",
            "--rate",
            "30",
            "--duration",
            "3",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.json["processes"], 3);
    let bucket = limiter(&run, "token-bucket");
    let shares: Vec<u64> = bucket["allowed_per_process"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(shares.len(), 3, "{bucket}");
    assert!(shares.iter().all(|n| *n > 0), "every process got a share: {shares:?}");
    assert_eq!(shares.iter().sum::<u64>(), bucket["allowed"].as_u64().unwrap());
    // 3 × 4 × 30 = 360 requests/s offered; the fleet together stays at 100/s.
    let per_second = bucket["allowed_per_second"].as_f64().unwrap();
    assert!((95.0..=105.0).contains(&per_second), "{per_second}: {bucket}");
    assert!(bucket["requests"].as_u64().unwrap() > 900, "{bucket}");
    assert!(prefix.keys().is_empty(), "{:?}", prefix.keys());
}

#[test]
fn out_saves_each_limiters_allowed_per_second_as_a_saved_run() {
    let prefix = TestPrefix::new("rate_out");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("limits.json");
    let run = rate_limit(
        &prefix,
        &["--limiter", "all", "--duration", "2", "--out", out.to_str().unwrap()],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(saved["format"], "workshop-cli saved run");
    assert_eq!(saved["command"], "rate-limit");
    let series = saved["series"].as_array().unwrap();
    assert_eq!(series.len(), 3, "one series per limiter: {saved}");
    for (series, outcome) in series.iter().zip(run.json["limiters"].as_array().unwrap()) {
        let allowed: Vec<u64> = series["requests_per_second"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as u64)
            .collect();
        let expected: Vec<u64> = outcome["allowed_each_second"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(allowed, expected, "{series}");
        assert_eq!(series["hit_rate"], serde_json::json!([]), "a limiter has no hit rate");
    }
}
