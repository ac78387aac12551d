//! One type over the MySQL/MariaDB and PostgreSQL pools.
//!
//! Everything dialect-specific is in [`dialect`]; row conversion in [`rows`].
//! Pools are built once with explicit limits and timeouts and shared by reference.

pub mod bookings;
pub mod changes;
pub mod dialect;
pub mod passengers;
pub mod products;
pub mod rows;
pub mod write_behind;

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, MySql, Postgres};

use crate::config::{DatabaseKind, DatabaseTarget};
use crate::protocol::Speaker;
pub use dialect::{NamedQuery, Statement};
pub use rows::ResultSet;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot reach the database at {target}: {reason}; start it (`just up`) or fix DATABASE_URL")]
    Unreachable { target: String, reason: String },
    #[error("the database at {target} refused the login for user '{user}' (wrong user or password); fix DATABASE_URL")]
    LoginRefused { target: String, user: String },
    #[error(
        "database '{name}' does not exist at {target}; create it (`just up` creates 'workshop') or fix DATABASE_URL"
    )]
    UnknownDatabase { target: String, name: String },
    #[error("the workshop tables are missing ({detail}); run `workshop-cli seed` (or `just seed`) first")]
    NotSeeded { detail: String },
    #[error("the query failed: {0}")]
    Query(String),
    /// DATABASE_URL names one engine, the port speaks another protocol.
    #[error("{address} answered like {answered}, not {wanted}; {fix}")]
    WrongEngine {
        address: String,
        answered: &'static str,
        wanted: &'static str,
        fix: &'static str,
    },
}

/// A value bound to a placeholder. Never spliced into SQL text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum SqlValue {
    Int(i64),
    Decimal(Decimal),
    Text(String),
}

