//! Write-behind (write-back): a write is acknowledged as soon as Valkey has
//! it — the cached row and an entry in a stream, in one MULTI/EXEC — and a
//! flusher persists the stream to the database later, in batches.
//!
//! Nothing lost: an entry leaves the stream only after the transaction that
//! stores it has committed (COMMIT, then XACK + XDEL). Nothing doubled: a
//! flusher that died between COMMIT and XACK, or in the middle of a batch,
//! finds those entries among its pending ones on the next start and stores
//! them again, and the insert skips passport numbers that are already stored.
//!
//! `queue.rs` is the Valkey side (the write, the stream, the consumer
//! group), `batch.rs` sorts a batch out before and after the database sees
//! it, `flusher.rs` the loop that reads, stores and acknowledges.

use std::time::{SystemTime, UNIX_EPOCH};

mod batch;
mod flusher;
mod queue;

pub use batch::{plan_batch, queued_write, settle, BatchPlan, QueuedWrite, Settled};
pub use flusher::{BatchSizeSummary, BatchSizes, FlushSettings, FlushStop, FlushTally, Flusher, Until};
pub use queue::{entries_of, AckError, Acknowledged, QueueDepth, ReadFrom, WriteQueue};

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

/// A stream entry as read: its fields, or none when it was deleted after delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEntry {
    pub id: String,
    pub fields: Option<Vec<(String, String)>>,
}

/// An entry the database can never take, and why; moved to the rejected stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub entry_id: String,
    pub fields: Vec<(String, String)>,
    pub reason: String,
}

fn micros_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
