//! `--listen`: keep reading one product, like a server answering requests,
//! and report every time the value it serves changes (when, the price, the
//! layer it came from). Run it in one terminal and `--update` in another:
//! with invalidation on, the change shows within one `--interval`; with
//! `--invalidation off`, only once the L1 entry's TTL ends.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use rust_decimal::Decimal;

use super::layers::{LayerLatencies, LayerMicros, LayerRecorders, ServedBy, Speedups};
use super::setup::{
    counter_warnings, existing_product, open_cache, open_database, read_product, warm_pools, CacheSettings, Setup,
};
use super::Plan;
use crate::cache::two_level::{CounterSnapshot, Layer};
use crate::config::Config;
use crate::db::products::ProductRow;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::{RunEvent, RunProgress};
use crate::exercises::Verdict;
use crate::measure;

/// One change of the served value (the first value served counts as one).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServedChange {
    pub event: &'static str,
    pub product_id: i64,
    /// Wall-clock time of the read, UTC.
    pub at: String,
    pub at_unix_ms: i64,
    #[serde(serialize_with = "measure::as_millis", rename = "elapsed_ms")]
    pub elapsed: Duration,
    pub read: u64,
    /// `None`: the product is gone.
    pub price: Option<Decimal>,
    pub previous_price: Option<Decimal>,
    pub name: Option<String>,
    pub layer: Layer,
    pub updated_at: Option<chrono::NaiveDateTime>,
    /// For a change after the first value: roughly how long after the row's
    /// `updated_at` this process served it. Approximate: `updated_at` is the
    /// database session's local time (MariaDB: whole seconds) read against this
    /// machine's UTC clock, so it is given only when plausible (0 to 1 hour),
    /// else `None` (e.g. a database not running in UTC).
    pub since_updated_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppedBy {
    Duration,
    CtrlC,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ListenerReport {
    pub connected: bool,
    pub subscriptions: u64,
    pub messages: u64,
}

/// The last line of `--listen`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListenSummary {
    pub event: &'static str,
    pub exercise: &'static str,
    pub database: String,
    pub product_id: i64,
    pub cache: CacheSettings,
    pub setup: Setup,
    #[serde(serialize_with = "measure::as_millis", rename = "interval_ms")]
    pub interval: Duration,
    #[serde(serialize_with = "measure::as_millis", rename = "listened_ms")]
    pub listened: Duration,
    pub stopped_by: StoppedBy,
    pub reads: u64,
    pub failed_reads: u64,
    pub changes: u64,
    pub last_price: Option<Decimal>,
    pub served_by: ServedBy,
    pub layers: LayerLatencies,
    /// The same summaries in microseconds (what the text table shows).
    pub layers_us: LayerMicros,
    pub speedup: Speedups,
    pub counters: CounterSnapshot,
    pub listener: Option<ListenerReport>,
    pub warnings: Vec<String>,
    /// The first warnings, from the set-up, were shown before the first read.
    #[serde(skip)]
    pub warnings_shown: usize,
    #[serde(skip)]
    pub verdict: Verdict,
}

/// What `--listen` says before its first read.
#[derive(Debug, Clone)]
pub struct ListenStart {
    pub product_id: i64,
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub cache: CacheSettings,
    pub subscribed: bool,
}

fn change_event(
    id: i64,
    read: u64,
    elapsed: Duration,
    row: Option<&ProductRow>,
    previous: Option<&Option<ProductRow>>,
    layer: Layer,
) -> ServedChange {
    let now = Utc::now();
    let since_updated_at_ms = match (previous, row) {
        (Some(_), Some(row)) => plausible_delay((now.naive_utc() - row.updated_at).num_milliseconds()),
        _ => None,
    };
    ServedChange {
        event: "change",
        product_id: id,
        at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        at_unix_ms: now.timestamp_millis(),
        elapsed,
        read,
        price: row.map(|r| r.price),
        previous_price: previous.and_then(|p| p.as_ref().map(|r| r.price)),
        name: row.map(|r| r.name.clone()),
        layer,
        updated_at: row.map(|r| r.updated_at),
        since_updated_at_ms,
    }
}

/// The longest delay `since_updated_at_ms` reports; anything else (negative,
/// or hours: a time-zone offset) says more about the clocks than the cache.
const PLAUSIBLE_DELAY_MS: i64 = 60 * 60 * 1000;

