//! [`LlmConfig`]: which providers exist, where they are, and how patiently
//! we talk to them. Plain data, filled from a service's settings by
//! [`LlmConfig::from_settings`] (see the crate documentation for the variables).

use std::fmt;
use std::time::Duration;

use crate::LlmError;

/// Names the registry gives its built-in providers; `LLM_PROVIDERS` may not
/// reuse them.
pub(crate) const BUILT_IN: [&str; 4] = ["dev", "openai", "anthropic", "lovable"];

/// Settings of the LLM provider layer. `Default` gives the documented
/// defaults and no keys (only the `dev` provider).
///
/// `Debug` shows whether a key is set, never the key.
#[derive(Clone, PartialEq)]
pub struct LlmConfig {
    /// `OPENAI_API_KEY`; the `openai` provider exists when set (and non-empty).
    pub openai_api_key: Option<String>,
    /// `OPENAI_BASE_URL`, default [`LlmConfig::DEFAULT_OPENAI_BASE_URL`].
    pub openai_base_url: String,
    /// `ANTHROPIC_API_KEY`; the `anthropic` provider exists when set.
    pub anthropic_api_key: Option<String>,
    /// `ANTHROPIC_BASE_URL`, default [`LlmConfig::DEFAULT_ANTHROPIC_BASE_URL`]
    /// (without `/v1`, as in Anthropic's SDKs: requests go to `{base}/v1/messages`).
    pub anthropic_base_url: String,
    /// `LOVABLE_API_KEY`; the `lovable` provider (the Lovable AI gateway,
    /// OpenAI-compatible) exists when set.
    pub lovable_api_key: Option<String>,
    /// `LOVABLE_BASE_URL`, default [`LlmConfig::DEFAULT_LOVABLE_BASE_URL`].
    pub lovable_base_url: String,
    /// `LLM_PROVIDERS`, parsed with [`ExtraProvider::parse_list`]: more
    /// OpenAI-compatible providers (Ollama, vLLM, OpenRouter, …).
    pub extra_providers: Vec<ExtraProvider>,
    /// `LLM_TIMEOUT_SECONDS` (default 120 s): the limit on a whole completion
    /// request, and for a stream on the wait for the first byte and for each
    /// following chunk.
    pub timeout: Duration,
    /// `LLM_MAX_RETRIES` (default 3): retries after the first attempt of a
    /// request that failed in a retryable way.
    pub max_retries: u32,
    /// Delay before the first retry (default 500 ms), doubling for each
    /// following one (at most 30 s), plus random jitter. A `Retry-After` from
    /// the provider replaces it. No environment variable.
    pub retry_base: Duration,
    /// `DEV_PROVIDER_CHUNK_DELAY_MS` (default 0): pause of the `dev` provider
    /// between streamed words, to make streaming visible in demos.
    pub dev_chunk_delay: Duration,
}

impl LlmConfig {
    /// The provider settings of a service's [`roundhouse_config::Settings`].
    /// A malformed `LLM_PROVIDERS` is an [`LlmError::InvalidConfig`] whose
    /// message names the variable.
    pub fn from_settings(settings: &roundhouse_config::Settings) -> Result<Self, LlmError> {
        let extra_providers = ExtraProvider::parse_list(&settings.llm_providers)
            .map_err(|e| LlmError::InvalidConfig(format!("LLM_PROVIDERS: {e}")))?;
        let or =
            |url: &Option<String>, default: &str| url.clone().unwrap_or_else(|| default.to_owned());
        Ok(Self {
            openai_api_key: settings.openai_api_key.clone(),
            openai_base_url: or(&settings.openai_base_url, Self::DEFAULT_OPENAI_BASE_URL),
            anthropic_api_key: settings.anthropic_api_key.clone(),
            anthropic_base_url: or(
                &settings.anthropic_base_url,
                Self::DEFAULT_ANTHROPIC_BASE_URL,
            ),
            lovable_api_key: settings.lovable_api_key.clone(),
            lovable_base_url: or(&settings.lovable_base_url, Self::DEFAULT_LOVABLE_BASE_URL),
            extra_providers,
            timeout: Duration::from_secs(settings.llm_timeout_seconds),
            max_retries: settings.llm_max_retries,
            retry_base: Self::DEFAULT_RETRY_BASE,
            dev_chunk_delay: Duration::from_millis(settings.dev_provider_chunk_delay_ms),
        })
    }

