//! `seed`: config → database → fixtures → report.

use crate::config::Config;
use crate::db::{Database, PoolSettings};
use crate::error::Result;
use crate::fixtures::{self, SeedOptions, SeedPlan};
use crate::report::seed::{show, SeedProgress};
use crate::report::Output;

pub async fn run(config: &Config, options: SeedOptions, output: &Output) -> Result<()> {
    // A bad --scale is refused before any connection is made.
    let plan = SeedPlan::new(options)?;
    let settings = PoolSettings {
        // One connection loads; another answers the look-around queries.
        max_connections: 2,
        connect_timeout: config.connect_timeout,
    };
    let db = Database::connect(&config.database, settings).await?;
    let progress = SeedProgress::new(output);
    let seeded = fixtures::seed(&db, &plan, &progress).await;
    progress.finish();
    db.close().await;
    show(&seeded?, output);
    Ok(())
}
