//! The write-behind flusher's statement: a batch of passengers in one
//! multi-row INSERT that skips passport numbers already stored, inside one
//! transaction. A queue entry delivered twice (after a crash between the
//! commit and the acknowledgement in Valkey) therefore leaves one row, not two.

use super::changes::{record_changes, ChangeRecord};
use super::dialect::placeholder;
use super::passengers::{row_of, PassengerFields, PassengerRow};
use super::{Database, DbError, Pool};
use crate::config::DatabaseKind;

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchInsert {
    /// Rows this statement added.
    pub inserted: u64,
    /// When some rows were skipped: the stored row for every passport number
    /// of the batch (read in the same transaction), so the caller can tell a
    /// re-delivered write (same names) from a different passenger holding
    /// that passport number. Passport numbers are as the database returns
    /// them: compare them without trailing blanks.
    pub stored: Vec<PassengerRow>,
}

/// `INSERT IGNORE` on MySQL/MariaDB, `ON CONFLICT (passportno) DO NOTHING` on
/// PostgreSQL: both skip a row whose passport number exists and report only
/// the rows they added. (MySQL's `ON DUPLICATE KEY UPDATE` would count a
/// skipped row as affected, because sqlx asks for found rows.) IGNORE also
/// turns over-long values into warnings, so callers check lengths first.
pub fn insert_sql(kind: DatabaseKind, rows: usize) -> String {
    let values = (0..rows)
        .map(|row| {
            let first = row * 3 + 1;
            format!(
                "({}, {}, {})",
                placeholder(kind, first),
                placeholder(kind, first + 1),
                placeholder(kind, first + 2)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    match kind {
        DatabaseKind::MySql => format!("INSERT IGNORE INTO passenger (passportno, firstname, lastname) VALUES {values}"),
        DatabaseKind::Postgres => format!(
            "INSERT INTO passenger (passportno, firstname, lastname) VALUES {values} ON CONFLICT (passportno) DO NOTHING RETURNING passenger_id, passportno, firstname, lastname"
        ),
    }
}

/// The stored rows for a list of passport numbers.
pub fn stored_sql(kind: DatabaseKind, passports: usize) -> String {
    let list = (1..=passports)
        .map(|position| placeholder(kind, position))
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT passenger_id, passportno, firstname, lastname FROM passenger WHERE passportno IN ({list})")
}

impl Database {
    /// Inserts the batch in one transaction, skipping passport numbers that
    /// are already stored, and records the rows it added in the ledger of the
    /// workshop's writes. Nothing is written unless it commits.
    pub async fn insert_passengers_once(&self, rows: &[PassengerFields]) -> Result<BatchInsert, DbError> {
        if rows.is_empty() {
            return Ok(BatchInsert::default());
        }
        self.ensure_change_ledger().await?;
        let kind = self.kind();
        let insert = insert_sql(kind, rows.len());
        let select = stored_sql(kind, rows.len());
        let error = |e: sqlx::Error| self.query_error(e);
        match &self.pool {
            Pool::MySql(pool) => {
                let mut tx = pool.begin().await.map_err(error)?;
                // INSERT IGNORE says how many rows it added, not which: the
                // passports stored before it (in this transaction's snapshot)
                // tell the rows it added from the ones it skipped.
                let mut query = sqlx::query(&select);
                for row in rows {
                    query = query.bind(&row.passportno);
                }
                let mut before = Vec::new();
                for row in query.fetch_all(&mut *tx).await.map_err(error)? {
                    before.push(row_of(&row).map_err(error)?.passenger_id);
                }
                let mut query = sqlx::query(&insert);
                for row in rows {
                    query = query.bind(&row.passportno).bind(&row.firstname).bind(&row.lastname);
                }
                let inserted = query.execute(&mut *tx).await.map_err(error)?.rows_affected();
                let mut query = sqlx::query(&select);
                for row in rows {
                    query = query.bind(&row.passportno);
                }
                let mut after = Vec::new();
                for row in query.fetch_all(&mut *tx).await.map_err(error)? {
                    after.push(row_of(&row).map_err(error)?);
                }
                let created: Vec<ChangeRecord> = after
                    .iter()
                    .filter(|row| !before.contains(&row.passenger_id))
                    .map(ChangeRecord::created_passenger)
                    .collect();
                record_changes!(&mut *tx, kind, self.command, &created)
                    .await
                    .map_err(error)?;
                tx.commit().await.map_err(error)?;
                let stored = if inserted < rows.len() as u64 {
                    after
                } else {
                    Vec::new()
                };
                Ok(BatchInsert { inserted, stored })
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(error)?;
                let mut query = sqlx::query(&insert);
                for row in rows {
                    query = query.bind(&row.passportno).bind(&row.firstname).bind(&row.lastname);
                }
                // RETURNING lists exactly the rows the insert added.
                let mut created = Vec::new();
                for row in query.fetch_all(&mut *tx).await.map_err(error)? {
                    created.push(ChangeRecord::created_passenger(&row_of(&row).map_err(error)?));
                }
                let inserted = created.len() as u64;
                let mut stored = Vec::new();
                if inserted < rows.len() as u64 {
                    let mut query = sqlx::query(&select);
                    for row in rows {
                        query = query.bind(&row.passportno);
                    }
                    for row in query.fetch_all(&mut *tx).await.map_err(error)? {
                        stored.push(row_of(&row).map_err(error)?);
                    }
                }
                record_changes!(&mut *tx, kind, self.command, &created)
                    .await
                    .map_err(error)?;
                tx.commit().await.map_err(error)?;
                Ok(BatchInsert { inserted, stored })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_skips_stored_passports_with_insert_ignore() {
        assert_eq!(
            insert_sql(DatabaseKind::MySql, 2),
            "INSERT IGNORE INTO passenger (passportno, firstname, lastname) VALUES (?, ?, ?), (?, ?, ?)"
        );
    }

    #[test]
    fn postgres_numbers_every_value_and_does_nothing_on_conflict() {
        assert_eq!(
            insert_sql(DatabaseKind::Postgres, 2),
            "INSERT INTO passenger (passportno, firstname, lastname) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT (passportno) DO NOTHING RETURNING passenger_id, passportno, firstname, lastname"
        );
    }

    #[test]
    fn stored_rows_are_read_by_a_list_of_passports() {
        assert_eq!(
            stored_sql(DatabaseKind::Postgres, 3),
            "SELECT passenger_id, passportno, firstname, lastname FROM passenger WHERE passportno IN ($1, $2, $3)"
        );
        assert!(stored_sql(DatabaseKind::MySql, 2).ends_with("IN (?, ?)"));
    }
}
