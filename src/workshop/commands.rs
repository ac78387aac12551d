//! `workshop-cli exercises [show N | reset [N]]`: the catalogue with progress.

use std::path::Path;

use super::catalogue::{Catalogue, Exercise};
use super::progress::{state_file, Progress};
use crate::error::{Result, WorkshopError};
use crate::report::{self, Output};

/// One catalogue line with its progress, as listed and printed as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExerciseStatus {
    pub number: u32,
    pub id: String,
    pub title: String,
    pub done: bool,
    pub done_at: Option<String>,
    pub command: String,
    pub recipe: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExerciseList {
    pub state_file: String,
    pub done: usize,
    pub total: usize,
    pub exercises: Vec<ExerciseStatus>,
}

pub fn statuses(catalogue: &Catalogue, progress: &Progress) -> Vec<ExerciseStatus> {
    catalogue
        .exercises
        .iter()
        .map(|e| ExerciseStatus {
            number: e.number,
            id: e.id.clone(),
            title: e.title.clone(),
            done: progress.is_done(&e.id),
            done_at: progress.done.get(&e.id).cloned(),
            command: e.command_line(),
            recipe: format!("just {}", e.recipe),
        })
        .collect()
}

fn load(start: &Path, output: &Output) -> Result<(Catalogue, Progress, std::path::PathBuf)> {
    let catalogue = Catalogue::builtin().map_err(|e| WorkshopError::Other(e.into()))?;
    let path = state_file(start);
    let loaded = Progress::load(&path);
    if let Some(warning) = loaded.warning {
        output.warn(&warning);
    }
    Ok((catalogue, loaded.progress, path))
}

fn find<'c>(catalogue: &'c Catalogue, wanted: &str) -> Result<&'c Exercise> {
    catalogue.find(wanted).ok_or_else(|| {
        WorkshopError::invalid(format!(
            "no exercise '{wanted}'; `workshop-cli exercises` lists them (0 to {})",
            catalogue.exercises.last().map_or(0, |e| e.number)
        ))
    })
}

pub fn list(start: &Path, output: &Output) -> Result<()> {
    let (catalogue, progress, path) = load(start, output)?;
    let exercises = statuses(&catalogue, &progress);
    let list = ExerciseList {
        state_file: path.display().to_string(),
        done: exercises.iter().filter(|e| e.done).count(),
        total: exercises.len(),
        exercises,
    };
    report::workshop::show_list(&list, output);
    Ok(())
}

pub fn show(start: &Path, wanted: &str, output: &Output) -> Result<()> {
    let (catalogue, progress, _) = load(start, output)?;
    let exercise = find(&catalogue, wanted)?;
    let briefing = exercise.briefing_text().unwrap_or("(this exercise has no briefing)");
    report::workshop::show_briefing(exercise, briefing, progress.is_done(&exercise.id), output);
    Ok(())
}

pub fn reset(start: &Path, wanted: Option<&str>, output: &Output) -> Result<()> {
    let (catalogue, mut progress, path) = load(start, output)?;
    let id = match wanted {
        Some(wanted) => Some(find(&catalogue, wanted)?.id.clone()),
        None => None,
    };
    progress.reset(id.as_deref());
    progress
        .save(&path)
        .map_err(|e| WorkshopError::Other(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
    let what = id.map_or_else(|| "every exercise".to_string(), |id| format!("exercise {id}"));
    report::workshop::show_reset(&what, &path, output);
    Ok(())
}
