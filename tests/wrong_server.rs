//! A URL that points at the wrong kind of server (Valkey's URL at a database
//! port, a PostgreSQL URL at MariaDB's port, ...) says what answered there,
//! in one line without driver internals, and exits with the service's code.
//! Also the rule for `--param` names.

mod support;

use std::time::{Duration, Instant};

use support::{admin_url, stderr, valkey_url, workshop_cli, TestDatabase, BOTH};
use workshop_cli::config::{DatabaseKind, DatabaseTarget, Source, ValkeyTarget};

/// `host:port` of the test database server of `kind`.
fn address(kind: DatabaseKind) -> (String, u16) {
    DatabaseTarget::parse(&admin_url(kind), Source::Flag)
        .expect("test database URL")
        .address()
}

fn valkey_address() -> (String, u16) {
    ValkeyTarget::parse(&valkey_url(), Source::Flag)
        .expect("test Valkey URL")
        .address()
}

#[tokio::test]
async fn a_valkey_url_at_a_database_port_says_which_protocol_speaks_there() {
    let db = TestDatabase::create(DatabaseKind::MySql, "wrong_valkey").await;
    for (kind, protocol) in [
        (DatabaseKind::MySql, "the MySQL/MariaDB protocol"),
        (DatabaseKind::Postgres, "the PostgreSQL protocol"),
    ] {
        let (host, port) = address(kind);
        let dir = tempfile::tempdir().unwrap();
        let output = workshop_cli(dir.path())
            .env("DATABASE_URL", db.url())
            .env("VALKEY_URL", format!("redis://{host}:{port}"))
            .arg("write-through")
            .output()
            .unwrap();
        assert_eq!(
            stderr(&output),
            format!(
                "error: {host}:{port} speaks {protocol}, not Valkey's; point VALKEY_URL at Valkey (the default is redis://127.0.0.1:6379)\n"
            ),
            "{kind:?}"
        );
        assert_eq!(output.status.code(), Some(5), "{kind:?}");
    }
}

#[test]
fn a_database_url_with_the_wrong_engine_for_the_port_says_which_engine_answered() {
    let (mysql_host, mysql_port) = address(DatabaseKind::MySql);
    let (pg_host, pg_port) = address(DatabaseKind::Postgres);
    let (valkey_host, valkey_port) = valkey_address();
    let cases = [
        (
            format!("postgres://workshop:workshop@{mysql_host}:{mysql_port}/workshop"),
            format!("error: {mysql_host}:{mysql_port} answered like a MySQL/MariaDB server, not PostgreSQL; use mysql:// in DATABASE_URL\n"),
        ),
        (
            format!("mysql://workshop:workshop@{pg_host}:{pg_port}/workshop"),
            format!("error: {pg_host}:{pg_port} answered like a PostgreSQL server, not MySQL/MariaDB; use postgres:// in DATABASE_URL\n"),
        ),
        (
            format!("mysql://workshop:workshop@{valkey_host}:{valkey_port}/workshop"),
            format!("error: {valkey_host}:{valkey_port} answered like Valkey (or Redis), not MySQL/MariaDB; point DATABASE_URL at the database, not at Valkey\n"),
        ),
    ];
    for (url, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let output = workshop_cli(dir.path())
            .env("DATABASE_URL", &url)
            .env("VALKEY_URL", valkey_url())
            .args(["cache-aside", "--connect-timeout", "1"])
            .output()
            .unwrap();
        assert_eq!(stderr(&output), expected, "{url}");
        assert!(!stderr(&output).contains("sqlx"), "{url}");
        assert_eq!(output.status.code(), Some(4), "{url}");
        // The connect timeout plus a short look at the port, no more.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{url}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn check_env_names_the_wrong_server_in_its_rows() {
    let (mysql_host, mysql_port) = address(DatabaseKind::MySql);
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .env(
            "DATABASE_URL",
            format!("postgres://workshop:workshop@{mysql_host}:{mysql_port}/workshop"),
        )
        .env("VALKEY_URL", format!("redis://{mysql_host}:{mysql_port}"))
        .args(["check-env", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let detail = |name: &str| {
        report["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .and_then(|c| c["detail"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        detail("database"),
        format!("{mysql_host}:{mysql_port} answered like a MySQL/MariaDB server, not PostgreSQL; use mysql:// in DATABASE_URL")
    );
    assert_eq!(
        detail("Valkey"),
        format!("{mysql_host}:{mysql_port} speaks the MySQL/MariaDB protocol, not Valkey's; point VALKEY_URL at Valkey (the default is redis://127.0.0.1:6379)")
    );
}

#[tokio::test]
async fn a_param_name_with_non_ascii_letters_is_told_the_rule() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "param_rule").await;
        let dir = tempfile::tempdir().unwrap();
        let output = workshop_cli(dir.path())
            .env("DATABASE_URL", db.url())
            .env("VALKEY_URL", valkey_url())
            .args([
                "cache-aside",
                "--sql",
                "SELECT city FROM passengerdetails WHERE street = :straße",
                "--param",
                "straße=Hauptstraße 3",
            ])
            .output()
            .unwrap();
        assert_eq!(
            stderr(&output),
            "error: --param name 'straße' may use only ASCII letters, digits and _ (not a digit first); rename it in --param and in the SQL\n",
            "{kind:?}"
        );
        assert_eq!(output.status.code(), Some(6), "{kind:?}");

        // The same name in the SQL alone is read whole, not as `:stra`.
        let output = workshop_cli(dir.path())
            .env("DATABASE_URL", db.url())
            .env("VALKEY_URL", valkey_url())
            .args([
                "cache-aside",
                "--sql",
                "SELECT city FROM passengerdetails WHERE street = :straße",
            ])
            .output()
            .unwrap();
        assert_eq!(
            stderr(&output),
            "error: the query's parameter :straße may use only ASCII letters, digits and _ (not a digit first); rename it in the SQL and in --param\n",
            "{kind:?}"
        );
        assert_eq!(output.status.code(), Some(6), "{kind:?}");
    }
}
