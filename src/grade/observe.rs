//! What the servers saw: statement counts per shape from the database's own
//! statistics, and Valkey's INFO counters and keys.
//!
//! Statement counts are scoped to the graded database: `SCHEMA_NAME` in
//! performance_schema's `events_statements_summary_by_digest` (MySQL and
//! MariaDB; the schema the session had selected), `dbid` in PostgreSQL's
//! `pg_stat_statements`. The grader reads them over a connection to *another*
//! database (the configured one), so its own snapshots are never counted, and
//! other clients of the server — a concurrent test — never change a count.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::cache::Valkey;
use crate::config::{Config, DatabaseKind};
use crate::db::{Database, DbError, PoolSettings};
use crate::error::Result;

/// One statement shape and how often it ran during a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementCount {
    pub shape: String,
    pub calls: u64,
    /// Reads or writes data (see [`is_data_statement`]).
    pub query: bool,
}

/// The shape shown for MariaDB's prepared-statement executions (it keeps no text for them).
pub const PREPARED_EXECUTE: &str = "EXECUTE of a prepared statement (binary protocol; MariaDB keeps no text)";

/// A snapshot: statement id → (text, calls so far).
pub type Snapshot = HashMap<String, (String, u64)>;

pub struct StatementCounter {
    observer: Database,
    kind: DatabaseKind,
    database: String,
    notes: Vec<String>,
}

const DIGESTS_FULL: &str = "performance_schema's digest table is full (performance_schema_digests_size rows), so the graded database's statements would not be counted, and this login may not empty it; run TRUNCATE TABLE performance_schema.events_statements_summary_by_digest as an administrator, or raise performance_schema_digests_size";
const DIGESTS_EMPTIED: &str = "performance_schema's digest table was full (performance_schema_digests_size rows for the whole server); the grader emptied it (statistics only) so this run's statements are counted";

const NO_PERFORMANCE_SCHEMA: &str = "performance_schema is off on this MySQL/MariaDB server; the grader counts statements with it: set performance_schema = ON in the server's configuration and restart it (`scripts/services.sh up` does)";
const NO_PG_STAT_STATEMENTS: &str = "pg_stat_statements is not available in the configured database; the grader counts statements with it: add shared_preload_libraries = 'pg_stat_statements', restart PostgreSQL and run CREATE EXTENSION pg_stat_statements (`scripts/services.sh up` does)";

impl StatementCounter {
    /// Counts the statements run in `database`, observed from the configured database.
    pub async fn connect(config: &Config, database: &str) -> Result<StatementCounter> {
        // The observer's own statements must not count: on MySQL/MariaDB it sits in
        // information_schema (its EXECUTEs then belong to another database); on
        // PostgreSQL the view lives in the configured database, so the snapshot
        // leaves out its own statement by its text (see `snapshot`).
        let target = match config.database.kind {
            DatabaseKind::MySql => config.database.with_database("information_schema"),
            DatabaseKind::Postgres => config.database.clone(),
        };
        let observer = Database::connect(
            &target,
            PoolSettings {
                max_connections: 1,
                connect_timeout: super::world::patient(config),
            },
        )
        .await?;
        let counter = StatementCounter {
            observer,
            kind: config.database.kind,
            database: database.to_string(),
            notes: Vec::new(),
        };
        let mut counter = counter;
        counter.make_room().await?;
        counter.snapshot().await?;
        Ok(counter)
    }

