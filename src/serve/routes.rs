//! The handlers: small functions that return `Result<_, ApiError>`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_decimal::Decimal;

use super::body::CachedProduct;
use super::error::{no_route, ApiError};
use super::stats::Source;
use super::AppState;
use crate::cache::two_level::Layer;
use crate::db::products::{ProductRow, ProductUpdate, NAME_MAX_CHARS};
use crate::db::DbError;

type Shared = State<Arc<AppState>>;

pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/products/{id}", get(get_product).put(put_product))
        .route("/products", get(list_products))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/", get(super::dashboard::page))
        .route("/events", get(super::dashboard::events))
        .fallback(no_route)
        .with_state(state)
}

/// Per response: the duration histogram and the status counter, labelled
/// with the route template (`/products/{id}`), never the raw path.
pub async fn record_response(State(state): Shared, request: Request, next: Next) -> Response {
    let endpoint = endpoint_label(request.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .response(endpoint, response.status().as_u16(), started.elapsed());
    response
}

/// The route template as a metrics label; `{id}` becomes `:id`: braces in a
/// label value trip some Prometheus text parsers. The product route, every
/// read of the catalogue, is a constant: no string is built per request.
fn endpoint_label(matched: Option<&str>) -> Cow<'static, str> {
    match matched {
        None => Cow::Borrowed("unmatched"),
        Some("/products/{id}") => Cow::Borrowed(super::metrics::PRODUCT_ROUTE),
        Some(path) => Cow::Owned(path.replace("{id}", ":id")),
    }
}

fn source_of(layer: Layer) -> Source {
    match layer {
        Layer::L1 => Source::L1,
        Layer::L2 => Source::L2,
        Layer::Database => Source::Database,
    }
}

/// `X-Cache` and `Server-Timing` (the layer's time, milliseconds), added to
/// `response`'s own headers.
fn with_cache_headers(mut response: Response, source: Source, layer_time: Duration) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(source.header()),
    );
    let name = match source {
        Source::L1 => "l1",
        Source::L2 => "l2",
        Source::Database => "db",
    };
    if let Ok(value) = HeaderValue::try_from(server_timing(name, layer_time)) {
        headers.insert(HeaderName::from_static("server-timing"), value);
    }
    response
}

/// `name;dur=M.MMM`: the layer's time in milliseconds to the microsecond,
/// from whole microseconds, written digit by digit (`format!` with an `f64`
/// to 3 decimals cost more per L2 hit than the rest of the headers).
fn server_timing(name: &str, layer_time: Duration) -> String {
    let micros = (layer_time.as_nanos() + 500) / 1000;
    let fraction = (micros % 1000) as u32;
    let mut text = String::with_capacity(name.len() + 16);
    text.push_str(name);
    text.push_str(";dur=");
    text.push_str(itoa::Buffer::new().format(micros / 1000));
    text.push('.');
    for digit in [fraction / 100, fraction / 10 % 10, fraction % 10] {
        text.push(char::from(b'0' + digit as u8));
    }
    text
}

/// An encoded JSON body, with the content type `Json` gives its responses.
fn json_body(body: Bytes) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().map_err(|_| {
        ApiError::bad_request(
            format!("product id '{raw}' is not a whole number"),
            "use e.g. GET /products/42",
        )
    })
}

/// Why a load through the layers produced no product.
enum Missing {
    /// The negative cache in Valkey knew.
    KnownInL2,
    /// The database has no such row.
    NotInDatabase,
    Failed(DbError),
}

/// Counts what the product cache's layers did for one read (metrics).
fn count_layers(state: &AppState, source: Source) {
    match source {
        Source::L1 => state.metrics.hit("l1"),
        Source::L2 => {
            state.metrics.miss("l1");
            state.metrics.hit("l2");
        }
        Source::Database => {
            state.metrics.miss("l1");
            state.metrics.miss("l2");
        }
    }
}

