//! Exercise 5 against the real services, on both databases: writes are
//! acknowledged from Valkey, a flusher stores them in batches, and a killed
//! flusher leaves neither a lost nor a doubled row.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;
use support::{cli_against, run_json, seeded_database, valkey_url, JsonRun, TestDatabase, TestPrefix, BOTH};
use workshop_cli::config::DatabaseKind;

fn command(database_url: &str, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> std::process::Command {
    let args = [&["write-behind"], args].concat();
    cli_against(&std::env::temp_dir(), database_url, prefix, valkey, &args)
}

fn write_behind_on(database_url: &str, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> JsonRun {
    JsonRun::from_output(&command(database_url, prefix, valkey, args).output().unwrap())
}

/// A run with `--json`.
fn write_behind(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    run_json(db, prefix, &valkey_url(), &[&["write-behind"], args].concat())
}

fn valkey() -> support::TestValkey {
    support::valkey_connection(&valkey_url())
}

fn stream(prefix: &TestPrefix, db: &TestDatabase) -> String {
    format!("{}{{write-behind}}", prefix.source(db))
}

fn stream_length(prefix: &TestPrefix, db: &TestDatabase) -> u64 {
    redis::cmd("XLEN").arg(stream(prefix, db)).query(&mut valkey()).unwrap()
}

fn pending_count(prefix: &TestPrefix, db: &TestDatabase) -> u64 {
    let summary: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(stream(prefix, db))
        .arg("flushers")
        .query(&mut valkey())
        .unwrap();
    match summary.first() {
        Some(redis::Value::Int(n)) => *n as u64,
        other => panic!("unexpected XPENDING reply {other:?}"),
    }
}

fn passports_of(run: &JsonRun) -> BTreeSet<String> {
    run.json["produced"]["passports"]
        .as_array()
        .expect("the producer lists its passports")
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// One connection to a test database, for counting rows while a flusher runs.
enum Db {
    MySql(sqlx::MySqlConnection),
    Postgres(sqlx::PgConnection),
}

impl Db {
    async fn open(db: &TestDatabase) -> Db {
        match db.kind {
            DatabaseKind::MySql => Db::MySql(sqlx::MySqlConnection::connect(&db.url()).await.unwrap()),
            DatabaseKind::Postgres => Db::Postgres(sqlx::PgConnection::connect(&db.url()).await.unwrap()),
        }
    }

    /// Passport numbers starting with `letter`, one entry per row (duplicates would show).
    async fn passports(&mut self, letter: &str) -> Vec<String> {
        let pattern = format!("{letter}%");
        let rows: Vec<String> = match self {
            Db::MySql(conn) => sqlx::query_scalar("SELECT passportno FROM passenger WHERE passportno LIKE ?")
                .bind(pattern)
                .fetch_all(conn)
                .await
                .unwrap(),
            Db::Postgres(conn) => sqlx::query_scalar("SELECT passportno FROM passenger WHERE passportno LIKE $1")
                .bind(pattern)
                .fetch_all(conn)
                .await
                .unwrap(),
        };
        rows.into_iter().map(|p| p.trim_end().to_string()).collect()
    }

    async fn count(&mut self, letter: &str) -> usize {
        self.passports(letter).await.len()
    }

    async fn insert(&mut self, passport: &str, first: &str, last: &str) {
        match self {
            Db::MySql(conn) => {
                sqlx::query("INSERT INTO passenger (passportno, firstname, lastname) VALUES (?, ?, ?)")
                    .bind(passport)
                    .bind(first)
                    .bind(last)
                    .execute(conn)
                    .await
                    .unwrap();
            }
            Db::Postgres(conn) => {
                sqlx::query("INSERT INTO passenger (passportno, firstname, lastname) VALUES ($1, $2, $3)")
                    .bind(passport)
                    .bind(first)
                    .bind(last)
                    .execute(conn)
                    .await
                    .unwrap();
            }
        }
    }
}

fn as_set(passports: Vec<String>) -> BTreeSet<String> {
    let count = passports.len();
    let set: BTreeSet<String> = passports.into_iter().collect();
    assert_eq!(set.len(), count, "a passport number is stored twice");
    set
}

#[tokio::test]
async fn a_default_run_stores_exactly_the_acknowledged_writes_and_reports_lag_and_batches() {
    for kind in BOTH {
        let db = seeded_database(kind, "wbdefault").await;
        let prefix = TestPrefix::new("wbdefault");
        let run = write_behind(
            &db,
            &prefix,
            &[
                "--writes",
                "300",
                "--batch",
                "50",
                "--flush-interval",
                "20",
                "--compare",
                "30",
            ],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let json = &run.json;
        assert_eq!(json["mode"], "produce-and-flush");
        assert_eq!(json["produced"]["writes"], 300);
        let acknowledged = passports_of(&run);
        assert_eq!(acknowledged.len(), 300);

        let mut conn = Db::open(&db).await;
        assert_eq!(as_set(conn.passports("W").await), acknowledged, "{kind:?}");
        // The comparison's write-through passengers are gone again.
        assert_eq!(conn.count("T").await, 0);

        let flushed = &json["flushed"];
        assert_eq!(flushed["entries"], 300);
        assert_eq!(flushed["inserted"], 300);
        assert_eq!(flushed["already_stored"], 0);
        assert_eq!(flushed["rejected"], 0);
        assert!(flushed["stopped"].is_null());
        let batches = &flushed["batches"];
        assert!(batches["count"].as_u64().unwrap() >= 6, "{batches}");
        assert!(batches["max"].as_u64().unwrap() <= 50, "{batches}");
        assert!(batches["min"].as_u64().unwrap() >= 1, "{batches}");
        let avg = batches["avg"].as_f64().unwrap();
        assert!((avg - 300.0 / batches["count"].as_f64().unwrap()).abs() < 1e-9);
        assert_eq!(flushed["lag"]["count"], 300);
        assert!(flushed["lag"]["p50"].as_f64().unwrap() > 0.0);
        assert!(flushed["lag"]["p99"].as_f64().unwrap() >= flushed["lag"]["p50"].as_f64().unwrap());
        assert!(flushed["transaction"]["p50"].as_f64().unwrap() > 0.0);

        assert_eq!(json["queue_after"]["entries"], 0);
        assert_eq!(json["queue_after"]["pending"], 0);
        assert_eq!(stream_length(&prefix, &db), 0);

        // The acknowledged row is in the cache under its passport number, with the TTL.
        let passport = acknowledged.iter().next().unwrap();
        let key = format!("{}{{write-behind}}:passenger:passport:{passport}", prefix.source(&db));
        let cached: String = redis::cmd("GET").arg(&key).query(&mut valkey()).unwrap();
        let cached: Value = serde_json::from_str(&cached).unwrap();
        assert_eq!(cached["passportno"], passport.as_str());
        let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut valkey()).unwrap();
        assert!(ttl > 0 && ttl <= 300, "{ttl}");
    }
}

#[tokio::test]
async fn the_acknowledgement_is_timed_next_to_write_through_in_the_same_run() {
    let db = seeded_database(DatabaseKind::Postgres, "wbcompare").await;
    let prefix = TestPrefix::new("wbcompare");
    let run = write_behind(&db, &prefix, &["--writes", "100", "--compare", "20"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let ack = &run.json["produced"]["ack"];
    let write_through = &run.json["comparison"]["write_through"];
    assert_eq!(ack["count"], 100);
    assert_eq!(write_through["count"], 20);
    assert!(ack["p50"].as_f64().unwrap() > 0.0);
    assert!(write_through["p50"].as_f64().unwrap() > 0.0);
    let speedup = run.json["comparison"]["ack_speedup"].as_f64().unwrap();
    let ratio = write_through["p50"].as_f64().unwrap() / ack["p50"].as_f64().unwrap();
    assert!((speedup - ratio).abs() / ratio < 0.01, "{speedup} vs {ratio}");
    assert_eq!(run.json["comparison"]["removed_rows"], 20);

    // The table shows both columns side by side.
    let text = write_behind_on(&db.url(), &prefix, &valkey_url(), &["--writes", "20", "--compare", "5"]);
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    let header = text
        .stdout
        .lines()
        .find(|line| line.contains("write-behind ack"))
        .expect("a summary table");
    assert!(header.contains("write-through (transaction + SET)"), "{header}");
    assert!(text.stdout.contains("p99 ms"), "{}", text.stdout);
}

/// Starts a flusher in the background; killing it is a crash (SIGKILL).
fn spawn_flusher(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> Child {
    command(&db.url(), prefix, &valkey_url(), args)
        .arg("--flush-only")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_killed_flusher_resumes_from_the_stream_and_stores_every_write_once() {
    for kind in BOTH {
        let db = seeded_database(kind, "wbcrash").await;
        let prefix = TestPrefix::new("wbcrash");
        let produced = write_behind(&db, &prefix, &["--produce-only", "--writes", "500", "--compare", "0"]);
        assert_eq!(produced.code, Some(0), "{kind:?}: {}", produced.stderr);
        assert!(produced.json["flushed"].is_null());
        assert_eq!(produced.json["queue_after"]["entries"], 500);
        let acknowledged = passports_of(&produced);
        let mut conn = Db::open(&db).await;
        assert_eq!(
            conn.count("W").await,
            0,
            "nothing reaches the database before a flusher runs"
        );
        assert_eq!(stream_length(&prefix, &db), 500);

        // A flusher, killed once its first batches are in the database.
        let mut flusher = spawn_flusher(&db, &prefix, &["--batch", "20", "--flush-interval", "50"]);
        let started = Instant::now();
        while conn.count("W").await == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the flusher never stored a batch"
            );
            assert!(flusher.try_wait().unwrap().is_none(), "the flusher ended on its own");
        }
        flusher.kill().unwrap();
        flusher.wait().unwrap();
        let stored_before_restart = conn.count("W").await;
        assert!(
            stored_before_restart < 500 && stream_length(&prefix, &db) > 0,
            "{kind:?}: the flusher drained the stream before it could be killed ({stored_before_restart} rows)"
        );

        // The next flusher starts with the pending entries and drains the rest.
        let resumed = write_behind(
            &db,
            &prefix,
            &["--flush-only", "--batch", "20", "--flush-interval", "50"],
        );
        assert_eq!(resumed.code, Some(0), "{kind:?}: {}", resumed.stderr);
        let flushed = &resumed.json["flushed"];
        assert_eq!(
            flushed["inserted"].as_u64().unwrap(),
            500 - stored_before_restart as u64,
            "{kind:?}: {flushed}"
        );
        assert_eq!(flushed["rejected"], 0);
        assert_eq!(as_set(conn.passports("W").await), acknowledged, "{kind:?}");
        assert_eq!(resumed.json["queue_after"]["entries"], 0);
        assert_eq!(resumed.json["queue_after"]["pending"], 0);
        assert_eq!(stream_length(&prefix, &db), 0);
        assert_eq!(pending_count(&prefix, &db), 0);
    }
}

#[tokio::test]
async fn a_crash_between_commit_and_acknowledgement_costs_only_a_skipped_reinsert() {
    for kind in BOTH {
        let db = seeded_database(kind, "wbcommit").await;
        let prefix = TestPrefix::new("wbcommit");
        let produced = write_behind(&db, &prefix, &["--produce-only", "--writes", "50", "--compare", "0"]);
        assert_eq!(produced.code, Some(0), "{kind:?}: {}", produced.stderr);

        // What a flusher leaves when it dies right after COMMIT: 20 entries
        // read by the consumer `flusher`, their rows stored, nothing acknowledged.
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("flushers")
            .arg("flusher")
            .arg("COUNT")
            .arg(20)
            .arg("STREAMS")
            .arg(stream(&prefix, &db))
            .arg(">")
            .query(&mut valkey())
            .unwrap();
        let mut conn = Db::open(&db).await;
        for entry in &reply.keys[0].ids {
            let field = |name: &str| entry.get::<String>(name).unwrap();
            conn.insert(&field("passportno"), &field("firstname"), &field("lastname"))
                .await;
        }
        assert_eq!(pending_count(&prefix, &db), 20);

        let resumed = write_behind(&db, &prefix, &["--flush-only"]);
        assert_eq!(resumed.code, Some(0), "{kind:?}: {}", resumed.stderr);
        let flushed = &resumed.json["flushed"];
        assert_eq!(flushed["recovered"], 20, "{flushed}");
        assert_eq!(flushed["already_stored"], 20, "{flushed}");
        assert_eq!(flushed["inserted"], 30, "{flushed}");
        assert_eq!(flushed["entries"], 50, "{flushed}");
        assert_eq!(as_set(conn.passports("W").await), passports_of(&produced), "{kind:?}");
        assert_eq!(pending_count(&prefix, &db), 0);
        assert_eq!(stream_length(&prefix, &db), 0);
    }
}

#[tokio::test]
async fn writes_are_acknowledged_while_the_database_is_down_and_stored_once_it_is_back() {
    let db = seeded_database(DatabaseKind::MySql, "wbdbdown").await;
    let prefix = TestPrefix::new("wbdbdown");
    // The same database (cache keys name the database, not the login) that
    // refuses this login: unavailable to the run, as if it were down.
    let mut down = url::Url::parse(&db.url()).unwrap();
    down.set_password(Some("not-the-password")).unwrap();
    let run = write_behind_on(down.as_str(), &prefix, &valkey_url(), &["--writes", "20", "--json"]);
    assert_eq!(run.code, Some(8), "{}", run.stderr);
    let expected_start = format!(
        "error: 20 acknowledged write(s) are still queued in {}, not in the database: the database at mysql://workshop:***@127.0.0.1:3306/{} refused the login",
        stream(&prefix, &db),
        db.name
    );
    assert!(run.stderr.starts_with(&expected_start), "{}", run.stderr);
    assert!(
        run.stderr
            .ends_with("; fix DATABASE_URL; then run `workshop-cli write-behind --flush-only` to store them\n"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-password"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_eq!(run.json["produced"]["writes"], 20);
    assert!(run.json["database"].is_null());
    assert!(run.json["flushed"]["stopped"]["database"].is_string());
    assert!(run.json["comparison"]["not_compared"]
        .as_str()
        .unwrap()
        .starts_with("write-through needs the database: the database at "));
    assert_eq!(run.json["queue_after"]["entries"], 20);
    assert_eq!(stream_length(&prefix, &db), 20);

    let flushed = write_behind(&db, &prefix, &["--flush-only"]);
    assert_eq!(flushed.code, Some(0), "{}", flushed.stderr);
    assert_eq!(flushed.json["flushed"]["inserted"], 20);
    assert_eq!(as_set(Db::open(&db).await.passports("W").await), passports_of(&run));
    assert_eq!(stream_length(&prefix, &db), 0);
}

#[tokio::test]
async fn a_batch_the_database_refuses_is_retried_then_left_pending_for_the_next_flusher() {
    // No tables: every insert fails, as it would against a database that broke mid-run.
    let empty = TestDatabase::create(DatabaseKind::Postgres, "wbrefused").await;
    let prefix = TestPrefix::new("wbrefused");
    let produced = write_behind(&empty, &prefix, &["--produce-only", "--writes", "10", "--compare", "0"]);
    assert_eq!(produced.code, Some(0), "{}", produced.stderr);

    let refused = write_behind(&empty, &prefix, &["--flush-only"]);
    assert_eq!(refused.code, Some(8), "{}", refused.stderr);
    let expected_start = format!(
        "error: 10 acknowledged write(s) are still queued in {}, not in the database: the workshop tables are missing (",
        stream(&prefix, &empty)
    );
    assert!(refused.stderr.starts_with(&expected_start), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .ends_with("then run `workshop-cli write-behind --flush-only` to store them\n"),
        "{}",
        refused.stderr
    );
    let flushed = &refused.json["flushed"];
    assert!(flushed["retries"].as_u64().unwrap() > 0, "{flushed}");
    assert_eq!(flushed["inserted"], 0);
    assert!(flushed["stopped"]["database"].is_string(), "{flushed}");
    assert_eq!(refused.json["queue_after"]["entries"], 10);
    assert_eq!(refused.json["queue_after"]["pending"], 10);

    // The next flusher, once the database has its tables, starts with them.
    support::seed(&empty);
    let db = &empty;
    let resumed = write_behind(db, &prefix, &["--flush-only"]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    assert_eq!(resumed.json["flushed"]["recovered"], 10);
    assert_eq!(resumed.json["flushed"]["inserted"], 10);
    assert_eq!(as_set(Db::open(db).await.passports("W").await), passports_of(&produced));
    assert_eq!(pending_count(&prefix, &empty), 0);
}

#[tokio::test]
async fn queued_writes_the_database_can_never_take_are_moved_aside_with_the_reason() {
    let db = seeded_database(DatabaseKind::Postgres, "wbreject").await;
    let prefix = TestPrefix::new("wbreject");
    let mut conn = Db::open(&db).await;
    let taken = conn.passports("P").await.into_iter().next().unwrap();
    let mut valkey = valkey();
    let add = |conn: &mut support::TestValkey, passport: &str, first: &str| {
        let _: String = redis::cmd("XADD")
            .arg(stream(&prefix, &db))
            .arg("*")
            .arg(&[
                "passportno",
                passport,
                "firstname",
                first,
                "lastname",
                "Hopper",
                "sent_at_us",
                "1",
            ])
            .query(conn)
            .unwrap();
    };
    add(&mut valkey, "WTOOLONG1234", "Grace");
    add(&mut valkey, &taken, "Grace");
    add(&mut valkey, "WGOOD0001", "Grace");

    let run = write_behind(&db, &prefix, &["--flush-only"]);
    assert_eq!(run.code, Some(8), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "error: 2 queued write(s) can never be stored and were moved to {}{{write-behind}}:rejected (see the reasons above)\n",
            prefix.source(&db)
        )
    );
    let flushed = &run.json["flushed"];
    assert_eq!(flushed["inserted"], 1);
    assert_eq!(flushed["rejected"], 2);
    let reasons: Vec<&str> = flushed["rejected_examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons[0], "passportno is 12 characters long; the column holds 9");
    assert!(
        reasons[1].starts_with(&format!("passport {taken} belongs to passenger ")),
        "{}",
        reasons[1]
    );
    assert_eq!(run.json["queue_after"]["rejected"], 2);
    assert_eq!(stream_length(&prefix, &db), 0);
    assert_eq!(conn.passports("WGOOD").await, vec!["WGOOD0001".to_string()]);
}

#[tokio::test]
async fn bad_input_is_rejected_with_the_limit_before_anything_is_written() {
    // An unseeded database: had it been touched, the error would be "tables are missing".
    let db = TestDatabase::create(DatabaseKind::MySql, "wblimits").await;
    let prefix = TestPrefix::new("wblimits");
    // Negative counts are usage errors (exit 2) in every command: tests/counts.rs.
    let cases: [(&[&str], &str); 6] = [
        (&["--writes", "0"], "error: --writes must be from 1 to 100000 (got 0)\n"),
        (&["--batch", "0"], "error: --batch must be from 1 to 5000 (got 0)\n"),
        (
            &["--flush-interval", "0"],
            "error: --flush-interval must be from 1 to 60000 ms (got 0)\n",
        ),
        (
            &["--flush-interval", "86400000"],
            "error: --flush-interval must be from 1 to 60000 ms (got 86400000)\n",
        ),
        (
            &["--flush-only", "--duration", "0"],
            "error: --duration must be more than 0 and at most 3600 seconds (got 0)\n",
        ),
        (
            &["--flush-only", "--duration", "-2"],
            "error: --duration must be more than 0 and at most 3600 seconds (got -2)\n",
        ),
    ];
    for (args, expected) in cases {
        let run = write_behind(&db, &prefix, args);
        assert_eq!((run.code, run.stderr.as_str()), (Some(6), expected), "{args:?}");
    }
    assert!(prefix.keys().is_empty(), "nothing was written to Valkey");
}

#[tokio::test]
async fn valkey_unreachable_means_exit_5_and_nothing_written() {
    let db = seeded_database(DatabaseKind::Postgres, "wbnovalkey").await;
    let prefix = TestPrefix::new("wbnovalkey");
    let run = write_behind_on(
        &db.url(),
        &prefix,
        "redis://127.0.0.1:1",
        &["--writes", "10", "--connect-timeout", "0.5"],
    );
    assert_eq!(run.code, Some(5));
    assert!(
        run.stderr
            .starts_with("error: cannot reach Valkey at redis://127.0.0.1:1: "),
        "{}",
        run.stderr
    );
    let mut conn = Db::open(&db).await;
    assert_eq!(conn.count("W").await + conn.count("T").await, 0);
}
