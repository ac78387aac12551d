//! `--sql` on a real database: reads only, bounded in time, cancelled on
//! Ctrl-C and SIGTERM, big cells cut for display. Both databases.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use support::{cli_against, run_json, valkey_url, JsonRun, TestDatabase, TestPrefix, BOTH};
use workshop_cli::config::DatabaseKind;

const NOT_A_READ: &str = "error: --sql is not a read: ";
const ONLY_READS: &str = "workshop-cli only measures reads and never changes data";

/// Statements run by the test itself, on the test's database.
async fn execute(db: &TestDatabase, statements: &[&str]) {
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.expect("connect");
            for sql in statements {
                sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
            }
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
            for sql in statements {
                sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
            }
        }
    }
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.expect("connect");
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.expect(sql)
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.expect(sql)
        }
    }
}

/// A database holding table `t` with three rows (no seeding needed).
async fn database_with_three_rows(kind: DatabaseKind, label: &str) -> TestDatabase {
    let db = TestDatabase::create(kind, label).await;
    execute(
        &db,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY)",
            "INSERT INTO t VALUES (1), (2), (3)",
        ],
    )
    .await;
    db
}

fn cache_aside(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    run_json(db, prefix, &valkey_url(), &[&["cache-aside"], args].concat())
}

#[tokio::test]
async fn writes_given_with_sql_are_refused_and_change_no_row() {
    for kind in BOTH {
        let db = database_with_three_rows(kind, "refused").await;
        let prefix = TestPrefix::new("refused");
        for (sql, reason) in [
            ("UPDATE t SET id = id + 10", "it starts with UPDATE"),
            ("delete from t", "it starts with DELETE"),
            ("INSERT INTO t VALUES (4)", "it starts with INSERT"),
            ("DROP TABLE t", "it starts with DROP"),
            ("SELECT 1; DELETE FROM t", "it holds more than one statement"),
            ("SELECT * FROM t FOR UPDATE", "it locks rows (FOR UPDATE / FOR SHARE)"),
            (
                "WITH gone AS (DELETE FROM t RETURNING id) SELECT count(*) FROM gone",
                "it runs DELETE inside the query",
            ),
        ] {
            let run = cache_aside(&db, &prefix, &["--sql", sql, "--runs", "3", "--fresh"]);
            assert_eq!(run.code, Some(6), "{kind:?} {sql}: {}", run.stderr);
            let line = run.stderr.trim_end();
            assert!(
                line.starts_with(&format!("{NOT_A_READ}{reason}; {ONLY_READS}")),
                "{kind:?} {sql}: {line}"
            );
            assert_eq!(line.lines().count(), 1, "{line}");
            assert_eq!(count(&db, "SELECT COUNT(*) FROM t").await, 3, "{kind:?} {sql}");
            assert_eq!(
                count(&db, "SELECT COUNT(*) FROM t WHERE id IN (1, 2, 3)").await,
                3,
                "{kind:?} {sql}"
            );
        }
        assert!(prefix.keys().is_empty(), "nothing is cached for a refused statement");
    }
}

