use anyhow::Context;
use roundhouse_api::Application;
use roundhouse_config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("roundhouse-api: {error}");
            std::process::exit(2);
        }
    };
    let _telemetry = roundhouse_telemetry::init_service(&settings, "roundhouse-api");
    match std::env::args().nth(1).as_deref() {
        Some("migrate") => {
            roundhouse_api::migrate(&settings).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        None | Some("serve") => {
            // Before anything else: a SIGTERM during startup must not kill us outright.
            let shutdown = roundhouse_telemetry::shutdown_signal();
            let app = Application::build(settings)
                .await
                .context("failed to start the api")?;
            app.run_until_stopped(shutdown)
                .await
                .context("api stopped with an error")
        }
        Some(other) => {
            eprintln!("roundhouse-api: unknown command `{other}` (use `migrate` or `serve`)");
            std::process::exit(2);
        }
    }
}
