//! `grade`: one row per check (✓ / ✗ / –, the evidence, the fix and the
//! briefing that teaches it), what each step made the servers do, the score.

use comfy_table::{Cell, Color, Table};

use super::table::{align_right, count, new_table};
use super::Output;
use crate::grade::{GradeOutcome, Status};

/// Tables fit 80 columns off a terminal too (comfy-table needs the width told).
const TEXT_WIDTH: u16 = 80;

pub fn show(outcome: &GradeOutcome, output: &Output) {
    if output.json {
        output.json_document(outcome);
        return;
    }
    output.heading(&format!("Grade · {} · {}", outcome.exercise, outcome.graded));
    output.text(format!("database: {}", outcome.database));
    // One short line per source, so the header fits 80 columns too.
    for source in outcome.observed_with.split("; ") {
        output.text(format!("observed: {source}"));
    }
    output.text(checks_table(output, outcome));
    if !outcome.steps.is_empty() {
        output.heading("What the servers saw, per step");
        output.text(steps_table(output, outcome));
    }
    for warning in &outcome.warnings {
        output.warn(warning);
    }
    let score = outcome.score;
    let required = outcome.checks.iter().filter(|c| c.required).count();
    output.text(format!(
        "\nscore: {} of {} checks passed ({} skipped); {}",
        score.passed,
        score.total,
        score.skipped,
        if score.required_failed == 0 {
            format!("every required check passed ({required})")
        } else {
            format!("{} of {required} required checks failed", score.required_failed)
        }
    ));
}

fn fitted(output: &Output, header: &[&str]) -> Table {
    let mut table = new_table(output, header);
    if table.width().is_none() {
        table.set_width(TEXT_WIDTH);
    }
    table
}

fn checks_table(output: &Output, outcome: &GradeOutcome) -> Table {
    let mut table = fitted(output, &["", "check", "evidence", "fix · briefing"]);
    for check in &outcome.checks {
        let (mark, color) = match check.status {
            Status::Pass => ("✓", Color::Green),
            Status::Fail => ("✗", Color::Red),
            Status::Skipped => ("–", Color::Yellow),
        };
        let mark = if output.color {
            Cell::new(mark).fg(color)
        } else {
            Cell::new(mark)
        };
        let title = if check.required {
            check.title.to_string()
        } else {
            format!("{} (optional)", check.title)
        };
        let fix = match check.status {
            Status::Fail => format!("{} · exercises/{}", check.hint, check.briefing),
            _ => format!("exercises/{}", check.briefing),
        };
        table.add_row(vec![mark, Cell::new(title), Cell::new(&check.evidence), Cell::new(fix)]);
    }
    table
}

fn steps_table(output: &Output, outcome: &GradeOutcome) -> Table {
    let mut table = fitted(output, &["step", "exit", "queries", "hits", "misses", "new keys", "ms"]);
    for step in &outcome.steps {
        table.add_row(vec![
            step.name.clone(),
            step.exit_code.map_or("–".to_string(), |c| c.to_string()),
            count(step.queries),
            count(step.keyspace_hits),
            count(step.keyspace_misses),
            count(step.new_keys.len() as u64),
            format!("{:.0}", step.duration.as_secs_f64() * 1000.0),
        ]);
    }
    align_right(&mut table, &[1, 2, 3, 4, 5, 6]);
    table
}
