//! `--processes N`: N copies of this program, started together, burst on the
//! same key at the same moment; their counts add up to the fleet's.
//!
//! Each copy (`stampede --fleet-member`) connects and warms its pools, says
//! [`READY`] on stderr and waits for a line on stdin. When every copy is
//! ready, this process writes "go" to all of them: the bursts start within
//! microseconds of each other, however long each copy took to start. Each copy
//! prints a [`MemberReport`] (JSON) on stdout and exits.
//!
//! A copy that dies by a signal (or is stopped after the time limit) is
//! *lost*: the fleet finishes with the others, names it, and the command
//! exits 8. A copy that exits with an error passes its category (database,
//! Valkey, input) on to this process's exit code.

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::plan::{Plan, DEFAULT_CONCURRENCY};
use super::{burst, connect, ModeChoice, RoundResult, StampedeOptions, POOL_CONNECTIONS};
use crate::config::Config;
use crate::error::{exit, Result, WorkshopError};
use crate::exercises::progress::{RunEvent, RunProgress, Silent};
use crate::exercises::queries::QueryChoice;
use crate::patterns::stampede::{PathCounts, Protection};

/// The line a fleet member writes on stderr once it can start at once.
pub const READY: &str = "workshop-cli stampede: fleet member ready";

/// What one copy tells the process that started it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MemberReport {
    pub mode: Protection,
    pub database_queries: u64,
    pub counts: PathCounts,
    /// Every request's latency, so the fleet's percentiles are exact.
    pub latencies_ns: Vec<u64>,
    /// How many requests got each result (by digest).
    pub digests: BTreeMap<String, u64>,
    pub wall_ms: f64,
    /// When the burst started and ended (Unix milliseconds), so that bursts
    /// of several processes can be shown to overlap.
    #[serde(default)]
    pub started_at_unix_ms: f64,
    #[serde(default)]
    pub finished_at_unix_ms: f64,
    pub warnings: Vec<String>,
}

/// A copy that ended without a report; its requests are not in the counts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LostMember {
    /// 1 to `--processes`.
    pub process: u64,
    pub processes: u64,
    pub pid: Option<u32>,
    /// "killed by signal 9 (SIGKILL)", or "stopped after 130 s without a report".
    pub ended: String,
}

impl LostMember {
    pub fn describe(&self) -> String {
        let pid = self.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        format!(
            "fleet process {} of {}{pid} was {} before it reported",
            self.process, self.processes, self.ended
        )
    }
}

/// A fleet round, added up.
pub(super) struct FleetRound {
    pub result: RoundResult,
    /// In process order; `None` for a copy that was lost.
    pub queries_per_process: Vec<Option<u64>>,
    pub lost: Vec<LostMember>,
    /// From starting the copies until the last one was ready.
    pub start_up: Duration,
    pub warnings: Vec<String>,
}

/// The copy's side: connect, say ready, wait for "go", burst once, report.
pub(super) async fn member(
    config: &Config,
    options: &StampedeOptions,
    progress: &dyn RunProgress,
) -> Result<MemberReport> {
    let ModeChoice::One(protection) = options.mode else {
        return Err(WorkshopError::invalid(
            "--fleet-member runs one of --mode none, single-flight or lock",
        ));
    };
    // The parent gives every size; nothing is timed here.
    let concurrency = options.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    let services = connect(config, options, concurrency.min(POOL_CONNECTIONS), None).await?;
    progress.event(RunEvent::FleetMemberReady);
    wait_for_go().await?;
    let started_at = crate::patterns::stampede::unix_millis();
    let round = burst(&services.cache, protection, concurrency, 0, &Silent, true).await?;
    let report = MemberReport {
        mode: protection,
        database_queries: round.queries,
        counts: round.counts,
        latencies_ns: round.samples,
        digests: round.digests,
        wall_ms: crate::measure::millis(round.wall),
        started_at_unix_ms: started_at,
        finished_at_unix_ms: crate::patterns::stampede::unix_millis(),
        warnings: services.warnings,
    };
    services.db.close().await;
    Ok(report)
}

