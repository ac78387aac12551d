//! Renders a `seed` report (tables, rows, rows per second).

use std::time::Duration;

use serde_json::{json, Value};

use super::table::{align_right, count, ms, new_table};
use super::Output;
use crate::fixtures::{SeedOutcome, SeedRecord, SeedReport};

const RESET_HINT: &str = "Run `workshop-cli seed --reset` to drop the workshop tables and load them again.";
const IMPORT_RESET_HINT: &str =
    "Run `workshop-cli seed --reset` to rebuild the workshop's own tables; imported tables are never dropped.";

fn seconds(value: Duration) -> String {
    format!("{:.1} s", value.as_secs_f64())
}

fn rate(rows_per_second: Option<f64>) -> String {
    rows_per_second.map_or_else(String::new, |r| count(r.round() as u64))
}

/// Rust prints floats shortest-first: 1 not 1.0, 0.02 not 0.0200000000000000004.
fn scale_text(scale: f64) -> String {
    format!("{scale}")
}

fn describe(record: &SeedRecord) -> String {
    format!(
        "scale {}, generator v{}, seeded {} UTC",
        scale_text(record.scale),
        record.generator_version,
        record.seeded_at.format("%Y-%m-%d %H:%M:%S")
    )
}

/// The one-line summary, also the JSON `message`.
pub fn message(report: &SeedReport) -> String {
    let database = report.database.label();
    match report.outcome {
        SeedOutcome::Seeded => format!(
            "Seeded {database} at {} with {} rows in {} (scale {}).",
            report.target,
            count(report.total_rows()),
            seconds(report.elapsed),
            scale_text(report.requested_scale)
        ),
        SeedOutcome::AlreadySeeded if !report.imported_tables.is_empty() => {
            let held = report.record.as_ref().map(describe).unwrap_or_default();
            format!(
                "Already seeded: {database} at {} holds the workshop's own tables ({}; {held}) next to the imported {}; nothing changed.",
                report.target,
                own_tables(report),
                report.imported_tables.join(", ")
            )
        }
        SeedOutcome::AlreadySeeded => {
            let held = report.record.as_ref().map(describe).unwrap_or_default();
            format!("Already seeded: {database} at {} holds the workshop data ({held}); nothing changed.", report.target)
        }
        SeedOutcome::LeftUntouched => format!(
            "Left untouched: {database} at {} has workshop tables that `workshop-cli seed` did not create; nothing changed, and the workshop's queries run against them as they are.",
            report.target
        ),
        SeedOutcome::AddedToImport => format!(
            "Added the workshop's own tables ({}, {} rows) to the FlughafenDB import in {database} at {} in {}; the imported tables ({}) were left as they are.",
            own_tables(report),
            count(report.total_rows()),
            report.target,
            seconds(report.elapsed),
            if report.imported_tables.is_empty() {
                "none".to_string()
            } else {
                report.imported_tables.join(", ")
            }
        ),
    }
}

fn own_tables(report: &SeedReport) -> String {
    report.tables.iter().map(|t| t.table).collect::<Vec<_>>().join(", ")
}

/// Follow-up advice, if any.
pub fn notes(report: &SeedReport) -> Vec<String> {
    let mut notes = Vec::new();
    match report.outcome {
        SeedOutcome::Seeded => {}
        SeedOutcome::AddedToImport => {
            if !report.missing_tables.is_empty() {
                notes.push(format!(
                    "The import has no {}: exercises that read them will fail (`workshop-cli check-env` says which).",
                    report.missing_tables.join(", ")
                ));
            }
        }
        SeedOutcome::AlreadySeeded => {
            if let Some(record) = &report.record {
                if record.scale != report.requested_scale {
                    let asked = scale_text(report.requested_scale);
                    notes.push(format!(
                        "You asked for scale {asked}; run `workshop-cli seed --reset --scale {asked}` to load that instead."
                    ));
                }
                if record.generator_version != crate::fixtures::generate::GENERATOR_VERSION {
                    notes.push(format!(
                        "This data came from generator v{}; this build makes v{}: `workshop-cli seed --reset` loads the current data.",
                        record.generator_version,
                        crate::fixtures::generate::GENERATOR_VERSION
                    ));
                }
            }
            notes.push(if report.imported_tables.is_empty() {
                RESET_HINT.to_string()
            } else {
                IMPORT_RESET_HINT.to_string()
            });
        }
        SeedOutcome::LeftUntouched => {
            if !report.missing_tables.is_empty() {
                notes.push(format!(
                    "Not there: {}. Exercises that read them will fail on this database.",
                    report.missing_tables.join(", ")
                ));
            }
            notes.push(
                "To load the generated data instead, point DATABASE_URL at an empty database and run `workshop-cli seed`."
                    .to_string(),
            );
        }
    }
    notes
}

