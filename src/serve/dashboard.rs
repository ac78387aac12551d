//! The live dashboard: `GET /` is one page embedded in the binary (HTML,
//! CSS and a hand-written SVG chart script; no CDN, no build step), and
//! `GET /events` streams one [`Frame`] per second as Server-Sent Events.
//!
//! One sampler task builds the frame once a second and hands it to every
//! open `/events` stream through a `watch` channel, so ten open dashboards
//! cost one `INFO memory` a second, not ten; with no dashboard open it does
//! nothing. The streams end when `serve` shuts down, or graceful shutdown
//! would wait for them forever.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::Stream;
use tokio::sync::watch;

use super::stats::SecondView;
use super::AppState;

/// The page, embedded at build time.
const PAGE: &str = include_str!("dashboard.html");

/// How many invalidations a frame lists.
const SHOWN_INVALIDATIONS: usize = 10;

/// One second of the service, as the dashboard draws it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Frame {
    pub uptime_seconds: f64,
    /// Reads and writes answered in the last complete second.
    pub requests_per_second: u64,
    pub last_second: SecondView,
    pub hit_rate: HitRates,
    pub l1_entries: u64,
    /// Keys + JSON of the L1 entries (see `TwoLevelCache::l1_bytes`).
    pub l1_bytes: u64,
    /// Valkey's `used_memory`; `None` when it did not answer.
    pub valkey_used_memory: Option<u64>,
    /// `ok`, `down` (no answer) or `not connected` (none at start).
    pub valkey: &'static str,
    /// Newest first.
    pub invalidations: Vec<InvalidationNote>,
}

/// Hit rates of the last complete second; `None` when nothing was asked of
/// that layer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HitRates {
    /// L1 hits over all product reads.
    pub l1: Option<f64>,
    /// L2 hits over the reads L1 did not have.
    pub l2: Option<f64>,
    /// L1 + L2 hits over all product reads.
    pub total: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct InvalidationNote {
    /// UTC, `HH:MM:SS.mmm`.
    pub at: String,
    /// `sent` (this process changed the product) or `received`.
    pub direction: &'static str,
    pub key: String,
    /// For `sent`: how many processes received it.
    pub receivers: Option<u64>,
}

/// The keys this process announced, newest last.
#[derive(Default)]
pub struct SentInvalidations {
    recent: Mutex<VecDeque<(SystemTime, String, u64)>>,
}

impl SentInvalidations {
    pub fn push(&self, key: &str, receivers: u64) {
        let mut recent = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() == SHOWN_INVALIDATIONS {
            recent.pop_front();
        }
        recent.push_back((SystemTime::now(), key.to_string(), receivers));
    }

    fn list(&self) -> Vec<(SystemTime, String, u64)> {
        let recent = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        recent.iter().cloned().collect()
    }
}

/// The channel between the sampler and the `/events` streams.
pub struct Dashboard {
    frames: watch::Sender<Option<Arc<Frame>>>,
    stopping: watch::Receiver<bool>,
    pub sent: SentInvalidations,
}

impl Dashboard {
    /// `stopping` turns true when `serve` shuts down.
    pub fn new(stopping: watch::Receiver<bool>) -> Dashboard {
        Dashboard {
            frames: watch::Sender::new(None),
            stopping,
            sent: SentInvalidations::default(),
        }
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn hit_rates(second: &SecondView) -> HitRates {
    let (l1, l2, db) = (second.l1.requests, second.l2.requests, second.database.requests);
    HitRates {
        l1: ratio(l1, l1 + l2 + db),
        l2: ratio(l2, l2 + db),
        total: ratio(l1 + l2, l1 + l2 + db),
    }
}

fn clock(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%H:%M:%S%.3f")
        .to_string()
}

fn invalidations(state: &AppState) -> Vec<InvalidationNote> {
    let mut all: Vec<(SystemTime, InvalidationNote)> = state
        .dashboard
        .sent
        .list()
        .into_iter()
        .map(|(at, key, receivers)| {
            (
                at,
                InvalidationNote {
                    at: clock(at),
                    direction: "sent",
                    key,
                    receivers: Some(receivers),
                },
            )
        })
        .collect();
    if let Some(listener) = &state.listener {
        all.extend(listener.status.recent_keys().into_iter().map(|(at, key)| {
            (
                at,
                InvalidationNote {
                    at: clock(at),
                    direction: "received",
                    key,
                    receivers: None,
                },
            )
        }));
    }
    all.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    all.into_iter()
        .take(SHOWN_INVALIDATIONS)
        .map(|(_, note)| note)
        .collect()
}

/// Builds the frame of the last complete second.
pub async fn frame(state: &AppState) -> Frame {
    let last_second = state.stats.last_second();
    let (valkey_used_memory, valkey) = match &state.valkey {
        None => (None, "not connected"),
        Some(valkey) => match valkey.info("memory").await {
            Ok(info) => (info.get("used_memory").and_then(|v| v.parse().ok()), "ok"),
            Err(_) => (None, "down"),
        },
    };
    Frame {
        uptime_seconds: state.stats.uptime().as_secs_f64(),
        requests_per_second: last_second.reads + last_second.writes,
        hit_rate: hit_rates(&last_second),
        last_second,
        l1_entries: state.products.l1_entries().await,
        l1_bytes: state.products.l1_bytes().await,
        valkey_used_memory,
        valkey,
        invalidations: invalidations(state),
    }
}

/// Once a second, while a dashboard is open, builds a frame for it; ends
/// when `serve` shuts down.
pub async fn sample(state: Arc<AppState>) {
    let mut stopping = state.dashboard.stopping.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut stopping) => return,
        }
        if state.dashboard.frames.receiver_count() == 0 {
            continue;
        }
        let frame = frame(&state).await;
        state.dashboard.frames.send_replace(Some(Arc::new(frame)));
    }
}

async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: serve is ending as well.
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// `GET /`: the page.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

/// `GET /events`: a `frame` event per second until `serve` stops.
pub async fn events(State(state): State<Arc<AppState>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut frames = state.dashboard.frames.subscribe();
    if frames.borrow().is_some() {
        // A new page gets the latest frame at once rather than in up to a second.
        frames.mark_changed();
    }
    let stopping = state.dashboard.stopping.clone();
    let stream = futures_util::stream::unfold((frames, stopping), |(mut frames, mut stopping)| async move {
        loop {
            tokio::select! {
                changed = frames.changed() => changed.ok()?,
                () = stopped(&mut stopping) => return None,
            }
            let frame = frames.borrow_and_update().clone();
            if let Some(frame) = frame {
                let event = Event::default().event("frame").json_data(&*frame).ok()?;
                return Some((Ok(event), (frames, stopping)));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::stats::SourceSecond;

    fn source(requests: u64) -> SourceSecond {
        SourceSecond {
            requests,
            p50_ms: None,
            p99_ms: None,
        }
    }

    #[test]
    fn hit_rates_are_per_layer_of_what_reached_it() {
        let second = SecondView {
            second: 3,
            reads: 100,
            writes: 0,
            errors: 0,
            negative_hits: 0,
            l1: source(80),
            l2: source(15),
            database: source(5),
        };
        let rates = hit_rates(&second);
        assert_eq!(rates.l1, Some(0.8));
        assert_eq!(rates.l2, Some(0.75), "15 of the 20 that L1 missed");
        assert_eq!(rates.total, Some(0.95));
        let idle = SecondView {
            l1: source(0),
            l2: source(0),
            database: source(0),
            ..second
        };
        assert_eq!(hit_rates(&idle).l1, None, "no reads: no rate, not 0 %");
    }
}