async fn wait_for_go() -> Result<()> {
    let mut line = String::new();
    let read = BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await
        .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot read the start signal: {e}")))?;
    if read == 0 {
        return Err(WorkshopError::Other(anyhow::anyhow!(
            "the process that started this fleet member went away before the start signal"
        )));
    }
    Ok(())
}

/// One started copy and the tasks reading its output.
struct Member {
    number: u64,
    pid: Option<u32>,
    child: Child,
    ready: Option<oneshot::Receiver<()>>,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<String>>,
}

/// The starting side: `--processes` copies, one burst each, added up.
pub(super) async fn round(
    config: &Config,
    options: &StampedeOptions,
    plan: &Plan,
    protection: Protection,
    progress: &dyn RunProgress,
) -> Result<FleetRound> {
    let program = std::env::current_exe()
        .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot find this program to start copies of it: {e}")))?;
    let count = options.processes;
    let started = Instant::now();
    let mut members = Vec::new();
    for number in 1..=count {
        let mut child = Command::new(&program)
            .args(member_args(config, options, plan, protection))
            .envs(member_env(config))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot start fleet process {number}: {e}")))?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        members.push(Member {
            number,
            pid: child.id(),
            child,
            ready: Some(ready_rx),
            stdout: tokio::spawn(read_all(stdout)),
            stderr: tokio::spawn(read_stderr(stderr, ready_tx)),
        });
    }

    let limit = config.connect_timeout * 3 + Duration::from_secs(20);
    let deadline = tokio::time::Instant::now() + limit;
    let mut lost = Vec::new();
    let mut waiting = Vec::new();
    for mut member in members {
        let Some(ready) = member.ready.take() else {
            continue;
        };
        match tokio::time::timeout_at(deadline, ready).await {
            Ok(Ok(())) => waiting.push(member),
            // stderr ended without "ready": the copy died or failed; say how.
            Ok(Err(_)) => match member.child.wait().await {
                Ok(status) if status.code().is_none() => lost.push(lost_member(&member, count, &status)),
                _ => return Err(failure(member, count).await),
            },
            Err(_) => {
                return Err(WorkshopError::Other(anyhow::anyhow!(
                    "fleet process {} of {count} was not ready within {:.0} s",
                    member.number,
                    limit.as_secs_f64()
                )))
            }
        }
    }
    let mut members = waiting;
    let start_up = started.elapsed();
    // Every copy is waiting: start them together.
    for member in &mut members {
        if let Some(mut stdin) = member.child.stdin.take() {
            let _ = stdin.write_all(b"go\n").await;
        }
    }

    let mut fleet = FleetRound {
        result: RoundResult::default(),
        queries_per_process: vec![None; usize::try_from(count).unwrap_or(0)],
        lost,
        start_up,
        warnings: Vec::new(),
    };
    // Every copy waits at most for the lock, its TTL and its own queries; a
    // copy stuck past that (a stalled database) must not hang the run.
    let run_limit = plan.lock.wait + plan.lock.ttl + config.connect_timeout + Duration::from_secs(120);
    let deadline = tokio::time::Instant::now() + run_limit;
    for mut member in members {
        let status = match tokio::time::timeout_at(deadline, member.child.wait()).await {
            Ok(status) => {
                status.map_err(|e| WorkshopError::Other(anyhow::anyhow!("fleet process {}: {e}", member.number)))?
            }
            Err(_) => {
                let _ = member.child.kill().await;
                fleet.lost.push(LostMember {
                    process: member.number,
                    processes: count,
                    pid: member.pid,
                    ended: format!("stopped after {:.0} s", run_limit.as_secs_f64()),
                });
                continue;
            }
        };
        if status.code().is_none() {
            fleet.lost.push(lost_member(&member, count, &status));
            continue;
        }
        if !status.success() {
            return Err(failure(member, count).await);
        }
        let stdout = member.stdout.await.unwrap_or_default();
        let report: MemberReport = serde_json::from_slice(&stdout).map_err(|e| {
            WorkshopError::Other(anyhow::anyhow!(
                "fleet process {} of {count} sent a report that does not parse: {e}",
                member.number
            ))
        })?;
        progress.advance(plan.requests_for(protection));
        if let Some(slot) = usize::try_from(member.number - 1)
            .ok()
            .and_then(|i| fleet.queries_per_process.get_mut(i))
        {
            *slot = Some(report.database_queries);
        }
        fleet.warnings.extend(report.warnings.iter().cloned());
        fleet.result.merge(member_round(report));
    }
    fleet.lost.sort_by_key(|lost| lost.process);
    Ok(fleet)
}

