//! The ledger of the workshop's writes (`workshop_changes`, see
//! `fixtures/*/changes.sql`): every row the workshop creates or updates is
//! recorded in the write's own transaction, so `workshop-cli clean` can
//! delete exactly what it created and give updated rows their old values
//! back — also on a real FlughafenDB import, where the passengers are real.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use sqlx::Row;

use super::dialect::placeholder;
use super::passengers::{row_of, PassengerRow};
use super::{Database, DbError, Pool};
use crate::config::DatabaseKind;
use crate::fixtures::schema::change_ledger;

pub const LEDGER_TABLE: &str = "workshop_changes";
pub const PASSENGER_TABLE: &str = "passenger";
pub const PRODUCTS_TABLE: &str = "products";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Updated,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
        }
    }

    fn parse(text: &str) -> Option<ChangeKind> {
        match text {
            "created" => Some(ChangeKind::Created),
            "updated" => Some(ChangeKind::Updated),
            _ => None,
        }
    }
}

/// A change to record, in the transaction of the write it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub table: &'static str,
    pub row_id: i64,
    pub kind: ChangeKind,
    /// The row before an update (JSON); `None` for a created row.
    pub old_values: Option<String>,
    /// The row as the write left it (JSON).
    pub new_values: String,
}

impl ChangeRecord {
    pub fn created_passenger(row: &PassengerRow) -> ChangeRecord {
        ChangeRecord {
            table: PASSENGER_TABLE,
            row_id: row.passenger_id,
            kind: ChangeKind::Created,
            old_values: None,
            new_values: json_of(row),
        }
    }

    pub fn updated_passenger(old: &PassengerRow, new: &PassengerRow) -> ChangeRecord {
        ChangeRecord {
            table: PASSENGER_TABLE,
            row_id: new.passenger_id,
            kind: ChangeKind::Updated,
            old_values: Some(json_of(old)),
            new_values: json_of(new),
        }
    }

    pub fn updated_product(id: i64, old: &ProductPrice, new: &ProductPrice) -> ChangeRecord {
        ChangeRecord {
            table: PRODUCTS_TABLE,
            row_id: id,
            kind: ChangeKind::Updated,
            old_values: Some(json_of(old)),
            new_values: json_of(new),
        }
    }
}

/// What the workshop changes in a product: its price, name and stock flag,
/// and `updated_at` with them. `name` and `in_stock` are absent from records
/// written before `serve` could change them (those changed the price only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProductPrice {
    pub price: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_stock: Option<bool>,
    pub updated_at: NaiveDateTime,
}

impl ProductPrice {
    /// Whether the row as it is now is the one the workshop wrote: the
    /// fields the record has must all match.
    fn is_written(&self, current: &ProductPrice) -> bool {
        self.price == current.price
            && self.updated_at == current.updated_at
            && self
                .name
                .as_ref()
                .is_none_or(|name| Some(name) == current.name.as_ref())
            && self.in_stock.is_none_or(|flag| Some(flag) == current.in_stock)
    }
}

fn json_of<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// One row of the ledger, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub change_id: i64,
    pub table: String,
    pub row_id: i64,
    pub kind: ChangeKind,
    pub old_values: Option<String>,
    pub new_values: Option<String>,
    pub command: String,
}

/// `?` placeholders renumbered for the dialect (`$1`, `$2`, … on PostgreSQL).
/// Only for the workshop's own SQL, which has no `?` inside strings.
pub fn numbered(kind: DatabaseKind, sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut position = 0;
    for c in sql.chars() {
        if c == '?' {
            position += 1;
            out.push_str(&placeholder(kind, position));
        } else {
            out.push(c);
        }
    }
    out
}

/// The multi-row INSERT that records `rows` changes.
pub fn record_sql(kind: DatabaseKind, rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?)"; rows.max(1)].join(", ");
    numbered(
        kind,
        &format!(
            "INSERT INTO {LEDGER_TABLE} (table_name, row_id, change_kind, old_values, new_values, command) VALUES {values}"
        ),
    )
}

/// Records `records` on a transaction of either pool: `$tx` is the open
/// transaction, evaluated as `&mut *$tx`. Expands to a `Result<(), sqlx::Error>`.
macro_rules! record_changes {
    ($tx:expr, $kind:expr, $command:expr, $records:expr) => {
        async {
            let records: &[$crate::db::changes::ChangeRecord] = $records;
            if records.is_empty() {
                return Ok::<(), sqlx::Error>(());
            }
            let sql = $crate::db::changes::record_sql($kind, records.len());
            let mut query = sqlx::query(&sql);
            for record in records {
                query = query
                    .bind(record.table)
                    .bind(record.row_id)
                    .bind(record.kind.as_str())
                    .bind(record.old_values.as_deref())
                    .bind(record.new_values.as_str())
                    .bind($command);
            }
            query.execute($tx).await.map(drop)
        }
    };
}
pub(crate) use record_changes;

