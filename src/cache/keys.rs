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

    /// `{prefix}product:{id}`: the multi-level cache exercises' key.
    pub fn product(&self, product_id: i64) -> String {
        format!("{}product:{product_id}", self.prefix)
    }

    /// The pub/sub channel on which changed keys are announced.
    pub fn invalidation_channel(&self) -> String {
        format!("{}invalidate", self.prefix)
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
}