pub fn show(report: &SeedReport, output: &Output) {
    if output.json {
        output.json_document(&to_json(report));
        return;
    }
    output.heading(&message(report));
    let loaded = matches!(report.outcome, SeedOutcome::Seeded | SeedOutcome::AddedToImport);
    let header: &[&str] = if loaded {
        &["table", "rows", "load (ms)", "rows/s"]
    } else {
        &["table", "rows"]
    };
    let mut table = new_table(output, header);
    for t in &report.tables {
        let rows = t.rows.map_or_else(|| "not counted".to_string(), count);
        if loaded {
            table.add_row(vec![
                t.table.to_string(),
                rows,
                t.load_time.map(ms).unwrap_or_default(),
                rate(t.rows_per_second()),
            ]);
        } else {
            table.add_row(vec![t.table.to_string(), rows]);
        }
    }
    if loaded {
        let load_time = report.load_time();
        table.add_row(vec![
            "total".to_string(),
            count(report.total_rows()),
            ms(load_time),
            rate(per_second(report.total_rows(), load_time)),
        ]);
        align_right(&mut table, &[1, 2, 3]);
    } else {
        align_right(&mut table, &[1]);
    }
    output.text(table);
    if loaded {
        let steps: Vec<String> = report
            .steps
            .iter()
            .map(|s| format!("{} {} ms", s.step, ms(s.elapsed)))
            .collect();
        output.text(format!("Also: {}.", steps.join(" · ")));
    }
    for note in notes(report) {
        output.text(note);
    }
}

fn per_second(rows: u64, elapsed: Duration) -> Option<f64> {
    let seconds = elapsed.as_secs_f64();
    (seconds > 0.0).then(|| rows as f64 / seconds)
}

fn millis(value: Duration) -> f64 {
    (value.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn rounded(value: Option<f64>) -> Value {
    value.map_or(Value::Null, |v| json!(v.round() as u64))
}

pub fn to_json(report: &SeedReport) -> Value {
    let tables: Vec<Value> = report
        .tables
        .iter()
        .map(|t| {
            json!({
                "table": t.table,
                "rows": t.rows,
                "load_ms": t.load_time.map(millis),
                "rows_per_second": rounded(t.rows_per_second()),
            })
        })
        .collect();
    let steps: Vec<Value> = report
        .steps
        .iter()
        .map(|s| json!({ "step": s.step, "elapsed_ms": millis(s.elapsed) }))
        .collect();
    let load_time = report.load_time();
    let loaded = matches!(report.outcome, SeedOutcome::Seeded | SeedOutcome::AddedToImport);
    json!({
        "outcome": report.outcome,
        "message": message(report),
        "notes": notes(report),
        "database": report.database,
        "target": report.target,
        "requested_scale": report.requested_scale,
        "scale": report.record.map(|r| r.scale),
        "generator_version": report.record.map(|r| r.generator_version),
        "seeded_at": report.record.map(|r| r.seeded_at.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        "tables": tables,
        "missing_tables": report.missing_tables,
        "imported_tables": report.imported_tables,
        "steps": steps,
        "total": {
            "rows": report.total_rows(),
            "load_ms": loaded.then(|| millis(load_time)),
            "rows_per_second": rounded(if loaded { per_second(report.total_rows(), load_time) } else { None }),
            "elapsed_ms": millis(report.elapsed),
        },
    })
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::config::DatabaseKind;
    use crate::fixtures::{StepTiming, TableReport};

    fn report() -> SeedReport {
        SeedReport {
            outcome: SeedOutcome::Seeded,
            database: DatabaseKind::Postgres,
            target: "postgres://workshop:***@127.0.0.1:5432/workshop".into(),
            requested_scale: 1.0,
            record: Some(SeedRecord {
                scale: 1.0,
                generator_version: 1,
                seeded_at: NaiveDate::from_ymd_opt(2025, 6, 1)
                    .unwrap()
                    .and_hms_opt(12, 0, 0)
                    .unwrap(),
            }),
            tables: vec![TableReport {
                table: "booking",
                rows: Some(400_000),
                load_time: Some(Duration::from_secs(2)),
            }],
            missing_tables: vec![],
            imported_tables: vec![],
            steps: vec![StepTiming {
                step: "indexes and foreign keys",
                elapsed: Duration::from_millis(1500),
            }],
            elapsed: Duration::from_secs(4),
        }
    }

    #[test]
    fn json_has_rows_and_rows_per_second_per_table_and_in_total() {
        let value = to_json(&report());
        assert_eq!(value["outcome"], "seeded");
        assert_eq!(value["database"], "postgres");
        assert_eq!(value["tables"][0]["rows"], 400_000);
        assert_eq!(value["tables"][0]["rows_per_second"], 200_000);
        assert_eq!(value["tables"][0]["load_ms"], 2000.0);
        assert_eq!(value["total"]["rows_per_second"], 200_000);
        assert_eq!(value["steps"][0]["elapsed_ms"], 1500.0);
        assert_eq!(value["seeded_at"], "2025-06-01T12:00:00Z");
    }

    #[test]
    fn already_seeded_at_another_scale_says_how_to_load_it() {
        let mut report = report();
        report.outcome = SeedOutcome::AlreadySeeded;
        report.requested_scale = 0.5;
        assert!(message(&report).starts_with("Already seeded: PostgreSQL at postgres://workshop:***@"));
        assert!(notes(&report).iter().any(|n| n.contains("seed --reset --scale 0.5")));
    }

    #[test]
    fn scales_print_without_trailing_zeros() {
        assert_eq!(scale_text(1.0), "1");
        assert_eq!(scale_text(0.02), "0.02");
        assert_eq!(scale_text(2.5), "2.5");
    }
}
