//! Settings of the scheduler's alerter: where alerts go (`ALERT_WEBHOOK_URL`,
//! a Slack or Discord incoming webhook; unset means no alerts), the
//! thresholds that trigger them, and the limits that keep an outage to a
//! handful of messages.

use roundhouse_core::QueueName;

use crate::{Settings, SettingsError, invalid, split_list};

impl Settings {
    /// `ALERT_WEBHOOK_URL`, unless it is unset or blank.
    pub fn alert_webhook_url(&self) -> Option<&str> {
        self.alert_webhook_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
    }

    /// `ALERT_RUNNING_SECONDS_BY_QUEUE` as (queue, seconds) pairs.
    pub fn alert_running_seconds_by_queue(&self) -> Result<Vec<(String, u64)>, SettingsError> {
        queue_seconds(
            "ALERT_RUNNING_SECONDS_BY_QUEUE",
            &self.alert_running_seconds_by_queue,
        )
    }

    /// `ALERT_QUEUE_WAIT_SECONDS_BY_QUEUE` as (queue, seconds) pairs.
    pub fn alert_queue_wait_seconds_by_queue(&self) -> Result<Vec<(String, u64)>, SettingsError> {
        queue_seconds(
            "ALERT_QUEUE_WAIT_SECONDS_BY_QUEUE",
            &self.alert_queue_wait_seconds_by_queue,
        )
    }

    pub(crate) fn validate_alerts(&self) -> Result<(), SettingsError> {
        if let Some(url) = self.alert_webhook_url() {
            // The URL holds the webhook's secret: never repeat it.
            let host = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .and_then(|rest| rest.split(['/', '?', '#']).next())
                .unwrap_or("");
            if host.is_empty() || url.contains(char::is_whitespace) {
                return Err(invalid(
                    "ALERT_WEBHOOK_URL",
                    "expected an https/http URL (a Slack or Discord incoming webhook)",
                ));
            }
        }
        for (var, value) in [
            ("ALERT_CHECK_SECONDS", self.alert_check_seconds),
            ("ALERT_RUNNING_SECONDS", self.alert_running_seconds),
            ("ALERT_QUEUE_WAIT_SECONDS", self.alert_queue_wait_seconds),
            ("ALERT_REPEAT_SECONDS", self.alert_repeat_seconds),
        ] {
            if value == 0 {
                return Err(invalid(var, "must be a positive number of seconds"));
            }
        }
        if !(1..=10_000).contains(&self.alert_max_per_hour) {
            return Err(invalid("ALERT_MAX_PER_HOUR", "must be from 1 to 10000"));
        }
        if !(1..=20).contains(&self.alert_max_details) {
            return Err(invalid("ALERT_MAX_DETAILS", "must be from 1 to 20"));
        }
        self.alert_running_seconds_by_queue()?;
        self.alert_queue_wait_seconds_by_queue()?;
        Ok(())
    }
}

/// Parses `queue=seconds,…`: valid queue names, each once, positive seconds.
fn queue_seconds(var: &str, value: &str) -> Result<Vec<(String, u64)>, SettingsError> {
    let mut pairs: Vec<(String, u64)> = Vec::new();
    for entry in split_list(value) {
        let (queue, seconds) = entry
            .split_once('=')
            .ok_or_else(|| invalid(var, format!("`{entry}` is not `queue=seconds`")))?;
        let queue = QueueName::parse(queue.trim())
            .map_err(|e| invalid(var, e.to_string()))?
            .as_str()
            .to_owned();
        let seconds = seconds
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                invalid(
                    var,
                    format!("`{entry}`: seconds must be a positive whole number"),
                )
            })?;
        if pairs.iter().any(|(known, _)| *known == queue) {
            return Err(invalid(var, format!("`{queue}` is named twice")));
        }
        pairs.push((queue, seconds));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use crate::tests::load;

    #[test]
    fn alerts_are_off_by_default_with_documented_thresholds() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.alert_webhook_url(), None);
        assert_eq!(settings.alert_check_seconds, 10);
        assert_eq!(settings.alert_running_seconds, 300);
        assert_eq!(settings.alert_queue_wait_seconds, 300);
        assert_eq!(settings.alert_repeat_seconds, 3600);
        assert_eq!(settings.alert_max_per_hour, 30);
        assert_eq!(settings.alert_max_details, 3);
        assert_eq!(
            settings.alert_running_seconds_by_queue().unwrap(),
            [("agents".to_owned(), 14400)]
        );
        assert!(
            settings
                .alert_queue_wait_seconds_by_queue()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            load(&[("ALERT_WEBHOOK_URL", " ")])
                .unwrap()
                .alert_webhook_url(),
            None
        );
    }

    #[test]
    fn per_queue_thresholds_are_parsed() {
        let settings = load(&[
            (
                "ALERT_WEBHOOK_URL",
                "https://hooks.slack.com/services/T000/B000/secretpart",
            ),
            (
                "ALERT_RUNNING_SECONDS_BY_QUEUE",
                "agents=14400, data_sync=3600",
            ),
            ("ALERT_QUEUE_WAIT_SECONDS_BY_QUEUE", "notifications=60"),
        ])
        .unwrap();
        assert_eq!(
            settings.alert_running_seconds_by_queue().unwrap(),
            [("agents".to_owned(), 14400), ("data_sync".to_owned(), 3600)]
        );
        assert_eq!(
            settings.alert_queue_wait_seconds_by_queue().unwrap(),
            [("notifications".to_owned(), 60)]
        );
        assert!(!format!("{settings:?}").contains("secretpart"));
    }

    #[test]
    fn malformed_alert_settings_are_named_without_repeating_the_url() {
        for (var, value) in [
            ("ALERT_WEBHOOK_URL", "hooks.slack.com/services/secretpart"),
            ("ALERT_WEBHOOK_URL", "ftp://example.com/secretpart"),
            ("ALERT_CHECK_SECONDS", "0"),
            ("ALERT_CHECK_SECONDS", "often"),
            ("ALERT_RUNNING_SECONDS", "0"),
            ("ALERT_RUNNING_SECONDS", "-5"),
            ("ALERT_QUEUE_WAIT_SECONDS", "0"),
            ("ALERT_REPEAT_SECONDS", "0"),
            ("ALERT_MAX_PER_HOUR", "0"),
            ("ALERT_MAX_DETAILS", "0"),
            ("ALERT_MAX_DETAILS", "100"),
            ("ALERT_RUNNING_SECONDS_BY_QUEUE", "agents"),
            ("ALERT_RUNNING_SECONDS_BY_QUEUE", "agents=0"),
            ("ALERT_RUNNING_SECONDS_BY_QUEUE", "agents=1h"),
            ("ALERT_RUNNING_SECONDS_BY_QUEUE", "Bad Queue=10"),
            ("ALERT_QUEUE_WAIT_SECONDS_BY_QUEUE", "a=1,a=2"),
        ] {
            let error = load(&[(var, value)]).unwrap_err();
            assert_eq!(error.variable, var, "{var}={value}: {error}");
            assert!(!error.to_string().contains("secretpart"), "{error}");
        }
    }
}
