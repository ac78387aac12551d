//! Exercise 11, `workshop-cli rate-limit`: three rate limiters in Valkey,
//! measured under the same offered load. `--clients` tasks each send
//! `--rate` requests per second for `--duration` seconds against one shared
//! limit (`--limit 100/s`); per limiter the run counts what was allowed per
//! second (and in the busiest second of any start, which shows a fixed
//! window's burst at its edge), the Valkey commands each decision sends and
//! the decision latency.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cache::{KeyScheme, Valkey};
use crate::config::Config;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::measure::{LatencyRecorder, LatencySummary};

const MAX_CLIENTS: u64 = 1000;
const MAX_RATE: f64 = 10_000.0;
const MAX_DURATION_S: f64 = 600.0;
const MAX_PROCESSES: u64 = 16;
/// Time the copies get to start and connect before the first limiter runs.
const FLEET_START_UP: Duration = Duration::from_millis(2000);
/// A pause between two limiters, so one's stragglers never count in the next.
const BETWEEN_LIMITERS: Duration = Duration::from_millis(500);
/// Every client shares one limit: the subject of every limiter's key.
const SUBJECT: &str = "api";

/// A token bucket: refilled from the server's clock (`TIME`), so every
/// process of a fleet sees the same time. ARGV: tokens per second, capacity,
/// key lifetime in ms. Returns 1 when the request may pass.
const TOKEN_BUCKET: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000000)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return allowed
";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limiter {
    /// INCR + PEXPIRE of a key per window.
    FixedWindow,
    /// A sorted set of the window's requests: trim, add, count.
    SlidingLog,
    /// A Lua script (EVALSHA) that refills and takes a token.
    TokenBucket,
}

impl Limiter {
    pub const ALL: [Limiter; 3] = [Limiter::FixedWindow, Limiter::SlidingLog, Limiter::TokenBucket];

    pub fn name(self) -> &'static str {
        match self {
            Limiter::FixedWindow => "fixed-window",
            Limiter::SlidingLog => "sliding-log",
            Limiter::TokenBucket => "token-bucket",
        }
    }
}

/// `--limit`: `count` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Limit {
    pub count: u64,
    #[serde(serialize_with = "crate::measure::as_millis", rename = "window_ms")]
    pub window: Duration,
}

