//! The workload: tasks asking the two-level cache for products, with keys
//! drawn uniformly or by Zipf popularity, for a number of requests or a
//! number of seconds, optionally paced to a rate. Every request is timed by
//! the cache (the whole read as the caller waits for it) and counted by the
//! source that answered, per second too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::cache::two_level::{CounterSnapshot, Layer, TwoLevelCache};
use crate::cache::{BreakerCounts, KeyScheme};
use crate::db::products::ProductRow;
use crate::db::Database;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::{relay, RunProgress, StepCounter};
use crate::measure::buckets::LatencyBuckets;
use crate::measure::timeline::{SecondStats, Timeline};
use crate::measure::zipf::KeySampler;
use crate::rng::SplitMix64;
// Shared with multi-level (candidate for src/measure once that file is free).
use crate::measure::MicrosSummary;
use crate::measure::{self, LatencyRecorder, LatencySummary};

use super::writes::{price_from, Freshness, ReadCheck, WriteMix, WriteMode, WriteStats};

/// Values whose JSON size is measured, for the L1 size estimate.
const SIZE_SAMPLES: u64 = 1000;
/// The random stream of the workload; each task draws from its own row of it,
/// so the same options ask for the same keys in every run.
const KEY_STREAM: u64 = 0x5747_4154_5333;
/// The stream that decides read or write, and the new prices.
const WRITE_STREAM: u64 = 0x5747_5752_4954;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    AfterRequests(u64),
    AfterTime(Duration),
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub stop: Stop,
    /// Requests per second for all tasks together; `None`: as fast as they go.
    pub rate: Option<f64>,
    pub concurrency: u64,
    pub sampler: Arc<KeySampler>,
    /// `--read-ratio` below 100: some requests write.
    pub writes: Option<WriteMix>,
}

/// Requests counted by the source that answered them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServedCounts {
    pub l1: u64,
    pub l2: u64,
    pub database: u64,
}

/// Hit rates as fractions (0.0 to 1.0); `None` for a layer that was not asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct HitRates {
    /// Requests answered by any cache / all requests.
    pub overall: Option<f64>,
    /// L1 hits / L1 lookups.
    pub l1: Option<f64>,
    /// L2 hits / requests that reached L2 (every L1 miss does; a failed GET is not a hit).
    pub l2: Option<f64>,
}

impl HitRates {
    /// `l2_asked`: the run had a Valkey connection. Lookups are counted from
    /// requests, not from `l2_errors`, which also counts failed SETs.
    pub fn from_counters(requests: u64, c: &CounterSnapshot, l2_asked: bool) -> HitRates {
        let rate = |hits: u64, lookups: u64| (lookups > 0).then(|| hits as f64 / lookups as f64);
        HitRates {
            overall: rate(c.l1_hits + c.l2_hits, requests),
            l1: rate(c.l1_hits, c.l1_hits + c.l1_misses),
            l2: if l2_asked {
                rate(c.l2_hits, l2_lookups(requests, c))
            } else {
                None
            },
        }
    }
}

/// Requests that reached L2: all those L1 did not answer.
pub fn l2_lookups(requests: u64, c: &CounterSnapshot) -> u64 {
    requests.saturating_sub(c.l1_hits)
}

/// Response times by the source that answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceLatency {
    pub all: Option<LatencySummary>,
    pub l1: Option<LatencySummary>,
    pub l2: Option<LatencySummary>,
    pub database: Option<LatencySummary>,
}

impl SourceLatency {
    /// The same summaries in microseconds: an L1 hit takes less than one, which
    /// milliseconds with three decimals would show as 0.000.
    pub fn micros(&self) -> SourceMicros {
        let convert = |summary: &Option<LatencySummary>| summary.as_ref().map(MicrosSummary::from);
        SourceMicros {
            all: convert(&self.all),
            l1: convert(&self.l1),
            l2: convert(&self.l2),
            database: convert(&self.database),
        }
    }
}

