//! Exercise 1 against the real services, on both databases.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{
    cli_against, run_json, seeded_database, stderr, stdout, valkey_url, wait_until, wait_until_quiet, JsonRun,
    PrivateValkey, TestDatabase, TestPrefix, BOTH,
};
use workshop_cli::config::DatabaseKind;

fn cache_aside(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    cache_aside_on(db, prefix, &valkey_url(), args)
}

fn cache_aside_on(db: &TestDatabase, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> JsonRun {
    run_json(db, prefix, valkey, &[&["cache-aside"], args].concat())
}

fn sources(run: &JsonRun) -> Vec<String> {
    run.json["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in {}: {}", run.json, run.stderr))
        .iter()
        .map(|r| r["source"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_first_read_misses_and_later_reads_hit() {
    for kind in BOTH {
        let db = seeded_database(kind, "hitmiss").await;
        let prefix = TestPrefix::new("hitmiss");
        let run = cache_aside(&db, &prefix, &["--id", "3797", "--runs", "5"]);
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        assert_eq!(sources(&run), ["database", "cache", "cache", "cache", "cache"]);
        assert_eq!(
            run.json["result"]["columns"],
            json!(["airport_id", "iata", "icao", "name"])
        );
        assert_eq!(run.json["result"]["rows"], json!([[3797, null, "FSFA", "FARQUHAR"]]));
        let ttl = run.json["runs"][4]["ttl_left_seconds"].as_f64().unwrap();
        assert!(ttl > 250.0 && ttl <= 300.0, "{ttl}");
        assert_eq!(run.json["summary"]["cache"]["count"], 4);
        // One miss plus the baseline reads (as many as --runs).
        assert_eq!(run.json["summary"]["database"]["count"], 6);
        assert!(run.json["summary"]["speedup"].as_f64().unwrap() > 0.0);
        assert_eq!(run.json["consistent"], true);
        assert_eq!(prefix.keys(), vec![run.json["key"].as_str().unwrap().to_string()]);
    }
}

#[tokio::test]
async fn a_second_process_hits_on_its_first_read() {
    for kind in BOTH {
        let db = seeded_database(kind, "second").await;
        let prefix = TestPrefix::new("second");
        let first = cache_aside(&db, &prefix, &["--runs", "1"]);
        assert_eq!(sources(&first), ["database"], "{}", first.stderr);
        let second = cache_aside(&db, &prefix, &["--runs", "3"]);
        assert_eq!(sources(&second), ["cache", "cache", "cache"]);
        assert_eq!(first.json["key"], second.json["key"]);
        // A hit decodes to exactly what the database returned.
        assert_eq!(first.json["result"], second.json["result"]);
    }
}

#[tokio::test]
async fn fresh_deletes_the_entry_so_the_first_read_misses() {
    let db = seeded_database(DatabaseKind::Postgres, "fresh").await;
    let prefix = TestPrefix::new("fresh");
    cache_aside(&db, &prefix, &["--runs", "1"]);
    let run = cache_aside(&db, &prefix, &["--runs", "2", "--fresh"]);
    assert_eq!(sources(&run), ["database", "cache"]);
}

#[tokio::test]
async fn ttl_expiry_turns_a_hit_into_a_miss() {
    for kind in BOTH {
        let db = seeded_database(kind, "ttl").await;
        let prefix = TestPrefix::new("ttl");
        let run = cache_aside(&db, &prefix, &["--runs", "2", "--ttl", "1"]);
        assert_eq!(sources(&run), ["database", "cache"]);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let run = cache_aside(&db, &prefix, &["--runs", "2", "--ttl", "1"]);
        assert_eq!(sources(&run), ["database", "cache"]);
    }
}

#[tokio::test]
async fn user_sql_with_named_parameters_runs_on_both_dialects() {
    for kind in BOTH {
        let db = seeded_database(kind, "namedsql").await;
        let prefix = TestPrefix::new("namedsql");
        let sql = "SELECT icao, name FROM airport WHERE icao = :icao AND airport_id >= :min AND airport_id <= :max";
        let run = cache_aside(
            &db,
            &prefix,
            &[
                "--sql",
                sql,
                "--param",
                "icao=FSFA",
                "--param",
                "min=1",
                "--param",
                "max=9999",
                "--runs",
                "2",
            ],
        );
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(run.json["result"]["rows"], json!([["FSFA", "FARQUHAR"]]));
        let statement = run.json["query"]["statement"].as_str().unwrap();
        let expected = match kind {
            DatabaseKind::MySql => {
                "SELECT icao, name FROM airport WHERE icao = ? AND airport_id >= ? AND airport_id <= ?"
            }
            DatabaseKind::Postgres => {
                "SELECT icao, name FROM airport WHERE icao = $1 AND airport_id >= $2 AND airport_id <= $3"
            }
        };
        assert_eq!(statement, expected);
        assert_eq!(sources(&run), ["database", "cache"]);
    }
}

#[tokio::test]
async fn injection_in_a_parameter_is_bound_as_a_value_not_executed() {
    for kind in BOTH {
        let db = seeded_database(kind, "inject").await;
        let prefix = TestPrefix::new("inject");
        let evil = "icao=FSFA' OR '1'='1'; DROP TABLE airport; --";
        let run = cache_aside(
            &db,
            &prefix,
            &["--sql", "SELECT name FROM airport WHERE icao = :icao", "--param", evil],
        );
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(run.json["result"]["rows"], json!([]));
        assert_eq!(run.json["empty_result"], true);
        // The table is still there.
        let again = cache_aside(&db, &prefix, &["--id", "3797", "--runs", "1"]);
        assert_eq!(again.json["result"]["rows"][0][3], "FARQUHAR");
    }
}

#[tokio::test]
async fn rows_convert_to_json_faithfully_and_a_hit_returns_the_same_values() {
    for kind in BOTH {
        let db = seeded_database(kind, "fidelity").await;
        let prefix = TestPrefix::new("fidelity");
        let datetime = if kind == DatabaseKind::MySql {
            "DATETIME"
        } else {
            "TIMESTAMP"
        };
        let sql = format!(
            "SELECT CAST(12.50 AS DECIMAL(10,2)) AS price, CAST('2024-05-01 07:30:00' AS {datetime}) AS departure, \
             CAST('2024-05-01' AS DATE) AS day, CAST(NULL AS CHAR(3)) AS iata, 'Zürich ✈ \"q\"' AS city, \
             CAST(:n AS DECIMAL(20,0)) AS big, :k AS k"
        );
        let args = [
            "--sql",
            sql.as_str(),
            "--param",
            "n=12345678901234567890",
            "--param",
            "k=7",
            "--runs",
            "1",
        ];
        let miss = cache_aside(&db, &prefix, &args);
        assert_eq!(miss.code, Some(0), "{kind:?}: {}", miss.stderr);
        assert_eq!(sources(&miss), ["database"]);
        let row = &miss.json["result"]["rows"][0];
        assert_eq!(row[0], "12.50", "{kind:?}: decimals are exact strings");
        assert_eq!(row[1], "2024-05-01T07:30:00");
        assert_eq!(row[2], "2024-05-01");
        assert_eq!(row[3], Value::Null);
        assert_eq!(row[4], "Zürich ✈ \"q\"");
        assert_eq!(row[5], "12345678901234567890");
        assert_eq!(row[6], 7);
        let hit = cache_aside(&db, &prefix, &args);
        assert_eq!(sources(&hit), ["cache"]);
        assert_eq!(hit.json["result"], miss.json["result"]);
    }
}

#[tokio::test]
async fn expensive_builtin_queries_run_on_both_databases() {
    for kind in BOTH {
        let db = seeded_database(kind, "expensive").await;
        let prefix = TestPrefix::new("expensive");
        let run = cache_aside(&db, &prefix, &["--query", "busiest-routes", "--runs", "3"]);
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        assert_eq!(
            run.json["result"]["columns"],
            json!(["from_airport", "to_airport", "bookings", "revenue"])
        );
        assert_eq!(run.json["result"]["rows"].as_array().unwrap().len(), 10);
        assert!(
            run.json["result"]["rows"][0][3].is_string(),
            "revenue is an exact decimal string"
        );
        let run = cache_aside(
            &db,
            &prefix,
            &["--query", "passenger-bookings", "--id", "1", "--runs", "2"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        assert_eq!(sources(&run), ["database", "cache"]);
    }
}

#[tokio::test]
async fn the_same_query_gives_the_same_rows_on_mysql_and_postgres() {
    let prefix_a = TestPrefix::new("same_a");
    let prefix_b = TestPrefix::new("same_b");
    let mysql = seeded_database(DatabaseKind::MySql, "same").await;
    let postgres = seeded_database(DatabaseKind::Postgres, "same").await;
    let a = cache_aside(&mysql, &prefix_a, &["--query", "busiest-routes", "--runs", "1"]);
    let b = cache_aside(&postgres, &prefix_b, &["--query", "busiest-routes", "--runs", "1"]);
    assert_eq!(a.json["result"], b.json["result"]);
}

#[tokio::test]
async fn an_empty_result_is_cached_too() {
    let db = seeded_database(DatabaseKind::MySql, "empty").await;
    let prefix = TestPrefix::new("empty");
    let args = [
        "--sql",
        "SELECT * FROM airport WHERE icao = :icao",
        "--param",
        "icao=ZZZZ",
        "--runs",
        "2",
    ];
    let run = cache_aside(&db, &prefix, &args);
    assert_eq!(sources(&run), ["database", "cache"]);
    assert_eq!(run.json["empty_result"], true);
    assert_eq!(run.json["result"]["rows"], json!([]));
}

#[tokio::test]
async fn concurrent_tasks_share_the_pools_and_count_every_read() {
    let db = seeded_database(DatabaseKind::Postgres, "concurrent").await;
    let prefix = TestPrefix::new("concurrent");
    let run = cache_aside(&db, &prefix, &["--runs", "500", "--concurrency", "8", "--fresh"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let total: u64 = run.json["sources"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 500);
    assert!(run.json["sources"]["cache"].as_u64().unwrap() >= 400);
    assert_eq!(run.json["concurrency"], 8);
    assert!(run.json["throughput_per_second"].as_f64().unwrap() > 0.0);
    for field in ["p50", "p95", "p99", "min", "max", "mean"] {
        assert!(run.json["summary"]["cache"][field].as_f64().unwrap() > 0.0, "{field}");
    }
}

#[tokio::test]
async fn valkey_killed_mid_run_loses_no_read_and_hits_resume_when_it_returns() {
    for kind in BOTH {
        let db = seeded_database(kind, "outage").await;
        let mut valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("outage", &valkey.url());
        let url = valkey.url();
        let dir = tempfile::tempdir().unwrap();
        let child = cli_against(
            dir.path(),
            &db.url(),
            &prefix,
            &url,
            &[
                "cache-aside",
                "--runs",
                "600",
                "--interval",
                "10",
                "--json",
                "--connect-timeout",
                "0.5",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        // A read has hit the entry the first one stored: the run is under way.
        assert!(wait_until(Duration::from_secs(20), || valkey.keyspace_hits() > 0));
        valkey.kill();
        // The child knocks on the dead port: it has seen the outage.
        assert!(
            valkey.wait_for_a_reconnect(Duration::from_secs(10)),
            "{kind:?}: no reconnect"
        );
        valkey.restart();
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {}", stderr(&output));
        let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
        let total: u64 = json["sources"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(total, 600, "every read was served");
        let fallbacks = json["sources"]["database_cache_unavailable"].as_u64().unwrap_or(0);
        assert!(fallbacks > 0, "{}", json["sources"]);
        assert!(
            stderr(&output).contains("Valkey did not answer for"),
            "{}",
            stderr(&output)
        );
        // In order: hits, then database reads while Valkey was gone, then hits again.
        let timeline: Vec<&str> = json["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["source"].as_str().unwrap())
            .collect();
        let outage = timeline
            .iter()
            .position(|s| *s == "database_cache_unavailable")
            .unwrap();
        assert!(timeline[..outage].contains(&"cache"), "{timeline:?}");
        assert!(timeline[outage..].contains(&"cache"), "hits resume: {timeline:?}");
    }
}

#[tokio::test]
async fn a_hung_valkey_costs_a_few_timeouts_then_the_breaker_skips_it_and_hits_resume() {
    for kind in BOTH {
        let db = seeded_database(kind, "hung").await;
        let valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("hung", &valkey.url());
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let child = cli_against(
            dir.path(),
            &db.url(),
            &prefix,
            &valkey.url(),
            &["cache-aside", "--runs", "3000", "--interval", "1", "--json"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let mut child = Some(child);
        let running = |child: &mut Option<std::process::Child>| child.as_mut().unwrap().try_wait().unwrap().is_none();
        assert!(wait_until(Duration::from_secs(20), || !prefix.keys().is_empty()));
        valkey.pause();
        // Commands pile up unread, then stop coming: the breaker is open...
        let quiet = wait_until_quiet(Duration::from_secs(10), Duration::from_millis(500), || {
            valkey.unread_bytes()
        })
        .expect("the child stops sending to the hung server");
        // ...until the cool-down ends and one probe is sent.
        assert!(
            wait_until(Duration::from_secs(10), || valkey.unread_bytes() > quiet),
            "{kind:?}: no probe"
        );
        assert!(
            running(&mut child),
            "{kind:?}: the run was still going while Valkey hung"
        );
        valkey.resume();
        let output = child.take().unwrap().wait_with_output().unwrap();
        let elapsed = started.elapsed();
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {}", stderr(&output));
        let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
        let sources = &json["sources"];
        let total: u64 = sources.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(total, 3000, "no read failed: {sources}");
        let faults = &json["valkey_faults"];
        assert!(faults["openings"].as_u64().unwrap() >= 1, "{faults}");
        assert!(faults["timeouts"].as_u64().unwrap() >= 3, "{faults}");
        assert!(faults["skipped"].as_u64().unwrap() > 0, "{faults}");
        // Each unanswered read would have waited the 2 s connect timeout before;
        // now the skipped ones run at database speed.
        assert!(
            sources["database_cache_unavailable"].as_u64().unwrap() > 10,
            "{sources}"
        );
        assert!(elapsed < Duration::from_secs(30), "{kind:?}: {elapsed:?}");
        let timeline: Vec<&str> = json["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["source"].as_str().unwrap())
            .collect();
        let outage = timeline
            .iter()
            .position(|s| *s == "database_cache_unavailable")
            .unwrap();
        assert!(timeline[outage..].contains(&"cache"), "hits resume: {timeline:?}");
        let err = stderr(&output);
        assert!(err.contains("warning: Valkey stopped answering: "), "{err}");
        assert!(
            err.contains("timed out after 250 ms, the circuit breaker opened"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn the_same_sql_on_mariadb_and_postgres_gets_each_its_own_rows_from_one_valkey() {
    let mariadb = TestDatabase::create(DatabaseKind::MySql, "source").await;
    let postgres = TestDatabase::create(DatabaseKind::Postgres, "source").await;
    let prefix = TestPrefix::new("source");
    let sql = ["--sql", "SELECT VERSION() AS version", "--runs", "2"];
    let first = cache_aside(&mariadb, &prefix, &sql);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(sources(&first), ["database", "cache"]);
    let second = cache_aside(&postgres, &prefix, &sql);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(
        sources(&second),
        ["database", "cache"],
        "a cold miss, not MariaDB's entry"
    );
    assert_eq!(second.json["consistent"], true, "{}", second.stderr);
    let version = |run: &JsonRun| run.json["result"]["rows"][0][0].as_str().unwrap().to_string();
    assert!(version(&first).contains("MariaDB"), "{}", version(&first));
    assert!(version(&second).starts_with("PostgreSQL"), "{}", version(&second));
    let (mariadb_key, postgres_key) = (
        first.json["key"].as_str().unwrap(),
        second.json["key"].as_str().unwrap(),
    );
    assert_ne!(mariadb_key, postgres_key);
    assert!(mariadb_key.starts_with(&prefix.source(&mariadb)), "{mariadb_key}");
    assert!(postgres_key.starts_with(&prefix.source(&postgres)), "{postgres_key}");
    assert!(prefix.source(&mariadb).starts_with(&format!("{}mysql-", prefix.prefix)));
    assert!(prefix
        .source(&postgres)
        .starts_with(&format!("{}postgres-", prefix.prefix)));
    // MariaDB's entry is still its own: a third run hits with MariaDB's rows.
    let third = cache_aside(&mariadb, &prefix, &sql);
    assert_eq!(sources(&third), ["cache", "cache"]);
    assert_eq!(version(&third), version(&first));
    let mut keys = prefix.keys();
    keys.sort();
    let mut expected = vec![mariadb_key.to_string(), postgres_key.to_string()];
    expected.sort();
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn with_valkey_unreachable_every_read_falls_back_and_the_run_says_it_could_not_compare() {
    let db = seeded_database(DatabaseKind::MySql, "novalkey").await;
    let prefix = TestPrefix::new("novalkey");
    let run = cache_aside_on(
        &db,
        &prefix,
        "redis://127.0.0.1:1",
        &["--runs", "3", "--connect-timeout", "0.5"],
    );
    assert_eq!(run.code, Some(8));
    assert_eq!(sources(&run), ["database_cache_unavailable"; 3]);
    assert_eq!(run.json["summary"]["speedup"], Value::Null);
    assert_eq!(run.json["summary"]["not_compared"], "no read was served by the cache");
    assert!(
        run.stderr
            .contains("error: could not compare: the cache was unavailable for every read"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_an_exit_code() {
    let db = TestDatabase::create(DatabaseKind::Postgres, "badinput").await;
    let prefix = TestPrefix::new("badinput");
    let run = cache_aside(&db, &prefix, &["--id", "0"]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (Some(6), "error: --id must be a positive whole number (got 0)\n")
    );
    let run = cache_aside(&db, &prefix, &["--runs", "0"]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (Some(6), "error: --runs must be from 1 to 10000000 (got 0)\n")
    );
    let run = cache_aside(&db, &prefix, &["--sql", "SELECT :icao"]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            Some(6),
            "error: the query uses :icao but no value was given; add --param icao=VALUE\n"
        )
    );
    // The database exists but was never seeded.
    let run = cache_aside(&db, &prefix, &["--runs", "1"]);
    assert_eq!(run.code, Some(4));
    assert!(
        run.stderr.starts_with("error: the workshop tables are missing ("),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .ends_with("; run `workshop-cli seed` (or `just seed`) first\n"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn the_tables_show_rows_runs_summary_and_histogram() {
    let db = seeded_database(DatabaseKind::MySql, "tables").await;
    let prefix = TestPrefix::new("tables");
    let dir = tempfile::tempdir().unwrap();
    let output = cli_against(
        dir.path(),
        &db.url(),
        &prefix,
        &valkey_url(),
        &["cache-aside", "--id", "3797"],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "FARQUHAR",
        "FSFA",
        "Runs",
        "TTL left s",
        "p50 ms",
        "p99 ms",
        "speedup",
        "Latency distribution",
        "█",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("\u{1b}["), "no colour when piped / NO_COLOR");
}
