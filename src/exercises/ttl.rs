//! Exercise 12, `workshop-cli ttl`: an expiry storm and how jitter spreads it.
//!
//! `--keys` products are cached at once, then `--clients` read random ones
//! (cache-aside: a miss loads the row and caches it again) at `--rate` reads
//! per second for `--duration` seconds. Run twice, on keys of their own:
//! first every write lives exactly `--ttl` (the keys expire together, and
//! their refills too), then `--ttl` ± `--ttl-jitter` % (the global option,
//! through [`TtlPolicy`]). Per second: reads, misses (each one a database
//! query), the database's p99 and the most queries in flight; per scenario
//! the peak misses per second and how widely the first expiries spread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};

use crate::cache::{KeyScheme, TtlPolicy, Valkey};
use crate::config::{Config, Source};
use crate::db::products::ProductRow;
use crate::db::Database;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::services::{self, Needs, ValkeyNeed};
use crate::exercises::Outcome;
use crate::measure::{LatencyRecorder, LatencySummary};
use crate::rng::SplitMix64;

/// `--ttl` when it was not given: short enough to watch three storms in 10 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3);
/// `--ttl-jitter` when it was not given (or 0): the jittered scenario needs some.
pub const DEFAULT_JITTER_PERCENT: u8 = 50;
/// Longer lifetimes take too long to watch expire.
pub const MAX_TTL_SECONDS: u64 = 60;
pub const MAX_KEYS: u64 = 100_000;
pub const MAX_CLIENTS: u64 = 256;
pub const MAX_RATE: f64 = 50_000.0;
pub const MAX_DURATION_S: f64 = 600.0;
/// Concurrent writes while the keys are cached "at once".
const WARM_CONCURRENCY: usize = 64;

#[derive(Debug, Clone)]
pub struct TtlOptions {
    pub keys: u64,
    pub clients: u64,
    /// Reads per second of all clients together.
    pub rate: f64,
    /// `None`: three TTLs and a second.
    pub duration_s: Option<f64>,
    pub seed: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TtlOutcome {
    pub exercise: &'static str,
    pub database: String,
    pub cluster: bool,
    pub keys: u64,
    pub clients: u64,
    pub rate: f64,
    pub duration_s: f64,
    #[serde(serialize_with = "crate::measure::as_millis", rename = "ttl_ms")]
    pub ttl: Duration,
    /// Where the TTL came from: "flag", "environment", ... or "exercise default".
    pub ttl_from: String,
    pub jitter_percent: u8,
    pub jitter_from: String,
    /// Without jitter first, then with it.
    pub scenarios: Vec<ScenarioOutcome>,
    /// The jittered peak of misses per second over the unjittered one.
    pub peak_ratio: Option<f64>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioOutcome {
    /// "together" or "jittered".
    pub scenario: &'static str,
    pub jitter_percent: u8,
    #[serde(serialize_with = "crate::measure::as_millis", rename = "shortest_lifetime_ms")]
    pub shortest_lifetime: Duration,
    #[serde(serialize_with = "crate::measure::as_millis", rename = "longest_lifetime_ms")]
    pub longest_lifetime: Duration,
    /// How long caching every key took (the keys' expiries are this far apart at least).
    #[serde(serialize_with = "crate::measure::as_millis", rename = "warm_ms")]
    pub warm: Duration,
    pub reads: u64,
    pub hits: u64,
    /// Each miss is one database query (and one write to Valkey).
    pub misses: u64,
    pub peak_misses_per_second: u64,
    /// The second (from the warm-up) with the peak.
    pub peak_second: u64,
    /// When 5 % and 95 % of the keys had their first miss (s after the warm-up).
    pub first_expiry_p5_s: Option<f64>,
    pub first_expiry_p95_s: Option<f64>,
    /// p95 − p5 of the first misses: how widely the first expiry wave spread.
    pub first_expiry_spread_s: Option<f64>,
    /// Keys that were read after they expired at least once.
    pub keys_expired: u64,
    /// Database query latency of the misses.
    pub database: Option<LatencySummary>,
    pub max_queries_in_flight: u64,
    pub seconds: Vec<StormSecond>,
}

/// One second of a scenario.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StormSecond {
    pub second: u64,
    pub reads: u64,
    pub misses: u64,
    /// p99 of the database queries that started in this second.
    #[serde(serialize_with = "crate::measure::as_optional_millis", rename = "database_p99_ms")]
    pub database_p99: Option<Duration>,
    pub max_queries_in_flight: u64,
}

impl Outcome for TtlOutcome {}

/// The TTL, jitter and run length the exercise uses, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub ttl: Duration,
    pub jitter_percent: u8,
    pub duration: Duration,
}

