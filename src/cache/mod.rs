//! The Valkey side: one `ConnectionManager` (it reconnects on its own),
//! cloned per task, and beside it the hot read's own GET connection
//! ([`pipelined`]; per primary on a cluster, [`cluster_gets`]); every key is
//! built in [`keys`].
//! Client-side caching stays off: it would hide hits and misses from the workshop.

pub mod breaker;
pub mod cluster;
pub mod cluster_gets;
pub mod invalidation;
pub mod keys;
pub mod pipelined;
pub mod popularity;
pub mod private;
pub mod ttl;
pub mod two_level;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncCommands, ErrorKind, FromRedisValue};
use tokio::sync::OnceCell;

use crate::config::{ClusterMode, ValkeyTarget};
pub use breaker::BreakerCounts;
use breaker::{Admission, Breaker, BreakerSettings};
use cluster::{ClusterNode, Link, NodeRole};
use cluster_gets::ClusterGets;
pub use keys::KeyScheme;
use pipelined::{Endpoint, GetPipeline};
pub use ttl::TtlPolicy;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    #[error("cannot reach Valkey at {target}: {reason}; start it (`just up`) or fix VALKEY_URL")]
    Unreachable { target: String, reason: String },
    #[error("Valkey at {target} refused the login; fix the user or password in VALKEY_URL")]
    LoginRefused { target: String },
    #[error("Valkey {command} failed: {reason}")]
    Command { command: &'static str, reason: String },
    /// VALKEY_URL points at a port that speaks another protocol (a database's).
    #[error(
        "{address} speaks {protocol}, not Valkey's; point VALKEY_URL at Valkey (the default is redis://127.0.0.1:6379)"
    )]
    OtherProtocol { address: String, protocol: &'static str },
    #[error("Valkey {command} got no answer within {after_ms} ms; check that Valkey is running and not paused, or raise --cache-timeout")]
    TimedOut { command: &'static str, after_ms: u128 },
    #[error("Valkey {command} skipped: Valkey stopped answering, so the circuit breaker holds commands back for a moment; check that Valkey is running and not paused")]
    Skipped { command: &'static str },
}

/// What answers at the Valkey URL, read from `INFO server`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerIdentity {
    /// "valkey" or "redis".
    pub name: String,
    pub version: String,
}

impl ServerIdentity {
    pub fn is_valkey(&self) -> bool {
        self.name == "valkey"
    }

    /// Valkey sets `server_name:valkey` (and keeps `redis_version` for
    /// compatibility); Redis has no `server_name`.
    pub fn from_info(info: &BTreeMap<String, String>) -> ServerIdentity {
        match info.get("server_name").map(String::as_str) {
            Some("valkey") => ServerIdentity {
                name: "valkey".into(),
                version: info.get("valkey_version").cloned().unwrap_or_default(),
            },
            other => ServerIdentity {
                name: other.unwrap_or("redis").to_string(),
                version: info.get("redis_version").cloned().unwrap_or_default(),
            },
        }
    }
}

/// Parses the `key:value` lines of an `INFO` reply.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// How [`Valkey::delete_if_equals`] deletes a key only if it holds a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareAndDelete {
    /// `DELIFEQ key value` (Valkey 9.0 and later).
    Delifeq,
    /// `EVAL` of a Lua compare-and-delete, for servers without `DELIFEQ`.
    LuaCompareAndDelete,
}

impl CompareAndDelete {
    pub fn label(self) -> &'static str {
        match self {
            CompareAndDelete::Delifeq => "DELIFEQ lock token",
            CompareAndDelete::LuaCompareAndDelete => "EVAL (Lua compare-and-delete)",
        }
    }
}

/// `DELIFEQ` for servers that lack it.
const COMPARE_AND_DELETE_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// A connection to Valkey shared by every task of a run.
#[derive(Clone)]
pub struct Valkey {
    connection: Link,
    target: String,
    connect_time: Duration,
    /// The first node's host and port (the one node on a single node).
    address: (String, u16),
    /// Asked of the server on first use, then known to every clone.
    compare_and_delete: Arc<OnceCell<CompareAndDelete>>,
    /// How long one command may wait (`--cache-timeout`, plus the longest
    /// block on a dedicated connection).
    command_timeout: Duration,
    /// The bound of a command sent without the breaker ([`Valkey::query_pipeline_or_unknown`]):
    /// the connect timeout (plus the longest block on a dedicated connection).
    response_timeout: Duration,
    /// Shared by every clone: the connection is one.
    breaker: Arc<Mutex<Breaker>>,
    /// The hot read's own connection ([`pipelined`]): single node, plain TCP, RESP2,
    /// and not on a connection whose GETs must be the tracked ones (pushes).
    get_pipeline: Option<Arc<GetPipeline>>,
    /// On a cluster: GET pipelines to the primaries and the slot map ([`cluster_gets`]).
    cluster_gets: Option<Arc<ClusterGets>>,
}

