//! Latencies counted into fixed buckets, as a Prometheus histogram wants
//! them: cumulative counts at chosen upper bounds, an exact sum and a count.
//! Pure: no I/O.

use std::time::Duration;

/// Upper bounds in seconds, from an L1 hit (1 µs, 10 µs) to a slow query (2.5 s).
/// Prometheus's default buckets start at 5 ms, which would put every cache
/// hit in the first bucket.
pub const DEFAULT_BOUNDS: [f64; 16] = [
    0.000001, 0.00001, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Clone, PartialEq)]
pub struct LatencyBuckets {
    /// Ascending upper bounds in seconds (without `+Inf`).
    bounds: Vec<f64>,
    /// Samples per bucket (not cumulative); one more than `bounds`: the last is above every bound.
    counts: Vec<u64>,
    /// Exact: a float sum would print 0.052500000000000005.
    sum_nanos: u128,
    count: u64,
}

impl Default for LatencyBuckets {
    fn default() -> Self {
        LatencyBuckets::new(&DEFAULT_BOUNDS)
    }
}

impl LatencyBuckets {
    /// `bounds` are sorted and deduplicated; non-finite ones are dropped.
    pub fn new(bounds: &[f64]) -> LatencyBuckets {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        LatencyBuckets {
            counts: vec![0; bounds.len() + 1],
            bounds,
            sum_nanos: 0,
            count: 0,
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        // A sample equal to a bound belongs to that bucket (`le` = less or equal).
        let index = self.bounds.partition_point(|&bound| bound < seconds);
        self.counts[index] += 1;
        self.sum_nanos += latency.as_nanos();
        self.count += 1;
    }

    pub fn merge(&mut self, other: &LatencyBuckets) {
        if self.bounds == other.bounds {
            for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
                *mine += theirs;
            }
            self.sum_nanos += other.sum_nanos;
            self.count += other.count;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }

    /// `(upper bound, samples at or below it)` for every bound, then
    /// `(f64::INFINITY, count)`: ascending and cumulative.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut running = 0;
        let mut out: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(bound, n)| {
                running += n;
                (*bound, running)
            })
            .collect();
        out.push((f64::INFINITY, self.count));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_cumulative_and_end_with_everything() {
        let mut buckets = LatencyBuckets::new(&[0.001, 0.01]);
        for micros in [100, 1000, 5000, 20_000] {
            buckets.record(Duration::from_micros(micros));
        }
        assert_eq!(
            buckets.cumulative(),
            vec![(0.001, 2), (0.01, 3), (f64::INFINITY, 4)],
            "1 ms is counted at le=0.001"
        );
        assert_eq!(buckets.count(), 4);
        assert_eq!(buckets.sum_seconds(), 0.0261);
    }

    #[test]
    fn merging_adds_counts_and_sums() {
        let mut a = LatencyBuckets::default();
        let mut b = LatencyBuckets::default();
        a.record(Duration::from_micros(50));
        b.record(Duration::from_secs(5));
        a.merge(&b);
        let cumulative = a.cumulative();
        assert_eq!(cumulative.first(), Some(&(0.000001, 0)));
        assert_eq!(cumulative[2], (0.0001, 1));
        assert_eq!(cumulative[cumulative.len() - 2], (2.5, 1));
        assert_eq!(cumulative.last(), Some(&(f64::INFINITY, 2)));
    }

    #[test]
    fn bounds_are_sorted_and_unique() {
        let buckets = LatencyBuckets::new(&[0.5, 0.1, 0.5, f64::NAN]);
        let bounds: Vec<f64> = buckets.cumulative().iter().map(|(b, _)| *b).collect();
        assert_eq!(bounds, vec![0.1, 0.5, f64::INFINITY]);
    }
}
