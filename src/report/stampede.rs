//! Exercise 6: the stampede comparison tables, and the two lines a fleet
//! member writes for the process that started it.

use std::time::Duration;

use comfy_table::Table;

use super::table::{align_right, count, ms, ms_compact, new_table};
use super::Output;
use crate::exercises::stampede::fleet::{MemberReport, READY};
use crate::exercises::stampede::plan::Plan;
use crate::exercises::stampede::{ExpiryOutcome, ModeOutcome, StampedeOutcome, StampedeRun};
use crate::measure::LatencySummary;
use crate::patterns::stampede::Protection;

pub fn show(outcome: &StampedeOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    output.heading(&format!(
        "Exercise 6 · cache stampede · {} · query {} · TTL {} s",
        outcome.database, outcome.query.name, outcome.ttl_seconds
    ));
    output.text(format!("SQL:  {}", outcome.query.statement));
    output.text(format!("key:  {}", outcome.keys.value));
    output.text(format!("lock: {}", outcome.keys.lock));

    super::connection::show(output, &setup_line(outcome));
    output.text(plan_line(&outcome.plan));
    for note in &outcome.plan.notes {
        output.text(format!("  adapted: {note}"));
    }

    if !outcome.modes.is_empty() {
        output.heading(&cold_key_heading(outcome));
        output.text(cold_key_table(output, &outcome.modes, outcome.rounds));
        output.text(
            "waited: got another request's load (single-flight followers, lock waiters) · \
             fell back: queried the database itself (lock wait ran out, or no lock could be taken)",
        );
        output.text(queries_line(&outcome.modes, outcome.processes));
        if outcome.modes.iter().any(|m| m.mode == Protection::Lock) {
            output.text(lock_line(outcome));
        }
        for line in dead_holder_lines(&outcome.modes, outcome.lock.settings.ttl) {
            output.text(line);
        }
        output.text(consistency_line(
            &outcome.modes,
            outcome.reference.rows,
            &outcome.reference.digest,
        ));
    }

    if let Some(expiry) = &outcome.expiry {
        output.heading(&expiry_heading(expiry));
        output.text(expiry_table(output, &expiry.modes));
        output.text(
            "misses: found no entry and ran the query · early refreshes: XFetch ran the query while the entry was still valid",
        );
        output.text(consistency_line(
            &expiry.modes,
            outcome.reference.rows,
            &outcome.reference.digest,
        ));
    }
    if let Some(reason) = &outcome.expiry_skipped {
        output.text(format!("\nexpiry scenario (XFetch): skipped, {reason}"));
    }
}

fn setup_line(outcome: &StampedeOutcome) -> String {
    let setup = &outcome.setup;
    let mut line = super::connection::line(&setup.connection, &[("lock connection", setup.lock_connection)]);
    match setup.fleet_start {
        Some(fleet) => line.push_str(&format!(
            " · {} processes ({} database connections each) ready in {} ms (slowest round)",
            outcome.processes,
            outcome.pool_connections,
            ms(fleet)
        )),
        None => line.push_str(&format!(" ({} database connections)", outcome.pool_connections)),
    }
    line
}

/// The timed cold load and the budget the sizes were fitted to.
fn plan_line(plan: &Plan) -> String {
    let fit = if plan.adapted {
        "sizes adapted to fit (below)"
    } else if plan.estimated > plan.time_budget {
        "over budget (below)"
    } else {
        "the default sizes fit"
    };
    format!(
        "one cold load took {} ms (timed before the modes, not counted) · time budget {} s (--time-budget): {fit} · database time needed at most about {:.1} s",
        ms(plan.cold_load),
        plan.time_budget.as_secs(),
        plan.estimated.as_secs_f64()
    )
}

/// What a lock holder that stopped without filling the cache cost: the
/// takeover's extra query and the waiters' wait, and any copy that was lost.
fn dead_holder_lines(modes: &[ModeOutcome], ttl: Duration) -> Vec<String> {
    let mut lines = Vec::new();
    for mode in modes {
        let takeovers = mode.counts.lock_takeovers;
        if takeovers > 0 {
            let waited = mode.latency.as_ref().map_or_else(|| "—".to_string(), |l| ms(l.max));
            lines.push(format!(
                "{}: a lock holder stopped without filling the cache (it died, failed, or outlasted the lock); after its lock expired (TTL {} ms) a waiter took it over {} {}: {} extra database {}, and the waiters waited up to {waited} ms instead of one query's time",
                mode.mode.label(),
                ttl.as_millis(),
                count(takeovers),
                plural(takeovers, "time", "times"),
                count(takeovers),
                plural(takeovers, "query", "queries"),
            ));
        }
        for lost in &mode.lost_processes {
            lines.push(format!(
                "{}: {}; its requests are not in the table",
                mode.mode.label(),
                lost.describe()
            ));
        }
    }
    lines
}

