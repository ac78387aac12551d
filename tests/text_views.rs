//! What every text command shares: a negative count is the same usage
//! error (exit 2) everywhere, and a closed pipe (`workshop-cli stats | head`)
//! ends the run quietly with 0 instead of a panic — on both databases.

mod support;

use std::io::Read;
use std::process::Stdio;

use support::{cli_against, seeded_database, stderr, valkey_url, workshop_cli, TestPrefix, BOTH};

/// Every command with a count, each given a negative one.
const NEGATIVE_COUNTS: [&[&str]; 20] = [
    &["cache-aside", "--runs", "-1"],
    &["cache-aside", "--concurrency", "-1"],
    &["cache-aside", "--warmup", "-1"],
    &["cache-aside", "--baseline", "-1"],
    &["write-through", "--runs", "-1"],
    &["multi-level", "--requests", "-5"],
    &["multi-level", "--keys", "-3"],
    &["multi-level", "--concurrency", "-1"],
    &["multi-level", "--l1-capacity", "-10"],
    &["multi-level", "--warm", "-1"],
    &["stats", "--requests", "-5"],
    &["stats", "--concurrency", "-1"],
    &["stats", "--keys", "-3"],
    &["stats", "--l1-capacity", "-10"],
    &["write-behind", "--writes", "-5"],
    &["write-behind", "--batch", "-1"],
    &["write-behind", "--compare", "-1"],
    &["stampede", "--concurrency", "-1"],
    &["stampede", "--rounds", "-1"],
    &["stampede", "--processes", "-1"],
];

#[test]
fn a_negative_count_is_a_usage_error_in_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for args in NEGATIVE_COUNTS {
        // No server is asked: the URLs point nowhere.
        let output = workshop_cli(dir.path())
            .env("DATABASE_URL", "mysql://nobody@127.0.0.1:1/none")
            .env("VALKEY_URL", "redis://127.0.0.1:1")
            .args(args)
            .output()
            .unwrap();
        let text = stderr(&output);
        let value = args[2];
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        assert!(
            text.starts_with(&format!("error: invalid value '{value}' for '{}", args[1]))
                && text.contains(&format!("'{value}' is not a count: give a whole number, 0 or more")),
            "{args:?}: {text}"
        );
        assert!(!text.contains("panicked"), "{args:?}: {text}");
    }
}

