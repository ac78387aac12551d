//! Exercise 4 (two-level cache, warming, invalidation across processes)
//! against the real services, on both databases, through the binary.

mod support;

use std::io::BufRead;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    cli_against, run_json, seeded_database, stderr, stdout, take_away, valkey_url, wait_until, JsonRun, PrivateValkey,
    TestDatabase, TestPrefix, BOTH,
};
use workshop_cli::config::DatabaseKind;

fn multi_level(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    multi_level_on(db, prefix, &valkey_url(), args)
}

fn multi_level_on(db: &TestDatabase, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> JsonRun {
    run_json(db, prefix, valkey, &[&["multi-level"], args].concat())
}

/// The layer of each listed read, in order.
fn layers(run: &JsonRun) -> Vec<String> {
    run.json["reads"]["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in {}: {}", run.json, run.stderr))
        .iter()
        .map(|r| r["layer"].as_str().unwrap().to_string())
        .collect()
}

fn counters(run: &JsonRun) -> [u64; 6] {
    let c = &run.json["counters"];
    let n = |name: &str| c[name].as_u64().unwrap_or_else(|| panic!("{name} in {c}"));
    [
        n("l1_hits"),
        n("l1_misses"),
        n("l2_hits"),
        n("l2_misses"),
        n("l2_errors"),
        n("database_loads"),
    ]
}

/// A `multi-level --listen --json` process whose lines are read as they come.
struct Listener {
    child: Child,
    lines: Receiver<(Instant, Value)>,
    seen: Vec<(Instant, Value)>,
}

impl Listener {
    fn start(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> Listener {
        Self::start_on(db, prefix, &valkey_url(), args)
    }

    fn start_on(db: &TestDatabase, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> Listener {
        let dir = tempfile::tempdir().unwrap();
        let mut child = cli_against(
            dir.path(),
            &db.url(),
            prefix,
            valkey,
            &["multi-level", "--listen", "--json"],
        )
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if sender.send((Instant::now(), value)).is_err() {
                    return;
                }
            }
        });
        Listener {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next change line, with the moment it arrived.
    fn next_change(&mut self, timeout: Duration) -> Option<(Instant, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (at, value) = self.lines.recv_timeout(left).ok()?;
            self.seen.push((at, value.clone()));
            if value["event"] == "change" {
                return Some((at, value));
            }
        }
    }

    /// Waits for the process to end; returns every line it printed, its status and stderr.
    fn finish(mut self) -> (Vec<Value>, ExitStatus, String) {
        let output = self.child.wait_with_output().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let lines = self.seen.into_iter().map(|(_, v)| v).collect();
        (lines, output.status, stderr(&output))
    }
}

fn price_other_than(old: &str) -> &'static str {
    if old == "1234.56" {
        "2345.67"
    } else {
        "1234.56"
    }
}

#[tokio::test]
async fn the_first_read_loads_from_the_database_then_l1_and_a_second_process_starts_at_l2() {
    for kind in BOTH {
        let db = seeded_database(kind, "fill").await;
        let prefix = TestPrefix::new("fill");
        let first = multi_level(&db, &prefix, &["--id", "7", "--requests", "3"]);
        assert_eq!(first.code, Some(0), "{kind:?}: {}", first.stderr);
        assert_eq!(layers(&first), ["database", "l1", "l1"]);
        // l1 hits, l1 misses, l2 hits, l2 misses, l2 errors, database loads
        assert_eq!(counters(&first), [2, 1, 0, 1, 0, 1]);
        assert_eq!(first.json["reads"]["product"]["id"], 7);
        assert!(first.json["reads"]["product"]["price"].is_string(), "exact decimal");
        assert_eq!(first.json["reads"]["layers"]["database"]["count"], 1);
        assert_eq!(first.json["reads"]["layers"]["l1"]["count"], 2);
        assert!(first.json["reads"]["speedup"]["database_over_l1"].as_f64().unwrap() > 1.0);

        let second = multi_level(&db, &prefix, &["--id", "7", "--requests", "3"]);
        assert_eq!(second.code, Some(0), "{kind:?}: {}", second.stderr);
        assert_eq!(
            layers(&second),
            ["l2", "l1", "l1"],
            "a new process has its own, empty L1"
        );
        assert_eq!(counters(&second), [2, 1, 1, 0, 0, 0]);
        assert_eq!(second.json["reads"]["product"], first.json["reads"]["product"]);
        assert!(second.json["reads"]["speedup"]["l2_over_l1"].as_f64().unwrap() > 1.0);

        let mut keys = prefix.keys();
        keys.sort();
        assert_eq!(
            keys,
            [
                format!("{}product-requests", prefix.source(&db)),
                format!("{}product:7", prefix.source(&db))
            ]
        );
        assert_eq!(second.json["request_counts"]["requests"], 3);
    }
}

