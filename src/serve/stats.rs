//! `CacheStats`: requests per layer, hits, misses and response times, since
//! start and over the last seconds (one bucket per second).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        for i in 0..3 {
            self.requests[i] += other.requests[i];
            self.micros[i] += other.micros[i];
        }
        self.negative += other.negative;
        self.errors += other.errors;
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
            }),
        }
    }
}

impl ServeStats {
    /// One read answered by `source` in `elapsed`; `negative`: the answer was
    /// "no such product" from the negative cache.
    pub fn record(&self, source: Source, elapsed: Duration, negative: bool) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.update(|tally| {
            tally.requests[source.index()] += 1;
            tally.micros[source.index()] += micros;
            if negative {
                tally.negative += 1;
            }
        });
    }

    pub fn record_error(&self) {
        self.update(|tally| tally.errors += 1);
    }

    fn update(&self, change: impl Fn(&mut Tally)) {
        let second = self.started.elapsed().as_secs();
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
}
