//! `grade`: runs the attendee's own program — a script or a service — and
//! judges it by what the servers saw, not by what it prints.
//!
//! The grader sets up a world of its own for each run ([`world`]): a database
//! it creates and seeds (dropped at the end, also on an error or Ctrl-C) and a
//! private `valkey-server` on a free port. So the statement counts
//! ([`observe::StatementCounter`], scoped to that database's name) and the
//! Valkey counts (`INFO` deltas, SCAN, TTLs) belong to the program under
//! grading alone, and the grader can stop Valkey for the "Valkey stopped" step.
//!
//! [`script`] grades `cache-aside` and `write-through` programs, [`service`] a
//! product API of exercise 7's shape. Both return a [`GradeOutcome`]: checks
//! with pass/fail, evidence, a fix hint and the briefing that teaches it;
//! `report::grade` renders it, and `app.rs` exits 9 when a required check failed.

pub mod observe;
pub mod prometheus_text;
pub mod script;
pub mod service;
pub mod world;

use std::time::Duration;

use serde::Serialize;

use crate::error::WorkshopError;
use crate::exercises::{Outcome, Verdict};

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Not run: the set-up cannot observe it (said in the evidence).
    Skipped,
}

/// One graded property of the program.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name for scripts and tests, e.g. `second-run-hits-cache`.
    pub id: &'static str,
    pub title: &'static str,
    /// A failed required check makes the grade fail (exit 9).
    pub required: bool,
    pub status: Status,
    /// What the servers saw: counts, keys, TTLs, exit codes.
    pub evidence: String,
    /// What to change when it failed (shown for every check, so the table reads alone).
    pub hint: &'static str,
    /// The briefing section that teaches it.
    pub briefing: &'static str,
}

impl Check {
    pub fn new(id: &'static str, title: &'static str, hint: &'static str, briefing: &'static str) -> Check {
        Check {
            id,
            title,
            required: true,
            status: Status::Skipped,
            evidence: String::new(),
            hint,
            briefing,
        }
    }

    pub fn optional(mut self) -> Check {
        self.required = false;
        self
    }

    /// Pass when `ok`, with `evidence` either way.
    pub fn judged(mut self, ok: bool, evidence: impl Into<String>) -> Check {
        self.status = if ok { Status::Pass } else { Status::Fail };
        self.evidence = evidence.into();
        self
    }

    pub fn skipped(mut self, why: impl Into<String>) -> Check {
        self.status = Status::Skipped;
        self.evidence = why.into();
        self
    }
}

/// What one run of the program (or one burst of requests) did, as the servers saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Step {
    pub name: String,
    /// The program's exit code (`None`: killed, or a service step).
    pub exit_code: Option<i32>,
    #[serde(serialize_with = "crate::grade::millis")]
    pub duration: Duration,
    /// Statements that read or wrote data (session set-up such as `SET` or
    /// `SELECT VERSION()` is not counted; it is in `statements`).
    pub queries: u64,
    pub statements: Vec<observe::StatementCount>,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    /// Valkey commands by name (`INFO commandstats` delta; the grader's own INFO left out).
    pub commands: std::collections::BTreeMap<String, u64>,
    /// Keys that appeared during the step.
    pub new_keys: Vec<String>,
}

pub fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1000.0)
}

/// What was graded and how it went.
#[derive(Debug, Serialize)]
pub struct GradeOutcome {
    /// `cache-aside`, `write-through` or `service`.
    pub exercise: &'static str,
    /// The command or the URLs graded.
    pub graded: String,
    /// `mysql` or `postgres`, and where the counts came from.
    pub database: String,
    pub observed_with: String,
    pub checks: Vec<Check>,
    pub steps: Vec<Step>,
    pub score: Score,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Score {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub required_failed: usize,
    pub total: usize,
}

impl Score {
    pub fn of(checks: &[Check]) -> Score {
        let count = |status| checks.iter().filter(|c| c.status == status).count();
        Score {
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            skipped: count(Status::Skipped),
            required_failed: checks.iter().filter(|c| c.required && c.status == Status::Fail).count(),
            total: checks.len(),
        }
    }
}

impl GradeOutcome {
    pub fn new(exercise: &'static str, graded: String, database: String, observed_with: String) -> GradeOutcome {
        GradeOutcome {
            exercise,
            graded,
            database,
            observed_with,
            checks: Vec::new(),
            steps: Vec::new(),
            score: Score::of(&[]),
            warnings: Vec::new(),
        }
    }

    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
        self.score = Score::of(&self.checks);
    }

    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

impl Outcome for GradeOutcome {
    fn verdict(&mut self) -> Verdict {
        match self.score.required_failed {
            0 => Verdict::Complete,
            failed => Verdict::failed(WorkshopError::GradeFailed {
                failed,
                total: self.checks.iter().filter(|c| c.required).count(),
            }),
        }
    }
}

/// Shortens a program's output for evidence: the last `max` characters, one line.
pub fn tail(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = one_line.chars().count();
    if count <= max {
        one_line
    } else {
        let skip = count - max;
        format!("…{}", one_line.chars().skip(skip).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_optional_check_does_not_fail_the_grade() {
        let mut outcome = GradeOutcome::new("cache-aside", "x".into(), "mysql".into(), "ps".into());
        outcome.push(Check::new("a", "a", "", "").judged(true, "ok"));
        outcome.push(Check::new("b", "b", "", "").optional().judged(false, "no"));
        assert_eq!(outcome.score.required_failed, 0);
        assert!(matches!(outcome.verdict(), Verdict::Complete));
        outcome.push(Check::new("c", "c", "", "").judged(false, "no"));
        assert_eq!(outcome.score.required_failed, 1);
        assert!(matches!(outcome.verdict(), Verdict::Failed(_)));
    }

    #[test]
    fn tail_keeps_the_end_of_long_output_on_one_line() {
        assert_eq!(tail("a\nb", 10), "a b");
        assert_eq!(tail("0123456789", 4), "…6789");
    }
}
