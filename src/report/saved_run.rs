//! `--out run.json`: an outcome's per-second series in the saved-run format
//! (`measure::saved_run`), written whole or not at all.

use std::path::Path;
use std::time::Duration;

use crate::error::{Result, WorkshopError};
use crate::exercises::cluster::ClusterOutcome;
use crate::exercises::load::LoadOutcome;
use crate::exercises::rate_limit::RateLimitOutcome;
use crate::exercises::stats::StatsOutcome;
use crate::measure::millis;
use crate::measure::saved_run::{SavedRun, Series};
use crate::measure::timeline::SecondStats;

fn ms(value: Option<Duration>) -> Option<f64> {
    value.map(millis)
}

fn document(outcome: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(outcome).unwrap_or(serde_json::Value::Null)
}

/// One stats run's seconds: reads and writes per second, the read hit rate, p50/p99 of the reads.
fn stats_series(name: &str, seconds: &[SecondStats]) -> Series {
    Series {
        name: name.to_string(),
        second: seconds.iter().map(|s| s.second).collect(),
        requests_per_second: seconds
            .iter()
            .map(|s| {
                let length = s.length_seconds.max(1e-9);
                Some(((s.requests + s.writes) as f64 / length * 10.0).round() / 10.0)
            })
            .collect(),
        hit_rate: seconds.iter().map(|s| s.hit_rate).collect(),
        p50_ms: seconds.iter().map(|s| ms(s.p50)).collect(),
        p99_ms: seconds.iter().map(|s| ms(s.p99)).collect(),
    }
}

pub fn from_stats(outcome: &StatsOutcome) -> SavedRun {
    let mut series = Vec::new();
    if let Some(run) = &outcome.run {
        series.push(stats_series("stats", &run.timeline));
    }
    if let Some(eviction) = &outcome.eviction {
        for policy in &eviction.runs {
            series.push(stats_series(&policy.policy, &policy.run.timeline));
        }
    }
    SavedRun::new("stats", document(&outcome.settings), series, document(outcome))
}

pub fn from_load(outcome: &LoadOutcome) -> SavedRun {
    let timeline = &outcome.timeline;
    let options = serde_json::json!({
        "url": outcome.url,
        "concurrency": outcome.concurrency,
        "rate": outcome.rate,
        "read_ratio": outcome.read_ratio,
        "skew": outcome.skew,
        "duration_ms": crate::measure::millis(outcome.elapsed),
    });
    let series = Series {
        name: "load".into(),
        second: timeline.iter().map(|s| s.second).collect(),
        // Whole seconds of the run; the last may be cut short by the deadline.
        requests_per_second: timeline.iter().map(|s| Some(s.requests as f64)).collect(),
        hit_rate: timeline.iter().map(|s| Some(s.hit_rate)).collect(),
        p50_ms: timeline.iter().map(|s| ms(s.p50)).collect(),
        p99_ms: timeline.iter().map(|s| ms(s.p99)).collect(),
    };
    SavedRun::new("load", options, vec![series], document(outcome))
}

/// Allowed decisions per second, one series per limiter (no cache, no per-second latency).
pub fn from_rate_limit(outcome: &RateLimitOutcome) -> SavedRun {
    let options = serde_json::json!({
        "limit": outcome.limit,
        "limit_per_second": outcome.limit_per_second,
        "clients": outcome.clients,
        "rate_per_client": outcome.rate_per_client,
        "duration_s": outcome.duration_s,
        "burst": outcome.burst,
        "processes": outcome.processes,
    });
    let series = outcome
        .limiters
        .iter()
        .map(|limiter| Series {
            name: format!("{} allowed", limiter.limiter.name()),
            second: (0..limiter.allowed_each_second.len() as u64).collect(),
            requests_per_second: limiter.allowed_each_second.iter().map(|n| Some(*n as f64)).collect(),
            ..Series::default()
        })
        .collect();
    SavedRun::new("rate-limit", options, series, document(outcome))
}

/// Reads per second through the failover and their cache hit rate.
pub fn from_cluster(outcome: &ClusterOutcome) -> SavedRun {
    let options = serde_json::json!({
        "target": outcome.target,
        "keys": outcome.keys,
    });
    let series = outcome
        .failover
        .iter()
        .map(|run| Series {
            name: format!("cluster ({} frozen)", run.stopped_node),
            second: run.seconds.iter().map(|s| s.second).collect(),
            requests_per_second: run.seconds.iter().map(|s| Some(s.reads() as f64)).collect(),
            hit_rate: run.seconds.iter().map(|s| s.hit_rate()).collect(),
            ..Series::default()
        })
        .collect();
    SavedRun::new("cluster", options, series, document(outcome))
}

/// Reads per second and their hit rate, one series per scenario (together,
/// jittered): the expiry storm and its spread side by side.
pub fn from_ttl(outcome: &crate::exercises::ttl::TtlOutcome) -> SavedRun {
    let options = serde_json::json!({
        "keys": outcome.keys,
        "clients": outcome.clients,
        "rate": outcome.rate,
        "duration_s": outcome.duration_s,
        "ttl_ms": crate::measure::millis(outcome.ttl),
        "jitter_percent": outcome.jitter_percent,
    });
    let series = outcome
        .scenarios
        .iter()
        .map(|scenario| Series {
            name: format!("ttl {}", scenario.scenario),
            second: scenario.seconds.iter().map(|s| s.second).collect(),
            requests_per_second: scenario.seconds.iter().map(|s| Some(s.reads as f64)).collect(),
            hit_rate: scenario
                .seconds
                .iter()
                .map(|s| (s.reads > 0).then(|| s.reads.saturating_sub(s.misses) as f64 / s.reads as f64))
                .collect(),
            p99_ms: scenario.seconds.iter().map(|s| ms(s.database_p99)).collect(),
            ..Series::default()
        })
        .collect();
    SavedRun::new("ttl", options, series, document(outcome))
}

/// Checked before a run: a path whose folder is missing would lose the run's numbers.
pub fn check_out_path(path: &Path) -> Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if path.is_dir() {
        return Err(WorkshopError::invalid(format!(
            "--out {} is a folder; give a file name such as run.json",
            path.display()
        )));
    }
    if !folder.is_dir() {
        return Err(WorkshopError::invalid(format!(
            "--out {}: the folder {} does not exist; create it or choose another --out path",
            path.display(),
            folder.display()
        )));
    }
    Ok(())
}

/// Writes the run beside its final name, then renames it: never half a file.
pub fn save(run: &SavedRun, path: &Path) -> Result<()> {
    let failed = |e: std::io::Error| {
        WorkshopError::invalid(format!(
            "cannot write {}: {e}; choose another --out path",
            path.display()
        ))
    };
    let text = serde_json::to_string_pretty(run).map_err(|e| WorkshopError::Other(e.into()))?;
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    std::fs::write(&partial, text + "\n").map_err(failed)?;
    std::fs::rename(&partial, path).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        failed(e)
    })
}