#[tokio::test]
async fn a_skewed_workload_uses_every_layer_and_the_counters_add_up() {
    for kind in BOTH {
        let db = seeded_database(kind, "workload").await;
        let prefix = TestPrefix::new("workload");
        let args = ["--requests", "600", "--keys", "60", "--skew", "1", "--l1-capacity", "8"];
        let run = multi_level(&db, &prefix, &args);
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let reads = &run.json["reads"];
        assert_eq!(reads["served"], 600);
        assert_eq!(reads["failed_requests"], 0);
        let [l1_hits, l1_misses, l2_hits, l2_misses, l2_errors, loads] = counters(&run);
        assert_eq!(l1_hits + l1_misses, 600);
        assert_eq!(l2_hits + l2_misses + l2_errors, l1_misses);
        assert_eq!(loads, l2_misses);
        // Every product is loaded from the database once; evicted ones come back from L2.
        assert_eq!(loads, reads["distinct_products"].as_u64().unwrap());
        assert!(l1_hits > 0 && l2_hits > 0, "{}", run.json["counters"]);
        assert_eq!(
            (reads["served_by"]["l1"].as_u64(), reads["served_by"]["l2"].as_u64()),
            (Some(l1_hits), Some(l2_hits))
        );
        for layer in ["l1", "l2", "database"] {
            assert!(reads["layers"][layer]["p99"].as_f64().unwrap() > 0.0, "{layer}");
        }
        // Zipf: id 1 gets the most requests.
        assert!(reads["workload"]["top_10_share"].as_f64().unwrap() > 0.5);
        assert_eq!(run.json["request_counts"]["requests"], 600);

        // The same workload again: everything is in L2 by now.
        let again = multi_level(&db, &prefix, &args);
        assert_eq!(counters(&again)[5], 0, "no database load the second time");
        assert_eq!(again.json["reads"]["distinct_products"], reads["distinct_products"]);
    }
}

#[tokio::test]
async fn warming_fills_both_layers_from_the_request_counts_or_the_lowest_ids() {
    for kind in BOTH {
        let db = seeded_database(kind, "warm").await;
        let prefix = TestPrefix::new("warm");
        let warm = multi_level(&db, &prefix, &["--warm", "5"]);
        assert_eq!(warm.code, Some(0), "{kind:?}: {}", warm.stderr);
        assert_eq!(warm.json["mode"], "warm");
        assert_eq!(warm.json["warm"]["warmed"], 5);
        assert_eq!(warm.json["warm"]["source"], "lowest_ids");
        assert_eq!(warm.json["warm"]["product_ids"], serde_json::json!([1, 2, 3, 4, 5]));
        assert_eq!(warm.json["l1_entries"], 5);
        assert!(warm.json["warm"]["load_and_fill_ms"].as_f64().unwrap() > 0.0);

        // A new process finds a warmed product in L2 on its first read.
        let read = multi_level(&db, &prefix, &["--id", "3", "--requests", "1"]);
        assert_eq!(layers(&read), ["l2"]);
        let read = multi_level(&db, &prefix, &["--id", "150", "--requests", "4"]);
        assert_eq!(layers(&read), ["database", "l1", "l1", "l1"]);

        // Now the counts say: 150 (4 requests), then 3 (1 request).
        let warm = multi_level(&db, &prefix, &["--warm", "2"]);
        assert_eq!(warm.json["warm"]["source"], "request_counts");
        assert_eq!(warm.json["warm"]["product_ids"], serde_json::json!([150, 3]));
        let warm = multi_level(&db, &prefix, &["--warm", "3"]);
        assert_eq!(warm.json["warm"]["source"], "request_counts_then_lowest_ids");
        assert_eq!(warm.json["warm"]["product_ids"], serde_json::json!([150, 3, 1]));
        assert_eq!(warm.json["warm"]["from_request_counts"], 2);
    }
}