async fn get_product(State(state): Shared, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let id = parse_id(&raw)?;
    let key = state.keys.product(id);
    // An L1 hit first: the hot path reads nothing else (an id in L1 exists,
    // whatever an older negative entry says), and reads the clock once more.
    if let Some(value) = state.products.l1_hit(&key).await {
        let finished = Instant::now();
        return serve_product(&state, id, &value, Source::L1, finished - started, started, finished);
    }
    if state.missing.get(&id).await.is_some() {
        return Err(negative_hit(&state, id, Source::L1, started));
    }
    let read = state
        .products
        .get_after_l1_miss(
            &key,
            || async {
                if let Some(valkey) = &state.valkey {
                    if let Ok(Some(_)) = valkey.get(&state.keys.product_missing(id)).await {
                        return Err(Missing::KnownInL2);
                    }
                }
                match state.db.product(id).await {
                    Ok(Some(row)) => Ok(Some(CachedProduct::new(row))),
                    Ok(None) => Err(Missing::NotInDatabase),
                    Err(error) => Err(Missing::Failed(error)),
                }
            },
            started,
        )
        .await;
    match read {
        Ok(served) => {
            let source = source_of(served.layer);
            serve_product(
                &state,
                id,
                &served.value,
                source,
                served.latency,
                started,
                Instant::now(),
            )
        }
        Err(Missing::KnownInL2) => {
            state.missing.insert(id, ()).await;
            Err(negative_hit(&state, id, Source::L2, started))
        }
        Err(Missing::NotInDatabase) => {
            state.missing.insert(id, ()).await;
            if let Some(valkey) = &state.valkey {
                let _ = valkey
                    .set_with_ttl(&state.keys.product_missing(id), "1", state.negative_ttl)
                    .await;
            }
            count_layers(&state, Source::Database);
            state.stats.record(Source::Database, started.elapsed(), false);
            Err(ApiError::NotFound { id, layer: "DB" })
        }
        Err(Missing::Failed(error)) => {
            state.stats.record_error();
            Err(error.into())
        }
    }
}

/// The response for a product some layer had: counted, with its headers and
/// the body encoded when the entry arrived (the bytes `Json(row)` would send).
/// `layer_time` goes into `Server-Timing`; `started..finished` is the read.
fn serve_product(
    state: &AppState,
    id: i64,
    value: &Option<CachedProduct>,
    source: Source,
    layer_time: Duration,
    started: Instant,
    finished: Instant,
) -> Result<Response, ApiError> {
    let Some(product) = value else {
        // An entry another exercise cached as "no such row".
        return Err(negative_hit(state, id, source, started));
    };
    count_layers(state, source);
    state.stats.record_at(source, finished - started, finished, false);
    Ok(with_cache_headers(json_body(product.body()), source, layer_time))
}

fn negative_hit(state: &AppState, id: i64, source: Source, started: Instant) -> ApiError {
    state.metrics.negative_hits.inc();
    state.stats.record(source, started.elapsed(), true);
    ApiError::NotFound {
        id,
        layer: source.header(),
    }
}

const MAX_PAGE: u32 = 100;
const PAGE_HINT: &str = "use e.g. GET /products?category=books&limit=20&offset=0 (limit 1 to 100)";

#[derive(serde::Serialize)]
struct Page {
    category: Option<String>,
    limit: u32,
    offset: u64,
    products: Vec<ProductRow>,
}

async fn list_products(
    State(state): Shared,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    if let Some(unknown) = params
        .keys()
        .find(|k| !matches!(k.as_str(), "category" | "limit" | "offset"))
    {
        return Err(ApiError::bad_request(
            format!("unknown query parameter '{unknown}'"),
            PAGE_HINT,
        ));
    }
    let category = params.get("category").filter(|c| !c.is_empty()).cloned();
    if category.as_ref().is_some_and(|c| c.chars().count() > 100) {
        return Err(ApiError::bad_request(
            "category is longer than 100 characters",
            PAGE_HINT,
        ));
    }
    let limit = match params.get("limit") {
        None => 20,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("limit '{raw}' is not a number from 1 to 100"), PAGE_HINT))?,
    };
    let offset = match params.get("offset") {
        None => 0,
        Some(raw) => raw.parse::<u64>().ok().filter(|n| *n <= 1_000_000_000).ok_or_else(|| {
            ApiError::bad_request(
                format!("offset '{raw}' is not a number from 0 to 1000000000"),
                PAGE_HINT,
            )
        })?,
    };
    let key = state.keys.product_page(category.as_deref(), limit, offset);
    let served = state
        .pages
        .get(&key, || async {
            state
                .db
                .products_page(category.as_deref(), limit, offset)
                .await
                .map(Some)
        })
        .await;
    let served = match served {
        Ok(served) => served,
        Err(error) => {
            state.stats.record_error();
            return Err(error.into());
        }
    };
    let source = source_of(served.layer);
    count_layers(&state, source);
    state.stats.record(source, started.elapsed(), false);
    let products = served.value.as_ref().clone().unwrap_or_default();
    let page = Page {
        category,
        limit,
        offset,
        products,
    };
    Ok(with_cache_headers(Json(page).into_response(), source, served.latency))
}

