//! `stats --read-ratio` (mixed traffic) and `--out` (the saved-run format)
//! against the real services, on both databases: the writes go through the
//! ledger so `clean` restores every price, invalidate-on-write costs hits
//! that write-through keeps, and the saved run holds the per-second series.

mod support;

use serde_json::Value;
use sqlx::Connection;
use support::{cli_against, seeded_database, stderr, stdout, valkey_url, JsonRun, TestDatabase, TestPrefix, BOTH};
use workshop_cli::config::DatabaseKind;

/// Every product's id and price as text, in id order: equal before and after `clean`.
async fn prices(db: &TestDatabase) -> Vec<(i32, String)> {
    let sql = "SELECT id, CAST(price AS CHAR(20)) FROM products ORDER BY id";
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
            let sql = "SELECT id, CAST(price AS VARCHAR(20)) FROM products ORDER BY id";
            sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
        }
    }
}

fn run(db: &TestDatabase, prefix: &TestPrefix, dir: &std::path::Path, args: &[&str]) -> JsonRun {
    let output = cli_against(dir, &db.url(), prefix, &valkey_url(), args)
        .arg("--json")
        .output()
        .unwrap();
    JsonRun::from_output(&output)
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a count: {value}"))
}

#[tokio::test]
async fn a_fifth_of_the_requests_write_and_clean_restores_every_price() {
    for kind in BOTH {
        let db = seeded_database(kind, "mixed_clean").await;
        let prefix = TestPrefix::new("mixed_clean");
        let dir = tempfile::tempdir().unwrap();
        let before = prices(&db).await;
        let out = dir.path().join("run.json");
        let stats = run(
            &db,
            &prefix,
            dir.path(),
            &[
                "stats",
                "--requests",
                "2000",
                "--read-ratio",
                "80",
                "--keys",
                "100",
                "--concurrency",
                "4",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(stats.code, Some(0), "{kind:?}: {}", stats.stderr);
        let run_stats = &stats.json["run"];
        let writes = &run_stats["writes"];
        assert_eq!(writes["mode"], "write-through", "{writes}");
        assert_eq!(stats.json["settings"]["read_ratio"], 80);
        let (reads, written) = (count(&writes["reads"]), count(&writes["writes"]));
        assert_eq!(reads + written, 2000, "{writes}");
        assert_eq!(count(&run_stats["requests"]), reads, "requests counts the reads");
        // 400 expected; 5 standard deviations (about 18 each) either side.
        assert!((310..=490).contains(&written), "{kind:?}: {written} writes of 2000");
        assert!(count(&writes["products_changed"]) > 10, "{writes}");
        assert!(writes["latency"]["p99"].as_f64().unwrap() > 0.0, "{writes}");
        assert!(writes["stale_reads"].is_u64(), "{writes}");
        let timeline_writes: u64 = run_stats["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| count(&s["writes"]))
            .sum();
        assert_eq!(timeline_writes, written, "every write is in its second");
        let changed = prices(&db).await;
        assert_ne!(changed, before, "{kind:?}: the writes changed prices");

        // The saved run: the format, the command, the options and the series.
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(saved["format"], "workshop-cli saved run");
        assert_eq!(saved["version"], 1);
        assert_eq!(saved["command"], "stats");
        assert_eq!(saved["options"]["read_ratio"], 80);
        assert_eq!(saved["outcome"]["run"]["writes"], *writes);
        let series = &saved["series"][0];
        let seconds = series["second"].as_array().unwrap().len();
        assert!(seconds >= 1);
        for column in ["requests_per_second", "hit_rate", "p50_ms", "p99_ms"] {
            assert_eq!(series[column].as_array().unwrap().len(), seconds, "{column}: {series}");
        }
        assert!(series["requests_per_second"][0].as_f64().unwrap() > 0.0, "{series}");

        let cleaned = run(&db, &prefix, dir.path(), &["clean"]);
        assert_eq!(cleaned.code, Some(0), "{kind:?}: {}", cleaned.stderr);
        assert_eq!(prices(&db).await, before, "{kind:?}: clean restores every price");
    }
}

#[tokio::test]
async fn invalidate_on_write_costs_hits_that_write_through_keeps() {
    for kind in BOTH {
        let db = seeded_database(kind, "mixed_modes").await;
        let prefix = TestPrefix::new("mixed_modes");
        let dir = tempfile::tempdir().unwrap();
        let mut hit_rates = Vec::new();
        for mode in ["write-through", "invalidate"] {
            let stats = run(
                &db,
                &prefix,
                dir.path(),
                &[
                    "stats",
                    "--requests",
                    "2000",
                    "--read-ratio",
                    "70",
                    "--write-mode",
                    mode,
                    "--keys",
                    "100",
                    "--concurrency",
                    "1",
                    "--fresh",
                ],
            );
            assert_eq!(stats.code, Some(0), "{kind:?} {mode}: {}", stats.stderr);
            let writes = &stats.json["run"]["writes"];
            assert_eq!(writes["mode"], mode);
            // One task: every read starts after the previous write's cache step.
            assert_eq!(writes["stale_reads"], 0, "{kind:?} {mode}: {writes}");
            assert_eq!(writes["cache_step_failures"], 0, "{writes}");
            hit_rates.push(stats.json["run"]["hit_rate"]["overall"].as_f64().unwrap());
        }
        let (through, invalidate) = (hit_rates[0], hit_rates[1]);
        // 100 keys fit L1: write-through misses only each key's first read;
        // invalidating makes the next read of every written key a miss.
        assert!(through > 0.85, "{kind:?}: write-through hit rate {through}");
        assert!(
            invalidate < through - 0.15,
            "{kind:?}: invalidate {invalidate} versus write-through {through}"
        );
        let cleaned = run(&db, &prefix, dir.path(), &["clean"]);
        assert_eq!(cleaned.code, Some(0), "{}", cleaned.stderr);
    }
}

#[tokio::test]
async fn a_bad_read_ratio_or_out_path_is_refused_before_anything_is_written() {
    let db = seeded_database(DatabaseKind::MySql, "mixed_bad").await;
    let prefix = TestPrefix::new("mixed_bad");
    let dir = tempfile::tempdir().unwrap();
    let before = prices(&db).await;
    let cases: [(&[&str], &str); 3] = [
        (
            &["stats", "--read-ratio", "120"],
            "error: --read-ratio must be from 0 to 100 percent reads (got 120); e.g. --read-ratio 80",
        ),
        (
            &["stats", "--write-mode", "invalidate"],
            "error: --write-mode invalidate needs writes: add --read-ratio below 100 (e.g. --read-ratio 80)",
        ),
        (
            &["stats", "--read-ratio", "50", "--out", "/nonexistent-folder/run.json"],
            "error: --out /nonexistent-folder/run.json: the folder /nonexistent-folder does not exist; create it or choose another --out path",
        ),
    ];
    for (args, message) in cases {
        let output = cli_against(dir.path(), &db.url(), &prefix, &valkey_url(), args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(6), "{args:?}: {}", stderr(&output));
        assert_eq!(stderr(&output).trim(), message);
        assert_eq!(stdout(&output), "");
    }
    let output = cli_against(
        dir.path(),
        &db.url(),
        &prefix,
        &valkey_url(),
        &["stats", "--write-mode", "later"],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(prices(&db).await, before, "nothing was written");
}
