//! Metrics in CloudWatch's embedded metric format (EMF): one JSON log line that
//! CloudWatch Logs turns into metrics, so no metrics API call (and no IAM permission) is
//! needed from inside a function.
//!
//! Dimensions stay low-cardinality (function, stream, outcome; never the tenant): the
//! per-tenant detail lives in the run items and the logs. The line is built by a pure
//! function ([`emf_line`]) and written to stdout only inside Lambda, so that edsctl and
//! the tests, which drive the same handlers, keep their output clean.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// The namespace of every eds metric (the template's alarms and dashboard use it).
pub const NAMESPACE: &str = "eds";

/// One metric value of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

impl Metric {
    pub fn count(name: &'static str, value: u64) -> Self {
        Self {
            name,
            value: value as f64,
            unit: "Count",
        }
    }
}

/// The EMF document for `metrics` under `dimensions`: declared twice, under all of them
/// and under the first alone (the roll-up that alarms use, e.g. per function).
pub fn emf_line(
    dimensions: &[(&'static str, &str)],
    metrics: &[Metric],
    at: DateTime<Utc>,
) -> String {
    let mut root = Map::new();
    let all: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let mut dims = vec![all.clone()];
    if all.len() > 1 {
        dims.push(all[..1].to_vec());
    }
    let defs: Vec<Value> = metrics
        .iter()
        .map(|m| json!({"Name": m.name, "Unit": m.unit}))
        .collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": dims, "Metrics": defs}],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), Value::String((*v).to_string()));
    }
    for m in metrics {
        root.insert(m.name.into(), json!(m.value));
    }
    Value::Object(root).to_string()
}

/// The `FunctionName` dimension: the deployed function's name (it carries the stage),
/// or `fallback` outside Lambda.
pub fn function_name(fallback: &str) -> String {
    std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| fallback.to_string())
}

/// Writes the line to stdout when running inside Lambda (where stdout goes to
/// CloudWatch Logs); elsewhere it goes to the debug log only.
pub fn emit(dimensions: &[(&'static str, &str)], metrics: &[Metric]) {
    let line = emf_line(dimensions, metrics, Utc::now());
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        use std::io::Write;
        // A full or closed stdout must not fail the job: metrics are best effort.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    } else {
        tracing::debug!(emf = %line, "metrics");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_each_metric_under_the_dimensions_it_carries() {
        let at: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let line = emf_line(
            &[
                ("FunctionName", "eds-prod-puller"),
                ("stream", "attachments"),
            ],
            &[
                Metric::count("AttachmentsQuarantined", 3),
                Metric::count("RecordsQuarantined", 0),
            ],
            at,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], json!(at.timestamp_millis()));
        assert_eq!(cw["Namespace"], "eds");
        assert_eq!(
            cw["Dimensions"],
            json!([["FunctionName", "stream"], ["FunctionName"]])
        );
        assert_eq!(
            cw["Metrics"][0],
            json!({"Name": "AttachmentsQuarantined", "Unit": "Count"})
        );
        assert_eq!(v["FunctionName"], "eds-prod-puller");
        assert_eq!(v["stream"], "attachments");
        assert_eq!(v["AttachmentsQuarantined"], json!(3.0));
        assert_eq!(v["RecordsQuarantined"], json!(0.0));
    }
}