#[tokio::test]
async fn stampede_refuses_a_write_given_with_sql_too() {
    let db = database_with_three_rows(DatabaseKind::Postgres, "stampederefused").await;
    let prefix = TestPrefix::new("stampederefused");
    let run = run_json(&db, &prefix, &valkey_url(), &["stampede", "--sql", "DELETE FROM t"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert!(run.stderr.starts_with(NOT_A_READ), "{}", run.stderr);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM t").await, 3);
}

#[tokio::test]
async fn a_write_hidden_in_a_function_is_stopped_by_the_read_only_transaction() {
    for kind in BOTH {
        let db = database_with_three_rows(kind, "hiddenwrite").await;
        let prefix = TestPrefix::new("hiddenwrite");
        // The lexer sees a SELECT of a function; only the server knows it writes.
        let create = match kind {
            DatabaseKind::MySql => {
                "CREATE FUNCTION add_row() RETURNS INT MODIFIES SQL DATA BEGIN INSERT INTO t VALUES (99); RETURN 1; END"
            }
            DatabaseKind::Postgres => {
                "CREATE FUNCTION add_row() RETURNS int LANGUAGE sql AS 'INSERT INTO t VALUES (99) RETURNING 1'"
            }
        };
        execute(&db, &[create]).await;
        let run = cache_aside(&db, &prefix, &["--sql", "SELECT add_row() AS added", "--runs", "2"]);
        assert_eq!(run.code, Some(6), "{kind:?}: {}", run.stderr);
        assert!(
            run.stderr
                .starts_with("error: the server refused to change data: --sql runs in a read-only transaction ("),
            "{kind:?}: {}",
            run.stderr
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM t").await, 3, "{kind:?}");
        // The same function outside the workshop does write: the guard is what stopped it.
        execute(&db, &["SELECT add_row()"]).await;
        assert_eq!(count(&db, "SELECT COUNT(*) FROM t").await, 4, "{kind:?}");
    }
}

#[tokio::test]
async fn an_unknown_table_is_named_and_only_workshop_tables_say_seed() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "unknowntable").await;
        let prefix = TestPrefix::new("unknowntable");
        let run = cache_aside(&db, &prefix, &["--sql", "SELECT * FROM no_such_table"]);
        assert_eq!(run.code, Some(4), "{kind:?}: {}", run.stderr);
        let quoted = match kind {
            DatabaseKind::MySql => format!("'{}.no_such_table'", db.name),
            DatabaseKind::Postgres => "\"no_such_table\"".to_string(),
        };
        assert!(
            run.stderr
                .starts_with(&format!("error: table {quoted} does not exist in this database (")),
            "{kind:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.trim_end().ends_with("); check the table name in the query"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("seed"), "{}", run.stderr);

        let run = cache_aside(&db, &prefix, &["--sql", "SELECT * FROM airport"]);
        assert_eq!(run.code, Some(4), "{kind:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("run `workshop-cli seed`"),
            "{kind:?}: {}",
            run.stderr
        );
    }
}

fn sleep_sql(kind: DatabaseKind, seconds: &str) -> String {
    match kind {
        DatabaseKind::MySql => format!("SELECT SLEEP({seconds}) AS slept"),
        DatabaseKind::Postgres => format!("SELECT 1 AS slept FROM pg_sleep({seconds})"),
    }
}

const TIMED_OUT: &str = "error: the query ran longer than the query timeout of 1 s, so the server stopped it; raise it with --query-timeout SECONDS (0: no limit) or make the query faster\n";

#[tokio::test]
async fn a_slow_query_stops_at_the_query_timeout() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "timeout").await;
        let prefix = TestPrefix::new("timeout");
        let started = Instant::now();
        // Three tasks, three 20 s queries at once: the server stops every one.
        let run = cache_aside(
            &db,
            &prefix,
            &[
                "--sql",
                &sleep_sql(kind, "20"),
                "--query-timeout",
                "1",
                "--concurrency",
                "3",
            ],
        );
        let took = started.elapsed();
        assert_eq!(run.code, Some(4), "{kind:?}: {}", run.stderr);
        assert_eq!(run.stderr, TIMED_OUT, "{kind:?}");
        // Stopped by the timeout, long before the 20 s queries could have ended on
        // their own (the wide gap leaves room for start-up on a busy machine).
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(10),
            "{kind:?}: {took:?}"
        );
        let needle = match kind {
            DatabaseKind::MySql => "SLEEP(20)",
            DatabaseKind::Postgres => "pg_sleep(20)",
        };
        let gone = wait_until(Duration::from_secs(2), async || running_queries(&db, needle).await == 0).await;
        assert!(gone, "{kind:?}: a timed-out query still runs 2 s after the exit");
        eprintln!("{kind:?}: a 20 s query with --query-timeout 1 ended after {took:?}");
    }
}

#[tokio::test]
async fn the_query_timeout_comes_from_the_environment_too() {
    let db = TestDatabase::create(DatabaseKind::Postgres, "timeoutenv").await;
    let prefix = TestPrefix::new("timeoutenv");
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = cli_against(
        dir.path(),
        &db.url(),
        &prefix,
        &valkey_url(),
        &["cache-aside", "--sql", &sleep_sql(DatabaseKind::Postgres, "20")],
    )
    .env("WORKSHOP_QUERY_TIMEOUT", "1")
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&output.stderr), TIMED_OUT);
    // Stopped at 1 s, far from the 20 s the query asks for.
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Queries of `db` that run `needle` right now, seen from a connection of
/// the test's own (excluded).
async fn running_queries(db: &TestDatabase, needle: &str) -> i64 {
    let like = format!("%{needle}%");
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.expect("connect");
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE DB = ? AND ID <> CONNECTION_ID() AND COMMAND <> 'Sleep' AND INFO LIKE ?",
            )
            .bind(&db.name)
            .bind(&like)
            .fetch_one(&mut conn)
            .await
            .expect("processlist")
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE $2",
            )
            .bind(&db.name)
            .bind(&like)
            .fetch_one(&mut conn)
            .await
            .expect("pg_stat_activity")
        }
    }
}

