//! `workshop-cli clean` against the real services, on both databases: what
//! the workshop wrote (write-through, write-behind, multi-level updates) is
//! deleted or restored from the ledger, its keys go, and nothing else is
//! touched. Also the `--cleanup` of runs that lose Valkey part-way.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::Connection;
use support::{
    cli_against, give_back, run_json, seeded_database, take_away, valkey_url, JsonRun, PrivateValkey, TestDatabase,
    TestPrefix, BOTH,
};
use workshop_cli::config::DatabaseKind;

/// One connection to a test database, to read rows around the runs.
enum Db {
    MySql(sqlx::MySqlConnection),
    Postgres(sqlx::PgConnection),
}

/// A passenger as stored: id, passport (without padding), names.
type Passenger = (i32, String, Option<String>, Option<String>);

impl Db {
    async fn open(db: &TestDatabase) -> Db {
        match db.kind {
            DatabaseKind::MySql => Db::MySql(sqlx::MySqlConnection::connect(&db.url()).await.unwrap()),
            DatabaseKind::Postgres => Db::Postgres(sqlx::PgConnection::connect(&db.url()).await.unwrap()),
        }
    }

    /// `?` placeholders, renumbered for PostgreSQL.
    fn sql(&self, text: &str) -> String {
        workshop_cli::db::changes::numbered(
            match self {
                Db::MySql(_) => DatabaseKind::MySql,
                Db::Postgres(_) => DatabaseKind::Postgres,
            },
            text,
        )
    }

    async fn passengers(&mut self) -> Vec<Passenger> {
        let sql = "SELECT passenger_id, passportno, firstname, lastname FROM passenger ORDER BY passenger_id";
        let rows: Vec<Passenger> = match self {
            Db::MySql(conn) => sqlx::query_as(sql).fetch_all(conn).await.unwrap(),
            Db::Postgres(conn) => sqlx::query_as(sql).fetch_all(conn).await.unwrap(),
        };
        rows.into_iter()
            .map(|(id, passport, first, last)| (id, passport.trim_end().to_string(), first, last))
            .collect()
    }

    async fn passenger(&mut self, id: i32) -> Option<Passenger> {
        self.passengers().await.into_iter().find(|p| p.0 == id)
    }

    /// A product's price and `updated_at`, as text.
    async fn product(&mut self, id: i32) -> (String, String) {
        let sql = self.sql("SELECT CAST(price AS CHAR(20)), CAST(updated_at AS CHAR(30)) FROM products WHERE id = ?");
        match self {
            Db::MySql(conn) => sqlx::query_as(&sql).bind(id).fetch_one(conn).await.unwrap(),
            Db::Postgres(conn) => sqlx::query_as(&sql).bind(id).fetch_one(conn).await.unwrap(),
        }
    }

    async fn execute(&mut self, text: &str, values: &[&str]) {
        let sql = self.sql(text);
        match self {
            Db::MySql(conn) => {
                let mut query = sqlx::query(&sql);
                for value in values {
                    query = query.bind(*value);
                }
                query.execute(conn).await.unwrap();
            }
            Db::Postgres(conn) => {
                let mut query = sqlx::query(&sql);
                for value in values {
                    query = query.bind(*value);
                }
                query.execute(conn).await.unwrap();
            }
        }
    }

    /// Entries in the ledger (0 when there is no ledger).
    async fn ledger_entries(&mut self) -> i64 {
        let sql = "SELECT COUNT(*) FROM workshop_changes";
        match self {
            Db::MySql(conn) => sqlx::query_scalar(sql).fetch_one(conn).await.unwrap_or(0),
            Db::Postgres(conn) => sqlx::query_scalar(sql).fetch_one(conn).await.unwrap_or(0),
        }
    }
}

fn clean(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    run_json(db, prefix, &valkey_url(), &[&["clean"], args].concat())
}

fn ok(run: &JsonRun, what: &str) {
    assert_eq!(run.code, Some(0), "{what}: {}", run.stderr);
}

