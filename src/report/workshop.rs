//! Renders the exercise list, briefings and the guided runner's screens.

use std::path::Path;

use super::table::{align_right, new_table};
use super::Output;
use crate::workshop::catalogue::Exercise;
use crate::workshop::commands::{ExerciseList, ExerciseStatus};

const PROGRESS_WIDTH: usize = 20;

/// `[██████░░░░░░] 3/7 done`
pub fn progress_line(done: usize, total: usize) -> String {
    let filled = (done * PROGRESS_WIDTH)
        .checked_div(total)
        .unwrap_or(0)
        .min(PROGRESS_WIDTH);
    format!(
        "[{}{}] {done}/{total} done",
        "█".repeat(filled),
        "░".repeat(PROGRESS_WIDTH - filled)
    )
}

pub fn list_table(output: &Output, exercises: &[ExerciseStatus]) -> comfy_table::Table {
    let mut table = new_table(output, &["#", "", "exercise", "run with"]);
    for e in exercises {
        table.add_row(vec![
            e.number.to_string(),
            if e.done { "✓" } else { " " }.to_string(),
            e.title.clone(),
            e.recipe.clone(),
        ]);
    }
    align_right(&mut table, &[0]);
    table
}

pub fn show_list(list: &ExerciseList, output: &Output) {
    if output.json {
        output.json_document(list);
        return;
    }
    output.text(list_table(output, &list.exercises));
    output.text(progress_line(list.done, list.total));
    output.text("Read one: workshop-cli exercises show N · the guided workshop: workshop-cli");
}

pub fn show_briefing(exercise: &Exercise, briefing: &str, done: bool, output: &Output) {
    if output.json {
        output.json_document(&serde_json::json!({
            "exercise": exercise,
            "done": done,
            "briefing": briefing,
        }));
        return;
    }
    output.text(briefing.trim_end());
    output.text(format!(
        "\nRun it: {}   (or: just {})",
        exercise.command_line(),
        exercise.recipe
    ));
}

pub fn show_reset(what: &str, path: &Path, output: &Output) {
    if output.json {
        output.json_document(&serde_json::json!({ "reset": what, "state_file": path.display().to_string() }));
        return;
    }
    output.text(format!("Progress cleared for {what} ({}).", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_fills_in_proportion() {
        assert_eq!(progress_line(0, 7), format!("[{}] 0/7 done", "░".repeat(20)));
        assert_eq!(progress_line(7, 7), format!("[{}] 7/7 done", "█".repeat(20)));
        assert!(progress_line(3, 7).starts_with("[████████░"));
    }
}
