//! Exercise 8: a slow API without and with the cache, the outage, the stampede.

use comfy_table::Table;

use super::table::{align_right, count, ms, new_table};
use super::Output;
use crate::exercises::api_cache::{ApiCacheOutcome, Pass};
use crate::measure::LatencySummary;

pub fn show(outcome: &ApiCacheOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    let upstream = match (outcome.latency_range, outcome.failure_rate) {
        (Some(range), Some(rate)) => format!(
            "built-in upstream, {}..{} ms, {:.0} % failures",
            range.min_ms,
            range.max_ms,
            rate * 100.0
        ),
        _ => format!("upstream {}", outcome.upstream),
    };
    output.heading(&format!("Exercise 8 · caching a slow API · {upstream}"));
    output.text(format!(
        "{} requests over {} cities, {} at a time; fresh for {} s, stale-if-error {} s\nkeys like {}",
        count(outcome.requests),
        outcome.cities,
        outcome.concurrency,
        outcome.max_age_s,
        outcome.stale_if_error_s,
        outcome.key_example
    ));
    let mut table = pass_table(output, "");
    add_pass(&mut table, "no cache", &outcome.without_cache);
    add_pass(&mut table, "cache-aside", &outcome.with_cache);
    output.text(table);
    let speedup = outcome
        .speedup_p50
        .map_or(String::new(), |x| format!(", p50 {x:.0}× faster"));
    let hit_p50 = outcome
        .with_cache
        .hit_latency
        .as_ref()
        .map_or(String::new(), |s| format!("\na hit takes {} ms (p50)", ms(s.p50)));
    output.text("calls: upstream calls · stale: served stale after a failed call (stale-if-error)");
    output.text(format!(
        "the cache avoided {} of {} upstream calls{speedup}{hit_p50}",
        count(outcome.calls_avoided),
        count(outcome.with_cache.requests)
    ));

    match &outcome.outage {
        Some(outage) => {
            output.heading(&format!(
                "Upstream down, cached answers stale (waited {:.1} s): each city once",
                outage.waited.as_secs_f64()
            ));
            let mut table = pass_table(output, "");
            if let Some(pass) = &outage.with_stale_if_error {
                add_pass(&mut table, "stale ok", pass);
            }
            add_pass(&mut table, "plain", &outage.without_stale_if_error);
            output.text(table);
            if outage.with_stale_if_error.is_none() {
                output.text("--stale-if-error 0: nothing stale is served; try --stale-if-error 60");
            }
        }
        None => output.text("\n(a real --upstream cannot be taken down from here: no outage scenario)"),
    }

    if !outcome.stampede.is_empty() {
        output.heading(&format!(
            "Stampede: {} requests at once for one cold city ({})",
            count(outcome.stampede_requests),
            outcome.stampede_city
        ));
        let mut table = new_table(
            output,
            &["mode", "calls", "waited", "fell back", "failed", "p50 ms", "p99 ms"],
        );
        for run in &outcome.stampede {
            let (p50, p99) = percentiles(run.pass.latency.as_ref());
            table.add_row(vec![
                run.mode.label().to_string(),
                count(run.pass.upstream_calls),
                count(run.pass.waited),
                count(run.pass.fell_back),
                count(run.pass.failed),
                p50,
                p99,
            ]);
        }
        align_right(&mut table, &[1, 2, 3, 4, 5, 6]);
        output.text(table);
        output.text("calls: upstream calls made · waited: got another request's answer");
    }
}

fn pass_table(output: &Output, first: &str) -> Table {
    new_table(
        output,
        &[first, "calls", "hits", "stale", "failed", "p50 ms", "p95 ms", "p99 ms"],
    )
}

fn add_pass(table: &mut Table, label: &str, pass: &Pass) {
    let (p50, p99) = percentiles(pass.latency.as_ref());
    let p95 = pass.latency.as_ref().map_or("-".to_string(), |s| ms(s.p95));
    table.add_row(vec![
        label.to_string(),
        count(pass.upstream_calls),
        count(pass.hits),
        count(pass.served_stale),
        count(pass.failed),
        p50,
        p95,
        p99,
    ]);
    align_right(table, &[1, 2, 3, 4, 5, 6, 7]);
}

fn percentiles(summary: Option<&LatencySummary>) -> (String, String) {
    summary.map_or(("-".into(), "-".into()), |s| (ms(s.p50), ms(s.p99)))
}