fn cold_key_heading(outcome: &StampedeOutcome) -> String {
    let mut heading = format!("One cold key: {} concurrent requests", count(outcome.concurrency));
    let unprotected = outcome.plan.unprotected_requests;
    if unprotected != outcome.concurrency && outcome.modes.iter().any(|m| m.mode == Protection::None) {
        heading.push_str(&format!(" ({} for none, to fit the time budget)", count(unprotected)));
    }
    if outcome.processes > 1 {
        heading.push_str(&format!(" in each of {} processes", outcome.processes));
    }
    if outcome.rounds > 1 {
        heading.push_str(&format!(" · {} rounds, each starting cold, added up", outcome.rounds));
    }
    if outcome.keep_cache {
        heading = heading.replace("One cold key", "One key, kept as it was (--keep-cache)");
    }
    heading
}

fn cold_key_table(output: &Output, modes: &[ModeOutcome], rounds: u64) -> Table {
    let mut header = vec![
        "mode",
        "requests",
        "database queries",
        "cache hits",
        "waited",
        "fell back",
    ];
    if rounds > 1 {
        header.push("queries per round");
    }
    header.extend(["p50 ms", "p95 ms", "p99 ms", "max ms"]);
    let mut table = new_table(output, &header);
    for mode in modes {
        let mut row = vec![
            mode.mode.label().to_string(),
            count(mode.requests),
            count(mode.database_queries),
            count(mode.cache_hits),
            count(mode.waited),
            count(mode.fell_back),
        ];
        if rounds > 1 {
            row.push(per_round(&mode.queries_per_round));
        }
        row.extend(latency_cells(mode.latency.as_ref()));
        table.add_row(row);
    }
    align_right(&mut table, &(1..header.len()).collect::<Vec<_>>());
    table
}

/// "1" when every round ran the same number of queries, else "min–max".
fn per_round(queries: &[u64]) -> String {
    let low = queries.iter().min().copied().unwrap_or(0);
    let high = queries.iter().max().copied().unwrap_or(0);
    if low == high {
        count(low)
    } else {
        format!("{}–{}", count(low), count(high))
    }
}

fn latency_cells(summary: Option<&LatencySummary>) -> [String; 4] {
    match summary {
        Some(s) => [
            ms_compact(s.p50),
            ms_compact(s.p95),
            ms_compact(s.p99),
            ms_compact(s.max),
        ],
        None => ["—".into(), "—".into(), "—".into(), "—".into()],
    }
}

fn queries_line(modes: &[ModeOutcome], processes: u64) -> String {
    let parts: Vec<String> = modes
        .iter()
        .map(|m| {
            let mut part = format!(
                "{} {} {}",
                m.mode.label(),
                count(m.database_queries),
                plural(m.database_queries, "query", "queries")
            );
            if let Some(per_process) = m.queries_per_process.as_ref().filter(|_| processes > 1) {
                let each: Vec<String> = per_process
                    .iter()
                    .map(|n| n.map_or_else(|| "lost".to_string(), count))
                    .collect();
                part.push_str(&format!(" ({} per process)", each.join(" + ")));
            }
            part
        })
        .collect();
    format!("database queries: {}", parts.join(" · "))
}

fn lock_line(outcome: &StampedeOutcome) -> String {
    let lock = &outcome.lock;
    let release = lock.release.map_or_else(
        || "no lock could be taken".to_string(),
        |r| format!("released with {}", r.label()),
    );
    format!(
        "lock: SET NX PX {} ms · waiters poll the cache ({}–{} ms, with jitter) for up to {} ms · {release}",
        lock.settings.ttl.as_millis(),
        lock.settings.first_poll.as_millis(),
        lock.settings.max_poll.as_millis(),
        lock.settings.wait.as_millis()
    )
}

