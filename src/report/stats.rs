//! Renders exercise 3 (`stats`): requests by layer, response time by source,
//! the per-second timeline as sparklines, Valkey's view, the eviction
//! comparison, and the Prometheus exposition.

use std::io::Write;

use comfy_table::Cell;

use super::latency::{summary_table, Unit};
use super::prometheus::{cache_families, render, CacheMetrics};
use super::table::{align_right, count, ms, new_table};
use super::{connection, Output};
use crate::exercises::stats::eviction::EvictionOutcome;
use crate::exercises::stats::server::ServerView;
use crate::exercises::stats::workload::{l2_lookups, RunStats};
use crate::exercises::stats::StatsFormat;
use crate::exercises::stats::{Settings, StatsOutcome};
use crate::measure::timeline::SecondStats;

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// The widest timeline drawn; longer runs put several seconds in a column.
const TIMELINE_COLUMNS: usize = 60;
/// Runs up to this many seconds also get one line per second.
const PER_SECOND_LINES: usize = 30;
/// Width of the hit-rate bar on those lines (each cell is 5 %).
const BAR_CELLS: usize = 20;

/// The view of `stats`: its `--format` picks tables, JSON or Prometheus
/// text; the warnings follow on stderr. An eviction comparison cut short
/// before its first policy finished shows only the warnings.
pub fn show(outcome: &StatsOutcome, output: &Output) {
    let finished_runs = outcome.eviction.as_ref().map_or(1, |e| e.runs.len());
    let output = match outcome.format {
        StatsFormat::Table => *output,
        StatsFormat::Json => Output {
            json: true,
            color: false,
            progress: false,
        },
        // Metrics on stdout, undecorated.
        StatsFormat::Prometheus => Output {
            json: false,
            color: false,
            progress: output.progress,
        },
    };
    if finished_runs > 0 {
        match outcome.format {
            StatsFormat::Prometheus => show_prometheus(outcome),
            _ => show_stats(outcome, &output),
        }
    }
    for warning in &outcome.warnings {
        output.warn(warning);
    }
}

pub fn show_stats(outcome: &StatsOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    output.heading(&format!("Exercise 3 · cache statistics · {}", outcome.database));
    output.text(describe_settings(&outcome.settings));

    let setup = &outcome.setup;
    let mut line = connection::line(&setup.connection, &[]);
    if let Some(cleared) = setup.keys_cleared {
        line.push_str(&format!(" · --fresh deleted {} cached products", count(cleared)));
    }
    connection::show(output, &line);
    if let Some(address) = &outcome.private_valkey {
        output.text(format!(
            "Valkey: a private valkey-server on {address}, started for this run and stopped after it"
        ));
    }

    if let Some(run) = &outcome.run {
        show_run(run, &outcome.settings, output);
        if let Some(view) = &outcome.valkey {
            output.heading("Valkey's view (INFO before and after the run; server-wide, other clients included)");
            output.text(server_table(view, output));
            if !view.nodes.is_empty() {
                output.heading("Per primary of the cluster (INFO of each node; the view above sums them)");
                output.text(node_table(view, output));
            }
        }
    }
    if let Some(eviction) = &outcome.eviction {
        show_eviction(eviction, output);
    }
}

fn describe_settings(settings: &Settings) -> String {
    let amount = match (settings.requests, settings.duration_seconds) {
        (Some(n), _) => format!("{} requests", count(n)),
        (None, Some(seconds)) => format!("{seconds} s of requests"),
        (None, None) => String::new(),
    };
    let rate = settings
        .rate_per_second
        .map_or_else(String::new, |r| format!(" at most {r}/s"));
    let keys = if settings.distribution == "uniform" {
        format!("product ids 1..{} drawn uniformly", settings.keys)
    } else {
        format!("product ids 1..{} drawn by Zipf s={}", settings.keys, settings.skew)
    };
    let l1 = if settings.l1 {
        format!(
            "L1 on: {} entries, TTL {} s (its {} hottest keys get {:.1} % of the requests)",
            count(settings.l1_capacity),
            settings.l1_ttl_seconds,
            count(settings.l1_capacity.min(settings.keys)),
            settings.hottest_keys_share * 100.0
        )
    } else {
        "L1 off".to_string()
    };
    format!(
        "{amount}{rate} · {} task(s) · {keys}\n{l1} · L2 (Valkey) TTL {} s · key prefix {}",
        settings.concurrency, settings.l2_ttl_seconds, settings.key_prefix
    )
}