/// [`SourceLatency`] in microseconds (`latency_us` in `--json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceMicros {
    pub all: Option<MicrosSummary>,
    pub l1: Option<MicrosSummary>,
    pub l2: Option<MicrosSummary>,
    pub database: Option<MicrosSummary>,
}

/// The same latencies in fixed buckets, for the Prometheus histogram.
#[derive(Debug, Clone, Default)]
pub struct SourceBuckets {
    pub l1: LatencyBuckets,
    pub l2: LatencyBuckets,
    pub database: LatencyBuckets,
}

/// How big L1 was at the end: entries × the average JSON size of a product.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct L1Size {
    pub entries: u64,
    pub average_entry_bytes: f64,
    /// An estimate: the process spends more per entry than the JSON text.
    pub estimated_bytes: u64,
}

/// Everything one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunStats {
    pub requests: u64,
    #[serde(serialize_with = "measure::as_millis", rename = "wall_time_ms")]
    pub wall_time: Duration,
    pub throughput_per_second: f64,
    /// The two-level cache's own counters.
    pub counters: CounterSnapshot,
    pub served: ServedCounts,
    pub hit_rate: HitRates,
    pub latency: SourceLatency,
    pub latency_us: SourceMicros,
    pub l1_size: Option<L1Size>,
    /// Valkey timeouts and circuit-breaker openings over the run.
    pub valkey_faults: Option<BreakerCounts>,
    /// The writes of a mixed run (`--read-ratio`); `requests` above counts the reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes: Option<WriteStats>,
    pub timeline: Vec<SecondStats>,
    #[serde(skip)]
    pub durations: SourceBuckets,
}

/// What the tasks record, shared (one lock per request: the runtime has one
/// thread, so the lock is never contended).
#[derive(Default)]
struct Recorded {
    all: LatencyRecorder,
    l1: LatencyRecorder,
    l2: LatencyRecorder,
    database: LatencyRecorder,
    buckets: SourceBuckets,
    served: ServedCounts,
    timeline: Timeline,
    json_bytes: u64,
    json_samples: u64,
    writes: LatencyRecorder,
    freshness: Freshness,
    stale_reads: u64,
    unjudged_reads: u64,
    cache_step_failures: u64,
    changed: std::collections::BTreeSet<i64>,
}

impl Recorded {
    fn add(&mut self, layer: Layer, latency: Duration, finished_at: Duration, json_size: Option<usize>) {
        self.all.record(latency);
        let (recorder, buckets, served) = match layer {
            Layer::L1 => (&mut self.l1, &mut self.buckets.l1, &mut self.served.l1),
            Layer::L2 => (&mut self.l2, &mut self.buckets.l2, &mut self.served.l2),
            Layer::Database => (
                &mut self.database,
                &mut self.buckets.database,
                &mut self.served.database,
            ),
        };
        recorder.record(latency);
        buckets.record(latency);
        *served += 1;
        self.timeline.record(finished_at, latency, layer != Layer::Database);
        if let Some(size) = json_size {
            self.json_bytes += size as u64;
            self.json_samples += 1;
        }
    }
}