    /// performance_schema keeps at most `performance_schema_digests_size`
    /// digest rows (10,000 by default) for the whole server; once full, new
    /// statements land in one row without a schema and this database's would
    /// not be counted. A full table is emptied (statistics only, no data), and
    /// the outcome says so.
    async fn make_room(&mut self) -> Result<(), DbError> {
        let Some(pool) = self.observer.mysql() else {
            return Ok(());
        };
        let full: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) >= @@performance_schema_digests_size AS SIGNED) \
             FROM performance_schema.events_statements_summary_by_digest",
        )
        .fetch_one(pool)
        .await
        .map_err(|e| self.observer.query_error(e))?;
        if full == 1 {
            sqlx::raw_sql("TRUNCATE TABLE performance_schema.events_statements_summary_by_digest")
                .execute(pool)
                .await
                .map_err(|_| DbError::Query(DIGESTS_FULL.into()))?;
            self.notes.push(DIGESTS_EMPTIED.into());
        }
        Ok(())
    }

    /// What the grader had to do to count (shown as warnings).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn source(&self) -> &'static str {
        match self.kind {
            DatabaseKind::MySql => "performance_schema statement digests (SCHEMA_NAME)",
            DatabaseKind::Postgres => "pg_stat_statements (dbid)",
        }
    }

    pub async fn snapshot(&self) -> Result<Snapshot, DbError> {
        let rows: Vec<(String, String, i64)> = match (self.observer.mysql(), self.observer.postgres()) {
            (Some(pool), _) => {
                let enabled: i64 = sqlx::query_scalar("SELECT CAST(@@performance_schema AS SIGNED)")
                    .fetch_one(pool)
                    .await
                    .map_err(|e| self.observer.query_error(e))?;
                if enabled == 0 {
                    return Err(DbError::Query(NO_PERFORMANCE_SCHEMA.into()));
                }
                let mut rows: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT DIGEST, COALESCE(DIGEST_TEXT, ''), CAST(COUNT_STAR AS SIGNED) \
                     FROM performance_schema.events_statements_summary_by_digest \
                     WHERE SCHEMA_NAME = ? AND DIGEST IS NOT NULL",
                )
                .bind(&self.database)
                .fetch_all(pool)
                .await
                .map_err(|e| self.observer.query_error(e))?;
                // MariaDB computes no digest for a prepared statement run over the
                // binary protocol (COM_STMT_EXECUTE, what sqlx, JDBC or Go's driver
                // send): those are counted per connection of the graded database.
                let mariadb: i64 = sqlx::query_scalar("SELECT CAST(VERSION() LIKE '%MariaDB%' AS SIGNED)")
                    .fetch_one(pool)
                    .await
                    .map_err(|e| self.observer.query_error(e))?;
                if mariadb == 1 {
                    let executes: Vec<(String, i64)> = sqlx::query_as(
                        "SELECT CAST(s.THREAD_ID AS CHAR), CAST(s.COUNT_STAR AS SIGNED) \
                         FROM performance_schema.events_statements_summary_by_thread_by_event_name s \
                         JOIN performance_schema.threads t ON t.THREAD_ID = s.THREAD_ID \
                         WHERE t.PROCESSLIST_DB = ? AND s.EVENT_NAME = 'statement/com/Execute' AND s.COUNT_STAR > 0",
                    )
                    .bind(&self.database)
                    .fetch_all(pool)
                    .await
                    .map_err(|e| self.observer.query_error(e))?;
                    rows.extend(
                        executes
                            .into_iter()
                            .map(|(thread, calls)| (format!("execute:{thread}"), PREPARED_EXECUTE.to_string(), calls)),
                    );
                }
                rows
            }
            (_, Some(pool)) => sqlx::query_as(
                "SELECT s.queryid::text || ':' || s.userid::text, s.query, s.calls::bigint \
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
                 WHERE d.datname = $1 AND s.toplevel AND s.queryid IS NOT NULL \
                 AND s.query NOT LIKE '%pg_stat_statements%'",
            )
            .bind(&self.database)
            .fetch_all(pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(ref db) if db.message().contains("pg_stat_statements") => {
                    DbError::Query(NO_PG_STAT_STATEMENTS.into())
                }
                other => self.observer.query_error(other),
            })?,
            _ => Vec::new(),
        };
        let mut snapshot = Snapshot::new();
        for (id, text, calls) in rows {
            let entry = snapshot.entry(id).or_insert((text, 0));
            entry.1 += calls.max(0) as u64;
        }
        Ok(snapshot)
    }
}

