//! Cancelling, on the server, the queries this process started.
//!
//! Closing a client does not stop a query: MariaDB finishes a running
//! `SLEEP(9)` or a 9-second aggregate after the client is gone. So every
//! pooled connection records its server-side id when it opens
//! (`CONNECTION_ID()` / `pg_backend_pid()`), and on Ctrl-C, SIGTERM or a
//! failed run [`cancel_running`] opens one fresh connection per pool and
//! stops those of ours that are mid-query (`KILL QUERY` / `pg_cancel_backend`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

/// How to open the fresh connection that cancels.
#[derive(Clone)]
pub(crate) enum Admin {
    MySql(MySqlConnectOptions),
    Postgres(PgConnectOptions),
}

/// One connection's identity on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerSession {
    /// `CONNECTION_ID()`: ids are not reused while the server runs.
    MySql(u64),
    /// PostgreSQL reuses process ids, so the backend's start time goes with it:
    /// a later backend with the same pid is someone else's and is left alone.
    Postgres { pid: i32, started: String },
}

/// The server sessions of one pool.
pub(crate) struct PoolSessions {
    admin: Admin,
    sessions: Mutex<Vec<ServerSession>>,
}

/// Every pool of the process, so a signal handler can find them all.
///
/// Held strongly: a run interrupted mid-query drops its pool (and sqlx hands the
/// dropped connections to tasks that may not have run yet), but its queries still
/// run on the server, so the sessions must outlive the pool until they are
/// cancelled. A pool that is gone is forgotten when a new pool registers or
/// after a cancel.
static POOLS: Mutex<Vec<Arc<PoolSessions>>> = Mutex::new(Vec::new());

impl PoolSessions {
    pub(crate) fn register(admin: Admin) -> Arc<PoolSessions> {
        let pool = Arc::new(PoolSessions {
            admin,
            sessions: Mutex::new(Vec::new()),
        });
        if let Ok(mut pools) = POOLS.lock() {
            pools.retain(still_in_use);
            pools.push(Arc::clone(&pool));
        }
        pool
    }

    pub(crate) fn add(&self, session: ServerSession) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.push(session);
        }
    }

    /// The pool was closed: none of its sessions is ours any more.
    pub(crate) fn clear(&self) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.clear();
        }
    }

    fn snapshot(&self) -> Vec<ServerSession> {
        self.sessions.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Whether any pool of this process has opened a connection (so cancelling
/// is worth a fresh connection).
pub fn anything_to_cancel() -> bool {
    live_pools().iter().any(|pool| !pool.snapshot().is_empty())
}

fn live_pools() -> Vec<Arc<PoolSessions>> {
    POOLS.lock().map(|pools| pools.clone()).unwrap_or_default()
}

/// Whether a pool's handle still exists somewhere but in the registry.
fn still_in_use(pool: &Arc<PoolSessions>) -> bool {
    Arc::strong_count(pool) > 1
}

/// Stops every query of this process that is still running on a server;
/// returns how many were stopped. Best effort within `timeout`: a server that
/// does not answer is given up on (the process is about to exit anyway).
pub async fn cancel_running(timeout: Duration) -> u64 {
    let mut cancelled = 0;
    for pool in live_pools() {
        let sessions = pool.snapshot();
        if sessions.is_empty() {
            continue;
        }
        if let Ok(Ok(n)) = tokio::time::timeout(timeout, cancel_in_pool(&pool.admin, &sessions)).await {
            cancelled += n;
        }
    }
    // The pools that are gone had their last chance now.
    if let Ok(mut pools) = POOLS.lock() {
        pools.retain(still_in_use);
    }
    cancelled
}

async fn cancel_in_pool(admin: &Admin, sessions: &[ServerSession]) -> Result<u64, sqlx::Error> {
    match admin {
        Admin::MySql(options) => {
            let ids: Vec<String> = sessions
                .iter()
                .filter_map(|s| match s {
                    ServerSession::MySql(id) => Some(id.to_string()),
                    ServerSession::Postgres { .. } => None,
                })
                .collect();
            let mut conn = MySqlConnection::connect_with(options).await?;
            // The ids are numbers this process read from the server, not user input.
            // COMMAND is 'Query' or, for prepared statements, 'Execute'; idle ones 'Sleep'.
            let busy: Vec<u64> = sqlx::query_scalar(&format!(
                "SELECT CAST(ID AS UNSIGNED) FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Sleep' AND ID IN ({})",
                ids.join(",")
            ))
            .fetch_all(&mut conn)
            .await?;
            let mut cancelled = 0;
            for id in busy {
                // "Unknown thread id": it finished in between, nothing to stop.
                if sqlx::raw_sql(&format!("KILL QUERY {id}"))
                    .execute(&mut conn)
                    .await
                    .is_ok()
                {
                    cancelled += 1;
                }
            }
            let _ = conn.close().await;
            Ok(cancelled)
        }
        Admin::Postgres(options) => {
            let (pids, started): (Vec<i32>, Vec<String>) = sessions
                .iter()
                .filter_map(|s| match s {
                    ServerSession::Postgres { pid, started } => Some((*pid, started.clone())),
                    ServerSession::MySql(_) => None,
                })
                .unzip();
            let mut conn = PgConnection::connect_with(options).await?;
            let stopped: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_cancel_backend(a.pid) FROM pg_stat_activity a \
                 JOIN unnest($1::int4[], $2::text[]) AS ours(pid, started) \
                   ON a.pid = ours.pid AND a.backend_start::text = ours.started \
                 WHERE a.state = 'active'",
            )
            .bind(pids)
            .bind(started)
            .fetch_all(&mut conn)
            .await?;
            let _ = conn.close().await;
            Ok(stopped.into_iter().filter(|&ok| ok).count() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(session: &ServerSession) -> bool {
        live_pools().iter().any(|pool| pool.snapshot().contains(session))
    }

    #[test]
    fn a_dropped_pool_keeps_its_sessions_until_they_were_cancelled_or_a_new_pool_comes() {
        // An id no server hands out, so other tests' pools cannot hold it.
        let session = ServerSession::MySql(u64::MAX - 7);
        let pool = PoolSessions::register(Admin::MySql(MySqlConnectOptions::new()));
        pool.add(session.clone());
        // Dropped mid-query (an interrupted run): the server still runs its queries.
        drop(pool);
        assert!(registered(&session), "the sessions were lost with the pool");
        // The next pool of the process forgets the one that is gone.
        let next = PoolSessions::register(Admin::MySql(MySqlConnectOptions::new()));
        assert!(!registered(&session));
        next.add(ServerSession::MySql(u64::MAX - 8));
        next.clear();
        assert!(!registered(&ServerSession::MySql(u64::MAX - 8)));
    }
}
