//! Exercise 3, `workshop-cli stats`: drive a workload through the two-level
//! cache and show its statistics: hits and misses per layer, hit rates,
//! response time per source, a per-second timeline, Valkey's own `INFO`,
//! Prometheus metrics; and, with `--maxmemory`, eviction policies compared.

pub mod eviction;
pub mod server;
pub mod settings_record;
pub mod workload;
pub mod writes;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::private::PrivateValkey;
use crate::cache::two_level::{TwoLevelCache, TwoLevelSettings};
use crate::cache::{KeyScheme, Valkey};
use crate::config::Config;
use crate::db::{Database, DbError};
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::services::{self, ConnectionSetup, Needs, ValkeyNeed};
use crate::exercises::{Outcome, Verdict};
use crate::measure::zipf::KeySampler;

use eviction::{EvictionOutcome, EvictionPlan, PolicyRun, Progress, SavedSettings};
use server::{ServerAdmin, ServerView};
use settings_record::SettingsRecord;
use workload::{RunStats, Stop, Workload};
use writes::{WriteMix, WriteMode};

pub const DEFAULT_REQUESTS: u64 = 20_000;
pub const DEFAULT_KEYS: u64 = 1000;
const MAX_REQUESTS: u64 = 10_000_000;
const MAX_CONCURRENCY: u64 = 1024;
const MAX_KEYS: u64 = 1_000_000;
const MAX_L1_CAPACITY: u64 = 1_000_000;
pub const MAX_SKEW: f64 = 5.0;
/// Longest run, whether given as --duration or as --requests at a --rate.
const MAX_SECONDS: f64 = 3600.0;
const MAX_RATE: f64 = 1_000_000.0;
/// L1 keeps entries at most this long (and never longer than L2), so an
/// L2 expiry is not hidden for minutes by L1.
const L1_TTL_CAP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatsFormat {
    #[default]
    Table,
    Json,
    Prometheus,
}

impl StatsFormat {
    fn flag(self) -> &'static str {
        match self {
            StatsFormat::Table => "table",
            StatsFormat::Json => "json",
            StatsFormat::Prometheus => "prometheus",
        }
    }
}

/// The options as typed (clap is not imported below `cli`).
#[derive(Debug, Clone)]
pub struct StatsOptions {
    /// Counts are unsigned: clap refuses a negative one (exit 2), as in every command.
    pub requests: Option<u64>,
    pub duration: Option<f64>,
    pub rate: Option<f64>,
    pub concurrency: u64,
    pub keys: Option<u64>,
    pub skew: f64,
    /// `--l1` / `--no-l1`; `None`: on, except with `--maxmemory`.
    pub l1: Option<bool>,
    pub l1_capacity: u64,
    pub fresh: bool,
    pub format: Option<StatsFormat>,
    pub maxmemory: Option<String>,
    pub policies: Vec<String>,
    /// The global `--json` (the same as `--format json`).
    pub json: bool,
    /// Percent of requests that read (100: no writes).
    pub read_ratio: u64,
    /// What a write does to the cache; `None`: write-through.
    pub write_mode: Option<WriteMode>,
    /// Run against a `valkey-server` of its own instead of `VALKEY_URL`.
    pub private_valkey: bool,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            requests: None,
            duration: None,
            rate: None,
            concurrency: 8,
            keys: None,
            skew: 1.0,
            l1: None,
            l1_capacity: 100,
            fresh: false,
            format: None,
            maxmemory: None,
            json: false,
            policies: Vec::new(),
            read_ratio: 100,
            write_mode: None,
            private_valkey: false,
        }
    }
}

/// Validated options: everything the user can get wrong is checked here,
/// before any connection is made.
#[derive(Debug, Clone)]
pub struct StatsPlan {
    pub stop: Stop,
    pub rate: Option<f64>,
    pub concurrency: u64,
    /// `None`: the default, decided once the product count is known.
    pub keys: Option<u64>,
    pub skew: f64,
    pub use_l1: bool,
    pub l1_capacity: u64,
    pub fresh: bool,
    pub format: StatsFormat,
    pub eviction: Option<EvictionPlan>,
    pub writes: Option<WriteMix>,
    /// Where `--maxmemory` saves Valkey's settings before it changes them:
    /// beside the state file, or a private server's own folder.
    pub settings_record: SettingsRecord,
}

