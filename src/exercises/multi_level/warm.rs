//! Cache warming: load the most requested products into L2 and L1 before
//! the first user asks, so nobody waits for the database after a deploy or a
//! Valkey restart. "Most requested" comes from the request counts the reads
//! keep in Valkey; without any, the lowest ids stand in (and the report says so).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::setup::{CacheSide, DatabaseSide};
use crate::cache::popularity::RequestCounts;
use crate::error::Result;
use crate::measure;

/// Where the warmed ids came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmSource {
    RequestCounts,
    /// Fewer products had request counts than asked for: the lowest other ids filled up.
    RequestCountsThenLowestIds,
    /// No request counts yet.
    LowestIds,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WarmReport {
    pub requested: u64,
    /// Products put into both layers.
    pub warmed: u64,
    pub source: WarmSource,
    pub counts_key: String,
    /// How many of the warmed ids had request counts.
    pub from_request_counts: u64,
    pub product_ids: Vec<i64>,
    /// Ids without a row: their absence was cached.
    pub not_found: u64,
    /// Products Valkey did not take (they are in this process's L1 only).
    pub l2_write_errors: u64,
    /// Reading the most requested ids (ZRANGE).
    #[serde(serialize_with = "measure::as_millis", rename = "choose_ms")]
    pub choose: Duration,
    /// Loading every product from the database and writing L2 and L1.
    #[serde(serialize_with = "measure::as_millis", rename = "load_and_fill_ms")]
    pub load_and_fill: Duration,
    pub parallel_loads: u64,
}

/// The `n` ids to warm: the most requested first, then the lowest ids not yet chosen.
pub fn choose_ids(top: &[(i64, u64)], first_id: i64, last_id: i64, n: u64) -> Chosen {
    let want = usize::try_from(n).unwrap_or(usize::MAX);
    let mut ids: Vec<i64> = top
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| (first_id..=last_id).contains(id))
        .take(want)
        .collect();
    let counted = ids.len();
    let chosen: BTreeSet<i64> = ids.iter().copied().collect();
    let missing = want - counted;
    ids.extend((first_id..=last_id).filter(|id| !chosen.contains(id)).take(missing));
    let source = match counted {
        0 => WarmSource::LowestIds,
        c if c < ids.len() => WarmSource::RequestCountsThenLowestIds,
        _ => WarmSource::RequestCounts,
    };
    Chosen {
        ids,
        counted: counted as u64,
        source,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Chosen {
    pub ids: Vec<i64>,
    /// How many of `ids` (the first ones) had request counts.
    pub counted: u64,
    pub source: WarmSource,
}

pub(super) async fn run(
    side: &DatabaseSide,
    caches: &CacheSide,
    counts: &RequestCounts,
    n: u64,
    parallel: u64,
) -> Result<WarmReport> {
    let started = Instant::now();
    let top = counts.top(n).await?;
    let Chosen { ids, counted, source } = choose_ids(&top, side.products.first_id, side.products.last_id, n);
    let choose = started.elapsed();

    let errors_before = caches.cache.counters().snapshot().l2_errors;
    let started = Instant::now();
    let loads = futures_util::stream::iter(ids.iter().copied())
        .map(|id| async move {
            let row = side.db.product(id).await?;
            let found = row.is_some();
            caches.cache.put(&caches.keys.product(id), row).await;
            Ok::<_, crate::db::DbError>(found)
        })
        .buffer_unordered(usize::try_from(parallel.max(1)).unwrap_or(1))
        .collect::<Vec<_>>()
        .await;
    let load_and_fill = started.elapsed();
    let mut not_found = 0;
    for load in loads {
        if !load? {
            not_found += 1;
        }
    }
    Ok(WarmReport {
        requested: n,
        warmed: ids.len() as u64,
        source,
        counts_key: counts.key().to_string(),
        from_request_counts: counted,
        product_ids: ids,
        not_found,
        l2_write_errors: caches.cache.counters().snapshot().l2_errors - errors_before,
        choose,
        load_and_fill,
        parallel_loads: parallel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_request_counts_the_lowest_ids_are_warmed() {
        let chosen = choose_ids(&[], 1, 200, 3);
        assert_eq!(
            (chosen.ids, chosen.counted, chosen.source),
            (vec![1, 2, 3], 0, WarmSource::LowestIds)
        );
    }

    #[test]
    fn the_most_requested_come_first_and_the_lowest_ids_fill_up() {
        let top = [(150, 4), (3, 1)];
        let chosen = choose_ids(&top, 1, 200, 2);
        assert_eq!(
            (chosen.ids, chosen.counted, chosen.source),
            (vec![150, 3], 2, WarmSource::RequestCounts)
        );
        let chosen = choose_ids(&top, 1, 200, 4);
        assert_eq!(
            (chosen.ids, chosen.counted, chosen.source),
            (vec![150, 3, 1, 2], 2, WarmSource::RequestCountsThenLowestIds)
        );
    }

    #[test]
    fn counted_ids_outside_the_catalogue_are_skipped() {
        let top = [(999_999, 9), (5, 2)];
        let chosen = choose_ids(&top, 1, 10, 2);
        assert_eq!(
            (chosen.ids, chosen.source),
            (vec![5, 1], WarmSource::RequestCountsThenLowestIds)
        );
        assert_eq!(choose_ids(&[], 1, 2, 5).ids, vec![1, 2]);
    }
}
