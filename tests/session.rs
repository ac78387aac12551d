//! Exercise 10 against the real services, on both databases: sessions in
//! Valkey with a sliding expiry, seen by a second process, logged out and
//! seen expiring; the same sessions in a table and the cleanup it needs.

mod support;

use serde_json::Value;
use sqlx::Connection;
use support::{run_json, valkey_url, TestDatabase, TestPrefix, BOTH};
use workshop_cli::config::DatabaseKind;

fn n(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a count: {value}"))
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    }
}

#[tokio::test]
async fn a_session_slides_is_shared_across_processes_and_expires_while_the_table_needs_a_delete() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "session_lesson").await;
        let prefix = TestPrefix::new("session_lesson");
        let run = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["session", "--sessions", "40", "--session-ttl", "1", "--interval", "0.2"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let json = &run.json;

        // Another process read the same session, and after the log out found nothing.
        let second = &json["second_process"];
        assert_eq!(second["found"], true, "{second}");
        assert_eq!(second["user_id"], 42, "{second}");
        assert_ne!(n(&second["pid"]), u64::from(std::process::id()));
        assert_eq!(json["second_process_agrees"], true);
        assert_eq!(json["after_logout"]["found"], false, "{}", json["after_logout"]);

        // The TTL counts down, the read at tick 2 sets it back to the full second, then it expires.
        let ticks = json["expiry"].as_array().unwrap();
        assert_eq!(ticks[0]["action"], "login");
        assert_eq!(ticks.last().unwrap()["action"], "expired", "{ticks:?}");
        let read = ticks
            .iter()
            .position(|t| t["action"] == "read")
            .expect("a sliding read");
        let ttl = |i: usize| ticks[i]["ttl_ms"].as_i64().unwrap();
        assert!(ttl(read) > ttl(read - 1), "{ticks:?}");
        assert!(ttl(read) > 900, "{ticks:?}");
        for i in read + 1..ticks.len() - 1 {
            assert!(ttl(i) <= ttl(i - 1), "{ticks:?}");
        }
        // 1 s after the read at 0.4 s: gone after 1.4 s, within a few ticks more.
        let expired = n(&json["expired_after_ms"]);
        assert!((1400..=3000).contains(&expired), "{expired} ms: {ticks:?}");

        // Half were logged out; the other 20 expired: Valkey dropped them, the table kept them.
        let cleanup = &json["cleanup"];
        assert_eq!(n(&cleanup["expected_expired"]), 20, "{cleanup}");
        assert_eq!(n(&cleanup["valkey_keys_left"]), 0, "{cleanup}");
        assert_eq!(n(&cleanup["database_rows_left"]), 20, "{cleanup}");
        assert_eq!(n(&cleanup["database_rows_deleted"]), 20, "{cleanup}");
        let timings = json["timings"].as_array().unwrap();
        assert_eq!(timings.len(), 3);
        for (timing, expected) in timings.iter().zip([40, 40, 20]) {
            assert_eq!(n(&timing["valkey"]["count"]), expected, "{timing}");
            assert_eq!(n(&timing["database"]["count"]), expected, "{timing}");
        }
        assert!(json["warnings"].as_array().unwrap().is_empty(), "{}", json["warnings"]);

        // Nothing left behind: no rows, no ledger entry, no key.
        assert_eq!(count(&db, "SELECT COUNT(*) FROM workshop_sessions").await, 0);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM workshop_changes").await, 0);
        assert!(prefix.keys().is_empty(), "{:?}", prefix.keys());
    }
}

#[tokio::test]
async fn clean_removes_the_rows_of_a_session_run_that_was_killed() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "session_killed").await;
        let prefix = TestPrefix::new("session_killed");
        let dir = tempfile::tempdir().unwrap();
        let mut child = support::cli_against(
            dir.path(),
            &db.url(),
            &prefix,
            &valkey_url(),
            &[
                "session",
                "--sessions",
                "20",
                "--session-ttl",
                "600",
                "--interval",
                "60",
                "--json",
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        // Wait until the run has written its sessions and watches one for a minute.
        let runtime_db = &db;
        let mut rows = 0;
        for _ in 0..300 {
            let exists = match kind {
                DatabaseKind::MySql => {
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'workshop_sessions' AND table_schema = DATABASE()"
                }
                DatabaseKind::Postgres => "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'workshop_sessions'",
            };
            if count(runtime_db, exists).await > 0 {
                rows = count(runtime_db, "SELECT COUNT(*) FROM workshop_sessions").await;
                if rows == 10 && !prefix.keys().iter().all(|k| !k.ends_with(".watched")) {
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(rows, 10, "{kind:?}: the run never got to its watch");
        child.kill().unwrap();
        child.wait().unwrap();

        let clean = run_json(&db, &prefix, &valkey_url(), &["clean"]);
        assert_eq!(clean.code, Some(0), "{kind:?}: {}", clean.stderr);
        let table = clean.json["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "workshop_sessions")
            .unwrap_or_else(|| panic!("{}", clean.json))
            .clone();
        assert_eq!(n(&table["deleted"]), 1, "{table}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM workshop_sessions").await, 0);
        assert!(prefix.keys().is_empty(), "{:?}", prefix.keys());
    }
}

#[tokio::test]
async fn an_interval_of_zero_is_rejected_before_anything_is_written() {
    let db = TestDatabase::create(DatabaseKind::MySql, "session_bad").await;
    let prefix = TestPrefix::new("session_bad");
    let run = run_json(&db, &prefix, &valkey_url(), &["session", "--interval", "0"]);
    assert_eq!(run.code, Some(6));
    assert_eq!(run.stderr, "error: --interval must be from 0.1 to 60 seconds (got 0)\n");
    assert!(run.stdout.is_empty());
    let run = run_json(&db, &prefix, &valkey_url(), &["session", "--sessions", "0"]);
    assert_eq!(run.code, Some(6));
    assert_eq!(run.stderr, "error: --sessions must be from 1 to 100000 (got 0)\n");
    let run = run_json(&db, &prefix, &valkey_url(), &["session", "--session-ttl", "-1"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let tables = count(
        &db,
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'workshop_sessions' AND table_schema = DATABASE()",
    )
    .await;
    assert_eq!(tables, 0, "a rejected run created the table");
    assert!(prefix.keys().is_empty());
}
