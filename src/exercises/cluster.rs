//! Exercise 14, `cluster`: how the workshop's keys spread over a Valkey
//! Cluster's primaries, what a hash tag pins, what a cross-slot command
//! answers, and a failover under load with no failed reads.
//!
//! The failover freezes one primary with `DEBUG SLEEP`: the node stays the
//! same process and comes back on its own as a replica of its promoted
//! replica, so nothing has to be restarted. Valkey refuses DEBUG unless the
//! server was started with `enable-debug-command` (the set-up's cluster is),
//! so the exercise can stop only a node the set-up started; at the end the
//! node is given its primary role back (`CLUSTER FAILOVER`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::cluster::{key_slot, ClusterNode, NodeRole};
use crate::cache::{CacheError, KeyScheme, Valkey};
use crate::config::Config;
use crate::db::Database;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::queries::BuiltinQuery;
use crate::exercises::services::{self, Needs, ValkeyNeed};
use crate::patterns::cache_aside::{CacheAside, CacheLink, ReadSource};

pub const MAX_KEYS: u64 = 10_000;
pub const MAX_CONCURRENCY: u64 = 200;

/// Exercise 14's options, validated by [`measure`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Airport ids 1..=keys are read and cached.
    pub keys: u64,
    pub concurrency: u64,
    /// Seconds of reads under load, the failover inside them.
    pub duration: u64,
    /// How long the primary is frozen (DEBUG SLEEP), in seconds.
    pub freeze: u64,
    /// Only the layout, no failover.
    pub no_failover: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterOutcome {
    pub target: String,
    pub database: String,
    pub keys: u64,
    pub source_prefix: String,
    /// The workshop's keys per primary, before the failover.
    pub layout: Vec<NodeShare>,
    pub hash_tag: HashTagDemo,
    pub failover: Option<FailoverRun>,
}

/// One primary's share of the keys.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeShare {
    pub node: String,
    pub slot_ranges: String,
    pub slots: u32,
    pub replicas: Vec<String>,
    /// This data source's keys on the node (SCAN on that node).
    pub keys: u64,
    /// MEMORY USAGE summed over those keys.
    pub memory_bytes: u64,
    /// INFO memory's used_memory of the node (everything on it).
    pub used_memory_bytes: u64,
}

/// Two keys without a hash tag, the same two with one, and what a
/// multi-key command across slots answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HashTagDemo {
    pub plain: Vec<KeySlot>,
    pub tagged: Vec<KeySlot>,
    /// The server's reply to MSET of the plain keys (a CROSSSLOT error).
    pub cross_slot_reply: String,
    /// The reply to MSET of the tagged keys (OK).
    pub tagged_reply: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct KeySlot {
    pub key: String,
    pub slot: u16,
    pub node: String,
}

/// Reads per second through a failover.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailoverRun {
    /// The primary frozen with DEBUG SLEEP.
    pub stopped_node: String,
    pub stopped_at_ms: u64,
    pub freeze_ms: u64,
    /// When another node first served the stopped primary's slots.
    pub promoted_at_ms: Option<u64>,
    pub promoted_node: Option<String>,
    /// The first second after the promotion with the hit rate of before.
    pub hit_rate_back_at_second: Option<u64>,
    pub seconds: Vec<FailoverSecond>,
    pub totals: FailoverSecond,
    /// The stopped node answers again, as a primary (or why not).
    pub node_restored: bool,
    pub restore_note: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FailoverSecond {
    pub second: u64,
    /// Served from Valkey.
    pub cache: u64,
    /// Not in Valkey (a miss): read from the database and stored.
    pub miss: u64,
    /// Valkey did not answer (timeout, breaker, moved slot): read from the database.
    pub database_fallback: u64,
    /// Neither answered: the read failed.
    pub failed: u64,
}

impl FailoverSecond {
    pub fn reads(&self) -> u64 {
        self.cache + self.miss + self.database_fallback + self.failed
    }

    pub fn hit_rate(&self) -> Option<f64> {
        let reads = self.reads();
        (reads > 0).then(|| self.cache as f64 / reads as f64)
    }
}

const NOT_A_CLUSTER: &str = "exercise 14 needs a Valkey Cluster, and VALKEY_URL points at a single node; start one with `just up-cluster` and set VALKEY_URL=redis://127.0.0.1:7001";

