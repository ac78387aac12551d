//! A product as `serve` caches it: the row and its JSON body, encoded once
//! when the entry enters this process (a database read, an L2 hit, a PUT),
//! not once per response.
//!
//! Measured under `wrk -c 50` with L1 off (`--l1-capacity 0`): re-encoding the
//! row for every response (chrono's date formatting, decimal to string) was
//! the largest user-space cost of an L2 hit, while the L2 decode itself is
//! shared by a whole flight of concurrent requests. In Valkey and in
//! `l1_bytes` the entry is the row's JSON exactly as before: `Serialize`
//! writes the row, `Deserialize` reads a row, so other exercises' entries
//! under the same key are read and written unchanged.

use axum::body::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::db::products::ProductRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedProduct {
    row: ProductRow,
    /// `serde_json::to_vec(&row)`: what `Json(row)` would send.
    body: Bytes,
}

impl CachedProduct {
    pub fn new(row: ProductRow) -> CachedProduct {
        // A row of strings, numbers, a decimal and dates always encodes; the
        // fallback keeps a response well-formed should that ever change.
        let body = serde_json::to_vec(&row).map_or_else(|_| Bytes::from_static(b"null"), Bytes::from);
        CachedProduct { row, body }
    }

    pub fn row(&self) -> &ProductRow {
        &self.row
    }

    /// The response body (a cheap, reference-counted clone).
    pub fn body(&self) -> Bytes {
        self.body.clone()
    }
}

impl Serialize for CachedProduct {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.row.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CachedProduct {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ProductRow::deserialize(deserializer).map(CachedProduct::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    fn row() -> ProductRow {
        let at = NaiveDate::from_ymd_opt(2024, 5, 17)
            .and_then(|d| d.and_hms_micro_opt(9, 30, 5, 123_456))
            .unwrap_or_default();
        ProductRow {
            id: 42,
            name: "Kettle \"Deluxe\" — 1.7 l".into(),
            description: None,
            price: Decimal::new(2_450, 2),
            category: "kitchen".into(),
            in_stock: true,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn body_is_the_rows_json_as_json_would_send_it() {
        let product = CachedProduct::new(row());
        assert_eq!(product.body(), serde_json::to_vec(&row()).unwrap_or_default());
    }

    #[test]
    fn cached_entry_reads_and_writes_as_the_row_itself() {
        let text = serde_json::to_string(&Some(row())).unwrap_or_default();
        let product: Option<CachedProduct> = serde_json::from_str(&text).unwrap_or(None);
        assert_eq!(product.as_ref().map(CachedProduct::row), Some(&row()));
        assert_eq!(serde_json::to_string(&product).unwrap_or_default(), text);
        assert_eq!(product.map(|p| p.body()), Some(Bytes::from(text)));
        let none: Option<CachedProduct> =
            serde_json::from_str("null").unwrap_or_else(|_| Some(CachedProduct::new(row())));
        assert_eq!(none, None);
    }

    #[test]
    fn entry_that_is_not_a_row_does_not_decode() {
        assert!(serde_json::from_str::<Option<CachedProduct>>(r#"{"id": 42}"#).is_err());
    }
}
