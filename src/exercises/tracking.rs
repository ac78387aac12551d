//! Exercise 13, `workshop-cli tracking`: client-side caching invalidated by
//! Valkey itself. This process is the writer; per mode it starts a reader
//! process ([`reader`]) that keeps `--keys` products in an L1 of its own on a
//! RESP3 connection: `CLIENT TRACKING on` (Valkey remembers what the reader
//! read), `CLIENT TRACKING on BCAST PREFIX` (every change under the prefix)
//! or, for comparison, exercise 4's pub/sub (the writer publishes each key
//! after writing it).
//!
//! Each update: the reader reads the product twice (Valkey, then its L1),
//! the writer writes a new price to Valkey (as write-through does after its
//! commit; the database row is not changed, so there is nothing to clean),
//! then asks the reader, which sends one PING on its own connection and
//! says whether the entry is still in L1 and when the invalidation came.
//! Valkey queues a tracking invalidation before it answers the write, so
//! the entry is gone by the writer's reply plus one round trip; pub/sub
//! needs the writer's second command, and a writer that does not publish
//! (the last, unannounced write, as from `redis-cli`) leaves L1 stale.

pub mod reader;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::cache::{KeyScheme, Valkey};
use crate::config::Config;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::services::{self, Needs, ValkeyNeed};
use crate::exercises::Outcome;
use crate::measure::{LatencyRecorder, LatencySummary};

pub const MAX_UPDATES: u64 = 1000;
pub const MAX_KEYS: u64 = 1000;
/// How long the reader process may take to start and enable tracking.
const READER_START: Duration = Duration::from_secs(15);
/// How long one answer of the reader may take.
const READER_ANSWER: Duration = Duration::from_secs(10);

/// Refused on a cluster, with what to do instead.
pub const CLUSTER_REFUSAL: &str = "exercise 13 needs a single Valkey node: CLIENT TRACKING is per node (a reader would have to enable it on every primary and follow its keys through failovers); point VALKEY_URL at one node, e.g. redis://127.0.0.1:6379";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrackingMode {
    /// `CLIENT TRACKING on`.
    Default,
    /// `CLIENT TRACKING on BCAST PREFIX p`.
    Bcast,
    /// Exercise 4's pub/sub invalidation.
    #[serde(rename = "pubsub")]
    PubSub,
}

impl TrackingMode {
    pub const ALL: [TrackingMode; 3] = [TrackingMode::Default, TrackingMode::Bcast, TrackingMode::PubSub];

    pub fn name(self) -> &'static str {
        match self {
            TrackingMode::Default => "default",
            TrackingMode::Bcast => "bcast",
            TrackingMode::PubSub => "pubsub",
        }
    }

    pub fn parse(text: &str) -> Option<TrackingMode> {
        TrackingMode::ALL.into_iter().find(|mode| mode.name() == text)
    }

    /// How the reader learns of a change.
    pub fn how(self) -> &'static str {
        match self {
            TrackingMode::Default => "CLIENT TRACKING on (keys it read)",
            TrackingMode::Bcast => "CLIENT TRACKING on BCAST PREFIX",
            TrackingMode::PubSub => "SUBSCRIBE; the writer PUBLISHes",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrackingOptions {
    pub modes: Vec<TrackingMode>,
    pub updates: u64,
    pub keys: u64,
}

/// A line the writer sends the reader.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReaderRequest {
    Read { id: i64 },
    Check { id: i64 },
    Quit,
}

/// A line the reader answers with.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReaderReply {
    Ready,
    Read {
        id: i64,
        layer: String,
    },
    Check {
        id: i64,
        in_l1: bool,
        invalidated_at_us: Option<u64>,
        round_trip_us: u64,
    },
    Summary(ReaderSummary),
}

/// What the reader counted itself.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ReaderSummary {
    pub l1_hits: u64,
    pub l2_reads: u64,
    /// Push messages that invalidated: `invalidate` pushes, or pub/sub messages.
    pub invalidation_messages: u64,
    pub keys_invalidated: u64,
    /// Times L1 was emptied whole (a flush, or a lost connection).
    pub flushes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrackingOutcome {
    pub exercise: &'static str,
    pub database: String,
    pub valkey: String,
    pub keys: u64,
    pub updates: u64,
    pub modes: Vec<ModeOutcome>,
    /// What happens on a cluster (the run refuses one).
    pub cluster_note: &'static str,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModeOutcome {
    pub mode: TrackingMode,
    pub how: &'static str,
    pub updates: u64,
    /// Updates whose L1 entry was gone when the reader checked, one round
    /// trip after the writer's command returned.
    pub invalidated_within_round_trip: u64,
    /// Updates the reader still held the old value for at that check.
    pub stale_after_round_trip: u64,
    /// Invalidation received minus the writer's write returning, in µs
    /// (negative: before the writer had its answer). Across two processes
    /// on one machine's clock.
    pub stale_window_us: Option<SignedSummary>,
    /// Commands the writer sends per update: the write, plus the PUBLISH in pubsub mode.
    pub writer_commands_per_update: u64,
    /// The writer's SET (and PUBLISH) per update.
    pub write_latency: Option<LatencySummary>,
    /// The reader's PING.
    pub reader_round_trip: Option<LatencySummary>,
    /// A last write that announces nothing (like one from `redis-cli`):
    /// did it still reach the reader's L1?
    pub unannounced_write_invalidated: bool,
    pub reader: ReaderSummary,
}

