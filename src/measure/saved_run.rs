//! The saved-run format (`--out run.json`, read by `workshop-cli plot`): one
//! JSON document per run with a format name and version, the command, its
//! options, and one or more per-second series in columns. Pure: building,
//! checking and parsing; the files are written by `report::saved_run` and
//! read by `report::plot`.
//!
//! ```json
//! { "format": "workshop-cli saved run", "version": 1, "command": "stats",
//!   "saved_at": "2026-12-01T22:00:00Z", "options": { ... },
//!   "series": [ { "name": "stats", "second": [0, 1],
//!                 "requests_per_second": [812.0, 905.5], "hit_rate": [0.61, 0.83],
//!                 "p50_ms": [0.02, 0.01], "p99_ms": [1.9, 0.8] } ],
//!   "outcome": { ... the command's --json document ... } }
//! ```
//!
//! Every column has one value per entry of `second` (`null`: not measured in
//! that second); a column the command does not measure is `[]`.

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "workshop-cli saved run";
pub const VERSION: u64 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRun {
    pub format: String,
    pub version: u64,
    /// The subcommand that measured the run: `stats`, `load`, `rate-limit`, `cluster`.
    pub command: String,
    /// UTC, RFC 3339.
    pub saved_at: String,
    /// The settings the run used (its `--json` settings).
    pub options: serde_json::Value,
    pub series: Vec<Series>,
    /// The command's whole `--json` document.
    #[serde(default)]
    pub outcome: serde_json::Value,
}

/// One line per metric in a chart: a run, or one limiter / policy of a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    /// Seconds since the start of the run, increasing.
    pub second: Vec<u64>,
    #[serde(default)]
    pub requests_per_second: Vec<Option<f64>>,
    /// 0.0 to 1.0.
    #[serde(default)]
    pub hit_rate: Vec<Option<f64>>,
    #[serde(default)]
    pub p50_ms: Vec<Option<f64>>,
    #[serde(default)]
    pub p99_ms: Vec<Option<f64>>,
}

/// The metrics a chart can show, in the order `plot` draws them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    RequestsPerSecond,
    HitRate,
    P50,
    P99,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::RequestsPerSecond, Metric::HitRate, Metric::P50, Metric::P99];

    pub fn column(self) -> &'static str {
        match self {
            Metric::RequestsPerSecond => "requests_per_second",
            Metric::HitRate => "hit_rate",
            Metric::P50 => "p50_ms",
            Metric::P99 => "p99_ms",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Metric::RequestsPerSecond => "requests per second",
            Metric::HitRate => "hit rate %",
            Metric::P50 => "p50 latency ms",
            Metric::P99 => "p99 latency ms",
        }
    }
}

impl Series {
    pub fn values(&self, metric: Metric) -> &[Option<f64>] {
        match metric {
            Metric::RequestsPerSecond => &self.requests_per_second,
            Metric::HitRate => &self.hit_rate,
            Metric::P50 => &self.p50_ms,
            Metric::P99 => &self.p99_ms,
        }
    }

    /// Whether any second has a value of `metric`.
    pub fn has(&self, metric: Metric) -> bool {
        self.values(metric).iter().any(Option::is_some)
    }
}

impl SavedRun {
    pub fn new(command: &str, options: serde_json::Value, series: Vec<Series>, outcome: serde_json::Value) -> Self {
        SavedRun {
            format: FORMAT.to_string(),
            version: VERSION,
            command: command.to_string(),
            saved_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            options,
            series,
            outcome,
        }
    }
}

/// Reads a saved run from its text; `name` (the file) is named in every error.
pub fn parse(name: &str, text: &str) -> Result<SavedRun, String> {
    let again = "save one with e.g. `workshop-cli stats --duration 10 --out run.json`";
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{name} is not a saved run (not JSON: {e}); {again}"))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(format!(
            "{name} is not a saved run (no \"format\": \"{FORMAT}\"); {again}"
        ));
    }
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(VERSION) => {}
        Some(other) => {
            return Err(format!(
                "{name} is a saved run of version {other}; this workshop-cli reads version {VERSION}: save the run again with it"
            ))
        }
        None => {
            return Err(format!(
                "{name} has no \"version\" number; this workshop-cli reads version {VERSION}: save the run again with it"
            ))
        }
    }
    let run: SavedRun =
        serde_json::from_value(value).map_err(|e| format!("{name} is not a valid saved run ({e}); {again}"))?;
    check(name, &run)?;
    Ok(run)
}

/// Every column as long as `second`, the seconds increasing, values finite.
pub fn check(name: &str, run: &SavedRun) -> Result<(), String> {
    if run.series.is_empty() || run.series.iter().all(|s| s.second.is_empty()) {
        return Err(format!(
            "{name} has no per-second series to plot; run the command for a second or more and save it again"
        ));
    }
    for series in &run.series {
        let seconds = series.second.len();
        for metric in Metric::ALL {
            let values = series.values(metric);
            if !values.is_empty() && values.len() != seconds {
                return Err(format!(
                    "{name}: series \"{}\" has {seconds} seconds but {} {} values; the file was cut or edited, save the run again",
                    series.name,
                    values.len(),
                    metric.column()
                ));
            }
            if let Some(bad) = values.iter().flatten().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(format!(
                    "{name}: series \"{}\" has {} value {bad}, which no run measures; save the run again",
                    series.name,
                    metric.column()
                ));
            }
        }
        if series.second.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(format!(
                "{name}: series \"{}\" has seconds out of order; save the run again",
                series.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> SavedRun {
        SavedRun::new(
            "stats",
            serde_json::json!({"concurrency": 8}),
            vec![Series {
                name: "stats".into(),
                second: vec![0, 1, 2],
                requests_per_second: vec![Some(10.0), Some(12.0), Some(11.0)],
                hit_rate: vec![Some(0.5), None, Some(0.9)],
                p50_ms: vec![],
                p99_ms: vec![Some(1.0), Some(2.0), Some(1.5)],
            }],
            serde_json::Value::Null,
        )
    }

    #[test]
    fn a_saved_run_reads_back_as_written() {
        let text = serde_json::to_string(&run()).unwrap();
        assert_eq!(parse("a.json", &text).unwrap(), run());
    }

    #[test]
    fn another_document_or_version_is_refused_by_name() {
        assert_eq!(
            parse("a.json", "{\"exercise\": \"load\"}").unwrap_err(),
            "a.json is not a saved run (no \"format\": \"workshop-cli saved run\"); save one with e.g. `workshop-cli stats --duration 10 --out run.json`"
        );
        assert!(parse("a.json", "not json")
            .unwrap_err()
            .starts_with("a.json is not a saved run (not JSON"));
        let mut newer = serde_json::to_value(run()).unwrap();
        newer["version"] = 2.into();
        assert_eq!(
            parse("a.json", &newer.to_string()).unwrap_err(),
            "a.json is a saved run of version 2; this workshop-cli reads version 1: save the run again with it"
        );
    }

    #[test]
    fn a_column_of_another_length_is_a_mismatched_series() {
        let mut cut = run();
        cut.series[0].hit_rate.pop();
        assert_eq!(
            check("a.json", &cut).unwrap_err(),
            "a.json: series \"stats\" has 3 seconds but 2 hit_rate values; the file was cut or edited, save the run again"
        );
        let mut unordered = run();
        unordered.series[0].second = vec![0, 2, 1];
        assert!(check("a.json", &unordered).unwrap_err().contains("out of order"));
        let mut empty = run();
        empty.series.clear();
        assert!(check("a.json", &empty).unwrap_err().contains("no per-second series"));
    }
}
