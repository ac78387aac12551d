//! One module per subcommand: wires config → services → pattern → measure → report.

pub mod cache_aside;
pub mod check_env;
pub mod queries;
pub mod seed;
pub mod write_through;
