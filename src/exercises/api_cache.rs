//! Exercise 8, `workshop-cli api-cache`: cache-aside around a slow HTTP API.
//! A built-in upstream (an axum server on a free loopback port, see
//! [`upstream`]) answers weather by city after `--latency` milliseconds and
//! fails a share of the calls (`--failure-rate`); `--upstream URL` asks a
//! real one instead. The run sends the same requests without the cache and
//! through it (keys `{source prefix}weather:{country}:{city}`), counts the
//! upstream calls the cache avoided, takes the upstream down once the cached
//! answers are stale to show what `--stale-if-error` serves within its grace
//! period, and sends many requests for one cold city at once under each
//! stampede protection of exercise 6 (`--mode`), counted in upstream calls.

pub mod upstream;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::{KeyScheme, Valkey};
use crate::config::Config;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::{Outcome, Verdict};
use crate::measure::zipf::KeySampler;
use crate::measure::{self, LatencyRecorder, LatencySummary};
use crate::patterns::stampede::{
    acquire_or_wait, unix_millis, LockSettings, LockWait, Lookup, Protection, SingleFlight, ValkeyLocks,
};
use crate::rng::SplitMix64;

pub const MAX_REQUESTS: u64 = 100_000;
pub const MAX_CONCURRENCY: u64 = 1000;
pub const MAX_LATENCY_MS: u64 = 60_000;
pub const MAX_SECONDS: u64 = 86_400;
/// Weather by city: the upstream's catalogue, busiest first for the Zipf skew.
pub const CITIES: [(&str, &str); 24] = [
    ("de", "Berlin"),
    ("fr", "Paris"),
    ("gb", "London"),
    ("es", "Madrid"),
    ("it", "Rome"),
    ("at", "Vienna"),
    ("ch", "Zurich"),
    ("nl", "Amsterdam"),
    ("be", "Brussels"),
    ("pt", "Lisbon"),
    ("ie", "Dublin"),
    ("no", "Oslo"),
    ("se", "Stockholm"),
    ("fi", "Helsinki"),
    ("dk", "Copenhagen"),
    ("pl", "Warsaw"),
    ("cz", "Prague"),
    ("hu", "Budapest"),
    ("gr", "Athens"),
    ("tr", "Istanbul"),
    ("jp", "Tokyo"),
    ("au", "Sydney"),
    ("ca", "Toronto"),
    ("us", "Chicago"),
];
/// The stampede's cold city: never among the requests of the other phases.
const STAMPEDE_CITY: (&str, &str) = ("is", "Reykjavik");
/// Zipf exponent of the request mix: a few cities are asked most.
const SKEW: f64 = 1.0;
/// Lock waiters look at the cache after 10 ms, doubling up to 100 ms.
const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct ApiCacheOptions {
    /// A real API: a URL, with `{country}` and `{city}` where they go (else
    /// `/weather/{country}/{city}` is appended). `None`: the built-in one.
    pub upstream: Option<String>,
    /// `MIN..MAX` milliseconds (or one number) of the built-in upstream; `None`: 250..750.
    pub latency: Option<String>,
    /// Share of the built-in upstream's calls that fail (0 to 1); `None`: 0.
    pub failure_rate: Option<f64>,
    pub requests: u64,
    /// How many of [`CITIES`] the requests ask for.
    pub cities: u64,
    pub concurrency: u64,
    /// How long a cached answer is fresh, seconds.
    pub max_age: u64,
    /// How long past its freshness a cached answer may still be served when
    /// the upstream fails, seconds (0: never).
    pub stale_if_error: u64,
    /// The stampede protections to compare on one cold city.
    pub modes: Vec<Protection>,
    /// Requests sent at once for the cold city.
    pub stampede: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LatencyRange {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl LatencyRange {
    /// `250..750` or `300` (always that long).
    pub fn parse(text: &str) -> Result<LatencyRange> {
        let bad = || {
            WorkshopError::invalid(format!(
                "--latency '{text}' is not a range of milliseconds; write MIN..MAX, e.g. 250..750, or one number, each from 0 to {MAX_LATENCY_MS}"
            ))
        };
        let (low, high) = text.trim().split_once("..").unwrap_or((text.trim(), text.trim()));
        let low: u64 = low.trim().parse().map_err(|_| bad())?;
        let high: u64 = high.trim().parse().map_err(|_| bad())?;
        if low > high || high > MAX_LATENCY_MS {
            return Err(bad());
        }
        Ok(LatencyRange {
            min_ms: low,
            max_ms: high,
        })
    }
}

/// What one phase's requests did, added up.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Pass {
    pub requests: u64,
    /// HTTP calls made to the upstream (a timeout or a 5xx counts too).
    pub upstream_calls: u64,
    /// Answered from a fresh cached entry.
    pub hits: u64,
    /// This request called the upstream and got an answer.
    pub fetched: u64,
    /// Waited for another request's call (single flight or the lock) and got its answer.
    pub waited: u64,
    /// Lock mode: waited as long as it may, or Valkey did not answer, then called the upstream itself.
    pub fell_back: u64,
    /// The upstream failed and a stale entry within the grace period was served.
    pub served_stale: u64,
    /// The upstream failed and nothing could be served: the client got an error.
    pub failed: u64,
    /// Requests for which Valkey did not answer at least once.
    pub cache_unavailable: u64,
    /// Every request, from its start until it had its answer (or its error).
    pub latency: Option<LatencySummary>,
    /// The requests answered from the cache alone.
    pub hit_latency: Option<LatencySummary>,
    #[serde(serialize_with = "measure::as_millis", rename = "elapsed_ms")]
    pub elapsed: Duration,
}

/// The upstream is down once every cached answer is past its freshness.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outage {
    /// One request per city, after this wait for the entries to go stale.
    #[serde(serialize_with = "measure::as_millis", rename = "waited_ms")]
    pub waited: Duration,
    /// Plain cache-aside: a stale entry is not served.
    pub without_stale_if_error: Pass,
    /// `--stale-if-error`: the stale entry is served within the grace period.
    pub with_stale_if_error: Option<Pass>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StampedeRun {
    pub mode: Protection,
    pub pass: Pass,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiCacheOutcome {
    pub exercise: &'static str,
    /// The URL the client asks (`{country}`, `{city}` filled per request).
    pub upstream: String,
    pub built_in_upstream: bool,
    pub latency_range: Option<LatencyRange>,
    pub failure_rate: Option<f64>,
    pub requests: u64,
    pub cities: u64,
    pub concurrency: u64,
    pub max_age_s: u64,
    pub stale_if_error_s: u64,
    /// The key of the busiest city, as an example of the layout.
    pub key_example: String,
    pub without_cache: Pass,
    pub with_cache: Pass,
    /// Requests minus upstream calls, with the cache.
    pub calls_avoided: u64,
    /// Without-cache p50 / with-cache p50.
    pub speedup_p50: Option<f64>,
    /// `None` with `--upstream` (a real API cannot be taken down from here).
    pub outage: Option<Outage>,
    pub stampede_city: String,
    pub stampede_requests: u64,
    pub stampede: Vec<StampedeRun>,
    pub warnings: Vec<String>,
}

impl Outcome for ApiCacheOutcome {
    fn verdict(&mut self) -> Verdict {
        let cached = &self.with_cache;
        if cached.requests > 0 && cached.cache_unavailable == cached.requests {
            return Verdict::failed(WorkshopError::incomplete(
                "Valkey answered none of the cached requests, so every one went to the upstream and nothing could be compared; check VALKEY_URL",
            ));
        }
        let answered = self.without_cache.fetched + cached.fetched;
        if answered == 0 && self.failure_rate.unwrap_or(0.0) < 1.0 {
            return Verdict::failed(WorkshopError::incomplete(format!(
                "the upstream answered none of {} calls; check that {} answers GET with 200",
                self.without_cache.upstream_calls + cached.upstream_calls,
                self.upstream
            )));
        }
        Verdict::Complete
    }
}

fn validate(options: &ApiCacheOptions) -> Result<(Option<LatencyRange>, Option<f64>)> {
    let range = |name: &str, value: u64, low: u64, high: u64| {
        if (low..=high).contains(&value) {
            Ok(())
        } else {
            Err(WorkshopError::invalid(format!(
                "--{name} must be from {low} to {high} (got {value})"
            )))
        }
    };
    range("requests", options.requests, 1, MAX_REQUESTS)?;
    range("cities", options.cities, 1, CITIES.len() as u64)?;
    range("concurrency", options.concurrency, 1, MAX_CONCURRENCY)?;
    range("max-age", options.max_age, 1, MAX_SECONDS)?;
    range("stale-if-error", options.stale_if_error, 0, MAX_SECONDS)?;
    range("stampede", options.stampede, 1, MAX_CONCURRENCY)?;
    if let Some(rate) = options.failure_rate {
        if !(0.0..=1.0).contains(&rate) {
            return Err(WorkshopError::invalid(format!(
                "--failure-rate must be a share from 0 to 1, e.g. 0.1 for 10 % (got {rate})"
            )));
        }
    }
    if options.upstream.is_some() {
        for (given, flag) in [
            (options.latency.is_some(), "--latency"),
            (options.failure_rate.is_some(), "--failure-rate"),
        ] {
            if given {
                return Err(WorkshopError::invalid(format!(
                    "{flag} shapes the built-in upstream only; a real --upstream has its own latency and failures, so leave out one of the two"
                )));
            }
        }
        return Ok((None, None));
    }
    let latency = LatencyRange::parse(options.latency.as_deref().unwrap_or("250..750"))?;
    Ok((Some(latency), Some(options.failure_rate.unwrap_or(0.0))))
}

/// `--upstream` as the template the client fills: http(s) only; without
/// `{city}` in it, `/weather/{country}/{city}` is appended.
pub fn upstream_template(raw: &str) -> Result<String> {
    let parsed = url::Url::parse(raw.trim()).map_err(|e| {
        WorkshopError::invalid(format!(
            "--upstream '{raw}' is not a URL ({e}); give e.g. http://127.0.0.1:9000 or https://api.example.com/weather?q={{city}},{{country}}"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WorkshopError::invalid(format!(
            "--upstream '{raw}' must be an http:// or https:// URL"
        )));
    }
    let raw = raw.trim();
    if raw.contains("{city}") {
        Ok(raw.to_string())
    } else {
        Ok(format!("{}/weather/{{country}}/{{city}}", raw.trim_end_matches('/')))
    }
}

/// The template with one city's names, percent-encoded.
fn upstream_url(template: &str, country: &str, city: &str) -> String {
    let encode = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    template
        .replace("{country}", &encode(country))
        .replace("{city}", &encode(city))
}

pub async fn measure(config: &Config, options: ApiCacheOptions, progress: &dyn RunProgress) -> Result<ApiCacheOutcome> {
    let (latency_range, failure_rate) = validate(&options)?;
    let template = options.upstream.as_deref().map(upstream_template).transpose()?;
    progress.phase("connecting", None);
    let valkey = Valkey::connect(&config.valkey, config.connect_timeout).await?;
    valkey.round_trip().await?;
    let fake = match latency_range {
        Some(range) if template.is_none() => Some(
            upstream::FakeUpstream::start(upstream::Behaviour {
                min_latency: Duration::from_millis(range.min_ms),
                max_latency: Duration::from_millis(range.max_ms),
                failure_rate: failure_rate.unwrap_or(0.0),
                seed: options.seed,
            })
            .await
            .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot start the built-in upstream: {e}")))?,
        ),
        _ => None,
    };
    let template = template
        .or_else(|| fake.as_ref().map(upstream::FakeUpstream::url))
        .unwrap_or_default();
    // A call may take the slowest latency and then some; a real API gets 10 s.
    let slowest = latency_range.map_or(Duration::from_secs(10), |r| Duration::from_millis(r.max_ms));
    let http = reqwest::Client::builder()
        .timeout(slowest * 2 + Duration::from_secs(2))
        .build()
        .map_err(|e| WorkshopError::Other(e.into()))?;
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    let lock_ttl = slowest * 2 + Duration::from_secs(1);
    let api = ApiCache {
        http,
        template: template.clone(),
        valkey: valkey.clone(),
        keys: keys.clone(),
        max_age: Duration::from_secs(options.max_age),
        grace: Duration::from_secs(options.stale_if_error),
        calls: Arc::new(AtomicU64::new(0)),
        latest_fresh_until_ms: Arc::new(AtomicU64::new(0)),
        locks: ValkeyLocks::new(valkey.clone()).await,
        lock: LockSettings {
            ttl: lock_ttl,
            wait: lock_ttl + slowest * 2 + Duration::from_secs(1),
            first_poll: FIRST_POLL,
            max_poll: MAX_POLL,
        },
        flights: Arc::new(SingleFlight::default()),
    };
    let cities: Vec<(&str, &str)> = CITIES[..options.cities as usize].to_vec();
    let all_keys: Vec<String> = cities
        .iter()
        .chain(std::iter::once(&STAMPEDE_CITY))
        .map(|(country, city)| keys.weather(country, city))
        .collect();
    for key in &all_keys {
        valkey.delete(key).await?;
        valkey.delete(&keys.lock_for(key)).await?;
    }
    let sequence = request_sequence(&cities, options.requests, options.seed);
    let serve_stale = options.stale_if_error > 0;

    let result = async {
        progress.phase("without the cache", Some(options.requests));
        let without_cache = run_pass(options.concurrency, &sequence, progress, &api.calls, |_, city| {
            api.direct(city)
        })
        .await;
        progress.phase("through the cache", Some(options.requests));
        let with_cache = run_pass(options.concurrency, &sequence, progress, &api.calls, |n, city| {
            api.request(city, Protection::None, serve_stale, n)
        })
        .await;

        let outage = match &fake {
            Some(fake) => Some(outage(&api, fake, &cities, options.concurrency, serve_stale, progress).await),
            None => None,
        };
        let mut stampede = Vec::new();
        let cold = vec![STAMPEDE_CITY; options.stampede as usize];
        let cold_key = keys.weather(STAMPEDE_CITY.0, STAMPEDE_CITY.1);
        for mode in &options.modes {
            valkey.delete(&cold_key).await?;
            valkey.delete(&keys.lock_for(&cold_key)).await?;
            progress.phase(&format!("stampede: {}", mode.label()), Some(options.stampede));
            let pass = run_pass(options.stampede, &cold, progress, &api.calls, |n, city| {
                api.request(city, *mode, true, n)
            })
            .await;
            stampede.push(StampedeRun { mode: *mode, pass });
        }
        Ok::<_, WorkshopError>((without_cache, with_cache, outage, stampede))
    }
    .await;
    progress.phase("cleaning up", None);
    for key in &all_keys {
        let _ = valkey.delete(key).await;
        let _ = valkey.delete(&keys.lock_for(key)).await;
    }
    progress.finish_phase();
    let (without_cache, with_cache, outage, stampede) = result?;
    drop(fake);

    let mut warnings = Vec::new();
    if failure_rate == Some(1.0) {
        warnings.push("--failure-rate 1: the upstream answers nothing, so there is nothing to cache".to_string());
    }
    let speedup_p50 = match (&without_cache.latency, &with_cache.latency) {
        (Some(slow), Some(fast)) => measure::speedup(slow, fast),
        _ => None,
    };
    Ok(ApiCacheOutcome {
        exercise: "api-cache",
        upstream: template,
        built_in_upstream: latency_range.is_some(),
        latency_range,
        failure_rate,
        requests: options.requests,
        cities: options.cities,
        concurrency: options.concurrency,
        max_age_s: options.max_age,
        stale_if_error_s: options.stale_if_error,
        key_example: keys.weather(CITIES[0].0, CITIES[0].1),
        calls_avoided: with_cache.requests.saturating_sub(with_cache.upstream_calls),
        without_cache,
        with_cache,
        speedup_p50,
        outage,
        stampede_city: format!("{}/{}", STAMPEDE_CITY.0, STAMPEDE_CITY.1),
        stampede_requests: options.stampede,
        stampede,
        warnings,
    })
}

/// The cities the requests ask for, in order: Zipf-skewed, the same for a seed.
fn request_sequence<'a>(cities: &[(&'a str, &'a str)], requests: u64, seed: u64) -> Vec<(&'a str, &'a str)> {
    let sampler = KeySampler::new(cities.len() as u64, SKEW);
    let mut rng = SplitMix64::new(seed);
    (0..requests)
        .map(|_| cities[(sampler.sample(&mut rng) - 1) as usize])
        .collect()
}

/// The outage: wait until every cached answer is stale, take the upstream
/// down, ask each city once with stale-if-error (when it is on) and once
/// without, then bring the upstream back.
async fn outage(
    api: &ApiCache,
    fake: &upstream::FakeUpstream,
    cities: &[(&str, &str)],
    concurrency: u64,
    serve_stale: bool,
    progress: &dyn RunProgress,
) -> Outage {
    progress.phase("waiting for the cached answers to go stale", None);
    let stale_at = api.latest_fresh_until_ms.load(Ordering::SeqCst) as f64 + 50.0;
    let waited = Duration::from_millis((stale_at - unix_millis()).max(0.0) as u64);
    tokio::time::sleep(waited).await;
    fake.set_down(true);
    // With the grace period first: the entries are then surely within it.
    let with_stale_if_error = if serve_stale {
        progress.phase("upstream down, stale-if-error", Some(cities.len() as u64));
        Some(
            run_pass(concurrency, cities, progress, &api.calls, |n, city| {
                api.request(city, Protection::None, true, n)
            })
            .await,
        )
    } else {
        None
    };
    progress.phase("upstream down, plain cache-aside", Some(cities.len() as u64));
    let without_stale_if_error = run_pass(concurrency, cities, progress, &api.calls, |n, city| {
        api.request(city, Protection::None, false, n)
    })
    .await;
    fake.set_down(false);
    Outage {
        waited,
        without_stale_if_error,
        with_stale_if_error,
    }
}

/// How one request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Hit,
    Fetched,
    Waited,
    FellBack,
    Stale,
    Failed,
}

struct Reply {
    answer: Answer,
    cache_unavailable: bool,
}

/// Sends `sequence` with `concurrency` requests in flight; `send(n, city)` is request number n.
async fn run_pass<'a, F, Fut>(
    concurrency: u64,
    sequence: &[(&'a str, &'a str)],
    progress: &dyn RunProgress,
    calls: &AtomicU64,
    send: F,
) -> Pass
where
    F: Fn(u64, (&'a str, &'a str)) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let calls_before = calls.load(Ordering::SeqCst);
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let workers = (0..concurrency.min(sequence.len() as u64)).map(|_| async {
        let mut pass = Pass::default();
        let mut all = LatencyRecorder::new();
        let mut hits = LatencyRecorder::new();
        loop {
            let index = next.fetch_add(1, Ordering::SeqCst);
            let Some(city) = sequence.get(index) else {
                break;
            };
            let asked = Instant::now();
            let reply = send(index as u64, *city).await;
            let took = asked.elapsed();
            all.record(took);
            pass.requests += 1;
            pass.cache_unavailable += u64::from(reply.cache_unavailable);
            match reply.answer {
                Answer::Hit => {
                    hits.record(took);
                    pass.hits += 1;
                }
                Answer::Fetched => pass.fetched += 1,
                Answer::Waited => pass.waited += 1,
                Answer::FellBack => pass.fell_back += 1,
                Answer::Stale => pass.served_stale += 1,
                Answer::Failed => pass.failed += 1,
            }
            progress.advance(1);
        }
        (pass, all, hits)
    });
    let results = futures_util::future::join_all(workers).await;
    let mut total = Pass::default();
    let mut all = LatencyRecorder::new();
    let mut hits = LatencyRecorder::new();
    for (pass, a, h) in results {
        total.requests += pass.requests;
        total.hits += pass.hits;
        total.fetched += pass.fetched;
        total.waited += pass.waited;
        total.fell_back += pass.fell_back;
        total.served_stale += pass.served_stale;
        total.failed += pass.failed;
        total.cache_unavailable += pass.cache_unavailable;
        all.merge(&a);
        hits.merge(&h);
    }
    total.elapsed = started.elapsed();
    total.upstream_calls = calls.load(Ordering::SeqCst) - calls_before;
    total.latency = all.summary();
    total.hit_latency = hits.summary();
    progress.finish_phase();
    total
}

