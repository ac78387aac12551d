//! Exercise 10, `workshop-cli session`: a session store in Valkey. Log in is
//! a hash written with its expiry (`HSET` + `EXPIRE`, one MULTI); a read
//! extends the expiry again (`HGETALL` + `EXPIRE`: the sliding expiry); a
//! second process (a copy of this program) reads the same session; log out
//! is `DEL`; and one session is watched expiring live, its TTL counting
//! down every `--interval`. The same sessions in a database table
//! (`workshop_sessions`) are timed beside it, and so is the cleanup the
//! table needs: expired rows stay until a `DELETE` removes them, where
//! Valkey drops expired keys by itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cache::{KeyScheme, Valkey};
use crate::config::Config;
use crate::db::Database;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::{RunEvent, RunProgress};
use crate::exercises::services::{self, Needs, ValkeyNeed};
use crate::exercises::{Outcome, Verdict};
use crate::measure::{self, LatencyRecorder, LatencySummary};
use crate::patterns::stampede::unix_millis;
use crate::rng::SplitMix64;

pub const MAX_SESSIONS: u64 = 100_000;
pub const MAX_SESSION_TTL: u64 = 3600;
/// The watched session is read (and its expiry extended) at this tick.
const SLIDING_READ_TICK: u64 = 2;
/// The most ticks the watch takes before it gives up on seeing the expiry.
const MAX_TICKS: u64 = 100_000;

#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub sessions: u64,
    pub session_ttl: u64,
    /// Seconds between two looks at the watched session's TTL.
    pub interval: f64,
    /// Set in the second process: read this session, report, stop.
    pub peek: Option<String>,
}

/// What a session holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionData {
    pub user_id: i64,
    pub data: String,
}

/// The second process's report on one session.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Peek {
    pub session_id: String,
    pub pid: u32,
    pub found: bool,
    pub user_id: Option<i64>,
    /// The TTL after its read extended it; `None` when not found.
    pub ttl_ms: Option<i64>,
}

/// One look at the watched session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionTick {
    /// Since the login, ms.
    pub at_ms: u64,
    /// `login`, `ttl`, `read` (the sliding expiry) or `expired`.
    pub action: &'static str,
    /// PTTL: what Valkey says is left; `None` once the key is gone.
    pub ttl_ms: Option<i64>,
}

/// Both sides' timings of one operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SideBySide {
    pub operation: &'static str,
    /// What Valkey runs for it.
    pub valkey_commands: &'static str,
    /// What the database runs for it.
    pub database_statements: &'static str,
    pub valkey: Option<LatencySummary>,
    pub database: Option<LatencySummary>,
    /// Database p50 / Valkey p50.
    pub speedup: Option<f64>,
}

/// After the sessions' TTL passed: what each side still holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cleanup {
    /// Sessions left to expire (not logged out), on each side.
    pub expected_expired: u64,
    /// Keys of them Valkey still has (it removes expired keys by itself).
    pub valkey_keys_left: u64,
    /// Expired rows still in the table.
    pub database_rows_left: u64,
    /// The cleanup statement a table needs, and what it took.
    pub database_cleanup: &'static str,
    pub database_rows_deleted: u64,
    #[serde(serialize_with = "measure::as_millis", rename = "database_cleanup_ms")]
    pub database_cleanup_took: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRun {
    pub exercise: &'static str,
    pub database: String,
    pub session_ttl_s: u64,
    pub interval_s: f64,
    pub sessions: u64,
    /// `{source prefix}session:{id}` of the watched session.
    pub key: String,
    pub table: &'static str,
    pub timings: Vec<SideBySide>,
    /// What this process read right after the login.
    pub first_process: SessionData,
    /// The second process read the same session.
    pub second_process: Peek,
    pub second_process_agrees: bool,
    /// The second process after the log out (DEL).
    pub after_logout: Peek,
    /// The watched session: login, TTL counting down, a read extending it, expiry.
    pub expiry: Vec<SessionTick>,
    pub expired_after_ms: Option<u64>,
    pub cleanup: Cleanup,
    pub warnings: Vec<String>,
}

/// A run, or the second process's report.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum SessionOutcome {
    Run(Box<SessionRun>),
    Peek(Peek),
}

impl Outcome for SessionOutcome {
    fn verdict(&mut self) -> Verdict {
        let SessionOutcome::Run(run) = self else {
            return Verdict::Complete;
        };
        if !run.second_process_agrees || run.after_logout.found {
            return Verdict::failed(WorkshopError::incomplete(
                "the second process did not see the session as this one left it (see the table); check that nothing else writes these keys",
            ));
        }
        if run.expired_after_ms.is_none() {
            return Verdict::failed(WorkshopError::incomplete(
                "the watched session did not expire; check that nothing else extends it",
            ));
        }
        Verdict::Complete
    }
}

