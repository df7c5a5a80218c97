//! One function per command: the API calls and what is printed.

use std::io::Read;
use std::process::ExitCode;

use serde_json::{Map, Value, json};

use crate::args::{Cli, Command, EnqueueArgs, JobsArgs, ScheduleAddArgs, SchedulesCommand};
use crate::client::Api;
use crate::error::CliError;
use crate::output;
use crate::tail::{self, Style};

/// Runs `cli`'s command.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let json = cli.json;
    if let Command::Migrate = cli.command {
        return migrate(json).await;
    }
    let api = Api::new(&cli.url, cli.token)?;
    let printed = match cli.command {
        Command::Enqueue(args) => return enqueue(&api, args, json).await,
        Command::Tail { id } => {
            let job = tail::follow(&api, &id, Style::detect(json)).await?;
            return Ok(job_exit_code(&job));
        }
        Command::Status { id } => {
            let job = api.get(&format!("api/jobs/{id}"), &[]).await?;
            Printed::new(output::job(&job), job)
        }
        Command::Jobs(args) => jobs(&api, args).await?,
        Command::Retry { id } => {
            let job = api.post(&format!("api/jobs/{id}/retry"), None).await?;
            Printed::new(format!("job {id} {}", output::text(&job["status"])), job)
        }
        Command::Cancel { id } => {
            let job = api.delete(&format!("api/jobs/{id}")).await?;
            Printed::new(format!("job {id} {}", output::text(&job["status"])), job)
        }
        Command::Queues => {
            let stats = api.get("api/queues/stats", &[]).await?;
            Printed::new(output::queues(list(&stats["queues"])), stats)
        }
        Command::Pause { queue } => pause(&api, &queue, true).await?,
        Command::Resume { queue } => pause(&api, &queue, false).await?,
        Command::Schedules(command) => schedules(&api, command).await?,
        Command::Migrate => unreachable!("handled above"),
    };
    printed.print(json);
    Ok(ExitCode::SUCCESS)
}

/// What a command shows: a text for people, the JSON for scripts.
struct Printed {
    human: String,
    json: Value,
}

impl Printed {
    fn new(human: impl Into<String>, json: Value) -> Self {
        Self {
            human: human.into(),
            json,
        }
    }

    fn print(self, json: bool) {
        if json {
            println!("{}", self.json);
        } else {
            println!("{}", self.human);
        }
    }
}

fn list(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// 0 for a completed job, 1 for one that failed or was cancelled.
fn job_exit_code(job: &Value) -> ExitCode {
    if job["status"] == "completed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A payload argument: JSON, `@file`, or `@-` for standard input.
fn payload(argument: &str) -> Result<Value, CliError> {
    let (text, source) = match argument.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Input(format!("--payload @-: {e}")))?;
            (text, "standard input".to_owned())
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Input(format!("--payload @{path}: {e}")))?;
            (text, path.to_owned())
        }
        None => (argument.to_owned(), "--payload".to_owned()),
    };
    serde_json::from_str(&text)
        .map_err(|e| CliError::Input(format!("{source}: not valid JSON: {e}")))
}