/// A cached upstream answer: the body, and until when it is fresh.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    body: String,
    fetched_at_ms: u64,
    fresh_until_ms: u64,
}

enum Found {
    Fresh,
    /// Past its freshness, still within the grace period (the key lives that long).
    Stale,
    Miss,
    Unavailable,
}

/// A single flight's result, shared by everyone who awaited it.
#[derive(Clone, Copy)]
struct Flight {
    answered: bool,
    /// The flight called the upstream (rather than finding a fresh entry).
    called: bool,
}

/// Cache-aside around the upstream, with each stampede protection.
struct ApiCache {
    http: reqwest::Client,
    template: String,
    valkey: Valkey,
    keys: KeyScheme,
    max_age: Duration,
    grace: Duration,
    /// Every HTTP call to the upstream, counted as it starts.
    calls: Arc<AtomicU64>,
    /// The freshness end of the newest stored entry (Unix ms).
    latest_fresh_until_ms: Arc<AtomicU64>,
    locks: ValkeyLocks,
    lock: LockSettings,
    flights: Arc<SingleFlight<Flight>>,
}

impl ApiCache {
    /// One HTTP GET; the body when the upstream answered 2xx.
    async fn call(&self, (country, city): (&str, &str)) -> Option<String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let response = self
            .http
            .get(upstream_url(&self.template, country, city))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    }

    /// Without the cache: every request is a call.
    async fn direct(&self, city: (&str, &str)) -> Reply {
        let answer = if self.call(city).await.is_some() {
            Answer::Fetched
        } else {
            Answer::Failed
        };
        Reply {
            answer,
            cache_unavailable: false,
        }
    }

    async fn look(&self, key: &str) -> Found {
        match self.valkey.get(key).await {
            Ok(Some(text)) => match serde_json::from_str::<Entry>(&text) {
                Ok(entry) if entry.fresh_until_ms as f64 > unix_millis() => Found::Fresh,
                Ok(_) => Found::Stale,
                Err(_) => Found::Miss,
            },
            Ok(None) => Found::Miss,
            Err(_) => Found::Unavailable,
        }
    }

    /// Calls the upstream and stores a good answer for max-age plus the grace
    /// period. `Some(stored)` when the upstream answered.
    async fn fetch_and_store(&self, city: (&str, &str), key: &str) -> Option<bool> {
        let body = self.call(city).await?;
        let now = unix_millis() as u64;
        let fresh_until_ms = now + u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX);
        let entry = Entry {
            body,
            fetched_at_ms: now,
            fresh_until_ms,
        };
        let text = serde_json::to_string(&entry).unwrap_or_default();
        let stored = self
            .valkey
            .set_with_ttl(key, &text, self.max_age + self.grace)
            .await
            .is_ok();
        if stored {
            self.latest_fresh_until_ms.fetch_max(fresh_until_ms, Ordering::SeqCst);
        }
        Some(stored)
    }

    /// One request through the cache. A fresh entry is a hit; otherwise the
    /// upstream is called under `protection`. When that call fails, a stale
    /// entry (within the grace period) is served if `serve_stale`.
    async fn request(&self, city: (&str, &str), protection: Protection, serve_stale: bool, n: u64) -> Reply {
        let started = Instant::now();
        let key = self.keys.weather(city.0, city.1);
        let (had_stale, mut unavailable) = match self.look(&key).await {
            Found::Fresh => {
                return Reply {
                    answer: Answer::Hit,
                    cache_unavailable: false,
                }
            }
            Found::Stale => (true, false),
            Found::Miss => (false, false),
            Found::Unavailable => (false, true),
        };
        let answered: Option<Answer> = match protection {
            Protection::None | Protection::Xfetch => self.fetch_and_store(city, &key).await.map(|stored| {
                unavailable |= !stored;
                Answer::Fetched
            }),
            Protection::SingleFlight => {
                let (flight, led) = self
                    .flights
                    .run(&key, || async {
                        // Re-check: an earlier flight may have filled the cache since our lookup.
                        if let Found::Fresh = self.look(&key).await {
                            return Ok::<_, Infallible>(Flight {
                                answered: true,
                                called: false,
                            });
                        }
                        let answered = self.fetch_and_store(city, &key).await.is_some();
                        Ok(Flight { answered, called: true })
                    })
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                flight.answered.then_some(match (led, flight.called) {
                    (true, true) => Answer::Fetched,
                    (true, false) => Answer::Hit,
                    (false, _) => Answer::Waited,
                })
            }
            Protection::Lock if unavailable => self.call(city).await.map(|_| Answer::FellBack),
            Protection::Lock => {
                let lock_key = self.keys.lock_for(&key);
                let wait = acquire_or_wait(&self.locks, &lock_key, &self.lock, n, started, || async {
                    match self.look(&key).await {
                        Found::Fresh => Lookup::Hit(()),
                        Found::Stale | Found::Miss => Lookup::Miss,
                        Found::Unavailable => Lookup::Failed,
                    }
                })
                .await;
                match wait {
                    LockWait::Acquired { token, polls } => {
                        // Re-check: the holder before us may have filled it and released.
                        let answer = if let Found::Fresh = self.look(&key).await {
                            Some(if polls > 0 { Answer::Waited } else { Answer::Hit })
                        } else {
                            self.fetch_and_store(city, &key).await.map(|_| Answer::Fetched)
                        };
                        let _ = self.locks.release(&lock_key, &token).await;
                        answer
                    }
                    LockWait::Filled { .. } => Some(Answer::Waited),
                    LockWait::TimedOut { .. } => self.fetch_and_store(city, &key).await.map(|_| Answer::FellBack),
                    LockWait::Unavailable => {
                        unavailable = true;
                        self.call(city).await.map(|_| Answer::FellBack)
                    }
                }
            }
        };
        let answer = match answered {
            Some(answer) => answer,
            None if serve_stale && had_stale => Answer::Stale,
            None => Answer::Failed,
        };
        Reply {
            answer,
            cache_unavailable: unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_a_range_or_one_number_of_milliseconds() {
        assert_eq!(
            LatencyRange::parse("250..750").unwrap(),
            LatencyRange {
                min_ms: 250,
                max_ms: 750
            }
        );
        assert_eq!(LatencyRange::parse("300").unwrap().max_ms, 300);
        assert_eq!(
            LatencyRange::parse("750..250").unwrap_err().to_string(),
            "--latency '750..250' is not a range of milliseconds; write MIN..MAX, e.g. 250..750, or one number, each from 0 to 60000"
        );
        assert!(LatencyRange::parse("fast").is_err());
    }

    #[test]
    fn an_upstream_without_placeholders_gets_the_weather_path() {
        assert_eq!(
            upstream_template("http://127.0.0.1:9000/").unwrap(),
            "http://127.0.0.1:9000/weather/{country}/{city}"
        );
        let template = upstream_template("https://api.example.com/w?q={city},{country}").unwrap();
        assert_eq!(
            upstream_url(&template, "de", "Frankfurt am Main"),
            "https://api.example.com/w?q=Frankfurt+am+Main,de"
        );
        assert!(upstream_template("ftp://example.com").is_err());
        assert!(upstream_template("not a url").is_err());
    }

    #[test]
    fn the_request_mix_is_skewed_and_repeatable() {
        let a = request_sequence(&CITIES, 1000, 7);
        assert_eq!(a, request_sequence(&CITIES, 1000, 7));
        let first = a.iter().filter(|c| **c == CITIES[0]).count();
        let last = a.iter().filter(|c| **c == CITIES[23]).count();
        assert!(first > 5 * last.max(1), "{first} vs {last}");
    }
}