fn lost_member(member: &Member, count: u64, status: &ExitStatus) -> LostMember {
    LostMember {
        process: member.number,
        processes: count,
        pid: member.pid,
        ended: how_it_ended(status),
    }
}

/// "killed by signal 9 (SIGKILL)" or "exited with code 4".
fn how_it_ended(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                1 => " (SIGHUP)",
                2 => " (SIGINT)",
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return format!("killed by signal {signal}{name}");
        }
    }
    "ended without an exit code".to_string()
}

/// A copy's exit code, as this process's: its database, Valkey, input or
/// configuration failure stays that; anything else is unexpected.
fn relayed_code(code: Option<i32>) -> u8 {
    match code.and_then(|c| u8::try_from(c).ok()) {
        Some(c @ (exit::CONFIG | exit::DATABASE | exit::VALKEY | exit::INPUT)) => c,
        _ => exit::FAILURE,
    }
}

fn member_round(report: MemberReport) -> RoundResult {
    let mut round = RoundResult {
        counts: report.counts,
        queries: report.database_queries,
        digests: report.digests,
        wall: Duration::from_secs_f64(report.wall_ms.max(0.0) / 1000.0),
        ..RoundResult::default()
    };
    for nanos in report.latencies_ns {
        round.latencies.record(Duration::from_nanos(nanos));
    }
    round
}

/// The error for a copy that failed: its last stderr line, with its exit
/// code's category.
async fn failure(mut member: Member, count: u64) -> WorkshopError {
    let status = member.child.wait().await.ok().and_then(|s| s.code());
    let lines = (&mut member.stderr).await.unwrap_or_default();
    let last = lines
        .iter()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim().trim_start_matches("error: ").to_string())
        .unwrap_or_else(|| "no message".to_string());
    let shown = status.map_or_else(|| "a signal".to_string(), |c| c.to_string());
    WorkshopError::Relayed {
        code: relayed_code(status),
        message: format!(
            "fleet process {} of {count} failed (exit {shown}): {last}",
            member.number
        ),
    }
}

async fn read_all(stream: Option<tokio::process::ChildStdout>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut stream) = stream {
        let _ = stream.read_to_end(&mut bytes).await;
    }
    bytes
}

/// Collects stderr lines; the ready line is signalled, not kept.
async fn read_stderr(stream: Option<tokio::process::ChildStderr>, ready: oneshot::Sender<()>) -> Vec<String> {
    let mut kept = Vec::new();
    let Some(stream) = stream else {
        return kept;
    };
    let mut ready = Some(ready);
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line == READY {
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
        } else {
            kept.push(line);
        }
    }
    kept
}

/// The command line of a copy: the same query and lock settings, one mode.
fn member_args(config: &Config, options: &StampedeOptions, plan: &Plan, protection: Protection) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--connect-timeout".into(),
        config.connect_timeout.as_secs_f64().to_string(),
        "stampede".into(),
        "--fleet-member".into(),
        "--mode".into(),
        protection.name().into(),
        "--concurrency".into(),
        plan.requests_for(protection).to_string(),
        "--lock-ttl-ms".into(),
        plan.lock.ttl.as_millis().to_string(),
        "--lock-wait-ms".into(),
        plan.lock.wait.as_millis().to_string(),
    ];
    match &options.query {
        QueryChoice::Builtin { query, id } => {
            args.extend(["--query".into(), query.name().into(), "--id".into(), id.to_string()]);
        }
        QueryChoice::Custom { sql, params } => {
            args.extend(["--sql".into(), sql.clone()]);
            for param in params {
                args.extend(["--param".into(), param.clone()]);
            }
        }
    }
    args
}

