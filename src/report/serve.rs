//! What `serve` prints: where it listens once it does, and its counts when it stops.

use std::io::Write;

use super::Output;
use crate::serve::{Ready, ServeSummary};

pub fn show_ready(ready: &Ready, output: &Output) {
    for warning in &ready.warnings {
        output.warn(warning);
    }
    let mut out = std::io::stdout().lock();
    if output.json {
        // One JSON line now and one at the end: a server's output is a stream.
        let _ = serde_json::to_writer(&mut out, &serde_json::json!({ "listening": ready }));
        let _ = writeln!(out);
    } else {
        let _ = writeln!(out, "serving {} (Ctrl-C stops)", ready.url);
        let _ = writeln!(out, "  database:     {}", ready.database);
        let _ = writeln!(
            out,
            "  Valkey:       {}",
            ready.valkey.as_deref().unwrap_or("not connected")
        );
        let _ = writeln!(out, "  invalidation: {}", if ready.invalidation { "on" } else { "off" });
        let _ = writeln!(out, "  dashboard:    {}/ (open it in a browser)", ready.url);
        let _ = writeln!(
            out,
            "  try:          curl -i {}/products/1   ·   {}/stats   ·   {}/metrics",
            ready.url, ready.url, ready.url
        );
    }
    let _ = out.flush();
}

pub fn show_summary(summary: &ServeSummary, output: &Output) {
    let mut out = std::io::stdout().lock();
    if output.json {
        let _ = serde_json::to_writer(&mut out, &serde_json::json!({ "stopped": summary }));
        let _ = writeln!(out);
    } else {
        let total = &summary.stats.since_start;
        let _ = writeln!(
            out,
            "stopped: {} reads ({} L1, {} L2, {} database, {} negative), hit rate {:.1} %",
            total.total_requests,
            total.l1.requests,
            total.l2.requests,
            total.database.requests,
            total.negative_hits,
            total.hit_rate * 100.0
        );
    }
    let _ = out.flush();
}
