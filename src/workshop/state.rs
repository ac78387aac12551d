//! The guided app's state, and what each key does to it. Plain data and
//! pure transitions: the event loop (`guided.rs`) does the I/O, the
//! screens (`screens/`) draw it.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::catalogue::{Catalogue, Exercise, Question, Variant, INPUT_PLACEHOLDER};
use super::facts::{self, Checked};
use super::progress::Progress;
use super::run::GuidedOutcome;

pub struct State {
    pub catalogue: Catalogue,
    pub progress: Progress,
    pub state_path: PathBuf,
    pub list_selected: usize,
    pub page: Option<Page>,
    /// One line for the learner, shown above the keys until the next key.
    pub message: Option<String>,
    pub help: bool,
    /// Sizes the last draw found (pane heights, how far each can scroll),
    /// so page keys move by a page and scrolling stops at the end.
    pub viewport: Cell<Viewport>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Viewport {
    pub list_height: u16,
    pub briefing_height: u16,
    pub briefing_max: (u16, u16),
    pub results_height: u16,
    pub results_max: (u16, u16),
}

pub struct Page {
    pub index: usize,
    pub briefing: Scroll,
    pub results: Scroll,
    pub focus: Focus,
    /// The hint shown (0-based), over the briefing; the result stays.
    pub hint: Option<usize>,
    pub modal: Option<Modal>,
    /// The last run: it stays until the next one starts.
    pub run: Option<RunView>,
    /// The variant `r` runs again.
    pub last_variant: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scroll {
    pub y: u16,
    pub x: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Briefing,
    Results,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Modal {
    Question { variant: usize, input: Option<String> },
    Prompt { variant: usize, input: String },
}

pub struct RunView {
    pub label: String,
    pub command_line: String,
    pub question: Option<(Question, usize)>,
    pub status: RunStatus,
}

pub enum RunStatus {
    Running(Live),
    Finished(Box<Finished>),
    Failed(String),
    Cancelled(String),
}

/// What the run's progress said last.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    pub phase: String,
    pub total: Option<u64>,
    pub done: u64,
    pub steps: String,
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

pub struct Finished {
    pub outcome: GuidedOutcome,
    /// The text view's lines: the generic pane, under any widgets.
    pub lines: Vec<String>,
    pub takeaway: String,
    pub checked: Option<Checked>,
    /// The run's error line when it did only part of its work.
    pub failure: Option<String>,
    /// Shown above the outcome (e.g. why the environment check stopped it).
    pub note: Option<String>,
    /// What the run alongside showed (a listener's lines), beside the report.
    pub beside: Option<Vec<String>>,
}

/// What the event loop must do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    Quit,
    Run(RunRequest),
    Cancel,
    Save,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub exercise_id: String,
    pub label: String,
    pub args: Vec<String>,
    /// Started first and shown beside the run (a listener).
    pub alongside: Option<Vec<String>>,
    pub question: Option<(Question, usize)>,
}

impl Finished {
    pub fn new(mut outcome: GuidedOutcome, question: Option<&(Question, usize)>, note: Option<String>) -> Finished {
        let failure = match outcome.verdict() {
            crate::exercises::Verdict::Complete => None,
            crate::exercises::Verdict::Failed(error) => Some(error.to_string()),
        };
        Finished {
            lines: outcome.text_lines(),
            takeaway: facts::takeaway(&outcome),
            checked: question.map(|(q, guess)| facts::check(q, *guess, &outcome)),
            failure,
            note,
            beside: None,
            outcome,
        }
    }
}

impl State {
    pub fn new(catalogue: Catalogue, progress: Progress, state_path: PathBuf) -> State {
        State {
            catalogue,
            progress,
            state_path,
            list_selected: 0,
            page: None,
            message: None,
            help: false,
            viewport: Cell::new(Viewport::default()),
        }
    }

    pub fn exercise(&self) -> Option<&Exercise> {
        self.page.as_ref().and_then(|p| self.catalogue.exercises.get(p.index))
    }

    pub fn running(&self) -> bool {
        matches!(
            self.page.as_ref().and_then(|p| p.run.as_ref()).map(|r| &r.status),
            Some(RunStatus::Running(_))
        )
    }

