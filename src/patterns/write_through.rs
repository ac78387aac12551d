//! Write-through: write the database in a transaction, commit, read the row
//! back as stored, and SET it in Valkey with the TTL. Readers then find the
//! new value in the cache at once, instead of a stale one until the TTL ends.

use std::time::{Duration, Instant};

use crate::cache::{CacheError, KeyScheme, Valkey};
use crate::db::passengers::{PassengerFields, PassengerRow, PassengerWriteError};
use crate::db::{Database, DbError};

#[derive(Debug)]
pub enum WriteThroughError {
    /// Nothing was written: the passport number is taken.
    DuplicatePassport {
        passportno: String,
        existing_id: Option<i64>,
    },
    NotFound {
        passenger_id: i64,
    },
    Database(DbError),
    Cache(CacheError),
    /// The database has the row, but the cache write failed afterwards.
    CacheAfterCommit {
        passenger_id: i64,
        cause: CacheError,
        /// Whether an older cached value (if any) was removed.
        stale_removed: bool,
    },
}

impl From<DbError> for WriteThroughError {
    fn from(error: DbError) -> Self {
        WriteThroughError::Database(error)
    }
}

/// One write through the pattern.
#[derive(Debug, Clone)]
pub struct Written {
    pub row: PassengerRow,
    pub key: String,
    /// BEGIN, INSERT/UPDATE, read back, COMMIT.
    pub db_write: Duration,
    /// SET with the TTL.
    pub cache_write: Duration,
}

/// The cached value and the stored row of one passenger, compared.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    pub cached: Option<PassengerRow>,
    pub stored: Option<PassengerRow>,
    pub differences: Vec<String>,
}

impl Verification {
    pub fn consistent(&self) -> bool {
        self.cached.is_some() && self.stored.is_some() && self.differences.is_empty()
    }
}

#[derive(Clone)]
pub struct WriteThrough {
    pub db: Database,
    pub valkey: Valkey,
    pub keys: KeyScheme,
    /// `--ttl` ± `--ttl-jitter`, drawn per write.
    pub ttl: crate::cache::TtlPolicy,
}

impl WriteThrough {
    pub async fn create(&self, fields: &PassengerFields) -> Result<Written, WriteThroughError> {
        let started = Instant::now();
        let row = match self.db.insert_passenger(fields).await {
            Ok(row) => row,
            Err(error) => return Err(self.explain(error, fields, None).await),
        };
        self.cache(row, started.elapsed()).await
    }

    pub async fn update(&self, passenger_id: i64, fields: &PassengerFields) -> Result<Written, WriteThroughError> {
        let started = Instant::now();
        let row = match self.db.update_passenger(passenger_id, fields).await {
            Ok(row) => row,
            Err(error) => return Err(self.explain(error, fields, Some(passenger_id)).await),
        };
        self.cache(row, started.elapsed()).await
    }

    /// The value a reader finds in the cache for this passenger now.
    pub async fn cached(&self, passenger_id: i64) -> Result<Option<PassengerRow>, CacheError> {
        let text = self.valkey.get(&self.keys.passenger(passenger_id)).await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Caches a row as a plain cache-aside read would (used to show staleness).
    pub async fn cache_row(&self, row: &PassengerRow) -> Result<(), CacheError> {
        let text = serde_json::to_string(row).unwrap_or_default();
        self.valkey
            .set_with_ttl(&self.keys.passenger(row.passenger_id), &text, self.ttl.pick())
            .await
    }

    /// Reads the key and the row again and compares them field by field.
    pub async fn verify(&self, passenger_id: i64) -> Result<Verification, WriteThroughError> {
        let cached = self.cached(passenger_id).await.map_err(WriteThroughError::Cache)?;
        let stored = self.db.passenger(passenger_id).await?;
        Ok(Verification {
            differences: differences(cached.as_ref(), stored.as_ref()),
            cached,
            stored,
        })
    }

    async fn cache(&self, row: PassengerRow, db_write: Duration) -> Result<Written, WriteThroughError> {
        let key = self.keys.passenger(row.passenger_id);
        let text = serde_json::to_string(&row).unwrap_or_default();
        let started = Instant::now();
        match self.valkey.set_with_ttl(&key, &text, self.ttl.pick()).await {
            Ok(()) => Ok(Written {
                row,
                key,
                db_write,
                cache_write: started.elapsed(),
            }),
            Err(cause) => {
                // Never leave an older value behind: readers must go to the database.
                let stale_removed = self.valkey.delete(&key).await.is_ok();
                Err(WriteThroughError::CacheAfterCommit {
                    passenger_id: row.passenger_id,
                    cause,
                    stale_removed,
                })
            }
        }
    }

    async fn explain(
        &self,
        error: PassengerWriteError,
        fields: &PassengerFields,
        id: Option<i64>,
    ) -> WriteThroughError {
        match error {
            PassengerWriteError::DuplicatePassport => WriteThroughError::DuplicatePassport {
                passportno: fields.passportno.clone(),
                existing_id: self
                    .db
                    .passenger_id_by_passport(&fields.passportno)
                    .await
                    .ok()
                    .flatten(),
            },
            PassengerWriteError::NotFound => WriteThroughError::NotFound {
                passenger_id: id.unwrap_or_default(),
            },
            PassengerWriteError::Database(error) => WriteThroughError::Database(error),
        }
    }
}

/// Field-by-field differences between a cached and a stored row.
pub fn differences(cached: Option<&PassengerRow>, stored: Option<&PassengerRow>) -> Vec<String> {
    match (cached, stored) {
        (None, None) => vec!["neither the cache nor the database has this passenger".into()],
        (None, Some(_)) => vec!["the cache has no entry".into()],
        (Some(_), None) => vec!["the database has no row, but the cache has one".into()],
        (Some(c), Some(s)) => {
            let mut out = Vec::new();
            let mut compare = |field: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug, same: bool| {
                if !same {
                    out.push(format!("{field}: cache {a:?} ≠ database {b:?}"));
                }
            };
            compare(
                "passenger_id",
                &c.passenger_id,
                &s.passenger_id,
                c.passenger_id == s.passenger_id,
            );
            compare("passportno", &c.passportno, &s.passportno, c.passportno == s.passportno);
            compare("firstname", &c.firstname, &s.firstname, c.firstname == s.firstname);
            compare("lastname", &c.lastname, &s.lastname, c.lastname == s.lastname);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(first: &str) -> PassengerRow {
        PassengerRow {
            passenger_id: 7,
            passportno: "P123456".into(),
            firstname: Some(first.into()),
            lastname: Some("Lovelace".into()),
        }
    }

    #[test]
    fn equal_rows_have_no_differences() {
        assert!(differences(Some(&row("Ada")), Some(&row("Ada"))).is_empty());
    }

    #[test]
    fn a_changed_field_is_named() {
        let d = differences(Some(&row("Ada")), Some(&row("Grace")));
        assert_eq!(
            d,
            vec!["firstname: cache Some(\"Ada\") ≠ database Some(\"Grace\")".to_string()]
        );
    }

    #[test]
    fn a_missing_entry_is_a_difference() {
        assert_eq!(differences(None, Some(&row("Ada"))).len(), 1);
    }
}
