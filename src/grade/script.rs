//! `grade script`: runs the attendee's cache-aside or write-through program
//! several times in the grader's world and judges each run by the statement
//! counts, the Valkey counters and the keys it left.
//!
//! The program's contract (README, "Grading your own code"): its connection
//! settings come from the environment in both styles, and
//! - cache-aside reads airport `AIRPORT_ID` through the cache and prints the
//!   row as one JSON object;
//! - write-through creates or updates the passenger with passport number
//!   `PASSPORTNO` (names `FIRSTNAME`, `LASTNAME`), database first, then
//!   Valkey, and prints the passenger as JSON.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::observe::{self, KeyInfo, StatementCounter, ValkeyCounters};
use super::world::{self, GradeDatabase, PrivateValkey, ProgramRun};
use super::{tail, Check, GradeOutcome, Step};
use crate::cache::Valkey;
use crate::config::Config;
use crate::db::dialect::NamedQuery;
use crate::db::SqlValue;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptExercise {
    CacheAside,
    WriteThrough,
}

impl ScriptExercise {
    pub fn id(self) -> &'static str {
        match self {
            ScriptExercise::CacheAside => "cache-aside",
            ScriptExercise::WriteThrough => "write-through",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScriptGradeOptions {
    pub exercise: ScriptExercise,
    /// The program and its arguments (after `--`).
    pub command: Vec<String>,
    /// Each run may take this long; then it is killed and the step fails.
    pub timeout: Duration,
    /// Size of the seeded data set.
    pub scale: f64,
    /// Where to look for `.services/bin/valkey-server`.
    pub start: PathBuf,
}

/// Airport 3797 is FARQUHAR, whose IATA code is NULL: a cached copy must keep the null.
pub const AIRPORT_ID: i64 = 3797;

const CACHE_ASIDE_BRIEFING: &str = "01-cache-aside.md";
const WRITE_THROUGH_BRIEFING: &str = "02-write-through.md";

/// The grader's world and its observers, shared by the steps.
struct Session<'a> {
    options: &'a ScriptGradeOptions,
    ttl: Duration,
    db: GradeDatabase,
    server: PrivateValkey,
    valkey: Valkey,
    valkey_stopped: bool,
    counter: StatementCounter,
    progress: &'a dyn RunProgress,
}

impl Session<'_> {
    /// One run of the program, observed: statements, INFO deltas, new keys.
    async fn run(&mut self, name: &str, inputs: &[(&str, String)]) -> Result<(Step, ProgramRun)> {
        self.progress.phase(&format!("run: {name}"), None);
        let statements_before = self.counter.snapshot().await?;
        // Keys first: TYPE and PTTL count as keyspace hits, and must not in the step.
        let (keys_before, counters_before) = if self.valkey_stopped {
            (Vec::new(), ValkeyCounters::default())
        } else {
            (self.keys().await?, ValkeyCounters::read(&self.valkey).await?)
        };
        let command = world::program_command(&self.options.command, &self.db, &self.server, self.ttl, inputs);
        let run = world::run_program(command, self.options.timeout).await?;
        let statements = observe::delta(&statements_before, &self.counter.snapshot().await?);
        let mut step = Step {
            name: name.to_string(),
            exit_code: run.exit_code,
            duration: run.duration,
            queries: observe::queries(&statements),
            statements,
            ..Step::default()
        };
        if !self.valkey_stopped {
            let counters = ValkeyCounters::read(&self.valkey).await?.since(&counters_before);
            step.keyspace_hits = counters.keyspace_hits;
            step.keyspace_misses = counters.keyspace_misses;
            step.commands = counters.commands;
            step.new_keys = self
                .keys()
                .await?
                .into_iter()
                .map(|k| k.key)
                .filter(|k| !keys_before.iter().any(|b| &b.key == k))
                .collect();
        }
        self.progress.finish_phase();
        Ok((step, run))
    }

    async fn keys(&self) -> Result<Vec<KeyInfo>> {
        observe::keys(&self.valkey, "").await
    }

    /// One row of the graded database as a JSON object.
    async fn row(&self, sql: &str, name: &str, value: SqlValue) -> Result<Option<Map<String, Value>>> {
        let statement = NamedQuery::new(sql)
            .param(name, value)
            .to_statement(self.db.kind())
            .map_err(WorkshopError::Input)?;
        let result = self.db.db.fetch(&statement).await?;
        Ok(result.rows.first().map(|values| {
            result
                .columns
                .iter()
                .cloned()
                .zip(values.iter().cloned())
                .collect::<Map<String, Value>>()
        }))
    }