/// Services and prefix go by environment, so no password shows in `ps`.
pub(crate) fn member_env(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", config.database.connect_url()),
        ("VALKEY_URL", config.valkey.connect_url()),
        ("WORKSHOP_KEY_PREFIX", config.key_prefix.clone()),
        ("CACHE_TTL", config.ttl.as_secs().to_string()),
        ("CACHE_TTL_JITTER", config.ttl_jitter_percent.to_string()),
        (
            "WORKSHOP_CACHE_TIMEOUT",
            config.valkey.command_timeout.as_millis().to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exercises::queries::BuiltinQuery;

    #[test]
    fn a_member_report_survives_the_trip_through_json() {
        let report = MemberReport {
            mode: Protection::Lock,
            database_queries: 1,
            counts: PathCounts {
                loaded: 1,
                waited: 49,
                ..PathCounts::default()
            },
            latencies_ns: vec![1_000, 2_000_000],
            digests: BTreeMap::from([("abc".to_string(), 50)]),
            wall_ms: 12.5,
            started_at_unix_ms: 1.0,
            finished_at_unix_ms: 13.5,
            warnings: vec![],
        };
        let text = serde_json::to_string(&report).unwrap();
        let back: MemberReport = serde_json::from_str(&text).unwrap();
        let round = member_round(back);
        assert_eq!(round.counts.requests(), 50);
        assert_eq!(round.latencies.count(), 2);
        assert_eq!(round.queries, 1);
    }

    #[test]
    fn a_member_error_keeps_its_category_and_anything_else_is_unexpected() {
        assert_eq!(relayed_code(Some(4)), exit::DATABASE);
        assert_eq!(relayed_code(Some(5)), exit::VALKEY);
        assert_eq!(relayed_code(Some(6)), exit::INPUT);
        assert_eq!(relayed_code(Some(3)), exit::CONFIG);
        assert_eq!(relayed_code(Some(1)), exit::FAILURE);
        assert_eq!(
            relayed_code(Some(101)),
            exit::FAILURE,
            "a panic in the copy's main thread"
        );
        assert_eq!(relayed_code(None), exit::FAILURE);
    }

    #[test]
    fn a_lost_member_is_named_with_its_pid_and_how_it_ended() {
        let lost = LostMember {
            process: 2,
            processes: 3,
            pid: Some(4242),
            ended: "killed by signal 9 (SIGKILL)".into(),
        };
        assert_eq!(
            lost.describe(),
            "fleet process 2 of 3 (pid 4242) was killed by signal 9 (SIGKILL) before it reported"
        );
    }

    #[test]
    fn a_member_gets_the_same_query_and_lock_settings() {
        let options = StampedeOptions {
            query: QueryChoice::Builtin {
                query: BuiltinQuery::BusiestRoutes,
                id: 3797,
            },
            concurrency: Some(25),
            mode: ModeChoice::One(Protection::Lock),
            rounds: 1,
            lock_ttl_ms: Some(5000),
            lock_wait_ms: Some(3000),
            time_budget_s: 30,
            beta: 1.0,
            processes: 2,
            keep_cache: false,
            fleet_member: false,
        };
        let config = crate::config::Config::resolve(&Default::default(), &Default::default()).unwrap();
        let plan = options.plan(Duration::from_millis(4));
        let args = member_args(&config, &options, &plan, Protection::Lock).join(" ");
        assert_eq!(
            args,
            "--connect-timeout 2 stampede --fleet-member --mode lock --concurrency 25 \
             --lock-ttl-ms 5000 --lock-wait-ms 3000 --query busiest-routes --id 3797"
        );
    }
}
