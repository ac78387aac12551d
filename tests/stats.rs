//! Exercise 3 (`stats`) against the real services, on both databases:
//! counters that add up, Prometheus output that parses, eviction on a
//! private Valkey whose settings are restored (also after Ctrl-C), and a
//! Valkey outage in the middle of a run.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    cli_against, seeded_database, stderr, stdout, valkey_url, wait_until, wait_until_quiet, workshop_cli, JsonRun,
    PrivateValkey, TestDatabase, TestPrefix, BOTH,
};

/// The binary set up for `stats` in an empty folder (kept alive with the command).
fn command(db: &TestDatabase, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> (Command, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let command = cli_against(dir.path(), &db.url(), prefix, valkey, &[&["stats"], args].concat());
    (command, dir)
}

fn stats_on(db: &TestDatabase, prefix: &TestPrefix, valkey: &str, args: &[&str]) -> JsonRun {
    let (mut command, _dir) = command(db, prefix, valkey, args);
    JsonRun::from_output(&command.output().unwrap())
}

fn stats(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    stats_on(db, prefix, &valkey_url(), args)
}

/// A database seeded at `scale` (10,000 products per 1.0) through the binary.
async fn seeded_at(kind: workshop_cli::config::DatabaseKind, label: &str, scale: &str) -> TestDatabase {
    let db = TestDatabase::create(kind, label).await;
    let dir = tempfile::tempdir().unwrap();
    let output = workshop_cli(dir.path())
        .env("DATABASE_URL", db.url())
        .args(["seed", "--scale", scale])
        .output()
        .unwrap();
    assert!(output.status.success(), "seed failed: {}", stderr(&output));
    db
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a count: {value}"))
}

/// Runs a command on a server and returns the reply, e.g. CONFIG GET.
fn query(url: &str, args: &[&str]) -> redis::Value {
    let mut conn = support::valkey_connection(url);
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(&mut conn).unwrap()
}

fn config_get(url: &str, name: &str) -> String {
    let reply: Vec<String> = redis::from_redis_value(query(url, &["CONFIG", "GET", name])).unwrap();
    assert_eq!(reply.len(), 2, "{reply:?}");
    reply[1].clone()
}

fn used_memory(url: &str) -> u64 {
    let info: String = redis::from_redis_value(query(url, &["INFO", "memory"])).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("workshop-cli did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_counters_add_up_with_and_without_l1() {
    for kind in BOTH {
        let db = seeded_database(kind, "stats_counts").await;
        let prefix = TestPrefix::new("stats_counts");
        let run = stats(
            &db,
            &prefix,
            &["--json", "--requests", "3000", "--keys", "200", "--concurrency", "4"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let r = &run.json["run"];
        let c = &r["counters"];
        assert_eq!(number(&r["requests"]), 3000);
        assert_eq!(number(&c["l1_hits"]) + number(&c["l1_misses"]), 3000, "{c}");
        assert_eq!(
            number(&c["l2_hits"]) + number(&c["l2_misses"]),
            number(&c["l1_misses"]),
            "every L1 miss asks Valkey: {c}"
        );
        assert_eq!(number(&c["database_loads"]), number(&c["l2_misses"]), "{c}");
        assert_eq!(number(&c["l2_errors"]), 0);
        let served = &r["served"];
        assert_eq!(number(&served["l1"]), number(&c["l1_hits"]));
        assert_eq!(number(&served["l2"]), number(&c["l2_hits"]));
        assert_eq!(number(&served["database"]), number(&c["database_loads"]));
        assert_eq!(number(&r["latency"]["all"]["count"]), 3000);
        // An L1 hit is under a millisecond: the µs figures show it (not 0.000 ms).
        let l1_us = &r["latency_us"]["l1"];
        assert_eq!(l1_us["count"], r["latency"]["l1"]["count"]);
        assert!(l1_us["p50_us"].as_f64().unwrap() > 0.0, "{l1_us}");
        let per_second: u64 = r["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| number(&s["requests"]))
            .sum();
        assert_eq!(per_second, 3000);
        let overall = r["hit_rate"]["overall"].as_f64().unwrap();
        let expected = (number(&c["l1_hits"]) + number(&c["l2_hits"])) as f64 / 3000.0;
        assert!((overall - expected).abs() < 1e-9);
        // A fresh prefix: the first request of each key missed both layers.
        assert!(number(&c["database_loads"]) > 0);
        let keys = &run.json["valkey"]["workshop_keys"];
        assert!((1..=200).contains(&number(&keys["keys"])), "{keys}");
        assert_eq!(keys["keys"].as_u64().unwrap() as usize, prefix.keys().len());
        assert!(number(&keys["memory_bytes"]) > 0);
        assert!(number(&run.json["valkey"]["used_memory_bytes"]) > 0);

        // Again without L1: no L1 lookups at all, and Valkey has what the first run stored.
        let run = stats(
            &db,
            &prefix,
            &["--json", "--requests", "1000", "--keys", "200", "--no-l1"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let r = &run.json["run"];
        let c = &r["counters"];
        assert_eq!((number(&c["l1_hits"]), number(&c["l1_misses"])), (0, 0), "{c}");
        assert_eq!(number(&r["served"]["l1"]), 0);
        assert_eq!(number(&c["l2_hits"]) + number(&c["l2_misses"]), 1000, "{c}");
        assert!(number(&c["l2_hits"]) > 0);
        assert_eq!(r["hit_rate"]["l1"], Value::Null);
        assert_eq!(r["l1_size"], Value::Null);
        assert_eq!(run.json["settings"]["l1"], false);
    }
}

/// One sample line of the exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `{name="value",...}`: strict, with the format's escapes; returns the labels and the rest of the line.
fn parse_labels(text: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').unwrap();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let eq = rest.find('=').unwrap_or_else(|| panic!("no = in {text}"));
        let name = &rest[..eq];
        assert!(is_label_name(name), "bad label name {name:?} in {text}");
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .unwrap_or_else(|| panic!("unquoted value in {text}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => panic!("bad escape {other:?} in {text}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated value in {text}"),
            }
        };
        assert!(
            labels.insert(name.to_string(), value).is_none(),
            "label {name} twice in {text}"
        );
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else {
            assert!(rest.starts_with('}'), "expected , or }} in {text}");
        }
    }
}

fn parse_value(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => text.parse().unwrap_or_else(|_| panic!("bad value {text:?}")),
    }
}

/// A strict reader of the text exposition format: every sample belongs to a
/// family declared by `# TYPE` before it; HELP and TYPE at most once each.
fn parse_exposition(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "no blank lines expected");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(is_metric_name(name), "{line}");
            assert!(!help.is_empty());
            assert!(helped.insert(name.to_string()), "HELP twice for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(is_metric_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line}"
            );
        } else {
            assert!(!line.starts_with('#'), "unknown comment {line}");
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            assert!(is_metric_name(name), "{line}");
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..])
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no value in {line}"));
            assert!(!value.contains(' '), "a timestamp or junk after the value: {line}");
            let family = types
                .keys()
                .filter(|family| {
                    name == family.as_str()
                        || ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|suffix| name == format!("{family}{suffix}"))
                })
                .max_by_key(|family| family.len())
                .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
            if name != family {
                assert_eq!(types[family], "histogram", "suffix on a non-histogram: {line}");
            }
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value: parse_value(value),
            });
        }
    }
    (types, samples)
}