/// Polls until `condition` holds or `within` passes; returns whether it held.
async fn wait_until(within: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// Waits for the child to exit (at most `within`), killing it if it does not.
fn exit_code(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("workshop-cli did not exit within {within:?} of the signal");
}

/// Three 20-second queries in flight, then a signal: the process exits with
/// `expected_code` and the server runs none of them two seconds later.
async fn a_signal_cancels_the_running_queries(kind: DatabaseKind, signal_name: &str, expected_code: i32) {
    let db = TestDatabase::create(kind, "cancel").await;
    let prefix = TestPrefix::new("cancel");
    let dir = tempfile::tempdir().unwrap();
    let sql = sleep_sql(kind, "20");
    let needle = match kind {
        DatabaseKind::MySql => "SLEEP(20)",
        DatabaseKind::Postgres => "pg_sleep(20)",
    };
    let mut child = cli_against(
        dir.path(),
        &db.url(),
        &prefix,
        &valkey_url(),
        &[
            "cache-aside",
            "--sql",
            &sql,
            "--concurrency",
            "3",
            "--runs",
            "3",
            "--no-cache",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start workshop-cli");
    let all_running = wait_until(Duration::from_secs(15), async || {
        running_queries(&db, needle).await == 3
    })
    .await;
    assert!(
        all_running,
        "{kind:?}: the three queries never showed in the process list"
    );

    signal(&child, signal_name);
    let signalled = Instant::now();
    let code = exit_code(&mut child, Duration::from_secs(5));
    let exited = signalled.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, Some(expected_code), "{kind:?}: {stderr}");
    assert!(
        stderr.contains("; 3 database queries still running on the server were cancelled"),
        "{kind:?}: {stderr}"
    );
    let gone = wait_until(Duration::from_secs(2), async || running_queries(&db, needle).await == 0).await;
    assert!(gone, "{kind:?}: the server still runs the queries 2 s after the exit");
    eprintln!("{kind:?} {signal_name}: exited {exited:?} after the signal");
}

#[tokio::test]
async fn ctrl_c_cancels_the_queries_it_started_on_the_server() {
    for kind in BOTH {
        a_signal_cancels_the_running_queries(kind, "INT", 130).await;
    }
}

#[tokio::test]
async fn sigterm_cancels_the_queries_it_started_on_the_server() {
    a_signal_cancels_the_running_queries(DatabaseKind::MySql, "TERM", 143).await;
}

#[tokio::test]
async fn a_big_cell_is_cut_in_the_table_and_whole_in_json() {
    const BYTES: usize = 3_000_000;
    for kind in BOTH {
        let db = TestDatabase::create(kind, "bigcell").await;
        let prefix = TestPrefix::new("bigcell");
        let sql = format!("SELECT REPEAT('x', {BYTES}) AS big");
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let output = cli_against(
            dir.path(),
            &db.url(),
            &prefix,
            &valkey_url(),
            &["cache-aside", "--sql", &sql, "--runs", "2"],
        )
        .output()
        .unwrap();
        let took = started.elapsed();
        let table = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{kind:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(table.contains(&format!("{}…(3.0 MB)", "x".repeat(60))), "{kind:?}");
        assert!(!table.contains(&"x".repeat(61)), "{kind:?}: the cell is not cut");
        assert!(took < Duration::from_secs(10), "{kind:?}: table mode took {took:?}");
        eprintln!("{kind:?}: a 3 MB cell in table mode took {took:?}");

        let run = cache_aside(&db, &prefix, &["--sql", &sql, "--runs", "2"]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(
            run.json["result"]["rows"][0][0].as_str().map(str::len),
            Some(BYTES),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn a_slow_query_keeps_the_default_baseline_within_its_time_budget() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "budget").await;
        let prefix = TestPrefix::new("budget");
        let started = Instant::now();
        // Default --runs 10, so a default baseline of 10 one-second reads: 10 s unbounded.
        let run = cache_aside(&db, &prefix, &["--sql", &sleep_sql(kind, "1")]);
        let took = started.elapsed();
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let budget = &run.json["baseline_budget"];
        assert_eq!(budget["cut"], true, "{kind:?}: {}", run.json);
        assert_eq!(budget["planned"], 10);
        assert_eq!(budget["budget_ms"], 3000.0);
        let reads = run.json["baseline_reads"].as_u64().unwrap();
        // Three one-second reads fill the 3 s budget; a stalled machine may make two do it.
        assert!((2..=4).contains(&reads), "{kind:?}: {reads} baseline reads");
        assert!(
            run.stderr.contains(&format!(
                "warning: the query is slow: the database baseline stopped after {reads} of 10 reads, at its 3 s time budget"
            )),
            "{kind:?}: {}",
            run.stderr
        );
        // One miss (1 s), nine hits, about 3 s of baseline: far from the 11 s unbounded.
        assert!(took < Duration::from_secs(8), "{kind:?}: {took:?}");
        eprintln!("{kind:?}: default cache-aside on a 1 s query took {took:?} ({reads} baseline reads)");

        // An explicit --baseline is done in full.
        let run = cache_aside(
            &db,
            &prefix,
            &["--sql", &sleep_sql(kind, "0.5"), "--runs", "1", "--baseline", "7"],
        );
        assert_eq!(run.json["baseline_reads"], 7, "{kind:?}: {}", run.stderr);
        assert!(run.json.get("baseline_budget").is_none());
    }
}

#[tokio::test]
async fn a_slow_query_shows_progress_within_a_second_on_a_terminal() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "progress").await;
        let prefix = TestPrefix::new("progress");
        let dir = tempfile::tempdir().unwrap();
        let mut command = cli_against(
            dir.path(),
            &db.url(),
            &prefix,
            &valkey_url(),
            &["cache-aside", "--sql", &sleep_sql(kind, "3"), "--runs", "1"],
        );
        command.env("TERM", "xterm");
        let started = Instant::now();
        let mut session = rexpect::session::spawn_command(command, Some(1000)).expect("start in a pseudo-terminal");
        // The first read alone takes 3 s: the bar must be drawn before it ends.
        session
            .exp_string("reads [")
            .unwrap_or_else(|e| panic!("{kind:?}: no progress bar within a second: {e}"));
        let shown = started.elapsed();
        assert!(shown < Duration::from_millis(1500), "{kind:?}: {shown:?}");
        eprintln!("{kind:?}: progress shown after {shown:?}");
        let _ = session.process_mut().signal(rexpect::process::Signal::SIGINT);
        let _ = session.process().wait();
    }
}

#[tokio::test]
async fn every_connection_carries_the_query_timeout_and_zero_sets_none() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "timeoutset").await;
        let prefix = TestPrefix::new("timeoutset");
        let setting = match kind {
            DatabaseKind::MySql => "SELECT CAST(@@max_statement_time AS CHAR) AS limit_s",
            DatabaseKind::Postgres => "SELECT current_setting('statement_timeout') AS limit_s",
        };
        let read = |extra: &[&str]| {
            let args = [
                &["--sql", setting, "--runs", "3", "--concurrency", "3", "--no-cache"],
                extra,
            ]
            .concat();
            let run = cache_aside(&db, &prefix, &args);
            assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
            run.json["result"]["rows"][0][0]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let (default, raised, none) = (
            read(&[]),
            read(&["--query-timeout", "2.5"]),
            read(&["--query-timeout", "0"]),
        );
        match kind {
            DatabaseKind::MySql => {
                assert_eq!(default, "30.000000");
                assert_eq!(raised, "2.500000");
                // The server's own default (0 here): the workshop set nothing.
                assert_eq!(none, "0.000000");
            }
            DatabaseKind::Postgres => {
                assert_eq!(default, "30s");
                assert_eq!(raised, "2500ms");
                assert_eq!(none, "0");
            }
        }
    }
}

#[test]
fn a_query_timeout_that_is_not_a_number_of_seconds_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["abc", "-1", "90000"] {
        let output = support::workshop_cli(dir.path())
            .args([&format!("--query-timeout={bad}"), "check-env"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: invalid value '{bad}' for '--query-timeout <SECONDS>': '{bad}' is not a number of seconds from 0 (no limit) to 86400"
            )),
            "{stderr}"
        );
    }
}
