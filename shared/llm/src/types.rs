//! The provider-neutral request and response types.

use serde::{Deserialize, Serialize};

/// A chat completion request, the same for every provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatRequest {
    /// The provider's model name, passed through as given (`gpt-4o-mini`,
    /// `claude-sonnet-4-5`, `llama3.2`, …).
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on generated tokens. Anthropic requires one and gets 1024
    /// when this is `None`; OpenAI-compatible servers get the field only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, sent only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
}

impl ChatRequest {
    /// A request for `model` with these messages and the provider's defaults.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        Self {
            model: model.into(),
            messages,
            max_tokens: None,
            temperature: None,
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A system message (instructions).
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message (an earlier reply).
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// The author of a [`ChatMessage`]; serialized in lowercase.
///
/// OpenAI-compatible providers receive system messages in place, as messages;
/// Anthropic receives them joined (blank line between) in its top-level
/// `system` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person (or program) talking to the model.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The wire name: `system`, `user` or `assistant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// Tokens spent by one completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Tokens read (the prompt).
    pub prompt_tokens: u32,
    /// Tokens generated (the output).
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// A finished completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    /// The generated text.
    pub output: String,
    /// Tokens spent.
    pub usage: Usage,
    /// The model that answered, as the provider reports it (which may be more
    /// specific than the requested name), or the requested name.
    pub model: String,
    /// Why generation stopped, in the provider's words (`stop`, `length`,
    /// `end_turn`, `max_tokens`, …), when it said.
    pub finish_reason: Option<String>,
}

/// An item of a completion stream.
///
/// A successful stream yields zero or more [`StreamEvent::Delta`]s and then
/// exactly one [`StreamEvent::Done`], whose `output` is the concatenation of
/// the deltas, and ends. A failing stream ends with one `Err` item instead.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The next piece of output text (never empty).
    Delta(String),
    /// The whole completion, with usage; the last item.
    Done(Completion),
}
