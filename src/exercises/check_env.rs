//! `workshop-cli check-env`: is everything the workshop needs there?
//!
//! Each probe has a short timeout, and the database and Valkey are probed at
//! the same time, so a healthy set-up answers in well under a second and a
//! dead host never hangs it.

use std::time::Duration;

use crate::cache::cluster::NodeRole;
use crate::cache::{KeyScheme, Valkey};
use crate::config::Config;
use crate::db::{Database, PoolSettings};
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::readiness::{self, Readiness};
use crate::exercises::{Outcome, Verdict};
use crate::workshop::catalogue::Catalogue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// ✓
    Pass,
    /// ! — worth knowing, but the workshop can run.
    Warn,
    /// ✗ — the workshop cannot run until this is fixed.
    Fail,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it; empty when nothing is needed.
    pub hint: String,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Pass,
            detail: detail.into(),
            hint: String::new(),
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            hint: hint.into(),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            hint: hint.into(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub checks: Vec<Check>,
    /// Per exercise: can it run on this database's tables? Empty when the
    /// database could not be looked at (its row says why).
    pub exercises: Vec<Readiness>,
}

impl CheckReport {
    /// Failed checks plus exercises that cannot run: the ✗ rows.
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| c.status == Status::Fail).count()
            + self.exercises.iter().filter(|e| !e.can_run).count()
    }

    /// Whether one exercise can run: the services answer and its own tables
    /// are there. The fixtures row and the other exercises do not matter, so
    /// on an import without `products` the passenger exercises still run.
    pub fn ready_for(&self, exercise_id: &str) -> bool {
        let services = self
            .checks
            .iter()
            .all(|c| c.status != Status::Fail || c.name == "fixtures");
        let own = self.exercises.iter().find(|e| e.id == exercise_id);
        services && own.is_some_and(|e| e.can_run)
    }
}

/// Tables whose row counts show the fixtures are loaded.
const FIXTURE_TABLES: [&str; 5] = ["airport", "flight", "booking", "passenger", "products"];
const SEED_HINT: &str = "run `workshop-cli seed` (or `just seed`)";
/// Rows counted per table at most (about 0.2 s on 3 million bookings).
const COUNT_CAP: u64 = 1_000_000;
const UP_HINT: &str = "start the services with `just up`, or fix the URL in .env";

/// Runs every check; a failed one makes the verdict exit 7.
pub async fn measure(config: &Config, progress: &dyn RunProgress) -> Result<CheckReport> {
    progress.phase("checking the environment", None);
    let report = check(config).await;
    progress.finish_phase();
    Ok(report)
}

impl Outcome for CheckReport {
    fn verdict(&mut self) -> Verdict {
        match self.failed() {
            0 => Verdict::Complete,
            failed => Verdict::failed(WorkshopError::ChecksFailed { failed }),
        }
    }
}

/// Runs every check and returns the results; prints nothing.
pub async fn check(config: &Config) -> CheckReport {
    let mut checks = vec![configuration_check(config)];
    checks.push(Check::pass(
        "database URL",
        format!("{} (from {})", config.database.masked(), config.database.source),
    ));
    let (database_checks, valkey_checks, exercises) = tokio::join!(
        database_checks(config),
        valkey_checks(config),
        exercise_readiness(config)
    );
    checks.extend(database_checks);
    checks.push(Check::pass(
        "Valkey URL",
        format!("{} (from {})", config.valkey.masked(), config.valkey.source),
    ));
    checks.extend(valkey_checks);
    checks.push(Check::pass(
        "cache TTL",
        format!("{} s (from {})", config.ttl.as_secs(), config.ttl_source),
    ));
    let mut report = CheckReport {
        ok: false,
        checks,
        exercises,
    };
    report.ok = report.failed() == 0;
    report
}

/// Which exercises the database's tables allow, on a connection of its own
/// (run beside the other probes); empty when the database cannot be reached.
async fn exercise_readiness(config: &Config) -> Vec<Readiness> {
    let Ok(catalogue) = Catalogue::builtin() else {
        return Vec::new();
    };
    let settings = PoolSettings {
        max_connections: 1,
        connect_timeout: config.connect_timeout,
    };
    let Ok(db) = Database::connect(&config.database, settings).await else {
        return Vec::new();
    };
    let probed = readiness::probe(&db, config.connect_timeout).await;
    db.close().await;
    probed
        .map(|probe| readiness::assess(&catalogue, &probe))
        .unwrap_or_default()
}

