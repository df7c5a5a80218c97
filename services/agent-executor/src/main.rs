use anyhow::Context;
use roundhouse_agent_executor::Application;
use roundhouse_config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("roundhouse-agent-executor: {error}");
            std::process::exit(2);
        }
    };
    let _telemetry = roundhouse_telemetry::init_service(&settings, "roundhouse-agent-executor");
    // Before anything else: a SIGTERM during startup must not kill us outright.
    let shutdown = roundhouse_telemetry::shutdown_signal();
    let app = Application::build(settings)
        .await
        .context("failed to start the agent executor")?;
    app.run_until_stopped(shutdown)
        .await
        .context("agent executor stopped with an error")
}
