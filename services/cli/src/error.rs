//! What can go wrong, and the exit code and message each failure gets.

use std::process::ExitCode;

use serde_json::{Value, json};

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with an error (`{"error": {"code", "message"}}`).
    #[error("{message}")]
    Api {
        status: u16,
        message: String,
        /// The body as the API sent it (or one in its shape when it sent none).
        body: Value,
    },
    /// No answer from the API at all.
    #[error(
        "cannot reach the Roundhouse API at {url}: {reason} (is it running? set ROUNDHOUSE_URL or --url)"
    )]
    Unreachable { url: String, reason: String },
    /// The command line or a file it names is wrong.
    #[error("{0}")]
    Input(String),
    /// A failure that is neither of the above (`migrate`'s database errors).
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl CliError {
    /// 2 for bad input and refusals (4xx), 3 for server-side and network failures.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Api { status, .. } if *status < 500 => ExitCode::from(2),
            Self::Input(_) => ExitCode::from(2),
            Self::Api { .. } | Self::Unreachable { .. } | Self::Other(_) => ExitCode::from(3),
        }
    }

    /// The error in the API's shape, for `--json`.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Api { body, .. } => body.clone(),
            Self::Unreachable { .. } => error_body("unreachable", &self.to_string()),
            Self::Input(_) => error_body("invalid_input", &self.to_string()),
            Self::Other(_) => error_body("failed", &self.to_string()),
        }
    }

    /// Prints the error: `error: <message>` on stderr, or the JSON on stdout.
    pub fn report(&self, json: bool) -> ExitCode {
        if json {
            println!("{}", self.to_json());
        } else {
            eprintln!("error: {self}");
        }
        self.exit_code()
    }
}

/// A body in the API's error shape.
pub fn error_body(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}
