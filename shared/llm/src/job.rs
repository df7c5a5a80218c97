//! The `llm_processing` job's payload (SPEC §2), parsed the same way by the
//! API (to refuse a bad payload with 422 at enqueue) and by the worker.

use serde::Deserialize;

use crate::{ChatMessage, ChatRequest};

/// `{provider, model, prompt | messages, system?, maxTokens?, temperature?}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmJob {
    /// `openai`, `anthropic`, `lovable`, `dev`, or an `LLM_PROVIDERS` name.
    pub provider: String,
    /// The provider's model; may be omitted for `dev` only.
    #[serde(default)]
    pub model: String,
    /// A single user message (shorthand for `messages: [{role: user, content}]`).
    pub prompt: Option<String>,
    /// The conversation, oldest first.
    pub messages: Option<Vec<ChatMessage>>,
    /// A system instruction put before the conversation.
    pub system: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

impl LlmJob {
    /// Parses and checks a payload. The error names the offending field
    /// (`provider: …`, `messages: …`).
    pub fn parse(payload: &serde_json::Value) -> Result<Self, String> {
        let job: LlmJob = serde_json::from_value(payload.clone()).map_err(|e| e.to_string())?;
        if job.provider.trim().is_empty() {
            return Err("provider: name a provider (openai, anthropic, lovable, dev, …)".into());
        }
        if job.model.trim().is_empty() && job.provider != "dev" {
            return Err("model: required for every provider but `dev`".into());
        }
        match (&job.prompt, &job.messages) {
            (Some(prompt), None) if !prompt.trim().is_empty() => {}
            (None, Some(messages)) if !messages.is_empty() => {}
            (Some(_), Some(_)) => return Err("prompt: give either prompt or messages".into()),
            _ => return Err("messages: give a non-empty prompt or messages".into()),
        }
        if job.max_tokens == Some(0) {
            return Err("maxTokens: must be at least 1".into());
        }
        if job
            .temperature
            .is_some_and(|t| !t.is_finite() || !(0.0..=2.0).contains(&t))
        {
            return Err("temperature: must be between 0 and 2".into());
        }
        Ok(job)
    }

    /// The provider request: `system`, then the prompt or the messages.
    pub fn request(&self) -> ChatRequest {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(ChatMessage::system(system.clone()));
        }
        match (&self.prompt, &self.messages) {
            (Some(prompt), _) => messages.push(ChatMessage::user(prompt.clone())),
            (None, Some(conversation)) => messages.extend(conversation.iter().cloned()),
            (None, None) => {}
        }
        ChatRequest {
            model: self.model.clone(),
            messages,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Role;

    #[test]
    fn a_prompt_becomes_a_user_message_after_the_system_one() {
        let job = LlmJob::parse(&json!({
            "provider": "openai", "model": "gpt-4o-mini", "prompt": "Hi",
            "system": "Be brief.", "maxTokens": 50, "temperature": 0.2
        }))
        .unwrap();
        let request = job.request();
        assert_eq!(request.model, "gpt-4o-mini");
        assert_eq!(request.messages.len(), 2);
        assert_eq!(request.messages[0].role, Role::System);
        assert_eq!(request.messages[1].content, "Hi");
        assert_eq!(request.max_tokens, Some(50));
    }

    #[test]
    fn messages_pass_through() {
        let job = LlmJob::parse(&json!({
            "provider": "dev",
            "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                         {"role": "user", "content": "c"}]
        }))
        .unwrap();
        assert_eq!(job.request().messages.len(), 3);
    }

    #[test]
    fn bad_payloads_name_the_field() {
        for (payload, field) in [
            (json!({"model": "m", "prompt": "p"}), "provider"),
            (json!({"provider": "openai", "prompt": "p"}), "model"),
            (json!({"provider": "dev"}), "messages"),
            (json!({"provider": "dev", "messages": []}), "messages"),
            (
                json!({"provider": "dev", "prompt": "p", "messages": [{"role": "user", "content": "x"}]}),
                "prompt",
            ),
            (
                json!({"provider": "dev", "prompt": "p", "temperature": 3}),
                "temperature",
            ),
            (
                json!({"provider": "dev", "prompt": "p", "maxTokens": 0}),
                "maxTokens",
            ),
            (
                json!({"provider": "dev", "prompt": "p", "colour": "blue"}),
                "colour",
            ),
            (
                json!({"provider": "dev", "messages": [{"role": "robot", "content": "x"}]}),
                "robot",
            ),
        ] {
            let error = LlmJob::parse(&payload).unwrap_err();
            assert!(error.contains(field), "{payload}: {error}");
        }
    }
}
