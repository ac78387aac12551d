//! Thin entry point: load `.env`, parse the command line, run, print at most
//! one error line, exit with its code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use workshop_cli::cli::{Cli, Command, ExercisesAction};
use workshop_cli::config::{redact, Config, DotEnv};
use workshop_cli::error::{exit, WorkshopError};
use workshop_cli::report::{self, Output};
use workshop_cli::workshop::{commands, guided};

fn main() -> ExitCode {
    // Before any thread exists: loading `.env` sets environment variables.
    let start = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let dotenv = DotEnv::load_from(&start);
    let cli = Cli::parse();
    let output = Output::detect(cli.global.json);
    let config = dotenv.and_then(|dotenv| Config::resolve(&cli.global.overrides(), &dotenv));

    let result = match cli.command {
        None if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() => {
            block_on(Flavour::OneThread, guided::run(config, &start, output))
        }
        None => {
            // Nothing to guide without a terminal: show the help, exit with the usage code.
            let _ = Cli::command().write_long_help(&mut std::io::stderr());
            eprintln!();
            return ExitCode::from(exit::USAGE);
        }
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "workshop-cli", &mut std::io::stdout());
            Ok(())
        }
        Some(Command::Exercises(args)) => match args.action {
            None => commands::list(&start, &output),
            Some(ExercisesAction::Show { exercise }) => commands::show(&start, &exercise, &output),
            Some(ExercisesAction::Reset { exercise }) => commands::reset(&start, exercise.as_deref(), &output),
        },
        Some(command) => match config {
            Err(error) => Err(WorkshopError::from(error)),
            Ok(config) => {
                // The exercises are clients waiting on the network: one thread avoids
                // cross-thread wake-ups between a task and the Valkey connection's driver
                // (measured: same single-read latency, about twice the throughput at 50
                // tasks on 2 cores). Seeding generates data while it loads, so it gets threads.
                let flavour = match command {
                    Command::Seed(_) => Flavour::Threads,
                    _ => Flavour::OneThread,
                };
                block_on(flavour, workshop_cli::app::run(command, config, output))
            }
        },
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(error) => fail(&error),
    }
}

enum Flavour {
    OneThread,
    Threads,
}

fn block_on(
    flavour: Flavour,
    future: impl std::future::Future<Output = Result<(), WorkshopError>>,
) -> Result<(), WorkshopError> {
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

fn fail(error: &WorkshopError) -> ExitCode {
    report::fatal(&redact(&error.to_string()));
    ExitCode::from(error.exit_code())
}
