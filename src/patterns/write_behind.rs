//! Write-behind (write-back): a write is acknowledged as soon as Valkey has
//! it — the cached row and an entry in a stream, in one MULTI/EXEC — and a
//! flusher persists the stream to the database later, in batches.
//!
//! Nothing lost: an entry leaves the stream only after the transaction that
//! stores it has committed (COMMIT, then XACK + XDEL). Nothing doubled: a
//! flusher that died between COMMIT and XACK, or in the middle of a batch,
//! finds those entries among its pending ones on the next start and stores
//! them again, and the insert skips passport numbers that are already stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::Value;

use crate::cache::{CacheError, KeyScheme, Valkey};
use crate::config::DatabaseKind;
use crate::db::passengers::{PassengerFields, PassengerRow, NAME_CHARS, PASSPORT_CHARS};
use crate::db::write_behind::BatchInsert;
use crate::db::{Database, DbError};
use crate::measure::LatencyRecorder;

/// The flusher's consumer name in the group. One fixed name on purpose: a
/// restarted flusher finds what its dead predecessor had read but not
/// finished among the pending entries of this name, and does those first.
pub const CONSUMER: &str = "flusher";

const FIELD_PASSPORT: &str = "passportno";
const FIELD_FIRSTNAME: &str = "firstname";
const FIELD_LASTNAME: &str = "lastname";
/// When the producer sent the write, in microseconds since the Unix epoch:
/// the start of the lag, readable by a flusher in another process.
const FIELD_SENT_AT: &str = "sent_at_us";

/// A database that refuses a batch is tried again after these pauses (doubling).
const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(100);
const RETRY_LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// Rejected entries kept in full for the report; the rest are only counted.
const REJECTED_SHOWN: usize = 20;

/// Pause between attempts to reach Valkey after an ambiguous failure.
const RECONCILE_PAUSE: Duration = Duration::from_millis(100);
/// Newest stream entries searched for a write whose cached row is gone.
const RECONCILE_STREAM_TAIL: u64 = 100;

/// Why a write was not acknowledged.
#[derive(Debug)]
pub struct AckError {
    pub error: CacheError,
    /// Valkey may have applied it anyway (timeout, connection lost after sending).
    pub may_have_run: bool,
}

/// One acknowledged write.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub entry_id: String,
    /// The cached row's key.
    pub key: String,
    /// MULTI { SET, XADD } EXEC: what the writer waits for.
    pub latency: Duration,
}

/// How much is waiting in the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    /// XLEN: acknowledged writes not yet flushed (flushed ones are deleted).
    pub entries: u64,
    /// Entries a flusher has read but not yet acknowledged (XPENDING).
    pub pending: u64,
    /// Entries moved to the rejected stream because the database can never take them.
    pub rejected: u64,
}

/// Where a flusher reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// `0`: entries delivered to this consumer before and never acknowledged.
    Pending,
    /// `>`: entries no consumer of the group has seen yet.
    New,
}

/// A stream entry as read: its fields, or none when it was deleted after delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEntry {
    pub id: String,
    pub fields: Option<Vec<(String, String)>>,
}

/// A queued entry that is a storable passenger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedWrite {
    pub entry_id: String,
    pub passenger: PassengerFields,
    pub sent_at: SystemTime,
}

/// An entry the database can never take, and why; moved to the rejected stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub entry_id: String,
    pub fields: Vec<(String, String)>,
    pub reason: String,
}

/// The Valkey side of write-behind: the stream, its consumer group and the cached rows.
#[derive(Clone)]
pub struct WriteQueue {
    valkey: Valkey,
    keys: KeyScheme,
    /// `--ttl` ± `--ttl-jitter`, drawn per write.
    ttl: crate::cache::TtlPolicy,
}

