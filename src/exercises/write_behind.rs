//! Exercise 5, `workshop-cli write-behind`: acknowledge passenger writes as
//! soon as Valkey holds them, persist them with a flusher in batches, and time
//! the acknowledgement next to write-through's on the same kind of write.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cache::{CacheError, KeyScheme, Valkey};
use crate::config::Config;
use crate::db::passengers::PassengerFields;
use crate::db::Database;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::services::{self, ConnectionSetup, Needs, ValkeyNeed};
use crate::exercises::{Outcome, Verdict};
use crate::fixtures::names::{FEMALE_FIRST_NAMES, LAST_NAMES, MALE_FIRST_NAMES};
use crate::measure::{self, LatencyRecorder, LatencySummary};
use crate::patterns::write_behind::{
    AckError, BatchSizeSummary, FlushSettings, FlushStop, FlushTally, Flusher, QueueDepth, Rejected, Until, WriteQueue,
    CONSUMER,
};
use crate::patterns::write_through::{WriteThrough, WriteThroughError};
use crate::rng::SplitMix64;

pub const MAX_WRITES: u64 = 100_000;
pub const MAX_BATCH: u64 = 5_000;
pub const MAX_FLUSH_INTERVAL_MS: u64 = 60_000;
pub const MAX_COMPARE: u64 = 10_000;
pub const MAX_DURATION_SECONDS: f64 = 3_600.0;
/// Write-through writes timed for the comparison unless `--compare` says otherwise (at most `--writes`).
pub const DEFAULT_COMPARE: u64 = 100;
/// First letter of the passports of write-behind passengers; the seeded ones start with `P`.
pub const PASSPORT_LETTER: char = 'W';
/// First letter of the passports of the write-through comparison passengers (removed after the run).
pub const COMPARISON_PASSPORT_LETTER: char = 'T';
/// How long a producer keeps asking Valkey whether a write whose reply was lost reached it.
const RECONCILE_BUDGET: Duration = Duration::from_secs(5);
/// Without `--duration`, how long the flusher keeps trying a batch the database refuses.
const RETRY_FOR: Duration = Duration::from_secs(5);
/// Attempts to find a free passport number for a comparison write.
const PASSPORT_ATTEMPTS: usize = 5;
const PASSPORT_ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Producer and flusher in one process; waits until everything is flushed.
    ProduceAndFlush,
    /// Acknowledge the writes and stop; they wait in the stream.
    ProduceOnly,
    /// Only the flusher.
    FlushOnly,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::ProduceAndFlush => "produce and flush",
            Mode::ProduceOnly => "produce only",
            Mode::FlushOnly => "flush only",
        }
    }

    fn produces(self) -> bool {
        self != Mode::FlushOnly
    }

    fn flushes(self) -> bool {
        self != Mode::ProduceOnly
    }
}

/// The options as given; [`validate`] checks them.
#[derive(Debug, Clone)]
pub struct WriteBehindOptions {
    pub mode: Mode,
    pub writes: u64,
    pub batch: u64,
    pub flush_interval_ms: u64,
    pub compare: Option<u64>,
    pub duration_seconds: Option<f64>,
    /// Remove this run's rows and keys at the end.
    pub cleanup: bool,
}

impl Default for WriteBehindOptions {
    fn default() -> Self {
        WriteBehindOptions {
            mode: Mode::ProduceAndFlush,
            writes: 1_000,
            batch: 100,
            flush_interval_ms: 100,
            compare: None,
            duration_seconds: None,
            cleanup: false,
        }
    }
}

/// Validated options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub mode: Mode,
    pub writes: u64,
    pub batch: usize,
    pub flush_interval: Duration,
    pub compare: u64,
    pub duration: Option<Duration>,
    pub cleanup: bool,
}

fn in_range(flag: &str, value: u64, low: u64, high: u64, unit: &str) -> Result<u64> {
    if value < low || value > high {
        return Err(WorkshopError::invalid(format!(
            "{flag} must be from {low} to {high}{unit} (got {value})"
        )));
    }
    Ok(value)
}

