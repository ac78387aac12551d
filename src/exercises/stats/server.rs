//! Valkey's own view of a run: `INFO` before and after (keyspace hits and
//! misses, expired and evicted keys, memory, clients), the workshop's keys
//! (SCAN + MEMORY USAGE), and `CONFIG GET/SET` for the eviction runs.
//!
//! These go over the workload's own [`Valkey`] connection. Each is tried
//! again after a failure: the first command on a connection broken by a
//! server restart fails and makes it reconnect, so the next attempt (say, the
//! restore of the eviction settings) goes through.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cache::{prefix_pattern, CacheError, ServerIdentity, Valkey};

/// MEMORY USAGE is asked of at most this many keys; the total is extrapolated.
pub const MEMORY_SAMPLE_LIMIT: usize = 2000;
/// Keys per MEMORY USAGE pipeline (one round trip each).
const MEMORY_BATCH: usize = 200;

/// INFO, CONFIG, SCAN and MEMORY USAGE, each with retries.
#[derive(Clone)]
pub struct ServerAdmin {
    valkey: Valkey,
}

/// Pauses before the second and third attempt of a command. A connection
/// broken by a server restart fails the first command sent on it and then
/// reconnects (on a busy machine, with its backoff, that can take a second or
/// two); these commands are safe to repeat.
const RETRY_DELAYS: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
];

async fn with_retries<T, F, Fut>(mut attempt: F) -> Result<T, CacheError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CacheError>>,
{
    let mut result = attempt().await;
    for delay in RETRY_DELAYS {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(delay).await;
        result = attempt().await;
    }
    result
}

impl ServerAdmin {
    pub fn new(valkey: Valkey) -> ServerAdmin {
        ServerAdmin { valkey }
    }

    /// INFO server, stats, memory and clients, merged.
    pub async fn snapshot(&self) -> Result<ServerSnapshot, CacheError> {
        let mut fields = BTreeMap::new();
        for section in ["server", "stats", "memory", "clients"] {
            fields.extend(with_retries(|| self.valkey.info(section)).await?);
        }
        let mut snapshot = ServerSnapshot::from_info(&fields);
        if self.valkey.is_cluster() {
            let stats = with_retries(|| self.valkey.info_per_node("stats")).await?;
            let memory = with_retries(|| self.valkey.info_per_node("memory")).await?;
            let number = |fields: &BTreeMap<String, String>, name: &str| {
                fields.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            };
            snapshot.nodes = stats
                .iter()
                .map(|(node, fields)| NodeSnapshot {
                    node: node.clone(),
                    keyspace_hits: number(fields, "keyspace_hits"),
                    keyspace_misses: number(fields, "keyspace_misses"),
                    used_memory: memory
                        .iter()
                        .find(|(n, _)| n == node)
                        .map_or(0, |(_, m)| number(m, "used_memory")),
                })
                .collect();
        }
        Ok(snapshot)
    }

    /// `CONFIG GET name`: the value, or an error when the server has no such setting.
    pub async fn config_get(&self, name: &'static str) -> Result<String, CacheError> {
        with_retries(|| self.valkey.config_get(name)).await
    }

    pub async fn config_set(&self, name: &'static str, value: &str) -> Result<(), CacheError> {
        with_retries(|| self.valkey.config_set(name, value)).await
    }

    /// `DBSIZE`: every key of the database, the workshop's and anyone else's.
    pub async fn dbsize(&self) -> Result<u64, CacheError> {
        let command = redis::cmd("DBSIZE");
        with_retries(|| self.valkey.query("DBSIZE", &command)).await
    }

    /// `XLEN key`: the entries of a stream (0 when there is no such key).
    pub async fn stream_length(&self, key: &str) -> Result<u64, CacheError> {
        let mut command = redis::cmd("XLEN");
        command.arg(key);
        with_retries(|| self.valkey.query("XLEN", &command)).await
    }

    /// The keys that start with `prefix` (SCAN MATCH, never KEYS).
    pub async fn count_prefixed(&self, prefix: &str) -> Result<u64, CacheError> {
        with_retries(|| async { Ok(self.valkey.scan_prefixed(prefix).await?.len() as u64) }).await
    }

    /// Counts the keys that start with `prefix` (SCAN MATCH, never KEYS) and
    /// sums MEMORY USAGE over the first [`MEMORY_SAMPLE_LIMIT`] of them,
    /// extrapolating to the rest.
    pub async fn key_footprint(&self, prefix: &str) -> Result<KeyFootprint, CacheError> {
        with_retries(|| self.key_footprint_once(prefix)).await
    }

