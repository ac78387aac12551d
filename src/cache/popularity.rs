//! Request counts per product in a Valkey sorted set, so cache warming can
//! preload what is actually asked for. Counts are added after the timed
//! reads, in one pipeline: counting must not slow the reads it counts.

use std::collections::BTreeMap;

use super::{CacheError, Valkey};

/// The sorted set `{prefix}product-requests`: member = product id, score = requests.
#[derive(Clone)]
pub struct RequestCounts {
    valkey: Valkey,
    key: String,
}

impl RequestCounts {
    pub fn new(valkey: Valkey, key: String) -> Self {
        RequestCounts { valkey, key }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Adds `counts` (product id → requests) with one ZINCRBY per product,
    /// all sent in one pipeline (one round trip).
    pub async fn add(&self, counts: &BTreeMap<i64, u64>) -> Result<(), CacheError> {
        self.valkey
            .increment_scores(&self.key, counts.iter().map(|(id, n)| (*id, *n)))
            .await
    }

    /// The `n` most requested product ids with their counts, most requested first.
    pub async fn top(&self, n: u64) -> Result<Vec<(i64, u64)>, CacheError> {
        let members = self.valkey.top_scored(&self.key, n).await?;
        // Members are written by `add` only; anything else under the key is skipped.
        Ok(members
            .into_iter()
            .filter_map(|(member, score)| Some((member.parse().ok()?, score.max(0.0) as u64)))
            .collect())
    }
}