/// Checks every value before anything is connected or written.
pub fn validate(options: &WriteBehindOptions) -> Result<Plan> {
    let writes = in_range("--writes", options.writes, 1, MAX_WRITES, "")?;
    let batch = in_range("--batch", options.batch, 1, MAX_BATCH, "")?;
    let interval = in_range(
        "--flush-interval",
        options.flush_interval_ms,
        1,
        MAX_FLUSH_INTERVAL_MS,
        " ms",
    )?;
    let compare = match options.compare {
        Some(n) => in_range("--compare", n, 0, MAX_COMPARE, "")?,
        None => DEFAULT_COMPARE,
    };
    let duration = match options.duration_seconds {
        None => None,
        Some(seconds) if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_DURATION_SECONDS => {
            Some(Duration::from_secs_f64(seconds))
        }
        Some(seconds) => {
            return Err(WorkshopError::invalid(format!(
                "--duration must be more than 0 and at most {MAX_DURATION_SECONDS} seconds (got {seconds})"
            )))
        }
    };
    let produces = options.mode.produces();
    Ok(Plan {
        mode: options.mode,
        writes: if produces { writes } else { 0 },
        batch: usize::try_from(batch).unwrap_or(usize::MAX),
        flush_interval: Duration::from_millis(interval),
        compare: if produces { compare.min(writes) } else { 0 },
        duration,
        cleanup: options.cleanup,
    })
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Setup {
    /// No pool warm-up: the flusher's two connections are opened untimed.
    #[serde(flatten)]
    pub connection: ConnectionSetup,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Produced {
    /// Acknowledged writes.
    pub writes: u64,
    /// MULTI { SET, XADD } EXEC, per write.
    pub ack: Option<LatencySummary>,
    pub passport_prefix: String,
    /// The passport number of every acknowledged write: the idempotency keys.
    pub passports: Vec<String>,
    /// The cached row of the first write.
    pub example_key: Option<String>,
    /// Writes whose MULTI/EXEC failed ambiguously (a timeout after it was
    /// sent) and that Valkey had applied: counted in `writes`, so `writes`
    /// equals what the stream received.
    pub reconciled: u64,
    /// Passports of writes whose fate Valkey never told (it stopped answering
    /// after the ambiguous failure): each may or may not be in the stream.
    pub unconfirmed: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    /// Write-through creates of the same kind of passenger, timed in the same
    /// run: BEGIN, INSERT, read back, COMMIT, then SET.
    pub write_through: Option<LatencySummary>,
    /// Write-through p50 / write-behind acknowledgement p50.
    pub ack_speedup: Option<f64>,
    /// Why there are fewer (or no) write-through samples.
    pub not_compared: Option<String>,
    /// The comparison's passengers and keys are removed after the run.
    pub removed_rows: u64,
    pub removed_keys: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Flushed {
    /// Entries taken off the stream (stored, repeated or rejected).
    pub entries: u64,
    pub inserted: u64,
    /// Entries whose row was already stored: delivered again after a crash, skipped by the idempotent insert.
    pub already_stored: u64,
    /// Entries found pending at start (read by a flusher that did not finish them).
    pub recovered: u64,
    pub rejected: u64,
    pub rejected_examples: Vec<Rejected>,
    pub batches: Option<BatchSizeSummary>,
    /// From the write being sent to the commit that stored it.
    pub lag: Option<LatencySummary>,
    /// BEGIN .. COMMIT of each batch.
    pub transaction: Option<LatencySummary>,
    pub retries: u64,
    /// Why the flusher stopped before the stream was drained.
    pub stopped: Option<FlushStop>,
}

impl From<FlushTally> for Flushed {
    fn from(tally: FlushTally) -> Self {
        Flushed {
            entries: tally.entries,
            inserted: tally.inserted,
            already_stored: tally.already_stored,
            recovered: tally.recovered,
            rejected: tally.rejected,
            rejected_examples: tally.rejected_examples,
            batches: tally.batch_sizes.summary(),
            lag: tally.lag.summary(),
            transaction: tally.transactions.summary(),
            retries: tally.retries,
            stopped: tally.stopped,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteBehindOutcome {
    pub exercise: &'static str,
    pub mode: Mode,
    /// Product and version; `None` when the database could not be reached.
    pub database: Option<String>,
    pub stream: String,
    pub group: String,
    pub consumer: String,
    pub rejected_stream: String,
    pub ttl_seconds: u64,
    pub batch: usize,
    pub flush_interval_ms: u64,
    pub duration_seconds: Option<f64>,
    /// Valkey's append-only file: without it, queued writes live only in memory.
    pub valkey_aof_enabled: Option<bool>,
    pub setup: Setup,
    pub queue_before: QueueDepth,
    /// `None` when Valkey could not be asked at the end.
    pub queue_after: Option<QueueDepth>,
    pub produced: Option<Produced>,
    pub comparison: Option<Comparison>,
    pub flushed: Option<Flushed>,
    /// `--cleanup`: this run's rows and keys, removed at the end.
    pub cleanup: Option<RunCleanup>,
    /// Shown on stderr after the tables (what a stopped run left behind).
    #[serde(skip)]
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub verdict: Verdict,
}

impl Outcome for WriteBehindOutcome {
    fn verdict(&mut self) -> Verdict {
        std::mem::take(&mut self.verdict)
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunCleanup {
    pub removed_rows: u64,
    pub removed_keys: u64,
    /// Why the cleanup did not finish (the database or Valkey was lost), and the command that will.
    pub not_done: Option<String>,
}

/// Acknowledges writes into the stream and/or flushes them; writes left
/// queued or rejected, or a run stopped part-way, make the verdict.
pub async fn measure(
    config: &Config,
    options: WriteBehindOptions,
    progress: &dyn RunProgress,
) -> Result<WriteBehindOutcome> {
    let plan = validate(&options)?;
    let keys = KeyScheme::new(&config.key_prefix, &config.database);
    // Valkey first: when it cannot be reached, nothing is written anywhere.
    let valkey = services::valkey(config).await?;
    let aof = valkey
        .info("persistence")
        .await?
        .get("aof_enabled")
        .map(|flag| flag == "1");
    let producer_queue = WriteQueue::new(valkey.clone(), keys.clone(), config.ttl_policy());
    // The flusher's blocking reads get a connection of their own.
    let flusher_valkey = Valkey::connect_dedicated(&config.valkey, config.connect_timeout, plan.flush_interval).await?;
    let flusher_queue = WriteQueue::new(flusher_valkey, keys.clone(), config.ttl_policy());
    producer_queue.ensure_group().await?;
    let queue_before = producer_queue.depth().await?;

    // The database is the flusher's (and the comparison's); write-behind acknowledges without it.
    let needs_database = plan.mode.flushes() || plan.compare > 0;
    let database = if needs_database {
        Some(connect_database(config).await)
    } else {
        None
    };
    let (db, server, db_problem) = match database {
        Some(Ok((db, server))) => (Some(db), Some(server), None),
        Some(Err(error)) => (None, None, Some(error.to_string())),
        None => (None, None, None),
    };

    let comparison_pattern = db.as_ref().filter(|_| plan.compare > 0).map(|db| WriteThrough {
        db: db.clone(),
        valkey: valkey.clone(),
        keys: keys.clone(),
        ttl: config.ttl_policy(),
    });
    let flusher = db.as_ref().filter(|_| plan.mode.flushes()).map(|db| Flusher {
        queue: flusher_queue.clone(),
        db: db.clone(),
        settings: FlushSettings {
            batch: plan.batch,
            interval: plan.flush_interval,
            retry_for: RETRY_FOR,
        },
    });
    // The ledger entries after this one are this run's rows (for --cleanup).
    let ledger_before = match &db {
        Some(db) if plan.cleanup => Some(db.last_change_id().await?),
        _ => None,
    };
    let mut rng = SplitMix64::new(random_seed());

    let (production, tally) = match plan.mode {
        Mode::ProduceOnly => {
            progress.phase("acknowledged", Some(plan.writes));
            let production = produce(
                &producer_queue,
                comparison_pattern.as_ref(),
                &plan,
                &mut rng,
                Some(progress),
            )
            .await;
            progress.finish_phase();
            (Some(production), None)
        }
        Mode::FlushOnly => {
            progress.phase("flushed", Some(queue_before.entries));
            let until = match plan.duration {
                Some(duration) => Until::Deadline(Instant::now() + duration),
                None => Until::Drained,
            };
            let tally = flush(flusher.as_ref(), until, progress, db_problem.as_deref()).await;
            progress.finish_phase();
            (None, Some(tally))
        }
        Mode::ProduceAndFlush => {
            progress.phase("flushed", Some(queue_before.entries + plan.writes));
            let producer_done = AtomicBool::new(false);
            let producing = async {
                // The bar follows the flusher: the run is done when everything is flushed.
                let production = produce(&producer_queue, comparison_pattern.as_ref(), &plan, &mut rng, None).await;
                producer_done.store(true, Ordering::Release);
                production
            };
            let flushing = flush(
                flusher.as_ref(),
                Until::ProducerDone(&producer_done),
                progress,
                db_problem.as_deref(),
            );
            let (production, tally) = tokio::join!(producing, flushing);
            progress.finish_phase();
            (Some(production), Some(tally))
        }
    };
    let production_stopped = production.as_ref().and_then(|p| p.stopped.clone());
    let queue_after = producer_queue.depth().await.ok();

    let comparison = match (&production, plan.compare) {
        (Some(production), compare) if compare > 0 => {
            Some(compare_and_clean_up(production, comparison_pattern.as_ref(), db_problem.as_deref()).await)
        }
        _ => None,
    };
    let cleanup = match plan.cleanup {
        true => Some(clean_up_run(db.as_ref(), ledger_before, &valkey, &keys, production.as_ref(), config).await),
        false => None,
    };
    let mut outcome = WriteBehindOutcome {
        exercise: "write-behind",
        mode: plan.mode,
        database: server,
        stream: keys.write_behind_stream(),
        group: keys.write_behind_group().to_string(),
        consumer: CONSUMER.to_string(),
        rejected_stream: keys.write_behind_rejected(),
        ttl_seconds: config.ttl.as_secs(),
        batch: plan.batch,
        flush_interval_ms: u64::try_from(plan.flush_interval.as_millis()).unwrap_or(u64::MAX),
        duration_seconds: plan.duration.map(|d| d.as_secs_f64()),
        valkey_aof_enabled: aof,
        setup: Setup {
            connection: ConnectionSetup {
                database_connect: db.as_ref().map(Database::connect_time),
                valkey_connect: Some(valkey.connect_time()),
                pool_warm_up: None,
            },
        },
        queue_before,
        queue_after,
        produced: production.map(|p| p.produced),
        comparison,
        flushed: tally.map(Flushed::from),
        cleanup,
        warnings: Vec::new(),
        verdict: Verdict::Complete,
    };
    if let Some(db) = &db {
        db.close().await;
    }
    if let Some(warning) = stored_rows_warning(&outcome, &plan, config) {
        outcome.warnings.push(warning);
    }
    if let Some(error) = production_stopped {
        let acknowledged = outcome.produced.as_ref().map_or(0, |p| p.writes);
        let reconciled = outcome.produced.as_ref().map_or(0, |p| p.reconciled);
        let unconfirmed = outcome.produced.as_ref().map_or(0, |p| p.unconfirmed.len());
        let mut note = String::new();
        if reconciled > 0 {
            note.push_str(&format!(
                " (including {reconciled} whose reply was lost but which Valkey had applied)"
            ));
        }
        if unconfirmed > 0 {
            note.push_str(&format!(
                "; {unconfirmed} more may or may not have reached the stream: Valkey stopped answering before it could be asked"
            ));
        }
        outcome.warnings.push(format!(
            "{acknowledged} of {} write(s) were acknowledged before Valkey stopped answering{note}; the report above covers them",
            plan.writes
        ));
        outcome.verdict = Verdict::failed(error.into());
        return Ok(outcome);
    }
    if let Err(error) = verdict(&outcome) {
        outcome.verdict = Verdict::failed(error);
    }
    Ok(outcome)
}

/// A run that stopped part-way says how many rows it stored, and what removes
/// them: its `--cleanup`, or the command that will.
fn stored_rows_warning(outcome: &WriteBehindOutcome, plan: &Plan, config: &Config) -> Option<String> {
    let stored = outcome.flushed.as_ref().map_or(0, |f| f.inserted);
    let stopped = outcome.flushed.as_ref().is_some_and(|f| f.stopped.is_some())
        || outcome.produced.as_ref().map_or(0, |p| p.writes) < plan.writes;
    // Nothing stored and nothing to clean up: the verdict's message says the rest.
    if !stopped || (stored == 0 && outcome.cleanup.is_none()) {
        return None;
    }
    // Unknown (Valkey lost): entries may be left, and clean would refuse without --force.
    let queued = outcome.queue_after.map_or(1, |q| q.entries);
    let command = clean_after(config, queued);
    let what = match &outcome.cleanup {
        Some(RunCleanup {
            not_done: None,
            removed_rows,
            ..
        }) => format!("--cleanup removed {removed_rows} of them"),
        Some(RunCleanup {
            not_done: Some(reason), ..
        }) => format!("--cleanup could not finish ({reason})"),
        None => format!("they stay; `{command}` removes them"),
    };
    Some(format!(
        "the run stopped part-way; the flusher had committed {stored} row(s) to the database; {what}"
    ))
}

/// `clean`, with `--force` when acknowledged writes are still queued (clean
/// refuses to drop them otherwise).
fn clean_after(config: &Config, queued: u64) -> String {
    let command = crate::exercises::clean::clean_command(config);
    if queued > 0 {
        format!("{command} --force")
    } else {
        command
    }
}

/// `--cleanup`: deletes the rows this run's flusher stored (the ledger
/// entries after `ledger_before`) and the keys its writes cached. What it
/// cannot do (a lost service) is said, with the command that will.
async fn clean_up_run(
    db: Option<&Database>,
    ledger_before: Option<i64>,
    valkey: &Valkey,
    keys: &KeyScheme,
    production: Option<&Production>,
    config: &Config,
) -> RunCleanup {
    let mut done = RunCleanup::default();
    let mut problems = Vec::new();
    match (db, ledger_before) {
        (Some(db), Some(after)) => {
            let removed = async {
                let ids = db.created_since(crate::db::changes::PASSENGER_TABLE, after).await?;
                db.delete_passengers(&ids).await
            };
            match removed.await {
                Ok(rows) => done.removed_rows = rows,
                Err(error) => problems.push(error.to_string()),
            }
        }
        _ => problems.push("the database is not connected".to_string()),
    }
    if let Some(production) = production {
        for passport in &production.produced.passports {
            match valkey.delete(&keys.passenger_by_passport(passport)).await {
                Ok(true) => done.removed_keys += 1,
                Ok(false) => {}
                Err(error) => {
                    problems.push(error.to_string());
                    break;
                }
            }
        }
    }
    if !problems.is_empty() {
        let queued = WriteQueue::new(valkey.clone(), keys.clone(), config.ttl_policy())
            .depth()
            .await
            .map_or(1, |depth| depth.entries);
        done.not_done = Some(format!(
            "{}; `{}` will",
            problems.join("; "),
            clean_after(config, queued)
        ));
    }
    done
}

/// Exit 8 when the run leaves acknowledged writes outside the database.
fn verdict(outcome: &WriteBehindOutcome) -> Result<()> {
    let Some(flushed) = &outcome.flushed else {
        return Ok(());
    };
    if flushed.rejected > 0 {
        return Err(WorkshopError::incomplete(format!(
            "{} queued write(s) can never be stored and were moved to {} (see the reasons above)",
            flushed.rejected, outcome.rejected_stream
        )));
    }
    let queued = outcome.queue_after.map(|depth| depth.entries);
    match (queued, &flushed.stopped) {
        (Some(0), _) => Ok(()),
        (Some(n), Some(stop)) => Err(WorkshopError::incomplete(format!(
            "{n} acknowledged write(s) are still queued in {}, not in the database: {stop}; then run `workshop-cli write-behind --flush-only` to store them",
            outcome.stream
        ))),
        (Some(n), None) => Err(WorkshopError::incomplete(format!(
            "{n} acknowledged write(s) are still queued in {}; run `workshop-cli write-behind --flush-only` to store them",
            outcome.stream
        ))),
        (None, stop) => Err(WorkshopError::incomplete(format!(
            "the queue {} could not be read at the end ({}); what was not flushed is still there",
            outcome.stream,
            stop.as_ref()
                .map_or_else(|| "Valkey stopped answering".to_string(), ToString::to_string)
        ))),
    }
}

async fn connect_database(config: &Config) -> Result<(Database, String)> {
    let needs = Needs {
        // One for the flusher, one for the write-through comparison.
        pool_connections: 2,
        valkey: ValkeyNeed::Off,
        recording_as: Some("write-behind"),
    };
    let (db, server) = services::connect_database(config, needs).await?;
    services::warm_up(&db, None, 2).await?;
    Ok((db, server))
}

async fn flush(
    flusher: Option<&Flusher>,
    until: Until<'_>,
    progress: &dyn RunProgress,
    db_problem: Option<&str>,
) -> FlushTally {
    let Some(flusher) = flusher else {
        let reason = db_problem.unwrap_or("the database is not connected").to_string();
        return FlushTally::stopped_by(FlushStop::Database(reason));
    };
    let mut shown = 0;
    let mut on_batch = |tally: &FlushTally| {
        progress.advance(tally.entries.saturating_sub(shown));
        shown = shown.max(tally.entries);
    };
    flusher.run(until, &mut on_batch).await
}

struct Production {
    produced: Produced,
    /// Valkey stopped answering before every write was acknowledged.
    stopped: Option<CacheError>,
    write_through: LatencyRecorder,
    /// Passengers the comparison created, to remove afterwards.
    compared_ids: Vec<i64>,
    comparison_stopped: Option<String>,
}

/// Acknowledges `plan.writes` new passengers; every so often (evenly spread)
/// one write-through create of the same kind is timed, under the same load.
async fn produce(
    queue: &WriteQueue,
    comparison: Option<&WriteThrough>,
    plan: &Plan,
    rng: &mut SplitMix64,
    progress: Option<&dyn RunProgress>,
) -> Production {
    let mut acks = LatencyRecorder::new();
    let mut stopped = None;
    let mut write_through = LatencyRecorder::new();
    let mut passports = Vec::with_capacity(usize::try_from(plan.writes).unwrap_or(0));
    let mut example_key = None;
    let mut compared_ids = Vec::new();
    let mut comparison_stopped = None;
    let mut reconciled = 0;
    let mut unconfirmed = Vec::new();
    for write in 1..=plan.writes {
        let passenger = generated_passenger(rng, PASSPORT_LETTER);
        let acknowledged = match queue.acknowledge(&passenger).await {
            Ok(acknowledged) => acknowledged,
            Err(AckError { error, may_have_run }) => {
                // What was acknowledged so far still counts and is reported;
                // so does a write Valkey applied although its reply was lost.
                if may_have_run {
                    match queue.reconcile(&passenger, RECONCILE_BUDGET).await {
                        Some(true) => {
                            reconciled += 1;
                            passports.push(passenger.passportno);
                        }
                        Some(false) => {}
                        None => unconfirmed.push(passenger.passportno),
                    }
                }
                stopped = Some(error);
                break;
            }
        };
        acks.record(acknowledged.latency);
        example_key.get_or_insert(acknowledged.key);
        passports.push(passenger.passportno);
        if let Some(progress) = progress {
            progress.advance(1);
        }

        let due = write * plan.compare / plan.writes > (write - 1) * plan.compare / plan.writes;
        if let (true, Some(pattern), None) = (due, comparison, &comparison_stopped) {
            match write_through_once(pattern, rng).await {
                Ok((id, latency)) => {
                    write_through.record(latency);
                    compared_ids.push(id);
                }
                Err((id, reason)) => {
                    compared_ids.extend(id);
                    comparison_stopped = Some(reason);
                }
            }
        }
    }
    Production {
        produced: Produced {
            writes: passports.len() as u64,
            ack: acks.summary(),
            passport_prefix: PASSPORT_LETTER.to_string(),
            passports,
            example_key,
            reconciled,
            unconfirmed,
        },
        stopped,
        write_through,
        compared_ids,
        comparison_stopped,
    }
}

/// One write-through create; its latency is the database transaction plus the SET.
/// On failure: the id of a row it did create (if any) and why it failed.
async fn write_through_once(
    pattern: &WriteThrough,
    rng: &mut SplitMix64,
) -> std::result::Result<(i64, Duration), (Option<i64>, String)> {
    for _ in 0..PASSPORT_ATTEMPTS {
        let passenger = generated_passenger(rng, COMPARISON_PASSPORT_LETTER);
        match pattern.create(&passenger).await {
            Ok(written) => return Ok((written.row.passenger_id, written.db_write + written.cache_write)),
            Err(WriteThroughError::DuplicatePassport { .. }) => continue,
            Err(WriteThroughError::Database(error)) => return Err((None, error.to_string())),
            Err(WriteThroughError::Cache(error)) => return Err((None, error.to_string())),
            Err(WriteThroughError::CacheAfterCommit {
                passenger_id, cause, ..
            }) => {
                return Err((
                    Some(passenger_id),
                    format!("the cache write after the commit failed ({cause})"),
                ))
            }
            Err(WriteThroughError::NotFound { passenger_id }) => {
                return Err((None, format!("passenger {passenger_id} vanished during the write")))
            }
        }
    }
    Err((None, "no free passport number was found".to_string()))
}

/// The comparison's summary; its passengers and keys are removed (untimed).
async fn compare_and_clean_up(
    production: &Production,
    pattern: Option<&WriteThrough>,
    db_problem: Option<&str>,
) -> Comparison {
    let write_through = production.write_through.summary();
    let ack_speedup = match (&write_through, &production.produced.ack) {
        (Some(slow), Some(fast)) => measure::speedup(slow, fast),
        _ => None,
    };
    let mut not_compared = match (pattern, db_problem) {
        (None, Some(problem)) => Some(format!("write-through needs the database: {problem}")),
        _ => production
            .comparison_stopped
            .as_ref()
            .map(|reason| format!("write-through stopped: {reason}")),
    };
    let (mut removed_rows, mut removed_keys) = (0, 0);
    if let (Some(pattern), false) = (pattern, production.compared_ids.is_empty()) {
        match pattern.db.delete_passengers(&production.compared_ids).await {
            Ok(rows) => removed_rows = rows,
            Err(error) => {
                not_compared.get_or_insert(format!("the comparison's passengers could not be removed: {error}"));
            }
        }
        for id in &production.compared_ids {
            if let Ok(true) = pattern.valkey.delete(&pattern.keys.passenger(*id)).await {
                removed_keys += 1;
            }
        }
    }
    Comparison {
        write_through,
        ack_speedup,
        not_compared,
        removed_rows,
        removed_keys,
    }
}

fn random_seed() -> u64 {
    // RandomState is seeded randomly per instance; time and pid make runs differ even more.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A letter and 8 base-36 characters: 2.8 × 10¹² passport numbers, so
/// writes of different runs practically never share one, and the seeded
/// passengers (`P` and digits) never do. The passport number is the
/// idempotency key of the write: the flusher's insert skips one that is stored.
pub fn generated_passport(rng: &mut SplitMix64, letter: char) -> String {
    let mut passport = String::with_capacity(9);
    passport.push(letter);
    for _ in 0..8 {
        passport.push(char::from(PASSPORT_ALPHABET[rng.below(36) as usize]));
    }
    passport
}

/// A new passenger with the fixtures' names.
pub fn generated_passenger(rng: &mut SplitMix64, letter: char) -> PassengerFields {
    let first_names = if rng.percent(50) {
        FEMALE_FIRST_NAMES
    } else {
        MALE_FIRST_NAMES
    };
    PassengerFields {
        passportno: generated_passport(rng, letter),
        firstname: rng.pick(first_names).to_string(),
        lastname: rng.pick(LAST_NAMES).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negative_counts_are_rejected_with_the_limit() {
        let cases = [
            (
                WriteBehindOptions {
                    writes: 0,
                    ..WriteBehindOptions::default()
                },
                "--writes must be from 1 to 100000 (got 0)",
            ),
            (
                WriteBehindOptions {
                    batch: 5_001,
                    ..WriteBehindOptions::default()
                },
                "--batch must be from 1 to 5000 (got 5001)",
            ),
            (
                WriteBehindOptions {
                    flush_interval_ms: 3_600_000,
                    ..WriteBehindOptions::default()
                },
                "--flush-interval must be from 1 to 60000 ms (got 3600000)",
            ),
            (
                WriteBehindOptions {
                    duration_seconds: Some(0.0),
                    ..WriteBehindOptions::default()
                },
                "--duration must be more than 0 and at most 3600 seconds (got 0)",
            ),
        ];
        for (options, message) in cases {
            let error = validate(&options).unwrap_err();
            assert_eq!(error.to_string(), message);
            assert_eq!(error.exit_code(), crate::error::exit::INPUT);
        }
    }

    #[test]
    fn the_comparison_never_has_more_writes_than_the_run() {
        let plan = validate(&WriteBehindOptions {
            writes: 10,
            ..WriteBehindOptions::default()
        })
        .unwrap();
        assert_eq!(plan.compare, 10);
        let flush_only = validate(&WriteBehindOptions {
            mode: Mode::FlushOnly,
            ..WriteBehindOptions::default()
        })
        .unwrap();
        assert_eq!((flush_only.writes, flush_only.compare), (0, 0));
    }

    #[test]
    fn generated_passports_fit_the_column_and_differ() {
        let mut rng = SplitMix64::new(7);
        let passports: std::collections::BTreeSet<String> =
            (0..1000).map(|_| generated_passport(&mut rng, 'W')).collect();
        assert_eq!(passports.len(), 1000);
        for passport in &passports {
            assert_eq!(passport.len(), 9);
            assert!(passport.starts_with('W'));
            assert!(passport[1..]
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        }
    }
}
