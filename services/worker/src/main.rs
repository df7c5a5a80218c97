use anyhow::Context;
use roundhouse_config::Settings;
use roundhouse_worker::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("roundhouse-worker: {error}");
            std::process::exit(2);
        }
    };
    let _telemetry = roundhouse_telemetry::init_service(&settings, "roundhouse-worker");
    // Before anything else: a SIGTERM during startup must not kill us outright.
    let shutdown = roundhouse_telemetry::shutdown_signal();
    let app = Application::build(settings)
        .await
        .context("failed to start the worker")?;
    app.run_until_stopped(shutdown)
        .await
        .context("worker stopped with an error")
}
