//! The one dispatcher: turns a parsed command into a run of one exercise,
//! hands its outcome to a view (text tables or `--json`) and turns the
//! outcome's verdict into the exit code.
//!
//! Every run is also watched for Ctrl-C and SIGTERM: the queries it started
//! are cancelled on the server (closing the connection would not stop them),
//! then the process exits 130 or 143. A run that ends with an error gets the
//! same clean-up, so a timed-out or failed task leaves no sibling query behind.

use std::io::IsTerminal;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, Command, ExercisesAction};
use crate::config::{Config, ConfigError};
use crate::db::{cancel, DbError};
use crate::error::{exit, Result, Signal, WorkshopError};
use crate::exercises::{self, Outcome};
use crate::report::progress::BarProgress;
use crate::report::{self, Output};
use crate::workshop::{commands, guided};

/// Runs the command line `main` parsed; `Ok` holds the exit code of a run
/// that ended without an error (0, or 2 when there is nothing to do).
pub fn main(
    command: Option<Command>,
    config: std::result::Result<Config, ConfigError>,
    start: &Path,
    output: Output,
) -> Result<u8> {
    match command {
        None if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() => {
            block_on(Flavour::OneThread, guided::run(config, start, output))?;
        }
        None => {
            // Nothing to guide without a terminal: show the help, exit with the usage code.
            let _ = Cli::command().write_long_help(&mut std::io::stderr());
            eprintln!();
            return Ok(exit::USAGE);
        }
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "workshop-cli", &mut std::io::stdout());
        }
        // Reads files only: no configuration, services or runtime needed.
        Some(Command::Plot(args)) => report::plot::run(&args.into(), &output)?,
        Some(Command::Exercises(args)) => match args.action {
            None => commands::list(start, &output)?,
            Some(ExercisesAction::Show { exercise }) => commands::show(start, &exercise, &output)?,
            Some(ExercisesAction::Reset { exercise }) => commands::reset(start, exercise.as_deref(), &output)?,
        },
        Some(command) => {
            let config = config?;
            // The exercises are clients waiting on the network: one thread avoids
            // cross-thread wake-ups between a task and the Valkey connection's driver
            // (measured: same single-read latency, about twice the throughput at 50
            // tasks on 2 cores). Seeding generates data while it loads, so it gets threads.
            let flavour = match command {
                Command::Seed(_) => Flavour::Threads,
                _ => Flavour::OneThread,
            };
            match block_on(flavour, run(command, config, output)) {
                Err(WorkshopError::Noted { notes, error }) => {
                    for note in &notes {
                        output.warn(note);
                    }
                    return Err(*error);
                }
                result => result?,
            }
        }
    }
    Ok(exit::OK)
}

enum Flavour {
    OneThread,
    Threads,
}

fn block_on(flavour: Flavour, future: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    let mut builder = match flavour {
        Flavour::OneThread => tokio::runtime::Builder::new_current_thread(),
        Flavour::Threads => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| WorkshopError::Other(e.into()))?;
    runtime.block_on(future)
}

pub async fn run(command: Command, config: Config, output: Output) -> Result<()> {
    let own_signal_handling = handles_signals_itself(&command);
    let cancel_within = config.connect_timeout;
    let dispatch = dispatch(command, config, output);
    let result = if own_signal_handling {
        // It ends on a signal by itself (restoring what it changed): only cancel
        // the database work alongside.
        let watcher = async {
            if interruption().await.is_some() {
                cancel::cancel_running(cancel_within).await;
            }
            std::future::pending::<std::convert::Infallible>().await
        };
        tokio::select! {
            result = dispatch => result,
            never = watcher => match never {},
        }
    } else {
        tokio::select! {
            result = dispatch => result,
            Some(signal) = interruption() => {
                // The run's future is dropped here; its queries still run on the server.
                let cancelled = cancel::cancel_running(cancel_within).await;
                Err(WorkshopError::Interrupted { signal, cancelled })
            }
        }
    };
    // A lost server cannot be asked to cancel: do not wait for it again.
    let server_lost = matches!(result, Err(WorkshopError::Database(DbError::Unreachable { .. })));
    if result.is_err() && !server_lost && cancel::anything_to_cancel() {
        cancel::cancel_running(cancel_within).await;
    }
    result
}

