//! Exercise 13: the three ways a reader's L1 learns of a write, side by side.

use comfy_table::Table;

use super::table::{align_right, count, ms, new_table};
use super::Output;
use crate::exercises::tracking::{ModeOutcome, TrackingOutcome};

pub fn show(outcome: &TrackingOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    output.heading(&format!(
        "Exercise 13 · client-side caching · {} updates over {} keys · {}",
        count(outcome.updates),
        count(outcome.keys),
        outcome.database
    ));
    output.text("A reader process keeps an L1; this process writes to Valkey and then asks it.");
    output.text(invalidation_table(output, outcome));
    output.text(
        "in time: L1 entry gone one reader round trip after the write returned ·\n\
         window: invalidation received − write returned, p50 / max (negative: before\n\
         the writer had its answer) · write ms: the writer's p50 per update ·\n\
         unannounced: a last write that publishes nothing",
    );
    output.heading("Counted by the reader");
    output.text(reader_table(output, outcome));
    for mode in &outcome.modes {
        output.text(format!("  {}: {}", mode.mode_name(), mode.how));
    }
    output.text(format!("Note: {}.", outcome.cluster_note));
}

fn window(mode: &ModeOutcome) -> String {
    mode.stale_window_us
        .as_ref()
        .map_or("-".to_string(), |w| format!("{} / {}", w.p50, w.max))
}

fn invalidation_table(output: &Output, outcome: &TrackingOutcome) -> Table {
    let mut table = new_table(
        output,
        &[
            "mode",
            "in time",
            "stale",
            "window µs",
            "cmds",
            "write ms",
            "unannounced",
        ],
    );
    for mode in &outcome.modes {
        table.add_row(vec![
            mode.mode_name(),
            format!("{}/{}", mode.invalidated_within_round_trip, mode.updates),
            count(mode.stale_after_round_trip),
            window(mode),
            mode.writer_commands_per_update.to_string(),
            mode.write_latency.as_ref().map_or("-".to_string(), |l| ms(l.p50)),
            if mode.unannounced_write_invalidated {
                "invalidated".to_string()
            } else {
                "stale".to_string()
            },
        ]);
    }
    align_right(&mut table, &[1, 2, 3, 4, 5]);
    table
}

fn reader_table(output: &Output, outcome: &TrackingOutcome) -> Table {
    let mut table = new_table(
        output,
        &["mode", "L1 hits", "L2 reads", "messages", "flushes", "PING p50 ms"],
    );
    for mode in &outcome.modes {
        table.add_row(vec![
            mode.mode_name(),
            count(mode.reader.l1_hits),
            count(mode.reader.l2_reads),
            count(mode.reader.invalidation_messages),
            count(mode.reader.flushes),
            mode.reader_round_trip.as_ref().map_or("-".to_string(), |l| ms(l.p50)),
        ]);
    }
    align_right(&mut table, &[1, 2, 3, 4, 5]);
    table
}

trait ModeName {
    fn mode_name(&self) -> String;
}

impl ModeName for ModeOutcome {
    fn mode_name(&self) -> String {
        self.mode.name().to_string()
    }
}
