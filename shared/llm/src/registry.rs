//! [`Providers`]: the configured providers by name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::anthropic::Anthropic;
use crate::config::check_base_url;
use crate::metered::Metered;
use crate::openai::OpenAiCompatible;
use crate::retry::Retrying;
use crate::{DevProvider, LlmConfig, LlmError, Provider};

/// The providers this deployment can use, by name.
///
/// Always `dev`; `openai`, `anthropic` and `lovable` when their key is set;
/// and every `LLM_PROVIDERS` entry. Network providers retry and time out as
/// configured. Every provider counts the tokens of what it finishes in
/// `roundhouse_llm_tokens_total{provider,model,kind}`. Cheap to clone.
#[derive(Clone)]
pub struct Providers {
    providers: BTreeMap<String, Arc<dyn Provider>>,
}

impl Providers {
    /// Builds every configured provider, sharing one HTTP connection pool.
    ///
    /// Empty keys count as unset. Fails with [`LlmError::InvalidConfig`] on a
    /// base URL that is not an http(s) URL, a bad `LLM_PROVIDERS` entry, or a
    /// key that cannot be sent in a header. TLS uses the process's rustls
    /// crypto provider (aws-lc-rs; `roundhouse_telemetry::init` installs it).
    pub fn from_config(config: &LlmConfig) -> Result<Providers, LlmError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .user_agent(concat!("roundhouse-llm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::InvalidConfig(format!("building the HTTP client: {e}")))?;
        let key = |key: &Option<String>| key.clone().filter(|k| !k.trim().is_empty());
        let retrying = |provider: Arc<dyn Provider>| -> Arc<dyn Provider> {
            Arc::new(Retrying::new(
                provider,
                config.max_retries,
                config.retry_base,
            ))
        };

        let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        providers.insert(
            "dev".to_owned(),
            Arc::new(DevProvider::new(config.dev_chunk_delay)),
        );
        let compatible = [
            (
                "openai",
                "OPENAI_BASE_URL",
                &config.openai_api_key,
                &config.openai_base_url,
            ),
            (
                "lovable",
                "LOVABLE_BASE_URL",
                &config.lovable_api_key,
                &config.lovable_base_url,
            ),
        ];
        for (name, variable, api_key, base_url) in compatible {
            if let Some(api_key) = key(api_key) {
                check_base_url(variable, base_url)?;
                let provider = OpenAiCompatible::new(
                    name,
                    base_url,
                    Some(api_key),
                    client.clone(),
                    config.timeout,
                )?;
                providers.insert(name.to_owned(), retrying(Arc::new(provider)));
            }
        }
        if let Some(api_key) = key(&config.anthropic_api_key) {
            check_base_url("ANTHROPIC_BASE_URL", &config.anthropic_base_url)?;
            let provider = Anthropic::new(
                &config.anthropic_base_url,
                api_key,
                client.clone(),
                config.timeout,
            )?;
            providers.insert("anthropic".to_owned(), retrying(Arc::new(provider)));
        }
        for extra in &config.extra_providers {
            extra.validate()?;
            if providers.contains_key(&extra.name) {
                return Err(LlmError::InvalidConfig(format!(
                    "LLM_PROVIDERS names `{}` twice",
                    extra.name
                )));
            }
            let provider = OpenAiCompatible::new(
                &extra.name,
                &extra.base_url,
                key(&extra.api_key),
                client.clone(),
                config.timeout,
            )?;
            providers.insert(extra.name.clone(), retrying(Arc::new(provider)));
        }
        // Outermost, so a completion counts once however many tries it took.
        let providers = providers
            .into_iter()
            .map(|(name, provider)| (name, Arc::new(Metered::new(provider)) as Arc<dyn Provider>))
            .collect();
        Ok(Providers { providers })
    }

    /// The provider called `name` (case and surrounding spaces ignored).
    ///
    /// [`LlmError::NotConfigured`] for a built-in provider without its key
    /// (`openai: set OPENAI_API_KEY`), [`LlmError::UnknownProvider`] for any
    /// other unknown name.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Provider>, LlmError> {
        let name = name.trim().to_ascii_lowercase();
        if let Some(provider) = self.providers.get(&name) {
            return Ok(Arc::clone(provider));
        }
        let variable = match name.as_str() {
            "openai" => "OPENAI_API_KEY",
            "anthropic" => "ANTHROPIC_API_KEY",
            "lovable" => "LOVABLE_API_KEY",
            _ => {
                // The name may come from a job payload: keep the error short.
                let name = match name.char_indices().nth(64) {
                    Some((cut, _)) => format!("{}…", &name[..cut]),
                    None => name,
                };
                return Err(LlmError::UnknownProvider(name));
            }
        };
        Err(LlmError::NotConfigured(format!("{name}: set {variable}")))
    }

    /// The names of the configured providers, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.providers.keys().map(String::as_str).collect()
    }
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Providers")
            .field("names", &self.names())
            .finish()
    }
}