impl Valkey {
    /// Connects and checks the server answers. `timeout` bounds both the
    /// connect and each command, so a dead host never hangs a run.
    pub async fn connect(target: &ValkeyTarget, timeout: Duration) -> Result<Valkey, CacheError> {
        let mut valkey = Valkey::connect_with_response_timeout(target, timeout, timeout).await?;
        let started = Instant::now();
        if valkey.is_cluster() {
            valkey.cluster_gets = open_cluster_gets(&valkey, target, timeout).await;
        } else {
            valkey.get_pipeline = open_get_pipeline(&valkey, target, timeout).await;
        }
        valkey.connect_time += started.elapsed();
        Ok(valkey)
    }

    /// A connection of its own for blocking reads (XREADGROUP BLOCK): on the
    /// shared, multiplexed connection a blocked read would hold up every
    /// command queued behind it. Each command may take `longest_block` longer
    /// than `timeout`, so the longest block the caller asks for is no timeout.
    pub async fn connect_dedicated(
        target: &ValkeyTarget,
        timeout: Duration,
        longest_block: Duration,
    ) -> Result<Valkey, CacheError> {
        let mut valkey = Valkey::connect_with_response_timeout(target, timeout, timeout + longest_block).await?;
        valkey.command_timeout += longest_block;
        Ok(valkey)
    }

