//! One module per subcommand: wires config → services → pattern → measure → report.

pub mod cache_aside;
pub mod check_env;
pub mod clean;
pub mod leaderboard;
pub mod load;
pub mod multi_level;
pub mod progress;
pub mod queries;
pub mod rate_limit;
pub mod readiness;
pub mod seed;
pub mod stampede;
pub mod stats;
pub mod write_behind;
pub mod write_through;