impl super::Outcome for ClusterOutcome {
    fn verdict(&mut self) -> super::Verdict {
        match verdict(self) {
            Ok(()) => super::Verdict::Complete,
            Err(error) => super::Verdict::failed(error),
        }
    }
}

/// Exit 8 when a read failed or the frozen node did not come back as primary.
pub fn verdict(outcome: &ClusterOutcome) -> Result<()> {
    let Some(run) = &outcome.failover else { return Ok(()) };
    if run.totals.failed > 0 {
        return Err(WorkshopError::incomplete(format!(
            "{} read(s) failed during the failover (neither Valkey nor the database answered); check the database",
            run.totals.failed
        )));
    }
    if !run.node_restored {
        return Err(WorkshopError::incomplete(
            run.restore_note
                .clone()
                .unwrap_or_else(|| "the frozen node did not come back".into()),
        ));
    }
    Ok(())
}

pub fn validate(options: &ClusterOptions) -> Result<()> {
    if options.keys == 0 || options.keys > MAX_KEYS {
        return Err(WorkshopError::invalid(format!(
            "--keys must be from 1 to {MAX_KEYS} (got {})",
            options.keys
        )));
    }
    if options.concurrency == 0 || options.concurrency > MAX_CONCURRENCY {
        return Err(WorkshopError::invalid(format!(
            "--concurrency must be from 1 to {MAX_CONCURRENCY} (got {})",
            options.concurrency
        )));
    }
    if !(1..=60).contains(&options.freeze) {
        return Err(WorkshopError::invalid(format!(
            "--freeze must be from 1 to 60 seconds (got {})",
            options.freeze
        )));
    }
    if options.duration < options.freeze + 4 || options.duration > 600 {
        return Err(WorkshopError::invalid(format!(
            "--duration must be from --freeze + 4 ({}) to 600 seconds (got {}): the run needs time before and after the failover",
            options.freeze + 4,
            options.duration
        )));
    }
    Ok(())
}

pub async fn measure(config: &Config, options: ClusterOptions, progress: &dyn RunProgress) -> Result<ClusterOutcome> {
    validate(&options)?;
    // Valkey first: without a cluster there is nothing to show.
    let valkey = services::valkey(config).await?;
    if !valkey.is_cluster() {
        return Err(WorkshopError::invalid(NOT_A_CLUSTER));
    }
    let (db, _) = services::connect_database(
        config,
        Needs {
            pool_connections: options.concurrency + 1,
            valkey: ValkeyNeed::Required,
            recording_as: None,
        },
    )
    .await?;
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    let reads = ReadSet::new(&db, &keys, options.keys)?;
    let pattern = CacheAside {
        cache: CacheLink::Connected(valkey.clone()),
        ttl: config.ttl_policy(),
    };

    progress.phase("caching the keys", Some(options.keys));
    let mut session = db.session().await?;
    for (key, statement) in &reads.entries {
        pattern.read(&mut session, key, statement).await?;
        progress.advance(1);
    }
    drop(session);
    progress.finish_phase();

    let nodes = valkey.cluster_nodes().await?;
    let layout = layout(&valkey, &nodes, keys.source_prefix()).await?;
    let hash_tag = hash_tag_demo(&valkey, &nodes, &keys).await?;

    let failover = if options.no_failover {
        None
    } else {
        db.warm_up(u32::try_from(options.concurrency).unwrap_or(u32::MAX))
            .await?;
        db.warm_up_sessions(u32::try_from(options.concurrency).unwrap_or(u32::MAX))
            .await;
        Some(failover(config, &valkey, &db, &pattern, &reads, &nodes, &options, progress).await?)
    };
    Ok(ClusterOutcome {
        target: valkey.target().to_string(),
        database: config.database.masked(),
        keys: options.keys,
        source_prefix: keys.source_prefix().to_string(),
        layout,
        hash_tag,
        failover,
    })
}

/// The keys read: airport ids 1..=n, each its own cache-aside key.
struct ReadSet {
    entries: Vec<(String, crate::db::Statement)>,
}

