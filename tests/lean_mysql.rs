//! The lean MariaDB/MySQL connection for the timed read (issue 13), on a real
//! MariaDB: it gives exactly the rows sqlx gives, column type by column type;
//! it hands the types it does not decode to sqlx; its errors read as sqlx's;
//! the query timeout and a cancel stop it on the server.
//!
//! The tests take turns (one lock): the cancel test cancels every query the
//! process runs, as Ctrl-C does.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;
use support::{connections_to, take_away, TestDatabase};
use workshop_cli::config::{DatabaseKind, DatabaseTarget, Source};
use workshop_cli::db::{cancel, Database, DbError, PoolSettings, ResultSet, SqlValue, Statement};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn execute(db: &TestDatabase, statements: &[&str]) {
    let mut conn = sqlx::MySqlConnection::connect(&db.url()).await.expect("connect");
    for sql in statements {
        sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
    }
}

async fn connect(target: &DatabaseTarget) -> Database {
    connect_with(target, 2).await
}

async fn connect_with(target: &DatabaseTarget, max_connections: u32) -> Database {
    let settings = PoolSettings {
        max_connections,
        connect_timeout: Duration::from_secs(5),
    };
    Database::connect(target, settings)
        .await
        .expect("connect to the test database")
}

fn statement(sql: &str, args: Vec<SqlValue>) -> Statement {
    Statement {
        sql: sql.to_string(),
        args,
        read_only: false,
    }
}

/// The same statement through a lean session and through sqlx.
async fn both_ways(db: &TestDatabase, sql: &str, args: Vec<SqlValue>) -> (ResultSet, ResultSet) {
    let lean_db = connect(&db.target).await;
    let mut lean = lean_db.session().await.expect("a session");
    assert!(lean.reads_lean(), "the test database should allow a lean session");
    let sqlx_db = connect(&db.target).await.without_lean_reads();
    let mut plain = sqlx_db.session().await.expect("a session");
    assert!(!plain.reads_lean());
    let statement = statement(sql, args);
    let from_lean = lean
        .fetch(&statement)
        .await
        .unwrap_or_else(|e| panic!("lean: {sql}: {e}"));
    // Twice: the second execute of a prepared statement gets no metadata (MariaDB caches it).
    let again = lean
        .fetch(&statement)
        .await
        .unwrap_or_else(|e| panic!("lean, again: {sql}: {e}"));
    assert_eq!(again, from_lean, "the second read of {sql} differs from the first");
    let from_sqlx = plain
        .fetch(&statement)
        .await
        .unwrap_or_else(|e| panic!("sqlx: {sql}: {e}"));
    (from_lean, from_sqlx)
}

#[tokio::test]
async fn every_decoded_column_type_reads_as_sqlx_reads_it() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDatabase::create(DatabaseKind::MySql, "lean_types").await;
    execute(
        &db,
        &[
            "CREATE TABLE kinds (
                id INT PRIMARY KEY,
                flag TINYINT(1), tiny TINYINT, utiny TINYINT UNSIGNED, small SMALLINT, usmall SMALLINT UNSIGNED,
                medium MEDIUMINT, umedium MEDIUMINT UNSIGNED, plain INT, uplain INT UNSIGNED,
                big BIGINT, ubig BIGINT UNSIGNED, yr YEAR,
                price DECIMAL(12,2), huge DECIMAL(28,0), f FLOAT, d DOUBLE,
                day DATE, at DATETIME, at6 DATETIME(6), stamp TIMESTAMP NULL,
                code CHAR(3), name VARCHAR(40), note TEXT, blob_ BLOB, bin VARBINARY(8),
                mood ENUM('happy','sad'), tags SET('a','b','c'), doc LONGTEXT
            ) CHARACTER SET utf8mb4",
            "INSERT INTO kinds VALUES
                (1, 1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
                 -9223372036854775808, 18446744073709551615, 2024,
                 -12.50, 1234567890123456789012345678, 1.5, -2.25,
                 '2024-02-29', '2024-05-01 07:30:00', '2024-05-01 07:30:00.000123', '2024-05-01 07:30:01',
                 'FSF', 'Zürich ✈ \"q\" ''x''', REPEAT('long ', 100), X'00FF10', X'E282AC',
                 'sad', 'a,c', '{\"k\": [1, 2]}'),
                (2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1901,
                 0.00, 0, 0, 0,
                 '1000-01-01', '9999-12-31 23:59:59', '2024-05-01 07:30:00.500000', '1970-01-02 00:00:00',
                 '', '', '', X'', X'',
                 'happy', '', ''),
                (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        ],
    )
    .await;
    let (lean, sqlx) = both_ways(&db, "SELECT * FROM kinds ORDER BY id", vec![]).await;
    assert_eq!(lean, sqlx);
    assert_eq!(lean.rows.len(), 3);
    // A few values spelled out, so that "equal to sqlx" is not the only check.
    let first = &lean.rows[0];
    assert_eq!(first[1], json!(true));
    assert_eq!(first[2], json!(-128));
    assert_eq!(first[11], json!(18446744073709551615u64));
    assert_eq!(first[13], json!("-12.50"));
    assert_eq!(first[19], json!("2024-05-01T07:30:00.000123"));
    assert_eq!(first[20], json!("2024-05-01T07:30:01Z"));
    assert_eq!(first[22], json!("Zürich ✈ \"q\" 'x'"));
    assert_eq!(first[24], json!("\\x00ff10"), "bytes that are not UTF-8 are hex");
    assert_eq!(first[25], json!("€"));
    assert!(lean.rows[2][1..].iter().all(Value::is_null));
    // Aliases name the columns, as in sqlx.
    let (lean, sqlx) = both_ways(&db, "SELECT id AS airport_id, name, 1 + 1 AS two FROM kinds", vec![]).await;
    assert_eq!(lean, sqlx);
    assert_eq!(lean.columns, ["airport_id", "name", "two"]);
}

