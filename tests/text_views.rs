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