    async fn airport(&self) -> Result<Option<Map<String, Value>>> {
        self.row(
            "SELECT airport_id, iata, icao, name FROM airport WHERE airport_id = :id",
            "id",
            SqlValue::Int(AIRPORT_ID),
        )
        .await
    }

    async fn passenger(&self, passportno: &str) -> Result<Option<Map<String, Value>>> {
        self.row(
            "SELECT passenger_id, passportno, firstname, lastname FROM passenger WHERE passportno = :p",
            "p",
            SqlValue::Text(passportno.to_string()),
        )
        .await
    }

    /// Every key with its cached JSON (when it has any).
    async fn cached_values(&self) -> Result<Vec<(KeyInfo, Option<Value>)>> {
        let mut values = Vec::new();
        for key in self.keys().await? {
            let value = observe::cached_json(&self.valkey, &key).await?;
            values.push((key, value));
        }
        Ok(values)
    }
}

pub async fn grade(config: &Config, options: ScriptGradeOptions, progress: &dyn RunProgress) -> Result<GradeOutcome> {
    if options.command.is_empty() {
        return Err(WorkshopError::invalid(
            "no program to grade; put its command after `--`, e.g. `workshop-cli grade script --exercise cache-aside -- python3 cache_aside.py`",
        ));
    }
    progress.phase("starting a private valkey-server", None);
    let server = PrivateValkey::start(config, &options.start).await?;
    let valkey = server.connect().await?;
    let db = GradeDatabase::create(config, options.scale, progress).await?;
    let counter = StatementCounter::connect(config, &db.name).await?;
    let mut outcome = GradeOutcome::new(
        options.exercise.id(),
        options.command.join(" "),
        format!("{} {} (dropped at the end)", config.database.kind.label(), db.name),
        format!(
            "{}; a private valkey-server on port {} (INFO, SCAN)",
            counter.source(),
            server.port
        ),
    );
    outcome.warnings.extend(counter.notes().iter().cloned());
    let mut session = Session {
        options: &options,
        ttl: config.ttl,
        db,
        server,
        valkey,
        valkey_stopped: false,
        counter,
        progress,
    };
    match options.exercise {
        ScriptExercise::CacheAside => cache_aside(&mut session, &mut outcome).await?,
        ScriptExercise::WriteThrough => write_through(&mut session, &mut outcome).await?,
    }
    Ok(outcome)
}

