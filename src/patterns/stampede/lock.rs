//! The Valkey lock: one load per key per fleet (`SET NX PX`, a release
//! that deletes only its own token), waiters polling with backoff and
//! jitter, and the fall-back to the database when the wait runs out.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{request_rng, served, uniform, unix_millis, Fallback, Lookup, Path, Served, StampedeCache};
use crate::cache::{CacheError, CompareAndDelete, Valkey};
use crate::db::DbError;

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
        self.valkey.delete_if_equals(key, token.as_bytes()).await
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

impl StampedeCache {
    pub(super) async fn locked(&self, request: u64, started: Instant) -> Result<Served, DbError> {
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
}
