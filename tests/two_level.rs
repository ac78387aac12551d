//! The two-level cache and its invalidation, against a real Valkey.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{valkey_url, PrivateValkey, TestPrefix};
use workshop_cli::cache::invalidation::{publish, InvalidationListener};
use workshop_cli::cache::two_level::{Layer, TwoLevelCache, TwoLevelSettings};
use workshop_cli::cache::Valkey;
use workshop_cli::config::{Source, ValkeyTarget};

const SETTINGS: TwoLevelSettings = TwoLevelSettings {
    use_l1: true,
    l1_capacity: 1000,
    l1_ttl: Duration::from_secs(60),
    l2_ttl: workshop_cli::cache::TtlPolicy::fixed(Duration::from_secs(60)),
};

async fn valkey(url: &str) -> Valkey {
    let target = ValkeyTarget::parse(url, Source::Flag).unwrap();
    Valkey::connect(&target, Duration::from_millis(500)).await.unwrap()
}

/// A loader that counts how often the "database" is asked.
fn loader(calls: &Arc<AtomicU64>, value: u64) -> impl FnOnce() -> std::future::Ready<Result<Option<u64>, ()>> {
    let calls = Arc::clone(calls);
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Some(value)))
    }
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met in 2 s");
}

#[tokio::test]
async fn reads_fill_l1_from_l2_and_both_from_the_database() {
    let prefix = TestPrefix::new("fill");
    let key = format!("{}product:1", prefix.prefix);
    let calls = Arc::new(AtomicU64::new(0));
    let first: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&valkey_url()).await));

    let read = first.get(&key, loader(&calls, 7)).await.unwrap();
    assert_eq!((read.layer, *read.value), (Layer::Database, Some(7)));
    let read = first.get(&key, loader(&calls, 7)).await.unwrap();
    assert_eq!(read.layer, Layer::L1);

    // Another process (its own L1) finds the value in Valkey, then in its L1.
    let second: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&valkey_url()).await));
    assert_eq!(second.get(&key, loader(&calls, 7)).await.unwrap().layer, Layer::L2);
    assert_eq!(second.get(&key, loader(&calls, 7)).await.unwrap().layer, Layer::L1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the database was asked once");

    let counters = first.counters().snapshot();
    assert_eq!(
        (
            counters.l1_hits,
            counters.l1_misses,
            counters.l2_misses,
            counters.database_loads
        ),
        (1, 1, 1, 1)
    );
    let counters = second.counters().snapshot();
    assert_eq!((counters.l1_hits, counters.l2_hits, counters.database_loads), (1, 1, 0));
}

#[tokio::test]
async fn a_missing_row_is_cached_as_absent() {
    let prefix = TestPrefix::new("absent");
    let key = format!("{}product:404", prefix.prefix);
    let cache: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&valkey_url()).await));
    let calls = Arc::new(AtomicU64::new(0));
    let none = {
        let calls = Arc::clone(&calls);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, ()>(None))
        }
    };
    assert_eq!(*cache.get(&key, none.clone()).await.unwrap().value, None);
    let other: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&valkey_url()).await));
    let read = other.get(&key, none).await.unwrap();
    assert_eq!((read.layer, *read.value), (Layer::L2, None));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_invalidation_message_drops_the_key_from_another_processes_l1() {
    let prefix = TestPrefix::new("invalidate");
    let channel = format!("{}invalidate", prefix.prefix);
    let key = format!("{}product:5", prefix.prefix);
    let target = ValkeyTarget::parse(&valkey_url(), Source::Flag).unwrap();
    let calls = Arc::new(AtomicU64::new(0));

    let reader: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&valkey_url()).await));
    let listener = InvalidationListener::start(&target, channel.clone(), reader.clone(), Duration::from_secs(2)).await;
    assert!(listener.is_connected());
    reader.get(&key, loader(&calls, 100)).await.unwrap();
    assert_eq!(reader.get(&key, loader(&calls, 100)).await.unwrap().layer, Layer::L1);

    // A writer elsewhere changes the value and announces the key.
    let writer: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&valkey_url()).await));
    writer.put(&key, Some(120)).await;
    let receivers = publish(writer.l2().unwrap(), &channel, &key).await.unwrap();
    assert!(receivers >= 1);
    wait_for(|| reader.counters().snapshot().invalidations_received == 1).await;

    let read = reader.get(&key, loader(&calls, 100)).await.unwrap();
    assert_eq!(
        (read.layer, *read.value),
        (Layer::L2, Some(120)),
        "the new value, not the stale L1 one"
    );
}

