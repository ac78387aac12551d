//! Mixed traffic for `stats --read-ratio`: a share of the requests are price
//! updates of the product they drew, through the same write path as
//! `multi-level --update` and `serve`'s PUT (the database in a transaction
//! with its ledger row, so `clean` restores the price), followed by
//! write-through (the new row into L2 and L1) or invalidate-on-write (the
//! key dropped from both).
//!
//! A read is *stale* when it returns a price other than the one the last
//! write committed before the read started (or one committed while it ran):
//! [`Freshness`] keeps the recent writes per product to tell.

use rust_decimal::Decimal;
use std::collections::{HashMap, VecDeque};
use tokio::time::Instant;

use crate::measure::LatencySummary;

/// What a write does to the cache after the database commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    /// `SET` the committed row in L2 and put it in L1.
    #[default]
    WriteThrough,
    /// Delete the key from L2 and L1: the next read loads the row.
    Invalidate,
}

impl WriteMode {
    pub fn label(self) -> &'static str {
        match self {
            WriteMode::WriteThrough => "write-through",
            WriteMode::Invalidate => "invalidate",
        }
    }
}

/// Reads versus writes: `read_ratio` percent of the requests read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteMix {
    pub read_ratio: u64,
    pub mode: WriteMode,
}

/// Writes remembered per product: more than this many writes of one product
/// during one read make that read undecidable (it is not counted stale).
const WRITES_KEPT: usize = 8;

/// Committed prices per product, in commit order, with the moment each
/// commit was known (when the database call returned: a little after the
/// commit itself, so a read is never judged against a write it could not see).
#[derive(Debug, Default)]
pub struct Freshness {
    writes: HashMap<i64, VecDeque<(Instant, Decimal)>>,
}

/// How one read compares with the writes of its product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCheck {
    /// No write of this product had committed before the read started, or
    /// the read returned a price one of the possible writes stored.
    Fresh,
    /// The read returned an older price than the database held when it started.
    Stale,
    /// Too many writes of the product since: not judged.
    Unknown,
}

impl Freshness {
    pub fn committed(&mut self, id: i64, at: Instant, price: Decimal) {
        let writes = self.writes.entry(id).or_default();
        if writes.len() == WRITES_KEPT {
            writes.pop_front();
        }
        writes.push_back((at, price));
    }

    /// A read of product `id` that started at `started` and returned `price`
    /// (`None`: no row).
    pub fn check(&self, id: i64, started: Instant, price: Option<Decimal>) -> ReadCheck {
        let Some(writes) = self.writes.get(&id) else {
            return ReadCheck::Fresh;
        };
        // The newest write known before the read started: the floor.
        let Some(floor) = writes.iter().rposition(|(at, _)| *at <= started) else {
            // Every kept write came during the read; older ones may have been dropped.
            return if writes.len() == WRITES_KEPT {
                ReadCheck::Unknown
            } else {
                ReadCheck::Fresh
            };
        };
        let acceptable = writes.iter().skip(floor).any(|(_, p)| Some(*p) == price);
        if acceptable {
            ReadCheck::Fresh
        } else {
            ReadCheck::Stale
        }
    }
}

/// The writes of a mixed run (`stats --read-ratio`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WriteStats {
    pub mode: WriteMode,
    pub read_ratio: u64,
    pub reads: u64,
    pub writes: u64,
    /// The whole write: database transaction (with its ledger row) and the cache step.
    pub latency: Option<LatencySummary>,
    /// Reads that returned an older price than the database held when they started.
    pub stale_reads: u64,
    /// Reads of a product written more often during the read than can be judged.
    pub unjudged_reads: u64,
    /// Write-through `SET`s or invalidating `DEL`s Valkey did not take.
    pub cache_step_failures: u64,
    /// Products the run changed (`workshop-cli clean` restores their prices).
    pub products_changed: u64,
}

/// A new price from a request's random draw: 1.00 to 999.99.
pub fn price_from(draw: u64) -> Decimal {
    let cents = 100 + draw % 99_900;
    Decimal::new(i64::try_from(cents).unwrap_or(100), 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn price(cents: i64) -> Option<Decimal> {
        Some(Decimal::new(cents, 2))
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_after_a_write_must_return_that_write() {
        let mut freshness = Freshness::default();
        let t0 = Instant::now();
        freshness.committed(7, t0, Decimal::new(1000, 2));
        tokio::time::advance(Duration::from_millis(5)).await;
        let later = Instant::now();
        assert_eq!(freshness.check(7, later, price(1000)), ReadCheck::Fresh);
        assert_eq!(freshness.check(7, later, price(999)), ReadCheck::Stale);
        assert_eq!(freshness.check(7, later, None), ReadCheck::Stale);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_during_the_read_allows_either_price() {
        let mut freshness = Freshness::default();
        freshness.committed(7, Instant::now(), Decimal::new(1000, 2));
        tokio::time::advance(Duration::from_millis(5)).await;
        let read_started = Instant::now();
        tokio::time::advance(Duration::from_millis(5)).await;
        freshness.committed(7, Instant::now(), Decimal::new(2000, 2));
        assert_eq!(freshness.check(7, read_started, price(1000)), ReadCheck::Fresh);
        assert_eq!(freshness.check(7, read_started, price(2000)), ReadCheck::Fresh);
        assert_eq!(freshness.check(7, read_started, price(3000)), ReadCheck::Stale);
    }

    #[tokio::test(start_paused = true)]
    async fn a_product_never_written_is_fresh_and_too_many_writes_are_unjudged() {
        let mut freshness = Freshness::default();
        let read_started = Instant::now();
        assert_eq!(freshness.check(1, read_started, price(5)), ReadCheck::Fresh);
        for cents in 0..WRITES_KEPT as i64 {
            tokio::time::advance(Duration::from_millis(1)).await;
            freshness.committed(1, Instant::now(), Decimal::new(cents, 2));
        }
        assert_eq!(freshness.check(1, read_started, price(5)), ReadCheck::Unknown);
    }

    #[test]
    fn prices_have_two_decimals_and_stay_in_range() {
        assert_eq!(price_from(0), Decimal::new(100, 2));
        assert_eq!(price_from(99_899), Decimal::new(99_999, 2));
        assert_eq!(price_from(99_900), Decimal::new(100, 2));
    }
}
