//! Renders `workshop-cli clean`: rows deleted and restored per table, keys deleted.

use super::table::{align_right, count, new_table};
use super::Output;
use crate::exercises::clean::CleanOutcome;

pub fn show(outcome: &CleanOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
    } else {
        show_tables(outcome, output);
    }
    warnings(outcome, output);
}

fn show_tables(outcome: &CleanOutcome, output: &Output) {
    let (title, deleted, restored) = if outcome.dry_run {
        ("clean --dry-run: nothing was changed", "would delete", "would restore")
    } else {
        ("clean", "deleted", "restored")
    };
    output.heading(&format!("{title} · {}", outcome.database));
    if outcome.nothing_to_do {
        output.text(format!(
            "Nothing to clean: the ledger lists no row the workshop wrote, and no key starts with '{}'.",
            outcome.key_prefix
        ));
    } else {
        let mut table = new_table(output, &["what", deleted, restored, "already gone", "left alone"]);
        for tally in &outcome.tables {
            table.add_row(vec![
                format!("table {}", tally.table),
                count(tally.deleted),
                count(tally.restored),
                count(tally.already_gone),
                count(tally.left_alone),
            ]);
        }
        table.add_row(vec![
            format!("Valkey keys '{}*'", outcome.key_prefix),
            count(outcome.keys),
            String::new(),
            String::new(),
            String::new(),
        ]);
        align_right(&mut table, &[1, 2, 3, 4]);
        output.text(table);
    }
}

/// On stderr, in every mode.
fn warnings(outcome: &CleanOutcome, output: &Output) {
    for tally in outcome.tables.iter().filter(|t| t.left_alone > 0) {
        let ids: Vec<String> = tally.left_alone_ids.iter().map(i64::to_string).collect();
        output.warn(&format!(
            "{} row(s) of {} were changed after the workshop wrote them and were left alone (ids {}{})",
            tally.left_alone,
            tally.table,
            ids.join(", "),
            if tally.left_alone as usize > ids.len() {
                ", …"
            } else {
                ""
            }
        ));
    }
    if outcome.unflushed_writes > 0 {
        output.warn(&format!(
            "the write-behind stream held {} write(s) not yet in the database{}",
            outcome.unflushed_writes,
            if outcome.dry_run {
                "; clean refuses to drop them: run `workshop-cli write-behind --flush-only` first, or `clean --force`"
            } else {
                "; they were dropped (--force)"
            }
        ));
    }
}
