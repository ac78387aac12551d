//! Renders exercise 4 (multi-level cache): per-layer latency side by side,
//! the layer counters, warming, changes, and `--listen`'s lines (JSON Lines
//! with `--json`: one object per change, then a summary object).

use std::io::Write;

use serde::Serialize;

use super::latency::{distribution_text, summary_table, Unit};
use super::table::{align_right, count, ms, new_table};
use super::Output;
use crate::cache::two_level::{CounterSnapshot, Layer};
use crate::db::products::ProductRow;
use crate::exercises::multi_level::change::{ChangeAction, ChangeOutcome};
use crate::exercises::multi_level::layers::{LayerMicros, Speedups};
use crate::exercises::multi_level::listen::{ListenStart, ListenSummary, ServedChange, StoppedBy};
use crate::exercises::multi_level::reads::{ReadOutcome, ReadReport};
use crate::exercises::multi_level::warm::{WarmReport, WarmSource};
use crate::exercises::multi_level::{CacheSettings, MultiLevelOutcome, Setup};
use crate::measure::micros;

/// Warmed ids listed in the text report before "…".
const IDS_SHOWN: usize = 20;

/// One JSON object on one line, flushed at once (a reader may be waiting for it).
fn json_line(value: &impl Serialize) {
    let mut out = std::io::stdout().lock();
    // A closed pipe is not worth a panic.
    let _ = serde_json::to_writer(&mut out, value);
    let _ = writeln!(out);
    let _ = out.flush();
}

fn on_off(value: bool) -> &'static str {
    if value {
        "on"
    } else {
        "off"
    }
}

fn cache_line(cache: &CacheSettings) -> String {
    format!(
        "L1 {} entries, TTL {} s · L2 TTL {} s · invalidation {}",
        count(cache.l1_capacity),
        cache.l1_ttl_seconds,
        cache.l2_ttl_seconds,
        on_off(cache.invalidation)
    )
}

fn setup_line(setup: &Setup) -> String {
    super::connection::line(&setup.connection, &[("subscribe", setup.subscribe)])
}

fn describe(row: &ProductRow) -> String {
    format!(
        "#{} {} · {} · {} · {}",
        row.id,
        row.name,
        row.price,
        row.category,
        if row.in_stock { "in stock" } else { "out of stock" }
    )
}

fn short_label(layer: Layer) -> &'static str {
    match layer {
        Layer::L1 => "L1",
        Layer::L2 => "L2",
        Layer::Database => "database",
    }
}

/// Per-layer latency in microseconds, side by side, and the speedups.
fn latency_tables(output: &Output, layers: &LayerMicros, speedup: &Speedups) {
    let series = [
        ("L1 hit", layers.l1.as_ref()),
        ("L2 hit", layers.l2.as_ref()),
        ("database", layers.database.as_ref()),
    ];
    output.text(summary_table(output, Unit::Micros, &series));
    let ratio = |value: Option<f64>| value.map_or_else(|| "—".to_string(), |v| format!("{v:.1}×"));
    output.text(format!(
        "speedup at p50: database / L2 {} · database / L1 {} · L2 / L1 {}",
        ratio(speedup.database_over_l2),
        ratio(speedup.database_over_l1),
        ratio(speedup.l2_over_l1)
    ));
}

fn counters_table(output: &Output, counters: &CounterSnapshot) {
    let mut table = new_table(output, &["layer", "hits", "misses", "errors"]);
    table.add_row(vec![
        Layer::L1.label().to_string(),
        count(counters.l1_hits),
        count(counters.l1_misses),
        "—".to_string(),
    ]);
    table.add_row(vec![
        Layer::L2.label().to_string(),
        count(counters.l2_hits),
        count(counters.l2_misses),
        count(counters.l2_errors),
    ]);
    table.add_row(vec![
        format!("{} (loads)", Layer::Database.label()),
        count(counters.database_loads),
        "—".to_string(),
        "—".to_string(),
    ]);
    align_right(&mut table, &[1, 2, 3]);
    output.text(table);
    output.text(format!(
        "invalidations received {} · L1 emptied after a reconnect {}",
        count(counters.invalidations_received),
        count(counters.l1_clears)
    ));
}

pub fn show_reads(outcome: &ReadOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    output.heading(&format!(
        "Exercise 4 · multi-level cache · {} · {}",
        outcome.database,
        cache_line(&outcome.cache)
    ));
    output
        .text("Read path: L1 (this process) → L2 (Valkey) → database. An L2 hit fills L1; a database read fills both.");
    super::connection::show(output, &setup_line(&outcome.setup));

    if let Some(warm) = &outcome.warm {
        show_warm(warm, output);
    }
    if let Some(reads) = &outcome.reads {
        show_read_report(reads, output);
        output.heading("Layer counters (this process)");
        counters_table(output, &outcome.counters);
    }
    output.text(format!("L1 entries now: {}", count(outcome.l1_entries)));
    if let Some(counts) = &outcome.request_counts {
        output.text(format!(
            "request counts: +{} for {} product(s) in {} (ZINCRBY in one pipeline after the timed reads, {} ms)",
            count(counts.requests),
            count(counts.products),
            counts.key,
            ms(counts.elapsed)
        ));
    }
}