pub fn validate(options: &StatsOptions, json_flag: bool) -> Result<StatsPlan> {
    let format = match (options.format, json_flag) {
        (None, false) => StatsFormat::Table,
        (None, true) | (Some(StatsFormat::Json), _) => StatsFormat::Json,
        (Some(other), true) => {
            return Err(WorkshopError::invalid(format!(
                "--json and --format {} ask for two formats; give one of them",
                other.flag()
            )))
        }
        (Some(other), false) => other,
    };
    let requests = options
        .requests
        .map(|n| count("requests", n, MAX_REQUESTS))
        .transpose()?;
    let stop = match (options.duration, requests) {
        (Some(seconds), _) => {
            if !seconds.is_finite() || seconds <= 0.0 || seconds > MAX_SECONDS {
                return Err(WorkshopError::invalid(format!(
                    "--duration must be more than 0 and at most {MAX_SECONDS} seconds (got {seconds})"
                )));
            }
            Stop::AfterTime(Duration::from_secs_f64(seconds))
        }
        (None, requests) => Stop::AfterRequests(requests.unwrap_or(DEFAULT_REQUESTS)),
    };
    if let Some(rate) = options.rate {
        if !rate.is_finite() || rate <= 0.0 || rate > MAX_RATE {
            return Err(WorkshopError::invalid(format!(
                "--rate must be more than 0 and at most {MAX_RATE} requests per second (got {rate})"
            )));
        }
        if let Stop::AfterRequests(requests) = stop {
            let seconds = requests as f64 / rate;
            if seconds > MAX_SECONDS {
                return Err(WorkshopError::invalid(format!(
                    "--requests {requests} at --rate {rate} would take {seconds:.0} s, more than {MAX_SECONDS} s; raise --rate or lower --requests"
                )));
            }
        }
    }
    let concurrency = count("concurrency", options.concurrency, MAX_CONCURRENCY)?;
    let keys = options.keys.map(|n| count("keys", n, MAX_KEYS)).transpose()?;
    if !options.skew.is_finite() || !(0.0..=MAX_SKEW).contains(&options.skew) {
        return Err(WorkshopError::invalid(format!(
            "--skew must be from 0 (uniform) to {MAX_SKEW} (got {})",
            options.skew
        )));
    }
    let l1_capacity = Some(options.l1_capacity)
        .filter(|n| (1..=MAX_L1_CAPACITY).contains(n))
        .ok_or_else(|| {
            WorkshopError::invalid(format!(
                "--l1-capacity must be from 1 to {MAX_L1_CAPACITY} entries (got {})",
                options.l1_capacity
            ))
        })?;
    let eviction = match &options.maxmemory {
        Some(maxmemory) => Some(eviction::plan(maxmemory, &options.policies)?),
        None if !options.policies.is_empty() => {
            return Err(WorkshopError::invalid(
                "--policy needs --maxmemory: eviction only happens under a memory limit (e.g. --maxmemory 2mb)",
            ))
        }
        None => None,
    };
    if options.read_ratio > 100 {
        return Err(WorkshopError::invalid(format!(
            "--read-ratio must be from 0 to 100 percent reads (got {}); e.g. --read-ratio 80",
            options.read_ratio
        )));
    }
    let writes = match (options.read_ratio, options.write_mode) {
        (100, Some(mode)) => {
            return Err(WorkshopError::invalid(format!(
                "--write-mode {} needs writes: add --read-ratio below 100 (e.g. --read-ratio 80)",
                mode.label()
            )))
        }
        (100, None) => None,
        (read_ratio, mode) => Some(WriteMix {
            read_ratio,
            mode: mode.unwrap_or_default(),
        }),
    };
    if eviction.is_some() && format == StatsFormat::Prometheus {
        return Err(WorkshopError::invalid(
            "--format prometheus shows one run; the eviction comparison (--maxmemory) is shown as a table or with --json",
        ));
    }
    Ok(StatsPlan {
        stop,
        rate: options.rate,
        concurrency,
        keys,
        skew: options.skew,
        use_l1: options.l1.unwrap_or(eviction.is_none()),
        l1_capacity,
        fresh: options.fresh,
        format,
        eviction,
        writes,
        settings_record: SettingsRecord::beside_state_file(),
    })
}

