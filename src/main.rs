//! Thin entry point: load `.env`, parse the command line, hand it to
//! `app`, print at most one error line, exit with its code.

use std::process::ExitCode;

use clap::Parser;

use workshop_cli::cli::Cli;
use workshop_cli::config::{redact, Config, DotEnv};
use workshop_cli::report::{self, Output};

/// mimalloc rather than glibc's malloc: a cache hit decodes its rows into a
/// few small allocations, and glibc's malloc and free took 12 % of the 50-task
/// profile (issue 13, `scripts/bench-profile.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any thread exists: loading `.env` sets environment variables.
    let start = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let dotenv = DotEnv::load_from(&start);
    let cli = Cli::parse();
    let output = Output::detect(cli.global.json);
    let config = dotenv.and_then(|dotenv| Config::resolve(&cli.global.overrides(), &dotenv));
    match workshop_cli::app::main(cli.command, config, &start, output) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            report::fatal(&redact(&error.to_string()));
            ExitCode::from(error.exit_code())
        }
    }
}
