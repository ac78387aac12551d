//! Exercise 2, `workshop-cli write-through`: create (or update) passengers,
//! writing the database and the cache together, then verify they agree.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::cache::KeyScheme;
use crate::config::Config;
use crate::db::passengers::{PassengerFields, PassengerRow, NAME_CHARS, PASSPORT_CHARS};
use crate::error::{InputError, Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::services::{self, Needs, ValkeyNeed};
use crate::exercises::{Outcome, Verdict};
use crate::measure::{self, LatencyRecorder, LatencySummary};
use crate::patterns::write_through::{Verification, WriteThrough, WriteThroughError, Written};

/// Up to this many writes, each is listed with its verification.
pub const PER_WRITE_LIMIT: u64 = 20;
const MAX_RUNS: u64 = 100_000;
/// Attempts to find a free generated passport number.
const PASSPORT_ATTEMPTS: usize = 50;

const FIRST_NAMES: [&str; 16] = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Niklaus",
    "Radia",
    "Tim",
    "Hedy",
    "John",
    "Katherine",
    "Linus",
];
const LAST_NAMES: [&str; 16] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Wirth",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "Backus",
    "Johnson",
    "Torvalds",
];

#[derive(Debug, Clone, Default)]
pub struct WriteThroughOptions {
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub passportno: Option<String>,
    pub update: Option<i64>,
    pub runs: u64,
    pub cleanup: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteRecord {
    pub run: u64,
    pub passenger_id: i64,
    pub key: String,
    pub row: PassengerRow,
    #[serde(serialize_with = "measure::as_millis", rename = "db_write_ms")]
    pub db_write: Duration,
    #[serde(serialize_with = "measure::as_millis", rename = "cache_write_ms")]
    pub cache_write: Duration,
    pub consistent: bool,
    pub differences: Vec<String>,
}

/// What plain cache-aside would serve after an update, next to write-through.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StaleComparison {
    pub passenger_id: i64,
    /// The cached value before the update: what cache-aside keeps serving.
    pub cache_aside_serves: PassengerRow,
    /// Seconds that stale value would still be served (its TTL left).
    pub stale_for_seconds: Option<f64>,
    /// What write-through put in the cache.
    pub write_through_serves: PassengerRow,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteThroughOutcome {
    pub exercise: &'static str,
    pub database: String,
    pub mode: &'static str,
    pub ttl_seconds: u64,
    pub writes: Vec<WriteRecord>,
    pub write_count: u64,
    pub all_consistent: bool,
    pub inconsistent_writes: u64,
    pub summary: WriteSummary,
    pub stale_comparison: Option<StaleComparison>,
    pub cleanup: Option<Cleanup>,
    /// After `--update` without `--cleanup`: the change stays, and how to undo it.
    pub permanent_change: Option<String>,
    /// Shown on stderr after the tables (what a stopped run left behind).
    #[serde(skip)]
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub verdict: Verdict,
}

impl Outcome for WriteThroughOutcome {
    fn verdict(&mut self) -> Verdict {
        std::mem::take(&mut self.verdict)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteSummary {
    pub database: Option<LatencySummary>,
    pub cache: Option<LatencySummary>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Cleanup {
    pub removed_rows: u64,
    pub removed_keys: u64,
    /// `--update --cleanup`: rows given their values from before the run back.
    pub restored_rows: u64,
}

/// Runs the writes; writes that left the cache and the database different,
/// or a run stopped part-way, make the verdict.
pub async fn measure(
    config: &Config,
    options: WriteThroughOptions,
    progress: &dyn RunProgress,
) -> Result<WriteThroughOutcome> {
    progress.phase("write-through", None);
    validate(&options)?;
    // Valkey first: when it cannot be reached, nothing is written anywhere.
    let valkey = services::valkey(config).await?;
    let needs = Needs {
        pool_connections: 2,
        valkey: ValkeyNeed::Required,
        recording_as: Some("write-through"),
    };
    let (db, server) = services::connect_database(config, needs).await?;
    let pattern = WriteThrough {
        db: db.clone(),
        valkey,
        keys: KeyScheme::new(&config.key_prefix, &config.database),
        ttl: config.ttl_policy(),
    };
    db.warm_up(1).await?;

    // `--update --cleanup` undoes this run's changes only: the ledger entries after this one.
    let ledger_before = match options.update {
        Some(_) => db.last_change_id().await?,
        None => 0,
    };
    let result = match options.update {
        Some(id) => run_updates(&pattern, id, &options).await.map_err(RunError::Failed),
        None => run_creates(&pattern, &options).await,
    };
    let (mut outcome, created) = match result {
        Ok(done) => done,
        Err(RunError::Aborted(mut aborted)) => {
            aborted.outcome.database = server.clone();
            progress.finish_phase();
            return finish_aborted(&pattern, config, &options, *aborted).await;
        }
        Err(RunError::Failed(error)) => {
            progress.finish_phase();
            if let Some(id) = options.update {
                if let Some(note) = after_failed_update(&pattern, config, &options, id, ledger_before).await {
                    return Err(WorkshopError::Noted {
                        notes: vec![note],
                        error: Box::new(error),
                    });
                }
            }
            return Err(error);
        }
    };
    outcome.database = server.clone();
    if options.cleanup && !created.is_empty() {
        outcome.cleanup = Some(cleanup(&pattern, &created).await?);
    }
    if let Some(id) = options.update {
        if options.cleanup {
            outcome.cleanup = Some(restore(&pattern, id, ledger_before).await?);
        } else {
            outcome.permanent_change = Some(crate::exercises::clean::permanent_change_note(
                &format!("passenger {id}"),
                config,
            ));
        }
    }
    progress.finish_phase();
    db.close().await;
    if !outcome.all_consistent {
        outcome.verdict = Verdict::failed(WorkshopError::incomplete(format!(
            "{} of {} writes left the cache and the database different (see the table above)",
            outcome.inconsistent_writes, outcome.write_count
        )));
    }
    Ok(outcome)
}

/// A run of creates that stopped part-way: what it committed, and why it stopped.
struct Aborted {
    outcome: WriteThroughOutcome,
    created: Vec<i64>,
    error: WorkshopError,
}

enum RunError {
    /// Stopped after committing some writes (maybe none): they are reported.
    Aborted(Box<Aborted>),
    /// Failed before anything was written.
    Failed(WorkshopError),
}

impl From<Aborted> for RunError {
    fn from(aborted: Aborted) -> Self {
        RunError::Aborted(Box::new(aborted))
    }
}

impl From<WorkshopError> for RunError {
    fn from(error: WorkshopError) -> Self {
        RunError::Failed(error)
    }
}

/// A run that lost Valkey or the database part-way: the table of what it
/// did, how many rows it committed, and either its `--cleanup` or the
/// command that removes them later. The error keeps its exit code.
async fn finish_aborted(
    pattern: &WriteThrough,
    config: &Config,
    options: &WriteThroughOptions,
    aborted: Aborted,
) -> Result<WriteThroughOutcome> {
    let Aborted {
        mut outcome,
        created,
        error,
    } = aborted;
    if created.is_empty() {
        return Err(error);
    }
    let command = crate::exercises::clean::clean_command(config);
    let left = if options.cleanup {
        match pattern.db.delete_passengers(&created).await {
            Ok(removed_rows) => {
                // Best effort: Valkey may be the service that was lost.
                let mut removed_keys = 0;
                let mut keys_left = false;
                for id in &created {
                    match pattern.valkey.delete(&pattern.keys.passenger(*id)).await {
                        Ok(removed) => removed_keys += u64::from(removed),
                        Err(_) => keys_left = true,
                    }
                }
                outcome.cleanup = Some(Cleanup {
                    removed_rows,
                    removed_keys,
                    restored_rows: 0,
                });
                let keys = if keys_left {
                    format!(" (some of their cache keys could not be deleted: `{command}` deletes them)")
                } else {
                    String::new()
                };
                format!("--cleanup removed {removed_rows} of them{keys}")
            }
            Err(cleanup_error) => format!("--cleanup could not remove them ({cleanup_error}); `{command}` will"),
        }
    } else {
        format!("they stay; `{command}` removes them")
    };
    outcome.warnings.push(format!(
        "the run stopped after {} of {} write(s) had been committed to the database; {left}",
        created.len(),
        options.runs
    ));
    outcome.verdict = Verdict::failed(error);
    Ok(outcome)
}

/// An `--update` run that failed part-way: its `--cleanup` restores the
/// row, or the note says the change stays and how to undo it. `None` when
/// the run changed nothing.
async fn after_failed_update(
    pattern: &WriteThrough,
    config: &Config,
    options: &WriteThroughOptions,
    passenger_id: i64,
    ledger_before: i64,
) -> Option<String> {
    let table = crate::db::changes::PASSENGER_TABLE;
    if options.cleanup {
        return match pattern.db.undo_changes_of(table, passenger_id, ledger_before).await {
            Ok(None) => None,
            Ok(Some(crate::db::changes::Undone::Restored)) => Some(format!(
                "the run stopped part-way; --cleanup gave passenger {passenger_id} its values from before the run back"
            )),
            Ok(Some(_)) | Err(_) => Some(format!(
                "the run stopped part-way and --cleanup could not restore passenger {passenger_id}; {}",
                crate::exercises::clean::permanent_change_note(&format!("passenger {passenger_id}"), config)
            )),
        };
    }
    let changed = pattern
        .db
        .changed_since(table, passenger_id, ledger_before)
        .await
        .unwrap_or(true);
    changed.then(|| {
        format!(
            "the run stopped part-way; {}",
            crate::exercises::clean::permanent_change_note(&format!("passenger {passenger_id}"), config)
        )
    })
}

/// Checks every value before the database is touched.
pub fn validate(options: &WriteThroughOptions) -> Result<()> {
    if options.runs == 0 || options.runs > MAX_RUNS {
        return Err(WorkshopError::invalid(format!(
            "--runs must be from 1 to {MAX_RUNS} (got {})",
            options.runs
        )));
    }
    if options.update.is_none() && options.passportno.is_some() && options.runs > 1 {
        return Err(WorkshopError::invalid(
            "--passportno names one passenger: use it with --runs 1, or leave it out to generate one per run",
        ));
    }
    if let Some(id) = options.update {
        if id < 1 {
            return Err(WorkshopError::invalid(format!(
                "--update needs a positive passenger_id (got {id})"
            )));
        }
    }
    check_field("--firstname", options.firstname.as_deref(), NAME_CHARS)?;
    check_field("--lastname", options.lastname.as_deref(), NAME_CHARS)?;
    check_field("--passportno", options.passportno.as_deref(), PASSPORT_CHARS)?;
    Ok(())
}

fn check_field(flag: &str, value: Option<&str>, limit: usize) -> Result<()> {
    let Some(value) = value else { return Ok(()) };
    if value.trim().is_empty() {
        return Err(WorkshopError::invalid(format!(
            "{flag} is empty; give 1 to {limit} characters"
        )));
    }
    let length = value.chars().count();
    if length > limit {
        return Err(WorkshopError::invalid(format!(
            "{flag} is {length} characters long; the limit is {limit}"
        )));
    }
    if value.contains('\0') {
        return Err(WorkshopError::invalid(format!(
            "{flag} contains a NUL character, which the database cannot store"
        )));
    }
    Ok(())
}

fn random_u64() -> u64 {
    // RandomState is seeded randomly per instance: enough for unique test data.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// `P` + 6 digits, like the fixtures' passport numbers.
fn generated_passport() -> String {
    format!("P{:06}", random_u64() % 1_000_000)
}

fn generated_name(names: &[&str]) -> String {
    names[(random_u64() % names.len() as u64) as usize].to_string()
}

fn fields_for_create(options: &WriteThroughOptions) -> PassengerFields {
    PassengerFields {
        passportno: options.passportno.clone().unwrap_or_else(generated_passport),
        firstname: options
            .firstname
            .clone()
            .unwrap_or_else(|| generated_name(&FIRST_NAMES)),
        lastname: options.lastname.clone().unwrap_or_else(|| generated_name(&LAST_NAMES)),
    }
}

fn map_error(error: WriteThroughError) -> WorkshopError {
    match error {
        WriteThroughError::DuplicatePassport {
            passportno,
            existing_id,
        } => InputError::DuplicatePassport {
            passportno,
            existing_id: existing_id.map_or_else(|| "another passenger".into(), |id| id.to_string()),
        }
        .into(),
        WriteThroughError::NotFound { passenger_id } => InputError::NotFound {
            what: "passenger",
            id: passenger_id.to_string(),
            hint: "pass an existing passenger_id (write-through prints the ids it creates)",
        }
        .into(),
        WriteThroughError::Database(error) => error.into(),
        WriteThroughError::Cache(error) => error.into(),
        WriteThroughError::CacheAfterCommit {
            passenger_id,
            cause,
            stale_removed,
        } => {
            let old = if stale_removed {
                "no older cached value is left, so readers will load it from the database"
            } else {
                "an older cached value could not be removed and may be served until its TTL ends"
            };
            WorkshopError::incomplete(format!(
                "passenger {passenger_id} was saved to the database, but the cache write failed ({cause}); {old}"
            ))
        }
    }
}

async fn write_record(pattern: &WriteThrough, run: u64, written: Written) -> Result<WriteRecord> {
    let verification: Verification = pattern.verify(written.row.passenger_id).await.map_err(map_error)?;
    Ok(WriteRecord {
        run,
        passenger_id: written.row.passenger_id,
        key: written.key,
        row: written.row,
        db_write: written.db_write,
        cache_write: written.cache_write,
        consistent: verification.consistent(),
        differences: verification.differences,
    })
}

struct Tally {
    database: LatencyRecorder,
    cache: LatencyRecorder,
    writes: Vec<WriteRecord>,
    inconsistent: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            database: LatencyRecorder::new(),
            cache: LatencyRecorder::new(),
            writes: Vec::new(),
            inconsistent: 0,
        }
    }

    fn add(&mut self, record: WriteRecord) {
        self.database.record(record.db_write);
        self.cache.record(record.cache_write);
        if !record.consistent {
            self.inconsistent += 1;
        }
        if record.run <= PER_WRITE_LIMIT || !record.consistent {
            self.writes.push(record);
        }
    }

    fn outcome(self, mode: &'static str, runs: u64, ttl: Duration) -> WriteThroughOutcome {
        WriteThroughOutcome {
            exercise: "write-through",
            database: String::new(),
            mode,
            ttl_seconds: ttl.as_secs(),
            writes: self.writes,
            write_count: runs,
            all_consistent: self.inconsistent == 0,
            inconsistent_writes: self.inconsistent,
            summary: WriteSummary {
                database: self.database.summary(),
                cache: self.cache.summary(),
            },
            stale_comparison: None,
            cleanup: None,
            permanent_change: None,
            warnings: Vec::new(),
            verdict: Verdict::Complete,
        }
    }
}

/// The creates, until one fails: then the writes committed so far are kept
/// (and reported) next to the error.
async fn run_creates(
    pattern: &WriteThrough,
    options: &WriteThroughOptions,
) -> std::result::Result<(WriteThroughOutcome, Vec<i64>), RunError> {
    let mut tally = Tally::new();
    let mut created = Vec::new();
    for run in 1..=options.runs {
        let written = match create_one(pattern, options).await {
            Ok(written) => written,
            Err((committed, error)) => {
                created.extend(committed);
                let outcome = tally.outcome("create", run - 1, pattern.ttl.base());
                return Err(Aborted {
                    outcome,
                    created,
                    error,
                }
                .into());
            }
        };
        created.push(written.row.passenger_id);
        match write_record(pattern, run, written).await {
            Ok(record) => tally.add(record),
            Err(error) => {
                let outcome = tally.outcome("create", run - 1, pattern.ttl.base());
                return Err(Aborted {
                    outcome,
                    created,
                    error,
                }
                .into());
            }
        }
    }
    Ok((tally.outcome("create", options.runs, pattern.ttl.base()), created))
}

/// Creates one passenger; a generated passport number that happens to be
/// taken is replaced and tried again, a given one is an error. On failure:
/// the id of a row it committed anyway (the cache write after the commit failed).
async fn create_one(
    pattern: &WriteThrough,
    options: &WriteThroughOptions,
) -> std::result::Result<Written, (Option<i64>, WorkshopError)> {
    let mut attempts = 0;
    loop {
        let fields = fields_for_create(options);
        match pattern.create(&fields).await {
            Ok(written) => return Ok(written),
            Err(WriteThroughError::DuplicatePassport { .. })
                if options.passportno.is_none() && attempts < PASSPORT_ATTEMPTS =>
            {
                attempts += 1;
            }
            Err(error) => {
                let committed = match &error {
                    WriteThroughError::CacheAfterCommit { passenger_id, .. } => Some(*passenger_id),
                    _ => None,
                };
                return Err((committed, map_error(error)));
            }
        }
    }
}

async fn run_updates(
    pattern: &WriteThrough,
    passenger_id: i64,
    options: &WriteThroughOptions,
) -> Result<(WriteThroughOutcome, Vec<i64>)> {
    let current = pattern
        .db
        .passenger(passenger_id)
        .await?
        .ok_or_else(|| map_error(WriteThroughError::NotFound { passenger_id }))?;
    // What a cache-aside reader holds: the cached value, or the row as it
    // would be cached on the first read.
    let before = match pattern.cached(passenger_id).await? {
        Some(row) => row,
        None => {
            pattern.cache_row(&current).await?;
            current.clone()
        }
    };
    let stale_for = pattern.valkey.ttl(&pattern.keys.passenger(passenger_id)).await?;

    let mut tally = Tally::new();
    let mut last = current.clone();
    for run in 1..=options.runs {
        let fields = PassengerFields {
            passportno: options
                .passportno
                .clone()
                .unwrap_or_else(|| last.passportno.trim_end().to_string()),
            firstname: options
                .firstname
                .clone()
                .or_else(|| last.firstname.clone())
                .unwrap_or_default(),
            lastname: match &options.lastname {
                Some(name) => name.clone(),
                // Nothing to change was given: pick another last name so the update shows.
                None if options.firstname.is_none() && options.passportno.is_none() => {
                    different_name(last.lastname.as_deref(), &LAST_NAMES)
                }
                None => last.lastname.clone().unwrap_or_default(),
            },
        };
        let written = pattern.update(passenger_id, &fields).await.map_err(map_error)?;
        last = written.row.clone();
        tally.add(write_record(pattern, run, written).await?);
    }
    let mut outcome = tally.outcome("update", options.runs, pattern.ttl.base());
    outcome.stale_comparison = Some(StaleComparison {
        passenger_id,
        cache_aside_serves: before,
        stale_for_seconds: stale_for.map(|d| d.as_secs_f64()),
        write_through_serves: last,
    });
    Ok((outcome, Vec::new()))
}

fn different_name(current: Option<&str>, names: &[&str]) -> String {
    let start = (random_u64() % names.len() as u64) as usize;
    (0..names.len())
        .map(|i| names[(start + i) % names.len()])
        .find(|name| Some(*name) != current)
        .unwrap_or(names[0])
        .to_string()
}

async fn cleanup(pattern: &WriteThrough, created: &[i64]) -> Result<Cleanup> {
    let removed_rows = pattern.db.delete_passengers(created).await?;
    let mut removed_keys = 0;
    for id in created {
        if pattern.valkey.delete(&pattern.keys.passenger(*id)).await? {
            removed_keys += 1;
        }
    }
    Ok(Cleanup {
        removed_rows,
        removed_keys,
        restored_rows: 0,
    })
}

/// `--update --cleanup`: the passenger gets its values from before the run
/// back (from the ledger), and its key goes, so readers load that row.
async fn restore(pattern: &WriteThrough, passenger_id: i64, ledger_before: i64) -> Result<Cleanup> {
    let restored = pattern
        .db
        .undo_changes_of(crate::db::changes::PASSENGER_TABLE, passenger_id, ledger_before)
        .await?;
    let removed_keys = u64::from(pattern.valkey.delete(&pattern.keys.passenger(passenger_id)).await?);
    Ok(Cleanup {
        removed_rows: 0,
        removed_keys,
        restored_rows: u64::from(restored == Some(crate::db::changes::Undone::Restored)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> WriteThroughOptions {
        WriteThroughOptions {
            runs: 1,
            ..WriteThroughOptions::default()
        }
    }

    #[test]
    fn empty_and_over_long_values_are_rejected_with_the_limit() {
        let err = validate(&WriteThroughOptions {
            firstname: Some("  ".into()),
            ..options()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "--firstname is empty; give 1 to 100 characters");
        let err = validate(&WriteThroughOptions {
            passportno: Some("P1234567890".into()),
            ..options()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "--passportno is 11 characters long; the limit is 9");
        assert_eq!(err.exit_code(), crate::error::exit::INPUT);
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let emoji_name = "✈️".repeat(50); // 100 chars, 300 bytes
        assert!(validate(&WriteThroughOptions {
            lastname: Some(emoji_name),
            ..options()
        })
        .is_ok());
    }

    #[test]
    fn a_given_passport_cannot_be_reused_across_runs() {
        let err = validate(&WriteThroughOptions {
            passportno: Some("P000001".into()),
            runs: 2,
            ..options()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("--passportno names one passenger"));
    }

    #[test]
    fn generated_passports_look_like_the_fixtures() {
        for _ in 0..100 {
            let p = generated_passport();
            assert_eq!(p.len(), 7);
            assert!(p.starts_with('P') && p[1..].chars().all(|c| c.is_ascii_digit()), "{p}");
        }
    }

    #[test]
    fn a_different_name_is_picked_for_an_update() {
        for _ in 0..50 {
            assert_ne!(different_name(Some("Hopper"), &LAST_NAMES), "Hopper");
        }
    }
}
