//! `workshop-cli plot`: saved runs drawn in the terminal (80 columns,
//! NO_COLOR) and as SVG (one polyline per series and chart, a legend), and
//! every kind of bad file refused with its own line and exit code 6.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::{cli_against, seeded_database, stderr, stdout, valkey_url, workshop_cli, TestPrefix, BOTH};

/// A saved run written by `stats --out` on a real database.
async fn saved_stats_run(kind: workshop_cli::config::DatabaseKind, dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let db = seeded_database(kind, "plot_run").await;
    let prefix = TestPrefix::new("plot_run");
    let out = dir.join(name);
    let output = cli_against(
        dir,
        &db.url(),
        &prefix,
        &valkey_url(),
        &[
            &[
                "stats",
                "--duration",
                "3",
                "--rate",
                "300",
                "--keys",
                "50",
                "--out",
                out.to_str().unwrap(),
            ],
            args,
        ]
        .concat(),
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(0), "{kind:?}: {}", stderr(&output));
    if args.contains(&"--read-ratio") {
        let cleaned = cli_against(dir, &db.url(), &prefix, &valkey_url(), &["clean"])
            .output()
            .unwrap();
        assert!(cleaned.status.success(), "{}", stderr(&cleaned));
    }
    out
}

fn plot(dir: &Path, args: &[&str]) -> std::process::Output {
    workshop_cli(dir)
        .env("NO_COLOR", "1")
        .arg("plot")
        .args(args)
        .output()
        .unwrap()
}

fn columns(line: &str) -> usize {
    line.chars().count()
}

/// A small saved run written by hand, in the documented format.
fn handmade(dir: &Path, name: &str, document: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(document).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

fn valid_document() -> Value {
    json!({
        "format": "workshop-cli saved run",
        "version": 1,
        "command": "stats",
        "saved_at": "2026-12-01T22:00:00Z",
        "options": {},
        "series": [{
            "name": "stats",
            "second": [0, 1, 2],
            "requests_per_second": [100.0, 200.0, 150.0],
            "hit_rate": [0.5, 0.8, 0.9],
            "p50_ms": [0.1, 0.2, 0.1],
            "p99_ms": [1.0, 2.0, 1.5]
        }]
    })
}

#[tokio::test]
async fn saved_runs_are_drawn_in_80_columns_and_compared_in_one_svg() {
    for kind in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let a = saved_stats_run(kind, dir.path(), "a.json", &[]).await;
        let b = saved_stats_run(
            kind,
            dir.path(),
            "b.json",
            &["--read-ratio", "80", "--write-mode", "invalidate"],
        )
        .await;
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

        let output = plot(dir.path(), &[a]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let text = stdout(&output);
        assert!(!text.contains('\x1b'), "NO_COLOR: no escape codes");
        for title in ["requests per second", "hit rate %", "p50 latency ms", "p99 latency ms"] {
            assert!(text.contains(title), "{title} missing:\n{text}");
        }
        // Braille dots drawn (a blank cell is U+2800).
        assert!(text.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)), "{text}");
        for line in text.lines() {
            assert!(columns(line) <= 80, "{} columns: {line:?}", columns(line));
        }

        let svg = dir.path().join("ab.svg");
        let output = plot(dir.path(), &[a, b, "--svg", svg.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        assert!(stdout(&output).starts_with("wrote "), "{}", stdout(&output));
        let text = std::fs::read_to_string(&svg).unwrap();
        let document = roxmltree::Document::parse(&text).expect("the SVG is XML");
        assert_eq!(document.root_element().tag_name().name(), "svg");
        // Four charts, two series in each: the 2 px lines (axes and ticks are 1 px).
        let series_lines = document
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
            .count();
        assert_eq!(series_lines, 4 * 2, "{kind:?}");
        let legend: Vec<&str> = document
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        for file in [a, b] {
            let label = format!("{file} (stats)");
            assert_eq!(
                legend.iter().filter(|t| t.trim() == label).count(),
                4,
                "{label} once per chart: {legend:?}"
            );
        }
    }
}

#[test]
fn bad_files_are_refused_by_name_with_exit_6() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let not_a_run = handmade(dir.path(), "outcome.json", &json!({"exercise": "stats", "run": {}}));
    let mut newer = valid_document();
    newer["version"] = json!(2);
    let newer = handmade(dir.path(), "newer.json", &newer);
    let mut cut = valid_document();
    cut["series"][0]["p99_ms"] = json!([1.0, 2.0]);
    let cut = handmade(dir.path(), "cut.json", &cut);
    let good = handmade(dir.path(), "good.json", &valid_document());
    let cases = [
        (
            vec![missing.to_str().unwrap().to_string()],
            format!(
                "error: cannot read {0}: no such file; give a file saved with `--out` (e.g. `workshop-cli stats --out {0}`)",
                missing.display()
            ),
        ),
        (
            vec![not_a_run.clone()],
            format!("error: {not_a_run} is not a saved run (no \"format\": \"workshop-cli saved run\"); save one with e.g. `workshop-cli stats --duration 10 --out run.json`"),
        ),
        (
            vec![good.clone(), newer.clone()],
            format!("error: {newer} is a saved run of version 2; this workshop-cli reads version 1: save the run again with it"),
        ),
        (
            vec![cut.clone()],
            format!("error: {cut}: series \"stats\" has 3 seconds but 2 p99_ms values; the file was cut or edited, save the run again"),
        ),
    ];
    for (files, message) in cases {
        let args: Vec<&str> = files.iter().map(String::as_str).collect();
        let output = plot(dir.path(), &args);
        assert_eq!(output.status.code(), Some(6), "{files:?}: {}", stderr(&output));
        assert_eq!(stderr(&output).trim(), message);
        assert_eq!(stdout(&output), "", "nothing drawn");
    }
    let png = dir.path().join("out.png");
    let output = plot(dir.path(), &[&good, "--png", png.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    assert!(stderr(&output).contains("is not built in"), "{}", stderr(&output));
    assert!(!png.exists());
    let output = plot(dir.path(), &[&good, "--svg", "/nonexistent-folder/x.svg"]);
    assert_eq!(output.status.code(), Some(6), "{}", stderr(&output));
    let output = plot(dir.path(), &[]);
    assert_eq!(output.status.code(), Some(2), "no file is a usage error");
    let output = plot(dir.path(), &[&good, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let listed: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(listed[0]["series"][0]["second"], json!([0, 1, 2]));
}
