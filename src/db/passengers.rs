//! Passenger reads and writes for the write-through exercise. Each write is
//! one transaction that also reads the row back as stored, so the cache gets
//! exactly what the database holds (generated id, padding, collation).

use sqlx::{MySql, Postgres, Row, Transaction};

use super::changes::{numbered, record_changes, ChangeRecord};
use super::{Database, DbError, Pool};
use crate::config::DatabaseKind;

/// Column sizes of `passenger` (fixtures/*/schema.sql), in characters.
pub const PASSPORT_CHARS: usize = 9;
pub const NAME_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PassengerRow {
    pub passenger_id: i64,
    pub passportno: String,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassengerFields {
    pub passportno: String,
    pub firstname: String,
    pub lastname: String,
}

/// Why an insert or update did not happen.
#[derive(Debug)]
pub enum PassengerWriteError {
    /// The passport number belongs to another passenger; nothing was written.
    DuplicatePassport,
    NotFound,
    Database(DbError),
}

impl From<DbError> for PassengerWriteError {
    fn from(error: DbError) -> Self {
        PassengerWriteError::Database(error)
    }
}

/// A deleted passenger's ledger entries go with it.
const FORGET_MYSQL: &str = "DELETE FROM workshop_changes WHERE table_name = 'passenger' AND row_id = ?";
const FORGET_POSTGRES: &str = "DELETE FROM workshop_changes WHERE table_name = 'passenger' AND row_id = $1";
const SELECT_MYSQL: &str = "SELECT passenger_id, passportno, firstname, lastname FROM passenger WHERE passenger_id = ?";
const SELECT_POSTGRES: &str =
    "SELECT passenger_id, passportno, firstname, lastname FROM passenger WHERE passenger_id = $1";

/// A `passenger` row as the database returns it (padding included, should a
/// MySQL mode keep CHAR padding).
pub(super) fn row_of<R: Row>(row: &R) -> Result<PassengerRow, sqlx::Error>
where
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(PassengerRow {
        passenger_id: i64::from(row.try_get::<i32, _>("passenger_id")?),
        passportno: row.try_get("passportno")?,
        firstname: row.try_get("firstname")?,
        lastname: row.try_get("lastname")?,
    })
}

