//! Exercise 1, `workshop-cli cache-aside`: run one query through the
//! cache-aside pattern many times and compare database and cache latency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::{KeyScheme, Valkey};
use crate::config::Config;
use crate::db::{Database, ResultSet, SqlValue, Statement};
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::{relay, RunProgress, StepCounter};
use crate::exercises::queries::QueryChoice;
use crate::exercises::services::{self, ConnectionSetup, Needs, ValkeyNeed};
use crate::exercises::{Outcome, Verdict};
use crate::measure::{self, Distribution, LatencyRecorder, LatencySummary};
use crate::patterns::cache_aside::{CacheAside, CacheLink, Read, ReadSource};

/// Up to this many runs, each run is listed (and its TTL read).
pub const PER_RUN_LIMIT: u64 = 20;
/// The default baseline stops once its reads have taken this long: a query
/// of 9 s would otherwise keep the default 10 baseline reads busy for 90 s.
/// An explicit `--baseline N` is done in full.
pub const BASELINE_BUDGET: Duration = Duration::from_secs(3);
const MAX_RUNS: u64 = 10_000_000;
const MAX_CONCURRENCY: u64 = 1024;
const BASELINE_CAP: u64 = 1000;
const DISTRIBUTION_BUCKETS: usize = 10;

#[derive(Debug, Clone)]
pub struct CacheAsideOptions {
    pub query: QueryChoice,
    pub runs: u64,
    pub warmup: u64,
    pub fresh: bool,
    pub concurrency: u64,
    pub no_cache: bool,
    /// Direct database reads after the pattern reads; `None` picks a default.
    pub baseline: Option<u64>,
    /// A pause between reads (not timed), to watch a run as services come and go.
    pub interval: Duration,
    /// Valkey connections the tasks share, task `i` on connection `i % connections`.
    pub connections: u64,
}

