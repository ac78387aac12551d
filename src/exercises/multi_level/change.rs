//! Changing a product so every process notices.
//!
//! `--update ID --price P` is write-through: the database first (in a
//! transaction), then the new row into L2 and this process's L1, then the
//! key is published on the invalidation channel so every other process drops
//! it from its L1 and reads the new row from L2. `--invalidate ID` is the
//! delete style: drop the key from L2 (and L1) and publish; the next read
//! anywhere loads the row from the database.
//!
//! With `--invalidation off` nothing is published: other processes keep
//! serving the old row from their L1 until its TTL ends.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;

use super::setup::{existing_product, open_cache, open_database, warm_pools, CacheSettings, Setup};
use super::Plan;
use crate::cache::invalidation::publish;
use crate::config::Config;
use crate::db::products::ProductRow;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::Verdict;
use crate::measure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Update,
    Invalidate,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ChangeOutcome {
    pub exercise: &'static str,
    pub mode: ChangeAction,
    pub database: String,
    pub product_id: i64,
    pub key: String,
    pub cache: CacheSettings,
    pub setup: Setup,
    /// The row before the change.
    pub before: ProductRow,
    /// The row as committed (update only).
    pub after: Option<ProductRow>,
    pub steps: Vec<ChangeStep>,
    /// Whether the key was announced on the invalidation channel.
    pub published: bool,
    /// Processes subscribed to the channel when it was announced.
    pub receivers: Option<u64>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub verdict: Verdict,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ChangeStep {
    pub step: &'static str,
    #[serde(serialize_with = "measure::as_millis", rename = "elapsed_ms")]
    pub elapsed: Duration,
    pub ok: bool,
}

fn step(steps: &mut Vec<ChangeStep>, name: &'static str, started: Instant, ok: bool) {
    steps.push(ChangeStep {
        step: name,
        elapsed: started.elapsed(),
        ok,
    });
}

/// `price`: `Some` updates, `None` invalidates.
pub(super) async fn measure(
    config: &Config,
    plan: &Plan,
    id: i64,
    price: Option<Decimal>,
    progress: &dyn RunProgress,
) -> Result<ChangeOutcome> {
    progress.phase(if price.is_some() { "updating" } else { "invalidating" }, None);
    let side = open_database(config, 1).await?;
    let before = existing_product(&side, id).await?;
    // Valkey must answer before anything is written.
    let caches = open_cache(config, plan.cache, true, false).await?;
    let Some(valkey) = caches.valkey.clone() else {
        return Err(WorkshopError::incomplete(
            "Valkey is not connected; nothing was changed",
        ));
    };
    let pool_warm_up = warm_pools(&side.db, Some(&valkey), 1).await?;
    let key = caches.keys.product(id);
    let mut steps = Vec::new();
    let mut failure: Option<String> = None;

    let (mode, after) = match price {
        Some(price) => {
            let started = Instant::now();
            let Some(row) = side.db.update_product_price(id, price).await? else {
                return Err(WorkshopError::invalid(format!(
                    "no product with id {id}; it was deleted a moment ago"
                )));
            };
            step(&mut steps, "database UPDATE in a transaction", started, true);

            let errors = caches.cache.counters().snapshot().l2_errors;
            let started = Instant::now();
            caches.cache.put(&key, Some(row.clone())).await;
            let stored = caches.cache.counters().snapshot().l2_errors == errors;
            step(&mut steps, "SET the new row in L2, put it in L1", started, stored);
            if !stored {
                // Never leave the old row in L2: delete it, or say that it stays.
                let left = match valkey.delete(&key).await {
                    Ok(_) => "the old entry was deleted, so readers load the new row from the database",
                    Err(_) => "the old entry could not be deleted and may be served until its L2 TTL ends",
                };
                failure = Some(format!(
                    "product {id} has the new price in the database, but Valkey did not take the new row; {left}"
                ));
            }
            (ChangeAction::Update, Some(row))
        }
        None => {
            let started = Instant::now();
            let removed = caches.cache.remove(&key).await;
            step(
                &mut steps,
                "DEL the key from L2, drop it from L1",
                started,
                removed.is_ok(),
            );
            removed?;
            (ChangeAction::Invalidate, None)
        }
    };

    let mut receivers = None;
    if plan.cache.invalidation {
        let started = Instant::now();
        let published = publish(&valkey, &caches.settings.channel, &key).await;
        step(
            &mut steps,
            "PUBLISH the key on the invalidation channel",
            started,
            published.is_ok(),
        );
        match published {
            Ok(n) => receivers = Some(n),
            Err(error) => {
                let reason = format!(
                    "the change was not announced ({error}); other processes serve the old row from their L1 for up to its TTL"
                );
                failure = Some(match failure {
                    Some(first) => format!("{first}; {reason}"),
                    None => reason,
                });
            }
        }
    }

    let mut warnings = caches.warnings.clone();
    if mode == ChangeAction::Update {
        warnings.push(crate::exercises::clean::permanent_change_note(
            &format!("product {id}'s price"),
            config,
        ));
    }
    if !plan.cache.invalidation {
        warnings.push(format!(
            "--invalidation off: nothing was published; other processes serve the old row from their L1 until its TTL ({} s by default)",
            super::DEFAULT_L1_TTL_SECONDS
        ));
    }
    let outcome = ChangeOutcome {
        exercise: "multi-level",
        mode,
        database: side.server.clone(),
        product_id: id,
        key,
        cache: caches.settings.clone(),
        setup: Setup::of(&side, &caches, None, pool_warm_up),
        before,
        after,
        steps,
        published: receivers.is_some(),
        receivers,
        warnings,
        verdict: match failure {
            Some(message) => Verdict::failed(WorkshopError::incomplete(message)),
            None => Verdict::Complete,
        },
    };
    progress.finish_phase();
    side.db.close().await;
    Ok(outcome)
}
