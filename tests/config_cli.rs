//! The binary's configuration handling: precedence, the split DB_* style,
//! masking, and the exact error lines for bad configuration.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{stderr, stdout, workshop_cli};

/// `check-env --json` against addresses where nothing listens, so only the
/// configuration part matters; returns the parsed report.
fn check_env_json(command: &mut std::process::Command) -> (i32, Value) {
    let output = command
        .args(["check-env", "--json", "--connect-timeout", "0.5"])
        .output()
        .expect("run workshop-cli");
    let report = serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&output)));
    (output.status.code().unwrap_or(-1), report)
}

fn detail<'a>(report: &'a Value, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_else(|| panic!("no check named {name} in {report}"))
}

#[test]
fn flags_beat_environment_which_beats_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "DATABASE_URL=mysql://u:p@127.0.0.1:1/fromfile\nCACHE_TTL=11\n",
    )
    .unwrap();

    let (_, report) = check_env_json(&mut workshop_cli(dir.path()));
    assert_eq!(
        detail(&report, "database URL"),
        "mysql://u:***@127.0.0.1:1/fromfile (from .env)"
    );
    assert_eq!(detail(&report, "cache TTL"), "11 s (from .env)");

    let (_, report) = check_env_json(
        workshop_cli(dir.path())
            .env("DATABASE_URL", "mysql://u:p@127.0.0.1:2/fromenv")
            .env("CACHE_TTL", "22"),
    );
    assert_eq!(
        detail(&report, "database URL"),
        "mysql://u:***@127.0.0.1:2/fromenv (from environment)"
    );
    assert_eq!(detail(&report, "cache TTL"), "22 s (from environment)");

    let (_, report) = check_env_json(
        workshop_cli(dir.path())
            .env("DATABASE_URL", "mysql://u:p@127.0.0.1:2/fromenv")
            .args(["--database-url", "postgres://u:p@127.0.0.1:3/fromflag", "--ttl", "33"]),
    );
    assert_eq!(
        detail(&report, "database URL"),
        "postgres://u:***@127.0.0.1:3/fromflag (from command-line flag)"
    );
    assert_eq!(detail(&report, "cache TTL"), "33 s (from command-line flag)");
}

#[test]
fn dotenv_is_found_in_a_parent_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "VALKEY_URL=redis://127.0.0.1:4\n").unwrap();
    let child = dir.path().join("a").join("b");
    std::fs::create_dir_all(&child).unwrap();
    let (_, report) = check_env_json(&mut workshop_cli(&child));
    assert_eq!(detail(&report, "Valkey URL"), "redis://127.0.0.1:4 (from .env)");
    assert!(detail(&report, "configuration").starts_with(&dir.path().join(".env").display().to_string()));
}

#[test]
fn defaults_match_env_example_when_nothing_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (_, report) = check_env_json(&mut workshop_cli(dir.path()));
    assert_eq!(
        detail(&report, "database URL"),
        "mysql://workshop:***@127.0.0.1:3306/workshop (from built-in default)"
    );
    assert_eq!(
        detail(&report, "Valkey URL"),
        "redis://127.0.0.1:6379 (from built-in default)"
    );
    assert_eq!(detail(&report, "cache TTL"), "300 s (from built-in default)");
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    assert!(example.contains("DATABASE_URL=mysql://workshop:workshop@127.0.0.1:3306/workshop"));
    assert!(example.contains("VALKEY_URL=redis://127.0.0.1:6379"));
    assert!(example.contains("CACHE_TTL=300"));
}

#[test]
fn the_split_style_of_the_python_workshops_is_accepted_and_a_url_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "DB_ENGINE=postgresql\nDB_HOST=127.0.0.1\nDB_PORT=5\nDB_USER=ann\nDB_PASSWORD=Very$ecret9\nDB_NAME=flughafendb\nCACHE_HOST=127.0.0.1\nCACHE_PORT=6\n",
    )
    .unwrap();
    let (_, report) = check_env_json(&mut workshop_cli(dir.path()));
    assert_eq!(
        detail(&report, "database URL"),
        "postgres://ann:***@127.0.0.1:5/flughafendb (from DB_*/CACHE_* variables)"
    );
    assert_eq!(
        detail(&report, "Valkey URL"),
        "redis://127.0.0.1:6 (from DB_*/CACHE_* variables)"
    );
    assert!(!report.to_string().contains("Very$ecret9"));

    let (_, report) = check_env_json(workshop_cli(dir.path()).env("DATABASE_URL", "mysql://u:p@127.0.0.1:7/x"));
    assert_eq!(
        detail(&report, "database URL"),
        "mysql://u:***@127.0.0.1:7/x (from environment)"
    );
}

#[test]
fn unknown_scheme_is_a_configuration_error_listing_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .env("DATABASE_URL", "oracle://scott:tiger@127.0.0.1/orcl")
        .arg("check-env")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stderr(&output),
        "error: DATABASE_URL has unknown scheme 'oracle://'; supported: mysql://, mariadb://, postgres://, postgresql://\n"
    );
    assert!(stdout(&output).is_empty());
}

#[test]
fn a_malformed_dotenv_line_is_reported_with_file_and_line_without_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(
        &path,
        "# settings\nCACHE_TTL=60\nDB_PASSWORD='hunter2\nVALKEY_URL=redis://127.0.0.1:6379\n",
    )
    .unwrap();
    let output = workshop_cli(dir.path()).arg("check-env").output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stderr(&output),
        format!(
            "error: {}:3: malformed line (expected KEY=VALUE, with quotes closed); fix or remove that line\n",
            path.display()
        )
    );
    assert!(!stderr(&output).contains("hunter2"));
}

#[test]
fn a_bad_ttl_names_the_variable_and_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .env("CACHE_TTL", "soon")
        .arg("check-env")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        stderr(&output),
        "error: CACHE_TTL must be a whole number of seconds from 1 to 31536000 (got 'soon')\n"
    );
}

#[test]
fn a_bad_cache_timeout_names_the_variable_and_the_range() {
    let dir = tempfile::tempdir().unwrap();
    for (how, value) in [("env", "fast"), ("flag", "0"), ("flag", "60001")] {
        let mut command = workshop_cli(dir.path());
        if how == "env" {
            command.env("WORKSHOP_CACHE_TIMEOUT", value).arg("check-env");
        } else {
            command.args(["check-env", "--cache-timeout", value]);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(3), "{value}");
        assert_eq!(
            stderr(&output),
            format!("error: WORKSHOP_CACHE_TIMEOUT must be a whole number of milliseconds from 1 to 60000 (got '{value}')\n")
        );
    }
}

#[test]
fn help_works_even_with_a_broken_dotenv_and_shows_examples() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "BROKEN='\n").unwrap();
    for args in [
        &["--help"][..],
        &["check-env", "--help"],
        &["seed", "--help"],
        &["cache-aside", "--help"],
        &["write-through", "--help"],
        &["stats", "--help"],
        &["multi-level", "--help"],
        &["write-behind", "--help"],
        &["stampede", "--help"],
        &["exercises", "--help"],
        &["completions", "--help"],
    ] {
        let output = workshop_cli(dir.path()).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(stdout(&output).contains("Examples:"), "{args:?}: {}", stdout(&output));
    }
}

#[test]
fn no_subcommand_without_a_terminal_prints_help_and_exits_with_the_usage_code() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = workshop_cli(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("Usage: workshop-cli"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .args(["cache-aside", "--idd", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unexpected argument '--idd'"));
}