fn validate(options: &SessionOptions) -> Result<()> {
    if options.sessions == 0 || options.sessions > MAX_SESSIONS {
        return Err(WorkshopError::invalid(format!(
            "--sessions must be from 1 to {MAX_SESSIONS} (got {})",
            options.sessions
        )));
    }
    if options.session_ttl == 0 || options.session_ttl > MAX_SESSION_TTL {
        return Err(WorkshopError::invalid(format!(
            "--session-ttl must be from 1 to {MAX_SESSION_TTL} seconds (got {})",
            options.session_ttl
        )));
    }
    if !(options.interval >= 0.1 && options.interval <= 60.0) {
        return Err(WorkshopError::invalid(format!(
            "--interval must be from 0.1 to 60 seconds (got {})",
            options.interval
        )));
    }
    Ok(())
}

pub async fn measure(config: &Config, options: SessionOptions, progress: &dyn RunProgress) -> Result<SessionOutcome> {
    validate(&options)?;
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    if let Some(session_id) = &options.peek {
        let valkey = services::valkey(config).await?;
        let store = Store {
            valkey: &valkey,
            keys: &keys,
            ttl: options.session_ttl,
            env: Vec::new(),
        };
        return Ok(SessionOutcome::Peek(store.peek(session_id).await?));
    }
    progress.phase("connecting", None);
    let (db, database) = services::connect_database(
        config,
        Needs {
            pool_connections: 1,
            valkey: ValkeyNeed::Required,
            recording_as: Some("session"),
        },
    )
    .await?;
    let valkey = services::valkey(config).await?;
    valkey.round_trip().await?;
    db.ensure_sessions_table().await?;
    let mut rng =
        SplitMix64::new(u64::from(std::process::id()) ^ (unix_millis() as u64).rotate_left(20) ^ options.sessions);
    let run_id = i64::try_from(rng.below(i32::MAX as u64) + 1).unwrap_or(1);
    db.record_session_run(run_id).await?;
    let store = Store {
        valkey: &valkey,
        keys: &keys,
        ttl: options.session_ttl,
        env: crate::exercises::stampede::fleet::member_env(config),
    };
    let result = run(&db, &store, &options, run_id, &mut rng, progress).await;

    progress.phase("cleaning up", None);
    // The run's rows and ledger entry, also after a failure part-way; its keys expire by themselves.
    let undone = db
        .undo_changes_of(crate::db::session_store::SESSIONS_TABLE, run_id, 0)
        .await;
    let _ = valkey.delete_prefixed(&keys.session(&format!("{run_id:08x}."))).await;
    progress.finish_phase();
    db.close().await;
    let mut run = result?;
    undone?;
    run.database = database;
    Ok(SessionOutcome::Run(Box::new(run)))
}

