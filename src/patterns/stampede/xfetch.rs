//! XFetch, probabilistic early expiry: a reader recomputes a hot key
//! before it expires, with a probability that rises as expiry nears.

use std::sync::Arc;
use std::time::Duration;

use super::{request_rng, served, uniform, unix_millis, Path, Served, StampedeCache};
use crate::db::{DbError, ResultSet};

/// XFetch's cache entry: the rows, how long computing them took, and when
/// the entry expires (Unix milliseconds, so every process reads the same).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct XFetchEntry {
    pub delta_ms: f64,
    pub expires_at_ms: f64,
    pub rows: ResultSet,
}

/// XFetch (Vattani, Chierichetti and Lowenstein, 2015): recompute before
/// expiry with a probability that rises as expiry nears and with the cost
/// of recomputing. `uniform` is a random number in (0, 1]; its logarithm is
/// at most 0, so the left side looks `delta * beta * -ln(uniform)` ahead.
pub fn recompute_early(now_ms: f64, delta_ms: f64, beta: f64, expires_at_ms: f64, uniform: f64) -> bool {
    now_ms - delta_ms * beta * uniform.ln() >= expires_at_ms
}

/// The XFetch entry as stored: the rows, `delta` (the query's time) and the expiry `ttl` from now.
pub(super) fn xfetch_text(rows: ResultSet, delta: Duration, ttl: Duration) -> String {
    let entry = XFetchEntry {
        delta_ms: delta.as_secs_f64() * 1000.0,
        expires_at_ms: unix_millis() + ttl.as_secs_f64() * 1000.0,
        rows,
    };
    serde_json::to_string(&entry).unwrap_or_default()
}

impl StampedeCache {
    pub(super) async fn xfetch(&self, request: u64) -> Result<Served, DbError> {
        let Some(valkey) = &self.valkey else {
            let rows = Arc::new(self.loader.load().await?.0);
            return Ok(Served {
                cache_unavailable: true,
                ..served(Path::Loaded, rows)
            });
        };
        let entry = match valkey.get(&self.keys.xfetch).await {
            Ok(Some(text)) => serde_json::from_str::<XFetchEntry>(&text).ok(),
            Ok(None) => None,
            Err(_) => {
                let rows = Arc::new(self.loader.load().await?.0);
                return Ok(Served {
                    cache_unavailable: true,
                    ..served(Path::Loaded, rows)
                });
            }
        };
        let path = match entry {
            Some(entry) => {
                let mut rng = request_rng(request);
                let early = recompute_early(
                    unix_millis(),
                    entry.delta_ms,
                    self.xfetch_beta,
                    entry.expires_at_ms,
                    uniform(&mut rng),
                );
                if !early {
                    return Ok(served(Path::Hit, Arc::new(entry.rows)));
                }
                Path::RefreshedEarly
            }
            None => Path::Loaded,
        };
        let (rows, delta) = self.loader.load().await?;
        let ttl = self.ttl.pick();
        let text = xfetch_text(rows.clone(), delta, ttl);
        let stored = valkey.set_with_ttl(&self.keys.xfetch, &text, ttl).await.is_ok();
        Ok(Served {
            cache_unavailable: !stored,
            ..served(path, Arc::new(rows))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn xfetch_never_recomputes_far_from_expiry_and_always_at_expiry() {
        // 10 s before expiry with a 10 ms computation: -ln(u) would have to exceed 1000.
        assert!(!recompute_early(0.0, 10.0, 1.0, 10_000.0, 1e-300));
        assert!(!recompute_early(0.0, 10.0, 1.0, 10_000.0, 0.5));
        // At or past expiry every reader recomputes, whatever the draw.
        assert!(recompute_early(10_000.0, 10.0, 1.0, 10_000.0, 1.0));
        assert!(recompute_early(10_001.0, 10.0, 1.0, 10_000.0, 0.99));
    }

    #[test]
    fn xfetch_recomputes_earlier_with_a_larger_beta_or_a_slower_computation() {
        // u = e^-1: the reader looks delta * beta ahead.
        let u = (-1.0_f64).exp();
        assert!(!recompute_early(0.0, 10.0, 1.0, 15.0, u));
        assert!(recompute_early(0.0, 10.0, 2.0, 15.0, u));
        assert!(recompute_early(0.0, 20.0, 1.0, 15.0, u));
    }

    #[test]
    fn xfetch_probability_matches_the_formula() {
        // P(recompute) at gap g before expiry is exp(-g / (delta * beta)).
        let mut rng = SplitMix64::new(7);
        let draws = 200_000;
        let hits = (0..draws)
            .filter(|_| recompute_early(0.0, 10.0, 1.0, 10.0, uniform(&mut rng)))
            .count();
        let expected = (-1.0_f64).exp();
        let observed = hits as f64 / draws as f64;
        assert!((observed - expected).abs() < 0.005, "{observed} vs {expected}");
    }
}
