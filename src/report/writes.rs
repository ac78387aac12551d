//! Renders the write-through exercise: per-write steps, the latency summary,
//! and the stale value plain cache-aside would have served.

use super::latency::{summary_table, Unit};
use super::table::{align_right, count, ms, new_table};
use super::Output;
use crate::db::passengers::PassengerRow;
use crate::exercises::write_through::WriteThroughOutcome;

fn describe(row: &PassengerRow) -> String {
    format!(
        "{} {} · passport {}",
        row.firstname.as_deref().unwrap_or("NULL"),
        row.lastname.as_deref().unwrap_or("NULL"),
        row.passportno
    )
}

pub fn show_write_through(outcome: &WriteThroughOutcome, output: &Output) {
    if let Some(note) = &outcome.permanent_change {
        output.warn(note);
    }
    if output.json {
        output.json_document(outcome);
    } else {
        show_write_through_tables(outcome, output);
    }
    for warning in &outcome.warnings {
        output.warn(warning);
    }
}

fn show_write_through_tables(outcome: &WriteThroughOutcome, output: &Output) {
    output.heading(&format!(
        "Exercise 2 · write-through ({}) · {} · TTL {} s",
        outcome.mode, outcome.database, outcome.ttl_seconds
    ));
    output.text("Each write: BEGIN, INSERT/UPDATE, read the row back, COMMIT; then SET the row in Valkey; then read both again and compare.");

    if !outcome.writes.is_empty() {
        output.heading("Steps");
        let mut table = new_table(
            output,
            &[
                "run",
                "passenger_id",
                "DB write ms",
                "cache write ms",
                "verify",
                "row as stored",
            ],
        );
        for write in &outcome.writes {
            let verify = if write.consistent {
                "consistent".to_string()
            } else {
                write.differences.join("; ")
            };
            table.add_row(vec![
                write.run.to_string(),
                write.passenger_id.to_string(),
                ms(write.db_write),
                ms(write.cache_write),
                verify,
                describe(&write.row),
            ]);
        }
        align_right(&mut table, &[0, 1, 2, 3]);
        output.text(table);
        if let Some(first) = outcome.writes.first() {
            output.text(format!("cache key: {}", first.key));
        }
    }

    if outcome.write_count > 1 {
        output.heading("Summary: write latency");
        output.text(summary_table(
            output,
            Unit::Millis,
            &[
                ("database write", outcome.summary.database.as_ref()),
                ("cache write", outcome.summary.cache.as_ref()),
            ],
        ));
    }
    output.text(format!(
        "{} write(s), {} consistent",
        count(outcome.write_count),
        count(outcome.write_count - outcome.inconsistent_writes)
    ));

    if let Some(stale) = &outcome.stale_comparison {
        output.heading(&format!("What readers of passenger {} get now", stale.passenger_id));
        let mut table = new_table(output, &["pattern", "serves", "until"]);
        table.add_row(vec![
            "write-through".to_string(),
            describe(&stale.write_through_serves),
            "now, fresh".to_string(),
        ]);
        table.add_row(vec![
            "plain cache-aside (no invalidation)".to_string(),
            describe(&stale.cache_aside_serves),
            stale.stale_for_seconds.map_or_else(
                || "its TTL ends".to_string(),
                |s| format!("{s:.0} s more (its TTL), stale"),
            ),
        ]);
        output.text(table);
    }

    if let Some(cleanup) = &outcome.cleanup {
        if cleanup.restored_rows > 0 {
            output.text(format!(
                "cleanup: restored {} passenger row(s) to their values before the run and removed {} cache key(s)",
                count(cleanup.restored_rows),
                count(cleanup.removed_keys)
            ));
        } else {
            output.text(format!(
                "cleanup: removed {} passenger row(s) and {} cache key(s)",
                count(cleanup.removed_rows),
                count(cleanup.removed_keys)
            ));
        }
    }
}
