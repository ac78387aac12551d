//! A circuit breaker in front of Valkey: a hung server (stopped, not dead)
//! answers nothing, so every command would wait out the cache timeout. After
//! a few consecutive failures the breaker opens and commands are skipped at
//! once (the caller falls back to the database) for a cool-down; then one
//! probe goes through. A probe that succeeds closes the breaker; one that
//! fails opens it again for twice as long, up to a limit.
//!
//! Pure state machine over `tokio::time::Instant`, so its tests run on
//! tokio's paused clock.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// The first cool-down; each failed probe doubles it.
    pub cool_down: Duration,
    pub longest_cool_down: Duration,
}

impl Default for BreakerSettings {
    /// Three failures in a row: one slow answer is not an outage. A 1 s
    /// cool-down growing to 4 s: hits resume within seconds of a recovery,
    /// and a long outage costs one probe timeout every 4 s.
    fn default() -> Self {
        BreakerSettings {
            failures_to_open: 3,
            cool_down: Duration::from_secs(1),
            longest_cool_down: Duration::from_secs(4),
        }
    }
}

/// What the breaker lets a command do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: send it.
    Send,
    /// The cool-down is over: send it as the one probe.
    Probe,
    /// Open (or a probe is under way): do not send it.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, cool_down: Duration },
    Probing { cool_down: Duration },
}

/// Counts for the run's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BreakerCounts {
    /// How often the breaker opened (again after a failed probe included).
    pub openings: u64,
    /// Commands not sent because the breaker was open.
    pub skipped: u64,
    /// Commands that did not answer within the cache timeout.
    pub timeouts: u64,
}

impl BreakerCounts {
    /// The run's warning when Valkey stopped answering at some point.
    pub fn warning(&self, timeout: Duration) -> Option<String> {
        if *self == BreakerCounts::default() {
            return None;
        }
        Some(format!(
            "Valkey stopped answering: {} command(s) timed out after {} ms, the circuit breaker opened {} time(s) and skipped {} command(s); the database served those reads (--cache-timeout sets the wait)",
            self.timeouts,
            timeout.as_millis(),
            self.openings,
            self.skipped
        ))
    }

    /// The counts of two connections together.
    pub fn plus(&self, other: &BreakerCounts) -> BreakerCounts {
        BreakerCounts {
            openings: self.openings + other.openings,
            skipped: self.skipped + other.skipped,
            timeouts: self.timeouts + other.timeouts,
        }
    }

    /// What happened since `earlier` (for a per-second timeline).
    pub fn since(&self, earlier: &BreakerCounts) -> BreakerCounts {
        BreakerCounts {
            openings: self.openings.saturating_sub(earlier.openings),
            skipped: self.skipped.saturating_sub(earlier.skipped),
            timeouts: self.timeouts.saturating_sub(earlier.timeouts),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
    counts: BreakerCounts,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            state: State::Closed { failures: 0 },
            counts: BreakerCounts::default(),
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed { .. } => Admission::Send,
            State::Open { until, cool_down } if now >= until => {
                self.state = State::Probing { cool_down };
                Admission::Probe
            }
            State::Open { .. } | State::Probing { .. } => {
                self.counts.skipped += 1;
                Admission::Skip
            }
        }
    }

    /// The server answered (an error reply counts: it is alive).
    pub fn succeeded(&mut self) {
        self.state = State::Closed { failures: 0 };
    }

    /// No answer: a timeout, a refused or dropped connection.
    pub fn failed(&mut self, now: Instant, timed_out: bool) {
        if timed_out {
            self.counts.timeouts += 1;
        }
        match self.state {
            State::Closed { failures } if failures + 1 >= self.settings.failures_to_open => {
                self.open(now, self.settings.cool_down);
            }
            State::Closed { failures } => self.state = State::Closed { failures: failures + 1 },
            State::Probing { cool_down } => {
                self.open(now, (cool_down * 2).min(self.settings.longest_cool_down));
            }
            // A command sent before the breaker opened, failing late.
            State::Open { .. } => {}
        }
    }

    fn open(&mut self, now: Instant, cool_down: Duration) {
        self.counts.openings += 1;
        self.state = State::Open {
            until: now + cool_down,
            cool_down,
        };
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    pub fn counts(&self) -> BreakerCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings::default())
    }

    fn fail_times(breaker: &mut Breaker, n: u32) {
        for _ in 0..n {
            assert_ne!(breaker.admit(Instant::now()), Admission::Skip);
            breaker.failed(Instant::now(), true);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn three_failures_in_a_row_open_it_and_later_commands_are_skipped() {
        let mut breaker = breaker();
        fail_times(&mut breaker, 2);
        assert!(!breaker.is_open());
        fail_times(&mut breaker, 1);
        assert!(breaker.is_open());
        assert_eq!(breaker.admit(Instant::now()), Admission::Skip);
        assert_eq!(breaker.admit(Instant::now()), Admission::Skip);
        assert_eq!(
            breaker.counts(),
            BreakerCounts {
                openings: 1,
                skipped: 2,
                timeouts: 3
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_between_failures_starts_the_count_again() {
        let mut breaker = breaker();
        fail_times(&mut breaker, 2);
        breaker.succeeded();
        fail_times(&mut breaker, 2);
        assert!(!breaker.is_open());
        assert_eq!(breaker.counts().openings, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_cool_down_one_probe_goes_through_and_its_success_closes_it() {
        let mut breaker = breaker();
        fail_times(&mut breaker, 3);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(breaker.admit(Instant::now()), Admission::Skip);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(breaker.admit(Instant::now()), Admission::Probe);
        // Only one probe at a time.
        assert_eq!(breaker.admit(Instant::now()), Admission::Skip);
        breaker.succeeded();
        assert!(!breaker.is_open());
        assert_eq!(breaker.admit(Instant::now()), Admission::Send);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_doubles_the_cool_down_up_to_the_limit() {
        let mut breaker = breaker();
        fail_times(&mut breaker, 3);
        for cool_down_ms in [1000, 2000, 4000, 4000] {
            tokio::time::advance(Duration::from_millis(cool_down_ms - 1)).await;
            assert_eq!(breaker.admit(Instant::now()), Admission::Skip, "{cool_down_ms}");
            tokio::time::advance(Duration::from_millis(1)).await;
            assert_eq!(breaker.admit(Instant::now()), Admission::Probe, "{cool_down_ms}");
            breaker.failed(Instant::now(), false);
        }
        assert_eq!(breaker.counts().openings, 5);
        assert_eq!(breaker.counts().timeouts, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_failure_while_open_does_not_extend_the_cool_down() {
        let mut breaker = breaker();
        fail_times(&mut breaker, 3);
        tokio::time::advance(Duration::from_millis(500)).await;
        breaker.failed(Instant::now(), true);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(breaker.admit(Instant::now()), Admission::Probe);
        assert_eq!(breaker.counts().openings, 1);
    }
}
