//! What every mode of the exercise connects to: the database (with the
//! catalogue's id range), Valkey when it answers, the two-level cache over
//! both, and the invalidation subscription. Set-up times are kept apart
//! from every timing they would otherwise distort.

use std::time::{Duration, Instant};

use super::CacheShape;
use crate::cache::invalidation::InvalidationListener;
use crate::cache::two_level::{CounterSnapshot, Served, TwoLevelCache, TwoLevelSettings};
use crate::cache::{KeyScheme, Valkey};
use crate::config::Config;
use crate::db::products::ProductRow;
use crate::db::{Database, DbError};
use crate::error::{Result, WorkshopError};
use crate::exercises::services::{self, ConnectionSetup, Needs, ValkeyNeed};
use crate::measure;

/// Connection set-up, reported apart from every timing it is compared with.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Setup {
    #[serde(flatten)]
    pub connection: ConnectionSetup,
    /// Subscribing to the invalidation channel; `None` when not subscribed.
    #[serde(serialize_with = "measure::as_optional_millis", rename = "subscribe_ms")]
    pub subscribe: Option<Duration>,
}

impl Setup {
    /// The record of a run that opened `side` and `caches` and warmed up in `pool_warm_up`.
    pub(super) fn of(
        side: &DatabaseSide,
        caches: &CacheSide,
        subscribe: Option<Duration>,
        pool_warm_up: Duration,
    ) -> Setup {
        Setup {
            connection: ConnectionSetup {
                database_connect: Some(side.db.connect_time()),
                valkey_connect: caches.valkey_connect,
                pool_warm_up: Some(pool_warm_up),
            },
            subscribe,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheSettings {
    pub l1_capacity: u64,
    pub l1_ttl_seconds: u64,
    pub l2_ttl_seconds: u64,
    pub invalidation: bool,
    pub channel: String,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ProductRange {
    pub first_id: i64,
    pub last_id: i64,
}

impl ProductRange {
    /// How many ids the range spans (the catalogue has no gaps unless rows were deleted).
    pub fn span(&self) -> u64 {
        u64::try_from(self.last_id - self.first_id + 1).unwrap_or(0)
    }
}

/// The database side: a pool, its server and the catalogue's id range.
pub(super) struct DatabaseSide {
    pub db: Database,
    pub server: String,
    pub products: ProductRange,
}

pub(super) async fn open_database(config: &Config, connections: u64) -> Result<DatabaseSide> {
    let (db, server) = services::connect_database(
        config,
        Needs {
            pool_connections: connections.max(1) + 1,
            valkey: ValkeyNeed::Off,
            recording_as: Some("multi-level"),
        },
    )
    .await?;
    let Some((first_id, last_id)) = db.product_id_range().await? else {
        return Err(DbError::NotSeeded {
            detail: "table products is empty".into(),
        }
        .into());
    };
    Ok(DatabaseSide {
        db,
        server,
        products: ProductRange { first_id, last_id },
    })
}

/// The product as stored, or the one-line error every mode gives for an unknown id.
pub(super) async fn existing_product(side: &DatabaseSide, id: i64) -> Result<ProductRow> {
    let ProductRange { first_id, last_id } = side.products;
    let unknown = || {
        WorkshopError::invalid(format!(
            "no product with id {id}; product ids run from {first_id} to {last_id}"
        ))
    };
    if !(first_id..=last_id).contains(&id) {
        return Err(unknown());
    }
    side.db.product(id).await?.ok_or_else(unknown)
}

/// The cache side: L1 in this process, L2 when Valkey answers, and the
/// invalidation subscription when it is on.
pub(super) struct CacheSide {
    pub cache: TwoLevelCache<ProductRow>,
    pub valkey: Option<Valkey>,
    pub listener: Option<InvalidationListener>,
    pub keys: KeyScheme,
    pub settings: CacheSettings,
    pub valkey_connect: Option<Duration>,
    pub subscribe: Option<Duration>,
    pub warnings: Vec<String>,
}

/// `valkey_required`: writes (update, invalidate, warm) stop here, before
/// writing anything, when Valkey does not answer; reads go on without it.
pub(super) async fn open_cache(
    config: &Config,
    shape: CacheShape,
    valkey_required: bool,
    subscribe: bool,
) -> Result<CacheSide> {
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    let mut warnings = Vec::new();
    let listening = subscribe && shape.invalidation;
    // L2 stays off for the whole run of a process that started without
    // Valkey (it does not connect later); the invalidation listener does.
    let need = if valkey_required {
        ValkeyNeed::Required
    } else {
        ValkeyNeed::Optional
    };
    let (valkey, error) = services::connect_valkey(config, need).await?;
    if let Some(error) = error {
        warnings.push(if listening {
            format!(
                "{error}; reads go to L1 and the database only; invalidations are received once Valkey answers (L1 is emptied then)"
            )
        } else {
            format!("{error}; reads go to L1 and the database only, and no invalidation is received")
        });
    }
    let cache = TwoLevelCache::new(
        TwoLevelSettings {
            use_l1: true,
            l1_capacity: shape.l1_capacity,
            l1_ttl: shape.l1_ttl,
            l2_ttl: config.ttl_policy(),
        },
        valkey.clone(),
    );
    let channel = keys.invalidation_channel();
    let mut subscribed = None;
    let listener = if !listening {
        None
    } else if valkey.is_none() {
        // Valkey is down: do not wait again; the listener retries by itself.
        Some(InvalidationListener::spawn(
            &config.valkey,
            channel.clone(),
            cache.clone(),
            config.connect_timeout,
        ))
    } else {
        let started = Instant::now();
        let listener =
            InvalidationListener::start(&config.valkey, channel.clone(), cache.clone(), config.connect_timeout).await;
        if listener.is_connected() {
            subscribed = Some(started.elapsed());
        } else {
            warnings.push(format!(
                "could not subscribe to {channel} within {:.1} s; still trying, and L1 is emptied once subscribed",
                config.connect_timeout.as_secs_f64()
            ));
        }
        Some(listener)
    };
    Ok(CacheSide {
        valkey_connect: valkey.as_ref().map(Valkey::connect_time),
        cache,
        valkey,
        listener,
        settings: CacheSettings {
            l1_capacity: shape.l1_capacity,
            l1_ttl_seconds: shape.l1_ttl.as_secs(),
            l2_ttl_seconds: config.ttl.as_secs(),
            invalidation: shape.invalidation,
            channel,
        },
        keys,
        subscribe: subscribed,
        warnings,
    })
}

/// Opens `connections` database connections and pings Valkey, untimed.
pub(super) async fn warm_pools(db: &Database, valkey: Option<&Valkey>, connections: u64) -> Result<Duration> {
    services::warm_up(db, valkey, connections).await
}

/// Reads one product through L1 → L2 → database.
pub(super) async fn read_product(
    cache: &TwoLevelCache<ProductRow>,
    db: &Database,
    keys: &KeyScheme,
    id: i64,
) -> Result<Served<ProductRow>, DbError> {
    cache.get(&keys.product(id), || db.product(id)).await
}

/// Warnings every reading mode gives from the counters.
pub(super) fn counter_warnings(counters: &CounterSnapshot, valkey: Option<&Valkey>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(warning) = valkey.and_then(|v| v.breaker_counts().warning(v.command_timeout())) {
        warnings.push(warning);
    }
    if counters.l2_errors > 0 {
        warnings.push(format!(
            "Valkey did not answer {} time(s); L1 and the database served those reads (no request failed because of it)",
            counters.l2_errors
        ));
    }
    if counters.l1_clears > 0 {
        warnings.push(format!(
            "the invalidation channel (re)subscribed after a gap: L1 was emptied {} time(s), since messages sent meanwhile are lost",
            counters.l1_clears
        ));
    }
    warnings
}
