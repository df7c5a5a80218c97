use std::time::Duration;

use roundhouse_llm::{ExtraProvider, LlmConfig, LlmError};

use crate::helpers::{ANTHROPIC_KEY, OPENAI_KEY, providers};

#[test]
fn only_the_dev_provider_exists_without_keys() {
    let registry = providers(&LlmConfig::default());
    assert_eq!(registry.names(), ["dev"]);
}

#[test]
fn providers_with_keys_are_listed() {
    let config = LlmConfig {
        openai_api_key: Some(OPENAI_KEY.into()),
        anthropic_api_key: Some(ANTHROPIC_KEY.into()),
        lovable_api_key: Some("  ".into()),
        extra_providers: ExtraProvider::parse_list("ollama=http://localhost:11434/v1").unwrap(),
        ..LlmConfig::default()
    };
    let registry = providers(&config);
    assert_eq!(registry.names(), ["anthropic", "dev", "ollama", "openai"]);
    assert_eq!(registry.get(" OpenAI ").unwrap().name(), "openai");
}

#[test]
fn unknown_providers_are_refused() {
    let error = providers(&LlmConfig::default())
        .get("gemini")
        .err()
        .unwrap();
    assert_eq!(error, LlmError::UnknownProvider("gemini".into()));
    assert_eq!(error.to_string(), "unknown LLM provider `gemini`");
}

#[test]
fn a_built_in_provider_without_its_key_is_not_configured() {
    let registry = providers(&LlmConfig::default());
    let error = registry.get("openai").err().unwrap();
    assert_eq!(
        error,
        LlmError::NotConfigured("openai: set OPENAI_API_KEY".into())
    );
    assert!(matches!(
        registry.get("anthropic").err().unwrap(),
        LlmError::NotConfigured(m) if m == "anthropic: set ANTHROPIC_API_KEY"
    ));
    assert!(!error.is_retryable());
}

#[test]
fn llm_providers_entries_are_parsed_with_and_without_a_key() {
    let parsed = ExtraProvider::parse_list(
        " ollama=http://localhost:11434/v1 , OpenRouter=https://openrouter.ai/api/v1|sk-or-v1-abc,vllm=http://10.0.0.5:8000/v1|,",
    )
    .unwrap();
    assert_eq!(
        parsed,
        [
            ExtraProvider {
                name: "ollama".into(),
                base_url: "http://localhost:11434/v1".into(),
                api_key: None,
            },
            ExtraProvider {
                name: "openrouter".into(),
                base_url: "https://openrouter.ai/api/v1".into(),
                api_key: Some("sk-or-v1-abc".into()),
            },
            ExtraProvider {
                name: "vllm".into(),
                base_url: "http://10.0.0.5:8000/v1".into(),
                api_key: None,
            },
        ]
    );
    assert!(ExtraProvider::parse_list("").unwrap().is_empty());
}

#[test]
fn bad_llm_providers_entries_are_clear_errors() {
    let error = |spec: &str| match ExtraProvider::parse_list(spec) {
        Err(LlmError::InvalidConfig(message)) => message,
        other => panic!("{spec}: expected InvalidConfig, got {other:?}"),
    };
    assert_eq!(
        error("ollama=http://localhost:11434/v1,sk-secret-key"),
        "LLM_PROVIDERS entry 2 is not `name=base_url` or `name=base_url|api_key`"
    );
    assert!(error("=http://localhost/v1").contains("is not a provider name"));
    assert!(error("my provider=http://localhost/v1").contains("`my provider`"));
    assert!(error("openai=http://localhost/v1").contains("built-in"));
    let message = error("x=localhost:11434|sk-secret-key");
    assert!(message.contains("`x`") && message.contains("not an absolute http(s) URL"));
    assert!(!message.contains("sk-secret-key"));
    assert!(error("a=http://h/v1,a=http://h2/v1").contains("twice"));
    assert!(error("a=ftp://h/v1").contains("http(s)"));
}

#[test]
fn a_bad_base_url_stops_the_registry() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = LlmConfig {
        openai_api_key: Some(OPENAI_KEY.into()),
        openai_base_url: "api.openai.com/v1".into(),
        ..LlmConfig::default()
    };
    let error = roundhouse_llm::Providers::from_config(&config)
        .err()
        .unwrap();
    assert_eq!(
        error,
        LlmError::InvalidConfig(
            "OPENAI_BASE_URL: the base URL is not an absolute http(s) URL".into()
        )
    );
}

#[test]
fn debug_output_never_shows_keys() {
    let config = LlmConfig {
        openai_api_key: Some(OPENAI_KEY.into()),
        anthropic_api_key: Some(ANTHROPIC_KEY.into()),
        lovable_api_key: Some("lovable-secret-key".into()),
        extra_providers: ExtraProvider::parse_list("or=https://openrouter.ai/api/v1|sk-or-secret")
            .unwrap(),
        ..LlmConfig::default()
    };
    let debug = format!("{config:?} {:?}", providers(&config));
    for secret in [
        OPENAI_KEY,
        ANTHROPIC_KEY,
        "lovable-secret-key",
        "sk-or-secret",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(
        debug.contains("openai_api_key: Some(\"[redacted]\")"),
        "{debug}"
    );
    assert!(debug.contains("https://openrouter.ai/api/v1"), "{debug}");
}

#[test]
fn defaults_match_the_documentation() {
    let config = LlmConfig::default();
    assert_eq!(config.openai_base_url, "https://api.openai.com/v1");
    assert_eq!(config.anthropic_base_url, "https://api.anthropic.com");
    assert_eq!(config.lovable_base_url, "https://ai.gateway.lovable.dev/v1");
    assert_eq!(config.timeout, Duration::from_secs(120));
    assert_eq!(config.max_retries, 3);
    assert_eq!(config.dev_chunk_delay, Duration::ZERO);
    assert!(config.openai_api_key.is_none() && config.extra_providers.is_empty());
}

#[test]
fn settings_from_the_environment_become_the_provider_config() {
    let vars = [
        ("ROUNDHOUSE_CONFIG", "/nonexistent/roundhouse.toml"),
        ("OPENAI_API_KEY", "sk-from-env"),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/anthropic"),
        ("LLM_PROVIDERS", "ollama=http://127.0.0.1:11434/v1"),
        ("LLM_TIMEOUT_SECONDS", "7"),
        ("DEV_PROVIDER_CHUNK_DELAY_MS", "5"),
    ];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let settings = roundhouse_config::Settings::load_from(lookup).unwrap();
    let config = roundhouse_llm::LlmConfig::from_settings(&settings).unwrap();
    assert_eq!(config.openai_api_key.as_deref(), Some("sk-from-env"));
    assert_eq!(config.anthropic_base_url, "http://127.0.0.1:9/anthropic");
    assert_eq!(config.extra_providers.len(), 1);
    assert_eq!(config.timeout, std::time::Duration::from_secs(7));
    assert_eq!(config.dev_chunk_delay, std::time::Duration::from_millis(5));
    let providers = roundhouse_llm::Providers::from_config(&config).unwrap();
    assert_eq!(providers.names(), ["dev", "ollama", "openai"]);

    let bad = [
        ("ROUNDHOUSE_CONFIG", "/nonexistent"),
        ("LLM_PROVIDERS", "nonsense"),
    ];
    let settings = roundhouse_config::Settings::load_from(|name: &str| {
        bad.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let error = roundhouse_llm::LlmConfig::from_settings(&settings).unwrap_err();
    assert!(error.to_string().contains("LLM_PROVIDERS"), "{error}");
}
