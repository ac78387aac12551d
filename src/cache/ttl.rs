//! The one place a cache write's time-to-live comes from: `--ttl` and
//! `--ttl-jitter PCT` (global options), applied to every Valkey write of
//! the workshop (cache-aside, write-through, write-behind, the two-level
//! cache of `stats`, `multi-level`, `--warm` and `serve`, the stampede
//! refills and exercise 12).
//!
//! Jitter is symmetric: each write lives `--ttl` ± PCT % (uniform, in
//! milliseconds), so the mean lifetime stays `--ttl` while keys written
//! together expire spread over 2 × PCT % of it instead of in one instant.

use std::cell::Cell;
use std::time::Duration;

use crate::rng::mix64;

/// The largest jitter: ±100 % spreads expiries from 0 to twice the TTL.
pub const MAX_JITTER_PERCENT: u8 = 100;
/// No write lives less than this, even at ±100 %.
const SHORTEST: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TtlPolicy {
    #[serde(serialize_with = "crate::measure::as_millis", rename = "ttl_ms")]
    base: Duration,
    jitter_percent: u8,
}

impl TtlPolicy {
    /// Every write lives exactly `base`.
    pub const fn fixed(base: Duration) -> TtlPolicy {
        TtlPolicy {
            base,
            jitter_percent: 0,
        }
    }

    /// `base` ± `jitter_percent` % (capped at [`MAX_JITTER_PERCENT`]).
    pub fn jittered(base: Duration, jitter_percent: u8) -> TtlPolicy {
        TtlPolicy {
            base,
            jitter_percent: jitter_percent.min(MAX_JITTER_PERCENT),
        }
    }

    /// `--ttl`: the mean lifetime.
    pub fn base(&self) -> Duration {
        self.base
    }

    pub fn jitter_percent(&self) -> u8 {
        self.jitter_percent
    }

    /// The shortest and the longest lifetime a write can get.
    pub fn bounds(&self) -> (Duration, Duration) {
        (self.at(0.0), self.at(1.0))
    }

    /// The lifetime of one write: a fresh draw per call.
    pub fn pick(&self) -> Duration {
        if self.jitter_percent == 0 {
            return self.base;
        }
        self.at(uniform())
    }

    /// The lifetime for a draw `uniform` in `[0, 1]`: 0 is the shortest, 1 the longest.
    pub fn at(&self, uniform: f64) -> Duration {
        let spread = f64::from(self.jitter_percent) / 100.0;
        let factor = 1.0 - spread + 2.0 * spread * uniform.clamp(0.0, 1.0);
        let millis = (self.base.as_secs_f64() * 1000.0 * factor).round();
        Duration::from_millis(millis as u64).max(SHORTEST)
    }
}

thread_local! {
    /// SplitMix64 state per thread, seeded from the clock and the thread, so
    /// processes started together still draw different lifetimes.
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let thread = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::thread::current().id().hash(&mut hasher);
        hasher.finish()
    };
    mix64(now ^ mix64(thread ^ u64::from(std::process::id())))
}

/// A uniform draw in `[0, 1)`.
fn uniform() -> f64 {
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(next);
        (mix64(next) >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_jitter_every_write_lives_the_ttl() {
        let policy = TtlPolicy::fixed(Duration::from_secs(300));
        assert_eq!(policy.pick(), Duration::from_secs(300));
        assert_eq!(policy.bounds(), (Duration::from_secs(300), Duration::from_secs(300)));
    }

    #[test]
    fn jittered_lifetimes_stay_within_the_percentage_and_cover_it() {
        let policy = TtlPolicy::jittered(Duration::from_secs(10), 20);
        assert_eq!(policy.bounds(), (Duration::from_secs(8), Duration::from_secs(12)));
        let picks: Vec<Duration> = (0..10_000).map(|_| policy.pick()).collect();
        assert!(picks
            .iter()
            .all(|p| (Duration::from_secs(8)..=Duration::from_secs(12)).contains(p)));
        let shortest = picks.iter().min().unwrap();
        let longest = picks.iter().max().unwrap();
        // 10,000 uniform draws reach within 50 ms of both ends (a miss has odds of e^-125).
        assert!(*shortest < Duration::from_millis(8050), "{shortest:?}");
        assert!(*longest > Duration::from_millis(11_950), "{longest:?}");
        let mean = picks.iter().map(Duration::as_secs_f64).sum::<f64>() / picks.len() as f64;
        assert!((9.9..=10.1).contains(&mean), "mean {mean}");
    }

    #[test]
    fn full_jitter_never_gives_a_zero_lifetime_and_is_capped_at_one_hundred_percent() {
        let policy = TtlPolicy::jittered(Duration::from_secs(2), 250);
        assert_eq!(policy.jitter_percent(), 100);
        assert_eq!(policy.bounds(), (Duration::from_millis(1), Duration::from_secs(4)));
    }
}
