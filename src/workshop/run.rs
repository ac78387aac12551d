//! Runs one variant of an exercise in this process for the guided app:
//! its arguments are parsed as the command line would be, the exercise's
//! `measure` runs with the app's [`RunProgress`], and its outcome comes
//! back whole (the app draws it; nothing is printed).

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::{Result, WorkshopError};
use crate::exercises::{self, progress::RunProgress, Outcome, Verdict};
use crate::report::{self, Output};
use crate::workshop::facts::{self, Fact};

/// The outcome of any exercise the guided app can run.
// One value per run, moved once into the results pane: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum GuidedOutcome {
    CheckEnv(exercises::check_env::CheckReport),
    CacheAside(exercises::cache_aside::CacheAsideOutcome),
    WriteThrough(exercises::write_through::WriteThroughOutcome),
    Stats(exercises::stats::StatsOutcome),
    MultiLevel(exercises::multi_level::MultiLevelOutcome),
    WriteBehind(exercises::write_behind::WriteBehindOutcome),
    Stampede(exercises::stampede::StampedeRun),
    Leaderboard(exercises::leaderboard::LeaderboardOutcome),
    RateLimit(exercises::rate_limit::RateLimitOutcome),
    Seed(crate::fixtures::SeedReport),
    Clean(exercises::clean::CleanOutcome),
    /// An exercise the app has no widget for: its text report, captured as
    /// it finished, its verdict and a one-line takeaway.
    Captured {
        lines: Vec<String>,
        verdict: Option<Verdict>,
        takeaway: String,
        /// The facts its catalogue questions are checked against.
        facts: Vec<(&'static str, Fact)>,
    },
}

/// An outcome the app has no widget for, captured as its text view.
fn captured<O: Outcome>(
    mut outcome: O,
    view: fn(&O, &Output),
    facts: fn(&O) -> Vec<(&'static str, Fact)>,
    takeaway: &str,
) -> GuidedOutcome {
    let verdict = outcome.verdict();
    let facts = facts(&outcome);
    let output = Output {
        json: false,
        color: false,
        progress: false,
    };
    GuidedOutcome::Captured {
        lines: report::capture::lines(|| view(&outcome, &output)),
        verdict: Some(verdict),
        takeaway: takeaway.to_string(),
        facts,
    }
}

/// Why a variant cannot run inside the app (it runs until stopped, or it
/// is not an exercise): the learner runs it in another terminal.
pub fn not_in_process(args: &[String]) -> Option<String> {
    let line = super::catalogue::command_line(args);
    match args.first().map(String::as_str) {
        Some("serve") | Some("load") => Some(format!(
            "{line} runs until you stop it: start it in another terminal (the briefing shows how)"
        )),
        Some("multi-level") if args.iter().any(|a| a == "--listen") && !args.iter().any(|a| a == "--duration") => Some(
            format!("{line} listens until you stop it: start it in another terminal"),
        ),
        Some("exercises") | Some("completions") => Some(format!("{line} is not an exercise")),
        _ => None,
    }
}

/// Parses `args` (after `workshop-cli`) into the command to run.
pub fn parse(args: &[String]) -> std::result::Result<Command, String> {
    let argv = std::iter::once("workshop-cli".to_string()).chain(args.iter().cloned());
    let cli = <Cli as clap::Parser>::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        text.lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("these arguments do not parse")
            .trim_start_matches("error: ")
            .to_string()
    })?;
    cli.command.ok_or_else(|| "no command to run".to_string())
}