async fn cache_aside(session: &mut Session<'_>, outcome: &mut GradeOutcome) -> Result<()> {
    let inputs = [("AIRPORT_ID", AIRPORT_ID.to_string())];
    let (cold, run) = session.run("1 cold", &inputs).await?;
    let keys = session.keys().await?;
    let created: Vec<&KeyInfo> = keys.iter().filter(|k| cold.new_keys.contains(&k.key)).collect();

    outcome.push(
        Check::new(
            "cold-run-reads-database",
            "first run queries the database",
            "on a miss, run the query and return its row; the first run finds an empty cache",
            CACHE_ASIDE_BRIEFING,
        )
        .judged(
            run.exit_code == Some(0) && cold.queries >= 1,
            format!("{}; {}", exit_text(&run), queries_text(&cold)),
        ),
    );
    let all_expire = !created.is_empty() && created.iter().all(|k| k.ttl_ms.is_some());
    outcome.push(
        Check::new(
            "cold-run-caches-with-ttl",
            "first run writes a key with a TTL",
            "store the row with SET key value EX ttl (CACHE_TTL seconds); a key without a TTL is never refreshed",
            CACHE_ASIDE_BRIEFING,
        )
        .judged(all_expire, keys_text(&created)),
    );
    let namespaced = !created.is_empty() && created.iter().all(|k| is_namespaced(&k.key));
    outcome.push(
        Check::new(
            "key-namespaced",
            "the key is namespaced under a prefix",
            "build keys as prefix:kind:id (e.g. workshop:airport:3797) so they can be found, counted and deleted together",
            CACHE_ASIDE_BRIEFING,
        )
        .judged(namespaced, keys_text(&created)),
    );

    let (second, run) = session.run("2 new process", &inputs).await?;
    let mut evidence = format!(
        "{}; {}; keyspace hits {}, misses {}",
        exit_text(&run),
        queries_text(&second),
        second.keyspace_hits,
        second.keyspace_misses
    );
    if !second.new_keys.is_empty() {
        evidence.push_str(&format!(
            "; new key(s) {}: the key differs between processes",
            second.new_keys.join(", ")
        ));
    }
    outcome.push(
        Check::new(
            "second-process-hits-cache",
            "a new process reads from Valkey, no query",
            "build the key from the id with a stable digest or plain text, never a per-process hash (Python's hash() is seeded randomly)",
            CACHE_ASIDE_BRIEFING,
        )
        .judged(
            run.exit_code == Some(0) && second.queries == 0 && second.keyspace_hits >= 1,
            evidence,
        ),
    );

    let row = session
        .airport()
        .await?
        .ok_or_else(|| WorkshopError::Other(anyhow::anyhow!("the seeded database has no airport {AIRPORT_ID}")))?;
    let cached = session.cached_values().await?;
    outcome.push(
        Check::new(
            "cached-value-matches-row",
            "the cached value equals the database row (types included)",
            "cache the row as JSON with its real types: numbers as numbers, NULL as null (a hash stores only strings)",
            CACHE_ASIDE_BRIEFING,
        )
        .judged_by(compare_cached(&cached, &row, "airport_id")),
    );

    let (_, _) = session.run("3 warm", &inputs).await?;
    change_airport(session).await?;
    let (changed, run) = session.run("4 after the row changed", &inputs).await?;
    let ttl_left = session
        .keys()
        .await?
        .iter()
        .filter_map(|k| k.ttl_ms)
        .max()
        .map(|ms| format!("for up to {} s more", ms / 1000))
        .unwrap_or_else(|| "for as long as the key lives (no TTL)".into());
    let stale = output_json(&run.stdout).is_some_and(|v| v.get("name") != Some(&Value::String(CHANGED_NAME.into())));
    outcome.push(
        Check::new(
            "stale-after-change",
            "after a row change: cached value until the TTL ends",
            "cache-aside serves the old row until the key expires; delete or rewrite the key on every write (exercise 2) when that is too long",
            CACHE_ASIDE_BRIEFING,
        )
        .optional()
        .judged(
            run.exit_code == Some(0),
            if changed.queries == 0 && stale {
                format!("answered from Valkey, 0 queries: the old name {ttl_left}")
            } else {
                format!("{}; {}", exit_text(&run), queries_text(&changed))
            },
        ),
    );

    session.progress.phase("stopping the private Valkey", None);
    session.server.stop().await;
    session.valkey_stopped = true;
    let (stopped, run) = session.run("5 Valkey stopped", &inputs).await?;
    let row = session.airport().await?.unwrap_or_default();
    let printed = output_json(&run.stdout);
    let answered = printed.as_ref().map(|v| compare(v, &row, "output"));
    let ok = run.exit_code == Some(0) && stopped.queries >= 1 && matches!(answered, Some(Ok(())));
    let output = match answered {
        Some(Ok(())) => "printed the database row".to_string(),
        Some(Err(why)) => why,
        None => format!("printed no JSON row ({})", tail(&run.stdout, 60)),
    };
    outcome.push(
        Check::new(
            "valkey-stopped-still-answers",
            "with Valkey stopped, it answers from the database",
            "treat every Valkey error (connection refused, timeout) as a miss: read the database and skip the cache write",
            CACHE_ASIDE_BRIEFING,
        )
        .judged(
            ok,
            format!("{}; {}; {output}", exit_text(&run), queries_text(&stopped)),
        ),
    );
    outcome.steps = vec![cold, second, changed, stopped];
    Ok(())
}

const CHANGED_NAME: &str = "GRADER CHANGED THIS ROW";

/// Changes the airport between runs 3 and 4 (on the grader's own database).
async fn change_airport(session: &Session<'_>) -> Result<()> {
    let db = &session.db.db;
    let result = match (db.mysql(), db.postgres()) {
        (Some(pool), _) => sqlx::query("UPDATE airport SET name = ? WHERE airport_id = ?")
            .bind(CHANGED_NAME)
            .bind(AIRPORT_ID)
            .execute(pool)
            .await
            .map(drop),
        (_, Some(pool)) => sqlx::query("UPDATE airport SET name = $1 WHERE airport_id = $2")
            .bind(CHANGED_NAME)
            .bind(AIRPORT_ID as i16)
            .execute(pool)
            .await
            .map(drop),
        _ => Ok(()),
    };
    result.map_err(|e| db.query_error(e).into())
}