/// A rate rounded to a whole number, with thousands separators.
fn rounded(value: f64) -> String {
    count(value.max(0.0).round() as u64)
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_string(), |r| format!("{:.1} %", r * 100.0))
}

fn show_run(run: &RunStats, settings: &Settings, output: &Output) {
    let c = &run.counters;
    output.heading("Requests by layer");
    let mut table = new_table(
        output,
        &["layer", "lookups", "hits", "misses", "failed GET/SET", "hit rate"],
    );
    if settings.l1 {
        table.add_row(vec![
            "L1 (in-process)".to_string(),
            count(c.l1_hits + c.l1_misses),
            count(c.l1_hits),
            count(c.l1_misses),
            "—".to_string(),
            percent(run.hit_rate.l1),
        ]);
    } else {
        table.add_row(vec!["L1 (in-process)", "off", "", "", "", ""]);
    }
    let l2_reached = l2_lookups(run.requests, c);
    if run.hit_rate.l2.is_none() && l2_reached > 0 {
        table.add_row(vec!["L2 (Valkey)", "unavailable", "", "", "", ""]);
    } else {
        table.add_row(vec![
            "L2 (Valkey)".to_string(),
            count(l2_reached),
            count(c.l2_hits),
            count(c.l2_misses),
            count(c.l2_errors),
            percent(run.hit_rate.l2),
        ]);
    }
    table.add_row(vec![
        "database (loads)".to_string(),
        count(c.database_loads),
        "—".to_string(),
        "—".to_string(),
        "—".to_string(),
        "—".to_string(),
    ]);
    table.add_row(vec![
        // With --read-ratio the writes are counted apart: this row is the reads'.
        if run.writes.is_some() {
            "all reads"
        } else {
            "all requests"
        }
        .to_string(),
        count(run.requests),
        count(c.l1_hits + c.l2_hits),
        count(c.database_loads),
        count(c.l2_errors),
        percent(run.hit_rate.overall),
    ]);
    align_right(&mut table, &[1, 2, 3, 4, 5]);
    output.text(table);
    output.text(format!(
        "{} requests in {:.2} s · {} requests/s · served by L1 {}, Valkey {}, database {}",
        count(run.requests),
        run.wall_time.as_secs_f64(),
        rounded(run.throughput_per_second),
        count(run.served.l1),
        count(run.served.l2),
        count(run.served.database)
    ));
    if let Some(writes) = &run.writes {
        output.text(writes_text(writes));
    }
    if let Some(size) = &run.l1_size {
        output.text(format!(
            "L1 at the end: {} entries × {:.0} B of JSON ≈ {} (an estimate; the process spends more per entry)",
            count(size.entries),
            size.average_entry_bytes,
            bytes(size.estimated_bytes)
        ));
    }

    output.heading("Response time by source in µs (the whole read, as the caller waits for it)");
    output.text(summary_table(
        output,
        Unit::Micros,
        &[
            ("L1", run.latency_us.l1.as_ref()),
            ("Valkey", run.latency_us.l2.as_ref()),
            ("database", run.latency_us.database.as_ref()),
            ("all", run.latency_us.all.as_ref()),
        ],
    ));

    output.heading("Timeline");
    output.text(timeline_text(&run.timeline));
}

/// The writes of a mixed run: how many, how long, and the stale reads seen
/// (each line within 80 columns).
fn writes_text(writes: &crate::exercises::stats::writes::WriteStats) -> String {
    let total = writes.reads + writes.writes;
    let share = if total == 0 {
        0.0
    } else {
        writes.writes as f64 / total as f64 * 100.0
    };
    let mut lines = vec![format!(
        "mixed traffic, {} on write: {} reads, {} writes ({share:.1} %)",
        writes.mode.label(),
        count(writes.reads),
        count(writes.writes)
    )];
    if let Some(latency) = &writes.latency {
        lines.push(format!(
            "a write (database + cache step): p50 {} ms · p99 {} ms",
            ms(latency.p50),
            ms(latency.p99)
        ));
    }
    let unjudged = if writes.unjudged_reads > 0 {
        format!(" ({} not judged)", count(writes.unjudged_reads))
    } else {
        String::new()
    };
    lines.push(format!(
        "stale reads: {} of {}{unjudged}: older than the database at their start",
        count(writes.stale_reads),
        count(writes.reads)
    ));
    if writes.cache_step_failures > 0 {
        lines.push(format!(
            "{} cache step(s) after a commit failed: the key was deleted instead",
            count(writes.cache_step_failures)
        ));
    }
    lines.push(format!(
        "{} product price(s) changed: `workshop-cli clean` restores them",
        count(writes.products_changed)
    ));
    lines.join("\n")
}

