//! Every Valkey key the workshop writes is built here, under one prefix and
//! the identity of one data source:
//! `{prefix}{engine}-{8 hex digits of sha256(engine|host|port|database)}:...`,
//! e.g. `workshop:mysql-1a2b3c4d:query:...`. Two databases sharing one Valkey
//! never see each other's entries, and `{prefix}{source}:` covers exactly one
//! database's keys (what `clean` deletes). The user name and the password are
//! not part of the identity: the same rows read by another login are the same
//! rows, and a password must never end up in a key.
//!
//! Query keys are a SHA-256 digest of the normalised SQL and the parameters
//! in name order: the same query gives the same key in every process and on
//! every machine. (Rust's `HashMap` hasher is seeded per process, so a key
//! built from it would never hit in the next run.)

use sha2::{Digest, Sha256};

use crate::config::{DatabaseKind, DatabaseTarget};
use crate::db::NamedQuery;

/// Which database a cache entry came from: engine, host, port, database name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIdentity {
    pub engine: &'static str,
    pub host: String,
    pub port: u16,
    pub database: String,
}

impl SourceIdentity {
    pub fn of(target: &DatabaseTarget) -> SourceIdentity {
        SourceIdentity {
            engine: match target.kind {
                DatabaseKind::MySql => "mysql",
                DatabaseKind::Postgres => "postgres",
            },
            host: target.host(),
            port: target.port(),
            database: target.database_name(),
        }
    }

    /// `{engine}-{first 8 hex digits of sha256(engine|host|port|database)}`:
    /// short enough to read in a key, the engine readable at a glance.
    pub fn tag(&self) -> String {
        let digest = Sha256::digest(format!("{}|{}|{}|{}", self.engine, self.host, self.port, self.database));
        let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("{}-{hex}", self.engine)
    }
}

/// The hash tag of every write-behind key: a cluster hashes only what is
/// inside the braces, so the cached rows, the stream and the rejected stream
/// share one slot and go together in one MULTI (a single node ignores the
/// braces: one layout for both). Every data source's queue shares that slot;
/// a queue is one small stream, so one node holds them all easily.
const WRITE_BEHIND_TAG: &str = "{write-behind}";

#[derive(Debug, Clone)]
pub struct KeyScheme {
    prefix: String,
    /// `{prefix}{source tag}:`, what every key starts with.
    root: String,
}

impl KeyScheme {
    pub fn new(prefix: impl Into<String>, database: &DatabaseTarget) -> Self {
        KeyScheme::for_source(prefix, &SourceIdentity::of(database))
    }

    pub fn for_source(prefix: impl Into<String>, source: &SourceIdentity) -> Self {
        let prefix = prefix.into();
        let root = format!("{prefix}{}:", source.tag());
        KeyScheme { prefix, root }
    }

    /// The configured prefix alone (`workshop:`), shared by every data source.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}{engine}-{hash}:`: every key of this data source starts
    /// with it, and no key of another one does.
    pub fn source_prefix(&self) -> &str {
        &self.root
    }

