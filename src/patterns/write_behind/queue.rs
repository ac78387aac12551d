//! The Valkey side of write-behind: the acknowledged write (cached row +
//! stream entry), the consumer group, reading and completing entries, and
//! reading stream replies by hand.

use std::time::{Duration, Instant, SystemTime};

use redis::Value;

use super::{
    micros_since_epoch, QueuedEntry, Rejected, CONSUMER, FIELD_FIRSTNAME, FIELD_LASTNAME, FIELD_PASSPORT, FIELD_SENT_AT,
};
use crate::cache::{CacheError, KeyScheme, Valkey};
use crate::db::passengers::PassengerFields;

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

/// The Valkey side of write-behind: the stream, its consumer group and the cached rows.
#[derive(Clone)]
pub struct WriteQueue {
    valkey: Valkey,
    keys: KeyScheme,
    /// `--ttl` ± `--ttl-jitter`, drawn per write.
    ttl: crate::cache::TtlPolicy,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
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
    fn a_block_is_never_zero_milliseconds() {
        assert_eq!(block_millis(Duration::from_micros(300)), 1);
        assert_eq!(block_millis(Duration::from_millis(50)), 50);
    }
}