const CHANGE_HINT: &str = "send e.g. {\"price\": \"24.99\", \"name\": \"Kettle\", \"in_stock\": true}: any of the three; a price from 0 to 99999999.99 with at most 2 decimals, a name of 1 to 200 characters";

/// The body of `PUT /products/{id}`: the price, name and stock flag can
/// change (the workshop's ledger records all three, so `clean` can undo them).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductChange {
    price: Option<serde_json::Value>,
    name: Option<serde_json::Value>,
    in_stock: Option<serde_json::Value>,
}

fn price_of(value: &serde_json::Value) -> Result<Decimal, ApiError> {
    let text = match value {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_string(),
        other => {
            return Err(ApiError::unprocessable(
                format!("price must be a number or a decimal string, not {other}"),
                CHANGE_HINT,
            ))
        }
    };
    let price = Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| ApiError::unprocessable(format!("price '{text}' is not a decimal number"), CHANGE_HINT))?;
    if price.is_sign_negative() && !price.is_zero() {
        return Err(ApiError::unprocessable(
            format!("price {price} is negative"),
            CHANGE_HINT,
        ));
    }
    if price.normalize().scale() > 2 {
        return Err(ApiError::unprocessable(
            format!("price {price} has more than 2 decimals"),
            CHANGE_HINT,
        ));
    }
    if price > Decimal::new(9_999_999_999, 2) {
        return Err(ApiError::unprocessable(
            format!("price {price} is larger than 99999999.99"),
            CHANGE_HINT,
        ));
    }
    Ok(price.normalize())
}

fn name_of(value: &serde_json::Value) -> Result<String, ApiError> {
    let serde_json::Value::String(name) = value else {
        return Err(ApiError::unprocessable(
            format!("name must be a string, not {value}"),
            CHANGE_HINT,
        ));
    };
    let name = name.trim();
    let length = name.chars().count();
    if length == 0 {
        return Err(ApiError::unprocessable("name is empty", CHANGE_HINT));
    }
    if length > NAME_MAX_CHARS {
        return Err(ApiError::unprocessable(
            format!("name is {length} characters long, more than {NAME_MAX_CHARS}"),
            CHANGE_HINT,
        ));
    }
    Ok(name.to_string())
}

fn in_stock_of(value: &serde_json::Value) -> Result<bool, ApiError> {
    value
        .as_bool()
        .ok_or_else(|| ApiError::unprocessable(format!("in_stock must be true or false, not {value}"), CHANGE_HINT))
}

fn change_of(body: &[u8]) -> Result<ProductUpdate, ApiError> {
    let change: ProductChange = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::unprocessable(format!("{e}"), CHANGE_HINT),
        _ => ApiError::bad_request(format!("the body is not valid JSON: {e}"), CHANGE_HINT),
    })?;
    let update = ProductUpdate {
        price: change.price.as_ref().map(price_of).transpose()?,
        name: change.name.as_ref().map(name_of).transpose()?,
        in_stock: change.in_stock.as_ref().map(in_stock_of).transpose()?,
    };
    if update == ProductUpdate::default() {
        return Err(ApiError::unprocessable(
            "nothing to change: the body has no price, name or in_stock",
            CHANGE_HINT,
        ));
    }
    Ok(update)
}

#[derive(serde::Serialize)]
struct Changed {
    product: ProductRow,
    /// Whether the new row reached Valkey (else the old entry was deleted).
    cached: bool,
    /// Processes that received the invalidation; `None`: not published.
    invalidation_receivers: Option<u64>,
    warnings: Vec<String>,
}

