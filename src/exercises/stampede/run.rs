//! The run: connects, times one cold load, runs each mode's rounds (here
//! or over a fleet) and the expiry scenario, and builds the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::plan::{self, Plan};
use super::workload::{burst, expiry_timing, rows_digest, steady_traffic, RoundResult};
use super::{
    fleet, ExpiryOutcome, ExpiryTiming, LockReport, ModeOutcome, Reference, Setup, StampedeOptions, StampedeOutcome,
    PACE, POOL_CONNECTIONS,
};
use crate::cache::KeyScheme;
use crate::config::Config;
use crate::db::{Database, Statement};
use crate::error::Result;
use crate::exercises::cache_aside::QueryDescription;
use crate::exercises::progress::RunProgress;
use crate::exercises::services::{self, Needs, ValkeyNeed};
use crate::patterns::stampede::{CountedLoader, LockSettings, Protection, StampedeCache, StampedeKeys, ValkeyLocks};

/// The connected services of one process, ready for the first request.
pub(super) struct Services {
    pub(super) db: Database,
    pub(super) database: String,
    pub(super) query: QueryDescription,
    pub(super) statement: Statement,
    pub(super) cache: Arc<StampedeCache>,
    pub(super) setup: Setup,
    /// The sizes of this run: from one timed load, or as given (a fleet member).
    pub(super) plan: Plan,
    pub(super) warnings: Vec<String>,
}

/// Connects and warms up. With `cold_load`, times one load of the query
/// first (showing it on that progress bar) and sizes the run from it.
pub(super) async fn connect(
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

pub(super) async fn measure_run(
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
