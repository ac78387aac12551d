//! `CacheStats`: requests per layer, hits, misses and response times, since
//! start and over the last seconds (one bucket per second).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::measure::LatencyRecorder;

/// Where a read was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    L1,
    L2,
    Database,
}

impl Source {
    pub fn header(self) -> &'static str {
        match self {
            Source::L1 => "L1",
            Source::L2 => "L2",
            Source::Database => "DB",
        }
    }

    fn index(self) -> usize {
        match self {
            Source::L1 => 0,
            Source::L2 => 1,
            Source::Database => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    requests: [u64; 3],
    micros: [u64; 3],
    negative: u64,
    errors: u64,
    /// `PUT /products/{id}` answered 200 (not part of `total_requests`, which counts reads).
    writes: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        for i in 0..3 {
            self.requests[i] += other.requests[i];
            self.micros[i] += other.micros[i];
        }
        self.negative += other.negative;
        self.errors += other.errors;
        self.writes += other.writes;
    }
}

/// The window `/stats` reports besides the totals.
pub const WINDOW: Duration = Duration::from_secs(10);

pub struct ServeStats {
    started: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    total: Tally,
    /// (second since start, what happened in it), newest last.
    seconds: VecDeque<(u64, Tally)>,
    /// Response times per source in the current second and the one before,
    /// for the dashboard's p50/p99 (two seconds of histograms, not ten: they
    /// are large).
    latency_now: (u64, [LatencyRecorder; 3]),
    latency_before: (u64, [LatencyRecorder; 3]),
}

