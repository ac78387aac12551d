//! What a finished run says in one number or name: the facts a catalogue
//! question is checked against, and the one-line takeaway under each run.
//! Pure functions of the outcome.

use std::time::Duration;

use super::catalogue::Question;
use super::run::GuidedOutcome;
use crate::patterns::stampede::Protection;

/// The facts each command answers, for the catalogue's questions
/// (documented at the top of `exercises/catalogue.toml`).
pub const FACTS: &[(&str, &[&str])] = &[
    ("check-env", &["failed_checks"]),
    ("cache-aside", &["speedup", "cache_hits"]),
    (
        "stampede",
        &[
            "unprotected_queries",
            "single_flight_queries",
            "lock_queries",
            "xfetch_queries",
        ],
    ),
    ("stats", &["hit_rate", "best_policy"]),
    ("leaderboard", &["speedup"]),
    ("rate-limit", &["busiest_second_limiter", "busiest_second"]),
    ("api-cache", &["calls_avoided", "single_flight_calls"]),
    ("session", &["read_speedup"]),
    ("ttl", &["peak_drop_percent"]),
    ("tracking", &["stale_after_unannounced_write"]),
];

/// Exercise 8's facts: upstream calls the cache saved, and what single
/// flight let through for one cold city.
pub fn api_cache(o: &crate::exercises::api_cache::ApiCacheOutcome) -> Vec<(&'static str, Fact)> {
    let mut facts = vec![("calls_avoided", Fact::Number(o.calls_avoided as f64))];
    if let Some(run) = o.stampede.iter().find(|r| r.mode.name() == "single-flight") {
        facts.push(("single_flight_calls", Fact::Number(run.pass.upstream_calls as f64)));
    }
    facts
}

/// Exercise 10's fact: how many times faster a session read is in Valkey.
pub fn session(o: &crate::exercises::session::SessionOutcome) -> Vec<(&'static str, Fact)> {
    let crate::exercises::session::SessionOutcome::Run(run) = o else {
        return Vec::new();
    };
    run.timings
        .iter()
        .find(|t| t.operation == "read")
        .and_then(|t| t.speedup)
        .map(|x| vec![("read_speedup", Fact::Number(x))])
        .unwrap_or_default()
}

/// Exercise 12's fact: how much lower the jittered peak of misses per second is, in per cent.
pub fn ttl(o: &crate::exercises::ttl::TtlOutcome) -> Vec<(&'static str, Fact)> {
    o.peak_ratio
        .map(|ratio| vec![("peak_drop_percent", Fact::Number((1.0 - ratio) * 100.0))])
        .unwrap_or_default()
}

/// Exercise 13's fact: the mode whose reader kept a stale value after a
/// write nobody announced (or `none`).
pub fn tracking(o: &crate::exercises::tracking::TrackingOutcome) -> Vec<(&'static str, Fact)> {
    let stale: Vec<&str> = o
        .modes
        .iter()
        .filter(|m| !m.unannounced_write_invalidated)
        .map(|m| m.mode.name())
        .collect();
    let name = if stale.is_empty() {
        "none".to_string()
    } else {
        stale.join("+")
    };
    vec![("stale_after_unannounced_write", Fact::Name(name))]
}

/// Whether `command` (a subcommand name) answers `fact`.
pub fn known(command: &str, fact: &str) -> bool {
    FACTS.iter().any(|(c, facts)| *c == command && facts.contains(&fact))
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Number(f64),
    Name(String),
}

impl std::fmt::Display for Fact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fact::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{n:.0}"),
            Fact::Number(n) if n.abs() >= 10.0 => write!(f, "{n:.0}"),
            Fact::Number(n) => write!(f, "{n:.1}"),
            Fact::Name(name) => f.write_str(name),
        }
    }
}

