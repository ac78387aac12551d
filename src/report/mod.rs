//! The only code that writes to the terminal: tables, JSON, progress bars,
//! warnings and the one fatal error line. Domain code returns data; the
//! functions here render it.

pub mod api_cache;
pub mod check_env;
pub mod clean;
pub mod cluster;
pub mod connection;
pub mod grade;
pub mod latency;
pub mod leaderboard;
pub mod load;
pub mod multi_level;
pub mod plot;
pub mod progress;
pub mod prometheus;
pub mod rate_limit;
pub mod saved_run;
pub mod seed;
pub mod serve;
pub mod session;
pub mod stampede;
pub mod stats;
pub mod table;
pub mod workshop;
pub mod write_behind;
pub mod writes;
// Issue 11: exercises 12 and 13.
pub mod tracking;
pub mod ttl;

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// One line on stdout. A closed pipe (`workshop-cli stats | head`) is not
/// an error of the run: what the reader did not want is dropped quietly
/// (`println!` would panic), and the run ends with its own exit code.
fn stdout_line(line: std::fmt::Arguments<'_>) {
    if capture::take_line(line) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
}

/// How results are shown, decided once from flags and the terminal.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// `--json`: one JSON document on stdout, nothing else there.
    pub json: bool,
    /// Colour only on a terminal and when `NO_COLOR` is unset.
    pub color: bool,
    /// Progress bars only when stderr is a terminal and not `--json`.
    pub progress: bool,
}

impl Output {
    pub fn detect(json: bool) -> Output {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Output {
            json,
            color: !json && !no_color && std::io::stdout().is_terminal(),
            progress: !json && std::io::stderr().is_terminal(),
        }
    }

    /// Prints a table or other text block on stdout (never in `--json` mode).
    pub fn text(&self, block: impl std::fmt::Display) {
        if !self.json {
            // Prose wraps at the table width (terminal or COLUMNS) like the tables.
            match table::text_width() {
                Some(width) => stdout_line(format_args!(
                    "{}",
                    table::wrap_prose(&block.to_string(), usize::from(width))
                )),
                None => stdout_line(format_args!("{block}")),
            }
        }
    }

    /// A heading line above a table.
    pub fn heading(&self, title: &str) {
        let wrapped = table::text_width().map(|width| table::wrap_prose(title, usize::from(width)));
        let title = wrapped.as_deref().unwrap_or(title);
        if !self.json {
            if self.color {
                stdout_line(format_args!("\n\x1b[1m{title}\x1b[0m"));
            } else {
                stdout_line(format_args!("\n{title}"));
            }
        }
    }

    /// Prints the JSON document for `--json`.
    pub fn json_document(&self, value: &impl Serialize) {
        if self.json {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not worth a panic.
            let _ = serde_json::to_writer_pretty(&mut out, value);
            let _ = writeln!(out);
        }
    }

    /// A warning on stderr; in every mode, since it does not disturb stdout.
    pub fn warn(&self, message: &str) {
        if capture::take_line(format_args!("warning: {message}")) {
            return;
        }
        if self.color && std::io::stderr().is_terminal() {
            eprintln!("\x1b[33mwarning:\x1b[0m {message}");
        } else {
            eprintln!("warning: {message}");
        }
    }
}

/// The single place a fatal error is printed: one line on stderr.
pub fn fatal(message: &str) {
    let one_line = message.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    eprintln!("error: {one_line}");
}

/// The text view into lines instead of stdout, for the guided app's
/// results pane (its generic view of an outcome it has no widget for).
pub mod capture {
    use std::cell::RefCell;

    thread_local! {
        static LINES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
    }

    /// Runs `render` (a `show` with a plain-text `Output`) and returns the
    /// lines it would have printed, warnings included.
    pub fn lines(render: impl FnOnce()) -> Vec<String> {
        LINES.with(|lines| *lines.borrow_mut() = Some(Vec::new()));
        render();
        LINES.with(|lines| lines.borrow_mut().take()).unwrap_or_default()
    }

    /// Keeps the line when a capture is on; `false` means print it.
    pub(super) fn take_line(line: std::fmt::Arguments<'_>) -> bool {
        LINES.with(|lines| match lines.borrow_mut().as_mut() {
            Some(lines) => {
                lines.extend(line.to_string().lines().map(str::to_string));
                true
            }
            None => false,
        })
    }
}
