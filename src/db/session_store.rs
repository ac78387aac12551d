//! The session exercise's database side: sessions kept in a table
//! (`workshop_sessions`), what a web framework's database session store
//! does. A read checks the expiry and moves it on (the sliding expiry, a
//! second statement); expired rows stay until a cleanup `DELETE` removes
//! them, which Valkey never needs. Each run's rows carry its `run_id`, which
//! the ledger records, so `clean` deletes what a killed run left.

use super::changes::numbered;
use super::{Database, DbError, Pool};
use crate::config::DatabaseKind;

pub const SESSIONS_TABLE: &str = "workshop_sessions";

/// The table and the index the cleanup needs (without it, the DELETE of
/// expired rows reads the whole table).
fn create_statements(kind: DatabaseKind) -> Vec<String> {
    let columns = "session_id VARCHAR(64) NOT NULL PRIMARY KEY, run_id BIGINT NOT NULL, \
                   user_id BIGINT NOT NULL, data TEXT NOT NULL, expires_at_ms BIGINT NOT NULL";
    match kind {
        DatabaseKind::MySql => vec![format!(
            "CREATE TABLE IF NOT EXISTS {SESSIONS_TABLE} ({columns}, \
             KEY {SESSIONS_TABLE}_expires (expires_at_ms), KEY {SESSIONS_TABLE}_run (run_id))"
        )],
        DatabaseKind::Postgres => vec![
            format!("CREATE TABLE IF NOT EXISTS {SESSIONS_TABLE} ({columns})"),
            format!("CREATE INDEX IF NOT EXISTS {SESSIONS_TABLE}_expires ON {SESSIONS_TABLE} (expires_at_ms)"),
            format!("CREATE INDEX IF NOT EXISTS {SESSIONS_TABLE}_run ON {SESSIONS_TABLE} (run_id)"),
        ],
    }
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` has.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match &$db.pool {
            Pool::MySql($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// One session row as a read returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user_id: i64,
    pub data: String,
}

impl Database {
    /// Creates the sessions table unless it exists.
    pub async fn ensure_sessions_table(&self) -> Result<(), DbError> {
        for statement in create_statements(self.kind()) {
            on_pool!(self, pool => sqlx::query(&statement).execute(pool).await.map(drop))
                .map_err(|e| self.query_error(e))?;
        }
        Ok(())
    }

    /// Log in: one INSERT (autocommit).
    pub async fn insert_session(
        &self,
        session_id: &str,
        run_id: i64,
        user_id: i64,
        data: &str,
        expires_at_ms: i64,
    ) -> Result<(), DbError> {
        let sql = numbered(
            self.kind(),
            &format!(
                "INSERT INTO {SESSIONS_TABLE} (session_id, run_id, user_id, data, expires_at_ms) VALUES (?, ?, ?, ?, ?)"
            ),
        );
        on_pool!(self, pool => sqlx::query(&sql)
            .bind(session_id)
            .bind(run_id)
            .bind(user_id)
            .bind(data)
            .bind(expires_at_ms)
            .execute(pool)
            .await
            .map(drop))
        .map_err(|e| self.query_error(e))
    }

    /// A read with a sliding expiry: the row if it has not expired at
    /// `now_ms`, then its expiry moved to `new_expires_at_ms` (two statements,
    /// as a database session store runs them).
    pub async fn read_session_sliding(
        &self,
        session_id: &str,
        now_ms: i64,
        new_expires_at_ms: i64,
    ) -> Result<Option<SessionRow>, DbError> {
        let select = numbered(
            self.kind(),
            &format!("SELECT user_id, data FROM {SESSIONS_TABLE} WHERE session_id = ? AND expires_at_ms > ?"),
        );
        let update = numbered(
            self.kind(),
            &format!("UPDATE {SESSIONS_TABLE} SET expires_at_ms = ? WHERE session_id = ?"),
        );
        let error = |e| self.query_error(e);
        let row: Option<(i64, String)> = on_pool!(self, pool => sqlx::query_as(&select)
            .bind(session_id)
            .bind(now_ms)
            .fetch_optional(pool)
            .await)
        .map_err(error)?;
        if row.is_some() {
            on_pool!(self, pool => sqlx::query(&update)
                .bind(new_expires_at_ms)
                .bind(session_id)
                .execute(pool)
                .await
                .map(drop))
            .map_err(error)?;
        }
        Ok(row.map(|(user_id, data)| SessionRow { user_id, data }))
    }

    /// Log out: DELETE of one row; true when it was there.
    pub async fn delete_session(&self, session_id: &str) -> Result<bool, DbError> {
        let sql = numbered(
            self.kind(),
            &format!("DELETE FROM {SESSIONS_TABLE} WHERE session_id = ?"),
        );
        let done =
            on_pool!(self, pool => sqlx::query(&sql).bind(session_id).execute(pool).await.map(|r| r.rows_affected()))
                .map_err(|e| self.query_error(e))?;
        Ok(done > 0)
    }

    /// Rows of run `run_id` that expired before `now_ms` and are still there.
    pub async fn expired_sessions_left(&self, run_id: i64, now_ms: i64) -> Result<u64, DbError> {
        let sql = numbered(
            self.kind(),
            &format!("SELECT COUNT(*) FROM {SESSIONS_TABLE} WHERE run_id = ? AND expires_at_ms <= ?"),
        );
        let count: i64 =
            on_pool!(self, pool => sqlx::query_scalar(&sql).bind(run_id).bind(now_ms).fetch_one(pool).await)
                .map_err(|e| self.query_error(e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The cleanup job a session table needs: DELETE every expired row.
    pub async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64, DbError> {
        let sql = numbered(
            self.kind(),
            &format!("DELETE FROM {SESSIONS_TABLE} WHERE expires_at_ms <= ?"),
        );
        on_pool!(self, pool => sqlx::query(&sql).bind(now_ms).execute(pool).await.map(|r| r.rows_affected()))
            .map_err(|e| self.query_error(e))
    }
}