/// The named fact of an outcome, when the run measured it.
pub fn fact(outcome: &GuidedOutcome, name: &str) -> Option<Fact> {
    use GuidedOutcome as G;
    match (outcome, name) {
        (G::CheckEnv(o), "failed_checks") => Some(Fact::Number(o.failed() as f64)),
        (G::CacheAside(o), "speedup") => o.summary.speedup.map(Fact::Number),
        (G::CacheAside(o), "cache_hits") => Some(Fact::Number(o.sources.get("cache").copied().unwrap_or(0) as f64)),
        (G::Stampede(crate::exercises::stampede::StampedeRun::Compared(o)), name) => {
            let mode = match name {
                "unprotected_queries" => Protection::None,
                "single_flight_queries" => Protection::SingleFlight,
                "lock_queries" => Protection::Lock,
                "xfetch_queries" => Protection::Xfetch,
                _ => return None,
            };
            o.modes
                .iter()
                .find(|m| m.mode == mode)
                .map(|m| Fact::Number(m.database_queries as f64))
        }
        (G::Stats(o), "hit_rate") => o.run.as_ref()?.hit_rate.overall.map(|r| Fact::Number(r * 100.0)),
        (G::Stats(o), "best_policy") => o
            .eviction
            .as_ref()?
            .runs
            .iter()
            .filter_map(|r| Some((r.policy.clone(), r.run.hit_rate.overall?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(policy, _)| Fact::Name(policy)),
        (G::Leaderboard(o), "speedup") => o.reads.top.speedup.map(Fact::Number),
        (G::RateLimit(o), "busiest_second_limiter") => o
            .limiters
            .iter()
            .max_by_key(|l| l.max_in_any_second)
            .map(|l| Fact::Name(l.limiter.name().to_string())),
        (G::RateLimit(o), "busiest_second") => o
            .limiters
            .iter()
            .map(|l| l.max_in_any_second)
            .max()
            .map(|n| Fact::Number(n as f64)),
        (G::Captured { facts, .. }, name) => facts.iter().find(|(n, _)| *n == name).map(|(_, f)| f.clone()),
        _ => None,
    }
}

/// A guess checked against the run: what was said, what the run says.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub guess: String,
    pub actual: Option<Fact>,
    pub right: bool,
}

pub fn check(question: &Question, guess: usize, outcome: &GuidedOutcome) -> Checked {
    let choice = question.choices.get(guess);
    let actual = fact(outcome, &question.fact);
    let right = match (choice, &actual) {
        (Some(choice), Some(Fact::Number(n))) => choice.matches_number(*n),
        (Some(choice), Some(Fact::Name(name))) => choice.matches_name(name),
        _ => false,
    };
    Checked {
        guess: choice.map_or_else(String::new, |c| c.label.clone()),
        actual,
        right,
    }
}

/// `0.21 ms`, `12.3 ms`, `1.24 s`, `85 µs`: at most 8 columns, never split.
pub fn short_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".into(), |r| format!("{:.0} %", r * 100.0))
}

