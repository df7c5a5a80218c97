//! What a run costs: a worst-case reservation before it starts, the real
//! price after.
//!
//! Prices are credits per 1,000 tokens: `MODEL_PRICING` per model, else
//! `CREDITS_PER_1K_TOKENS`. A run reserves the price of its estimated prompt
//! plus its whole output budget, so that the settlement (the price of the
//! tokens the provider reports, capped at the reservation by the database)
//! can only refund.

use std::collections::HashMap;

use roundhouse_config::{Settings, SettingsError};
use roundhouse_llm::ChatMessage;

/// The output budget of an agent that sets no `maxTokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// Credits per 1,000 tokens, by model.
#[derive(Debug, Clone)]
pub struct Pricing {
    default_per_1k: u64,
    per_model: HashMap<String, u64>,
}

impl Pricing {
    /// The prices of `MODEL_PRICING` and `CREDITS_PER_1K_TOKENS`.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        Ok(Self::new(
            settings.credits_per_1k_tokens,
            settings.model_pricing()?,
        ))
    }

    pub fn new(default_per_1k: u64, per_model: impl IntoIterator<Item = (String, u64)>) -> Self {
        Self {
            default_per_1k,
            per_model: per_model.into_iter().collect(),
        }
    }

    /// Credits per 1,000 tokens of `model`.
    pub fn per_1k(&self, model: &str) -> u64 {
        self.per_model
            .get(model)
            .copied()
            .unwrap_or(self.default_per_1k)
    }

    /// The credits a run reserves: the price of its estimated prompt (about
    /// four characters a token, at least one token) plus `max_tokens`
    /// (default [`DEFAULT_MAX_TOKENS`]) of output. At least 1 unless the
    /// model is free.
    pub fn reservation(&self, model: &str, prompt: &[ChatMessage], max_tokens: Option<u64>) -> i64 {
        let chars: u64 = prompt
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum();
        let prompt_tokens = chars.div_ceil(4).max(1);
        let tokens = prompt_tokens.saturating_add(max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
        credits(self.per_1k(model), tokens)
    }

    /// The credits `total_tokens` of `model` cost: at least 1 unless the
    /// model is free.
    pub fn charge(&self, model: &str, total_tokens: u64) -> i64 {
        credits(self.per_1k(model), total_tokens)
    }
}

/// `ceil(per_1k × tokens / 1000)`, at least 1 for a priced model; a free
/// model (price 0, e.g. a local Ollama) costs nothing.
fn credits(per_1k: u64, tokens: u64) -> i64 {
    if per_1k == 0 {
        return 0;
    }
    let credits = u128::from(per_1k) * u128::from(tokens);
    i64::try_from(credits.div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pricing() -> Pricing {
        Pricing::new(2, [("big".to_owned(), 30)])
    }

    #[test]
    fn a_model_price_overrides_the_default() {
        assert_eq!(pricing().per_1k("big"), 30);
        assert_eq!(pricing().per_1k("other"), 2);
    }

    #[test]
    fn the_reservation_covers_the_estimated_prompt_and_the_whole_output_budget() {
        // 9 characters → 3 tokens; 3 + 997 = 1000 tokens at 30 per 1K.
        let prompt = [ChatMessage::system("be kind"), ChatMessage::user("hi")];
        assert_eq!(pricing().reservation("big", &prompt, Some(997)), 30);
        // No output budget: 1024 tokens of output; 1 + 1024 at 2 per 1K → 2.05 → 3.
        assert_eq!(
            pricing().reservation("other", &[ChatMessage::user("")], None),
            3
        );
    }

    #[test]
    fn prices_round_up_and_a_priced_run_costs_at_least_one_credit() {
        assert_eq!(pricing().charge("other", 1), 1);
        assert_eq!(pricing().charge("other", 500), 1);
        assert_eq!(pricing().charge("other", 501), 2);
        assert_eq!(pricing().charge("other", 0), 1);
        assert_eq!(pricing().charge("big", 1000), 30);
    }

    #[test]
    fn a_free_model_costs_nothing() {
        let pricing = Pricing::new(0, []);
        assert_eq!(pricing.charge("local", 10_000), 0);
        assert_eq!(pricing.reservation("local", &[], Some(100)), 0);
    }

    #[test]
    fn huge_numbers_saturate() {
        assert_eq!(Pricing::new(u64::MAX, []).charge("x", u64::MAX), i64::MAX);
    }
}
