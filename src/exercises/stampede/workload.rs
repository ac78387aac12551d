//! The requests of one round: a burst of simultaneous requests on a cold
//! key, or steady traffic on a key that expires part-way through; what
//! they did, and how long the expiry scenario runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::task::{JoinError, JoinSet};

use super::{ExpiryTiming, MAX_EXPIRE_AFTER_MS, MIN_EXPIRE_AFTER_MS, PACE};
use crate::db::ResultSet;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::{relay, RunProgress, StepCounter};
use crate::measure::LatencyRecorder;
use crate::patterns::stampede::{request_rng, uniform, PathCounts, PrefillError, Protection, Served, StampedeCache};

/// The expiry scenario's timing. XFetch's first early refresh comes about
/// `delta * beta * ln(rate * delta * beta)` before expiry (rate: requests per
/// ms); the entry lives well past that, and the traffic goes on a little after
/// expiry, so the unprotected run meets the expiry with everyone still asking.
pub fn expiry_timing(query: Duration, beta: f64, tasks: u64) -> ExpiryTiming {
    let delta_ms = (query.as_secs_f64() * 1000.0).max(0.1);
    let rate = tasks as f64 / (PACE.as_secs_f64() * 1000.0);
    let scale = delta_ms * beta;
    let lead = scale * (rate * scale).max(1.0).ln();
    let expire_after_ms = (lead + 5.0 * scale + 200.0).clamp(MIN_EXPIRE_AFTER_MS, MAX_EXPIRE_AFTER_MS);
    let expire_after = Duration::from_secs((expire_after_ms / 1000.0).ceil() as u64);
    let window = expire_after + Duration::from_secs_f64((3.0 * delta_ms + 500.0) / 1000.0);
    ExpiryTiming { expire_after, window }
}

/// A finished task's result. A panic is a bug in this program, never a
/// database or Valkey failure: exit 1, naming the task that panicked.
fn task_result<T, E: Into<WorkshopError>>(
    joined: std::result::Result<std::result::Result<T, E>, JoinError>,
    task: &str,
) -> Result<T> {
    match joined {
        Ok(result) => result.map_err(Into::into),
        Err(error) if error.is_panic() => {
            let payload = error.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            Err(WorkshopError::Other(anyhow::anyhow!(
                "{task} panicked ({message}); this is a bug in workshop-cli, please report it"
            )))
        }
        Err(_) => Err(WorkshopError::Other(anyhow::anyhow!("{task} was cancelled"))),
    }
}

