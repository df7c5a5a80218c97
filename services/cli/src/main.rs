//! `roundhouse`: the command-line client of the Roundhouse API.
//!
//! Parsing, then one command, then an exit code that scripts can branch on:
//! 0 done, 1 the followed job failed or was cancelled, 2 bad input or a 4xx,
//! 3 the API (or the database, for `migrate`) is unreachable or failed.

use std::process::ExitCode;

use clap::Parser;
use roundhouse_cli::Cli;

// One thread is plenty: the CLI waits on one request or one stream at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    roundhouse_cli::run(cli).await
}
