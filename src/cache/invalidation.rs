//! Invalidation across processes: a process that changes a value publishes
//! its key on a Valkey pub/sub channel; every process listening drops that
//! key from its L1. Without this, another process serves the old value from
//! its L1 until the L1 TTL ends.
//!
//! Pub/sub delivers at most once: messages sent while a listener was
//! disconnected are lost. So on every subscription except a first one made
//! before [`InvalidationListener::start`] returned (a reconnect, or a first
//! subscription that came late because Valkey was slow or down at start), the
//! listener empties L1 entirely.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::two_level::TwoLevelCache;
use super::{CacheError, Valkey};
use crate::config::ValkeyTarget;

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What the listener is doing, for reports and tests.
#[derive(Debug, Default)]
pub struct ListenerStatus {
    pub connected: AtomicBool,
    pub messages: AtomicU64,
    /// Successful subscriptions, the first one included.
    pub subscriptions: AtomicU64,
    /// The last keys received (newest last, at most [`RECENT_KEYS`]), with when.
    pub recent: std::sync::Mutex<std::collections::VecDeque<(std::time::SystemTime, String)>>,
}

/// How many received keys [`ListenerStatus::recent`] keeps.
pub const RECENT_KEYS: usize = 20;

impl ListenerStatus {
    fn remember(&self, key: &str) {
        let mut recent = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() == RECENT_KEYS {
            recent.pop_front();
        }
        recent.push_back((std::time::SystemTime::now(), key.to_string()));
    }

    /// The last keys received, newest last.
    pub fn recent_keys(&self) -> Vec<(std::time::SystemTime, String)> {
        let recent = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        recent.iter().cloned().collect()
    }
}

/// A background task that keeps a subscription and applies it to L1.
pub struct InvalidationListener {
    pub status: Arc<ListenerStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InvalidationListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InvalidationListener {
    /// Subscribes to `channel` and drops every announced key from `cache`'s L1.
    /// Returns once the first subscription is in place (or `timeout` passed,
    /// in which case it keeps trying in the background).
    pub async fn start<V>(target: &ValkeyTarget, channel: String, cache: TwoLevelCache<V>, timeout: Duration) -> Self
    where
        V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let listener = Self::spawn_with(target, channel, cache, timeout, Some(ready_tx));
        let _ = tokio::time::timeout(timeout, ready_rx).await;
        listener
    }

    /// Like [`Self::start`] but returns at once, for when Valkey is known to be
    /// down: the listener keeps trying, and empties L1 once it subscribes.
    pub fn spawn<V>(target: &ValkeyTarget, channel: String, cache: TwoLevelCache<V>, timeout: Duration) -> Self
    where
        V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        Self::spawn_with(target, channel, cache, timeout, None)
    }

    fn spawn_with<V>(
        target: &ValkeyTarget,
        channel: String,
        cache: TwoLevelCache<V>,
        timeout: Duration,
        ready: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Self
    where
        V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let status = Arc::new(ListenerStatus::default());
        let task = tokio::spawn(listen(
            target.connect_url(),
            channel,
            cache,
            Arc::clone(&status),
            ready,
            timeout,
        ));
        InvalidationListener { status, task }
    }

    pub fn is_connected(&self) -> bool {
        self.status.connected.load(Ordering::Relaxed)
    }
}

async fn listen<V>(
    url: String,
    channel: String,
    cache: TwoLevelCache<V>,
    status: Arc<ListenerStatus>,
    mut ready: Option<tokio::sync::oneshot::Sender<()>>,
    timeout: Duration,
) where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let mut retry = RETRY_MIN;
    loop {
        // Plain pub/sub on the first node named, also on a cluster: a PUBLISH
        // on any node reaches every node's subscribers over the cluster bus,
        // and invalidations are for every key, not one slot, so sharded
        // pub/sub (SSUBSCRIBE, one channel per slot's primary, followed
        // through failovers) would only add moving parts.
        if let Ok(client) = redis::Client::open(url.as_str()) {
            let connected = tokio::time::timeout(timeout, async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            if let Ok(Ok(mut pubsub)) = connected {
                // Only a first subscription that `start` is still waiting for
                // has missed nothing; after any other (a reconnect, or a first
                // one that came after `start` gave up) messages may be lost.
                let waiting = ready.take();
                let on_time = waiting.as_ref().is_some_and(|ready| !ready.is_closed());
                if !on_time {
                    clear_l1(&cache);
                }
                status.subscriptions.fetch_add(1, Ordering::Relaxed);
                status.connected.store(true, Ordering::Relaxed);
                if let Some(ready) = waiting {
                    if ready.send(()).is_err() && on_time {
                        // `start` gave up in between after all.
                        clear_l1(&cache);
                    }
                }
                retry = RETRY_MIN;
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    if let Ok(key) = message.get_payload::<String>() {
                        cache.forget_local(&key).await;
                        cache.counters().invalidations_received.fetch_add(1, Ordering::Relaxed);
                        status.messages.fetch_add(1, Ordering::Relaxed);
                        status.remember(&key);
                    }
                }
                status.connected.store(false, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Messages sent while we were not subscribed are lost: start L1 afresh.
fn clear_l1<V>(cache: &TwoLevelCache<V>)
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    cache.forget_all_local();
    cache.counters().l1_clears.fetch_add(1, Ordering::Relaxed);
}

/// Announces that `key` changed; returns how many listeners received it.
pub async fn publish(valkey: &Valkey, channel: &str, key: &str) -> Result<u64, CacheError> {
    valkey.publish(channel, key).await
}
