//! Key popularity for workloads: uniform, or Zipf (a few keys are hot, most are cold).
//!
//! Rank `r` (1-based) is drawn with probability proportional to `1 / r^s`.
//! `s = 0` is uniform; `s = 1` is the classic Zipf law of web caches and
//! catalogues; larger `s` concentrates the traffic on fewer keys. Pure: the
//! caller supplies the randomness (a number in `[0, 1)`, or a
//! [`SplitMix64`]), so a seeded run draws the same keys every time.

use crate::rng::SplitMix64;

/// Draws ranks `1..=n`. Uniform draws need no table; Zipf draws search a
/// cumulative table of `n` probabilities (8 bytes per key).
#[derive(Debug, Clone)]
pub struct KeySampler {
    n: u64,
    exponent: f64,
    /// `cumulative[i]`: probability of a rank `<= i + 1`; empty when uniform.
    cumulative: Vec<f64>,
}

impl KeySampler {
    /// `n >= 1` ranks with Zipf exponent `exponent` (`0` = uniform). The
    /// caller validates the range; a non-finite or negative exponent is
    /// treated as uniform, and `n = 0` as `1`.
    pub fn new(n: u64, exponent: f64) -> KeySampler {
        let n = n.max(1);
        let exponent = if exponent.is_finite() && exponent > 0.0 {
            exponent
        } else {
            0.0
        };
        let cumulative = if exponent == 0.0 {
            Vec::new()
        } else {
            let mut running = 0.0;
            let mut table: Vec<f64> = (1..=n)
                .map(|rank| {
                    running += (rank as f64).powf(-exponent);
                    running
                })
                .collect();
            let total = running;
            for value in &mut table {
                *value /= total;
            }
            // Rounding must not leave a sliver above the last rank.
            if let Some(last) = table.last_mut() {
                *last = 1.0;
            }
            table
        };
        KeySampler {
            n,
            exponent,
            cumulative,
        }
    }

    pub fn keys(&self) -> u64 {
        self.n
    }

    pub fn exponent(&self) -> f64 {
        self.exponent
    }

    pub fn is_uniform(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// The rank for a uniform number `unit` in `[0, 1)`.
    pub fn rank_at(&self, unit: f64) -> u64 {
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.0 };
        if self.is_uniform() {
            return ((unit * self.n as f64) as u64).min(self.n - 1) + 1;
        }
        let index = self.cumulative.partition_point(|&p| p <= unit);
        (index as u64).min(self.n - 1) + 1
    }

    /// Draws one rank in `1..=n`.
    pub fn sample(&self, rng: &mut SplitMix64) -> u64 {
        self.rank_at(unit_interval(rng.next_u64()))
    }

    /// The share of all draws that go to the `top` most popular ranks
    /// (e.g. how much an L1 of that many entries could absorb at best).
    pub fn share_of_top(&self, top: u64) -> f64 {
        if top == 0 {
            return 0.0;
        }
        let top = top.min(self.n);
        if self.is_uniform() {
            return top as f64 / self.n as f64;
        }
        self.cumulative[(top - 1) as usize]
    }
}

/// 53 random bits as a number in `[0, 1)`.
pub fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frequencies(sampler: &KeySampler, draws: u64) -> Vec<u64> {
        let mut rng = SplitMix64::new(42);
        let mut counts = vec![0; sampler.keys() as usize];
        for _ in 0..draws {
            counts[(sampler.sample(&mut rng) - 1) as usize] += 1;
        }
        counts
    }

    #[test]
    fn every_draw_is_a_rank_from_one_to_n() {
        for exponent in [0.0, 0.5, 1.0, 2.5] {
            let sampler = KeySampler::new(7, exponent);
            let mut rng = SplitMix64::new(1);
            for _ in 0..10_000 {
                let rank = sampler.sample(&mut rng);
                assert!((1..=7).contains(&rank), "{rank} with s={exponent}");
            }
            assert_eq!(sampler.rank_at(0.0), 1);
            assert_eq!(sampler.rank_at(0.999_999_999), 7);
            assert_eq!(sampler.rank_at(1.0), 7);
        }
    }

    #[test]
    fn exponent_zero_is_uniform() {
        let sampler = KeySampler::new(10, 0.0);
        assert!(sampler.is_uniform());
        let counts = frequencies(&sampler, 100_000);
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{count}");
        }
        assert!((sampler.share_of_top(3) - 0.3).abs() < 1e-12);
    }

    #[test]
    fn zipf_draws_follow_one_over_rank() {
        let sampler = KeySampler::new(100, 1.0);
        let counts = frequencies(&sampler, 200_000);
        // Rank 1 is drawn about twice as often as rank 2 and ten times as often as rank 10.
        let ratio = |a: usize, b: usize| counts[a] as f64 / counts[b] as f64;
        assert!((ratio(0, 1) - 2.0).abs() < 0.15, "{}", ratio(0, 1));
        assert!((ratio(0, 9) - 10.0).abs() < 1.0, "{}", ratio(0, 9));
        // H(100) = 5.187...: rank 1 gets 1/H(100) of the draws.
        let expected = 200_000.0 / 5.187_377_5;
        assert!((counts[0] as f64 - expected).abs() / expected < 0.02);
    }

    #[test]
    fn the_hot_keys_share_matches_the_harmonic_numbers() {
        let sampler = KeySampler::new(1000, 1.0);
        // H(100) / H(1000) = 5.1874 / 7.4855
        assert!((sampler.share_of_top(100) - 0.693).abs() < 0.001);
        assert_eq!(sampler.share_of_top(0), 0.0);
        assert_eq!(sampler.share_of_top(5000), 1.0);
        let steeper = KeySampler::new(1000, 2.0);
        assert!(steeper.share_of_top(10) > 0.9);
    }

    #[test]
    fn the_same_seed_draws_the_same_keys() {
        let sampler = KeySampler::new(1000, 1.2);
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..20).map(|_| sampler.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn unit_interval_stays_below_one() {
        assert_eq!(unit_interval(0), 0.0);
        assert!(unit_interval(u64::MAX) < 1.0);
    }
}
