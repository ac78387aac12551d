//! Typed errors and the exit codes they map to.
//!
//! Every failure the user can cause or fix is a variant here with a message
//! that says what is wrong and what to do. `main` prints it once and exits
//! with [`WorkshopError::exit_code`]. The table of codes is in the README.

use crate::cache::CacheError;
use crate::config::ConfigError;
use crate::db::DbError;

/// Process exit codes, documented in the README ("Exit codes").
pub mod exit {
    pub const OK: u8 = 0;
    /// An unexpected failure (a bug, or a server answering nonsense).
    pub const FAILURE: u8 = 1;
    /// The command line is wrong (clap uses 2 as well).
    pub const USAGE: u8 = 2;
    /// Configuration is wrong: malformed `.env`, unknown URL scheme, bad number.
    pub const CONFIG: u8 = 3;
    /// The database cannot be reached, refused the login, or failed a query.
    pub const DATABASE: u8 = 4;
    /// Valkey cannot be reached or failed a command.
    pub const VALKEY: u8 = 5;
    /// Input was rejected before anything was written (bad id, duplicate, too long).
    pub const INPUT: u8 = 6;
    /// `check-env`: at least one required check failed.
    pub const CHECKS_FAILED: u8 = 7;
    /// The run finished but could not do all it promised (e.g. the cache write
    /// after a database commit failed, or no cache read succeeded to compare).
    pub const INCOMPLETE: u8 = 8;
    /// `grade`: at least one required check of the graded program failed.
    pub const GRADE_FAILED: u8 = 9;
    /// Stopped by Ctrl-C (SIGINT): 128 + 2, as shells report it.
    pub const INTERRUPTED: u8 = 130;
    /// Stopped by SIGTERM: 128 + 15.
    pub const TERMINATED: u8 = 143;
}

/// Input the user gave that cannot be used; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Invalid(String),
    #[error("passport number {passportno} is already taken by passenger {existing_id}; choose another --passportno or omit it to generate one")]
    DuplicatePassport { passportno: String, existing_id: String },
    #[error("no {what} with id {id}; {hint}")]
    NotFound {
        what: &'static str,
        id: String,
        hint: &'static str,
    },
}

/// A run that did part of its job and must say what is left undone.
#[derive(Debug, thiserror::Error)]
pub enum IncompleteError {
    #[error("{0}")]
    Incomplete(String),
}

#[derive(Debug, thiserror::Error)]
pub enum WorkshopError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Incomplete(#[from] IncompleteError),
    #[error("{failed} required check(s) failed; fix the rows marked ✗ above and run `workshop-cli check-env` again")]
    ChecksFailed { failed: usize },
    #[error("{failed} of {total} required grade check(s) failed; fix what the rows marked ✗ say and run the same `workshop-cli grade` again")]
    GradeFailed { failed: usize, total: usize },
    #[error("interrupted by {signal}; {}", cancelled_queries(*cancelled))]
    Interrupted { signal: Signal, cancelled: u64 },
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
    /// A child process's failure passed on with its exit code (a stampede
    /// fleet copy): a database error there is a database error here.
    #[error("{message}")]
    Relayed { code: u8, message: String },
    /// An error that ended a run before it had an outcome, with warnings to
    /// show before the error line (what the run left behind).
    #[error("{error}")]
    Noted {
        notes: Vec<String>,
        error: Box<WorkshopError>,
    },
}

fn cancelled_queries(cancelled: u64) -> String {
    match cancelled {
        0 => "no database query was left running".to_string(),
        1 => "1 database query still running on the server was cancelled".to_string(),
        n => format!("{n} database queries still running on the server were cancelled"),
    }
}

/// The signals that stop a run (and cancel its queries on the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "Ctrl-C (SIGINT)",
            Signal::Terminate => "SIGTERM",
        })
    }
}

impl WorkshopError {
    pub fn exit_code(&self) -> u8 {
        match self {
            WorkshopError::Config(_) => exit::CONFIG,
            // The server's read-only transaction refused the input: nothing was written.
            WorkshopError::Database(DbError::WriteRefused { .. }) => exit::INPUT,
            WorkshopError::Database(_) => exit::DATABASE,
            WorkshopError::Cache(_) => exit::VALKEY,
            WorkshopError::Input(_) => exit::INPUT,
            WorkshopError::Incomplete(_) => exit::INCOMPLETE,
            WorkshopError::ChecksFailed { .. } => exit::CHECKS_FAILED,
            WorkshopError::GradeFailed { .. } => exit::GRADE_FAILED,
            WorkshopError::Interrupted {
                signal: Signal::Interrupt,
                ..
            } => exit::INTERRUPTED,
            WorkshopError::Interrupted {
                signal: Signal::Terminate,
                ..
            } => exit::TERMINATED,
            WorkshopError::Other(_) => exit::FAILURE,
            WorkshopError::Noted { error, .. } => error.exit_code(),
            WorkshopError::Relayed { code, .. } => *code,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        WorkshopError::Input(InputError::Invalid(message.into()))
    }

    pub fn incomplete(message: impl Into<String>) -> Self {
        WorkshopError::Incomplete(IncompleteError::Incomplete(message.into()))
    }
}

pub type Result<T, E = WorkshopError> = std::result::Result<T, E>;