fn show_warm(warm: &WarmReport, output: &Output) {
    output.heading("Cache warming");
    let source = match warm.source {
        WarmSource::RequestCounts => format!("the {} most requested products (from {})", count(warm.warmed), warm.counts_key),
        WarmSource::RequestCountsThenLowestIds => format!(
            "the {} most requested products (from {}), then the lowest other ids: only {} product(s) have request counts",
            count(warm.from_request_counts),
            warm.counts_key,
            count(warm.from_request_counts)
        ),
        WarmSource::LowestIds => format!(
            "no request counts yet in {}: warmed the {} lowest ids instead (run some reads first)",
            warm.counts_key,
            count(warm.warmed)
        ),
    };
    output.text(format!("chose {source} in {} ms", ms(warm.choose)));
    output.text(format!(
        "warmed {} products into L2 and L1 in {} ms ({} loads in flight)",
        count(warm.warmed),
        ms(warm.load_and_fill),
        warm.parallel_loads
    ));
    let mut ids: Vec<String> = warm.product_ids.iter().take(IDS_SHOWN).map(i64::to_string).collect();
    if warm.product_ids.len() > IDS_SHOWN {
        ids.push("…".into());
    }
    output.text(format!("ids: {}", ids.join(", ")));
    if warm.not_found > 0 {
        output.text(format!(
            "{} id(s) have no product; their absence is cached",
            count(warm.not_found)
        ));
    }
    if warm.l2_write_errors > 0 {
        output.text(format!(
            "{} product(s) could not be written to Valkey: they are in this process's L1 only",
            count(warm.l2_write_errors)
        ));
    }
}

fn show_read_report(reads: &ReadReport, output: &Output) {
    let workload = &reads.workload;
    match (workload.product_id, &reads.product) {
        (Some(_), Some(product)) => output.text(format!("\nProduct {}", describe(product))),
        (Some(id), None) => output.text(format!("\nProduct #{id}: no such row (the absence is cached)")),
        (None, _) => {
            let shape = match workload.skew {
                Some(skew) if skew > 0.0 => format!(
                    "Zipf skew {skew}: id 1 is the most requested; the top 10 ids get {:.1} % of requests",
                    workload.top_10_share.unwrap_or(0.0) * 100.0
                ),
                _ => "uniform".to_string(),
            };
            output.text(format!(
                "\nWorkload: {} requests over product ids 1..={}, {shape}",
                count(reads.requests),
                count(workload.keys)
            ));
        }
    }

    if !reads.runs.is_empty() {
        output.heading("Runs");
        let mut table = new_table(output, &["run", "product", "layer", "latency µs", "price"]);
        for run in &reads.runs {
            table.add_row(vec![
                run.run.to_string(),
                run.product_id.to_string(),
                run.layer.label().to_string(),
                format!("{:.2}", micros(run.latency)),
                run.price.map_or_else(|| "—".into(), |p| p.to_string()),
            ]);
        }
        align_right(&mut table, &[0, 1, 3, 4]);
        output.text(table);
    }

    output.heading("Latency per layer in µs (1 ms = 1,000 µs): L1 hit (moka lookup) · L2 hit (GET + decode + L1 fill) · database (L2 miss + query + L2 and L1 fill)");
    latency_tables(output, &reads.layers_us, &reads.speedup);
    output.text(format!(
        "served: L1 {} · L2 {} · database {} · failed {} · {} distinct product(s) · {} task(s) · {:.0} reads/s",
        count(reads.served_by.l1),
        count(reads.served_by.l2),
        count(reads.served_by.database),
        count(reads.failed_requests),
        count(reads.distinct_products),
        reads.concurrency,
        reads.throughput_per_second
    ));
    if reads.not_found > 0 {
        output.text(format!(
            "{} read(s) found no product (the absence is cached)",
            count(reads.not_found)
        ));
    }
    if let Some(distribution) = &reads.distribution {
        output.heading("Latency distribution");
        output.text(distribution_text(distribution));
    }
}

