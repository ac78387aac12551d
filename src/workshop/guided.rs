//! The guided workshop: a bare `workshop-cli` on a terminal walks an attendee
//! through the exercises, as rustlings walks people through Rust.
//!
//! Screens are plain text (they fit 80×24); keys are read one at a time in
//! raw mode, which is switched off again before anything is printed or run.
//! An exercise runs as a child process of this binary, so its tables appear
//! live and a failure in it never ends the workshop.

use std::io::Write;
use std::path::{Path, PathBuf};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal;

use super::catalogue::{Catalogue, Exercise};
use super::commands::statuses;
use super::progress::{state_file, Progress};
use crate::config::{Config, ConfigError};
use crate::error::{Result, WorkshopError};
use crate::exercises::check_env;
use crate::report::{self, Output};

const KEYS_LIST: &str = "number: open an exercise · q: quit";
const KEYS_EXERCISE: &str = "r: run · h: hint · d: mark done · n: next · l: list · space: more · q: quit";
const KEYS_AFTER_RUN: &str = "d: mark done · r: run again · h: hint · n: next · l: list · q: quit";
/// Lines kept free around a briefing page for the header and the key line.
const CHROME_LINES: usize = 6;

enum Key {
    Char(char),
    Quit,
    Other,
}

enum Screen {
    List,
    Exercise { index: usize, page: usize },
}

pub struct Guided {
    catalogue: Catalogue,
    progress: Progress,
    state_path: PathBuf,
    config: std::result::Result<Config, ConfigError>,
    output: Output,
    message: Option<String>,
    hints_shown: usize,
}

pub async fn run(config: std::result::Result<Config, ConfigError>, start: &Path, output: Output) -> Result<()> {
    let catalogue = Catalogue::builtin().map_err(|e| WorkshopError::Other(e.into()))?;
    let state_path = state_file(start);
    let loaded = Progress::load(&state_path);
    // SIGINT goes to the whole foreground group: let it end a running exercise
    // (the child), not the workshop. Keys are read in raw mode, where Ctrl-C is a key.
    tokio::spawn(async { while tokio::signal::ctrl_c().await.is_ok() {} });
    let mut guided = Guided {
        catalogue,
        progress: loaded.progress,
        state_path,
        config,
        output,
        message: loaded.warning,
        hints_shown: 0,
    };
    guided.main_loop().await
}

impl Guided {
    async fn main_loop(&mut self) -> Result<()> {
        let mut screen = Screen::List;
        let mut keep_screen = false;
        loop {
            screen = match screen {
                Screen::List => {
                    self.draw_list();
                    match read_key()? {
                        Key::Quit | Key::Char('q') => return Ok(()),
                        Key::Char(c) => match self.catalogue.find(&c.to_string()) {
                            Some(exercise) => {
                                self.hints_shown = 0;
                                Screen::Exercise {
                                    index: self.index_of(exercise),
                                    page: 0,
                                }
                            }
                            None => {
                                self.message = Some(format!("There is no exercise {c}."));
                                Screen::List
                            }
                        },
                        Key::Other => Screen::List,
                    }
                }
                Screen::Exercise { index, page } => {
                    let exercise = self.catalogue.exercises[index].clone();
                    let pages = self.briefing_pages(&exercise);
                    if keep_screen {
                        keep_screen = false;
                        self.print_message();
                        println!("{KEYS_AFTER_RUN}");
                    } else {
                        self.draw_exercise(&exercise, &pages, page);
                    }
                    match read_key()? {
                        Key::Quit | Key::Char('q') => return Ok(()),
                        Key::Char('l') => Screen::List,
                        Key::Char(' ') => Screen::Exercise {
                            index,
                            page: (page + 1) % pages.len().max(1),
                        },
                        Key::Char('h') => {
                            self.message = Some(self.next_hint(&exercise));
                            Screen::Exercise { index, page }
                        }
                        Key::Char('d') => {
                            self.mark_done(&exercise);
                            Screen::Exercise { index, page }
                        }
                        Key::Char('n') => {
                            self.hints_shown = 0;
                            let next = (index + 1).min(self.catalogue.exercises.len() - 1);
                            Screen::Exercise { index: next, page: 0 }
                        }
                        Key::Char('r') => {
                            self.message = Some(self.run_exercise(&exercise).await);
                            keep_screen = true;
                            Screen::Exercise { index, page }
                        }
                        _ => Screen::Exercise { index, page },
                    }
                }
            };
        }
    }

    fn index_of(&self, exercise: &Exercise) -> usize {
        self.catalogue
            .exercises
            .iter()
            .position(|e| e.id == exercise.id)
            .unwrap_or(0)
    }

