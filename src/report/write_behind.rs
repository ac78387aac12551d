//! Renders the write-behind exercise: the queue before and after, the
//! acknowledgement next to write-through, and what the flusher did.

use super::latency::{summary_table, Unit};
use super::table::{align_right, count, new_table};
use super::Output;
use crate::exercises::write_behind::{Comparison, Flushed, Produced, WriteBehindOutcome};
use crate::patterns::write_behind::QueueDepth;

pub fn show(outcome: &WriteBehindOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
    } else {
        show_tables(outcome, output);
    }
    for warning in &outcome.warnings {
        output.warn(warning);
    }
}

fn show_tables(outcome: &WriteBehindOutcome, output: &Output) {
    output.heading(&format!(
        "Exercise 5 · write-behind ({}) · {} · batch {} · flush interval {} ms · TTL {} s",
        outcome.mode.label(),
        outcome.database.as_deref().unwrap_or("database not reachable"),
        count(outcome.batch as u64),
        count(outcome.flush_interval_ms),
        outcome.ttl_seconds
    ));
    output.text(format!(
        "Acknowledge: MULTI {{ SET the row (TTL) · XADD {} }} EXEC.\nFlush: XREADGROUP as '{}' of group '{}', one INSERT per batch skipping stored passports, COMMIT, then XACK + XDEL.",
        outcome.stream, outcome.consumer, outcome.group
    ));
    match outcome.valkey_aof_enabled {
        Some(false) => output.text(
            "Valkey's append-only file is off: queued writes live only in Valkey's memory until flushed; a Valkey crash loses them.",
        ),
        Some(true) => output.text("Valkey's append-only file is on: appendfsync decides how many acknowledged writes a crash can lose."),
        None => {}
    }

    super::connection::show(output, &super::connection::line(&outcome.setup.connection, &[]));

    show_queue(outcome, output);
    if let Some(produced) = &outcome.produced {
        show_produced(produced, outcome.comparison.as_ref(), output);
    }
    if let Some(flushed) = &outcome.flushed {
        show_flushed(flushed, &outcome.rejected_stream, output);
    }
    if let Some(cleanup) = &outcome.cleanup {
        output.text(format!(
            "cleanup: removed {} passenger row(s) this run stored and {} cache key(s) it wrote",
            count(cleanup.removed_rows),
            count(cleanup.removed_keys)
        ));
        if let Some(reason) = &cleanup.not_done {
            output.warn(&format!("the cleanup did not finish: {reason}"));
        }
    }
}

fn show_queue(outcome: &WriteBehindOutcome, output: &Output) {
    output.heading(&format!("Queue {}", outcome.stream));
    let mut table = new_table(output, &["", "before", "after"]);
    type Pick = fn(&QueueDepth) -> u64;
    let after = |pick: Pick| outcome.queue_after.as_ref().map_or("—".to_string(), |d| count(pick(d)));
    let rows: [(&str, Pick); 3] = [
        ("entries (XLEN): acknowledged, not yet flushed", |d| d.entries),
        ("pending: read by a flusher, not yet acknowledged", |d| d.pending),
        ("rejected: moved aside, never storable", |d| d.rejected),
    ];
    for (label, pick) in rows {
        table.add_row(vec![label.to_string(), count(pick(&outcome.queue_before)), after(pick)]);
    }
    align_right(&mut table, &[1, 2]);
    output.text(table);
}

fn show_produced(produced: &Produced, comparison: Option<&Comparison>, output: &Output) {
    output.heading("Acknowledged write latency: write-behind vs write-through (same run, same kind of passenger)");
    let write_through = comparison.and_then(|c| c.write_through.as_ref());
    output.text(summary_table(
        output,
        Unit::Millis,
        &[
            ("write-behind ack (MULTI/EXEC)", produced.ack.as_ref()),
            ("write-through (transaction + SET)", write_through),
        ],
    ));
    let mut line = format!(
        "{} write(s) acknowledged; passports start with {}",
        count(produced.writes),
        produced.passport_prefix
    );
    if let Some(key) = &produced.example_key {
        line.push_str(&format!("; cached as {key}"));
    }
    output.text(line);
    if produced.reconciled > 0 {
        output.text(format!(
            "{} of them timed out without a reply and were found in Valkey afterwards: applied, so counted",
            count(produced.reconciled)
        ));
    }
    let Some(comparison) = comparison else { return };
    if let Some(speedup) = comparison.ack_speedup {
        output.text(format!(
            "write-behind acknowledges {speedup:.1}× faster (write-through p50 / write-behind p50)"
        ));
    }
    if let Some(reason) = &comparison.not_compared {
        output.text(format!("not compared: {reason}"));
    }
    if comparison.removed_rows > 0 || comparison.removed_keys > 0 {
        output.text(format!(
            "the comparison's {} write-through passenger(s) and {} cache key(s) were removed again",
            count(comparison.removed_rows),
            count(comparison.removed_keys)
        ));
    }
}

fn show_flushed(flushed: &Flushed, rejected_stream: &str, output: &Output) {
    output.heading("Flusher");
    let mut table = new_table(
        output,
        &[
            "entries flushed",
            "rows inserted",
            "already stored (re-delivered)",
            "recovered at start",
            "rejected",
            "retries",
        ],
    );
    table.add_row(
        [
            flushed.entries,
            flushed.inserted,
            flushed.already_stored,
            flushed.recovered,
            flushed.rejected,
            flushed.retries,
        ]
        .map(count)
        .to_vec(),
    );
    align_right(&mut table, &[0, 1, 2, 3, 4, 5]);
    output.text(table);
    if let Some(batches) = &flushed.batches {
        output.text(format!(
            "batches: {} · size min {} / avg {:.1} / max {}",
            count(batches.count),
            count(batches.min),
            batches.avg,
            count(batches.max)
        ));
    }
    if flushed.lag.is_some() || flushed.transaction.is_some() {
        output.heading("Lag until the database has the row, and each batch's transaction");
        output.text(summary_table(
            output,
            Unit::Millis,
            &[
                ("lag (sent → commit)", flushed.lag.as_ref()),
                ("batch transaction", flushed.transaction.as_ref()),
            ],
        ));
    }
    if !flushed.rejected_examples.is_empty() {
        output.heading(&format!("Rejected, moved to {rejected_stream}"));
        let mut table = new_table(output, &["entry", "reason"]);
        for rejected in &flushed.rejected_examples {
            table.add_row(vec![rejected.entry_id.clone(), rejected.reason.clone()]);
        }
        output.text(table);
    }
    if let Some(stop) = &flushed.stopped {
        output.text(format!("the flusher stopped: {stop}"));
    }
}