/// min / p50 / max of signed microseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SignedSummary {
    pub min: i64,
    pub p50: i64,
    pub max: i64,
}

impl SignedSummary {
    pub fn of(mut values: Vec<i64>) -> Option<SignedSummary> {
        values.sort_unstable();
        Some(SignedSummary {
            min: *values.first()?,
            p50: values[(values.len() - 1) / 2],
            max: *values.last()?,
        })
    }
}

impl Outcome for TrackingOutcome {}

pub const CLUSTER_NOTE: &str = "on a cluster, tracking is per node: the run refuses one (exit 6)";

fn validate(options: &TrackingOptions) -> Result<()> {
    if options.updates == 0 || options.updates > MAX_UPDATES {
        return Err(WorkshopError::invalid(format!(
            "--updates must be from 1 to {MAX_UPDATES} (got {})",
            options.updates
        )));
    }
    if options.keys == 0 || options.keys > MAX_KEYS {
        return Err(WorkshopError::invalid(format!(
            "--keys must be from 1 to {MAX_KEYS} (got {})",
            options.keys
        )));
    }
    Ok(())
}

pub async fn measure(config: &Config, options: TrackingOptions, progress: &dyn RunProgress) -> Result<TrackingOutcome> {
    validate(&options)?;
    progress.phase("connecting", None);
    let valkey = services::valkey(config).await?;
    if valkey.is_cluster() {
        return Err(WorkshopError::invalid(CLUSTER_REFUSAL));
    }
    let (db, _) = services::connect_database(
        config,
        Needs {
            pool_connections: 2,
            valkey: ValkeyNeed::Required,
            recording_as: None,
        },
    )
    .await?;
    let rows = crate::exercises::ttl::load_products(&db, options.keys).await?;
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    let run = format!("{}-{}", std::process::id(), unix_micros());
    let mut modes = Vec::new();
    let mut failure = None;
    for mode in &options.modes {
        progress.phase(&format!("{}: {} updates", mode.name(), options.updates), None);
        match run_mode(config, &valkey, &keys, &run, *mode, &rows, options.updates).await {
            Ok(outcome) => modes.push(outcome),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    progress.finish_phase();
    let removed = valkey.delete_prefixed(&keys.tracking_prefix(&run)).await;
    if let Some(error) = failure {
        return Err(error);
    }
    removed?;
    Ok(TrackingOutcome {
        exercise: "tracking",
        database: db.kind().label().to_string(),
        valkey: valkey.target().to_string(),
        keys: rows.len() as u64,
        updates: options.updates,
        modes,
        cluster_note: CLUSTER_NOTE,
    })
}

/// The reader process of one mode, spoken to over its stdin and stdout.
struct ReaderProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ReaderProcess {
    fn start(config: &Config, mode: TrackingMode, run: &str) -> Result<ReaderProcess> {
        let program = std::env::current_exe()
            .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot find this program to start the reader: {e}")))?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(["tracking", "--reader", mode.name(), "--run", run])
            .envs(crate::exercises::stampede::fleet::member_env(config))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot start the reader process: {e}")))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(WorkshopError::Other(anyhow::anyhow!("the reader process has no pipes")));
        };
        Ok(ReaderProcess {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn answer(&mut self, within: Duration) -> Result<ReaderReply> {
        let lost =
            |why: String| WorkshopError::incomplete(format!("the reader process {why}; its error (if any) is above"));
        let line = tokio::time::timeout(within, self.lines.next_line())
            .await
            .map_err(|_| lost(format!("did not answer within {} s", within.as_secs())))?
            .map_err(|e| lost(format!("could not be read: {e}")))?
            .ok_or_else(|| lost("ended".into()))?;
        serde_json::from_str(&line).map_err(|e| lost(format!("answered '{line}' ({e})")))
    }

    async fn ask(&mut self, request: &ReaderRequest) -> Result<ReaderReply> {
        let mut line = serde_json::to_string(request).map_err(|e| WorkshopError::Other(e.into()))?;
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| WorkshopError::incomplete(format!("the reader process stopped listening: {e}")))?;
        self.answer(READER_ANSWER).await
    }
}

struct Check {
    in_l1: bool,
    invalidated_at_us: Option<u64>,
    round_trip: Duration,
}

async fn check(reader: &mut ReaderProcess, id: i64) -> Result<Check> {
    match reader.ask(&ReaderRequest::Check { id }).await? {
        ReaderReply::Check {
            in_l1,
            invalidated_at_us,
            round_trip_us,
            ..
        } => Ok(Check {
            in_l1,
            invalidated_at_us,
            round_trip: Duration::from_micros(round_trip_us),
        }),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(reply: &ReaderReply) -> WorkshopError {
    WorkshopError::incomplete(format!("the reader process answered out of turn: {reply:?}"))
}

/// Reads `id` twice in the reader: the first fills L1 (and, in default mode,
/// makes Valkey track the key), the second is an L1 hit.
async fn read_twice(reader: &mut ReaderProcess, id: i64) -> Result<()> {
    for _ in 0..2 {
        match reader.ask(&ReaderRequest::Read { id }).await? {
            ReaderReply::Read { .. } => {}
            other => return Err(unexpected(&other)),
        }
    }
    Ok(())
}

async fn run_mode(
    config: &Config,
    valkey: &Valkey,
    keys: &KeyScheme,
    run: &str,
    mode: TrackingMode,
    rows: &[(i64, String)],
    updates: u64,
) -> Result<ModeOutcome> {
    let ttl = config.ttl_policy();
    for (id, text) in rows {
        valkey
            .set_with_ttl(&keys.tracking_product(run, *id), text, ttl.pick())
            .await?;
    }
    let channel = keys.tracking_channel(run);
    let mut reader = ReaderProcess::start(config, mode, run)?;
    match reader.answer(READER_START).await? {
        ReaderReply::Ready => {}
        other => return Err(unexpected(&other)),
    }
    let mut windows = Vec::new();
    let mut writes = LatencyRecorder::new();
    let mut round_trips = LatencyRecorder::new();
    let (mut invalidated, mut stale) = (0u64, 0u64);
    for update in 0..updates {
        let (id, _) = &rows[(update as usize) % rows.len()];
        let key = keys.tracking_product(run, *id);
        read_twice(&mut reader, *id).await?;
        // A new value each time, so a stale read would be visible as such.
        let value = format!("{{\"id\":{id},\"update\":{update}}}");
        let started = Instant::now();
        valkey.set_with_ttl(&key, &value, ttl.pick()).await?;
        let returned_us = unix_micros();
        if mode == TrackingMode::PubSub {
            valkey.publish(&channel, &key).await?;
        }
        writes.record(started.elapsed());
        let seen = check(&mut reader, *id).await?;
        round_trips.record(seen.round_trip);
        if seen.in_l1 {
            stale += 1;
        } else {
            invalidated += 1;
            if let Some(at) = seen.invalidated_at_us {
                windows.push(at as i64 - returned_us as i64);
            }
        }
    }
    // A write that announces nothing: only Valkey's own tracking sees it.
    let (id, _) = &rows[0];
    read_twice(&mut reader, *id).await?;
    valkey
        .set_with_ttl(&keys.tracking_product(run, *id), "{\"unannounced\":true}", ttl.pick())
        .await?;
    let unannounced = check(&mut reader, *id).await?;
    let summary = match reader.ask(&ReaderRequest::Quit).await? {
        ReaderReply::Summary(summary) => summary,
        other => return Err(unexpected(&other)),
    };
    let _ = tokio::time::timeout(READER_ANSWER, reader.child.wait()).await;
    Ok(ModeOutcome {
        mode,
        how: mode.how(),
        updates,
        invalidated_within_round_trip: invalidated,
        stale_after_round_trip: stale,
        stale_window_us: SignedSummary::of(windows),
        writer_commands_per_update: if mode == TrackingMode::PubSub { 2 } else { 1 },
        write_latency: writes.summary(),
        reader_round_trip: round_trips.summary(),
        unannounced_write_invalidated: !unannounced.in_l1,
        reader: summary,
    })
}

pub(crate) fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_summary_keeps_windows_before_the_write_returned() {
        let summary = SignedSummary::of(vec![120, -40, 15]).unwrap();
        assert_eq!(
            summary,
            SignedSummary {
                min: -40,
                p50: 15,
                max: 120
            }
        );
        assert_eq!(SignedSummary::of(Vec::new()), None);
    }

    #[test]
    fn reader_lines_survive_the_trip_through_json() {
        let line = serde_json::to_string(&ReaderRequest::Check { id: 7 }).unwrap();
        assert_eq!(line, r#"{"check":{"id":7}}"#);
        let quit: ReaderRequest = serde_json::from_str(r#""quit""#).unwrap();
        assert!(matches!(quit, ReaderRequest::Quit));
        assert_eq!(TrackingMode::parse("bcast"), Some(TrackingMode::Bcast));
    }
}
