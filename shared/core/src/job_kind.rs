//! Job types beyond the built-in ones: run by an HTTP endpoint
//! (`HTTP_HANDLERS`) or by a handler that a worker embedding Roundhouse
//! registers in its own binary.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{JobType, QueueName, UnknownVariant};

/// The longest custom job type name.
const MAX_NAME: usize = 100;

/// A custom job type's name: starts with a lowercase letter; then lowercase
/// letters, digits, `_`, `.`, `-` or `:` (Celery-style `images.resize`
/// works); at most 100 characters; never a built-in type's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomJobType(String);

impl CustomJobType {
    /// Validates `name` as a custom job type.
    pub fn parse(name: &str) -> Result<Self, UnknownVariant> {
        let unknown = || UnknownVariant {
            kind: "job type",
            value: name.to_owned(),
        };
        let mut chars = name.chars();
        let valid = name.len() <= MAX_NAME
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-' | ':')
            });
        if !valid || name.parse::<JobType>().is_ok() {
            return Err(unknown());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CustomJobType {
    type Error = UnknownVariant;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<CustomJobType> for String {
    fn from(value: CustomJobType) -> Self {
        value.0
    }
}

/// What a job's `jobType` names: a built-in type, or a custom one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobKind {
    Builtin(JobType),
    Custom(CustomJobType),
}

impl JobKind {
    /// A built-in type when `name` is one, else a well-formed custom name.
    /// Whether anything runs a custom type is for the caller to check.
    pub fn parse(name: &str) -> Result<Self, UnknownVariant> {
        match name.parse::<JobType>() {
            Ok(job_type) => Ok(JobKind::Builtin(job_type)),
            Err(_) => CustomJobType::parse(name).map(JobKind::Custom),
        }
    }

    /// The name used in JSON and in the `jobs.job_type` column.
    pub fn as_str(&self) -> &str {
        match self {
            JobKind::Builtin(job_type) => job_type.as_str(),
            JobKind::Custom(custom) => custom.as_str(),
        }
    }

    /// The built-in type, if this is one.
    pub fn builtin(&self) -> Option<JobType> {
        match self {
            JobKind::Builtin(job_type) => Some(*job_type),
            JobKind::Custom(_) => None,
        }
    }

    /// The queue when the request names none: custom types share `default`
    /// (a request, schedule or `HTTP_HANDLERS` setup can name another).
    pub fn default_queue(&self) -> QueueName {
        match self {
            JobKind::Builtin(job_type) => job_type.default_queue(),
            JobKind::Custom(_) => QueueName::parse("default").expect("a valid queue name"),
        }
    }

    /// Retries after the first attempt when the request names none.
    pub fn default_max_retries(&self) -> i32 {
        match self {
            JobKind::Builtin(job_type) => job_type.default_max_retries(),
            JobKind::Custom(_) => 3,
        }
    }

    /// Attempt timeout when the request names none.
    pub fn default_timeout_seconds(&self) -> i32 {
        match self {
            JobKind::Builtin(job_type) => job_type.default_timeout_seconds(),
            JobKind::Custom(_) => 300,
        }
    }
}

impl From<JobType> for JobKind {
    fn from(job_type: JobType) -> Self {
        JobKind::Builtin(job_type)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_names_parse_as_built_in_types() {
        assert_eq!(JobKind::parse("noop"), Ok(JobKind::Builtin(JobType::Noop)));
        assert!(CustomJobType::parse("noop").is_err());
    }

    #[test]
    fn custom_names_are_validated() {
        for good in [
            "resize_image",
            "images.resize",
            "send-invoice",
            "a",
            "v2:sync",
        ] {
            let kind = JobKind::parse(good).unwrap();
            assert_eq!(kind.as_str(), good);
            assert_eq!(kind.default_queue().as_str(), "default");
        }
        for bad in [
            "",
            "Resize",
            "1st",
            "_x",
            "has space",
            "é",
            &"x".repeat(101),
        ] {
            assert!(JobKind::parse(bad).is_err(), "{bad:?}");
        }
    }
}
