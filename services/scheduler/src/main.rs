use anyhow::Context;
use roundhouse_config::Settings;
use roundhouse_scheduler::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("roundhouse-scheduler: {error}");
            std::process::exit(2);
        }
    };
    roundhouse_telemetry::init(settings.log_format, &settings.log_level);
    let app = Application::build(settings)
        .await
        .context("failed to start the scheduler")?;
    app.run_until_stopped(roundhouse_telemetry::shutdown_signal())
        .await
        .context("scheduler stopped with an error")
}