/// Runs the workload against `cache` (whose database loader is `db.product`).
pub async fn run(
    workload: &Workload,
    cache: &TwoLevelCache<ProductRow>,
    db: &Database,
    keys: &KeyScheme,
    progress: &dyn RunProgress,
) -> Result<RunStats> {
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // The breaker's counts at every whole second, for the timeline.
    let marks = Arc::new(Mutex::new(Vec::new()));
    let ticker = cache.l2().cloned().map(|valkey| {
        let marks = Arc::clone(&marks);
        tokio::spawn(async move {
            for second in 0u32.. {
                tokio::time::sleep_until(started + Duration::from_secs(u64::from(second))).await;
                let counts = valkey.breaker_counts();
                marks
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(counts);
            }
        })
    });
    let done = StepCounter::default();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..workload.concurrency {
        let workload = workload.clone();
        let cache = cache.clone();
        let db = db.clone();
        let keys = keys.clone();
        let recorded = Arc::clone(&recorded);
        let next = Arc::clone(&next);
        let done = done.clone();
        tasks.spawn(async move {
            let mut rng = SplitMix64::for_row(KEY_STREAM, task);
            let mut mix_rng = SplitMix64::for_row(WRITE_STREAM, task);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if !may_start(&workload, index, started).await {
                    return Ok::<(), WorkshopError>(());
                }
                let id = workload.sampler.sample(&mut rng) as i64;
                let key = keys.product(id);
                if let Some(mix) = workload.writes {
                    if !mix_rng.percent(mix.read_ratio) {
                        write(&cache, &db, &key, id, mix.mode, mix_rng.next_u64(), &recorded, started).await?;
                        match workload.stop {
                            Stop::AfterRequests(_) => done.add(1),
                            Stop::AfterTime(_) => done.raise_to(started.elapsed().as_secs()),
                        }
                        continue;
                    }
                }
                let read_started = Instant::now();
                let served = cache.get(&key, || db.product(id)).await?;
                let finished_at = started.elapsed();
                if workload.writes.is_some() {
                    let price = served.value.as_ref().as_ref().map(|row| row.price);
                    let mut recorded = recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    match recorded.freshness.check(id, read_started, price) {
                        ReadCheck::Fresh => {}
                        ReadCheck::Stale => recorded.stale_reads += 1,
                        ReadCheck::Unknown => recorded.unjudged_reads += 1,
                    }
                }
                // Measured after the timed read, for the L1 size estimate only.
                let json_size = (index < SIZE_SAMPLES)
                    .then(|| serde_json::to_string(served.value.as_ref()).map_or(0, |text| text.len()));
                recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).add(
                    served.layer,
                    served.latency,
                    finished_at,
                    json_size,
                );
                match workload.stop {
                    Stop::AfterRequests(_) => done.add(1),
                    Stop::AfterTime(_) => done.raise_to(finished_at.as_secs()),
                }
            }
        });
    }
    relay(progress, &done, async {
        while let Some(joined) = tasks.join_next().await {
            // The first failure (the database) ends the run; dropping `tasks` stops the others.
            joined.map_err(|e| WorkshopError::Other(e.into()))??;
        }
        Ok::<(), WorkshopError>(())
    })
    .await?;
    let wall_time = started.elapsed();
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    let final_faults = cache.l2().map(crate::cache::Valkey::breaker_counts);
    let marks = std::mem::take(&mut *marks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let recorded = std::mem::take(&mut *recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    let counters = cache.counters().snapshot();
    let l1_entries = cache.l1_entries().await;
    let requests = recorded.all.count();
    let l1_size = (counters.l1_hits + counters.l1_misses > 0).then(|| {
        let average = if recorded.json_samples > 0 {
            recorded.json_bytes as f64 / recorded.json_samples as f64
        } else {
            0.0
        };
        L1Size {
            entries: l1_entries,
            average_entry_bytes: (average * 10.0).round() / 10.0,
            estimated_bytes: (average * l1_entries as f64).round() as u64,
        }
    });
    let latency = SourceLatency {
        all: recorded.all.summary(),
        l1: recorded.l1.summary(),
        l2: recorded.l2.summary(),
        database: recorded.database.summary(),
    };
    Ok(RunStats {
        requests,
        wall_time,
        throughput_per_second: requests as f64 / wall_time.as_secs_f64().max(1e-9),
        hit_rate: HitRates::from_counters(requests, &counters, cache.l2().is_some()),
        counters,
        served: recorded.served,
        latency_us: latency.micros(),
        latency,
        l1_size,
        valkey_faults: final_faults.map(|last| last.since(marks.first().unwrap_or(&last))),
        writes: workload.writes.map(|mix| WriteStats {
            mode: mix.mode,
            read_ratio: mix.read_ratio,
            reads: requests,
            writes: recorded.writes.count(),
            latency: recorded.writes.summary(),
            stale_reads: recorded.stale_reads,
            unjudged_reads: recorded.unjudged_reads,
            cache_step_failures: recorded.cache_step_failures,
            products_changed: recorded.changed.len() as u64,
        }),
        timeline: match final_faults {
            Some(last) => with_faults(recorded.timeline.finish(wall_time), &marks, last),
            None => recorded.timeline.finish(wall_time),
        },
        durations: recorded.buckets,
    })
}

/// One write of a mixed run: the price in the database (a transaction with
/// its ledger row), then the cache step of `mode`; timed as a whole. A cache
/// step Valkey refuses is counted, and a write-through that failed deletes the
/// old entry instead (as `multi-level --update` does), so no old row stays.
#[allow(clippy::too_many_arguments)]
async fn write(
    cache: &TwoLevelCache<ProductRow>,
    db: &Database,
    key: &str,
    id: i64,
    mode: WriteMode,
    draw: u64,
    recorded: &Mutex<Recorded>,
    started: Instant,
) -> Result<()> {
    let began = Instant::now();
    let Some(row) = db.update_product_price(id, price_from(draw)).await? else {
        // A product deleted meanwhile: nothing was written, nothing to count.
        return Ok(());
    };
    let committed = Instant::now();
    let errors = cache.counters().snapshot().l2_errors;
    let price = row.price;
    let cache_ok = match mode {
        WriteMode::WriteThrough => {
            cache.put(key, Some(row)).await;
            let stored = cache.counters().snapshot().l2_errors == errors;
            if !stored {
                let _ = cache.remove(key).await;
            }
            stored
        }
        WriteMode::Invalidate => cache.remove(key).await.is_ok(),
    };
    let latency = began.elapsed();
    let mut recorded = recorded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    recorded.writes.record(latency);
    recorded.timeline.record_write(started.elapsed());
    recorded.freshness.committed(id, committed, price);
    recorded.changed.insert(id);
    if !cache_ok {
        recorded.cache_step_failures += 1;
    }
    Ok(())
}

/// Fills each second's Valkey faults from the breaker's counts at every
/// whole second (`marks[n]`: at n s) and at the end (`last`); the last
/// second takes everything after its start.
fn with_faults(mut seconds: Vec<SecondStats>, marks: &[BreakerCounts], last: BreakerCounts) -> Vec<SecondStats> {
    let count = seconds.len();
    for (index, second) in seconds.iter_mut().enumerate() {
        let at = |n: usize| marks.get(n).copied().unwrap_or(last);
        let start = at(second.second as usize);
        let end = if index + 1 == count {
            last
        } else {
            at(second.second as usize + 1)
        };
        second.valkey_faults = end.since(&start);
    }
    seconds
}

/// Whether request number `index` (0-based) is sent, waiting for its slot
/// when the workload is paced.
async fn may_start(workload: &Workload, index: u64, started: Instant) -> bool {
    if let Stop::AfterRequests(total) = workload.stop {
        if index >= total {
            return false;
        }
    }
    if let Some(rate) = workload.rate {
        let due = Duration::from_secs_f64(index as f64 / rate);
        if let Stop::AfterTime(limit) = workload.stop {
            if due >= limit {
                return false;
            }
        }
        tokio::time::sleep_until(started + due).await;
    }
    match workload.stop {
        Stop::AfterTime(limit) => started.elapsed() < limit,
        Stop::AfterRequests(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_l2_hit_rate_counts_every_request_that_reached_l2() {
        // 40 L1 misses reached L2: 20 hits, 10 misses, 10 failed GETs; 5 failed SETs on top.
        let counters = CounterSnapshot {
            l1_hits: 60,
            l1_misses: 40,
            l2_hits: 20,
            l2_misses: 10,
            l2_errors: 15,
            database_loads: 20,
            ..CounterSnapshot::default()
        };
        let rates = HitRates::from_counters(100, &counters, true);
        assert_eq!(rates.overall, Some(0.8));
        assert_eq!(rates.l1, Some(0.6));
        assert_eq!(rates.l2, Some(0.5));
        assert_eq!(l2_lookups(100, &counters), 40);
    }

    #[test]
    fn a_layer_that_was_not_asked_has_no_hit_rate() {
        let counters = CounterSnapshot {
            l2_hits: 5,
            l2_misses: 5,
            database_loads: 5,
            ..CounterSnapshot::default()
        };
        let rates = HitRates::from_counters(10, &counters, true);
        assert_eq!(rates.l1, None);
        assert_eq!(rates.l2, Some(0.5));
        let without_valkey = CounterSnapshot {
            l1_hits: 3,
            l1_misses: 7,
            database_loads: 7,
            ..CounterSnapshot::default()
        };
        assert_eq!(HitRates::from_counters(10, &without_valkey, false).l2, None);
        assert_eq!(
            HitRates::from_counters(0, &CounterSnapshot::default(), true).overall,
            None
        );
    }

    #[test]
    fn recording_sorts_requests_by_source() {
        let mut recorded = Recorded::default();
        recorded.add(Layer::L1, Duration::from_micros(5), Duration::from_millis(1), Some(300));
        recorded.add(
            Layer::Database,
            Duration::from_millis(1),
            Duration::from_millis(2),
            Some(500),
        );
        recorded.add(Layer::L2, Duration::from_micros(200), Duration::from_millis(3), None);
        assert_eq!(
            recorded.served,
            ServedCounts {
                l1: 1,
                l2: 1,
                database: 1
            }
        );
        assert_eq!(recorded.all.count(), 3);
        assert_eq!(recorded.buckets.database.count(), 1);
        assert_eq!((recorded.json_bytes, recorded.json_samples), (800, 2));
    }

    #[test]
    fn each_second_gets_the_faults_that_happened_in_it() {
        let counts = |openings, skipped, timeouts| BreakerCounts {
            openings,
            skipped,
            timeouts,
        };
        let seconds = Timeline::new().finish(Duration::from_millis(2500));
        assert_eq!(seconds.len(), 3);
        let marks = [counts(0, 0, 0), counts(1, 5, 3), counts(1, 9, 3)];
        let filled = with_faults(seconds, &marks, counts(2, 10, 4));
        let faults: Vec<BreakerCounts> = filled.iter().map(|s| s.valkey_faults).collect();
        assert_eq!(faults, [counts(1, 5, 3), counts(0, 4, 0), counts(1, 1, 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_count_stops_the_workload() {
        let workload = Workload {
            stop: Stop::AfterRequests(3),
            rate: None,
            concurrency: 1,
            sampler: Arc::new(KeySampler::new(10, 1.0)),
            writes: None,
        };
        let started = Instant::now();
        assert!(may_start(&workload, 2, started).await);
        assert!(!may_start(&workload, 3, started).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_workload_waits_for_each_slot_and_ends_with_its_time() {
        let workload = Workload {
            stop: Stop::AfterTime(Duration::from_secs(1)),
            rate: Some(100.0),
            concurrency: 1,
            sampler: Arc::new(KeySampler::new(10, 0.0)),
            writes: None,
        };
        let started = Instant::now();
        assert!(may_start(&workload, 5, started).await);
        // On tokio's paused clock: exactly the slot, however busy the machine.
        assert_eq!(started.elapsed(), Duration::from_millis(50), "slot 5 is at 50 ms");
        assert!(
            !may_start(&workload, 100, started).await,
            "slot 100 is at 1 s: past the end"
        );
    }
}
