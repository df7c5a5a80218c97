//! The attempts this worker is running, and why one was told to stop.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Why a running attempt's cancel token fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The job was cancelled, or its lease was reaped: the attempt is
    /// superseded and must write nothing.
    Superseded,
    /// The worker is shutting down and hands the job back.
    Shutdown,
}

struct Entry {
    attempt: i32,
    token: CancellationToken,
    reason: Option<StopReason>,
}

#[derive(Default)]
pub(crate) struct Running {
    jobs: Mutex<HashMap<Uuid, Entry>>,
}

impl Running {
    pub(crate) fn insert(&self, id: Uuid, attempt: i32, token: CancellationToken) {
        self.lock().insert(
            id,
            Entry {
                attempt,
                token,
                reason: None,
            },
        );
    }

    /// Removes the attempt and returns why it was stopped, if it was.
    pub(crate) fn remove(&self, id: Uuid) -> Option<StopReason> {
        self.lock().remove(&id).and_then(|e| e.reason)
    }

    /// Stops the attempt of job `id` if it runs here.
    pub(crate) fn stop(&self, id: Uuid, reason: StopReason) -> bool {
        match self.lock().get_mut(&id) {
            Some(entry) => {
                entry.reason.get_or_insert(reason);
                entry.token.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops every attempt (drain timeout reached).
    pub(crate) fn stop_all(&self, reason: StopReason) {
        for entry in self.lock().values_mut() {
            entry.reason.get_or_insert(reason);
            entry.token.cancel();
        }
    }

    /// `(job id, attempt)` of every running attempt.
    pub(crate) fn snapshot(&self) -> Vec<(Uuid, i32)> {
        self.lock().iter().map(|(id, e)| (*id, e.attempt)).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every operation is a single insert/remove/flag), so poison is ignored.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}
