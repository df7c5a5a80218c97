//! Integration tests for `roundhouse-llm`: real HTTP against local fake
//! providers on 127.0.0.1; no test ever reaches a real LLM provider.

mod anthropic;
mod dev;
mod embeddings;
mod helpers;
mod openai;
mod registry;
mod retries;
mod timeouts;
