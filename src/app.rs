//! Dispatch: turns a parsed command into a run of one exercise.
//!
//! Every run is also watched for Ctrl-C and SIGTERM: the queries it started
//! are cancelled on the server (closing the connection would not stop them),
//! then the process exits 130 or 143. A run that ends with an error gets the
//! same clean-up, so a timed-out or failed task leaves no sibling query behind.

use crate::cli::Command;
use crate::config::Config;
use crate::db::{cancel, DbError};
use crate::error::{Result, Signal, WorkshopError};
use crate::exercises;
use crate::report::Output;

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
    match command {
        // Handled in `main`: they need no services.
        Command::Exercises(_) | Command::Completions { .. } => Ok(()),
        Command::CheckEnv => exercises::check_env::run(&config, &output).await,
        Command::Clean(args) => exercises::clean::run(&config, args.into(), &output).await,
        Command::Seed(args) => {
            let options = crate::fixtures::SeedOptions {
                scale: args.scale,
                reset: args.reset,
            };
            exercises::seed::run(&config, options, &output).await
        }
        Command::CacheAside(args) => exercises::cache_aside::run(&config, args.into(), &output).await,
        Command::WriteThrough(args) => exercises::write_through::run(&config, args.into(), &output).await,
        Command::MultiLevel(args) => exercises::multi_level::run(&config, args.into(), &output).await,
        Command::Stats(args) => exercises::stats::run(&config, args.into(), &output).await,
        Command::WriteBehind(args) => exercises::write_behind::run(&config, args.into(), &output).await,
        Command::Stampede(args) => exercises::stampede::run(&config, args.into(), &output).await,
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
            let progress = crate::report::progress::BarProgress::new(&output);
            let outcome = exercises::rate_limit::measure(&config, args.into(), &progress).await?;
            crate::report::rate_limit::show(&outcome, &output);
            for warning in &outcome.warnings {
                output.warn(warning);
            }
            Ok(())
        }
        Command::Load(args) => {
            let progress = crate::report::progress::BarProgress::new(&output);
            let outcome = exercises::load::measure(&config, (&args).into(), &progress).await?;
            if let Some(path) = &args.out {
                crate::report::load::save(&outcome, path).map_err(|e| {
                    crate::error::WorkshopError::invalid(format!(
                        "cannot write {}: {e}; choose another --out path",
                        path.display()
                    ))
                })?;
            }
            crate::report::load::show(&outcome, &output);
            Ok(())
        }
        Command::Serve(args) => {
            crate::serve::init_logging(&args.log);
            let summary = crate::serve::run(&config, (&args).into(), |ready| {
                crate::report::serve::show_ready(ready, &output)
            })
            .await?;
            crate::report::serve::show_summary(&summary, &output);
            Ok(())
        }
    }
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