    /// `{source prefix}query:{first 32 hex digits of sha256}`.
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
        format!("{}query:{hex}", self.root)
    }

    /// `{source prefix}passenger:{id}`: the write-through exercise's key.
    pub fn passenger(&self, passenger_id: i64) -> String {
        format!("{}passenger:{passenger_id}", self.root)
    }

    /// `{source prefix}{write-behind}:passenger:passport:{no}`: the write-behind
    /// exercise's cached row, keyed by passport number because the database has
    /// not yet given it an id. It is written in one MULTI with the stream entry,
    /// so it shares the stream's hash tag (one slot on a cluster).
    pub fn passenger_by_passport(&self, passportno: &str) -> String {
        format!("{}{WRITE_BEHIND_TAG}:passenger:passport:{passportno}", self.root)
    }

    /// `{source prefix}{write-behind}`: the stream of acknowledged writes waiting for the flusher.
    pub fn write_behind_stream(&self) -> String {
        format!("{}{WRITE_BEHIND_TAG}", self.root)
    }

    /// `{source prefix}{write-behind}:rejected`: queued writes the database can
    /// never take, with the reason (moved there in one MULTI with the XACK).
    pub fn write_behind_rejected(&self) -> String {
        format!("{}{WRITE_BEHIND_TAG}:rejected", self.root)
    }

    /// The consumer group of the flushers on the write-behind stream (a name
    /// inside the stream, not a key, so it needs no prefix).
    pub fn write_behind_group(&self) -> &'static str {
        "flushers"
    }

    /// `{source prefix}product:{id}`: the multi-level cache exercises' key.
    pub fn product(&self, product_id: i64) -> String {
        format!("{}product:{product_id}", self.root)
    }

    /// `{source prefix}product-missing:{id}`: a short-lived note that the
    /// database has no product `id` (`serve`'s negative cache).
    pub fn product_missing(&self, product_id: i64) -> String {
        format!("{}product-missing:{product_id}", self.root)
    }

    /// `{source prefix}product-page:{digest}`: one page of `GET /products`;
    /// the digest covers the category (or none), the limit and the offset.
    pub fn product_page(&self, category: Option<&str>, limit: u32, offset: u64) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(match category {
            Some(category) => format!("category={category}\n"),
            None => "category\n".to_string(),
        });
        hasher.update(format!("limit={limit}\noffset={offset}"));
        let digest = hasher.finalize();
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{}product-page:{hex}", self.root)
    }

    /// `{source prefix}product:`: what every [`KeyScheme::product`] key starts with,
    /// to clear them (SCAN + UNLINK) before a cold run.
    pub fn product_prefix(&self) -> String {
        format!("{}product:", self.root)
    }

    /// The pub/sub channel on which changed keys are announced.
    pub fn invalidation_channel(&self) -> String {
        format!("{}invalidate", self.root)
    }

    /// `{source prefix}product-requests`: a sorted set of request counts per product
    /// id, from which cache warming picks the most requested.
    pub fn product_requests(&self) -> String {
        format!("{}product-requests", self.root)
    }

    /// `{source prefix}lock:{key without prefix}`: the stampede exercise's lock that
    /// guards loading `key` (one loader per fleet).
    pub fn lock_for(&self, key: &str) -> String {
        format!("{}lock:{}", self.root, key.strip_prefix(&self.root).unwrap_or(key))
    }

    /// `{source prefix}xfetch:{key without prefix}`: `key`'s rows with XFetch's compute
    /// time and expiry (a format of its own, so it never lands under `key`).
    pub fn xfetch_for(&self, key: &str) -> String {
        format!("{}xfetch:{}", self.root, key.strip_prefix(&self.root).unwrap_or(key))
    }

    /// `{source prefix}leaderboard:departures`: the leaderboard exercise's sorted
    /// set, departing bookings per airport id.
    pub fn departures_leaderboard(&self) -> String {
        format!("{}leaderboard:departures", self.root)
    }

    /// `{source prefix}rate-limit:{limiter}:{subject}`: the rate-limit exercise's
    /// state of one limiter (a fixed window adds `:{window}` itself).
    pub fn rate_limit(&self, limiter: &str, subject: &str) -> String {
        format!("{}rate-limit:{limiter}:{subject}", self.root)
    }

    /// `{source prefix}ttl-storm:{run}:`: every key of one run of exercise 12
    /// (`run` tells concurrent runs apart); deleted at the end of the run.
    pub fn ttl_storm_prefix(&self, run: &str) -> String {
        format!("{}ttl-storm:{run}:", self.root)
    }

    /// `{source prefix}ttl-storm:{run}:{scenario}:product:{id}`: one product
    /// cached by exercise 12 in one scenario (together or jittered).
    pub fn ttl_storm(&self, run: &str, scenario: &str, product_id: i64) -> String {
        format!("{}{scenario}:product:{product_id}", self.ttl_storm_prefix(run))
    }

    /// `{source prefix}tracking:{run}:product:{id}`: a product read through
    /// exercise 13's client-side cache; every key of one run shares the
    /// prefix `BCAST` tracks.
    pub fn tracking_product(&self, run: &str, product_id: i64) -> String {
        format!("{}product:{product_id}", self.tracking_prefix(run))
    }

    /// `{source prefix}tracking-invalidate:{run}`: exercise 13's pub/sub
    /// channel (outside the tracked prefix, so BCAST never sees it).
    pub fn tracking_channel(&self, run: &str) -> String {
        format!("{}tracking-invalidate:{run}", self.root)
    }

    /// `{source prefix}tracking:{run}:`: what exercise 13's keys start with.
    pub fn tracking_prefix(&self, run: &str) -> String {
        format!("{}tracking:{run}:", self.root)
    }

    /// `{source prefix}weather:{country}:{city}`: the api-cache exercise's cached
    /// upstream answer for one city (names lower-cased, spaces as `-`).
    pub fn weather(&self, country: &str, city: &str) -> String {
        let part = |text: &str| text.trim().to_lowercase().replace(char::is_whitespace, "-");
        format!("{}weather:{}:{}", self.root, part(country), part(city))
    }

    /// `{source prefix}session:{session id}`: the session exercise's hash of one session.
    pub fn session(&self, session_id: &str) -> String {
        format!("{}session:{session_id}", self.root)
    }

    /// A key for `check-env`'s write/read/delete probe, unique per process.
    pub fn probe(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{}check-env:probe:{}:{nanos}", self.root, std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;
    use crate::db::SqlValue;

    const MARIADB: &str = "mysql://workshop:workshop@127.0.0.1:3306/workshop";

    fn scheme(prefix: &str, url: &str) -> KeyScheme {
        KeyScheme::new(prefix, &DatabaseTarget::parse(url, Source::Flag).unwrap())
    }

    fn workshop() -> KeyScheme {
        scheme("workshop:", MARIADB)
    }

    #[test]
    fn every_key_starts_with_the_prefix_and_the_source() {
        let keys = workshop();
        // Pinned: sha256("mysql|127.0.0.1|3306|workshop") starts d7c27b7d.
        assert_eq!(keys.source_prefix(), "workshop:mysql-d7c27b7d:");
        assert_eq!(keys.prefix(), "workshop:");
        let root = keys.source_prefix();
        let q = NamedQuery::new("SELECT 1");
        for key in [
            keys.query(&q),
            keys.passenger(1),
            keys.passenger_by_passport("P1"),
            keys.write_behind_stream(),
            keys.write_behind_rejected(),
            keys.product(1),
            keys.product_prefix(),
            keys.invalidation_channel(),
            keys.product_requests(),
            keys.lock_for(&keys.query(&q)),
            keys.xfetch_for(&keys.query(&q)),
            keys.probe(),
            keys.departures_leaderboard(),
            keys.rate_limit("token-bucket", "api"),
        ] {
            assert!(key.starts_with(root), "{key} is not under {root}");
        }
    }

    #[test]
    fn postgres_on_its_default_port_has_its_own_source() {
        let keys = scheme("workshop:", "postgresql://workshop:workshop@127.0.0.1/workshop");
        assert_eq!(keys.source_prefix(), "workshop:postgres-ff3f8a28:");
    }

    #[test]
    fn another_engine_host_port_or_database_gets_other_keys() {
        let base = workshop();
        let q = NamedQuery::new("SELECT 1");
        for other in [
            "postgres://workshop:workshop@127.0.0.1:3306/workshop",
            "mysql://workshop:workshop@db.example:3306/workshop",
            "mysql://workshop:workshop@127.0.0.1:3307/workshop",
            "mysql://workshop:workshop@127.0.0.1:3306/flughafendb",
        ] {
            let keys = scheme("workshop:", other);
            assert_ne!(keys.source_prefix(), base.source_prefix(), "{other}");
            assert_ne!(keys.query(&q), base.query(&q), "{other}");
            assert_ne!(keys.product(1), base.product(1), "{other}");
        }
    }

    #[test]
    fn the_login_is_not_part_of_the_source_and_never_in_a_key() {
        let base = workshop();
        let other = scheme("workshop:", "mysql://admin:s3cr3t-Pa55@127.0.0.1:3306/workshop");
        assert_eq!(other.source_prefix(), base.source_prefix());
        let q = NamedQuery::new("SELECT 1");
        for key in [
            other.query(&q),
            other.passenger(1),
            other.probe(),
            other.source_prefix().to_string(),
        ] {
            assert!(!key.contains("s3cr3t") && !key.contains("admin"), "{key}");
        }
    }

    #[test]
    fn the_same_configuration_gets_the_same_keys() {
        let q = NamedQuery::new("SELECT :id").param("id", SqlValue::Int(3));
        // The port written out or left to the default, the host in capitals: one database.
        let implicit = scheme("workshop:", "mariadb://workshop:workshop@LOCALHOST/workshop");
        let explicit = scheme("workshop:", "mysql://workshop:workshop@localhost:3306/workshop");
        assert_eq!(implicit.query(&q), explicit.query(&q));
        assert_eq!(workshop().query(&q), workshop().query(&q));
    }

    #[test]
    fn the_same_query_gets_the_same_key_whatever_the_formatting() {
        let keys = workshop();
        let a = NamedQuery::new("SELECT * FROM airport WHERE airport_id = :id").param("id", SqlValue::Int(3797));
        let b = NamedQuery::new("SELECT *\n  FROM airport\n WHERE airport_id = :id;").param("id", SqlValue::Int(3797));
        assert_eq!(keys.query(&a), keys.query(&b));
        assert!(keys.query(&a).starts_with("workshop:mysql-d7c27b7d:query:"));
        assert_eq!(keys.query(&a).len(), "workshop:mysql-d7c27b7d:query:".len() + 32);
    }

    #[test]
    fn the_key_is_a_fixed_digest_not_a_per_process_hash() {
        let q = NamedQuery::new("SELECT 1");
        // Pinned: if this changes, every cached entry in every deployment misses once.
        assert_eq!(
            workshop().query(&q),
            "workshop:mysql-d7c27b7d:query:e004ebd5b5532a4b85984a62f8ad48a8"
        );
    }

    #[test]
    fn different_parameters_get_different_keys() {
        let keys = scheme("p:", MARIADB);
        let q = |v| NamedQuery::new("SELECT :id").param("id", v);
        assert_ne!(keys.query(&q(SqlValue::Int(1))), keys.query(&q(SqlValue::Int(2))));
        assert_ne!(
            keys.query(&q(SqlValue::Int(1))),
            keys.query(&q(SqlValue::Text("1".into())))
        );
    }

    #[test]
    fn passenger_keys_follow_the_workshop_text() {
        assert_eq!(workshop().passenger(42), "workshop:mysql-d7c27b7d:passenger:42");
    }

    #[test]
    fn stampede_lock_and_xfetch_keys_stay_under_the_source_prefix() {
        let keys = workshop();
        let key = keys.query(&NamedQuery::new("SELECT 1"));
        assert_eq!(
            keys.lock_for(&key),
            "workshop:mysql-d7c27b7d:lock:query:e004ebd5b5532a4b85984a62f8ad48a8"
        );
        assert_eq!(
            keys.xfetch_for(&key),
            "workshop:mysql-d7c27b7d:xfetch:query:e004ebd5b5532a4b85984a62f8ad48a8"
        );
        assert_eq!(keys.lock_for("other"), "workshop:mysql-d7c27b7d:lock:other");
    }

    #[test]
    fn write_behind_keys_live_under_the_source_prefix() {
        let keys = workshop();
        assert_eq!(keys.write_behind_stream(), "workshop:mysql-d7c27b7d:{write-behind}");
        assert_eq!(
            keys.write_behind_rejected(),
            "workshop:mysql-d7c27b7d:{write-behind}:rejected"
        );
        assert_eq!(
            keys.passenger_by_passport("W0K3X9Z2A"),
            "workshop:mysql-d7c27b7d:{write-behind}:passenger:passport:W0K3X9Z2A"
        );
    }

    #[test]
    fn write_behind_keys_share_one_cluster_slot() {
        use crate::cache::cluster::key_slot;
        let keys = workshop();
        let slot = key_slot(&keys.write_behind_stream());
        assert_eq!(key_slot(&keys.write_behind_rejected()), slot);
        assert_eq!(key_slot(&keys.passenger_by_passport("W0K3X9Z2A")), slot);
        // Other keys are not pinned: they spread over the cluster by their own name.
        assert_ne!(key_slot(&keys.passenger(1)), key_slot(&keys.passenger(2)));
    }

    #[test]
    fn product_keys_and_the_request_counts_live_under_the_source_prefix() {
        let keys = workshop();
        assert_eq!(keys.product(7), "workshop:mysql-d7c27b7d:product:7");
        assert_eq!(keys.product_requests(), "workshop:mysql-d7c27b7d:product-requests");
        assert_eq!(keys.invalidation_channel(), "workshop:mysql-d7c27b7d:invalidate");
    }

    #[test]
    fn the_leaderboard_lives_under_the_source_prefix() {
        assert_eq!(
            workshop().departures_leaderboard(),
            "workshop:mysql-d7c27b7d:leaderboard:departures"
        );
    }

    #[test]
    fn every_product_key_starts_with_the_product_prefix() {
        let keys = workshop();
        assert_eq!(keys.product_prefix(), "workshop:mysql-d7c27b7d:product:");
        assert!(keys.product(42).starts_with(&keys.product_prefix()));
        assert!(!keys.product_requests().starts_with(&keys.product_prefix()));
    }
}
