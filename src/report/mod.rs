//! The only code that writes to the terminal: tables, JSON, progress bars,
//! warnings and the one fatal error line. Domain code returns data; the
//! functions here render it.

pub mod check_env;
pub mod clean;
pub mod cluster;
pub mod connection;
pub mod latency;
pub mod leaderboard;
pub mod load;
pub mod multi_level;
pub mod progress;
pub mod prometheus;
pub mod rate_limit;
pub mod seed;
pub mod serve;
pub mod stampede;
pub mod stats;
pub mod table;
pub mod workshop;
pub mod write_behind;
pub mod writes;

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// One line on stdout. A closed pipe (`workshop-cli stats | head`) is not
/// an error of the run: what the reader did not want is dropped quietly
/// (`println!` would panic), and the run ends with its own exit code.
fn stdout_line(line: std::fmt::Arguments<'_>) {
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