/// A count flag as a number from 1 to `max`; the message names the flag and the range.
fn count(flag: &str, value: u64, max: u64) -> Result<u64> {
    Some(value)
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| WorkshopError::invalid(format!("--{flag} must be from 1 to {max} (got {value})")))
}

/// The settings of the run, as used (defaults filled in).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    /// Planned requests; `null` when the run is timed (`--duration`).
    pub requests: Option<u64>,
    pub duration_seconds: Option<f64>,
    pub rate_per_second: Option<f64>,
    pub concurrency: u64,
    /// Product ids 1..=keys are requested.
    pub keys: u64,
    pub skew: f64,
    /// "uniform" or "zipf".
    pub distribution: &'static str,
    /// The share of requests the `l1_capacity` most popular keys get: the most an L1 of that size can absorb.
    pub hottest_keys_share: f64,
    pub l1: bool,
    pub l1_capacity: u64,
    pub l1_ttl_seconds: u64,
    pub l2_ttl_seconds: u64,
    pub key_prefix: String,
    pub fresh: bool,
    /// Percent of requests that read; the rest update a price (100: reads only).
    pub read_ratio: u64,
    /// What a write does to the cache (`null` without writes).
    pub write_mode: Option<WriteMode>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Setup {
    #[serde(flatten)]
    pub connection: ConnectionSetup,
    /// Product keys deleted before the run (`--fresh`).
    pub keys_cleared: Option<u64>,
}

/// Everything the exercise measured; the report renders it, `--json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsOutcome {
    pub exercise: &'static str,
    pub database: String,
    pub settings: Settings,
    pub setup: Setup,
    /// The run (without `--maxmemory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunStats>,
    /// Valkey's view of that run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valkey: Option<ServerView>,
    /// One run per policy (with `--maxmemory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eviction: Option<EvictionOutcome>,
    /// `--private-valkey`: the address of the server this run started and stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_valkey: Option<String>,
    pub warnings: Vec<String>,
    /// How the outcome is shown: tables, JSON or Prometheus text.
    #[serde(skip)]
    pub format: StatsFormat,
    #[serde(skip)]
    pub verdict: Verdict,
}

impl Outcome for StatsOutcome {
    fn verdict(&mut self) -> Verdict {
        std::mem::take(&mut self.verdict)
    }
}

/// Runs the workload (once, or once per eviction policy with
/// `--maxmemory`); no Valkey, or a Ctrl-C that cut the comparison short,
/// makes the verdict.
pub async fn measure(config: &Config, options: StatsOptions, progress: &dyn RunProgress) -> Result<StatsOutcome> {
    let mut plan = validate(&options, options.json)?;
    // Its own server, alive until the run ends (dropped, it is killed):
    // a memory limit or a flush there touches nobody else's keys.
    let private = match options.private_valkey {
        true => {
            progress.phase("starting a private valkey-server", None);
            let start = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("."));
            Some(PrivateValkey::start(config, &start).await?)
        }
        false => None,
    };
    if let Some(server) = &private {
        // Dies with the server: a leftover would name a port nobody serves.
        plan.settings_record = SettingsRecord::at(server.dir().join(settings_record::RECORD_FILE_NAME));
    }
    let config = &match &private {
        Some(server) => Config {
            valkey: server.target.clone(),
            ..config.clone()
        },
        None => config.clone(),
    };
    let (mut outcome, interrupted) = measure_run(config, &plan, progress).await?;
    outcome.private_valkey = private.as_ref().map(|server| format!("127.0.0.1:{}", server.port));
    outcome.format = plan.format;
    if let Some(error) = interrupted {
        outcome.verdict = Verdict::failed(error);
    } else if outcome.eviction.is_none()
        && outcome.valkey.is_none()
        && outcome.setup.connection.valkey_connect.is_none()
    {
        outcome.verdict = Verdict::failed(WorkshopError::incomplete(
            "Valkey could not be reached, so there is no L2 and no server view; start Valkey (`just up`) or point VALKEY_URL at it (the warning above says which), and run again",
        ));
    }
    Ok(outcome)
}

/// The services and settings every run of one invocation shares.
struct Bench<'a> {
    db: Database,
    valkey: Option<Valkey>,
    admin: Option<ServerAdmin>,
    keys: KeyScheme,
    cache: TwoLevelSettings,
    workload: Workload,
    progress: &'a dyn RunProgress,
    settings_record: SettingsRecord,
}

