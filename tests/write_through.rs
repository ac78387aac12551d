//! Exercise 2 against the real services, on both databases.

mod support;

use serde_json::Value;
use support::{run_json, seeded_database, valkey_url, JsonRun, PrivateValkey, TestDatabase, TestPrefix, BOTH};
use workshop_cli::config::DatabaseKind;

fn write_through_on(db: &TestDatabase, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> JsonRun {
    run_json(db, prefix, valkey, &[&["write-through"], args].concat())
}

fn write_through(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    write_through_on(db, prefix, &valkey_url(), args)
}

fn cached(prefix: &TestPrefix, db: &TestDatabase, url: &str, id: i64) -> Option<Value> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    let text: Option<String> = redis::Commands::get(&mut conn, format!("{}passenger:{id}", prefix.source(db))).unwrap();
    text.map(|t| serde_json::from_str(&t).unwrap())
}

async fn passenger_count(db: &TestDatabase, passportno: &str) -> i64 {
    use sqlx::Connection;
    let url = db.url();
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM passenger WHERE passportno = ?")
                .bind(passportno)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM passenger WHERE passportno = $1")
                .bind(passportno)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    }
}

#[tokio::test]
async fn a_new_passenger_is_written_to_both_and_verified_consistent() {
    for kind in BOTH {
        let db = seeded_database(kind, "wtcreate").await;
        let prefix = TestPrefix::new("wtcreate");
        let run = write_through(
            &db,
            &prefix,
            &["--firstname", "Ada", "--lastname", "Lovelace", "--passportno", "X1815"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let write = &run.json["writes"][0];
        assert_eq!(write["consistent"], true);
        let id = write["passenger_id"].as_i64().unwrap();
        let row = cached(&prefix, &db, &valkey_url(), id).expect("cached");
        assert_eq!(row["firstname"], "Ada");
        assert_eq!(row["lastname"], "Lovelace");
        assert_eq!(row["passenger_id"], id);
        assert_eq!(row["passportno"].as_str().unwrap().trim_end(), "X1815");
        assert_eq!(passenger_count(&db, "X1815").await, 1);
        assert!(write["db_write_ms"].as_f64().unwrap() > 0.0);
        assert!(write["cache_write_ms"].as_f64().unwrap() > 0.0);
    }
}

#[tokio::test]
async fn repeated_default_runs_never_collide() {
    for kind in BOTH {
        let db = seeded_database(kind, "wtrepeat").await;
        let prefix = TestPrefix::new("wtrepeat");
        let mut ids = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let run = write_through(&db, &prefix, &["--runs", "10"]);
            assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
            assert_eq!(run.json["all_consistent"], true);
            for write in run.json["writes"].as_array().unwrap() {
                assert!(ids.insert(write["passenger_id"].as_i64().unwrap()));
            }
            assert_eq!(run.json["summary"]["database"]["count"], 10);
            assert!(run.json["summary"]["cache"]["p99"].as_f64().unwrap() > 0.0);
        }
        assert_eq!(ids.len(), 30);
    }
}

#[tokio::test]
async fn a_duplicate_passport_is_rejected_and_nothing_is_cached() {
    for kind in BOTH {
        let db = seeded_database(kind, "wtdup").await;
        let prefix = TestPrefix::new("wtdup");
        let first = write_through(&db, &prefix, &["--passportno", "D0000001"]);
        assert_eq!(first.code, Some(0), "{}", first.stderr);
        let id = first.json["writes"][0]["passenger_id"].as_i64().unwrap();
        let keys_before = prefix.keys();
        let second = write_through(&db, &prefix, &["--passportno", "D0000001", "--firstname", "Eve"]);
        assert_eq!(second.code, Some(6));
        assert_eq!(
            second.stderr,
            format!("error: passport number D0000001 is already taken by passenger {id}; choose another --passportno or omit it to generate one\n")
        );
        assert_eq!(prefix.keys(), keys_before, "nothing new in the cache");
        assert_eq!(passenger_count(&db, "D0000001").await, 1);
    }
}

#[tokio::test]
async fn quotes_semicolons_comments_and_emoji_are_stored_verbatim() {
    for kind in BOTH {
        let db = seeded_database(kind, "wtinject").await;
        let prefix = TestPrefix::new("wtinject");
        let first = "Robert'); DROP TABLE passenger; --";
        let last = "Ünïcødé 🛫 \"quoted\" /* x */";
        let run = write_through(
            &db,
            &prefix,
            &["--firstname", first, "--lastname", last, "--passportno", "';--"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let id = run.json["writes"][0]["passenger_id"].as_i64().unwrap();
        let row = cached(&prefix, &db, &valkey_url(), id).unwrap();
        assert_eq!(row["firstname"], first);
        assert_eq!(row["lastname"], last);
        assert_eq!(row["passportno"].as_str().unwrap().trim_end(), "';--");
        assert_eq!(run.json["writes"][0]["consistent"], true);
        // The table is intact.
        assert_eq!(passenger_count(&db, "';--").await, 1);
    }
}

#[tokio::test]
async fn empty_and_over_long_values_are_rejected_before_the_database_is_touched() {
    // An unseeded database: had it been touched, the error would be "tables are missing".
    let db = TestDatabase::create(DatabaseKind::MySql, "wtlimits").await;
    let prefix = TestPrefix::new("wtlimits");
    let long = "x".repeat(101);
    let cases: [(&[&str], &str); 3] = [
        (
            &["--firstname", ""],
            "error: --firstname is empty; give 1 to 100 characters\n",
        ),
        (
            &["--lastname", &long],
            "error: --lastname is 101 characters long; the limit is 100\n",
        ),
        (
            &["--passportno", "P123456789"],
            "error: --passportno is 10 characters long; the limit is 9\n",
        ),
    ];
    for (args, expected) in cases {
        let run = write_through(&db, &prefix, args);
        assert_eq!((run.code, run.stderr.as_str()), (Some(6), expected));
    }
    assert!(prefix.keys().is_empty());
}

#[tokio::test]
async fn an_update_writes_through_and_shows_the_stale_value_cache_aside_would_serve() {
    for kind in BOTH {
        let db = seeded_database(kind, "wtupdate").await;
        let prefix = TestPrefix::new("wtupdate");
        let created = write_through(&db, &prefix, &["--firstname", "Grace", "--lastname", "Hopper"]);
        let id = created.json["writes"][0]["passenger_id"].as_i64().unwrap();
        let id_text = id.to_string();
        let run = write_through(&db, &prefix, &["--update", &id_text, "--lastname", "Murray"]);
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let stale = &run.json["stale_comparison"];
        assert_eq!(stale["cache_aside_serves"]["lastname"], "Hopper");
        assert_eq!(stale["write_through_serves"]["lastname"], "Murray");
        assert!(stale["stale_for_seconds"].as_f64().unwrap() > 0.0);
        assert_eq!(cached(&prefix, &db, &valkey_url(), id).unwrap()["lastname"], "Murray");
        assert_eq!(run.json["writes"][0]["consistent"], true);

        let missing = write_through(&db, &prefix, &["--update", "99999999"]);
        assert_eq!(missing.code, Some(6));
        assert_eq!(
            missing.stderr,
            "error: no passenger with id 99999999; pass an existing passenger_id (write-through prints the ids it creates)\n"
        );
    }
}

#[tokio::test]
async fn cleanup_removes_the_rows_and_keys_it_created() {
    for kind in BOTH {
        let db = seeded_database(kind, "wtcleanup").await;
        let prefix = TestPrefix::new("wtcleanup");
        let run = write_through(&db, &prefix, &["--runs", "3", "--cleanup", "--passportno", "C0FFEE"]);
        assert_eq!(run.code, Some(6), "--passportno with --runs 3 is refused");
        let run = write_through(&db, &prefix, &["--cleanup", "--passportno", "C0FFEE"]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(run.json["cleanup"]["removed_rows"], 1);
        assert_eq!(run.json["cleanup"]["removed_keys"], 1);
        assert_eq!(passenger_count(&db, "C0FFEE").await, 0);
        assert!(prefix.keys().is_empty());
    }
}

#[tokio::test]
async fn a_failed_cache_write_after_commit_is_reported_and_leaves_nothing_stale() {
    for kind in BOTH {
        let db = seeded_database(kind, "wtcachefail").await;
        let prefix = TestPrefix::new("wtcachefail");
        let valkey = PrivateValkey::start();
        // A passenger cached with its old name...
        let created = write_through_on(&db, &prefix, &valkey.url(), &["--lastname", "Before"]);
        assert_eq!(created.code, Some(0), "{}", created.stderr);
        let id = created.json["writes"][0]["passenger_id"].as_i64().unwrap();
        assert!(cached(&prefix, &db, &valkey.url(), id).is_some());
        // ...then Valkey refuses writes (out of memory) but still answers reads and deletes.
        valkey.command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
        valkey.command(&["CONFIG", "SET", "maxmemory", "1"]);
        let id_text = id.to_string();
        let run = write_through_on(
            &db,
            &prefix,
            &valkey.url(),
            &["--update", &id_text, "--lastname", "After"],
        );
        assert_eq!(run.code, Some(8), "{}", run.stderr);
        // The committed update stays, and the run says how to undo it, before the error.
        let (warning, error) = run.stderr.split_once('\n').unwrap_or_default();
        assert_eq!(
            warning,
            format!("warning: the run stopped part-way; passenger {id} stays changed in the database; `workshop-cli clean --key-prefix '{}'` restores its old values (recorded in workshop_changes)", prefix.prefix)
        );
        assert!(
            error.starts_with(&format!(
                "error: passenger {id} was saved to the database, but the cache write failed ("
            )),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .ends_with("no older cached value is left, so readers will load it from the database\n"),
            "{}",
            run.stderr
        );
        assert!(
            cached(&prefix, &db, &valkey.url(), id).is_none(),
            "the stale entry is gone"
        );
        // The database has the new value.
        let run = write_through_on(
            &db,
            &prefix,
            &valkey_url(),
            &["--update", &id_text, "--firstname", "Check"],
        );
        assert_eq!(run.json["writes"][0]["row"]["lastname"], "After");
    }
}

#[tokio::test]
async fn valkey_unreachable_means_nothing_is_written() {
    let db = seeded_database(DatabaseKind::Postgres, "wtnovalkey").await;
    let prefix = TestPrefix::new("wtnovalkey");
    let run = write_through_on(
        &db,
        &prefix,
        "redis://127.0.0.1:1",
        &["--passportno", "NV0001", "--connect-timeout", "0.5"],
    );
    assert_eq!(run.code, Some(5));
    assert!(
        run.stderr
            .starts_with("error: cannot reach Valkey at redis://127.0.0.1:1: "),
        "{}",
        run.stderr
    );
    assert_eq!(passenger_count(&db, "NV0001").await, 0);
}
