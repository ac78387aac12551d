//! One type over the MySQL/MariaDB and PostgreSQL pools.
//!
//! Everything dialect-specific is in [`dialect`]; row conversion in [`rows`].
//! Pools are built once with explicit limits and timeouts and shared by reference.

pub mod bookings;
pub mod cancel;
pub mod changes;
pub mod dialect;
mod lean_mysql;
pub mod passengers;
pub mod products;
pub mod read_only;
pub mod rows;
pub mod session_store;
pub mod write_behind;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, MySql, Postgres, Row};

use crate::config::{DatabaseKind, DatabaseTarget};
use crate::protocol::Speaker;
use cancel::{Admin, PoolSessions, ServerSession};
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
    #[error("table {table} does not exist in this database ({detail}); check the table name in the query")]
    UnknownTable { table: String, detail: String },
    #[error("the query ran longer than {limit}, so the server stopped it; raise it with --query-timeout SECONDS (0: no limit) or make the query faster")]
    TimedOut { limit: String },
    #[error("the server refused to change data: --sql runs in a read-only transaction ({detail}); workshop-cli only measures reads, give a query without side effects")]
    WriteRefused { detail: String },
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

/// What turns a driver error into a message: where, and the limit in force.
#[derive(Debug, Clone)]
struct ErrorContext {
    target: String,
    query_timeout: Option<Duration>,
}

/// A connection pool to the workshop database.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    context: ErrorContext,
    connect_time: Duration,
    /// Every connection's server-side id, for [`cancel::cancel_running`].
    sessions: Arc<PoolSessions>,
    /// The command named in the ledger of the workshop's writes (`changes.rs`).
    command: &'static str,
    /// Set once the ledger table is known to exist.
    ledger_ready: std::sync::Arc<tokio::sync::OnceCell<()>>,
    /// MariaDB/MySQL: how a session opens its lean connection for reads (none: sqlx only).
    lean: Option<Arc<LeanSetup>>,
}

/// What a session needs to open a [`lean_mysql::LeanConnection`], and whether it is worth trying.
struct LeanSetup {
    target: lean_mysql::LeanTarget,
    set_timeout: Option<Arc<str>>,
    connect_timeout: Duration,
    /// Why the server or the login needs sqlx, once that turned out: no session tries again.
    declined: std::sync::OnceLock<String>,
    /// Connections of sessions that ended (or opened by `warm_up_sessions`), for the next sessions:
    /// a login is not part of a session, and a connection keeps its prepared statements.
    idle: std::sync::Mutex<Vec<lean_mysql::LeanConnection>>,
    /// At most this many are kept idle (the pool's size).
    keep: usize,
}

impl LeanSetup {
    fn take_idle(&self) -> Option<Box<lean_mysql::LeanConnection>> {
        self.idle.lock().ok()?.pop().map(Box::new)
    }

    fn give_back(&self, connection: lean_mysql::LeanConnection) {
        if !connection.is_reusable() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.keep {
                idle.push(connection);
            }
        }
    }

    fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }
}

