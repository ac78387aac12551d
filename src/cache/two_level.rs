//! A two-level cache: L1 in this process (moka: size-bounded, with a TTL),
//! L2 in Valkey (JSON under the workshop prefix), then the database.
//!
//! Read path: L1 → L2 → database. An L2 hit fills L1; a database read fills
//! both. If Valkey stops answering, reads go on from L1 and the database and
//! the counters show it; no read fails because the cache did.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Valkey;
use crate::patterns::stampede::SingleFlight;

/// The layer that served a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    L1,
    L2,
    Database,
}

impl Layer {
    pub fn label(self) -> &'static str {
        match self {
            Layer::L1 => "L1 (in-process)",
            Layer::L2 => "L2 (Valkey)",
            Layer::Database => "database",
        }
    }
}

/// What each layer did, counted as it happens (shared by every task).
#[derive(Debug, Default)]
pub struct LayerCounters {
    pub l1_hits: AtomicU64,
    pub l1_misses: AtomicU64,
    pub l2_hits: AtomicU64,
    pub l2_misses: AtomicU64,
    /// Valkey did not answer (the read went on to the database).
    pub l2_errors: AtomicU64,
    pub database_loads: AtomicU64,
    /// Keys dropped from L1 because another process said they changed.
    pub invalidations_received: AtomicU64,
    /// Times L1 was emptied because invalidation messages may have been missed.
    pub l1_clears: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    pub l1_hits: u64,
    pub l1_misses: u64,
    pub l2_hits: u64,
    pub l2_misses: u64,
    pub l2_errors: u64,
    pub database_loads: u64,
    pub invalidations_received: u64,
    pub l1_clears: u64,
}

impl LayerCounters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CounterSnapshot {
            l1_hits: read(&self.l1_hits),
            l1_misses: read(&self.l1_misses),
            l2_hits: read(&self.l2_hits),
            l2_misses: read(&self.l2_misses),
            l2_errors: read(&self.l2_errors),
            database_loads: read(&self.database_loads),
            invalidations_received: read(&self.invalidations_received),
            l1_clears: read(&self.l1_clears),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One read through the layers.
#[derive(Debug, Clone)]
pub struct Served<V> {
    /// `None`: the database has no such row (that answer is cached too).
    pub value: Arc<Option<V>>,
    pub layer: Layer,
    /// The whole read as the caller waits for it, lookups and fills included.
    pub latency: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct TwoLevelSettings {
    /// `false` skips L1 (`--no-l1`): every read starts at Valkey.
    pub use_l1: bool,
    pub l1_capacity: u64,
    pub l1_ttl: Duration,
    /// `--ttl` ± `--ttl-jitter`, drawn per Valkey write.
    pub l2_ttl: crate::cache::TtlPolicy,
}

/// How a value goes into L2.
#[derive(Debug, Clone, Copy)]
enum Fill {
    /// `SET … PX`: the caller holds the newest value (write-through, warming).
    Overwrite,
    /// `SET … NX PX`: after a database load, never over an entry someone
    /// else wrote meanwhile (it may be newer than what the load read).
    IfAbsent,
}

/// A value found below L1, and the layer it came from (what a flight shares).
type Found<V> = (Arc<Option<V>>, Layer);

/// L1 → L2 → database for values of type `V`. Cheap to clone; clones share
/// the same L1 and counters.
#[derive(Clone)]
pub struct TwoLevelCache<V: Clone + Send + Sync + 'static> {
    l1: Option<Cache<String, Arc<Option<V>>>>,
    l2: Option<Valkey>,
    l2_ttl: crate::cache::TtlPolicy,
    counters: Arc<LayerCounters>,
    /// With [`TwoLevelCache::with_single_flight`]: concurrent misses of one key
    /// share one L2 lookup and one load (serve's cold-key stampede).
    flights: Option<Arc<SingleFlight<Found<V>>>>,
}

impl<V> TwoLevelCache<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// `l2` is `None` when Valkey could not be reached at start.
    pub fn new(settings: TwoLevelSettings, l2: Option<Valkey>) -> Self {
        let l1 = settings.use_l1.then(|| {
            Cache::builder()
                .max_capacity(settings.l1_capacity)
                .time_to_live(settings.l1_ttl)
                .build()
        });
        TwoLevelCache {
            l1,
            l2,
            l2_ttl: settings.l2_ttl,
            counters: Arc::new(LayerCounters::default()),
            flights: None,
        }
    }

    /// Concurrent L1 misses of one key join one flight: one L2 lookup, at most
    /// one load, and the L2 fill happens inside the flight, so a request that
    /// arrives just after it landed finds L2 filled instead of loading again.
    pub fn with_single_flight(mut self) -> Self {
        self.flights = Some(Arc::new(SingleFlight::default()));
        self
    }

    pub fn counters(&self) -> &Arc<LayerCounters> {
        &self.counters
    }

    pub fn l2(&self) -> Option<&Valkey> {
        self.l2.as_ref()
    }

    /// Entries in L1 now (moka counts lazily; pending work is run first).
    pub async fn l1_entries(&self) -> u64 {
        match &self.l1 {
            Some(l1) => {
                l1.run_pending_tasks().await;
                l1.entry_count()
            }
            None => 0,
        }
    }

