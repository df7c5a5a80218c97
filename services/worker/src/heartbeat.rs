//! Extends the leases of running attempts and stops the ones this worker no
//! longer owns (cancelled, or reaped after a stall).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::running::StopReason;
use crate::startup::Shared;

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(shared.settings.worker_heartbeat());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        let running = shared.running.snapshot();
        if running.is_empty() {
            continue;
        }
        match shared
            .db
            .heartbeat(&running, shared.settings.worker_lease().as_secs_f64())
            .await
        {
            Ok(superseded) => {
                for id in &superseded {
                    if shared.running.stop(*id, StopReason::Superseded) {
                        tracing::info!(job_id = %id, "attempt no longer current (cancelled or reaped); stopping it");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "heartbeat failed; leases are not being extended"),
        }
    }
}