fn table<'a>(run: &'a JsonRun, name: &str) -> &'a serde_json::Value {
    run.json["tables"]
        .as_array()
        .and_then(|tables| tables.iter().find(|t| t["table"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

#[tokio::test]
async fn clean_deletes_what_the_workshop_created_and_restores_what_it_updated() {
    for kind in BOTH {
        let db = seeded_database(kind, "clean").await;
        let prefix = TestPrefix::new("clean");
        let mut conn = Db::open(&db).await;
        let seeded = conn.passengers().await;
        let product_before = conn.product(3).await;

        let created = run_json(&db, &prefix, &valkey_url(), &["write-through", "--runs", "3"]);
        ok(&created, "write-through");
        let updated = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["write-through", "--update", "5", "--runs", "2"],
        );
        ok(&updated, "write-through --update");
        assert!(
            updated
                .stderr
                .contains("passenger 5 stays changed in the database; `workshop-cli clean --key-prefix '")
                && updated.stderr.contains("restores its old values"),
            "{kind:?}: {}",
            updated.stderr
        );
        let price = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["multi-level", "--update", "3", "--price", "1.23"],
        );
        ok(&price, "multi-level --update");
        let queued = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["write-behind", "--writes", "20", "--compare", "2"],
        );
        ok(&queued, "write-behind");
        assert_ne!(conn.passenger(5).await, seeded.iter().find(|p| p.0 == 5).cloned());
        assert_eq!(conn.passengers().await.len(), seeded.len() + 23, "{kind:?}");
        assert_ne!(conn.product(3).await, product_before);
        assert!(!prefix.keys().is_empty());

        let dry = clean(&db, &prefix, &["--dry-run"]);
        ok(&dry, "clean --dry-run");
        assert_eq!(table(&dry, "passenger")["deleted"], 23, "{kind:?}: {}", dry.stdout);
        assert_eq!(
            conn.passengers().await.len(),
            seeded.len() + 23,
            "a dry run changes nothing"
        );
        assert!(!prefix.keys().is_empty(), "a dry run deletes no key");

        let cleaned = clean(&db, &prefix, &[]);
        ok(&cleaned, "clean");
        assert_eq!(
            table(&cleaned, "passenger")["deleted"],
            23,
            "{kind:?}: {}",
            cleaned.stdout
        );
        assert_eq!(table(&cleaned, "passenger")["restored"], 1, "{kind:?}");
        assert_eq!(table(&cleaned, "products")["restored"], 1, "{kind:?}");
        assert!(cleaned.json["keys"].as_u64().unwrap() > 0);
        assert_eq!(conn.passengers().await, seeded, "{kind:?}: every passenger as seeded");
        assert_eq!(conn.product(3).await, product_before, "{kind:?}");
        assert!(prefix.keys().is_empty(), "{:?}", prefix.keys());
        assert_eq!(conn.ledger_entries().await, 0);

        let again = clean(&db, &prefix, &[]);
        ok(&again, "second clean");
        assert_eq!(again.json["nothing_to_do"], true, "{}", again.stdout);
        let text = cli_against(&std::env::temp_dir(), &db.url(), &prefix, &valkey_url(), &["clean"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&text.stdout).contains("Nothing to clean"),
            "{}",
            String::from_utf8_lossy(&text.stdout)
        );
    }
}