fn micros_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// BLOCK takes whole milliseconds, and 0 would mean "forever".
fn block_millis(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl WriteQueue {
    /// The queue over `valkey`. A flusher that reads with BLOCK needs a
    /// connection of its own ([`Valkey::connect_dedicated`]); the producer
    /// can use the shared one.
    pub fn new(valkey: Valkey, keys: KeyScheme, ttl: crate::cache::TtlPolicy) -> WriteQueue {
        WriteQueue { valkey, keys, ttl }
    }

    pub fn stream(&self) -> String {
        self.keys.write_behind_stream()
    }

    /// Creates the consumer group (and the stream) unless it exists. It starts
    /// at `0`, so writes queued before any flusher ever ran are flushed too.
    pub async fn ensure_group(&self) -> Result<(), CacheError> {
        let mut create = redis::cmd("XGROUP");
        create
            .arg("CREATE")
            .arg(self.keys.write_behind_stream())
            .arg(self.keys.write_behind_group())
            .arg("0")
            .arg("MKSTREAM");
        self.valkey
            .query_unless::<()>("XGROUP CREATE", &create, "BUSYGROUP")
            .await
            .map(|_| ())
    }

    /// The write: the cached row (with the TTL) and the stream entry, both or
    /// neither (MULTI/EXEC). Once this returns, the write is acknowledged.
    /// A failure says whether Valkey may have applied it anyway (a timeout
    /// after EXEC was sent): then [`WriteQueue::reconcile`] finds out.
    pub async fn acknowledge(&self, passenger: &PassengerFields) -> Result<Acknowledged, AckError> {
        let key = self.keys.passenger_by_passport(&passenger.passportno);
        // The row as a reader by passport number sees it; the id comes when the database stores it.
        let cached = serde_json::json!({
            "passenger_id": null,
            "passportno": passenger.passportno,
            "firstname": passenger.firstname,
            "lastname": passenger.lastname,
        })
        .to_string();
        let started = Instant::now();
        let sent_at = micros_since_epoch(SystemTime::now()).to_string();
        let fields = [
            (FIELD_PASSPORT, passenger.passportno.as_str()),
            (FIELD_FIRSTNAME, passenger.firstname.as_str()),
            (FIELD_LASTNAME, passenger.lastname.as_str()),
            (FIELD_SENT_AT, sent_at.as_str()),
        ];
        let mut write = redis::pipe();
        write
            .atomic()
            .pset_ex(
                &key,
                cached,
                u64::try_from(self.ttl.pick().as_millis()).unwrap_or(u64::MAX).max(1),
            )
            .ignore()
            .xadd(self.keys.write_behind_stream(), "*", &fields);
        let (entry_id,): (String,) = self
            .valkey
            .query_pipeline_or_unknown("MULTI/EXEC (SET + XADD)", &write)
            .await
            .map_err(|(error, may_have_run)| AckError { error, may_have_run })?;
        Ok(Acknowledged {
            entry_id,
            key,
            latency: started.elapsed(),
        })
    }

    /// After an ambiguous failure of [`WriteQueue::acknowledge`]: whether the
    /// write reached Valkey. The passport number is the write's id (unique
    /// per write, and the flusher's insert is idempotent by it): the write
    /// landed if its cached row (set in the same MULTI/EXEC as the XADD) or a
    /// stream entry with that passport is there. Asks until Valkey answers
    /// or `budget` is spent; `None` when it never did.
    pub async fn reconcile(&self, passenger: &PassengerFields, budget: Duration) -> Option<bool> {
        let give_up_at = Instant::now() + budget;
        loop {
            // A PING that answers means the server runs again and has
            // worked through what was sent before it on this connection.
            if self.valkey.round_trip().await.is_ok() {
                if let Some(landed) = self.landed(passenger).await {
                    return Some(landed);
                }
            }
            if Instant::now() >= give_up_at {
                return None;
            }
            tokio::time::sleep(RECONCILE_PAUSE).await;
        }
    }

    /// One look for the write: its cached row, else the stream's newest
    /// entries (the producer writes one at a time, so it would be among them).
    async fn landed(&self, passenger: &PassengerFields) -> Option<bool> {
        let key = self.keys.passenger_by_passport(&passenger.passportno);
        match self.valkey.get(&key).await {
            Ok(Some(_)) => return Some(true),
            Ok(None) => {}
            Err(_) => return None,
        }
        let mut newest = redis::cmd("XREVRANGE");
        newest
            .arg(self.keys.write_behind_stream())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(RECONCILE_STREAM_TAIL);
        let reply: Value = self.valkey.query("XREVRANGE", &newest).await.ok()?;
        let found = stream_entries(reply).into_iter().any(|entry| {
            entry.fields.is_some_and(|fields| {
                fields
                    .iter()
                    .any(|(k, v)| k == FIELD_PASSPORT && *v == passenger.passportno)
            })
        });
        Some(found)
    }

    pub async fn depth(&self) -> Result<QueueDepth, CacheError> {
        let mut lengths = redis::pipe();
        lengths
            .cmd("XLEN")
            .arg(self.keys.write_behind_stream())
            .cmd("XLEN")
            .arg(self.keys.write_behind_rejected());
        let (entries, rejected): (u64, u64) = self.valkey.query_pipeline("XLEN", &lengths).await?;
        let mut summary = redis::cmd("XPENDING");
        summary
            .arg(self.keys.write_behind_stream())
            .arg(self.keys.write_behind_group());
        // No group yet: nothing can be pending.
        let pending = self
            .valkey
            .query_unless::<Value>("XPENDING", &summary, "NOGROUP")
            .await?
            .map_or(0, |summary| pending_count(&summary));
        Ok(QueueDepth {
            entries,
            pending,
            rejected,
        })
    }

    /// XREADGROUP as the flusher: at most `count` entries, waiting up to
    /// `block` for new ones (pending ones are returned at once).
    pub async fn read(
        &self,
        from: ReadFrom,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<QueuedEntry>, CacheError> {
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(self.keys.write_behind_group())
            .arg(CONSUMER)
            .arg("COUNT")
            .arg(count.max(1));
        if let Some(wait) = block.filter(|_| from == ReadFrom::New) {
            command.arg("BLOCK").arg(block_millis(wait));
        }
        command
            .arg("STREAMS")
            .arg(self.keys.write_behind_stream())
            .arg(match from {
                ReadFrom::Pending => "0",
                ReadFrom::New => ">",
            });
        let reply: Value = self.valkey.query("XREADGROUP", &command).await?;
        Ok(entries_of(reply))
    }

    /// After the commit: rejected entries go to the rejected stream, and every
    /// handled entry is acknowledged and deleted, all in one MULTI/EXEC.
    pub async fn complete(&self, done: &[String], rejected: &[Rejected]) -> Result<(), CacheError> {
        let ids: Vec<&str> = done
            .iter()
            .map(String::as_str)
            .chain(rejected.iter().map(|r| r.entry_id.as_str()))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for entry in rejected {
            let mut fields: Vec<(&str, &str)> = vec![("entry_id", &entry.entry_id), ("reason", &entry.reason)];
            fields.extend(entry.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            pipe.xadd(self.keys.write_behind_rejected(), "*", &fields).ignore();
        }
        pipe.cmd("XACK")
            .arg(self.keys.write_behind_stream())
            .arg(self.keys.write_behind_group())
            .arg(&ids)
            .ignore();
        pipe.cmd("XDEL").arg(self.keys.write_behind_stream()).arg(&ids).ignore();
        self.valkey.query_pipeline("MULTI/EXEC (XACK + XDEL)", &pipe).await
    }
}

/// The count in an XPENDING summary: `[count, first id, last id, consumers]`.
fn pending_count(summary: &Value) -> u64 {
    match summary {
        Value::Array(items) => match items.first() {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        },
        _ => 0,
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The entries of an XREADGROUP reply, read by hand: an entry deleted after
/// its delivery comes back as `[id, nil]`, which the typed stream replies do not expect.
/// RESP2 sends `[[stream, [entry, ...]]]`, RESP3 `{stream: [entry, ...]}`, nil when nothing is new.
pub fn entries_of(reply: Value) -> Vec<QueuedEntry> {
    let per_stream: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    per_stream
        .into_iter()
        .flat_map(|entries| match entries {
            Value::Array(entries) => entries,
            _ => Vec::new(),
        })
        .filter_map(entry_of)
        .collect()
}

/// The entries of an XRANGE / XREVRANGE reply: `[entry, ...]`.
fn stream_entries(reply: Value) -> Vec<QueuedEntry> {
    match reply {
        Value::Array(entries) => entries.into_iter().filter_map(entry_of).collect(),
        _ => Vec::new(),
    }
}

fn entry_of(entry: Value) -> Option<QueuedEntry> {
    let Value::Array(parts) = entry else { return None };
    let id = text_of(parts.first()?)?;
    let fields = match parts.get(1) {
        Some(Value::Array(flat)) => Some(
            flat.chunks(2)
                .filter_map(|pair| Some((text_of(pair.first()?)?, text_of(pair.get(1)?)?)))
                .collect(),
        ),
        Some(Value::Map(pairs)) => Some(
            pairs
                .iter()
                .filter_map(|(k, v)| Some((text_of(k)?, text_of(v)?)))
                .collect(),
        ),
        _ => None,
    };
    Some(QueuedEntry { id, fields })
}

fn checked_field(fields: &[(String, String)], name: &str, limit: usize) -> Result<String, String> {
    let value = fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| format!("no {name} field"))?;
    if value.trim().is_empty() {
        return Err(format!("{name} is empty"));
    }
    let length = value.chars().count();
    if length > limit {
        return Err(format!("{name} is {length} characters long; the column holds {limit}"));
    }
    if value.contains('\0') {
        return Err(format!("{name} contains a NUL character"));
    }
    Ok(value)
}

/// Reads one entry as a passenger, or says why the database could never store it.
/// Lengths are checked here because MySQL's INSERT IGNORE would cut an over-long value.
pub fn queued_write(id: &str, fields: &[(String, String)]) -> Result<QueuedWrite, String> {
    let passenger = PassengerFields {
        passportno: checked_field(fields, FIELD_PASSPORT, PASSPORT_CHARS)?,
        firstname: checked_field(fields, FIELD_FIRSTNAME, NAME_CHARS)?,
        lastname: checked_field(fields, FIELD_LASTNAME, NAME_CHARS)?,
    };
    let sent_at = fields
        .iter()
        .find(|(k, _)| k == FIELD_SENT_AT)
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .map(|micros| UNIX_EPOCH + Duration::from_micros(micros))
        .ok_or_else(|| format!("no valid {FIELD_SENT_AT} field"))?;
    Ok(QueuedWrite {
        entry_id: id.to_string(),
        passenger,
        sent_at,
    })
}

/// One batch, sorted out before the database sees it.
#[derive(Debug, Default)]
pub struct BatchPlan {
    /// One write per passport number, in stream order: what the INSERT gets.
    pub writes: Vec<QueuedWrite>,
    /// Later entries repeating an earlier one of the batch exactly: nothing more to store.
    pub repeats: Vec<String>,
    /// Entries deleted after delivery: only to be acknowledged.
    pub vanished: Vec<String>,
    pub rejected: Vec<Rejected>,
}

/// Passport numbers compare as the database's unique index compares them:
/// MySQL's default collation ignores case and trailing blanks; PostgreSQL
/// compares exactly (`AB1` and `ab1` are two passengers there).
fn passport_identity(passportno: &str, kind: DatabaseKind) -> String {
    match kind {
        DatabaseKind::MySql => passportno.trim_end().to_lowercase(),
        DatabaseKind::Postgres => passportno.to_string(),
    }
}

pub fn plan_batch(entries: Vec<QueuedEntry>, kind: DatabaseKind) -> BatchPlan {
    let mut plan = BatchPlan::default();
    let mut first_of: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        let Some(fields) = entry.fields else {
            plan.vanished.push(entry.id);
            continue;
        };
        let write = match queued_write(&entry.id, &fields) {
            Ok(write) => write,
            Err(reason) => {
                plan.rejected.push(Rejected {
                    entry_id: entry.id,
                    fields,
                    reason,
                });
                continue;
            }
        };
        let identity = passport_identity(&write.passenger.passportno, kind);
        match first_of.get(&identity).map(|&index| &plan.writes[index]) {
            None => {
                first_of.insert(identity, plan.writes.len());
                plan.writes.push(write);
            }
            Some(first) if first.passenger == write.passenger => plan.repeats.push(entry.id),
            Some(first) => {
                let reason = format!(
                    "passport {} is also in entry {} of the same batch, with other names",
                    write.passenger.passportno, first.entry_id
                );
                plan.rejected.push(Rejected {
                    entry_id: entry.id,
                    fields,
                    reason,
                });
            }
        }
    }
    plan
}

/// The batch after the commit: which writes the database holds as asked,
/// and which passport numbers belong to someone else.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub stored: Vec<QueuedWrite>,
    /// Writes whose row was already there with the same values: re-deliveries.
    pub already_stored: u64,
    pub conflicts: Vec<Rejected>,
}

fn same_passenger(asked: &PassengerFields, stored: &PassengerRow) -> bool {
    let same = |a: &str, b: Option<&String>| b.is_some_and(|b| a.trim_end() == b.trim_end());
    same(&asked.firstname, stored.firstname.as_ref()) && same(&asked.lastname, stored.lastname.as_ref())
}

/// A skipped row with the same names is a write delivered again (harmless);
/// with other names, a different passenger holds that passport number, and
/// the write is rejected instead of silently dropped.
pub fn settle(writes: Vec<QueuedWrite>, insert: &BatchInsert, kind: DatabaseKind) -> Settled {
    let mut settled = Settled::default();
    let skipped = (writes.len() as u64).saturating_sub(insert.inserted);
    let stored: HashMap<String, &PassengerRow> = insert
        .stored
        .iter()
        .map(|row| (passport_identity(&row.passportno, kind), row))
        .collect();
    for write in writes {
        match stored.get(&passport_identity(&write.passenger.passportno, kind)) {
            Some(row) if !same_passenger(&write.passenger, row) => settled.conflicts.push(Rejected {
                reason: format!(
                    "passport {} belongs to passenger {} ({} {}) in the database",
                    write.passenger.passportno,
                    row.passenger_id,
                    row.firstname.as_deref().unwrap_or("NULL"),
                    row.lastname.as_deref().unwrap_or("NULL")
                ),
                fields: vec![
                    (FIELD_PASSPORT.into(), write.passenger.passportno.clone()),
                    (FIELD_FIRSTNAME.into(), write.passenger.firstname.clone()),
                    (FIELD_LASTNAME.into(), write.passenger.lastname.clone()),
                    (FIELD_SENT_AT.into(), micros_since_epoch(write.sent_at).to_string()),
                ],
                entry_id: write.entry_id,
            }),
            _ => settled.stored.push(write),
        }
    }
    settled.already_stored = skipped.saturating_sub(settled.conflicts.len() as u64);
    settled
}

/// Batch sizes as they come: count, smallest, largest, total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSizes {
    count: u64,
    min: u64,
    max: u64,
    total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BatchSizeSummary {
    pub count: u64,
    pub min: u64,
    pub avg: f64,
    pub max: u64,
}

impl BatchSizes {
    pub fn add(&mut self, size: u64) {
        self.min = if self.count == 0 { size } else { self.min.min(size) };
        self.max = self.max.max(size);
        self.total += size;
        self.count += 1;
    }

    pub fn summary(&self) -> Option<BatchSizeSummary> {
        (self.count > 0).then(|| BatchSizeSummary {
            count: self.count,
            min: self.min,
            avg: self.total as f64 / self.count as f64,
            max: self.max,
        })
    }
}

/// Why a flusher stopped before its job was done; what it had not finished stays queued.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushStop {
    Database(String),
    Valkey(String),
}

impl std::fmt::Display for FlushStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushStop::Database(reason) | FlushStop::Valkey(reason) => f.write_str(reason),
        }
    }
}

