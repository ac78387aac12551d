//! Exercise 6, `workshop-cli stampede`: many concurrent requests for one cold
//! key, without protection, with an in-process single flight and with a
//! Valkey lock; then a hot key expiring under steady traffic, without
//! protection and with XFetch. Counts every database query exactly.

pub mod fleet;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::task::{JoinError, JoinSet};

use crate::cache::{CompareAndDelete, KeyScheme};
use crate::config::Config;
use crate::db::{Database, ResultSet, Statement};
use crate::error::{Result, WorkshopError};
use crate::exercises::cache_aside::QueryDescription;
use crate::exercises::progress::{relay, RunProgress, StepCounter};
use crate::exercises::queries::QueryChoice;
use crate::exercises::services::{self, ConnectionSetup, Needs, ValkeyNeed};
use crate::exercises::{Outcome, Verdict};
use crate::measure::{self, LatencyRecorder, LatencySummary};
use crate::patterns::stampede::{
    request_rng, uniform, CountedLoader, LockSettings, PathCounts, PrefillError, Protection, Served, StampedeCache,
    StampedeKeys, ValkeyLocks,
};
use plan::{Plan, Requested};

pub const MAX_CONCURRENCY: u64 = 10_000;
pub const MAX_ROUNDS: u64 = 1_000;
pub const MAX_PROCESSES: u64 = 8;
const MIN_LOCK_TTL_MS: u64 = 10;
const MAX_LOCK_MS: u64 = 600_000;
const MAX_BETA: f64 = 10.0;
const MAX_TIME_BUDGET_S: u64 = 3_600;
/// Database connections per process. Requests beyond this queue for one,
/// as they would in an application server (and PostgreSQL allows 100 in all).
pub const POOL_CONNECTIONS: u64 = 10;
/// Lock waiters look at the cache after 2 ms, then 4, 8, 16, 25, 25, ... (with jitter).
const FIRST_POLL: Duration = Duration::from_millis(2);
const MAX_POLL: Duration = Duration::from_millis(25);
/// Expiry scenario: each task sends a request about this often.
pub const PACE: Duration = Duration::from_millis(20);
/// The expiry scenario's entry lives at least this long, and at most the maximum.
const MIN_EXPIRE_AFTER_MS: f64 = 1_000.0;
const MAX_EXPIRE_AFTER_MS: f64 = 30_000.0;

/// Which modes a run compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    One(Protection),
    /// The three cold-key modes, then the expiry scenario with XFetch.
    All,
}

#[derive(Debug, Clone)]
pub struct StampedeOptions {
    pub query: QueryChoice,
    /// `None`: [`plan::DEFAULT_CONCURRENCY`], the unprotected mode adapted to the time budget.
    pub concurrency: Option<u64>,
    pub mode: ModeChoice,
    pub rounds: u64,
    /// `None`: derived from one timed load (see [`plan::lock_timing`]).
    pub lock_ttl_ms: Option<u64>,
    /// `None`: the lock's TTL plus the next holder's load (see [`plan::lock_timing`]).
    pub lock_wait_ms: Option<u64>,
    /// Seconds the run's queries should take at most with the default sizes.
    pub time_budget_s: u64,
    pub beta: f64,
    pub processes: u64,
    /// Do not make the key cold before the round (several processes share it).
    pub keep_cache: bool,
    /// This process is one of `--processes` copies: wait for "go" on stdin,
    /// run one round, print a [`fleet::MemberReport`].
    pub fleet_member: bool,
}

impl StampedeOptions {
    /// The cold-key modes this run compares, in order.
    fn burst_modes(&self) -> Vec<Protection> {
        match self.mode {
            ModeChoice::All => vec![Protection::None, Protection::SingleFlight, Protection::Lock],
            ModeChoice::One(Protection::Xfetch) => vec![],
            ModeChoice::One(protection) => vec![protection],
        }
    }

    fn runs_expiry_scenario(&self) -> bool {
        matches!(self.mode, ModeChoice::All | ModeChoice::One(Protection::Xfetch))
    }