#[tokio::test]
async fn clean_never_touches_rows_the_workshop_did_not_write_or_that_changed_since() {
    for kind in BOTH {
        let db = seeded_database(kind, "cleanforeign").await;
        let prefix = TestPrefix::new("cleanforeign");
        let mut conn = Db::open(&db).await;
        let updated = run_json(&db, &prefix, &valkey_url(), &["write-through", "--update", "7"]);
        ok(&updated, "write-through --update 7");
        let also = run_json(&db, &prefix, &valkey_url(), &["write-through", "--update", "8"]);
        ok(&also, "write-through --update 8");
        // Someone else: a passenger of their own, and a change to passenger 8 after the workshop's.
        conn.execute(
            "INSERT INTO passenger (passportno, firstname, lastname) VALUES (?, ?, ?)",
            &["U0000001", "Their", "Own"],
        )
        .await;
        conn.execute(
            "UPDATE passenger SET firstname = ? WHERE passenger_id = 8",
            &["Changed"],
        )
        .await;
        let theirs = conn.passengers().await;

        let cleaned = clean(&db, &prefix, &[]);
        ok(&cleaned, "clean");
        let passenger = table(&cleaned, "passenger");
        assert_eq!(passenger["restored"], 1, "{kind:?}: {}", cleaned.stdout);
        assert_eq!(passenger["left_alone"], 1);
        assert_eq!(passenger["left_alone_ids"], serde_json::json!([8]));
        assert!(cleaned
            .stderr
            .contains("were changed after the workshop wrote them and were left alone (ids 8)"));
        let after = conn.passengers().await;
        assert_eq!(after.len(), theirs.len(), "{kind:?}: no row was deleted");
        assert!(after.iter().any(|p| p.1 == "U0000001"));
        assert_eq!(
            after.iter().find(|p| p.0 == 8).and_then(|p| p.2.clone()).as_deref(),
            Some("Changed")
        );
    }
}

#[tokio::test]
async fn an_update_with_cleanup_gives_the_seeded_passenger_its_values_back() {
    for kind in BOTH {
        let db = seeded_database(kind, "cleanupd").await;
        let prefix = TestPrefix::new("cleanupd");
        let mut conn = Db::open(&db).await;
        let original = conn.passenger(11).await;
        let run = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["write-through", "--update", "11", "--runs", "3", "--cleanup"],
        );
        ok(&run, "write-through --update --cleanup");
        assert_ne!(
            run.json["writes"][2]["row"]["lastname"],
            serde_json::json!(original.as_ref().unwrap().3)
        );
        assert_eq!(run.json["cleanup"]["restored_rows"], 1, "{}", run.stdout);
        assert!(run.json["permanent_change"].is_null());
        assert_eq!(conn.passenger(11).await, original, "{kind:?}");
        assert_eq!(conn.ledger_entries().await, 0);
    }
}

#[tokio::test]
async fn clean_refuses_to_drop_unflushed_write_behind_writes_unless_forced() {
    for kind in BOTH {
        let db = seeded_database(kind, "cleanqueue").await;
        let prefix = TestPrefix::new("cleanqueue");
        let queued = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["write-behind", "--produce-only", "--writes", "5", "--compare", "0"],
        );
        ok(&queued, "write-behind --produce-only");
        let keys = prefix.keys().len();

        let refused = clean(&db, &prefix, &[]);
        assert_eq!(refused.code, Some(6), "{}", refused.stderr);
        assert_eq!(
            refused.stderr.trim(),
            format!("error: 5 acknowledged write-behind write(s) in {}{{write-behind}} are not in the database yet; run `workshop-cli write-behind --flush-only` first (clean then removes those rows too), or `workshop-cli clean --force` to drop them; nothing was changed", prefix.source(&db))
        );
        assert_eq!(prefix.keys().len(), keys, "nothing was deleted");

        let forced = clean(&db, &prefix, &["--force"]);
        ok(&forced, "clean --force");
        assert_eq!(forced.json["unflushed_writes"], 5);
        assert!(prefix.keys().is_empty());
    }
}

