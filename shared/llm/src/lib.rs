//! The LLM provider layer: one [`Provider`] trait over OpenAI-compatible
//! chat completions (OpenAI, the Lovable AI gateway, Ollama, vLLM,
//! OpenRouter, …), Anthropic Messages, and a deterministic offline `dev`
//! provider, each able to complete a [`ChatRequest`] whole or as a stream,
//! and (OpenAI-compatible and `dev`) to embed texts ([`Provider::embed`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), roundhouse_llm::LlmError> {
//! use roundhouse_llm::{ChatMessage, ChatRequest, LlmConfig, Providers};
//!
//! let providers = Providers::from_config(&LlmConfig::default())?;
//! let request = ChatRequest::new("dev", vec![ChatMessage::user("hello")]);
//! let completion = providers.get("dev")?.complete(&request).await?;
//! assert_eq!(completion.output, "Dev reply to: hello");
//! # Ok(())
//! # }
//! ```
//!
//! Network providers from [`Providers`] retry rate limits, timeouts,
//! network failures and 5xx answers with exponential backoff (or the
//! provider's `Retry-After`), and time out as configured. Errors
//! ([`LlmError`]) say whether retrying can help and never contain an API key.
//!
//! # Configuration
//!
//! [`LlmConfig`] is plain data; `roundhouse-config` fills it from these
//! environment variables:
//!
//! | variable | field | default |
//! |---|---|---|
//! | `OPENAI_API_KEY` | [`openai_api_key`](LlmConfig::openai_api_key) | unset: no `openai` provider |
//! | `OPENAI_BASE_URL` | [`openai_base_url`](LlmConfig::openai_base_url) | `https://api.openai.com/v1` |
//! | `ANTHROPIC_API_KEY` | [`anthropic_api_key`](LlmConfig::anthropic_api_key) | unset: no `anthropic` provider |
//! | `ANTHROPIC_BASE_URL` | [`anthropic_base_url`](LlmConfig::anthropic_base_url) | `https://api.anthropic.com` |
//! | `LOVABLE_API_KEY` | [`lovable_api_key`](LlmConfig::lovable_api_key) | unset: no `lovable` provider |
//! | `LOVABLE_BASE_URL` | [`lovable_base_url`](LlmConfig::lovable_base_url) | `https://ai.gateway.lovable.dev/v1` |
//! | `LLM_PROVIDERS` | [`extra_providers`](LlmConfig::extra_providers), via [`ExtraProvider::parse_list`] | none |
//! | `LLM_TIMEOUT_SECONDS` | [`timeout`](LlmConfig::timeout) | 120 s |
//! | `LLM_MAX_RETRIES` | [`max_retries`](LlmConfig::max_retries) | 3 |
//! | `DEV_PROVIDER_CHUNK_DELAY_MS` | [`dev_chunk_delay`](LlmConfig::dev_chunk_delay) | 0 ms |
//!
//! [`retry_base`](LlmConfig::retry_base) (500 ms) has no variable.
//! `LLM_PROVIDERS` is a comma-separated list of `name=base_url` or
//! `name=base_url|api_key`, e.g.
//! `ollama=http://localhost:11434/v1,openrouter=https://openrouter.ai/api/v1|sk-or-…`.

mod anthropic;
mod config;
mod dev;
mod embeddings;
mod error;
mod http;
mod job;
mod metered;
mod openai;
mod provider;
mod rag_job;
mod registry;
mod retry;
mod types;

pub use config::{ExtraProvider, LlmConfig};
pub use dev::DevProvider;
pub use embeddings::{
    DEV_EMBEDDING_DIMENSIONS, EmbeddingRequest, Embeddings, cosine_similarity, dev_embedding,
    normalize,
};
pub use error::LlmError;
pub use job::LlmJob;
pub use provider::Provider;
pub use rag_job::{RagJob, RagSegment};
pub use registry::Providers;
pub use types::{ChatMessage, ChatRequest, Completion, Role, StreamEvent, Usage};