#[tokio::test]
async fn the_prometheus_output_parses_and_its_histogram_counts_every_request() {
    for kind in BOTH {
        let db = seeded_database(kind, "stats_prom").await;
        let prefix = TestPrefix::new("stats_prom");
        let run = stats(
            &db,
            &prefix,
            &["--format", "prometheus", "--requests", "1500", "--keys", "200"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let (types, samples) = parse_exposition(&run.stdout);
        assert_eq!(types["cache_hits_total"], "counter");
        assert_eq!(types["cache_misses_total"], "counter");
        assert_eq!(types["request_duration_seconds"], "histogram");
        assert_eq!(types["cache_size_bytes"], "gauge");

        let value = |name: &str, label: &str, wanted: &str| {
            samples
                .iter()
                .find(|s| s.name == name && s.labels.get(label).map(String::as_str) == Some(wanted))
                .unwrap_or_else(|| panic!("no {name}{{{label}=\"{wanted}\"}}"))
                .value
        };
        let l1_hits = value("cache_hits_total", "cache_type", "l1");
        let l1_misses = value("cache_misses_total", "cache_type", "l1");
        assert_eq!(l1_hits + l1_misses, 1500.0);
        assert!(value("cache_size_bytes", "cache_type", "l1") > 0.0);
        assert!(value("cache_size_bytes", "cache_type", "l2") > 0.0);

        // Every histogram series: buckets ascending by le, cumulative, ending at +Inf = _count.
        let mut total = 0.0;
        for source in ["l1", "l2", "database"] {
            let buckets: Vec<(f64, f64)> = samples
                .iter()
                .filter(|s| s.name == "request_duration_seconds_bucket" && s.labels["source"] == source)
                .map(|s| (parse_value(&s.labels["le"]), s.value))
                .collect();
            assert!(buckets.len() >= 2, "{source}: {buckets:?}");
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0), "le ascending: {buckets:?}");
            assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {buckets:?}");
            let (last_le, last_count) = *buckets.last().unwrap();
            assert_eq!(last_le, f64::INFINITY);
            let count = value("request_duration_seconds_count", "source", source);
            assert_eq!(last_count, count, "{source}: +Inf bucket == _count");
            assert!(value("request_duration_seconds_sum", "source", source) >= 0.0);
            total += count;
        }
        assert_eq!(total, 1500.0, "_count over the sources is every request");
        assert_eq!(value("request_duration_seconds_count", "source", "l1"), l1_hits);
    }
}

