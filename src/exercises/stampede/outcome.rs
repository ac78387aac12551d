//! The serialisable outcome of `stampede`: what the report renders and
//! `--json` prints, and its verdict.

use std::time::Duration;

use super::fleet;
use super::plan::Plan;
use crate::cache::CompareAndDelete;
use crate::error::WorkshopError;
use crate::exercises::cache_aside::QueryDescription;
use crate::exercises::services::ConnectionSetup;
use crate::exercises::{Outcome, Verdict};
use crate::measure::{self, LatencySummary};
use crate::patterns::stampede::{LockSettings, PathCounts, Protection, StampedeKeys};

/// Everything a run measured; the report renders it, `--json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StampedeOutcome {
    pub exercise: &'static str,
    pub database: String,
    pub query: QueryDescription,
    pub keys: StampedeKeys,
    pub ttl_seconds: u64,
    pub concurrency: u64,
    pub rounds: u64,
    pub processes: u64,
    pub keep_cache: bool,
    /// Database connections of each process that runs the requests.
    pub pool_connections: u64,
    /// The timed cold load, the time budget and what was adapted to it.
    pub plan: Plan,
    pub lock: LockReport,
    pub setup: Setup,
    /// A direct read after the run, which every request's rows are compared with.
    pub reference: Reference,
    /// One cold key, `concurrency` requests at once: one entry per mode.
    pub modes: Vec<ModeOutcome>,
    /// A hot key expiring under steady traffic: none vs XFetch.
    pub expiry: Option<ExpiryOutcome>,
    /// Why the expiry scenario did not run, when it was asked for.
    pub expiry_skipped: Option<String>,
    pub warnings: Vec<String>,
    /// Why the comparison is incomplete (the command exits 8), if it is.
    pub incomplete: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LockReport {
    #[serde(flatten)]
    pub settings: LockSettings,
    /// How a holder releases the lock; `None` when no lock could be used.
    pub release: Option<CompareAndDelete>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Setup {
    #[serde(flatten)]
    pub connection: ConnectionSetup,
    /// Setting up the locks on the Valkey connection: asking whether the server has DELIFEQ.
    #[serde(serialize_with = "measure::as_optional_millis", rename = "lock_connection_ms")]
    pub lock_connection: Option<Duration>,
    /// With `--processes`: the slowest start of the copies (start, connect, warm up).
    #[serde(serialize_with = "measure::as_optional_millis", rename = "fleet_start_ms")]
    pub fleet_start: Option<Duration>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Reference {
    pub rows: usize,
    pub digest: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModeOutcome {
    pub mode: Protection,
    pub requests: u64,
    /// Queries the database ran, counted in the loader.
    pub database_queries: u64,
    pub cache_hits: u64,
    /// Requests that got another request's load (single-flight followers, lock waiters).
    pub waited: u64,
    /// Lock mode: requests that queried the database themselves (wait ran out, or no lock).
    pub fell_back: u64,
    /// Expiry scenario: requests that found no entry and ran the query.
    pub misses: u64,
    /// Every way a request got its rows, and the lock's details.
    pub counts: PathCounts,
    pub queries_per_round: Vec<u64>,
    /// With `--processes`: the queries of each copy, all rounds together
    /// (`null` for a copy that was lost before it reported).
    pub queries_per_process: Option<Vec<Option<u64>>>,
    /// With `--processes`: copies that ended without a report (killed, or stopped
    /// after the time limit); their requests are not in the counts.
    pub lost_processes: Vec<fleet::LostMember>,
    pub latency: Option<LatencySummary>,
    #[serde(serialize_with = "measure::as_millis", rename = "wall_time_ms")]
    pub wall_time: Duration,
    /// Different results among the requests (1 when every request got the same rows).
    pub distinct_results: usize,
    /// Requests whose rows differ from the direct read after the run.
    pub mismatched_requests: u64,
    pub consistent: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExpiryOutcome {
    pub tasks: u64,
    #[serde(serialize_with = "measure::as_millis", rename = "pace_ms")]
    pub pace: Duration,
    pub beta: f64,
    /// One query, timed before the scenario: XFetch's delta and the timing below come from it.
    #[serde(serialize_with = "measure::as_millis", rename = "query_ms")]
    pub query: Duration,
    #[serde(flatten)]
    pub timing: ExpiryTiming,
    pub modes: Vec<ModeOutcome>,
}

/// When the pre-filled entry expires and how long the traffic runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ExpiryTiming {
    /// Whole seconds: Valkey's `EX` and XFetch's expiry agree.
    #[serde(serialize_with = "measure::as_millis", rename = "expire_after_ms")]
    pub expire_after: Duration,
    #[serde(serialize_with = "measure::as_millis", rename = "window_ms")]
    pub window: Duration,
}

/// What one `stampede` invocation returns: the modes compared, or (inside
/// a `--processes` fleet) one copy's report for its parent.
#[derive(Debug, Clone)]
pub enum StampedeRun {
    Compared(Box<StampedeOutcome>),
    FleetMember(Box<fleet::MemberReport>),
}

impl Outcome for StampedeRun {
    fn verdict(&mut self) -> Verdict {
        match self {
            StampedeRun::Compared(outcome) => match &outcome.incomplete {
                Some(reason) => Verdict::failed(WorkshopError::incomplete(reason.clone())),
                None => Verdict::Complete,
            },
            StampedeRun::FleetMember(_) => Verdict::Complete,
        }
    }
}
