//! The guided workshop through a real pseudo-terminal, and the `exercises`
//! and `completions` commands around it.

mod support;

use std::time::Duration;

use clap::Parser;
use rexpect::session::{spawn_command, PtySession};
use serde_json::Value;
use support::{seeded_database, stderr, stdout, valkey_url, workshop_cli, TestPrefix};
use workshop_cli::cli::Cli;
use workshop_cli::config::DatabaseKind;
use workshop_cli::workshop::catalogue::Catalogue;

const TIMEOUT_MS: u64 = 60_000;

fn guided(command: std::process::Command) -> PtySession {
    spawn_command(command, Some(TIMEOUT_MS)).expect("start workshop-cli in a pseudo-terminal")
}

fn press(session: &mut PtySession, key: &str) {
    session.send(key).unwrap();
    session.flush().unwrap();
}

/// The guided app under a pseudo-terminal of 80×24, its output fed into a
/// terminal emulator (vt100), so the test reads the screen as a person
/// sees it, whatever cursor moves ratatui's diffing sends.
struct Screen {
    session: PtySession,
    parser: vt100::Parser,
    /// A run stopped by the environment check fails the test at once, with its rows.
    missing_is_a_failure: bool,
}

impl Screen {
    fn start(command: std::process::Command) -> Screen {
        // stty gives the pty its size before the app asks for it.
        let mut shell = std::process::Command::new("sh");
        shell
            .arg("-c")
            .arg("stty rows 24 cols 80 && exec \"$0\"")
            .arg(command.get_program());
        shell.current_dir(command.get_current_dir().unwrap_or(std::path::Path::new(".")));
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => shell.env(key, value),
                None => shell.env_remove(key),
            };
        }
        Screen {
            session: guided(shell),
            missing_is_a_failure: true,
            parser: vt100::Parser::new(
                std::num::NonZeroU16::new(24).unwrap(),
                std::num::NonZeroU16::new(80).unwrap(),
                0,
            ),
        }
    }

    fn contents(&self) -> String {
        self.parser.screen().contents()
    }

    /// Reads until `text` is on the screen (or fails after the timeout).
    fn wait_for(&mut self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_millis(TIMEOUT_MS);
        loop {
            let mut read = false;
            // rexpect hands out one byte per `char`; the emulator decodes UTF-8.
            while let Some(byte) = self.session.try_read() {
                self.parser.process(&[byte as u32 as u8]);
                read = true;
            }
            if self.contents().contains(text) {
                return;
            }
            if self.missing_is_a_failure && self.contents().contains("Something is missing") {
                self.fail_with_the_environment_check(text);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {text:?} on the screen:\n{}",
                self.contents()
            );
            if !read {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn press(&mut self, key: &str) {
        press(&mut self.session, key);
    }

    /// The environment check stopped the run: show its rows (the pane
    /// scrolled down) so the failure says which check failed.
    fn fail_with_the_environment_check(&mut self, text: &str) -> ! {
        let mut screens = vec![self.contents()];
        for _ in 0..3 {
            self.press(PAGE_DOWN);
            std::thread::sleep(Duration::from_millis(300));
            while let Some(byte) = self.session.try_read() {
                self.parser.process(&[byte as u32 as u8]);
            }
            screens.push(self.contents());
        }
        panic!(
            "waiting for {text:?}, the environment check stopped the run:\n{}",
            screens.join("\n----\n")
        );
    }
}

const DOWN: &str = "\x1b[B";
const PAGE_DOWN: &str = "\x1b[6~";
const ESC: &str = "\x1b";

async fn walk_through_exercise_one(kind: DatabaseKind) {
    let db = seeded_database(kind, "guided").await;
    let prefix = TestPrefix::new("guided");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut command = workshop_cli(dir.path());
    command
        .env("DATABASE_URL", db.url())
        .env("VALKEY_URL", valkey_url())
        .env("WORKSHOP_KEY_PREFIX", &prefix.prefix)
        .env("WORKSHOP_STATE_FILE", &state)
        .env("WORKSHOP_CACHE_TIMEOUT", "5000")
        .args(["--connect-timeout", "10"]);
    let mut screen = Screen::start(command);

    screen.wait_for("the caching workshop");
    screen.wait_for(&format!("0/{} done", catalogue_size()));
    screen.press(DOWN);
    screen.press("\r");
    screen.wait_for(&format!("Exercise 1 of {}", last_number()));
    screen.wait_for("Exercise 1 — Cache-aside (lazy loading)");
    screen.press(PAGE_DOWN);
    screen.press(DOWN);
    screen.wait_for("When to use it");
    assert!(
        !screen.contents().contains("Exercise 1 — Cache-aside (lazy loading)"),
        "the briefing scrolled:\n{}",
        screen.contents()
    );
    screen.press("1");
    screen.wait_for("Predict, then run");
    screen.press("c");
    screen.wait_for("$ workshop-cli cache-aside --id 3797 --fresh");
    screen.wait_for("you said: more than 10×");
    screen.wait_for("→ cache hit p50");
    screen.press("h");
    screen.wait_for("Hint 1/3");
    assert!(
        screen.contents().contains("→ cache hit p50"),
        "the result stays beside the hint:\n{}",
        screen.contents()
    );
    screen.press("d");
    screen.wait_for("Marked done. Next: Write-through");
    screen.press(ESC); // closes the hint
    std::thread::sleep(Duration::from_millis(100)); // two lone ESCs must not read as one sequence
    screen.press(ESC); // back to the list
    screen.wait_for(&format!("1/{} done", catalogue_size()));
    screen.press("q");
    screen.session.exp_eof().unwrap();

    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(recorded["done"]["cache-aside"].is_string(), "{recorded}");
    assert_eq!(recorded["done"].as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn an_attendee_walks_exercise_one_in_the_guided_app_on_mysql_and_it_is_recorded() {
    walk_through_exercise_one(DatabaseKind::MySql).await;
}

#[tokio::test]
async fn an_attendee_walks_exercise_one_in_the_guided_app_on_postgres_and_it_is_recorded() {
    walk_through_exercise_one(DatabaseKind::Postgres).await;
}

#[tokio::test]
async fn ctrl_c_cancels_a_running_variant_and_stays_on_its_page() {
    let db = seeded_database(DatabaseKind::MySql, "guided_cancel").await;
    let prefix = TestPrefix::new("guided_cancel");
    let dir = tempfile::tempdir().unwrap();
    let mut command = workshop_cli(dir.path());
    command
        .env("DATABASE_URL", db.url())
        .env("VALKEY_URL", valkey_url())
        .env("WORKSHOP_KEY_PREFIX", &prefix.prefix)
        .env("WORKSHOP_STATE_FILE", dir.path().join("state.json"))
        .env("WORKSHOP_CACHE_TIMEOUT", "5000")
        .args(["--connect-timeout", "10"]);
    let mut screen = Screen::start(command);
    screen.wait_for("the caching workshop");
    // Down to rate limiting (exercise 11), wherever it sits in the list.
    let catalogue = workshop_cli::workshop::catalogue::Catalogue::builtin().unwrap();
    let position = catalogue
        .exercises
        .iter()
        .position(|e| e.id == "rate-limit")
        .expect("rate-limit in the catalogue");
    for _ in 0..position {
        screen.press("\x1b[B");
    }
    screen.press("\r");
    screen.wait_for(&format!("Exercise 11 of {}", last_number()));
    screen.press("1");
    screen.wait_for("Predict, then run");
    screen.press("a");
    // Three limiters of 3 s each: the first one's phase is showing, the run has far to go.
    screen.wait_for("fixed-window for 3 s");
    screen.press("\x03");
    screen.wait_for("Cancelled after");
    assert!(
        screen.contents().contains("Exercise 11 of"),
        "still on the page:\n{}",
        screen.contents()
    );
    screen.press(ESC);
    screen.wait_for("the caching workshop");
    screen.press("q");
    screen.session.exp_eof().unwrap();
}

async fn a_listener_beside_an_update(kind: DatabaseKind) {
    let db = seeded_database(kind, "guided_listen").await;
    let prefix = TestPrefix::new("guided_listen");
    let dir = tempfile::tempdir().unwrap();
    let mut command = workshop_cli(dir.path());
    command
        .env("DATABASE_URL", db.url())
        .env("VALKEY_URL", valkey_url())
        .env("WORKSHOP_KEY_PREFIX", &prefix.prefix)
        .env("WORKSHOP_STATE_FILE", dir.path().join("state.json"))
        // A busy machine (every test at once) must not fail the environment check.
        .env("WORKSHOP_CACHE_TIMEOUT", "5000")
        .args(["--connect-timeout", "10"]);
    let mut screen = Screen::start(command);
    screen.wait_for("the caching workshop");
    for _ in 0..4 {
        screen.press(DOWN);
    }
    screen.press("\r");
    screen.wait_for("Exercise 4 of");
    screen.press("2");
    screen.wait_for("Product id to watch and change");
    screen.press("42\r");
    // Invalidation on: the listener (the same product, its own L1) is served the new price.
    screen.wait_for("the listener was served the new price 19.99");
    screen.wait_for("The listener (another process's view)");
    // Invalidation off: its L1 keeps the old row until the entry's 3 s TTL ends.
    screen.press("3");
    screen.wait_for("Product id to watch and change");
    screen.press("42\r");
    screen.wait_for("the listener was served the new price 29.99 at +");
    let contents = screen.contents();
    let at = contents
        .split("new price 29.99 at +")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|seconds| seconds.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("a time on the screen:\n{contents}"));
    assert!(at >= 3.0, "stale until the L1 TTL of 3 s, served at +{at} s");
    screen.press(ESC);
    screen.wait_for("the caching workshop");
    screen.press("q");
    screen.session.exp_eof().unwrap();
}

#[tokio::test]
async fn a_listener_beside_an_update_is_served_the_new_price_on_mysql() {
    a_listener_beside_an_update(DatabaseKind::MySql).await;
}

#[tokio::test]
async fn a_listener_beside_an_update_is_served_the_new_price_on_postgres() {
    a_listener_beside_an_update(DatabaseKind::Postgres).await;
}

#[tokio::test]
async fn the_guided_workshop_shows_the_environment_check_instead_of_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = workshop_cli(dir.path());
    command
        .env("DATABASE_URL", "mysql://workshop:workshop@127.0.0.1:1/workshop")
        .env("VALKEY_URL", valkey_url())
        .env("WORKSHOP_STATE_FILE", dir.path().join("state.json"));
    let mut screen = Screen::start(command);
    screen.missing_is_a_failure = false;
    screen.wait_for("the caching workshop");
    screen.press(DOWN);
    screen.press("\r");
    screen.wait_for(&format!("Exercise 1 of {}", last_number()));
    screen.press("2");
    screen.wait_for("Something is missing: fix the rows marked");
    screen.press(ESC);
    screen.wait_for("the caching workshop");
    screen.press("q");
    screen.session.exp_eof().unwrap();
    assert!(!dir.path().join("state.json").exists(), "nothing was marked done");
}

#[tokio::test]
async fn a_corrupt_state_file_is_a_warning_and_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, "{{{ not json").unwrap();
    let mut command = workshop_cli(dir.path());
    command.env("WORKSHOP_STATE_FILE", &state);
    let mut screen = Screen::start(command);
    screen.wait_for(&format!("0/{} done", catalogue_size()));
    screen.wait_for("is corrupt; starting");
    screen.press("q");
    screen.session.exp_eof().unwrap();
}

