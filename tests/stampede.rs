//! Exercise 6 against the real services, on both databases: how many
//! database queries one cold key costs with and without protection.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    cli_against, run_json, seeded_database, stderr, stdout, valkey_url, workshop_cli, JsonRun, TestDatabase,
    TestPrefix, BOTH,
};
use workshop_cli::config::DatabaseKind;
use workshop_cli::db::{Database, PoolSettings};
use workshop_cli::exercises::queries::BuiltinQuery;
use workshop_cli::exercises::stampede::fleet::READY;
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

/// A query that takes `seconds` on either engine (one row, column `slept`).
fn sleep_sql(kind: DatabaseKind, seconds: f64) -> String {
    match kind {
        DatabaseKind::MySql => format!("SELECT SLEEP({seconds}) AS slept"),
        DatabaseKind::Postgres => format!("SELECT 1 AS slept FROM pg_sleep({seconds})"),
    }
}

/// Runs one statement in the test's database (set-up the binary must not do).
async fn execute(db: &TestDatabase, statement: &str) {
    use sqlx::Connection;
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.unwrap();
            sqlx::raw_sql(statement).execute(&mut conn).await.expect(statement);
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
            sqlx::raw_sql(statement).execute(&mut conn).await.expect(statement);
        }
    }
}

/// A count read from the test's database.
async fn scalar(db: &TestDatabase, query: &str) -> i64 {
    use sqlx::Connection;
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.unwrap();
            sqlx::query_scalar(query).fetch_one(&mut conn).await.expect(query)
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.unwrap();
            sqlx::query_scalar(query).fetch_one(&mut conn).await.expect(query)
        }
    }
}

/// Polls `condition` every 10 ms until it holds; panics after `limit`.
fn wait_until<T>(limit: Duration, what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn valkey_get(key: &str) -> Option<String> {
    let mut conn = support::valkey_connection(&valkey_url());
    redis::Commands::get(&mut conn, key).unwrap()
}

/// A fleet copy started by the test itself: it connects, says it is ready
/// on stderr and waits for "go" on stdin (the fleet's own start signal).
struct StartedMember {
    child: Child,
    ready: std::sync::mpsc::Receiver<()>,
    /// Everything else it wrote on stderr, to show when it fails.
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn start_fleet_member(db: &TestDatabase, prefix: &TestPrefix, sql: &str) -> StartedMember {
    let mut child = cli_against(
        &std::env::temp_dir(),
        &db.url(),
        prefix,
        &valkey_url(),
        &[
            "stampede",
            "--fleet-member",
            "--mode",
            "lock",
            "--concurrency",
            "20",
            "--sql",
            sql,
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, ready) = std::sync::mpsc::channel();
    let kept: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
    let lines = std::sync::Arc::clone(&kept);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line == READY {
                let _ = tx.send(());
            } else {
                lines.lock().unwrap().push(line);
            }
        }
    });
    StartedMember {
        child,
        ready,
        stderr: kept,
    }
}