#[tokio::test]
async fn bound_values_reach_the_server_as_values() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDatabase::create(DatabaseKind::MySql, "lean_binds").await;
    execute(
        &db,
        &[
            "CREATE TABLE t (id BIGINT PRIMARY KEY, label VARCHAR(40), amount DECIMAL(10,2))",
            "INSERT INTO t VALUES (1, 'one', 1.10), (2, 'it''s; DROP TABLE t; --', 2.20), (-9223372036854775808, 'ünï', 0)",
        ],
    )
    .await;
    let sql = "SELECT id, label, amount FROM t WHERE id = ? OR label = ? OR amount = ? ORDER BY id";
    for args in [
        vec![
            SqlValue::Int(1),
            SqlValue::Text("none".into()),
            SqlValue::Decimal("9.99".parse().unwrap()),
        ],
        vec![
            SqlValue::Int(0),
            SqlValue::Text("it's; DROP TABLE t; --".into()),
            SqlValue::Decimal("0".parse().unwrap()),
        ],
        vec![
            SqlValue::Int(i64::MIN),
            SqlValue::Text("ünï".into()),
            SqlValue::Decimal("2.20".parse().unwrap()),
        ],
    ] {
        let (lean, sqlx) = both_ways(&db, sql, args.clone()).await;
        assert_eq!(lean, sqlx, "{args:?}");
        assert!(!lean.rows.is_empty(), "{args:?}");
    }
    // The table is still there: the text was a value, not SQL.
    let (lean, _) = both_ways(&db, "SELECT COUNT(*) AS n FROM t", vec![]).await;
    assert_eq!(lean.rows[0][0], json!(3));
    // No row: no columns either, as sqlx gives it.
    let (lean, sqlx) = both_ways(
        &db,
        sql,
        vec![
            SqlValue::Int(7),
            SqlValue::Text("x".into()),
            SqlValue::Decimal("7".parse().unwrap()),
        ],
    )
    .await;
    assert_eq!(lean, sqlx);
    assert!(lean.is_empty() && lean.columns.is_empty());
}

#[tokio::test]
async fn types_it_does_not_decode_are_read_through_sqlx() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDatabase::create(DatabaseKind::MySql, "lean_declined").await;
    let sql = "SELECT CAST('-838:59:59' AS TIME) AS long_ago, CAST('12:34:56.5' AS TIME(1)) AS t, b'101' AS bits, \
               ST_AsText(POINT(1, 2)) AS wkt";
    let (lean, sqlx) = both_ways(&db, sql, vec![]).await;
    assert_eq!(lean, sqlx);
    assert_eq!(lean.rows[0][1], json!("12:34:56.500"));
    // Zero dates (allowed without NO_ZERO_DATE) are NULL on both.
    let zero = "SELECT CAST('0000-00-00' AS DATE) AS d, CAST('0000-00-00 00:00:00' AS DATETIME) AS dt";
    let (lean, sqlx) = both_ways(&db, zero, vec![]).await;
    assert_eq!(lean, sqlx);
    // A statement the lean connection declined does not spoil the next one.
    let (lean, sqlx) = both_ways(&db, "SELECT 1 AS one", vec![]).await;
    assert_eq!((lean.clone(), lean.rows[0][0].clone()), (sqlx, json!(1)));
}

#[tokio::test]
async fn server_errors_read_as_on_sqlx() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDatabase::create(DatabaseKind::MySql, "lean_errors").await;
    let lean_db = connect(&db.target).await;
    let sqlx_db = connect(&db.target).await.without_lean_reads();
    let mut lean = lean_db.session().await.unwrap();
    let mut plain = sqlx_db.session().await.unwrap();
    for sql in [
        "SELECT * FROM airport WHERE airport_id = 1",
        "SELECT * FROM not_a_workshop_table",
        "SELEC nothing",
        "SELECT 1 FROM DUAL WHERE 1 = ?",
    ] {
        let statement = statement(sql, vec![]);
        let from_lean = lean.fetch(&statement).await.expect_err(sql);
        let from_sqlx = plain.fetch(&statement).await.expect_err(sql);
        if sql.contains('?') {
            // sqlx refuses before the server does; both refuse.
            assert!(matches!(from_lean, DbError::Query(_)), "{sql}: {from_lean}");
            continue;
        }
        assert_eq!(from_lean.to_string(), from_sqlx.to_string(), "{sql}");
    }
    assert!(matches!(
        lean.fetch(&statement("SELECT * FROM airport", vec![])).await,
        Err(DbError::NotSeeded { .. })
    ));
    // After all those errors the connection still reads.
    let ok = lean.fetch(&statement("SELECT 2 AS two", vec![])).await.unwrap();
    assert_eq!(ok.rows[0][0], json!(2));
}

