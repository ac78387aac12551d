//! The flusher: reads the stream (pending entries first), stores each
//! batch in one transaction with retries, then acknowledges it; tallies
//! what it did.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::batch::{plan_batch, settle};
use super::queue::{ReadFrom, WriteQueue};
use super::{QueuedEntry, Rejected};
use crate::cache::CacheError;
use crate::db::passengers::PassengerFields;
use crate::db::write_behind::BatchInsert;
use crate::db::{Database, DbError};
use crate::measure::LatencyRecorder;

/// A database that refuses a batch is tried again after these pauses (doubling).
const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(100);
const RETRY_LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// Rejected entries kept in full for the report; the rest are only counted.
const REJECTED_SHOWN: usize = 20;

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
}