impl Limit {
    /// `100/s`, `100` (per second) or `6000/min`.
    pub fn parse(text: &str) -> Result<Limit> {
        let bad = || {
            WorkshopError::invalid(format!(
                "--limit '{text}' is not a rate; write it as requests per second or minute, e.g. 100/s or 6000/min"
            ))
        };
        let (count, unit) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
        let window = match unit {
            "s" | "sec" => Duration::from_secs(1),
            "m" | "min" => Duration::from_secs(60),
            _ => return Err(bad()),
        };
        let count: u64 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > 1_000_000 {
            return Err(WorkshopError::invalid(format!(
                "--limit must allow from 1 to 1000000 requests per window (got {count})"
            )));
        }
        Ok(Limit { count, window })
    }

    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.window.as_secs_f64()
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitOptions {
    pub limiters: Vec<Limiter>,
    pub clients: u64,
    /// Requests per second each client sends.
    pub rate: f64,
    /// As typed, e.g. `100/s`.
    pub limit: String,
    pub duration_s: f64,
    /// The token bucket's capacity; `None`: 5 % of the limit per second (at least 1).
    pub burst: Option<u64>,
    /// Processes sharing the limit (this one and copies of it).
    pub processes: u64,
    /// Set in a copy started by `--processes`: when (Unix ms) its first limiter starts.
    pub member_start_ms: Option<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RateLimitOutcome {
    pub exercise: &'static str,
    pub limit: Limit,
    pub limit_per_second: f64,
    pub clients: u64,
    pub rate_per_client: f64,
    /// What the clients try to send: clients × rate.
    pub offered_per_second: f64,
    pub duration_s: f64,
    pub burst: u64,
    /// Processes that shared the limit; every count below is the fleet's.
    pub processes: u64,
    pub limiters: Vec<LimiterOutcome>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LimiterOutcome {
    pub limiter: Limiter,
    pub key: String,
    pub requests: u64,
    pub allowed: u64,
    pub denied: u64,
    /// Allowed requests / the seconds the clients sent for.
    pub allowed_per_second: f64,
    /// Allowed per second of the run, second 1 first.
    pub allowed_each_second: Vec<u64>,
    /// The most allowed in any one second, whatever it starts at: above the
    /// limit when a burst straddles a window edge.
    pub max_in_any_second: u64,
    /// Valkey commands the client sent per decision (a MULTI/EXEC counts its commands; EVALSHA is one).
    pub commands_per_decision: f64,
    /// Round trips per decision.
    pub round_trips_per_decision: f64,
    /// Decision latency in this process (with `--processes`, the first one's).
    pub latency: Option<LatencySummary>,
    #[serde(serialize_with = "crate::measure::as_millis", rename = "elapsed_ms")]
    pub elapsed: Duration,
    /// Allowed requests per process, this one first.
    pub allowed_per_process: Vec<u64>,
    /// In a fleet copy's report only: when each allowed request was stamped (ms from the start).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_at_ms: Vec<u64>,
}

fn validate(options: &RateLimitOptions) -> Result<Limit> {
    if options.clients == 0 || options.clients > MAX_CLIENTS {
        return Err(WorkshopError::invalid(format!(
            "--clients must be from 1 to {MAX_CLIENTS} (got {})",
            options.clients
        )));
    }
    if !(options.rate > 0.0 && options.rate <= MAX_RATE) {
        return Err(WorkshopError::invalid(format!(
            "--rate must be above 0 and at most {MAX_RATE} requests per second per client (got {})",
            options.rate
        )));
    }
    if !(options.duration_s >= 1.0 && options.duration_s <= MAX_DURATION_S) {
        return Err(WorkshopError::invalid(format!(
            "--duration must be from 1 to {MAX_DURATION_S} seconds (got {})",
            options.duration_s
        )));
    }
    if options.processes == 0 || options.processes > MAX_PROCESSES {
        return Err(WorkshopError::invalid(format!(
            "--processes must be from 1 to {MAX_PROCESSES} (got {})",
            options.processes
        )));
    }
    if options.burst == Some(0) {
        return Err(WorkshopError::invalid(
            "--burst must be at least 1 (a bucket that holds no token allows nothing)",
        ));
    }
    Limit::parse(&options.limit)
}

pub async fn measure(
    config: &Config,
    options: RateLimitOptions,
    progress: &dyn RunProgress,
) -> Result<RateLimitOutcome> {
    let limit = validate(&options)?;
    let burst = options
        .burst
        .unwrap_or_else(|| ((limit.per_second() * 0.05).round() as u64).max(1));
    progress.phase("connecting", None);
    let valkey = Valkey::connect(&config.valkey, config.connect_timeout).await?;
    valkey.round_trip().await?;
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    let script = redis::Script::new(TOKEN_BUCKET);
    if options.limiters.contains(&Limiter::TokenBucket) {
        valkey.load_script(&script).await?;
    }
    let settings = Settings {
        limit,
        burst,
        clients: options.clients,
        interval: Duration::from_secs_f64(1.0 / options.rate),
        duration: Duration::from_secs_f64(options.duration_s),
    };
    let member = options.member_start_ms.is_some();
    if !member {
        for limiter in &options.limiters {
            valkey.delete(&keys.rate_limit(limiter.name(), SUBJECT)).await?;
        }
    }
    // Every process runs the same schedule, so a fleet shares each limiter's seconds.
    let start_ms = options.member_start_ms.unwrap_or_else(|| {
        unix_millis()
            + if options.processes > 1 {
                millis(FLEET_START_UP)
            } else {
                0
            }
    });
    let copies = if options.processes > 1 && !member {
        Some(fleet::start(config, &options, burst, start_ms)?)
    } else {
        None
    };
    let mut limiters = Vec::new();
    let mut window_keys = BTreeSet::new();
    for (index, limiter) in options.limiters.iter().enumerate() {
        let phase_ms = start_ms + index as u64 * (millis(settings.duration) + millis(BETWEEN_LIMITERS));
        progress.phase(&format!("{} for {} s", limiter.name(), options.duration_s), None);
        tokio::time::sleep(Duration::from_millis(phase_ms.saturating_sub(unix_millis()))).await;
        let base = keys.rate_limit(limiter.name(), SUBJECT);
        let (outcome, keys_used) = run_limiter(&valkey, *limiter, &base, &script, &settings, phase_ms).await?;
        window_keys.extend(keys_used);
        limiters.push(outcome);
    }
    progress.finish_phase();
    if let Some(copies) = copies {
        progress.phase("waiting for the other processes", None);
        let reports = fleet::finish(copies).await?;
        for (limiter, report) in limiters.iter_mut().enumerate() {
            fleet::merge(report, limiter, &reports, settings.duration);
        }
        progress.finish_phase();
    }
    if member {
        // A copy reports its stamps; the first process counts the fleet and deletes the keys.
        return Ok(outcome_of(&options, limit, burst, limiters, Vec::new()));
    }
    for limiter in &mut limiters {
        limiter.allowed_at_ms.clear();
    }
    for key in window_keys.iter().map(String::as_str) {
        valkey.delete(key).await?;
    }
    for limiter in &options.limiters {
        valkey.delete(&keys.rate_limit(limiter.name(), SUBJECT)).await?;
    }
    let offered = options.processes as f64 * options.clients as f64 * options.rate;
    let mut warnings = Vec::new();
    if offered <= limit.per_second() {
        warnings.push(format!(
            "the clients offer {offered:.0} requests/s, not more than the limit of {:.0}/s: nothing needs limiting; raise --clients or --rate",
            limit.per_second()
        ));
    }
    Ok(outcome_of(&options, limit, burst, limiters, warnings))
}

fn outcome_of(
    options: &RateLimitOptions,
    limit: Limit,
    burst: u64,
    limiters: Vec<LimiterOutcome>,
    warnings: Vec<String>,
) -> RateLimitOutcome {
    RateLimitOutcome {
        exercise: "rate-limit",
        limit,
        limit_per_second: limit.per_second(),
        clients: options.clients,
        rate_per_client: options.rate,
        offered_per_second: options.processes as f64 * options.clients as f64 * options.rate,
        duration_s: options.duration_s,
        burst,
        processes: options.processes,
        limiters,
        warnings,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

struct Settings {
    limit: Limit,
    burst: u64,
    clients: u64,
    interval: Duration,
    duration: Duration,
}

/// One client's decisions.
#[derive(Default)]
struct ClientTally {
    latency: LatencyRecorder,
    /// When each allowed request was stamped, from the run's start.
    allowed_at: Vec<Duration>,
    requests: u64,
    commands: u64,
    round_trips: u64,
    window_keys: BTreeSet<String>,
}

async fn run_limiter(
    valkey: &Valkey,
    limiter: Limiter,
    base: &str,
    script: &redis::Script,
    settings: &Settings,
    started_ms: u64,
) -> Result<(LimiterOutcome, BTreeSet<String>)> {
    let started = Instant::now();
    let clients = (0..settings.clients).map(|client| {
        let valkey = valkey.clone();
        async move {
            let mut tally = ClientTally::default();
            // Each client's ticks start at an offset of its own within the interval (drawn from
            // its process and number): clients of a fleet that all ticked at the same instants
            // would queue in the same order every time, and the bucket's few new tokens per tick
            // would always go to the same processes (CI once saw one process allowed nothing).
            let seed = crate::rng::mix64((u64::from(std::process::id()) << 20) ^ client);
            let offset = settings.interval.mul_f64((seed % 1000) as f64 / 1000.0);
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, settings.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sequence = 0u64;
            loop {
                ticks.tick().await;
                if started.elapsed() >= settings.duration {
                    break;
                }
                sequence += 1;
                let asked = Instant::now();
                let decision = decide(&valkey, limiter, base, script, settings, client, sequence).await?;
                tally.latency.record(asked.elapsed());
                tally.requests += 1;
                tally.commands += decision.commands;
                tally.round_trips += decision.round_trips;
                if decision.allowed {
                    // The time the request was stamped with (a sliding log's score), not
                    // when its answer came: the answers' jitter is not the limiter's.
                    tally
                        .allowed_at
                        .push(Duration::from_millis(decision.stamp_ms.saturating_sub(started_ms)));
                }
                if let Some(key) = decision.window_key {
                    tally.window_keys.insert(key);
                }
            }
            Ok::<ClientTally, WorkshopError>(tally)
        }
    });
    let tallies = futures_util::future::try_join_all(clients).await?;
    let elapsed = started.elapsed().min(settings.duration);

    let mut latency = LatencyRecorder::new();
    let mut allowed_at = Vec::new();
    let (mut requests, mut commands, mut round_trips) = (0, 0, 0);
    let mut window_keys = BTreeSet::new();
    for tally in tallies {
        latency.merge(&tally.latency);
        allowed_at.extend(tally.allowed_at);
        requests += tally.requests;
        commands += tally.commands;
        round_trips += tally.round_trips;
        window_keys.extend(tally.window_keys);
    }
    allowed_at.sort();
    let allowed = allowed_at.len() as u64;
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let per_decision = |n: u64| n as f64 / requests.max(1) as f64;
    let outcome = LimiterOutcome {
        limiter,
        key: base.to_string(),
        requests,
        allowed,
        denied: requests - allowed,
        allowed_per_second: allowed as f64 / seconds,
        allowed_each_second: each_second(&allowed_at, settings.duration),
        max_in_any_second: max_in_any_second(&allowed_at),
        commands_per_decision: per_decision(commands),
        round_trips_per_decision: per_decision(round_trips),
        latency: latency.summary(),
        elapsed,
        allowed_per_process: vec![allowed],
        allowed_at_ms: allowed_at.iter().map(|at| millis(*at)).collect(),
    };
    Ok((outcome, window_keys))
}

struct Decision {
    allowed: bool,
    /// Unix milliseconds the client stamped the request with.
    stamp_ms: u64,
    commands: u64,
    round_trips: u64,
    /// The fixed window's key, to delete at the end.
    window_key: Option<String>,
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn decide(
    valkey: &Valkey,
    limiter: Limiter,
    base: &str,
    script: &redis::Script,
    settings: &Settings,
    client: u64,
    sequence: u64,
) -> Result<Decision> {
    let window_ms = u64::try_from(settings.limit.window.as_millis()).unwrap_or(1000).max(1);
    let now = unix_millis();
    match limiter {
        Limiter::FixedWindow => {
            let key = format!("{base}:{}", now / window_ms);
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("INCR")
                .arg(&key)
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(window_ms * 2)
                .ignore();
            let (count,): (u64,) = valkey.query_pipeline("INCR", &pipe).await?;
            Ok(Decision {
                stamp_ms: now,
                allowed: count <= settings.limit.count,
                commands: 4,
                round_trips: 1,
                window_key: Some(key),
            })
        }
        Limiter::SlidingLog => {
            let member = format!("{}:{client}:{sequence}", std::process::id());
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("ZREMRANGEBYSCORE")
                .arg(base)
                .arg("-inf")
                .arg(now.saturating_sub(window_ms))
                .ignore()
                .cmd("ZADD")
                .arg(base)
                .arg(now)
                .arg(&member)
                .ignore()
                .cmd("ZCARD")
                .arg(base)
                .cmd("PEXPIRE")
                .arg(base)
                .arg(window_ms * 2)
                .ignore();
            let (count,): (u64,) = valkey.query_pipeline("ZADD", &pipe).await?;
            if count <= settings.limit.count {
                return Ok(Decision {
                    stamp_ms: now,
                    allowed: true,
                    commands: 6,
                    round_trips: 1,
                    window_key: None,
                });
            }
            // Denied: take the request out of the log again, so denied
            // requests do not hold the window shut.
            let _: u64 = valkey.query("ZREM", redis::cmd("ZREM").arg(base).arg(&member)).await?;
            Ok(Decision {
                stamp_ms: now,
                allowed: false,
                commands: 7,
                round_trips: 2,
                window_key: None,
            })
        }
        Limiter::TokenBucket => {
            let rate = settings.limit.per_second();
            let mut invocation = script.prepare_invoke();
            invocation
                .key(base)
                .arg(rate)
                .arg(settings.burst)
                .arg(window_ms.max(1000) * 2);
            let allowed: i64 = valkey.run_script("EVALSHA", &invocation).await?;
            Ok(Decision {
                stamp_ms: now,
                allowed: allowed == 1,
                commands: 1,
                round_trips: 1,
                window_key: None,
            })
        }
    }
}

/// Allowed requests per whole second of the run (the last, partial one
/// included when the duration is not whole).
pub fn each_second(allowed_at: &[Duration], duration: Duration) -> Vec<u64> {
    let seconds = duration.as_secs_f64().ceil().max(1.0) as usize;
    let mut counts = vec![0; seconds];
    for at in allowed_at {
        let index = (at.as_secs() as usize).min(seconds - 1);
        counts[index] += 1;
    }
    counts
}

/// The most entries of `sorted` within any one-second span.
pub fn max_in_any_second(sorted: &[Duration]) -> u64 {
    let mut best = 0;
    let mut start = 0;
    for (end, at) in sorted.iter().enumerate() {
        while *at - sorted[start] >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best as u64
}

/// `--processes`: copies of this program run the same limiters on the same
/// keys at the same seconds; the first process adds up what they allowed.
mod fleet {
    use std::process::Stdio;
    use std::time::Duration;

    use serde_json::Value;
    use tokio::process::{Child, Command};

    use super::{each_second, max_in_any_second, LimiterOutcome, RateLimitOptions};
    use crate::config::Config;
    use crate::error::{Result, WorkshopError};
    use crate::exercises::stampede::fleet::member_env;

    pub(super) fn start(config: &Config, options: &RateLimitOptions, burst: u64, start_ms: u64) -> Result<Vec<Child>> {
        let program = std::env::current_exe().map_err(|e| {
            WorkshopError::Other(anyhow::anyhow!("cannot find this program to start copies of it: {e}"))
        })?;
        let limiter = match options.limiters.as_slice() {
            [one] => one.name(),
            _ => "all",
        };
        let args: Vec<String> = vec![
            "--connect-timeout".into(),
            config.connect_timeout.as_secs_f64().to_string(),
            "--json".into(),
            "rate-limit".into(),
            "--fleet-member-start-ms".into(),
            start_ms.to_string(),
            "--limiter".into(),
            limiter.into(),
            "--clients".into(),
            options.clients.to_string(),
            "--rate".into(),
            options.rate.to_string(),
            "--limit".into(),
            options.limit.clone(),
            "--duration".into(),
            options.duration_s.to_string(),
            "--burst".into(),
            burst.to_string(),
        ];
        (1..options.processes)
            .map(|number| {
                Command::new(&program)
                    .args(&args)
                    .envs(member_env(config))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot start process {}: {e}", number + 1)))
            })
            .collect()
    }

    /// Every copy's report (its JSON document), in process order.
    pub(super) async fn finish(copies: Vec<Child>) -> Result<Vec<Value>> {
        let mut reports = Vec::new();
        for (index, child) in copies.into_iter().enumerate() {
            let number = index + 2;
            let output = child
                .wait_with_output()
                .await
                .map_err(|e| WorkshopError::Other(anyhow::anyhow!("process {number}: {e}")))?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let reason = stderr
                    .lines()
                    .last()
                    .unwrap_or("no message")
                    .trim_start_matches("error: ");
                return Err(WorkshopError::incomplete(format!(
                    "process {number} of the fleet failed ({}): {reason}",
                    output.status
                )));
            }
            let report: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
                WorkshopError::Other(anyhow::anyhow!(
                    "process {number} sent a report that does not parse: {e}"
                ))
            })?;
            reports.push(report);
        }
        Ok(reports)
    }

    /// Adds the copies' counts of limiter number `index` to this process's.
    pub(super) fn merge(total: &mut LimiterOutcome, index: usize, reports: &[Value], duration: Duration) {
        let mut stamps: Vec<Duration> = total
            .allowed_at_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect();
        let mut commands = total.commands_per_decision * total.requests as f64;
        let mut trips = total.round_trips_per_decision * total.requests as f64;
        for report in reports {
            let copy = &report["limiters"][index];
            let requests = copy["requests"].as_u64().unwrap_or(0);
            let allowed = copy["allowed"].as_u64().unwrap_or(0);
            total.requests += requests;
            total.allowed += allowed;
            total.allowed_per_process.push(allowed);
            commands += copy["commands_per_decision"].as_f64().unwrap_or(0.0) * requests as f64;
            trips += copy["round_trips_per_decision"].as_f64().unwrap_or(0.0) * requests as f64;
            if let Some(list) = copy["allowed_at_ms"].as_array() {
                stamps.extend(list.iter().filter_map(Value::as_u64).map(Duration::from_millis));
            }
        }
        stamps.sort();
        total.denied = total.requests - total.allowed;
        total.allowed_per_second = total.allowed as f64 / total.elapsed.as_secs_f64().max(1e-9);
        total.allowed_each_second = each_second(&stamps, duration);
        total.max_in_any_second = max_in_any_second(&stamps);
        let decisions = total.requests.max(1) as f64;
        total.commands_per_decision = commands / decisions;
        total.round_trips_per_decision = trips / decisions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_per_second_or_minute() {
        assert_eq!(
            Limit::parse("100/s").unwrap(),
            Limit {
                count: 100,
                window: Duration::from_secs(1)
            }
        );
        assert_eq!(Limit::parse("250").unwrap().count, 250);
        assert_eq!(Limit::parse("6000/min").unwrap().per_second(), 100.0);
        assert_eq!(
            Limit::parse("100/h").unwrap_err().to_string(),
            "--limit '100/h' is not a rate; write it as requests per second or minute, e.g. 100/s or 6000/min"
        );
        assert!(Limit::parse("0/s").is_err());
    }

    #[test]
    fn the_busiest_second_may_straddle_two_windows() {
        let ms = Duration::from_millis;
        // 3 just before a window edge, 3 just after: each window holds 3, one second holds 6.
        let at = [ms(900), ms(950), ms(990), ms(1010), ms(1050), ms(1100), ms(2500)];
        assert_eq!(each_second(&at, Duration::from_secs(3)), vec![3, 3, 1]);
        assert_eq!(max_in_any_second(&at), 6);
        assert_eq!(max_in_any_second(&[]), 0);
    }
}
