//! `workshop-cli grade` on small fixture programs (fixtures/grade/), on both
//! databases: each check fails exactly where the fixture's mistake is.
//!
//! The grader creates its own database and a private Valkey per run and counts
//! statements only in that database, so the other tests running at the same
//! time on the shared servers never change a verdict.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::*;
use workshop_cli::config::DatabaseKind;

fn fixture(name: &str) -> String {
    format!("{}/fixtures/grade/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `workshop-cli --json grade ARGS` against the shared server of `kind`
/// (the grader makes its own database there) and returns the run.
fn grade(kind: DatabaseKind, args: &[&str]) -> JsonRun {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut command = workshop_cli(dir.path());
    command
        .env("DATABASE_URL", admin_url(kind))
        .arg("--json")
        .arg("grade")
        .args(args);
    if std::env::var_os("WORKSHOP_VALKEY_SERVER").is_none() {
        let local = concat!(env!("CARGO_MANIFEST_DIR"), "/.services/bin/valkey-server");
        if std::path::Path::new(local).exists() {
            command.env("WORKSHOP_VALKEY_SERVER", local);
        }
    }
    JsonRun::from_output(&command.output().expect("run workshop-cli grade"))
}

/// check id → status (`pass`, `fail`, `skipped`).
fn statuses(run: &JsonRun) -> BTreeMap<String, String> {
    run.json["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {}\nstderr: {}", run.stdout, run.stderr))
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every check passes except those in `failing`, which fail.
fn assert_fails_exactly(run: &JsonRun, failing: &[&str], label: &str) {
    let statuses = statuses(run);
    for (id, status) in &statuses {
        let expected = if failing.contains(&id.as_str()) { "fail" } else { "pass" };
        assert_eq!(status, expected, "{label}: check {id}\n{}", run.stdout);
    }
    for id in failing {
        assert!(statuses.contains_key(*id), "{label}: no check {id}");
    }
    let code = if failing.is_empty() { 0 } else { 9 };
    assert_eq!(run.code, Some(code), "{label}: exit code; stderr: {}", run.stderr);
}

fn step<'a>(run: &'a JsonRun, name: &str) -> &'a Value {
    run.json["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {}", run.stdout))
}