/// What ran between two snapshots, most frequent first. A statement whose
/// entry was evicted and came back counts from zero.
pub fn delta(before: &Snapshot, after: &Snapshot) -> Vec<StatementCount> {
    let mut counts: Vec<StatementCount> = after
        .iter()
        .filter_map(|(id, (text, calls))| {
            let earlier = before.get(id).map_or(0, |(_, c)| *c);
            let ran = if *calls >= earlier { calls - earlier } else { *calls };
            (ran > 0).then(|| StatementCount {
                shape: one_line(text),
                calls: ran,
                query: is_data_statement(text),
            })
        })
        .collect();
    counts.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.shape.cmp(&b.shape)));
    counts
}

/// Statements that read or wrote data, as the cache is meant to save them.
pub fn queries(counts: &[StatementCount]) -> u64 {
    counts.iter().filter(|c| c.query).map(|c| c.calls).sum()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A statement that reads or writes data: `SELECT`/`WITH` with a `FROM`,
/// `INSERT`, `UPDATE`, `DELETE`, `REPLACE`, `MERGE`, `COPY`, `CALL`. What a
/// driver runs to set up a session — `SET`, `SELECT VERSION()`, `SELECT 1`,
/// `SELECT @@…`, its own look at `pg_stat_activity` or `information_schema`
/// — is not a query the cache could have saved.
pub fn is_data_statement(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    let first = upper
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    const SYSTEM: [&str; 7] = [
        "@@",
        "PG_STAT",
        "PG_BACKEND_PID",
        "PG_CATALOG",
        "INFORMATION_SCHEMA",
        "PERFORMANCE_SCHEMA",
        "CONNECTION_ID",
    ];
    if SYSTEM.iter().any(|s| upper.contains(s)) {
        return false;
    }
    match first {
        "SELECT" | "WITH" | "TABLE" => upper.contains("FROM") || first == "TABLE",
        // EXECUTE runs a prepared statement: the application's query.
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "MERGE" | "COPY" | "CALL" | "EXECUTE" => true,
        _ => false,
    }
}

/// Valkey's counters at one moment (INFO stats and commandstats).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValkeyCounters {
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub commands: BTreeMap<String, u64>,
}

impl ValkeyCounters {
    pub async fn read(valkey: &Valkey) -> Result<ValkeyCounters> {
        let stats = valkey.info("stats").await?;
        let commandstats = valkey.info("commandstats").await?;
        Ok(ValkeyCounters::from_info(&stats, &commandstats))
    }

    pub fn from_info(stats: &BTreeMap<String, String>, commandstats: &BTreeMap<String, String>) -> ValkeyCounters {
        let number = |name: &str| stats.get(name).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        let commands = commandstats
            .iter()
            .filter_map(|(name, value)| {
                let command = name.strip_prefix("cmdstat_")?;
                let calls = value
                    .split(',')
                    .find_map(|field| field.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((command.to_string(), calls))
            })
            .collect();
        ValkeyCounters {
            keyspace_hits: number("keyspace_hits"),
            keyspace_misses: number("keyspace_misses"),
            commands,
        }
    }

    /// What happened since `before`; the grader's own INFO calls are left out.
    pub fn since(&self, before: &ValkeyCounters) -> ValkeyCounters {
        let commands = self
            .commands
            .iter()
            .filter(|(name, _)| name.as_str() != "info")
            .filter_map(|(name, calls)| {
                let ran = calls.saturating_sub(before.commands.get(name).copied().unwrap_or(0));
                (ran > 0).then(|| (name.clone(), ran))
            })
            .collect();
        ValkeyCounters {
            keyspace_hits: self.keyspace_hits.saturating_sub(before.keyspace_hits),
            keyspace_misses: self.keyspace_misses.saturating_sub(before.keyspace_misses),
            commands,
        }
    }
}

/// A key as the grader found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub key: String,
    /// `string`, `hash`, ...
    pub kind: String,
    /// Milliseconds left; `None`: no TTL (the key lives for ever).
    pub ttl_ms: Option<u64>,
}