/// Runs `$body` with `$tx` bound to a new transaction on whichever pool `$db`
/// has; the body commits. The same text serves both dialects (write its SQL
/// with `?` and pass it through [`numbered`]).
macro_rules! in_transaction {
    ($db:expr, $tx:ident => $body:block) => {
        match &$db.pool {
            Pool::MySql(pool) => {
                let mut $tx = pool.begin().await.map_err(|e| $db.query_error(e))?;
                $body
            }
            Pool::Postgres(pool) => {
                let mut $tx = pool.begin().await.map_err(|e| $db.query_error(e))?;
                $body
            }
        }
    };
}

/// What undoing one row's changes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Undone {
    /// The created row was deleted (with its bookings and details).
    Deleted,
    /// The updated row has its recorded old values again.
    Restored,
    /// The row is no longer there; its ledger entries were dropped.
    AlreadyGone,
    /// The row was changed since the workshop wrote it: left alone, entries kept.
    ChangedSince,
}

/// The changes of one row, oldest first, and what undoing them means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChanges {
    pub table: String,
    pub row_id: i64,
    pub change_ids: Vec<i64>,
    /// The workshop created the row: undo deletes it.
    pub created: bool,
    /// The values before the workshop's first update (when it did not create the row).
    pub original: Option<String>,
    /// The row as the workshop's last change left it.
    pub last_written: Option<String>,
}

impl RowChanges {
    /// The recorded values before and after the workshop's changes, as `T`
    /// (`None` where nothing was recorded or it no longer decodes).
    fn decoded<T: serde::de::DeserializeOwned>(&self) -> (Option<T>, Option<T>) {
        let decode = |text: &Option<String>| text.as_deref().and_then(|text| serde_json::from_str(text).ok());
        (decode(&self.original), decode(&self.last_written))
    }
}