/// What happened in one complete second, for the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecondView {
    /// Seconds since `serve` started; this view covers `[second, second + 1)`.
    pub second: u64,
    pub reads: u64,
    pub writes: u64,
    pub errors: u64,
    pub negative_hits: u64,
    pub l1: SourceSecond,
    pub l2: SourceSecond,
    pub database: SourceSecond,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceSecond {
    pub requests: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerStats {
    pub requests: u64,
    pub avg_response_time_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheStats {
    pub total_requests: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub hit_rate: f64,
    pub avg_response_time_ms: f64,
    /// Hits on the negative cache (a known-missing id), counted apart from
    /// `cache_hits` but included in `total_requests`.
    pub negative_hits: u64,
    /// Reads that failed (the database did not answer).
    pub errors: u64,
    /// Product changes (`PUT`) that succeeded; not part of `total_requests`.
    pub writes: u64,
    pub l1: LayerStats,
    pub l2: LayerStats,
    pub database: LayerStats,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsView {
    pub uptime_seconds: f64,
    pub since_start: CacheStats,
    pub window_seconds: u64,
    pub last_window: CacheStats,
}

fn layer(tally: &Tally, source: Source) -> LayerStats {
    let i = source.index();
    LayerStats {
        requests: tally.requests[i],
        avg_response_time_ms: average_ms(tally.micros[i], tally.requests[i]),
    }
}

fn average_ms(micros: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        micros as f64 / n as f64 / 1000.0
    }
}

fn cache_stats(tally: &Tally) -> CacheStats {
    let hits = tally.requests[0] + tally.requests[1];
    let misses = tally.requests[2];
    let served: u64 = tally.requests.iter().sum();
    let micros: u64 = tally.micros.iter().sum();
    CacheStats {
        total_requests: served + tally.errors,
        cache_hits: hits,
        cache_misses: misses,
        hit_rate: if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        },
        avg_response_time_ms: average_ms(micros, served),
        negative_hits: tally.negative,
        errors: tally.errors,
        writes: tally.writes,
        l1: layer(tally, Source::L1),
        l2: layer(tally, Source::L2),
        database: layer(tally, Source::Database),
    }
}

impl Default for ServeStats {
    fn default() -> Self {
        ServeStats {
            started: Instant::now(),
            inner: Mutex::new(Inner {
                total: Tally::default(),
                seconds: VecDeque::new(),
                latency_now: (0, Default::default()),
                latency_before: (u64::MAX, Default::default()),
            }),
        }
    }
}

impl ServeStats {
    /// One read answered by `source` in `elapsed`; `negative`: the answer was
    /// "no such product" from the negative cache.
    pub fn record(&self, source: Source, elapsed: Duration, negative: bool) {
        self.record_at(source, elapsed, Instant::now(), negative);
    }

    /// [`ServeStats::record`] for a read that ended at `now` (a caller that
    /// already read the clock saves a second read on the hot path).
    pub fn record_at(&self, source: Source, elapsed: Duration, now: Instant, negative: bool) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let mut inner = self.update(now, |tally| {
            tally.requests[source.index()] += 1;
            tally.micros[source.index()] += micros;
            if negative {
                tally.negative += 1;
            }
        });
        inner.latency_now.1[source.index()].record(elapsed);
    }

    /// Time since `serve` started counting.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn record_error(&self) {
        drop(self.update(Instant::now(), |tally| tally.errors += 1));
    }

    pub fn record_write(&self) {
        drop(self.update(Instant::now(), |tally| tally.writes += 1));
    }

    /// Applies `change` to the totals and the second of `now`; returns the
    /// lock, with the latency histograms moved on to that second.
    fn update(&self, now: Instant, change: impl Fn(&mut Tally)) -> std::sync::MutexGuard<'_, Inner> {
        let second = now.saturating_duration_since(self.started).as_secs();
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner.latency_now.0 != second {
            let finished = std::mem::replace(&mut inner.latency_now, (second, Default::default()));
            inner.latency_before = finished;
        }
        change(&mut inner.total);
        if inner.seconds.back().is_none_or(|(s, _)| *s != second) {
            inner.seconds.push_back((second, Tally::default()));
            while inner.seconds.len() > WINDOW.as_secs() as usize + 1 {
                inner.seconds.pop_front();
            }
        }
        if let Some((_, tally)) = inner.seconds.back_mut() {
            change(tally);
        }
        inner
    }

    /// The last complete second (the one before now): requests per source
    /// with their p50/p99, writes and errors. Zeros when nothing happened.
    pub fn last_second(&self) -> SecondView {
        let second = self.started.elapsed().as_secs().saturating_sub(1);
        let inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tally = inner
            .seconds
            .iter()
            .find(|(s, _)| *s == second)
            .map(|(_, t)| *t)
            .unwrap_or_default();
        let latency = [&inner.latency_now, &inner.latency_before]
            .into_iter()
            .find(|(s, _)| *s == second)
            .map(|(_, recorders)| recorders);
        let source = |source: Source| {
            let summary = latency.and_then(|r| r[source.index()].summary());
            SourceSecond {
                requests: tally.requests[source.index()],
                p50_ms: summary.as_ref().map(|s| crate::measure::millis(s.p50)),
                p99_ms: summary.as_ref().map(|s| crate::measure::millis(s.p99)),
            }
        };
        SecondView {
            second,
            reads: tally.requests.iter().sum::<u64>() + tally.errors,
            writes: tally.writes,
            errors: tally.errors,
            negative_hits: tally.negative,
            l1: source(Source::L1),
            l2: source(Source::L2),
            database: source(Source::Database),
        }
    }

    pub fn view(&self) -> StatsView {
        let now = self.started.elapsed();
        let second = now.as_secs();
        let inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut window = Tally::default();
        for (s, tally) in &inner.seconds {
            if second - s < WINDOW.as_secs() {
                window.add(tally);
            }
        }
        StatsView {
            uptime_seconds: now.as_secs_f64(),
            since_start: cache_stats(&inner.total),
            window_seconds: WINDOW.as_secs(),
            last_window: cache_stats(&window),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_and_negative_hits_are_counted_apart() {
        let stats = ServeStats::default();
        stats.record(Source::L1, Duration::from_micros(100), false);
        stats.record(Source::L2, Duration::from_micros(300), false);
        stats.record(Source::Database, Duration::from_micros(2000), false);
        stats.record(Source::L1, Duration::from_micros(100), true);
        stats.record_error();
        let view = stats.view();
        let total = &view.since_start;
        assert_eq!(total.total_requests, 5);
        assert_eq!(total.cache_hits, 3);
        assert_eq!(total.cache_misses, 1);
        assert_eq!(total.negative_hits, 1);
        assert_eq!(total.errors, 1);
        assert!((total.hit_rate - 0.75).abs() < 1e-9);
        assert!((total.avg_response_time_ms - 0.625).abs() < 1e-9);
        assert_eq!(total.l1.requests, 2);
        assert!((total.database.avg_response_time_ms - 2.0).abs() < 1e-9);
        assert_eq!(view.last_window.total_requests, 5);
    }

    #[test]
    fn the_last_second_has_counts_and_percentiles_per_source() {
        let stats = ServeStats {
            // Started 1.5 s ago: second 0 is complete, second 1 is running.
            started: Instant::now() - Duration::from_millis(1500),
            ..ServeStats::default()
        };
        {
            // Put samples into second 0 by hand: `record` stamps them with now.
            let mut inner = stats.inner.lock().unwrap();
            let tally = Tally {
                requests: [3, 1, 0],
                writes: 2,
                ..Tally::default()
            };
            inner.seconds.push_back((0, tally));
            let mut recorders: [LatencyRecorder; 3] = Default::default();
            for micros in [100, 200, 10_000] {
                recorders[0].record(Duration::from_micros(micros));
            }
            recorders[1].record(Duration::from_micros(500));
            inner.latency_now = (0, recorders);
        }
        stats.record(Source::Database, Duration::from_millis(3), false);
        let last = stats.last_second();
        assert_eq!(last.second, 0);
        assert_eq!((last.reads, last.writes), (4, 2));
        assert_eq!(last.l1.requests, 3);
        assert!((last.l1.p50_ms.unwrap() - 0.2).abs() < 0.001, "{last:?}");
        assert!((last.l1.p99_ms.unwrap() - 10.0).abs() < 0.01, "{last:?}");
        assert!((last.l2.p99_ms.unwrap() - 0.5).abs() < 0.001);
        assert_eq!(last.database.requests, 0, "the running second is not shown yet");
        assert_eq!(last.database.p50_ms, None);
    }
}