    pub fn open(&mut self, index: usize) {
        if index < self.catalogue.exercises.len() {
            self.list_selected = index;
            self.page = Some(Page {
                index,
                briefing: Scroll::default(),
                results: Scroll::default(),
                focus: Focus::Briefing,
                hint: None,
                modal: None,
                run: None,
                last_variant: 0,
            });
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if self.running() {
            if ctrl_c {
                return Action::Cancel;
            }
            self.message = None;
            self.scroll_key(key.code);
            return Action::None;
        }
        self.message = None;
        if self.help {
            if matches!(key.code, KeyCode::Esc | KeyCode::Char('?')) {
                self.help = false;
            }
            return Action::None;
        }
        if self.page.is_none() {
            return self.list_key(key.code, ctrl_c);
        }
        if ctrl_c {
            return Action::None;
        }
        if self.page.as_ref().is_some_and(|p| p.modal.is_some()) {
            return self.modal_key(key.code);
        }
        self.page_key(key.code)
    }

    fn list_key(&mut self, code: KeyCode, ctrl_c: bool) -> Action {
        let count = self.catalogue.exercises.len();
        let page = usize::from(self.viewport.get().list_height.max(1));
        match code {
            _ if ctrl_c => return Action::Quit,
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Up => self.list_selected = self.list_selected.saturating_sub(1),
            KeyCode::Down => self.list_selected = (self.list_selected + 1).min(count.saturating_sub(1)),
            KeyCode::PageUp => self.list_selected = self.list_selected.saturating_sub(page),
            KeyCode::PageDown => self.list_selected = (self.list_selected + page).min(count.saturating_sub(1)),
            KeyCode::Home => self.list_selected = 0,
            KeyCode::End => self.list_selected = count.saturating_sub(1),
            // An empty catalogue has nothing to open: Enter does nothing, quietly.
            KeyCode::Enter if count > 0 => self.open(self.list_selected),
            _ => {}
        }
        Action::None
    }

    fn modal_key(&mut self, code: KeyCode) -> Action {
        let Some(page) = self.page.as_mut() else {
            return Action::None;
        };
        let exercise = &self.catalogue.exercises[page.index];
        let variants = exercise.runs();
        match page.modal.as_mut() {
            Some(Modal::Question { variant, input }) => {
                let (variant, input) = (*variant, input.clone());
                let question = variants[variant].question.clone();
                match (code, question) {
                    (KeyCode::Esc, _) => page.modal = None,
                    (KeyCode::Char(c), Some(question)) if c.is_ascii_lowercase() => {
                        let guess = usize::from(c as u8 - b'a');
                        if guess < question.choices.len() {
                            page.modal = None;
                            return request(exercise, &variants[variant], input.as_deref(), Some((question, guess)));
                        }
                    }
                    _ => {}
                }
            }
            Some(Modal::Prompt { variant, input }) => match code {
                KeyCode::Esc => page.modal = None,
                KeyCode::Backspace => {
                    input.pop();
                }
                KeyCode::Char(c) => input.push(c),
                KeyCode::Enter if !input.trim().is_empty() => {
                    let (variant, input) = (*variant, input.trim().to_string());
                    let chosen = &variants[variant];
                    match chosen.question.clone() {
                        // Ask the question after the prompt: the guess comes with the run.
                        Some(_) => {
                            page.modal = Some(Modal::Question {
                                variant,
                                input: Some(input),
                            })
                        }
                        None => {
                            page.modal = None;
                            return request(exercise, chosen, Some(&input), None);
                        }
                    }
                }
                _ => {}
            },
            None => {}
        }
        Action::None
    }

    fn page_key(&mut self, code: KeyCode) -> Action {
        let Some(page) = self.page.as_mut() else {
            return Action::None;
        };
        let exercise = self.catalogue.exercises[page.index].clone();
        let variants = exercise.runs();
        match code {
            KeyCode::Esc if page.hint.is_some() => page.hint = None,
            KeyCode::Esc => self.page = None,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Char(c @ '1'..='9') if usize::from(c as u8 - b'1') < variants.len() => {
                let variant = usize::from(c as u8 - b'1');
                page.last_variant = variant;
                return self.start_variant(variant);
            }
            KeyCode::Char('r') | KeyCode::Enter => {
                let variant = page.last_variant;
                return self.start_variant(variant);
            }
            KeyCode::Char('h') if !exercise.hints.is_empty() => {
                page.hint = match page.hint {
                    None => Some(0),
                    Some(i) if i + 1 < exercise.hints.len() => Some(i + 1),
                    Some(_) => None,
                }
            }
            KeyCode::Char('d') => {
                self.progress.mark_done(&exercise.id);
                self.message = Some(match self.catalogue.next_after(&exercise.id) {
                    Some(next) => format!("Marked done. Next: {} (press n).", next.title),
                    None => "Marked done. That was the last exercise: well done!".to_string(),
                });
                return Action::Save;
            }
            KeyCode::Char('n') if page.index + 1 < self.catalogue.exercises.len() => {
                let next = page.index + 1;
                self.open(next);
            }
            KeyCode::Tab if page.run.is_some() => {
                page.focus = match page.focus {
                    Focus::Briefing => Focus::Results,
                    Focus::Results => Focus::Briefing,
                }
            }
            other => self.scroll_key(other),
        }
        Action::None
    }

    fn start_variant(&mut self, variant: usize) -> Action {
        let Some(page) = self.page.as_mut() else {
            return Action::None;
        };
        let exercise = &self.catalogue.exercises[page.index];
        let Some(chosen) = exercise.runs().get(variant).cloned() else {
            return Action::None;
        };
        if chosen.prompt.is_some() {
            page.modal = Some(Modal::Prompt {
                variant,
                input: String::new(),
            });
            Action::None
        } else if chosen.question.is_some() {
            page.modal = Some(Modal::Question { variant, input: None });
            Action::None
        } else {
            request(exercise, &chosen, None, None)
        }
    }

    /// Arrows, PgUp/PgDn, Home/End scroll the focused pane; ←/→ sideways.
    fn scroll_key(&mut self, code: KeyCode) {
        let viewport = self.viewport.get();
        let Some(page) = self.page.as_mut() else {
            return;
        };
        let (scroll, height, (max_y, max_x)) = match page.focus {
            Focus::Briefing => (&mut page.briefing, viewport.briefing_height, viewport.briefing_max),
            Focus::Results => (&mut page.results, viewport.results_height, viewport.results_max),
        };
        let page_step = height.saturating_sub(1).max(1);
        match code {
            KeyCode::Up => scroll.y = scroll.y.saturating_sub(1),
            KeyCode::Down => scroll.y = (scroll.y + 1).min(max_y),
            KeyCode::PageUp => scroll.y = scroll.y.saturating_sub(page_step),
            KeyCode::PageDown | KeyCode::Char(' ') => scroll.y = scroll.y.saturating_add(page_step).min(max_y),
            KeyCode::Home => *scroll = Scroll::default(),
            KeyCode::End => scroll.y = max_y,
            KeyCode::Left => scroll.x = scroll.x.saturating_sub(4),
            KeyCode::Right => scroll.x = scroll.x.saturating_add(4).min(max_x),
            _ => {}
        }
    }

    /// A run starts: the last result gives way to its live progress.
    pub fn begin_run(&mut self, request: &RunRequest) {
        if let Some(page) = self.page.as_mut() {
            page.hint = None;
            page.results = Scroll::default();
            page.focus = Focus::Results;
            page.run = Some(RunView {
                label: request.label.clone(),
                command_line: super::catalogue::command_line(&request.args),
                question: request.question.clone(),
                status: RunStatus::Running(Live::default()),
            });
        }
    }

    pub fn run_status(&mut self) -> Option<&mut RunStatus> {
        self.page.as_mut()?.run.as_mut().map(|r| &mut r.status)
    }
}

fn request(exercise: &Exercise, variant: &Variant, input: Option<&str>, question: Option<(Question, usize)>) -> Action {
    let fill = |args: &[String]| -> Vec<String> {
        args.iter()
            .map(|a| match input {
                Some(input) => a.replace(INPUT_PLACEHOLDER, input),
                None => a.clone(),
            })
            .collect()
    };
    Action::Run(RunRequest {
        exercise_id: exercise.id.clone(),
        label: variant.label.clone(),
        args: fill(&variant.args),
        alongside: variant.alongside.as_deref().map(fill),
        question,
    })
}