/// Picks the exercise's TTL and jitter (the global options, or its short
/// defaults) and checks the run can show the storm.
pub fn plan(config: &Config, options: &TtlOptions) -> Result<Plan> {
    if options.keys == 0 || options.keys > MAX_KEYS {
        return Err(WorkshopError::invalid(format!(
            "--keys must be from 1 to {MAX_KEYS} (got {})",
            options.keys
        )));
    }
    if options.clients == 0 || options.clients > MAX_CLIENTS {
        return Err(WorkshopError::invalid(format!(
            "--clients must be from 1 to {MAX_CLIENTS} (got {})",
            options.clients
        )));
    }
    if !(options.rate >= 1.0 && options.rate <= MAX_RATE) {
        return Err(WorkshopError::invalid(format!(
            "--rate must be from 1 to {MAX_RATE} reads per second (got {})",
            options.rate
        )));
    }
    let ttl = if config.ttl_source == Source::Default {
        DEFAULT_TTL
    } else {
        config.ttl
    };
    if ttl.as_secs() > MAX_TTL_SECONDS {
        return Err(WorkshopError::invalid(format!(
            "exercise 12 waits for its keys to expire: --ttl {} s (from {}) is too long to watch; give --ttl 1 to {MAX_TTL_SECONDS}",
            ttl.as_secs(),
            config.ttl_source
        )));
    }
    let jitter_percent = match config.ttl_jitter_percent {
        0 => DEFAULT_JITTER_PERCENT,
        given => given,
    };
    let longest = TtlPolicy::jittered(ttl, jitter_percent).bounds().1;
    let duration = match options.duration_s {
        Some(seconds) => {
            if !(seconds > 0.0 && seconds <= MAX_DURATION_S) {
                return Err(WorkshopError::invalid(format!(
                    "--duration must be above 0 and at most {MAX_DURATION_S} seconds (got {seconds})"
                )));
            }
            Duration::from_secs_f64(seconds)
        }
        None => ttl * 3 + Duration::from_secs(1),
    };
    if duration <= longest {
        return Err(WorkshopError::invalid(format!(
            "--duration {} s ends before every key has expired once (the longest lifetime is {:.1} s: --ttl {} s + {jitter_percent} %); give --duration {} or more",
            duration.as_secs_f64(),
            longest.as_secs_f64(),
            ttl.as_secs(),
            longest.as_secs() + 2
        )));
    }
    Ok(Plan {
        ttl,
        jitter_percent,
        duration,
    })
}

