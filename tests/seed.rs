//! `workshop-cli seed` against the real MariaDB and PostgreSQL, each test in
//! databases of its own.

mod support;

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use sqlx::Connection;
use support::{stderr, stdout, workshop_cli, TestDatabase, BOTH};
use workshop_cli::config::DatabaseKind;
use workshop_cli::db::{Database, PoolSettings, ResultSet, Statement};

/// Small enough to be quick, large enough for every table to scale.
const SCALE: &str = "0.02";

/// Rows per table at scale 0.02: airports and airlines are fixed, the rest is
/// the scale-1 count times 0.02 with a floor of 100.
const EXPECTED_ROWS: [(&str, u64); 8] = [
    ("airport", 9_900),
    ("airline", 100),
    ("airplane", 100),
    ("flight", 600),
    ("passenger", 720),
    ("passengerdetails", 720),
    ("booking", 5_000),
    ("products", 200),
];

fn seed(db: &TestDatabase, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temporary directory");
    workshop_cli(dir.path())
        .env("DATABASE_URL", db.url())
        .args(["--json", "seed"])
        .args(args)
        .output()
        .expect("run workshop-cli")
}

/// Runs `seed` and returns its JSON report, failing the test on a non-zero exit.
fn seed_json(db: &TestDatabase, args: &[&str]) -> Value {
    let output = seed(db, args);
    assert!(
        output.status.success(),
        "{:?} seed {args:?} failed: {}",
        db.kind,
        stderr(&output)
    );
    serde_json::from_str(&stdout(&output)).expect("seed --json prints JSON")
}

