//! Every Valkey key the workshop writes is built here, under one prefix.
//!
//! Query keys are a SHA-256 digest of the normalised SQL and the parameters
//! in name order: the same query gives the same key in every process and on
//! every machine. (Rust's `HashMap` hasher is seeded per process, so a key
//! built from it would never hit in the next run.)

use sha2::{Digest, Sha256};

use crate::db::NamedQuery;

#[derive(Debug, Clone)]
pub struct KeyScheme {
    prefix: String,
}

impl KeyScheme {
    pub fn new(prefix: impl Into<String>) -> Self {
        KeyScheme { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}query:{first 32 hex digits of sha256}`.
    pub fn query(&self, query: &NamedQuery) -> String {
        let mut hasher = Sha256::new();
        hasher.update(query.normalised_sql().as_bytes());
        // BTreeMap iterates in name order: the canonical parameter order.
        for (name, value) in &query.params {
            hasher.update(b"\0");
            hasher.update(name.as_bytes());
            hasher.update(b"=");
            hasher.update(value.canonical().as_bytes());
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{}query:{hex}", self.prefix)
    }

    /// `{prefix}passenger:{id}`: the write-through exercise's key.
    pub fn passenger(&self, passenger_id: i64) -> String {
        format!("{}passenger:{passenger_id}", self.prefix)
    }

    /// `{prefix}passenger:passport:{no}`: the write-behind exercise's cached
    /// row, keyed by passport number because the database has not yet given it an id.
    pub fn passenger_by_passport(&self, passportno: &str) -> String {
        format!("{}passenger:passport:{passportno}", self.prefix)
    }

    /// `{prefix}write-behind`: the stream of acknowledged writes waiting for the flusher.
    pub fn write_behind_stream(&self) -> String {
        format!("{}write-behind", self.prefix)
    }

    /// `{prefix}write-behind:rejected`: queued writes the database can never take, with the reason.
    pub fn write_behind_rejected(&self) -> String {
        format!("{}write-behind:rejected", self.prefix)
    }

    /// The consumer group of the flushers on the write-behind stream (a name
    /// inside the stream, not a key, so it needs no prefix).
    pub fn write_behind_group(&self) -> &'static str {
        "flushers"
    }

    /// `{prefix}product:{id}`: the multi-level cache exercises' key.
    pub fn product(&self, product_id: i64) -> String {
        format!("{}product:{product_id}", self.prefix)
    }

    /// `{prefix}product:`: what every [`KeyScheme::product`] key starts with,
    /// to clear them (SCAN + UNLINK) before a cold run.
    pub fn product_prefix(&self) -> String {
        format!("{}product:", self.prefix)
    }

    /// The pub/sub channel on which changed keys are announced.
    pub fn invalidation_channel(&self) -> String {
        format!("{}invalidate", self.prefix)
    }

    /// `{prefix}product-requests`: a sorted set of request counts per product
    /// id, from which cache warming picks the most requested.
    pub fn product_requests(&self) -> String {
        format!("{}product-requests", self.prefix)
    }

    /// `{prefix}lock:{key without prefix}`: the stampede exercise's lock that
    /// guards loading `key` (one loader per fleet).
    pub fn lock_for(&self, key: &str) -> String {
        format!("{}lock:{}", self.prefix, key.strip_prefix(&self.prefix).unwrap_or(key))
    }

    /// `{prefix}xfetch:{key without prefix}`: `key`'s rows with XFetch's compute
    /// time and expiry (a format of its own, so it never lands under `key`).
    pub fn xfetch_for(&self, key: &str) -> String {
        format!(
            "{}xfetch:{}",
            self.prefix,
            key.strip_prefix(&self.prefix).unwrap_or(key)
        )
    }

    /// A key for `check-env`'s write/read/delete probe, unique per process.
    pub fn probe(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{}check-env:probe:{}:{nanos}", self.prefix, std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::SqlValue;

    #[test]
    fn the_same_query_gets_the_same_key_whatever_the_formatting() {
        let keys = KeyScheme::new("workshop:");
        let a = NamedQuery::new("SELECT * FROM airport WHERE airport_id = :id").param("id", SqlValue::Int(3797));
        let b = NamedQuery::new("SELECT *\n  FROM airport\n WHERE airport_id = :id;").param("id", SqlValue::Int(3797));
        assert_eq!(keys.query(&a), keys.query(&b));
        assert!(keys.query(&a).starts_with("workshop:query:"));
        assert_eq!(keys.query(&a).len(), "workshop:query:".len() + 32);
    }

    #[test]
    fn the_key_is_a_fixed_digest_not_a_per_process_hash() {
        let keys = KeyScheme::new("workshop:");
        let q = NamedQuery::new("SELECT 1");
        // Pinned: if this changes, every cached entry in every deployment misses once.
        assert_eq!(keys.query(&q), "workshop:query:e004ebd5b5532a4b85984a62f8ad48a8");
    }

    #[test]
    fn different_parameters_get_different_keys() {
        let keys = KeyScheme::new("p:");
        let q = |v| NamedQuery::new("SELECT :id").param("id", v);
        assert_ne!(keys.query(&q(SqlValue::Int(1))), keys.query(&q(SqlValue::Int(2))));
        assert_ne!(
            keys.query(&q(SqlValue::Int(1))),
            keys.query(&q(SqlValue::Text("1".into())))
        );
    }

    #[test]
    fn passenger_keys_follow_the_workshop_text() {
        assert_eq!(KeyScheme::new("workshop:").passenger(42), "workshop:passenger:42");
    }

    #[test]
    fn stampede_lock_and_xfetch_keys_stay_under_the_prefix() {
        let keys = KeyScheme::new("workshop:");
        let key = keys.query(&NamedQuery::new("SELECT 1"));
        assert_eq!(
            keys.lock_for(&key),
            "workshop:lock:query:e004ebd5b5532a4b85984a62f8ad48a8"
        );
        assert_eq!(
            keys.xfetch_for(&key),
            "workshop:xfetch:query:e004ebd5b5532a4b85984a62f8ad48a8"
        );
        assert_eq!(keys.lock_for("other"), "workshop:lock:other");
    }

    #[test]
    fn write_behind_keys_live_under_the_prefix() {
        let keys = KeyScheme::new("workshop:");
        assert_eq!(keys.write_behind_stream(), "workshop:write-behind");
        assert_eq!(keys.write_behind_rejected(), "workshop:write-behind:rejected");
        assert_eq!(
            keys.passenger_by_passport("W0K3X9Z2A"),
            "workshop:passenger:passport:W0K3X9Z2A"
        );
    }

    #[test]
    fn product_keys_and_the_request_counts_live_under_the_prefix() {
        let keys = KeyScheme::new("workshop:");
        assert_eq!(keys.product(7), "workshop:product:7");
        assert_eq!(keys.product_requests(), "workshop:product-requests");
        assert_eq!(keys.invalidation_channel(), "workshop:invalidate");
    }

    #[test]
    fn every_product_key_starts_with_the_product_prefix() {
        let keys = KeyScheme::new("workshop:");
        assert_eq!(keys.product_prefix(), "workshop:product:");
        assert!(keys.product(42).starts_with(&keys.product_prefix()));
        assert!(!keys.product_requests().starts_with(&keys.product_prefix()));
    }
}
