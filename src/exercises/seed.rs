//! `seed`: config → database → fixtures → report.

use std::time::Duration;

use crate::config::Config;
use crate::db::{Database, PoolSettings};
use crate::error::Result;
use crate::fixtures::{self, SeedOptions, SeedPlan};
use crate::report::seed::{show, SeedProgress};
use crate::report::Output;

/// Seeding's statements (a bulk COPY or multi-row INSERT, an index over millions of rows)
/// legitimately run longer than a query should: they get at least this bound.
/// `--query-timeout 0` still means none; Ctrl-C still cancels.
pub const SEED_QUERY_TIMEOUT_FLOOR: Duration = Duration::from_secs(600);

pub async fn run(config: &Config, options: SeedOptions, output: &Output) -> Result<()> {
    // A bad --scale is refused before any connection is made.
    let plan = SeedPlan::new(options)?;
    let settings = PoolSettings {
        // One connection loads; another answers the look-around queries.
        max_connections: 2,
        connect_timeout: config.connect_timeout,
    };
    let timeout = config.database.query_timeout.map(|t| t.max(SEED_QUERY_TIMEOUT_FLOOR));
    let db = Database::connect(&config.database.with_query_timeout(timeout), settings).await?;
    let progress = SeedProgress::new(output);
    let seeded = fixtures::seed(&db, &plan, &progress).await;
    progress.finish();
    db.close().await;
    show(&seeded?, output);
    Ok(())
}
