//! The built-in slow upstream of exercise 8: an axum server on a free
//! loopback port that answers `GET /weather/{country}/{city}` after a random
//! latency from the configured range, fails a share of the calls with 503,
//! and can be taken down (every call fails) for the outage scenario.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};

use crate::rng::{mix64, SplitMix64};

/// How the built-in upstream behaves.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub min_latency: Duration,
    pub max_latency: Duration,
    /// Share of calls answered 503, 0 to 1.
    pub failure_rate: f64,
    pub seed: u64,
}

struct Shared {
    behaviour: Behaviour,
    rng: Mutex<SplitMix64>,
    down: AtomicBool,
    served: AtomicU64,
    failed: AtomicU64,
}

/// A running upstream; stops when dropped.
pub struct FakeUpstream {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeUpstream {
    /// Listens on 127.0.0.1 port 0 (a free port) and serves in a task.
    pub async fn start(behaviour: Behaviour) -> std::io::Result<FakeUpstream> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            behaviour,
            rng: Mutex::new(SplitMix64::new(behaviour.seed)),
            down: AtomicBool::new(false),
            served: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let router = Router::new()
            .route("/weather/{country}/{city}", get(weather))
            .with_state(Arc::clone(&shared));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            // Small answers on loopback: without TCP_NODELAY, delayed ACKs add tens of ms.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeUpstream {
            address,
            shared,
            stop: Some(stop),
        })
    }

    /// The URL template the client asks (see `api_cache::upstream_url`).
    pub fn url(&self) -> String {
        format!("http://{}/weather/{{country}}/{{city}}", self.address)
    }

    /// Down: every call waits its latency, then fails with 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Calls answered so far: (200, 503).
    pub fn answered(&self) -> (u64, u64) {
        (
            self.shared.served.load(Ordering::SeqCst),
            self.shared.failed.load(Ordering::SeqCst),
        )
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(serde::Serialize)]
struct Weather {
    country: String,
    city: String,
    temperature_c: f64,
    conditions: &'static str,
    observed_at_ms: u64,
}

const CONDITIONS: [&str; 5] = ["sunny", "cloudy", "rain", "wind", "fog"];

async fn weather(State(shared): State<Arc<Shared>>, Path((country, city)): Path<(String, String)>) -> Response {
    let (latency, fails) = {
        let mut rng = shared.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let b = shared.behaviour;
        let span = u64::try_from((b.max_latency - b.min_latency).as_micros()).unwrap_or(0);
        let latency = b.min_latency + Duration::from_micros(rng.between(0, span));
        let draw = (rng.next_u64() >> 11) as f64 / (1_u64 << 53) as f64;
        (latency, draw < b.failure_rate)
    };
    tokio::time::sleep(latency).await;
    if fails || shared.down.load(Ordering::SeqCst) {
        shared.failed.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "upstream unavailable"})),
        )
            .into_response();
    }
    shared.served.fetch_add(1, Ordering::SeqCst);
    // The same city reads the same weather within a minute.
    let now_ms = crate::patterns::stampede::unix_millis() as u64;
    let digest = mix64(
        city.bytes()
            .fold(mix64(now_ms / 60_000), |h, b| mix64(h ^ u64::from(b))),
    );
    let body = Weather {
        temperature_c: (digest % 400) as f64 / 10.0 - 5.0,
        conditions: CONDITIONS[(digest / 400 % CONDITIONS.len() as u64) as usize],
        country,
        city,
        observed_at_ms: now_ms,
    };
    Json(body).into_response()
}
