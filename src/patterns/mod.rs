//! The caching patterns as library code: they talk to the services and
//! return what happened (source, timings); they never print.

pub mod cache_aside;
pub mod stampede;
pub mod write_behind;
pub mod write_through;