/// Waits until the ledger has at least `entries` entries: the run is writing.
async fn wait_for_ledger(conn: &mut Db, entries: i64, child: &mut std::process::Child) {
    let started = Instant::now();
    while conn.ledger_entries().await < entries {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was under way"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "the run never wrote");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_write_through_run_that_loses_valkey_reports_its_commits_and_cleans_them_up() {
    for kind in BOTH {
        let db = seeded_database(kind, "cleanlost").await;
        let mut valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("cleanlost", &valkey.url());
        let mut conn = Db::open(&db).await;
        let seeded = conn.passengers().await;
        let mut child = cli_against(
            &std::env::temp_dir(),
            &db.url(),
            &prefix,
            &valkey.url(),
            &["write-through", "--runs", "100000", "--cleanup"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        wait_for_ledger(&mut conn, 3, &mut child).await;
        valkey.kill();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            matches!(output.status.code(), Some(5 | 8)),
            "{kind:?}: {:?} {stderr}",
            output.status
        );
        let committed = stderr
            .split("the run stopped after ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{kind:?}: no count of committed writes in {stderr}"));
        assert!(committed >= 3, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "of 100000 write(s) had been committed to the database; --cleanup removed {committed} of them"
            )),
            "{stderr}"
        );
        assert_eq!(
            conn.passengers().await,
            seeded,
            "{kind:?}: the cleanup removed every row the run made"
        );
        assert_eq!(conn.ledger_entries().await, 0);
    }
}