fn configuration_check(config: &Config) -> Check {
    match &config.dotenv_path {
        Some(path) => Check::pass(
            "configuration",
            format!("{} (flags and environment take precedence)", path.display()),
        ),
        None => Check::warn(
            "configuration",
            "no .env found here or in a parent folder; using environment and defaults",
            "cp .env.example .env to keep your settings",
        ),
    }
}

async fn database_checks(config: &Config) -> Vec<Check> {
    let settings = PoolSettings {
        max_connections: 1,
        connect_timeout: config.connect_timeout,
    };
    let db = match Database::connect(&config.database, settings).await {
        Ok(db) => db,
        Err(error) => {
            return vec![
                Check::fail("database", error.to_string(), UP_HINT),
                Check::fail("fixtures", "not checked: no database connection", SEED_HINT),
            ]
        }
    };
    let server = match tokio::time::timeout(config.connect_timeout, async {
        let info = db.server_info().await?;
        let rtt = db.round_trip().await?;
        Ok::<_, crate::db::DbError>((info, rtt))
    })
    .await
    {
        Ok(Ok((info, rtt))) => Check::pass(
            "database",
            format!(
                "{} {} answers in {:.2} ms (connect {:.1} ms)",
                info.product,
                info.version,
                rtt.as_secs_f64() * 1000.0,
                db.connect_time().as_secs_f64() * 1000.0
            ),
        ),
        Ok(Err(error)) => Check::fail("database", error.to_string(), UP_HINT),
        Err(_) => Check::fail("database", "connected, but a query got no answer in time", UP_HINT),
    };
    let fixtures = fixtures_check(&db, config.connect_timeout).await;
    db.close().await;
    vec![server, fixtures]
}

async fn fixtures_check(db: &Database, timeout: Duration) -> Check {
    let mut counts = Vec::new();
    for table in FIXTURE_TABLES {
        // Counting stops past COUNT_CAP rows: an import's 55 million
        // bookings would take longer than the check may.
        let statement = crate::db::Statement {
            sql: format!(
                "SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT {}) capped",
                COUNT_CAP + 1
            ),
            args: Vec::new(),
            read_only: false,
        };
        let counted = tokio::time::timeout(timeout, db.fetch(&statement)).await;
        match counted {
            Ok(Ok(set)) => {
                let n = set
                    .rows
                    .first()
                    .and_then(|r| r.first())
                    .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
                counts.push((table, n.unwrap_or(0)));
            }
            Ok(Err(crate::db::DbError::NotSeeded { .. })) => {
                return Check::fail("fixtures", format!("table {table} is missing"), SEED_HINT)
            }
            Ok(Err(error)) => return Check::fail("fixtures", error.to_string(), SEED_HINT),
            Err(_) => return Check::fail("fixtures", format!("counting {table} took too long"), SEED_HINT),
        }
    }
    let summary = counts
        .iter()
        .map(|(table, n)| match *n as u64 {
            n if n > COUNT_CAP => format!("{table} over {}", crate::measure::count(COUNT_CAP)),
            n => format!("{table} {}", crate::measure::count(n)),
        })
        .collect::<Vec<_>>()
        .join(", ");
    match counts.iter().find(|(_, n)| *n == 0) {
        Some((table, _)) => Check::fail("fixtures", format!("table {table} is empty ({summary})"), SEED_HINT),
        None => Check::pass("fixtures", summary),
    }
}

async fn valkey_checks(config: &Config) -> Vec<Check> {
    let valkey = match Valkey::connect(&config.valkey, config.connect_timeout).await {
        Ok(valkey) => valkey,
        Err(error) => {
            return vec![
                Check::fail("Valkey", error.to_string(), UP_HINT),
                Check::fail("cache probe", "not run: no Valkey connection", UP_HINT),
            ]
        }
    };
    let server = match tokio::join!(valkey.identity(), valkey.round_trip()) {
        (Ok(identity), Ok(rtt)) if identity.is_valkey() => Check::pass(
            "Valkey",
            format!(
                "Valkey {} answers in {:.2} ms (connect {:.1} ms)",
                identity.version,
                rtt.as_secs_f64() * 1000.0,
                valkey.connect_time().as_secs_f64() * 1000.0
            ),
        ),
        (Ok(identity), Ok(_)) => Check::warn(
            "Valkey",
            format!("this server is {} {}, not Valkey (INFO server has no server_name:valkey)", identity.name, identity.version),
            "the exercises speak the same protocol, but the workshop is about Valkey: run `just up` or point VALKEY_URL at a Valkey",
        ),
        (Err(error), _) | (_, Err(error)) => Check::fail("Valkey", error.to_string(), UP_HINT),
    };
    let probe = probe_check(
        &valkey,
        &KeyScheme::new(&config.key_prefix, &config.database),
        config.ttl,
    )
    .await;
    let mut checks = vec![server];
    checks.extend(cluster_checks(&valkey).await);
    checks.push(probe);
    checks.extend(leftover_settings_check(&valkey).await);
    checks
}

