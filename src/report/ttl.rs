//! Exercise 12: the expiry storm without and with jitter, per scenario and per second.

use comfy_table::Table;

use super::table::{align_right, count, ms, new_table};
use super::Output;
use crate::exercises::ttl::{ScenarioOutcome, TtlOutcome};

pub fn show(outcome: &TtlOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
    } else {
        show_text(outcome, output);
    }
    for warning in &outcome.warnings {
        output.warn(warning);
    }
}

fn show_text(outcome: &TtlOutcome, output: &Output) {
    output.heading(&format!(
        "Exercise 12 · TTL and jitter · {} keys · ttl {} s · {}",
        count(outcome.keys),
        outcome.ttl.as_secs(),
        outcome.database
    ));
    output.text(format!(
        "{} readers, {:.0} reads/s for {:.1} s per scenario\nttl from {}, jitter ± {} % from {}",
        outcome.clients,
        outcome.rate,
        outcome.duration_s,
        outcome.ttl_from,
        outcome.jitter_percent,
        outcome.jitter_from
    ));
    output.text(scenario_table(output, outcome));
    for scenario in &outcome.scenarios {
        output.text(format!(
            "  {}: {} reads · {} hits · warm {} ms · {} in flight at most",
            scenario.scenario,
            count(scenario.reads),
            count(scenario.hits),
            ms(scenario.warm),
            scenario.max_queries_in_flight
        ));
    }
    if let Some(ratio) = outcome.peak_ratio {
        output.text(format!(
            "Jitter changed the peak of misses per second to {:.0} % of the storm's.",
            ratio * 100.0
        ));
    }
    output.text(
        "peak/s: most misses (database queries) in one second · at s: that second, from\n\
         the warm-up · spread s: from 5 % to 95 % of the keys' first misses",
    );
    output.heading("Misses per second");
    output.text(seconds_table(output, outcome));
}

fn lifetime(scenario: &ScenarioOutcome) -> String {
    let (low, high) = (scenario.shortest_lifetime, scenario.longest_lifetime);
    if low == high {
        format!("{:.1}", low.as_secs_f64())
    } else {
        format!("{:.1}–{:.1}", low.as_secs_f64(), high.as_secs_f64())
    }
}

fn scenario_table(output: &Output, outcome: &TtlOutcome) -> Table {
    let mut table = new_table(
        output,
        &[
            "scenario",
            "lifetime s",
            "misses",
            "peak/s",
            "at s",
            "spread s",
            "db p99 ms",
        ],
    );
    for scenario in &outcome.scenarios {
        table.add_row(vec![
            scenario.scenario.to_string(),
            lifetime(scenario),
            count(scenario.misses),
            count(scenario.peak_misses_per_second),
            scenario.peak_second.to_string(),
            scenario
                .first_expiry_spread_s
                .map_or("-".to_string(), |s| format!("{s:.2}")),
            scenario.database.as_ref().map_or("-".to_string(), |d| ms(d.p99)),
        ]);
    }
    align_right(&mut table, &[1, 2, 3, 4, 5, 6]);
    table
}

fn seconds_table(output: &Output, outcome: &TtlOutcome) -> Table {
    let mut header = vec!["second".to_string()];
    for scenario in &outcome.scenarios {
        header.push(format!("misses {}", scenario.scenario));
        header.push("db p99 ms".to_string());
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut table = new_table(output, &header);
    let seconds = outcome.scenarios.iter().map(|s| s.seconds.len()).max().unwrap_or(0);
    for second in 0..seconds {
        let mut row = vec![second.to_string()];
        for scenario in &outcome.scenarios {
            match scenario.seconds.get(second) {
                Some(s) => {
                    row.push(count(s.misses));
                    row.push(s.database_p99.map_or(String::new(), ms));
                }
                None => row.extend([String::new(), String::new()]),
            }
        }
        table.add_row(row);
    }
    let columns: Vec<usize> = (0..header.len()).collect();
    align_right(&mut table, &columns);
    table
}
