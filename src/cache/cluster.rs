//! A Valkey Cluster as the workshop sees it: one connection type over a
//! single node and a cluster ([`Link`], chosen at connect time), and the
//! topology read from `CLUSTER NODES` (pure parsing, unit-tested).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// The connection every `Valkey` clone shares: a single node's
/// `ConnectionManager`, or the cluster client (which follows MOVED/ASK and
/// refreshes its slot map after a failover on its own).
#[derive(Clone)]
pub enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

/// A node's role in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Primary,
    Replica,
}

/// One node of the cluster, from `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterNode {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub role: NodeRole,
    /// The primary this replica copies (its id); `None` for a primary.
    pub replica_of: Option<String>,
    /// Slot ranges served, inclusive (primaries only).
    pub slots: Vec<(u16, u16)>,
    /// Flagged `fail` or `fail?` by the node asked.
    pub failing: bool,
}

impl ClusterNode {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn slot_count(&self) -> u32 {
        self.slots.iter().map(|(a, b)| u32::from(b - a) + 1).sum()
    }

    /// `0-5460`, or several ranges joined by commas.
    pub fn slot_ranges(&self) -> String {
        self.slots
            .iter()
            .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Parses a `CLUSTER NODES` reply; nodes sorted by port within host.
/// Lines: `id ip:port@cport[,hostname] flags primary-id ping pong epoch link slot...`.
pub fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    let mut nodes: Vec<ClusterNode> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let address = fields[1].split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            let flags: Vec<&str> = fields[2].split(',').collect();
            if flags.contains(&"noaddr") || flags.contains(&"handshake") {
                return None;
            }
            let role = if flags.contains(&"master") {
                NodeRole::Primary
            } else {
                NodeRole::Replica
            };
            // Slots being migrated or imported are written `[slot->-id]`: skipped.
            let slots = fields[8..]
                .iter()
                .filter(|slot| !slot.starts_with('['))
                .filter_map(|slot| match slot.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => slot.parse().ok().map(|s| (s, s)),
                })
                .collect();
            Some(ClusterNode {
                id: fields[0].to_string(),
                host: host.to_string(),
                port,
                role,
                replica_of: (fields[3] != "-").then(|| fields[3].to_string()),
                slots,
                failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
            })
        })
        .collect();
    nodes.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    nodes
}

/// The hash slot of `key` (CRC16 of the key or of its `{hash tag}`, mod 16384),
/// as the cluster computes it.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16_xmodem(hashed) % 16384
}

/// CRC16/XMODEM (polynomial 0x1021) one byte at a time from a table built at
/// compile time: every cluster GET computes its key's slot.
fn crc16_xmodem(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut n = 0;
    while n < 256 {
        let mut crc = (n as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[n] = crc;
        n += 1;
    }
    table
};

/// Sums the numeric fields of several `INFO` replies (one per primary); a
/// field that is not a number keeps the first node's value.
pub fn sum_info(replies: &[std::collections::BTreeMap<String, String>]) -> std::collections::BTreeMap<String, String> {
    let mut summed = replies.first().cloned().unwrap_or_default();
    for (field, first) in summed.iter_mut() {
        let Ok(mut total) = first.parse::<u64>() else { continue };
        for reply in &replies[1..] {
            if let Some(n) = reply.get(field).and_then(|v| v.parse::<u64>().ok()) {
                total += n;
            }
        }
        *first = total.to_string();
    }
    summed
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:7004@17004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:7002@17002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:7003@17003 master,fail - 0 1426238318243 3 connected 10923-16383 [16383->-abc]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:7001@17001,host1 myself,master - 0 0 1 connected 0-5460
";

    #[test]
    fn cluster_nodes_are_parsed_with_roles_and_slots() {
        let nodes = parse_cluster_nodes(NODES);
        let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
        assert_eq!(ports, [7001, 7002, 7003, 7004]);
        assert_eq!(nodes[0].role, NodeRole::Primary);
        assert_eq!(nodes[0].slots, [(0, 5460)]);
        assert_eq!(nodes[0].slot_count(), 5461);
        assert_eq!(nodes[2].slot_ranges(), "10923-16383");
        assert!(nodes[2].failing);
        assert_eq!(nodes[3].role, NodeRole::Replica);
        assert_eq!(
            nodes[3].replica_of.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert!(nodes[3].slots.is_empty());
    }

    #[test]
    fn key_slots_match_the_cluster_and_follow_hash_tags() {
        // Values from CLUSTER KEYSLOT.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_ne!(key_slot("foo{}{bar}"), key_slot("bar"));
        // More CLUSTER KEYSLOT answers (Valkey 9.1), for the table-driven CRC16.
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot("workshop:airport:3797"), 9915);
        assert_eq!(key_slot(""), 0);
    }

    #[test]
    fn numeric_info_fields_are_summed_and_others_kept() {
        let a: std::collections::BTreeMap<String, String> = [("used_memory", "100"), ("server_name", "valkey")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let b = [("used_memory", "50"), ("server_name", "valkey")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let summed = sum_info(&[a, b]);
        assert_eq!(summed["used_memory"], "150");
        assert_eq!(summed["server_name"], "valkey");
    }
}
