//! Exercise 10: sessions in Valkey beside a database table, and one expiring.

use super::table::{align_right, count, ms, new_table};
use super::Output;
use crate::exercises::session::{SessionOutcome, SessionTick};

/// One live line of the watched session (on a terminal, as it happens).
pub fn tick_line(tick: &SessionTick) -> String {
    let ttl = tick
        .ttl_ms
        .map_or("gone".to_string(), |t| format!("{:.1} s", t as f64 / 1000.0));
    format!("  {:>6.1} s  {:<8} TTL {ttl}", tick.at_ms as f64 / 1000.0, tick.action)
}

pub fn show(outcome: &SessionOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    let run = match outcome {
        SessionOutcome::Run(run) => run,
        SessionOutcome::Peek(peek) => {
            output.text(format!(
                "session {}: {}",
                peek.session_id,
                if peek.found { "found" } else { "not found" }
            ));
            return;
        }
    };
    output.heading(&format!(
        "Exercise 10 · sessions · {} each side, TTL {} s · Valkey vs {}",
        count(run.sessions),
        run.session_ttl_s,
        run.database
    ));
    let mut table = new_table(
        output,
        &["operation", "Valkey p50", "p99 ms", "database p50", "p99 ms", "×"],
    );
    for timing in &run.timings {
        let p = |s: &Option<crate::measure::LatencySummary>,
                 pick: fn(&crate::measure::LatencySummary) -> std::time::Duration| {
            s.as_ref().map_or("-".to_string(), |s| ms(pick(s)))
        };
        table.add_row(vec![
            timing.operation.to_string(),
            p(&timing.valkey, |s| s.p50),
            p(&timing.valkey, |s| s.p99),
            p(&timing.database, |s| s.p50),
            p(&timing.database, |s| s.p99),
            timing.speedup.map_or("-".to_string(), |x| format!("{x:.1}")),
        ]);
    }
    align_right(&mut table, &[1, 2, 3, 4, 5]);
    output.text(table);
    for timing in &run.timings {
        output.text(format!(
            "  {}: Valkey {} · database {}",
            timing.operation, timing.valkey_commands, timing.database_statements
        ));
    }
    output.text("read: the sliding expiry, each read sets the TTL back to the full time (ms)");

    output.heading("A second process");
    let peek = &run.second_process;
    output.text(format!(
        "process {} read the session of user {}: {} (TTL {})\nafter log out (DEL), process 2 again: {}",
        peek.pid,
        run.first_process.user_id,
        if run.second_process_agrees {
            "the same user"
        } else {
            "NOT the same"
        },
        peek.ttl_ms
            .map_or("-".to_string(), |t| format!("{:.1} s", t as f64 / 1000.0)),
        if run.after_logout.found { "still there" } else { "gone" }
    ));

    output.heading(&format!("Expiry seen live: {}", run.key));
    let mut table = new_table(output, &["at s", "action", "TTL s"]);
    for tick in &run.expiry {
        table.add_row(vec![
            format!("{:.1}", tick.at_ms as f64 / 1000.0),
            tick.action.to_string(),
            tick.ttl_ms
                .map_or("gone".to_string(), |t| format!("{:.1}", t as f64 / 1000.0)),
        ]);
    }
    align_right(&mut table, &[0, 2]);
    output.text(table);

    let c = &run.cleanup;
    output.heading("After the TTL: the cleanup each side needs");
    let mut table = new_table(output, &["", "expired, still there", "cleanup", "took ms"]);
    table.add_row(vec![
        "Valkey".to_string(),
        count(c.valkey_keys_left),
        "none: expired keys go".to_string(),
        "0".to_string(),
    ]);
    table.add_row(vec![
        "database".to_string(),
        count(c.database_rows_left),
        format!("DELETE: {} rows", count(c.database_rows_deleted)),
        ms(c.database_cleanup_took),
    ]);
    align_right(&mut table, &[1, 3]);
    output.text(table);
    output.text(format!(
        "of {} sessions not logged out; a table needs a job running\n  {}",
        count(c.expected_expired),
        c.database_cleanup
    ));
    for warning in &run.warnings {
        output.warn(warning);
    }
}
