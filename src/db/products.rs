//! The product catalogue of the multi-level cache exercises.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use sqlx::Row;

use super::{Database, DbError, Pool};

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

    /// Sets a product's price (and `updated_at`) in a transaction and returns
    /// the row as stored; `None` when there is no such product.
    pub async fn update_product_price(&self, id: i64, price: Decimal) -> Result<Option<ProductRow>, DbError> {
        let Ok(id) = i32::try_from(id) else {
            return Ok(None);
        };
        let row = match &self.pool {
            Pool::MySql(pool) => {
                let mut tx = pool.begin().await.map_err(|e| self.query_error(e))?;
                sqlx::query("UPDATE products SET price = ?, updated_at = CURRENT_TIMESTAMP WHERE id = ?")
                    .bind(price)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.query_error(e))?;
                let row = sqlx::query(&format!("SELECT {COLUMNS} FROM products WHERE id = ?"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.query_error(e))?
                    .map(|r| row_of(&r));
                tx.commit().await.map_err(|e| self.query_error(e))?;
                row
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(|e| self.query_error(e))?;
                sqlx::query("UPDATE products SET price = $1, updated_at = LOCALTIMESTAMP WHERE id = $2")
                    .bind(price)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.query_error(e))?;
                let row = sqlx::query(&format!("SELECT {COLUMNS} FROM products WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.query_error(e))?
                    .map(|r| row_of(&r));
                tx.commit().await.map_err(|e| self.query_error(e))?;
                row
            }
        };
        row.transpose().map_err(|e| self.query_error(e))
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