/// Three sparklines (throughput, hit rate, p99) over the run's seconds.
pub fn timeline_text(seconds: &[SecondStats]) -> String {
    let columns = group_seconds(seconds, TIMELINE_COLUMNS);
    let per_column = seconds.len().div_ceil(TIMELINE_COLUMNS.max(1)).max(1);
    let throughput: Vec<Option<f64>> = columns.iter().map(|c| Some(c.throughput)).collect();
    let hit_rate: Vec<Option<f64>> = columns.iter().map(|c| c.hit_rate).collect();
    let p99: Vec<Option<f64>> = columns.iter().map(|c| c.p99_ms).collect();
    let peak = |values: &[Option<f64>]| values.iter().flatten().copied().fold(0.0, f64::max);
    let low = |values: &[Option<f64>]| values.iter().flatten().copied().fold(f64::INFINITY, f64::min);
    let mut lines = vec![if per_column == 1 {
        format!("one column per second, {} s", seconds.len())
    } else {
        format!("one column per {per_column} s (worst p99 of each), {} s", seconds.len())
    }];
    lines.push(format!(
        "requests/s  {}  min {} · max {}",
        sparkline(&throughput, peak(&throughput)),
        rounded(low(&throughput).min(peak(&throughput))),
        rounded(peak(&throughput))
    ));
    lines.push(format!(
        "hit rate    {}  min {:.1} % · max {:.1} %",
        sparkline(&hit_rate, 1.0),
        low(&hit_rate).min(1.0) * 100.0,
        peak(&hit_rate) * 100.0
    ));
    lines.push(format!(
        "p99 ms      {}  min {:.3} · max {:.3}",
        sparkline(&p99, peak(&p99)),
        low(&p99).min(peak(&p99)),
        peak(&p99)
    ));
    if seconds.len() <= 1 {
        lines.push("(the run took about a second: add --duration 20 --rate 2000 for a longer timeline)".into());
    } else if seconds.len() <= PER_SECOND_LINES {
        lines.push(String::new());
        lines.push(format!(
            "{:>4}  {:>10}  {:>8}  {:<w$}  {:>8}",
            "s",
            "requests/s",
            "hit rate",
            "",
            "p99 ms",
            w = BAR_CELLS
        ));
        for second in seconds {
            let line = format!(
                "{:>4}  {:>10}  {:>8}  {:<w$}  {:>8}",
                second.second,
                rounded(second.throughput_per_second),
                percent(second.hit_rate),
                bar(second.hit_rate.unwrap_or(0.0), BAR_CELLS),
                second.p99.map_or_else(|| "—".to_string(), ms),
                w = BAR_CELLS
            );
            lines.push(match faults_text(&second.valkey_faults) {
                Some(faults) => format!("{line}  {faults}"),
                None => line,
            });
        }
    } else if let Some(faults) = seconds
        .iter()
        .find(|s| faults_text(&s.valkey_faults).is_some())
        .and_then(|s| faults_text(&s.valkey_faults).map(|text| format!("from second {}: {text}", s.second)))
    {
        lines.push(format!("Valkey faults {faults}"));
    }
    lines.join("\n")
}

/// "Valkey: 3 timed out · breaker opened 1× · 120 skipped" (the non-zero
/// parts) for a second with any.
fn faults_text(faults: &crate::cache::BreakerCounts) -> Option<String> {
    let parts: Vec<String> = [
        (faults.timeouts, format!("{} timed out", faults.timeouts)),
        (faults.openings, format!("breaker opened {}×", faults.openings)),
        (faults.skipped, format!("{} skipped", faults.skipped)),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(_, text)| text)
    .collect();
    (!parts.is_empty()).then(|| format!("Valkey: {}", parts.join(" · ")))
}

