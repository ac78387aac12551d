//! Renders exercise 14, `cluster`: keys per primary, the hash-tag demo, and
//! the failover second by second.

use super::table::{align_right, count, new_table};
use super::Output;
use crate::exercises::cluster::{ClusterOutcome, FailoverRun};

pub fn show(outcome: &ClusterOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    output.heading(&format!(
        "Exercise 14 · cluster · {} · {} keys under {}",
        outcome.target, outcome.keys, outcome.source_prefix
    ));
    let mut table = new_table(
        output,
        &["primary", "slots", "replicas", "keys", "key memory", "used memory"],
    );
    for share in &outcome.layout {
        table.add_row(vec![
            share.node.clone(),
            share.slot_ranges.clone(),
            share.replicas.join(", "),
            count(share.keys),
            bytes(share.memory_bytes),
            bytes(share.used_memory_bytes),
        ]);
    }
    align_right(&mut table, &[3, 4, 5]);
    output.text(table);

    output.heading("Hash tags: only the part in {…} is hashed");
    let mut table = new_table(output, &["key (after the source prefix)", "slot", "node"]);
    for key in outcome.hash_tag.plain.iter().chain(&outcome.hash_tag.tagged) {
        table.add_row(vec![
            key.key
                .strip_prefix(&outcome.source_prefix)
                .unwrap_or(&key.key)
                .to_string(),
            key.slot.to_string(),
            key.node.clone(),
        ]);
    }
    align_right(&mut table, &[1]);
    output.text(table);
    output.text(format!(
        "MSET of the two plain keys: {}\nMSET of the two tagged keys: {}\nA multi-key command (MSET, MULTI, a Lua script) runs on one node, so its keys must share a slot;\nwrite-behind's cached rows and stream share the tag {{write-behind}} for that reason.",
        outcome.hash_tag.cross_slot_reply, outcome.hash_tag.tagged_reply
    ));
    if let Some(run) = &outcome.failover {
        show_failover(run, output);
    }
}

fn show_failover(run: &FailoverRun, output: &Output) {
    output.heading(&format!(
        "Failover: {} frozen at {:.1} s for {:.0} s (DEBUG SLEEP)",
        run.stopped_node,
        run.stopped_at_ms as f64 / 1000.0,
        run.freeze_ms as f64 / 1000.0
    ));
    let mut table = new_table(
        output,
        &["second", "cache", "miss", "db fallback", "failed", "hit rate", "event"],
    );
    for second in &run.seconds {
        let start = second.second * 1000;
        let mut events = Vec::new();
        if (start..start + 1000).contains(&run.stopped_at_ms) {
            events.push("primary frozen".to_string());
        }
        if let Some(at) = run.promoted_at_ms.filter(|at| (start..start + 1000).contains(at)) {
            events.push(format!(
                "replica {} promoted ({:.1} s)",
                run.promoted_node.as_deref().unwrap_or("?"),
                at as f64 / 1000.0
            ));
        }
        if run.hit_rate_back_at_second == Some(second.second) {
            events.push("hit rate back".to_string());
        }
        table.add_row(vec![
            second.second.to_string(),
            count(second.cache),
            count(second.miss),
            count(second.database_fallback),
            count(second.failed),
            second.hit_rate().map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
            events.join("; "),
        ]);
    }
    align_right(&mut table, &[0, 1, 2, 3, 4, 5]);
    output.text(table);
    let totals = &run.totals;
    output.text(format!(
        "{} reads: {} from cache, {} misses, {} fell back to the database while the slot had no answering primary, {} failed.",
        count(totals.reads()),
        count(totals.cache),
        count(totals.miss),
        count(totals.database_fallback),
        count(totals.failed)
    ));
    match (run.promoted_at_ms, run.hit_rate_back_at_second) {
        (Some(at), Some(back)) => output.text(format!(
            "The replica took over {:.1} s after the freeze; the hit rate was back in second {back}.",
            (at.saturating_sub(run.stopped_at_ms)) as f64 / 1000.0
        )),
        (Some(at), None) => output.text(format!(
            "The replica took over {:.1} s after the freeze; the hit rate was not back before the run ended (run longer with --duration).",
            (at.saturating_sub(run.stopped_at_ms)) as f64 / 1000.0
        )),
        (None, _) => output.text(
            "No replica was promoted during the run: the freeze was shorter than the cluster's node timeout (try --freeze 6).",
        ),
    }
    if let Some(note) = &run.restore_note {
        output.warn(note);
    }
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}
