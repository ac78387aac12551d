//! Exercise 12 and the global `--ttl-jitter` against the real services, on
//! both databases: jitter lowers the peak of misses per second, and every
//! cache write of the workshop (here `multi-level --warm`) gets a jittered TTL.

mod support;

use support::{run_json, seeded_database, valkey_connection, valkey_url, JsonRun, TestDatabase, TestPrefix, BOTH};

fn ttl(db: &TestDatabase, prefix: &TestPrefix, args: &[&str]) -> JsonRun {
    run_json(db, prefix, &valkey_url(), &[&["ttl"], args].concat())
}

#[tokio::test]
async fn jitter_lowers_the_peak_misses_per_second_on_both_databases() {
    for kind in BOTH {
        let db = seeded_database(kind, "ttl_storm").await;
        let prefix = TestPrefix::new("ttl_storm");
        let saved = tempfile::tempdir().unwrap();
        let out = saved.path().join("ttl.json");
        let run = ttl(
            &db,
            &prefix,
            &[
                "--out",
                out.to_str().unwrap(),
                "--ttl",
                "2",
                "--ttl-jitter",
                "50",
                "--keys",
                "150",
                "--rate",
                "1500",
                "--duration",
                "5",
                "--clients",
                "4",
            ],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let scenarios = run.json["scenarios"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", run.json));
        assert_eq!(scenarios.len(), 2, "{}", run.json);
        let (together, jittered) = (&scenarios[0], &scenarios[1]);
        assert_eq!(together["scenario"], "together");
        assert_eq!(together["shortest_lifetime_ms"], 2000.0);
        assert_eq!(jittered["shortest_lifetime_ms"], 1000.0);
        assert_eq!(jittered["longest_lifetime_ms"], 3000.0);
        let peak = |s: &serde_json::Value| s["peak_misses_per_second"].as_u64().unwrap();
        // Every key read after its expiry misses; together, most of them in one second.
        assert!(together["keys_expired"].as_u64().unwrap() >= 140, "{together}");
        assert!(peak(together) >= 100, "{kind:?}: {together}");
        assert!(
            (peak(jittered) as f64) < 0.8 * peak(together) as f64,
            "{kind:?}: jittered peak {} vs together {}",
            peak(jittered),
            peak(together)
        );
        // The first expiries of the jittered keys spread over most of 1..3 s.
        assert!(jittered["first_expiry_spread_s"].as_f64().unwrap() >= 1.0, "{jittered}");
        for scenario in scenarios {
            let per_second: u64 = scenario["seconds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["misses"].as_u64().unwrap())
                .sum();
            assert_eq!(per_second, scenario["misses"].as_u64().unwrap(), "{scenario}");
        }
        // --out: both scenarios as a saved run, one series each, that `plot` draws.
        let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(file["command"], "ttl", "{file}");
        let series = file["series"].as_array().unwrap();
        let names: Vec<&str> = series.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["ttl together", "ttl jittered"], "{file}");
        let reads: f64 = series[0]["requests_per_second"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .sum();
        assert_eq!(reads as u64, together["reads"].as_u64().unwrap(), "{file}");
        let plotted = support::workshop_cli(saved.path())
            .args(["plot", out.to_str().unwrap()])
            .env("COLUMNS", "80")
            .output()
            .unwrap();
        assert_eq!(plotted.status.code(), Some(0), "{}", support::stderr(&plotted));
        assert!(prefix.keys().is_empty(), "left behind: {:?}", prefix.keys());
    }
}

#[tokio::test]
async fn a_run_too_short_to_see_every_key_expire_is_refused() {
    let db = seeded_database(support::BOTH[0], "ttl_short").await;
    let prefix = TestPrefix::new("ttl_short");
    let run = ttl(&db, &prefix, &["--ttl", "4", "--ttl-jitter", "25", "--duration", "5"]);
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "error: --duration 5 s ends before every key has expired once (the longest lifetime is 5.0 s: --ttl 4 s + 25 %); give --duration 7 or more\n"
    );
    assert!(run.stdout.is_empty());
    assert!(prefix.keys().is_empty());
}

#[tokio::test]
async fn a_jitter_above_one_hundred_percent_is_a_configuration_error() {
    let db = TestDatabase::create(support::BOTH[0], "ttl_bad_jitter").await;
    let prefix = TestPrefix::new("ttl_bad_jitter");
    let run = ttl(&db, &prefix, &["--ttl-jitter", "150"]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("CACHE_TTL_JITTER") && run.stderr.contains("a whole percentage from 0 to 100"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

/// The remaining lifetime (ms) of every key under `prefix`.
fn lifetimes(prefix: &TestPrefix) -> Vec<i64> {
    let mut conn = valkey_connection(&valkey_url());
    prefix
        .keys()
        .iter()
        .map(|key| redis::cmd("PTTL").arg(key).query::<i64>(&mut conn).unwrap())
        .collect()
}

#[tokio::test]
async fn the_global_jitter_spreads_the_ttls_of_warmed_keys_on_both_databases() {
    for kind in BOTH {
        let db = seeded_database(kind, "ttl_warm").await;
        let prefix = TestPrefix::new("ttl_warm");
        let run = run_json(
            &db,
            &prefix,
            &valkey_url(),
            &["--ttl", "100", "--ttl-jitter", "50", "multi-level", "--warm", "40"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let ttls = lifetimes(&prefix);
        let products: Vec<i64> = ttls.iter().copied().filter(|t| *t > 0).collect();
        assert!(products.len() >= 40, "{kind:?}: {ttls:?}");
        // 100 s ± 50 %: within 50..150 s (less the seconds the run took), and spread.
        assert!(products.iter().all(|t| (40_000..=150_000).contains(t)), "{ttls:?}");
        let spread = products.iter().max().unwrap() - products.iter().min().unwrap();
        assert!(
            spread > 20_000,
            "40 jittered TTLs spread only {spread} ms: {products:?}"
        );

        let fixed = TestPrefix::new("ttl_fixed");
        let run = run_json(
            &db,
            &fixed,
            &valkey_url(),
            &["--ttl", "100", "multi-level", "--warm", "40"],
        );
        assert_eq!(run.code, Some(0), "{kind:?}: {}", run.stderr);
        let fixed_ttls: Vec<i64> = lifetimes(&fixed).into_iter().filter(|t| *t > 0).collect();
        let spread = fixed_ttls.iter().max().unwrap() - fixed_ttls.iter().min().unwrap();
        assert!(
            fixed_ttls.iter().all(|t| (90_000..=100_000).contains(t)) && spread < 5_000,
            "{fixed_ttls:?}"
        );
    }
}

#[tokio::test]
async fn the_text_tables_fit_eighty_columns() {
    let db = seeded_database(BOTH[1], "ttl_text").await;
    let prefix = TestPrefix::new("ttl_text");
    let dir = tempfile::tempdir().unwrap();
    let output = support::cli_against(
        dir.path(),
        &db.url(),
        &prefix,
        &valkey_url(),
        &[
            "--ttl",
            "1",
            "ttl",
            "--keys",
            "50",
            "--rate",
            "500",
            "--duration",
            "2.5",
            "--clients",
            "2",
        ],
    )
    .output()
    .unwrap();
    let text = support::stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{}", support::stderr(&output));
    assert!(text.contains("Misses per second"), "{text}");
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
    }
}