/// On a cluster: its state, then one row per primary with its slots and replicas.
async fn cluster_checks(valkey: &Valkey) -> Vec<Check> {
    if !valkey.is_cluster() {
        return Vec::new();
    }
    let state = match valkey.cluster_state().await {
        Ok(state) => state,
        Err(error) => return vec![Check::fail("Valkey cluster", error.to_string(), CLUSTER_HINT)],
    };
    let nodes = match valkey.cluster_nodes().await {
        Ok(nodes) => nodes,
        Err(error) => return vec![Check::fail("Valkey cluster", error.to_string(), CLUSTER_HINT)],
    };
    let primaries: Vec<_> = nodes.iter().filter(|n| n.role == NodeRole::Primary).collect();
    let summary = format!(
        "cluster_state:{state} · {} primaries, {} replicas",
        primaries.len(),
        nodes.len() - primaries.len()
    );
    let mut checks = vec![if state == "ok" {
        Check::pass("Valkey cluster", summary)
    } else {
        Check::fail("Valkey cluster", summary, CLUSTER_HINT)
    }];
    for primary in primaries {
        let replicas: Vec<String> = nodes
            .iter()
            .filter(|n| n.replica_of.as_deref() == Some(primary.id.as_str()))
            .map(|n| n.address())
            .collect();
        let detail = format!(
            "{} slots {} · replicas {}",
            primary.address(),
            primary.slot_ranges(),
            if replicas.is_empty() {
                "none".to_string()
            } else {
                replicas.join(", ")
            }
        );
        checks.push(if primary.failing {
            Check::fail("  primary", format!("{detail} · failing"), CLUSTER_HINT)
        } else {
            Check::pass("  primary", detail)
        });
    }
    checks
}

const CLUSTER_HINT: &str = "wait for the failover to finish, or restart the cluster (`just down-cluster up-cluster`)";

/// A `stats --maxmemory` run killed before it restored Valkey's settings
/// left them in a record: put them back, and say so in a warning row.
async fn leftover_settings_check(valkey: &Valkey) -> Option<Check> {
    use crate::exercises::stats::settings_record::{restore_leftover, SettingsRecord};
    match restore_leftover(valkey, &SettingsRecord::beside_state_file()).await {
        Ok(None) => None,
        Ok(Some(restored)) => Some(Check::warn(
            "Valkey settings",
            restored,
            "nothing left to do: the settings are back",
        )),
        Err(error) => Some(Check::warn(
            "Valkey settings",
            format!("an earlier `stats --maxmemory` run left changed settings that could not be restored: {error}"),
            "run `workshop-cli stats` to try again, or CONFIG SET maxmemory and maxmemory-policy by hand",
        )),
    }
}

/// SET, GET and DEL on a key of our own, to prove we may write the cache.
async fn probe_check(valkey: &Valkey, keys: &KeyScheme, ttl: Duration) -> Check {
    let key = keys.probe();
    let value = format!("probe-{}", std::process::id());
    let started = std::time::Instant::now();
    let result = async {
        valkey
            .set_with_ttl(&key, &value, ttl.min(Duration::from_secs(60)))
            .await?;
        let read = valkey.get(&key).await?;
        let deleted = valkey.delete(&key).await?;
        Ok::<_, crate::cache::CacheError>((read, deleted))
    }
    .await;
    match result {
        Ok((Some(read), true)) if read == value => Check::pass(
            "cache probe",
            format!(
                "write/read/delete of {key} in {:.2} ms; this database's keys start {}",
                started.elapsed().as_secs_f64() * 1000.0,
                keys.source_prefix()
            ),
        ),
        Ok((read, _)) => Check::fail(
            "cache probe",
            format!("wrote {key} but read back {read:?}"),
            "another client may be changing workshop keys; check WORKSHOP_KEY_PREFIX",
        ),
        Err(error) => Check::fail(
            "cache probe",
            error.to_string(),
            "check that the Valkey user may SET, GET and DEL keys under the workshop prefix",
        ),
    }
}
