//! Can each exercise run on this database? Which tables each exercise reads
//! (from its queries), what the database has, and what to do about a gap.
//!
//! `check-env` shows the answer per exercise; the probe only asks the
//! catalogue (`information_schema`) and `SELECT 1 … LIMIT 1` per table, so it
//! stays quick on an import with millions of bookings, where `COUNT(*)` is not.

use std::collections::HashSet;
use std::time::Duration;

use crate::db::dialect::quote_ident;
use crate::db::{Database, DbError, Statement};
use crate::fixtures::load::table_names;
use crate::fixtures::table::{SEED_RECORD_TABLE, TABLES};
use crate::workshop::catalogue::Catalogue;

/// The tables an exercise reads or writes, by catalogue id. Read off each
/// exercise's queries: cache-aside's three built-in queries (airport,
/// passenger-bookings, busiest-routes), write-through's and write-behind's
/// passenger writes and their clean-up (which also deletes the passenger's
/// details and bookings), stats' and multi-level's product reads, and
/// stampede's default busiest-routes (or `--query airport`).
pub fn tables_needed(exercise_id: &str) -> &'static [&'static str] {
    match exercise_id {
        "cache-aside" | "stampede" => &["airport", "flight", "booking"],
        "leaderboard" => &["airport", "flight", "booking", "passenger", "passengerdetails"],
        "write-through" | "write-behind" => &["passenger", "passengerdetails", "booking"],
        "stats" | "multi-level" | "serve" => &["products"],
        "cluster" => &["airport"],
        // Issue 11: both cache products (and refuse an empty catalogue).
        "ttl" | "tracking" => &["products"],
        _ => &[],
    }
}

/// Needed tables that must also hold rows: stats and multi-level refuse an
/// empty catalogue, and cache-aside's first read (`--id 3797`) is an
/// airport. The others run on empty tables (a read of nothing is still a
/// read; the writers create their own passengers).
pub fn rows_needed(exercise_id: &str) -> &'static [&'static str] {
    match exercise_id {
        "cache-aside" => &["airport"],
        "stats" | "multi-level" | "serve" => &["products"],
        "ttl" | "tracking" => &["products"],
        _ => &[],
    }
}

/// What the database holds of the tables the exercises need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableProbe {
    /// Tables that exist (lower case), of every name in the database.
    pub present: HashSet<String>,
    /// Needed tables that exist but hold no row.
    pub empty: HashSet<String>,
}

impl TableProbe {
    /// `seed` built this database (its record table is there).
    fn seeded_here(&self) -> bool {
        self.present.contains(SEED_RECORD_TABLE)
    }

    /// FlughafenDB tables that `seed` did not create: an import.
    fn is_import(&self) -> bool {
        !self.seeded_here() && TABLES.iter().any(|t| !t.workshop_only && self.present.contains(t.name))
    }
}

/// Looks at every table some exercise needs; each query bounded by `timeout`.
pub async fn probe(db: &Database, timeout: Duration) -> Result<TableProbe, DbError> {
    let present = bounded(timeout, table_names(db)).await?;
    let mut empty = HashSet::new();
    for table in TABLES.iter().map(|t| t.name).filter(|t| present.contains(*t)) {
        let statement = Statement {
            sql: format!("SELECT 1 FROM {} LIMIT 1", quote_ident(db.kind(), table)),
            args: Vec::new(),
            read_only: false,
        };
        if bounded(timeout, db.fetch(&statement)).await?.rows.is_empty() {
            empty.insert(table.to_string());
        }
    }
    Ok(TableProbe { present, empty })
}

async fn bounded<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| DbError::Query(format!("no answer within {:.1} s", timeout.as_secs_f64())))?
}

