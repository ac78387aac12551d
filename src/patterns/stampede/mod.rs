//! Cache stampede protection: what happens when many requests miss the same
//! key at once, and three ways to keep that from becoming many identical
//! database queries.
//!
//! - **none**: plain cache-aside; every request that misses runs the query.
//! - **single flight**: one load per key per process; the others in the same
//!   process await its result ([`SingleFlight`]).
//! - **lock**: one load per key per fleet: `SET lock token NX PX ttl`; the
//!   winner loads, fills the cache and releases the lock only if it still holds
//!   it (`DELIFEQ`, or a Lua compare-and-delete on servers without it); the
//!   others poll the cache with backoff and jitter for a bounded time, then fall
//!   back to the database themselves ([`ValkeyLocks`]).
//! - **XFetch**: probabilistic early recomputation for a hot key that is about
//!   to expire ([`recompute_early`]); it does nothing for a key that is already cold.
//!
//! Every database query goes through [`CountedLoader`], which counts it exactly.
//! A request's latency runs from its start until it has its rows: cache
//! lookups, waiting, the query and filling the cache. Nothing here prints.
//!
//! Shared here: the protections, a request's path and its counts, the
//! counted loader and [`StampedeCache`], which runs a request in any mode;
//! `single_flight.rs`, `lock.rs` and `xfetch.rs` each hold one protection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;

use crate::cache::{CacheError, Valkey};
use crate::db::{Database, DbError, ResultSet, Statement};
use crate::rng::{mix64, SplitMix64};

mod lock;
mod single_flight;
mod xfetch;

pub use lock::{acquire_or_wait, LockSettings, LockWait, ValkeyLocks};
pub use single_flight::SingleFlight;
pub use xfetch::{recompute_early, XFetchEntry};

use single_flight::Flight;
use xfetch::xfetch_text;

/// How a request protects the database from its neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    None,
    SingleFlight,
    Lock,
    Xfetch,
}

impl Protection {
    /// The name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Protection::None => "none",
            Protection::SingleFlight => "single-flight",
            Protection::Lock => "lock",
            Protection::Xfetch => "xfetch",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Protection::None => "none",
            Protection::SingleFlight => "single flight",
            Protection::Lock => "Valkey lock",
            Protection::Xfetch => "XFetch",
        }
    }
}

/// Why a lock-mode request queried the database without holding the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// It waited as long as it may and the cache was still empty.
    WaitExpired,
    /// Valkey did not answer, so no lock could be taken.
    LockUnavailable,
}

/// How one request got its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// From Valkey, without waiting for anyone.
    Hit,
    /// This request ran the query (and filled the cache when it could).
    Loaded,
    /// It waited for another request's load and got that result.
    Waited,
    /// It queried the database itself because the protection could not help.
    FellBack(Fallback),
    /// XFetch: the entry was still valid, but this request refreshed it early.
    RefreshedEarly,
}

/// One request's result.
#[derive(Debug, Clone)]
pub struct Served {
    pub path: Path,
    /// From the request's start until it had its rows.
    pub latency: Duration,
    pub rows: Arc<ResultSet>,
    /// Valkey could not be used for at least one step of this request.
    pub cache_unavailable: bool,
    /// Lock mode: the lock had expired (or was taken over) before it was released.
    pub lock_lost: bool,
    /// Lock mode: how many times this request looked at the cache while waiting.
    pub polls: u32,
    /// Lock mode: this request waited, then got the lock and still found the
    /// cache empty: the holder before it stopped without filling it (it died,
    /// failed, or its lock expired first), so this request loads once more.
    pub lock_takeover: bool,
}

/// What the requests of a run did, added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PathCounts {
    pub hits: u64,
    pub loaded: u64,
    pub waited: u64,
    pub fell_back_wait_expired: u64,
    pub fell_back_lock_unavailable: u64,
    pub refreshed_early: u64,
    /// Requests that could not use Valkey for at least one step.
    pub cache_unavailable: u64,
    pub locks_lost: u64,
    /// Cache lookups made while waiting for a lock holder.
    pub polls: u64,
    /// Loads by a waiter that took the lock over from a holder that stopped
    /// without filling the cache: what a dead holder costs.
    #[serde(default)]
    pub lock_takeovers: u64,
}

impl PathCounts {
    pub fn add(&mut self, served: &Served) {
        match served.path {
            Path::Hit => self.hits += 1,
            Path::Loaded => self.loaded += 1,
            Path::Waited => self.waited += 1,
            Path::FellBack(Fallback::WaitExpired) => self.fell_back_wait_expired += 1,
            Path::FellBack(Fallback::LockUnavailable) => self.fell_back_lock_unavailable += 1,
            Path::RefreshedEarly => self.refreshed_early += 1,
        }
        self.cache_unavailable += u64::from(served.cache_unavailable);
        self.locks_lost += u64::from(served.lock_lost);
        self.polls += u64::from(served.polls);
        self.lock_takeovers += u64::from(served.lock_takeover);
    }