async fn run(
    db: &Database,
    store: &Store<'_>,
    options: &SessionOptions,
    run_id: i64,
    rng: &mut SplitMix64,
    progress: &dyn RunProgress,
) -> Result<SessionRun> {
    let ttl_ms = i64::try_from(options.session_ttl * 1000).unwrap_or(i64::MAX);
    let ids: Vec<String> = (0..options.sessions)
        .map(|_| format!("{run_id:08x}.{:016x}", rng.next_u64()))
        .collect();
    let data = |n: usize| format!("{{\"cart\":[],\"theme\":\"dark\",\"n\":{n}}}");
    let user = |n: usize| 1000 + n as i64;

    // Each session in turn: log in, read, and for every second one log out, on
    // both sides; a read comes right after its login, never after the TTL.
    progress.phase("log in, read, log out", Some(options.sessions));
    let (mut valkey_login, mut db_login) = (LatencyRecorder::new(), LatencyRecorder::new());
    let (mut valkey_read, mut db_read) = (LatencyRecorder::new(), LatencyRecorder::new());
    let (mut valkey_logout, mut db_logout) = (LatencyRecorder::new(), LatencyRecorder::new());
    let mut mismatches = 0u64;
    let mut logged_out = 0u64;
    for (n, id) in ids.iter().enumerate() {
        let started = Instant::now();
        store.login(id, user(n), &data(n)).await?;
        valkey_login.record(started.elapsed());
        let started = Instant::now();
        db.insert_session(id, run_id, user(n), &data(n), unix_millis() as i64 + ttl_ms)
            .await?;
        db_login.record(started.elapsed());

        let started = Instant::now();
        let cached = store.read(id).await?;
        valkey_read.record(started.elapsed());
        let started = Instant::now();
        let now = unix_millis() as i64;
        let row = db.read_session_sliding(id, now, now + ttl_ms).await?;
        db_read.record(started.elapsed());
        let expected = Some((user(n), data(n)));
        mismatches += u64::from(cached.map(|s| (s.user_id, s.data)) != expected);
        mismatches += u64::from(row.map(|r| (r.user_id, r.data)) != expected);

        if n % 2 == 0 {
            let started = Instant::now();
            store.logout(id).await?;
            valkey_logout.record(started.elapsed());
            let started = Instant::now();
            db.delete_session(id).await?;
            db_logout.record(started.elapsed());
            logged_out += 1;
        }
        progress.advance(1);
    }
    let timings = vec![
        side_by_side("log in", "HSET + EXPIRE (MULTI)", "INSERT", &valkey_login, &db_login),
        side_by_side(
            "read",
            "HGETALL + EXPIRE (MULTI)",
            "SELECT + UPDATE",
            &valkey_read,
            &db_read,
        ),
        side_by_side("log out", "DEL", "DELETE", &valkey_logout, &db_logout),
    ];

    // One session seen from a second process, then logged out.
    progress.phase("a second process reads the session", None);
    let shared_id = format!("{run_id:08x}.shared");
    store.login(&shared_id, 42, "{\"cart\":[\"FRA-JFK\"]}").await?;
    let first = store.read(&shared_id).await?.ok_or_else(|| {
        WorkshopError::incomplete("the session just logged in was not there when read back; check VALKEY_URL")
    })?;
    let second = second_process::peek(store, &shared_id).await?;
    let agrees = second.found && second.user_id == Some(first.user_id);
    store.logout(&shared_id).await?;
    let after_logout = second_process::peek(store, &shared_id).await?;

    let (expiry, expired_after_ms) = watch_expiry(store, run_id, options, progress).await?;

    // By now every session not logged out is past its TTL on both sides.
    progress.phase("cleanup of expired sessions", None);
    let now = unix_millis() as i64;
    let expected_expired = options.sessions - logged_out;
    let valkey_keys_left = store
        .valkey
        .scan_prefixed(&store.keys.session(&format!("{run_id:08x}.")))
        .await?
        .len() as u64;
    let database_rows_left = db.expired_sessions_left(run_id, now).await?;
    let started = Instant::now();
    let database_rows_deleted = db.delete_expired_sessions(now).await?;
    let database_cleanup_took = started.elapsed();
    progress.finish_phase();

    let mut warnings = Vec::new();
    if mismatches > 0 {
        warnings.push(format!(
            "{mismatches} reads did not return the session as logged in; something else writes these keys or rows"
        ));
    }
    Ok(SessionRun {
        exercise: "session",
        database: String::new(),
        session_ttl_s: options.session_ttl,
        interval_s: options.interval,
        sessions: options.sessions,
        key: store.keys.session(&format!("{run_id:08x}.watched")),
        table: crate::db::session_store::SESSIONS_TABLE,
        timings,
        first_process: first,
        second_process: second,
        second_process_agrees: agrees,
        after_logout,
        expiry,
        expired_after_ms,
        cleanup: Cleanup {
            expected_expired,
            valkey_keys_left,
            database_rows_left,
            database_cleanup: "DELETE FROM workshop_sessions WHERE expires_at_ms <= ?",
            database_rows_deleted,
            database_cleanup_took,
        },
        warnings,
    })
}

/// Logs a session in and looks at its TTL every `--interval` until it is
/// gone; at tick [`SLIDING_READ_TICK`] it reads the session, which sets the
/// TTL back to the full `--session-ttl`. Each look is a progress event.
async fn watch_expiry(
    store: &Store<'_>,
    run_id: i64,
    options: &SessionOptions,
    progress: &dyn RunProgress,
) -> Result<(Vec<SessionTick>, Option<u64>)> {
    progress.phase("watching a session expire", None);
    let id = format!("{run_id:08x}.watched");
    let interval = Duration::from_secs_f64(options.interval);
    let started = Instant::now();
    store.login(&id, 7, "{\"cart\":[]}").await?;
    let mut ticks = Vec::new();
    let record = |action: &'static str, ttl_ms: Option<i64>, ticks: &mut Vec<SessionTick>| {
        let tick = SessionTick {
            at_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            action,
            ttl_ms,
        };
        progress.event(RunEvent::SessionTick(&tick));
        ticks.push(tick);
    };
    record("login", store.ttl_ms(&id).await?, &mut ticks);
    let mut clock = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    for tick in 1..=MAX_TICKS {
        clock.tick().await;
        if tick == SLIDING_READ_TICK && store.read(&id).await?.is_some() {
            record("read", store.ttl_ms(&id).await?, &mut ticks);
            continue;
        }
        match store.ttl_ms(&id).await? {
            Some(ttl) => record("ttl", Some(ttl), &mut ticks),
            None => {
                record("expired", None, &mut ticks);
                let at = ticks.last().map(|t| t.at_ms);
                return Ok((ticks, at));
            }
        }
    }
    Ok((ticks, None))
}