    /// What the run asks for, before one load is timed.
    fn requested(&self) -> Requested {
        let modes = self.burst_modes();
        Requested {
            concurrency: self.concurrency,
            lock_ttl: self.lock_ttl_ms.map(Duration::from_millis),
            lock_wait: self.lock_wait_ms.map(Duration::from_millis),
            time_budget: Duration::from_secs(self.time_budget_s),
            rounds: self.rounds,
            processes: self.processes,
            unprotected: modes.contains(&Protection::None),
            single_flight: modes.contains(&Protection::SingleFlight),
            lock: modes.contains(&Protection::Lock),
            expiry: self.runs_expiry_scenario() && self.processes == 1,
            expiry_by_name: self.mode == ModeChoice::One(Protection::Xfetch),
        }
    }

    /// The sizes for a load that took `cold_load` (zero: not timed, as in a
    /// fleet member, which gets every size from its parent).
    fn plan(&self, cold_load: Duration) -> Plan {
        let tasks = self.concurrency.unwrap_or(plan::DEFAULT_CONCURRENCY);
        let window = expiry_timing(cold_load, self.beta, tasks).window;
        plan::plan(&self.requested(), cold_load, window, FIRST_POLL, MAX_POLL)
    }
}

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

/// The expiry scenario's timing. XFetch's first early refresh comes about
/// `delta * beta * ln(rate * delta * beta)` before expiry (rate: requests per
/// ms); the entry lives well past that, and the traffic goes on a little after
/// expiry, so the unprotected run meets the expiry with everyone still asking.
pub fn expiry_timing(query: Duration, beta: f64, tasks: u64) -> ExpiryTiming {
    let delta_ms = (query.as_secs_f64() * 1000.0).max(0.1);
    let rate = tasks as f64 / (PACE.as_secs_f64() * 1000.0);
    let scale = delta_ms * beta;
    let lead = scale * (rate * scale).max(1.0).ln();
    let expire_after_ms = (lead + 5.0 * scale + 200.0).clamp(MIN_EXPIRE_AFTER_MS, MAX_EXPIRE_AFTER_MS);
    let expire_after = Duration::from_secs((expire_after_ms / 1000.0).ceil() as u64);
    let window = expire_after + Duration::from_secs_f64((3.0 * delta_ms + 500.0) / 1000.0);
    ExpiryTiming { expire_after, window }
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

pub async fn measure(config: &Config, options: StampedeOptions, progress: &dyn RunProgress) -> Result<StampedeRun> {
    validate(&options)?;
    if options.fleet_member {
        return Ok(StampedeRun::FleetMember(Box::new(
            fleet::member(config, &options, progress).await?,
        )));
    }
    Ok(StampedeRun::Compared(Box::new(
        measure_run(config, &options, progress).await?,
    )))
}

fn validate(options: &StampedeOptions) -> Result<()> {
    let range = |flag: &str, value: u64, low: u64, high: u64| -> Result<()> {
        if (low..=high).contains(&value) {
            Ok(())
        } else {
            Err(WorkshopError::invalid(format!(
                "{flag} must be from {low} to {high} (got {value})"
            )))
        }
    };
    if let Some(concurrency) = options.concurrency {
        range("--concurrency", concurrency, 1, MAX_CONCURRENCY)?;
    }
    range("--rounds", options.rounds, 1, MAX_ROUNDS)?;
    range("--processes", options.processes, 1, MAX_PROCESSES)?;
    if let Some(ttl) = options.lock_ttl_ms {
        range("--lock-ttl-ms", ttl, MIN_LOCK_TTL_MS, MAX_LOCK_MS)?;
    }
    if let Some(wait) = options.lock_wait_ms {
        range("--lock-wait-ms", wait, 0, MAX_LOCK_MS)?;
    }
    range("--time-budget", options.time_budget_s, 1, MAX_TIME_BUDGET_S)?;
    if !(options.beta.is_finite() && options.beta > 0.0 && options.beta <= MAX_BETA) {
        return Err(WorkshopError::invalid(format!(
            "--beta must be above 0 and at most {MAX_BETA} (got {}); 1 is XFetch's usual value",
            options.beta
        )));
    }
    if options.processes > 1 && options.mode == ModeChoice::One(Protection::Xfetch) {
        return Err(WorkshopError::invalid(
            "--mode xfetch runs in one process; drop --processes or choose another --mode",
        ));
    }
    if options.keep_cache && options.mode == ModeChoice::All {
        return Err(WorkshopError::invalid(
            "--keep-cache needs one --mode (with all, the first mode would warm the key for the others)",
        ));
    }
    if options.keep_cache && options.rounds > 1 {
        return Err(WorkshopError::invalid(
            "--keep-cache runs one round (later rounds would start warm); drop --rounds or --keep-cache",
        ));
    }
    if options.fleet_member && !matches!(options.mode, ModeChoice::One(p) if p != Protection::Xfetch) {
        return Err(WorkshopError::invalid(
            "--fleet-member runs one of --mode none, single-flight or lock",
        ));
    }
    options.query.validate()
}

/// The connected services of one process, ready for the first request.
struct Services {
    db: Database,
    database: String,
    query: QueryDescription,
    statement: Statement,
    cache: Arc<StampedeCache>,
    setup: Setup,
    /// The sizes of this run: from one timed load, or as given (a fleet member).
    plan: Plan,
    warnings: Vec<String>,
}

/// Connects and warms up. With `cold_load`, times one load of the query
/// first (showing it on that progress bar) and sizes the run from it.
async fn connect(
    config: &Config,
    options: &StampedeOptions,
    connections: u64,
    cold_load: Option<&dyn RunProgress>,
) -> Result<Services> {
    let mut services = services::connect(
        config,
        Needs {
            pool_connections: connections,
            valkey: ValkeyNeed::Optional,
            recording_as: None,
        },
    )
    .await?;
    let db = services.db.clone();
    let (name, query) = options.query.build(db.kind())?;
    let statement = query.to_statement(db.kind())?;
    let scheme = KeyScheme::new(&config.key_prefix, &config.database);
    let value = scheme.query(&query);
    let keys = StampedeKeys {
        lock: scheme.lock_for(&value),
        xfetch: scheme.xfetch_for(&value),
        value,
    };

    let mut warnings = Vec::new();
    if let Some(error) = &services.valkey_error {
        warnings.push(format!(
            "{error}; every request goes to the database and the lock mode cannot take locks"
        ));
    }
    let valkey = services.valkey.clone();
    let mut lock_connection = None;
    let locks = match &valkey {
        Some(valkey) => {
            let started = Instant::now();
            let locks = ValkeyLocks::new(valkey.clone()).await;
            lock_connection = Some(started.elapsed());
            Some(locks)
        }
        None => None,
    };

    // Pools warm before the first request; connection set-up is reported apart.
    services.warm_up(connections).await?;

    let setup = Setup {
        connection: services.setup.clone(),
        lock_connection,
        fleet_start: None,
    };
    let loader = CountedLoader::new(db.clone(), statement.clone(), usize::try_from(connections).unwrap_or(1));
    let plan = match cold_load {
        Some(progress) => {
            progress.phase("timing one cold load of the query", None);
            let (_, took) = loader.load().await?;
            // Set-up, not part of any mode.
            loader.take_queries();
            options.plan(took)
        }
        None => options.plan(Duration::ZERO),
    };
    let cache = StampedeCache::new(
        loader,
        valkey,
        locks,
        keys,
        config.ttl_policy(),
        plan.lock,
        options.beta,
    );
    Ok(Services {
        db,
        database: services.database.clone(),
        query: QueryDescription {
            name,
            sql: query.sql.clone(),
            params: query.params.clone(),
            statement: statement.sql.clone(),
        },
        statement,
        cache: Arc::new(cache),
        setup,
        plan,
        warnings,
    })
}

/// A finished task's result. A panic is a bug in this program, never a
/// database or Valkey failure: exit 1, naming the task that panicked.
fn task_result<T, E: Into<WorkshopError>>(
    joined: std::result::Result<std::result::Result<T, E>, JoinError>,
    task: &str,
) -> Result<T> {
    match joined {
        Ok(result) => result.map_err(Into::into),
        Err(error) if error.is_panic() => {
            let payload = error.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            Err(WorkshopError::Other(anyhow::anyhow!(
                "{task} panicked ({message}); this is a bug in workshop-cli, please report it"
            )))
        }
        Err(_) => Err(WorkshopError::Other(anyhow::anyhow!("{task} was cancelled"))),
    }
}

/// A short digest of a result, to tell whether two requests got the same rows.
pub fn rows_digest(rows: &ResultSet) -> String {
    let text = serde_json::to_vec(rows).unwrap_or_default();
    Sha256::digest(&text)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the requests of one round (or several, merged) did.
#[derive(Debug, Default)]
struct RoundResult {
    counts: PathCounts,
    queries: u64,
    latencies: LatencyRecorder,
    /// Every latency in nanoseconds, kept only by a fleet member for its parent.
    samples: Vec<u64>,
    digests: BTreeMap<String, u64>,
    wall: Duration,
}

impl RoundResult {
    fn add(&mut self, served: &Served, keep_sample: bool) {
        self.counts.add(served);
        self.latencies.record(served.latency);
        if keep_sample {
            self.samples
                .push(u64::try_from(served.latency.as_nanos()).unwrap_or(u64::MAX));
        }
        *self.digests.entry(rows_digest(&served.rows)).or_default() += 1;
    }

    fn merge(&mut self, other: RoundResult) {
        self.counts.merge(&other.counts);
        self.queries += other.queries;
        self.latencies.merge(&other.latencies);
        self.samples.extend(other.samples);
        for (digest, n) in other.digests {
            *self.digests.entry(digest).or_default() += n;
        }
        self.wall = self.wall.max(other.wall);
    }
}

/// `concurrency` requests for the key, all released at the same moment.
async fn burst(
    cache: &Arc<StampedeCache>,
    protection: Protection,
    concurrency: u64,
    first_request: u64,
    progress: &dyn RunProgress,
    keep_samples: bool,
) -> Result<RoundResult> {
    let done = StepCounter::default();
    cache.loader.take_queries();
    let gate = Arc::new(tokio::sync::Barrier::new(usize::try_from(concurrency).unwrap_or(1)));
    let started = Instant::now();
    let mut requests = JoinSet::new();
    let mut numbers = HashMap::new();
    for request in first_request..first_request + concurrency {
        let cache = Arc::clone(cache);
        let gate = Arc::clone(&gate);
        let done = done.clone();
        let task = requests.spawn(async move {
            gate.wait().await;
            let served = cache.request(protection, request).await;
            done.add(1);
            served
        });
        numbers.insert(task.id(), request);
    }
    let mut round = relay(progress, &done, async {
        let mut round = RoundResult::default();
        while let Some(joined) = requests.join_next_with_id().await {
            let id = match &joined {
                Ok((id, _)) => *id,
                Err(error) => error.id(),
            };
            let task = format!(
                "the task of request {} ({})",
                numbers.get(&id).copied().unwrap_or_default(),
                protection.label()
            );
            let served = task_result(joined.map(|(_, served)| served), &task)?;
            round.add(&served, keep_samples);
        }
        Ok::<_, WorkshopError>(round)
    })
    .await?;
    round.wall = started.elapsed();
    round.queries = cache.loader.take_queries();
    Ok(round)
}

/// `tasks` tasks sending a request every [`PACE`] (with jitter) until the
/// window ends, on a key pre-filled to expire part-way through.
async fn steady_traffic(
    cache: &Arc<StampedeCache>,
    protection: Protection,
    tasks: u64,
    timing: ExpiryTiming,
    progress: &dyn RunProgress,
) -> Result<RoundResult> {
    let done = StepCounter::default();
    cache.make_cold().await?;
    cache
        .prefill(protection, timing.expire_after)
        .await
        .map_err(|e| match e {
            PrefillError::Database(e) => WorkshopError::from(e),
            PrefillError::Cache(e) => WorkshopError::from(e),
            PrefillError::NoCache => {
                WorkshopError::incomplete("the expiry scenario needs Valkey, which is not connected")
            }
        })?;
    // The pre-fill is set-up, not part of the round.
    cache.loader.take_queries();
    let started = Instant::now();
    let deadline = started + timing.window;
    let next_request = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for task in 0..tasks {
        let cache = Arc::clone(cache);
        let next_request = Arc::clone(&next_request);
        let done = done.clone();
        workers.spawn(async move {
            let mut rng = request_rng(task);
            let mut mine = RoundResult::default();
            // Spread the first requests over one pace, so the traffic is steady.
            tokio::time::sleep(PACE.mul_f64(uniform(&mut rng))).await;
            while Instant::now() < deadline {
                let request = next_request.fetch_add(1, Ordering::Relaxed);
                let served = cache.request(protection, request).await?;
                mine.add(&served, false);
                tokio::time::sleep(PACE.mul_f64(0.5 + uniform(&mut rng))).await;
            }
            done.add(1);
            Ok::<_, WorkshopError>(mine)
        });
    }
    let mut round = relay(progress, &done, async {
        let mut round = RoundResult::default();
        while let Some(joined) = workers.join_next().await {
            round.merge(task_result(
                joined,
                &format!("a task of the expiry scenario ({})", protection.label()),
            )?);
        }
        Ok::<_, WorkshopError>(round)
    })
    .await?;
    round.wall = started.elapsed();
    round.queries = cache.loader.take_queries();
    Ok(round)
}

/// One mode's rounds added up.
struct ModeTally {
    protection: Protection,
    total: RoundResult,
    queries_per_round: Vec<u64>,
    queries_per_process: Option<Vec<Option<u64>>>,
    lost_processes: Vec<fleet::LostMember>,
    wall: Duration,
}

impl ModeTally {
    fn new(protection: Protection) -> Self {
        ModeTally {
            protection,
            total: RoundResult::default(),
            queries_per_round: Vec::new(),
            queries_per_process: None,
            lost_processes: Vec::new(),
            wall: Duration::ZERO,
        }
    }

    fn add_round(&mut self, round: RoundResult) {
        self.queries_per_round.push(round.queries);
        self.wall += round.wall;
        self.total.merge(round);
    }

    /// A fleet round: its per-process queries (a copy lost in any round has
    /// no total), its lost copies, then its counts.
    fn add_fleet_round(&mut self, round: fleet::FleetRound) {
        let per_process = self
            .queries_per_process
            .get_or_insert_with(|| vec![Some(0); round.queries_per_process.len()]);
        for (sum, n) in per_process.iter_mut().zip(&round.queries_per_process) {
            *sum = sum.zip(*n).map(|(a, b)| a + b);
        }
        self.lost_processes.extend(round.lost);
        self.add_round(round.result);
    }

    fn outcome(self, reference: &str) -> ModeOutcome {
        let counts = self.total.counts;
        let matching = self.total.digests.get(reference).copied().unwrap_or(0);
        let requests = counts.requests();
        ModeOutcome {
            mode: self.protection,
            requests,
            database_queries: self.total.queries,
            cache_hits: counts.hits,
            waited: counts.waited,
            fell_back: counts.fell_back(),
            misses: counts.loaded,
            counts,
            queries_per_round: self.queries_per_round,
            queries_per_process: self.queries_per_process,
            lost_processes: self.lost_processes,
            latency: self.total.latencies.summary(),
            wall_time: self.wall,
            distinct_results: self.total.digests.len(),
            mismatched_requests: requests - matching,
            consistent: matching == requests,
        }
    }
}

async fn measure_run(
    config: &Config,
    options: &StampedeOptions,
    progress: &dyn RunProgress,
) -> Result<StampedeOutcome> {
    let in_fleet = options.processes > 1;
    // With --processes the copies query; this process only times one load,
    // resets the key and reads the reference.
    let connections = if in_fleet {
        2
    } else {
        options
            .concurrency
            .unwrap_or(plan::DEFAULT_CONCURRENCY)
            .min(POOL_CONNECTIONS)
    };
    // Shown at once: a slow database or query must not leave the terminal blank.
    progress.phase("connecting", None);
    let connected = connect(config, options, connections, Some(progress)).await;
    progress.finish_phase();
    let mut services = connected?;
    let cache = Arc::clone(&services.cache);
    let plan = services.plan.clone();
    let mut warnings = std::mem::take(&mut services.warnings);

    let mut tallies = Vec::new();
    let mut fleet_start: Option<Duration> = None;
    let mut next_request = 0;
    for protection in options.burst_modes() {
        let mut tally = ModeTally::new(protection);
        let requests = plan.requests_for(protection);
        let total = requests * options.rounds * options.processes;
        progress.counted_phase(protection.label(), total, "requests");
        for _ in 0..options.rounds {
            if !options.keep_cache {
                if let Err(error) = cache.make_cold().await {
                    warnings.push(format!(
                        "could not delete the cached entry before a {} round ({error}); it may have started warm",
                        protection.label()
                    ));
                }
            }
            if in_fleet {
                let round = fleet::round(config, options, &plan, protection, progress).await?;
                fleet_start = fleet_start.max(Some(round.start_up));
                for warning in &round.warnings {
                    if !warnings.contains(warning) {
                        warnings.push(warning.clone());
                    }
                }
                tally.add_fleet_round(round);
            } else {
                let round = burst(&cache, protection, requests, next_request, progress, false).await?;
                next_request += requests;
                tally.add_round(round);
            }
        }
        progress.finish_phase();
        tallies.push(tally);
    }

    let mut expiry_skipped = None;
    let mut expiry = None;
    if options.runs_expiry_scenario() {
        if in_fleet {
            expiry_skipped = Some("XFetch runs in one process: run --mode xfetch without --processes".to_string());
        } else if cache.valkey.is_none() {
            expiry_skipped = Some("the expiry scenario needs Valkey, which did not answer".to_string());
        } else if let Some(reason) = &plan.expiry_skipped {
            expiry_skipped = Some(reason.clone());
        } else {
            expiry = Some(expiry_scenario(&cache, options, &plan, progress).await?);
        }
    }

    // The reference: a direct read now, outside the counted loader.
    let reference_rows = services.db.fetch(&services.statement).await?;
    let reference = Reference {
        rows: reference_rows.rows.len(),
        digest: rows_digest(&reference_rows),
    };
    let modes: Vec<ModeOutcome> = tallies.into_iter().map(|t| t.outcome(&reference.digest)).collect();
    let expiry = expiry.map(|(query, timing, tallies)| ExpiryOutcome {
        tasks: plan.concurrency,
        pace: PACE,
        beta: options.beta,
        query,
        timing,
        modes: tallies.into_iter().map(|t| t.outcome(&reference.digest)).collect(),
    });

    warnings.extend(mode_warnings(&modes, &plan.lock));
    if let Some(expiry) = &expiry {
        warnings.extend(mode_warnings(&expiry.modes, &plan.lock));
    }
    let incomplete = incomplete_reason(&modes, cache.valkey.is_some(), cache.locks.is_some());
    let release = cache.locks.as_ref().map(ValkeyLocks::release_command);
    services.setup.fleet_start = fleet_start;
    services.db.close().await;
    Ok(StampedeOutcome {
        exercise: "stampede",
        database: services.database,
        query: services.query,
        keys: cache.keys.clone(),
        ttl_seconds: config.ttl.as_secs(),
        concurrency: plan.concurrency,
        rounds: options.rounds,
        processes: options.processes,
        keep_cache: options.keep_cache,
        pool_connections: plan.concurrency.min(POOL_CONNECTIONS),
        lock: LockReport {
            settings: plan.lock,
            release,
        },
        plan,
        setup: services.setup,
        reference,
        modes,
        expiry,
        expiry_skipped,
        warnings,
        incomplete,
    })
}

type ExpiryRun = (Duration, ExpiryTiming, Vec<ModeTally>);

async fn expiry_scenario(
    cache: &Arc<StampedeCache>,
    options: &StampedeOptions,
    plan: &Plan,
    progress: &dyn RunProgress,
) -> Result<ExpiryRun> {
    // One timed query decides how long the entry lives (see `expiry_timing`).
    let (_, query) = cache.loader.load().await?;
    cache.loader.take_queries();
    let tasks = plan.concurrency;
    let timing = expiry_timing(query, options.beta, tasks);
    let mut tallies = Vec::new();
    for protection in [Protection::None, Protection::Xfetch] {
        let mut tally = ModeTally::new(protection);
        let label = format!("expiry, {}", protection.label());
        progress.counted_phase(&label, tasks * options.rounds, "requests");
        for _ in 0..options.rounds {
            let round = steady_traffic(cache, protection, tasks, timing, progress).await?;
            tally.add_round(round);
        }
        progress.finish_phase();
        tallies.push(tally);
    }
    Ok((query, timing, tallies))
}

fn mode_warnings(modes: &[ModeOutcome], lock: &LockSettings) -> Vec<String> {
    let mut warnings = Vec::new();
    for mode in modes {
        let counts = &mode.counts;
        if counts.locks_lost > 0 {
            warnings.push(format!(
                "{}: {} lock holder(s) found the lock expired before releasing it: the load outlasted --lock-ttl-ms {}; raise it",
                mode.mode.label(),
                counts.locks_lost,
                lock.ttl.as_millis()
            ));
        }
        if counts.fell_back_wait_expired > 0 {
            warnings.push(format!(
                "{}: {} request(s) waited the whole --lock-wait-ms {} and then queried the database themselves; raise --lock-wait-ms above the query time",
                mode.mode.label(),
                counts.fell_back_wait_expired,
                lock.wait.as_millis()
            ));
        }
        if counts.fell_back_lock_unavailable > 0 {
            warnings.push(format!(
                "{}: could not take locks (Valkey did not answer); {} request(s) fell back to the database",
                mode.mode.label(),
                counts.fell_back_lock_unavailable
            ));
        }
        if mode.mismatched_requests > 0 {
            warnings.push(format!(
                "{}: {} request(s) got rows that differ from a direct read now",
                mode.mode.label(),
                mode.mismatched_requests
            ));
        }
    }
    warnings
}

/// Why the comparison is incomplete: a fleet copy was lost, or Valkey was
/// missing for part of it.
fn incomplete_reason(modes: &[ModeOutcome], valkey: bool, locks: bool) -> Option<String> {
    let lost: Vec<String> = modes
        .iter()
        .flat_map(|m| {
            m.lost_processes
                .iter()
                .map(move |lost| format!("{} ({})", lost.describe(), m.mode.label()))
        })
        .collect();
    if !lost.is_empty() {
        return Some(format!(
            "incomplete fleet: {}; the counts are those of the processes that finished; run again",
            lost.join(", ")
        ));
    }
    let without_cache: u64 = modes.iter().map(|m| m.counts.cache_unavailable).sum();
    let lock_asked = modes.iter().any(|m| m.mode == Protection::Lock);
    if !valkey || (lock_asked && !locks) {
        let lock = if lock_asked {
            " and the lock mode could not take locks"
        } else {
            ""
        };
        return Some(format!(
            "could not compare: Valkey did not answer, so every request went to the database{lock}; start Valkey (`just up`) or point VALKEY_URL at it (the warning above says which), and run again"
        ));
    }
    (without_cache > 0).then(|| {
        format!(
            "could not compare fully: Valkey did not answer for {without_cache} request(s), which went to the database; check Valkey and run again"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exercises::queries::BuiltinQuery;

    fn options() -> StampedeOptions {
        StampedeOptions {
            query: QueryChoice::Builtin {
                query: BuiltinQuery::BusiestRoutes,
                id: 3797,
            },
            concurrency: None,
            mode: ModeChoice::All,
            rounds: 1,
            lock_ttl_ms: None,
            lock_wait_ms: None,
            time_budget_s: plan::DEFAULT_TIME_BUDGET_S,
            beta: 1.0,
            processes: 1,
            keep_cache: false,
            fleet_member: false,
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(validate(&options()).is_ok());
    }

    #[test]
    fn concurrency_outside_its_range_is_rejected_with_the_range() {
        let zero = StampedeOptions {
            concurrency: Some(0),
            ..options()
        };
        assert_eq!(
            validate(&zero).unwrap_err().to_string(),
            "--concurrency must be from 1 to 10000 (got 0)"
        );
        let huge = StampedeOptions {
            concurrency: Some(10_001),
            ..options()
        };
        assert_eq!(
            validate(&huge).unwrap_err().to_string(),
            "--concurrency must be from 1 to 10000 (got 10001)"
        );
    }

    #[test]
    fn keep_cache_needs_one_mode_and_one_round() {
        let all = StampedeOptions {
            keep_cache: true,
            ..options()
        };
        assert!(validate(&all).is_err());
        let one = StampedeOptions {
            keep_cache: true,
            mode: ModeChoice::One(Protection::Lock),
            ..options()
        };
        assert!(validate(&one).is_ok());
        let rounds = StampedeOptions { rounds: 2, ..one };
        assert!(validate(&rounds).is_err());
    }

    #[test]
    fn all_runs_three_cold_key_modes_and_the_expiry_scenario() {
        let all = options();
        assert_eq!(
            all.burst_modes(),
            [Protection::None, Protection::SingleFlight, Protection::Lock]
        );
        assert!(all.runs_expiry_scenario());
        let xfetch = StampedeOptions {
            mode: ModeChoice::One(Protection::Xfetch),
            ..options()
        };
        assert!(xfetch.burst_modes().is_empty());
        assert!(xfetch.runs_expiry_scenario());
    }

    #[test]
    fn the_expiry_timing_gives_xfetch_room_before_expiry() {
        // A 250 ms query, 100 tasks at one request per 20 ms: 5 requests per ms.
        let timing = expiry_timing(Duration::from_millis(250), 1.0, 100);
        // lead = 250 * ln(1250) ≈ 1783 ms; + 5 * 250 + 200 ≈ 3233 ms → 4 s.
        assert_eq!(timing.expire_after, Duration::from_secs(4));
        assert_eq!(timing.window, Duration::from_millis(4000 + 750 + 500));
        // A fast query still leaves a second.
        let fast = expiry_timing(Duration::from_millis(2), 1.0, 50);
        assert_eq!(fast.expire_after, Duration::from_secs(1));
        assert!(fast.window > fast.expire_after);
    }

    #[test]
    fn the_same_rows_give_the_same_digest() {
        let rows = |v: i64| ResultSet {
            columns: vec!["n".into()],
            rows: vec![vec![serde_json::json!(v)]],
        };
        assert_eq!(rows_digest(&rows(1)), rows_digest(&rows(1)));
        assert_ne!(rows_digest(&rows(1)), rows_digest(&rows(2)));
        assert_eq!(rows_digest(&rows(1)).len(), 16);
    }

    #[tokio::test]
    async fn a_panicking_task_is_a_bug_named_by_its_task_not_a_database_error() {
        let mut tasks = JoinSet::new();
        tasks.spawn(async {
            if std::hint::black_box(true) {
                panic!("index out of bounds");
            }
            Ok::<u64, crate::db::DbError>(1)
        });
        let joined = tasks.join_next().await.unwrap();
        let error = task_result(joined, "the task of request 7 (Valkey lock)").unwrap_err();
        assert_eq!(error.exit_code(), crate::error::exit::FAILURE);
        assert_eq!(
            error.to_string(),
            "the task of request 7 (Valkey lock) panicked (index out of bounds); this is a bug in workshop-cli, please report it"
        );
        // A database error keeps its own category.
        let mut tasks = JoinSet::new();
        tasks.spawn(async { Err::<u64, _>(crate::db::DbError::Query("no such table".into())) });
        let error = task_result(tasks.join_next().await.unwrap(), "request 1").unwrap_err();
        assert_eq!(error.exit_code(), crate::error::exit::DATABASE);
    }

    #[test]
    fn an_unreachable_valkey_makes_the_comparison_incomplete() {
        let reason = incomplete_reason(&[], false, false).unwrap();
        assert!(
            reason.starts_with("could not compare: Valkey did not answer"),
            "{reason}"
        );
        assert!(incomplete_reason(&[], true, true).is_none());
    }
}