/// Runs `command` with `config`, reporting through `progress`.
pub async fn measure(command: Command, config: &Config, progress: &dyn RunProgress) -> Result<GuidedOutcome> {
    Ok(match command {
        Command::CheckEnv => GuidedOutcome::CheckEnv(exercises::check_env::measure(config, progress).await?),
        Command::CacheAside(args) => {
            GuidedOutcome::CacheAside(exercises::cache_aside::measure(config, args.into(), progress).await?)
        }
        Command::WriteThrough(args) => {
            GuidedOutcome::WriteThrough(exercises::write_through::measure(config, args.into(), progress).await?)
        }
        Command::Stats(args) => {
            let mut options: exercises::stats::StatsOptions = args.into();
            options.json = false;
            GuidedOutcome::Stats(exercises::stats::measure(config, options, progress).await?)
        }
        Command::MultiLevel(args) => {
            GuidedOutcome::MultiLevel(exercises::multi_level::measure(config, args.into(), progress).await?)
        }
        Command::WriteBehind(args) => {
            GuidedOutcome::WriteBehind(exercises::write_behind::measure(config, args.into(), progress).await?)
        }
        Command::Stampede(args) => {
            GuidedOutcome::Stampede(exercises::stampede::measure(config, args.into(), progress).await?)
        }
        Command::Leaderboard(args) => {
            GuidedOutcome::Leaderboard(exercises::leaderboard::measure(config, args.into(), progress).await?)
        }
        Command::RateLimit(args) => {
            GuidedOutcome::RateLimit(exercises::rate_limit::measure(config, args.into(), progress).await?)
        }
        Command::Seed(args) => {
            let options = crate::fixtures::SeedOptions {
                scale: args.scale,
                reset: args.reset,
            };
            GuidedOutcome::Seed(exercises::seed::measure(config, options, progress).await?)
        }
        Command::Clean(args) => GuidedOutcome::Clean(exercises::clean::measure(config, args.into(), progress).await?),
        Command::ApiCache(args) => captured(
            exercises::api_cache::measure(config, args.into(), progress).await?,
            report::api_cache::show,
            facts::api_cache,
            "upstream calls avoided and latency with and without the cache: the table says how many",
        ),
        Command::Session(args) => captured(
            exercises::session::measure(config, args.into(), progress).await?,
            report::session::show,
            facts::session,
            "a session in Valkey slides and expires by itself; the table needs a DELETE",
        ),
        Command::Ttl(args) => captured(
            exercises::ttl::measure(config, args.into(), progress).await?,
            report::ttl::show,
            facts::ttl,
            "keys written together expire together: jitter spreads the misses",
        ),
        Command::Tracking(args) if args.reader.is_none() => captured(
            exercises::tracking::measure(config, args.into(), progress).await?,
            report::tracking::show,
            facts::tracking,
            "Valkey itself tells a tracking client which keys changed",
        ),
        Command::Cluster(args) => captured(
            exercises::cluster::measure(config, args.into(), progress).await?,
            report::cluster::show,
            |_| Vec::new(),
            "the keys spread over the primaries by hash slot; the table says how",
        ),
        Command::Serve(_)
        | Command::Load(_)
        | Command::Tracking(_)
        | Command::Grade(_)
        | Command::Plot(_)
        | Command::Exercises(_)
        | Command::Completions { .. } => {
            return Err(WorkshopError::invalid(
                "this command does not run inside the guided workshop; start it in another terminal",
            ))
        }
    })
}

impl GuidedOutcome {
    /// The text view's lines (what the command prints), for the generic pane.
    pub fn text_lines(&self) -> Vec<String> {
        let output = Output {
            json: false,
            color: false,
            progress: false,
        };
        let output = &output;
        report::capture::lines(|| match self {
            GuidedOutcome::CheckEnv(o) => report::check_env::show(o, output),
            GuidedOutcome::CacheAside(o) => report::latency::show_cache_aside(o, output),
            GuidedOutcome::WriteThrough(o) => report::writes::show_write_through(o, output),
            GuidedOutcome::Stats(o) => report::stats::show(o, output),
            GuidedOutcome::MultiLevel(o) => report::multi_level::show(o, output),
            GuidedOutcome::WriteBehind(o) => report::write_behind::show(o, output),
            GuidedOutcome::Stampede(o) => report::stampede::show_run(o, output),
            GuidedOutcome::Leaderboard(o) => {
                report::leaderboard::show(o, output);
                o.warnings.iter().for_each(|w| output.warn(w));
            }
            GuidedOutcome::RateLimit(o) => {
                report::rate_limit::show(o, output);
                o.warnings.iter().for_each(|w| output.warn(w));
            }
            GuidedOutcome::Seed(o) => report::seed::show(o, output),
            GuidedOutcome::Clean(o) => report::clean::show(o, output),
            GuidedOutcome::Captured { lines, .. } => lines.iter().for_each(|line| output.text(line)),
        })
    }

    /// Takes the verdict out (once), as `app.rs` does after showing.
    pub fn verdict(&mut self) -> Verdict {
        match self {
            GuidedOutcome::CheckEnv(o) => o.verdict(),
            GuidedOutcome::CacheAside(o) => o.verdict(),
            GuidedOutcome::WriteThrough(o) => o.verdict(),
            GuidedOutcome::Stats(o) => o.verdict(),
            GuidedOutcome::MultiLevel(o) => o.verdict(),
            GuidedOutcome::WriteBehind(o) => o.verdict(),
            GuidedOutcome::Stampede(o) => o.verdict(),
            GuidedOutcome::Leaderboard(o) => match o.verdict() {
                Ok(()) => Verdict::Complete,
                Err(error) => Verdict::failed(error),
            },
            GuidedOutcome::RateLimit(_) => Verdict::Complete,
            GuidedOutcome::Seed(o) => o.verdict(),
            GuidedOutcome::Clean(o) => o.verdict(),
            GuidedOutcome::Captured { verdict, .. } => verdict.take().unwrap_or_default(),
        }
    }
}
