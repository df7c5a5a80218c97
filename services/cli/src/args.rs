//! The command line, as clap derives it.

use clap::{Args, Parser, Subcommand};

/// Command-line client of the Roundhouse API.
///
/// Talks to the API at ROUNDHOUSE_URL with the service token
/// ROUNDHOUSE_SERVICE_TOKEN. Human tables by default, `--json` for scripts.
/// Exit codes: 0 ok, 1 the followed job failed or was cancelled, 2 bad input
/// or a refusal (4xx), 3 the API is unreachable or failed (5xx).
// Not `Debug`: it holds the token, which is never printed.
#[derive(Parser)]
#[command(name = "roundhouse", version, about, long_about)]
pub struct Cli {
    // clap reads ROUNDHOUSE_URL and ROUNDHOUSE_SERVICE_TOKEN itself (`env`):
    // a flag-or-variable default is the argument parser's job in a CLI. The
    // services read the environment only through roundhouse_config, and so
    // does `migrate` here (DATABASE_URL and friends).
    /// Base URL of the Roundhouse API.
    #[arg(
        long,
        global = true,
        env = "ROUNDHOUSE_URL",
        default_value = "http://localhost:8080"
    )]
    pub url: String,

    /// Service token sent as `Authorization: Bearer`.
    #[arg(
        long,
        global = true,
        env = "ROUNDHOUSE_SERVICE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Print JSON (the API's bodies) instead of tables; errors as the API's
    /// `{"error": {...}}`.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enqueue a job; prints its id (`--json`: the job).
    Enqueue(EnqueueArgs),
    /// Show a job.
    Status {
        /// The job's id.
        id: String,
    },
    /// Follow a job's events until it ends (exit 0 completed, 1 failed or cancelled).
    Tail {
        /// The job's id.
        id: String,
    },
    /// List jobs, newest first.
    Jobs(JobsArgs),
    /// Put a failed or cancelled job back in its queue.
    Retry {
        /// The job's id.
        id: String,
    },
    /// Cancel a job (a running one is told to stop).
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Per-queue statistics.
    Queues,
    /// Pause a queue: workers stop starting its jobs (running ones finish).
    Pause {
        /// The queue's name.
        queue: String,
    },
    /// Resume a paused queue.
    Resume {
        /// The queue's name.
        queue: String,
    },
    /// Cron schedules.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Apply the database migrations (DATABASE_MIGRATION_URL or DATABASE_URL),
    /// as `roundhouse-api migrate` does.
    Migrate,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The job type (`sleep`, `llm_processing`, a custom type, ...).
    pub job_type: String,
    /// The payload: JSON, `@file` or `@-` (standard input).
    #[arg(long)]
    pub payload: Option<String>,
    /// The queue (default: the job type's queue).
    #[arg(long)]
    pub queue: Option<String>,
    /// Priority, higher first (-1000 to 1000).
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Run no sooner than this many seconds from now.
    #[arg(long, value_name = "SECONDS")]
    pub delay: Option<f64>,
    /// Retries after the first attempt.
    #[arg(long)]
    pub max_retries: Option<i32>,
    /// Time limit of one attempt.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<i32>,
    /// Enqueueing the same key again returns the same job.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// The user the job runs as.
    #[arg(long)]
    pub user_id: Option<String>,
    /// Follow the job until it ends, as `tail` does (`--json`: print the final job).
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only jobs with this status (queued, scheduled, processing, completed, failed, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Only jobs of this queue.
    #[arg(long)]
    pub queue: Option<String>,
    /// Only jobs of this type.
    #[arg(long = "type", value_name = "JOB_TYPE")]
    pub job_type: Option<String>,
    /// Only jobs of this user.
    #[arg(long)]
    pub user_id: Option<String>,
    /// Page size.
    #[arg(long)]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// List schedules, oldest first.
    List {
        /// Page size.
        #[arg(long)]
        limit: Option<u32>,
        /// The `nextCursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Create a schedule; prints its id (`--json`: the schedule).
    Add(ScheduleAddArgs),
    /// Enable a schedule.
    Enable {
        /// The schedule's id.
        id: String,
    },
    /// Disable a schedule (ticks that pass meanwhile follow its misfire policy).
    Disable {
        /// The schedule's id.
        id: String,
    },
    /// Enqueue one job from a schedule now, outside its cron; prints the job id.
    Trigger {
        /// The schedule's id.
        id: String,
    },
    /// Delete a schedule (jobs it created stay).
    Remove {
        /// The schedule's id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ScheduleAddArgs {
    /// A name for people.
    #[arg(long)]
    pub name: String,
    /// Cron expression (5 or 6 fields, e.g. "*/5 * * * *").
    #[arg(long)]
    pub cron: String,
    /// IANA timezone of the cron (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// The job type each tick enqueues.
    #[arg(long)]
    pub job_type: String,
    /// The jobs' payload: JSON, `@file` or `@-`.
    #[arg(long)]
    pub payload: Option<String>,
    /// The jobs' queue (default: the job type's queue).
    #[arg(long)]
    pub queue: Option<String>,
    /// The jobs' priority.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// skip, run_once or catch_up: what to do with ticks missed while down or disabled.
    #[arg(long)]
    pub misfire_policy: Option<String>,
    /// The user the jobs run as.
    #[arg(long)]
    pub user_id: Option<String>,
    /// Create it disabled.
    #[arg(long)]
    pub disabled: bool,
}
