//! The custom job types the api accepts: those some worker registered
//! (`job_types`), cached per process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use roundhouse_core::{JobKind, QueueName};
use roundhouse_db::Db;
use roundhouse_http::ApiError;
use tokio::sync::Mutex;

/// Known types are re-read after this long, so a type re-registered with
/// another default queue is followed.
const REFRESH_EVERY: Duration = Duration::from_secs(60);

/// A snapshot of the registered custom types: name → default queue.
#[derive(Debug, Clone, Default)]
pub struct CustomTypes(Arc<HashMap<String, QueueName>>);

impl CustomTypes {
    /// The default queue of the registered custom type `name`.
    pub fn queue(&self, name: &str) -> Option<&QueueName> {
        self.0.get(name)
    }
}

/// The api's view of the `job_types` table.
pub struct JobTypeRegistry {
    db: Db,
    known: Mutex<(CustomTypes, Instant)>,
}

impl JobTypeRegistry {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            known: Mutex::new((CustomTypes::default(), Instant::now())),
        }
    }

    /// The custom types, fresh enough to judge `names`. Only requests that
    /// name a custom type touch the database: a name not known yet is looked
    /// up (a worker may have registered it a moment ago), and the whole
    /// snapshot is re-read once it is a minute old.
    pub async fn for_names<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<CustomTypes, ApiError> {
        let custom: Vec<&str> = names
            .into_iter()
            .filter(|name| matches!(JobKind::parse(name), Ok(JobKind::Custom(_))))
            .collect();
        let mut known = self.known.lock().await;
        if custom.is_empty() {
            return Ok(known.0.clone());
        }
        let missing = custom.iter().any(|name| known.0.queue(name).is_none());
        if missing || known.1.elapsed() >= REFRESH_EVERY {
            let rows = self.db.registered_job_types().await?;
            let types = rows
                .into_iter()
                .filter_map(|row| Some((row.name, QueueName::parse(&row.queue).ok()?)))
                .collect();
            *known = (CustomTypes(Arc::new(types)), Instant::now());
        }
        Ok(known.0.clone())
    }
}