#[tokio::test]
async fn two_processes_started_together_with_the_lock_run_one_query_between_them() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "st_two").await;
        let prefix = TestPrefix::new("st_two");
        // A fresh prefix: the key is cold, and fleet copies never delete it.
        // The query takes half a second, so a burst that starts while the other
        // process holds the lock must wait for it.
        let sql = sleep_sql(kind, 0.5);
        let mut members = [
            start_fleet_member(&db, &prefix, &sql),
            start_fleet_member(&db, &prefix, &sql),
        ];
        // The start barrier: both are connected and waiting before either reads.
        for member in &members {
            if let Err(error) = member.ready.recv_timeout(Duration::from_secs(30)) {
                panic!(
                    "{kind:?}: a member is not ready ({error}): {:?}",
                    member.stderr.lock().unwrap()
                );
            }
        }
        for member in &mut members {
            let mut stdin = member.child.stdin.take().unwrap();
            stdin.write_all(b"go\n").unwrap();
        }
        let reports: Vec<Value> = tokio::task::spawn_blocking(move || {
            members
                .into_iter()
                .map(|member| {
                    let output = member.child.wait_with_output().unwrap();
                    assert_eq!(output.status.code(), Some(0), "{kind:?}");
                    serde_json::from_slice(&output.stdout).unwrap()
                })
                .collect()
        })
        .await
        .unwrap();
        let queries: Vec<u64> = reports
            .iter()
            .map(|r| r["database_queries"].as_u64().unwrap())
            .collect();
        assert_eq!(queries.iter().sum::<u64>(), 1, "{kind:?}: {reports:?}");
        // They overlapped: each burst started before the other one ended ...
        let started = |r: &Value| r["started_at_unix_ms"].as_f64().unwrap();
        let finished = |r: &Value| r["finished_at_unix_ms"].as_f64().unwrap();
        assert!(
            started(&reports[0]) < finished(&reports[1]) && started(&reports[1]) < finished(&reports[0]),
            "{kind:?}: the bursts did not overlap: {reports:?}"
        );
        // ... and every request of the one that ran no query waited for the
        // other process's lock instead of finding the cache already filled.
        let idle = &reports[usize::from(queries[0] == 1)];
        assert_eq!(idle["counts"]["waited"], 20, "{kind:?}: {idle}");
        assert_eq!(idle["counts"]["hits"], 0, "{kind:?}: {idle}");
        for report in &reports {
            assert_eq!(report["counts"]["fell_back_wait_expired"], 0, "{report}");
            assert_eq!(report["digests"].as_object().unwrap().len(), 1, "{report}");
        }
        // Both processes got the same rows: the same single digest, 20 requests each.
        assert_eq!(reports[0]["digests"], reports[1]["digests"], "{kind:?}");
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
            "error: could not compare: Valkey did not answer, so every request went to the database and the lock mode could not take locks; start Valkey (`just up`) or point VALKEY_URL at it (the warning above says which), and run again\n"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_input_is_rejected_before_anything_is_written() {
    let prefix = TestPrefix::new("st_bad");
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 9] = [
        (&["--concurrency", "0"], "--concurrency must be from 1 to 10000 (got 0)"),
        (
            &["--concurrency", "10001"],
            "--concurrency must be from 1 to 10000 (got 10001)",
        ),
        (&["--rounds", "0"], "--rounds must be from 1 to 1000 (got 0)"),
        (&["--processes", "9"], "--processes must be from 1 to 8 (got 9)"),
        (&["--time-budget", "0"], "--time-budget must be from 1 to 3600 (got 0)"),
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

/// The fleet's children: processes whose parent is `parent` and that run as a copy.
fn fleet_member_pids(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // "pid (name) state ppid ...": the name may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(parent) && cmdline.contains("--fleet-member") {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn a_fleet_copy_killed_while_it_holds_the_lock_is_named_the_others_are_counted_and_the_exit_is_8() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "st_kill").await;
        let prefix = TestPrefix::new("st_kill");
        // Two copies, a 2 s query: whoever takes the lock holds it for 2 s.
        let sql = sleep_sql(kind, 2.0);
        let child = stampede_command(
            &db.url(),
            &prefix,
            &valkey_url(),
            &[
                "--mode",
                "lock",
                "--processes",
                "2",
                "--concurrency",
                "5",
                "--lock-ttl-ms",
                "3000",
                "--sql",
                &sql,
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let parent = child.id();
        // The condition: a copy holds the lock; its token starts with its pid.
        let holder = wait_until(Duration::from_secs(60), "a fleet copy to take the lock", || {
            let lock = prefix.keys().into_iter().find(|k| k.contains(":lock:"))?;
            let token = valkey_get(&lock)?;
            let pid: u32 = token.split(':').next()?.parse().ok()?;
            fleet_member_pids(parent).contains(&pid).then_some(pid)
        });
        let killed = std::process::Command::new("kill")
            .args(["-9", &holder.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let run = tokio::task::spawn_blocking(move || JsonRun::from_output(&child.wait_with_output().unwrap()))
            .await
            .unwrap();
        assert_eq!(run.code, Some(8), "{kind:?}: {}", run.stderr);
        let lock = mode(&run, "lock");
        let lost = lock["lost_processes"].as_array().unwrap();
        assert_eq!(lost.len(), 1, "{kind:?}: {lock}");
        assert_eq!(lost[0]["pid"], holder);
        assert_eq!(lost[0]["ended"], "killed by signal 9 (SIGKILL)");
        let number = lost[0]["process"].as_u64().unwrap();
        // The survivor's counts are there; the lost copy's are not.
        assert_eq!(lock["requests"], 5, "{kind:?}: {lock}");
        let per_process = lock["queries_per_process"].as_array().unwrap();
        assert_eq!(per_process[usize::try_from(number - 1).unwrap()], Value::Null);
        // The dead holder cost one takeover after its lock expired, not one query per waiter.
        assert_eq!(queries(lock), 1, "{kind:?}: {lock}");
        assert_eq!(lock["counts"]["lock_takeovers"], 1, "{kind:?}: {lock}");
        assert_eq!(lock["fell_back"], 0, "{kind:?}: {lock}");
        assert_eq!(lock["consistent"], true);
        assert!(
            run.stderr.ends_with(&format!(
                "error: incomplete fleet: fleet process {number} of 2 (pid {holder}) was killed by signal 9 (SIGKILL) before it reported (Valkey lock); the counts are those of the processes that finished; run again\n"
            )),
            "{kind:?}: {}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn a_dead_lock_holder_costs_one_takeover_query_not_one_per_waiter() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "st_dead").await;
        let prefix = TestPrefix::new("st_dead");
        let args = ["--mode", "lock", "--sql", "SELECT 1 AS one", "--keep-cache"];
        // A first run names the keys; then the key is made cold again.
        let first = stampede(&db, &prefix, &[&args[..], &["--concurrency", "1"]].concat());
        assert_eq!(first.code, Some(0), "{kind:?}: {}", first.stderr);
        let value_key = first.json["keys"]["value"].as_str().unwrap().to_string();
        let lock_key = first.json["keys"]["lock"].as_str().unwrap().to_string();
        let mut conn = support::valkey_connection(&valkey_url());
        let _: () = redis::Commands::del(&mut conn, &value_key).unwrap();
        // A holder took the lock with the default TTL and died: nobody releases it.
        let _: () = redis::cmd("SET")
            .arg(&lock_key)
            .arg("dead-holder")
            .arg("PX")
            .arg(5000)
            .query(&mut conn)
            .unwrap();
        let run = stampede(&db, &prefix, &[&args[..], &["--concurrency", "20"]].concat());
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        assert!(
            run.json["lock"]["wait_ms"].as_f64().unwrap() > run.json["lock"]["ttl_ms"].as_f64().unwrap(),
            "the default wait outlasts the lock"
        );
        let lock = mode(&run, "lock");
        // The fault was there during the run: every request waited for the dead
        // lock (seconds, where a free lock costs milliseconds), until it expired.
        assert!(lock["latency"]["min"].as_f64().unwrap() > 1000.0, "{kind:?}: {lock}");
        assert_eq!(queries(lock), 1, "{kind:?}: {lock}");
        assert_eq!(lock["counts"]["lock_takeovers"], 1, "{kind:?}: {lock}");
        assert_eq!(lock["fell_back"], 0, "{kind:?}: {lock}");
        assert_eq!(lock["waited"], 19, "{kind:?}: {lock}");
        assert_eq!(prefix.keys(), vec![value_key], "the takeover released the lock");
    }
}

#[tokio::test]
async fn a_fleet_copy_whose_query_fails_exits_with_the_database_code() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "st_memberdb").await;
        let prefix = TestPrefix::new("st_memberdb");
        execute(&db, "CREATE TABLE gate (n INT)").await;
        execute(&db, "INSERT INTO gate VALUES (1)").await;
        // The parent's timed cold load reads the table for 1 s; the table is
        // dropped while it runs, so the copies started after it find none.
        let sql = match kind {
            DatabaseKind::MySql => "SELECT n FROM gate WHERE SLEEP(1) = 0",
            DatabaseKind::Postgres => "SELECT n FROM gate, pg_sleep(1)",
        };
        let child = stampede_command(
            &db.url(),
            &prefix,
            &valkey_url(),
            &["--mode", "lock", "--processes", "2", "--concurrency", "3", "--sql", sql],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let probe = match kind {
            DatabaseKind::MySql => "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%FROM gate WHERE SLEEP%' AND ID <> CONNECTION_ID()",
            DatabaseKind::Postgres => "SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE '%FROM gate, pg_sleep%' AND state = 'active' AND pid <> pg_backend_pid()",
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while scalar(&db, probe).await == 0 {
            assert!(Instant::now() < deadline, "{kind:?}: the cold load never ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Queued behind the running read; any later read of the table waits for it, then fails.
        execute(&db, "DROP TABLE gate").await;
        let run = tokio::task::spawn_blocking(move || JsonRun::from_output(&child.wait_with_output().unwrap()))
            .await
            .unwrap();
        assert_eq!(run.code, Some(4), "{kind:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("error: fleet process ") && run.stderr.contains("failed (exit 4): "),
            "{kind:?}: {}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "one error line: {}", run.stderr);
    }
}

#[tokio::test]
async fn a_slow_query_is_fitted_to_the_time_budget_and_the_run_says_so() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "st_budget").await;
        let prefix = TestPrefix::new("st_budget");
        let sql = sleep_sql(kind, 1.0);
        let started = Instant::now();
        let run = stampede(&db, &prefix, &["--sql", &sql, "--time-budget", "10"]);
        let took = started.elapsed();
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let plan = &run.json["plan"];
        assert!(plan["cold_load_ms"].as_f64().unwrap() >= 900.0, "{plan}");
        assert_eq!(plan["time_budget_ms"], 10000.0);
        assert_eq!(plan["adapted"], true, "{plan}");
        let unprotected = plan["unprotected_requests"].as_u64().unwrap();
        assert!((2..100).contains(&unprotected), "{plan}");
        assert!(plan["estimated_ms"].as_f64().unwrap() <= 10000.0, "{plan}");
        assert_eq!(mode(&run, "none")["requests"], unprotected);
        assert_eq!(mode(&run, "none")["database_queries"], unprotected);
        assert_eq!(
            mode(&run, "lock")["requests"],
            100,
            "the protected modes keep their size"
        );
        assert_eq!(run.json["expiry"], Value::Null);
        assert!(
            run.json["expiry_skipped"]
                .as_str()
                .unwrap()
                .starts_with("to stay within the 10 s time budget"),
            "{}",
            run.json["expiry_skipped"]
        );
        let notes = plan["notes"].as_array().unwrap();
        assert!(
            notes.iter().any(|n| n
                .as_str()
                .unwrap()
                .starts_with(&format!("none: {unprotected} requests instead of 100"))),
            "{notes:?}"
        );
        // The whole process, connecting included, stays within the budget.
        assert!(took < Duration::from_secs(10), "{kind:?}: took {took:?}");
    }
}

#[tokio::test]
async fn on_a_terminal_progress_shows_within_a_second_and_names_the_running_mode() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "st_spinner").await;
        let prefix = TestPrefix::new("st_spinner");
        let sql = sleep_sql(kind, 0.5);
        let command = cli_against(
            &std::env::temp_dir(),
            &db.url(),
            &prefix,
            &valkey_url(),
            &["stampede", "--mode", "none", "--concurrency", "30", "--sql", &sql],
        );
        let started = Instant::now();
        let mut session = rexpect::session::spawn_command(command, Some(30_000)).unwrap();
        // Before anything has connected, the terminal already shows what runs.
        session.exp_string("connecting").unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{kind:?}: {:?}",
            started.elapsed()
        );
        session.exp_string("timing one cold load of the query").unwrap();
        // 30 half-second queries on 10 connections: the spinner names the mode while they run.
        session.exp_string("none: ").unwrap();
        session.exp_string("/30 requests done").unwrap();
        session.exp_string("One cold key: 30 concurrent requests").unwrap();
        session.exp_eof().unwrap();
    }
}
