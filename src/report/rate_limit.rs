//! Exercise 11: the three limiters side by side, and what each allowed per second.

use comfy_table::Table;

use super::table::{align_right, count, ms, new_table};
use super::Output;
use crate::exercises::rate_limit::RateLimitOutcome;

pub fn show(outcome: &RateLimitOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    output.heading(&format!(
        "Exercise 11 · rate limiting · limit {:.0}/s · {} clients × {}/s for {} s",
        outcome.limit_per_second, outcome.clients, outcome.rate_per_client, outcome.duration_s
    ));
    output.text(format!(
        "offered {:.0} requests/s to one shared limit; token bucket capacity {}",
        outcome.offered_per_second, outcome.burst
    ));
    if outcome.processes > 1 {
        output.text(format!(
            "{} processes share the limit; counts are the fleet's, latency the first process's",
            outcome.processes
        ));
    }
    output.text(limiter_table(output, outcome));
    if outcome.processes > 1 {
        for limiter in &outcome.limiters {
            let shares: Vec<String> = limiter.allowed_per_process.iter().map(|n| count(*n)).collect();
            output.text(format!(
                "  {} allowed per process: {}",
                limiter.limiter.name(),
                shares.join(" + ")
            ));
        }
    }
    output.text(
        "max 1 s: the most allowed in any one second, whatever it starts at · cmds: Valkey\n\
         commands sent per decision (MULTI and EXEC count; EVALSHA is one) · trips: round trips",
    );
    output.heading("Allowed per second");
    output.text(seconds_table(output, outcome));
}

fn limiter_table(output: &Output, outcome: &RateLimitOutcome) -> Table {
    let mut table = new_table(
        output,
        &[
            "limiter",
            "allowed/s",
            "max 1 s",
            "denied",
            "cmds",
            "trips",
            "p50 ms",
            "p99 ms",
        ],
    );
    for limiter in &outcome.limiters {
        let p = |pick: fn(&crate::measure::LatencySummary) -> std::time::Duration| {
            limiter.latency.as_ref().map_or("-".to_string(), |s| ms(pick(s)))
        };
        table.add_row(vec![
            limiter.limiter.name().to_string(),
            format!("{:.1}", limiter.allowed_per_second),
            count(limiter.max_in_any_second),
            count(limiter.denied),
            format!("{:.2}", limiter.commands_per_decision),
            format!("{:.2}", limiter.round_trips_per_decision),
            p(|s| s.p50),
            p(|s| s.p99),
        ]);
    }
    align_right(&mut table, &[1, 2, 3, 4, 5, 6, 7]);
    table
}

fn seconds_table(output: &Output, outcome: &RateLimitOutcome) -> Table {
    let mut header = vec!["second"];
    header.extend(outcome.limiters.iter().map(|l| l.limiter.name()));
    let mut table = new_table(output, &header);
    let seconds = outcome
        .limiters
        .iter()
        .map(|l| l.allowed_each_second.len())
        .max()
        .unwrap_or(0);
    for second in 0..seconds {
        let mut row = vec![(second + 1).to_string()];
        for limiter in &outcome.limiters {
            row.push(
                limiter
                    .allowed_each_second
                    .get(second)
                    .map_or(String::new(), |n| count(*n)),
            );
        }
        table.add_row(row);
    }
    let columns: Vec<usize> = (0..=outcome.limiters.len()).collect();
    align_right(&mut table, &columns);
    table
}
