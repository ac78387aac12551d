//! A run cut into one-second buckets: throughput, hit rate and p99 per
//! second, so a cold start or a TTL expiry shows as a dip. Pure: the caller
//! says when each request finished, relative to the start of the run.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::as_optional_millis;
use crate::cache::BreakerCounts;

/// Per-second histograms are coarse (2 significant digits, up to 10 s) to
/// keep a long run small: about 14 KB per second.
const HIGHEST_NANOS: u64 = 10_000_000_000;
const SIGNIFICANT_DIGITS: u8 = 2;
/// A last bucket shorter than this is folded into the one before, so a few
/// requests in the final milliseconds do not show as a throughput spike.
const SHORTEST_TAIL: Duration = Duration::from_millis(200);

struct SecondBucket {
    requests: u64,
    hits: u64,
    /// Writes of a mixed workload (`stats --read-ratio`): counted, not in the read histogram.
    writes: u64,
    histogram: Histogram<u32>,
}

impl SecondBucket {
    fn new() -> SecondBucket {
        SecondBucket {
            requests: 0,
            hits: 0,
            writes: 0,
            // Constant bounds within hdrhistogram's limits.
            histogram: Histogram::new_with_bounds(1, HIGHEST_NANOS, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
        }
    }

    fn absorb(&mut self, other: SecondBucket) {
        self.requests += other.requests;
        self.hits += other.hits;
        self.writes += other.writes;
        let _ = self.histogram.add(&other.histogram);
    }
}

/// Collects requests into one-second buckets as they finish.
#[derive(Default)]
pub struct Timeline {
    seconds: Vec<SecondBucket>,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Timeline({} s)", self.seconds.len())
    }
}

