//! Cache-aside (lazy loading): look in Valkey; on a miss, query the database,
//! store the rows as JSON with a TTL, and return them.
//!
//! Only the operation being compared is timed: the Valkey GET plus decoding
//! on a hit, the database query plus row conversion on a miss. Filling the
//! cache after a miss is timed on its own.

use std::time::{Duration, Instant};

use crate::cache::{CacheError, Valkey};
use crate::db::{DbError, DbSession, ResultSet, Statement};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadSource {
    /// Found in Valkey.
    Cache,
    /// Not in Valkey: read from the database and stored.
    Database,
    /// Valkey did not answer: read from the database, nothing stored.
    DatabaseCacheUnavailable,
    /// The cache is bypassed on purpose (`--no-cache`, and baseline reads).
    DatabaseNoCache,
}

impl ReadSource {
    pub fn label(self) -> &'static str {
        match self {
            ReadSource::Cache => "CACHE",
            ReadSource::Database => "DB",
            ReadSource::DatabaseCacheUnavailable => "DB (cache unavailable)",
            ReadSource::DatabaseNoCache => "DB (no cache)",
        }
    }
}

/// One read through the pattern.
#[derive(Debug, Clone)]
pub struct Read {
    pub source: ReadSource,
    /// GET + decode for a hit; query + row conversion for a database read.
    pub latency: Duration,
    /// SET after a miss, when it was attempted.
    pub cache_write: Option<Duration>,
    /// Why Valkey was skipped or failed, if it was.
    pub cache_error: Option<CacheError>,
    pub rows: ResultSet,
}

/// The cached form of a result: JSON of the [`ResultSet`]. Serialising our own ResultSet
/// cannot fail: it holds only JSON values.
pub fn encode(rows: &ResultSet) -> String {
    serde_json::to_string(rows).unwrap_or_default()
}

/// A cached entry back into rows, from the bytes GET returned; `None` when it does not decode.
pub fn decode(bytes: &[u8]) -> Option<ResultSet> {
    serde_json::from_slice(bytes).ok()
}

/// How a run reaches the cache.
#[derive(Clone)]
pub enum CacheLink {
    Connected(Valkey),
    /// Valkey could not be reached when the run started.
    Unavailable,
    /// The cache is skipped on purpose.
    Bypassed,
}

/// Cache-aside over one query. Database reads go through the caller's own
/// connection ([`DbSession`]), as a worker in an application would.
#[derive(Clone)]
pub struct CacheAside {
    pub cache: CacheLink,
    /// `--ttl` ± `--ttl-jitter`, drawn per write.
    pub ttl: crate::cache::TtlPolicy,
}

impl CacheAside {
    pub async fn read(&self, session: &mut DbSession, key: &str, statement: &Statement) -> Result<Read, DbError> {
        let valkey = match &self.cache {
            CacheLink::Connected(valkey) => valkey,
            CacheLink::Unavailable => {
                return self
                    .read_database(session, statement, ReadSource::DatabaseCacheUnavailable)
                    .await
            }
            CacheLink::Bypassed => {
                return self
                    .read_database(session, statement, ReadSource::DatabaseNoCache)
                    .await
            }
        };
        let started = Instant::now();
        let cached = valkey.get_bytes(key).await;
        let decoded = match &cached {
            Ok(Some(bytes)) => decode(bytes),
            _ => None,
        };
        let lookup = started.elapsed();

        match (cached, decoded) {
            (Ok(Some(_)), Some(rows)) => Ok(Read {
                source: ReadSource::Cache,
                latency: lookup,
                cache_write: None,
                cache_error: None,
                rows,
            }),
            // A miss, or an entry that no longer decodes (overwritten below).
            (Ok(_), _) => {
                let (rows, latency) = self.query(session, statement).await?;
                let (cache_write, cache_error) = self.store(valkey, key, &rows).await;
                Ok(Read {
                    source: ReadSource::Database,
                    latency,
                    cache_write,
                    cache_error,
                    rows,
                })
            }
            (Err(error), _) => {
                let (rows, latency) = self.query(session, statement).await?;
                Ok(Read {
                    source: ReadSource::DatabaseCacheUnavailable,
                    latency,
                    cache_write: None,
                    cache_error: Some(error),
                    rows,
                })
            }
        }
    }

    /// A read that skips the cache, e.g. a baseline for comparison.
    pub async fn read_database(
        &self,
        session: &mut DbSession,
        statement: &Statement,
        source: ReadSource,
    ) -> Result<Read, DbError> {
        let (rows, latency) = self.query(session, statement).await?;
        Ok(Read {
            source,
            latency,
            cache_write: None,
            cache_error: None,
            rows,
        })
    }

    /// The database side alone: query plus row conversion, timed (without the
    /// read-only transaction around a `--sql` query: see [`DbSession::fetch_timed`]).
    pub async fn query(
        &self,
        session: &mut DbSession,
        statement: &Statement,
    ) -> Result<(ResultSet, Duration), DbError> {
        session.fetch_timed(statement).await
    }

    async fn store(&self, valkey: &Valkey, key: &str, rows: &ResultSet) -> (Option<Duration>, Option<CacheError>) {
        let started = Instant::now();
        let text = encode(rows);
        match valkey.set_with_ttl(key, &text, self.ttl.pick()).await {
            Ok(()) => (Some(started.elapsed()), None),
            Err(error) => (None, Some(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn airport() -> ResultSet {
        ResultSet {
            columns: vec!["airport_id".into(), "iata".into(), "icao".into(), "name".into()],
            rows: vec![vec![
                json!(3797),
                json!("JFK"),
                json!("KJFK"),
                json!("John F Kennedy Intl"),
            ]],
        }
    }

    #[test]
    fn a_cached_entry_decodes_from_bytes_to_the_rows_stored() {
        let rows = airport();
        let stored = encode(&rows);
        // The entry's text is unchanged: what older runs stored still hits.
        assert_eq!(
            stored,
            r#"{"columns":["airport_id","iata","icao","name"],"rows":[[3797,"JFK","KJFK","John F Kennedy Intl"]]}"#
        );
        assert_eq!(decode(stored.as_bytes()), Some(rows.clone()));
        // The same as the text decode the hit path used before.
        assert_eq!(
            decode(stored.as_bytes()),
            serde_json::from_str::<ResultSet>(&stored).ok()
        );
    }

    #[test]
    fn every_kind_of_value_decodes_unchanged_from_bytes() {
        let rows = ResultSet {
            columns: vec![
                "n".into(),
                "price".into(),
                "when".into(),
                "none".into(),
                "name".into(),
                "doc".into(),
            ],
            rows: vec![
                vec![
                    json!(-1),
                    json!("19.90"),
                    json!("2024-05-01T07:30:00"),
                    Value::Null,
                    json!("Zürich 🛫 'q' \"x\""),
                    json!({"b": 1, "a": [1.5, true]}),
                ],
                vec![
                    json!(u64::MAX),
                    json!("0"),
                    json!("23:59:59.5"),
                    Value::Null,
                    json!(""),
                    json!(null),
                ],
            ],
        };
        let stored = encode(&rows);
        assert_eq!(decode(stored.as_bytes()), Some(rows));
    }

    #[test]
    fn an_entry_that_does_not_decode_is_a_miss() {
        assert_eq!(decode(b"not json"), None);
        assert_eq!(decode(&[0xff, 0xfe]), None);
        assert_eq!(decode(br#"{"columns":[]}"#), None);
    }
}