/// One line computed from the numbers that closes each run.
pub fn takeaway(outcome: &GuidedOutcome) -> String {
    use GuidedOutcome as G;
    match outcome {
        G::CheckEnv(o) => match o.failed() {
            0 => format!("all {} checks passed: every exercise can run", o.checks.len()),
            n => format!("{n} ✗ rows: fix them (the last column says how), then run again"),
        },
        G::CacheAside(o) => {
            let hits = o.sources.get("cache").copied().unwrap_or(0);
            match (&o.summary.database, &o.summary.cache, o.summary.speedup) {
                (Some(db), Some(cache), Some(speedup)) => format!(
                    "cache hit p50 {} vs database {}: {speedup:.1}× faster ({hits} hits)",
                    short_duration(cache.p50),
                    short_duration(db.p50)
                ),
                _ => o
                    .summary
                    .not_compared
                    .clone()
                    .unwrap_or_else(|| "nothing to compare: no cache hits and database reads both".into()),
            }
        }
        G::Stampede(crate::exercises::stampede::StampedeRun::Compared(o)) => {
            let queries = |mode| o.modes.iter().find(|m| m.mode == mode);
            match (queries(Protection::SingleFlight), queries(Protection::None)) {
                (Some(sf), Some(none)) => format!(
                    "single flight: {} database {} for {} requests; without it {} for {}",
                    sf.database_queries,
                    if sf.database_queries == 1 { "query" } else { "queries" },
                    sf.requests,
                    none.database_queries,
                    none.requests
                ),
                _ => o
                    .modes
                    .iter()
                    .map(|m| {
                        format!(
                            "{}: {} queries / {} requests",
                            m.mode.name(),
                            m.database_queries,
                            m.requests
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" · "),
            }
        }
        G::Stampede(_) => "a fleet copy's report (its parent adds it up)".into(),
        G::Stats(o) => match (&o.eviction, &o.run) {
            (Some(eviction), _) => {
                let mut runs: Vec<_> = eviction
                    .runs
                    .iter()
                    .map(|r| format!("{} {}", r.policy, percent(r.run.hit_rate.overall)))
                    .collect();
                runs.insert(0, "hit rate under maxmemory:".into());
                runs.join(" ")
            }
            (None, Some(run)) => format!(
                "{} of {} requests answered by a cache (L1 {}, Valkey {})",
                percent(run.hit_rate.overall),
                crate::measure::count(run.requests),
                percent(run.hit_rate.l1),
                percent(run.hit_rate.l2)
            ),
            (None, None) => "no run to show".into(),
        },
        G::Leaderboard(o) => match (&o.reads.top.database, &o.reads.top.valkey, o.reads.top.speedup) {
            (Some(db), Some(valkey), Some(speedup)) => format!(
                "top {}: ZRANGE p50 {} vs SQL {}: {speedup:.0}× faster; sides {}",
                o.top,
                short_duration(valkey.p50),
                short_duration(db.p50),
                if o.after.top_agree { "agree" } else { "DISAGREE" }
            ),
            _ => format!(
                "top {}: sides {}",
                o.top,
                if o.after.top_agree { "agree" } else { "disagree" }
            ),
        },
        G::RateLimit(o) => {
            let each: Vec<String> = o
                .limiters
                .iter()
                .map(|l| format!("{} {}", l.limiter.name(), l.max_in_any_second))
                .collect();
            format!("busiest second vs {:.0}/s: {}", o.limit_per_second, each.join(" · "))
        }
        G::WriteThrough(o) => match (&o.summary.database, &o.summary.cache) {
            (Some(db), Some(cache)) => format!(
                "{} write(s): database p50 {} + cache p50 {}; {}",
                o.write_count,
                short_duration(db.p50),
                short_duration(cache.p50),
                if o.all_consistent {
                    "cache and database agree".to_string()
                } else {
                    format!("{} write(s) inconsistent", o.inconsistent_writes)
                }
            ),
            _ => format!("{} write(s)", o.write_count),
        },
        G::MultiLevel(o) => match o {
            crate::exercises::multi_level::MultiLevelOutcome::Reads(r) => {
                let c = &r.counters;
                let requests = c.l1_hits + c.l1_misses;
                let share = |n: u64| percent((requests > 0).then(|| n as f64 / requests as f64));
                format!(
                    "{requests} reads: L1 {} · Valkey {} · database {} ({} loads)",
                    share(c.l1_hits),
                    share(c.l2_hits),
                    share(c.database_loads),
                    c.database_loads
                )
            }
            crate::exercises::multi_level::MultiLevelOutcome::Change(c) => format!(
                "product {} changed; {} other process(es) told to drop it from L1",
                c.product_id,
                c.receivers.map_or_else(|| "no".into(), |n| n.to_string())
            ),
            crate::exercises::multi_level::MultiLevelOutcome::Listen(_) => "listening ended".into(),
        },
        G::WriteBehind(o) => {
            let produced = o.produced.as_ref().map(|p| {
                let ack = p.ack.as_ref().map_or_else(|| "–".into(), |a| short_duration(a.p50));
                format!("{} writes acknowledged (p50 {ack})", p.writes)
            });
            let speedup = o
                .comparison
                .as_ref()
                .and_then(|c| c.ack_speedup)
                .map(|x| format!("{x:.0}× faster than write-through"));
            let flushed = o
                .flushed
                .as_ref()
                .map(|f| format!("{} stored in the database", f.inserted));
            let parts: Vec<String> = [produced, speedup, flushed].into_iter().flatten().collect();
            if parts.is_empty() {
                "nothing written".into()
            } else {
                parts.join("; ")
            }
        }
        G::Seed(_) => "the fixtures are loaded: every exercise has its data".into(),
        G::Clean(_) => "what the workshop wrote is undone (the table says what)".into(),
        G::Captured { takeaway, .. } => takeaway.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_short_and_keep_their_unit() {
        assert_eq!(short_duration(Duration::from_micros(85)), "85 µs");
        assert_eq!(short_duration(Duration::from_micros(2_340)), "2.34 ms");
        assert_eq!(short_duration(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(short_duration(Duration::from_millis(1_240)), "1.24 s");
    }

    #[test]
    fn every_catalogue_question_names_a_fact_its_command_answers() {
        for exercise in super::super::catalogue::Catalogue::builtin().unwrap().exercises {
            for variant in exercise.runs() {
                if let Some(question) = &variant.question {
                    let command = variant.args.first().map(String::as_str).unwrap_or_default();
                    assert!(known(command, &question.fact), "{}: {}", exercise.id, question.fact);
                    assert!(question.choices.len() >= 2, "{}", exercise.id);
                }
            }
        }
    }
}