/// Inserts the `Some` values of `fields` into `body`.
fn set(
    body: &mut Map<String, Value>,
    fields: impl IntoIterator<Item = (&'static str, Option<Value>)>,
) {
    for (key, value) in fields {
        if let Some(value) = value {
            body.insert(key.to_owned(), value);
        }
    }
}

async fn enqueue(api: &Api, args: EnqueueArgs, json: bool) -> Result<ExitCode, CliError> {
    let mut body = Map::new();
    body.insert("jobType".to_owned(), json!(args.job_type));
    set(
        &mut body,
        [
            ("payload", args.payload.as_deref().map(payload).transpose()?),
            ("queue", args.queue.map(Value::from)),
            ("priority", args.priority.map(Value::from)),
            ("delaySeconds", args.delay.map(Value::from)),
            ("maxRetries", args.max_retries.map(Value::from)),
            ("timeoutSeconds", args.timeout.map(Value::from)),
            ("idempotencyKey", args.idempotency_key.map(Value::from)),
            ("userId", args.user_id.map(Value::from)),
        ],
    );
    let job = api
        .post("api/jobs/enqueue", Some(&Value::Object(body)))
        .await?;
    let id = output::text(&job["jobId"]);
    if !args.wait {
        Printed::new(id, job).print(json);
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        let job = tail::follow(api, &id, Style::Quiet).await?;
        println!("{job}");
        return Ok(job_exit_code(&job));
    }
    println!("{id}");
    let job = tail::follow(api, &id, Style::detect(false)).await?;
    Ok(job_exit_code(&job))
}

async fn jobs(api: &Api, args: JobsArgs) -> Result<Printed, CliError> {
    let page = api
        .get(
            "api/jobs",
            &[
                ("status", args.status),
                ("queue", args.queue),
                ("jobType", args.job_type),
                ("userId", args.user_id),
                ("limit", args.limit.map(|l| l.to_string())),
                ("cursor", args.cursor),
            ],
        )
        .await?;
    let mut human = output::jobs(list(&page["jobs"]));
    if let Some(next) = page["nextCursor"].as_str() {
        human.push_str(&format!("\nmore: --cursor {next}"));
    }
    Ok(Printed::new(human, page))
}

async fn pause(api: &Api, queue: &str, paused: bool) -> Result<Printed, CliError> {
    let verb = if paused { "pause" } else { "resume" };
    let answer = api
        .post(&format!("api/queues/{queue}/{verb}"), None)
        .await?;
    let human = format!(
        "queue {} {} ({} waiting)",
        output::text(&answer["name"]),
        if paused { "paused" } else { "resumed" },
        output::text(&answer["waiting"]),
    );
    Ok(Printed::new(human, answer))
}

async fn schedules(api: &Api, command: SchedulesCommand) -> Result<Printed, CliError> {
    Ok(match command {
        SchedulesCommand::List { limit, cursor } => {
            let page = api
                .get(
                    "api/schedules",
                    &[("limit", limit.map(|l| l.to_string())), ("cursor", cursor)],
                )
                .await?;
            let mut human = output::schedules(list(&page["schedules"]));
            if let Some(next) = page["nextCursor"].as_str() {
                human.push_str(&format!("\nmore: --cursor {next}"));
            }
            Printed::new(human, page)
        }
        SchedulesCommand::Add(args) => {
            let schedule = api
                .post("api/schedules", Some(&schedule_body(args)?))
                .await?;
            Printed::new(output::text(&schedule["id"]), schedule)
        }
        SchedulesCommand::Enable { id } => set_enabled(api, &id, true).await?,
        SchedulesCommand::Disable { id } => set_enabled(api, &id, false).await?,
        SchedulesCommand::Trigger { id } => {
            let job = api
                .post(&format!("api/schedules/{id}/trigger"), None)
                .await?;
            Printed::new(output::text(&job["jobId"]), job)
        }
        SchedulesCommand::Remove { id } => {
            let answer = api.delete(&format!("api/schedules/{id}")).await?;
            Printed::new(format!("schedule {id} deleted"), answer)
        }
    })
}

fn schedule_body(args: ScheduleAddArgs) -> Result<Value, CliError> {
    let mut body = Map::new();
    set(
        &mut body,
        [
            ("name", Some(json!(args.name))),
            ("cron", Some(json!(args.cron))),
            ("jobType", Some(json!(args.job_type))),
            ("timezone", args.timezone.map(Value::from)),
            ("payload", args.payload.as_deref().map(payload).transpose()?),
            ("queue", args.queue.map(Value::from)),
            ("priority", args.priority.map(Value::from)),
            ("misfirePolicy", args.misfire_policy.map(Value::from)),
            ("userId", args.user_id.map(Value::from)),
            ("enabled", args.disabled.then_some(json!(false))),
        ],
    );
    Ok(Value::Object(body))
}

async fn set_enabled(api: &Api, id: &str, enabled: bool) -> Result<Printed, CliError> {
    let schedule = api
        .put(
            &format!("api/schedules/{id}"),
            &json!({ "enabled": enabled }),
        )
        .await?;
    let human = format!(
        "schedule {id} {}",
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(Printed::new(human, schedule))
}

/// Applies the migrations with the api's runner, on the settings the
/// services use (DATABASE_MIGRATION_URL, else DATABASE_URL).
async fn migrate(json: bool) -> Result<ExitCode, CliError> {
    let settings = roundhouse_config::Settings::load()
        .map_err(|e| CliError::Input(format!("settings: {e}")))?;
    roundhouse_api::migrate(&settings)
        .await
        .map_err(CliError::Other)?;
    Printed::new("migrations applied", json!({ "migrated": true })).print(json);
    Ok(ExitCode::SUCCESS)
}
