//! Exercise 9 against the real services, on both databases: the sorted set
//! and the SQL aggregate agree after simulated bookings, and the run
//! leaves nothing behind unless asked to.

mod support;

use serde_json::Value;
use sqlx::Connection;
use support::{run_json, seeded_database, stderr, valkey_url, workshop_cli, TestDatabase, TestPrefix, BOTH};
use workshop_cli::config::DatabaseKind;

fn leaderboard(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> support::JsonRun {
    let run = run_json(db, prefix, &valkey_url(), &[&["leaderboard"], args].concat());
    assert_eq!(run.code, Some(0), "{:?}: {}", db.kind, run.stderr);
    run
}

/// The ten busiest departure airports, read by the test itself.
async fn sql_top_ten(db: &TestDatabase) -> Vec<(i64, i64)> {
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.unwrap();
            sqlx::query_as(
                "SELECT CAST(f.`from` AS SIGNED) AS a, COUNT(*) AS n FROM booking b JOIN flight f USING (flight_id) \
                 GROUP BY f.`from` ORDER BY n DESC, a LIMIT 10",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap()
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
            sqlx::query_as(
                "SELECT CAST(f.\"from\" AS BIGINT) AS a, COUNT(*) AS n FROM booking b JOIN flight f USING (flight_id) \
                 GROUP BY f.\"from\" ORDER BY n DESC, a LIMIT 10",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap()
        }
    }
}

async fn bookings(db: &TestDatabase) -> i64 {
    let sql = "SELECT COUNT(*) FROM booking";
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

/// The ten highest scores of the sorted set, read by the test itself.
fn valkey_top_ten(key: &str) -> Vec<(i64, i64)> {
    // The support connection goes to the key's node on a cluster too.
    let mut conn = support::valkey_connection(&valkey_url());
    let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(9)
        .arg("REV")
        .arg("WITHSCORES")
        .query(&mut conn)
        .unwrap();
    entries
        .into_iter()
        .map(|(member, score)| (member.parse().unwrap(), score as i64))
        .collect()
}

/// Counts equal place by place; every airport Valkey lists has SQL's count
/// (or, not in SQL's ten, the count of a tie at the cut-off).
fn assert_same_top(sql: &[(i64, i64)], valkey: &[(i64, i64)], context: &str) {
    assert_eq!(sql.len(), 10, "{context}: {sql:?}");
    let counts = |list: &[(i64, i64)]| list.iter().map(|e| e.1).collect::<Vec<_>>();
    assert_eq!(counts(sql), counts(valkey), "{context}: {sql:?} vs {valkey:?}");
    for (airport, score) in valkey {
        match sql.iter().find(|e| e.0 == *airport) {
            Some(entry) => assert_eq!(entry.1, *score, "{context}: airport {airport}"),
            None => assert_eq!(*score, sql[9].1, "{context}: airport {airport} is not a tie"),
        }
    }
}

#[tokio::test]
async fn the_top_ten_equals_sqls_after_a_thousand_simulated_bookings() {
    for kind in BOTH {
        let db = seeded_database(kind, "leaderboard_top").await;
        let prefix = TestPrefix::new("leaderboard_top");
        let before_bookings = bookings(&db).await;
        let before = sql_top_ten(&db).await;

        let run = leaderboard(
            &db,
            &prefix,
            &["--bookings", "1000", "--top", "10", "--runs", "5", "--keep"],
        );
        let json = &run.json;
        assert_eq!(json["bookings"]["written"], 1000, "{kind:?}");
        assert_eq!(json["bookings"]["counted"], 1000, "{kind:?}");
        assert_eq!(json["after"]["top_agree"], true, "{kind:?}");
        assert_eq!(json["after"]["rank"]["agree"], true, "{kind:?}");
        for side in ["top", "rank"] {
            for engine in ["database", "valkey"] {
                assert_eq!(json["reads"][side][engine]["count"], 5, "{kind:?} {side} {engine}");
                assert!(json["reads"][side][engine]["p99"].as_f64().unwrap() > 0.0);
            }
        }

        // Checked apart from the command: the database and the sorted set as they are now.
        assert_eq!(bookings(&db).await, before_bookings + 1000, "{kind:?}");
        let after = sql_top_ten(&db).await;
        assert_ne!(after, before, "{kind:?}: the bookings did not move the top ten");
        let key = json["key"].as_str().unwrap();
        assert!(key.starts_with(&prefix.source(&db)), "{key}");
        assert_same_top(&after, &valkey_top_ten(key), &format!("{kind:?}"));

        // `clean` removes what --keep kept: the bookings (with their passenger) and the key.
        let dir = tempfile::tempdir().unwrap();
        let cleaned = support::cli_against(dir.path(), &db.url(), &prefix, &valkey_url(), &["clean"])
            .output()
            .unwrap();
        assert_eq!(cleaned.status.code(), Some(0), "{}", stderr(&cleaned));
        assert_eq!(bookings(&db).await, before_bookings, "{kind:?}");
        assert!(prefix.keys().is_empty(), "{kind:?}: {:?}", prefix.keys());
    }
}

#[tokio::test]
async fn a_run_without_keep_leaves_no_booking_and_no_key_behind() {
    for kind in BOTH {
        let db = seeded_database(kind, "leaderboard_clean").await;
        let prefix = TestPrefix::new("leaderboard_clean");
        let before = bookings(&db).await;
        let run = leaderboard(&db, &prefix, &["--bookings", "50", "--runs", "2", "--airport", "1007"]);
        assert_eq!(run.json["bookings"]["written"], 50);
        assert_eq!(run.json["airport_id"], 1007);
        assert_eq!(run.json["after"]["rank"]["agree"], true);
        assert_eq!(run.json["cleanup"]["bookings_removed"], true);
        assert_eq!(run.json["cleanup"]["key_removed"], true);
        assert_eq!(bookings(&db).await, before, "{kind:?}");
        assert!(prefix.keys().is_empty(), "{kind:?}: {:?}", prefix.keys());
    }
}

#[tokio::test]
async fn an_airport_that_does_not_exist_is_rejected_before_anything_is_written() {
    let db = seeded_database(DatabaseKind::Postgres, "leaderboard_bad").await;
    let prefix = TestPrefix::new("leaderboard_bad");
    let before = bookings(&db).await;
    let run = run_json(&db, &prefix, &valkey_url(), &["leaderboard", "--airport", "32000"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "error: --airport 32000 is not in the airport table; pick an airport_id that exists (e.g. from `--top`)\n"
    );
    assert_eq!(run.json, Value::Null);
    assert_eq!(bookings(&db).await, before);
    assert!(prefix.keys().is_empty());
}

#[test]
fn a_top_of_zero_is_rejected_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .args(["leaderboard", "--top", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6));
    assert_eq!(stderr(&output), "error: --top must be from 1 to 1000 (got 0)\n");
}
