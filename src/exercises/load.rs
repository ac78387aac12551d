//! `workshop-cli load`: a load generator for `serve` (or any service with
//! `GET`/`PUT /products/{id}`): closed-loop tasks (`--concurrency`), each
//! optionally paced (`--rate` shared out), Zipf-skewed ids, a share of PUTs.
//! Latencies go into HDR histograms, overall, per `X-Cache` layer and per second.
//!
//! The generator must not be the bottleneck of what it measures (`just bench`
//! compares it with `wrk -c 50 -t 2` on the same URL), so it is built like wrk:
//! two threads, each with its own single-thread runtime and half the tasks; each task owns one keep-alive HTTP/1.1
//! connection, spoken directly ([`wire`]: one write per request, the answer
//! parsed in place), so a response wakes no other task; request paths are
//! built once, each request's bytes go into the task's own buffer; every task keeps
//! its own counters and histograms, merged when the run ends, and hands each
//! finished second to the collector over a channel: no lock is taken per request.

mod wire;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Uri;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use wire::{Failure, Wire};

use super::progress::RunProgress;
use crate::config::Config;
use crate::error::{Result, WorkshopError};
use crate::measure::zipf::KeySampler;
use crate::measure::{LatencyRecorder, LatencySummary};
use crate::rng::SplitMix64;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub url: String,
    pub concurrency: u64,
    /// Requests per second over all tasks; `None`: as fast as they go.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Percent of requests that are GETs; the rest are PUTs of a new price.
    pub read_ratio: u64,
    pub skew: f64,
    pub first_id: i64,
    pub last_id: i64,
    pub seed: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadSecond {
    pub second: u64,
    pub requests: u64,
    /// L1 + L2 answers over all GETs answered with an `X-Cache` header.
    pub hit_rate: f64,
    #[serde(serialize_with = "crate::measure::as_optional_millis", rename = "p50_ms")]
    pub p50: Option<Duration>,
    #[serde(serialize_with = "crate::measure::as_optional_millis", rename = "p99_ms")]
    pub p99: Option<Duration>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadOutcome {
    pub exercise: &'static str,
    pub url: String,
    pub concurrency: u64,
    pub rate: Option<f64>,
    pub read_ratio: u64,
    pub skew: f64,
    #[serde(serialize_with = "crate::measure::as_millis", rename = "elapsed_ms")]
    pub elapsed: Duration,
    pub requests: u64,
    pub reads: u64,
    pub writes: u64,
    /// Requests that got no HTTP answer (refused, reset, timed out).
    pub failed: u64,
    pub throughput: f64,
    pub statuses: BTreeMap<u16, u64>,
    pub latency: Option<LatencySummary>,
    /// GETs by the `X-Cache` header they came back with.
    pub by_layer: BTreeMap<String, LatencySummary>,
    pub timeline: Vec<LoadSecond>,
}

fn usage(message: String) -> WorkshopError {
    WorkshopError::invalid(message)
}

pub fn validate(options: &LoadOptions) -> Result<()> {
    let url = url::Url::parse(&options.url).map_err(|e| {
        usage(format!(
            "--url {} is not a URL ({e}); use e.g. http://127.0.0.1:8080",
            options.url
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(usage(format!(
            "--url {} is not http:// or https://; use e.g. http://127.0.0.1:8080",
            options.url
        )));
    }
    if options.first_id > options.last_id {
        return Err(usage(format!(
            "--ids {}..{} is empty; use e.g. --ids 1..10000",
            options.first_id, options.last_id
        )));
    }
    Ok(())
}

/// A request with no complete answer after this long counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Paths `/products/{id}` are built once when the id range has at most this many
/// ids (the default 1..10000 has); a wider range formats each request's path.
const PATH_TABLE_LIMIT: u64 = 100_000;

/// Where the requests go: resolved once, before the first connection.
struct Target {
    addresses: Vec<SocketAddr>,
    /// The `Host` header: the URL's host, and its port if it names one.
    authority: String,
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
    /// The URL's path without its trailing `/`, e.g. `` or `/api`.
    prefix: String,
    /// `prefix/products/{first_id + i}` for every id, when the range is small enough.
    paths: Vec<String>,
}

impl Target {
    /// Writes the path of product `id` (at `offset` in the range) into `out`.
    fn write_path(&self, offset: u64, id: i64, out: &mut Vec<u8>) {
        match usize::try_from(offset).ok().and_then(|i| self.paths.get(i)) {
            Some(path) => out.extend_from_slice(path.as_bytes()),
            // The prefix was checked with the first id: the same with any other id is a path too.
            None => {
                out.extend_from_slice(self.prefix.as_bytes());
                out.extend_from_slice(b"/products/");
                out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
            }
        }
    }
}

/// `prefix/products/{id}`, checked to be a request path.
fn product_path(prefix: &str, id: i64) -> Result<String> {
    let path = format!("{prefix}/products/{id}");
    match Uri::try_from(path.as_str()) {
        Ok(_) => Ok(path),
        Err(e) => Err(usage(format!("--url: {path} is not a request path ({e})"))),
    }
}

async fn resolve(options: &LoadOptions, span: u64) -> Result<Target> {
    let url = url::Url::parse(&options.url).map_err(|e| usage(format!("--url {}: {e}", options.url)))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let connect_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((connect_host.as_str(), port))
        .await
        .map_err(|e| {
            usage(format!(
                "--url {}: cannot resolve {host} ({e}); check the host name",
                options.url
            ))
        })?
        .collect();
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    if authority.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(usage(format!("--url {}: {authority} is not a host", options.url)));
    }
    let tls = if url.scheme() == "https" {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot set up TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(connect_host)
            .map_err(|e| usage(format!("--url {}: {host} is not a TLS server name ({e})", options.url)))?;
        Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
    } else {
        None
    };
    let prefix = url.path().trim_end_matches('/').to_string();
    let paths = if span <= PATH_TABLE_LIMIT {
        (options.first_id..=options.last_id)
            .map(|id| product_path(&prefix, id))
            .collect::<Result<_>>()?
    } else {
        product_path(&prefix, options.first_id)?;
        Vec::new()
    };
    Ok(Target {
        addresses,
        authority,
        tls,
        prefix,
        paths,
    })
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One keep-alive connection, owned by the task that sends on it.
type Link = Wire<Box<dyn Stream>>;

async fn connect(target: &Target) -> std::io::Result<Link> {
    let tcp = tokio::net::TcpStream::connect(target.addresses.as_slice()).await?;
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Stream> = match &target.tls {
        None => Box::new(tcp),
        Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
    };
    Ok(Wire::new(stream))
}

/// The `X-Cache` layers serve answers with; any other value is kept by name.
const LAYERS: [&str; 3] = ["L1", "L2", "DB"];

enum Layer {
    Known(usize),
    Other(String),
}

impl Layer {
    fn of(value: &[u8]) -> Option<Layer> {
        match LAYERS.iter().position(|layer| layer.as_bytes() == value) {
            Some(i) => Some(Layer::Known(i)),
            None => std::str::from_utf8(value).ok().map(|s| Layer::Other(s.to_string())),
        }
    }

    fn is_hit(&self) -> bool {
        matches!(self, Layer::Known(0 | 1))
    }
}

/// Sends `request` on `slot`'s connection (a new one if there is none) and reads the whole
/// answer: its status and `X-Cache` layer, or `None` when no complete answer came.
async fn exchange(slot: &mut Option<Link>, target: &Target, request: &[u8]) -> Option<(u16, Option<Layer>)> {
    let reused = slot.is_some();
    if slot.is_none() {
        *slot = Some(connect(target).await.ok()?);
    }
    let link = slot.as_mut()?;
    let mut result = link.exchange(request, "x-cache", Layer::of).await;
    if reused && matches!(result, Err(Failure::NoAnswer(_))) {
        // The server closed the connection between requests (an idle timeout):
        // that is no failure; the request goes again, once, on a new one.
        *slot = None;
        let link = slot.insert(connect(target).await.ok()?);
        result = link.exchange(request, "x-cache", Layer::of).await;
    }
    match result {
        Ok(answer) => {
            if !answer.keep_alive {
                *slot = None;
            }
            Some((answer.status, answer.header.flatten()))
        }
        Err(_) => {
            *slot = None;
            None
        }
    }
}

/// Writes request `read` (a GET) or a PUT of a new price, for the product at `offset`, into `out`.
fn request(target: &Target, offset: u64, id: i64, read: bool, rng: &mut SplitMix64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(if read { b"GET " } else { b"PUT " });
    target.write_path(offset, id, out);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(target.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    if read {
        out.extend_from_slice(b"\r\n");
    } else {
        let cents = 100 + rng.below(99_900);
        let body = format!("{{\"price\": \"{}.{:02}\"}}", cents / 100, cents % 100);
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}

/// One second of the run, of one task while it lasts, then of all tasks.
#[derive(Default)]
struct Second {
    requests: u64,
    hits: u64,
    layered: u64,
    latency: LatencyRecorder,
}

impl Second {
    fn merge(&mut self, other: &Second) {
        self.requests += other.requests;
        self.hits += other.hits;
        self.layered += other.layered;
        self.latency.merge(&other.latency);
    }
}

/// What one task counted; tasks' tallies are added up when the run ends.
struct Tally {
    reads: u64,
    writes: u64,
    failed: u64,
    /// Answers by status code (httparse reads three digits: 100..=999).
    statuses: Vec<u64>,
    latency: LatencyRecorder,
    layers: [Option<LatencyRecorder>; LAYERS.len()],
    other_layers: BTreeMap<String, LatencyRecorder>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            reads: 0,
            writes: 0,
            failed: 0,
            statuses: vec![0; 1000],
            latency: LatencyRecorder::new(),
            layers: Default::default(),
            other_layers: BTreeMap::new(),
        }
    }

    fn layer(&mut self, layer: Layer) -> &mut LatencyRecorder {
        match layer {
            Layer::Known(i) => self.layers[i].get_or_insert_with(LatencyRecorder::new),
            Layer::Other(name) => self.other_layers.entry(name).or_default(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.failed += other.failed;
        for (total, n) in self.statuses.iter_mut().zip(&other.statuses) {
            *total += n;
        }
        self.latency.merge(&other.latency);
        for (total, recorder) in self.layers.iter_mut().zip(&other.layers) {
            if let Some(recorder) = recorder {
                total.get_or_insert_with(LatencyRecorder::new).merge(recorder);
            }
        }
        for (name, recorder) in &other.other_layers {
            self.other_layers.entry(name.clone()).or_default().merge(recorder);
        }
    }

    fn statuses(&self) -> BTreeMap<u16, u64> {
        (0u16..)
            .zip(&self.statuses)
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code, *n))
            .collect()
    }

    fn by_layer(&self) -> BTreeMap<String, LatencySummary> {
        let known = LAYERS
            .iter()
            .zip(&self.layers)
            .filter_map(|(name, recorder)| Some((name.to_string(), recorder.as_ref()?.summary()?)));
        let other = self
            .other_layers
            .iter()
            .filter_map(|(name, recorder)| Some((name.clone(), recorder.summary()?)));
        known.chain(other).collect()
    }
}

/// What every task shares; read only.
struct Plan {
    target: Target,
    sampler: KeySampler,
    options: LoadOptions,
    started: Instant,
    deadline: Instant,
    pause: Option<Duration>,
}

/// One closed-loop task: a request, its whole answer, the next. Each second it has
/// finished goes to the collector (`seconds`); its tally is returned at the end.
async fn run_task(plan: Arc<Plan>, task: u64, seconds: mpsc::UnboundedSender<(u64, Second)>) -> Result<Tally> {
    let options = &plan.options;
    let mut rng = SplitMix64::new(options.seed ^ (task + 1).wrapping_mul(0x9e37_79b9));
    let mut tally = Tally::new();
    let mut link = None;
    let mut bytes = Vec::with_capacity(256);
    let mut current: (u64, Second) = (0, Second::default());
    let mut next = Instant::now();
    while Instant::now() < plan.deadline {
        if let Some(pause) = plan.pause {
            tokio::time::sleep_until(next.into()).await;
            next += pause;
            if Instant::now() >= plan.deadline {
                break;
            }
        }
        let offset = plan.sampler.sample(&mut rng);
        let id = options.first_id + i64::try_from(offset).unwrap_or(0);
        let read = rng.percent(options.read_ratio);
        request(&plan.target, offset, id, read, &mut rng, &mut bytes);
        let sent = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange(&mut link, &plan.target, &bytes))
            .await
            .unwrap_or_else(|_| {
                link = None; // a request may still be on it
                None
            });
        let elapsed = sent.elapsed();
        let second = sent.duration_since(plan.started).as_secs();
        if second != current.0 && current.1.requests > 0 {
            // A closed receiver means the run is over; nothing is left to count.
            let _ = seconds.send(std::mem::take(&mut current));
        }
        current.0 = second;
        if read {
            tally.reads += 1;
        } else {
            tally.writes += 1;
        }
        let bucket = &mut current.1;
        bucket.requests += 1;
        bucket.latency.record(elapsed);
        match answer {
            None => tally.failed += 1,
            Some((status, layer)) => {
                if let Some(n) = tally.statuses.get_mut(usize::from(status)) {
                    *n += 1;
                }
                tally.latency.record(elapsed);
                if let (true, Some(layer)) = (read, layer) {
                    bucket.layered += 1;
                    if layer.is_hit() {
                        bucket.hits += 1;
                    }
                    tally.layer(layer).record(elapsed);
                }
            }
        }
    }
    if current.1.requests > 0 {
        let _ = seconds.send(current);
    }
    Ok(tally)
}

/// Threads, like `wrk -t 2`: each runs its own single-thread runtime with its share of the
/// tasks, so no task moves between threads and no thread wakes another.
const THREADS: u64 = 2;

fn run_thread(
    plan: Arc<Plan>,
    thread: u64,
    threads: u64,
    seconds: mpsc::UnboundedSender<(u64, Second)>,
) -> Result<Tally> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| WorkshopError::Other(e.into()))?;
    runtime.block_on(async {
        let tasks: Vec<_> = (thread..plan.options.concurrency)
            .step_by(usize::try_from(threads).unwrap_or(1))
            .map(|task| tokio::spawn(run_task(Arc::clone(&plan), task, seconds.clone())))
            .collect();
        drop(seconds);
        let mut tally = Tally::new();
        for joined in futures_util::future::join_all(tasks).await {
            tally.merge(joined.map_err(|e| WorkshopError::Other(anyhow::anyhow!("a load task stopped: {e}")))??);
        }
        Ok(tally)
    })
}

fn collect(timeline: &mut BTreeMap<u64, Second>, seconds: &mut mpsc::UnboundedReceiver<(u64, Second)>) {
    while let Ok((second, part)) = seconds.try_recv() {
        timeline.entry(second).or_default().merge(&part);
    }
}

pub async fn measure(_config: &Config, options: LoadOptions, progress: &dyn RunProgress) -> Result<LoadOutcome> {
    validate(&options)?;
    let base = options.url.trim_end_matches('/').to_string();
    let span = u64::try_from(options.last_id - options.first_id + 1).unwrap_or(u64::MAX);
    let target = resolve(&options, span).await?;
    let started = Instant::now();
    let plan = Arc::new(Plan {
        target,
        sampler: KeySampler::new(span, options.skew),
        pause: options
            .rate
            .map(|rate| Duration::from_secs_f64(options.concurrency as f64 / rate.max(0.001))),
        started,
        deadline: started + options.duration,
        options: options.clone(),
    });
    progress.phase("load", Some(options.duration.as_secs().max(1)));
    let (sender, mut seconds) = mpsc::unbounded_channel();
    let threads = THREADS.min(options.concurrency.max(1));
    let mut finished = Vec::new();
    for thread in 0..threads {
        let (plan, sender) = (Arc::clone(&plan), sender.clone());
        let (done, tally) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("load-{thread}"))
            .spawn(move || {
                let _ = done.send(run_thread(plan, thread, threads, sender));
            })
            .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot start a load thread: {e}")))?;
        finished.push(tally);
    }
    drop(sender);
    let mut timeline = BTreeMap::new();
    let ticker = async {
        let mut shown = 0;
        while Instant::now() < plan.deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            // Merged as they come, so a long run keeps one histogram per second.
            collect(&mut timeline, &mut seconds);
            let now = started.elapsed().as_secs();
            if now > shown {
                progress.advance(now - shown);
                shown = now;
            }
        }
    };
    let ((), joined) = tokio::join!(ticker, futures_util::future::join_all(finished));
    progress.finish_phase();
    let elapsed = started.elapsed();
    let mut tally = Tally::new();
    for result in joined {
        let part = result.map_err(|_| WorkshopError::Other(anyhow::anyhow!("a load thread stopped")))??;
        tally.merge(part);
    }
    collect(&mut timeline, &mut seconds);
    let requests = tally.reads + tally.writes;
    Ok(LoadOutcome {
        exercise: "load",
        url: base,
        concurrency: options.concurrency,
        rate: options.rate,
        read_ratio: options.read_ratio,
        skew: options.skew,
        elapsed,
        requests,
        reads: tally.reads,
        writes: tally.writes,
        failed: tally.failed,
        throughput: requests as f64 / elapsed.as_secs_f64().max(1e-9),
        statuses: tally.statuses(),
        latency: tally.latency.summary(),
        by_layer: tally.by_layer(),
        timeline: timeline
            .iter()
            .map(|(second, s)| LoadSecond {
                second: *second,
                requests: s.requests,
                hit_rate: if s.layered == 0 {
                    0.0
                } else {
                    s.hits as f64 / s.layered as f64
                },
                p50: s.latency.summary().map(|summary| summary.p50),
                p99: s.latency.summary().map(|summary| summary.p99),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_layers_are_matched_without_a_string_and_others_kept_by_name() {
        assert!(matches!(Layer::of(b"L2"), Some(Layer::Known(1))));
        assert!(Layer::of(b"L1").is_some_and(|l| l.is_hit()));
        assert!(Layer::of(b"DB").is_some_and(|l| !l.is_hit()));
        assert!(matches!(Layer::of(b"edge"), Some(Layer::Other(name)) if name == "edge"));
        assert!(Layer::of(b"\xff").is_none());
    }

    /// A server that answers one request per connection, keep-alive by its
    /// headers, then closes the connection: the idle close `exchange` resends on.
    async fn one_answer_per_connection() -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        break;
                    }
                    head.push(byte[0]);
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nX-Cache: L1\r\nContent-Length: 2\r\n\r\n{}")
                    .await;
                // Dropped: closed, though the answer said nothing of it.
            }
        });
        (address, accepted)
    }

    /// `http://{address}` with no path table.
    fn plain_target(address: SocketAddr) -> Target {
        Target {
            addresses: vec![address],
            authority: address.to_string(),
            tls: None,
            prefix: String::new(),
            paths: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_between_requests_is_replaced_and_the_request_sent_again() {
        let (address, accepted) = one_answer_per_connection().await;
        let target = plain_target(address);
        let mut rng = SplitMix64::new(3);
        let mut bytes = Vec::new();
        request(&target, 0, 1, true, &mut rng, &mut bytes);
        let mut slot = None;
        for round in 1..=3u64 {
            let answer = tokio::time::timeout(Duration::from_secs(5), exchange(&mut slot, &target, &bytes))
                .await
                .expect("an exchange that ends");
            assert!(
                matches!(answer, Some((200, Some(Layer::Known(0))))),
                "request {round} was answered"
            );
            assert!(slot.is_some(), "the answer said keep-alive: the connection is kept");
            // Let the server's close arrive before the next request.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "one new connection per request"
        );
    }

    /// Nothing listens: the exchange fails without a resend loop, and the slot stays empty.
    #[tokio::test]
    async fn a_refused_connection_is_one_failure() {
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let target = plain_target(address);
        let mut slot = None;
        assert!(exchange(&mut slot, &target, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .is_none());
        assert!(slot.is_none());
    }

    #[test]
    fn requests_are_written_as_http_1_1_with_their_host_and_a_put_has_its_json_body() {
        let target = Target {
            addresses: Vec::new(),
            authority: "127.0.0.1:8080".to_string(),
            tls: None,
            prefix: "/api".to_string(),
            paths: vec![product_path("/api", 7).unwrap()],
        };
        let mut rng = SplitMix64::new(1);
        let mut out = Vec::new();
        request(&target, 0, 7, true, &mut rng, &mut out);
        assert_eq!(out, b"GET /api/products/7 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n");
        // An id outside the path table is formatted the same way.
        request(&target, 5, 12, true, &mut rng, &mut out);
        assert_eq!(out, b"GET /api/products/12 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n");
        request(&target, 0, 7, false, &mut rng, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with(
                "PUT /api/products/7 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-type: application/json\r\n"
            ),
            "{head}"
        );
        assert!(head.ends_with(&format!("content-length: {}", body.len())), "{head}");
        let price: serde_json::Value = serde_json::from_str(body).unwrap();
        let price: f64 = price["price"].as_str().unwrap().parse().unwrap();
        assert!((1.0..=999.99).contains(&price), "{body}");
    }

    #[test]
    fn tallies_of_two_tasks_add_up_to_the_same_counts_and_percentiles() {
        let (mut a, mut b, mut one) = (Tally::new(), Tally::new(), Tally::new());
        for (i, tally) in [&mut a, &mut b].into_iter().enumerate() {
            for ms in 1..=50u64 {
                let latency = Duration::from_micros(ms * 100 + i as u64 * 7);
                tally.reads += 1;
                tally.statuses[if ms % 10 == 0 { 404 } else { 200 }] += 1;
                tally.latency.record(latency);
                tally.layer(Layer::Known(usize::from(ms % 2 == 0))).record(latency);
                tally.layer(Layer::Other("edge".into())).record(latency);
                one.latency.record(latency);
            }
        }
        a.merge(b);
        assert_eq!(a.reads, 100);
        assert_eq!(a.statuses(), BTreeMap::from([(200, 90), (404, 10)]));
        let layers = a.by_layer();
        assert_eq!(layers.keys().collect::<Vec<_>>(), ["L1", "L2", "edge"]);
        assert_eq!(
            (layers["L1"].count, layers["L2"].count, layers["edge"].count),
            (50, 50, 100)
        );
        let (merged, whole) = (a.latency.summary().unwrap(), one.latency.summary().unwrap());
        assert_eq!((merged.p50, merged.p95, merged.p99), (whole.p50, whole.p95, whole.p99));
    }

    #[tokio::test]
    async fn seconds_of_several_tasks_are_merged_into_one_per_second() {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        for (second, requests) in [(0, 3), (1, 2), (0, 4), (2, 1)] {
            let mut part = Second {
                requests,
                hits: 1,
                layered: 2,
                ..Second::default()
            };
            part.latency.record(Duration::from_millis(requests));
            sender.send((second, part)).unwrap();
        }
        let mut timeline = BTreeMap::new();
        collect(&mut timeline, &mut receiver);
        let merged: Vec<(u64, u64, u64, u64)> = timeline
            .iter()
            .map(|(s, p)| (*s, p.requests, p.hits, p.latency.count()))
            .collect();
        assert_eq!(merged, [(0, 7, 2, 2), (1, 2, 1, 1), (2, 1, 1, 1)]);
    }
}
