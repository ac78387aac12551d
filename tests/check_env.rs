//! `check-env` against the real services: green on a seeded database, and
//! red with an exact message for each thing that can be wrong.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{stderr, stdout, valkey_url, workshop_cli, TestDatabase, TestPrefix, BOTH};
use workshop_cli::config::DatabaseKind;

fn check(report: &Value, name: &str) -> (String, String, String) {
    let check = report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check named {name} in {report}"));
    let text = |field: &str| check[field].as_str().unwrap_or_default().to_string();
    (text("status"), text("detail"), text("hint"))
}

fn run_json(command: &mut std::process::Command) -> (std::process::Output, Value) {
    let output = command.args(["check-env", "--json"]).output().unwrap();
    let report = serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&output)));
    (output, report)
}

async fn seeded(kind: DatabaseKind, label: &str) -> TestDatabase {
    let db = TestDatabase::create(kind, label).await;
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .env("DATABASE_URL", db.url())
        .args(["seed", "--scale", "0.02"])
        .output()
        .unwrap();
    assert!(output.status.success(), "seed failed: {}", stderr(&output));
    db
}

#[tokio::test]
async fn everything_is_green_on_a_seeded_database_with_valkey() {
    for kind in BOTH {
        let db = seeded(kind, "green").await;
        let prefix = TestPrefix::new("green");
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let (output, report) = run_json(
            workshop_cli(dir.path())
                .env("DATABASE_URL", db.url())
                .env("VALKEY_URL", valkey_url())
                .env("WORKSHOP_KEY_PREFIX", &prefix.prefix),
        );
        let elapsed = started.elapsed();
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {report}");
        assert_eq!(report["ok"], true);
        let (status, detail, _) = check(&report, "database");
        assert_eq!(status, "pass");
        let product = if kind == DatabaseKind::Postgres {
            "PostgreSQL "
        } else {
            "MariaDB "
        };
        assert!(detail.starts_with(product), "{detail}");
        let (status, detail, _) = check(&report, "fixtures");
        assert_eq!(status, "pass", "{detail}");
        assert!(detail.starts_with("airport "), "{detail}");
        let (status, detail, _) = check(&report, "Valkey");
        assert_eq!(status, "pass");
        assert!(detail.starts_with("Valkey 9."), "{detail}");
        let (status, detail, _) = check(&report, "cache probe");
        assert_eq!(status, "pass");
        let source = prefix.source(&db);
        assert!(
            detail.ends_with(&format!("this database's keys start {source}")),
            "{detail}"
        );
        assert!(!detail.contains(":workshop@"), "no login in a key: {detail}");
        // The probe cleans up after itself.
        assert!(prefix.keys().is_empty(), "{:?}", prefix.keys());
        // Everything answers: well under a second (allowing for a busy test machine).
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    }
}

#[tokio::test]
async fn an_empty_database_fails_the_fixtures_check_with_the_seed_hint() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "empty").await;
        let dir = tempfile::tempdir().unwrap();
        let (output, report) = run_json(workshop_cli(dir.path()).env("DATABASE_URL", db.url()));
        assert_eq!(output.status.code(), Some(7));
        let (status, detail, hint) = check(&report, "fixtures");
        assert_eq!((status.as_str(), detail.as_str()), ("fail", "table airport is missing"));
        assert_eq!(hint, "run `workshop-cli seed` (or `just seed`)");
    }
}

#[tokio::test]
async fn a_wrong_password_is_named_without_showing_it() {
    for kind in BOTH {
        let url = support::admin_url(kind).replace("workshop:workshop@", "workshop:Wr0ngPassw0rd@");
        let dir = tempfile::tempdir().unwrap();
        let output = workshop_cli(dir.path())
            .env("DATABASE_URL", &url)
            .arg("check-env")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(7));
        let text = format!("{}{}", stdout(&output), stderr(&output));
        assert!(!text.contains("Wr0ngPassw0rd"), "{text}");
        assert!(
            text.contains("refused the login for user 'workshop' (wrong user or password); fix DATABASE_URL"),
            "{text}"
        );
        assert_eq!(
            stderr(&output),
            "error: 2 required check(s) failed; fix the rows marked ✗ above and run `workshop-cli check-env` again\n"
        );
    }
}

#[test]
fn a_closed_port_is_reported_as_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = run_json(
        workshop_cli(dir.path())
            .env("DATABASE_URL", "postgres://workshop:workshop@127.0.0.1:1/workshop")
            .env("VALKEY_URL", "redis://127.0.0.1:1"),
    );
    assert_eq!(output.status.code(), Some(7));
    let (status, detail, hint) = check(&report, "database");
    assert_eq!(status, "fail");
    assert!(
        detail.starts_with("cannot reach the database at postgres://workshop:***@127.0.0.1:1/workshop: "),
        "{detail}"
    );
    assert!(detail.contains("refused"), "{detail}");
    assert_eq!(hint, "start the services with `just up`, or fix the URL in .env");
    let (status, detail, _) = check(&report, "Valkey");
    assert_eq!(status, "fail");
    assert!(
        detail.starts_with("cannot reach Valkey at redis://127.0.0.1:1: "),
        "{detail}"
    );
}

#[test]
fn a_host_that_never_answers_does_not_hang_the_check() {
    // Accepts TCP connections (the kernel does) but never speaks.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = workshop_cli(dir.path())
        .env(
            "DATABASE_URL",
            format!("mysql://workshop:workshop@127.0.0.1:{port}/workshop"),
        )
        .env("VALKEY_URL", format!("redis://127.0.0.1:{port}"))
        .args(["check-env", "--json", "--connect-timeout", "1"])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(7));
    // Both probes run at the same time, each bounded by the timeout.
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(check(&report, "database").0, "fail");
    assert_eq!(check(&report, "Valkey").0, "fail");
    drop(silent);
}

#[tokio::test]
async fn valkey_down_fails_its_rows_but_the_database_rows_still_pass() {
    let db = seeded(DatabaseKind::MySql, "valkeydown").await;
    let dir = tempfile::tempdir().unwrap();
    let (output, report) = run_json(
        workshop_cli(dir.path())
            .env("DATABASE_URL", db.url())
            .env("VALKEY_URL", "redis://127.0.0.1:1"),
    );
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(check(&report, "database").0, "pass");
    assert_eq!(check(&report, "fixtures").0, "pass");
    let (status, detail, hint) = check(&report, "Valkey");
    assert_eq!(status, "fail");
    assert!(
        detail.starts_with("cannot reach Valkey at redis://127.0.0.1:1: "),
        "{detail}"
    );
    assert_eq!(hint, "start the services with `just up`, or fix the URL in .env");
    assert_eq!(
        check(&report, "cache probe"),
        ("fail".into(), "not run: no Valkey connection".into(), hint)
    );
}

#[test]
fn the_table_marks_each_check() {
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .env("DATABASE_URL", "mysql://workshop:workshop@127.0.0.1:1/workshop")
        .env("VALKEY_URL", "redis://127.0.0.1:1")
        .arg("check-env")
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(text.contains("✗"), "{text}");
    assert!(text.contains("✓"), "{text}");
    assert!(text.contains("! "), "{text}"); // no .env in the temporary folder
    assert!(!text.contains("\u{1b}["), "NO_COLOR is set: no escape codes");
}