    /// Default of [`LlmConfig::openai_base_url`].
    pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
    /// Default of [`LlmConfig::anthropic_base_url`].
    pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
    /// Default of [`LlmConfig::lovable_base_url`].
    pub const DEFAULT_LOVABLE_BASE_URL: &str = "https://ai.gateway.lovable.dev/v1";
    /// Default of [`LlmConfig::timeout`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
    /// Default of [`LlmConfig::max_retries`].
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
    /// Default of [`LlmConfig::retry_base`].
    pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(500);
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            openai_api_key: None,
            openai_base_url: Self::DEFAULT_OPENAI_BASE_URL.to_owned(),
            anthropic_api_key: None,
            anthropic_base_url: Self::DEFAULT_ANTHROPIC_BASE_URL.to_owned(),
            lovable_api_key: None,
            lovable_base_url: Self::DEFAULT_LOVABLE_BASE_URL.to_owned(),
            extra_providers: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            retry_base: Self::DEFAULT_RETRY_BASE,
            dev_chunk_delay: Duration::ZERO,
        }
    }
}

impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmConfig")
            .field("openai_api_key", &Redacted(&self.openai_api_key))
            .field("openai_base_url", &self.openai_base_url)
            .field("anthropic_api_key", &Redacted(&self.anthropic_api_key))
            .field("anthropic_base_url", &self.anthropic_base_url)
            .field("lovable_api_key", &Redacted(&self.lovable_api_key))
            .field("lovable_base_url", &self.lovable_base_url)
            .field("extra_providers", &self.extra_providers)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .field("dev_chunk_delay", &self.dev_chunk_delay)
            .finish()
    }
}

/// An OpenAI-compatible provider named in `LLM_PROVIDERS`.
///
/// `Debug` shows whether a key is set, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ExtraProvider {
    /// The name jobs and agents use (`ollama`); lowercase letters, digits,
    /// `-` and `_`.
    pub name: String,
    /// The base URL, to which `/chat/completions` is appended
    /// (`http://localhost:11434/v1`).
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
}

impl ExtraProvider {
    /// Parses `LLM_PROVIDERS`: comma-separated `name=base_url` or
    /// `name=base_url|api_key` entries, e.g.
    /// `ollama=http://localhost:11434/v1,openrouter=https://openrouter.ai/api/v1|sk-or-…`.
    ///
    /// Whitespace around parts and empty entries are ignored; names are
    /// lowercased. A malformed entry, a name used twice or the name of a
    /// built-in provider is an [`LlmError::InvalidConfig`] that names the
    /// entry and never repeats a key.
    pub fn parse_list(spec: &str) -> Result<Vec<ExtraProvider>, LlmError> {
        let mut providers: Vec<ExtraProvider> = Vec::new();
        let entries = spec.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let Some((name, rest)) = entry.split_once('=') else {
                return Err(LlmError::InvalidConfig(format!(
                    "LLM_PROVIDERS entry {} is not `name=base_url` or `name=base_url|api_key`",
                    index + 1
                )));
            };
            let (base_url, api_key) = match rest.split_once('|') {
                Some((url, key)) => (url.trim(), Some(key.trim())),
                None => (rest.trim(), None),
            };
            let provider = ExtraProvider {
                name: name.trim().to_ascii_lowercase(),
                base_url: base_url.to_owned(),
                api_key: api_key.filter(|k| !k.is_empty()).map(str::to_owned),
            };
            provider.validate()?;
            if providers.iter().any(|p| p.name == provider.name) {
                return Err(LlmError::InvalidConfig(format!(
                    "LLM_PROVIDERS names `{}` twice",
                    provider.name
                )));
            }
            providers.push(provider);
        }
        Ok(providers)
    }

    /// Checks the name and the base URL (the registry calls this too, for
    /// providers built by hand).
    pub(crate) fn validate(&self) -> Result<(), LlmError> {
        let name = &self.name;
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !name_ok {
            return Err(LlmError::InvalidConfig(format!(
                "LLM_PROVIDERS: `{name}` is not a provider name (use lowercase letters, digits, `-`, `_`)"
            )));
        }
        if BUILT_IN.contains(&name.as_str()) {
            return Err(LlmError::InvalidConfig(format!(
                "LLM_PROVIDERS: `{name}` is a built-in provider; configure it with its own variables"
            )));
        }
        check_base_url(&format!("LLM_PROVIDERS `{name}`"), &self.base_url)
    }
}

impl fmt::Debug for ExtraProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtraProvider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &Redacted(&self.api_key))
            .finish()
    }
}

/// Checks that `url` is an absolute http(s) URL; `what` names the setting in
/// the error.
pub(crate) fn check_base_url(what: &str, url: &str) -> Result<(), LlmError> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        _ => Err(LlmError::InvalidConfig(format!(
            "{what}: the base URL is not an absolute http(s) URL"
        ))),
    }
}

/// Shows `Some("[redacted]")` or `None` for a secret.
struct Redacted<'a>(&'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(\"[redacted]\")"),
            None => f.write_str("None"),
        }
    }
}
