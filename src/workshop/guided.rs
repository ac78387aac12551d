//! The guided workshop: a bare `workshop-cli` on a terminal opens a
//! full-screen app (ratatui over crossterm, on the alternate screen, so
//! nothing is left in the scrollback) that walks an attendee through the
//! exercises, as rustlings walks people through Rust.
//!
//! This file is the event loop and all of the app's I/O: keys come from a
//! reader thread, a run is an exercise's `measure` in this process (its
//! live progress through [`RunProgress`]), the state file is written on
//! `d`. [`super::state`] decides what a key does; [`super::screens`] draws.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyEventKind};
use ratatui::DefaultTerminal;
use tokio::sync::mpsc::UnboundedReceiver;

use super::catalogue::Catalogue;
use super::progress::{state_file, Progress};
use super::run::{self, GuidedOutcome};
use super::screens;
use super::state::{Action, Finished, Live, RunRequest, RunStatus, State};
use crate::cli::Command;
use crate::config::{Config, ConfigError};
use crate::db::cancel;
use crate::error::{Result, WorkshopError};
use crate::exercises::check_env;
use crate::exercises::multi_level::listen::ServedChange;
use crate::exercises::progress::{RunEvent, RunProgress};
use crate::report::{self, capture, Output};

/// How often a running exercise's progress is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
const MISSING: &str = "Something is missing: fix the rows marked ✗ (the last column says how), then run again.";

pub async fn run(config: std::result::Result<Config, ConfigError>, start: &Path, _output: Output) -> Result<()> {
    let catalogue = Catalogue::builtin().map_err(|e| WorkshopError::Other(e.into()))?;
    let state_path = state_file(start);
    let loaded = Progress::load(&state_path);
    let mut state = State::new(catalogue, loaded.progress, state_path);
    state.message = loaded.warning;
    // Keys are read in raw mode, where Ctrl-C is a key (it cancels a run);
    // a SIGINT sent from elsewhere must not leave the terminal raw.
    tokio::spawn(async { while tokio::signal::ctrl_c().await.is_ok() {} });
    let mut terminal = ratatui::try_init().map_err(io_error)?;
    let (keys, mut events) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if keys.send(event).is_err() {
                break;
            }
        }
    });
    let result = event_loop(&mut terminal, &mut state, &config, &mut events).await;
    ratatui::restore();
    result
}