/// One exercise's verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    pub number: u32,
    pub id: String,
    pub title: String,
    pub can_run: bool,
    /// The tables it needs.
    pub needs: Vec<&'static str>,
    /// Needed tables that are not there.
    pub missing_tables: Vec<&'static str>,
    /// Tables it needs rows in that have none.
    pub empty_tables: Vec<&'static str>,
    /// What it needs and lacks, or that it can run.
    pub detail: String,
    /// What to do about it; empty when nothing is needed.
    pub hint: String,
}

const ADD_HINT: &str = "run `workshop-cli seed` to add it (imported tables are left alone)";
const ADD_HINT_PLURAL: &str = "run `workshop-cli seed` to add them (imported tables are left alone)";
const SEED_HINT: &str = "run `workshop-cli seed` (or `just seed`)";
const RESEED_HINT: &str = "run `workshop-cli seed --reset` to load the workshop data again";
const IMPORT_HINT: &str = "import it from FlughafenDB (`seed` never adds FlughafenDB tables to an import), or point DATABASE_URL at an empty database and run `workshop-cli seed`";
const EMPTY_IMPORT_HINT: &str = "load its rows from FlughafenDB; `seed` never changes imported tables";

/// Every exercise of the catalogue against what the probe found. Valkey is
/// not judged here: it has its own rows.
pub fn assess(catalogue: &Catalogue, probe: &TableProbe) -> Vec<Readiness> {
    catalogue
        .exercises
        .iter()
        .map(|exercise| {
            let needs = tables_needed(&exercise.id).to_vec();
            let missing_tables: Vec<&'static str> =
                needs.iter().copied().filter(|t| !probe.present.contains(*t)).collect();
            let empty_tables: Vec<&'static str> = rows_needed(&exercise.id)
                .iter()
                .copied()
                .filter(|t| probe.empty.contains(*t))
                .collect();
            let (detail, hint) = verdict(probe, &needs, &missing_tables, &empty_tables);
            Readiness {
                number: exercise.number,
                id: exercise.id.clone(),
                title: exercise.title.clone(),
                can_run: missing_tables.is_empty() && empty_tables.is_empty(),
                needs,
                missing_tables,
                empty_tables,
                detail,
                hint,
            }
        })
        .collect()
}

fn verdict(probe: &TableProbe, needs: &[&str], missing: &[&'static str], empty: &[&'static str]) -> (String, String) {
    if needs.is_empty() {
        return ("can run: it needs nothing beyond the rows above".into(), String::new());
    }
    if missing.is_empty() && empty.is_empty() {
        let verb = if needs.len() == 1 { "is" } else { "are" };
        return (format!("can run: {} {verb} there", tables_phrase(needs)), String::new());
    }
    let workshop_only = |t: &&str| TABLES.iter().any(|table| table.name == *t && table.workshop_only);
    let mut gaps = Vec::new();
    if !missing.is_empty() {
        gaps.push(format!("needs {}", tables_phrase(missing)));
    }
    if !empty.is_empty() {
        gaps.push(format!("{} no rows", has_phrase(empty)));
    }
    let hint = if !missing.is_empty() {
        if probe.seeded_here() {
            RESEED_HINT
        } else if !probe.is_import() {
            SEED_HINT
        } else if missing.iter().all(workshop_only) {
            if missing.len() == 1 {
                ADD_HINT
            } else {
                ADD_HINT_PLURAL
            }
        } else {
            IMPORT_HINT
        }
    } else if probe.is_import() && !empty.iter().all(workshop_only) {
        EMPTY_IMPORT_HINT
    } else {
        RESEED_HINT
    };
    (gaps.join("; "), hint.to_string())
}

/// "table products", "tables flight and booking".
fn tables_phrase(tables: &[&str]) -> String {
    match tables {
        [one] => format!("table {one}"),
        [init @ .., last] => format!("tables {} and {last}", init.join(", ")),
        [] => "no tables".into(),
    }
}

