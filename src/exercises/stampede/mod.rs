//! Exercise 6, `workshop-cli stampede`: many concurrent requests for one cold
//! key, without protection, with an in-process single flight and with a
//! Valkey lock; then a hot key expiring under steady traffic, without
//! protection and with XFetch. Counts every database query exactly.
//!
//! `outcome.rs` holds the serialisable outcome, `workload.rs` the requests
//! of a round (a burst on a cold key, steady traffic on an expiring one),
//! `run.rs` the run that connects, compares the modes and builds the
//! outcome; `plan.rs` sizes the run, `fleet.rs` runs it over `--processes`.

pub mod fleet;
mod outcome;
pub mod plan;
mod run;
mod workload;

use std::time::Duration;

use crate::config::Config;
use crate::error::{Result, WorkshopError};
use crate::exercises::progress::RunProgress;
use crate::exercises::queries::QueryChoice;
use crate::patterns::stampede::Protection;
use plan::{Plan, Requested};

pub use outcome::{
    ExpiryOutcome, ExpiryTiming, LockReport, ModeOutcome, Reference, Setup, StampedeOutcome, StampedeRun,
};
pub use workload::{expiry_timing, rows_digest};

use run::{connect, measure_run};
use workload::{burst, RoundResult};

pub const MAX_CONCURRENCY: u64 = 10_000;
pub const MAX_ROUNDS: u64 = 1_000;
pub const MAX_PROCESSES: u64 = 8;
const MIN_LOCK_TTL_MS: u64 = 10;
const MAX_LOCK_MS: u64 = 600_000;
const MAX_BETA: f64 = 10.0;
const MAX_TIME_BUDGET_S: u64 = 3_600;
/// Database connections per process. Requests beyond this queue for one,
/// as they would in an application server (and PostgreSQL allows 100 in all).
pub const POOL_CONNECTIONS: u64 = 10;
/// Lock waiters look at the cache after 2 ms, then 4, 8, 16, 25, 25, ... (with jitter).
const FIRST_POLL: Duration = Duration::from_millis(2);
const MAX_POLL: Duration = Duration::from_millis(25);
/// Expiry scenario: each task sends a request about this often.
pub const PACE: Duration = Duration::from_millis(20);
/// The expiry scenario's entry lives at least this long, and at most the maximum.
const MIN_EXPIRE_AFTER_MS: f64 = 1_000.0;
const MAX_EXPIRE_AFTER_MS: f64 = 30_000.0;

/// Which modes a run compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    One(Protection),
    /// The three cold-key modes, then the expiry scenario with XFetch.
    All,
}

#[derive(Debug, Clone)]
pub struct StampedeOptions {
    pub query: QueryChoice,
    /// `None`: [`plan::DEFAULT_CONCURRENCY`], the unprotected mode adapted to the time budget.
    pub concurrency: Option<u64>,
    pub mode: ModeChoice,
    pub rounds: u64,
    /// `None`: derived from one timed load (see [`plan::lock_timing`]).
    pub lock_ttl_ms: Option<u64>,
    /// `None`: the lock's TTL plus the next holder's load (see [`plan::lock_timing`]).
    pub lock_wait_ms: Option<u64>,
    /// Seconds the run's queries should take at most with the default sizes.
    pub time_budget_s: u64,
    pub beta: f64,
    pub processes: u64,
    /// Do not make the key cold before the round (several processes share it).
    pub keep_cache: bool,
    /// This process is one of `--processes` copies: wait for "go" on stdin,
    /// run one round, print a [`fleet::MemberReport`].
    pub fleet_member: bool,
}

impl StampedeOptions {
    /// The cold-key modes this run compares, in order.
    fn burst_modes(&self) -> Vec<Protection> {
        match self.mode {
            ModeChoice::All => vec![Protection::None, Protection::SingleFlight, Protection::Lock],
            ModeChoice::One(Protection::Xfetch) => vec![],
            ModeChoice::One(protection) => vec![protection],
        }
    }

    fn runs_expiry_scenario(&self) -> bool {
        matches!(self.mode, ModeChoice::All | ModeChoice::One(Protection::Xfetch))
    }

    /// What the run asks for, before one load is timed.
    fn requested(&self) -> Requested {
        let modes = self.burst_modes();
        Requested {
            concurrency: self.concurrency,
            lock_ttl: self.lock_ttl_ms.map(Duration::from_millis),
            lock_wait: self.lock_wait_ms.map(Duration::from_millis),
            time_budget: Duration::from_secs(self.time_budget_s),
            rounds: self.rounds,
            processes: self.processes,
            unprotected: modes.contains(&Protection::None),
            single_flight: modes.contains(&Protection::SingleFlight),
            lock: modes.contains(&Protection::Lock),
            expiry: self.runs_expiry_scenario() && self.processes == 1,
            expiry_by_name: self.mode == ModeChoice::One(Protection::Xfetch),
        }
    }