async fn dispatch(command: Command, config: Config, output: Output) -> Result<()> {
    let progress = BarProgress::new(&output);
    let progress = &progress;
    match command {
        // Run in `main` without services; never dispatched here.
        Command::Exercises(_) | Command::Completions { .. } | Command::Plot(_) => Ok(()),
        Command::CheckEnv => {
            let outcome = exercises::check_env::measure(&config, progress).await?;
            finish(outcome, &output, report::check_env::show)
        }
        Command::Clean(args) => {
            let outcome = exercises::clean::measure(&config, args.into(), progress).await?;
            finish(outcome, &output, report::clean::show)
        }
        Command::Seed(args) => {
            let options = crate::fixtures::SeedOptions {
                scale: args.scale,
                reset: args.reset,
            };
            let outcome = exercises::seed::measure(&config, options, progress).await?;
            finish(outcome, &output, report::seed::show)
        }
        Command::CacheAside(args) => {
            let outcome = exercises::cache_aside::measure(&config, args.into(), progress).await?;
            finish(outcome, &output, report::latency::show_cache_aside)
        }
        Command::WriteThrough(args) => {
            let outcome = exercises::write_through::measure(&config, args.into(), progress).await?;
            finish(outcome, &output, report::writes::show_write_through)
        }
        Command::MultiLevel(args) => {
            let outcome = exercises::multi_level::measure(&config, args.into(), progress).await?;
            finish(outcome, &output, report::multi_level::show)
        }
        Command::Stats(args) => {
            let out = args.out.clone();
            if let Some(path) = &out {
                report::saved_run::check_out_path(path)?;
            }
            // `--format json` keeps stderr as quiet as `--json` does.
            let quiet = matches!(args.format, Some(crate::cli::StatsFormatArg::Json));
            let mut options: exercises::stats::StatsOptions = args.into();
            options.json = output.json;
            let silent = exercises::progress::Silent;
            let progress: &dyn exercises::progress::RunProgress = if quiet { &silent } else { progress };
            let outcome = exercises::stats::measure(&config, options, progress).await?;
            if let Some(path) = &out {
                report::saved_run::save(&report::saved_run::from_stats(&outcome), path)?;
            }
            finish(outcome, &output, report::stats::show)
        }
        Command::WriteBehind(args) => {
            let outcome = exercises::write_behind::measure(&config, args.into(), progress).await?;
            finish(outcome, &output, report::write_behind::show)
        }
        Command::Stampede(args) => {
            let outcome = exercises::stampede::measure(&config, args.into(), progress).await?;
            finish(outcome, &output, report::stampede::show_run)
        }
        Command::ApiCache(args) => {
            let outcome = exercises::api_cache::measure(&config, args.into(), progress).await?;
            finish(outcome, &output, report::api_cache::show)
        }
        Command::Session(args) => {
            let outcome = exercises::session::measure(&config, args.into(), progress).await?;
            finish(outcome, &output, report::session::show)
        }
        Command::Leaderboard(args) => {
            let progress = crate::report::progress::BarProgress::new(&output);
            let outcome = exercises::leaderboard::measure(&config, args.into(), &progress).await?;
            crate::report::leaderboard::show(&outcome, &output);
            for warning in &outcome.warnings {
                output.warn(warning);
            }
            outcome.verdict()
        }
        Command::RateLimit(args) => {
            let out = args.out.clone();
            if let Some(path) = &out {
                report::saved_run::check_out_path(path)?;
            }
            let progress = crate::report::progress::BarProgress::new(&output);
            let outcome = exercises::rate_limit::measure(&config, args.into(), &progress).await?;
            if let Some(path) = &out {
                report::saved_run::save(&report::saved_run::from_rate_limit(&outcome), path)?;
            }
            crate::report::rate_limit::show(&outcome, &output);
            for warning in &outcome.warnings {
                output.warn(warning);
            }
            Ok(())
        }
        Command::Load(args) => {
            if let Some(path) = &args.out {
                report::saved_run::check_out_path(path)?;
            }
            let progress = crate::report::progress::BarProgress::new(&output);
            let outcome = exercises::load::measure(&config, (&args).into(), &progress).await?;
            if let Some(path) = &args.out {
                report::saved_run::save(&report::saved_run::from_load(&outcome), path)?;
            }
            crate::report::load::show(&outcome, &output);
            Ok(())
        }
        Command::Cluster(args) => {
            let out = args.out.clone();
            if let Some(path) = &out {
                report::saved_run::check_out_path(path)?;
            }
            let outcome = exercises::cluster::measure(&config, args.into(), progress).await?;
            if let Some(path) = &out {
                report::saved_run::save(&report::saved_run::from_cluster(&outcome), path)?;
            }
            finish(outcome, &output, report::cluster::show)
        }
        Command::Ttl(args) => {
            let out = args.out.clone();
            if let Some(path) = &out {
                report::saved_run::check_out_path(path)?;
            }
            let outcome = exercises::ttl::measure(&config, args.into(), progress).await?;
            if let Some(path) = &out {
                report::saved_run::save(&report::saved_run::from_ttl(&outcome), path)?;
            }
            finish(outcome, &output, report::ttl::show)
        }
        Command::Tracking(args) => match args.reader.clone() {
            // The reader process a run starts: JSON lines on stdin and stdout.
            Some(mode) => exercises::tracking::reader::run(&config, &mode, args.run.as_deref()).await,
            None => {
                let outcome = exercises::tracking::measure(&config, args.into(), progress).await?;
                finish(outcome, &output, report::tracking::show)
            }
        },
        Command::Serve(args) => {
            crate::serve::init_logging(&args.log);
            let summary = crate::serve::run(&config, (&args).into(), |ready| {
                crate::report::serve::show_ready(ready, &output)
            })
            .await?;
            crate::report::serve::show_summary(&summary, &output);
            Ok(())
        }
        Command::Grade(args) => {
            // The grader's world (database, private Valkey, the program) is
            // dropped with this future, also when a signal ends the run.
            let start = std::env::current_dir().unwrap_or_default();
            let outcome = match args.target {
                crate::cli::GradeTarget::Script(args) => {
                    crate::grade::script::grade(&config, args.options(&start), progress).await?
                }
                crate::cli::GradeTarget::Service(args) => {
                    crate::grade::service::grade(&config, args.options(&start), progress).await?
                }
            };
            finish(outcome, &output, report::grade::show)
        }
    }
}

/// Shows the outcome in the chosen view, then ends with its verdict.
fn finish<O: Outcome>(mut outcome: O, output: &Output, view: fn(&O, &Output)) -> Result<()> {
    view(&outcome, output);
    outcome.verdict().into_result()
}

/// `stats --maxmemory` restores Valkey's settings on a signal, `multi-level
/// --listen` stops on Ctrl-C with a summary and `serve` drains its requests:
/// they must see the signal themselves.
fn handles_signals_itself(command: &Command) -> bool {
    match command {
        Command::Stats(args) => args.maxmemory.is_some(),
        Command::MultiLevel(args) => args.listen,
        // serve shuts down gracefully: it stops accepting and finishes in-flight requests.
        Command::Serve(_) => true,
        _ => false,
    }
}

/// The first SIGINT or SIGTERM; `None` when no handler could be installed
/// (then the default action applies and there is nothing to wait for).
async fn interruption() -> Option<Signal> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            return None;
        };
        tokio::select! {
            _ = interrupt.recv() => Some(Signal::Interrupt),
            _ = terminate.recv() => Some(Signal::Terminate),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok().map(|()| Signal::Interrupt)
    }
}
