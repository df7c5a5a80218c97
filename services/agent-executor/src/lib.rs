//! The agent executor. In this release it serves `/health` and `/metrics`
//! only, so it can be deployed alongside the other services; agent
//! execution (SPEC §5) is a later milestone.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use roundhouse_config::Settings;
use roundhouse_db::{Db, PoolSettings};

/// The agent-executor service.
pub struct Application {
    db: Db,
    listener: tokio::net::TcpListener,
    port: u16,
}

impl Application {
    /// Binds `PORT` (default 8081).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::connect_lazy(
            &settings.database_url,
            &PoolSettings {
                max_connections: 2,
                ..PoolSettings::default()
            },
        )
        .context("DATABASE_URL")?;
        let listener = roundhouse_telemetry::bind(settings.port.unwrap_or(8081))
            .await
            .context("cannot bind PORT")?;
        let port = listener.local_addr()?.port();
        Ok(Self { db, listener, port })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let db = self.db.clone();
        let router = roundhouse_telemetry::ops_router(
            "agent-executor",
            Arc::new(move || {
                let db = db.clone();
                Box::pin(async move { db.check(Duration::from_secs(2)).await.map(|_| ()) })
            }),
        );
        tracing::info!(port = self.port, "agent executor started");
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await?;
        self.db.close().await;
        Ok(())
    }
}