    async fn connect_with_response_timeout(
        target: &ValkeyTarget,
        timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Valkey, CacheError> {
        // One timer per command: every command goes through `send_raw`, which bounds it by
        // the command timeout (and feeds the breaker), so the single-node connection sets no
        // response timeout of its own (a second timer per GET, seen in the profile: issue 13).
        // `query_pipeline_or_unknown`, which skips the breaker, keeps `response_timeout` as
        // its own bound. The cluster client keeps its response timeout: it also bounds the
        // commands it sends by itself (slot refreshes after MOVED).
        let shown = target.masked();
        let started = Instant::now();
        let client = redis::IntoConnectionInfo::into_connection_info(target.connect_url())
            .map(|info| info.set_tcp_settings(tcp_settings()))
            .and_then(redis::Client::open)
            .map_err(|e| CacheError::Unreachable {
                target: shown.clone(),
                reason: first_line(&e.to_string()),
            })?;
        // No retry delay: while Valkey is down every command tries one
        // reconnect (refused at once) and fails fast, so a read falls back to
        // the database in about a millisecond instead of waiting out a backoff.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None)
            .set_number_of_retries(0);
        let connecting = ConnectionManager::new_with_config(client, config);
        let connected = tokio::time::timeout(timeout + Duration::from_millis(250), connecting)
            .await
            .map_err(|_| CacheError::Unreachable {
                target: shown.clone(),
                reason: format!("no answer within {:.1} s", timeout.as_secs_f64()),
            })
            .and_then(|result| result.map_err(|e| classify(&e, &shown)));
        let connection = match connected {
            Ok(connection) => connection,
            // Something answered that was not Valkey (or nothing did): a
            // database port says so, rather than "start Valkey".
            Err(error @ CacheError::Unreachable { .. }) => return Err(other_protocol(target).await.unwrap_or(error)),
            Err(error) => return Err(error),
        };
        let cluster = match target.mode {
            ClusterMode::Single => false,
            ClusterMode::Cluster => true,
            ClusterMode::Detect => is_cluster_node(&connection, timeout).await,
        };
        let connection = if cluster {
            Link::Cluster(connect_cluster(target, timeout, response_timeout, &shown).await?)
        } else {
            Link::Single(connection)
        };
        Ok(Valkey {
            connection,
            target: shown,
            connect_time: started.elapsed(),
            address: target.address(),
            compare_and_delete: Arc::default(),
            command_timeout: target.command_timeout,
            response_timeout,
            breaker: Arc::new(Mutex::new(Breaker::new(BreakerSettings::default()))),
            get_pipeline: None,
            cluster_gets: None,
        })
    }

    /// A single-node connection of its own that speaks RESP3, so the
    /// server's push messages (CLIENT TRACKING invalidations, pub/sub
    /// messages) go to `pushes`. The connection's driver calls it as it reads
    /// each push, so a push that came before a reply has been handled when
    /// that reply's command returns. Refused on a cluster: tracking and
    /// subscriptions are per node.
    pub async fn connect_with_pushes(
        target: &ValkeyTarget,
        timeout: Duration,
        pushes: impl redis::aio::AsyncPushSender,
    ) -> Result<Valkey, CacheError> {
        let shown = target.masked();
        let started = Instant::now();
        let unreachable = |e: redis::RedisError| CacheError::Unreachable {
            target: shown.clone(),
            reason: first_line(&e.to_string()),
        };
        let info = redis::IntoConnectionInfo::into_connection_info(target.connect_url()).map_err(unreachable)?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings)).map_err(unreachable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(target.command_timeout.max(timeout)))
            .set_number_of_retries(0)
            .set_automatic_resubscription()
            .set_push_sender(pushes);
        let connection = tokio::time::timeout(
            timeout + Duration::from_millis(250),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| CacheError::Unreachable {
            target: shown.clone(),
            reason: format!("no answer within {:.1} s", timeout.as_secs_f64()),
        })?
        .map_err(|e| classify(&e, &shown))?;
        Ok(Valkey {
            connection: Link::Single(connection),
            target: shown,
            connect_time: started.elapsed(),
            address: target.address(),
            compare_and_delete: Arc::default(),
            command_timeout: target.command_timeout,
            response_timeout: target.command_timeout.max(timeout),
            breaker: Arc::new(Mutex::new(Breaker::new(BreakerSettings::default()))),
            get_pipeline: None,
            cluster_gets: None,
        })
    }

    /// `SUBSCRIBE channel` on a RESP3 connection ([`Valkey::connect_with_pushes`]):
    /// its messages arrive as pushes.
    pub async fn subscribe(&self, channel: &str) -> Result<(), CacheError> {
        let Link::Single(connection) = &self.connection else {
            return Err(CacheError::Command {
                command: "SUBSCRIBE",
                reason: "a cluster connection cannot subscribe here".into(),
            });
        };
        let mut conn = connection.clone();
        let channel = channel.to_string();
        self.send("SUBSCRIBE", async move { conn.subscribe(channel).await })
            .await
    }

    /// GETs travel on the connection's own GET pipeline ([`pipelined`]), not through
    /// redis-rs: to the one node, or on a cluster to the primary of the key's slot.
    pub fn reads_through_get_pipeline(&self) -> bool {
        self.get_pipeline.is_some() || self.cluster_gets.is_some()
    }

    /// On a cluster read through GET pipelines: the primary the slot map sends `key`'s GET to.
    pub fn direct_node_of(&self, key: &str) -> Option<(String, u16)> {
        self.cluster_gets.as_ref().and_then(|gets| gets.node_for(key))
    }

    /// On a cluster read through GET pipelines: how many of the 16,384 slots the
    /// slot map sends straight to their primary (0 otherwise).
    pub fn directly_mapped_slots(&self) -> usize {
        self.cluster_gets.as_ref().map_or(0, |gets| gets.mapped_slots())
    }

    /// Spoken to as a cluster (several nodes, `VALKEY_CLUSTER=true`, or a node
    /// that reported `cluster_enabled:1`).
    pub fn is_cluster(&self) -> bool {
        matches!(self.connection, Link::Cluster(_))
    }

    /// The cluster's nodes from `CLUSTER NODES`; empty on a single node.
    pub async fn cluster_nodes(&self) -> Result<Vec<ClusterNode>, CacheError> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        let text: String = self.query("CLUSTER NODES", redis::cmd("CLUSTER").arg("NODES")).await?;
        Ok(cluster::parse_cluster_nodes(&text))
    }

    /// `cluster_state` from `CLUSTER INFO` (`ok` or `fail`).
    pub async fn cluster_state(&self) -> Result<String, CacheError> {
        let text: String = self.query("CLUSTER INFO", redis::cmd("CLUSTER").arg("INFO")).await?;
        Ok(parse_info(&text).get("cluster_state").cloned().unwrap_or_default())
    }

    /// The nodes that hold data, as `(host, port)`: every primary with slots
    /// that is not failing, or the one node.
    pub async fn primaries(&self) -> Result<Vec<(String, u16)>, CacheError> {
        if !self.is_cluster() {
            return Ok(vec![self.address.clone()]);
        }
        Ok(self
            .cluster_nodes()
            .await?
            .into_iter()
            .filter(|node| node.role == NodeRole::Primary && !node.failing && !node.slots.is_empty())
            .map(|node| (node.host, node.port))
            .collect())
    }

    /// A command for one node (INFO, CONFIG, SCAN, DBSIZE); on a single
    /// node, for that node.
    pub async fn query_node<T: FromRedisValue>(
        &self,
        (host, port): &(String, u16),
        name: &'static str,
        command: &redis::Cmd,
    ) -> Result<T, CacheError> {
        let Link::Cluster(connection) = &self.connection else {
            return self.query(name, command).await;
        };
        let mut conn = connection.clone();
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port: *port,
        });
        let command = command.clone();
        self.send(name, async move {
            // An error reply (CROSSSLOT, MOVED) arrives as a value: made an error here.
            let value = conn.route_command(command, routing).await?.extract_error()?;
            Ok(T::from_redis_value(value)?)
        })
        .await
    }

    /// `INFO section` of every primary, by address (one entry on a single node).
    pub async fn info_per_node(&self, section: &str) -> Result<Vec<(String, BTreeMap<String, String>)>, CacheError> {
        let mut replies = Vec::new();
        for node in self.primaries().await? {
            let text: String = self.query_node(&node, "INFO", redis::cmd("INFO").arg(section)).await?;
            replies.push((format!("{}:{}", node.0, node.1), parse_info(&text)));
        }
        Ok(replies)
    }

    /// Openings, skipped commands and timeouts so far, for the run's report.
    pub fn breaker_counts(&self) -> BreakerCounts {
        self.breaker().counts()
    }

    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        // A panic while the lock was held leaves counts only: still usable.
        self.breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends one request through the circuit breaker, bounded by the command
    /// timeout. The outer error is Valkey not answering (skipped, timed out,
    /// connection lost); the inner one is an error reply from a live server.
    async fn send_raw<T>(
        &self,
        command: &'static str,
        limit: Duration,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<redis::RedisResult<T>, CacheError> {
        self.admit(command)?;
        self.settle(command, limit, tokio::time::timeout(limit, request).await)
    }

    /// Reads `CLUSTER NODES` again and rebuilds the GET pipelines' slot map, in the
    /// background (one refresh at a time, see [`cluster_gets::REFRESH_GAP`]). Asked of the
    /// nodes one by one, past the breaker: a frozen node must not keep the map stale, and an
    /// open breaker must not stop the refresh that lets the reads reach the new primary.
    fn refresh_slot_map(&self) {
        let (Some(gets), Link::Cluster(connection)) = (&self.cluster_gets, &self.connection) else {
            return;
        };
        if !gets.start_refresh() {
            return;
        }
        let gets = Arc::clone(gets);
        let mut conn = connection.clone();
        let per_node = self.command_timeout.min(Duration::from_secs(1));
        tokio::spawn(async move {
            for (host, port) in gets.known_nodes() {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                let asked = tokio::time::timeout(
                    per_node,
                    conn.route_command(redis::cmd("CLUSTER").arg("NODES").clone(), routing),
                )
                .await;
                let Ok(Ok(reply)) = asked else { continue };
                let Some(text) = reply
                    .extract_error()
                    .ok()
                    .and_then(|v| String::from_redis_value(v).ok())
                else {
                    continue;
                };
                let nodes = cluster::parse_cluster_nodes(&text);
                if nodes
                    .iter()
                    .any(|node| node.role == NodeRole::Primary && !node.slots.is_empty())
                {
                    gets.rebuild(&nodes).await;
                    break;
                }
            }
            gets.finish_refresh();
        });
    }

    /// Asks the breaker; a closed one needs no clock.
    fn admit(&self, command: &'static str) -> Result<(), CacheError> {
        let mut breaker = self.breaker();
        if breaker.is_open() && breaker.admit(tokio::time::Instant::now()) == Admission::Skip {
            return Err(CacheError::Skipped { command });
        }
        Ok(())
    }

    /// Tells the breaker how a request ended (`Err(_)`: no answer within `limit`).
    fn settle<T, Elapsed>(
        &self,
        command: &'static str,
        limit: Duration,
        outcome: Result<redis::RedisResult<T>, Elapsed>,
    ) -> Result<redis::RedisResult<T>, CacheError> {
        match outcome {
            Err(_) => {
                self.breaker().failed(tokio::time::Instant::now(), true);
                Err(CacheError::TimedOut {
                    command,
                    after_ms: limit.as_millis(),
                })
            }
            Ok(Err(error)) if is_outage(&error) => {
                self.breaker().failed(tokio::time::Instant::now(), error.is_timeout());
                Err(Self::command_error(command)(error))
            }
            Ok(reply) => {
                self.breaker().succeeded();
                Ok(reply)
            }
        }
    }

    async fn send<T>(
        &self,
        command: &'static str,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        self.send_raw(command, self.command_timeout, request)
            .await?
            .map_err(Self::command_error(command))
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn connect_time(&self) -> Duration {
        self.connect_time
    }

    fn command_error(command: &'static str) -> impl Fn(redis::RedisError) -> CacheError {
        move |e| CacheError::Command {
            command,
            reason: first_line(&e.to_string()),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        if !self.reads_through_get_pipeline() {
            let mut conn = self.connection.clone();
            return self.send("GET", async move { conn.get(key).await }).await;
        }
        match self.get_bytes(key).await? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| CacheError::Command {
                command: "GET",
                reason: format!("the value of {key} is not UTF-8 text"),
            }),
        }
    }

    /// GET as the raw bytes of the value: the cache-hit path decodes them straight into
    /// its rows (`serde_json::from_slice`), with no `String` (and UTF-8 pass) between.
    /// On a single node it goes through the GET pipeline ([`pipelined`]).
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        if let Some(pipeline) = &self.get_pipeline {
            // The pipeline bounds the wait itself (no timer per GET).
            self.admit("GET")?;
            let outcome = pipeline.get(key.as_bytes()).await;
            return self
                .settle("GET", self.command_timeout, outcome)?
                .map_err(Self::command_error("GET"));
        }
        if let Some(gets) = &self.cluster_gets {
            match gets.pipeline_for(key) {
                Some(pipeline) => {
                    self.admit("GET")?;
                    let outcome = pipeline.get(key.as_bytes()).await;
                    let (moved, lost) = match &outcome {
                        Ok(Err(error)) => (cluster_gets::is_redirect(error), is_outage(error)),
                        Ok(Ok(_)) => (false, false),
                        Err(_) => (false, true),
                    };
                    if lost {
                        // A primary stopped answering: a failover may be under way.
                        self.refresh_slot_map();
                    }
                    if !moved {
                        return self
                            .settle("GET", self.command_timeout, outcome)?
                            .map_err(Self::command_error("GET"));
                    }
                    // The slot moved (a failover, a resharding): an answer, so the breaker
                    // counts a success, and redis-rs follows the redirect below.
                    self.breaker().succeeded();
                    self.refresh_slot_map();
                }
                None => self.refresh_slot_map(),
            }
        }
        let mut conn = self.connection.clone();
        self.send("GET", async move { conn.get(key).await }).await
    }

    /// `SET key value PX ttl`: milliseconds, so a jittered TTL
    /// ([`TtlPolicy`]) keeps its spread on short lifetimes.
    pub async fn set_with_ttl(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.connection.clone();
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.send("SET", async move { conn.pset_ex(key, value, millis).await })
            .await
    }

    /// Deletes a key; true when it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let mut conn = self.connection.clone();
        let removed: u64 = self.send("DEL", async move { conn.del(key).await }).await?;
        Ok(removed > 0)
    }

    /// `SET key value NX PX ttl`: true when the key did not exist and now holds `value`.
    pub async fn set_if_absent(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, CacheError> {
        let mut conn = self.connection.clone();
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let command = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .clone();
        let reply: redis::Value = self
            .send("SET NX", async move { command.query_async(&mut conn).await })
            .await?;
        Ok(reply != redis::Value::Nil)
    }

    /// ZINCRBY `key` for every (member, increment), all in one pipeline (one round trip).
    pub async fn increment_scores<M: redis::ToRedisArgs>(
        &self,
        key: &str,
        increments: impl IntoIterator<Item = (M, u64)>,
    ) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        for (member, by) in increments {
            pipe.cmd("ZINCRBY").arg(key).arg(by).arg(member).ignore();
        }
        if pipe.is_empty() {
            return Ok(());
        }
        self.query_pipeline::<()>("ZINCRBY", &pipe).await
    }

    /// The `n` members of the sorted set `key` with the highest scores, highest first.
    pub async fn top_scored(&self, key: &str, n: u64) -> Result<Vec<(String, f64)>, CacheError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let stop = i64::try_from(n).unwrap_or(i64::MAX).saturating_sub(1);
        let command = redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(stop)
            .arg("REV")
            .arg("WITHSCORES")
            .clone();
        self.query("ZRANGE", &command).await
    }

    /// Which command [`Valkey::delete_if_equals`] uses on this server: `DELIFEQ`
    /// where the server knows it, a Lua script otherwise (also when it cannot
    /// be asked). Asked once per connection.
    pub async fn compare_and_delete(&self) -> CompareAndDelete {
        *self
            .compare_and_delete
            .get_or_init(|| async {
                // COMMAND INFO answers [nil] for a command the server does not know.
                let command = redis::cmd("COMMAND").arg("INFO").arg("DELIFEQ").clone();
                let info: Result<Vec<redis::Value>, CacheError> = self.query("COMMAND INFO", &command).await;
                match info {
                    Ok(entries) if entries.first().is_some_and(|e| *e != redis::Value::Nil) => {
                        CompareAndDelete::Delifeq
                    }
                    _ => CompareAndDelete::LuaCompareAndDelete,
                }
            })
            .await
    }

    /// Deletes `key` only if it holds `value` (atomically); true when it did.
    pub async fn delete_if_equals(&self, key: &str, value: &[u8]) -> Result<bool, CacheError> {
        let how = self.compare_and_delete().await;
        let removed: i64 = match how {
            CompareAndDelete::Delifeq => self.query("DELIFEQ", redis::cmd("DELIFEQ").arg(key).arg(value)).await?,
            CompareAndDelete::LuaCompareAndDelete => {
                let command = redis::cmd("EVAL")
                    .arg(COMPARE_AND_DELETE_SCRIPT)
                    .arg(1)
                    .arg(key)
                    .arg(value)
                    .clone();
                self.query("EVAL", &command).await?
            }
        };
        Ok(removed > 0)
    }

    /// Time left before the key expires; `None` when it does not exist or never expires.
    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let mut conn = self.connection.clone();
        let millis: i64 = self.send("PTTL", async move { conn.pttl(key).await }).await?;
        Ok((millis >= 0).then(|| Duration::from_millis(millis as u64)))
    }

    /// One PING, timed.
    pub async fn round_trip(&self) -> Result<Duration, CacheError> {
        let started = Instant::now();
        let _: String = self.query("PING", &redis::cmd("PING")).await?;
        Ok(started.elapsed())
    }

    /// `INFO section`; on a cluster asked of every primary, numbers summed.
    pub async fn info(&self, section: &str) -> Result<BTreeMap<String, String>, CacheError> {
        if self.is_cluster() {
            let replies: Vec<_> = self
                .info_per_node(section)
                .await?
                .into_iter()
                .map(|(_, info)| info)
                .collect();
            return Ok(cluster::sum_info(&replies));
        }
        let text: String = self.query("INFO", redis::cmd("INFO").arg(section)).await?;
        Ok(parse_info(&text))
    }

    pub async fn identity(&self) -> Result<ServerIdentity, CacheError> {
        Ok(ServerIdentity::from_info(&self.info("server").await?))
    }

    /// PUBLISH; returns how many subscribers received the message. On a
    /// cluster it goes to the first node named, where the invalidation
    /// listeners subscribe: the cluster bus forwards it to every node anyway,
    /// but the count a node returns is of its own subscribers only.
    pub async fn publish(&self, channel: &str, message: &str) -> Result<u64, CacheError> {
        if self.is_cluster() {
            let command = redis::cmd("PUBLISH").arg(channel).arg(message).clone();
            return self.query_node(&self.address, "PUBLISH", &command).await;
        }
        let mut conn = self.connection.clone();
        self.send("PUBLISH", async move { conn.publish(channel, message).await })
            .await
    }

    /// A command built by the caller, for what has no method of its own here
    /// (write-behind's stream commands); `name` names it in errors.
    pub async fn query<T: FromRedisValue>(&self, name: &'static str, command: &redis::Cmd) -> Result<T, CacheError> {
        let mut conn = self.connection.clone();
        self.send(name, async move { command.query_async(&mut conn).await })
            .await
    }

    /// Like [`Valkey::query`], but when the server refuses the command with
    /// the error `code` (such as BUSYGROUP or NOGROUP) the answer is `None`.
    pub async fn query_unless<T: FromRedisValue>(
        &self,
        name: &'static str,
        command: &redis::Cmd,
        code: &str,
    ) -> Result<Option<T>, CacheError> {
        let mut conn = self.connection.clone();
        let reply = self
            .send_raw(name, self.command_timeout, async move {
                command.query_async(&mut conn).await
            })
            .await?;
        match reply {
            Ok(reply) => Ok(Some(reply)),
            Err(e) if e.code() == Some(code) => Ok(None),
            Err(e) => Err(Self::command_error(name)(e)),
        }
    }

    /// `SCRIPT LOAD`: after it, [`Valkey::run_script`] sends only `EVALSHA`.
    pub async fn load_script(&self, script: &redis::Script) -> Result<String, CacheError> {
        let mut conn = self.connection.clone();
        self.send("SCRIPT LOAD", async move { script.load_async(&mut conn).await })
            .await
    }

    /// `EVALSHA` of a loaded script (redis-rs loads it again on `NOSCRIPT`,
    /// e.g. after a Valkey restart).
    pub async fn run_script<T: FromRedisValue>(
        &self,
        name: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, CacheError> {
        let mut conn = self.connection.clone();
        self.send(name, async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// Commands built by the caller, sent in one round trip; an atomic
    /// pipeline (`pipe.atomic()`) runs as one MULTI/EXEC.
    pub async fn query_pipeline<T: FromRedisValue>(
        &self,
        name: &'static str,
        pipeline: &redis::Pipeline,
    ) -> Result<T, CacheError> {
        let mut conn = self.connection.clone();
        // A long pipeline is many commands' work: one timeout per 100 of them.
        let per_hundred = u32::try_from(pipeline.len() / 100 + 1).unwrap_or(u32::MAX);
        let limit = self.command_timeout.saturating_mul(per_hundred);
        self.send_raw(name, limit, async move { pipeline.query_async(&mut conn).await })
            .await?
            .map_err(Self::command_error(name))
    }

    /// Like [`Valkey::query_pipeline`], but a failure also says whether the
    /// server may have run the commands anyway: a timeout or a connection
    /// lost after sending leaves that open; a refused connection or an
    /// error reply does not.
    pub async fn query_pipeline_or_unknown<T: FromRedisValue>(
        &self,
        name: &'static str,
        pipeline: &redis::Pipeline,
    ) -> Result<T, (CacheError, bool)> {
        let mut conn = self.connection.clone();
        let limit = self.response_timeout;
        match tokio::time::timeout(limit, pipeline.query_async(&mut conn)).await {
            // No answer in time: the server may have run it and the reply is late.
            Err(_) => Err((
                CacheError::Command {
                    command: name,
                    reason: format!("timed out after {} ms (no answer)", limit.as_millis()),
                },
                true,
            )),
            Ok(reply) => reply.map_err(|e| {
                let may_have_run =
                    !e.is_connection_refusal() && (e.is_timeout() || e.is_connection_dropped() || e.is_io_error());
                (Self::command_error(name)(e), may_have_run)
            }),
        }
    }

    /// Every key that starts with `prefix`, each once, in SCAN order (SCAN
    /// MATCH [`prefix_pattern`], never KEYS).
    /// On a cluster, every primary is walked in turn (SCAN sees one node's keys).
    pub async fn scan_prefixed(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        let mut found = Vec::new();
        for node in self.primaries().await? {
            found.extend(self.scan_on(&node, prefix).await?);
        }
        Ok(found)
    }

    /// The keys that start with `prefix` on one node (SCAN sees only its own).
    pub async fn scan_on(&self, node: &(String, u16), prefix: &str) -> Result<Vec<String>, CacheError> {
        let pattern = prefix_pattern(prefix);
        let mut seen: HashSet<String> = HashSet::new();
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let command = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .clone();
            let (next, keys): (u64, Vec<String>) = self.query_node(node, "SCAN", &command).await?;
            // SCAN may return a key twice while the table is resized.
            found.extend(keys.into_iter().filter(|key| seen.insert(key.clone())));
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Deletes every key that starts with `prefix` (SCAN, never KEYS); returns how many.
    pub async fn delete_prefixed(&self, prefix: &str) -> Result<u64, CacheError> {
        let mut removed = 0;
        for batch in self.scan_prefixed(prefix).await?.chunks(UNLINK_BATCH) {
            let n: u64 = self.query("UNLINK", redis::cmd("UNLINK").arg(batch)).await?;
            removed += n;
        }
        Ok(removed)
    }

    /// MEMORY USAGE of each key, in one pipeline; `None` for a key that no
    /// longer exists (it expired since it was listed).
    pub async fn memory_usage(&self, keys: &[String]) -> Result<Vec<Option<u64>>, CacheError> {
        if self.is_cluster() {
            // A pipeline goes to one node: the keys are spread over all of them.
            let commands: Vec<redis::Cmd> = keys
                .iter()
                .map(|key| redis::cmd("MEMORY").arg("USAGE").arg(key).clone())
                .collect();
            let asks = commands
                .iter()
                .map(|command| self.query::<Option<u64>>("MEMORY USAGE", command));
            return futures_util::future::join_all(asks).await.into_iter().collect();
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("MEMORY").arg("USAGE").arg(key);
        }
        self.query_pipeline("MEMORY USAGE", &pipe).await
    }

    /// `CONFIG GET name`: the value, or an error when the server has no such setting.
    /// On a cluster, the first primary's value (the set-up gives every node the same).
    pub async fn config_get(&self, name: &str) -> Result<String, CacheError> {
        let first = self
            .primaries()
            .await?
            .into_iter()
            .next()
            .unwrap_or_else(|| self.address.clone());
        let pairs: Vec<String> = self
            .query_node(&first, "CONFIG GET", redis::cmd("CONFIG").arg("GET").arg(name))
            .await?;
        pairs
            .chunks(2)
            .find(|pair| pair.len() == 2 && pair[0] == name)
            .map(|pair| pair[1].clone())
            .ok_or_else(|| CacheError::Command {
                command: "CONFIG GET",
                reason: format!("the server has no setting '{name}'"),
            })
    }

    /// `CONFIG SET`; on a cluster, on every primary (each holds its own share of the keys).
    pub async fn config_set(&self, name: &str, value: &str) -> Result<(), CacheError> {
        let command = redis::cmd("CONFIG").arg("SET").arg(name).arg(value).clone();
        for node in self.primaries().await? {
            self.query_node::<()>(&node, "CONFIG SET", &command).await?;
        }
        Ok(())
    }
}

/// Keys per SCAN step (a hint to the server) and per UNLINK.
const SCAN_COUNT: u64 = 1000;
const UNLINK_BATCH: usize = 500;

/// The SCAN MATCH pattern for the keys that start with `prefix`.
pub fn prefix_pattern(prefix: &str) -> String {
    format!("{}*", escape_glob(prefix))
}

/// Escapes glob characters so a prefix matches only itself in SCAN MATCH.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The GET pipelines of a cluster connection, one per primary, opened beside it;
/// `None` for TLS or a Unix socket, or when the nodes cannot be read.
async fn open_cluster_gets(valkey: &Valkey, target: &ValkeyTarget, timeout: Duration) -> Option<Arc<ClusterGets>> {
    let info = redis::IntoConnectionInfo::into_connection_info(target.connect_url()).ok()?;
    let login = Endpoint::from_info(&info)?;
    let nodes = valkey.cluster_nodes().await.ok()?;
    ClusterGets::open(&nodes, login, timeout, valkey.command_timeout)
        .await
        .map(Arc::new)
}

/// The GET pipeline of a single-node connection, opened beside it; `None` on a
/// cluster, for TLS or a Unix socket, or when it cannot be opened (the reads
/// then go through redis-rs, as every other command does).
async fn open_get_pipeline(valkey: &Valkey, target: &ValkeyTarget, timeout: Duration) -> Option<Arc<GetPipeline>> {
    if valkey.is_cluster() {
        return None;
    }
    let info = redis::IntoConnectionInfo::into_connection_info(target.connect_url()).ok()?;
    let endpoint = Endpoint::from_info(&info)?;
    GetPipeline::connect(endpoint, timeout, valkey.command_timeout)
        .await
        .ok()
        .map(Arc::new)
}

/// TCP_NODELAY on every Valkey socket, as redis-benchmark (hiredis) sets it. redis-rs leaves
/// Nagle's algorithm on: with 50 tasks pipelining on one connection, each small write after
/// the first waited for the ACK of the one before (measured in `just bench`, BENCHMARKS.md).
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

/// `INFO cluster` says `cluster_enabled:1`: the node belongs to a cluster.
async fn is_cluster_node(connection: &ConnectionManager, timeout: Duration) -> bool {
    let mut conn = connection.clone();
    let asked = tokio::time::timeout(timeout, async move {
        redis::cmd("INFO").arg("cluster").query_async::<String>(&mut conn).await
    })
    .await;
    matches!(asked, Ok(Ok(text)) if parse_info(&text).get("cluster_enabled").map(String::as_str) == Some("1"))
}

/// The cluster client over the nodes named (it learns the rest from any of them).
async fn connect_cluster(
    target: &ValkeyTarget,
    timeout: Duration,
    response_timeout: Duration,
    shown: &str,
) -> Result<ClusterConnection, CacheError> {
    // Few, short retries: a read the cluster cannot serve at once falls back
    // to the database (counted) rather than waiting out a failover.
    let client = ClusterClientBuilder::new(target.node_urls())
        .tcp_settings(tcp_settings())
        .connection_timeout(timeout)
        .response_timeout(response_timeout)
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(100)
        .build()
        .map_err(|e| classify(&e, shown))?;
    tokio::time::timeout(timeout + Duration::from_millis(250), client.get_async_connection())
        .await
        .map_err(|_| CacheError::Unreachable {
            target: shown.to_string(),
            reason: format!("no cluster answer within {:.1} s", timeout.as_secs_f64()),
        })?
        .map_err(|e| classify(&e, shown))
}

/// Valkey did not answer (as opposed to answering with an error reply).
fn is_outage(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_timeout() || error.is_connection_refusal()
}

fn classify(error: &redis::RedisError, target: &str) -> CacheError {
    let text = first_line(&error.to_string());
    let auth = matches!(error.kind(), ErrorKind::AuthenticationFailed)
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH");
    if auth {
        CacheError::LoginRefused {
            target: target.to_string(),
        }
    } else {
        CacheError::Unreachable {
            target: target.to_string(),
            reason: text,
        }
    }
}

/// The error to give when the port at `target` speaks a database protocol.
async fn other_protocol(target: &ValkeyTarget) -> Option<CacheError> {
    let (host, port) = target.address();
    match crate::protocol::identify(&host, port).await? {
        crate::protocol::Speaker::Valkey => None,
        speaker => Some(CacheError::OtherProtocol {
            address: format!("{host}:{port}"),
            protocol: speaker.protocol(),
        }),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valkey_is_told_apart_from_redis() {
        let valkey = parse_info("# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n");
        assert_eq!(
            ServerIdentity::from_info(&valkey),
            ServerIdentity {
                name: "valkey".into(),
                version: "9.1.2".into()
            }
        );
        let redis = parse_info("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n");
        let identity = ServerIdentity::from_info(&redis);
        assert!(!identity.is_valkey());
        assert_eq!(identity.version, "7.0.15");
    }

    #[test]
    fn glob_characters_in_a_prefix_are_escaped() {
        assert_eq!(escape_glob("test:*[x]"), "test:\\*\\[x\\]");
    }
}
