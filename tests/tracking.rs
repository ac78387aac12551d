//! Exercise 13 against the real services, on both databases: a reader
//! process's L1 invalidated by CLIENT TRACKING (default mode and BCAST)
//! before the writer's command returns plus one round trip, next to
//! exercise 4's pub/sub, which misses a write that does not publish.
//! Against a cluster the run refuses, as the briefing says.

mod support;

use serde_json::Value;
use support::{is_cluster, run_json, seeded_database, valkey_url, TestDatabase, TestPrefix, BOTH};

fn mode<'a>(run: &'a support::JsonRun, name: &str) -> &'a Value {
    run.json["modes"]
        .as_array()
        .unwrap_or_else(|| panic!("no modes: {}", run.stderr))
        .iter()
        .find(|m| m["mode"] == name)
        .unwrap_or_else(|| panic!("no {name} in {}", run.json))
}

#[tokio::test]
async fn tracking_invalidates_the_readers_l1_before_the_writers_command_returns_plus_one_round_trip() {
    if is_cluster(&valkey_url()) {
        return; // `tracking_is_refused_on_a_cluster` covers it.
    }
    for kind in BOTH {
        let db = seeded_database(kind, "tracking").await;
        let prefix = TestPrefix::new("tracking");
        let run = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["tracking", "--updates", "20", "--keys", "5"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        for name in ["default", "bcast", "pubsub"] {
            let m = mode(&run, name);
            assert_eq!(m["updates"], 20, "{m}");
            assert_eq!(m["invalidated_within_round_trip"], 20, "{kind:?} {name}: {m}");
            assert_eq!(m["stale_after_round_trip"], 0, "{m}");
            // Per update the reader read twice: Valkey, then its own L1 (and the unannounced round).
            assert_eq!(m["reader"]["l1_hits"], 21, "{m}");
            assert_eq!(m["reader"]["l2_reads"], 21, "{m}");
            assert!(m["reader"]["invalidation_messages"].as_u64().unwrap() >= 20, "{m}");
        }
        // Only Valkey's own tracking sees a write that publishes nothing.
        assert_eq!(mode(&run, "default")["unannounced_write_invalidated"], true);
        assert_eq!(mode(&run, "bcast")["unannounced_write_invalidated"], true);
        assert_eq!(mode(&run, "pubsub")["unannounced_write_invalidated"], false);
        assert_eq!(mode(&run, "default")["writer_commands_per_update"], 1);
        assert_eq!(mode(&run, "pubsub")["writer_commands_per_update"], 2);
        assert!(prefix.keys().is_empty(), "left behind: {:?}", prefix.keys());
    }
}

#[tokio::test]
async fn tracking_is_refused_on_a_cluster() {
    let url = if is_cluster(&valkey_url()) {
        valkey_url()
    } else {
        return; // Runs in `just test-cluster`.
    };
    let db = TestDatabase::create(BOTH[0], "tracking_cluster").await;
    let prefix = TestPrefix::on("tracking_cluster", &url);
    let run = run_json(&db, &prefix, &url, &["tracking"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!("error: {}\n", workshop_cli::exercises::tracking::CLUSTER_REFUSAL)
    );
}

#[tokio::test]
async fn zero_updates_are_refused_before_anything_runs() {
    let db = TestDatabase::create(BOTH[1], "tracking_bad").await;
    let prefix = TestPrefix::new("tracking_bad");
    let run = run_json(&db, &prefix, &valkey_url(), &["tracking", "--updates", "0"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert_eq!(run.stderr, "error: --updates must be from 1 to 1000 (got 0)\n");
    assert!(run.stdout.is_empty());
    assert!(prefix.keys().is_empty());
}

#[tokio::test]
async fn the_text_tables_fit_eighty_columns() {
    if is_cluster(&valkey_url()) {
        return;
    }
    let db = seeded_database(BOTH[0], "tracking_text").await;
    let prefix = TestPrefix::new("tracking_text");
    let dir = tempfile::tempdir().unwrap();
    let output = support::cli_against(
        dir.path(),
        &db.url(),
        &prefix,
        &valkey_url(),
        &["tracking", "--updates", "3", "--keys", "2"],
    )
    .output()
    .unwrap();
    let text = support::stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{}", support::stderr(&output));
    assert!(text.contains("Exercise 13"), "{text}");
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
    }
}
