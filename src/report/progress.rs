//! The one progress-bar factory: a hidden bar unless stderr is a terminal
//! and the output is not JSON.

use indicatif::{ProgressBar, ProgressStyle};

use super::Output;

pub fn bar(output: &Output, length: u64, message: &str) -> ProgressBar {
    if !output.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    let style = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message.to_string());
    // Redraw on a timer too: a slow first step (one 9 s query) still shows
    // the bar and its elapsed time within a second.
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A bar that redraws every 100 ms even while nothing finishes, so a slow
/// query shows within a second: a spinner, what is running, how many are
/// done and the time spent. Hidden like [`bar`].
pub fn ticking(output: &Output, length: u64, message: &str, steps: &str) -> ProgressBar {
    if !output.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(length);
    let template = format!("{{spinner}} {{msg}}: {{pos}}/{{len}} {steps} done · {{elapsed}}");
    let style = ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// A spinner for a step without a count (connecting, timing a query);
/// change what it says with `set_message`. Hidden like [`bar`].
pub fn spinner(output: &Output, message: &str) -> ProgressBar {
    if !output.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {msg} · {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// [`RunProgress`](crate::exercises::progress::RunProgress) drawn as one
/// indicatif bar per phase (a spinner when the total is unknown),
/// hidden like [`bar`]; notes are printed above the bar.
pub struct BarProgress {
    output: Output,
    current: std::sync::Mutex<Option<ProgressBar>>,
}

impl BarProgress {
    pub fn new(output: &Output) -> BarProgress {
        BarProgress {
            output: *output,
            current: std::sync::Mutex::new(None),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        // A poisoned lock only means another thread panicked mid-draw: keep drawing.
        let mut guard = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard);
    }
}

impl crate::exercises::progress::RunProgress for BarProgress {
    fn phase(&self, label: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => bar(&self.output, total, label),
            None => spinner(&self.output, label),
        };
        self.with_bar(|current| {
            if let Some(old) = current.replace(bar) {
                old.finish_and_clear();
            }
        });
    }

    fn counted_phase(&self, label: &str, total: u64, steps: &str) {
        let bar = ticking(&self.output, total, label, steps);
        self.with_bar(|current| {
            if let Some(old) = current.replace(bar) {
                old.finish_and_clear();
            }
        });
    }

    fn advance(&self, steps: u64) {
        self.with_bar(|current| {
            if let Some(bar) = current {
                bar.inc(steps);
            }
        });
    }

    fn note(&self, text: &str) {
        if !self.output.progress {
            return;
        }
        self.with_bar(|current| match current {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        });
    }

    fn finish_phase(&self) {
        self.with_bar(|current| {
            if let Some(bar) = current.take() {
                bar.finish_and_clear();
            }
        });
    }

    fn event(&self, event: crate::exercises::progress::RunEvent<'_>) {
        use crate::exercises::progress::RunEvent;
        match event {
            RunEvent::Warning(text) => self.output.warn(text),
            RunEvent::ListenStarted(start) => super::multi_level::show_listen_start(start, &self.output),
            RunEvent::ServedChanged(change) => super::multi_level::show_listen_change(change, &self.output),
            RunEvent::FleetMemberReady => super::stampede::fleet_ready(),
            RunEvent::SessionTick(tick) => {
                if self.output.progress {
                    let line = super::session::tick_line(tick);
                    self.with_bar(|current| match current {
                        Some(bar) => bar.println(&line),
                        None => eprintln!("{line}"),
                    });
                }
            }
        }
    }
}
