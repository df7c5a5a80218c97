//! Templated subjects and messages: `{{ name }}`, filters and `{% if %}`,
//! rendered with minijinja from the payload's `variables`.
//!
//! minijinja rather than string substitution: users coming from Celery or
//! BullMQ write Jinja-style templates and expect filters (`{{ amount |
//! round(2) }}`), conditionals and loops, and the HTML body must be escaped.
//! The environment is a sandbox (no file system, no includes) with a fuel
//! budget, so a hostile template cannot spin or allocate without bound.
//!
//! Undefined variables are errors ("semi-strict": printing, iterating or
//! filtering one fails; `{% if coupon %}` may test one), reported by name.

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use roundhouse_core::notification::NotificationJob;
use serde_json::Map;

/// Instructions a render may run (about 3 MB of output; see
/// `Environment::set_fuel`).
const FUEL: u64 = 50_000;
/// Longest rendered message or HTML body.
const MAX_RENDERED: usize = 1024 * 1024;

/// A notification's rendered texts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Content {
    /// On one line: line breaks from variables become spaces.
    pub subject: Option<String>,
    pub message: Option<String>,
    pub html: Option<String>,
}

/// Renders the job's templates, or says which field failed and why
/// (`message: undefined variable `name``).
pub(super) fn render(job: &NotificationJob) -> Result<Content, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| {
        if name == "html" {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    let context = Value::from(minijinja::value::Serde(&job.variables));
    let render = |field: &'static str, source: &Option<String>| -> Result<Option<String>, String> {
        let Some(source) = source else {
            return Ok(None);
        };
        let template = env
            .template_from_named_str(field, source)
            .map_err(|e| format!("{field}: template syntax error: {}", describe(&e)))?;
        let rendered = template.render(&context).map_err(|e| {
            match missing_variables(&template.undeclared_variables(true), &job.variables, &env) {
                missing if !missing.is_empty() => {
                    format!("{field}: undefined variable {}", missing.join(", "))
                }
                _ => format!("{field}: {}", describe(&e)),
            }
        })?;
        if rendered.len() > MAX_RENDERED {
            return Err(format!(
                "{field}: renders to more than {MAX_RENDERED} bytes"
            ));
        }
        Ok(Some(rendered))
    };
    Ok(Content {
        subject: render("subject", &job.subject)?
            .map(|s| s.split(['\r', '\n']).collect::<Vec<_>>().join(" ")),
        message: render("message", &job.message)?,
        html: render("html", &job.html)?,
    })
}

/// The variables a template looks up (`name`, `user.email`) that neither
/// the payload's variables nor the environment's globals define, quoted and
/// sorted.
fn missing_variables(
    undeclared: &std::collections::HashSet<String>,
    variables: &Map<String, serde_json::Value>,
    env: &Environment<'_>,
) -> Vec<String> {
    let mut missing: Vec<String> = undeclared
        .iter()
        .filter(|path| {
            let mut parts = path.split('.');
            let root = parts.next().unwrap_or_default();
            if env.globals().any(|(name, _)| name == root) {
                return false;
            }
            let mut value = match variables.get(root) {
                Some(value) => value,
                None => return true,
            };
            for part in parts {
                match value.get(part) {
                    Some(next) => value = next,
                    None => return true,
                }
            }
            false
        })
        .map(|path| format!("`{path}`"))
        .collect();
    missing.sort();
    missing
}

/// minijinja's error with its detail ("unexpected end of input (in message:1)").
fn describe(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{} ({detail})", error.kind()),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(payload: serde_json::Value) -> NotificationJob {
        NotificationJob::parse(&payload).unwrap()
    }

    #[test]
    fn variables_fill_the_subject_message_and_escaped_html() {
        let content = render(&job(json!({
            "type": "email", "recipient": "ada@example.com",
            "subject": "Invoice {{ invoice.number }}\nfor {{ name }}",
            "message": "Hi {{ name | upper }}, you owe {{ invoice.total | round(2) }}.{% if coupon %} Use {{ coupon }}.{% endif %}",
            "html": "<p>Hi {{ name }}</p>",
            "variables": {"name": "<Ada>", "invoice": {"number": 42, "total": 9.5}}
        })))
        .unwrap();
        assert_eq!(content.subject.as_deref(), Some("Invoice 42 for <Ada>"));
        assert_eq!(content.message.as_deref(), Some("Hi <ADA>, you owe 9.5."));
        assert_eq!(content.html.as_deref(), Some("<p>Hi &lt;Ada&gt;</p>"));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let error = render(&job(json!({
            "type": "slack", "recipient": "https://hooks.example/x",
            "message": "Hi {{ name }}, order {{ order.id }} ships {{ when }}",
            "variables": {"name": "Ada", "order": {}}
        })))
        .unwrap_err();
        assert_eq!(error, "message: undefined variable `order.id`, `when`");
    }

    #[test]
    fn syntax_errors_and_runaway_templates_are_refused() {
        let error = render(&job(json!({
            "type": "sms", "recipient": "+14155550100", "message": "Hi {{ name"
        })))
        .unwrap_err();
        assert!(
            error.starts_with("message: template syntax error"),
            "{error}"
        );
        let error = render(&job(json!({
            "type": "sms", "recipient": "+14155550100",
            "message": "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"
        })))
        .unwrap_err();
        assert!(error.starts_with("message: "), "{error}");
    }
}