impl Bench<'_> {
    /// One workload on a new (empty) L1, with INFO before and after.
    async fn measured_run(&self, warnings: &mut Vec<String>) -> Result<(RunStats, Option<ServerView>)> {
        let mut ask = |what: &str, error: crate::cache::CacheError| {
            warnings.push(format!("{what} failed ({error}); Valkey's view is incomplete"));
        };
        let before = match &self.admin {
            Some(admin) => admin.snapshot().await.map_err(|e| ask("INFO before the run", e)).ok(),
            None => None,
        };
        let cache = TwoLevelCache::new(self.cache, self.valkey.clone());
        match self.workload.stop {
            Stop::AfterRequests(n) => self.progress.phase("requests", Some(n)),
            Stop::AfterTime(limit) => self.progress.phase("seconds", Some(limit.as_secs().max(1))),
        }
        let result = workload::run(&self.workload, &cache, &self.db, &self.keys, self.progress).await;
        self.progress.finish_phase();
        let stats = result?;
        let after = match &self.admin {
            Some(admin) => admin.snapshot().await.map_err(|e| ask("INFO after the run", e)).ok(),
            None => None,
        };
        let footprint = match (&self.admin, &after) {
            (Some(admin), Some(_)) => admin
                .key_footprint(self.keys.source_prefix())
                .await
                .map_err(|e| ask("counting the workshop's keys", e))
                .ok(),
            _ => None,
        };
        let view = match (before, after) {
            (Some(before), Some(after)) => Some(ServerView::between(&before, &after, footprint)),
            _ => None,
        };
        if view.as_ref().is_some_and(|v| v.restarted) {
            warnings.push(
                "Valkey restarted during the run (its run_id changed): its counters started again, so the server's deltas are not shown".into(),
            );
        }
        let timeout = self.valkey.as_ref().map(Valkey::command_timeout).unwrap_or_default();
        if let Some(warning) = stats.valkey_faults.and_then(|faults| faults.warning(timeout)) {
            warnings.push(warning);
        }
        if stats.counters.l2_errors > 0 {
            warnings.push(format!(
                "{} Valkey command(s) failed (unreachable, or refused: OOM under noeviction); those reads went to the database and no request failed",
                stats.counters.l2_errors
            ));
        }
        Ok((stats, view))
    }

    async fn clear_products(&self) -> Result<u64> {
        match &self.valkey {
            Some(valkey) => Ok(valkey.delete_prefixed(&self.keys.product_prefix()).await?),
            None => Ok(0),
        }
    }
}