#[tokio::test]
async fn eviction_runs_change_maxmemory_only_while_they_run_and_evict_keys() {
    for kind in BOTH {
        // 1000 products of about 320 bytes each in Valkey: more than the limit below leaves room for.
        let db = seeded_at(kind, "stats_evict", "0.1").await;
        let server = PrivateValkey::start();
        let prefix = TestPrefix::on("stats_evict", &server.url());
        server.command(&["CONFIG", "SET", "maxmemory-policy", "volatile-ttl"]);
        // Above what the empty server uses: the run's two connections take about 60 KB,
        // which leaves room for about a third of the products.
        let limit = used_memory(&server.url()) + 160_000;
        let limit_text = limit.to_string();
        let run = stats_on(
            &db,
            &prefix,
            &server.url(),
            &[
                "--json",
                "--maxmemory",
                &limit_text,
                "--policy",
                "allkeys-lru",
                "--policy",
                "allkeys-lfu",
                "--requests",
                "3000",
                "--keys",
                "1000",
            ],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let eviction = &run.json["eviction"];
        assert_eq!(eviction["previous"]["maxmemory"], "0");
        assert_eq!(eviction["previous"]["maxmemory_policy"], "volatile-ttl");
        assert_eq!(eviction["restored"], true);
        let runs = eviction["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        for (policy, run) in ["allkeys-lru", "allkeys-lfu"].iter().zip(runs) {
            assert_eq!(run["policy"], *policy);
            // Read from INFO right after the run: the limit was in force.
            assert_eq!(number(&run["valkey"]["maxmemory_bytes"]), limit);
            assert_eq!(run["valkey"]["maxmemory_policy"], *policy);
            assert!(
                number(&run["valkey"]["evicted_keys"]) > 0,
                "{policy}: {}",
                run["valkey"]
            );
            assert_eq!(number(&run["run"]["requests"]), 3000);
            // How many survive depends on the connections' buffers, which share
            // the limit; what matters is that the limit cut the data set.
            let keys_after = number(&run["valkey"]["workshop_keys"]["keys"]);
            assert!(keys_after < 1000, "{policy}: {keys_after} keys left");
            assert_eq!(number(&run["run"]["counters"]["l1_hits"]), 0, "L1 is off for eviction");
        }
        assert_eq!(config_get(&server.url(), "maxmemory"), "0");
        assert_eq!(config_get(&server.url(), "maxmemory-policy"), "volatile-ttl");
    }
}

#[tokio::test]
async fn ctrl_c_during_an_eviction_run_restores_the_settings_and_exits_8() {
    for kind in BOTH {
        let db = seeded_database(kind, "stats_sigint").await;
        let server = PrivateValkey::start();
        let prefix = TestPrefix::on("stats_sigint", &server.url());
        server.command(&["CONFIG", "SET", "maxmemory-policy", "volatile-lfu"]);
        let (mut command, _dir) = command(
            &db,
            &prefix,
            &server.url(),
            &[
                "--json",
                "--maxmemory",
                "4mb",
                "--policy",
                "allkeys-lru",
                "--duration",
                "60",
                "--rate",
                "200",
                "--keys",
                "200",
            ],
        );
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();

        let started = Instant::now();
        while config_get(&server.url(), "maxmemory") != "4194304" {
            assert!(started.elapsed() < Duration::from_secs(20), "maxmemory was never set");
            assert!(child.try_wait().unwrap().is_none(), "exited before the run started");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(config_get(&server.url(), "maxmemory-policy"), "allkeys-lru");
        std::thread::sleep(Duration::from_millis(300));
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = wait_for_exit(&mut child, Duration::from_secs(15));
        let output = child.wait_with_output().unwrap();
        assert_eq!(status.code(), Some(8), "{kind:?}: {}", stderr(&output));
        assert_eq!(
            stderr(&output),
            "error: interrupted by Ctrl-C (SIGINT) during the allkeys-lru run; Valkey's maxmemory 0 and maxmemory-policy volatile-lfu were restored\n"
        );
        assert_eq!(config_get(&server.url(), "maxmemory"), "0");
        assert_eq!(config_get(&server.url(), "maxmemory-policy"), "volatile-lfu");
    }
}

#[tokio::test]
async fn ctrl_c_in_the_second_policy_run_still_shows_the_first_and_exits_8() {
    let db = seeded_database(workshop_cli::config::DatabaseKind::Postgres, "stats_partial").await;
    let server = PrivateValkey::start();
    let prefix = TestPrefix::on("stats_partial", &server.url());
    let (mut command, _dir) = command(
        &db,
        &prefix,
        &server.url(),
        &[
            "--json",
            "--maxmemory",
            "4mb",
            "--policy",
            "allkeys-lru,allkeys-lfu",
            "--duration",
            "2",
            "--rate",
            "200",
            "--keys",
            "200",
        ],
    );
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while config_get(&server.url(), "maxmemory-policy") != "allkeys-lfu" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the second run never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "exited before the second run");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = wait_for_exit(&mut child, Duration::from_secs(15));
    let output = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(8), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "error: interrupted by Ctrl-C (SIGINT) during the allkeys-lfu run; Valkey's maxmemory 0 and maxmemory-policy noeviction were restored\n"
    );
    let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let runs = json["eviction"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "the finished run is shown");
    assert_eq!(runs[0]["policy"], "allkeys-lru");
    assert!(number(&runs[0]["run"]["requests"]) > 100);
    assert_eq!(config_get(&server.url(), "maxmemory"), "0");
    assert_eq!(config_get(&server.url(), "maxmemory-policy"), "noeviction");
}

