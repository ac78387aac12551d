//! The reader process of exercise 13: an L1 (a map in this process) in front
//! of Valkey, on a RESP3 connection whose push messages empty it, by
//! `CLIENT TRACKING` (default mode or `BCAST PREFIX`) or by a pub/sub
//! subscription (exercise 4's way). The writer process drives it with JSON
//! lines on stdin; it answers each with one JSON line on stdout.
//!
//! The reader counts its own L1 hits: client-side caching hides them from
//! Valkey's counters, which is why the rest of the workshop keeps it off.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redis::{PushInfo, PushKind, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::{unix_micros, ReaderReply, ReaderRequest, ReaderSummary, TrackingMode};
use crate::cache::{KeyScheme, Valkey};
use crate::config::Config;
use crate::error::{Result, WorkshopError};

/// What the push handler and the reader share.
#[derive(Default)]
struct L1 {
    entries: Mutex<HashMap<String, String>>,
    /// Keys being read from Valkey: an invalidation meanwhile must win over
    /// the (possibly older) value the read brings back.
    pending: Mutex<HashSet<String>>,
    /// When (Unix µs) each key was last invalidated.
    invalidated_at: Mutex<HashMap<String, u64>>,
    messages: AtomicU64,
    keys_invalidated: AtomicU64,
    flushes: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl L1 {
    fn drop_key(&self, key: &str, at: u64) {
        lock(&self.entries).remove(key);
        lock(&self.pending).remove(key);
        lock(&self.invalidated_at).insert(key.to_string(), at);
        self.keys_invalidated.fetch_add(1, Ordering::Relaxed);
    }

    fn flush(&self) {
        lock(&self.entries).clear();
        lock(&self.pending).clear();
        self.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Called by the connection's driver for every push it reads.
    fn on_push(&self, push: PushInfo, mode: TrackingMode, channel: &str) {
        let at = unix_micros();
        match (push.kind, mode) {
            (PushKind::Invalidate, TrackingMode::Default | TrackingMode::Bcast) => {
                self.messages.fetch_add(1, Ordering::Relaxed);
                match push.data.first() {
                    // A null list: the server flushed, or lost track (everything goes).
                    Some(Value::Nil) | None => self.flush(),
                    Some(Value::Array(keys)) => {
                        for key in keys {
                            if let Some(key) = text(key) {
                                self.drop_key(&key, at);
                            }
                        }
                    }
                    Some(other) => {
                        if let Some(key) = text(other) {
                            self.drop_key(&key, at);
                        }
                    }
                }
            }
            (PushKind::Message, TrackingMode::PubSub)
                if push.data.first().and_then(text).as_deref() == Some(channel) =>
            {
                self.messages.fetch_add(1, Ordering::Relaxed);
                if let Some(key) = push.data.get(1).and_then(text) {
                    self.drop_key(&key, at);
                }
            }
            // Invalidations may have been missed while disconnected: start empty.
            (PushKind::Disconnection, _) => self.flush(),
            _ => {}
        }
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// Runs the reader until the writer says `quit` (or closes stdin).
pub async fn run(config: &Config, mode: &str, run: Option<&str>) -> Result<()> {
    let mode = TrackingMode::parse(mode)
        .ok_or_else(|| WorkshopError::invalid(format!("--reader '{mode}' is not a tracking mode")))?;
    let run = run.ok_or_else(|| WorkshopError::invalid("--reader needs --run"))?;
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    let channel = keys.tracking_channel(run);
    let l1 = Arc::new(L1::default());
    let handler = {
        let l1 = l1.clone();
        let channel = channel.clone();
        move |push: PushInfo| -> std::result::Result<(), redis::aio::SendError> {
            l1.on_push(push, mode, &channel);
            Ok(())
        }
    };
    let valkey = Valkey::connect_with_pushes(&config.valkey, config.connect_timeout, handler).await?;
    match mode {
        TrackingMode::Default => {
            valkey
                .query::<()>("CLIENT TRACKING", redis::cmd("CLIENT").arg("TRACKING").arg("ON"))
                .await?;
        }
        TrackingMode::Bcast => {
            let command = redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(keys.tracking_prefix(run))
                .clone();
            valkey.query::<()>("CLIENT TRACKING", &command).await?;
        }
        TrackingMode::PubSub => valkey.subscribe(&channel).await?,
    }
    let (mut l1_hits, mut l2_reads) = (0u64, 0u64);
    let mut out = tokio::io::stdout();
    reply(&mut out, &ReaderReply::Ready).await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| WorkshopError::Other(e.into()))? {
        let request: ReaderRequest =
            serde_json::from_str(&line).map_err(|e| WorkshopError::invalid(format!("the reader got '{line}': {e}")))?;
        match request {
            ReaderRequest::Read { id } => {
                let key = keys.tracking_product(run, id);
                let cached = lock(&l1.entries).get(&key).cloned();
                let layer = if cached.is_some() {
                    l1_hits += 1;
                    "L1"
                } else {
                    l2_reads += 1;
                    lock(&l1.pending).insert(key.clone());
                    let value = valkey.get(&key).await?;
                    // Kept only if no invalidation came while the GET was out.
                    if lock(&l1.pending).remove(&key) {
                        if let Some(value) = value {
                            lock(&l1.entries).insert(key.clone(), value);
                        }
                    }
                    "L2"
                };
                reply(
                    &mut out,
                    &ReaderReply::Read {
                        id,
                        layer: layer.into(),
                    },
                )
                .await?;
            }
            ReaderRequest::Check { id } => {
                // One round trip on the reader's own connection: a push the
                // server queued before this PING's reply has been handled now.
                let round_trip = valkey.round_trip().await?;
                let key = keys.tracking_product(run, id);
                let in_l1 = lock(&l1.entries).contains_key(&key);
                let invalidated_at_us = lock(&l1.invalidated_at).get(&key).copied();
                reply(
                    &mut out,
                    &ReaderReply::Check {
                        id,
                        in_l1,
                        invalidated_at_us,
                        round_trip_us: round_trip.as_micros() as u64,
                    },
                )
                .await?;
            }
            ReaderRequest::Quit => break,
        }
    }
    let summary = ReaderSummary {
        l1_hits,
        l2_reads,
        invalidation_messages: l1.messages.load(Ordering::Relaxed),
        keys_invalidated: l1.keys_invalidated.load(Ordering::Relaxed),
        flushes: l1.flushes.load(Ordering::Relaxed),
    };
    reply(&mut out, &ReaderReply::Summary(summary)).await
}

async fn reply(out: &mut tokio::io::Stdout, message: &ReaderReply) -> Result<()> {
    let mut line = serde_json::to_string(message).map_err(|e| WorkshopError::Other(e.into()))?;
    line.push('\n');
    out.write_all(line.as_bytes())
        .await
        .and(out.flush().await)
        .map_err(|e| WorkshopError::Other(e.into()))
}