fn io_error(e: std::io::Error) -> WorkshopError {
    WorkshopError::Other(anyhow::anyhow!("cannot draw on the terminal: {e}"))
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    state: &mut State,
    config: &std::result::Result<Config, ConfigError>,
    events: &mut UnboundedReceiver<Event>,
) -> Result<()> {
    loop {
        terminal.draw(|frame| screens::draw(frame, state)).map_err(io_error)?;
        let Some(event) = events.recv().await else {
            return Ok(());
        };
        let Event::Key(key) = event else {
            continue; // a resize: the next draw reflows
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        match state.on_key(key) {
            Action::Quit => return Ok(()),
            Action::Save => save(state),
            Action::Run(request) => run_request(terminal, state, config, events, request).await?,
            Action::None | Action::Cancel => {}
        }
    }
}

fn save(state: &mut State) {
    if let Err(e) = state.progress.save(&state.state_path) {
        state.message = Some(format!(
            "Could not save progress to {}: {e}",
            state.state_path.display()
        ));
    }
}

/// Runs one variant in this process, drawing its progress, until it ends
/// or Ctrl-C cancels it (with the queries it started on the server).
async fn run_request(
    terminal: &mut DefaultTerminal,
    state: &mut State,
    config: &std::result::Result<Config, ConfigError>,
    events: &mut UnboundedReceiver<Event>,
    request: RunRequest,
) -> Result<()> {
    state.begin_run(&request);
    let fail = |state: &mut State, why: String| {
        if let Some(status) = state.run_status() {
            *status = RunStatus::Failed(why);
        }
    };
    if let Some(why) = run::not_in_process(&request.args) {
        fail(state, why);
        return Ok(());
    }
    let config = match config {
        Ok(config) => config.clone(),
        Err(error) => {
            fail(state, format!("the configuration is wrong: {error}"));
            return Ok(());
        }
    };
    let command = match run::parse(&request.args) {
        Ok(command) => command,
        Err(why) => {
            fail(state, why);
            return Ok(());
        }
    };
    let alongside = match request.alongside.as_deref().map(run::parse).transpose() {
        Ok(alongside) => alongside,
        Err(why) => {
            fail(state, why);
            return Ok(());
        }
    };
    let live = Arc::new(Mutex::new(Live::default()));
    let progress = LiveProgress(live.clone());
    let started = Instant::now();
    let exercise_id = request.exercise_id.clone();
    let listener = Listener::new(live.clone());
    let mut work = Box::pin(async {
        match alongside {
            None => measure(command, &config, &progress, &exercise_id).await,
            Some(first) => measure_beside(first, command, &config, &progress, &listener, &exercise_id).await,
        }
    });
    let mut tick = tokio::time::interval(REDRAW_EVERY);
    let ended = loop {
        tokio::select! {
            result = &mut work => break Some(result),
            Some(event) = events.recv() => {
                if let Event::Key(key) = event {
                    if key.kind == KeyEventKind::Press && state.on_key(key) == Action::Cancel {
                        break None;
                    }
                }
            }
            _ = tick.tick() => {}
        }
        if let (Some(RunStatus::Running(shown)), Ok(now)) = (state.run_status(), live.lock()) {
            *shown = Live {
                elapsed: started.elapsed(),
                ..now.clone()
            };
        }
        terminal.draw(|frame| screens::draw(frame, state)).map_err(io_error)?;
    };
    drop(work);
    let status = match ended {
        None => {
            let stopped = cancel::cancel_running(config.connect_timeout).await;
            RunStatus::Cancelled(format!(
                "Cancelled after {:.1} s; {stopped} running {} stopped on the server.",
                started.elapsed().as_secs_f64(),
                if stopped == 1 { "query" } else { "queries" }
            ))
        }
        Some(Ok((outcome, note))) => {
            let mut finished = Finished::new(outcome, request.question.as_ref(), note);
            // Beside the change only when it ran (not stopped by the environment check).
            if request.alongside.is_some() && finished.note.is_none() {
                let (lines, changes) = listener.take();
                finished.takeaway = format!("{}; {}", listener_takeaway(&changes), finished.takeaway);
                finished.beside = Some(lines);
            }
            RunStatus::Finished(Box::new(finished))
        }
        Some(Err(error)) => {
            if cancel::anything_to_cancel() {
                cancel::cancel_running(config.connect_timeout).await;
            }
            RunStatus::Failed(error.to_string())
        }
    };
    if let Some(shown) = state.run_status() {
        *shown = status;
    }
    Ok(())
}

/// The environment check first (its table instead of errors when
/// something is missing), then the exercise.
async fn measure(
    command: Command,
    config: &Config,
    progress: &LiveProgress,
    exercise_id: &str,
) -> Result<(GuidedOutcome, Option<String>)> {
    if !matches!(command, Command::CheckEnv) {
        progress.phase("checking the environment first", None);
        let checked = check_env::check(config).await;
        if !checked.ready_for(exercise_id) {
            return Ok((GuidedOutcome::CheckEnv(checked), Some(MISSING.to_string())));
        }
    }
    Ok((run::measure(command, config, progress).await?, None))
}

/// Runs `first` (a `multi-level --listen --duration S`), then `command`
/// once it listens; both in this process, as two terminals would.
async fn measure_beside(
    first: Command,
    command: Command,
    config: &Config,
    progress: &LiveProgress,
    listener: &Listener,
    exercise_id: &str,
) -> Result<(GuidedOutcome, Option<String>)> {
    // The environment check first: the listener's time is for the change.
    progress.phase("checking the environment first", None);
    let checked = check_env::check(config).await;
    if !checked.ready_for(exercise_id) {
        return Ok((GuidedOutcome::CheckEnv(checked), Some(MISSING.to_string())));
    }
    let listening = run::measure(first, config, listener);
    tokio::pin!(listening);
    let ended_early = |listened: Result<GuidedOutcome>| match listened {
        Err(error) => Err(error),
        Ok(_) => Err(WorkshopError::Other(anyhow::anyhow!(
            "the listener stopped before the change; give it a longer --duration"
        ))),
    };
    tokio::select! {
        listened = &mut listening => return ended_early(listened),
        started = tokio::time::timeout(LISTEN_WITHIN, listener.started.notified()) => {
            if started.is_err() {
                return Err(WorkshopError::Other(anyhow::anyhow!(
                    "the listener did not start within {} s",
                    LISTEN_WITHIN.as_secs()
                )));
            }
        }
    }
    let change = run::measure(command, config, progress);
    tokio::pin!(change);
    let outcome = tokio::select! {
        listened = &mut listening => return ended_early(listened),
        outcome = &mut change => outcome?,
    };
    // Then the listener goes on until it is served something new (at once
    // with invalidation, after its L1 TTL without), or the grace runs out.
    let seen = listener.changes.lock().map_or(0, |c| c.len());
    let served_new = async {
        while listener.changes.lock().map_or(0, |c| c.len()) <= seen {
            listener.changed.notified().await;
        }
    };
    tokio::select! {
        listened = &mut listening => {
            if let Ok(summary) = listened {
                listener.push_lines(summary.text_lines());
            }
        }
        () = served_new => {}
        () = tokio::time::sleep(LISTEN_AFTER) => {}
    }
    Ok((outcome, None))
}

/// How long the listener goes on after the change when it sees nothing new.
const LISTEN_AFTER: Duration = Duration::from_secs(10);

/// How long a listener may take to connect and read its first value.
const LISTEN_WITHIN: Duration = Duration::from_secs(15);

/// The run alongside: its lines (as its terminal would show them) and the
/// changes it was served, collected from its events.
struct Listener {
    live: Arc<Mutex<Live>>,
    lines: Mutex<Vec<String>>,
    changes: Mutex<Vec<ServedChange>>,
    started: tokio::sync::Notify,
    changed: tokio::sync::Notify,
}

impl Listener {
    fn new(live: Arc<Mutex<Live>>) -> Listener {
        Listener {
            live,
            lines: Mutex::new(Vec::new()),
            changes: Mutex::new(Vec::new()),
            started: tokio::sync::Notify::new(),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn push_lines(&self, new: Vec<String>) {
        if let Ok(mut live) = self.live.lock() {
            live.notes.extend(new.iter().map(|l| format!("listener: {l}")));
        }
        if let Ok(mut lines) = self.lines.lock() {
            lines.extend(new);
        }
    }

    fn take(&self) -> (Vec<String>, Vec<ServedChange>) {
        let lines = self
            .lines
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        let changes = self
            .changes
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        (lines, changes)
    }
}

impl RunProgress for Listener {
    fn event(&self, event: RunEvent<'_>) {
        let output = Output {
            json: false,
            color: false,
            progress: false,
        };
        match event {
            RunEvent::ListenStarted(start) => {
                self.push_lines(capture::lines(|| {
                    report::multi_level::show_listen_start(start, &output)
                }));
                self.started.notify_one();
            }
            RunEvent::ServedChanged(change) => {
                self.push_lines(capture::lines(|| {
                    report::multi_level::show_listen_change(change, &output)
                }));
                let first = self.changes.lock().is_ok_and(|mut changes| {
                    changes.push(change.clone());
                    changes.len() == 1
                });
                // Started once it was served the row as it is before the change.
                if first {
                    self.started.notify_one();
                }
                self.changed.notify_one();
            }
            RunEvent::Warning(text) => self.push_lines(vec![format!("warning: {text}")]),
            RunEvent::FleetMemberReady | RunEvent::SessionTick(_) => {}
        }
    }
}

/// What the listener saw: the first change is the value it started with.
fn listener_takeaway(changes: &[ServedChange]) -> String {
    match changes.get(1) {
        Some(change) => format!(
            "the listener was served the new price {} at +{:.1} s",
            change.price.map_or_else(|| "(gone)".into(), |p| p.to_string()),
            change.elapsed.as_secs_f64()
        ),
        None => "the listener kept serving the old row for its whole run".into(),
    }
}

/// The app's [`RunProgress`]: what the run says, for the next draw.
struct LiveProgress(Arc<Mutex<Live>>);

impl LiveProgress {
    fn update(&self, change: impl FnOnce(&mut Live)) {
        if let Ok(mut live) = self.0.lock() {
            change(&mut live);
        }
    }
}

impl RunProgress for LiveProgress {
    fn phase(&self, label: &str, total: Option<u64>) {
        self.update(|live| {
            live.phase = label.to_string();
            live.total = total;
            live.done = 0;
            live.steps = "steps".into();
        });
    }

    fn counted_phase(&self, label: &str, total: u64, steps: &str) {
        self.phase(label, Some(total));
        self.update(|live| live.steps = steps.to_string());
    }

    fn advance(&self, steps: u64) {
        self.update(|live| live.done += steps);
    }

    fn note(&self, text: &str) {
        self.update(|live| live.notes.push(text.to_string()));
    }

    fn event(&self, event: RunEvent<'_>) {
        if let RunEvent::Warning(text) = event {
            self.note(&format!("warning: {text}"));
        }
    }
}