#[tokio::test]
async fn valkey_stopping_mid_workload_fails_no_request() {
    for kind in BOTH {
        let db = seeded_database(kind, "stats_outage").await;
        let mut server = PrivateValkey::start();
        let prefix = TestPrefix::on("stats_outage", &server.url());
        let (mut command, _dir) = command(
            &db,
            &prefix,
            &server.url(),
            &[
                "--json",
                "--duration",
                "4",
                "--rate",
                "300",
                "--keys",
                "200",
                "--l1-capacity",
                "20",
            ],
        );
        let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // A product is cached: the workload is under way.
        assert!(wait_until(Duration::from_secs(20), || !prefix.keys().is_empty()));
        server.kill();
        // The child knocks on the dead port: it has seen the outage.
        assert!(
            server.wait_for_a_reconnect(Duration::from_secs(10)),
            "{kind:?}: no reconnect"
        );
        server.restart();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {}", stderr(&output));
        let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
        let r = &json["run"];
        let c = &r["counters"];
        let requests = number(&r["requests"]);
        assert!(requests > 800, "the run went on for its 4 s: {requests}");
        let served = &r["served"];
        assert_eq!(
            number(&served["l1"]) + number(&served["l2"]) + number(&served["database"]),
            requests,
            "every request was answered"
        );
        assert_eq!(number(&c["l1_hits"]) + number(&c["l1_misses"]), requests);
        assert!(number(&c["l2_errors"]) > 0, "the outage shows as L2 errors: {c}");
        assert!(
            stderr(&output).contains("those reads went to the database and no request failed"),
            "{}",
            stderr(&output)
        );
        // The server came back empty, with new counters: no deltas are claimed.
        assert_eq!(json["valkey"]["restarted"], true, "{}", json["valkey"]);
        assert_eq!(json["valkey"]["keyspace_hits"], Value::Null);
    }
}