    pub fn merge(&mut self, other: &PathCounts) {
        self.hits += other.hits;
        self.loaded += other.loaded;
        self.waited += other.waited;
        self.fell_back_wait_expired += other.fell_back_wait_expired;
        self.fell_back_lock_unavailable += other.fell_back_lock_unavailable;
        self.refreshed_early += other.refreshed_early;
        self.cache_unavailable += other.cache_unavailable;
        self.locks_lost += other.locks_lost;
        self.polls += other.polls;
        self.lock_takeovers += other.lock_takeovers;
    }

    pub fn fell_back(&self) -> u64 {
        self.fell_back_wait_expired + self.fell_back_lock_unavailable
    }

    pub fn requests(&self) -> u64 {
        self.hits + self.loaded + self.waited + self.fell_back() + self.refreshed_early
    }
}

/// The one way to the database: every query is counted as it starts.
///
/// At most `connections` queries run at once; the others queue here, as they
/// would for an application server's pool. (Queueing in the pool itself would
/// end in its acquire timeout, which is the connect timeout, under a stampede.)
#[derive(Clone)]
pub struct CountedLoader {
    db: Database,
    statement: Statement,
    queries: Arc<AtomicU64>,
    running: Arc<Semaphore>,
}

impl CountedLoader {
    pub fn new(db: Database, statement: Statement, connections: usize) -> Self {
        CountedLoader {
            db,
            statement,
            queries: Arc::new(AtomicU64::new(0)),
            running: Arc::new(Semaphore::new(connections.max(1))),
        }
    }

    /// Runs the query (after queueing for a connection); returns the rows and
    /// how long the query itself took.
    pub async fn load(&self) -> Result<(ResultSet, Duration), DbError> {
        // The semaphore is never closed, so acquiring cannot fail.
        let _turn = self.running.acquire().await.ok();
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.db.fetch_timed(&self.statement).await
    }

    /// Queries run since the last call (and resets the count).
    pub fn take_queries(&self) -> u64 {
        self.queries.swap(0, Ordering::SeqCst)
    }
}

/// The keys one stampede run uses.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StampedeKeys {
    /// The cached rows (plain cache-aside format).
    pub value: String,
    /// The lock that guards loading `value`.
    pub lock: String,
    /// The rows with XFetch's compute time and expiry.
    pub xfetch: String,
}

/// Wall-clock time in Unix milliseconds.
pub fn unix_millis() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// A random number in (0, 1] from 53 random bits.
pub fn uniform(rng: &mut SplitMix64) -> f64 {
    ((rng.next_u64() >> 11) + 1) as f64 / (1_u64 << 53) as f64
}

/// A generator for one request: different in every request and process.
pub fn request_rng(request: u64) -> SplitMix64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    SplitMix64::new(mix64(u64::from(std::process::id()) ^ mix64(request) ^ nanos))
}

/// What one cache lookup found.
pub enum Lookup<T> {
    Hit(T),
    Miss,
    /// Valkey did not answer.
    Failed,
}

/// One key's cache, its lock and its loader: the requests of every mode.
#[derive(Clone)]
pub struct StampedeCache {
    pub loader: CountedLoader,
    /// `None` when Valkey could not be reached.
    pub valkey: Option<Valkey>,
    /// `None` when Valkey could not be reached.
    pub locks: Option<ValkeyLocks>,
    pub keys: StampedeKeys,
    /// Time-to-live of the cached rows (`--ttl` ± `--ttl-jitter`, drawn per write).
    pub ttl: crate::cache::TtlPolicy,
    pub lock: LockSettings,
    pub xfetch_beta: f64,
    flights: Arc<SingleFlight<Flight>>,
}

impl StampedeCache {
    pub fn new(
        loader: CountedLoader,
        valkey: Option<Valkey>,
        locks: Option<ValkeyLocks>,
        keys: StampedeKeys,
        ttl: crate::cache::TtlPolicy,
        lock: LockSettings,
        xfetch_beta: f64,
    ) -> Self {
        StampedeCache {
            loader,
            valkey,
            locks,
            keys,
            ttl,
            lock,
            xfetch_beta,
            flights: Arc::new(SingleFlight::default()),
        }
    }

    /// One request for the key. `request` numbers it (for the lock token and
    /// the random numbers). Only a database failure is an error: when Valkey
    /// fails, the request goes on to the database and says so.
    pub async fn request(&self, protection: Protection, request: u64) -> Result<Served, DbError> {
        let started = Instant::now();
        let mut served = match protection {
            Protection::None => self.unprotected().await?,
            Protection::SingleFlight => self.single_flight().await?,
            Protection::Lock => self.locked(request, started).await?,
            Protection::Xfetch => self.xfetch(request).await?,
        };
        served.latency = started.elapsed();
        Ok(served)
    }