impl ReadSet {
    fn new(db: &Database, keys: &KeyScheme, n: u64) -> Result<ReadSet> {
        let mut entries = Vec::new();
        for id in 1..=i64::try_from(n).unwrap_or(i64::MAX) {
            let query = BuiltinQuery::Airport.named_query(db.kind(), id);
            let statement = query.to_statement(db.kind())?;
            entries.push((keys.query(&query), statement));
        }
        Ok(ReadSet { entries })
    }
}

fn primaries(nodes: &[ClusterNode]) -> Vec<&ClusterNode> {
    nodes
        .iter()
        .filter(|n| n.role == NodeRole::Primary && !n.slots.is_empty())
        .collect()
}

fn owner_of(nodes: &[ClusterNode], slot: u16) -> String {
    primaries(nodes)
        .into_iter()
        .find(|n| n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
        .map(ClusterNode::address)
        .unwrap_or_default()
}

async fn layout(valkey: &Valkey, nodes: &[ClusterNode], prefix: &str) -> Result<Vec<NodeShare>> {
    let mut shares = Vec::new();
    for primary in primaries(nodes) {
        let address = (primary.host.clone(), primary.port);
        let keys = valkey.scan_on(&address, prefix).await?;
        let memory_bytes = valkey.memory_usage(&keys).await?.into_iter().flatten().sum();
        let info: String = valkey
            .query_node(&address, "INFO", redis::cmd("INFO").arg("memory"))
            .await?;
        let used_memory_bytes = crate::cache::parse_info(&info)
            .get("used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        shares.push(NodeShare {
            node: primary.address(),
            slot_ranges: primary.slot_ranges(),
            slots: primary.slot_count(),
            replicas: nodes
                .iter()
                .filter(|n| n.replica_of.as_deref() == Some(primary.id.as_str()))
                .map(ClusterNode::address)
                .collect(),
            keys: keys.len() as u64,
            memory_bytes,
            used_memory_bytes,
        });
    }
    Ok(shares)
}

async fn hash_tag_demo(valkey: &Valkey, nodes: &[ClusterNode], keys: &KeyScheme) -> Result<HashTagDemo> {
    let root = keys.source_prefix();
    let plain = [format!("{root}demo:cart:42"), format!("{root}demo:wishlist:42")];
    let tagged = [
        format!("{root}demo:{{user:42}}:cart"),
        format!("{root}demo:{{user:42}}:wishlist"),
    ];
    let describe = |key: &String| KeySlot {
        key: key.clone(),
        slot: key_slot(key),
        node: owner_of(nodes, key_slot(key)),
    };
    let plain_slots: Vec<KeySlot> = plain.iter().map(describe).collect();
    let tagged_slots: Vec<KeySlot> = tagged.iter().map(describe).collect();
    // Sent to the node of the first key itself: the cluster client would
    // split the command by slot, the server answers what a plain client gets.
    let mset = |pair: &[String; 2]| redis::cmd("MSET").arg(&pair[0]).arg("1").arg(&pair[1]).arg("1").clone();
    let node_of = |key: &KeySlot| -> (String, u16) {
        let (host, port) = key.node.rsplit_once(':').unwrap_or(("127.0.0.1", "0"));
        (host.to_string(), port.parse().unwrap_or(0))
    };
    let reply = |result: std::result::Result<String, CacheError>| match result {
        Ok(text) => text,
        // The client names the error kind its own way ("CrossSlot:"); shown as the server sends it.
        Err(CacheError::Command { reason, .. }) => match reason.strip_prefix("CrossSlot:") {
            Some(rest) => format!("CROSSSLOT{rest}"),
            None => reason,
        },
        Err(other) => other.to_string(),
    };
    let cross_slot_reply = reply(
        valkey
            .query_node(&node_of(&plain_slots[0]), "MSET", &mset(&plain))
            .await,
    );
    let tagged_reply = reply(
        valkey
            .query_node(&node_of(&tagged_slots[0]), "MSET", &mset(&tagged))
            .await,
    );
    for key in plain.iter().chain(tagged.iter()) {
        valkey.delete(key).await?;
    }
    Ok(HashTagDemo {
        plain: plain_slots,
        tagged: tagged_slots,
        cross_slot_reply,
        tagged_reply,
    })
}