/// The grader's database is gone after the run.
async fn assert_dropped(kind: DatabaseKind, run: &JsonRun) {
    let database = run.json["database"].as_str().unwrap_or_default();
    let name = database
        .split_whitespace()
        .find(|w| w.starts_with("workshop_grade_"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        .unwrap_or_else(|| panic!("no database name in {database:?}"));
    let admin = workshop_cli::config::DatabaseTarget::parse(&admin_url(kind), workshop_cli::config::Source::Flag)
        .unwrap()
        .connect_url();
    use sqlx::Connection;
    let found: i64 = match kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&admin).await.unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?")
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(found, 0, "{name} was left behind");
}

#[tokio::test]
async fn a_correct_cache_aside_script_passes_every_check() {
    for kind in BOTH {
        let script = fixture("cache_aside_good.sh");
        let run = grade(kind, &["script", "--exercise", "cache-aside", "--", &script]);
        assert_fails_exactly(&run, &[], &format!("{kind:?}"));
        // The evidence is the servers' counts: one query cold, none in a new process.
        assert_eq!(step(&run, "1 cold")["queries"], 1, "{kind:?}");
        assert_eq!(step(&run, "2 new process")["queries"], 0, "{kind:?}");
        assert!(step(&run, "2 new process")["keyspace_hits"].as_u64() >= Some(1));
        assert!(step(&run, "5 Valkey stopped")["queries"].as_u64() >= Some(1));
        assert_dropped(kind, &run).await;
    }
}

#[tokio::test]
async fn a_per_process_key_fails_only_the_second_process_check() {
    for kind in BOTH {
        let script = fixture("cache_aside_per_process_key.sh");
        let run = grade(kind, &["script", "--exercise", "cache-aside", "--", &script]);
        assert_fails_exactly(&run, &["second-process-hits-cache"], &format!("{kind:?}"));
        assert_eq!(step(&run, "2 new process")["queries"], 1, "{kind:?}");
        assert_eq!(
            step(&run, "2 new process")["new_keys"].as_array().map(Vec::len),
            Some(1)
        );
    }
}

#[tokio::test]
async fn a_script_that_never_sets_a_ttl_fails_only_the_ttl_check() {
    for kind in BOTH {
        let script = fixture("cache_aside_no_ttl.sh");
        let run = grade(kind, &["script", "--exercise", "cache-aside", "--", &script]);
        assert_fails_exactly(&run, &["cold-run-caches-with-ttl"], &format!("{kind:?}"));
    }
}

#[tokio::test]
async fn a_correct_write_through_script_passes_every_check() {
    for kind in BOTH {
        let script = fixture("write_through_good.sh");
        let run = grade(kind, &["script", "--exercise", "write-through", "--", &script]);
        assert_fails_exactly(&run, &[], &format!("{kind:?}"));
        assert_eq!(
            step(&run, "3 a write the database refuses")["new_keys"],
            Value::Array(vec![])
        );
        assert_dropped(kind, &run).await;
    }
}

#[tokio::test]
async fn a_write_through_that_crashes_on_rerun_fails_only_the_rerun_check() {
    for kind in BOTH {
        let script = fixture("write_through_crashes_on_rerun.sh");
        let run = grade(kind, &["script", "--exercise", "write-through", "--", &script]);
        assert_fails_exactly(&run, &["reruns-succeed"], &format!("{kind:?}"));
        assert_ne!(step(&run, "2 again, new last name")["exit_code"], 0);
    }
}

#[tokio::test]
async fn workshop_cli_serve_passes_every_service_check() {
    for kind in BOTH {
        let serve = env!("CARGO_BIN_EXE_workshop-cli");
        let run = grade(kind, &["service", "--", serve, "serve", "--listen", "127.0.0.1:{port}"]);
        assert_fails_exactly(&run, &[], &format!("{kind:?}"));
        let stampede = step(&run, "100 concurrent GETs of a cold id");
        assert!(stampede["queries"].as_u64() <= Some(2), "{kind:?}: {stampede}");
        assert!(
            stampede["queries"].as_u64() >= Some(1),
            "{kind:?}: the load was not counted: {stampede}"
        );
        assert_dropped(kind, &run).await;
    }
}

#[tokio::test]
async fn a_broken_service_fails_the_checks_it_breaks() {
    for kind in BOTH {
        let service = fixture("broken_service.py");
        let run = grade(kind, &["service", "--", "python3", &service]);
        assert_fails_exactly(
            &run,
            &[
                "cold-stampede-coalesced",
                "invalidation-reaches-other-instance",
                "missing-ids-cached",
                "metrics-count-requests",
                "ttl-on-every-key",
                "valkey-stopped-still-answers",
            ],
            &format!("{kind:?}"),
        );
        assert!(step(&run, "10 GETs of a missing id")["queries"].as_u64() >= Some(10));
    }
}

#[test]
fn grade_service_needs_a_url_or_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path()).args(["grade", "service"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = workshop_cli(dir.path())
        .args([
            "grade",
            "service",
            "--url",
            "http://127.0.0.1:1",
            "--",
            "python3",
            "x.py",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// Ctrl-C while the graded program runs: the grader's database is dropped
/// and its private Valkey stopped before it exits 130.
#[tokio::test]
async fn ctrl_c_drops_the_graders_database() {
    let kind = DatabaseKind::Postgres;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("slow.sh");
    let started = dir.path().join("started");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch '{}'\nexec sleep 60\n", started.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut command = workshop_cli(dir.path());
    command
        .env("DATABASE_URL", admin_url(kind))
        .args(["grade", "script", "--exercise", "cache-aside", "--"])
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if std::env::var_os("WORKSHOP_VALKEY_SERVER").is_none() {
        let local = concat!(env!("CARGO_MANIFEST_DIR"), "/.services/bin/valkey-server");
        if std::path::Path::new(local).exists() {
            command.env("WORKSHOP_VALKEY_SERVER", local);
        }
    }
    let mut child = command.spawn().unwrap();
    let pattern = format!("workshop_grade_{}_%", child.id());
    let admin = workshop_cli::config::DatabaseTarget::parse(&admin_url(kind), workshop_cli::config::Source::Flag)
        .unwrap()
        .connect_url();
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    async fn count(conn: &mut sqlx::PgConnection, pattern: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname LIKE $1")
            .bind(pattern)
            .fetch_one(conn)
            .await
            .unwrap()
    }
    // Wait until the database exists and the program runs (its `sleep`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let running = loop {
        let sleeping = started.exists();
        if count(&mut conn, &pattern).await == 1 && sleeping {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(running, "the grader never reached its first run");
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130));
    assert_eq!(
        count(&mut conn, &pattern).await,
        0,
        "the grader's database was left behind"
    );
}

/// `serve` started by the test (port 0), its base URL read from its first line.
fn start_serve(db: &TestDatabase, prefix: &TestPrefix, valkey: &str) -> (std::process::Child, String) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut child = cli_against(
        dir.path(),
        &db.url(),
        prefix,
        valkey,
        &["serve", "--listen", "127.0.0.1:0"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("start serve");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("serve's first line");
    std::thread::spawn(move || for _ in out.lines().map_while(Result::ok) {});
    let url = first
        .strip_prefix("serving ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    (child, url)
}

/// `grade service --url A --url B`: two `serve` processes the test started on
/// their own database and key prefix. The grader counts that database's
/// statements (never its own) and scans that prefix; it does not stop a
/// Valkey it did not start, so that one check is skipped and says why.
#[tokio::test]
async fn grade_service_by_url_judges_two_serves_already_running() {
    for kind in BOTH {
        let db = seeded_database(kind, "grade_url").await;
        let valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("grade_url", &valkey.url());
        let mut servers: Vec<_> = (0..2).map(|_| start_serve(&db, &prefix, &valkey.url())).collect();
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "--json",
            "grade",
            "service",
            "--url",
            servers[0].1.as_str(),
            "--url",
            servers[1].1.as_str(),
            "--service-key-prefix",
            prefix.prefix.as_str(),
        ];
        let output = cli_against(dir.path(), &db.url(), &prefix, &valkey.url(), &args)
            .output()
            .unwrap();
        for (child, _) in &mut servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        let run = JsonRun::from_output(&output);
        let statuses = statuses(&run);
        assert_eq!(
            statuses.get("valkey-stopped-still-answers").map(String::as_str),
            Some("skipped"),
            "{kind:?}: {}",
            run.stdout
        );
        for (id, status) in &statuses {
            if id != "valkey-stopped-still-answers" {
                assert_eq!(status, "pass", "{kind:?}: check {id}\n{}", run.stdout);
            }
        }
        assert!(statuses.len() >= 6, "{kind:?}: {statuses:?}");
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let repeated = step(&run, "20 repeated GETs");
        assert_eq!(
            repeated["queries"], 0,
            "{kind:?}: the grader counted itself: {repeated}"
        );
    }
}