pub fn show_change(outcome: &ChangeOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    let action = match outcome.mode {
        ChangeAction::Update => "update",
        ChangeAction::Invalidate => "invalidate",
    };
    output.heading(&format!(
        "Exercise 4 · multi-level cache · {action} product {} · {}",
        outcome.product_id, outcome.database
    ));
    match &outcome.after {
        Some(after) => output.text(format!(
            "{}: price {} → {} (updated_at {})",
            after.name, outcome.before.price, after.price, after.updated_at
        )),
        None => output.text(describe(&outcome.before)),
    }
    output.text(format!("key: {}", outcome.key));
    super::connection::show(output, &setup_line(&outcome.setup));
    output.heading("Steps");
    let mut table = new_table(output, &["step", "ms", ""]);
    for step in &outcome.steps {
        table.add_row(vec![
            step.step.to_string(),
            ms(step.elapsed),
            if step.ok { "ok" } else { "failed" }.to_string(),
        ]);
    }
    align_right(&mut table, &[1]);
    output.text(table);
    match outcome.receivers {
        Some(n) => output.text(format!(
            "published on {}: {n} process(es) listening drop product {} from their L1 now",
            outcome.cache.channel, outcome.product_id
        )),
        None if !outcome.cache.invalidation => output.text(
            "not published (--invalidation off): other processes keep the old row in their L1 until its TTL ends",
        ),
        None => {}
    }
}

pub fn show_listen_start(start: &ListenStart, output: &Output) {
    if output.json {
        return;
    }
    output.heading(&format!(
        "Exercise 4 · watching product {} every {} ms · {}",
        start.product_id,
        start.interval.as_millis(),
        cache_line(&start.cache)
    ));
    let invalidation = match (start.cache.invalidation, start.subscribed) {
        (true, true) => format!(
            "subscribed to {}: an update elsewhere drops the key from L1 at once",
            start.cache.channel
        ),
        (true, false) => format!(
            "not subscribed to {} (yet): changes show when the L1 entry expires",
            start.cache.channel
        ),
        (false, _) => "invalidation off: a change elsewhere shows only when the L1 entry expires".to_string(),
    };
    output.text(invalidation);
    match start.duration {
        Some(duration) => output.text(format!(
            "listening for {:.1} s (Ctrl-C stops earlier); a line whenever the served value changes:",
            duration.as_secs_f64()
        )),
        None => output.text("listening until Ctrl-C; a line whenever the served value changes:"),
    }
}

pub fn show_listen_change(change: &ServedChange, output: &Output) {
    if output.json {
        json_line(change);
        return;
    }
    let time = change.at.get(11..23).unwrap_or(&change.at);
    let price = match (change.previous_price, change.price) {
        (Some(previous), Some(price)) => format!("price {previous} → {price}"),
        (None, Some(price)) => format!("price {price}"),
        (_, None) => "product gone".to_string(),
    };
    let mut line = format!(
        "{time} UTC  +{:>8.3} s  {price:<24} from {}",
        change.elapsed.as_secs_f64(),
        short_label(change.layer)
    );
    if let Some(since) = change.since_updated_at_ms {
        line.push_str(&format!(
            "  (~{:.1} s after the row's updated_at)",
            since as f64 / 1000.0
        ));
    }
    output.text(line);
}

/// The view of `multi-level`: the outcome of its reads, change or listen
/// session, then the warnings not shown yet.
pub fn show(outcome: &MultiLevelOutcome, output: &Output) {
    let (warnings, shown) = match outcome {
        MultiLevelOutcome::Reads(reads) => {
            show_reads(reads, output);
            (&reads.warnings, 0)
        }
        MultiLevelOutcome::Change(change) => {
            show_change(change, output);
            (&change.warnings, 0)
        }
        MultiLevelOutcome::Listen(summary) => {
            show_listen_summary(summary, output);
            (&summary.warnings, summary.warnings_shown)
        }
    };
    for warning in warnings.iter().skip(shown) {
        output.warn(warning);
    }
}

pub fn show_listen_summary(summary: &ListenSummary, output: &Output) {
    if output.json {
        json_line(summary);
        return;
    }
    let stopped = match summary.stopped_by {
        StoppedBy::Duration => "--duration reached",
        StoppedBy::CtrlC => "Ctrl-C",
    };
    output.heading(&format!(
        "Summary: {:.1} s of listening ({stopped}) · {} reads · {} change(s) seen",
        summary.listened.as_secs_f64(),
        count(summary.reads),
        count(summary.changes)
    ));
    output.text(setup_line(&summary.setup));
    latency_tables(output, &summary.layers_us, &summary.speedup);
    counters_table(output, &summary.counters);
    if let Some(listener) = &summary.listener {
        output.text(format!(
            "subscription: {} · subscribed {} time(s) · {} message(s) received",
            if listener.connected {
                "connected"
            } else {
                "disconnected"
            },
            listener.subscriptions,
            listener.messages
        ));
    }
    if summary.failed_reads > 0 {
        output.text(format!("failed reads: {}", count(summary.failed_reads)));
    }
}