/// A short digest of a result, to tell whether two requests got the same rows.
pub fn rows_digest(rows: &ResultSet) -> String {
    let text = serde_json::to_vec(rows).unwrap_or_default();
    Sha256::digest(&text)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the requests of one round (or several, merged) did.
#[derive(Debug, Default)]
pub(super) struct RoundResult {
    pub(super) counts: PathCounts,
    pub(super) queries: u64,
    pub(super) latencies: LatencyRecorder,
    /// Every latency in nanoseconds, kept only by a fleet member for its parent.
    pub(super) samples: Vec<u64>,
    pub(super) digests: BTreeMap<String, u64>,
    pub(super) wall: Duration,
}

impl RoundResult {
    pub(super) fn add(&mut self, served: &Served, keep_sample: bool) {
        self.counts.add(served);
        self.latencies.record(served.latency);
        if keep_sample {
            self.samples
                .push(u64::try_from(served.latency.as_nanos()).unwrap_or(u64::MAX));
        }
        *self.digests.entry(rows_digest(&served.rows)).or_default() += 1;
    }

    pub(super) fn merge(&mut self, other: RoundResult) {
        self.counts.merge(&other.counts);
        self.queries += other.queries;
        self.latencies.merge(&other.latencies);
        self.samples.extend(other.samples);
        for (digest, n) in other.digests {
            *self.digests.entry(digest).or_default() += n;
        }
        self.wall = self.wall.max(other.wall);
    }
}

/// `concurrency` requests for the key, all released at the same moment.
pub(super) async fn burst(
    cache: &Arc<StampedeCache>,
    protection: Protection,
    concurrency: u64,
    first_request: u64,
    progress: &dyn RunProgress,
    keep_samples: bool,
) -> Result<RoundResult> {
    let done = StepCounter::default();
    cache.loader.take_queries();
    let gate = Arc::new(tokio::sync::Barrier::new(usize::try_from(concurrency).unwrap_or(1)));
    let started = Instant::now();
    let mut requests = JoinSet::new();
    let mut numbers = HashMap::new();
    for request in first_request..first_request + concurrency {
        let cache = Arc::clone(cache);
        let gate = Arc::clone(&gate);
        let done = done.clone();
        let task = requests.spawn(async move {
            gate.wait().await;
            let served = cache.request(protection, request).await;
            done.add(1);
            served
        });
        numbers.insert(task.id(), request);
    }
    let mut round = relay(progress, &done, async {
        let mut round = RoundResult::default();
        while let Some(joined) = requests.join_next_with_id().await {
            let id = match &joined {
                Ok((id, _)) => *id,
                Err(error) => error.id(),
            };
            let task = format!(
                "the task of request {} ({})",
                numbers.get(&id).copied().unwrap_or_default(),
                protection.label()
            );
            let served = task_result(joined.map(|(_, served)| served), &task)?;
            round.add(&served, keep_samples);
        }
        Ok::<_, WorkshopError>(round)
    })
    .await?;
    round.wall = started.elapsed();
    round.queries = cache.loader.take_queries();
    Ok(round)
}

/// `tasks` tasks sending a request every [`PACE`] (with jitter) until the
/// window ends, on a key pre-filled to expire part-way through.
pub(super) async fn steady_traffic(
    cache: &Arc<StampedeCache>,
    protection: Protection,
    tasks: u64,
    timing: ExpiryTiming,
    progress: &dyn RunProgress,
) -> Result<RoundResult> {
    let done = StepCounter::default();
    cache.make_cold().await?;
    cache
        .prefill(protection, timing.expire_after)
        .await
        .map_err(|e| match e {
            PrefillError::Database(e) => WorkshopError::from(e),
            PrefillError::Cache(e) => WorkshopError::from(e),
            PrefillError::NoCache => {
                WorkshopError::incomplete("the expiry scenario needs Valkey, which is not connected")
            }
        })?;
    // The pre-fill is set-up, not part of the round.
    cache.loader.take_queries();
    let started = Instant::now();
    let deadline = started + timing.window;
    let next_request = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for task in 0..tasks {
        let cache = Arc::clone(cache);
        let next_request = Arc::clone(&next_request);
        let done = done.clone();
        workers.spawn(async move {
            let mut rng = request_rng(task);
            let mut mine = RoundResult::default();
            // Spread the first requests over one pace, so the traffic is steady.
            tokio::time::sleep(PACE.mul_f64(uniform(&mut rng))).await;
            while Instant::now() < deadline {
                let request = next_request.fetch_add(1, Ordering::Relaxed);
                let served = cache.request(protection, request).await?;
                mine.add(&served, false);
                tokio::time::sleep(PACE.mul_f64(0.5 + uniform(&mut rng))).await;
            }
            done.add(1);
            Ok::<_, WorkshopError>(mine)
        });
    }
    let mut round = relay(progress, &done, async {
        let mut round = RoundResult::default();
        while let Some(joined) = workers.join_next().await {
            round.merge(task_result(
                joined,
                &format!("a task of the expiry scenario ({})", protection.label()),
            )?);
        }
        Ok::<_, WorkshopError>(round)
    })
    .await?;
    round.wall = started.elapsed();
    round.queries = cache.loader.take_queries();
    Ok(round)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_timing_gives_xfetch_room_before_expiry() {
        // A 250 ms query, 100 tasks at one request per 20 ms: 5 requests per ms.
        let timing = expiry_timing(Duration::from_millis(250), 1.0, 100);
        // lead = 250 * ln(1250) ≈ 1783 ms; + 5 * 250 + 200 ≈ 3233 ms → 4 s.
        assert_eq!(timing.expire_after, Duration::from_secs(4));
        assert_eq!(timing.window, Duration::from_millis(4000 + 750 + 500));
        // A fast query still leaves a second.
        let fast = expiry_timing(Duration::from_millis(2), 1.0, 50);
        assert_eq!(fast.expire_after, Duration::from_secs(1));
        assert!(fast.window > fast.expire_after);
    }

    #[test]
    fn the_same_rows_give_the_same_digest() {
        let rows = |v: i64| ResultSet {
            columns: vec!["n".into()],
            rows: vec![vec![serde_json::json!(v)]],
        };
        assert_eq!(rows_digest(&rows(1)), rows_digest(&rows(1)));
        assert_ne!(rows_digest(&rows(1)), rows_digest(&rows(2)));
        assert_eq!(rows_digest(&rows(1)).len(), 16);
    }

    #[tokio::test]
    async fn a_panicking_task_is_a_bug_named_by_its_task_not_a_database_error() {
        let mut tasks = JoinSet::new();
        tasks.spawn(async {
            if std::hint::black_box(true) {
                panic!("index out of bounds");
            }
            Ok::<u64, crate::db::DbError>(1)
        });
        let joined = tasks.join_next().await.unwrap();
        let error = task_result(joined, "the task of request 7 (Valkey lock)").unwrap_err();
        assert_eq!(error.exit_code(), crate::error::exit::FAILURE);
        assert_eq!(
            error.to_string(),
            "the task of request 7 (Valkey lock) panicked (index out of bounds); this is a bug in workshop-cli, please report it"
        );
        // A database error keeps its own category.
        let mut tasks = JoinSet::new();
        tasks.spawn(async { Err::<u64, _>(crate::db::DbError::Query("no such table".into())) });
        let error = task_result(tasks.join_next().await.unwrap(), "request 1").unwrap_err();
        assert_eq!(error.exit_code(), crate::error::exit::DATABASE);
    }
}
