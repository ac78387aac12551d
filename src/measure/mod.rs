//! Latency recording and summaries. Pure: no I/O, no printing.
//!
//! Latencies go into an HDR histogram in nanoseconds (3 significant digits),
//! so percentiles are exact to 0.1 % however many samples a run takes.

pub mod buckets;
pub mod saved_run;
pub mod timeline;
pub mod zipf;

use std::time::Duration;

use hdrhistogram::Histogram;

/// A count with thousands separators: 412,345. Here, not in `report`,
/// because outcomes carry such counts in their sentences too.
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const LOWEST_NANOS: u64 = 1;
const HIGHEST_NANOS: u64 = 3_600_000_000_000; // one hour
const SIGNIFICANT_DIGITS: u8 = 3;
/// A new histogram covers up to 1 ms and grows (by powers of two) to the slowest sample
/// recorded, at most [`HIGHEST_NANOS`]. hdrhistogram writes every counter of its range up
/// front: a histogram sized for an hour is 270 KiB, and a 50-task run keeps three per task
/// (40 MiB of the 67 MiB peak of `cache-aside --concurrency 50`, before this). The buckets are
/// the same whatever the range (they depend on the lowest value and the digits only), so the
/// percentiles are too.
const INITIAL_HIGHEST_NANOS: u64 = 1_000_000;

/// Every latency of one kind (e.g. "cache hits") in a run.
#[derive(Clone)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
    /// Exact extremes: the histogram only knows them to 3 significant digits.
    min_nanos: u64,
    max_nanos: u64,
    /// Exact sum for the mean (the histogram's mean is bucketed and can fall outside [min, max]).
    sum_nanos: u128,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LatencyRecorder({} samples)", self.histogram.len())
    }
}

/// `sum / count`, rounded to the nearest nanosecond.
fn exact_mean(sum_nanos: u128, count: u64) -> Duration {
    let count = u128::from(count.max(1));
    let nanos = (sum_nanos + count / 2) / count;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

impl LatencyRecorder {
    pub fn new() -> Self {
        LatencyRecorder {
            // The bounds are constants within hdrhistogram's limits.
            histogram: {
                let mut histogram = Histogram::new_with_bounds(LOWEST_NANOS, INITIAL_HIGHEST_NANOS, SIGNIFICANT_DIGITS)
                    .expect("constant histogram bounds are valid");
                histogram.auto(true);
                histogram
            },
            min_nanos: u64::MAX,
            max_nanos: 0,
            sum_nanos: 0,
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos())
            .unwrap_or(u64::MAX)
            .clamp(LOWEST_NANOS, HIGHEST_NANOS);
        // `record` grows the histogram to `nanos` (at most an hour); `saturating_record` would
        // clamp to its current range instead.
        if self.histogram.record(nanos).is_err() {
            self.histogram.saturating_record(nanos);
        }
        self.min_nanos = self.min_nanos.min(nanos);
        self.max_nanos = self.max_nanos.max(nanos);
        self.sum_nanos += u128::from(nanos);
    }

    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.min_nanos = self.min_nanos.min(other.min_nanos);
        self.max_nanos = self.max_nanos.max(other.max_nanos);
        self.sum_nanos += other.sum_nanos;
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.is_empty() {
            return None;
        }
        let h = &self.histogram;
        let (min, max) = (
            Duration::from_nanos(self.min_nanos),
            Duration::from_nanos(self.max_nanos),
        );
        // A percentile is its bucket's highest equivalent value: keep it within the exact extremes.
        let at = |q: f64| Duration::from_nanos(h.value_at_quantile(q)).clamp(min, max);
        Some(LatencySummary {
            count: h.len(),
            min,
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max,
            mean: exact_mean(self.sum_nanos, h.len()).clamp(min, max),
        })
    }

    /// Counts per bucket of `edges` (upper bounds, ascending): samples up to
    /// `edges[0]`, then `(edges[0], edges[1]]`, ..., the last bucket open-ended.
    fn bucket_counts(&self, edges: &[Duration]) -> Vec<u64> {
        let mut counts = vec![0; edges.len()];
        for value in self.histogram.iter_recorded() {
            let nanos = Duration::from_nanos(value.value_iterated_to());
            let index = edges.iter().position(|edge| nanos <= *edge).unwrap_or(edges.len() - 1);
            counts[index] += value.count_at_value();
        }
        counts
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    #[serde(serialize_with = "as_millis")]
    pub min: Duration,
    #[serde(serialize_with = "as_millis")]
    pub p50: Duration,
    #[serde(serialize_with = "as_millis")]
    pub p95: Duration,
    #[serde(serialize_with = "as_millis")]
    pub p99: Duration,
    #[serde(serialize_with = "as_millis")]
    pub max: Duration,
    #[serde(serialize_with = "as_millis")]
    pub mean: Duration,
}

/// Durations in JSON are milliseconds as numbers (microsecond precision).
pub fn as_millis<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(millis(*value))
}

