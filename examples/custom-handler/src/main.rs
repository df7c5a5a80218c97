//! `roundhouse-worker` plus `word_count`: the same start-up, with the extra
//! handlers passed to `Application::build_with_handlers`.

use anyhow::Context;
use roundhouse_config::Settings;
use roundhouse_worker::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().map_err(|error| anyhow::anyhow!("{error}"))?;
    let _telemetry = roundhouse_telemetry::init_service(&settings, "word-count-worker");
    let shutdown = roundhouse_telemetry::shutdown_signal();
    let handlers = roundhouse_example_custom_handler::handlers();
    let app = Application::build_with_handlers(settings, handlers)
        .await
        .context("failed to start the worker")?;
    app.run_until_stopped(shutdown).await
}
