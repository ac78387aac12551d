//! Timed reads through L1 → L2 → database: one product (`--id`) or a
//! workload over many (`--requests --keys --skew`), optionally after warming.
//! Each read is filed under the layer that served it; the request counts go
//! to Valkey afterwards, in one pipeline, outside the timing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use super::layers::{LayerLatencies, LayerMicros, LayerRecorders, ServedBy, Speedups};
use super::setup::{
    counter_warnings, existing_product, open_cache, open_database, read_product, warm_pools, CacheSettings, CacheSide,
    DatabaseSide, ProductRange, Setup,
};
use super::workload::Workload;
use super::{warm, Plan, ReadTarget, Reads, DEFAULT_KEYS};
use crate::cache::popularity::RequestCounts;
use crate::cache::two_level::{CounterSnapshot, Layer, Served};
use crate::cache::CacheError;
use crate::config::Config;
use crate::db::products::ProductRow;
use crate::db::{Database, DbError};
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::{relay, RunProgress, StepCounter};
use crate::exercises::Verdict;
use crate::measure::{self, Distribution};

/// Up to this many reads (one task), each read is listed.
pub const PER_RUN_LIMIT: u64 = 20;
/// Progress bars appear from this many reads on.
const PROGRESS_FROM: u64 = 100;
/// Loads in flight while warming.
const WARM_PARALLEL: u64 = 8;
/// Distinct failure messages kept for the warnings.
const FAILURES_KEPT: usize = 3;

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    pub run: u64,
    pub product_id: i64,
    pub layer: Layer,
    #[serde(serialize_with = "crate::measure::as_micros", rename = "latency_us")]
    pub latency: Duration,
    pub price: Option<Decimal>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadDescription {
    /// `--id`: every request reads this product.
    pub product_id: Option<i64>,
    /// Otherwise ids 1..=keys (id 1 the most popular when skewed).
    pub keys: u64,
    pub skew: Option<f64>,
    /// The share of requests the 10 most popular ids get, by the distribution.
    pub top_10_share: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadReport {
    pub workload: WorkloadDescription,
    pub requests: u64,
    pub served: u64,
    pub failed_requests: u64,
    /// Why requests failed (the first few distinct messages).
    pub failures: Vec<String>,
    /// Reads whose id has no row (the absence is cached too).
    pub not_found: u64,
    pub concurrency: u64,
    #[serde(serialize_with = "measure::as_millis", rename = "interval_ms")]
    pub interval: Duration,
    /// With `--id`: the product as the last read served it.
    pub product: Option<ProductRow>,
    pub runs: Vec<RunRecord>,
    pub served_by: ServedBy,
    pub layers: LayerLatencies,
    /// The same summaries in microseconds (what the text table shows).
    pub layers_us: LayerMicros,
    pub speedup: Speedups,
    pub distinct_products: u64,
    #[serde(serialize_with = "measure::as_millis", rename = "wall_time_ms")]
    pub wall_time: Duration,
    pub throughput_per_second: f64,
    pub distribution: Option<Distribution>,
}

/// The request counts written to Valkey after the timed reads.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CountsWritten {
    pub key: String,
    pub products: u64,
    pub requests: u64,
    #[serde(serialize_with = "measure::as_millis", rename = "elapsed_ms")]
    pub elapsed: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReadOutcome {
    pub exercise: &'static str,
    pub mode: &'static str,
    pub database: String,
    pub products: ProductRange,
    pub cache: CacheSettings,
    pub setup: Setup,
    pub warm: Option<warm::WarmReport>,
    pub reads: Option<ReadReport>,
    /// What each layer did in this process (warming and reads).
    pub counters: CounterSnapshot,
    pub l1_entries: u64,
    pub request_counts: Option<CountsWritten>,
    /// Timeouts and circuit-breaker openings of the Valkey connection.
    pub valkey_faults: Option<crate::cache::BreakerCounts>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub verdict: Verdict,
}

pub(super) async fn measure(
    config: &Config,
    plan: &Plan,
    warm: Option<u64>,
    reads: Option<Reads>,
    progress: &dyn RunProgress,
) -> Result<ReadOutcome> {
    let tasks = reads.as_ref().map_or(1, |r| r.concurrency.min(r.requests));
    let pool = if warm.is_some() {
        tasks.max(WARM_PARALLEL)
    } else {
        tasks
    };
    let side = open_database(config, pool).await?;
    let span = side.products.span();
    if let Some(n) = warm.filter(|n| *n > span) {
        return Err(WorkshopError::invalid(format!(
            "--warm {n} is more than the {span} products; use at most {span}"
        )));
    }
    let target = match &reads {
        Some(reads) => Some(resolve(&side, reads.target).await?),
        None => None,
    };

    let mut caches = open_cache(config, plan.cache, warm.is_some(), reads.is_some()).await?;
    let pool_warm_up = warm_pools(&side.db, caches.valkey.as_ref(), pool).await?;
    let counts = caches
        .valkey
        .clone()
        .map(|valkey| RequestCounts::new(valkey, caches.keys.product_requests()));

    let warm_report = match (warm, &counts) {
        (Some(n), Some(counts)) => Some(warm::run(&side, &caches, counts, n, WARM_PARALLEL).await?),
        _ => None,
    };

    let mut request_counts = None;
    let read_report = match (&reads, target) {
        (Some(reads), Some(target)) => {
            let timed = timed_reads(&side.db, &caches, Arc::new(target.ids), reads, tasks, progress).await?;
            if let Some(counts) = &counts {
                match write_counts(counts, &timed.counts).await {
                    Ok(written) => request_counts = Some(written),
                    Err(error) => caches
                        .warnings
                        .push(format!("the request counts were not recorded: {error}")),
                }
            }
            Some(timed.report(target.description, reads, tasks, target.product))
        }
        _ => None,
    };

    let counters = caches.cache.counters().snapshot();
    let mut warnings = std::mem::take(&mut caches.warnings);
    warnings.extend(counter_warnings(&counters, caches.valkey.as_ref()));
    if let Some(reads) = read_report.as_ref().filter(|r| r.failed_requests > 0) {
        warnings.push(format!(
            "{} of {} requests failed: {}",
            reads.failed_requests,
            reads.requests,
            reads.failures.join("; ")
        ));
    }
    let mut outcome = ReadOutcome {
        exercise: "multi-level",
        mode: if read_report.is_some() { "read" } else { "warm" },
        database: side.server.clone(),
        products: side.products,
        cache: caches.settings.clone(),
        setup: Setup::of(&side, &caches, caches.subscribe, pool_warm_up),
        warm: warm_report,
        reads: read_report,
        counters,
        l1_entries: caches.cache.l1_entries().await,
        request_counts,
        valkey_faults: caches.valkey.as_ref().map(crate::cache::Valkey::breaker_counts),
        warnings,
        verdict: Verdict::Complete,
    };
    drop(caches.listener.take());
    side.db.close().await;
    if let Err(error) = finish_reads(&outcome) {
        outcome.verdict = Verdict::failed(error);
    }
    Ok(outcome)
}

/// What the reads read, checked against the catalogue before anything is written.
struct Target {
    ids: Ids,
    description: WorkloadDescription,
    /// With `--id`: the row as stored now.
    product: Option<ProductRow>,
}

async fn resolve(side: &DatabaseSide, target: ReadTarget) -> Result<Target> {
    match target {
        ReadTarget::One(id) => Ok(Target {
            ids: Ids::One(id),
            description: WorkloadDescription {
                product_id: Some(id),
                keys: 1,
                skew: None,
                top_10_share: None,
            },
            product: Some(existing_product(side, id).await?),
        }),
        ReadTarget::Workload { keys, skew } => {
            let span = side.products.span();
            let keys = match keys {
                Some(k) if k > span => {
                    return Err(WorkshopError::invalid(format!(
                        "--keys {k} is more than the {span} products; use at most {span}"
                    )))
                }
                Some(k) => k,
                None => DEFAULT_KEYS.min(span),
            };
            let workload = Workload::new(keys, skew);
            Ok(Target {
                description: WorkloadDescription {
                    product_id: None,
                    keys,
                    skew: Some(skew),
                    top_10_share: Some(workload.share_of_top(10)),
                },
                ids: Ids::Workload(workload, side.products.first_id),
                product: None,
            })
        }
    }
}

/// Adds this run's requests per product to the sorted set, after the timed reads.
async fn write_counts(counts: &RequestCounts, per_product: &BTreeMap<i64, u64>) -> Result<CountsWritten, CacheError> {
    let started = Instant::now();
    counts.add(per_product).await?;
    Ok(CountsWritten {
        key: counts.key().to_string(),
        products: per_product.len() as u64,
        requests: per_product.values().sum(),
        elapsed: started.elapsed(),
    })
}

/// A run where some reads failed still shows its tables, then says so.
fn finish_reads(outcome: &ReadOutcome) -> Result<()> {
    let Some(reads) = &outcome.reads else {
        return Ok(());
    };
    if reads.failed_requests > 0 {
        return Err(WorkshopError::incomplete(format!(
            "{} of {} requests failed because the database did not answer (see the warning above)",
            reads.failed_requests, reads.requests
        )));
    }
    Ok(())
}

/// Request number → product id.
enum Ids {
    One(i64),
    /// The workload's ids are 1..=K; shifted to start at the catalogue's first id.
    Workload(Workload, i64),
}

impl Ids {
    fn id(&self, request: u64) -> i64 {
        match self {
            Ids::One(id) => *id,
            Ids::Workload(workload, first_id) => workload.product_id(request) + first_id - 1,
        }
    }
}

/// What the timed reads of all tasks add up to.
#[derive(Default)]
struct TimedReads {
    layers: LayerRecorders,
    failed: u64,
    failures: Vec<String>,
    not_found: u64,
    records: Vec<RunRecord>,
    counts: BTreeMap<i64, u64>,
    last_product: Option<ProductRow>,
    wall_time: Duration,
}

impl TimedReads {
    fn add(&mut self, run: u64, id: i64, read: Result<Served<ProductRow>, DbError>, keep: bool) {
        *self.counts.entry(id).or_default() += 1;
        let served = match read {
            Ok(served) => served,
            Err(error) => {
                self.failed += 1;
                let message = error.to_string();
                if self.failures.len() < FAILURES_KEPT && !self.failures.contains(&message) {
                    self.failures.push(message);
                }
                return;
            }
        };
        self.layers.record(served.layer, served.latency);
        let row = served.value.as_ref().as_ref();
        if row.is_none() {
            self.not_found += 1;
        }
        if keep {
            self.records.push(RunRecord {
                run,
                product_id: id,
                layer: served.layer,
                latency: served.latency,
                price: row.map(|r| r.price),
            });
        }
        if let Some(row) = row {
            self.last_product = Some(row.clone());
        }
    }

    fn merge(&mut self, other: TimedReads) {
        self.layers.merge(&other.layers);
        self.failed += other.failed;
        for message in other.failures {
            if self.failures.len() < FAILURES_KEPT && !self.failures.contains(&message) {
                self.failures.push(message);
            }
        }
        self.not_found += other.not_found;
        self.records.extend(other.records);
        for (id, n) in other.counts {
            *self.counts.entry(id).or_default() += n;
        }
        if other.last_product.is_some() {
            self.last_product = other.last_product;
        }
    }

    fn report(
        mut self,
        workload: WorkloadDescription,
        reads: &Reads,
        tasks: u64,
        product: Option<ProductRow>,
    ) -> ReadReport {
        self.records.sort_by_key(|r| r.run);
        let layers = self.layers.latencies();
        let served_by = self.layers.served_by();
        let served = served_by.total();
        ReadReport {
            requests: reads.requests,
            served,
            failed_requests: self.failed,
            not_found: self.not_found,
            concurrency: tasks,
            interval: reads.interval,
            // The product as served at the end (the row read first when nothing was served).
            product: workload.product_id.and(self.last_product.or(product)),
            workload,
            runs: self.records,
            served_by,
            failures: self.failures,
            speedup: Speedups::of(&layers),
            layers_us: layers.micros(),
            layers,
            distinct_products: self.counts.len() as u64,
            wall_time: self.wall_time,
            throughput_per_second: served as f64 / self.wall_time.as_secs_f64().max(1e-9),
            distribution: self.layers.distribution(),
        }
    }
}

async fn timed_reads(
    db: &Database,
    caches: &CacheSide,
    ids: Arc<Ids>,
    reads: &Reads,
    tasks: u64,
    progress: &dyn RunProgress,
) -> Result<TimedReads> {
    let requests = reads.requests;
    let keep_records = requests <= PER_RUN_LIMIT && tasks == 1;
    let shown = requests >= PROGRESS_FROM;
    if shown {
        progress.phase("reads", Some(requests));
    }
    let done = StepCounter::default();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (db, cache, keys) = (db.clone(), caches.cache.clone(), caches.keys.clone());
        let (ids, next, done, pause) = (Arc::clone(&ids), Arc::clone(&next), done.clone(), reads.interval);
        workers.spawn(async move {
            let mut mine = TimedReads::default();
            loop {
                let request = next.fetch_add(1, Ordering::Relaxed);
                if request >= requests {
                    return Ok(mine);
                }
                let id = ids.id(request);
                let read = read_product(&cache, &db, &keys, id).await;
                // A lost database fails every later read too, each after the
                // pool's connect timeout: stop at the first, like the other commands.
                if let Err(DbError::Unreachable { target, reason }) = &read {
                    return Err(DbError::Unreachable {
                        target: target.clone(),
                        reason: format!(
                            "lost during the timed reads, at request {} of {requests} ({reason})",
                            request + 1
                        ),
                    });
                }
                mine.add(request + 1, id, read, keep_records);
                done.add(1);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        });
    }
    let joined = relay(progress, &done, async {
        let mut total = TimedReads::default();
        while let Some(joined) = workers.join_next().await {
            // On an error, dropping `workers` stops the other tasks.
            total.merge(joined.map_err(|e| WorkshopError::Other(e.into()))??);
        }
        Ok::<_, WorkshopError>(total)
    })
    .await;
    if shown {
        progress.finish_phase();
    }
    let mut total = joined?;
    total.wall_time = started.elapsed();
    Ok(total)
}
