//! The one service set-up every exercise shares: connect the database and
//! Valkey, time each connection once, warm the pools untimed, and keep those
//! times in one [`ConnectionSetup`] record that the reports show apart from
//! every timing they would otherwise distort.

use std::time::{Duration, Instant};

use crate::cache::{CacheError, Valkey};
use crate::config::Config;
use crate::db::{Database, PoolSettings};
use crate::error::Result;
use crate::measure;

/// What an exercise needs from Valkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValkeyNeed {
    /// The run cannot do without it: connected first, so that when Valkey is
    /// down nothing is written anywhere, and its error ends the run.
    Required,
    /// The run goes on without it: its error is kept in [`Services::valkey_error`]
    /// for the exercise to turn into a warning in its own words.
    Optional,
    /// Not asked for (`--no-cache`).
    Off,
}

/// What to open: the pool's size, Valkey's role and the ledger name of the
/// database's writes.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    pub pool_connections: u64,
    pub valkey: ValkeyNeed,
    /// The command the database's writes are recorded as in the ledger.
    pub recording_as: Option<&'static str>,
}

/// Connection set-up, measured once and reported apart from every timing it
/// is compared with. Each exercise's `Setup` flattens it into its JSON
/// (`database_connect_ms`, `valkey_connect_ms`, `pool_warm_up_ms`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ConnectionSetup {
    /// `None` only when the run has no database (write-behind without one).
    #[serde(serialize_with = "measure::as_optional_millis", rename = "database_connect_ms")]
    pub database_connect: Option<Duration>,
    /// `None` when Valkey did not answer or was not asked for.
    #[serde(serialize_with = "measure::as_optional_millis", rename = "valkey_connect_ms")]
    pub valkey_connect: Option<Duration>,
    /// Opening the pool's connections and one Valkey round trip, untimed
    /// elsewhere; `None` when the exercise does not warm up (left out of JSON).
    #[serde(
        serialize_with = "measure::as_optional_millis",
        rename = "pool_warm_up_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub pool_warm_up: Option<Duration>,
}

/// The connected services of one run.
pub struct Services {
    pub db: Database,
    /// The server's product and version, e.g. `MariaDB 11.4.2`.
    pub database: String,
    pub valkey: Option<Valkey>,
    /// Why an optional Valkey is absent.
    pub valkey_error: Option<CacheError>,
    pub setup: ConnectionSetup,
}

/// Connects the database (a direct connection first, then the pool) and
/// Valkey as `needs` says; nothing is warmed up yet.
pub async fn connect(config: &Config, needs: Needs) -> Result<Services> {
    // A required Valkey first: when it is down, nothing is written anywhere.
    let required = match needs.valkey {
        ValkeyNeed::Required => Some(connect_valkey(config, ValkeyNeed::Required).await?),
        _ => None,
    };
    let (db, database) = connect_database(config, needs).await?;
    let (valkey, valkey_error) = match required {
        Some(connected) => connected,
        None => connect_valkey(config, needs.valkey).await?,
    };
    Ok(Services {
        setup: ConnectionSetup {
            database_connect: Some(db.connect_time()),
            valkey_connect: valkey.as_ref().map(Valkey::connect_time),
            pool_warm_up: None,
        },
        database,
        db,
        valkey,
        valkey_error,
    })
}

/// The database half of [`connect`], for an exercise that checks the
/// database before it asks for Valkey: the pool and the server's name.
pub async fn connect_database(config: &Config, needs: Needs) -> Result<(Database, String)> {
    let db = Database::connect(
        &config.database,
        PoolSettings {
            max_connections: u32::try_from(needs.pool_connections.max(1)).unwrap_or(u32::MAX),
            connect_timeout: config.connect_timeout,
        },
    )
    .await?;
    let db = match needs.recording_as {
        Some(command) => db.recording_as(command),
        None => db,
    };
    let info = db.server_info().await?;
    Ok((db, format!("{} {}", info.product, info.version)))
}

/// Valkey, required: its error ends the run.
pub async fn valkey(config: &Config) -> Result<Valkey> {
    Ok(Valkey::connect(&config.valkey, config.connect_timeout).await?)
}

/// The Valkey half of [`connect`]: `Err` only when it is required; an
/// optional Valkey that does not answer comes back as its error.
pub async fn connect_valkey(config: &Config, need: ValkeyNeed) -> Result<(Option<Valkey>, Option<CacheError>)> {
    match need {
        ValkeyNeed::Off => Ok((None, None)),
        ValkeyNeed::Required => Ok((Some(valkey(config).await?), None)),
        ValkeyNeed::Optional => match Valkey::connect(&config.valkey, config.connect_timeout).await {
            Ok(valkey) => Ok((Some(valkey), None)),
            Err(error) => Ok((None, Some(error))),
        },
    }
}

impl Services {
    /// Opens `connections` database connections and pings Valkey, so the
    /// first timed operation finds warm pools; the time goes into the record.
    pub async fn warm_up(&mut self, connections: u64) -> Result<Duration> {
        let took = warm_up(&self.db, self.valkey.as_ref(), connections).await?;
        self.setup.pool_warm_up = Some(took);
        Ok(took)
    }
}

/// Warms `connections` pooled database connections and pings Valkey, untimed
/// by any measurement; returns how long it took.
pub async fn warm_up(db: &Database, valkey: Option<&Valkey>, connections: u64) -> Result<Duration> {
    let started = Instant::now();
    db.warm_up(u32::try_from(connections.max(1)).unwrap_or(u32::MAX))
        .await?;
    if let Some(valkey) = valkey {
        let _ = valkey.round_trip().await;
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_keeps_the_json_names_and_leaves_out_a_warm_up_not_done() {
        let setup = ConnectionSetup {
            database_connect: Some(Duration::from_micros(2500)),
            valkey_connect: None,
            pool_warm_up: None,
        };
        assert_eq!(
            serde_json::to_value(&setup).unwrap(),
            serde_json::json!({ "database_connect_ms": 2.5, "valkey_connect_ms": null })
        );
        let warmed = ConnectionSetup {
            pool_warm_up: Some(Duration::from_millis(3)),
            ..setup
        };
        assert_eq!(serde_json::to_value(&warmed).unwrap()["pool_warm_up_ms"], 3.0);
    }
}