async fn put_product(State(state): Shared, Path(raw): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let id = parse_id(&raw)?;
    let change = change_of(&body)?;
    let Some(row) = state.db.update_product(id, &change).await? else {
        return Err(ApiError::NotFound { id, layer: "DB" });
    };
    let key = state.keys.product(id);
    let mut warnings = Vec::new();
    let errors = state.products.counters().snapshot().l2_errors;
    state.products.put(&key, Some(CachedProduct::new(row.clone()))).await;
    let cached = state.valkey.is_some() && state.products.counters().snapshot().l2_errors == errors;
    if !cached {
        // Never leave the old row in L2.
        if let Some(valkey) = &state.valkey {
            if valkey.delete(&key).await.is_err() {
                warnings.push(
                    "Valkey did not take the new row nor delete the old one; it may be served until its L2 TTL ends"
                        .to_string(),
                );
            }
        }
    }
    let mut receivers = None;
    if state.invalidation {
        if let Some(valkey) = &state.valkey {
            match valkey.publish(&state.channel, &key).await {
                Ok(n) => {
                    state.metrics.invalidations_published.inc();
                    state.dashboard.sent.push(&key, n);
                    receivers = Some(n);
                }
                Err(error) => warnings.push(format!(
                    "the change was not announced ({error}); other serve processes keep the old row in L1 until its TTL ends"
                )),
            }
        }
    }
    state.stats.record_write();
    let body = Changed {
        product: row,
        cached,
        invalidation_receivers: receivers,
        warnings,
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

async fn stats(State(state): Shared) -> Json<super::stats::StatsView> {
    Json(state.stats.view())
}

async fn metrics(State(state): Shared) -> Response {
    let counters = state.products.counters().snapshot();
    state
        .metrics
        .invalidations_received
        .set(i64::try_from(counters.invalidations_received).unwrap_or(i64::MAX));
    state.metrics.set_size(
        "l1",
        Some(state.products.l1_bytes().await),
        Some(state.products.l1_entries().await),
    );
    if let Some(valkey) = &state.valkey {
        if let Ok(info) = valkey.info("memory").await {
            let used = info.get("used_memory").and_then(|v| v.parse::<u64>().ok());
            state.metrics.set_size("l2", used, None);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

#[derive(serde::Serialize)]
struct Health {
    /// `ok`, `degraded` (Valkey down: served from the database) or `down`.
    status: &'static str,
    database: Check,
    valkey: Check,
    invalidation: &'static str,
}

#[derive(serde::Serialize)]
struct Check {
    ok: bool,
    latency_ms: Option<f64>,
    error: Option<String>,
}

async fn healthz(State(state): Shared) -> Response {
    let database = match tokio::time::timeout(Duration::from_secs(2), state.db.round_trip()).await {
        Ok(Ok(latency)) => Check {
            ok: true,
            latency_ms: Some(latency.as_secs_f64() * 1000.0),
            error: None,
        },
        Ok(Err(error)) => Check {
            ok: false,
            latency_ms: None,
            error: Some(error.to_string()),
        },
        Err(_) => Check {
            ok: false,
            latency_ms: None,
            error: Some("no answer within 2 s".into()),
        },
    };
    let valkey = match &state.valkey {
        None => Check {
            ok: false,
            latency_ms: None,
            error: Some("not connected at start; restart serve once Valkey answers".into()),
        },
        Some(valkey) => match valkey.round_trip().await {
            Ok(latency) => Check {
                ok: true,
                latency_ms: Some(latency.as_secs_f64() * 1000.0),
                error: None,
            },
            Err(error) => Check {
                ok: false,
                latency_ms: None,
                error: Some(error.to_string()),
            },
        },
    };
    let invalidation = match &state.listener {
        None => "off",
        Some(listener) if listener.is_connected() => "subscribed",
        Some(_) => "not subscribed",
    };
    let (status, code) = match (database.ok, valkey.ok) {
        (true, true) => ("ok", StatusCode::OK),
        (true, false) => ("degraded", StatusCode::OK),
        (false, _) => ("down", StatusCode::SERVICE_UNAVAILABLE),
    };
    let health = Health {
        status,
        database,
        valkey,
        invalidation,
    };
    (code, Json(health)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_gives_milliseconds_to_three_decimals_as_before() {
        for nanos in [
            0,
            499,
            501,
            1_000,
            212_600,
            999_499,
            1_000_000,
            12_345_678,
            3_000_000_001,
        ] {
            let time = Duration::from_nanos(nanos);
            let before = format!("l2;dur={:.3}", time.as_secs_f64() * 1000.0);
            assert_eq!(server_timing("l2", time), before, "{nanos} ns");
        }
    }

    #[test]
    fn the_product_route_is_labelled_without_braces() {
        assert_eq!(endpoint_label(None), "unmatched");
        assert!(matches!(
            endpoint_label(Some("/products/{id}")),
            Cow::Borrowed("/products/:id")
        ));
        assert_eq!(endpoint_label(Some("/stats")), "/stats");
    }
}