pub fn as_optional_millis<S: serde::Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => serializer.serialize_f64(millis(*v)),
        None => serializer.serialize_none(),
    }
}

/// Milliseconds rounded to the microsecond.
pub fn millis(value: Duration) -> f64 {
    (value.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// A latency summary in microseconds, for what is faster than a millisecond
/// shows well (an L1 hit takes less than one µs; `0.000` ms says nothing).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MicrosSummary {
    pub count: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

/// Microseconds, to the nanosecond.
pub fn micros(value: Duration) -> f64 {
    value.as_nanos() as f64 / 1000.0
}

/// Serde helper: a duration as microseconds.
pub fn as_micros<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(micros(*value))
}

impl From<&LatencySummary> for MicrosSummary {
    fn from(summary: &LatencySummary) -> Self {
        MicrosSummary {
            count: summary.count,
            min_us: micros(summary.min),
            p50_us: micros(summary.p50),
            p95_us: micros(summary.p95),
            p99_us: micros(summary.p99),
            max_us: micros(summary.max),
            mean_us: micros(summary.mean),
        }
    }
}

/// How many times faster `fast` is than `slow` at the median.
pub fn speedup(slow: &LatencySummary, fast: &LatencySummary) -> Option<f64> {
    let fast = fast.p50.as_secs_f64();
    (fast > 0.0).then(|| slow.p50.as_secs_f64() / fast)
}

/// A latency distribution of several series over shared buckets, for the
/// text histogram under a summary table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Distribution {
    pub series: Vec<String>,
    pub buckets: Vec<DistributionBucket>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DistributionBucket {
    /// Upper bound of the bucket in milliseconds.
    #[serde(serialize_with = "as_millis", rename = "up_to_ms")]
    pub up_to: Duration,
    /// One count per series, in the order of `Distribution::series`.
    pub counts: Vec<u64>,
}

/// Buckets on a logarithmic scale from the fastest to the slowest sample of
/// all series, so a 0.1 ms cache and a 30 ms query both show their shape.
pub fn distribution(series: &[(&str, &LatencyRecorder)], bucket_count: usize) -> Option<Distribution> {
    let recorded: Vec<_> = series.iter().filter(|(_, r)| !r.is_empty()).collect();
    let low = recorded.iter().map(|(_, r)| r.histogram.min()).min()?.max(1) as f64;
    let high = recorded.iter().map(|(_, r)| r.histogram.max()).max()?.max(1) as f64;
    let bucket_count = bucket_count.max(1);
    let edges: Vec<Duration> = if high <= low {
        vec![Duration::from_nanos(high as u64)]
    } else {
        let ratio = (high / low).powf(1.0 / bucket_count as f64);
        (1..=bucket_count)
            .map(|i| Duration::from_nanos((low * ratio.powi(i as i32)).ceil() as u64))
            .collect()
    };
    let per_series: Vec<Vec<u64>> = series.iter().map(|(_, r)| r.bucket_counts(&edges)).collect();
    let buckets = edges
        .iter()
        .enumerate()
        .map(|(i, up_to)| DistributionBucket {
            up_to: *up_to,
            counts: per_series.iter().map(|counts| counts[i]).collect(),
        })
        .collect();
    Some(Distribution {
        series: series.iter().map(|(name, _)| name.to_string()).collect(),
        buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(micros: &[u64]) -> LatencyRecorder {
        let mut r = LatencyRecorder::new();
        for m in micros {
            r.record(Duration::from_micros(*m));
        }
        r
    }

    #[test]
    fn percentiles_come_from_the_recorded_samples() {
        let r = recorder(&(1..=100).collect::<Vec<_>>());
        let s = r.summary().unwrap();
        assert_eq!(s.count, 100);
        assert_eq!(s.min, Duration::from_micros(1));
        // 3 significant digits: 50 µs is exact; 95 and 99 µs too.
        assert_eq!(s.p50.as_micros(), 50);
        assert_eq!(s.p95.as_micros(), 95);
        assert_eq!(s.p99.as_micros(), 99);
        assert_eq!(s.max.as_micros(), 100);
        assert!((s.mean.as_secs_f64() * 1e6 - 50.5).abs() < 0.1);
    }

    #[test]
    fn a_growing_histogram_gives_the_percentiles_of_one_sized_for_an_hour() {
        // Latencies from 1 ns to an hour, spread over every order of magnitude.
        let samples: Vec<u64> = (0..4000u64)
            .map(|i| {
                (1u64 << (i % 42))
                    .wrapping_mul(i * 7919 % 1000 + 1)
                    .clamp(1, HIGHEST_NANOS)
            })
            .collect();
        let mut fixed: Histogram<u64> =
            Histogram::new_with_bounds(LOWEST_NANOS, HIGHEST_NANOS, SIGNIFICANT_DIGITS).unwrap();
        let mut grown = LatencyRecorder::new();
        let mut parts = [LatencyRecorder::new(), LatencyRecorder::new()];
        for (i, nanos) in samples.iter().enumerate() {
            fixed.saturating_record(*nanos);
            grown.record(Duration::from_nanos(*nanos));
            parts[i % 2].record(Duration::from_nanos(*nanos));
        }
        let mut merged = LatencyRecorder::new();
        merged.merge(&parts[0]);
        merged.merge(&parts[1]);
        for q in [0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            assert_eq!(
                grown.histogram.value_at_quantile(q),
                fixed.value_at_quantile(q),
                "q {q}"
            );
            assert_eq!(
                merged.histogram.value_at_quantile(q),
                fixed.value_at_quantile(q),
                "merged, q {q}"
            );
        }
        assert_eq!(grown.count(), fixed.len());
        assert_eq!(grown.summary(), merged.summary());
    }

    #[test]
    fn a_new_recorder_is_small_and_grows_to_an_hour_at_most() {
        let mut r = LatencyRecorder::new();
        assert!(
            r.histogram.distinct_values() < 16_000,
            "{}",
            r.histogram.distinct_values()
        );
        r.record(Duration::from_secs(7200));
        let s = r.summary().unwrap();
        assert_eq!(s.max, Duration::from_nanos(HIGHEST_NANOS));
        assert!(s.p50 <= Duration::from_nanos(HIGHEST_NANOS));
    }

    #[test]
    fn an_empty_recorder_has_no_summary() {
        assert!(LatencyRecorder::new().summary().is_none());
    }

    #[test]
    fn speedup_is_the_ratio_of_medians() {
        let db = recorder(&[1000, 1000, 1000]).summary().unwrap();
        let cache = recorder(&[100, 100, 100]).summary().unwrap();
        let ratio = speedup(&db, &cache).unwrap();
        assert!((ratio - 10.0).abs() < 0.02, "{ratio}");
    }

    #[test]
    fn the_distribution_puts_every_sample_in_one_bucket() {
        let fast = recorder(&[100, 110, 120, 130]);
        let slow = recorder(&[10_000, 12_000, 30_000]);
        let d = distribution(&[("cache", &fast), ("db", &slow)], 8).unwrap();
        assert_eq!(d.buckets.len(), 8);
        let totals: Vec<u64> = (0..2).map(|s| d.buckets.iter().map(|b| b.counts[s]).sum()).collect();
        assert_eq!(totals, vec![4, 3]);
        // The fast series sits in the low buckets, the slow one in the high.
        assert!(d.buckets[0].counts[0] > 0);
        assert!(d.buckets[7].counts[1] > 0);
        assert!(d.buckets.windows(2).all(|w| w[0].up_to < w[1].up_to));
    }

    #[test]
    fn merged_recorders_count_every_sample() {
        let mut a = recorder(&[1, 2]);
        a.merge(&recorder(&[3]));
        assert_eq!(a.count(), 3);
        assert_eq!(
            a.summary().unwrap().mean,
            Duration::from_micros(2),
            "the mean merges too"
        );
    }

    #[test]
    fn the_mean_is_exact_and_within_min_and_max() {
        let mut r = LatencyRecorder::new();
        r.record(Duration::from_nanos(151_806_000));
        let s = r.summary().unwrap();
        assert_eq!((s.min, s.mean, s.max), (s.min, s.min, s.min));
        assert_eq!(s.mean, Duration::from_nanos(151_806_000));
        let s = recorder(&[1, 2, 2]).summary().unwrap();
        assert_eq!(s.mean, Duration::from_nanos(1_667));
    }

    #[test]
    fn millis_rounds_to_the_microsecond() {
        assert_eq!(millis(Duration::from_nanos(1_234_567)), 1.235);
    }
}