/// Groups ledger entries by row, in the order the rows were first changed.
pub fn by_row(changes: &[Change]) -> Vec<RowChanges> {
    let mut rows: Vec<RowChanges> = Vec::new();
    for change in changes {
        let index = match rows
            .iter()
            .position(|r| r.table == change.table && r.row_id == change.row_id)
        {
            Some(index) => index,
            None => {
                rows.push(RowChanges {
                    table: change.table.clone(),
                    row_id: change.row_id,
                    change_ids: Vec::new(),
                    created: false,
                    original: None,
                    last_written: None,
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[index];
        row.change_ids.push(change.change_id);
        match change.kind {
            ChangeKind::Created => row.created = true,
            ChangeKind::Updated => {
                if row.original.is_none() {
                    row.original.clone_from(&change.old_values);
                }
            }
        }
        if change.new_values.is_some() {
            row.last_written.clone_from(&change.new_values);
        }
    }
    rows
}

fn is_missing_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("42S02" | "1146" | "42P01")),
        _ => false,
    }
}

fn same_passenger(current: &PassengerRow, written: &PassengerRow) -> bool {
    current.passenger_id == written.passenger_id
        && current.passportno.trim_end() == written.passportno.trim_end()
        && current.firstname.as_deref().map(str::trim_end) == written.firstname.as_deref().map(str::trim_end)
        && current.lastname.as_deref().map(str::trim_end) == written.lastname.as_deref().map(str::trim_end)
}

/// Deletes ledger entries by id (`$ids`), on either dialect's transaction.
macro_rules! forget {
    ($tx:expr, $kind:expr, $ids:expr) => {
        async {
            let ids: &[i64] = $ids;
            if ids.is_empty() {
                return Ok::<(), sqlx::Error>(());
            }
            let sql = forget_sql($kind, ids.len());
            let mut query = sqlx::query(&sql);
            for id in ids {
                query = query.bind(*id);
            }
            query.execute($tx).await.map(drop)
        }
    };
}
fn forget_sql(kind: DatabaseKind, ids: usize) -> String {
    let list = vec!["?"; ids].join(", ");
    numbered(kind, &format!("DELETE FROM {LEDGER_TABLE} WHERE change_id IN ({list})"))
}

const SELECT_PASSENGER_FOR_UPDATE: &str =
    "SELECT passenger_id, passportno, firstname, lastname FROM passenger WHERE passenger_id = ? FOR UPDATE";
const SELECT_PRICE_FOR_UPDATE: &str = "SELECT price, name, in_stock, updated_at FROM products WHERE id = ? FOR UPDATE";

impl Database {
    /// Creates the ledger unless it exists; once per pool. Run before a
    /// write's transaction begins: MySQL would commit it at a CREATE TABLE.
    pub async fn ensure_change_ledger(&self) -> Result<(), DbError> {
        self.ledger_ready
            .get_or_try_init(|| async {
                for statement in change_ledger(self.kind()) {
                    match &self.pool {
                        Pool::MySql(pool) => sqlx::query(&statement).execute(pool).await.map(drop),
                        Pool::Postgres(pool) => sqlx::query(&statement).execute(pool).await.map(drop),
                    }
                    .map_err(|e| self.query_error(e))?;
                }
                Ok::<(), DbError>(())
            })
            .await
            .map(|_| ())
    }

    /// Every ledger entry, oldest first; none when there is no ledger yet.
    pub async fn changes(&self) -> Result<Vec<Change>, DbError> {
        self.read_changes(None).await
    }

    /// The changes of one row made after ledger entry `after` (0: all).
    async fn read_changes(&self, row: Option<(&str, i64, i64)>) -> Result<Vec<Change>, DbError> {
        let filter = if row.is_some() {
            " WHERE table_name = ? AND row_id = ? AND change_id > ?"
        } else {
            ""
        };
        let sql = numbered(
            self.kind(),
            &format!(
                "SELECT change_id, table_name, row_id, change_kind, old_values, new_values, command FROM {LEDGER_TABLE}{filter} ORDER BY change_id"
            ),
        );
        type Entry = (i64, String, i64, String, Option<String>, Option<String>, String);
        let rows: Vec<Entry> = match (&self.pool, row) {
            (Pool::MySql(pool), None) => sqlx::query_as(&sql).fetch_all(pool).await,
            (Pool::MySql(pool), Some((table, id, after))) => {
                sqlx::query_as(&sql)
                    .bind(table)
                    .bind(id)
                    .bind(after)
                    .fetch_all(pool)
                    .await
            }
            (Pool::Postgres(pool), None) => sqlx::query_as(&sql).fetch_all(pool).await,
            (Pool::Postgres(pool), Some((table, id, after))) => {
                sqlx::query_as(&sql)
                    .bind(table)
                    .bind(id)
                    .bind(after)
                    .fetch_all(pool)
                    .await
            }
        }
        .or_else(|e| if is_missing_table(&e) { Ok(Vec::new()) } else { Err(e) })
        .map_err(|e| self.query_error(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(change_id, table, row_id, kind, old_values, new_values, command)| {
                Some(Change {
                    change_id,
                    table,
                    row_id,
                    kind: ChangeKind::parse(&kind)?,
                    old_values,
                    new_values,
                    command,
                })
            })
            .collect())
    }

    /// The ids of the rows of `table` the workshop created after ledger entry `after`.
    pub async fn created_since(&self, table: &str, after: i64) -> Result<Vec<i64>, DbError> {
        let sql = numbered(
            self.kind(),
            &format!(
                "SELECT row_id FROM {LEDGER_TABLE} WHERE table_name = ? AND change_kind = 'created' AND change_id > ? ORDER BY change_id"
            ),
        );
        match &self.pool {
            Pool::MySql(pool) => {
                sqlx::query_scalar::<_, i64>(&sql)
                    .bind(table)
                    .bind(after)
                    .fetch_all(pool)
                    .await
            }
            Pool::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>(&sql)
                    .bind(table)
                    .bind(after)
                    .fetch_all(pool)
                    .await
            }
        }
        .map_err(|e| self.query_error(e))
    }

    /// The newest ledger entry's id (0 when there is none): a run that
    /// undoes only its own changes notes it before it writes.
    pub async fn last_change_id(&self) -> Result<i64, DbError> {
        self.ensure_change_ledger().await?;
        let sql = format!("SELECT COALESCE(MAX(change_id), 0) FROM {LEDGER_TABLE}");
        match &self.pool {
            Pool::MySql(pool) => sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await,
            Pool::Postgres(pool) => sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await,
        }
        .map_err(|e| self.query_error(e))
    }

    /// Whether the ledger has changes of this row after entry `after`.
    pub async fn changed_since(&self, table: &str, row_id: i64, after: i64) -> Result<bool, DbError> {
        Ok(!self.read_changes(Some((table, row_id, after))).await?.is_empty())
    }

    /// Undoes the changes of one row made after ledger entry `after` (see
    /// [`Database::undo_row`]); `None` when the ledger has none.
    pub async fn undo_changes_of(&self, table: &str, row_id: i64, after: i64) -> Result<Option<Undone>, DbError> {
        let changes = self.read_changes(Some((table, row_id, after))).await?;
        match by_row(&changes).first() {
            Some(row) => self.undo_row(row).await.map(Some),
            None => Ok(None),
        }
    }

    /// Undoes the workshop's changes to one row in one transaction, which
    /// also removes their ledger entries. A row someone changed since the
    /// workshop's last write is left alone (and keeps its entries).
    pub async fn undo_row(&self, row: &RowChanges) -> Result<Undone, DbError> {
        match row.table.as_str() {
            PASSENGER_TABLE => self.undo_passenger(row).await,
            PRODUCTS_TABLE => self.undo_product(row).await,
            super::session_store::SESSIONS_TABLE => self.undo_session_run(row).await,
            other => Err(DbError::Query(format!(
                "the ledger names table '{other}', which this version of workshop-cli does not write"
            ))),
        }
    }

    async fn undo_passenger(&self, changes: &RowChanges) -> Result<Undone, DbError> {
        let kind = self.kind();
        let error = |e: sqlx::Error| self.query_error(e);
        let (original, written): (Option<PassengerRow>, Option<PassengerRow>) = changes.decoded();
        let id = i32::try_from(changes.row_id)
            .map_err(|_| DbError::Query(format!("passenger id {} is out of range", changes.row_id)))?;
        in_transaction!(self, tx => {
            let current = sqlx::query(&numbered(kind, SELECT_PASSENGER_FOR_UPDATE))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(error)?
                .map(|r| row_of(&r))
                .transpose()
                .map_err(error)?;
            let undone = match (current, written) {
                (None, _) => Undone::AlreadyGone,
                (Some(current), Some(written)) if !changes.created && !same_passenger(&current, &written) => {
                    return Ok(Undone::ChangedSince);
                }
                // A created row is ours while it keeps the passport number we gave it.
                (Some(current), Some(written))
                    if changes.created && current.passportno.trim_end() != written.passportno.trim_end() =>
                {
                    return Ok(Undone::ChangedSince);
                }
                (Some(_), _) if changes.created => {
                    for table in ["booking", "passengerdetails", "passenger"] {
                        sqlx::query(&numbered(kind, &format!("DELETE FROM {table} WHERE passenger_id = ?")))
                            .bind(id)
                            .execute(&mut *tx)
                            .await
                            .map_err(error)?;
                    }
                    Undone::Deleted
                }
                (Some(_), _) => {
                    let Some(original) = &original else {
                        return Ok(Undone::ChangedSince);
                    };
                    sqlx::query(&numbered(
                        kind,
                        "UPDATE passenger SET passportno = ?, firstname = ?, lastname = ? WHERE passenger_id = ?",
                    ))
                    .bind(original.passportno.trim_end())
                    .bind(original.firstname.as_deref())
                    .bind(original.lastname.as_deref())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?;
                    Undone::Restored
                }
            };
            forget!(&mut *tx, kind, &changes.change_ids).await.map_err(error)?;
            tx.commit().await.map_err(error)?;
            Ok(undone)
        })
    }

    /// Records a session run (its rows carry `run_id`) before it writes any,
    /// in a transaction of its own: `clean` then deletes whatever rows a run
    /// that was killed left in `workshop_sessions`.
    pub async fn record_session_run(&self, run_id: i64) -> Result<(), DbError> {
        self.ensure_change_ledger().await?;
        let kind = self.kind();
        let error = |e: sqlx::Error| self.query_error(e);
        let record = [ChangeRecord {
            table: super::session_store::SESSIONS_TABLE,
            row_id: run_id,
            kind: ChangeKind::Created,
            old_values: None,
            new_values: format!("{{\"run_id\":{run_id}}}"),
        }];
        in_transaction!(self, tx => {
            record_changes!(&mut *tx, kind, self.command, &record).await.map_err(error)?;
            tx.commit().await.map_err(error)
        })
    }

    /// Deletes a session run's rows (the ledger's `row_id` is the run) and its entry.
    async fn undo_session_run(&self, changes: &RowChanges) -> Result<Undone, DbError> {
        let kind = self.kind();
        let error = |e: sqlx::Error| self.query_error(e);
        let table = super::session_store::SESSIONS_TABLE;
        // A run recorded here created the table; should someone have dropped it,
        // an empty one lets the DELETE below run (PostgreSQL would abort the transaction).
        self.ensure_sessions_table().await?;
        in_transaction!(self, tx => {
            let deleted = sqlx::query(&numbered(kind, &format!("DELETE FROM {table} WHERE run_id = ?")))
                .bind(changes.row_id)
                .execute(&mut *tx)
                .await;
            let undone = match deleted {
                Ok(done) if done.rows_affected() > 0 => Undone::Deleted,
                Ok(_) => Undone::AlreadyGone,
                Err(e) => return Err(error(e)),
            };
            forget!(&mut *tx, kind, &changes.change_ids).await.map_err(error)?;
            tx.commit().await.map_err(error)?;
            Ok(undone)
        })
    }

    async fn undo_product(&self, changes: &RowChanges) -> Result<Undone, DbError> {
        let kind = self.kind();
        let error = |e: sqlx::Error| self.query_error(e);
        let (original, written): (Option<ProductPrice>, Option<ProductPrice>) = changes.decoded();
        let id = i32::try_from(changes.row_id)
            .map_err(|_| DbError::Query(format!("product id {} is out of range", changes.row_id)))?;
        in_transaction!(self, tx => {
            let current = sqlx::query(&numbered(kind, SELECT_PRICE_FOR_UPDATE))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(error)?
                .map(|r| -> Result<ProductPrice, sqlx::Error> {
                    Ok(ProductPrice {
                        price: r.try_get("price")?,
                        name: Some(r.try_get("name")?),
                        in_stock: Some(r.try_get("in_stock")?),
                        updated_at: r.try_get("updated_at")?,
                    })
                })
                .transpose()
                .map_err(error)?;
            let undone = match (current, original) {
                (None, _) => Undone::AlreadyGone,
                (Some(current), Some(original)) if written.as_ref().is_some_and(|w| w.is_written(&current)) => {
                    // A record without a name or stock flag changed only the price: keep the current ones.
                    let name = original.name.or(current.name);
                    let in_stock = original.in_stock.or(current.in_stock);
                    sqlx::query(&numbered(
                        kind,
                        "UPDATE products SET price = ?, name = ?, in_stock = ?, updated_at = ? WHERE id = ?",
                    ))
                    .bind(original.price)
                    .bind(name)
                    .bind(in_stock)
                    .bind(original.updated_at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?;
                    Undone::Restored
                }
                (Some(_), _) => return Ok(Undone::ChangedSince),
            };
            forget!(&mut *tx, kind, &changes.change_ids).await.map_err(error)?;
            tx.commit().await.map_err(error)?;
            Ok(undone)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_only_record_matches_whatever_name_the_row_has() {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap();
        let current = ProductPrice {
            price: Decimal::new(1999, 2),
            name: Some("Kettle".into()),
            in_stock: Some(true),
            updated_at: at,
        };
        let price_only = ProductPrice {
            name: None,
            in_stock: None,
            ..current.clone()
        };
        assert!(price_only.is_written(&current));
        assert!(current.is_written(&current));
        let renamed = ProductPrice {
            name: Some("Teapot".into()),
            ..current.clone()
        };
        assert!(!renamed.is_written(&current), "someone renamed it since");
        let out_of_stock = ProductPrice {
            in_stock: Some(false),
            ..current.clone()
        };
        assert!(!out_of_stock.is_written(&current));
    }

    fn change(id: i64, row_id: i64, kind: ChangeKind, old: Option<&str>, new: &str) -> Change {
        Change {
            change_id: id,
            table: PASSENGER_TABLE.into(),
            row_id,
            kind,
            old_values: old.map(str::to_string),
            new_values: Some(new.into()),
            command: "write-through".into(),
        }
    }

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        assert_eq!(numbered(DatabaseKind::MySql, "a = ? AND b = ?"), "a = ? AND b = ?");
        assert_eq!(numbered(DatabaseKind::Postgres, "a = ? AND b = ?"), "a = $1 AND b = $2");
        assert!(record_sql(DatabaseKind::Postgres, 2).ends_with("($7, $8, $9, $10, $11, $12)"));
    }

    #[test]
    fn a_row_updated_twice_gets_its_first_old_value_back() {
        let rows = by_row(&[
            change(1, 7, ChangeKind::Updated, Some("original"), "second"),
            change(2, 8, ChangeKind::Created, None, "made"),
            change(3, 7, ChangeKind::Updated, Some("second"), "third"),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].row_id, 7);
        assert_eq!(rows[0].change_ids, vec![1, 3]);
        assert!(!rows[0].created);
        assert_eq!(rows[0].original.as_deref(), Some("original"));
        assert_eq!(rows[0].last_written.as_deref(), Some("third"));
        assert!(rows[1].created);
    }
}