/// A horizontal bar of `cells` characters for a fraction from 0 to 1, in eighths of a cell.
pub fn bar(fraction: f64, cells: usize) -> String {
    const EIGHTHS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
    let eighths = (fraction.clamp(0.0, 1.0) * (cells * 8) as f64).round() as usize;
    let mut text = "█".repeat(eighths / 8);
    if eighths % 8 > 0 {
        text.push(EIGHTHS[eighths % 8 - 1]);
    }
    text
}

#[derive(Debug, Clone, PartialEq)]
struct Column {
    throughput: f64,
    hit_rate: Option<f64>,
    p99_ms: Option<f64>,
}

/// Folds seconds into at most `columns` columns: throughput and hit rate
/// over the whole column, p99 the worst second's (a dip must not vanish).
fn group_seconds(seconds: &[SecondStats], columns: usize) -> Vec<Column> {
    let per_column = seconds.len().div_ceil(columns.max(1)).max(1);
    seconds
        .chunks(per_column)
        .map(|chunk| {
            let requests: u64 = chunk.iter().map(|s| s.requests).sum();
            let hits: u64 = chunk.iter().map(|s| s.hits).sum();
            let length: f64 = chunk.iter().map(|s| s.length_seconds).sum();
            Column {
                throughput: if length > 0.0 { requests as f64 / length } else { 0.0 },
                hit_rate: (requests > 0).then(|| hits as f64 / requests as f64),
                p99_ms: chunk
                    .iter()
                    .filter_map(|s| s.p99)
                    .map(|d| d.as_secs_f64() * 1000.0)
                    .reduce(f64::max),
            }
        })
        .collect()
}

/// One block character per value, scaled from 0 to `max`; a blank where there is no value.
pub fn sparkline(values: &[Option<f64>], max: f64) -> String {
    values
        .iter()
        .map(|value| match value {
            None => ' ',
            Some(v) if max <= 0.0 || !v.is_finite() => SPARKS[0],
            Some(v) => {
                let level = (v / max * (SPARKS.len() - 1) as f64).round();
                SPARKS[(level.max(0.0) as usize).min(SPARKS.len() - 1)]
            }
        })
        .collect()
}

/// Bytes with a binary unit: 512 B, 1.5 KiB, 2.00 MiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.2} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn optional_count(value: Option<u64>) -> String {
    value.map_or_else(|| "— (restarted)".to_string(), count)
}

fn node_table(view: &ServerView, output: &Output) -> comfy_table::Table {
    let mut table = new_table(output, &["primary", "keyspace hits", "keyspace misses", "used memory"]);
    for node in &view.nodes {
        table.add_row(vec![
            node.node.clone(),
            optional_count(node.keyspace_hits),
            optional_count(node.keyspace_misses),
            bytes(node.used_memory_bytes),
        ]);
    }
    super::table::align_right(&mut table, &[1, 2, 3]);
    table
}

fn server_table(view: &ServerView, output: &Output) -> comfy_table::Table {
    let mut table = new_table(output, &["", "value"]);
    let limit = if view.maxmemory_bytes == 0 {
        "no limit".to_string()
    } else {
        bytes(view.maxmemory_bytes)
    };
    let mut rows = vec![
        ("server", view.server.clone()),
        ("keyspace hits during the run", optional_count(view.keyspace_hits)),
        ("keyspace misses during the run", optional_count(view.keyspace_misses)),
        ("hit rate as the server counts it", percent(view.server_hit_rate)),
        ("keys expired during the run", optional_count(view.expired_keys)),
        ("keys evicted during the run", optional_count(view.evicted_keys)),
        (
            "used memory",
            format!(
                "{} ({} bytes)",
                bytes(view.used_memory_bytes),
                count(view.used_memory_bytes)
            ),
        ),
        ("maxmemory · policy", format!("{limit} · {}", view.maxmemory_policy)),
        ("connected clients", count(view.connected_clients)),
    ];
    if let Some(keys) = &view.workshop_keys {
        rows.push((
            "workshop keys (SCAN)",
            format!("{} matching {}", count(keys.keys), keys.pattern),
        ));
        let how = if keys.estimated {
            format!("MEMORY USAGE of {} of them, extrapolated", count(keys.sampled))
        } else {
            "MEMORY USAGE of each".to_string()
        };
        rows.push(("their memory", format!("{} ({how})", bytes(keys.memory_bytes))));
    }
    for (label, value) in rows {
        table.add_row(vec![Cell::new(label), Cell::new(value)]);
    }
    table
}

