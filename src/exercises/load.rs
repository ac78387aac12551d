//! `workshop-cli load`: a load generator for `serve` (or any service with
//! `GET`/`PUT /products/{id}`): closed-loop tasks (`--concurrency`), each
//! optionally paced (`--rate` shared out), Zipf-skewed ids, a share of PUTs.
//! Latencies go into HDR histograms, overall, per `X-Cache` layer and per second.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

#[derive(Default)]
struct Second {
    requests: u64,
    hits: u64,
    layered: u64,
    latency: LatencyRecorder,
}

#[derive(Default)]
struct Tally {
    reads: u64,
    writes: u64,
    failed: u64,
    statuses: BTreeMap<u16, u64>,
    latency: LatencyRecorder,
    by_layer: BTreeMap<String, LatencyRecorder>,
    seconds: BTreeMap<u64, Second>,
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

pub async fn measure(_config: &Config, options: LoadOptions, progress: &dyn RunProgress) -> Result<LoadOutcome> {
    validate(&options)?;
    let base = options.url.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::try_from(options.concurrency).unwrap_or(usize::MAX))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot build the HTTP client: {e}")))?;
    let span = u64::try_from(options.last_id - options.first_id + 1).unwrap_or(u64::MAX);
    let sampler = Arc::new(KeySampler::new(span, options.skew));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + options.duration;
    let pause = options
        .rate
        .map(|rate| Duration::from_secs_f64(options.concurrency as f64 / rate.max(0.001)));
    progress.phase("load", Some(options.duration.as_secs().max(1)));
    let mut tasks = Vec::new();
    for task in 0..options.concurrency {
        let (client, base, sampler, tally, options) = (
            client.clone(),
            base.clone(),
            Arc::clone(&sampler),
            Arc::clone(&tally),
            options.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = SplitMix64::new(options.seed ^ (task + 1).wrapping_mul(0x9e37_79b9));
            let mut next = Instant::now();
            while Instant::now() < deadline {
                if let Some(pause) = pause {
                    tokio::time::sleep_until(next.into()).await;
                    next += pause;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let id = options.first_id + i64::try_from(sampler.sample(&mut rng)).unwrap_or(0);
                let read = rng.percent(options.read_ratio);
                let url = format!("{base}/products/{id}");
                let sent = Instant::now();
                let answer = if read {
                    client.get(&url).send().await
                } else {
                    let cents = 100 + rng.below(99_900);
                    let body = format!("{{\"price\": \"{}.{:02}\"}}", cents / 100, cents % 100);
                    client
                        .put(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                };
                let answer = match answer {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let layer = response
                            .headers()
                            .get("x-cache")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        // Read the body: the request is done when the answer is.
                        let _ = response.bytes().await;
                        Some((status, layer))
                    }
                    Err(_) => None,
                };
                let elapsed = sent.elapsed();
                let second = sent.duration_since(started).as_secs();
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                let tally = &mut *tally;
                if read {
                    tally.reads += 1;
                } else {
                    tally.writes += 1;
                }
                let bucket = tally.seconds.entry(second).or_default();
                bucket.requests += 1;
                bucket.latency.record(elapsed);
                match answer {
                    None => tally.failed += 1,
                    Some((status, layer)) => {
                        *tally.statuses.entry(status).or_default() += 1;
                        tally.latency.record(elapsed);
                        if let (true, Some(layer)) = (read, layer) {
                            bucket.layered += 1;
                            if layer == "L1" || layer == "L2" {
                                bucket.hits += 1;
                            }
                            tally.by_layer.entry(layer).or_default().record(elapsed);
                        }
                    }
                }
            }
        }));
    }
    let ticker = async {
        let mut shown = 0;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = started.elapsed().as_secs();
            if now > shown {
                progress.advance(now - shown);
                shown = now;
            }
        }
    };
    let ((), joined) = tokio::join!(ticker, futures_util::future::join_all(tasks));
    progress.finish_phase();
    for result in joined {
        result.map_err(|e| WorkshopError::Other(anyhow::anyhow!("a load task stopped: {e}")))?;
    }
    let elapsed = started.elapsed();
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
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
        statuses: tally.statuses,
        latency: tally.latency.summary(),
        by_layer: tally
            .by_layer
            .iter()
            .filter_map(|(layer, recorder)| recorder.summary().map(|s| (layer.clone(), s)))
            .collect(),
        timeline: tally
            .seconds
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