    /// The sizes for a load that took `cold_load` (zero: not timed, as in a
    /// fleet member, which gets every size from its parent).
    fn plan(&self, cold_load: Duration) -> Plan {
        let tasks = self.concurrency.unwrap_or(plan::DEFAULT_CONCURRENCY);
        let window = expiry_timing(cold_load, self.beta, tasks).window;
        plan::plan(&self.requested(), cold_load, window, FIRST_POLL, MAX_POLL)
    }
}

pub async fn measure(config: &Config, options: StampedeOptions, progress: &dyn RunProgress) -> Result<StampedeRun> {
    validate(&options)?;
    if options.fleet_member {
        return Ok(StampedeRun::FleetMember(Box::new(
            fleet::member(config, &options, progress).await?,
        )));
    }
    Ok(StampedeRun::Compared(Box::new(
        measure_run(config, &options, progress).await?,
    )))
}

fn validate(options: &StampedeOptions) -> Result<()> {
    let range = |flag: &str, value: u64, low: u64, high: u64| -> Result<()> {
        if (low..=high).contains(&value) {
            Ok(())
        } else {
            Err(WorkshopError::invalid(format!(
                "{flag} must be from {low} to {high} (got {value})"
            )))
        }
    };
    if let Some(concurrency) = options.concurrency {
        range("--concurrency", concurrency, 1, MAX_CONCURRENCY)?;
    }
    range("--rounds", options.rounds, 1, MAX_ROUNDS)?;
    range("--processes", options.processes, 1, MAX_PROCESSES)?;
    if let Some(ttl) = options.lock_ttl_ms {
        range("--lock-ttl-ms", ttl, MIN_LOCK_TTL_MS, MAX_LOCK_MS)?;
    }
    if let Some(wait) = options.lock_wait_ms {
        range("--lock-wait-ms", wait, 0, MAX_LOCK_MS)?;
    }
    range("--time-budget", options.time_budget_s, 1, MAX_TIME_BUDGET_S)?;
    if !(options.beta.is_finite() && options.beta > 0.0 && options.beta <= MAX_BETA) {
        return Err(WorkshopError::invalid(format!(
            "--beta must be above 0 and at most {MAX_BETA} (got {}); 1 is XFetch's usual value",
            options.beta
        )));
    }
    if options.processes > 1 && options.mode == ModeChoice::One(Protection::Xfetch) {
        return Err(WorkshopError::invalid(
            "--mode xfetch runs in one process; drop --processes or choose another --mode",
        ));
    }
    if options.keep_cache && options.mode == ModeChoice::All {
        return Err(WorkshopError::invalid(
            "--keep-cache needs one --mode (with all, the first mode would warm the key for the others)",
        ));
    }
    if options.keep_cache && options.rounds > 1 {
        return Err(WorkshopError::invalid(
            "--keep-cache runs one round (later rounds would start warm); drop --rounds or --keep-cache",
        ));
    }
    if options.fleet_member && !matches!(options.mode, ModeChoice::One(p) if p != Protection::Xfetch) {
        return Err(WorkshopError::invalid(
            "--fleet-member runs one of --mode none, single-flight or lock",
        ));
    }
    options.query.validate()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exercises::queries::BuiltinQuery;

    fn options() -> StampedeOptions {
        StampedeOptions {
            query: QueryChoice::Builtin {
                query: BuiltinQuery::BusiestRoutes,
                id: 3797,
            },
            concurrency: None,
            mode: ModeChoice::All,
            rounds: 1,
            lock_ttl_ms: None,
            lock_wait_ms: None,
            time_budget_s: plan::DEFAULT_TIME_BUDGET_S,
            beta: 1.0,
            processes: 1,
            keep_cache: false,
            fleet_member: false,
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(validate(&options()).is_ok());
    }

    #[test]
    fn concurrency_outside_its_range_is_rejected_with_the_range() {
        let zero = StampedeOptions {
            concurrency: Some(0),
            ..options()
        };
        assert_eq!(
            validate(&zero).unwrap_err().to_string(),
            "--concurrency must be from 1 to 10000 (got 0)"
        );
        let huge = StampedeOptions {
            concurrency: Some(10_001),
            ..options()
        };
        assert_eq!(
            validate(&huge).unwrap_err().to_string(),
            "--concurrency must be from 1 to 10000 (got 10001)"
        );
    }

    #[test]
    fn keep_cache_needs_one_mode_and_one_round() {
        let all = StampedeOptions {
            keep_cache: true,
            ..options()
        };
        assert!(validate(&all).is_err());
        let one = StampedeOptions {
            keep_cache: true,
            mode: ModeChoice::One(Protection::Lock),
            ..options()
        };
        assert!(validate(&one).is_ok());
        let rounds = StampedeOptions { rounds: 2, ..one };
        assert!(validate(&rounds).is_err());
    }

    #[test]
    fn all_runs_three_cold_key_modes_and_the_expiry_scenario() {
        let all = options();
        assert_eq!(
            all.burst_modes(),
            [Protection::None, Protection::SingleFlight, Protection::Lock]
        );
        assert!(all.runs_expiry_scenario());
        let xfetch = StampedeOptions {
            mode: ModeChoice::One(Protection::Xfetch),
            ..options()
        };
        assert!(xfetch.burst_modes().is_empty());
        assert!(xfetch.runs_expiry_scenario());
    }
}