fn show_eviction(eviction: &EvictionOutcome, output: &Output) {
    let previous = &eviction.previous;
    output.heading(&format!(
        "Eviction: maxmemory {} ({} bytes), one run per policy, each from an empty cache",
        bytes(eviction.maxmemory_bytes),
        count(eviction.maxmemory_bytes)
    ));
    output.text(format!(
        "Valkey's settings before: maxmemory {} · maxmemory-policy {}{}",
        previous.maxmemory,
        previous.maxmemory_policy,
        if eviction.restored { " (restored)" } else { "" }
    ));
    // Columns that say nothing are left out, so the table fits 80 columns: the request
    // count when every run made the same number, the L2 hit rate when L1 was off (then
    // it is the hit rate).
    let runs = &eviction.runs;
    let same_requests = runs.windows(2).all(|w| w[0].run.requests == w[1].run.requests);
    let l1_on = runs.iter().any(|r| r.run.hit_rate.l1.is_some());
    if let (true, Some(first)) = (same_requests, runs.first()) {
        output.text(format!("{} requests in each run", count(first.run.requests)));
    }
    let mut headers = vec!["policy"];
    if !same_requests {
        headers.push("requests");
    }
    headers.push("hit rate");
    if l1_on {
        headers.push("L2 hit rate");
    }
    headers.extend([
        "evicted keys",
        "keys after",
        "used memory",
        "L2 errors",
        "p99 ms",
        "requests/s",
    ]);
    let mut table = new_table(output, &headers);
    for policy in runs {
        let run = &policy.run;
        let view = policy.valkey.as_ref();
        let mut row = vec![policy.policy.clone()];
        if !same_requests {
            row.push(count(run.requests));
        }
        row.push(percent(run.hit_rate.overall));
        if l1_on {
            row.push(percent(run.hit_rate.l2));
        }
        row.extend([
            view.map_or_else(|| "—".into(), |v| optional_count(v.evicted_keys)),
            view.and_then(|v| v.workshop_keys.as_ref())
                .map_or_else(|| "—".into(), |k| count(k.keys)),
            view.map_or_else(|| "—".into(), |v| bytes(v.used_memory_bytes)),
            count(run.counters.l2_errors),
            run.latency.all.as_ref().map_or_else(|| "—".into(), |s| ms(s.p99)),
            rounded(run.throughput_per_second),
        ]);
        table.add_row(row);
    }
    let numbers: Vec<usize> = (1..headers.len()).collect();
    align_right(&mut table, &numbers);
    // A policy name is one token too: never split it.
    let widest_policy = runs.iter().map(|r| r.policy.len()).max().unwrap_or(0);
    if let Some(column) = table.column_mut(0) {
        let width = u16::try_from(widest_policy + 2).unwrap_or(u16::MAX);
        column.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(comfy_table::Width::Fixed(
            width,
        )));
    }
    output.text(table);

    output.heading("Hit rate over time (0 to 100 %)");
    let width = eviction.runs.iter().map(|r| r.policy.len()).max().unwrap_or(0);
    let lines: Vec<String> = eviction
        .runs
        .iter()
        .map(|policy| {
            let columns = group_seconds(&policy.run.timeline, TIMELINE_COLUMNS);
            let rates: Vec<Option<f64>> = columns.iter().map(|c| c.hit_rate).collect();
            format!("{:<width$}  {}", policy.policy, sparkline(&rates, 1.0))
        })
        .collect();
    output.text(lines.join("\n"));
}