pub async fn measure(config: &Config, options: TtlOptions, progress: &dyn RunProgress) -> Result<TtlOutcome> {
    let plan = plan(config, &options)?;
    progress.phase("connecting", None);
    let (db, _) = services::connect_database(
        config,
        Needs {
            pool_connections: options.clients,
            valkey: ValkeyNeed::Required,
            recording_as: None,
        },
    )
    .await?;
    let valkey = services::valkey(config).await?;
    valkey.round_trip().await?;
    db.warm_up(u32::try_from(options.clients).unwrap_or(u32::MAX)).await?;
    let keys = KeyScheme::new(&config.key_prefix, &config.database);

    progress.phase("loading the products", None);
    let rows = load_products(&db, options.keys).await?;
    let run = format!("{}-{}", std::process::id(), unix_millis());
    let mut warnings = Vec::new();
    let reads_per_key = options.rate / options.keys as f64;
    if reads_per_key < 2.0 {
        warnings.push(format!(
            "each key is read {reads_per_key:.1} times a second: an expired key waits that long for its miss, which blurs the storm; raise --rate or lower --keys"
        ));
    }
    let scenarios = [
        ("together", TtlPolicy::fixed(plan.ttl)),
        ("jittered", TtlPolicy::jittered(plan.ttl, plan.jitter_percent)),
    ];
    let mut outcomes = Vec::new();
    let mut failure = None;
    for (index, (name, policy)) in scenarios.into_iter().enumerate() {
        progress.phase(
            &format!(
                "{name}: {} keys, ttl {} s ± {} %, {:.0} s",
                rows.len(),
                plan.ttl.as_secs(),
                policy.jitter_percent(),
                plan.duration.as_secs_f64()
            ),
            None,
        );
        let storm = Storm {
            db: &db,
            valkey: &valkey,
            rows: &rows,
            key: |id| keys.ttl_storm(&run, name, id),
            policy,
            clients: options.clients,
            rate: options.rate,
            duration: plan.duration,
            seed: options.seed.wrapping_add(index as u64),
        };
        match storm.run(name).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    progress.finish_phase();
    // The run's keys go, whatever happened (they would expire anyway).
    let removed = valkey.delete_prefixed(&keys.ttl_storm_prefix(&run)).await;
    if let Some(error) = failure {
        return Err(error);
    }
    removed?;
    let peak_ratio = match outcomes.as_slice() {
        [together, jittered] if together.peak_misses_per_second > 0 => {
            Some(jittered.peak_misses_per_second as f64 / together.peak_misses_per_second as f64)
        }
        _ => None,
    };
    let from = |source: Source, default: bool| {
        if default {
            "exercise default".to_string()
        } else {
            source.to_string()
        }
    };
    Ok(TtlOutcome {
        exercise: "ttl",
        database: db.kind().label().to_string(),
        cluster: valkey.is_cluster(),
        keys: rows.len() as u64,
        clients: options.clients,
        rate: options.rate,
        duration_s: plan.duration.as_secs_f64(),
        ttl: plan.ttl,
        ttl_from: from(config.ttl_source.clone(), config.ttl_source == Source::Default),
        jitter_percent: plan.jitter_percent,
        jitter_from: if config.ttl_jitter_percent == 0 {
            "exercise default".to_string()
        } else {
            "--ttl-jitter".to_string()
        },
        scenarios: outcomes,
        peak_ratio,
        warnings,
    })
}

/// The first `n` products by id, as cached.
pub(crate) async fn load_products(db: &Database, n: u64) -> Result<Vec<(i64, String)>> {
    let Some((low, high)) = db.product_id_range().await? else {
        return Err(WorkshopError::invalid(
            "the products table is empty; run `workshop-cli seed`",
        ));
    };
    let ids: Vec<i64> = (low..=high).take(usize::try_from(n).unwrap_or(usize::MAX)).collect();
    let rows: Vec<Option<ProductRow>> = futures_util::stream::iter(ids.iter().map(|id| db.product(*id)))
        .buffered(8)
        .try_collect()
        .await?;
    let rows: Vec<(i64, String)> = rows
        .into_iter()
        .flatten()
        .map(|row| (row.id, serde_json::to_string(&row).unwrap_or_default()))
        .collect();
    if (rows.len() as u64) < n {
        return Err(WorkshopError::invalid(format!(
            "--keys {n} asks for more products than the database has ({}); lower --keys or seed more (`workshop-cli seed --scale 1`)",
            rows.len()
        )));
    }
    Ok(rows)
}

struct Storm<'a, K: Fn(i64) -> String> {
    db: &'a Database,
    valkey: &'a Valkey,
    rows: &'a [(i64, String)],
    key: K,
    policy: TtlPolicy,
    clients: u64,
    rate: f64,
    duration: Duration,
    seed: u64,
}

