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
        name: Some(row.name.clone()),
        in_stock: Some(row.in_stock),
        updated_at: row.updated_at,
    }
}

fn now_assignment(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::MySql => "updated_at = CURRENT_TIMESTAMP",
        DatabaseKind::Postgres => "updated_at = LOCALTIMESTAMP",
    }
}

/// The longest name the `products` table takes (`VARCHAR(200)` on both databases).
pub const NAME_MAX_CHARS: usize = 200;

/// A change to a product: each field that is `Some` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductUpdate {
    pub price: Option<Decimal>,
    pub name: Option<String>,
    pub in_stock: Option<bool>,
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

    /// Sets a product's price (and `updated_at`); see [`Self::update_product`].
    pub async fn update_product_price(&self, id: i64, price: Decimal) -> Result<Option<ProductRow>, DbError> {
        let change = ProductUpdate {
            price: Some(price),
            ..ProductUpdate::default()
        };
        self.update_product(id, &change).await
    }

    /// Sets the fields `change` has (and `updated_at`) in a transaction that
    /// also records the old values in the ledger, and returns the row as
    /// stored; `None` when there is no such product.
    pub async fn update_product(&self, id: i64, change: &ProductUpdate) -> Result<Option<ProductRow>, DbError> {
        let Ok(id32) = i32::try_from(id) else {
            return Ok(None);
        };
        self.ensure_change_ledger().await?;
        let kind = self.kind();
        let error = |e: sqlx::Error| self.query_error(e);
        let locked = numbered(kind, &format!("SELECT {COLUMNS} FROM products WHERE id = ? FOR UPDATE"));
        // Only column names are put together here; every value is bound.
        let mut set = Vec::new();
        if change.price.is_some() {
            set.push("price = ?");
        }
        if change.name.is_some() {
            set.push("name = ?");
        }
        if change.in_stock.is_some() {
            set.push("in_stock = ?");
        }
        set.push(now_assignment(kind));
        let update = numbered(kind, &format!("UPDATE products SET {} WHERE id = ?", set.join(", ")));
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
                let mut query = sqlx::query(&update);
                if let Some(price) = change.price {
                    query = query.bind(price);
                }
                if let Some(name) = &change.name {
                    query = query.bind(name.clone());
                }
                if let Some(in_stock) = change.in_stock {
                    query = query.bind(in_stock);
                }
                query.bind(id32).execute(&mut *tx).await.map_err(error)?;
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