async fn write_through(session: &mut Session<'_>, outcome: &mut GradeOutcome) -> Result<()> {
    let passport = passport_number(1);
    let first = [
        ("PASSPORTNO", passport.clone()),
        ("FIRSTNAME", "Ada".to_string()),
        ("LASTNAME", "Lovelace".to_string()),
    ];
    let (step1, run1) = session.run("1 create", &first).await?;
    let row1 = session.passenger(&passport).await?;
    let cached1 = session.cached_values().await?;

    let second = [
        ("PASSPORTNO", passport.clone()),
        ("FIRSTNAME", "Ada".to_string()),
        ("LASTNAME", "King".to_string()),
    ];
    let (step2, run2) = session.run("2 again, new last name", &second).await?;
    let row2 = session.passenger(&passport).await?;
    let cached2 = session.cached_values().await?;

    let both = run1.exit_code == Some(0) && run2.exit_code == Some(0);
    let mut evidence = format!("run 1 {}; run 2 {}", exit_text(&run1), exit_text(&run2));
    if run2.exit_code != Some(0) {
        evidence.push_str(&format!(": {}", tail(&run2.stderr, 90)));
    }
    outcome.push(
        Check::new(
            "reruns-succeed",
            "two runs in a row both succeed",
            "the second run meets the row the first created: update it (INSERT … ON DUPLICATE KEY UPDATE / ON CONFLICT … DO UPDATE, or look it up first) instead of crashing on the duplicate key",
            WRITE_THROUGH_BRIEFING,
        )
        .judged(both, evidence),
    );

    let id_check = Check::new(
        "cache-carries-generated-id",
        "the cached value carries the row's generated id",
        "read the id the database generated (LAST_INSERT_ID() / RETURNING passenger_id) and store it in the cached value",
        WRITE_THROUGH_BRIEFING,
    );
    let id_check = match &row1 {
        None => id_check.judged(
            false,
            format!(
                "{}; no passenger with passport {passport} in the database after run 1",
                exit_text(&run1)
            ),
        ),
        Some(row) => match cached_for(&cached1, &passport) {
            None => id_check.judged(false, format!("no key holds a passenger with passportno {passport}")),
            Some((key, value)) => {
                let ok = value
                    .get("passenger_id")
                    .is_some_and(|id| same_value(id, &row["passenger_id"]));
                id_check.judged(
                    ok,
                    format!(
                        "{}: passenger_id {}, the database's {}",
                        key.key,
                        value
                            .get("passenger_id")
                            .map_or("missing".to_string(), Value::to_string),
                        row["passenger_id"]
                    ),
                )
            }
        },
    };
    outcome.push(id_check);

    let mut agreements = Vec::new();
    let mut agree = true;
    for (label, run, row, cached) in [("run 1", &run1, &row1, &cached1), ("run 2", &run2, &row2, &cached2)] {
        if run.exit_code != Some(0) {
            agreements.push(format!("{label} failed, not compared"));
            continue;
        }
        let verdict = match (row, cached_for(cached, &passport)) {
            (None, _) => Err(format!("no row with passport {passport}")),
            (_, None) => Err("no cached passenger".to_string()),
            (Some(row), Some((_, value))) => compare(&Value::Object(value), row, "cached"),
        };
        match verdict {
            Ok(()) => agreements.push(format!("{label}: cache = database")),
            Err(why) => {
                agree = false;
                agreements.push(format!("{label}: {why}"));
            }
        }
    }
    agree &= agreements.iter().any(|a| a.ends_with("cache = database"));
    outcome.push(
        Check::new(
            "cache-agrees-after-each-write",
            "cache and database agree after each write",
            "after the commit, SET the row as the database now has it (re-read it or use RETURNING), with every column",
            WRITE_THROUGH_BRIEFING,
        )
        .judged(agree, agreements.join("; ")),
    );

    let failing = passport_number(2);
    let keys_before: Vec<String> = session.keys().await?.into_iter().map(|k| k.key).collect();
    let too_long = [
        ("PASSPORTNO", failing.clone()),
        ("FIRSTNAME", "Ada".to_string()),
        ("LASTNAME", "L".repeat(150)),
    ];
    let (step3, run3) = session.run("3 a write the database refuses", &too_long).await?;
    let stored = session.passenger(&failing).await?;
    let keys_after: Vec<String> = session.keys().await?.into_iter().map(|k| k.key).collect();
    let appeared: Vec<&String> = keys_after.iter().filter(|k| !keys_before.contains(k)).collect();
    let check = Check::new(
        "failed-write-leaves-no-entry",
        "a failed write leaves no cache entry",
        "write the database first and touch Valkey only after the commit succeeded; on an error, write nothing to the cache",
        WRITE_THROUGH_BRIEFING,
    );
    outcome.push(if stored.is_some() {
        check.skipped("the database accepted a 150-character last name (not in strict mode), so no write failed")
    } else {
        check.judged(
            appeared.is_empty(),
            format!(
                "a 150-character last name (the column holds 100): {}; {}",
                exit_text(&run3),
                if appeared.is_empty() {
                    "no new key".to_string()
                } else {
                    format!(
                        "new key(s) {}",
                        appeared.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                    )
                }
            ),
        )
    });
    outcome.steps = vec![step1, step2, step3];
    Ok(())
}