/// One read of a client.
struct ReadEvent {
    /// When the read started, from the warm-up.
    at: Duration,
    index: u32,
    /// The database query of a miss: its latency and how many were in flight with it.
    miss: Option<(Duration, u64)>,
}

impl<K: Fn(i64) -> String> Storm<'_, K> {
    async fn run(&self, name: &'static str) -> Result<ScenarioOutcome> {
        let keys: Vec<String> = self.rows.iter().map(|(id, _)| (self.key)(*id)).collect();
        // Every key is written as close to one instant as the connection allows.
        let origin = Instant::now();
        futures_util::stream::iter(
            keys.iter()
                .zip(self.rows)
                .map(|(key, (_, text))| self.valkey.set_with_ttl(key, text, self.policy.pick())),
        )
        .buffer_unordered(WARM_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
        let warm = origin.elapsed();

        let in_flight = Arc::new(AtomicU64::new(0));
        let interval = Duration::from_secs_f64(self.clients as f64 / self.rate);
        let clients = (0..self.clients).map(|client| {
            let in_flight = in_flight.clone();
            let keys = &keys;
            async move {
                let mut rng = SplitMix64::new(self.seed ^ crate::rng::mix64(client + 1));
                let mut events = Vec::new();
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let at = origin.elapsed();
                    if at >= self.duration {
                        break;
                    }
                    let index = rng.below(keys.len() as u64) as usize;
                    let miss = self.read(&keys[index], self.rows[index].0, &in_flight).await?;
                    events.push(ReadEvent {
                        at,
                        index: index as u32,
                        miss,
                    });
                }
                Ok::<Vec<ReadEvent>, WorkshopError>(events)
            }
        });
        let events: Vec<ReadEvent> = futures_util::future::try_join_all(clients)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let (shortest_lifetime, longest_lifetime) = self.policy.bounds();
        Ok(summarise(
            name,
            self.policy.jitter_percent(),
            (shortest_lifetime, longest_lifetime),
            warm,
            self.duration,
            events,
        ))
    }

    /// Cache-aside: GET; on a miss the row from the database (timed), cached again.
    async fn read(&self, key: &str, id: i64, in_flight: &AtomicU64) -> Result<Option<(Duration, u64)>> {
        if self.valkey.get(key).await?.is_some() {
            return Ok(None);
        }
        let concurrent = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let started = Instant::now();
        let row = self.db.product(id).await;
        let took = started.elapsed();
        in_flight.fetch_sub(1, Ordering::Relaxed);
        let text = serde_json::to_string(&row?).unwrap_or_default();
        self.valkey.set_with_ttl(key, &text, self.policy.pick()).await?;
        Ok(Some((took, concurrent)))
    }
}

