//! Latency tables and the text histogram, shared by the exercises.

use comfy_table::Cell;

use super::table::{align_right, cell_text, count, ms, new_table};
use super::{connection, Output};
use crate::db::ResultSet;
use crate::exercises::cache_aside::CacheAsideOutcome;
use crate::measure::{Distribution, LatencySummary, MicrosSummary};

/// Rows of a result set shown before "... and N more".
const RESULT_ROWS_SHOWN: usize = 20;
const BAR_WIDTH: usize = 40;

/// The unit a latency-summary table shows: milliseconds with three
/// decimals, or microseconds with two (an L1 hit is well under a millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Millis,
    Micros,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Millis => "ms",
            Unit::Micros => "µs",
        }
    }

    fn micros(self, value: f64) -> String {
        match self {
            Unit::Millis => format!("{:.3}", value / 1000.0),
            Unit::Micros => format!("{value:.2}"),
        }
    }
}

/// The figures of one latency summary, in whichever form an outcome keeps it.
pub trait SummaryFigures {
    fn count(&self) -> u64;
    /// min, p50, p95, p99, max and mean in `unit`.
    fn figures(&self, unit: Unit) -> [String; 6];
}

impl SummaryFigures for LatencySummary {
    fn count(&self) -> u64 {
        self.count
    }

    fn figures(&self, unit: Unit) -> [String; 6] {
        [self.min, self.p50, self.p95, self.p99, self.max, self.mean].map(|value| match unit {
            Unit::Millis => ms(value),
            Unit::Micros => unit.micros(crate::measure::micros(value)),
        })
    }
}

impl SummaryFigures for MicrosSummary {
    fn count(&self) -> u64 {
        self.count
    }

    fn figures(&self, unit: Unit) -> [String; 6] {
        [
            self.min_us,
            self.p50_us,
            self.p95_us,
            self.p99_us,
            self.max_us,
            self.mean_us,
        ]
        .map(|value| unit.micros(value))
    }
}

/// A table of latency summaries side by side: one column per series, one row
/// per figure (count, min, p50, p95, p99, max, mean) in `unit`.
pub fn summary_table<S: SummaryFigures>(
    output: &Output,
    unit: Unit,
    series: &[(&str, Option<&S>)],
) -> comfy_table::Table {
    let mut header = vec![""];
    header.extend(series.iter().map(|(name, _)| *name));
    let mut table = new_table(output, &header);
    let figures: Vec<Option<[String; 6]>> = series.iter().map(|(_, s)| s.map(|s| s.figures(unit))).collect();
    let mut row = vec![Cell::new("count")];
    row.extend(
        series
            .iter()
            .map(|(_, s)| Cell::new(s.map_or_else(|| "—".to_string(), |s| count(s.count())))),
    );
    table.add_row(row);
    for (index, name) in ["min", "p50", "p95", "p99", "max", "mean"].iter().enumerate() {
        let mut row = vec![Cell::new(format!("{name} {}", unit.label()))];
        row.extend(
            figures
                .iter()
                .map(|f| Cell::new(f.as_ref().map_or_else(|| "—".to_string(), |f| f[index].clone()))),
        );
        table.add_row(row);
    }
    align_right(&mut table, &(1..=series.len()).collect::<Vec<_>>());
    table
}

pub fn distribution_text(distribution: &Distribution) -> String {
    let peak = distribution
        .buckets
        .iter()
        .flat_map(|b| b.counts.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let name_width = distribution.series.iter().map(String::len).max().unwrap_or(0);
    let mut lines = Vec::new();
    for bucket in &distribution.buckets {
        for (name, n) in distribution.series.iter().zip(&bucket.counts) {
            if *n == 0 {
                continue;
            }
            let width = ((*n as f64 / peak as f64) * BAR_WIDTH as f64).ceil() as usize;
            lines.push(format!(
                "≤ {:>10} ms  {:<name_width$}  {:<BAR_WIDTH$} {}",
                ms(bucket.up_to),
                name,
                "█".repeat(width.max(1)),
                count(*n)
            ));
        }
    }
    lines.join("\n")
}

/// The rows a query returned, as a table.
pub fn result_table(output: &Output, result: &ResultSet) -> String {
    if result.is_empty() {
        return "(empty result: no rows; it is cached like any other result)".to_string();
    }
    let header: Vec<&str> = result.columns.iter().map(String::as_str).collect();
    let mut table = new_table(output, &header);
    for row in result.rows.iter().take(RESULT_ROWS_SHOWN) {
        table.add_row(row.iter().map(|v| match v {
            serde_json::Value::Null => "NULL".to_string(),
            serde_json::Value::String(s) => cell_text(s),
            other => cell_text(&other.to_string()),
        }));
    }
    let mut text = table.to_string();
    if result.rows.len() > RESULT_ROWS_SHOWN {
        text.push_str(&format!(
            "\n... and {} more rows",
            result.rows.len() - RESULT_ROWS_SHOWN
        ));
    }
    text
}

pub fn show_cache_aside(outcome: &CacheAsideOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
    } else {
        show_cache_aside_tables(outcome, output);
    }
    for warning in &outcome.warnings {
        output.warn(warning);
    }
}

