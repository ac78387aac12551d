//! Renders a `check-env` report: one row per check, ✓ / ! / ✗ with a hint.

use comfy_table::{Cell, Color};

use super::table::new_table;
use super::Output;
use crate::exercises::check_env::{CheckReport, Status};

pub fn show(report: &CheckReport, output: &Output) {
    if output.json {
        output.json_document(report);
        return;
    }
    let mut table = new_table(output, &["", "check", "result", "what to do"]);
    for check in &report.checks {
        let (mark, color) = match check.status {
            Status::Pass => ("✓", Color::Green),
            Status::Warn => ("!", Color::Yellow),
            Status::Fail => ("✗", Color::Red),
        };
        let mark = if output.color {
            Cell::new(mark).fg(color)
        } else {
            Cell::new(mark)
        };
        table.add_row(vec![
            mark,
            Cell::new(check.name),
            Cell::new(&check.detail),
            Cell::new(&check.hint),
        ]);
    }
    output.text(table);
    if !report.exercises.is_empty() {
        let mut table = new_table(output, &["", "exercise", "on this database", "what to do"]);
        for exercise in &report.exercises {
            let (mark, color) = if exercise.can_run {
                ("✓", Color::Green)
            } else {
                ("✗", Color::Red)
            };
            let mark = if output.color {
                Cell::new(mark).fg(color)
            } else {
                Cell::new(mark)
            };
            table.add_row(vec![
                mark,
                Cell::new(format!("{} {}", exercise.number, exercise.id)),
                Cell::new(&exercise.detail),
                Cell::new(&exercise.hint),
            ]);
        }
        output.text(table);
    }
    if report.ok {
        output.text("Ready: every required check passed.");
    }
}