    /// Deletes the cached rows, the XFetch entry and the lock: a cold key.
    pub async fn make_cold(&self) -> Result<(), CacheError> {
        let Some(valkey) = &self.valkey else {
            return Ok(());
        };
        for key in [&self.keys.value, &self.keys.xfetch, &self.keys.lock] {
            valkey.delete(key).await?;
        }
        Ok(())
    }

    /// Loads the rows (counted like any query) and stores them so they expire
    /// after `expire_after` (whole seconds, at least one): in the plain format
    /// for `Protection::None`, as an XFetch entry for `Protection::Xfetch`.
    /// Returns how long the query took.
    pub async fn prefill(&self, protection: Protection, expire_after: Duration) -> Result<Duration, PrefillError> {
        let valkey = self.valkey.as_ref().ok_or(PrefillError::NoCache)?;
        let (rows, delta) = self.loader.load().await?;
        let expire_after = Duration::from_secs(expire_after.as_secs_f64().ceil().max(1.0) as u64);
        let (key, text) = match protection {
            Protection::Xfetch => (&self.keys.xfetch, xfetch_text(rows, delta, expire_after)),
            _ => (&self.keys.value, plain_text(&rows)),
        };
        valkey.set_with_ttl(key, &text, expire_after).await?;
        Ok(delta)
    }

    async fn unprotected(&self) -> Result<Served, DbError> {
        let mut unavailable = self.valkey.is_none();
        if let Some(valkey) = &self.valkey {
            match self.lookup(valkey).await {
                Lookup::Hit(rows) => return Ok(served(Path::Hit, rows)),
                Lookup::Miss => {}
                Lookup::Failed => unavailable = true,
            }
        }
        let rows = Arc::new(self.loader.load().await?.0);
        if let (Some(valkey), false) = (&self.valkey, unavailable) {
            unavailable = !self.store(valkey, &rows).await;
        }
        Ok(Served {
            cache_unavailable: unavailable,
            ..served(Path::Loaded, rows)
        })
    }

    /// GET and decode; an entry that does not decode counts as a miss.
    async fn lookup(&self, valkey: &Valkey) -> Lookup<Arc<ResultSet>> {
        match valkey.get(&self.keys.value).await {
            Ok(Some(text)) => match serde_json::from_str::<ResultSet>(&text) {
                Ok(rows) => Lookup::Hit(Arc::new(rows)),
                Err(_) => Lookup::Miss,
            },
            Ok(None) => Lookup::Miss,
            Err(_) => Lookup::Failed,
        }
    }

    /// Fills the cache; false when Valkey did not take it.
    async fn store(&self, valkey: &Valkey, rows: &ResultSet) -> bool {
        valkey
            .set_with_ttl(&self.keys.value, &plain_text(rows), self.ttl.pick())
            .await
            .is_ok()
    }
}

/// Why the key could not be pre-filled for the expiry scenario.
#[derive(Debug, thiserror::Error)]
pub enum PrefillError {
    #[error("Valkey is not connected")]
    NoCache,
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

fn served(path: Path, rows: Arc<ResultSet>) -> Served {
    Served {
        path,
        latency: Duration::ZERO,
        rows,
        cache_unavailable: false,
        lock_lost: false,
        polls: 0,
        lock_takeover: false,
    }
}

fn plain_text(rows: &ResultSet) -> String {
    // Our own ResultSet holds only JSON values: serialising it cannot fail.
    serde_json::to_string(rows).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_numbers_stay_in_the_half_open_unit_interval() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..10_000 {
            let u = uniform(&mut rng);
            assert!(u > 0.0 && u <= 1.0, "{u}");
        }
    }

    #[test]
    fn counts_add_up_every_path() {
        let rows = Arc::new(ResultSet {
            columns: vec![],
            rows: vec![],
        });
        let mut counts = PathCounts::default();
        for path in [
            Path::Hit,
            Path::Loaded,
            Path::Waited,
            Path::FellBack(Fallback::WaitExpired),
            Path::FellBack(Fallback::LockUnavailable),
            Path::RefreshedEarly,
        ] {
            counts.add(&Served {
                polls: 2,
                ..served(path, Arc::clone(&rows))
            });
        }
        assert_eq!(counts.requests(), 6);
        assert_eq!(counts.fell_back(), 2);
        assert_eq!(counts.polls, 12);
        let mut twice = counts;
        twice.merge(&counts);
        assert_eq!(twice.requests(), 12);
    }
}
