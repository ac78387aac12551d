//! The world a graded program runs in: a database the grader creates, seeds
//! and drops, and a private `valkey-server` it starts and can stop. Both are
//! removed when their guards drop — at the end of the run, on an error, or
//! when Ctrl-C drops the run's future.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::config::{Config, DatabaseKind, DatabaseTarget};
use crate::db::{Database, DbError, PoolSettings};
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::fixtures::{self, NoProgress, SeedOptions, SeedPlan};

/// The grader waits at least this long for its own connections: it times
/// nothing, and a loaded machine (a test suite beside it) can be slow to accept.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn patient(config: &Config) -> Duration {
    config.connect_timeout.max(PATIENCE)
}

/// A database of the grader's own, seeded at `scale`, dropped with the guard.
pub struct GradeDatabase {
    pub name: String,
    /// The graded database (the program's `DATABASE_URL`).
    pub target: DatabaseTarget,
    /// The grader's pool on it: reads to compare, the row changes between runs.
    pub db: Database,
    admin: DatabaseTarget,
    connect_timeout: Duration,
}

impl GradeDatabase {
    pub async fn create(config: &Config, scale: f64, progress: &dyn RunProgress) -> Result<GradeDatabase> {
        let plan = SeedPlan::new(SeedOptions { scale, reset: false })?;
        let admin = config.database.clone();
        let connect_timeout = patient(config);
        let name = unique_name();
        progress.phase(&format!("creating database {name}"), None);
        admin_execute(&admin, connect_timeout, &format!("CREATE DATABASE {name}")).await?;
        let mut guard = PendingDrop {
            admin: Some(admin.clone()),
            name: name.clone(),
            connect_timeout,
        };
        let target = admin.with_database(&name);
        let db = Database::connect(
            &target,
            PoolSettings {
                max_connections: 4,
                connect_timeout,
            },
        )
        .await?;
        progress.phase(&format!("seeding {name} (scale {scale})"), None);
        fixtures::seed(&db, &plan, &NoProgress).await?;
        progress.finish_phase();
        guard.admin = None;
        Ok(GradeDatabase {
            name,
            target,
            db,
            admin,
            connect_timeout,
        })
    }

    pub fn kind(&self) -> DatabaseKind {
        self.target.kind
    }

    /// The connection settings a program under grading gets, in both styles.
    pub fn program_env(&self) -> BTreeMap<&'static str, String> {
        let (host, port) = self.target.address();
        BTreeMap::from([
            ("DATABASE_URL", self.target.connect_url()),
            (
                "DB_ENGINE",
                match self.kind() {
                    DatabaseKind::MySql => "mysql".to_string(),
                    DatabaseKind::Postgres => "postgresql".to_string(),
                },
            ),
            ("DB_HOST", host),
            ("DB_PORT", port.to_string()),
            ("DB_USER", self.target.user()),
            ("DB_PASSWORD", self.target.password().unwrap_or_default()),
            ("DB_NAME", self.name.clone()),
        ])
    }
}

impl Drop for GradeDatabase {
    fn drop(&mut self) {
        drop_database(&self.admin, &self.name, self.connect_timeout);
    }
}

/// Drops the database if creating it succeeded but seeding did not.
struct PendingDrop {
    admin: Option<DatabaseTarget>,
    name: String,
    connect_timeout: Duration,
}

impl Drop for PendingDrop {
    fn drop(&mut self) {
        if let Some(admin) = &self.admin {
            drop_database(admin, &self.name, self.connect_timeout);
        }
    }
}

/// `workshop_grade_{pid}_{n}`: generated, so it is safe as an identifier.
fn unique_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 1_000_000)
        .unwrap_or(0);
    format!(
        "workshop_grade_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

async fn admin_execute(admin: &DatabaseTarget, connect_timeout: Duration, statement: &str) -> Result<(), DbError> {
    let db = Database::connect(
        admin,
        PoolSettings {
            max_connections: 1,
            connect_timeout,
        },
    )
    .await?;
    let result = match (db.mysql(), db.postgres()) {
        (Some(pool), _) => sqlx::raw_sql(statement).execute(pool).await.map(drop),
        (_, Some(pool)) => sqlx::raw_sql(statement).execute(pool).await.map(drop),
        _ => Ok(()),
    };
    db.close().await;
    result.map_err(|e| db.query_error(e))
}

/// Runs on a thread with its own runtime: a drop may happen inside or outside one.
fn drop_database(admin: &DatabaseTarget, name: &str, connect_timeout: Duration) {
    let statement = match admin.kind {
        DatabaseKind::MySql => format!("DROP DATABASE IF EXISTS {name}"),
        DatabaseKind::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    };
    let admin = admin.clone();
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // A busy server may refuse a connection once; a database left behind costs more than a retry.
        for _ in 0..3 {
            if runtime
                .block_on(admin_execute(&admin, connect_timeout, &statement))
                .is_ok()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok::<(), std::io::Error>(())
    })
    .join();
}

pub use crate::cache::private::PrivateValkey;

/// The graded program's environment: both connection styles, the TTL, and
/// the exercise's own inputs. Workshop variables of the grader's own
/// environment (e.g. a `WORKSHOP_KEY_PREFIX`) are not passed on.
pub fn program_command(
    command: &[String],
    db: &GradeDatabase,
    valkey: &PrivateValkey,
    ttl: Duration,
    inputs: &[(&str, String)],
) -> tokio::process::Command {
    let mut child = tokio::process::Command::new(&command[0]);
    child.args(&command[1..]);
    for var in [
        "WORKSHOP_KEY_PREFIX",
        "WORKSHOP_QUERY_TIMEOUT",
        "WORKSHOP_CACHE_TIMEOUT",
    ] {
        child.env_remove(var);
    }
    child
        .envs(db.program_env())
        .envs(valkey.program_env())
        .env("CACHE_TTL", ttl.as_secs().max(1).to_string());
    for (name, value) in inputs {
        child.env(name, value);
    }
    child.stdin(Stdio::null()).kill_on_drop(true);
    child
}

/// What one run of a program left.
pub struct ProgramRun {
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
    pub timed_out: bool,
}

/// Runs the program to its end, or kills it after `limit`.
pub async fn run_program(mut command: tokio::process::Command, limit: Duration) -> Result<ProgramRun> {
    let started = Instant::now();
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            WorkshopError::invalid(format!(
                "cannot start the program to grade: {e}; check the command after `--`"
            ))
        })?;
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(output)) => Ok(ProgramRun {
            exit_code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            duration: started.elapsed(),
            timed_out: false,
        }),
        Ok(Err(e)) => Err(WorkshopError::Other(anyhow::anyhow!(
            "waiting for the graded program: {e}"
        ))),
        // The child was moved into the timed-out future; dropping it kills it (kill_on_drop).
        Err(_) => Ok(ProgramRun {
            exit_code: None,
            stdout: String::new(),
            stderr: format!("killed after {} s (--timeout)", limit.as_secs()),
            duration: started.elapsed(),
            timed_out: true,
        }),
    }
}
