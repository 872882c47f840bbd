//! Results, percentiles and rendering (markdown table or JSON).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Measurements of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    /// Scenario name, e.g. `port-create-concurrent`.
    pub name: String,
    /// Successful (2xx, and for list scenarios: consistent) operations.
    pub ops: u64,
    /// Failed operations: non-2xx answers, transport errors, inconsistent
    /// list results.
    pub errors: u64,
    /// Wall-clock duration of the measured phase (fixtures excluded).
    pub seconds: f64,
    /// `ops / seconds`.
    pub ops_per_sec: f64,
    /// Median latency of the successful operations, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency of the successful operations, in milliseconds.
    pub p99_ms: f64,
}

impl ScenarioResult {
    /// Builds a result from the latencies of the successful operations, the
    /// number of failed ones and the wall-clock duration of the scenario.
    pub fn from_latencies(
        name: impl Into<String>,
        latencies: &[Duration],
        errors: u64,
        seconds: f64,
    ) -> Self {
        let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let ops = ms.len() as u64;
        let ops_per_sec = if seconds > 0.0 {
            ops as f64 / seconds
        } else {
            0.0
        };
        ScenarioResult {
            name: name.into(),
            ops,
            errors,
            seconds,
            ops_per_sec,
            p50_ms: percentile(&ms, 50.0),
            p99_ms: percentile(&ms, 99.0),
        }
    }
}

/// Nearest-rank percentile of an ascending-sorted slice.
///
/// `p` is in percent (0..=100). Returns the smallest value such that at least
/// `p`% of the samples are less than or equal to it; `0.0` for an empty slice.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// The outcome of a whole run: one entry per executed scenario, in execution
/// order.
///
/// `Display` renders a markdown table, or pretty JSON when [`Report::json`] is
/// set (which [`crate::run`] copies from `--json`), so a caller can simply
/// `print!("{report}")`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Per-scenario measurements.
    pub results: Vec<ScenarioResult>,
    /// Render as JSON instead of markdown in `Display`.
    #[serde(skip)]
    pub json: bool,
}

impl Report {
    /// The markdown table (regardless of [`Report::json`]).
    pub fn to_markdown(&self) -> String {
        let mut s = String::from(
            "| scenario | ops | errors | seconds | ops/s | p50 ms | p99 ms |\n\
             |----------|----:|-------:|--------:|------:|-------:|-------:|\n",
        );
        for r in &self.results {
            s.push_str(&format!(
                "| {} | {} | {} | {:.3} | {:.1} | {:.2} | {:.2} |\n",
                r.name, r.ops, r.errors, r.seconds, r.ops_per_sec, r.p50_ms, r.p99_ms
            ));
        }
        s
    }

    /// Pretty-printed JSON: `{"results": [{"name": .., "ops": .., ...}]}`.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.json {
            writeln!(f, "{}", self.to_json())
        } else {
            f.write_str(&self.to_markdown())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);

        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.0);
        assert_eq!(percentile(&v, 99.0), 4.0);

        assert_eq!(percentile(&[7.5], 50.0), 7.5);
        assert_eq!(percentile(&[7.5], 99.0), 7.5);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn result_from_unsorted_latencies() {
        let lat: Vec<Duration> = [5u64, 1, 4, 2, 3]
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect();
        let r = ScenarioResult::from_latencies("x", &lat, 2, 0.5);
        assert_eq!(r.ops, 5);
        assert_eq!(r.errors, 2);
        assert_eq!(r.ops_per_sec, 10.0);
        assert!((r.p50_ms - 3.0).abs() < 1e-9);
        assert!((r.p99_ms - 5.0).abs() < 1e-9);

        let empty = ScenarioResult::from_latencies("y", &[], 3, 0.0);
        assert_eq!(empty.ops, 0);
        assert_eq!(empty.ops_per_sec, 0.0);
        assert_eq!(empty.p50_ms, 0.0);
    }

    #[test]
    fn renders_markdown_and_json() {
        let mut report = Report {
            results: vec![ScenarioResult {
                name: "port-list".into(),
                ops: 50,
                errors: 0,
                seconds: 2.0,
                ops_per_sec: 25.0,
                p50_ms: 39.5,
                p99_ms: 41.25,
            }],
            json: false,
        };
        let md = report.to_string();
        assert!(md.starts_with("| scenario | ops |"));
        assert!(md.contains("| port-list | 50 | 0 | 2.000 | 25.0 | 39.50 | 41.25 |"));

        report.json = true;
        let v: serde_json::Value = serde_json::from_str(&report.to_string()).unwrap();
        assert_eq!(v["results"][0]["name"], "port-list");
        assert_eq!(v["results"][0]["ops"], 50);
        assert!(v.get("json").is_none());
    }
}
