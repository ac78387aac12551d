//! Issue 13: the measuring client close to the wire. `--connections N` spreads the
//! cache-aside tasks over N Valkey connections, on both databases. (The speed targets
//! themselves live in `just bench`, never in a timed test.)

mod support;

use support::{run_json, seeded_database, valkey_connection, JsonRun, PrivateValkey, TestDatabase, TestPrefix, BOTH};
use workshop_cli::config::DatabaseKind;

/// A field of the private server's `INFO stats`.
fn stat(valkey: &PrivateValkey, field: &str) -> u64 {
    let mut conn = valkey_connection(&valkey.url());
    let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).expect("INFO stats");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO stats"))
}

fn cache_aside(db: &TestDatabase, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> JsonRun {
    run_json(db, prefix, valkey, &[&["cache-aside"], args].concat())
}

/// Connections the private server accepted while `run` ran (INFO's own connection left out).
fn connections_opened(valkey: &PrivateValkey, run: impl FnOnce() -> JsonRun) -> (u64, JsonRun) {
    let before = stat(valkey, "total_connections_received");
    let result = run();
    let after = stat(valkey, "total_connections_received");
    // The second INFO's own connection counts too.
    (after - before - 1, result)
}

#[tokio::test]
async fn tasks_on_several_connections_open_that_many_and_count_every_read() {
    for kind in BOTH {
        let db = seeded_database(kind, "perfconns").await;
        let valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("perfconns", &valkey.url());
        let args = ["--runs", "400", "--concurrency", "8", "--warmup", "1"];
        let (one, shared) = connections_opened(&valkey, || {
            cache_aside(
                &db,
                &prefix,
                &valkey.url(),
                &[&args[..], &["--connections", "1"]].concat(),
            )
        });
        assert_eq!(shared.code, Some(0), "{kind:?}: {}", shared.stderr);
        assert_eq!(shared.json["connections"], 1);
        let hits_before = stat(&valkey, "keyspace_hits");
        let (four, run) = connections_opened(&valkey, || {
            cache_aside(
                &db,
                &prefix,
                &valkey.url(),
                &[&args[..], &["--connections", "4"]].concat(),
            )
        });
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        // Three more Valkey links than the shared run, whatever else a run opens; each link
        // is two sockets: its GET pipeline (cache::pipelined) and the one for other commands.
        assert_eq!(four, one + 3 * 2, "{kind:?}");
        assert_eq!(run.json["connections"], 4);
        assert_eq!(run.json["concurrency"], 8);
        // The entry is cached: every timed read is a hit, through every connection.
        assert_eq!(run.json["sources"]["cache"], 400, "{kind:?}: {}", run.json["sources"]);
        assert_eq!(run.json["summary"]["cache"]["count"], 400);
        assert_eq!(run.json["consistent"], true);
        assert_eq!(
            run.json["result"]["rows"],
            serde_json::json!([[3797, null, "FSFA", "FARQUHAR"]])
        );
        // 1 warm-up read + 400 timed ones, all hits, whichever connection sent them.
        assert_eq!(stat(&valkey, "keyspace_hits") - hits_before, 401, "{kind:?}");
        assert_eq!(prefix.keys(), vec![run.json["key"].as_str().unwrap().to_string()]);
    }
}

#[tokio::test]
async fn more_connections_than_tasks_or_without_a_cache_are_refused() {
    let db = TestDatabase::create(DatabaseKind::Postgres, "perfbad").await;
    let prefix = TestPrefix::new("perfbad");
    let valkey = support::valkey_url();
    let run = cache_aside(&db, &prefix, &valkey, &["--concurrency", "8", "--connections", "9"]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (
            Some(6),
            "error: --connections must be from 1 to --concurrency (8): each connection needs a task of its own (got 9)\n"
        )
    );
    let run = cache_aside(&db, &prefix, &valkey, &["--connections", "2"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    let run = cache_aside(&db, &prefix, &valkey, &["--no-cache", "--connections", "2"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--connections"), "{}", run.stderr);
    assert!(prefix.keys().is_empty());
}