#[tokio::test]
async fn a_write_behind_run_that_loses_valkey_says_what_it_stored_and_how_to_remove_it() {
    for kind in BOTH {
        let db = seeded_database(kind, "cleanwblost").await;
        let mut valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("cleanwblost", &valkey.url());
        let mut conn = Db::open(&db).await;
        let seeded = conn.passengers().await;
        let mut child = cli_against(
            &std::env::temp_dir(),
            &db.url(),
            &prefix,
            &valkey.url(),
            &["write-behind", "--writes", "100000", "--compare", "0", "--batch", "20"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        // The flusher has stored rows: the run is under way.
        wait_for_ledger(&mut conn, 20, &mut child).await;
        valkey.kill();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(5), "{kind:?}: {stderr}");
        let stored = conn.passengers().await.len() - seeded.len();
        assert!(stored >= 20, "{stored}");
        let expected = format!(
            "the run stopped part-way; the flusher had committed {stored} row(s) to the database; they stay; `workshop-cli clean --key-prefix '{}' --force` removes them",
            prefix.prefix
        );
        assert!(stderr.contains(&expected), "{kind:?}: expected {expected} in {stderr}");

        // That command, once Valkey is back (empty: it was killed), removes them.
        valkey.restart();
        let cleaned = support::JsonRun::from_output(
            &cli_against(
                &std::env::temp_dir(),
                &db.url(),
                &prefix,
                &valkey.url(),
                &["clean", "--key-prefix", &prefix.prefix, "--force", "--json"],
            )
            .output()
            .unwrap(),
        );
        ok(&cleaned, "clean --force");
        assert_eq!(table(&cleaned, "passenger")["deleted"], stored as u64);
        assert_eq!(conn.passengers().await, seeded, "{kind:?}");
    }
}

#[tokio::test]
async fn rows_the_flusher_skipped_because_someone_else_stored_them_are_not_cleaned() {
    for kind in BOTH {
        let db = seeded_database(kind, "cleanskip").await;
        let prefix = TestPrefix::new("cleanskip");
        let mut conn = Db::open(&db).await;
        let seeded = conn.passengers().await.len();
        let queued = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["write-behind", "--produce-only", "--writes", "10", "--compare", "0"],
        );
        ok(&queued, "write-behind --produce-only");
        let passports: Vec<String> = queued.json["produced"]["passports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        // Someone else stores three of the same passengers first (same names,
        // as read from the stream): the flusher skips them as already stored.
        let mut valkey = support::valkey_connection(&valkey_url());
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(format!("{}{{write-behind}}", prefix.source(&db)))
            .arg("-")
            .arg("+")
            .query(&mut valkey)
            .unwrap();
        for entry in &entries.ids[..3] {
            let field = |name: &str| entry.get::<String>(name).unwrap();
            conn.execute(
                "INSERT INTO passenger (passportno, firstname, lastname) VALUES (?, ?, ?)",
                &[&field("passportno"), &field("firstname"), &field("lastname")],
            )
            .await;
        }
        let flushed = run_json(&db, &prefix, &valkey_url(), &["write-behind", "--flush-only"]);
        ok(&flushed, "write-behind --flush-only");
        assert_eq!(flushed.json["flushed"]["inserted"], 7, "{kind:?}: {}", flushed.stdout);
        assert_eq!(flushed.json["flushed"]["already_stored"], 3);

        let cleaned = clean(&db, &prefix, &[]);
        ok(&cleaned, "clean");
        assert_eq!(
            table(&cleaned, "passenger")["deleted"],
            7,
            "{kind:?}: {}",
            cleaned.stdout
        );
        let left: Vec<String> = conn.passengers().await.into_iter().map(|p| p.1).collect();
        assert_eq!(left.len(), seeded + 3, "{kind:?}");
        for passport in &passports[..3] {
            assert!(left.contains(passport), "{kind:?}: {passport} was someone else's");
        }
    }
}

#[tokio::test]
async fn a_reseed_forgets_the_ledger_so_clean_never_deletes_the_new_rows() {
    for kind in BOTH {
        let db = seeded_database(kind, "cleanreseed").await;
        let prefix = TestPrefix::new("cleanreseed");
        let mut conn = Db::open(&db).await;
        ok(
            &run_json(&db, &prefix, &valkey_url(), &["write-through", "--runs", "2"]),
            "write-through",
        );
        ok(
            &run_json(&db, &prefix, &valkey_url(), &["write-through", "--update", "3"]),
            "write-through --update",
        );
        assert!(conn.ledger_entries().await > 0);
        let reseeded = run_json(&db, &prefix, &valkey_url(), &["seed", "--reset", "--scale", "0.02"]);
        ok(&reseeded, "seed --reset");
        let fresh = conn.passengers().await;

        let cleaned = clean(&db, &prefix, &[]);
        ok(&cleaned, "clean");
        assert_eq!(
            cleaned.json["tables"],
            serde_json::json!([]),
            "{kind:?}: {}",
            cleaned.stdout
        );
        assert_eq!(conn.passengers().await, fresh, "{kind:?}: the new seed is untouched");
    }
}

#[tokio::test]
async fn an_update_run_that_loses_valkey_still_restores_the_passenger_with_cleanup() {
    for kind in BOTH {
        let db = seeded_database(kind, "cleanupdlost").await;
        let mut valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("cleanupdlost", &valkey.url());
        let mut conn = Db::open(&db).await;
        let original = conn.passenger(5).await;
        let mut child = cli_against(
            &std::env::temp_dir(),
            &db.url(),
            &prefix,
            &valkey.url(),
            &["write-through", "--update", "5", "--runs", "100000", "--cleanup"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        wait_for_ledger(&mut conn, 3, &mut child).await;
        assert_ne!(conn.passenger(5).await, original, "the run is changing passenger 5");
        valkey.kill();
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(matches!(output.status.code(), Some(5 | 8)), "{kind:?}: {stderr}");
        assert!(
            stderr.contains("the run stopped part-way; --cleanup gave passenger 5 its values from before the run back"),
            "{kind:?}: {stderr}"
        );
        assert_eq!(conn.passenger(5).await, original, "{kind:?}");
        assert_eq!(conn.ledger_entries().await, 0);
    }
}

/// The first number after `marker` in `text`.
fn number_after(text: &str, marker: &str) -> Option<u64> {
    text.split(marker)
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_write_through_run_that_loses_the_database_says_what_it_committed_and_how_to_remove_it() {
    for kind in BOTH {
        let db = seeded_database(kind, "cleandblost").await;
        let prefix = TestPrefix::new("cleandblost");
        let mut conn = Db::open(&db).await;
        let seeded = conn.passengers().await;
        let mut child = cli_against(
            &std::env::temp_dir(),
            &db.url(),
            &prefix,
            &valkey_url(),
            &["write-through", "--runs", "100000"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        wait_for_ledger(&mut conn, 3, &mut child).await;
        assert!(take_away(&db).await > 0, "{kind:?}: no session was ended");
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{kind:?}: {stderr}");
        let committed = number_after(&stderr, "the run stopped after ")
            .unwrap_or_else(|| panic!("{kind:?}: no count of committed writes in {stderr}"));
        assert!(committed >= 3, "{kind:?}: {stderr}");
        let expected = format!(
            "the run stopped after {committed} of 100000 write(s) had been committed to the database; they stay; `workshop-cli clean --key-prefix '{}'` removes them",
            prefix.prefix
        );
        assert!(stderr.contains(&expected), "{kind:?}: expected {expected} in {stderr}");

        // Once the database is back, that command removes exactly those rows.
        give_back(&db).await;
        let mut conn = Db::open(&db).await;
        // A commit whose answer was lost with the connection is in the
        // database but was not counted: at most one more row than reported.
        let stored = (conn.passengers().await.len() - seeded.len()) as u64;
        assert!(
            stored == committed || stored == committed + 1,
            "{kind:?}: {stored} stored, {committed} reported"
        );
        let cleaned = clean(&db, &prefix, &[]);
        ok(&cleaned, "clean");
        assert_eq!(table(&cleaned, "passenger")["deleted"], stored, "{kind:?}");
        assert_eq!(conn.passengers().await, seeded, "{kind:?}");
    }
}

/// On PostgreSQL the database is taken away for good (it refuses new
/// connections): the run stops and says what the flusher stored. MariaDB has
/// no such switch for one database, so there its sessions are killed and the
/// flusher reconnects: the run must then finish with every write stored once.
#[tokio::test]
async fn a_write_behind_run_that_loses_the_database_says_what_it_stored_and_keeps_the_rest_queued() {
    for kind in BOTH {
        let db = seeded_database(kind, "cleanwbdblost").await;
        let prefix = TestPrefix::new("cleanwbdblost");
        // Enough writes that the run is still flushing when the sessions go.
        let writes = if kind == DatabaseKind::MySql { "3000" } else { "100000" };
        let mut conn = Db::open(&db).await;
        let seeded = conn.passengers().await;
        let mut child = cli_against(
            &std::env::temp_dir(),
            &db.url(),
            &prefix,
            &valkey_url(),
            &["write-behind", "--writes", writes, "--compare", "0", "--batch", "20"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        wait_for_ledger(&mut conn, 20, &mut child).await;
        assert!(take_away(&db).await > 0, "{kind:?}: no session was ended");
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if kind == DatabaseKind::MySql {
            assert_eq!(
                output.status.code(),
                Some(0),
                "{kind:?}: the flusher reconnects: {stderr}"
            );
            let mut conn = Db::open(&db).await;
            let stored = conn.passengers().await.len() - seeded.len();
            assert_eq!(
                stored, 3000,
                "{kind:?}: every write stored once after the sessions were killed"
            );
            ok(&clean(&db, &prefix, &[]), "clean");
            assert_eq!(conn.passengers().await, seeded, "{kind:?}");
            continue;
        }
        assert!(
            matches!(output.status.code(), Some(4 | 8)),
            "{kind:?}: {:?} {stderr}",
            output.status
        );
        give_back(&db).await;
        let mut conn = Db::open(&db).await;
        let stored = (conn.passengers().await.len() - seeded.len()) as u64;
        assert!(stored >= 20, "{kind:?}: {stored}");
        let reported = number_after(&stderr, "the flusher had committed ")
            .unwrap_or_else(|| panic!("{kind:?}: no count of stored rows in {stderr}"));
        assert_eq!(
            reported, stored,
            "{kind:?}: the count said equals the rows stored: {stderr}"
        );
        assert!(
            stderr.contains(&format!("`workshop-cli clean --key-prefix '{}'", prefix.prefix)),
            "{kind:?}: the command that removes them: {stderr}"
        );
        // What is still queued stays in Valkey, so clean refuses until it is flushed or forced.
        let forced = clean(&db, &prefix, &["--force"]);
        ok(&forced, "clean --force");
        assert_eq!(table(&forced, "passenger")["deleted"], stored, "{kind:?}");
        assert_eq!(conn.passengers().await, seeded, "{kind:?}");
        assert!(prefix.keys().is_empty(), "{kind:?}");
    }
}
