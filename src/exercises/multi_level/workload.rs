//! Which product each request of a workload reads: ids 1..=K, uniformly or
//! with a Zipf skew (id 1 the most popular, then 2, ...), drawn by
//! [`KeySampler`]. Request `i` always reads the same id, whatever the number
//! of tasks, so two runs of the same command compare like with like.

use crate::measure::zipf::KeySampler;
use crate::rng::SplitMix64;

/// The random stream of the workload (any constant would do; this one is fixed forever).
const WORKLOAD_STREAM: u64 = 0x6d75_6c74_692d_6c76;

/// Request number → product id.
#[derive(Debug, Clone)]
pub struct Workload {
    sampler: KeySampler,
}

impl Workload {
    /// `keys` ≥ 1 product ids; `skew` ≥ 0 is the Zipf exponent (0: uniform).
    pub fn new(keys: u64, skew: f64) -> Workload {
        Workload {
            sampler: KeySampler::new(keys, skew),
        }
    }

    pub fn keys(&self) -> u64 {
        self.sampler.keys()
    }

    /// The product id request `request` reads, in `1..=keys`.
    pub fn product_id(&self, request: u64) -> i64 {
        let rank = self.sampler.sample(&mut SplitMix64::for_row(WORKLOAD_STREAM, request));
        i64::try_from(rank).unwrap_or(i64::MAX)
    }

    /// The share of requests that go to the `n` most popular ids.
    pub fn share_of_top(&self, n: u64) -> f64 {
        self.sampler.share_of_top(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_request_reads_the_same_product_every_time() {
        let a = Workload::new(1000, 1.2);
        let b = Workload::new(1000, 1.2);
        let ids: Vec<i64> = (0..500).map(|r| a.product_id(r)).collect();
        assert_eq!(ids, (0..500).map(|r| b.product_id(r)).collect::<Vec<_>>());
        // Asked out of order (as concurrent tasks do), each request still reads its id.
        assert!((0..500).rev().all(|r| a.product_id(r) == ids[r as usize]));
    }

    #[test]
    fn requests_stay_within_the_ids_and_favour_the_lowest_when_skewed() {
        let workload = Workload::new(50, 1.0);
        let mut seen = [0u64; 50];
        for request in 0..50_000 {
            let id = workload.product_id(request);
            assert!((1..=50).contains(&id), "{id}");
            seen[(id - 1) as usize] += 1;
        }
        assert!(seen[0] > seen[1] && seen[1] > seen[9] && seen[9] > seen[49], "{seen:?}");
        let share = seen[0] as f64 / 50_000.0;
        assert!((share - workload.share_of_top(1)).abs() < 0.01, "{share}");
    }
}