/// What a flusher did.
#[derive(Debug, Default)]
pub struct FlushTally {
    /// Entries taken off the stream: stored, repeated or rejected.
    pub entries: u64,
    /// Rows the inserts added.
    pub inserted: u64,
    /// Entries whose row was already stored (delivered again after a crash).
    pub already_stored: u64,
    /// Entries found pending at start: read by a flusher that did not finish them.
    pub recovered: u64,
    pub rejected: u64,
    /// The first rejected entries, with their reasons.
    pub rejected_examples: Vec<Rejected>,
    pub batch_sizes: BatchSizes,
    /// From the write being sent to the commit that stored it.
    pub lag: LatencyRecorder,
    /// BEGIN .. COMMIT of each batch.
    pub transactions: LatencyRecorder,
    /// Batches the database refused and that were tried again.
    pub retries: u64,
    pub stopped: Option<FlushStop>,
}

impl FlushTally {
    pub fn stopped_by(stop: FlushStop) -> FlushTally {
        FlushTally {
            stopped: Some(stop),
            ..FlushTally::default()
        }
    }
}

/// When a flusher stops.
#[derive(Debug, Clone, Copy)]
pub enum Until<'a> {
    /// At the first flush interval in which nothing new arrives.
    Drained,
    /// Once the flag is set (the producer is done) and the stream is drained.
    ProducerDone(&'a AtomicBool),
    /// At this moment, whatever the stream holds.
    Deadline(Instant),
}