fn consistency_line(modes: &[ModeOutcome], rows: usize, digest: &str) -> String {
    if modes.iter().all(|m| m.consistent) {
        format!(
            "every request got the same {} {} as a direct read (digest {digest})",
            count(rows as u64),
            plural(rows as u64, "row", "rows")
        )
    } else {
        let differing: u64 = modes.iter().map(|m| m.mismatched_requests).sum();
        format!(
            "{} request(s) got rows that differ from a direct read now (digest {digest})",
            count(differing)
        )
    }
}

fn expiry_heading(expiry: &ExpiryOutcome) -> String {
    format!(
        "A hot key expiring under steady traffic: {} tasks, a request every ~{} ms each; \
         the entry expires {} s in, the traffic stops at {:.1} s; the query took {} ms (XFetch beta {})",
        count(expiry.tasks),
        expiry.pace.as_millis(),
        expiry.timing.expire_after.as_secs(),
        expiry.timing.window.as_secs_f64(),
        ms(expiry.query),
        expiry.beta
    )
}

fn expiry_table(output: &Output, modes: &[ModeOutcome]) -> Table {
    let header = [
        "mode",
        "requests",
        "database queries",
        "misses",
        "early refreshes",
        "cache hits",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
    ];
    let mut table = new_table(output, &header);
    for mode in modes {
        let mut row = vec![
            mode.mode.label().to_string(),
            count(mode.requests),
            count(mode.database_queries),
            count(mode.misses),
            count(mode.counts.refreshed_early),
            count(mode.cache_hits),
        ];
        row.extend(latency_cells(mode.latency.as_ref()));
        table.add_row(row);
    }
    align_right(&mut table, &(1..header.len()).collect::<Vec<_>>());
    table
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// A fleet member's signal that it is connected and waits for "go".
/// The view of `stampede`: the comparison and its warnings, or a fleet
/// copy's report for its parent.
pub fn show_run(run: &StampedeRun, output: &Output) {
    match run {
        StampedeRun::Compared(outcome) => {
            show(outcome, output);
            for warning in &outcome.warnings {
                output.warn(warning);
            }
        }
        StampedeRun::FleetMember(report) => member_report(report),
    }
}

pub fn fleet_ready() {
    eprintln!("{READY}");
}

/// A fleet member's report, one JSON document on stdout whatever `--json` says.
pub fn member_report(report: &MemberReport) {
    let output = Output {
        json: true,
        color: false,
        progress: false,
    };
    output.json_document(report);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_per_round_show_a_range_only_when_rounds_differ() {
        assert_eq!(per_round(&[1, 1, 1]), "1");
        assert_eq!(per_round(&[48, 50, 1000]), "48–1,000");
    }

    #[test]
    fn a_dead_holder_shows_its_extra_query_and_wait_and_a_lost_copy_is_named() {
        let mode = ModeOutcome {
            mode: Protection::Lock,
            requests: 5,
            database_queries: 1,
            cache_hits: 0,
            waited: 4,
            fell_back: 0,
            misses: 1,
            counts: crate::patterns::stampede::PathCounts {
                loaded: 1,
                waited: 4,
                lock_takeovers: 1,
                ..Default::default()
            },
            queries_per_round: vec![1],
            queries_per_process: Some(vec![None, Some(1)]),
            lost_processes: vec![crate::exercises::stampede::fleet::LostMember {
                process: 1,
                processes: 2,
                pid: Some(77),
                ended: "killed by signal 9 (SIGKILL)".into(),
            }],
            latency: None,
            wall_time: Duration::from_secs(7),
            distinct_results: 1,
            mismatched_requests: 0,
            consistent: true,
        };
        let lines = dead_holder_lines(std::slice::from_ref(&mode), Duration::from_millis(5000));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0]
                .contains("after its lock expired (TTL 5000 ms) a waiter took it over 1 time: 1 extra database query"),
            "{}",
            lines[0]
        );
        assert_eq!(
            lines[1],
            "Valkey lock: fleet process 1 of 2 (pid 77) was killed by signal 9 (SIGKILL) before it reported; its requests are not in the table"
        );
        assert_eq!(
            queries_line(&[mode], 2),
            "database queries: Valkey lock 1 query (lost + 1 per process)"
        );
    }

    #[test]
    fn one_query_is_singular() {
        assert_eq!(plural(1, "query", "queries"), "query");
        assert_eq!(plural(100, "query", "queries"), "queries");
    }
}