fn side_by_side(
    operation: &'static str,
    valkey_commands: &'static str,
    database_statements: &'static str,
    valkey: &LatencyRecorder,
    database: &LatencyRecorder,
) -> SideBySide {
    let (valkey, database) = (valkey.summary(), database.summary());
    let speedup = match (&database, &valkey) {
        (Some(slow), Some(fast)) => measure::speedup(slow, fast),
        _ => None,
    };
    SideBySide {
        operation,
        valkey_commands,
        database_statements,
        valkey,
        database,
        speedup,
    }
}

/// Sessions as Valkey hashes under `{source prefix}session:{id}`.
struct Store<'a> {
    valkey: &'a Valkey,
    keys: &'a KeyScheme,
    /// Seconds a session lives after its last read.
    ttl: u64,
    /// The second process's configuration: the same database, Valkey and prefix.
    env: Vec<(&'static str, String)>,
}

impl Store<'_> {
    /// Log in: the hash and its expiry in one MULTI (a single key: one slot).
    async fn login(&self, id: &str, user_id: i64, data: &str) -> Result<()> {
        let key = self.keys.session(id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("user_id")
            .arg(user_id)
            .arg("data")
            .arg(data)
            .arg("login_at_ms")
            .arg(unix_millis() as u64)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(self.ttl)
            .ignore();
        self.valkey.query_pipeline::<()>("HSET", &pipe).await?;
        Ok(())
    }

    /// A read with the sliding expiry: HGETALL and EXPIRE in one MULTI.
    async fn read(&self, id: &str) -> Result<Option<SessionData>> {
        let key = self.keys.session(id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HGETALL")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(self.ttl)
            .ignore();
        let (fields,): (HashMap<String, String>,) = self.valkey.query_pipeline("HGETALL", &pipe).await?;
        Ok(session_of(&fields))
    }

    async fn logout(&self, id: &str) -> Result<bool> {
        Ok(self.valkey.delete(&self.keys.session(id)).await?)
    }

    /// PTTL; `None` when the key is gone.
    async fn ttl_ms(&self, id: &str) -> Result<Option<i64>> {
        let ttl: i64 = self
            .valkey
            .query("PTTL", redis::cmd("PTTL").arg(self.keys.session(id)))
            .await?;
        Ok((ttl >= 0).then_some(ttl))
    }

    /// The second process's read: the same sliding read, then the TTL.
    async fn peek(&self, id: &str) -> Result<Peek> {
        let session = self.read(id).await?;
        let ttl_ms = match session {
            Some(_) => self.ttl_ms(id).await?,
            None => None,
        };
        Ok(Peek {
            session_id: id.to_string(),
            pid: std::process::id(),
            found: session.is_some(),
            user_id: session.map(|s| s.user_id),
            ttl_ms,
        })
    }
}

fn session_of(fields: &HashMap<String, String>) -> Option<SessionData> {
    Some(SessionData {
        user_id: fields.get("user_id")?.parse().ok()?,
        data: fields.get("data")?.clone(),
    })
}

/// The second process: a copy of this program, started with `--peek`.
mod second_process {
    use std::process::Stdio;

    use super::{Peek, Store};
    use crate::error::{Result, WorkshopError};

    pub(super) async fn peek(store: &Store<'_>, id: &str) -> Result<Peek> {
        let program = std::env::current_exe().map_err(|e| {
            WorkshopError::Other(anyhow::anyhow!(
                "cannot find this program to start a second process: {e}"
            ))
        })?;
        let output = tokio::process::Command::new(program)
            .args([
                "--json",
                "session",
                "--session-ttl",
                &store.ttl.to_string(),
                "--peek",
                id,
            ])
            .envs(store.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot start the second process: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let reason = stderr
                .lines()
                .last()
                .unwrap_or("no message")
                .trim_start_matches("error: ");
            return Err(WorkshopError::incomplete(format!(
                "the second process failed ({}): {reason}",
                output.status
            )));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| {
            WorkshopError::Other(anyhow::anyhow!(
                "the second process sent a report that does not parse: {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_needs_its_user_and_data() {
        let fields = HashMap::from([
            ("user_id".to_string(), "42".to_string()),
            ("data".to_string(), "{}".to_string()),
        ]);
        assert_eq!(
            session_of(&fields),
            Some(SessionData {
                user_id: 42,
                data: "{}".into()
            })
        );
        assert_eq!(session_of(&HashMap::new()), None);
    }
}