/// "table booking has", "tables flight and booking have".
fn has_phrase(tables: &[&str]) -> String {
    let verb = if tables.len() == 1 { "has" } else { "have" };
    format!("{} {verb}", tables_phrase(tables))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(present: &[&str], empty: &[&str]) -> TableProbe {
        TableProbe {
            present: present.iter().map(|t| t.to_string()).collect(),
            empty: empty.iter().map(|t| t.to_string()).collect(),
        }
    }

    const IMPORT: [&str; 7] = [
        "airport",
        "airline",
        "airplane",
        "flight",
        "passenger",
        "passengerdetails",
        "booking",
    ];

    fn by_id<'a>(all: &'a [Readiness], id: &str) -> &'a Readiness {
        all.iter().find(|r| r.id == id).unwrap()
    }

    #[test]
    fn every_exercise_of_the_catalogue_is_judged_and_needs_only_known_tables() {
        let catalogue = Catalogue::builtin().unwrap();
        for exercise in &catalogue.exercises {
            let needs = tables_needed(&exercise.id);
            // Only the environment check, the Valkey-only rate limiter and api-cache, and
            // session (which creates its own table) read no table.
            let reads_no_table = matches!(
                exercise.id.as_str(),
                "check-env" | "rate-limit" | "api-cache" | "session"
            );
            assert_eq!(needs.is_empty(), reads_no_table, "{}", exercise.id);
            for table in needs {
                assert!(TABLES.iter().any(|t| t.name == *table), "{table}");
            }
            for table in rows_needed(&exercise.id) {
                assert!(needs.contains(table), "{table}");
            }
        }
        assert_eq!(assess(&catalogue, &probe(&[], &[])).len(), catalogue.exercises.len());
    }

    #[test]
    fn an_import_without_products_blocks_only_the_product_exercises_and_says_seed_adds_it() {
        let catalogue = Catalogue::builtin().unwrap();
        let all = assess(&catalogue, &probe(&IMPORT, &[]));
        let multi = by_id(&all, "multi-level");
        assert!(!multi.can_run);
        assert_eq!(multi.detail, "needs table products");
        assert_eq!(
            multi.hint,
            "run `workshop-cli seed` to add it (imported tables are left alone)"
        );
        assert!(!by_id(&all, "stats").can_run);
        for id in ["check-env", "cache-aside", "write-through", "write-behind", "stampede"] {
            assert!(by_id(&all, id).can_run, "{id}");
        }
        assert_eq!(
            by_id(&all, "cache-aside").detail,
            "can run: tables airport, flight and booking are there"
        );
    }

    #[test]
    fn an_import_missing_a_flughafen_table_says_to_import_it() {
        let catalogue = Catalogue::builtin().unwrap();
        let all = assess(&catalogue, &probe(&["airport", "products"], &["products", "airport"]));
        let cache_aside = by_id(&all, "cache-aside");
        assert_eq!(
            cache_aside.detail,
            "needs tables flight and booking; table airport has no rows"
        );
        assert!(
            cache_aside.hint.starts_with("import it from FlughafenDB"),
            "{}",
            cache_aside.hint
        );
        assert_eq!(by_id(&all, "stats").detail, "table products has no rows");
    }

    #[test]
    fn an_empty_database_says_seed() {
        let catalogue = Catalogue::builtin().unwrap();
        let all = assess(&catalogue, &probe(&[], &[]));
        let stats = by_id(&all, "stats");
        assert_eq!(
            (stats.detail.as_str(), stats.hint.as_str()),
            ("needs table products", SEED_HINT)
        );
        assert!(by_id(&all, "check-env").can_run);
    }

    #[test]
    fn a_damaged_seed_says_reset() {
        let catalogue = Catalogue::builtin().unwrap();
        let mut present = IMPORT.to_vec();
        present.push("workshop_seed");
        let all = assess(&catalogue, &probe(&present, &[]));
        assert_eq!(by_id(&all, "multi-level").hint, RESEED_HINT);
    }
}