/// `--format prometheus`: the exposition text on stdout, nothing else.
pub fn show_prometheus(outcome: &StatsOutcome) {
    let Some(run) = &outcome.run else {
        return;
    };
    let footprint = outcome.valkey.as_ref().and_then(|v| v.workshop_keys.as_ref());
    let metrics = CacheMetrics {
        l1_hits: run.counters.l1_hits,
        l1_misses: run.counters.l1_misses,
        l2_hits: run.counters.l2_hits,
        l2_misses: run.counters.l2_misses,
        l2_errors: run.counters.l2_errors,
        durations: vec![
            ("l1", &run.durations.l1),
            ("l2", &run.durations.l2),
            ("database", &run.durations.database),
        ],
        l1_bytes: run.l1_size.map(|s| s.estimated_bytes),
        l1_entries: run.l1_size.map(|s| s.entries),
        l2_bytes: footprint.map(|k| k.memory_bytes),
        l2_keys: footprint.map(|k| k.keys),
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not worth a panic.
    let _ = out.write_all(render(&cache_families(&metrics)).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn second(index: u64, requests: u64, hits: u64, p99_micros: u64) -> SecondStats {
        SecondStats {
            valkey_faults: Default::default(),
            second: index,
            length_seconds: 1.0,
            requests,
            hits,
            hit_rate: (requests > 0).then(|| hits as f64 / requests as f64),
            throughput_per_second: requests as f64,
            writes: 0,
            p50: None,
            p99: (requests > 0).then(|| Duration::from_micros(p99_micros)),
        }
    }

    #[test]
    fn a_second_with_valkey_faults_names_only_what_happened() {
        use crate::cache::BreakerCounts;
        assert_eq!(faults_text(&BreakerCounts::default()), None);
        let faults = BreakerCounts {
            openings: 1,
            skipped: 0,
            timeouts: 3,
        };
        assert_eq!(faults_text(&faults).unwrap(), "Valkey: 3 timed out · breaker opened 1×");
        let mut seconds = vec![second(0, 10, 10, 100), second(1, 10, 0, 100), second(2, 10, 10, 100)];
        seconds[1].valkey_faults = faults;
        let text = timeline_text(&seconds);
        let line = text.lines().find(|l| l.trim_start().starts_with("1 ")).unwrap();
        assert!(line.ends_with("Valkey: 3 timed out · breaker opened 1×"), "{text}");
    }

    #[test]
    fn sparklines_scale_to_the_maximum_and_leave_gaps_blank() {
        assert_eq!(sparkline(&[Some(0.0), Some(0.5), Some(1.0), None], 1.0), "▁▅█ ");
        assert_eq!(sparkline(&[Some(3.0)], 0.0), "▁");
    }

    #[test]
    fn a_hit_rate_dip_shows_in_the_timeline() {
        let seconds = vec![
            second(0, 100, 90, 100),
            second(1, 100, 10, 900),
            second(2, 100, 95, 100),
        ];
        let text = timeline_text(&seconds);
        let hit_line = text.lines().find(|l| l.starts_with("hit rate")).unwrap();
        assert!(hit_line.contains("▇▂█"), "{text}");
        assert!(hit_line.ends_with("min 10.0 % · max 95.0 %"), "{text}");
        let p99_line = text.lines().find(|l| l.starts_with("p99 ms")).unwrap();
        assert!(p99_line.contains("▂█▂"), "{text}");
    }

    #[test]
    fn long_runs_fold_seconds_into_columns_keeping_the_worst_p99() {
        let seconds: Vec<SecondStats> = (0..120)
            .map(|i| second(i, 10, if i == 7 { 0 } else { 10 }, if i == 7 { 5000 } else { 100 }))
            .collect();
        let columns = group_seconds(&seconds, 60);
        assert_eq!(columns.len(), 60);
        assert_eq!(columns[3].hit_rate, Some(0.5), "seconds 6 and 7 share a column");
        assert_eq!(columns[3].p99_ms, Some(5.0));
        assert_eq!(columns[3].throughput, 10.0);
    }

    #[test]
    fn bars_are_drawn_in_eighths_of_a_cell() {
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.5, 4), "██");
        assert_eq!(bar(0.0, 4), "");
        assert_eq!(bar(1.0 / 32.0, 4), "▏");
        assert_eq!(bar(0.9, 20).chars().count(), 18);
    }

    #[test]
    fn short_runs_get_a_line_per_second() {
        let seconds = vec![second(0, 100, 50, 100), second(1, 100, 100, 200)];
        let text = timeline_text(&seconds);
        assert!(
            text.lines().any(|l| l.contains("50.0 %") && l.contains("██████████ ")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("1 ") && l.contains("100.0 %")),
            "{text}"
        );
    }

    #[test]
    fn bytes_get_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(2 * 1024 * 1024), "2.00 MiB");
        assert_eq!(bytes(15 * 1024 * 1024 + 1), "15.0 MiB");
    }
}