impl SqlValue {
    /// Reads a `--param` value: whole numbers bind as integers, decimals as
    /// exact decimals, everything else as text.
    pub fn infer(raw: &str) -> SqlValue {
        // A leading zero ("007") is a code, not a number: keep it as text.
        let digits = raw.trim_start_matches('-');
        if digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.") {
            return SqlValue::Text(raw.to_string());
        }
        if let Ok(int) = raw.parse::<i64>() {
            return SqlValue::Int(int);
        }
        if raw.contains('.') && !raw.contains(['e', 'E']) {
            if let Ok(decimal) = raw.parse::<Decimal>() {
                return SqlValue::Decimal(decimal);
            }
        }
        SqlValue::Text(raw.to_string())
    }

    /// The canonical text of the value, for cache keys.
    pub fn canonical(&self) -> String {
        match self {
            SqlValue::Int(v) => format!("int:{v}"),
            SqlValue::Decimal(v) => format!("dec:{}", v.normalize()),
            SqlValue::Text(v) => format!("text:{v}"),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerInfo {
    /// "MariaDB", "MySQL" or "PostgreSQL".
    pub product: String,
    pub version: String,
}

#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone)]
enum Pool {
    MySql(MySqlPool),
    Postgres(PgPool),
}

/// A connection pool to the workshop database.
#[derive(Debug, Clone)]
pub struct Database {
    pool: Pool,
    target: String,
    connect_time: Duration,
    /// The command named in the ledger of the workshop's writes (`changes.rs`).
    command: &'static str,
    /// Set once the ledger table is known to exist.
    ledger_ready: std::sync::Arc<tokio::sync::OnceCell<()>>,
}

impl Database {
    /// Connects and checks one connection. The time that took is kept apart
    /// from query timings: see [`Database::connect_time`].
    pub async fn connect(target: &DatabaseTarget, settings: PoolSettings) -> Result<Database, DbError> {
        let shown = target.masked();
        let started = Instant::now();
        let url = target.connect_url();
        let bad_url = |e: sqlx::Error| DbError::Unreachable {
            target: shown.clone(),
            reason: first_line(&e.to_string()),
        };
        // One direct connection first: it fails fast with the real reason
        // (the pool would retry a refused connection until its timeout), and
        // its duration is the connection set-up reported apart from queries.
        let connecting = async {
            match target.kind {
                DatabaseKind::MySql => {
                    let options: MySqlConnectOptions = url.parse().map_err(bad_url)?;
                    let options = options.disable_statement_logging();
                    let first = MySqlConnection::connect_with(&options)
                        .await
                        .map_err(|e| classify_connect_error(e, target))?;
                    let _ = first.close().await;
                    Ok(Pool::MySql(
                        MySqlPoolOptions::new()
                            .max_connections(settings.max_connections)
                            .acquire_timeout(settings.connect_timeout)
                            // sqlx pings a connection before handing it out by
                            // default: a round trip per query that doubled the
                            // point-select latency in `just bench`.
                            .test_before_acquire(false)
                            .connect_lazy_with(options),
                    ))
                }
                DatabaseKind::Postgres => {
                    let options: PgConnectOptions = url.parse().map_err(bad_url)?;
                    let options = options.disable_statement_logging();
                    let first = PgConnection::connect_with(&options)
                        .await
                        .map_err(|e| classify_connect_error(e, target))?;
                    let _ = first.close().await;
                    Ok(Pool::Postgres(
                        PgPoolOptions::new()
                            .max_connections(settings.max_connections)
                            .acquire_timeout(settings.connect_timeout)
                            .test_before_acquire(false)
                            .connect_lazy_with(options),
                    ))
                }
            }
        };
        let connected = tokio::time::timeout(settings.connect_timeout, connecting)
            .await
            .map_err(|_| DbError::Unreachable {
                target: shown.clone(),
                reason: format!("no answer within {:.1} s", settings.connect_timeout.as_secs_f64()),
            })
            .and_then(|result| result);
        let pool = match connected {
            Ok(pool) => pool,
            // A server answered that was no database of this kind (or nothing
            // did): ask the port who it is, for a message that says so.
            Err(error @ DbError::Unreachable { .. }) => return Err(wrong_engine(target).await.unwrap_or(error)),
            Err(error) => return Err(error),
        };
        Ok(Database {
            pool,
            target: shown,
            connect_time: started.elapsed(),
            command: "workshop-cli",
            ledger_ready: std::sync::Arc::default(),
        })
    }

    /// The same pool, recording its writes in the ledger as made by `command`.
    pub fn recording_as(mut self, command: &'static str) -> Database {
        self.command = command;
        self
    }

    pub fn kind(&self) -> DatabaseKind {
        match self.pool {
            Pool::MySql(_) => DatabaseKind::MySql,
            Pool::Postgres(_) => DatabaseKind::Postgres,
        }
    }

    /// The masked URL, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// How long the first connection took to open and authenticate.
    pub fn connect_time(&self) -> Duration {
        self.connect_time
    }

    pub fn mysql(&self) -> Option<&MySqlPool> {
        match &self.pool {
            Pool::MySql(pool) => Some(pool),
            Pool::Postgres(_) => None,
        }
    }

    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Postgres(pool) => Some(pool),
            Pool::MySql(_) => None,
        }
    }

    /// Opens `connections` connections at once and runs a trivial query on
    /// each, so the timed runs start with a warm pool.
    pub async fn warm_up(&self, connections: u32) -> Result<(), DbError> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..connections.max(1) {
            let db = self.clone();
            tasks.spawn(async move {
                // Holding the connection for a moment makes the pool open a new one.
                let result = db.round_trip().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                result
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.map_err(|e| DbError::Query(e.to_string()))??;
        }
        Ok(())
    }

    /// One `SELECT 1`, timed.
    pub async fn round_trip(&self) -> Result<Duration, DbError> {
        let started = Instant::now();
        match &self.pool {
            Pool::MySql(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Pool::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
        .map_err(|e| self.query_error(e))?;
        Ok(started.elapsed())
    }

    pub async fn server_info(&self) -> Result<ServerInfo, DbError> {
        let version: String = match &self.pool {
            Pool::MySql(pool) => sqlx::query_scalar("SELECT VERSION()").fetch_one(pool).await,
            Pool::Postgres(pool) => sqlx::query_scalar("SHOW server_version").fetch_one(pool).await,
        }
        .map_err(|e| self.query_error(e))?;
        let product = match self.kind() {
            DatabaseKind::Postgres => "PostgreSQL",
            DatabaseKind::MySql if version.to_ascii_lowercase().contains("mariadb") => "MariaDB",
            DatabaseKind::MySql => "MySQL",
        };
        let version = version.split(['-', ' ']).next().unwrap_or(&version).to_string();
        Ok(ServerInfo {
            product: product.to_string(),
            version,
        })
    }

    /// Runs a read query on a pooled connection and converts every row to JSON values.
    pub async fn fetch(&self, statement: &Statement) -> Result<ResultSet, DbError> {
        match &self.pool {
            Pool::MySql(pool) => fetch_mysql(pool, statement).await,
            Pool::Postgres(pool) => fetch_postgres(pool, statement).await,
        }
        .map_err(|e| self.query_error(e))?
    }

    /// Takes one connection out of the pool for a task to keep, as each
    /// pgbench or sysbench client keeps its own: no pool hand-over per query.
    pub async fn session(&self) -> Result<DbSession, DbError> {
        let connection = match &self.pool {
            Pool::MySql(pool) => pool.acquire().await.map(SessionConnection::MySql),
            Pool::Postgres(pool) => pool.acquire().await.map(SessionConnection::Postgres),
        }
        .map_err(|e| self.query_error(e))?;
        Ok(DbSession {
            connection,
            target: self.target.clone(),
        })
    }

    /// Turns a query failure into a message; a missing table means "seed first".
    pub fn query_error(&self, error: sqlx::Error) -> DbError {
        classify_query_error(error, &self.target)
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::MySql(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

enum SessionConnection {
    MySql(PoolConnection<MySql>),
    Postgres(PoolConnection<Postgres>),
}

/// One database connection held by one task (see [`Database::session`]).
pub struct DbSession {
    connection: SessionConnection,
    target: String,
}

impl DbSession {
    /// Runs a read query on this connection and converts every row to JSON values.
    pub async fn fetch(&mut self, statement: &Statement) -> Result<ResultSet, DbError> {
        match &mut self.connection {
            SessionConnection::MySql(conn) => fetch_mysql(&mut **conn, statement).await,
            SessionConnection::Postgres(conn) => fetch_postgres(&mut **conn, statement).await,
        }
        .map_err(|e| classify_query_error(e, &self.target))?
    }
}

async fn fetch_mysql<'e, E>(executor: E, statement: &Statement) -> Result<Result<ResultSet, DbError>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = MySql>,
{
    let mut query = sqlx::query(&statement.sql);
    for arg in &statement.args {
        query = match arg {
            SqlValue::Int(v) => query.bind(*v),
            SqlValue::Decimal(v) => query.bind(*v),
            SqlValue::Text(v) => query.bind(v.as_str()),
        };
    }
    let rows = query.fetch_all(executor).await?;
    Ok(rows::from_mysql(&rows))
}

async fn fetch_postgres<'e, E>(executor: E, statement: &Statement) -> Result<Result<ResultSet, DbError>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let mut query = sqlx::query(&statement.sql);
    for arg in &statement.args {
        query = match arg {
            SqlValue::Int(v) => query.bind(*v),
            SqlValue::Decimal(v) => query.bind(*v),
            SqlValue::Text(v) => query.bind(v.as_str()),
        };
    }
    let rows = query.fetch_all(executor).await?;
    Ok(rows::from_postgres(&rows))
}

pub fn classify_query_error(error: sqlx::Error, target: &str) -> DbError {
    if let sqlx::Error::Database(db_error) = &error {
        let code = db_error.code().unwrap_or_default();
        // 42S02 / 1146: MySQL "table doesn't exist"; 42P01: PostgreSQL "undefined table".
        if code == "42S02" || code == "1146" || code == "42P01" {
            return DbError::NotSeeded {
                detail: first_line(db_error.message()),
            };
        }
        // PostgreSQL's class 08 (connection exception) and 57P01-03 (the
        // server ended the session: terminated, crashed, not accepting):
        // the connection is gone, not the query wrong.
        if code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03") {
            return DbError::Unreachable {
                target: target.to_string(),
                reason: first_line(db_error.message()),
            };
        }
        return DbError::Query(first_line(db_error.message()));
    }
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => DbError::Unreachable {
            target: target.to_string(),
            reason: first_line(&error.to_string()),
        },
        other => DbError::Query(first_line(&other.to_string())),
    }
}

fn classify_connect_error(error: sqlx::Error, target: &DatabaseTarget) -> DbError {
    let shown = target.masked();
    if let sqlx::Error::Database(db_error) = &error {
        let code = db_error.code().unwrap_or_default().to_string();
        let message = db_error.message().to_string();
        // MySQL 1045 / SQLSTATE 28000; PostgreSQL 28P01 (bad password) and 28000.
        if code == "28000" || code == "28P01" || code == "1045" || message.contains("Access denied") {
            return DbError::LoginRefused {
                target: shown,
                user: target.user(),
            };
        }
        // MySQL 1049 / 42000 "Unknown database"; PostgreSQL 3D000.
        if code == "3D000" || code == "1049" || message.contains("Unknown database") {
            return DbError::UnknownDatabase {
                target: shown,
                name: target.database_name(),
            };
        }
        return DbError::Unreachable {
            target: shown,
            reason: first_line(&message),
        };
    }
    let reason = match &error {
        sqlx::Error::PoolTimedOut => "no answer before the connect timeout".to_string(),
        sqlx::Error::Io(io) => first_line(&io.to_string()),
        other => first_line(&other.to_string()),
    };
    DbError::Unreachable { target: shown, reason }
}

/// The error to give when the port at `target` speaks another protocol than
/// its URL's engine; None when it speaks the right one, or nothing we know.
async fn wrong_engine(target: &DatabaseTarget) -> Option<DbError> {
    let (host, port) = target.address();
    let speaker = crate::protocol::identify(&host, port).await?;
    let wanted = match target.kind {
        DatabaseKind::MySql => "MySQL/MariaDB",
        DatabaseKind::Postgres => "PostgreSQL",
    };
    let fix = match (speaker, target.kind) {
        (Speaker::MySql, DatabaseKind::MySql) | (Speaker::Postgres, DatabaseKind::Postgres) => return None,
        (Speaker::MySql, _) => "use mysql:// in DATABASE_URL",
        (Speaker::Postgres, _) => "use postgres:// in DATABASE_URL",
        (Speaker::Valkey, _) => "point DATABASE_URL at the database, not at Valkey",
    };
    Some(DbError::WrongEngine {
        address: format!("{host}:{port}"),
        answered: speaker.server(),
        wanted,
        fix,
    })
}

/// The first line, without the `(sqlx_postgres::connection::tls:95)` source
/// location some sqlx errors end with: internals, not news for the user.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    match line.rsplit_once(" (sqlx") {
        Some((before, location)) if location.ends_with(')') => before.trim_end().to_string(),
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_values_are_inferred_as_int_decimal_or_text() {
        assert_eq!(SqlValue::infer("3797"), SqlValue::Int(3797));
        assert_eq!(SqlValue::infer("-4"), SqlValue::Int(-4));
        assert_eq!(SqlValue::infer("19.90"), SqlValue::Decimal("19.90".parse().unwrap()));
        assert_eq!(SqlValue::infer("FSFA"), SqlValue::Text("FSFA".into()));
        assert_eq!(SqlValue::infer("007"), SqlValue::Text("007".into()));
        assert_eq!(SqlValue::infer("1e5"), SqlValue::Text("1e5".into()));
        assert_eq!(
            SqlValue::infer("'; DROP TABLE airport; --"),
            SqlValue::Text("'; DROP TABLE airport; --".into())
        );
    }

    #[test]
    fn sqlx_source_locations_are_dropped_from_messages() {
        assert_eq!(
            first_line("encountered unexpected or invalid data: unexpected response from SSLRequest: 0x64 (sqlx_postgres::connection::tls:95)\nmore"),
            "encountered unexpected or invalid data: unexpected response from SSLRequest: 0x64"
        );
        assert_eq!(
            first_line("Connection refused (os error 111)"),
            "Connection refused (os error 111)"
        );
    }

    #[test]
    fn equal_decimals_have_one_canonical_form() {
        assert_eq!(SqlValue::infer("1.50").canonical(), SqlValue::infer("1.5").canonical());
        assert_ne!(
            SqlValue::infer("15").canonical(),
            SqlValue::Text("15".into()).canonical()
        );
    }
}
