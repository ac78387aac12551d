//! Exercise 9: the leaderboard's two top lists side by side, one airport's
//! rank on both sides, the write path and the read latencies.

use comfy_table::Table;

use super::table::{align_right, count, ms, new_table};
use super::Output;
use crate::exercises::leaderboard::{Comparison, LeaderboardOutcome, SideBySide};

pub fn show(outcome: &LeaderboardOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    output.heading(&format!(
        "Exercise 9 · leaderboard · {} · busiest departure airports",
        outcome.database
    ));
    output.text(format!("sorted set: {}", outcome.key));
    output.text(format!(
        "built from the SQL aggregate ({} ms),\n  one MULTI of DEL + ZADD of {} airports ({} ms)",
        ms(outcome.build.sql_aggregate),
        count(outcome.build.members),
        ms(outcome.build.zadd)
    ));
    output.text(format!("before the new bookings: {}", verdict(&outcome.before)));

    let bookings = &outcome.bookings;
    output.heading(&format!(
        "Top {} after {} new bookings (INSERT, then ZINCRBY)",
        outcome.top,
        count(bookings.written)
    ));
    output.text(top_table(output, &outcome.after));
    output.text(verdict(&outcome.after));
    output.text(rank_lines(&outcome.after));
    output.text(
        "rank: 1 + airports with more bookings (SQL: HAVING; Valkey: ZCOUNT);\n\
         ZREVRANK is a position: it orders tied airports by member name",
    );

    output.heading("Latency (ms)");
    output.text(latency_table(output, outcome));
}

fn verdict(comparison: &Comparison) -> String {
    let top = if comparison.top_agree {
        "top list agrees"
    } else {
        "top list DIFFERS"
    };
    let rank = if comparison.rank.agree {
        "rank agrees"
    } else {
        "rank DIFFERS"
    };
    format!("{top}, {rank}")
}

fn rank_lines(comparison: &Comparison) -> String {
    let rank = &comparison.rank;
    let shown = |value: Option<u64>| value.map_or("-".to_string(), |v| v.to_string());
    format!(
        "airport {}: SQL {} bookings, rank {}\n  Valkey ZSCORE {}, rank {}, ZREVRANK position {}",
        rank.airport_id,
        count(u64::try_from(rank.database_bookings).unwrap_or(0)),
        shown(rank.database_rank),
        rank.valkey_score.map_or("-".to_string(), |s| s.to_string()),
        shown(rank.valkey_rank),
        shown(rank.valkey_position)
    )
}

fn top_table(output: &Output, comparison: &Comparison) -> Table {
    let mut table = new_table(output, &["#", "SQL airport", "bookings", "Valkey airport", "score", ""]);
    let rows = comparison.top_database.len().max(comparison.top_valkey.len());
    for index in 0..rows {
        let database = comparison.top_database.get(index);
        let valkey = comparison.top_valkey.get(index);
        let same = match (database, valkey) {
            (Some(d), Some(v)) if d == v => "=",
            (Some(d), Some(v)) if d.bookings == v.bookings => "tie",
            _ => "≠",
        };
        let cell = |value: Option<i64>| value.map_or(String::new(), |v| v.to_string());
        table.add_row(vec![
            (index + 1).to_string(),
            cell(database.map(|d| d.airport_id)),
            cell(database.map(|d| d.bookings)),
            cell(valkey.map(|v| v.airport_id)),
            cell(valkey.map(|v| v.bookings)),
            same.to_string(),
        ]);
    }
    align_right(&mut table, &[0, 1, 2, 3, 4]);
    table
}

fn latency_table(output: &Output, outcome: &LeaderboardOutcome) -> Table {
    let mut table = new_table(
        output,
        &[
            "operation",
            "count",
            "SQL p50",
            "SQL p99",
            "Valkey p50",
            "Valkey p99",
            "×",
        ],
    );
    let reads = &outcome.reads;
    add_side(&mut table, &format!("top {}", outcome.top), reads.runs, &reads.top);
    add_side(&mut table, "rank of one", reads.runs, &reads.rank);
    let writes = &outcome.bookings;
    let p = |summary: &Option<crate::measure::LatencySummary>, p99: bool| {
        summary.map_or("-".to_string(), |s| ms(if p99 { s.p99 } else { s.p50 }))
    };
    table.add_row(vec![
        "new booking".to_string(),
        count(writes.written),
        p(&writes.database, false),
        p(&writes.database, true),
        p(&writes.valkey, false),
        p(&writes.valkey, true),
        String::new(),
    ]);
    align_right(&mut table, &[1, 2, 3, 4, 5, 6]);
    table
}

fn add_side(table: &mut Table, label: &str, runs: u64, side: &SideBySide) {
    let p = |summary: &Option<crate::measure::LatencySummary>, p99: bool| {
        summary.map_or("-".to_string(), |s| ms(if p99 { s.p99 } else { s.p50 }))
    };
    table.add_row(vec![
        label.to_string(),
        count(runs),
        p(&side.database, false),
        p(&side.database, true),
        p(&side.valkey, false),
        p(&side.valkey, true),
        side.speedup.map_or("-".to_string(), |s| format!("{s:.1}")),
    ]);
}