#[derive(Default)]
struct Counters {
    cache: AtomicU64,
    miss: AtomicU64,
    fallback: AtomicU64,
    failed: AtomicU64,
}

#[allow(clippy::too_many_arguments)]
async fn failover(
    config: &Config,
    valkey: &Valkey,
    db: &Database,
    pattern: &CacheAside,
    reads: &ReadSet,
    nodes: &[ClusterNode],
    options: &ClusterOptions,
    progress: &dyn RunProgress,
) -> Result<FailoverRun> {
    // The primary that holds the first key: its reads are the ones that fail over.
    let victim_address = owner_of(nodes, key_slot(&reads.entries[0].0));
    let victim = primaries(nodes)
        .into_iter()
        .find(|n| n.address() == victim_address)
        .cloned()
        .ok_or_else(|| {
            WorkshopError::invalid(
                "no primary serves the workshop's first key; is the cluster complete (`just up-cluster`)?",
            )
        })?;
    let victim_slot = victim.slots.first().map(|(a, _)| *a).unwrap_or(0);

    let seconds = usize::try_from(options.duration + 1).unwrap_or(usize::MAX);
    let buckets: Arc<Vec<Counters>> = Arc::new((0..seconds).map(|_| Counters::default()).collect());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.duration);
    let entries = Arc::new(reads.entries.clone());
    let mut tasks = Vec::new();
    for task in 0..options.concurrency {
        let buckets = Arc::clone(&buckets);
        let entries = Arc::clone(&entries);
        let pattern = pattern.clone();
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut session = db.session().await.ok();
            let mut next = usize::try_from(task).unwrap_or(0);
            while Instant::now() < deadline {
                let (key, statement) = &entries[next % entries.len()];
                next += 7;
                let outcome = match session.as_mut() {
                    Some(session) => pattern.read(session, key, statement).await.ok().map(|r| r.source),
                    None => None,
                };
                let second = usize::try_from(started.elapsed().as_secs()).unwrap_or(usize::MAX);
                let Some(bucket) = buckets.get(second) else { break };
                let counter = match outcome {
                    Some(ReadSource::Cache) => &bucket.cache,
                    Some(ReadSource::Database) => &bucket.miss,
                    Some(_) => &bucket.fallback,
                    None => &bucket.failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if outcome.is_none() {
                    // A database that failed once gets a new connection.
                    session = db.session().await.ok();
                }
            }
        }));
    }

    progress.phase("reads under load, then a primary frozen", Some(options.duration));
    let steady = Duration::from_secs(2);
    tokio::time::sleep(steady).await;
    progress.advance(2);
    let stopped_at_ms = started.elapsed().as_millis() as u64;
    let freeze = Duration::from_secs(options.freeze);
    let sleeper = freeze_node(config, &victim, freeze).await?;
    progress.note(&format!(
        "froze primary {} for {} s (DEBUG SLEEP)",
        victim.address(),
        options.freeze
    ));

    // Watch for the promotion: another node owning the victim's first slot.
    let promoted: Arc<Mutex<Option<(u64, String)>>> = Arc::default();
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let valkey = valkey.clone();
        let promoted = Arc::clone(&promoted);
        let watching = Arc::clone(&watching);
        let victim = victim.address();
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                if let Ok(nodes) = valkey.cluster_nodes().await {
                    let owner = owner_of(&nodes, victim_slot);
                    if !owner.is_empty() && owner != victim {
                        *promoted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some((started.elapsed().as_millis() as u64, owner));
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut shown = 2;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = started.elapsed().as_secs().min(options.duration);
        if now > shown {
            progress.advance(now - shown);
            shown = now;
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.await;
    let _ = sleeper.await;
    progress.finish_phase();

    let promoted = promoted
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    progress.phase("giving the frozen node its primary role back", None);
    let (node_restored, restore_note) = restore(config, &victim, promoted.is_some()).await;
    progress.finish_phase();

    let seconds: Vec<FailoverSecond> = buckets
        .iter()
        .enumerate()
        .map(|(second, c)| FailoverSecond {
            second: second as u64,
            cache: c.cache.load(Ordering::Relaxed),
            miss: c.miss.load(Ordering::Relaxed),
            database_fallback: c.fallback.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        })
        .filter(|s| s.reads() > 0)
        .collect();
    let totals = seconds.iter().fold(FailoverSecond::default(), |mut t, s| {
        t.cache += s.cache;
        t.miss += s.miss;
        t.database_fallback += s.database_fallback;
        t.failed += s.failed;
        t
    });
    let before = seconds
        .iter()
        .filter(|s| s.second * 1000 + 1000 <= stopped_at_ms)
        .filter_map(FailoverSecond::hit_rate)
        .fold(f64::NAN, f64::max);
    let hit_rate_back_at_second = promoted.as_ref().and_then(|(at, _)| {
        let wanted = if before.is_nan() { 0.9 } else { before * 0.95 };
        seconds
            .iter()
            .filter(|s| s.second * 1000 >= *at)
            .find(|s| s.hit_rate().is_some_and(|rate| rate >= wanted))
            .map(|s| s.second)
    });
    Ok(FailoverRun {
        stopped_node: victim.address(),
        stopped_at_ms,
        freeze_ms: freeze.as_millis() as u64,
        promoted_at_ms: promoted.as_ref().map(|(at, _)| *at),
        promoted_node: promoted.map(|(_, node)| node),
        hit_rate_back_at_second,
        seconds,
        totals,
        node_restored,
        restore_note,
    })
}

/// A plain connection of its own to one node (DEBUG SLEEP blocks it).
async fn node_connection(
    config: &Config,
    node: &ClusterNode,
) -> std::result::Result<redis::aio::MultiplexedConnection, CacheError> {
    let url = config.valkey.node_url(&node.host, node.port);
    let unreachable = |e: redis::RedisError| CacheError::Unreachable {
        target: node.address(),
        reason: e.to_string(),
    };
    let client = redis::Client::open(url).map_err(unreachable)?;
    let connecting = client.get_multiplexed_async_connection();
    tokio::time::timeout(config.connect_timeout, connecting)
        .await
        .map_err(|_| CacheError::Unreachable {
            target: node.address(),
            reason: "no answer".into(),
        })?
        .map_err(unreachable)
}

/// Freezes `node` for `freeze`; the returned task ends when it answers again.
async fn freeze_node(config: &Config, node: &ClusterNode, freeze: Duration) -> Result<tokio::task::JoinHandle<()>> {
    let mut conn = node_connection(config, node).await?;
    // Asked first, so a node that refuses DEBUG says so before anything changes.
    let allowed: redis::RedisResult<redis::Value> = redis::cmd("DEBUG").arg("HELP").query_async(&mut conn).await;
    if let Err(error) = allowed {
        return Err(WorkshopError::invalid(format!(
            "{} refuses DEBUG ({}); exercise 14 freezes only a node the set-up started (`just up-cluster` enables DEBUG on loopback)",
            node.address(),
            error.to_string().lines().next().unwrap_or_default()
        )));
    }
    let seconds = freeze.as_secs_f64();
    Ok(tokio::spawn(async move {
        let _: redis::RedisResult<redis::Value> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(seconds)
            .query_async(&mut conn)
            .await;
    }))
}

/// Waits until the frozen node is back as a replica, then asks it to take
/// over as primary again (`CLUSTER FAILOVER`), so the cluster ends as it began.
async fn restore(config: &Config, node: &ClusterNode, promoted: bool) -> (bool, Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut asked = false;
    while Instant::now() < deadline {
        if let Ok(mut conn) = node_connection(config, node).await {
            let info: redis::RedisResult<String> = redis::cmd("INFO").arg("replication").query_async(&mut conn).await;
            if let Ok(info) = info {
                let fields = crate::cache::parse_info(&info);
                match fields.get("role").map(String::as_str) {
                    // Never replaced, or back after the CLUSTER FAILOVER.
                    Some("master") if !promoted || asked => return (true, None),
                    Some("slave") if fields.get("master_link_status").map(String::as_str) == Some("up") && !asked => {
                        let _: redis::RedisResult<String> =
                            redis::cmd("CLUSTER").arg("FAILOVER").query_async(&mut conn).await;
                        asked = true;
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (
        false,
        Some(format!(
            "{} did not take its primary role back within 30 s; check `scripts/services.sh cluster status`",
            node.address()
        )),
    )
}
