//! GETs on a Valkey Cluster straight to the primary of the key's slot (issue 12):
//! one GET pipeline per primary ([`super::pipelined`]) and a slot map read from
//! `CLUSTER NODES`. redis-rs's cluster client routes a request through two tasks
//! (its cluster driver, then the node's connection), which made a cluster hit
//! about 1.5× a direct GET on the same primary.
//!
//! What the map cannot serve goes through redis-rs, which follows redirects and
//! failovers on its own: a slot the map has no node for, and a reply saying the
//! slot moved (`MOVED`, `ASK`, `TRYAGAIN`). Either, or a primary that stopped
//! answering, also starts a refresh of the map in the background (at most one at
//! a time and one per [`REFRESH_GAP`]), so the reads find the promoted replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::cluster::{key_slot, ClusterNode, NodeRole};
use super::pipelined::{Endpoint, GetPipeline};

/// The shortest time between two refreshes of the map.
pub const REFRESH_GAP: Duration = Duration::from_millis(250);

const SLOTS: usize = 16384;
const NO_NODE: u16 = u16::MAX;

/// Which primary serves each slot, and the GET pipeline to it.
struct SlotMap {
    /// For every slot, an index into `primaries`, or [`NO_NODE`].
    owners: Vec<u16>,
    primaries: Vec<((String, u16), Arc<GetPipeline>)>,
    /// Every node `CLUSTER NODES` named, to ask it again at the next refresh.
    known: Vec<(String, u16)>,
}

#[derive(Default)]
struct RefreshState {
    running: bool,
    last: Option<Instant>,
}

/// The map and the pipelines of one cluster connection, shared by its clones.
pub struct ClusterGets {
    map: RwLock<Arc<SlotMap>>,
    /// The login of every node (the first URL's); host and port set per node.
    login: Endpoint,
    connect_timeout: Duration,
    command_timeout: Duration,
    refresh: Mutex<RefreshState>,
}

/// A reply that means "ask elsewhere": the read goes through redis-rs.
pub fn is_redirect(error: &redis::RedisError) -> bool {
    let text = error.to_string();
    ["MOVED ", "ASK ", "TRYAGAIN"].iter().any(|word| text.contains(word))
}

impl ClusterGets {
    /// Opens a pipeline to every primary `nodes` names. `None` when none opens.
    pub async fn open(
        nodes: &[ClusterNode],
        login: Endpoint,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Option<ClusterGets> {
        let gets = ClusterGets {
            map: RwLock::new(Arc::new(SlotMap {
                owners: vec![NO_NODE; SLOTS],
                primaries: Vec::new(),
                known: Vec::new(),
            })),
            login: Endpoint { db: 0, ..login },
            connect_timeout,
            command_timeout,
            refresh: Mutex::default(),
        };
        gets.rebuild(nodes).await;
        let opened = !gets.current().primaries.is_empty();
        opened.then_some(gets)
    }

    fn current(&self) -> Arc<SlotMap> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The pipeline to the primary of `key`'s slot, if the map knows it.
    pub fn pipeline_for(&self, key: &str) -> Option<Arc<GetPipeline>> {
        let map = self.map.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let owner = map.owners[usize::from(key_slot(key))];
        map.primaries
            .get(usize::from(owner))
            .map(|(_, pipeline)| pipeline.clone())
    }

    /// The nodes to ask for `CLUSTER NODES` at a refresh, primaries first.
    pub fn known_nodes(&self) -> Vec<(String, u16)> {
        self.current().known.clone()
    }

    /// True when a refresh may start now (none running, the last one at least
    /// [`REFRESH_GAP`] ago); the caller must then call [`ClusterGets::finish_refresh`].
    pub fn start_refresh(&self) -> bool {
        let mut state = self.refresh.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.running || state.last.is_some_and(|last| last.elapsed() < REFRESH_GAP) {
            return false;
        }
        state.running = true;
        true
    }

    pub fn finish_refresh(&self) {
        let mut state = self.refresh.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.running = false;
        state.last = Some(Instant::now());
    }

    /// A new map from `nodes`: the primaries with slots that no node flags as
    /// failing; pipelines kept for primaries already known, opened for new ones.
    /// A primary whose pipeline does not open leaves its slots to redis-rs.
    pub async fn rebuild(&self, nodes: &[ClusterNode]) {
        let old = self.current();
        let mut reusable: HashMap<(String, u16), Arc<GetPipeline>> = old.primaries.iter().cloned().collect();
        let mut owners = vec![NO_NODE; SLOTS];
        let mut primaries = Vec::new();
        for node in nodes {
            if node.role != NodeRole::Primary || node.failing || node.slots.is_empty() {
                continue;
            }
            let address = (node.host.clone(), node.port);
            let pipeline = match reusable.remove(&address) {
                Some(pipeline) => pipeline,
                None => {
                    let endpoint = Endpoint {
                        host: node.host.clone(),
                        port: node.port,
                        ..self.login.clone()
                    };
                    match GetPipeline::connect(endpoint, self.connect_timeout, self.command_timeout).await {
                        Ok(pipeline) => Arc::new(pipeline),
                        Err(_) => continue,
                    }
                }
            };
            let index = primaries.len() as u16;
            for &(first, last) in &node.slots {
                for slot in first..=last.min(SLOTS as u16 - 1) {
                    owners[usize::from(slot)] = index;
                }
            }
            primaries.push((address, pipeline));
        }
        let mut known: Vec<(String, u16)> = primaries.iter().map(|(address, _)| address.clone()).collect();
        for node in nodes {
            let address = (node.host.clone(), node.port);
            if !known.contains(&address) {
                known.push(address);
            }
        }
        let map = Arc::new(SlotMap {
            owners,
            primaries,
            known,
        });
        // Pipelines of nodes that are no longer primaries close when the last read on them ends.
        *self.map.write().unwrap_or_else(std::sync::PoisonError::into_inner) = map;
    }

    /// The primary the map sends `key`'s GET to.
    pub fn node_for(&self, key: &str) -> Option<(String, u16)> {
        let map = self.current();
        let owner = map.owners[usize::from(key_slot(key))];
        map.primaries
            .get(usize::from(owner))
            .map(|(address, _)| address.clone())
    }

    /// How many slots the map routes straight to a primary (for tests and reports).
    pub fn mapped_slots(&self) -> usize {
        self.current().owners.iter().filter(|&&owner| owner != NO_NODE).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_ask_and_tryagain_replies_are_redirects_and_others_are_not() {
        let reply =
            |text: &str| redis::RedisError::from((redis::ErrorKind::Extension, "error reply", text.to_string()));
        assert!(is_redirect(&reply("MOVED 3999 127.0.0.1:7002")));
        assert!(is_redirect(&reply("ASK 3999 127.0.0.1:7002")));
        assert!(is_redirect(&reply(
            "TRYAGAIN Multiple keys request during rehashing of slot"
        )));
        assert!(!is_redirect(&reply(
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        )));
        assert!(!is_redirect(
            &std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()
        ));
    }
}
