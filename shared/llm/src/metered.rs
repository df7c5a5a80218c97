//! Token counting: `roundhouse_llm_tokens_total{provider,model,kind}` for
//! every completion and embedding a provider from
//! [`Providers`](crate::Providers) finishes, whoever asked for it (the
//! worker's `llm_processing` and `rag_ingestion` handlers, the agent
//! executor's runs, the api's search queries).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::{
    ChatRequest, Completion, EmbeddingRequest, Embeddings, LlmError, Provider, StreamEvent, Usage,
};

/// Distinct `model` label values a process reports. Models are chosen by
/// operators and agent authors, but a job payload can name any model (and
/// the `dev` provider answers for every name): past this many, the rest are
/// counted as `other`, so a caller cannot grow the series without bound.
const MAX_MODEL_LABELS: usize = 64;
/// Longer model names are cut to this many characters in the label.
const MAX_MODEL_LABEL_CHARS: usize = 100;

/// `inner`, counting the tokens of what it finishes. Failures count
/// nothing: providers report usage only with a result.
pub(crate) struct Metered {
    inner: Arc<dyn Provider>,
}

impl Metered {
    pub(crate) fn new(inner: Arc<dyn Provider>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Provider for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, LlmError> {
        let completion = self.inner.complete(request).await?;
        record_tokens(self.name(), &completion.model, completion.usage);
        Ok(completion)
    }

    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, LlmError>>, LlmError> {
        let provider = self.name().to_owned();
        let events = self.inner.stream(request).await?;
        Ok(events
            .inspect(move |event| {
                if let Ok(StreamEvent::Done(completion)) = event {
                    record_tokens(&provider, &completion.model, completion.usage);
                }
            })
            .boxed())
    }

    async fn embed(&self, request: &EmbeddingRequest) -> Result<Embeddings, LlmError> {
        let embeddings = self.inner.embed(request).await?;
        record_tokens(
            self.name(),
            &embeddings.model,
            Usage {
                prompt_tokens: embeddings.prompt_tokens,
                completion_tokens: 0,
            },
        );
        Ok(embeddings)
    }
}

/// Adds `usage` to `roundhouse_llm_tokens_total`, `kind` `prompt` and
/// `completion` (an embedding has prompt tokens only).
fn record_tokens(provider: &str, model: &str, usage: Usage) {
    let model = model_label(model);
    for (kind, tokens) in [
        ("prompt", usage.prompt_tokens),
        ("completion", usage.completion_tokens),
    ] {
        metrics::counter!(
            "roundhouse_llm_tokens_total",
            "provider" => provider.to_owned(),
            "model" => model.clone(),
            "kind" => kind,
        )
        .increment(u64::from(tokens));
    }
}

/// The `model` label for `model`, among the names this process has seen.
fn model_label(model: &str) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    label_among(&mut seen, model)
}

/// The name (cut to [`MAX_MODEL_LABEL_CHARS`]) if it is in `seen` or
/// `seen` has room for it (then added), else `other`.
fn label_among(seen: &mut HashSet<String>, model: &str) -> String {
    let model: String = match model.trim() {
        "" => "unknown".to_owned(),
        model => model.chars().take(MAX_MODEL_LABEL_CHARS).collect(),
    };
    if seen.contains(&model) || seen.len() < MAX_MODEL_LABELS {
        seen.insert(model.clone());
        return model;
    }
    "other".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_labels_stop_growing_at_the_cap() {
        let mut seen = HashSet::new();
        assert_eq!(label_among(&mut seen, "gpt-4o-mini"), "gpt-4o-mini");
        for i in 1..MAX_MODEL_LABELS {
            assert_eq!(
                label_among(&mut seen, &format!("model-{i}")),
                format!("model-{i}")
            );
        }
        assert_eq!(label_among(&mut seen, "one-more"), "other");
        assert_eq!(
            label_among(&mut seen, "gpt-4o-mini"),
            "gpt-4o-mini",
            "seen names stay"
        );
        assert_eq!(seen.len(), MAX_MODEL_LABELS);
    }

    #[test]
    fn long_and_empty_model_names_are_bounded() {
        let mut seen = HashSet::new();
        let long = label_among(&mut seen, &"x".repeat(500));
        assert_eq!(long.chars().count(), MAX_MODEL_LABEL_CHARS);
        assert_eq!(label_among(&mut seen, " "), "unknown");
    }
}