    /// Bytes L1 holds, estimated as each entry's key plus its JSON encoding
    /// (what the same entry takes in Valkey), not moka's bookkeeping. It walks
    /// every entry: for a scrape or a dashboard tick, not for a request.
    pub async fn l1_bytes(&self) -> u64 {
        let Some(l1) = &self.l1 else {
            return 0;
        };
        l1.run_pending_tasks().await;
        l1.iter()
            .map(|(key, value)| {
                let json = serde_json::to_vec(value.as_ref()).map_or(0, |v| v.len());
                (key.len() + json) as u64
            })
            .sum()
    }

    /// Reads `key` through the layers; `load` runs only when neither cache has it.
    pub async fn get<F, Fut, E>(&self, key: &str, load: F) -> Result<Served<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let started = Instant::now();
        if let Some(value) = self.l1_hit(key).await {
            return Ok(Served {
                value,
                layer: Layer::L1,
                latency: started.elapsed(),
            });
        }
        self.get_after_l1_miss(key, load, started).await
    }

    /// The L1 half of [`TwoLevelCache::get`]: the value when L1 has `key`
    /// (counted as an L1 hit); `None`, and nothing counted, when it does not.
    /// A caller with something to check between the layers (`serve`'s negative
    /// cache) goes on with [`TwoLevelCache::get_after_l1_miss`].
    pub async fn l1_hit(&self, key: &str) -> Option<Arc<Option<V>>> {
        let value = self.l1.as_ref()?.get(key).await?;
        bump(&self.counters.l1_hits);
        Some(value)
    }

    /// The rest of [`TwoLevelCache::get`] after [`TwoLevelCache::l1_hit`]
    /// found nothing: counts the L1 miss, then L2, then `load`. `started`:
    /// when the read began, for [`Served::latency`].
    pub async fn get_after_l1_miss<F, Fut, E>(&self, key: &str, load: F, started: Instant) -> Result<Served<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        if self.l1.is_some() {
            bump(&self.counters.l1_misses);
        }
        let (value, layer) = match &self.flights {
            Some(flights) => flights.run(key, || self.below_l1(key, load)).await?.0,
            None => self.below_l1(key, load).await?,
        };
        Ok(Served {
            value,
            layer,
            latency: started.elapsed(),
        })
    }

    /// L2, then the database; fills L1 (and L2 after a load) before it returns.
    async fn below_l1<F, Fut, E>(&self, key: &str, load: F) -> Result<Found<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let mut l2_answered = false;
        if let Some(l2) = &self.l2 {
            match l2.get_bytes(key).await {
                Ok(Some(bytes)) => {
                    if let Ok(decoded) = serde_json::from_slice::<Option<V>>(&bytes) {
                        let value = Arc::new(decoded);
                        self.fill_l1(key, &value).await;
                        bump(&self.counters.l2_hits);
                        return Ok((value, Layer::L2));
                    }
                    // An entry that no longer decodes is a miss; it is dropped so
                    // the fill below (NX) can replace it.
                    bump(&self.counters.l2_misses);
                    l2_answered = l2.delete_if_equals(key, &bytes).await.is_ok();
                }
                Ok(None) => {
                    bump(&self.counters.l2_misses);
                    l2_answered = true;
                }
                Err(_) => bump(&self.counters.l2_errors),
            }
        }

        let value = Arc::new(load().await?);
        bump(&self.counters.database_loads);
        if l2_answered {
            // NX: a `put` (a writer's new row) that landed in L2 while this load
            // ran must win over the row this load read, which may be older.
            self.fill_l2(key, &value, Fill::IfAbsent).await;
        }
        self.fill_l1(key, &value).await;
        Ok((value, Layer::Database))
    }

    /// Puts a value in both layers (write-through, cache warming).
    pub async fn put(&self, key: &str, value: Option<V>) {
        let value = Arc::new(value);
        self.fill_l2(key, &value, Fill::Overwrite).await;
        self.fill_l1(key, &value).await;
    }

    /// Drops a key from this process's L1 only (on an invalidation message).
    pub async fn forget_local(&self, key: &str) {
        if let Some(l1) = &self.l1 {
            l1.invalidate(key).await;
        }
    }

    /// Empties this process's L1 (after messages may have been missed).
    pub fn forget_all_local(&self) {
        if let Some(l1) = &self.l1 {
            l1.invalidate_all();
        }
    }

    /// Drops a key from L1 and L2. Other processes learn of it through
    /// [`super::invalidation`]; this does not publish.
    pub async fn remove(&self, key: &str) -> Result<(), super::CacheError> {
        self.forget_local(key).await;
        match &self.l2 {
            Some(l2) => l2.delete(key).await.map(drop),
            None => Ok(()),
        }
    }

    async fn fill_l1(&self, key: &str, value: &Arc<Option<V>>) {
        if let Some(l1) = &self.l1 {
            l1.insert(key.to_string(), Arc::clone(value)).await;
        }
    }

    async fn fill_l2(&self, key: &str, value: &Arc<Option<V>>, fill: Fill) {
        if let Some(l2) = &self.l2 {
            let text = serde_json::to_string(value.as_ref()).unwrap_or_else(|_| "null".into());
            let written = match fill {
                Fill::Overwrite => l2.set_with_ttl(key, &text, self.l2_ttl.pick()).await,
                Fill::IfAbsent => l2.set_if_absent(key, &text, self.l2_ttl.pick()).await.map(drop),
            };
            if written.is_err() {
                bump(&self.counters.l2_errors);
            }
        }
    }
}