    async fn key_footprint_once(&self, prefix: &str) -> Result<KeyFootprint, CacheError> {
        let keys = self.valkey.scan_prefixed(prefix).await?;
        let sample = &keys[..keys.len().min(MEMORY_SAMPLE_LIMIT)];
        let mut sampled_bytes = 0u64;
        let mut sampled = 0u64;
        for batch in sample.chunks(MEMORY_BATCH) {
            // A key that expired between SCAN and MEMORY USAGE answers nil.
            for size in self.valkey.memory_usage(batch).await?.into_iter().flatten() {
                sampled_bytes += size;
                sampled += 1;
            }
        }
        Ok(KeyFootprint::extrapolate(
            prefix_pattern(prefix),
            keys.len() as u64,
            sampled,
            sampled_bytes,
        ))
    }
}

/// The INFO fields the stats exercise shows, at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSnapshot {
    pub identity: String,
    /// Changes when the server restarts (its counters start again).
    pub run_id: String,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub expired_keys: u64,
    pub evicted_keys: u64,
    pub used_memory: u64,
    pub maxmemory: u64,
    pub maxmemory_policy: String,
    pub connected_clients: u64,
    /// On a cluster, each primary's own counters (the fields above are their sums).
    pub nodes: Vec<NodeSnapshot>,
}

/// One primary's counters, from its own INFO.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeSnapshot {
    pub node: String,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub used_memory: u64,
}

impl ServerSnapshot {
    pub fn from_info(fields: &BTreeMap<String, String>) -> ServerSnapshot {
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let identity = ServerIdentity::from_info(fields);
        ServerSnapshot {
            identity: format!("{} {}", identity.name, identity.version),
            run_id: fields.get("run_id").cloned().unwrap_or_default(),
            keyspace_hits: number("keyspace_hits"),
            keyspace_misses: number("keyspace_misses"),
            expired_keys: number("expired_keys"),
            evicted_keys: number("evicted_keys"),
            used_memory: number("used_memory"),
            maxmemory: number("maxmemory"),
            maxmemory_policy: fields.get("maxmemory_policy").cloned().unwrap_or_default(),
            connected_clients: number("connected_clients"),
            nodes: Vec::new(),
        }
    }
}

/// The workshop's keys in Valkey.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyFootprint {
    /// The SCAN MATCH pattern.
    pub pattern: String,
    pub keys: u64,
    /// Keys whose MEMORY USAGE was asked.
    pub sampled: u64,
    /// Sum of MEMORY USAGE, extrapolated from the sample when `estimated`.
    pub memory_bytes: u64,
    pub estimated: bool,
}

impl KeyFootprint {
    pub fn extrapolate(pattern: String, keys: u64, sampled: u64, sampled_bytes: u64) -> KeyFootprint {
        let estimated = sampled < keys;
        let memory_bytes = if !estimated || sampled == 0 {
            sampled_bytes
        } else {
            (sampled_bytes as f64 / sampled as f64 * keys as f64).round() as u64
        };
        KeyFootprint {
            pattern,
            keys,
            sampled,
            memory_bytes,
            estimated: estimated && sampled > 0,
        }
    }
}

/// What Valkey saw during a run: counter deltas (before → after) and the state after.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServerView {
    pub server: String,
    /// The server restarted during the run: its counters started again, so
    /// the deltas below are `null`.
    pub restarted: bool,
    /// Server-wide: other clients' commands during the run are counted too.
    pub keyspace_hits: Option<u64>,
    pub keyspace_misses: Option<u64>,
    /// `hits / (hits + misses)` over the run, as the server counts them.
    pub server_hit_rate: Option<f64>,
    pub expired_keys: Option<u64>,
    pub evicted_keys: Option<u64>,
    pub used_memory_bytes: u64,
    /// 0: no limit.
    pub maxmemory_bytes: u64,
    pub maxmemory_policy: String,
    pub connected_clients: u64,
    pub workshop_keys: Option<KeyFootprint>,
    /// On a cluster, per primary: hits and misses during the run, used memory.
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeView {
    pub node: String,
    pub keyspace_hits: Option<u64>,
    pub keyspace_misses: Option<u64>,
    pub used_memory_bytes: u64,
}

