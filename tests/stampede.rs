//! Exercise 6 against the real services, on both databases: how many
//! database queries one cold key costs with and without protection.

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{
    cli_against, run_json, seeded_database, stderr, stdout, valkey_url, workshop_cli, JsonRun, TestDatabase,
    TestPrefix, BOTH,
};
use workshop_cli::config::DatabaseKind;
use workshop_cli::db::{Database, PoolSettings};
use workshop_cli::exercises::queries::BuiltinQuery;
use workshop_cli::exercises::stampede::rows_digest;

fn stampede_command(db_url: &str, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> std::process::Command {
    let args = [&["stampede"], args, &["--json"]].concat();
    cli_against(&std::env::temp_dir(), db_url, prefix, valkey, &args)
}

fn stampede(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    run_json(db, prefix, &valkey_url(), &[&["stampede"], args].concat())
}

/// The one mode of a single-mode run.
fn mode<'a>(run: &'a JsonRun, name: &str) -> &'a Value {
    run.json["modes"]
        .as_array()
        .unwrap_or_else(|| panic!("no modes in {}: {}", run.json, run.stderr))
        .iter()
        .find(|m| m["mode"] == name)
        .unwrap_or_else(|| panic!("no mode {name} in {}", run.json["modes"]))
}

fn queries(mode: &Value) -> u64 {
    mode["database_queries"].as_u64().unwrap()
}