fn plausible_delay(ms: i64) -> Option<i64> {
    (0..PLAUSIBLE_DELAY_MS).contains(&ms).then_some(ms)
}

pub(super) async fn measure(
    config: &Config,
    plan: &Plan,
    id: i64,
    interval: Duration,
    duration: Option<Duration>,
    progress: &dyn RunProgress,
) -> Result<ListenSummary> {
    let side = open_database(config, 1).await?;
    existing_product(&side, id).await?;
    let caches = open_cache(config, plan.cache, false, true).await?;
    let pool_warm_up = warm_pools(&side.db, caches.valkey.as_ref(), 1).await?;
    for warning in &caches.warnings {
        progress.event(RunEvent::Warning(warning));
    }
    progress.event(RunEvent::ListenStarted(&ListenStart {
        product_id: id,
        interval,
        duration,
        cache: caches.settings.clone(),
        subscribed: caches.listener.as_ref().is_some_and(|l| l.is_connected()),
    }));

    let mut layers = LayerRecorders::default();
    let (mut reads, mut failed, mut changes) = (0u64, 0u64, 0u64);
    let mut last: Option<Option<ProductRow>> = None;
    let mut failing = false;

    let started = Instant::now();
    let deadline = async {
        match duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let stopped_by = loop {
        tokio::select! {
            biased;
            _ = &mut ctrl_c => break StoppedBy::CtrlC,
            () = &mut deadline => break StoppedBy::Duration,
            _ = ticker.tick() => {}
        }
        reads += 1;
        let served = match read_product(&caches.cache, &side.db, &caches.keys, id).await {
            Ok(served) => served,
            Err(error) => {
                failed += 1;
                if !failing {
                    progress.event(RunEvent::Warning(&format!(
                        "reads of product {id} are failing: {error}"
                    )));
                    failing = true;
                }
                continue;
            }
        };
        failing = false;
        layers.record(served.layer, served.latency);
        let row = served.value.as_ref().as_ref();
        if last.as_ref().map(Option::as_ref) != Some(row) {
            changes += 1;
            let event = change_event(id, reads, started.elapsed(), row, last.as_ref(), served.layer);
            progress.event(RunEvent::ServedChanged(&event));
            last = Some(row.cloned());
        }
    };
    let listened = started.elapsed();

    let counters = caches.cache.counters().snapshot();
    let mut warnings = caches.warnings.clone();
    warnings.extend(counter_warnings(&counters, caches.valkey.as_ref()));
    if failed > 0 {
        warnings.push(format!("{failed} of {reads} reads failed: the database did not answer"));
    }
    let latencies = layers.latencies();
    let mut summary = ListenSummary {
        event: "summary",
        exercise: "multi-level",
        database: side.server.clone(),
        product_id: id,
        cache: caches.settings.clone(),
        setup: Setup::of(&side, &caches, caches.subscribe, pool_warm_up),
        interval,
        listened,
        stopped_by,
        reads,
        failed_reads: failed,
        changes,
        last_price: last.flatten().map(|r| r.price),
        served_by: layers.served_by(),
        speedup: Speedups::of(&latencies),
        layers_us: latencies.micros(),
        layers: latencies,
        counters,
        listener: caches.listener.as_ref().map(|l| ListenerReport {
            connected: l.is_connected(),
            subscriptions: l.status.subscriptions.load(Ordering::Relaxed),
            messages: l.status.messages.load(Ordering::Relaxed),
        }),
        warnings,
        warnings_shown: caches.warnings.len(),
        verdict: Verdict::Complete,
    };
    side.db.close().await;
    if reads > 0 && failed == reads {
        summary.verdict = Verdict::failed(WorkshopError::incomplete(format!(
            "every read of product {id} failed; check the database (`workshop-cli check-env`)"
        )));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::plausible_delay;

    #[test]
    fn a_delay_is_reported_only_when_the_clocks_can_be_compared() {
        assert_eq!(plausible_delay(0), Some(0));
        assert_eq!(plausible_delay(1_250), Some(1_250));
        assert_eq!(
            plausible_delay(-1_000),
            None,
            "updated_at in the future: clocks disagree"
        );
        assert_eq!(
            plausible_delay(2 * 3_600_000 + 40),
            None,
            "a time-zone offset, not a delay"
        );
    }
}
