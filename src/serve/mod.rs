//! `workshop-cli serve`: the product catalogue as an HTTP service (axum)
//! over the two-level cache: L1 in this process → Valkey → the database.
//!
//! `routes.rs` has the handlers, `error.rs` the one mapping from failure to
//! status code, `stats.rs` the `CacheStats` view, `metrics.rs` the
//! Prometheus registry. Cross-cutting concerns (request logging, timeouts,
//! the body limit) are tower layers in [`router`].

pub mod body;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnRequest, DefaultOnResponse, TraceLayer};

use crate::cache::invalidation::InvalidationListener;
use crate::cache::two_level::{TwoLevelCache, TwoLevelSettings};
use crate::cache::{KeyScheme, Valkey};
use crate::config::{Config, ConfigError};
use crate::db::products::ProductRow;
use crate::db::{Database, PoolSettings};
use crate::error::{Result, WorkshopError};

/// Request bodies larger than this get 413: a product change is a few dozen bytes.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen` address.
    pub public: bool,
    pub l1_capacity: u64,
    pub l1_ttl: Duration,
    /// How long "no such product" is remembered (L1 and L2).
    pub negative_ttl: Duration,
    /// How long a page of `GET /products` is cached (pages are not invalidated by a PUT).
    pub page_ttl: Duration,
    pub invalidation: bool,
    pub request_timeout: Duration,
    pub connections: u32,
}

/// What `serve` tells its caller once it listens.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ready {
    pub url: String,
    pub database: String,
    pub valkey: Option<String>,
    pub invalidation: bool,
    pub warnings: Vec<String>,
}

/// What `serve` did, once it stopped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServeSummary {
    pub url: String,
    pub stats: stats::StatsView,
}

/// Everything a handler needs; shared as `State<Arc<AppState>>`.
pub struct AppState {
    pub db: Database,
    pub valkey: Option<Valkey>,
    /// Each entry with its JSON body, encoded once ([`body::CachedProduct`]).
    pub products: TwoLevelCache<body::CachedProduct>,
    pub pages: TwoLevelCache<Vec<ProductRow>>,
    /// L1 of the negative cache: ids the database does not have.
    pub missing: moka::future::Cache<i64, ()>,
    pub keys: KeyScheme,
    pub channel: String,
    pub invalidation: bool,
    pub negative_ttl: Duration,
    pub listener: Option<InvalidationListener>,
    pub stats: stats::ServeStats,
    pub metrics: metrics::Metrics,
    pub dashboard: dashboard::Dashboard,
}

/// Refuses a non-loopback address unless `--public` says so.
pub fn check_listen(options: &ServeOptions) -> Result<(), ConfigError> {
    if options.listen.ip().is_loopback() || options.public {
        Ok(())
    } else {
        Err(ConfigError::InvalidValue {
            var: "--listen",
            expected: "a loopback address such as 127.0.0.1:8080, or add --public to serve other machines",
            value: options.listen.to_string(),
        })
    }
}

/// Connects, listens, calls `on_ready`, serves until SIGINT/SIGTERM, then
/// finishes the requests in flight and returns.
pub async fn run(config: &Config, options: ServeOptions, on_ready: impl FnOnce(&Ready)) -> Result<ServeSummary> {
    check_listen(&options)?;
    let db = Database::connect(
        &config.database,
        PoolSettings {
            max_connections: options.connections.max(1),
            connect_timeout: config.connect_timeout,
        },
    )
    .await?
    .recording_as("serve");
    let info = db.server_info().await?;
    db.product_id_range().await?;
    let mut warnings = Vec::new();
    let valkey = match Valkey::connect(&config.valkey, config.connect_timeout).await {
        Ok(valkey) => Some(valkey),
        Err(error) => {
            warnings.push(format!(
                "{error}; serving from L1 and the database only (restart serve once Valkey answers)"
            ));
            None
        }
    };
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    let products = TwoLevelCache::new(
        TwoLevelSettings {
            use_l1: options.l1_capacity > 0,
            l1_capacity: options.l1_capacity,
            l1_ttl: options.l1_ttl,
            l2_ttl: config.ttl_policy(),
        },
        valkey.clone(),
    )
    // 100 concurrent GETs of a cold id: one database query, not 100 (`grade service` checks it).
    .with_single_flight();
    let pages = TwoLevelCache::new(
        TwoLevelSettings {
            use_l1: options.l1_capacity > 0,
            l1_capacity: options.l1_capacity.clamp(1, 1000),
            l1_ttl: options.page_ttl,
            l2_ttl: crate::cache::TtlPolicy::jittered(options.page_ttl, config.ttl_jitter_percent),
        },
        valkey.clone(),
    );
    let missing = moka::future::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(options.negative_ttl)
        .build();
    let channel = keys.invalidation_channel();
    let listener = if !options.invalidation {
        None
    } else if valkey.is_some() {
        Some(
            InvalidationListener::start(
                &config.valkey,
                channel.clone(),
                products.clone(),
                config.connect_timeout,
            )
            .await,
        )
    } else {
        Some(InvalidationListener::spawn(
            &config.valkey,
            channel.clone(),
            products.clone(),
            config.connect_timeout,
        ))
    };
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        db,
        valkey,
        products,
        pages,
        missing,
        keys,
        channel,
        invalidation: options.invalidation,
        negative_ttl: options.negative_ttl,
        listener,
        stats: stats::ServeStats::default(),
        metrics: metrics::Metrics::default(),
        dashboard: dashboard::Dashboard::new(stopping_rx),
    });

    let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(|e| {
        WorkshopError::Other(anyhow::anyhow!(
            "cannot listen on {}: {e}; choose another --listen address or port",
            options.listen
        ))
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot read the listening address: {e}")))?;
    let url = format!("http://{address}");
    on_ready(&Ready {
        url: url.clone(),
        database: format!("{} {} at {}", info.product, info.version, state.db.target()),
        valkey: state.valkey.as_ref().map(|v| v.target().to_string()),
        invalidation: options.invalidation,
        warnings,
    });

    let app = router(Arc::clone(&state), options.request_timeout);
    let sampler = tokio::spawn(dashboard::sample(Arc::clone(&state)));
    // On the signal, the dashboard's event streams end too: graceful shutdown
    // waits for every open response, and those would never finish by themselves.
    let signal = async move {
        shutdown_signal().await;
        stopping.send_replace(true);
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(signal).await;
    sampler.abort();
    served.map_err(|e| WorkshopError::Other(anyhow::anyhow!("the HTTP server stopped: {e}")))?;
    let summary = ServeSummary {
        url,
        stats: state.stats.view(),
    };
    state.db.close().await;
    Ok(summary)
}

/// The routes with their tower layers.
pub fn router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    routes::routes(Arc::clone(&state))
        .layer(axum::middleware::from_fn_with_state(state, routes::record_response))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_request(DefaultOnRequest::new().level(tracing::Level::INFO))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Request logging for `--log LEVEL` (stderr); `off` installs nothing.
pub fn init_logging(level: &str) {
    if level == "off" {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::new(format!("tower_http={level},workshop_cli={level}"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