#[tokio::test]
async fn the_query_timeout_and_a_cancel_stop_a_lean_read_on_the_server() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDatabase::create(DatabaseKind::MySql, "lean_cancel").await;
    let bounded = connect(&db.target.with_query_timeout(Some(Duration::from_millis(500)))).await;
    let mut session = bounded.session().await.unwrap();
    assert!(session.reads_lean());
    let started = Instant::now();
    let result = session
        .fetch(&statement("SELECT SLEEP(5) AS slept, 1 AS one FROM DUAL", vec![]))
        .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the query timeout did not stop the query: {took:?}"
    );
    match result {
        Err(DbError::TimedOut { limit }) => assert!(limit.contains("0.5 s"), "{limit}"),
        // MariaDB stops SLEEP itself early and answers 1.
        Ok(rows) => assert_eq!(rows.rows[0][0], json!(1)),
        Err(other) => panic!("unexpected error: {other}"),
    }

    let unbounded = connect(&db.target.with_query_timeout(None)).await;
    let mut session = unbounded.session().await.unwrap();
    assert!(session.reads_lean());
    let running = tokio::spawn(async move {
        let started = Instant::now();
        let result = session.fetch(&statement("SELECT SLEEP(20) AS slept", vec![])).await;
        (result, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cancelled = cancel::cancel_running(Duration::from_secs(5)).await;
    assert!(cancelled >= 1, "no query was cancelled");
    let (result, took) = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the cancelled read returned")
        .unwrap();
    assert!(
        took < Duration::from_secs(5),
        "the cancel did not stop the query: {took:?}"
    );
    // KILL QUERY ends SLEEP with 1 (MariaDB) or an "interrupted" error.
    match result {
        Ok(rows) => assert_eq!(rows.rows[0][0], json!(1)),
        Err(error) => assert!(error.to_string().contains("interrupted"), "{error}"),
    }
}

#[tokio::test]
async fn many_statements_outgrow_the_statement_cache_and_still_read() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDatabase::create(DatabaseKind::MySql, "lean_cache").await;
    let database = connect(&db.target).await;
    let mut session = database.session().await.unwrap();
    for n in 0..130 {
        let rows = session
            .fetch(&statement(&format!("SELECT {n} AS n, ? AS k"), vec![SqlValue::Int(n)]))
            .await
            .unwrap();
        assert_eq!(rows.rows[0], vec![json!(n), json!(n)]);
    }
}

#[tokio::test]
async fn a_url_with_options_reads_through_sqlx() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDatabase::create(DatabaseKind::MySql, "lean_options").await;
    let url = format!("{}?ssl-mode=disabled", db.url());
    let target = DatabaseTarget::parse(&url, Source::Flag).expect("a URL with an option");
    let database = connect(&target).await;
    let mut session = database.session().await.unwrap();
    assert!(!session.reads_lean());
    let rows = session.fetch(&statement("SELECT 1 AS one", vec![])).await.unwrap();
    assert_eq!(rows.rows[0][0], json!(1));
}

#[tokio::test]
async fn sessions_reuse_the_warmed_lean_connections_and_a_lost_one_is_not_kept() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDatabase::create(DatabaseKind::MySql, "lean_reuse").await;
    let database = connect_with(&db.target, 4).await;
    database.warm_up(3).await.unwrap();
    assert_eq!(connections_to(&db).await.len(), 3, "the pool's");
    database.warm_up_sessions(3).await;
    let warmed = connections_to(&db).await;
    assert_eq!(warmed.len(), 6, "three pooled and three lean connections: {warmed:?}");
    let one = statement("SELECT 1 AS one", vec![]);
    for _ in 0..3 {
        let mut sessions = Vec::new();
        for _ in 0..3 {
            let mut session = database.session().await.unwrap();
            assert!(session.reads_lean());
            session.fetch(&one).await.unwrap();
            sessions.push(session);
        }
        drop(sessions);
    }
    let mut after = connections_to(&db).await;
    let mut before = warmed.clone();
    after.sort_unstable();
    before.sort_unstable();
    assert_eq!(after, before, "the sessions opened connections of their own");

    // The server ends every session: the lost connections fail once and are not kept.
    assert!(take_away(&db).await >= 3);
    let mut session = database.session().await.unwrap();
    assert!(matches!(session.fetch(&one).await, Err(DbError::Unreachable { .. })));
    drop(session);
    let mut reads = 0;
    for _ in 0..6 {
        let mut session = database.session().await.unwrap();
        if session.fetch(&one).await.is_ok() {
            reads += 1;
        }
    }
    assert!(reads >= 4, "after the lost ones, new connections read ({reads} of 6)");
}
