use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated queue name: 1–64 characters of `a-z`, `0-9`, `_`, `-`.
///
/// The same name is the `jobs.queue` value and the suffix of the RabbitMQ
/// queue, so it must be safe in both places.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct QueueName(String);

/// Why a string is not a queue name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue name must be 1-64 characters of a-z, 0-9, '_' or '-', got `{0}`")]
pub struct QueueNameError(pub String);

impl QueueName {
    /// Queues that exist from the first start, as SPEC §2 lists them, plus
    /// `default` for the diagnostic job types.
    pub const BUILT_IN: [&'static str; 7] = [
        "default",
        "llm_processing",
        "data_sync",
        "notifications",
        "maintenance",
        "rag_ingestion",
        "agents",
    ];

    /// Validates `name`.
    pub fn parse(name: &str) -> Result<Self, QueueNameError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(QueueNameError(name.chars().take(80).collect()))
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The built-in queues as parsed names.
    pub fn built_in() -> Vec<QueueName> {
        Self::BUILT_IN
            .iter()
            .map(|n| QueueName(n.to_string()))
            .collect()
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for QueueName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        QueueName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_restricted_to_a_safe_alphabet() {
        assert!(QueueName::parse("llm_processing").is_ok());
        assert!(QueueName::parse("emails-eu").is_ok());
        for bad in [
            "",
            "Upper",
            "has space",
            "dots.are.routing",
            &"x".repeat(65),
        ] {
            assert!(QueueName::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