/// The digest of the built-in query's rows, read directly from the database.
async fn direct_read_digest(db: &TestDatabase) -> (String, usize) {
    let database = Database::connect(
        &db.target,
        PoolSettings {
            max_connections: 1,
            connect_timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let statement = BuiltinQuery::BusiestRoutes
        .named_query(db.kind, 0)
        .to_statement(db.kind)
        .unwrap();
    let rows = database.fetch(&statement).await.unwrap();
    database.close().await;
    (rows_digest(&rows), rows.rows.len())
}

#[tokio::test]
async fn without_protection_fifty_concurrent_misses_run_more_than_one_query() {
    for kind in BOTH {
        let db = seeded_database(kind, "st_none").await;
        let prefix = TestPrefix::new("st_none");
        let run = stampede(&db, &prefix, &["--mode", "none", "--concurrency", "50"]);
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let none = mode(&run, "none");
        assert_eq!(none["requests"], 50);
        // On one thread all 50 look up the key before the first load finishes.
        assert!(queries(none) > 1, "{kind:?}: {none}");
        assert_eq!(queries(none), none["counts"]["loaded"].as_u64().unwrap());
        assert_eq!(none["waited"], 0);
        for field in ["p50", "p95", "p99", "max"] {
            assert!(none["latency"][field].as_f64().unwrap() > 0.0, "{field}");
        }
        assert_eq!(run.json["expiry"], Value::Null);
    }
}

#[tokio::test]
async fn single_flight_runs_exactly_one_query_and_the_others_wait_for_it() {
    for kind in BOTH {
        let db = seeded_database(kind, "st_flight").await;
        let prefix = TestPrefix::new("st_flight");
        for _ in 0..2 {
            let run = stampede(&db, &prefix, &["--mode", "single-flight", "--concurrency", "50"]);
            assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
            let flight = mode(&run, "single-flight");
            assert_eq!(queries(flight), 1, "{kind:?}: {flight}");
            assert_eq!(flight["waited"], 49);
            assert_eq!(flight["cache_hits"], 0, "each run starts cold");
        }
        let run = stampede(
            &db,
            &prefix,
            &["--mode", "single-flight", "--concurrency", "20", "--rounds", "3"],
        );
        let flight = mode(&run, "single-flight");
        assert_eq!(flight["queries_per_round"], serde_json::json!([1, 1, 1]));
        assert_eq!(flight["requests"], 60);
    }
}

#[tokio::test]
async fn the_valkey_lock_runs_exactly_one_query_and_leaves_no_lock_behind() {
    for kind in BOTH {
        let db = seeded_database(kind, "st_lock").await;
        let prefix = TestPrefix::new("st_lock");
        let run = stampede(&db, &prefix, &["--mode", "lock", "--concurrency", "50"]);
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let lock = mode(&run, "lock");
        assert_eq!(queries(lock), 1, "{kind:?}: {lock}");
        assert_eq!(lock["fell_back"], 0);
        assert_eq!(lock["waited"], 49);
        assert_eq!(lock["counts"]["locks_lost"], 0);
        assert_eq!(run.json["lock"]["release"], "delifeq", "Valkey 9 has DELIFEQ");
        let value_key = run.json["keys"]["value"].as_str().unwrap().to_string();
        assert_eq!(prefix.keys(), vec![value_key], "only the cached rows remain");
    }
}

/// Starts `stampede --mode lock --keep-cache` for the same key; does not wait.
fn start_lock_process(db: &TestDatabase, prefix: &TestPrefix) -> Child {
    stampede_command(
        &db.url(),
        prefix,
        &valkey_url(),
        &["--mode", "lock", "--keep-cache", "--concurrency", "50"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

#[tokio::test]
async fn two_processes_started_together_with_the_lock_run_one_query_between_them() {
    for kind in BOTH {
        let db = seeded_database(kind, "st_two").await;
        let prefix = TestPrefix::new("st_two");
        // A fresh prefix: the key is cold, and --keep-cache stops either process
        // from deleting what the other one filled.
        let first = start_lock_process(&db, &prefix);
        let second = start_lock_process(&db, &prefix);
        let runs: Vec<JsonRun> = tokio::task::spawn_blocking(move || {
            [first, second]
                .into_iter()
                .map(|child| JsonRun::from_output(&child.wait_with_output().unwrap()))
                .collect()
        })
        .await
        .unwrap();
        let mut total = 0;
        for run in &runs {
            assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
            let lock = mode(run, "lock");
            assert_eq!(lock["requests"], 50);
            assert_eq!(lock["fell_back"], 0, "{lock}");
            assert_eq!(lock["consistent"], true);
            total += queries(lock);
        }
        // The one that finds the cache filled reports 0.
        assert_eq!(total, 1, "{kind:?}");
        assert_eq!(prefix.keys().len(), 1, "{:?}", prefix.keys());
    }
}

#[tokio::test]
async fn a_fleet_started_with_processes_runs_one_query_with_the_lock_and_at_most_one_per_process_with_single_flight() {
    for kind in BOTH {
        let db = seeded_database(kind, "st_fleet").await;
        let prefix = TestPrefix::new("st_fleet");
        let run = stampede(
            &db,
            &prefix,
            &["--mode", "lock", "--processes", "3", "--concurrency", "6"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let lock = mode(&run, "lock");
        assert_eq!(lock["requests"], 18);
        assert_eq!(queries(lock), 1, "{kind:?}: {lock}");
        let per_process: Vec<u64> = lock["queries_per_process"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        assert_eq!(per_process.len(), 3);
        assert_eq!(per_process.iter().sum::<u64>(), 1);
        assert_eq!(lock["latency"]["count"], 18, "every copy's latencies are merged");
        assert_eq!(lock["consistent"], true);
        assert_eq!(run.json["processes"], 3);

        let run = stampede(
            &db,
            &prefix,
            &["--mode", "single-flight", "--processes", "3", "--concurrency", "6"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let flight = mode(&run, "single-flight");
        let per_process = flight["queries_per_process"].as_array().unwrap();
        assert!(per_process.iter().all(|n| n.as_u64().unwrap() <= 1), "{flight}");
        assert!((1..=3).contains(&queries(flight)), "{flight}");
        assert!(
            !prefix.keys().iter().any(|k| k.contains(":lock:")),
            "{:?}",
            prefix.keys()
        );
    }
}

#[tokio::test]
async fn every_request_gets_the_rows_a_direct_read_returns() {
    for kind in BOTH {
        let db = seeded_database(kind, "st_rows").await;
        let prefix = TestPrefix::new("st_rows");
        let (digest, rows) = direct_read_digest(&db).await;
        assert_eq!(rows, 10);
        let run = stampede(&db, &prefix, &["--mode", "all", "--concurrency", "50"]);
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        assert_eq!(run.json["reference"]["digest"], digest.as_str());
        assert_eq!(run.json["reference"]["rows"], 10);
        let modes: Vec<&Value> = run.json["modes"]
            .as_array()
            .unwrap()
            .iter()
            .chain(run.json["expiry"]["modes"].as_array().unwrap())
            .collect();
        assert_eq!(modes.len(), 5, "none, single-flight, lock; none and xfetch on expiry");
        for mode in modes {
            assert_eq!(mode["distinct_results"], 1, "{mode}");
            assert_eq!(mode["mismatched_requests"], 0);
            assert_eq!(mode["consistent"], true);
        }
        let value_key = run.json["keys"]["value"].as_str().unwrap();
        let xfetch_key = run.json["keys"]["xfetch"].as_str().unwrap();
        let keys = prefix.keys();
        assert!(!keys.is_empty());
        assert!(
            keys.iter().all(|k| k == value_key || k == xfetch_key),
            "only cached rows remain, no lock: {keys:?}"
        );
    }
}

#[tokio::test]
async fn xfetch_refreshes_a_hot_key_before_it_expires_and_counts_every_query() {
    let db = seeded_database(DatabaseKind::Postgres, "st_xfetch").await;
    let prefix = TestPrefix::new("st_xfetch");
    // 100 tasks at one request per 20 ms each and beta 5: an early refresh is all but certain.
    let run = stampede(
        &db,
        &prefix,
        &["--mode", "xfetch", "--concurrency", "100", "--beta", "5"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.json["modes"], serde_json::json!([]));
    let expiry = &run.json["expiry"];
    let none = &expiry["modes"][0];
    let xfetch = &expiry["modes"][1];
    assert_eq!(
        (none["mode"].as_str(), xfetch["mode"].as_str()),
        (Some("none"), Some("xfetch"))
    );
    // Without protection the entry expires under traffic: somebody misses.
    assert!(none["misses"].as_u64().unwrap() >= 1, "{none}");
    assert_eq!(none["counts"]["refreshed_early"], 0);
    assert!(xfetch["counts"]["refreshed_early"].as_u64().unwrap() >= 1, "{xfetch}");
    for mode in [none, xfetch] {
        assert_eq!(
            queries(mode),
            mode["misses"].as_u64().unwrap() + mode["counts"]["refreshed_early"].as_u64().unwrap(),
            "every query is a miss or an early refresh: {mode}"
        );
        assert!(mode["requests"].as_u64().unwrap() > 1000, "{mode}");
        assert_eq!(mode["consistent"], true);
    }
    assert!(expiry["expire_after_ms"].as_f64().unwrap() >= 1000.0);
}

#[tokio::test]
async fn with_valkey_unreachable_requests_still_complete_and_the_lock_reports_it_could_not_take_locks() {
    let db = seeded_database(DatabaseKind::MySql, "st_novalkey").await;
    let prefix = TestPrefix::new("st_novalkey");
    let run = JsonRun::from_output(
        &stampede_command(
            &db.url(),
            &prefix,
            "redis://127.0.0.1:1",
            &["--concurrency", "20", "--connect-timeout", "0.5"],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(run.code, Some(8), "{}", run.stderr);
    let none = mode(&run, "none");
    assert_eq!(queries(none), 20);
    assert_eq!(none["counts"]["cache_unavailable"], 20);
    // In-process coalescing needs no cache, but without one it only merges
    // loads that overlap: a request that starts after a load landed loads again.
    let flight = mode(&run, "single-flight");
    assert!(queries(flight) < 20, "{flight}");
    assert!(flight["waited"].as_u64().unwrap() >= 1, "{flight}");
    assert_eq!(queries(flight), flight["counts"]["loaded"].as_u64().unwrap());
    let lock = mode(&run, "lock");
    assert_eq!(queries(lock), 20);
    assert_eq!(lock["fell_back"], 20);
    assert_eq!(lock["counts"]["fell_back_lock_unavailable"], 20);
    assert_eq!(run.json["lock"]["release"], Value::Null);
    assert_eq!(
        run.json["expiry_skipped"],
        "the expiry scenario needs Valkey, which did not answer"
    );
    assert!(
        run.stderr.contains(
            "warning: Valkey lock: could not take locks (Valkey did not answer); 20 request(s) fell back to the database\n"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.ends_with(
            "error: could not compare: Valkey did not answer, so every request went to the database and the lock mode could not take locks; start Valkey (`just up`) and run again\n"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_input_is_rejected_before_anything_is_written() {
    let prefix = TestPrefix::new("st_bad");
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["--concurrency", "0"], "--concurrency must be from 1 to 10000 (got 0)"),
        (
            &["--concurrency", "10001"],
            "--concurrency must be from 1 to 10000 (got 10001)",
        ),
        (&["--rounds", "0"], "--rounds must be from 1 to 1000 (got 0)"),
        (&["--processes", "9"], "--processes must be from 1 to 8 (got 9)"),
        (
            &["--lock-ttl-ms", "5"],
            "--lock-ttl-ms must be from 10 to 600000 (got 5)",
        ),
        (
            &["--beta", "0"],
            "--beta must be above 0 and at most 10 (got 0); 1 is XFetch's usual value",
        ),
        (
            &["--keep-cache"],
            "--keep-cache needs one --mode (with all, the first mode would warm the key for the others)",
        ),
        (
            &["--mode", "xfetch", "--processes", "2"],
            "--mode xfetch runs in one process; drop --processes or choose another --mode",
        ),
    ];
    for (args, message) in cases {
        // No database or Valkey is reachable here: validation comes first.
        let output = cli_against(
            dir.path(),
            "mysql://nobody:nothing@127.0.0.1:1/none",
            &prefix,
            "redis://127.0.0.1:1",
            &[&["stampede"], args].concat(),
        )
        .output()
        .unwrap();
        assert_eq!(
            (output.status.code(), stderr(&output)),
            (Some(6), format!("error: {message}\n")),
            "{args:?}"
        );
    }
    let output = workshop_cli(dir.path())
        .args(["stampede", "--mode", "everything"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("invalid value 'everything' for '--mode <MODE>'"));
    assert!(prefix.keys().is_empty());
}

#[tokio::test]
async fn the_table_puts_the_modes_side_by_side() {
    let db = seeded_database(DatabaseKind::Postgres, "st_table").await;
    let prefix = TestPrefix::new("st_table");
    let output = cli_against(
        &std::env::temp_dir(),
        &db.url(),
        &prefix,
        &valkey_url(),
        &["stampede", "--concurrency", "30", "--mode", "lock"],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "One cold key: 30 concurrent requests",
        "database queries",
        "fell back",
        "p99 ms",
        "Valkey lock",
        "database queries: Valkey lock 1 query",
        "released with DELIFEQ",
        "every request got the same 10 rows as a direct read",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("\u{1b}["), "no colour when piped / NO_COLOR");
}