/// Every key matching `pattern` with its type and TTL.
pub async fn keys(valkey: &Valkey, prefix: &str) -> Result<Vec<KeyInfo>> {
    let mut found = Vec::new();
    let mut names = valkey.scan_prefixed(prefix).await?;
    names.sort();
    for key in names {
        let kind: String = valkey.query("TYPE", redis::cmd("TYPE").arg(&key)).await?;
        let ttl = valkey.ttl(&key).await?;
        found.push(KeyInfo {
            key,
            kind,
            ttl_ms: ttl.map(|t: Duration| t.as_millis() as u64),
        });
    }
    Ok(found)
}

/// The value of a string key parsed as JSON, or a hash's fields as strings.
pub async fn cached_json(valkey: &Valkey, key: &KeyInfo) -> Result<Option<serde_json::Value>> {
    match key.kind.as_str() {
        "string" => {
            let text = valkey.get(&key.key).await?;
            Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
        }
        "hash" => {
            let fields: BTreeMap<String, String> = valkey.query("HGETALL", redis::cmd("HGETALL").arg(&key.key)).await?;
            Ok(Some(serde_json::Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect(),
            )))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_statements_are_told_from_session_set_up() {
        assert!(is_data_statement(
            "SELECT `airport_id` , `name` FROM `airport` WHERE `airport_id` = ?"
        ));
        assert!(is_data_statement("select * from airport where airport_id = $1"));
        assert!(is_data_statement("INSERT INTO passenger (passportno) VALUES ($1)"));
        assert!(is_data_statement("UPDATE products SET price = ? WHERE id = ?"));
        assert!(is_data_statement("WITH x AS (SELECT 1) SELECT * FROM x"));
        assert!(!is_data_statement("SELECT ?"));
        assert!(!is_data_statement("SELECT VERSION ( )"));
        assert!(!is_data_statement("SELECT @@`version_comment` LIMIT ?"));
        assert!(!is_data_statement("SET SESSION `max_statement_time` = ?"));
        assert!(!is_data_statement(
            "SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ));
        assert!(!is_data_statement("SELECT CONNECTION_ID ( )"));
        assert!(!is_data_statement("BEGIN"));
        assert!(is_data_statement(PREPARED_EXECUTE));
    }

    #[test]
    fn a_delta_counts_only_what_ran_between_snapshots() {
        let before: Snapshot = [("a".to_string(), ("SELECT * FROM t".to_string(), 5))].into();
        let after: Snapshot = [
            ("a".to_string(), ("SELECT * FROM t".to_string(), 7)),
            ("b".to_string(), ("SET x = ?".to_string(), 1)),
        ]
        .into();
        let counts = delta(&before, &after);
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[0].calls, 2);
        assert!(counts[0].query);
        assert_eq!(queries(&counts), 2);
        // An entry evicted and seen again counts from zero, never negative.
        let evicted: Snapshot = [("a".to_string(), ("SELECT * FROM t".to_string(), 3))].into();
        assert_eq!(queries(&delta(&before, &evicted)), 3);
    }

    #[test]
    fn commandstats_deltas_leave_out_info() {
        let stats = |hits: &str| BTreeMap::from([("keyspace_hits".to_string(), hits.to_string())]);
        let cmds = |get: &str| {
            BTreeMap::from([
                (
                    "cmdstat_get".to_string(),
                    format!("calls={get},usec=10,usec_per_call=1.00"),
                ),
                ("cmdstat_info".to_string(), format!("calls={get},usec=10")),
            ])
        };
        let before = ValkeyCounters::from_info(&stats("1"), &cmds("2"));
        let after = ValkeyCounters::from_info(&stats("4"), &cmds("5"));
        let d = after.since(&before);
        assert_eq!(d.keyspace_hits, 3);
        assert_eq!(d.commands, BTreeMap::from([("get".to_string(), 3)]));
    }
}
