//! Exercise 8 against a real Valkey: the built-in slow upstream, the calls
//! the cache avoids, stale-if-error during an outage, and the stampede
//! protections counted in upstream calls. (No database is read: the keys
//! still name the configured one.)

mod support;

use serde_json::Value;
use support::{cli_against, valkey_url, JsonRun, TestPrefix, DEFAULT_MYSQL_URL};

fn api_cache(prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    let dir = tempfile::tempdir().unwrap();
    let args = [&["api-cache"], args, &["--json"]].concat();
    let output = cli_against(dir.path(), DEFAULT_MYSQL_URL, prefix, &valkey_url(), &args)
        .output()
        .unwrap();
    JsonRun::from_output(&output)
}

fn n(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a count: {value}"))
}

fn mode<'a>(run: &'a JsonRun, name: &str) -> &'a Value {
    run.json["stampede"]
        .as_array()
        .unwrap_or_else(|| panic!("no stampede: {}", run.stderr))
        .iter()
        .find(|m| m["mode"] == name)
        .map(|m| &m["pass"])
        .unwrap_or_else(|| panic!("no {name} in {}", run.json))
}

#[test]
fn the_cache_avoids_upstream_calls_and_stale_answers_outlive_an_outage() {
    let prefix = TestPrefix::new("api_cache_lesson");
    let run = api_cache(
        &prefix,
        &[
            "--latency",
            "20..40",
            "--requests",
            "100",
            "--cities",
            "5",
            "--concurrency",
            "5",
            "--max-age",
            "2",
            "--stale-if-error",
            "60",
            "--stampede",
            "20",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let without = &run.json["without_cache"];
    assert_eq!(n(&without["upstream_calls"]), 100, "{without}");
    assert_eq!(n(&without["failed"]), 0, "{without}");
    let cached = &run.json["with_cache"];
    let calls = n(&cached["upstream_calls"]);
    // Every city is fetched at least once; a city is missed by at most the 5
    // requests in flight before its first answer is stored (fresh for 2 s).
    assert!((5..=25).contains(&calls), "{cached}");
    assert_eq!(n(&cached["hits"]) + calls, 100, "{cached}");
    assert_eq!(n(&run.json["calls_avoided"]), 100 - calls);
    // A hit never waits for the 20 ms upstream.
    let hit_p50 = cached["hit_latency"]["p50"].as_f64().unwrap();
    let upstream_p50 = without["latency"]["p50"].as_f64().unwrap();
    assert!(hit_p50 < upstream_p50, "hit {hit_p50} ms vs upstream {upstream_p50} ms");

    // The upstream down, every entry stale: served within the grace period, else failed.
    let outage = &run.json["outage"];
    let stale = &outage["with_stale_if_error"];
    assert_eq!(n(&stale["served_stale"]), 5, "{outage}");
    assert_eq!(n(&stale["failed"]), 0, "{outage}");
    assert_eq!(n(&stale["upstream_calls"]), 5, "{outage}");
    let plain = &outage["without_stale_if_error"];
    assert_eq!(n(&plain["failed"]), 5, "{outage}");
    assert_eq!(n(&plain["served_stale"]), 0, "{outage}");

    // One cold city, 20 requests at once: 20 calls unprotected, one with either protection.
    assert_eq!(n(&mode(&run, "none")["upstream_calls"]), 20);
    for protected in ["single-flight", "lock"] {
        let pass = mode(&run, protected);
        assert_eq!(n(&pass["upstream_calls"]), 1, "{protected}: {pass}");
        assert_eq!(n(&pass["waited"]), 19, "{protected}: {pass}");
        assert_eq!(n(&pass["failed"]), 0, "{protected}: {pass}");
    }
    assert!(prefix.keys().is_empty(), "{:?}", prefix.keys());
}

#[test]
fn failures_of_the_upstream_are_served_stale_only_with_a_grace_period() {
    let prefix = TestPrefix::new("api_cache_grace");
    let run = api_cache(
        &prefix,
        &[
            "--latency",
            "5..10",
            "--requests",
            "40",
            "--cities",
            "3",
            "--max-age",
            "1",
            "--stale-if-error",
            "0",
            "--mode",
            "single-flight",
            "--stampede",
            "5",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let outage = &run.json["outage"];
    assert!(outage["with_stale_if_error"].is_null(), "{outage}");
    assert_eq!(n(&outage["without_stale_if_error"]["failed"]), 3, "{outage}");
    assert_eq!(run.json["stampede"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_latency_range_backwards_is_rejected_with_its_form() {
    let prefix = TestPrefix::new("api_cache_bad");
    let run = api_cache(&prefix, &["--latency", "750..250"]);
    assert_eq!(run.code, Some(6));
    assert_eq!(
        run.stderr,
        "error: --latency '750..250' is not a range of milliseconds; write MIN..MAX, e.g. 250..750, or one number, each from 0 to 60000\n"
    );
    assert!(run.stdout.is_empty());

    let run = api_cache(&prefix, &["--failure-rate", "1.5"]);
    assert_eq!(run.code, Some(6));
    assert_eq!(
        run.stderr,
        "error: --failure-rate must be a share from 0 to 1, e.g. 0.1 for 10 % (got 1.5)\n"
    );
    let run = api_cache(&prefix, &["--upstream", "http://127.0.0.1:9", "--latency", "1..2"]);
    assert_eq!(run.code, Some(6));
    assert!(
        run.stderr
            .starts_with("error: --latency shapes the built-in upstream only"),
        "{}",
        run.stderr
    );
    let run = api_cache(&prefix, &["--upstream", "ftp://example.com"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    let run = api_cache(&prefix, &["--requests", "-5"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(prefix.keys().is_empty());
}

#[test]
fn an_upstream_that_answers_nothing_ends_the_run_incomplete() {
    let prefix = TestPrefix::new("api_cache_refused");
    // Port 9 (discard) on loopback: nothing listens, every call is refused at once.
    let run = api_cache(
        &prefix,
        &[
            "--upstream",
            "http://127.0.0.1:9",
            "--requests",
            "10",
            "--stampede",
            "3",
        ],
    );
    assert_eq!(run.code, Some(8), "{}", run.stderr);
    assert_eq!(n(&run.json["without_cache"]["failed"]), 10, "{}", run.json);
    assert_eq!(n(&run.json["with_cache"]["failed"]), 10, "{}", run.json);
    assert!(run.json["outage"].is_null());
    assert!(
        run.stderr.contains("the upstream answered none of 20 calls"),
        "{}",
        run.stderr
    );
    assert!(prefix.keys().is_empty(), "{:?}", prefix.keys());
}
