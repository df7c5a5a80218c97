//! `roundhouse`, the command-line client of the Roundhouse HTTP API.
//!
//! Every command but `migrate` is one or a few calls to the API (SPEC §4)
//! with the service token; `migrate` applies the migrations directly, as
//! `roundhouse-api migrate` does. Output is a table or a line for people,
//! the API's JSON with `--json`; errors are `error: <message>` (or the API's
//! error JSON) with exit code 2 for bad input and 4xx, 3 for the rest.

mod args;
mod client;
mod commands;
mod error;
mod output;
mod tail;

use std::process::ExitCode;

pub use args::{Cli, Command, EnqueueArgs, JobsArgs, ScheduleAddArgs, SchedulesCommand};
pub use error::CliError;

/// Runs the command line; the process's exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    match commands::run(cli).await {
        Ok(code) => code,
        Err(error) => error.report(json),
    }
}