    fn draw_list(&mut self) {
        clear_screen();
        let exercises = statuses(&self.catalogue, &self.progress);
        let done = exercises.iter().filter(|e| e.done).count();
        println!("workshop-cli · the caching workshop");
        println!("{}", report::workshop::progress_line(done, exercises.len()));
        println!("{}", report::workshop::list_table(&self.output, &exercises));
        self.print_message();
        println!("{KEYS_LIST}");
    }

    fn draw_exercise(&mut self, exercise: &Exercise, pages: &[Vec<String>], page: usize) {
        clear_screen();
        let done = if self.progress.is_done(&exercise.id) {
            " · done ✓"
        } else {
            ""
        };
        println!(
            "Exercise {} of {}{done} · page {}/{}",
            exercise.number,
            self.catalogue.exercises.last().map_or(0, |e| e.number),
            page + 1,
            pages.len().max(1)
        );
        for line in pages.get(page).map(Vec::as_slice).unwrap_or_default() {
            println!("{line}");
        }
        self.print_message();
        println!("{KEYS_EXERCISE}");
    }

    fn print_message(&mut self) {
        if let Some(message) = self.message.take() {
            println!("» {message}");
        }
    }

    /// The briefing wrapped to the terminal width and cut into screen pages.
    fn briefing_pages(&self, exercise: &Exercise) -> Vec<Vec<String>> {
        // A terminal that reports no size (some pseudo-terminals) counts as 80×24.
        let (width, height) = match terminal::size() {
            Ok((w, h)) if w > 0 && h > 0 => (usize::from(w), usize::from(h)),
            _ => (80, 24),
        };
        let text = exercise.briefing_text().unwrap_or("(no briefing)");
        let lines = wrap(text, width.max(20));
        let per_page = height.saturating_sub(CHROME_LINES).max(5);
        lines.chunks(per_page).map(<[String]>::to_vec).collect()
    }

    fn next_hint(&mut self, exercise: &Exercise) -> String {
        if exercise.hints.is_empty() {
            return "No hints for this one.".into();
        }
        let hint = &exercise.hints[self.hints_shown % exercise.hints.len()];
        self.hints_shown += 1;
        format!(
            "Hint {}/{}: {hint}",
            (self.hints_shown - 1) % exercise.hints.len() + 1,
            exercise.hints.len()
        )
    }

    fn mark_done(&mut self, exercise: &Exercise) {
        self.progress.mark_done(&exercise.id);
        self.message = Some(match self.progress.save(&self.state_path) {
            Ok(()) => match self.catalogue.next_after(&exercise.id) {
                Some(next) => format!("Marked done. Next: {} (press n).", next.title),
                None => "Marked done. That was the last exercise: well done!".to_string(),
            },
            Err(e) => format!("Could not save progress to {}: {e}", self.state_path.display()),
        });
    }

    /// Checks the environment, then runs the exercise as a child process with
    /// the same configuration. Returns the line to show afterwards.
    async fn run_exercise(&mut self, exercise: &Exercise) -> String {
        let config = match &self.config {
            Ok(config) => config.clone(),
            Err(error) => return format!("The configuration is wrong: {error}"),
        };
        println!();
        if exercise.command.first().map(String::as_str) != Some("check-env") {
            println!("Checking the environment first…");
            let checked = check_env::check(&config).await;
            if !checked.ready_for(&exercise.id) {
                report::check_env::show(&checked, &self.output);
                return "Something is missing: fix the rows marked ✗ (the last column says how), then press r.".into();
            }
        }
        println!("$ {}\n", exercise.command_line());
        let _ = std::io::stdout().flush();
        let Ok(binary) = std::env::current_exe() else {
            return "Cannot find the workshop-cli binary to run the exercise.".into();
        };
        let status = tokio::process::Command::new(binary)
            .args(&exercise.command)
            .arg("--connect-timeout")
            .arg(config.connect_timeout.as_secs_f64().to_string())
            .env("DATABASE_URL", config.database.connect_url())
            .env("VALKEY_URL", config.valkey.connect_url())
            .env("CACHE_TTL", config.ttl.as_secs().to_string())
            .env("WORKSHOP_KEY_PREFIX", &config.key_prefix)
            .env(
                "WORKSHOP_CACHE_TIMEOUT",
                config.valkey.command_timeout.as_millis().to_string(),
            )
            .status()
            .await;
        match status {
            Ok(status) if status.success() => format!("{} finished. Press d to mark it done.", exercise.title),
            Ok(status) => format!(
                "{} ended with exit code {} (see the message above).",
                exercise.title,
                status.code().map_or_else(|| "none".into(), |c| c.to_string())
            ),
            Err(error) => format!("Could not start the exercise: {error}"),
        }
    }
}