#[tokio::test]
async fn an_update_reaches_a_listening_process_within_a_second() {
    for kind in BOTH {
        let db = seeded_database(kind, "listen_on").await;
        let prefix = TestPrefix::new("listen_on");
        let mut listener = Listener::start(&db, &prefix, &["--id", "42", "--interval", "50", "--duration", "6"]);
        let (_, first) = listener
            .next_change(Duration::from_secs(20))
            .expect("the listener serves the product");
        assert_eq!(
            (&first["layer"], &first["previous_price"]),
            (&Value::from("database"), &Value::Null)
        );
        let old = first["price"].as_str().unwrap().to_string();
        let new = price_other_than(&old);

        let update = multi_level(&db, &prefix, &["--update", "42", "--price", new]);
        let updated = Instant::now();
        assert_eq!(update.code, Some(0), "{kind:?}: {}", update.stderr);
        assert_eq!(update.json["before"]["price"], old.as_str());
        assert_eq!(update.json["after"]["price"], new);
        assert_eq!(update.json["receivers"], 1, "the listener is subscribed");

        let (seen, change) = listener
            .next_change(Duration::from_secs(5))
            .expect("the listener sees the new price");
        assert_eq!(change["price"], new);
        assert_eq!(change["previous_price"], old.as_str());
        assert_eq!(change["layer"], "l2", "L1 dropped the key; L2 has the new row");
        let after = seen.saturating_duration_since(updated);
        assert!(
            after < Duration::from_secs(1),
            "{kind:?}: seen {after:?} after the update"
        );

        // Delete-style invalidation: the listener reloads from the database.
        let invalidate = multi_level(&db, &prefix, &["--invalidate", "42"]);
        assert_eq!(invalidate.code, Some(0), "{}", invalidate.stderr);
        assert_eq!(invalidate.json["receivers"], 1);

        let (lines, status, err) = listener.finish();
        assert!(status.success(), "{kind:?}: {err}");
        let summary = lines.last().unwrap();
        assert_eq!(summary["event"], "summary", "{lines:?}");
        assert_eq!(summary["stopped_by"], "duration");
        assert_eq!(summary["changes"], 2);
        assert_eq!(summary["last_price"], new);
        assert_eq!(summary["counters"]["invalidations_received"], 2);
        assert_eq!(summary["served_by"]["database"], 2, "first read and after --invalidate");
        assert_eq!(summary["served_by"]["l2"], 1);
        assert_eq!(summary["listener"]["connected"], true);
        assert_eq!(summary["failed_reads"], 0);
    }
}

#[tokio::test]
async fn without_invalidation_a_listener_serves_the_old_price_until_its_l1_ttl_ends() {
    for kind in BOTH {
        let db = seeded_database(kind, "listen_off").await;
        let prefix = TestPrefix::new("listen_off");
        let mut listener = Listener::start(
            &db,
            &prefix,
            &[
                "--id",
                "42",
                "--interval",
                "50",
                "--duration",
                "6",
                "--invalidation",
                "off",
                "--l1-ttl",
                "3",
            ],
        );
        let (first_seen, first) = listener.next_change(Duration::from_secs(20)).expect("first value");
        let old = first["price"].as_str().unwrap().to_string();
        let new = price_other_than(&old);
        let update = multi_level(&db, &prefix, &["--update", "42", "--price", new]);
        let updated = Instant::now();
        assert_eq!(update.code, Some(0), "{kind:?}: {}", update.stderr);
        assert_eq!(update.json["receivers"], 0, "nobody listens");

        let (seen, change) = listener
            .next_change(Duration::from_secs(5))
            .expect("the new price once L1 expires");
        assert_eq!(change["price"], new);
        assert_eq!(change["layer"], "l2");
        let stale = seen.saturating_duration_since(updated);
        assert!(stale > Duration::from_secs(1), "{kind:?}: stale for only {stale:?}");
        let since_first = seen.duration_since(first_seen);
        assert!(
            since_first >= Duration::from_millis(2900) && since_first < Duration::from_millis(3900),
            "{kind:?}: changed {since_first:?} after the first read; the L1 TTL is 3 s"
        );

        let (lines, status, err) = listener.finish();
        assert!(status.success(), "{err}");
        let summary = lines.last().unwrap();
        assert_eq!(summary["changes"], 2);
        assert_eq!(summary["counters"]["invalidations_received"], 0);
        assert_eq!(summary["listener"], Value::Null, "not subscribed");
        assert_eq!(summary["cache"]["invalidation"], false);
    }
}