impl ServerView {
    pub fn between(before: &ServerSnapshot, after: &ServerSnapshot, keys: Option<KeyFootprint>) -> ServerView {
        let restarted = before.run_id != after.run_id;
        let delta = |a: u64, b: u64| (!restarted).then(|| b.saturating_sub(a));
        let hits = delta(before.keyspace_hits, after.keyspace_hits);
        let misses = delta(before.keyspace_misses, after.keyspace_misses);
        let server_hit_rate = match (hits, misses) {
            (Some(h), Some(m)) if h + m > 0 => Some(h as f64 / (h + m) as f64),
            _ => None,
        };
        ServerView {
            server: after.identity.clone(),
            restarted,
            keyspace_hits: hits,
            keyspace_misses: misses,
            server_hit_rate,
            expired_keys: delta(before.expired_keys, after.expired_keys),
            evicted_keys: delta(before.evicted_keys, after.evicted_keys),
            used_memory_bytes: after.used_memory,
            maxmemory_bytes: after.maxmemory,
            maxmemory_policy: after.maxmemory_policy.clone(),
            connected_clients: after.connected_clients,
            workshop_keys: keys,
            nodes: after
                .nodes
                .iter()
                .map(|node| {
                    // A node missing before (a failover in between) has no delta.
                    let was = before.nodes.iter().find(|b| b.node == node.node);
                    let delta = |a: Option<u64>, b: u64| a.filter(|_| !restarted).map(|a| b.saturating_sub(a));
                    NodeView {
                        node: node.node.clone(),
                        keyspace_hits: delta(was.map(|w| w.keyspace_hits), node.keyspace_hits),
                        keyspace_misses: delta(was.map(|w| w.keyspace_misses), node.keyspace_misses),
                        used_memory_bytes: node.used_memory,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::parse_info;

    fn snapshot(run_id: &str, hits: u64, misses: u64, evicted: u64) -> ServerSnapshot {
        ServerSnapshot {
            identity: "valkey 9.1.2".into(),
            run_id: run_id.into(),
            keyspace_hits: hits,
            keyspace_misses: misses,
            evicted_keys: evicted,
            used_memory: 2_000_000,
            maxmemory_policy: "allkeys-lru".into(),
            ..ServerSnapshot::default()
        }
    }

    #[test]
    fn info_fields_are_read_into_a_snapshot() {
        let info = parse_info(
            "# Server\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\nrun_id:abc\r\n# Stats\r\n\
             keyspace_hits:10\r\nkeyspace_misses:4\r\nexpired_keys:2\r\nevicted_keys:1\r\n# Memory\r\n\
             used_memory:1338008\r\nmaxmemory:2097152\r\nmaxmemory_policy:allkeys-lfu\r\n# Clients\r\n\
             connected_clients:3\r\n",
        );
        let s = ServerSnapshot::from_info(&info);
        assert_eq!(s.identity, "valkey 9.1.2");
        assert_eq!(
            (s.keyspace_hits, s.keyspace_misses, s.expired_keys, s.evicted_keys),
            (10, 4, 2, 1)
        );
        assert_eq!((s.used_memory, s.maxmemory), (1_338_008, 2_097_152));
        assert_eq!(s.maxmemory_policy, "allkeys-lfu");
        assert_eq!(s.connected_clients, 3);
    }

    #[test]
    fn the_view_shows_what_changed_during_the_run() {
        let view = ServerView::between(&snapshot("a", 100, 50, 0), &snapshot("a", 190, 60, 7), None);
        assert!(!view.restarted);
        assert_eq!((view.keyspace_hits, view.keyspace_misses), (Some(90), Some(10)));
        assert_eq!(view.server_hit_rate, Some(0.9));
        assert_eq!(view.evicted_keys, Some(7));
    }

    #[test]
    fn after_a_restart_there_are_no_deltas() {
        let view = ServerView::between(&snapshot("a", 100, 50, 0), &snapshot("b", 3, 1, 0), None);
        assert!(view.restarted);
        assert_eq!(view.keyspace_hits, None);
        assert_eq!(view.server_hit_rate, None);
        assert_eq!(view.used_memory_bytes, 2_000_000);
    }

    #[test]
    fn key_memory_is_extrapolated_from_a_sample() {
        let exact = KeyFootprint::extrapolate("p:*".into(), 10, 10, 5000);
        assert_eq!((exact.memory_bytes, exact.estimated), (5000, false));
        let sampled = KeyFootprint::extrapolate("p:*".into(), 10_000, 2000, 1_000_000);
        assert_eq!((sampled.memory_bytes, sampled.estimated), (5_000_000, true));
        let none = KeyFootprint::extrapolate("p:*".into(), 0, 0, 0);
        assert_eq!((none.memory_bytes, none.estimated), (0, false));
    }
}
