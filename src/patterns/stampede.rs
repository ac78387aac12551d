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

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{OnceCell, Semaphore};

use crate::cache::{CacheError, CompareAndDelete, Valkey};
use crate::db::{Database, DbError, ResultSet, Statement};
use crate::rng::{mix64, SplitMix64};

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

/// In-process single flight: while one caller loads a key, later callers for
/// the same key await that load instead of starting their own.
///
/// A flight is forgotten as soon as it lands, so a later miss starts a new
/// one (whose loader re-checks the cache first).
pub struct SingleFlight<T> {
    flights: Mutex<HashMap<String, Arc<OnceCell<T>>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> SingleFlight<T> {
    /// Joins the flight for `key`, or starts it with `load`. Returns the value
    /// and whether this caller was the one that ran `load`.
    pub async fn run<E, F, Fut>(&self, key: &str, load: F) -> Result<(T, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let cell = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(flights.entry(key.to_string()).or_default())
        };
        let mut led = false;
        let result = cell
            .get_or_try_init(|| {
                led = true;
                load()
            })
            .await
            .cloned();
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(key).is_some_and(|current| Arc::ptr_eq(current, &cell)) {
            flights.remove(key);
        }
        result.map(|value| (value, led))
    }

    /// Flights in the air (0 between bursts).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Lock commands on the shared [`Valkey`]: `SET NX PX`, and a release that
/// deletes the lock only if it still holds our token (a holder whose lock
/// expired must not delete the next holder's lock).
#[derive(Clone)]
pub struct ValkeyLocks {
    valkey: Valkey,
    release: CompareAndDelete,
}

impl ValkeyLocks {
    /// Asks the server which release command it supports.
    pub async fn new(valkey: Valkey) -> ValkeyLocks {
        let release = valkey.compare_and_delete().await;
        ValkeyLocks { valkey, release }
    }

    pub fn release_command(&self) -> CompareAndDelete {
        self.release
    }