impl Until<'_> {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Until::Deadline(at) => Some(*at),
            _ => None,
        }
    }

    fn cap(&self, at: Instant) -> Instant {
        self.deadline().map_or(at, |deadline| deadline.min(at))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FlushSettings {
    /// Most entries per transaction.
    pub batch: usize,
    /// How long to wait for a batch to fill before storing what is there.
    pub interval: Duration,
    /// How long a batch the database refuses is tried again, unless the run has a deadline.
    pub retry_for: Duration,
}

pub struct Flusher {
    pub queue: WriteQueue,
    pub db: Database,
    pub settings: FlushSettings,
}

impl Flusher {
    /// Flushes until `until`, or until the database or Valkey fails for good
    /// (then `stopped` says why, and the unfinished entries stay in the stream).
    /// `on_batch` sees the tally after every batch (for a progress bar).
    pub async fn run(&self, until: Until<'_>, on_batch: &mut dyn FnMut(&FlushTally)) -> FlushTally {
        let mut tally = FlushTally::default();
        // First what a flusher before this one read but did not finish.
        loop {
            let entries = match self.queue.read(ReadFrom::Pending, self.settings.batch, None).await {
                Ok(entries) => entries,
                Err(error) => return stop(tally, FlushStop::Valkey(error.to_string())),
            };
            if entries.is_empty() {
                break;
            }
            tally.recovered += entries.len() as u64;
            if !self.flush(entries, &until, &mut tally).await {
                return tally;
            }
            on_batch(&tally);
        }
        loop {
            // Read before looking at the stream: a write acknowledged before
            // the flag was set is then certainly seen by the read below.
            let producer_done = matches!(until, Until::ProducerDone(done) if done.load(Ordering::Acquire));
            if until.deadline().is_some_and(|at| Instant::now() >= at) {
                break;
            }
            let entries = match self.collect(&until).await {
                Ok(entries) => entries,
                Err(error) => return stop(tally, FlushStop::Valkey(error.to_string())),
            };
            if entries.is_empty() {
                match until {
                    Until::Drained => break,
                    Until::ProducerDone(_) if producer_done => break,
                    _ => continue,
                }
            }
            if !self.flush(entries, &until, &mut tally).await {
                break;
            }
            on_batch(&tally);
        }
        tally
    }

    /// New entries until the batch is full or the flush interval is over.
    async fn collect(&self, until: &Until<'_>) -> Result<Vec<QueuedEntry>, CacheError> {
        let mut entries = Vec::new();
        let window_ends = until.cap(Instant::now() + self.settings.interval);
        while entries.len() < self.settings.batch {
            let left = window_ends.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let read = self
                .queue
                .read(ReadFrom::New, self.settings.batch - entries.len(), Some(left))
                .await?;
            if read.is_empty() {
                break;
            }
            entries.extend(read);
        }
        Ok(entries)
    }

    /// One batch: insert in one transaction, then acknowledge. False when
    /// the flusher must stop (the reason is in the tally).
    async fn flush(&self, entries: Vec<QueuedEntry>, until: &Until<'_>, tally: &mut FlushTally) -> bool {
        let taken = entries.len() as u64;
        let kind = self.db.kind();
        let plan = plan_batch(entries, kind);
        let passengers: Vec<PassengerFields> = plan.writes.iter().map(|w| w.passenger.clone()).collect();
        let (insert, took) = match self.insert_with_retries(&passengers, until, tally).await {
            Ok(done) => done,
            Err(error) => {
                tally.stopped = Some(FlushStop::Database(error.to_string()));
                return false;
            }
        };
        let committed_at = SystemTime::now();
        let settled = settle(plan.writes, &insert, kind);
        if !passengers.is_empty() {
            tally.transactions.record(took);
        }
        for write in &settled.stored {
            tally
                .lag
                .record(committed_at.duration_since(write.sent_at).unwrap_or_default());
        }
        tally.inserted += insert.inserted;
        tally.already_stored += settled.already_stored + plan.repeats.len() as u64;
        tally.entries += taken;
        tally.batch_sizes.add(taken);
        let mut rejected = plan.rejected;
        rejected.extend(settled.conflicts);
        tally.rejected += rejected.len() as u64;
        let room = REJECTED_SHOWN.saturating_sub(tally.rejected_examples.len());
        tally.rejected_examples.extend(rejected.iter().take(room).cloned());

        let done: Vec<String> = settled
            .stored
            .into_iter()
            .map(|w| w.entry_id)
            .chain(plan.repeats)
            .chain(plan.vanished)
            .collect();
        // A failure here leaves committed entries pending: the next start stores them again, harmlessly.
        if let Err(error) = self.queue.complete(&done, &rejected).await {
            tally.stopped = Some(FlushStop::Valkey(error.to_string()));
            return false;
        }
        true
    }

    /// The batch's transaction, tried again with growing pauses while the
    /// database refuses it: until the run's deadline, or for `retry_for`.
    async fn insert_with_retries(
        &self,
        passengers: &[PassengerFields],
        until: &Until<'_>,
        tally: &mut FlushTally,
    ) -> Result<(BatchInsert, Duration), DbError> {
        let give_up_at = until
            .deadline()
            .unwrap_or_else(|| Instant::now() + self.settings.retry_for);
        let mut pause = RETRY_FIRST_PAUSE;
        loop {
            let started = Instant::now();
            match self.db.insert_passengers_once(passengers).await {
                Ok(insert) => return Ok((insert, started.elapsed())),
                Err(error) if Instant::now() + pause >= give_up_at => return Err(error),
                Err(_) => {
                    tally.retries += 1;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_LONGEST_PAUSE);
                }
            }
        }
    }
}

