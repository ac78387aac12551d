//! How big a run is: the lock's timing and the number of requests, decided
//! from one timed cold load so that a slow query neither hangs the run nor
//! leaves lock waiters to give up while a dead holder's lock still stands.
//!
//! Pure: it takes the measured load time and returns the sizes and the
//! notes that say what was adapted.

use std::time::Duration;

use crate::patterns::stampede::{LockSettings, Protection};

/// Requests per mode when `--concurrency` is not given.
pub const DEFAULT_CONCURRENCY: u64 = 100;
/// The run's time budget when `--time-budget` is not given, seconds.
pub const DEFAULT_TIME_BUDGET_S: u64 = 30;
/// The lock's TTL when `--lock-ttl-ms` is not given: at least this, and at
/// least twice one load plus a second (a holder must finish before it expires).
const DEFAULT_LOCK_TTL: Duration = Duration::from_millis(5000);
const LOCK_SLACK: Duration = Duration::from_secs(1);
/// Derived lock times stay within what `--lock-ttl-ms` and `--lock-wait-ms`
/// accept, since a fleet copy is given them on its command line.
const MAX_DERIVED_LOCK: Duration = Duration::from_secs(600);
/// An unprotected round needs two requests to show a stampede at all.
const MIN_UNPROTECTED: u64 = 2;

/// What the user gave on the command line, before anything was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Requested {
    pub concurrency: Option<u64>,
    pub lock_ttl: Option<Duration>,
    pub lock_wait: Option<Duration>,
    pub time_budget: Duration,
    pub rounds: u64,
    pub processes: u64,
    pub unprotected: bool,
    pub single_flight: bool,
    pub lock: bool,
    /// The expiry scenario, and whether it was asked for by name (`--mode xfetch`).
    pub expiry: bool,
    pub expiry_by_name: bool,
}

/// The sizes a run uses, and why they differ from what was asked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    /// One query timed before the modes (not counted in any of them).
    #[serde(serialize_with = "crate::measure::as_millis", rename = "cold_load_ms")]
    pub cold_load: Duration,
    #[serde(serialize_with = "crate::measure::as_millis", rename = "time_budget_ms")]
    pub time_budget: Duration,
    /// Database time the run needs at most, from the cold load (queries
    /// counted as if they ran one after another).
    #[serde(serialize_with = "crate::measure::as_millis", rename = "estimated_ms")]
    pub estimated: Duration,
    /// Requests per round (and process) of the protected modes and the expiry tasks.
    pub concurrency: u64,
    /// Requests per round (and process) of the unprotected mode.
    pub unprotected_requests: u64,
    /// True when a size was changed to stay within the budget.
    pub adapted: bool,
    /// Why the expiry scenario does not run, when the budget skipped it.
    pub expiry_skipped: Option<String>,
    /// One sentence per adaptation (or per warning that the budget is exceeded).
    pub notes: Vec<String>,
    #[serde(skip)]
    pub lock: LockSettings,
}

/// The lock's timing: a TTL that outlasts a load, and a wait that outlasts
/// the TTL plus the next holder's load, so that waiters of a holder that
/// died take the lock over (one more query) instead of all querying.
pub fn lock_timing(ttl: Option<Duration>, wait: Option<Duration>, cold_load: Duration) -> (Duration, Duration) {
    let ttl = ttl.unwrap_or_else(|| DEFAULT_LOCK_TTL.max(cold_load * 2 + LOCK_SLACK).min(MAX_DERIVED_LOCK));
    let wait = wait.unwrap_or_else(|| (ttl + cold_load * 2 + LOCK_SLACK).min(MAX_DERIVED_LOCK));
    (ttl, wait)
}

/// The expiry scenario's database time, at most: both modes' windows, and
/// every task missing once during the unprotected reload.
fn expiry_estimate(window: Duration, tasks: u64, load: Duration) -> Duration {
    window * 2 + load * u32::try_from(tasks).unwrap_or(u32::MAX)
}