/// Runs `args` with stdout's reading end closed before the first line is
/// written: every write meets a closed pipe, as in `| head -0`.
fn with_stdout_closed(url: &str, prefix: &TestPrefix, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cli_against(dir.path(), url, prefix, &valkey_url(), args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut errors = String::new();
    child.stderr.take().unwrap().read_to_string(&mut errors).unwrap();
    let status = child.wait().unwrap();
    (status.code(), errors)
}

#[tokio::test]
async fn a_closed_pipe_ends_a_text_command_quietly_with_0() {
    for kind in BOTH {
        let db = seeded_database(kind, "closedpipe").await;
        let prefix = TestPrefix::new("closedpipe");
        for args in [
            &["stats", "--requests", "200"][..],
            &["cache-aside", "--runs", "2000"],
            &["cache-aside", "--runs", "5", "--json"],
        ] {
            let (code, errors) = with_stdout_closed(&db.url(), &prefix, args);
            assert_eq!(code, Some(0), "{kind:?} {args:?}: {errors}");
            assert!(!errors.contains("panicked"), "{kind:?} {args:?}: {errors}");
        }
    }
}

/// Every command that prints a result table, with options that keep it quick.
const TEXT_COMMANDS: [&[&str]; 18] = [
    &["check-env"],
    &["seed", "--scale", "0.02"],
    &["cache-aside", "--runs", "5"],
    &["cache-aside", "--query", "busiest-routes", "--runs", "3"],
    &["write-through", "--runs", "3", "--cleanup"],
    &["multi-level", "--requests", "200", "--keys", "50"],
    &["multi-level", "--warm", "5"],
    &["stats", "--requests", "400", "--keys", "100"],
    &[
        "stats",
        "--requests",
        "400",
        "--keys",
        "100",
        "--maxmemory",
        "2mb",
        "--policy",
        "allkeys-random,noeviction",
        "--private-valkey",
    ],
    &["write-behind", "--writes", "20", "--cleanup"],
    &["stampede", "--concurrency", "10", "--time-budget", "3"],
    &["leaderboard", "--runs", "3"],
    &["rate-limit", "--duration", "1", "--clients", "2"],
    &[
        "api-cache",
        "--latency",
        "5..10",
        "--requests",
        "40",
        "--cities",
        "5",
        "--stampede",
        "5",
    ],
    &["session", "--sessions", "20", "--session-ttl", "2", "--interval", "0.5"],
    &["clean", "--dry-run"],
    &["exercises"],
    &["exercises", "show", "1"],
];

/// Where a text block breaks the 80-column rule: a line wider than `width`
/// display columns, or a number cut across two lines of a table cell (the
/// cell's line ends in a digit and its continuation goes on with a digit, or
/// with `,`/`.` and a digit). Text outside tables is never wrapped by the
/// program, so there a split could only come from a line too wide.
fn width_problems(text: &str, width: usize) -> Vec<String> {
    use unicode_width::UnicodeWidthStr;
    // Outer borders │, inner column separators ┆ (comfy-table's condensed preset).
    let cells = |line: &str| -> Vec<String> { line.split(['│', '┆']).map(|c| c.trim().to_string()).collect() };
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let columns = line.width();
        if columns > width {
            problems.push(format!("line {} is {columns} columns wide: {line}", index + 1));
        }
        let Some(next) = lines.get(index + 1) else { continue };
        let (here, there) = (cells(line), cells(next));
        if here.len() < 3 || here.len() != there.len() {
            continue;
        }
        // The next line goes on with this row when its first column is blank
        // (a condensed table has no line between rows; a new row names itself).
        // A cut at `,` or `.` shows on any line.
        let continuation = there.get(1).is_some_and(String::is_empty);
        for (column, (a, b)) in here.iter().zip(&there).enumerate() {
            let last = a.chars().last();
            let ends_in_digit = last.is_some_and(|c| c.is_ascii_digit());
            let ends_in_separator =
                matches!(last, Some(',' | '.')) && a.chars().rev().nth(1).is_some_and(|c| c.is_ascii_digit());
            let mut rest = b.chars();
            let split = match rest.next() {
                Some(c) if c.is_ascii_digit() => ends_in_separator || (ends_in_digit && continuation),
                Some(',' | '.') => ends_in_digit && rest.next().is_some_and(|c| c.is_ascii_digit()),
                _ => false,
            };
            // A number, not an identifier that happens to end in a digit
            // (a long key name cut by the table is text, shown apart below).
            let last_word = a.rsplit(' ').next().unwrap_or("");
            let numeric = last_word
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, ',' | '.' | '–' | '-'));
            if split && numeric {
                problems.push(format!(
                    "a number is split between lines {} and {} (column {column}): {line} / {next}",
                    index + 1,
                    index + 2
                ));
            }
        }
    }
    problems
}

#[test]
fn the_width_check_finds_wide_lines_and_split_numbers() {
    assert!(width_problems("short\nlines", 80).is_empty());
    assert_eq!(width_problems(&"x".repeat(81), 80).len(), 1);
    assert!(width_problems(&"漢".repeat(40), 80).is_empty(), "80 columns is fine");
    assert_eq!(
        width_problems(&"漢".repeat(41), 80).len(),
        1,
        "wide characters count two"
    );
    let split = "│ p50 ms │ 12,3 │\n│        │ 45   │\n";
    assert_eq!(width_problems(split, 80).len(), 1, "{split}");
    let split_decimal = "│ p50 ms │ 1234 │\n│        │ .567 │\n";
    assert_eq!(width_problems(split_decimal, 80).len(), 1, "{split_decimal}");
    let wrapped_label = "│ database │ 12 │\n│ connect  │    │\n";
    assert!(width_problems(wrapped_label, 80).is_empty(), "{wrapped_label}");
    let identifier = "│ key ┆ wt_width8 │\n│     ┆ 0_1:mysql │\n";
    assert!(
        width_problems(identifier, 80).is_empty(),
        "an identifier is text: {identifier}"
    );
    let condensed = "│ none  ┆ 9680. │\n│       ┆   454 │\n";
    assert_eq!(width_problems(condensed, 80).len(), 1, "{condensed}");
    let rows = "│ 1 │ 2 │\n│ 3 │ 4 │\n";
    let empty_cell = "│ a ┆ 3 ┆ 31.5 │\n│ b ┆ 1,000 ┆ │\n";
    assert!(
        width_problems(empty_cell, 80).is_empty(),
        "a row with an empty cell is a row: {empty_cell}"
    );
    assert!(width_problems(rows, 80).is_empty(), "two rows of numbers are no split");
}

