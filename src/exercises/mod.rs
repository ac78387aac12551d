//! One module per subcommand: options → services → pattern → outcome.
//!
//! Every exercise has the shape `measure(config, options, progress) ->
//! Result<Outcome>`: it reports live progress through
//! [`progress::RunProgress`], returns a serialisable outcome and never prints;
//! `app.rs` hands the outcome to a view and turns its [`Verdict`] into the
//! exit code.

pub mod api_cache;
pub mod cache_aside;
pub mod check_env;
pub mod clean;
pub mod cluster;
pub mod leaderboard;
pub mod load;
pub mod multi_level;
pub mod progress;
pub mod queries;
pub mod rate_limit;
pub mod readiness;
pub mod seed;
pub mod services;
pub mod session;
pub mod stampede;
pub mod stats;
pub mod write_behind;
pub mod write_through;
// Issue 11: exercises 12 and 13.
pub mod tracking;
pub mod ttl;

use std::sync::Arc;

use crate::error::WorkshopError;

/// What a finished run's outcome says about the exit code. The outcome is
/// shown first in every case; then `app.rs` ends with this verdict.
#[derive(Debug, Clone, Default)]
pub enum Verdict {
    /// The run did what was asked: exit 0.
    #[default]
    Complete,
    /// The run ended with this error after doing part of the work (the
    /// outcome shows that part); the error keeps its exit code.
    Failed(Arc<WorkshopError>),
}

impl Verdict {
    pub fn failed(error: WorkshopError) -> Verdict {
        Verdict::Failed(Arc::new(error))
    }

    /// `Ok` for a complete run, else the error the process exits with.
    pub fn into_result(self) -> crate::error::Result<()> {
        match self {
            Verdict::Complete => Ok(()),
            Verdict::Failed(error) => Err(Arc::try_unwrap(error).unwrap_or_else(|shared| WorkshopError::Relayed {
                code: shared.exit_code(),
                message: shared.to_string(),
            })),
        }
    }
}

/// An exercise's result: shown by a view, then ended by its verdict.
pub trait Outcome {
    /// Takes the verdict out; called once, after the outcome was shown.
    fn verdict(&mut self) -> Verdict {
        Verdict::Complete
    }
}
