//! The Prometheus text exposition format (version 0.0.4): `# HELP` and
//! `# TYPE` lines, then one line per sample. Pure: builds a string.
//!
//! <https://prometheus.io/docs/instrumenting/exposition_formats/>

use std::fmt::Write;

use crate::measure::buckets::LatencyBuckets;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn keyword(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One sample line: the full name (with `_bucket`, `_sum`, ... for
/// histograms), its labels in order, and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A metric family: one `# HELP`, one `# TYPE`, its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricType,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &str, kind: MetricType, help: &str) -> Family {
        debug_assert!(is_metric_name(name), "bad metric name {name}");
        Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            samples: Vec::new(),
        }
    }

    /// Adds a sample of a counter or gauge.
    pub fn sample(mut self, labels: &[(&str, &str)], value: f64) -> Family {
        let name = self.name.clone();
        self.samples.push(Sample {
            name,
            labels: owned(labels),
            value,
        });
        self
    }

    /// Adds one histogram series: a `_bucket` per bound (cumulative, with
    /// `le` last among the labels) ending at `+Inf`, then `_sum` and `_count`.
    pub fn histogram(mut self, labels: &[(&str, &str)], buckets: &LatencyBuckets) -> Family {
        for (bound, cumulative) in buckets.cumulative() {
            let mut with_le = owned(labels);
            with_le.push(("le".to_string(), format_value(bound)));
            self.samples.push(Sample {
                name: format!("{}_bucket", self.name),
                labels: with_le,
                value: cumulative as f64,
            });
        }
        self.samples.push(Sample {
            name: format!("{}_sum", self.name),
            labels: owned(labels),
            value: buckets.sum_seconds(),
        });
        self.samples.push(Sample {
            name: format!("{}_count", self.name),
            labels: owned(labels),
            value: buckets.count() as f64,
        });
        self
    }
}

fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The exposition text of every family, in order, ending with a newline.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.keyword());
        for sample in &family.samples {
            out.push_str(&sample.name);
            if !sample.labels.is_empty() {
                let labels: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(out, " {}", format_value(sample.value));
        }
    }
    out
}

/// Numbers as Prometheus reads them: `+Inf`, `-Inf`, `NaN`, whole numbers
/// without a decimal point, others in Rust's shortest round-trip form
/// (never in exponent notation).
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Label values escape backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// HELP text escapes backslash and newline.
pub fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// What the stats exercise exposes: counters per cache layer, the latency
/// histogram per serving source, and the size of each layer.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics<'a> {
    pub l1_hits: u64,
    pub l1_misses: u64,
    pub l2_hits: u64,
    pub l2_misses: u64,
    pub l2_errors: u64,
    /// `(source label, latencies of the requests that source served)`.
    pub durations: Vec<(&'a str, &'a LatencyBuckets)>,
    /// Estimated bytes in L1; `None` without L1.
    pub l1_bytes: Option<u64>,
    pub l1_entries: Option<u64>,
    /// Bytes of the workshop's keys in Valkey; `None` when Valkey could not be asked.
    pub l2_bytes: Option<u64>,
    pub l2_keys: Option<u64>,
}

const HITS_HELP: &str = "Reads answered by a cache layer (l1: in-process, l2: Valkey).";
const MISSES_HELP: &str = "Reads a cache layer did not have, so the next layer was asked.";
const ERRORS_HELP: &str =
    "Cache commands that failed (Valkey unreachable or refusing); the read went on to the database.";
const DURATION_HELP: &str =
    "Time to serve one read through the two-level cache, by the source that answered (l1, l2 or database).";
const SIZE_HELP: &str = "Bytes held by a cache layer. l1: entries x average JSON size of a cached product \
(an estimate; the process spends more per entry). l2: MEMORY USAGE summed over the workshop's keys in Valkey \
(extrapolated from a sample when there are many).";
const ENTRIES_HELP: &str = "Entries in a cache layer (l2: the workshop's keys in Valkey, counted with SCAN).";