/// The outcome, and the interruption (Ctrl-C) that cut an eviction comparison short, if one did.
async fn measure_run(
    config: &Config,
    plan: &StatsPlan,
    progress: &dyn RunProgress,
) -> Result<(StatsOutcome, Option<WorkshopError>)> {
    let mut services = services::connect(
        config,
        Needs {
            pool_connections: plan.concurrency + 1,
            valkey: ValkeyNeed::Optional,
            recording_as: None,
        },
    )
    .await?;
    let db = services.db.clone();
    let keys = product_keys(&db, plan).await?;

    let mut warnings = Vec::new();
    let (valkey, admin) = match (services.valkey.clone(), services.valkey_error.take()) {
        (Some(valkey), _) => (Some(valkey.clone()), Some(ServerAdmin::new(valkey))),
        // Eviction is about Valkey: without it there is nothing to compare.
        (None, Some(error)) if plan.eviction.is_some() => return Err(error.into()),
        (None, error) => {
            if let Some(error) = error {
                warnings.push(format!("{error}; every L1 miss goes to the database"));
            }
            (None, None)
        }
    };
    // Settings a killed `--maxmemory` run left changed go back first, so this
    // run neither measures under them nor saves them as the originals.
    let record = &plan.settings_record;
    if let Some(valkey) = &valkey {
        match settings_record::restore_leftover(valkey, record).await {
            Ok(Some(restored)) => warnings.push(restored),
            Ok(None) => {}
            Err(error) if plan.eviction.is_some() => {
                return Err(WorkshopError::Other(anyhow::anyhow!(
                    "cannot restore the Valkey settings an earlier run saved: {error}; nothing was changed"
                )))
            }
            Err(error) => warnings.push(format!(
                "cannot restore the Valkey settings an earlier run saved: {error}"
            )),
        }
    }

    let sampler = Arc::new(KeySampler::new(keys, plan.skew));
    let l1_ttl = config.ttl.min(L1_TTL_CAP);
    let settings = Settings {
        requests: match plan.stop {
            Stop::AfterRequests(n) => Some(n),
            Stop::AfterTime(_) => None,
        },
        duration_seconds: match plan.stop {
            Stop::AfterTime(limit) => Some(limit.as_secs_f64()),
            Stop::AfterRequests(_) => None,
        },
        rate_per_second: plan.rate,
        concurrency: plan.concurrency,
        keys,
        skew: plan.skew,
        distribution: if sampler.is_uniform() { "uniform" } else { "zipf" },
        hottest_keys_share: sampler.share_of_top(plan.l1_capacity),
        l1: plan.use_l1,
        l1_capacity: plan.l1_capacity,
        l1_ttl_seconds: l1_ttl.as_secs(),
        l2_ttl_seconds: config.ttl.as_secs(),
        key_prefix: config.key_prefix.clone(),
        fresh: plan.fresh,
        read_ratio: plan.writes.map_or(100, |mix| mix.read_ratio),
        write_mode: plan.writes.map(|mix| mix.mode),
    };
    let bench = Bench {
        settings_record: plan.settings_record.clone(),
        db: db.clone(),
        valkey,
        admin,
        keys: KeyScheme::new(&config.key_prefix, &config.database),
        cache: TwoLevelSettings {
            use_l1: plan.use_l1,
            l1_capacity: plan.l1_capacity,
            l1_ttl,
            l2_ttl: config.ttl_policy(),
        },
        workload: Workload {
            stop: plan.stop,
            rate: plan.rate,
            concurrency: plan.concurrency,
            sampler,
            writes: plan.writes,
        },
        progress,
    };

    // Pools warm before the first timed request; set-up is reported apart.
    services.warm_up(plan.concurrency).await?;
    let keys_cleared = if plan.fresh && plan.eviction.is_none() {
        Some(bench.clear_products().await?)
    } else {
        None
    };

    let (run, view, eviction, interrupted) = match &plan.eviction {
        None => {
            let (stats, view) = bench.measured_run(&mut warnings).await?;
            (Some(stats), view, None, None)
        }
        Some(eviction_plan) => {
            let (outcome, interrupted) = compare_policies(&bench, eviction_plan, &mut warnings).await?;
            (None, None, Some(outcome), interrupted)
        }
    };

    let outcome = StatsOutcome {
        exercise: "stats",
        database: services.database.clone(),
        settings,
        setup: Setup {
            connection: services.setup.clone(),
            keys_cleared,
        },
        run,
        valkey: view,
        eviction,
        private_valkey: None,
        warnings,
        format: plan.format,
        verdict: Verdict::Complete,
    };
    db.close().await;
    Ok((outcome, interrupted))
}

/// How many product ids the workload draws from: `--keys`, checked against
/// the catalogue, or the default (1000, or every product for eviction).
async fn product_keys(db: &Database, plan: &StatsPlan) -> Result<u64> {
    let Some((_, highest)) = db.product_id_range().await? else {
        return Err(DbError::NotSeeded {
            detail: "the products table is empty".into(),
        }
        .into());
    };
    let highest = u64::try_from(highest).unwrap_or(0).max(1);
    match plan.keys {
        Some(keys) if keys > highest => Err(WorkshopError::invalid(format!(
            "--keys {keys} is more than the products in the database (ids 1 to {highest}); use --keys {highest} or less, or seed a larger --scale"
        ))),
        Some(keys) => Ok(keys),
        None if plan.eviction.is_some() => Ok(highest.min(MAX_KEYS)),
        None => Ok(highest.min(DEFAULT_KEYS)),
    }
}