impl Database {
    fn write_error(&self, error: sqlx::Error) -> PassengerWriteError {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => PassengerWriteError::DuplicatePassport,
            _ => PassengerWriteError::Database(self.query_error(error)),
        }
    }

    /// INSERT, read back, COMMIT. Dropping the transaction on error rolls it back.
    pub async fn insert_passenger(&self, fields: &PassengerFields) -> Result<PassengerRow, PassengerWriteError> {
        self.ensure_change_ledger().await?;
        match &self.pool {
            Pool::MySql(pool) => {
                let mut tx: Transaction<'_, MySql> = pool.begin().await.map_err(|e| self.write_error(e))?;
                let done = sqlx::query("INSERT INTO passenger (passportno, firstname, lastname) VALUES (?, ?, ?)")
                    .bind(&fields.passportno)
                    .bind(&fields.firstname)
                    .bind(&fields.lastname)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.write_error(e))?;
                let id = i64::try_from(done.last_insert_id()).unwrap_or(i64::MAX);
                let row = sqlx::query(SELECT_MYSQL)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| self.write_error(e))?;
                let stored = row_of(&row).map_err(|e| self.write_error(e))?;
                let created = [ChangeRecord::created_passenger(&stored)];
                record_changes!(&mut *tx, self.kind(), self.command, &created)
                    .await
                    .map_err(|e| self.write_error(e))?;
                tx.commit().await.map_err(|e| self.write_error(e))?;
                Ok(stored)
            }
            Pool::Postgres(pool) => {
                let mut tx: Transaction<'_, Postgres> = pool.begin().await.map_err(|e| self.write_error(e))?;
                let id: i32 = sqlx::query_scalar(
                    "INSERT INTO passenger (passportno, firstname, lastname) VALUES ($1, $2, $3) RETURNING passenger_id",
                )
                .bind(&fields.passportno)
                .bind(&fields.firstname)
                .bind(&fields.lastname)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.write_error(e))?;
                let row = sqlx::query(SELECT_POSTGRES)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| self.write_error(e))?;
                let stored = row_of(&row).map_err(|e| self.write_error(e))?;
                let created = [ChangeRecord::created_passenger(&stored)];
                record_changes!(&mut *tx, self.kind(), self.command, &created)
                    .await
                    .map_err(|e| self.write_error(e))?;
                tx.commit().await.map_err(|e| self.write_error(e))?;
                Ok(stored)
            }
        }
    }

    /// Reads the row (locked), UPDATE, read back, records the old values in
    /// the ledger, COMMIT.
    pub async fn update_passenger(
        &self,
        id: i64,
        fields: &PassengerFields,
    ) -> Result<PassengerRow, PassengerWriteError> {
        let id32 = i32::try_from(id).map_err(|_| PassengerWriteError::NotFound)?;
        self.ensure_change_ledger().await?;
        let kind = self.kind();
        let error = |e: sqlx::Error| self.write_error(e);
        let select = match kind {
            DatabaseKind::MySql => SELECT_MYSQL,
            DatabaseKind::Postgres => SELECT_POSTGRES,
        };
        let locked = format!("{select} FOR UPDATE");
        let update = numbered(
            kind,
            "UPDATE passenger SET passportno = ?, firstname = ?, lastname = ? WHERE passenger_id = ?",
        );
        // One text for both dialects; the macro expands it once per pool.
        macro_rules! update_in {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.map_err(error)?;
                let old = sqlx::query(&locked)
                    .bind(id32)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(error)?
                    .ok_or(PassengerWriteError::NotFound)?;
                let old = row_of(&old).map_err(error)?;
                sqlx::query(&update)
                    .bind(&fields.passportno)
                    .bind(&fields.firstname)
                    .bind(&fields.lastname)
                    .bind(id32)
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?;
                let row = sqlx::query(select)
                    .bind(id32)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(error)?
                    .ok_or(PassengerWriteError::NotFound)?;
                let stored = row_of(&row).map_err(error)?;
                let updated = [ChangeRecord::updated_passenger(&old, &stored)];
                record_changes!(&mut *tx, kind, self.command, &updated)
                    .await
                    .map_err(error)?;
                tx.commit().await.map_err(error)?;
                Ok(stored)
            }};
        }
        match &self.pool {
            Pool::MySql(pool) => update_in!(pool),
            Pool::Postgres(pool) => update_in!(pool),
        }
    }

    pub async fn passenger(&self, id: i64) -> Result<Option<PassengerRow>, DbError> {
        let Ok(id32) = i32::try_from(id) else {
            return Ok(None);
        };
        let row = match &self.pool {
            Pool::MySql(pool) => sqlx::query(SELECT_MYSQL)
                .bind(id32)
                .fetch_optional(pool)
                .await
                .map_err(|e| self.query_error(e))?
                .map(|r| row_of(&r)),
            Pool::Postgres(pool) => sqlx::query(SELECT_POSTGRES)
                .bind(id32)
                .fetch_optional(pool)
                .await
                .map_err(|e| self.query_error(e))?
                .map(|r| row_of(&r)),
        };
        row.transpose().map_err(|e| self.query_error(e))
    }

    /// The id of the passenger holding this passport number, if any.
    pub async fn passenger_id_by_passport(&self, passportno: &str) -> Result<Option<i64>, DbError> {
        let id: Option<i32> = match &self.pool {
            Pool::MySql(pool) => {
                sqlx::query_scalar("SELECT passenger_id FROM passenger WHERE passportno = ?")
                    .bind(passportno)
                    .fetch_optional(pool)
                    .await
            }
            Pool::Postgres(pool) => {
                sqlx::query_scalar("SELECT passenger_id FROM passenger WHERE passportno = $1")
                    .bind(passportno)
                    .fetch_optional(pool)
                    .await
            }
        }
        .map_err(|e| self.query_error(e))?;
        Ok(id.map(i64::from))
    }

    /// Deletes passengers (and their details and bookings) by id, and their
    /// entries in the ledger of the workshop's writes; returns how many went.
    /// Only for rows the workshop created (`--cleanup`).
    pub async fn delete_passengers(&self, ids: &[i64]) -> Result<u64, DbError> {
        self.ensure_change_ledger().await?;
        let mut removed = 0;
        for id in ids {
            let Ok(id32) = i32::try_from(*id) else { continue };
            removed += match &self.pool {
                Pool::MySql(pool) => {
                    let mut tx = pool.begin().await.map_err(|e| self.query_error(e))?;
                    for table in ["booking", "passengerdetails"] {
                        sqlx::query(&format!("DELETE FROM {table} WHERE passenger_id = ?"))
                            .bind(id32)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| self.query_error(e))?;
                    }
                    let done = sqlx::query("DELETE FROM passenger WHERE passenger_id = ?")
                        .bind(id32)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.query_error(e))?;
                    sqlx::query(FORGET_MYSQL)
                        .bind(*id)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.query_error(e))?;
                    tx.commit().await.map_err(|e| self.query_error(e))?;
                    done.rows_affected()
                }
                Pool::Postgres(pool) => {
                    let mut tx = pool.begin().await.map_err(|e| self.query_error(e))?;
                    for table in ["booking", "passengerdetails"] {
                        sqlx::query(&format!("DELETE FROM {table} WHERE passenger_id = $1"))
                            .bind(id32)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| self.query_error(e))?;
                    }
                    let done = sqlx::query("DELETE FROM passenger WHERE passenger_id = $1")
                        .bind(id32)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.query_error(e))?;
                    sqlx::query(FORGET_POSTGRES)
                        .bind(*id)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.query_error(e))?;
                    tx.commit().await.map_err(|e| self.query_error(e))?;
                    done.rows_affected()
                }
            };
        }
        Ok(removed)
    }
}
