//! The Prometheus metrics of `/metrics`, kept by `prometheus-client` and
//! encoded by it (OpenMetrics text, which Prometheus scrapes as is).

use std::borrow::Cow;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheType {
    pub cache_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Endpoint {
    pub endpoint: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Response {
    pub endpoint: Cow<'static, str>,
    pub status: u16,
}

type HistogramFamily = Family<Endpoint, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub cache_hits: Family<CacheType, Counter>,
    pub cache_misses: Family<CacheType, Counter>,
    pub negative_hits: Counter,
    pub request_duration: HistogramFamily,
    pub responses: Family<Response, Counter>,
    pub cache_size_bytes: Family<CacheType, Gauge>,
    pub cache_entries: Family<CacheType, Gauge>,
    pub invalidations_published: Counter,
    pub invalidations_received: Gauge,
    hot: HotSeries,
}

/// The route every catalogue read takes, as its metrics label.
pub const PRODUCT_ROUTE: &str = "/products/:id";

/// The series every product read touches, looked up once at start: a
/// `Family` lookup takes a lock and hashes the labels on every call. The
/// handles share their values with the families, so `/metrics` shows them
/// as usual (from zero, before the first read).
struct HotSeries {
    l1_hits: Counter,
    l1_misses: Counter,
    l2_hits: Counter,
    l2_misses: Counter,
    product_duration: Histogram,
    product_ok: Counter,
}

impl HotSeries {
    fn new(
        cache_hits: &Family<CacheType, Counter>,
        cache_misses: &Family<CacheType, Counter>,
        request_duration: &HistogramFamily,
        responses: &Family<Response, Counter>,
    ) -> Self {
        let hit = |cache_type| cache_hits.get_or_create(&CacheType { cache_type }).clone();
        let miss = |cache_type| cache_misses.get_or_create(&CacheType { cache_type }).clone();
        let endpoint = Cow::Borrowed(PRODUCT_ROUTE);
        HotSeries {
            l1_hits: hit("l1"),
            l1_misses: miss("l1"),
            l2_hits: hit("l2"),
            l2_misses: miss("l2"),
            product_duration: request_duration
                .get_or_create(&Endpoint {
                    endpoint: endpoint.clone(),
                })
                .clone(),
            product_ok: responses.get_or_create(&Response { endpoint, status: 200 }).clone(),
        }
    }
}

fn duration_histogram() -> Histogram {
    // 50 µs to about 1.6 s: an L1 hit to a slow database read.
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let cache_hits = Family::<CacheType, Counter>::default();
        let cache_misses = Family::<CacheType, Counter>::default();
        let negative_hits = Counter::default();
        let request_duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let responses = Family::<Response, Counter>::default();
        let cache_size_bytes = Family::<CacheType, Gauge>::default();
        let cache_entries = Family::<CacheType, Gauge>::default();
        let invalidations_published = Counter::default();
        let invalidations_received = Gauge::default();
        registry.register("cache_hits", "Product reads a cache layer answered", cache_hits.clone());
        registry.register(
            "cache_misses",
            "Product reads a cache layer did not have",
            cache_misses.clone(),
        );
        registry.register(
            "cache_negative_hits",
            "Reads of a missing product answered by the negative cache",
            negative_hits.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, per endpoint",
            request_duration.clone(),
        );
        registry.register(
            "http_responses",
            "Responses per endpoint and status code",
            responses.clone(),
        );
        registry.register(
            "cache_size_bytes",
            "Memory the cache uses: l1 its keys and JSON values, l2 Valkey's used_memory",
            cache_size_bytes.clone(),
        );
        registry.register("cache_entries", "Entries in the in-process L1", cache_entries.clone());
        registry.register(
            "invalidations_published",
            "Keys this process announced on the invalidation channel",
            invalidations_published.clone(),
        );
        registry.register(
            "invalidations_received",
            "Keys other processes announced that this process dropped from L1",
            invalidations_received.clone(),
        );
        let hot = HotSeries::new(&cache_hits, &cache_misses, &request_duration, &responses);
        Metrics {
            hot,
            registry,
            cache_hits,
            cache_misses,
            negative_hits,
            request_duration,
            responses,
            cache_size_bytes,
            cache_entries,
            invalidations_published,
            invalidations_received,
        }
    }
}

impl Metrics {
    pub fn hit(&self, cache_type: &'static str) {
        match cache_type {
            "l1" => self.hot.l1_hits.inc(),
            "l2" => self.hot.l2_hits.inc(),
            _ => self.cache_hits.get_or_create(&CacheType { cache_type }).inc(),
        };
    }

    pub fn miss(&self, cache_type: &'static str) {
        match cache_type {
            "l1" => self.hot.l1_misses.inc(),
            "l2" => self.hot.l2_misses.inc(),
            _ => self.cache_misses.get_or_create(&CacheType { cache_type }).inc(),
        };
    }

    /// A constant `endpoint` (`Cow::Borrowed`) costs no allocation per response.
    pub fn response(&self, endpoint: Cow<'static, str>, status: u16, elapsed: Duration) {
        if status == 200 && endpoint == PRODUCT_ROUTE {
            self.hot.product_duration.observe(elapsed.as_secs_f64());
            self.hot.product_ok.inc();
            return;
        }
        self.request_duration
            .get_or_create(&Endpoint {
                endpoint: endpoint.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.responses.get_or_create(&Response { endpoint, status }).inc();
    }

    pub fn set_size(&self, cache_type: &'static str, bytes: Option<u64>, entries: Option<u64>) {
        let label = CacheType { cache_type };
        if let Some(bytes) = bytes {
            self.cache_size_bytes
                .get_or_create(&label)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Some(entries) = entries {
            self.cache_entries
                .get_or_create(&label)
                .set(i64::try_from(entries).unwrap_or(i64::MAX));
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