/// Decides the sizes. `window` is the expiry scenario's traffic window for
/// this load time (see `expiry_timing`).
pub fn plan(
    requested: &Requested,
    cold_load: Duration,
    window: Duration,
    first_poll: Duration,
    max_poll: Duration,
) -> Plan {
    let (ttl, wait) = lock_timing(requested.lock_ttl, requested.lock_wait, cold_load);
    let lock = LockSettings {
        ttl,
        wait,
        first_poll,
        max_poll,
    };
    let concurrency = requested.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    let load = cold_load;
    let times = |n: u64| load * u32::try_from(n).unwrap_or(u32::MAX);
    let rounds = requested.rounds;
    let processes = requested.processes;
    // The cold load and the reference read after the modes.
    let mut fixed = load * 2;
    if requested.single_flight {
        fixed += times(rounds * processes);
    }
    if requested.lock {
        fixed += times(rounds);
    }
    let expiry_cost = if requested.expiry {
        expiry_estimate(window, concurrency, load) * u32::try_from(rounds).unwrap_or(u32::MAX)
    } else {
        Duration::ZERO
    };
    let budget = requested.time_budget;
    let sizes_given = requested.concurrency.is_some();
    let mut notes = Vec::new();
    let mut expiry_skipped = None;
    let unprotected_per = |n: u64| times(n * rounds * processes);

    let mut with_expiry = fixed + expiry_cost;
    if requested.expiry && !requested.expiry_by_name && !sizes_given {
        let unprotected = if requested.unprotected {
            unprotected_per(MIN_UNPROTECTED)
        } else {
            Duration::ZERO
        };
        if with_expiry + unprotected > budget {
            let reason = format!(
                "to stay within the {} s time budget: one query took {} ms, so the scenario would take about {} s; run `--mode xfetch` for it alone, or raise --time-budget",
                budget.as_secs(),
                millis(load),
                expiry_cost.as_secs_f64().ceil()
            );
            notes.push(format!("expiry scenario (XFetch) skipped {reason}"));
            expiry_skipped = Some(reason);
            with_expiry = fixed;
        }
    }

    let mut unprotected_requests = concurrency;
    if requested.unprotected && !sizes_given {
        let share = budget.saturating_sub(with_expiry);
        let per_request = unprotected_per(1).max(Duration::from_nanos(1));
        let fits = (share.as_nanos() / per_request.as_nanos()) as u64;
        let fitted = fits.clamp(MIN_UNPROTECTED, concurrency);
        if fitted < concurrency {
            unprotected_requests = fitted;
            notes.push(format!(
                "none: {fitted} requests instead of {concurrency}: one query took {} ms and each unprotected request runs it, so {concurrency} would need about {} s of database time, over the {} s time budget (--time-budget); --concurrency sets the size",
                millis(load),
                unprotected_per(concurrency).as_secs_f64().ceil(),
                budget.as_secs()
            ));
        }
    }
    let estimated = with_expiry
        + if requested.unprotected {
            unprotected_per(unprotected_requests)
        } else {
            Duration::ZERO
        };
    let adapted = !notes.is_empty();
    if estimated > budget {
        let why = if sizes_given {
            "--concurrency was given, so the sizes were kept"
        } else {
            "even at the smallest sizes"
        };
        notes.push(format!(
            "the run needs about {} s of database time, over the {} s time budget ({why}); one query took {} ms",
            estimated.as_secs_f64().ceil(),
            budget.as_secs(),
            millis(load)
        ));
    }
    Plan {
        cold_load,
        time_budget: budget,
        estimated,
        concurrency,
        unprotected_requests,
        adapted,
        expiry_skipped,
        notes,
        lock,
    }
}

impl Plan {
    /// Requests per round (and process) of `protection`.
    pub fn requests_for(&self, protection: Protection) -> u64 {
        match protection {
            Protection::None => self.unprotected_requests,
            _ => self.concurrency,
        }
    }
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_modes() -> Requested {
        Requested {
            concurrency: None,
            lock_ttl: None,
            lock_wait: None,
            time_budget: Duration::from_secs(30),
            rounds: 1,
            processes: 1,
            unprotected: true,
            single_flight: true,
            lock: true,
            expiry: true,
            expiry_by_name: false,
        }
    }