fn reported_rows(report: &Value) -> Vec<(String, u64)> {
    report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap_or_default().to_string(),
                t["rows"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn expected_rows() -> Vec<(String, u64)> {
    EXPECTED_ROWS.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

async fn connect(db: &TestDatabase) -> Database {
    let settings = PoolSettings {
        max_connections: 1,
        connect_timeout: Duration::from_secs(5),
    };
    Database::connect(&db.target, settings)
        .await
        .expect("connect to the test database")
}

async fn query(db: &TestDatabase, sql: &str) -> ResultSet {
    let database = connect(db).await;
    let rows = database
        .fetch(&Statement {
            sql: sql.to_string(),
            args: vec![],
            read_only: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    database.close().await;
    rows
}

async fn scalar(db: &TestDatabase, sql: &str) -> Value {
    query(db, sql).await.rows[0][0].clone()
}

async fn execute(db: &TestDatabase, sql: &str) {
    match db.kind {
        DatabaseKind::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.expect("connect");
            sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
        }
        DatabaseKind::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
            sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
        }
    }
}

async fn count(db: &TestDatabase, table: &str) -> u64 {
    scalar(db, &format!("SELECT COUNT(*) FROM {table}"))
        .await
        .as_u64()
        .expect("a count")
}

#[tokio::test]
async fn seeding_an_empty_database_loads_the_expected_rows() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "seed_fresh").await;
        let report = seed_json(&db, &["--scale", SCALE]);
        assert_eq!(report["outcome"], "seeded", "{kind:?}");
        assert_eq!(reported_rows(&report), expected_rows(), "{kind:?}");
        assert_eq!(report["total"]["rows"], 17_340, "{kind:?}");
        assert!(
            report["tables"][6]["rows_per_second"].as_u64().unwrap_or(0) > 0,
            "{kind:?}"
        );
        for (table, rows) in EXPECTED_ROWS {
            assert_eq!(count(&db, table).await, rows, "{kind:?} {table}");
        }

        let farquhar = query(
            &db,
            "SELECT airport_id, iata, icao, name FROM airport WHERE airport_id = 3797",
        )
        .await;
        assert_eq!(
            farquhar.rows,
            vec![vec![
                Value::from(3797),
                Value::Null,
                Value::from("FSFA"),
                Value::from("FARQUHAR")
            ]],
            "{kind:?}"
        );

        let passports = query(&db, "SELECT passportno FROM passenger").await;
        assert_eq!(passports.rows.len(), 720);
        for row in &passports.rows {
            let passport = row[0].as_str().expect("text");
            assert!(
                passport.len() == 7 && passport.starts_with('P') && passport[1..].bytes().all(|b| b.is_ascii_digit()),
                "{kind:?}: passport {passport:?} is not P and six digits"
            );
        }
        assert_eq!(
            scalar(&db, "SELECT COUNT(DISTINCT passportno) FROM passenger").await,
            720,
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn the_same_scale_gives_identical_rows_on_mysql_and_postgres() {
    let mysql = TestDatabase::create(DatabaseKind::MySql, "seed_same_my").await;
    let postgres = TestDatabase::create(DatabaseKind::Postgres, "seed_same_pg").await;
    seed_json(&mysql, &["--scale", SCALE]);
    seed_json(&postgres, &["--scale", SCALE]);
    for (table, rows) in EXPECTED_ROWS {
        let sql = format!("SELECT * FROM {table} ORDER BY 1");
        let (a, b) = (query(&mysql, &sql).await, query(&postgres, &sql).await);
        assert_eq!(a.rows.len() as u64, rows, "{table}");
        assert_eq!(a.columns, b.columns, "{table}");
        if let Some(i) = (0..a.rows.len()).find(|&i| a.rows[i] != b.rows[i]) {
            panic!(
                "{table} differs first at row {i}:\n MySQL:      {:?}\n PostgreSQL: {:?}",
                a.rows[i], b.rows[i]
            );
        }
    }
    let revenue = "SELECT CAST(SUM(price) AS CHAR(20)) FROM booking";
    let revenue_pg = "SELECT CAST(SUM(price) AS VARCHAR(20)) FROM booking";
    assert_eq!(scalar(&mysql, revenue).await, scalar(&postgres, revenue_pg).await);
}

#[tokio::test]
async fn a_second_seed_changes_nothing_and_says_already_seeded() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "seed_twice").await;
        let first = seed_json(&db, &["--scale", SCALE]);
        let second = seed_json(&db, &["--scale", SCALE]);
        assert_eq!(second["outcome"], "already_seeded", "{kind:?}");
        assert!(
            second["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Already seeded:"),
            "{kind:?}: {}",
            second["message"]
        );
        assert_eq!(reported_rows(&second), expected_rows(), "{kind:?}");
        assert_eq!(second["seeded_at"], first["seeded_at"], "{kind:?}");
        assert_eq!(second["scale"], 0.02, "{kind:?}");
        for (table, rows) in EXPECTED_ROWS {
            assert_eq!(count(&db, table).await, rows, "{kind:?} {table}");
        }

        // Asking for another scale changes nothing either, but says how.
        let other = seed_json(&db, &["--scale", "0.05"]);
        assert_eq!(other["outcome"], "already_seeded", "{kind:?}");
        assert!(other["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("seed --reset --scale 0.05"));
        assert_eq!(count(&db, "booking").await, 5_000, "{kind:?}");
    }
}

#[tokio::test]
async fn reset_drops_the_tables_and_loads_them_again() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "seed_reset").await;
        seed_json(&db, &["--scale", SCALE]);
        execute(
            &db,
            "INSERT INTO passenger (passportno, firstname, lastname) VALUES ('X0000001', 'Extra', 'Row')",
        )
        .await;
        assert_eq!(count(&db, "passenger").await, 721, "{kind:?}");

        let report = seed_json(&db, &["--scale", SCALE, "--reset"]);
        assert_eq!(report["outcome"], "seeded", "{kind:?}");
        assert_eq!(reported_rows(&report), expected_rows(), "{kind:?}");
        assert_eq!(count(&db, "passenger").await, 720, "{kind:?}");
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM passenger WHERE passportno = 'X0000001'").await,
            0,
            "{kind:?}"
        );

        // A reset to another scale really loads that scale.
        let bigger = seed_json(&db, &["--scale", "0.03", "--reset"]);
        assert_eq!(bigger["tables"][6]["rows"], 7_500, "{kind:?}");
        assert_eq!(count(&db, "booking").await, 7_500, "{kind:?}");
    }
}

#[test]
fn a_bad_scale_exits_6_before_connecting() {
    // Nothing listens on port 1: the scale must be refused before any connection.
    for (arg, shown) in [
        ("--scale=0", "0"),
        ("--scale=-1", "-1"),
        ("--scale=NaN", "NaN"),
        ("--scale=21", "21"),
    ] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let output = workshop_cli(dir.path())
            .env("DATABASE_URL", "mysql://workshop:workshop@127.0.0.1:1/workshop")
            .args(["seed", arg])
            .output()
            .expect("run workshop-cli");
        assert_eq!(output.status.code(), Some(6), "{arg}: {}", stderr(&output));
        assert_eq!(
            stderr(&output),
            format!(
                "error: --scale must be a number above 0 and at most 20 (got {shown}); 1 loads about 250,000 bookings, 0.1 a tenth of that\n"
            ),
            "{arg}"
        );
        assert_eq!(stdout(&output), "", "{arg}");
    }
}