    /// `SET key token NX PX ttl`: true when this caller now holds the lock.
    pub async fn try_acquire(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, CacheError> {
        self.valkey.set_if_absent(key, token, ttl).await
    }

    /// Deletes the lock if it still holds `token`; true when it did.
    pub async fn release(&self, key: &str, token: &str) -> Result<bool, CacheError> {
        self.valkey.delete_if_equals(key, token).await
    }
}

/// How long a lock lives and how its waiters wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LockSettings {
    /// The lock expires by itself after this, should its holder die.
    #[serde(serialize_with = "crate::measure::as_millis", rename = "ttl_ms")]
    pub ttl: Duration,
    /// A request waits at most this long before it queries the database itself.
    #[serde(serialize_with = "crate::measure::as_millis", rename = "wait_ms")]
    pub wait: Duration,
    /// The first pause between cache lookups; it doubles up to `max_poll`.
    #[serde(serialize_with = "crate::measure::as_millis", rename = "first_poll_ms")]
    pub first_poll: Duration,
    #[serde(serialize_with = "crate::measure::as_millis", rename = "max_poll_ms")]
    pub max_poll: Duration,
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

/// XFetch's cache entry: the rows, how long computing them took, and when
/// the entry expires (Unix milliseconds, so every process reads the same).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct XFetchEntry {
    pub delta_ms: f64,
    pub expires_at_ms: f64,
    pub rows: ResultSet,
}

/// XFetch (Vattani, Chierichetti and Lowenstein, 2015): recompute before
/// expiry with a probability that rises as expiry nears and with the cost
/// of recomputing. `uniform` is a random number in (0, 1]; its logarithm is
/// at most 0, so the left side looks `delta * beta * -ln(uniform)` ahead.
pub fn recompute_early(now_ms: f64, delta_ms: f64, beta: f64, expires_at_ms: f64, uniform: f64) -> bool {
    now_ms - delta_ms * beta * uniform.ln() >= expires_at_ms
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

/// How a lock-mode request's wait for the lock ended.
pub enum LockWait<T> {
    /// This request holds the lock (with `token`): it loads, then releases.
    Acquired { token: String, polls: u32 },
    /// Another request's load filled the cache while this one waited.
    Filled { value: T, polls: u32 },
    /// It waited as long as it may ([`LockSettings::wait`] from `started`).
    TimedOut { polls: u32 },
    /// Valkey did not answer a lock command or a lookup.
    Unavailable,
}

/// The lock protocol's waiting half, for any cached value: `SET NX PX` the
/// lock; when another request holds it, poll `lookup` with doubling,
/// jittered pauses (0.5x to 1.5x, so waiters do not poll in lockstep) until
/// the value appears, the lock is free to take, or the wait runs out.
/// `request` numbers the request (its token and random numbers). The caller
/// has already looked once and missed.
pub async fn acquire_or_wait<T, F, Fut>(
    locks: &ValkeyLocks,
    lock_key: &str,
    settings: &LockSettings,
    request: u64,
    started: Instant,
    mut lookup: F,
) -> LockWait<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Lookup<T>>,
{
    let token = format!("{}:{request}:{}", std::process::id(), unix_millis());
    let mut rng = request_rng(request);
    let deadline = started + settings.wait;
    let mut pause = settings.first_poll;
    let mut polls = 0;
    loop {
        match locks.try_acquire(lock_key, &token, settings.ttl).await {
            Err(_) => return LockWait::Unavailable,
            Ok(true) => return LockWait::Acquired { token, polls },
            Ok(false) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return LockWait::TimedOut { polls };
        }
        let jittered = pause.mul_f64(0.5 + uniform(&mut rng));
        tokio::time::sleep(jittered.min(deadline - now)).await;
        pause = (pause * 2).min(settings.max_poll);
        polls += 1;
        match lookup().await {
            Lookup::Hit(value) => return LockWait::Filled { value, polls },
            Lookup::Miss => {}
            Lookup::Failed => return LockWait::Unavailable,
        }
    }
}

/// The result of one single flight, shared by everyone who awaited it.
#[derive(Clone)]
struct Flight {
    rows: Arc<ResultSet>,
    /// The flight ran the query (rather than finding the cache filled).
    loaded: bool,
    cache_unavailable: bool,
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

    async fn single_flight(&self) -> Result<Served, DbError> {
        let mut unavailable = self.valkey.is_none();
        if let Some(valkey) = &self.valkey {
            match self.lookup(valkey).await {
                Lookup::Hit(rows) => return Ok(served(Path::Hit, rows)),
                Lookup::Miss => {}
                Lookup::Failed => unavailable = true,
            }
        }
        let (flight, led) = self
            .flights
            .run(&self.keys.value, || async {
                // Re-check: an earlier flight may have filled the cache since our lookup.
                if let Some(valkey) = &self.valkey {
                    if let Lookup::Hit(rows) = self.lookup(valkey).await {
                        return Ok(Flight {
                            rows,
                            loaded: false,
                            cache_unavailable: false,
                        });
                    }
                }
                let rows = Arc::new(self.loader.load().await?.0);
                let stored = match &self.valkey {
                    Some(valkey) => self.store(valkey, &rows).await,
                    None => false,
                };
                Ok::<_, DbError>(Flight {
                    rows,
                    loaded: true,
                    cache_unavailable: !stored,
                })
            })
            .await?;
        let path = match (led, flight.loaded) {
            (true, true) => Path::Loaded,
            (true, false) => Path::Hit,
            (false, _) => Path::Waited,
        };
        Ok(Served {
            cache_unavailable: unavailable || (led && flight.cache_unavailable),
            ..served(path, flight.rows)
        })
    }

    async fn locked(&self, request: u64, started: Instant) -> Result<Served, DbError> {
        let (Some(valkey), Some(locks)) = (&self.valkey, &self.locks) else {
            return self.fall_back(Fallback::LockUnavailable, None).await;
        };
        match self.lookup(valkey).await {
            Lookup::Hit(rows) => return Ok(served(Path::Hit, rows)),
            Lookup::Miss => {}
            Lookup::Failed => return self.fall_back(Fallback::LockUnavailable, None).await,
        }
        match acquire_or_wait(locks, &self.keys.lock, &self.lock, request, started, || {
            self.lookup(valkey)
        })
        .await
        {
            LockWait::Acquired { token, polls } => self.load_holding_lock(valkey, locks, &token, polls).await,
            LockWait::Filled { value, polls } => Ok(Served {
                polls,
                ..served(Path::Waited, value)
            }),
            LockWait::TimedOut { polls } => {
                let mut fell_back = self.fall_back(Fallback::WaitExpired, Some(valkey)).await?;
                fell_back.polls = polls;
                Ok(fell_back)
            }
            LockWait::Unavailable => self.fall_back(Fallback::LockUnavailable, None).await,
        }
    }

    async fn load_holding_lock(
        &self,
        valkey: &Valkey,
        locks: &ValkeyLocks,
        token: &str,
        polls: u32,
    ) -> Result<Served, DbError> {
        // Re-check: the previous holder may have filled the cache and released
        // the lock between our lookup and our SET NX.
        let (path, rows, mut unavailable) = match self.lookup(valkey).await {
            Lookup::Hit(rows) => (if polls > 0 { Path::Waited } else { Path::Hit }, rows, false),
            lookup => {
                let loaded = self.loader.load().await.map(|(rows, _)| Arc::new(rows));
                let rows = match loaded {
                    Ok(rows) => rows,
                    Err(error) => {
                        // Let the waiters try at once rather than after the lock's TTL.
                        let _ = locks.release(&self.keys.lock, token).await;
                        return Err(error);
                    }
                };
                let stored = matches!(lookup, Lookup::Miss) && self.store(valkey, &rows).await;
                (Path::Loaded, rows, !stored)
            }
        };
        let lock_lost = match locks.release(&self.keys.lock, token).await {
            Ok(still_ours) => !still_ours,
            Err(_) => {
                unavailable = true;
                false
            }
        };
        Ok(Served {
            cache_unavailable: unavailable,
            lock_lost,
            polls,
            lock_takeover: path == Path::Loaded && polls > 0,
            ..served(path, rows)
        })
    }

    /// A lock-mode request that queries the database without the lock. After
    /// a wait that ran out it still fills the cache (the holder may be gone).
    async fn fall_back(&self, why: Fallback, fill: Option<&Valkey>) -> Result<Served, DbError> {
        let rows = Arc::new(self.loader.load().await?.0);
        let unavailable = match fill {
            Some(valkey) => !self.store(valkey, &rows).await,
            None => true,
        };
        Ok(Served {
            cache_unavailable: unavailable,
            ..served(Path::FellBack(why), rows)
        })
    }

    async fn xfetch(&self, request: u64) -> Result<Served, DbError> {
        let Some(valkey) = &self.valkey else {
            let rows = Arc::new(self.loader.load().await?.0);
            return Ok(Served {
                cache_unavailable: true,
                ..served(Path::Loaded, rows)
            });
        };
        let entry = match valkey.get(&self.keys.xfetch).await {
            Ok(Some(text)) => serde_json::from_str::<XFetchEntry>(&text).ok(),
            Ok(None) => None,
            Err(_) => {
                let rows = Arc::new(self.loader.load().await?.0);
                return Ok(Served {
                    cache_unavailable: true,
                    ..served(Path::Loaded, rows)
                });
            }
        };
        let path = match entry {
            Some(entry) => {
                let mut rng = request_rng(request);
                let early = recompute_early(
                    unix_millis(),
                    entry.delta_ms,
                    self.xfetch_beta,
                    entry.expires_at_ms,
                    uniform(&mut rng),
                );
                if !early {
                    return Ok(served(Path::Hit, Arc::new(entry.rows)));
                }
                Path::RefreshedEarly
            }
            None => Path::Loaded,
        };
        let (rows, delta) = self.loader.load().await?;
        let ttl = self.ttl.pick();
        let text = xfetch_text(rows.clone(), delta, ttl);
        let stored = valkey.set_with_ttl(&self.keys.xfetch, &text, ttl).await.is_ok();
        Ok(Served {
            cache_unavailable: !stored,
            ..served(path, Arc::new(rows))
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

fn xfetch_text(rows: ResultSet, delta: Duration, ttl: Duration) -> String {
    let entry = XFetchEntry {
        delta_ms: delta.as_secs_f64() * 1000.0,
        expires_at_ms: unix_millis() + ttl.as_secs_f64() * 1000.0,
        rows,
    };
    serde_json::to_string(&entry).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfetch_never_recomputes_far_from_expiry_and_always_at_expiry() {
        // 10 s before expiry with a 10 ms computation: -ln(u) would have to exceed 1000.
        assert!(!recompute_early(0.0, 10.0, 1.0, 10_000.0, 1e-300));
        assert!(!recompute_early(0.0, 10.0, 1.0, 10_000.0, 0.5));
        // At or past expiry every reader recomputes, whatever the draw.
        assert!(recompute_early(10_000.0, 10.0, 1.0, 10_000.0, 1.0));
        assert!(recompute_early(10_001.0, 10.0, 1.0, 10_000.0, 0.99));
    }

    #[test]
    fn xfetch_recomputes_earlier_with_a_larger_beta_or_a_slower_computation() {
        // u = e^-1: the reader looks delta * beta ahead.
        let u = (-1.0_f64).exp();
        assert!(!recompute_early(0.0, 10.0, 1.0, 15.0, u));
        assert!(recompute_early(0.0, 10.0, 2.0, 15.0, u));
        assert!(recompute_early(0.0, 20.0, 1.0, 15.0, u));
    }

    #[test]
    fn xfetch_probability_matches_the_formula() {
        // P(recompute) at gap g before expiry is exp(-g / (delta * beta)).
        let mut rng = SplitMix64::new(7);
        let draws = 200_000;
        let hits = (0..draws)
            .filter(|_| recompute_early(0.0, 10.0, 1.0, 10.0, uniform(&mut rng)))
            .count();
        let expected = (-1.0_f64).exp();
        let observed = hits as f64 / draws as f64;
        assert!((observed - expected).abs() < 0.005, "{observed} vs {expected}");
    }

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

    // Paused time: the 20 ms load takes no wall-clock time, and the callers
    // still overlap because the clock only advances when every task waits.
    #[tokio::test(start_paused = true)]
    async fn a_single_flight_runs_one_load_for_many_callers() {
        let flights = Arc::new(SingleFlight::<u64>::default());
        let loads = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let flights = Arc::clone(&flights);
            let loads = Arc::clone(&loads);
            tasks.spawn(async move {
                flights
                    .run("k", || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(42)
                    })
                    .await
            });
        }
        let mut leaders = 0;
        while let Some(joined) = tasks.join_next().await {
            let (value, led) = joined.unwrap().unwrap();
            assert_eq!(value, 42);
            leaders += usize::from(led);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(flights.in_flight(), 0, "a landed flight is forgotten");
    }

    #[tokio::test]
    async fn a_landed_flight_does_not_answer_the_next_caller() {
        let flights = SingleFlight::<u64>::default();
        let first = flights.run("k", || async { Ok::<_, ()>(1) }).await.unwrap();
        let second = flights.run("k", || async { Ok::<_, ()>(2) }).await.unwrap();
        assert_eq!((first, second), ((1, true), (2, true)));
    }
}