#[test]
fn without_a_terminal_a_bare_call_prints_help_and_exits_with_the_usage_code_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let output = workshop_cli(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("Usage: workshop-cli"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn every_catalogue_command_parses_and_every_recipe_is_in_the_justfile() {
    let justfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/justfile")).unwrap();
    for exercise in Catalogue::builtin().unwrap().exercises {
        let mut argv = vec!["workshop-cli".to_string()];
        argv.extend(exercise.command.iter().cloned());
        if let Err(error) = Cli::try_parse_from(&argv) {
            panic!("{}: `{}` does not parse: {error}", exercise.id, argv.join(" "));
        }
        for variant in exercise.runs() {
            let args: Vec<String> = variant.args.iter().map(|a| a.replace("{input}", "1")).collect();
            if let Err(error) = workshop_cli::workshop::run::parse(&args) {
                panic!("{}: variant `{}` does not parse: {error}", exercise.id, variant.label);
            }
            if let Some(alongside) = &variant.alongside {
                let alongside: Vec<String> = alongside.iter().map(|a| a.replace("{input}", "1")).collect();
                if let Err(error) = workshop_cli::workshop::run::parse(&alongside) {
                    panic!("{}: `{}` alongside does not parse: {error}", exercise.id, variant.label);
                }
                assert!(
                    workshop_cli::workshop::run::not_in_process(&alongside).is_none(),
                    "{}: what runs alongside must end by itself (--duration)",
                    exercise.id
                );
            }
        }
        let recipe = format!("\n{}:", exercise.recipe);
        assert!(
            justfile.contains(&recipe),
            "{}: no `{}` recipe in the justfile",
            exercise.id,
            exercise.recipe
        );
    }
}

#[test]
fn exercises_lists_progress_as_json_and_reset_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, r#"{"version":1,"done":{"cache-aside":"2026-11-21T08:00:00Z"}}"#).unwrap();
    let list = |args: &[&str]| {
        let output = workshop_cli(dir.path())
            .env("WORKSHOP_STATE_FILE", &state)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        output
    };
    let json: Value = serde_json::from_str(&stdout(&list(&["exercises", "--json"]))).unwrap();
    assert_eq!(json["done"], 1);
    assert_eq!(json["total"], Catalogue::builtin().unwrap().exercises.len());
    assert_eq!(json["exercises"][1]["id"], "cache-aside");
    assert_eq!(json["exercises"][1]["done"], true);
    assert_eq!(json["exercises"][1]["recipe"], "just exercise-1");

    let shown = stdout(&list(&["exercises", "show", "2"]));
    assert!(shown.starts_with("# Exercise 2 — Write-through"), "{shown}");

    list(&["exercises", "reset", "cache-aside"]);
    let json: Value = serde_json::from_str(&stdout(&list(&["exercises", "--json"]))).unwrap();
    assert_eq!(json["done"], 0);

    let output = workshop_cli(dir.path())
        .args(["exercises", "show", "42"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6));
    assert_eq!(
        stderr(&output),
        format!(
            "error: no exercise '42'; `workshop-cli exercises` lists them (0 to {})\n",
            last_number()
        )
    );
}

#[test]
fn completions_are_printed_for_every_shell() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef workshop-cli"),
        ("fish", "complete -c workshop-cli"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let output = workshop_cli(dir.path()).args(["completions", shell]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{shell}");
        assert!(stdout(&output).contains(marker), "{shell}");
        assert!(stdout(&output).contains("cache-aside"), "{shell}");
    }
}

#[test]
fn no_color_keeps_escape_codes_out_of_tables() {
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path()).args(["exercises"]).output().unwrap();
    assert!(!stdout(&output).contains("\u{1b}["));
}

fn catalogue_size() -> usize {
    Catalogue::builtin().unwrap().exercises.len()
}

/// The highest exercise number (numbers may skip one that is not built yet).
fn last_number() -> u32 {
    Catalogue::builtin().unwrap().exercises.last().unwrap().number
}
