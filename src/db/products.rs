//! The product catalogue of the multi-level cache exercises.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use sqlx::Row;

use super::changes::{numbered, record_changes, ChangeRecord, ProductPrice};
use super::{Database, DbError, Pool};
use crate::config::DatabaseKind;

fn price_of(row: &ProductRow) -> ProductPrice {
    ProductPrice {
        price: row.price,
        updated_at: row.updated_at,
    }
}

/// One product as stored. Prices are exact decimals (rust_decimal serialises them as strings).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProductRow {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub price: Decimal,
    pub category: String,
    pub in_stock: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

const COLUMNS: &str = "id, name, description, price, category, in_stock, created_at, updated_at";

fn row_of<R: Row>(row: &R) -> Result<ProductRow, sqlx::Error>
where
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Decimal: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> NaiveDateTime: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(ProductRow {
        id: i64::from(row.try_get::<i32, _>("id")?),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price: row.try_get("price")?,
        category: row.try_get("category")?,
        in_stock: row.try_get("in_stock")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Database {
    /// One product by id; `None` when there is no such product.
    pub async fn product(&self, id: i64) -> Result<Option<ProductRow>, DbError> {
        let Ok(id) = i32::try_from(id) else {
            return Ok(None);
        };
        let row = match &self.pool {
            Pool::MySql(pool) => sqlx::query(&format!("SELECT {COLUMNS} FROM products WHERE id = ?"))
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(|e| self.query_error(e))?
                .map(|r| row_of(&r)),
            Pool::Postgres(pool) => sqlx::query(&format!("SELECT {COLUMNS} FROM products WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(|e| self.query_error(e))?
                .map(|r| row_of(&r)),
        };
        row.transpose().map_err(|e| self.query_error(e))
    }

    /// Sets a product's price (and `updated_at`) in a transaction that also
    /// records the old values in the ledger, and returns the row as stored;
    /// `None` when there is no such product.
    pub async fn update_product_price(&self, id: i64, price: Decimal) -> Result<Option<ProductRow>, DbError> {
        let Ok(id32) = i32::try_from(id) else {
            return Ok(None);
        };
        self.ensure_change_ledger().await?;
        let kind = self.kind();
        let error = |e: sqlx::Error| self.query_error(e);
        let now = match kind {
            DatabaseKind::MySql => "CURRENT_TIMESTAMP",
            DatabaseKind::Postgres => "LOCALTIMESTAMP",
        };
        let locked = numbered(kind, &format!("SELECT {COLUMNS} FROM products WHERE id = ? FOR UPDATE"));
        let update = numbered(
            kind,
            &format!("UPDATE products SET price = ?, updated_at = {now} WHERE id = ?"),
        );
        let select = numbered(kind, &format!("SELECT {COLUMNS} FROM products WHERE id = ?"));
        // One text for both dialects; the macro expands it once per pool.
        macro_rules! update_in {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.map_err(error)?;
                let Some(old) = sqlx::query(&locked)
                    .bind(id32)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(error)?
                else {
                    return Ok(None);
                };
                let old = row_of(&old).map_err(error)?;
                sqlx::query(&update)
                    .bind(price)
                    .bind(id32)
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?;
                let row = sqlx::query(&select)
                    .bind(id32)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(error)?;
                let stored = row_of(&row).map_err(error)?;
                let updated = [ChangeRecord::updated_product(
                    id,
                    &price_of(&old),
                    &price_of(&stored),
                )];
                record_changes!(&mut *tx, kind, self.command, &updated)
                    .await
                    .map_err(error)?;
                tx.commit().await.map_err(error)?;
                Ok(Some(stored))
            }};
        }
        match &self.pool {
            Pool::MySql(pool) => update_in!(pool),
            Pool::Postgres(pool) => update_in!(pool),
        }
    }

    /// One page of the catalogue in id order, optionally of one category.
    pub async fn products_page(
        &self,
        category: Option<&str>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<ProductRow>, DbError> {
        let filter = if category.is_some() { "WHERE category = ? " } else { "" };
        let sql = numbered(
            self.kind(),
            &format!("SELECT {COLUMNS} FROM products {filter}ORDER BY id LIMIT ? OFFSET ?"),
        );
        let limit = i64::from(limit);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        macro_rules! page_in {
            ($pool:expr) => {{
                let mut query = sqlx::query(&sql);
                if let Some(category) = category {
                    query = query.bind(category);
                }
                let rows = query
                    .bind(limit)
                    .bind(offset)
                    .fetch_all($pool)
                    .await
                    .map_err(|e| self.query_error(e))?;
                rows.iter()
                    .map(|r| row_of(r))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.query_error(e))
            }};
        }
        match &self.pool {
            Pool::MySql(pool) => page_in!(pool),
            Pool::Postgres(pool) => page_in!(pool),
        }
    }

    /// The smallest and largest product id, for workloads over the catalogue.
    pub async fn product_id_range(&self) -> Result<Option<(i64, i64)>, DbError> {
        let range: (Option<i32>, Option<i32>) = match &self.pool {
            Pool::MySql(pool) => {
                sqlx::query_as("SELECT MIN(id), MAX(id) FROM products")
                    .fetch_one(pool)
                    .await
            }
            Pool::Postgres(pool) => {
                sqlx::query_as("SELECT MIN(id), MAX(id) FROM products")
                    .fetch_one(pool)
                    .await
            }
        }
        .map_err(|e| self.query_error(e))?;
        Ok(match range {
            (Some(low), Some(high)) => Some((i64::from(low), i64::from(high))),
            _ => None,
        })
    }
}