/// A passport number unique to this run (CHAR(9)): `G` and 8 digits.
fn passport_number(n: u32) -> String {
    let seed = std::process::id().wrapping_mul(31).wrapping_add(n) % 100_000_000;
    format!("G{seed:08}")
}

/// The cached passenger with this passport number.
fn cached_for<'a>(cached: &'a [(KeyInfo, Option<Value>)], passport: &str) -> Option<(&'a KeyInfo, Map<String, Value>)> {
    cached.iter().find_map(|(key, value)| {
        let object = as_row_object(value.as_ref()?)?;
        let found = object.get("passportno")?.as_str()?.trim() == passport;
        found.then_some((key, object))
    })
}

impl Check {
    fn judged_by(self, verdict: std::result::Result<String, String>) -> Check {
        match verdict {
            Ok(evidence) => self.judged(true, evidence),
            Err(evidence) => self.judged(false, evidence),
        }
    }
}

/// The first key whose value holds the row (found by `id_column`), compared.
fn compare_cached(
    cached: &[(KeyInfo, Option<Value>)],
    row: &Map<String, Value>,
    id_column: &str,
) -> std::result::Result<String, String> {
    let mut first_error = None;
    for (key, value) in cached {
        let Some(value) = value else { continue };
        match compare(value, row, "cached") {
            Ok(()) => return Ok(format!("{} ({}) = the database row", key.key, key.kind)),
            Err(why) => {
                let about_row = as_row_object(value).is_some_and(|o| o.contains_key(id_column));
                if about_row || first_error.is_none() {
                    first_error = Some(format!("{}: {why}", key.key));
                }
            }
        }
    }
    Err(first_error.unwrap_or_else(|| "no key holds a JSON value or hash to compare".to_string()))
}

/// A cached value as one row object: an object, a one-element list, or the
/// workshop's own `{columns, rows}` form.
fn as_row_object(value: &Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(object) if object.contains_key("columns") && object.contains_key("rows") => {
            let columns = object["columns"].as_array()?;
            let row = object["rows"].as_array()?.first()?.as_array()?;
            Some(
                columns
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .zip(row.iter().cloned())
                    .collect(),
            )
        }
        Value::Object(object) => Some(object.clone()),
        Value::Array(items) if items.len() == 1 => as_row_object(&items[0]),
        _ => None,
    }
}

