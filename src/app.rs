//! Dispatch: turns a parsed command into a run of one exercise.

use crate::cli::Command;
use crate::config::Config;
use crate::error::Result;
use crate::exercises;
use crate::report::Output;

pub async fn run(command: Command, config: Config, output: Output) -> Result<()> {
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