#[tokio::test]
async fn a_hung_valkey_opens_the_breaker_the_timeline_shows_it_and_hits_resume() {
    for kind in BOTH {
        let db = seeded_database(kind, "stats_hung").await;
        let server = PrivateValkey::start();
        let prefix = TestPrefix::on("stats_hung", &server.url());
        let (mut command, _dir) = command(
            &db,
            &prefix,
            &server.url(),
            &["--json", "--duration", "6", "--rate", "400", "--no-l1", "--keys", "50"],
        );
        let started = Instant::now();
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        assert!(wait_until(Duration::from_secs(20), || !prefix.keys().is_empty()));
        server.pause();
        // Commands pile up unread, then stop coming (the breaker is open),
        // until one probe is sent at the end of the cool-down.
        let quiet = wait_until_quiet(Duration::from_secs(10), Duration::from_millis(500), || {
            server.unread_bytes()
        })
        .expect("the child stops sending to the hung server");
        assert!(
            wait_until(Duration::from_secs(10), || server.unread_bytes() > quiet),
            "{kind:?}: no probe"
        );
        assert!(child.try_wait().unwrap().is_none(), "{kind:?}: the run was still going");
        server.resume();
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{kind:?}: {}", stderr(&output));
        // 6 s of workload, not 2 s per read while Valkey hung.
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "{kind:?}: {:?}",
            started.elapsed()
        );
        let json: Value = serde_json::from_str(&stdout(&output)).unwrap();
        let r = &json["run"];
        let requests = number(&r["requests"]);
        let served = &r["served"];
        assert_eq!(
            number(&served["l2"]) + number(&served["database"]),
            requests,
            "no request failed"
        );
        let faults = &r["valkey_faults"];
        assert!(number(&faults["openings"]) >= 1, "{faults}");
        assert!(number(&faults["skipped"]) > 0, "{faults}");
        let timeline = r["timeline"].as_array().unwrap();
        let opened_in: Vec<u64> = timeline
            .iter()
            .filter(|s| number(&s["valkey_faults"]["openings"]) > 0)
            .map(|s| number(&s["second"]))
            .collect();
        assert!(!opened_in.is_empty(), "the timeline shows the openings: {timeline:?}");
        let per_second: u64 = timeline.iter().map(|s| number(&s["valkey_faults"]["openings"])).sum();
        assert_eq!(per_second, number(&faults["openings"]), "the seconds add up to the run");
        let last_opening = *opened_in.last().unwrap() as usize;
        assert!(
            timeline[last_opening + 1..].iter().any(|s| number(&s["hits"]) > 0),
            "hits resume after the outage: {timeline:?}"
        );
        let err = stderr(&output);
        assert!(err.contains("warning: Valkey stopped answering: "), "{err}");
    }
}

#[test]
fn bad_input_is_rejected_before_anything_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["--skew", "7"], "error: --skew must be from 0 (uniform) to 5 (got 7)\n"),
        (&["--skew", "-0.5"], "error: --skew must be from 0 (uniform) to 5 (got -0.5)\n"),
        (&["--concurrency", "0"], "error: --concurrency must be from 1 to 1024 (got 0)\n"),
        (&["--requests", "0"], "error: --requests must be from 1 to 10000000 (got 0)\n"),
        // Negative counts are usage errors (exit 2) in every command: tests/counts.rs.
        (
            &["--maxmemory", "2 megs"],
            "error: --maxmemory '2 megs' is not a size; use bytes or a whole number with kb, mb or gb (e.g. 2mb, 512kb, 1048576)\n",
        ),
        (
            &["--maxmemory", "2mb", "--policy", "allkeys-lru,lru"],
            "error: unknown eviction policy 'lru'; use one of: noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl\n",
        ),
        (
            &["--json", "--format", "prometheus"],
            "error: --json and --format prometheus ask for two formats; give one of them\n",
        ),
        (
            &["--duration", "-3"],
            "error: --duration must be more than 0 and at most 3600 seconds (got -3)\n",
        ),
    ];
    for (args, expected) in cases {
        // No server is asked: the URLs point nowhere.
        let output = workshop_cli(dir.path())
            .env("DATABASE_URL", "mysql://nobody:nothing@127.0.0.1:1/none")
            .env("VALKEY_URL", "redis://127.0.0.1:1")
            .arg("stats")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(6), "{args:?}: {}", stderr(&output));
        assert_eq!(stderr(&output), expected, "{args:?}");
        assert!(output.stdout.is_empty());
    }
}