#[tokio::test]
async fn every_text_command_fits_80_columns_without_splitting_a_number() {
    for kind in BOTH {
        let db = seeded_database(kind, "width80").await;
        // A short label: a key name is one token that cannot wrap, and the
        // prefix holds a pid of up to 7 digits.
        let prefix = TestPrefix::new("w80");
        let dir = tempfile::tempdir().unwrap();
        for args in TEXT_COMMANDS {
            let output = cli_against(dir.path(), &db.url(), &prefix, &valkey_url(), args)
                .env("COLUMNS", "80")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout);
            assert_eq!(output.status.code(), Some(0), "{kind:?} {args:?}: {}", stderr(&output));
            assert!(
                text.lines().count() > 2,
                "{kind:?} {args:?} printed too little:\n{text}"
            );
            let problems = width_problems(&text, 80);
            assert!(
                problems.is_empty(),
                "{kind:?} {args:?} does not fit 80 columns:\n{}\n\n{text}",
                problems.join("\n")
            );
        }
    }
}

/// What `args` prints on a pseudo-terminal (stdout and stderr both), with
/// `NO_COLOR` set or not: on a terminal colour is on unless `NO_COLOR` says
/// otherwise, so only there can a test see whether `NO_COLOR` is obeyed.
fn on_a_terminal(mut command: std::process::Command, no_color: bool) -> String {
    if !no_color {
        command.env_remove("NO_COLOR");
    }
    // A pseudo-terminal reports no size: COLUMNS stands in, as on a real 80×24.
    command.env("COLUMNS", "80");
    let mut session = rexpect::session::spawn_command(command, Some(120_000)).expect("start in a pseudo-terminal");
    let text = session.exp_eof().expect("the command ends");
    // rexpect hands back one char per byte: put the UTF-8 back together.
    let bytes: Vec<u8> = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An SGR sequence (`ESC [ … m`): colour or bold. Progress bars on a
/// terminal move the cursor with other sequences; those are not colour.
fn has_colour(text: &str) -> bool {
    let bytes = text.as_bytes();
    (0..bytes.len()).any(|start| {
        bytes[start..].starts_with(b"\x1b[") && {
            let rest = &bytes[start + 2..];
            let params = rest.iter().take_while(|b| b.is_ascii_digit() || **b == b';').count();
            rest.get(params) == Some(&b'm')
        }
    })
}

#[test]
fn no_color_turns_colour_off_on_a_terminal_where_it_is_otherwise_on() {
    let dir = tempfile::tempdir().unwrap();
    let command = || {
        let mut command = workshop_cli(dir.path());
        // Nothing answers: check-env still prints its table of marks.
        command
            .env("DATABASE_URL", "mysql://workshop:workshop@127.0.0.1:1/workshop")
            .env("VALKEY_URL", "redis://127.0.0.1:1")
            .arg("check-env");
        command
    };
    let coloured = on_a_terminal(command(), false);
    assert!(coloured.contains('✗'), "{coloured}");
    assert!(
        has_colour(&coloured),
        "a terminal without NO_COLOR gets colour:\n{coloured:?}"
    );
    let plain = on_a_terminal(command(), true);
    assert!(plain.contains('✗'), "{plain}");
    assert!(!has_colour(&plain), "NO_COLOR is set: no colour codes:\n{plain:?}");
}

#[tokio::test]
async fn no_color_keeps_the_exercise_tables_plain_on_a_terminal_on_both_databases() {
    for kind in BOTH {
        let db = seeded_database(kind, "nocolor").await;
        let prefix = TestPrefix::new("nocolor");
        let dir = tempfile::tempdir().unwrap();
        for args in [
            &["cache-aside", "--runs", "3"][..],
            &["stampede", "--concurrency", "5", "--time-budget", "2"],
        ] {
            let command = || cli_against(dir.path(), &db.url(), &prefix, &valkey_url(), args);
            let coloured = on_a_terminal(command(), false);
            assert!(coloured.contains("p50"), "{kind:?} {args:?}: {coloured}");
            assert!(
                has_colour(&coloured),
                "{kind:?} {args:?}: colour without NO_COLOR:\n{coloured:?}"
            );
            let plain = on_a_terminal(command(), true);
            assert!(plain.contains("p50"), "{kind:?} {args:?}: {plain}");
            assert!(!has_colour(&plain), "{kind:?} {args:?}: NO_COLOR is set:\n{plain:?}");
        }
    }
}

#[test]
fn the_colour_check_tells_colour_from_cursor_moves() {
    assert!(has_colour("\x1b[1mExercise\x1b[0m"));
    assert!(has_colour("\x1b[33mwarning:\x1b[0m"));
    assert!(!has_colour("\x1b[2K\x1b[1A progress"));
    assert!(!has_colour("plain ✓"));
}