/// One second of a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SecondStats {
    /// Seconds since the start of the run at which this bucket begins.
    pub second: u64,
    /// Length of the bucket: 1 s, except the last (the run's remainder).
    pub length_seconds: f64,
    pub requests: u64,
    /// Requests answered by a cache (any layer).
    pub hits: u64,
    /// `hits / requests`; `None` for a second without requests.
    pub hit_rate: Option<f64>,
    pub throughput_per_second: f64,
    /// Writes in this second (a mixed workload); not part of `requests`.
    pub writes: u64,
    #[serde(serialize_with = "as_optional_millis", rename = "p50_ms")]
    pub p50: Option<Duration>,
    #[serde(serialize_with = "as_optional_millis", rename = "p99_ms")]
    pub p99: Option<Duration>,
    /// Valkey timeouts and circuit-breaker openings in this second (filled
    /// in by the caller, which owns the connection).
    pub valkey_faults: BreakerCounts,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    fn bucket(&mut self, at: Duration) -> &mut SecondBucket {
        let index = at.as_secs() as usize;
        while self.seconds.len() <= index {
            self.seconds.push(SecondBucket::new());
        }
        &mut self.seconds[index]
    }

    /// A write of a mixed workload that finished `at` after the start.
    pub fn record_write(&mut self, at: Duration) {
        self.bucket(at).writes += 1;
    }

    /// A request that finished `at` after the start, took `latency`, and was
    /// (`hit`) or was not served by a cache.
    pub fn record(&mut self, at: Duration, latency: Duration, hit: bool) {
        let bucket = self.bucket(at);
        bucket.requests += 1;
        if hit {
            bucket.hits += 1;
        }
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        bucket.histogram.saturating_record(nanos.clamp(1, HIGHEST_NANOS));
    }

    /// The buckets of a run that lasted `wall`; seconds without a request
    /// are listed too (a stall is worth seeing).
    pub fn finish(mut self, wall: Duration) -> Vec<SecondStats> {
        let whole = usize::try_from(wall.as_secs()).unwrap_or(usize::MAX);
        let has_tail = wall.subsec_nanos() > 0;
        let wanted = whole + usize::from(has_tail);
        while self.seconds.len() < wanted.max(1) {
            self.seconds.push(SecondBucket::new());
        }
        let mut lengths: Vec<f64> = (0..self.seconds.len())
            .map(|i| {
                let left = wall.as_secs_f64() - i as f64;
                left.clamp(0.0, 1.0)
            })
            .collect();
        // Everything recorded at or after `wall` (rounding) sits in the last bucket.
        let tail = lengths.last().copied().unwrap_or(0.0);
        if self.seconds.len() > 1 && tail < SHORTEST_TAIL.as_secs_f64() {
            if let Some(last) = self.seconds.pop() {
                lengths.pop();
                if let (Some(previous), Some(length)) = (self.seconds.last_mut(), lengths.last_mut()) {
                    previous.absorb(last);
                    *length += tail;
                }
            }
        }
        self.seconds
            .into_iter()
            .zip(lengths)
            .enumerate()
            .map(|(index, (bucket, length))| SecondStats {
                second: index as u64,
                length_seconds: (length * 1000.0).round() / 1000.0,
                requests: bucket.requests,
                hits: bucket.hits,
                hit_rate: (bucket.requests > 0).then(|| bucket.hits as f64 / bucket.requests as f64),
                throughput_per_second: if length > 0.0 {
                    bucket.requests as f64 / length
                } else {
                    0.0
                },
                writes: bucket.writes,
                p50: (bucket.requests > 0).then(|| Duration::from_nanos(bucket.histogram.value_at_quantile(0.5))),
                p99: (bucket.requests > 0).then(|| Duration::from_nanos(bucket.histogram.value_at_quantile(0.99))),
                valkey_faults: BreakerCounts::default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn requests_land_in_the_second_they_finished() {
        let mut timeline = Timeline::new();
        timeline.record(ms(100), ms(1), true);
        timeline.record(ms(900), ms(1), false);
        timeline.record(ms(1500), ms(4), true);
        let seconds = timeline.finish(ms(2000));
        assert_eq!(seconds.len(), 2);
        assert_eq!((seconds[0].requests, seconds[0].hits), (2, 1));
        assert_eq!(seconds[0].hit_rate, Some(0.5));
        assert_eq!(seconds[0].throughput_per_second, 2.0);
        assert_eq!((seconds[1].requests, seconds[1].hits), (1, 1));
        let p99 = seconds[1].p99.unwrap();
        assert!(p99 >= ms(4) && p99 < ms(5), "{p99:?}");
    }

    #[test]
    fn a_silent_second_is_listed_with_no_hit_rate() {
        let mut timeline = Timeline::new();
        timeline.record(ms(10), ms(1), true);
        timeline.record(ms(2500), ms(1), true);
        let seconds = timeline.finish(ms(3000));
        assert_eq!(seconds.len(), 3);
        assert_eq!(seconds[1].requests, 0);
        assert_eq!(seconds[1].hit_rate, None);
        assert_eq!(seconds[1].p99, None);
        assert_eq!(seconds[1].throughput_per_second, 0.0);
    }

    #[test]
    fn the_last_partial_second_counts_its_own_length() {
        let mut timeline = Timeline::new();
        for i in 0..10 {
            timeline.record(ms(1000 + i * 50), ms(1), true);
        }
        let seconds = timeline.finish(ms(1500));
        assert_eq!(seconds.len(), 2);
        assert_eq!(seconds[1].length_seconds, 0.5);
        assert_eq!(seconds[1].throughput_per_second, 20.0);
    }

    #[test]
    fn a_very_short_tail_is_folded_into_the_second_before() {
        let mut timeline = Timeline::new();
        timeline.record(ms(500), ms(1), true);
        timeline.record(ms(1050), ms(1), false);
        let seconds = timeline.finish(ms(1100));
        assert_eq!(seconds.len(), 1);
        assert_eq!(seconds[0].requests, 2);
        assert_eq!(seconds[0].length_seconds, 1.1);
    }

    #[test]
    fn a_run_shorter_than_a_second_has_one_bucket() {
        let mut timeline = Timeline::new();
        timeline.record(ms(100), ms(1), true);
        let seconds = timeline.finish(ms(250));
        assert_eq!(seconds.len(), 1);
        assert_eq!(seconds[0].length_seconds, 0.25);
        assert_eq!(seconds[0].throughput_per_second, 4.0);
    }
}