#[tokio::test]
async fn a_listener_started_while_valkey_is_down_receives_invalidations_once_it_returns() {
    let db = seeded_database(DatabaseKind::Postgres, "listen_late").await;
    let mut valkey = PrivateValkey::start();
    let prefix = TestPrefix::on("listen_late", &valkey.url());
    valkey.kill();
    let mut listener = Listener::start_on(
        &db,
        &prefix,
        &valkey.url(),
        &[
            "--id",
            "42",
            "--interval",
            "50",
            "--duration",
            "10",
            "--connect-timeout",
            "0.5",
        ],
    );
    let (_, first) = listener
        .next_change(Duration::from_secs(20))
        .expect("the listener serves the product without Valkey");
    assert_eq!(first["layer"], "database");
    let old = first["price"].as_str().unwrap().to_string();
    let new = price_other_than(&old);

    valkey.restart();
    // The listener retries every 2 s at most: wait until it is subscribed.
    let channel = format!("{}invalidate", prefix.source(&db));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let client = redis::Client::open(valkey.url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let subscribers: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query(&mut conn)
            .unwrap();
        if subscribers.first().is_some_and(|(_, n)| *n >= 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener did not subscribe within 15 s of Valkey's return"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let update = multi_level_on(&db, &prefix, &valkey.url(), &["--update", "42", "--price", new]);
    let updated = Instant::now();
    assert_eq!(update.code, Some(0), "{}", update.stderr);
    assert_eq!(
        update.json["receivers"], 1,
        "the listener subscribed once Valkey was back"
    );

    let (seen, change) = listener
        .next_change(Duration::from_secs(5))
        .expect("the listener sees the new price");
    assert_eq!(change["price"], new);
    assert_eq!(
        change["layer"], "database",
        "L2 stays off for a process started without Valkey"
    );
    let after = seen.saturating_duration_since(updated);
    assert!(after < Duration::from_secs(1), "seen {after:?} after the update");

    let (lines, status, err) = listener.finish();
    assert!(status.success(), "{err}");
    assert!(err.contains("invalidations are received once Valkey answers"), "{err}");
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary", "{lines:?}");
    assert_eq!(summary["listener"]["connected"], true);
    assert_eq!(summary["counters"]["invalidations_received"], 1);
    assert_eq!(
        summary["counters"]["l1_clears"], 1,
        "the late first subscription emptied L1"
    );
}

#[tokio::test]
async fn valkey_stopped_mid_workload_fails_no_request_and_shows_in_the_counters() {
    for kind in BOTH {
        let db = seeded_database(kind, "outage").await;
        let mut valkey = PrivateValkey::start();
        let prefix = TestPrefix::on("outage", &valkey.url());
        let dir = tempfile::tempdir().unwrap();
        let child = cli_against(
            dir.path(),
            &db.url(),
            &prefix,
            &valkey.url(),
            &[
                "multi-level",
                "--requests",
                "500",
                "--keys",
                "40",
                "--l1-capacity",
                "4",
                "--interval",
                "10",
                "--connect-timeout",
                "0.5",
                "--json",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        // The first product is cached: the reads are under way.
        assert!(wait_until(Duration::from_secs(20), || prefix
            .keys()
            .iter()
            .any(|k| k.contains(":product:"))));
        valkey.kill();
        // The child knocks on the dead port: it has seen the outage.
        assert!(
            valkey.wait_for_a_reconnect(Duration::from_secs(10)),
            "{kind:?}: no reconnect"
        );
        valkey.restart();
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {err}");
        let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
        assert_eq!(json["reads"]["failed_requests"], 0);
        assert_eq!(json["reads"]["served"], 500, "every request was served");
        assert!(
            json["counters"]["l2_errors"].as_u64().unwrap() > 0,
            "{}",
            json["counters"]
        );
        assert!(
            json["counters"]["l1_clears"].as_u64().unwrap() >= 1,
            "the subscription came back and emptied L1: {}",
            json["counters"]
        );
        assert!(err.contains("warning: Valkey did not answer"), "{err}");
        assert!(err.contains("L1 was emptied"), "{err}");
        // Refused reconnects are failures too: the breaker opened, and says so.
        let faults = &json["valkey_faults"];
        assert!(faults["openings"].as_u64().unwrap() >= 1, "{faults}");
        assert!(err.contains("the circuit breaker opened"), "{err}");
    }
}

#[tokio::test]
async fn losing_the_database_mid_run_exits_4_at_once_with_the_reason() {
    for kind in BOTH {
        let db = seeded_database(kind, "dblost").await;
        let prefix = TestPrefix::new("dblost");
        let dir = tempfile::tempdir().unwrap();
        // A run of many minutes: uniform keys over the whole catalogue, a
        // 1-entry L1 and a 1 s Valkey TTL, so reads keep asking the database.
        let mut child = cli_against(
            dir.path(),
            &db.url(),
            &prefix,
            &valkey_url(),
            &[
                "multi-level",
                "--requests",
                "1000000",
                "--skew",
                "0",
                "--l1-capacity",
                "1",
                "--ttl",
                "1",
                "--interval",
                "1",
                "--json",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        // A product is cached: the timed reads are under way.
        assert!(
            wait_until(Duration::from_secs(30), || prefix
                .keys()
                .iter()
                .any(|k| k.contains(":product:"))),
            "{kind:?}: no read"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "{kind:?}: the run ended before the fault"
        );
        assert!(take_away(&db).await > 0, "{kind:?}: no session was ended");
        let lost_at = Instant::now();
        // Bounded: before the fix the run went on, 2 s per request.
        let ended = wait_until(Duration::from_secs(15), || child.try_wait().unwrap().is_some());
        if !ended {
            let _ = child.kill();
        }
        let after = lost_at.elapsed();
        let output = child.wait_with_output().unwrap();
        assert!(ended, "{kind:?}: still running {after:?} after the database was lost");
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(4), "{kind:?}: {err}");
        assert!(
            after < Duration::from_secs(10),
            "{kind:?}: exited {after:?} after the loss"
        );
        let line = err.lines().last().unwrap_or_default();
        assert!(
            line.starts_with("error: cannot reach the database at "),
            "{kind:?}: {err}"
        );
        assert!(
            line.contains(": lost during the timed reads, at request "),
            "{kind:?}: {err}"
        );
        assert!(
            line.ends_with("start it (`just up`) or fix DATABASE_URL"),
            "{kind:?}: {err}"
        );
        assert!(!err.contains(":workshop@"), "no password: {err}");
    }
}

#[tokio::test]
async fn an_update_with_valkey_down_writes_nothing() {
    let db = seeded_database(DatabaseKind::Postgres, "novalkey").await;
    let prefix = TestPrefix::new("novalkey");
    let before = multi_level(&db, &prefix, &["--id", "5", "--requests", "1"]);
    let old = before.json["reads"]["product"]["price"].as_str().unwrap().to_string();
    let update = multi_level_on(
        &db,
        &prefix,
        "redis://127.0.0.1:1",
        &[
            "--update",
            "5",
            "--price",
            price_other_than(&old),
            "--connect-timeout",
            "0.5",
        ],
    );
    assert_eq!(update.code, Some(5), "{}", update.stderr);
    assert!(
        update.stderr.starts_with("error: cannot reach Valkey"),
        "{}",
        update.stderr
    );
    let after = multi_level(&db, &prefix, &["--invalidate", "5"]);
    assert_eq!(
        after.json["before"]["price"],
        old.as_str(),
        "the database was not changed"
    );
}

#[tokio::test]
async fn unknown_ids_and_bad_counts_are_rejected_before_anything_is_written() {
    let db = seeded_database(DatabaseKind::MySql, "badinput").await;
    let prefix = TestPrefix::new("badinput");
    let unknown = "error: no product with id 999999; product ids run from 1 to 200\n";
    for args in [
        &["--id", "999999"][..],
        &["--update", "999999", "--price", "5"],
        &["--invalidate", "999999"],
        &["--listen", "--id", "999999", "--duration", "1"],
    ] {
        let run = multi_level(&db, &prefix, args);
        assert_eq!((run.code, run.stderr.as_str()), (Some(6), unknown), "{args:?}");
    }
    // Negative counts are usage errors (exit 2) in every command: tests/counts.rs.
    let cases: [(&[&str], &str); 7] = [
        (&["--requests", "0"], "--requests must be from 1 to 10000000 (got 0)"),
        (&["--skew", "6"], "--skew must be from 0 to 5 (got 6)"),
        (&["--concurrency", "0"], "--concurrency must be from 1 to 1024 (got 0)"),
        (
            &["--keys", "201"],
            "--keys 201 is more than the 200 products; use at most 200",
        ),
        (
            &["--warm", "500"],
            "--warm 500 is more than the 200 products; use at most 200",
        ),
        (&["--id", "0"], "--id must be a positive whole number (got 0)"),
        (
            &["--update", "5", "--price", "abc"],
            "--price 'abc' is not an amount; give one such as 24.99",
        ),
    ];
    for (args, message) in cases {
        let run = multi_level(&db, &prefix, args);
        assert_eq!(
            (run.code, run.stderr.as_str()),
            (Some(6), format!("error: {message}\n").as_str()),
            "{args:?}"
        );
    }
    // Type errors and missing companions are clap's (exit 2).
    assert_eq!(multi_level(&db, &prefix, &["--requests", "many"]).code, Some(2));
    assert_eq!(multi_level(&db, &prefix, &["--listen"]).code, Some(2));
    assert_eq!(multi_level(&db, &prefix, &["--update", "5"]).code, Some(2));
    assert_eq!(prefix.keys(), Vec::<String>::new(), "nothing was written to Valkey");
}