/// Every column of `row` with the same value and type in `value`.
fn compare(value: &Value, row: &Map<String, Value>, what: &str) -> std::result::Result<(), String> {
    let object = as_row_object(value).ok_or_else(|| {
        format!(
            "the {what} value is not a JSON object: {}",
            tail(&value.to_string(), 50)
        )
    })?;
    for (column, expected) in row {
        match object.get(column) {
            None => return Err(format!("{what} value has no {column}")),
            Some(found) if !same_value(found, expected) => {
                return Err(format!(
                    "{column} is {} ({}) in the {what} value, {} ({}) in the database",
                    tail(&found.to_string(), 30),
                    type_name(found),
                    tail(&expected.to_string(), 30),
                    type_name(expected)
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Equal values of the same JSON type; numbers by value, text without CHAR padding.
fn same_value(found: &Value, expected: &Value) -> bool {
    match (found, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => a.trim_end() == b.trim_end(),
        (a, b) => a == b,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The JSON the program printed: all of stdout, or its last line that parses.
fn output_json(stdout: &str) -> Option<Value> {
    serde_json::from_str(stdout.trim())
        .ok()
        .or_else(|| {
            stdout
                .lines()
                .rev()
                .find_map(|line| serde_json::from_str(line.trim()).ok())
        })
        .filter(|v: &Value| v.is_object() || v.is_array())
}

/// `prefix:kind:id`: at least two parts, none empty.
fn is_namespaced(key: &str) -> bool {
    let parts: Vec<&str> = key.split(':').collect();
    parts.len() >= 2 && parts.iter().all(|p| !p.is_empty())
}

fn exit_text(run: &ProgramRun) -> String {
    match (run.timed_out, run.exit_code) {
        (true, _) => "killed after --timeout".to_string(),
        (_, Some(code)) => format!("exit {code}"),
        (_, None) => "killed by a signal".to_string(),
    }
}

fn queries_text(step: &Step) -> String {
    let shapes: Vec<String> = step
        .statements
        .iter()
        .filter(|s| s.query)
        .take(2)
        .map(|s| format!("{} ×{}", tail_start(&s.shape, 40), s.calls))
        .collect();
    match step.queries {
        0 => "0 queries".to_string(),
        1 => format!("1 query ({})", shapes.join(", ")),
        n => format!("{n} queries ({})", shapes.join(", ")),
    }
}

fn tail_start(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

fn keys_text(keys: &[&KeyInfo]) -> String {
    if keys.is_empty() {
        return "no key was written".to_string();
    }
    keys.iter()
        .take(3)
        .map(|k| match k.ttl_ms {
            Some(ms) => format!("{} ({}, TTL {} s)", k.key, k.kind, ms.div_ceil(1000)),
            None => format!("{} ({}, no TTL)", k.key, k.kind),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn airport() -> Map<String, Value> {
        json!({"airport_id": 3797, "iata": null, "icao": "FSFA", "name": "FARQUHAR"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn a_cached_copy_must_keep_the_types() {
        assert!(compare(
            &json!({"airport_id": 3797, "iata": null, "icao": "FSFA", "name": "FARQUHAR"}),
            &airport(),
            "cached"
        )
        .is_ok());
        assert!(compare(
            &json!([{"airport_id": 3797, "iata": null, "icao": "FSFA", "name": "FARQUHAR"}]),
            &airport(),
            "cached"
        )
        .is_ok());
        let error = compare(
            &json!({"airport_id": "3797", "iata": null, "icao": "FSFA", "name": "FARQUHAR"}),
            &airport(),
            "cached",
        )
        .unwrap_err();
        assert!(error.contains("airport_id is \"3797\" (a string)"), "{error}");
        let error = compare(
            &json!({"airport_id": 3797, "iata": "", "icao": "FSFA", "name": "FARQUHAR"}),
            &airport(),
            "cached",
        )
        .unwrap_err();
        assert!(error.contains("iata"), "{error}");
    }

    #[test]
    fn the_workshops_own_columns_and_rows_form_is_understood() {
        let cached =
            json!({"columns": ["airport_id", "iata", "icao", "name"], "rows": [[3797, null, "FSFA", "FARQUHAR"]]});
        assert!(compare(&cached, &airport(), "cached").is_ok());
    }

    #[test]
    fn namespaced_keys_have_a_prefix_and_no_empty_part() {
        assert!(is_namespaced("workshop:airport:3797"));
        assert!(is_namespaced("app:3797"));
        assert!(!is_namespaced("3797"));
        assert!(!is_namespaced(":3797"));
        assert!(!is_namespaced("airport::3797"));
    }

    #[test]
    fn the_printed_row_is_found_after_other_output() {
        assert_eq!(output_json("cache miss\n{\"a\": 1}\n"), Some(json!({"a": 1})));
        assert_eq!(output_json("{\"a\": 1}"), Some(json!({"a": 1})));
        assert_eq!(output_json("42"), None);
    }
}