/// Everything a run measured; the report renders it, `--json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheAsideOutcome {
    pub exercise: &'static str,
    pub database: String,
    pub query: QueryDescription,
    pub key: String,
    pub ttl_seconds: u64,
    pub setup: Setup,
    pub result: ResultSet,
    pub empty_result: bool,
    pub runs: Vec<RunRecord>,
    pub sources: BTreeMap<&'static str, u64>,
    /// Consecutive reads from the same source, in order (one task only):
    /// a Valkey outage shows as a stretch of database reads between hits.
    pub timeline: Option<Vec<SourceStretch>>,
    pub baseline_reads: u64,
    /// The time budget of a default baseline, and whether it cut the reads short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_budget: Option<BaselineBudget>,
    pub summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_writes: Option<LatencySummary>,
    pub concurrency: u64,
    /// Valkey connections the tasks shared (0 when the cache was bypassed or unreachable).
    pub connections: u64,
    #[serde(serialize_with = "measure::as_millis", rename = "wall_time_ms")]
    pub wall_time: Duration,
    pub throughput_per_second: f64,
    pub distribution: Option<Distribution>,
    /// Every cache hit returned the rows the database returns now.
    pub consistent: Option<bool>,
    /// Timeouts and circuit-breaker openings of the Valkey connection.
    pub valkey_faults: Option<crate::cache::BreakerCounts>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub verdict: Verdict,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BaselineBudget {
    #[serde(serialize_with = "measure::as_millis", rename = "budget_ms")]
    pub budget: Duration,
    /// The reads the default asked for (`--runs`, at most 1000).
    pub planned: u64,
    /// The budget ran out before `planned` reads were done.
    pub cut: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct QueryDescription {
    pub name: String,
    pub sql: String,
    pub params: BTreeMap<String, SqlValue>,
    /// The SQL as sent, with the dialect's placeholders.
    pub statement: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Setup {
    #[serde(flatten)]
    pub connection: ConnectionSetup,
    pub warmup_reads: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    pub run: u64,
    pub source: ReadSource,
    #[serde(serialize_with = "measure::as_millis", rename = "latency_ms")]
    pub latency: Duration,
    /// Seconds the entry has left after this read, when there is one.
    pub ttl_left_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceStretch {
    pub source: ReadSource,
    pub reads: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Database reads: misses, fallbacks and baseline reads (query + row conversion).
    pub database: Option<LatencySummary>,
    /// Cache hits (GET + decode).
    pub cache: Option<LatencySummary>,
    /// Database p50 / cache p50, when both were measured.
    pub speedup: Option<f64>,
    /// Why there is no speedup, when there is none.
    pub not_compared: Option<String>,
}

/// Runs cache-aside reads (and a database baseline); a run in which the
/// cache never answered has the verdict "incomplete" (exit 8).
pub async fn measure(
    config: &Config,
    options: CacheAsideOptions,
    progress: &dyn RunProgress,
) -> Result<CacheAsideOutcome> {
    let mut outcome = measure_run(config, &options, progress).await?;
    let served = |source| outcome.sources.get(source).copied().unwrap_or(0);
    let cache_never_answered = !options.no_cache && served("cache") == 0 && served("database") == 0;
    if cache_never_answered {
        outcome.verdict = Verdict::failed(WorkshopError::incomplete(
            "could not compare: the cache was unavailable for every read, so every read went to the database; start Valkey (`just up`) or point VALKEY_URL at it (the warning above says which), and run again",
        ));
    }
    Ok(outcome)
}

impl Outcome for CacheAsideOutcome {
    fn verdict(&mut self) -> Verdict {
        std::mem::take(&mut self.verdict)
    }
}

fn validate(options: &CacheAsideOptions) -> Result<()> {
    if options.runs == 0 || options.runs > MAX_RUNS {
        return Err(WorkshopError::invalid(format!(
            "--runs must be from 1 to {MAX_RUNS} (got {})",
            options.runs
        )));
    }
    if options.concurrency == 0 || options.concurrency > MAX_CONCURRENCY {
        return Err(WorkshopError::invalid(format!(
            "--concurrency must be from 1 to {MAX_CONCURRENCY} (got {})",
            options.concurrency
        )));
    }
    if options.connections == 0 || options.connections > options.concurrency {
        return Err(WorkshopError::invalid(format!(
            "--connections must be from 1 to --concurrency ({}): each connection needs a task of its own (got {})",
            options.concurrency, options.connections
        )));
    }
    if options.interval > Duration::from_secs(60) {
        return Err(WorkshopError::invalid("--interval must be at most 60000 ms"));
    }
    if options.warmup > MAX_RUNS {
        return Err(WorkshopError::invalid(format!("--warmup must be at most {MAX_RUNS}")));
    }
    options.query.validate()
}

async fn measure_run(
    config: &Config,
    options: &CacheAsideOptions,
    progress: &dyn RunProgress,
) -> Result<CacheAsideOutcome> {
    validate(options)?;
    let tasks = options.concurrency.min(options.runs);
    let mut services = services::connect(
        config,
        Needs {
            pool_connections: tasks + 1,
            valkey: if options.no_cache {
                ValkeyNeed::Off
            } else {
                ValkeyNeed::Optional
            },
            recording_as: None,
        },
    )
    .await?;
    let db = services.db.clone();
    let (name, query) = options.query.build(db.kind())?;
    let statement = query.to_statement(db.kind())?;
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    let key = keys.query(&query);

    let mut warnings = Vec::new();
    if let Some(error) = &services.valkey_error {
        warnings.push(format!("{error}; every read goes to the database"));
    }
    let valkey = services.valkey.clone();
    let cache = match (&valkey, options.no_cache) {
        (_, true) => CacheLink::Bypassed,
        (Some(valkey), false) => CacheLink::Connected(valkey.clone()),
        (None, false) => CacheLink::Unavailable,
    };
    // More connections (`--connections N`): the first one answered, so the others are opened
    // the same way; the tasks take them round robin.
    let mut extra = Vec::new();
    if valkey.is_some() {
        let wanted = options.connections.min(tasks).saturating_sub(1);
        let opening = (0..wanted).map(|_| Valkey::connect(&config.valkey, config.connect_timeout));
        extra = futures_util::future::try_join_all(opening).await?;
    }
    let pattern = CacheAside {
        cache,
        ttl: config.ttl_policy(),
    };
    let patterns: Vec<CacheAside> = std::iter::once(pattern.clone())
        .chain(extra.into_iter().map(|valkey| CacheAside {
            cache: CacheLink::Connected(valkey),
            ttl: config.ttl_policy(),
        }))
        .collect();
    let valkeys: Vec<Valkey> = patterns
        .iter()
        .filter_map(|p| match &p.cache {
            CacheLink::Connected(valkey) => Some(valkey.clone()),
            _ => None,
        })
        .collect();

    // Pools warm before the first timed read; connection set-up is reported apart.
    services.warm_up(tasks).await?;
    if !statement.read_only {
        db.warm_up_sessions(u32::try_from(tasks).unwrap_or(u32::MAX)).await;
    }
    // The extra connections of --connections answer once before the timed reads too.
    for valkey in valkeys.iter().skip(1) {
        let _ = valkey.round_trip().await;
    }
    let mut session = db.session_for(&statement).await?;
    for _ in 0..options.warmup {
        pattern.read(&mut session, &key, &statement).await?;
    }
    if options.fresh {
        if let Some(valkey) = &valkey {
            if let Err(error) = valkey.delete(&key).await {
                warnings.push(format!("--fresh could not delete the cached entry: {error}"));
            }
        }
    }

    drop(session);
    let mut timed = timed_reads(&db, &patterns, &key, &statement, options, tasks, progress).await?;
    let mut session = db.session_for(&statement).await?;
    let timeline = (tasks == 1).then(|| std::mem::take(&mut timed.timeline));

    let planned = options.baseline.unwrap_or(if tasks == 1 && !options.no_cache {
        options.runs.min(BASELINE_CAP)
    } else {
        0
    });
    let budget = options.baseline.is_none().then_some(BASELINE_BUDGET);
    let mut database = timed.database.clone();
    let mut reference: Option<ResultSet> = timed.first_database_rows.clone();
    if planned > 0 {
        progress.phase("baseline", Some(planned));
    }
    let baseline_started = Instant::now();
    let mut baseline_count = 0;
    while baseline_count < planned {
        if budget.is_some_and(|budget| baseline_started.elapsed() >= budget) {
            break;
        }
        let read = pattern
            .read_database(&mut session, &statement, ReadSource::DatabaseNoCache)
            .await?;
        database.record(read.latency);
        reference = Some(read.rows);
        baseline_count += 1;
        progress.advance(1);
    }
    progress.finish_phase();
    let baseline_budget = budget.map(|budget| BaselineBudget {
        budget,
        planned,
        cut: baseline_count < planned,
    });
    if baseline_budget.as_ref().is_some_and(|b| b.cut) {
        warnings.push(format!(
            "the query is slow: the database baseline stopped after {baseline_count} of {planned} reads, at its {} s time budget; ask for more with --baseline N",
            BASELINE_BUDGET.as_secs()
        ));
    }
    let reference = match reference {
        Some(rows) => rows,
        None => pattern.query(&mut session, &statement).await?.0,
    };
    let consistent = timed
        .first_hit_rows
        .as_ref()
        .map(|hit| !timed.hits_differ && *hit == reference);

    let cache_hit_count = timed.cache.count();
    if timed.unavailable > 0 && cache_hit_count > 0 {
        warnings.push(format!(
            "Valkey did not answer for {} of {} reads; the database served them (no read failed)",
            timed.unavailable, options.runs
        ));
    }
    let valkey_faults = valkey.as_ref().map(|_| {
        valkeys
            .iter()
            .map(Valkey::breaker_counts)
            .fold(crate::cache::BreakerCounts::default(), |sum, c| sum.plus(&c))
    });
    if let Some(warning) = valkey
        .as_ref()
        .zip(valkey_faults)
        .and_then(|(v, faults)| faults.warning(v.command_timeout()))
    {
        warnings.push(warning);
    }
    if consistent == Some(false) {
        warnings.push("a cache hit returned rows that differ from the database now: the entry is stale until its TTL ends or it is invalidated".into());
    }

    let database_summary = database.summary();
    let cache_summary = timed.cache.summary();
    let (speedup, not_compared) = match (&database_summary, &cache_summary) {
        (Some(db), Some(cache)) => (measure::speedup(db, cache), None),
        (_, None) if options.no_cache => (None, Some("the cache was bypassed (--no-cache)".to_string())),
        (_, None) => (None, Some("no read was served by the cache".to_string())),
        (None, _) => (
            None,
            Some("no read went to the database; add --fresh or --baseline N".to_string()),
        ),
    };
    let distribution = measure::distribution(
        &[("database", &database), ("cache", &timed.cache)],
        DISTRIBUTION_BUCKETS,
    );
    let wall = timed.wall_time;

    let outcome = CacheAsideOutcome {
        exercise: "cache-aside",
        database: services.database.clone(),
        query: QueryDescription {
            name,
            sql: query.sql.clone(),
            params: query.params.clone(),
            statement: statement.sql.clone(),
        },
        key,
        ttl_seconds: config.ttl.as_secs(),
        setup: Setup {
            connection: services.setup.clone(),
            warmup_reads: options.warmup,
        },
        empty_result: reference.is_empty(),
        result: reference,
        runs: timed.records,
        sources: timed.sources,
        timeline,
        baseline_reads: baseline_count,
        baseline_budget,
        summary: Summary {
            database: database_summary,
            cache: cache_summary,
            speedup,
            not_compared,
        },
        cache_writes: timed.cache_writes.summary(),
        concurrency: tasks,
        connections: valkeys.len() as u64,
        wall_time: wall,
        throughput_per_second: options.runs as f64 / wall.as_secs_f64().max(1e-9),
        distribution,
        consistent,
        valkey_faults,
        warnings,
        verdict: Verdict::Complete,
    };
    drop(session);
    db.close().await;
    Ok(outcome)
}

/// What the timed reads of all tasks add up to.
#[derive(Default)]
struct TimedReads {
    database: LatencyRecorder,
    cache: LatencyRecorder,
    cache_writes: LatencyRecorder,
    sources: BTreeMap<&'static str, u64>,
    unavailable: u64,
    records: Vec<RunRecord>,
    first_database_rows: Option<ResultSet>,
    first_hit_rows: Option<ResultSet>,
    hits_differ: bool,
    timeline: Vec<SourceStretch>,
    wall_time: Duration,
}

impl TimedReads {
    fn add(&mut self, run: u64, read: Read, ttl_left: Option<Duration>, keep_record: bool) {
        match read.source {
            ReadSource::Cache => {
                self.cache.record(read.latency);
                match &self.first_hit_rows {
                    None => self.first_hit_rows = Some(read.rows),
                    Some(first) if *first != read.rows => self.hits_differ = true,
                    Some(_) => {}
                }
            }
            _ => {
                self.database.record(read.latency);
                if self.first_database_rows.is_none() {
                    self.first_database_rows = Some(read.rows);
                }
            }
        }
        if read.source == ReadSource::DatabaseCacheUnavailable {
            self.unavailable += 1;
        }
        if let Some(write) = read.cache_write {
            self.cache_writes.record(write);
        }
        *self.sources.entry(source_key(read.source)).or_default() += 1;
        match self.timeline.last_mut() {
            Some(stretch) if stretch.source == read.source => stretch.reads += 1,
            _ => self.timeline.push(SourceStretch {
                source: read.source,
                reads: 1,
            }),
        }
        if keep_record {
            self.records.push(RunRecord {
                run,
                source: read.source,
                latency: read.latency,
                ttl_left_seconds: ttl_left.map(|d| d.as_secs_f64()),
            });
        }
    }
}

/// The shared recorder; a task that panicked while holding it left whole samples only.
fn lock(shared: &std::sync::Mutex<TimedReads>) -> std::sync::MutexGuard<'_, TimedReads> {
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The same names `ReadSource` has in JSON.
fn source_key(source: ReadSource) -> &'static str {
    match source {
        ReadSource::Cache => "cache",
        ReadSource::Database => "database",
        ReadSource::DatabaseCacheUnavailable => "database_cache_unavailable",
        ReadSource::DatabaseNoCache => "database_no_cache",
    }
}

/// The timed reads: `tasks` tasks, task `i` reading through `patterns[i % patterns.len()]`
/// (one pattern per Valkey connection).
async fn timed_reads(
    db: &Database,
    patterns: &[CacheAside],
    key: &str,
    statement: &Statement,
    options: &CacheAsideOptions,
    tasks: u64,
    progress: &dyn RunProgress,
) -> Result<TimedReads> {
    let runs = options.runs;
    let keep_records = runs <= PER_RUN_LIMIT && tasks == 1;
    let interval = options.interval;
    progress.phase("reads", Some(runs));
    let done = StepCounter::default();
    let next_run = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // One recorder shared by every task (the runtime has one thread, so the lock is never
    // contended): 50 tasks' own histograms did not fit in the CPU cache together. Recording
    // every sample into one histogram gives the same counts, so the same percentiles, as
    // merging 50 (unit test `one_shared_recorder_gives_the_percentiles_of_merged_ones`).
    let shared = Arc::new(std::sync::Mutex::new(TimedReads::default()));
    let mut workers = tokio::task::JoinSet::new();
    for task in 0..tasks as usize {
        let pattern = patterns[task % patterns.len()].clone();
        let key = key.to_string();
        let statement = statement.clone();
        let next_run = Arc::clone(&next_run);
        let done = done.clone();
        let shared = Arc::clone(&shared);
        let valkey = match &pattern.cache {
            CacheLink::Connected(valkey) => Some(valkey.clone()),
            _ => None,
        };
        let db = db.clone();
        workers.spawn(async move {
            // Each task keeps one connection for the whole run.
            let mut session = db.session_for(&statement).await?;
            loop {
                let run = next_run.fetch_add(1, Ordering::Relaxed);
                if run >= runs {
                    return Ok::<_, WorkshopError>(());
                }
                let read = pattern.read(&mut session, &key, &statement).await?;
                // Reading the TTL is not part of the timed operation.
                let ttl_left = match (&valkey, keep_records) {
                    (Some(valkey), true) => valkey.ttl(&key).await.ok().flatten(),
                    _ => None,
                };
                lock(&shared).add(run + 1, read, ttl_left, keep_records);
                done.add(1);
                if !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
            }
        });
    }
    let joined = relay(progress, &done, async {
        while let Some(joined) = workers.join_next().await {
            joined.map_err(|e| WorkshopError::Other(e.into()))??;
        }
        Ok::<_, WorkshopError>(())
    })
    .await;
    progress.finish_phase();
    joined?;
    let mut total = std::mem::take(&mut *lock(&shared));
    total.wall_time = started.elapsed();
    total.records.sort_by_key(|r| r.run);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exercises::queries::{parse_params, BuiltinQuery};

    #[test]
    fn params_are_parsed_and_typed() {
        let params = parse_params(&["id=3797".into(), "icao=FSFA".into(), "code:text=007".into()]).unwrap();
        assert_eq!(params["id"], SqlValue::Int(3797));
        assert_eq!(params["icao"], SqlValue::Text("FSFA".into()));
        assert_eq!(params["code"], SqlValue::Text("007".into()));
    }

    #[test]
    fn a_value_may_contain_an_equals_sign() {
        let params = parse_params(&["q=a=b".into()]).unwrap();
        assert_eq!(params["q"], SqlValue::Text("a=b".into()));
    }

    #[test]
    fn malformed_params_are_rejected_with_the_form_expected() {
        let err = parse_params(&["id".into()]).unwrap_err();
        assert_eq!(err.to_string(), "--param 'id' needs the form name=value");
        let err = parse_params(&["1x=2".into()]).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("--param name '1x' may use only ASCII letters"));
        let err = parse_params(&["a=1".into(), "a=2".into()]).unwrap_err();
        assert_eq!(err.to_string(), "--param a is given twice");
    }

    #[test]
    fn one_shared_recorder_gives_the_percentiles_of_merged_ones() {
        let rows = ResultSet {
            columns: vec!["n".into()],
            rows: vec![vec![serde_json::json!(1)]],
        };
        let hit = |micros: u64| Read {
            source: ReadSource::Cache,
            latency: Duration::from_nanos(micros * 1000 + micros % 7),
            cache_write: None,
            cache_error: None,
            rows: rows.clone(),
        };
        // 50 tasks' samples, spread from 10 µs to past the recorder's first range (1 ms).
        let samples: Vec<u64> = (0..5000u64).map(|i| 10 + (i * 7919) % 3000).collect();
        let mut shared = TimedReads::default();
        let mut per_task: Vec<LatencyRecorder> = (0..50).map(|_| LatencyRecorder::new()).collect();
        for (i, micros) in samples.iter().enumerate() {
            shared.add(i as u64 + 1, hit(*micros), None, false);
            per_task[i % 50].record(hit(*micros).latency);
        }
        let mut merged = LatencyRecorder::new();
        for part in &per_task {
            merged.merge(part);
        }
        let (one, many) = (shared.cache.summary().unwrap(), merged.summary().unwrap());
        assert_eq!(one.count, 5000);
        assert_eq!(serde_json::to_value(one).unwrap(), serde_json::to_value(many).unwrap());
        assert_eq!(shared.sources["cache"], 5000);
        assert!(!shared.hits_differ);
    }

    #[test]
    fn zero_runs_or_concurrency_are_rejected() {
        let options = |runs, concurrency| CacheAsideOptions {
            query: QueryChoice::Builtin {
                query: BuiltinQuery::Airport,
                id: 3797,
            },
            runs,
            warmup: 0,
            fresh: false,
            concurrency,
            no_cache: false,
            baseline: None,
            interval: Duration::ZERO,
            connections: 1,
        };
        assert_eq!(
            validate(&options(0, 1)).unwrap_err().to_string(),
            "--runs must be from 1 to 10000000 (got 0)"
        );
        assert!(validate(&options(1, 0)).is_err());
        assert!(validate(&options(10, 1)).is_ok());
    }
}
