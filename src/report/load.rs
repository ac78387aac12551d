//! `load`'s tables: throughput and status codes, latency overall and per
//! `X-Cache` layer, and the per-second timeline; `--json` (`--out`: `report::saved_run`).

use super::Output;
use crate::exercises::load::LoadOutcome;
use crate::measure::{millis, LatencySummary};

fn latency_row(label: &str, s: &LatencySummary) -> String {
    format!(
        "  {label:<10} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        s.count,
        millis(s.p50),
        millis(s.p95),
        millis(s.p99),
        millis(s.max)
    )
}

pub fn show(outcome: &LoadOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    println!(
        "load on {}: {} requests in {:.1} s = {:.0} req/s ({} GET, {} PUT, {} failed)",
        outcome.url,
        outcome.requests,
        outcome.elapsed.as_secs_f64(),
        outcome.throughput,
        outcome.reads,
        outcome.writes,
        outcome.failed
    );
    let statuses: Vec<String> = outcome
        .statuses
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    println!("status codes: {}", statuses.join(", "));
    println!();
    println!(
        "  {:<10} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "latency", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    if let Some(all) = &outcome.latency {
        println!("{}", latency_row("all", all));
    }
    for (layer, summary) in &outcome.by_layer {
        println!("{}", latency_row(&format!("X-Cache {layer}"), summary));
    }
    println!();
    println!("  {:>6} {:>8} {:>9} {:>9}", "second", "req/s", "hit rate", "p99 ms");
    for second in &outcome.timeline {
        println!(
            "  {:>6} {:>8} {:>8.1}% {:>9}",
            second.second,
            second.requests,
            second.hit_rate * 100.0,
            second.p99.map_or("-".to_string(), |p| format!("{:.3}", millis(p)))
        );
    }
}