#[tokio::test]
async fn with_valkey_down_reads_go_on_from_l1_and_the_database_and_l1_is_emptied_on_resubscribe() {
    let mut server = PrivateValkey::start();
    let prefix = TestPrefix::on("down", &server.url());
    let target = ValkeyTarget::parse(&server.url(), Source::Flag).unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let cache: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&server.url()).await));
    let listener = InvalidationListener::start(
        &target,
        format!("{}invalidate", prefix.prefix),
        cache.clone(),
        Duration::from_secs(1),
    )
    .await;
    let cached = format!("{}product:1", prefix.prefix);
    cache.get(&cached, loader(&calls, 1)).await.unwrap();

    server.kill();
    wait_for(|| !listener.is_connected()).await;
    // Cached: from L1. Not cached: from the database. Nothing fails.
    assert_eq!(cache.get(&cached, loader(&calls, 1)).await.unwrap().layer, Layer::L1);
    let other = format!("{}product:2", prefix.prefix);
    assert_eq!(
        cache.get(&other, loader(&calls, 2)).await.unwrap().layer,
        Layer::Database
    );
    assert!(cache.counters().snapshot().l2_errors >= 1);

    server.restart();
    wait_for(|| listener.is_connected()).await;
    assert_eq!(
        cache.counters().snapshot().l1_clears,
        1,
        "messages may have been missed: L1 starts afresh"
    );
    assert_eq!(cache.l1_entries().await, 0);
    assert!(listener.status.subscriptions.load(Ordering::Relaxed) >= 2);
}

#[tokio::test]
async fn a_value_put_while_a_reader_loads_survives_the_readers_fill() {
    let prefix = TestPrefix::new("late-fill");
    let key = format!("{}product:9", prefix.prefix);
    let reader: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&valkey_url()).await));
    let writer: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&valkey_url()).await));

    // The reader missed both layers and reads the old row; meanwhile a writer
    // stores the new row in L2.
    let read = reader
        .get(&key, || async {
            writer.put(&key, Some(200)).await;
            Ok::<_, ()>(Some(100))
        })
        .await
        .unwrap();
    assert_eq!((read.layer, *read.value), (Layer::Database, Some(100)));

    let stored = writer.l2().unwrap().get(&key).await.unwrap();
    assert_eq!(
        stored.as_deref(),
        Some("200"),
        "the late fill did not overwrite the new row"
    );
    let fresh: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&valkey_url()).await));
    let calls = Arc::new(AtomicU64::new(0));
    let read = fresh.get(&key, loader(&calls, 100)).await.unwrap();
    assert_eq!((read.layer, *read.value), (Layer::L2, Some(200)));
}

#[tokio::test]
async fn a_first_subscription_made_after_start_gave_up_empties_l1() {
    let mut server = PrivateValkey::start();
    let prefix = TestPrefix::on("late-subscribe", &server.url());
    let target = ValkeyTarget::parse(&server.url(), Source::Flag).unwrap();
    server.kill();

    // Valkey is down at start: L2 is off for this process, the listener keeps trying.
    let cache: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, None);
    let listener = InvalidationListener::start(
        &target,
        format!("{}invalidate", prefix.prefix),
        cache.clone(),
        Duration::from_millis(200),
    )
    .await;
    assert!(!listener.is_connected());
    let calls = Arc::new(AtomicU64::new(0));
    let key = format!("{}product:1", prefix.prefix);
    cache.get(&key, loader(&calls, 1)).await.unwrap();
    assert_eq!(cache.l1_entries().await, 1);

    server.restart();
    wait_for(|| listener.is_connected()).await;
    assert_eq!(
        cache.counters().snapshot().l1_clears,
        1,
        "invalidations sent before the first subscription were missed: L1 starts afresh"
    );
    assert_eq!(cache.l1_entries().await, 0);
}

#[tokio::test]
async fn a_first_subscription_made_before_start_returned_keeps_l1() {
    let prefix = TestPrefix::new("on-time-subscribe");
    let target = ValkeyTarget::parse(&valkey_url(), Source::Flag).unwrap();
    let cache: TwoLevelCache<u64> = TwoLevelCache::new(SETTINGS, Some(valkey(&valkey_url()).await));
    let listener = InvalidationListener::start(
        &target,
        format!("{}invalidate", prefix.prefix),
        cache.clone(),
        Duration::from_secs(2),
    )
    .await;
    assert!(listener.is_connected());
    assert_eq!(cache.counters().snapshot().l1_clears, 0);
}