#[tokio::test]
async fn eviction_is_refused_when_valkey_holds_keys_outside_the_prefix() {
    let db = seeded_database(workshop_cli::config::DatabaseKind::Postgres, "stats_foreign").await;
    let server = PrivateValkey::start();
    let prefix = TestPrefix::on("stats_foreign", &server.url());
    server.command(&["CONFIG", "SET", "maxmemory-policy", "volatile-ttl"]);
    server.command(&["SET", "someone:else:1", "precious"]);
    server.command(&["SET", "someone:else:2", "precious"]);
    let run = stats_on(&db, &prefix, &server.url(), &["--json", "--maxmemory", "2mb"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "error: Valkey holds 2 keys outside the prefix '{}'; eviction under --maxmemory would remove them too: add --private-valkey (a valkey-server of its own, for this run only) or point VALKEY_URL at a Valkey of its own\n",
            prefix.source(&db)
        )
    );
    assert_eq!(config_get(&server.url(), "maxmemory"), "0");
    assert_eq!(config_get(&server.url(), "maxmemory-policy"), "volatile-ttl");
    assert!(prefix.keys().is_empty(), "nothing was written");
}

#[tokio::test]
async fn eviction_is_refused_while_write_behind_writes_wait_unflushed() {
    let db = seeded_database(workshop_cli::config::DatabaseKind::MySql, "stats_pending").await;
    let server = PrivateValkey::start();
    let prefix = TestPrefix::on("stats_pending", &server.url());
    let stream = format!("{}{{write-behind}}", prefix.source(&db));
    server.command(&["XADD", &stream, "*", "passenger", "1"]);
    server.command(&["XADD", &stream, "*", "passenger", "2"]);
    server.command(&["XADD", &stream, "*", "passenger", "3"]);
    let run = stats_on(&db, &prefix, &server.url(), &["--json", "--maxmemory", "2mb"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "error: 3 acknowledged writes wait in the write-behind stream {stream}; flush them first (`workshop-cli write-behind --flush-only`) — eviction could remove them\n"
        )
    );
    assert_eq!(config_get(&server.url(), "maxmemory"), "0");
    assert_eq!(prefix.keys(), vec![stream], "only the stream, untouched");
}

#[tokio::test]
async fn more_keys_than_products_is_rejected_with_the_catalogue_size() {
    let db = seeded_database(workshop_cli::config::DatabaseKind::Postgres, "stats_keys").await;
    let prefix = TestPrefix::new("stats_keys");
    let run = stats(&db, &prefix, &["--keys", "5000"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "error: --keys 5000 is more than the products in the database (ids 1 to 200); use --keys 200 or less, or seed a larger --scale\n"
    );
    assert!(prefix.keys().is_empty(), "nothing was written");
}

#[tokio::test]
async fn private_valkey_runs_the_eviction_on_a_server_of_its_own_and_stops_it() {
    for kind in BOTH {
        // 5,000 products of about 350 bytes; an empty server uses about 1.3 MB, so a
        // 1,500 KiB limit leaves room for a few hundred of the keys 3,000 requests touch.
        let db = seeded_at(kind, "stats_private", "0.5").await;
        // The configured Valkey holds someone else's keys: a shared server
        // refuses --maxmemory (test above); --private-valkey leaves it alone.
        let shared = PrivateValkey::start();
        let prefix = TestPrefix::on("stats_private", &shared.url());
        shared.command(&["SET", "someone:else:1", "precious"]);
        let run = stats_on(
            &db,
            &prefix,
            &shared.url(),
            &[
                "--json",
                "--maxmemory",
                "1500kb",
                "--policy",
                "allkeys-lru",
                "--requests",
                "3000",
                "--private-valkey",
            ],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let address = run.json["private_valkey"]
            .as_str()
            .expect("the private server's address");
        let port: u16 = address.strip_prefix("127.0.0.1:").unwrap().parse().unwrap();
        assert_ne!(port, shared.port, "{kind:?}");
        let runs = run.json["eviction"]["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(number(&runs[0]["valkey"]["maxmemory_bytes"]), 1500 * 1024);
        assert!(number(&runs[0]["valkey"]["evicted_keys"]) > 0, "{kind:?}: {}", runs[0]);
        // Stopped with the run, and the configured server was never touched.
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "{kind:?}: the private valkey-server still runs"
        );
        assert_eq!(config_get(&shared.url(), "maxmemory"), "0");
        assert_eq!(
            query(&shared.url(), &["GET", "someone:else:1"]),
            redis::Value::BulkString(b"precious".to_vec())
        );
        assert!(prefix.keys().is_empty(), "{kind:?}: the shared Valkey got cache keys");
    }
}