fn stop(mut tally: FlushTally, reason: FlushStop) -> FlushTally {
    tally.stopped = Some(reason);
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn entry(id: &str, passport: &str, first: &str) -> QueuedEntry {
        QueuedEntry {
            id: id.into(),
            fields: Some(vec![
                (FIELD_PASSPORT.into(), passport.into()),
                (FIELD_FIRSTNAME.into(), first.into()),
                (FIELD_LASTNAME.into(), "Lovelace".into()),
                (FIELD_SENT_AT.into(), "1700000000000000".into()),
            ]),
        }
    }

    #[test]
    fn a_resp2_reply_with_a_deleted_entry_is_read() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("p:write-behind"),
            Value::Array(vec![
                Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("passportno"), bulk("W1")])]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        assert_eq!(
            entries_of(reply),
            vec![
                QueuedEntry {
                    id: "1-0".into(),
                    fields: Some(vec![("passportno".into(), "W1".into())])
                },
                QueuedEntry {
                    id: "2-0".into(),
                    fields: None
                },
            ]
        );
    }

    #[test]
    fn a_resp3_reply_and_an_empty_one_are_read() {
        let reply = Value::Map(vec![(
            bulk("s"),
            Value::Array(vec![Value::Array(vec![
                bulk("5-1"),
                Value::Map(vec![(bulk("firstname"), bulk("Ada"))]),
            ])]),
        )]);
        assert_eq!(
            entries_of(reply)[0].fields,
            Some(vec![("firstname".into(), "Ada".into())])
        );
        assert!(entries_of(Value::Nil).is_empty());
    }

    #[test]
    fn an_entry_the_database_cannot_take_is_rejected_with_the_reason() {
        let mut long = entry("1-0", "W1", "Ada");
        if let Some(fields) = long.fields.as_mut() {
            fields[0].1 = "W1234567890".into();
        }
        let plan = plan_batch(vec![long, entry("2-0", "W2", "")], DatabaseKind::MySql);
        assert!(plan.writes.is_empty());
        let reasons: Vec<&str> = plan.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "passportno is 11 characters long; the column holds 9",
                "firstname is empty"
            ]
        );
    }

    #[test]
    fn a_repeated_entry_is_stored_once_and_a_clashing_one_rejected() {
        let plan = plan_batch(
            vec![
                entry("1-0", "W1", "Ada"),
                entry("2-0", "W1", "Ada"),
                entry("3-0", "w1", "Grace"),
                QueuedEntry {
                    id: "4-0".into(),
                    fields: None,
                },
            ],
            DatabaseKind::MySql,
        );
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(plan.repeats, vec!["2-0".to_string()]);
        assert_eq!(plan.vanished, vec!["4-0".to_string()]);
        assert_eq!(plan.rejected[0].entry_id, "3-0");
        assert!(plan.rejected[0].reason.contains("entry 1-0"));
    }

    fn stored(id: i64, passport: &str, first: &str) -> PassengerRow {
        PassengerRow {
            passenger_id: id,
            passportno: passport.into(),
            firstname: Some(first.into()),
            lastname: Some("Lovelace".into()),
        }
    }

    #[test]
    fn a_skipped_row_with_the_same_names_is_a_redelivery_and_other_names_a_conflict() {
        let plan = plan_batch(
            vec![
                entry("1-0", "W1", "Ada"),
                entry("2-0", "W2", "Ada"),
                entry("3-0", "W3", "Ada"),
            ],
            DatabaseKind::MySql,
        );
        let insert = BatchInsert {
            inserted: 1,
            stored: vec![stored(7, "W1", "Ada"), stored(8, "W2", "Grace"), stored(9, "W3", "Ada")],
        };
        let settled = settle(plan.writes, &insert, DatabaseKind::MySql);
        assert_eq!(settled.stored.len(), 2);
        assert_eq!(settled.already_stored, 1);
        assert_eq!(settled.conflicts.len(), 1);
        assert_eq!(
            settled.conflicts[0].reason,
            "passport W2 belongs to passenger 8 (Grace Lovelace) in the database"
        );
    }

    #[test]
    fn passports_differing_only_in_case_are_two_passengers_on_postgres_and_a_clash_on_mysql() {
        let entries = || vec![entry("1-0", "AB1", "Ada"), entry("2-0", "ab1", "Ada")];
        let postgres = plan_batch(entries(), DatabaseKind::Postgres);
        assert_eq!(postgres.writes.len(), 2);
        assert!(postgres.repeats.is_empty());
        let mysql = plan_batch(entries(), DatabaseKind::MySql);
        assert_eq!(mysql.writes.len(), 1);
        assert_eq!(
            mysql.rejected.len(),
            1,
            "MySQL's index sees one passport: the second entry clashes"
        );
    }

    #[test]
    fn batch_sizes_have_count_min_avg_and_max() {
        let mut sizes = BatchSizes::default();
        assert!(sizes.summary().is_none());
        for size in [20, 5, 20] {
            sizes.add(size);
        }
        assert_eq!(
            sizes.summary(),
            Some(BatchSizeSummary {
                count: 3,
                min: 5,
                avg: 15.0,
                max: 20
            })
        );
    }

    #[test]
    fn a_block_is_never_zero_milliseconds() {
        assert_eq!(block_millis(Duration::from_micros(300)), 1);
        assert_eq!(block_millis(Duration::from_millis(50)), 50);
    }
}
