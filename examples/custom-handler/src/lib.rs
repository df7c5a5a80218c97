//! A job type of your own, in Rust: `word_count` counts the words of
//! `payload.text`. Register it with the worker and run the binary instead of
//! `roundhouse-worker` (it runs every built-in type too); the worker records
//! `word_count` in the `job_types` table at start, and from then on the api
//! accepts `{"jobType": "word_count", …}`.

use std::sync::Arc;

use roundhouse_core::{CustomJobType, JobKind};
use roundhouse_worker::{ExtraHandlers, Handler, HandlerError, JobContext, JobHandler};
use serde_json::{Value, json};

pub struct WordCount;

#[async_trait::async_trait]
impl JobHandler for WordCount {
    async fn run(&self, ctx: JobContext) -> Result<Value, HandlerError> {
        let text = ctx.payload["text"]
            .as_str()
            .ok_or_else(|| HandlerError::Permanent("payload.text: must be a string".into()))?;
        ctx.progress(50, Some("counting")).await;
        Ok(json!({ "words": text.split_whitespace().count() }))
    }
}

/// The handlers this binary adds to the worker's registry.
pub fn handlers() -> ExtraHandlers {
    let word_count = CustomJobType::parse("word_count").expect("a valid job type name");
    ExtraHandlers::from([(
        JobKind::Custom(word_count),
        Handler::Extra(Arc::new(WordCount)),
    )])
}
