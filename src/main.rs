//! `reach`: args -> config -> telemetry -> bind -> serve.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    reach::cli::Cli::parse().run()
}