/// One run per policy under `maxmemory`, each from an empty cache; the
/// server's settings are restored afterwards, whatever happens. After an
/// interruption the runs that finished are returned with the error.
async fn compare_policies(
    bench: &Bench<'_>,
    plan: &EvictionPlan,
    warnings: &mut Vec<String>,
) -> Result<(EvictionOutcome, Option<WorkshopError>)> {
    let (Some(admin), Some(_)) = (&bench.admin, &bench.valkey) else {
        return Err(WorkshopError::incomplete(
            "Valkey is needed to compare eviction policies",
        ));
    };
    // The limit applies to the whole server: nothing but the cache may be at risk.
    eviction::check_only_cache_at_risk(admin, &bench.keys).await?;
    let saved = SavedSettings::read(admin).await?;
    // On disk (fsynced) before any CONFIG SET: a SIGKILL cannot skip a restore then.
    let record = &bench.settings_record;
    let target = bench
        .valkey
        .as_ref()
        .map(|v| v.target().to_string())
        .unwrap_or_default();
    record.save(&target, &saved).map_err(|reason| {
        WorkshopError::Other(anyhow::anyhow!(
            "{reason}; Valkey's settings must be saved before they change, so nothing was changed"
        ))
    })?;
    let progress = RefCell::new(Progress::default());
    let run_warnings = RefCell::new(Vec::new());
    let runs = async {
        for policy in &plan.policies {
            progress.borrow_mut().current = Some(policy.clone());
            let keys_cleared = bench.clear_products().await?;
            SavedSettings::apply(admin, plan.maxmemory, policy).await?;
            let mut mine = Vec::new();
            let (run, valkey) = bench.measured_run(&mut mine).await?;
            run_warnings
                .borrow_mut()
                .extend(mine.into_iter().map(|w| format!("{policy}: {w}")));
            let mut state = progress.borrow_mut();
            state.done.push(PolicyRun {
                policy: policy.clone(),
                keys_cleared,
                run,
                valkey,
            });
            state.current = None;
        }
        Ok(())
    };
    let interrupted = eviction::guarded(admin, &saved, &progress, runs).await?;
    // Restored (guarded failed otherwise, and the record stays for the next run).
    if let Err(reason) = record.remove(&target) {
        warnings.push(format!(
            "{reason}; the next run will restore the same settings again, harmlessly"
        ));
    }
    warnings.extend(run_warnings.into_inner());
    let runs = progress.into_inner().done;
    if interrupted.is_none()
        && runs
            .iter()
            .all(|r| r.valkey.as_ref().and_then(|v| v.evicted_keys).unwrap_or(0) == 0)
    {
        warnings.push(format!(
            "no key was evicted: the data fits in --maxmemory {} bytes; raise --keys or lower --maxmemory",
            plan.maxmemory
        ));
    }
    let outcome = EvictionOutcome {
        maxmemory_bytes: plan.maxmemory,
        policies: plan.policies.clone(),
        previous: saved,
        restored: true,
        runs,
    };
    Ok((outcome, interrupted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(options: &StatsOptions) -> String {
        validate(options, false).unwrap_err().to_string()
    }

    #[test]
    fn the_defaults_are_a_skewed_count_of_requests_with_l1() {
        let plan = validate(&StatsOptions::default(), false).unwrap();
        assert_eq!(plan.stop, Stop::AfterRequests(DEFAULT_REQUESTS));
        assert_eq!(plan.format, StatsFormat::Table);
        assert!(plan.use_l1);
        assert!(plan.eviction.is_none());
        assert_eq!(plan.skew, 1.0);
    }

    #[test]
    fn skew_out_of_range_is_rejected_with_the_range() {
        for (skew, shown) in [(-1.0, "-1"), (7.0, "7"), (5.5, "5.5"), (f64::NAN, "NaN")] {
            let options = StatsOptions {
                skew,
                ..StatsOptions::default()
            };
            assert_eq!(
                message(&options),
                format!("--skew must be from 0 (uniform) to 5 (got {shown})")
            );
        }
        let edge = StatsOptions {
            skew: 5.0,
            ..StatsOptions::default()
        };
        assert!(validate(&edge, false).is_ok());
    }

    #[test]
    fn zero_requests_concurrency_or_keys_are_rejected() {
        let zero_requests = StatsOptions {
            requests: Some(0),
            ..StatsOptions::default()
        };
        assert_eq!(message(&zero_requests), "--requests must be from 1 to 10000000 (got 0)");
        let zero_tasks = StatsOptions {
            concurrency: 0,
            ..StatsOptions::default()
        };
        assert_eq!(message(&zero_tasks), "--concurrency must be from 1 to 1024 (got 0)");
        let zero_keys = StatsOptions {
            keys: Some(0),
            ..StatsOptions::default()
        };
        assert_eq!(message(&zero_keys), "--keys must be from 1 to 1000000 (got 0)");
    }

    #[test]
    fn zero_or_too_large_counts_are_rejected_with_the_range() {
        let tasks = StatsOptions {
            concurrency: 0,
            ..StatsOptions::default()
        };
        assert_eq!(message(&tasks), "--concurrency must be from 1 to 1024 (got 0)");
        let requests = StatsOptions {
            requests: Some(10_000_001),
            ..StatsOptions::default()
        };
        assert_eq!(
            message(&requests),
            "--requests must be from 1 to 10000000 (got 10000001)"
        );
        let capacity = StatsOptions {
            l1_capacity: 0,
            ..StatsOptions::default()
        };
        assert_eq!(
            message(&capacity),
            "--l1-capacity must be from 1 to 1000000 entries (got 0)"
        );
    }

    #[test]
    fn a_paced_run_must_end_within_an_hour() {
        let options = StatsOptions {
            requests: Some(100_000),
            rate: Some(10.0),
            ..StatsOptions::default()
        };
        assert_eq!(
            message(&options),
            "--requests 100000 at --rate 10 would take 10000 s, more than 3600 s; raise --rate or lower --requests"
        );
        let zero_rate = StatsOptions {
            rate: Some(0.0),
            ..StatsOptions::default()
        };
        assert!(message(&zero_rate).starts_with("--rate must be more than 0"));
        let timed = StatsOptions {
            duration: Some(5.0),
            rate: Some(100.0),
            ..StatsOptions::default()
        };
        assert_eq!(
            validate(&timed, false).unwrap().stop,
            Stop::AfterTime(Duration::from_secs(5))
        );
    }

    #[test]
    fn a_read_ratio_over_100_or_a_write_mode_without_writes_is_rejected() {
        let over = StatsOptions {
            read_ratio: 101,
            ..StatsOptions::default()
        };
        assert_eq!(
            message(&over),
            "--read-ratio must be from 0 to 100 percent reads (got 101); e.g. --read-ratio 80"
        );
        let no_writes = StatsOptions {
            write_mode: Some(WriteMode::Invalidate),
            ..StatsOptions::default()
        };
        assert_eq!(
            message(&no_writes),
            "--write-mode invalidate needs writes: add --read-ratio below 100 (e.g. --read-ratio 80)"
        );
        let mixed = StatsOptions {
            read_ratio: 80,
            ..StatsOptions::default()
        };
        assert_eq!(
            validate(&mixed, false).unwrap().writes,
            Some(WriteMix {
                read_ratio: 80,
                mode: WriteMode::WriteThrough
            })
        );
        assert_eq!(validate(&StatsOptions::default(), false).unwrap().writes, None);
    }

    #[test]
    fn json_and_another_format_conflict() {
        let prometheus = StatsOptions {
            format: Some(StatsFormat::Prometheus),
            ..StatsOptions::default()
        };
        assert_eq!(
            validate(&prometheus, true).unwrap_err().to_string(),
            "--json and --format prometheus ask for two formats; give one of them"
        );
        assert_eq!(validate(&prometheus, false).unwrap().format, StatsFormat::Prometheus);
        let json = StatsOptions {
            format: Some(StatsFormat::Json),
            ..StatsOptions::default()
        };
        assert_eq!(validate(&json, true).unwrap().format, StatsFormat::Json);
        assert_eq!(
            validate(&StatsOptions::default(), true).unwrap().format,
            StatsFormat::Json
        );
    }

    #[test]
    fn eviction_turns_l1_off_unless_asked_and_needs_maxmemory_for_policies() {
        let eviction = StatsOptions {
            maxmemory: Some("2mb".into()),
            ..StatsOptions::default()
        };
        let plan = validate(&eviction, false).unwrap();
        assert!(!plan.use_l1);
        assert_eq!(plan.eviction.unwrap().policies, vec!["allkeys-lru", "allkeys-lfu"]);
        let with_l1 = StatsOptions {
            l1: Some(true),
            ..eviction.clone()
        };
        assert!(validate(&with_l1, false).unwrap().use_l1);
        let no_limit = StatsOptions {
            policies: vec!["allkeys-lru".into()],
            ..StatsOptions::default()
        };
        assert!(message(&no_limit).starts_with("--policy needs --maxmemory"));
        let prometheus = StatsOptions {
            format: Some(StatsFormat::Prometheus),
            ..eviction
        };
        assert!(message(&prometheus).starts_with("--format prometheus shows one run"));
    }
}
