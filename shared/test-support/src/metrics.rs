//! A service's `/metrics`, parsed as Prometheus text (by
//! `prom_text_format_parser`, which refuses malformed lines and families
//! instead of skipping them), with lookups by name and labels.

use prom_text_format_parser::{Metric, Sample, Scrape, Type, ValueType};

/// A parsed `/metrics` body.
pub struct Metrics {
    metrics: Vec<Metric>,
    text: String,
}

/// The samples of one histogram, added up over the label sets that matched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Histogram {
    /// `_count`: observations.
    pub count: f64,
    /// `_sum`: their total.
    pub sum: f64,
    /// `_bucket` samples (bounds × label sets).
    pub buckets: usize,
}

impl Metrics {
    /// Parses `text`; panics, showing it, unless it is valid Prometheus text
    /// in which every histogram's `+Inf` bucket equals its `_count`.
    pub fn parse(text: &str) -> Self {
        // Nothing recorded yet is valid (and empty) text; the parser wants a line.
        let metrics = if text.trim().is_empty() {
            Vec::new()
        } else {
            Scrape::parse(text)
                .unwrap_or_else(|error| panic!("not Prometheus text ({error:?}):\n{text}"))
                .metrics
        };
        let parsed = Self {
            metrics,
            text: text.to_owned(),
        };
        for metric in parsed.metrics.iter().filter(|m| m.kind == Type::Histogram) {
            for sample in metric
                .samples
                .iter()
                .filter(|s| s.value.value_type == ValueType::Count)
            {
                let labels = own_labels(sample);
                let infinite = metric
                    .samples
                    .iter()
                    .filter(|s| s.value.value_type == ValueType::Sample)
                    .find(|s| {
                        label(s, "le").is_some_and(|le| le == "+Inf") && own_labels(s) == labels
                    })
                    .unwrap_or_else(|| panic!("{}{labels:?} has no +Inf bucket", metric.name));
                assert_eq!(
                    infinite.value.value.as_f64(),
                    sample.value.value.as_f64(),
                    "{}{labels:?}: the +Inf bucket is not the count",
                    metric.name
                );
            }
        }
        parsed
    }

    /// The text as scraped (for failure messages).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The family called `name`, if present.
    pub fn family(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// The sum of the counter or gauge `name` over the label sets that
    /// include `labels`; `None` when no sample matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let family = self.family(name)?;
        assert!(
            matches!(family.kind, Type::Counter | Type::Gauge),
            "{name} is a {:?}, not a counter or gauge",
            family.kind
        );
        let matching: Vec<f64> = family
            .samples
            .iter()
            .filter(|s| matches(s, labels))
            .map(|s| s.value.value.as_f64())
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Like [`Metrics::value`], panicking with the scrape when absent.
    pub fn expect_value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{}", self.text))
    }

    /// The histogram `name` over the label sets that include `labels`;
    /// `None` when it has no matching sample.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Histogram> {
        let family = self.family(name)?;
        assert_eq!(family.kind, Type::Histogram, "{name} is not a histogram");
        let mut found = None::<Histogram>;
        for sample in family.samples.iter().filter(|s| matches(s, labels)) {
            let histogram = found.get_or_insert(Histogram {
                count: 0.0,
                sum: 0.0,
                buckets: 0,
            });
            let value = sample.value.value.as_f64();
            match sample.value.value_type {
                ValueType::Sample => histogram.buckets += 1,
                ValueType::Sum => histogram.sum += value,
                ValueType::Count => histogram.count += value,
            }
        }
        found
    }

    /// Like [`Metrics::histogram`], panicking with the scrape when absent.
    pub fn expect_histogram(&self, name: &str, labels: &[(&str, &str)]) -> Histogram {
        self.histogram(name, labels)
            .unwrap_or_else(|| panic!("no histogram {name}{labels:?} in:\n{}", self.text))
    }
}

fn label<'a>(sample: &'a Sample, key: &str) -> Option<&'a str> {
    sample
        .labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.as_str())
}

/// A sample's labels other than `le`, sorted.
fn own_labels(sample: &Sample) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = sample
        .labels
        .iter()
        .filter(|l| l.key != "le")
        .map(|l| (l.key.clone(), l.value.clone()))
        .collect();
    labels.sort();
    labels
}

fn matches(sample: &Sample, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(key, value)| label(sample, key) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE jobs_total counter
jobs_total{queue="default",outcome="completed"} 2
jobs_total{queue="other",outcome="completed"} 3
jobs_total{queue="default",outcome="failed"} 1

# TYPE depth gauge
depth{queue="default"} 4

# TYPE wait_seconds histogram
wait_seconds_bucket{path="/api/jobs/{id}",le="0.1"} 1
wait_seconds_bucket{path="/api/jobs/{id}",le="+Inf"} 2
wait_seconds_sum{path="/api/jobs/{id}"} 0.7
wait_seconds_count{path="/api/jobs/{id}"} 2
"#;

    #[test]
    fn values_add_up_over_matching_label_sets() {
        let metrics = Metrics::parse(TEXT);
        assert_eq!(
            metrics.value("jobs_total", &[("outcome", "completed")]),
            Some(5.0)
        );
        assert_eq!(metrics.value("jobs_total", &[]), Some(6.0));
        assert_eq!(metrics.value("jobs_total", &[("outcome", "retry")]), None);
        assert_eq!(metrics.value("depth", &[("queue", "default")]), Some(4.0));
        assert_eq!(metrics.value("absent", &[]), None);
    }

    #[test]
    fn histograms_read_count_sum_and_buckets() {
        let metrics = Metrics::parse(TEXT);
        let histogram = metrics.histogram("wait_seconds", &[("path", "/api/jobs/{id}")]);
        assert_eq!(
            histogram,
            Some(Histogram {
                count: 2.0,
                sum: 0.7,
                buckets: 2
            })
        );
    }

    #[test]
    fn an_empty_scrape_has_no_series() {
        assert_eq!(Metrics::parse("").value("jobs_total", &[]), None);
    }

    #[test]
    #[should_panic(expected = "not Prometheus text")]
    fn malformed_text_is_refused() {
        Metrics::parse("jobs_total{queue=\"default} 1\n");
    }

    #[test]
    #[should_panic(expected = "the +Inf bucket is not the count")]
    fn a_histogram_whose_count_disagrees_is_refused() {
        Metrics::parse(
            "# TYPE w_seconds histogram\nw_seconds_bucket{le=\"+Inf\"} 1\nw_seconds_sum 1\nw_seconds_count 2\n",
        );
    }
}
