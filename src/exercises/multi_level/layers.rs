//! Latency and read counts per serving layer (L1, L2, database), shared by
//! the timed reads and `--listen`.

use std::time::Duration;

use crate::cache::two_level::Layer;
use crate::measure::{self, Distribution, LatencyRecorder, LatencySummary, MicrosSummary};

const DISTRIBUTION_BUCKETS: usize = 10;

/// Latency per layer that served a read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerLatencies {
    /// L1 hits: a moka lookup.
    pub l1: Option<LatencySummary>,
    /// L2 hits: GET + JSON decode + filling L1.
    pub l2: Option<LatencySummary>,
    /// Database reads: the L2 miss, the query, filling L2 and L1.
    pub database: Option<LatencySummary>,
}

impl LayerLatencies {
    pub fn micros(&self) -> LayerMicros {
        let convert = |summary: &Option<LatencySummary>| summary.as_ref().map(MicrosSummary::from);
        LayerMicros {
            l1: convert(&self.l1),
            l2: convert(&self.l2),
            database: convert(&self.database),
        }
    }
}

/// The per-layer summaries in microseconds: an L1 hit takes less than one,
/// which milliseconds with three decimals would show as 0.000.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerMicros {
    pub l1: Option<MicrosSummary>,
    pub l2: Option<MicrosSummary>,
    pub database: Option<MicrosSummary>,
}

/// Reads served by each layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServedBy {
    pub l1: u64,
    pub l2: u64,
    pub database: u64,
}

impl ServedBy {
    pub fn total(&self) -> u64 {
        self.l1 + self.l2 + self.database
    }
}

/// How many times faster one layer is than another, at the median.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Speedups {
    /// Database p50 / L2 p50.
    pub database_over_l2: Option<f64>,
    /// Database p50 / L1 p50.
    pub database_over_l1: Option<f64>,
    /// L2 p50 / L1 p50.
    pub l2_over_l1: Option<f64>,
}

impl Speedups {
    pub fn of(layers: &LayerLatencies) -> Speedups {
        let ratio = |slow: &Option<LatencySummary>, fast: &Option<LatencySummary>| match (slow, fast) {
            (Some(slow), Some(fast)) => measure::speedup(slow, fast),
            _ => None,
        };
        Speedups {
            database_over_l2: ratio(&layers.database, &layers.l2),
            database_over_l1: ratio(&layers.database, &layers.l1),
            l2_over_l1: ratio(&layers.l2, &layers.l1),
        }
    }
}

/// Every read's latency, filed under the layer that served it.
#[derive(Debug, Clone, Default)]
pub struct LayerRecorders {
    l1: LatencyRecorder,
    l2: LatencyRecorder,
    database: LatencyRecorder,
    served_by: ServedBy,
}

impl LayerRecorders {
    pub fn record(&mut self, layer: Layer, latency: Duration) {
        match layer {
            Layer::L1 => {
                self.l1.record(latency);
                self.served_by.l1 += 1;
            }
            Layer::L2 => {
                self.l2.record(latency);
                self.served_by.l2 += 1;
            }
            Layer::Database => {
                self.database.record(latency);
                self.served_by.database += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &LayerRecorders) {
        self.l1.merge(&other.l1);
        self.l2.merge(&other.l2);
        self.database.merge(&other.database);
        self.served_by.l1 += other.served_by.l1;
        self.served_by.l2 += other.served_by.l2;
        self.served_by.database += other.served_by.database;
    }

    pub fn served_by(&self) -> ServedBy {
        self.served_by
    }

    pub fn latencies(&self) -> LayerLatencies {
        LayerLatencies {
            l1: self.l1.summary(),
            l2: self.l2.summary(),
            database: self.database.summary(),
        }
    }

    pub fn distribution(&self) -> Option<Distribution> {
        measure::distribution(
            &[("L1", &self.l1), ("L2", &self.l2), ("database", &self.database)],
            DISTRIBUTION_BUCKETS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_filed_under_their_layer_and_compared_at_the_median() {
        let mut recorders = LayerRecorders::default();
        for _ in 0..3 {
            recorders.record(Layer::L1, Duration::from_micros(2));
        }
        recorders.record(Layer::L2, Duration::from_micros(200));
        let mut other = LayerRecorders::default();
        other.record(Layer::Database, Duration::from_micros(1000));
        recorders.merge(&other);

        assert_eq!(
            recorders.served_by(),
            ServedBy {
                l1: 3,
                l2: 1,
                database: 1
            }
        );
        let latencies = recorders.latencies();
        assert_eq!(latencies.l1.map(|s| s.count), Some(3));
        let speedups = Speedups::of(&latencies);
        assert!((speedups.database_over_l2.unwrap() - 5.0).abs() < 0.05);
        assert!((speedups.l2_over_l1.unwrap() - 100.0).abs() < 0.5);
        assert_eq!(recorders.distribution().unwrap().series, ["L1", "L2", "database"]);
        let micros = latencies.micros();
        assert_eq!(micros.l1.map(|s| s.p50_us), Some(2.0));
        assert_eq!(micros.database.map(|s| (s.count, s.max_us)), Some((1, 1000.0)));
    }

    #[test]
    fn a_layer_without_reads_has_no_summary_and_no_speedup() {
        let mut recorders = LayerRecorders::default();
        recorders.record(Layer::L1, Duration::from_micros(2));
        let latencies = recorders.latencies();
        assert!(latencies.l2.is_none() && latencies.database.is_none());
        assert!(Speedups::of(&latencies).database_over_l1.is_none());
    }
}