/// `WORKSHOP_MYSQL_CLIENT=sqlx` keeps every MariaDB/MySQL read on sqlx (for comparing the two).
fn lean_reads_allowed() -> bool {
    std::env::var("WORKSHOP_MYSQL_CLIENT").map_or(true, |v| !v.eq_ignore_ascii_case("sqlx"))
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", self.context.target)
    }
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
        let timeout = target.query_timeout;
        let connecting = async {
            match target.kind {
                DatabaseKind::MySql => {
                    let options: MySqlConnectOptions = url.parse().map_err(bad_url)?;
                    let options = options.disable_statement_logging();
                    let mut first = MySqlConnection::connect_with(&options)
                        .await
                        .map_err(|e| classify_connect_error(e, target))?;
                    // MariaDB and MySQL name (and measure) the limit differently.
                    let version: String = sqlx::query_scalar("SELECT VERSION()")
                        .fetch_one(&mut first)
                        .await
                        .map_err(|e| classify_connect_error(e, target))?;
                    let set_timeout = timeout.map(|t| mysql_timeout_statement(&version, t));
                    if let Some(sql) = &set_timeout {
                        sqlx::raw_sql(sql).execute(&mut first).await.map_err(|e| {
                            DbError::Query(format!(
                                "cannot set the query timeout ({}); run with --query-timeout 0",
                                first_line(&e.to_string())
                            ))
                        })?;
                    }
                    let _ = first.close().await;
                    let sessions = PoolSessions::register(Admin::MySql(options.clone()));
                    let registry = Arc::clone(&sessions);
                    let set_timeout: Option<Arc<str>> = set_timeout.map(Into::into);
                    let lean = url::Url::parse(&url)
                        .ok()
                        .filter(|_| lean_reads_allowed())
                        .and_then(|parsed| lean_mysql::lean_target(&parsed))
                        .map(|lean_target| {
                            Arc::new(LeanSetup {
                                target: lean_target,
                                set_timeout: set_timeout.clone(),
                                connect_timeout: settings.connect_timeout,
                                declined: std::sync::OnceLock::new(),
                                idle: std::sync::Mutex::new(Vec::new()),
                                keep: settings.max_connections as usize,
                            })
                        });
                    let pool = MySqlPoolOptions::new()
                        .max_connections(settings.max_connections)
                        .acquire_timeout(settings.connect_timeout)
                        // sqlx pings a connection before handing it out by
                        // default: a round trip per query that doubled the
                        // point-select latency in `just bench`.
                        .test_before_acquire(false)
                        // Every pooled connection gets the limit and is remembered,
                        // so a signal can cancel what it runs.
                        .after_connect(move |conn, _| {
                            let registry = Arc::clone(&registry);
                            let set_timeout = set_timeout.clone();
                            Box::pin(prepare_mysql(conn, registry, set_timeout))
                        })
                        .connect_lazy_with(options);
                    Ok((Pool::MySql(pool), sessions, lean))
                }
                DatabaseKind::Postgres => {
                    let options: PgConnectOptions = url.parse().map_err(bad_url)?;
                    let options = options.disable_statement_logging();
                    let first = PgConnection::connect_with(&options)
                        .await
                        .map_err(|e| classify_connect_error(e, target))?;
                    let _ = first.close().await;
                    let sessions = PoolSessions::register(Admin::Postgres(options.clone()));
                    let registry = Arc::clone(&sessions);
                    let set_timeout: Option<Arc<str>> =
                        timeout.map(|t| format!("SET statement_timeout = {}", t.as_millis().max(1)).into());
                    let pool = PgPoolOptions::new()
                        .max_connections(settings.max_connections)
                        .acquire_timeout(settings.connect_timeout)
                        .test_before_acquire(false)
                        .after_connect(move |conn, _| {
                            let registry = Arc::clone(&registry);
                            let set_timeout = set_timeout.clone();
                            Box::pin(prepare_postgres(conn, registry, set_timeout))
                        })
                        .connect_lazy_with(options);
                    Ok((Pool::Postgres(pool), sessions, None))
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
        let (pool, sessions, lean) = match connected {
            Ok(connected) => connected,
            // A server answered that was no database of this kind (or nothing
            // did): ask the port who it is, for a message that says so.
            Err(error @ DbError::Unreachable { .. }) => return Err(wrong_engine(target).await.unwrap_or(error)),
            Err(error) => return Err(error),
        };
        Ok(Database {
            pool,
            context: ErrorContext {
                target: shown,
                query_timeout: timeout,
            },
            connect_time: started.elapsed(),
            sessions,
            command: "workshop-cli",
            ledger_ready: std::sync::Arc::default(),
            lean,
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
        &self.context.target
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

    /// Opens the connections of `sessions` tasks' [`Database::session`]s before
    /// they start (on MariaDB/MySQL where sessions read lean; elsewhere nothing),
    /// so no task's login falls inside a run. [`Database::warm_up`] warms the pool.
    pub async fn warm_up_sessions(&self, sessions: u32) {
        if let Some(lean) = &self.lean {
            self.warm_up_lean(lean, sessions.max(1) as usize).await;
        }
    }

    /// Opens lean connections until `wanted` are idle (fewer if the server declines or fails).
    async fn warm_up_lean(&self, lean: &Arc<LeanSetup>, wanted: usize) {
        let missing = wanted.saturating_sub(lean.idle_count()).min(lean.keep);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..missing {
            let db = self.clone();
            let lean = Arc::clone(lean);
            tasks.spawn(async move { db.open_lean(&lean).await });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Some(connection)) = joined {
                lean.give_back(*connection);
            }
        }
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

    /// Runs a read query on a pooled connection and converts every row to JSON values
    /// (in a read-only transaction when the statement asks for one).
    pub async fn fetch(&self, statement: &Statement) -> Result<ResultSet, DbError> {
        Ok(self.fetch_timed(statement).await?.0)
    }

    /// [`Database::fetch`] and how long the query took (see [`DbSession::fetch_timed`]).
    pub async fn fetch_timed(&self, statement: &Statement) -> Result<(ResultSet, Duration), DbError> {
        // One read: a pooled connection, not a new lean one (that would be a login per read).
        self.pooled_session().await?.fetch_timed(statement).await
    }

    /// Takes one connection for a task to keep, as each pgbench or sysbench
    /// client keeps its own: no pool hand-over per query. On MariaDB/MySQL it is
    /// a lean connection of its own where the server allows one (see
    /// [`lean_mysql`]); otherwise, and on PostgreSQL, one out of the pool.
    pub async fn session(&self) -> Result<DbSession, DbError> {
        self.session_reading(true).await
    }

    /// A session for reading `statement`: a read-only one (`--sql`) reads through
    /// sqlx anyway, so it takes a pooled connection and no lean one.
    pub async fn session_for(&self, statement: &Statement) -> Result<DbSession, DbError> {
        self.session_reading(!statement.read_only).await
    }

    async fn session_reading(&self, lean_reads: bool) -> Result<DbSession, DbError> {
        if let (Pool::MySql(pool), Some(lean), true) = (&self.pool, &self.lean, lean_reads) {
            let connection = match lean.take_idle() {
                Some(idle) => Some(idle),
                None => self.open_lean(lean).await,
            };
            if let Some(connection) = connection {
                return Ok(DbSession {
                    connection: SessionConnection::MySqlLean {
                        lean: Some(connection),
                        setup: Arc::clone(lean),
                        pool: pool.clone(),
                        fallback: None,
                    },
                    context: self.context.clone(),
                });
            }
        }
        self.pooled_session().await
    }

    /// A session on a connection out of the pool (sqlx).
    async fn pooled_session(&self) -> Result<DbSession, DbError> {
        let connection = match &self.pool {
            Pool::MySql(pool) => pool.acquire().await.map(SessionConnection::MySql),
            Pool::Postgres(pool) => pool.acquire().await.map(SessionConnection::Postgres),
        }
        .map_err(|e| self.query_error(e))?;
        Ok(DbSession {
            connection,
            context: self.context.clone(),
        })
    }

    /// A lean connection for a session's reads, or none (the session uses sqlx):
    /// a server or login that needs sqlx turns the lean path off for this pool;
    /// any other failure leaves the error to sqlx's connection, which says why.
    async fn open_lean(&self, lean: &LeanSetup) -> Option<Box<lean_mysql::LeanConnection>> {
        if lean.declined.get().is_some() {
            return None;
        }
        let opening = lean_mysql::LeanConnection::open(&lean.target, lean.set_timeout.as_deref());
        match tokio::time::timeout(lean.connect_timeout, opening).await {
            Ok(lean_mysql::Open::Ready(connection)) => {
                self.sessions
                    .add(ServerSession::MySql(u64::from(connection.connection_id())));
                Some(connection)
            }
            Ok(lean_mysql::Open::Declined(why)) => {
                let _ = lean.declined.set(why);
                None
            }
            Ok(lean_mysql::Open::Failed) | Err(_) => None,
        }
    }

    /// Why sessions read through sqlx rather than a lean MariaDB/MySQL connection, once a
    /// session found out (`None`: they read lean, or none tried yet, or not MariaDB/MySQL).
    pub fn lean_declined_because(&self) -> Option<&str> {
        self.lean.as_ref()?.declined.get().map(String::as_str)
    }

    /// The same database with every read on sqlx (no lean MariaDB/MySQL connections).
    pub fn without_lean_reads(mut self) -> Database {
        self.lean = None;
        self
    }

    /// Turns a query failure into a message; a missing workshop table means "seed first".
    pub fn query_error(&self, error: sqlx::Error) -> DbError {
        classify_query_error(error, &self.context)
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::MySql(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
        if let Some(lean) = &self.lean {
            // Dropped, each says goodbye to the server.
            if let Ok(mut idle) = lean.idle.lock() {
                idle.clear();
            }
        }
        self.sessions.clear();
    }
}

enum SessionConnection {
    MySql(PoolConnection<MySql>),
    Postgres(PoolConnection<Postgres>),
    /// Reads on a lean connection; a pooled sqlx connection, taken when first
    /// needed, for the statements it declines and read-only ones.
    MySqlLean {
        /// Always there while the session lives; taken when it ends, to be kept idle.
        lean: Option<Box<lean_mysql::LeanConnection>>,
        setup: Arc<LeanSetup>,
        pool: MySqlPool,
        fallback: Option<PoolConnection<MySql>>,
    },
}

/// One database connection held by one task (see [`Database::session`]).
pub struct DbSession {
    connection: SessionConnection,
    context: ErrorContext,
}

impl DbSession {
    /// Whether reads go through a lean MariaDB/MySQL connection rather than sqlx.
    pub fn reads_lean(&self) -> bool {
        matches!(self.connection, SessionConnection::MySqlLean { .. })
    }
}

impl Drop for DbSession {
    /// A lean connection in step goes back for the next session.
    fn drop(&mut self) {
        if let SessionConnection::MySqlLean { lean, setup, .. } = &mut self.connection {
            if let Some(connection) = lean.take() {
                setup.give_back(*connection);
            }
        }
    }
}

/// How each engine opens a read-only transaction.
const MYSQL_READ_ONLY: &str = "START TRANSACTION READ ONLY";
const POSTGRES_READ_ONLY: &str = "BEGIN READ ONLY";

impl DbSession {
    /// Runs a read query on this connection and converts every row to JSON values.
    pub async fn fetch(&mut self, statement: &Statement) -> Result<ResultSet, DbError> {
        Ok(self.fetch_timed(statement).await?.0)
    }

    /// Like [`DbSession::fetch`], and how long the query and the row conversion
    /// took. A `read_only` statement runs in a read-only transaction that is
    /// rolled back; opening and rolling it back are not part of the time, so
    /// `--sql` timings compare with the built-in queries'.
    pub async fn fetch_timed(&mut self, statement: &Statement) -> Result<(ResultSet, Duration), DbError> {
        let context = &self.context;
        match &mut self.connection {
            SessionConnection::MySql(conn) => fetch_mysql_timed(conn, statement, context).await,
            SessionConnection::Postgres(conn) => {
                let error = |e| classify_query_error(e, context);
                let (rows, took) = if statement.read_only {
                    let mut tx = conn.begin_with(POSTGRES_READ_ONLY).await.map_err(error)?;
                    let result = timed(fetch_postgres(&mut *tx, statement)).await;
                    tx.rollback().await.map_err(error)?;
                    result
                } else {
                    timed(fetch_postgres(&mut **conn, statement)).await
                };
                Ok((rows.map_err(error)??, took))
            }
            SessionConnection::MySqlLean {
                lean, pool, fallback, ..
            } => {
                if let (false, Some(lean)) = (statement.read_only, lean.as_mut()) {
                    let (fetched, took) = timed(lean.fetch(&statement.sql, &statement.args)).await;
                    match fetched {
                        Ok(lean_mysql::Fetched::Rows(rows)) => return Ok((rows, took)),
                        Ok(lean_mysql::Fetched::Declined) => {}
                        Err(e) => return Err(classify_lean_error(e, context)),
                    }
                }
                let conn = match fallback {
                    Some(conn) => conn,
                    None => fallback.insert(pool.acquire().await.map_err(|e| classify_query_error(e, context))?),
                };
                fetch_mysql_timed(conn, statement, context).await
            }
        }
    }
}

/// A read over sqlx on MariaDB/MySQL, in a rolled-back read-only transaction when
/// the statement asks for one (opening and rolling back are not timed).
async fn fetch_mysql_timed(
    conn: &mut PoolConnection<MySql>,
    statement: &Statement,
    context: &ErrorContext,
) -> Result<(ResultSet, Duration), DbError> {
    let error = |e| classify_query_error(e, context);
    let (rows, took) = if statement.read_only {
        let mut tx = conn.begin_with(MYSQL_READ_ONLY).await.map_err(error)?;
        let result = timed(fetch_mysql(&mut *tx, statement)).await;
        tx.rollback().await.map_err(error)?;
        result
    } else {
        timed(fetch_mysql(&mut **conn, statement)).await
    };
    Ok((rows.map_err(error)??, took))
}

/// A new pooled MySQL/MariaDB connection: the statement timeout, and its id for cancelling.
async fn prepare_mysql(
    conn: &mut MySqlConnection,
    registry: Arc<PoolSessions>,
    set_timeout: Option<Arc<str>>,
) -> Result<(), sqlx::Error> {
    // Executor's methods on the connection, not query builders: the builders'
    // futures fail the pool's higher-ranked Send bound.
    if let Some(sql) = set_timeout.as_deref() {
        conn.execute(sql).await?;
    }
    let id: u64 = conn.fetch_one("SELECT CONNECTION_ID()").await?.try_get(0)?;
    registry.add(ServerSession::MySql(id));
    Ok(())
}

/// A new pooled PostgreSQL connection: the statement timeout, and its backend for cancelling.
async fn prepare_postgres(
    conn: &mut PgConnection,
    registry: Arc<PoolSessions>,
    set_timeout: Option<Arc<str>>,
) -> Result<(), sqlx::Error> {
    // One round trip in the simple protocol: a new connection already costs a
    // SCRAM login, and a fleet opens many at once.
    const IDENTITY: &str = "SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()";
    let sql = match set_timeout.as_deref() {
        Some(set) => format!("{set}; {IDENTITY}"),
        None => IDENTITY.to_string(),
    };
    let row = conn
        .fetch_optional(sqlx::raw_sql(&sql))
        .await?
        .ok_or_else(|| sqlx::Error::Protocol("pg_stat_activity does not show this connection".into()))?;
    let (pid, started): (i32, String) = (row.try_get(0)?, row.try_get(1)?);
    registry.add(ServerSession::Postgres { pid, started });
    Ok(())
}

async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let result = work.await;
    (result, started.elapsed())
}

/// `SET SESSION` for the statement timeout: MariaDB's `max_statement_time`
/// is in seconds, MySQL's `max_execution_time` in milliseconds (and applies
/// to SELECT only, which is all `--sql` may run).
fn mysql_timeout_statement(version: &str, timeout: Duration) -> String {
    if version.to_ascii_lowercase().contains("mariadb") {
        format!(
            "SET SESSION max_statement_time = {:.3}",
            timeout.as_secs_f64().max(0.001)
        )
    } else {
        format!("SET SESSION max_execution_time = {}", timeout.as_millis().max(1))
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

fn classify_query_error(error: sqlx::Error, context: &ErrorContext) -> DbError {
    if let sqlx::Error::Database(db_error) = &error {
        let code = db_error.code().unwrap_or_default();
        let number = db_error
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|e| e.number());
        return classify_server_error(&code, number, db_error.message(), context);
    }
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => DbError::Unreachable {
            target: context.target.clone(),
            reason: first_line(&error.to_string()),
        },
        other => DbError::Query(first_line(&other.to_string())),
    }
}

/// A failure on a lean MariaDB/MySQL connection, told apart as sqlx's are.
fn classify_lean_error(error: lean_mysql::ReadError, context: &ErrorContext) -> DbError {
    match error {
        lean_mysql::ReadError::Server {
            number,
            sql_state,
            message,
        } => classify_server_error(&sql_state, Some(number), &message, context),
        lean_mysql::ReadError::Io(e) => DbError::Unreachable {
            target: context.target.clone(),
            reason: first_line(&e.to_string()),
        },
        lean_mysql::ReadError::Decode(message) => DbError::Query(message),
    }
}

/// An error the server answered: SQLSTATE `code`, MySQL's error `number`, its message.
fn classify_server_error(code: &str, number: Option<u16>, message: &str, context: &ErrorContext) -> DbError {
    let message = first_line(message);
    // 42S02 / 1146: MySQL "table doesn't exist"; 42P01: PostgreSQL "undefined table".
    if code == "42S02" || code == "1146" || code == "42P01" {
        let table = quoted_name(&message).unwrap_or_default();
        if table.is_empty() || is_workshop_table(&table) {
            return DbError::NotSeeded { detail: message };
        }
        return DbError::UnknownTable { table, detail: message };
    }
    // PostgreSQL's class 08 (connection exception) and 57P01-03 (the
    // server ended the session: terminated, crashed, not accepting):
    // the connection is gone, not the query wrong.
    if code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03") {
        return DbError::Unreachable {
            target: context.target.clone(),
            reason: message,
        };
    }
    // MariaDB 1969 (max_statement_time), MySQL 3024 (max_execution_time);
    // PostgreSQL 57014 is any cancel, the message says which.
    let timed_out =
        matches!(number, Some(1969) | Some(3024)) || (code == "57014" && message.contains("statement timeout"));
    if timed_out {
        let limit = context.query_timeout.map_or_else(
            || "the server's own statement timeout".to_string(),
            |t| format!("the query timeout of {} s", seconds_text(t)),
        );
        return DbError::TimedOut { limit };
    }
    // 25006: a write in a read-only transaction (MySQL 1792 as well).
    if code == "25006" || number == Some(1792) {
        return DbError::WriteRefused { detail: message };
    }
    DbError::Query(message)
}

/// "1", "0.5": seconds as the user typed them, near enough.
fn seconds_text(timeout: Duration) -> String {
    let text = format!("{:.3}", timeout.as_secs_f64());
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The first quoted name in a server message: MySQL "Table 'db.name' doesn't
/// exist", PostgreSQL `relation "name" does not exist`. Shown with its quotes.
fn quoted_name(message: &str) -> Option<String> {
    let open = message.find(['\'', '"'])?;
    let quote = message[open..].chars().next()?;
    let close = message[open + 1..].find(quote)? + open + 1;
    Some(message[open..=close].to_string())
}

/// Whether a (quoted, maybe schema-qualified) name is one `seed` creates.
fn is_workshop_table(quoted: &str) -> bool {
    let bare = quoted.trim_matches(['\'', '"']);
    let bare = bare.rsplit('.').next().unwrap_or(bare).to_ascii_lowercase();
    crate::fixtures::table::TABLES.iter().any(|t| t.name == bare) || bare == crate::fixtures::table::SEED_RECORD_TABLE
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
    fn the_missing_table_is_read_from_either_servers_message() {
        assert_eq!(
            quoted_name("Table 'shop.orders' doesn't exist").as_deref(),
            Some("'shop.orders'")
        );
        assert_eq!(
            quoted_name("relation \"orders\" does not exist").as_deref(),
            Some("\"orders\"")
        );
        assert_eq!(quoted_name("no quotes here"), None);
    }

    #[test]
    fn only_the_workshops_own_tables_mean_seed_first() {
        assert!(is_workshop_table("'wt_x.airport'"));
        assert!(is_workshop_table("\"products\""));
        assert!(is_workshop_table("\"public.Booking\""));
        assert!(!is_workshop_table("'shop.orders'"));
        assert!(!is_workshop_table("\"airports\""));
    }

    #[test]
    fn the_timeout_is_set_in_each_servers_unit() {
        let timeout = Duration::from_millis(1500);
        assert_eq!(
            mysql_timeout_statement("10.11.19-MariaDB-0+deb12u1", timeout),
            "SET SESSION max_statement_time = 1.500"
        );
        assert_eq!(
            mysql_timeout_statement("8.4.3", timeout),
            "SET SESSION max_execution_time = 1500"
        );
        assert_eq!(seconds_text(Duration::from_secs(1)), "1");
        assert_eq!(seconds_text(Duration::from_millis(2500)), "2.5");
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