#[tokio::test]
async fn new_rows_get_ids_after_the_loaded_ones() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "seed_sequence").await;
        seed_json(&db, &["--scale", SCALE]);
        execute(
            &db,
            "INSERT INTO passenger (passportno, firstname, lastname) VALUES ('X0000002', 'Ada', 'Lovelace')",
        )
        .await;
        let id = scalar(&db, "SELECT passenger_id FROM passenger WHERE passportno = 'X0000002'").await;
        assert_eq!(
            id, 721,
            "{kind:?}: the passenger sequence continues after the loaded ids"
        );

        execute(
            &db,
            "INSERT INTO airport (iata, icao, name) VALUES (NULL, 'ZZZ9', 'Workshop Field')",
        )
        .await;
        assert_eq!(
            scalar(&db, "SELECT airport_id FROM airport WHERE icao = 'ZZZ9'").await,
            9_901,
            "{kind:?}"
        );

        execute(
            &db,
            "INSERT INTO products (name, price, category) VALUES ('Test Mug', 9.99, 'Kitchen')",
        )
        .await;
        assert_eq!(
            scalar(&db, "SELECT id FROM products WHERE name = 'Test Mug'").await,
            201,
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn tables_seed_did_not_create_are_left_alone() {
    for kind in BOTH {
        // Part of an import: seed adds its own tables and touches nothing else.
        let db = TestDatabase::create(kind, "seed_not_ours").await;
        execute(&db, "CREATE TABLE airport (airport_id SMALLINT PRIMARY KEY, iata CHAR(3), icao CHAR(4) NOT NULL, name VARCHAR(50) NOT NULL)").await;
        execute(
            &db,
            "INSERT INTO airport VALUES (1, 'FRA', 'EDDF', 'FRANKFURT AM MAIN')",
        )
        .await;

        let report = seed_json(&db, &["--scale", SCALE]);
        assert_eq!(report["outcome"], "added_to_import", "{kind:?}");
        assert_eq!(report["tables"][0]["table"], "products", "{kind:?}");
        assert_eq!(report["imported_tables"], serde_json::json!(["airport"]), "{kind:?}");
        assert_eq!(report["missing_tables"].as_array().map(Vec::len), Some(6), "{kind:?}");
        assert_eq!(count(&db, "products").await, 200, "{kind:?}");
        let report = seed_json(&db, &["--scale", SCALE, "--reset"]);
        assert_eq!(report["outcome"], "added_to_import", "{kind:?}");
        assert_eq!(count(&db, "airport").await, 1, "{kind:?}");
        assert_eq!(
            scalar(&db, "SELECT name FROM airport").await,
            "FRANKFURT AM MAIN",
            "{kind:?}"
        );

        // A products table of someone else's: nothing is added or dropped.
        let db = TestDatabase::create(kind, "seed_not_ours_products").await;
        execute(&db, "CREATE TABLE airport (airport_id SMALLINT PRIMARY KEY, iata CHAR(3), icao CHAR(4) NOT NULL, name VARCHAR(50) NOT NULL)").await;
        execute(&db, "CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(20))").await;
        execute(&db, "INSERT INTO products VALUES (1, 'theirs')").await;
        let report = seed_json(&db, &["--scale", SCALE]);
        assert_eq!(report["outcome"], "left_untouched", "{kind:?}");
        let output = seed(&db, &["--scale", SCALE, "--reset"]);
        assert_eq!(output.status.code(), Some(6), "{kind:?}: {}", stderr(&output));
        assert!(
            stderr(&output)
                .starts_with("error: found tables airport and products, which `workshop-cli seed` did not create"),
            "{kind:?}: {}",
            stderr(&output)
        );
        assert_eq!(scalar(&db, "SELECT name FROM products").await, "theirs", "{kind:?}");
    }
}

#[tokio::test]
async fn an_unfinished_seed_is_not_mistaken_for_a_finished_one() {
    for kind in BOTH {
        let db = TestDatabase::create(kind, "seed_unfinished").await;
        seed_json(&db, &["--scale", SCALE]);
        // What a seed that stopped half-way leaves: the tables, but no record row.
        execute(&db, "DELETE FROM workshop_seed").await;
        execute(&db, "DELETE FROM products").await;

        let output = seed(&db, &["--scale", SCALE]);
        assert_eq!(output.status.code(), Some(6), "{kind:?}: {}", stderr(&output));
        let message = stderr(&output);
        assert!(
            message.starts_with("error: the last `workshop-cli seed` did not finish (found tables airport, "),
            "{kind:?}: {message}"
        );
        assert!(
            message.contains("run `workshop-cli seed --reset`"),
            "{kind:?}: {message}"
        );
        assert_eq!(count(&db, "products").await, 0, "{kind:?}: nothing was changed");

        let report = seed_json(&db, &["--scale", SCALE, "--reset"]);
        assert_eq!(report["outcome"], "seeded", "{kind:?}");
        assert_eq!(count(&db, "products").await, 200, "{kind:?}");
    }
}