    const POLL: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(25));

    fn plan_for(requested: &Requested, load_ms: u64, window_ms: u64) -> Plan {
        plan(
            requested,
            Duration::from_millis(load_ms),
            Duration::from_millis(window_ms),
            POLL.0,
            POLL.1,
        )
    }

    #[test]
    fn a_fast_query_keeps_every_default() {
        let plan = plan_for(&all_modes(), 3, 1_510);
        assert_eq!((plan.concurrency, plan.unprotected_requests), (100, 100));
        assert!(!plan.adapted);
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
        assert_eq!(plan.expiry_skipped, None);
        assert!(plan.estimated < plan.time_budget);
    }

    #[test]
    fn a_one_second_query_shrinks_the_unprotected_mode_and_skips_the_expiry_scenario() {
        let plan = plan_for(&all_modes(), 1_000, 17_500);
        assert!(plan.expiry_skipped.is_some());
        // 30 s - cold load - reference - single flight - lock = 26 s: 26 requests.
        assert_eq!(plan.unprotected_requests, 26);
        assert_eq!(
            plan.concurrency, 100,
            "the protected modes run one query whatever their size"
        );
        assert!(plan.adapted);
        assert!(plan.estimated <= plan.time_budget);
        assert!(
            plan.notes[1].starts_with("none: 26 requests instead of 100"),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn a_nine_second_query_runs_the_smallest_stampede_and_says_it_is_over_budget() {
        let plan = plan_for(&all_modes(), 9_000, 57_500);
        assert_eq!(plan.unprotected_requests, 2);
        assert!(plan.estimated > plan.time_budget);
        assert!(plan
            .notes
            .last()
            .unwrap()
            .contains("over the 30 s time budget (even at the smallest sizes)"));
    }

    #[test]
    fn given_sizes_are_kept_and_only_warned_about() {
        let given = Requested {
            concurrency: Some(100),
            ..all_modes()
        };
        let plan = plan_for(&given, 1_000, 17_500);
        assert_eq!(plan.unprotected_requests, 100);
        assert_eq!(plan.expiry_skipped, None);
        assert!(!plan.adapted);
        assert!(plan.notes[0].contains("--concurrency was given"), "{:?}", plan.notes);
    }

    #[test]
    fn xfetch_asked_for_by_name_is_not_skipped() {
        let xfetch = Requested {
            unprotected: false,
            single_flight: false,
            lock: false,
            expiry_by_name: true,
            ..all_modes()
        };
        let plan = plan_for(&xfetch, 1_000, 17_500);
        assert_eq!(plan.expiry_skipped, None);
    }

    #[test]
    fn a_fleet_counts_every_process_in_the_unprotected_estimate() {
        let fleet = Requested {
            processes: 4,
            expiry: false,
            ..all_modes()
        };
        // 30 s - 2 s - single flight 4 s - lock 1 s = 23 s over 4 processes: 5 each.
        let plan = plan_for(&fleet, 1_000, 0);
        assert_eq!(plan.unprotected_requests, 5);
    }

    #[test]
    fn the_default_lock_wait_outlasts_the_lock_and_the_next_load() {
        let (ttl, wait) = lock_timing(None, None, Duration::from_millis(3));
        assert_eq!(ttl, Duration::from_millis(5000));
        assert_eq!(wait, Duration::from_millis(6006));
        // A slow load gets a TTL it can finish within.
        let (ttl, wait) = lock_timing(None, None, Duration::from_secs(9));
        assert_eq!(ttl, Duration::from_secs(19));
        assert_eq!(wait, Duration::from_secs(38));
        // A given TTL is kept; the wait still covers it.
        let (ttl, wait) = lock_timing(Some(Duration::from_millis(50)), None, Duration::from_millis(10));
        assert_eq!((ttl, wait), (Duration::from_millis(50), Duration::from_millis(1070)));
        // A load of minutes stays within the flags' limits.
        let (ttl, wait) = lock_timing(None, None, Duration::from_secs(400));
        assert_eq!((ttl, wait), (Duration::from_secs(600), Duration::from_secs(600)));
        // A given wait is kept as given.
        let (_, wait) = lock_timing(None, Some(Duration::ZERO), Duration::from_millis(10));
        assert_eq!(wait, Duration::ZERO);
    }
}