fn show_cache_aside_tables(outcome: &CacheAsideOutcome, output: &Output) {
    output.heading(&format!(
        "Exercise 1 · cache-aside · {} · query {} · TTL {} s",
        outcome.database, outcome.query.name, outcome.ttl_seconds
    ));
    output.text(format!("SQL:  {}", outcome.query.statement));
    if !outcome.query.params.is_empty() {
        let params: Vec<String> = outcome
            .query
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
            .collect();
        output.text(format!("with: {}", params.join(", ")));
    }
    output.text(format!("key:  {}", outcome.key));

    output.heading("Result");
    output.text(result_table(output, &outcome.result));

    let setup = &outcome.setup;
    let mut line = connection::line(&setup.connection, &[]);
    if setup.warmup_reads > 0 {
        line.push_str(&format!(" · {} untimed warm-up reads", setup.warmup_reads));
    }
    connection::show(output, &line);

    if !outcome.runs.is_empty() {
        output.heading("Runs");
        let mut table = new_table(output, &["run", "source", "latency ms", "TTL left s"]);
        for run in &outcome.runs {
            table.add_row(vec![
                run.run.to_string(),
                run.source.label().to_string(),
                ms(run.latency),
                run.ttl_left_seconds.map_or_else(|| "—".into(), |s| format!("{s:.1}")),
            ]);
        }
        align_right(&mut table, &[0, 2, 3]);
        output.text(table);
    }

    output.heading("Summary: database (query + row conversion) vs cache hit (GET + decode)");
    output.text(summary_table(
        output,
        Unit::Millis,
        &[
            ("database", outcome.summary.database.as_ref()),
            ("cache", outcome.summary.cache.as_ref()),
        ],
    ));
    match (outcome.summary.speedup, &outcome.summary.not_compared) {
        (Some(speedup), _) => output.text(format!("speedup (database p50 / cache p50): {speedup:.1}×")),
        (None, Some(reason)) => output.text(format!("speedup: not compared, {reason}")),
        (None, None) => {}
    }
    let sources: Vec<String> = outcome
        .sources
        .iter()
        .map(|(k, v)| format!("{k} {}", count(*v)))
        .collect();
    output.text(format!(
        "reads: {} · baseline {} · tasks {}{} · {} reads/s",
        sources.join(", "),
        count(outcome.baseline_reads),
        outcome.concurrency,
        if outcome.connections > 1 {
            format!(" on {} connections", outcome.connections)
        } else {
            String::new()
        },
        count(outcome.throughput_per_second.round() as u64)
    ));
    if let Some(timeline) = outcome
        .timeline
        .as_ref()
        .filter(|t| t.len() > 1 && outcome.runs.is_empty())
    {
        let stretches: Vec<String> = timeline
            .iter()
            .map(|s| format!("{} ×{}", s.source.label(), count(s.reads)))
            .collect();
        output.text(format!("in order: {}", stretches.join(" → ")));
    }
    if let Some(writes) = &outcome.cache_writes {
        output.text(format!(
            "cache fills after a miss (SET): {} · p50 {} ms",
            count(writes.count),
            ms(writes.p50)
        ));
    }
    match outcome.consistent {
        Some(true) => output.text("cache hits returned exactly the rows the database returns"),
        Some(false) => output.text("cache hits returned rows that differ from the database now (stale)"),
        None => {}
    }
    if let Some(distribution) = &outcome.distribution {
        output.heading("Latency distribution");
        output.text(distribution_text(distribution));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{distribution, LatencyRecorder};
    use std::time::Duration;

    #[test]
    fn the_histogram_draws_one_bar_per_non_empty_bucket_and_series() {
        let mut fast = LatencyRecorder::new();
        let mut slow = LatencyRecorder::new();
        for _ in 0..9 {
            fast.record(Duration::from_micros(100));
        }
        slow.record(Duration::from_millis(20));
        let d = distribution(&[("database", &slow), ("cache", &fast)], 4).unwrap();
        let text = distribution_text(&d);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().any(|l| l.contains("cache") && l.ends_with(" 9")), "{text}");
        assert!(
            text.lines().any(|l| l.contains("database") && l.ends_with(" 1")),
            "{text}"
        );
    }

    #[test]
    fn an_empty_result_says_it_is_cached_too() {
        let output = Output {
            json: false,
            color: false,
            progress: false,
        };
        let empty = ResultSet {
            columns: vec![],
            rows: vec![],
        };
        assert!(result_table(&output, &empty).contains("cached"));
    }

    #[test]
    fn one_summary_table_shows_milliseconds_or_microseconds() {
        let output = Output {
            json: false,
            color: false,
            progress: false,
        };
        let mut recorder = LatencyRecorder::new();
        recorder.record(Duration::from_micros(1500));
        let summary = recorder.summary().unwrap();
        let as_ms = summary_table(&output, Unit::Millis, &[("db", Some(&summary))]).to_string();
        assert!(as_ms.contains("p50 ms") && as_ms.contains("1.500"), "{as_ms}");
        let micros = MicrosSummary::from(&summary);
        let as_us = summary_table(&output, Unit::Micros, &[("db", Some(&micros)), ("none", None)]).to_string();
        assert!(as_us.contains("p99 µs") && as_us.contains("1500.00"), "{as_us}");
        assert!(as_us.contains("—"), "a missing series shows a dash: {as_us}");
    }
}
