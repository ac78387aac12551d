//! `seed`: config → database → fixtures → report.

use std::time::Duration;

use crate::config::Config;
use crate::db::{Database, PoolSettings};
use crate::error::Result;
use crate::exercises::progress::RunProgress;
use crate::exercises::Outcome;
use crate::fixtures::{self, LoadProgress, SeedOptions, SeedPlan, SeedReport};

/// Seeding's statements (a bulk COPY or multi-row INSERT, an index over millions of rows)
/// legitimately run longer than a query should: they get at least this bound.
/// `--query-timeout 0` still means none; Ctrl-C still cancels.
pub const SEED_QUERY_TIMEOUT_FLOOR: Duration = Duration::from_secs(600);

pub async fn measure(config: &Config, options: SeedOptions, progress: &dyn RunProgress) -> Result<SeedReport> {
    // A bad --scale is refused before any connection is made.
    let plan = SeedPlan::new(options)?;
    let settings = PoolSettings {
        // One connection loads; another answers the look-around queries.
        max_connections: 2,
        connect_timeout: config.connect_timeout,
    };
    let timeout = config.database.query_timeout.map(|t| t.max(SEED_QUERY_TIMEOUT_FLOOR));
    let db = Database::connect(&config.database.with_query_timeout(timeout), settings).await?;
    let seeded = fixtures::seed(&db, &plan, &Phases(progress)).await;
    progress.finish_phase();
    db.close().await;
    Ok(seeded?)
}

impl Outcome for SeedReport {}

/// The loader's progress (per table, per step) as phases of the run.
struct Phases<'a>(&'a dyn RunProgress);

impl LoadProgress for Phases<'_> {
    fn table_started(&self, table: &str, rows: u64) {
        self.0.phase(table, Some(rows));
    }

    fn rows_loaded(&self, rows: u64) {
        self.0.advance(rows);
    }

    fn table_finished(&self) {
        self.0.finish_phase();
    }

    fn step_started(&self, step: &str) {
        self.0.phase(step, Some(1));
    }

    fn step_finished(&self) {
        self.0.finish_phase();
    }
}
