//! Invalidation across processes: a process that changes a value publishes
//! its key on a Valkey pub/sub channel; every process listening drops that
//! key from its L1. Without this, another process serves the old value from
//! its L1 until the L1 TTL ends.
//!
//! Pub/sub delivers at most once: messages sent while a listener was
//! disconnected are lost. So when the listener (re)connects after having been
//! connected before, it empties L1 entirely.

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
        let status = Arc::new(ListenerStatus::default());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(listen(
            target.connect_url(),
            channel,
            cache,
            Arc::clone(&status),
            ready_tx,
            timeout,
        ));
        let _ = tokio::time::timeout(timeout, ready_rx).await;
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
    ready: tokio::sync::oneshot::Sender<()>,
    timeout: Duration,
) where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let mut ready = Some(ready);
    let mut retry = RETRY_MIN;
    loop {
        if let Ok(client) = redis::Client::open(url.as_str()) {
            let connected = tokio::time::timeout(timeout, async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await;
            if let Ok(Ok(mut pubsub)) = connected {
                if status.subscriptions.fetch_add(1, Ordering::Relaxed) > 0 {
                    // Messages sent while we were away are lost: start L1 afresh.
                    cache.forget_all_local();
                    cache.counters().l1_clears.fetch_add(1, Ordering::Relaxed);
                }
                status.connected.store(true, Ordering::Relaxed);
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                retry = RETRY_MIN;
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    if let Ok(key) = message.get_payload::<String>() {
                        cache.forget_local(&key).await;
                        cache.counters().invalidations_received.fetch_add(1, Ordering::Relaxed);
                        status.messages.fetch_add(1, Ordering::Relaxed);
                    }
                }
                status.connected.store(false, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Announces that `key` changed; returns how many listeners received it.
pub async fn publish(valkey: &Valkey, channel: &str, key: &str) -> Result<u64, CacheError> {
    valkey.publish(channel, key).await
}