/// Per-second counts, the peak and the spread of the first expiries (pure).
fn summarise(
    scenario: &'static str,
    jitter_percent: u8,
    (shortest_lifetime, longest_lifetime): (Duration, Duration),
    warm: Duration,
    duration: Duration,
    events: Vec<ReadEvent>,
) -> ScenarioOutcome {
    let seconds_count = usize::try_from(duration.as_secs_f64().ceil() as u64)
        .unwrap_or(1)
        .max(1);
    let mut seconds: Vec<StormSecond> = (0..seconds_count)
        .map(|second| StormSecond {
            second: second as u64,
            reads: 0,
            misses: 0,
            database_p99: None,
            max_queries_in_flight: 0,
        })
        .collect();
    let mut per_second_db: Vec<LatencyRecorder> = (0..seconds_count).map(|_| LatencyRecorder::new()).collect();
    let mut database = LatencyRecorder::new();
    let mut first_miss: HashMap<u32, Duration> = HashMap::new();
    let (mut reads, mut misses, mut max_in_flight) = (0u64, 0u64, 0u64);
    for event in &events {
        let second = (event.at.as_secs() as usize).min(seconds_count - 1);
        seconds[second].reads += 1;
        reads += 1;
        if let Some((took, concurrent)) = event.miss {
            misses += 1;
            seconds[second].misses += 1;
            seconds[second].max_queries_in_flight = seconds[second].max_queries_in_flight.max(concurrent);
            max_in_flight = max_in_flight.max(concurrent);
            per_second_db[second].record(took);
            database.record(took);
            first_miss
                .entry(event.index)
                .and_modify(|at| *at = (*at).min(event.at))
                .or_insert(event.at);
        }
    }
    for (second, recorder) in seconds.iter_mut().zip(&per_second_db) {
        second.database_p99 = recorder.summary().map(|s| s.p99);
    }
    let (peak_second, peak) = seconds
        .iter()
        .map(|s| (s.second, s.misses))
        .max_by_key(|(second, misses)| (*misses, std::cmp::Reverse(*second)))
        .unwrap_or((0, 0));
    let mut firsts: Vec<f64> = first_miss.values().map(Duration::as_secs_f64).collect();
    firsts.sort_by(f64::total_cmp);
    let quantile = |q: f64| -> Option<f64> {
        let last = firsts.len().checked_sub(1)?;
        let index = ((last as f64) * q).round() as usize;
        firsts.get(index).map(|v| (v * 1000.0).round() / 1000.0)
    };
    let (p5, p95) = (quantile(0.05), quantile(0.95));
    ScenarioOutcome {
        scenario,
        jitter_percent,
        shortest_lifetime,
        longest_lifetime,
        warm,
        reads,
        hits: reads - misses,
        misses,
        peak_misses_per_second: peak,
        peak_second,
        first_expiry_p5_s: p5,
        first_expiry_p95_s: p95,
        first_expiry_spread_s: p5.zip(p95).map(|(a, b)| ((b - a) * 1000.0).round() / 1000.0),
        keys_expired: first_miss.len() as u64,
        database: database.summary(),
        max_queries_in_flight: max_in_flight,
        seconds,
    }
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(at_ms: u64, index: u32, miss: bool) -> ReadEvent {
        ReadEvent {
            at: Duration::from_millis(at_ms),
            index,
            miss: miss.then_some((Duration::from_millis(2), 1)),
        }
    }

    #[test]
    fn the_peak_is_the_second_with_most_misses_and_the_spread_covers_first_misses_only() {
        let mut events = vec![read(100, 0, false), read(200, 1, false)];
        // Keys 0..10 first miss in second 3, all at once; key 0 misses again in second 5.
        events.extend((0..10).map(|i| read(3_000 + i as u64 * 10, i, true)));
        events.push(read(5_500, 0, true));
        let outcome = summarise(
            "together",
            0,
            (Duration::from_secs(3), Duration::from_secs(3)),
            Duration::from_millis(5),
            Duration::from_secs(6),
            events,
        );
        assert_eq!(outcome.seconds.len(), 6);
        assert_eq!(outcome.peak_misses_per_second, 10);
        assert_eq!(outcome.peak_second, 3);
        assert_eq!(outcome.misses, 11);
        assert_eq!(outcome.hits, 2);
        assert_eq!(outcome.keys_expired, 10);
        assert_eq!(outcome.seconds[5].misses, 1);
        assert_eq!(outcome.first_expiry_p5_s, Some(3.0));
        assert_eq!(outcome.first_expiry_p95_s, Some(3.09));
        assert_eq!(outcome.first_expiry_spread_s, Some(0.09));
    }
}