/// The families for one run of the stats exercise.
pub fn cache_families(metrics: &CacheMetrics) -> Vec<Family> {
    let l1 = [("cache_type", "l1")];
    let l2 = [("cache_type", "l2")];
    let mut families = vec![
        Family::new("cache_hits_total", MetricType::Counter, HITS_HELP)
            .sample(&l1, metrics.l1_hits as f64)
            .sample(&l2, metrics.l2_hits as f64),
        Family::new("cache_misses_total", MetricType::Counter, MISSES_HELP)
            .sample(&l1, metrics.l1_misses as f64)
            .sample(&l2, metrics.l2_misses as f64),
        Family::new("cache_errors_total", MetricType::Counter, ERRORS_HELP).sample(&l2, metrics.l2_errors as f64),
    ];
    let mut durations = Family::new("request_duration_seconds", MetricType::Histogram, DURATION_HELP);
    for (source, buckets) in &metrics.durations {
        durations = durations.histogram(&[("source", source)], buckets);
    }
    families.push(durations);
    let mut size = Family::new("cache_size_bytes", MetricType::Gauge, SIZE_HELP);
    let mut entries = Family::new("cache_entries", MetricType::Gauge, ENTRIES_HELP);
    if let Some(bytes) = metrics.l1_bytes {
        size = size.sample(&l1, bytes as f64);
    }
    if let Some(bytes) = metrics.l2_bytes {
        size = size.sample(&l2, bytes as f64);
    }
    if let Some(n) = metrics.l1_entries {
        entries = entries.sample(&l1, n as f64);
    }
    if let Some(n) = metrics.l2_keys {
        entries = entries.sample(&l2, n as f64);
    }
    for family in [size, entries] {
        if !family.samples.is_empty() {
            families.push(family);
        }
    }
    families
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.0001), "0.0001");
        assert_eq!(format_value(0.000001), "0.000001", "the 1 µs bucket bound, not 1e-6");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1_234_567.0), "1234567");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_help("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
    }

    #[test]
    fn metric_names_follow_the_grammar() {
        assert!(is_metric_name("cache_hits_total"));
        assert!(is_metric_name("ns:metric_1"));
        assert!(!is_metric_name("1metric"));
        assert!(!is_metric_name("cache-hits"));
        assert!(!is_metric_name(""));
    }

    #[test]
    fn a_counter_family_has_help_type_and_labelled_samples() {
        let text = render(&[Family::new("cache_hits_total", MetricType::Counter, "Hits.")
            .sample(&[("cache_type", "l1")], 7.0)
            .sample(&[("cache_type", "l2")], 3.0)]);
        assert_eq!(
            text,
            "# HELP cache_hits_total Hits.\n# TYPE cache_hits_total counter\n\
             cache_hits_total{cache_type=\"l1\"} 7\ncache_hits_total{cache_type=\"l2\"} 3\n"
        );
    }

    #[test]
    fn a_histogram_series_has_cumulative_buckets_ending_at_inf_then_sum_and_count() {
        let mut buckets = LatencyBuckets::new(&[0.001, 0.01]);
        buckets.record(Duration::from_micros(500));
        buckets.record(Duration::from_millis(2));
        buckets.record(Duration::from_millis(50));
        let text = render(&[
            Family::new("request_duration_seconds", MetricType::Histogram, "Latency.")
                .histogram(&[("source", "l1")], &buckets),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "# HELP request_duration_seconds Latency.",
                "# TYPE request_duration_seconds histogram",
                "request_duration_seconds_bucket{source=\"l1\",le=\"0.001\"} 1",
                "request_duration_seconds_bucket{source=\"l1\",le=\"0.01\"} 2",
                "request_duration_seconds_bucket{source=\"l1\",le=\"+Inf\"} 3",
                "request_duration_seconds_sum{source=\"l1\"} 0.0525",
                "request_duration_seconds_count{source=\"l1\"} 3",
            ]
        );
    }

    #[test]
    fn the_cache_families_cover_both_layers_and_every_source() {
        let mut l1 = LatencyBuckets::default();
        l1.record(Duration::from_micros(20));
        let database = LatencyBuckets::default();
        let metrics = CacheMetrics {
            l1_hits: 5,
            l1_misses: 2,
            l2_hits: 1,
            l2_misses: 1,
            l2_errors: 0,
            durations: vec![("l1", &l1), ("database", &database)],
            l1_bytes: Some(4000),
            l1_entries: Some(10),
            l2_bytes: None,
            l2_keys: None,
        };
        let text = render(&cache_families(&metrics));
        for line in [
            "# TYPE cache_hits_total counter",
            "cache_hits_total{cache_type=\"l1\"} 5",
            "cache_misses_total{cache_type=\"l2\"} 1",
            "cache_errors_total{cache_type=\"l2\"} 0",
            "# TYPE request_duration_seconds histogram",
            "request_duration_seconds_count{source=\"l1\"} 1",
            "request_duration_seconds_bucket{source=\"database\",le=\"+Inf\"} 0",
            "# TYPE cache_size_bytes gauge",
            "cache_size_bytes{cache_type=\"l1\"} 4000",
            "cache_entries{cache_type=\"l1\"} 10",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("cache_size_bytes{cache_type=\"l2\"}"));
        assert!(text.ends_with('\n'));
    }
}