fn clear_screen() {
    print!("\x1b[2J\x1b[H");
}

/// Reads one key press in raw mode, leaving raw mode before returning.
fn read_key() -> Result<Key> {
    let _ = std::io::stdout().flush();
    let io = |e: std::io::Error| WorkshopError::Other(anyhow::anyhow!("cannot read the keyboard: {e}"));
    terminal::enable_raw_mode().map_err(io)?;
    let key = loop {
        match event::read() {
            Ok(Event::Key(KeyEvent {
                code,
                modifiers,
                kind: KeyEventKind::Press,
                ..
            })) => {
                break Ok(match code {
                    KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
                    KeyCode::Esc => Key::Quit,
                    KeyCode::Char(c) => Key::Char(c.to_ascii_lowercase()),
                    KeyCode::Enter => Key::Char(' '),
                    _ => Key::Other,
                })
            }
            Ok(_) => continue,
            Err(e) => break Err(e),
        }
    };
    terminal::disable_raw_mode().map_err(io)?;
    key.map_err(io)
}

/// Lays Markdown out for a terminal `width` columns wide: paragraphs and list
/// items are joined and re-wrapped at spaces; code blocks, tables, headings
/// and blank lines are kept as they are (a long code line is cut, not joined).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut paragraph: Option<(String, String)> = None; // (first-line indent and text, continuation indent)
    let mut in_code = false;
    let flush = |paragraph: &mut Option<(String, String)>, lines: &mut Vec<String>| {
        if let Some((text, indent)) = paragraph.take() {
            lines.extend(fill(&text, &indent, width));
        }
    };
    for source in text.lines() {
        let trimmed = source.trim_start();
        if trimmed.starts_with("```") {
            flush(&mut paragraph, &mut lines);
            in_code = !in_code;
            lines.push(source.to_string());
            continue;
        }
        if in_code || trimmed.is_empty() || trimmed.starts_with(['#', '|', '>']) {
            flush(&mut paragraph, &mut lines);
            lines.extend(fill(source, "", width));
            continue;
        }
        match list_marker(source) {
            Some(continuation) => {
                flush(&mut paragraph, &mut lines);
                paragraph = Some((source.to_string(), continuation));
            }
            None => match &mut paragraph {
                Some((text, _)) => {
                    text.push(' ');
                    text.push_str(trimmed);
                }
                None => paragraph = Some((source.to_string(), String::new())),
            },
        }
    }
    flush(&mut paragraph, &mut lines);
    lines
}

/// For a list item (`- `, `* `, `12. `), the indent its continuation lines get.
fn list_marker(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    let rest = &line[indent..];
    let marker = if rest.starts_with("- ") || rest.starts_with("* ") {
        2
    } else {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(". ") {
            digits + 2
        } else {
            return None;
        }
    };
    Some(" ".repeat(indent + marker))
}

/// Breaks one logical line at spaces into lines of at most `width` columns;
/// lines after the first start with `indent`. A word longer than a line is cut.
fn fill(text: &str, indent: &str, width: usize) -> Vec<String> {
    if text.chars().count() <= width {
        return vec![text.to_string()];
    }
    let lead: String = text.chars().take_while(|c| c.is_whitespace()).collect();
    let mut lines = Vec::new();
    let mut line = lead.clone();
    for word in text.split_whitespace() {
        let used = line.chars().count();
        let starts_line = line.trim().is_empty();
        if !starts_line && used + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
            line.push_str(indent);
        } else if !starts_line {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
        .into_iter()
        .flat_map(|l| {
            let chars: Vec<char> = l.chars().collect();
            chars
                .chunks(width.max(1))
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_are_joined_and_rewrapped_at_spaces() {
        let lines = wrap("the quick brown\nfox jumps over the\nlazy dog\n\nnext", 20);
        assert_eq!(
            lines,
            vec!["the quick brown fox", "jumps over the lazy", "dog", "", "next"]
        );
    }

    #[test]
    fn list_items_keep_their_hanging_indent_and_code_is_left_alone() {
        let text = "- first item that is\n  long enough\n1. second\n```\nlet x = 1;\n```";
        let lines = wrap(text, 16);
        assert_eq!(
            lines,
            vec![
                "- first item",
                "  that is long",
                "  enough",
                "1. second",
                "```",
                "let x = 1;",
                "```"
            ]
        );
    }

    #[test]
    fn every_briefing_fits_an_80_column_terminal_after_wrapping() {
        for exercise in Catalogue::builtin().unwrap().exercises {
            let text = exercise.briefing_text().unwrap_or_default();
            for line in wrap(text, 80) {
                assert!(line.chars().count() <= 80, "{}: {line}", exercise.id);
            }
        }
    }
}
