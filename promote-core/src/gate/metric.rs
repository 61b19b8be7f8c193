//! Metric thresholds on the metadata recorded when the build was registered.
//!
//! ```yaml
//! gates:
//!   - kind: metric
//!     name: coverage            # default: metric
//!     check: "coverage >= 80"   # operators: >= > <= < ==
//! ```
//!
//! The metric is read from the build's metadata: a JSON number, or a string holding one (`"81.5"`), as
//! CI tools often record. A missing metric, or one that is not a number, fails the gate and says so.
//! `==` compares the numbers exactly.

use std::fmt;

use async_trait::async_trait;

use super::{ApprovalPolicy, Gate, GateCapabilities, GateContext, GateReport};
use crate::error::{Error, Result};
use crate::ledger::Verdict;

/// How a metric is compared with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `>=`
    AtLeast,
    /// `>`
    Above,
    /// `<=`
    AtMost,
    /// `<`
    Below,
    /// `==`
    Equal,
}

impl Comparison {
    /// Whether `value` compared with `threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::AtLeast => value >= threshold,
            Comparison::Above => value > threshold,
            Comparison::AtMost => value <= threshold,
            Comparison::Below => value < threshold,
            Comparison::Equal => value == threshold,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Comparison::AtLeast => ">=",
            Comparison::Above => ">",
            Comparison::AtMost => "<=",
            Comparison::Below => "<",
            Comparison::Equal => "==",
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// A gate that compares a metric from the build's metadata with a threshold.
///
/// # Examples
/// ```
/// use promote_core::gate::{Comparison, MetricGate};
/// let parsed = MetricGate::parse("coverage", "coverage >= 80")?;
/// assert_eq!(parsed.check(), ("coverage", Comparison::AtLeast, 80.0));
/// assert!(MetricGate::parse("coverage", "coverage ~ 80").is_err());
/// # Ok::<(), promote_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MetricGate {
    name: String,
    metric: String,
    comparison: Comparison,
    threshold: f64,
}

impl MetricGate {
    /// A gate called `name` passing when `metric comparison threshold` holds. A threshold that is not a
    /// finite number is [`Error::InvalidInput`].
    pub fn new(
        name: impl Into<String>,
        metric: impl Into<String>,
        comparison: Comparison,
        threshold: f64,
    ) -> Result<Self> {
        let metric = metric.into();
        if !threshold.is_finite() {
            return Err(Error::invalid("metric threshold", threshold.to_string(), "must be a finite number"));
        }
        if metric.is_empty() {
            return Err(Error::invalid("metric", metric, "name a metric"));
        }
        Ok(MetricGate { name: name.into(), metric, comparison, threshold })
    }

    /// A gate from a check written `metric OP number` (`coverage >= 80`, `p99_ms < 250`).
    pub fn parse(name: impl Into<String>, check: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::invalid("metric check", check, reason.to_owned());
        // Two-character operators first, so that `>=` is not read as `>`.
        let operators = [
            (">=", Comparison::AtLeast),
            ("<=", Comparison::AtMost),
            ("==", Comparison::Equal),
            (">", Comparison::Above),
            ("<", Comparison::Below),
        ];
        let (at, symbol, comparison) = operators
            .iter()
            .filter_map(|(symbol, comparison)| check.find(symbol).map(|at| (at, *symbol, *comparison)))
            .min_by_key(|(at, symbol, _)| (*at, std::cmp::Reverse(symbol.len())))
            .ok_or_else(|| invalid("expected `metric OP number` with OP one of >=, >, <=, <, =="))?;
        let metric = check[..at].trim();
        let number = check[at + symbol.len()..].trim();
        if metric.is_empty() || metric.contains(char::is_whitespace) {
            return Err(invalid("the metric's name goes before the operator, without spaces"));
        }
        let threshold: f64 =
            number.parse().map_err(|_| invalid("the threshold after the operator must be a number"))?;
        Self::new(name, metric, comparison, threshold).map_err(|error| invalid(&error.to_string()))
    }

    /// The metric, the comparison and the threshold.
    pub fn check(&self) -> (&str, Comparison, f64) {
        (&self.metric, self.comparison, self.threshold)
    }
}

#[async_trait]
impl Gate for MetricGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "metric"
    }

    fn capabilities(&self) -> GateCapabilities {
        GateCapabilities::pure()
    }

    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        None
    }

    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        let check = format!("{} {} {}", self.metric, self.comparison, self.threshold);
        let report = GateReport::new(Verdict::Pass).with("check", check.clone());
        let Some(recorded) = context.build.metadata.get(&self.metric) else {
            let mut report = report;
            report.verdict = Verdict::Fail(format!(
                "build {} has no metric {} (record it in the build's metadata at registration)",
                context.build.id, self.metric
            ));
            return Ok(report);
        };
        let report = report.with("value", recorded.clone());
        let value = match recorded {
            serde_json::Value::Number(number) => number.as_f64(),
            serde_json::Value::String(text) => text.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|value| value.is_finite());
        let verdict = match value {
            None => Verdict::Fail(format!("metric {} is {recorded}, which is not a number", self.metric)),
            Some(value) if self.comparison.holds(value, self.threshold) => Verdict::Pass,
            Some(value) => Verdict::Fail(format!("metric {} is {value}; the check {check} does not hold", self.metric)),
        };
        Ok(GateReport { verdict, ..report })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::scene::{Scene, at};

    #[tokio::test]
    async fn passes_and_fails_by_the_threshold() {
        let mut scene = Scene::new();
        let good = scene.register("1.0.0", &[("coverage", json!(85.5))]);
        let bad = scene.register("1.0.1", &[("coverage", json!(79))]);
        let text = scene.register("1.0.2", &[("coverage", json!("80"))]);
        let gate = MetricGate::parse("coverage", "coverage >= 80").unwrap();
        let now = at("2026-03-01T00:00:00Z");
        let report = scene.evaluate(&gate, &good, "stg", &[], now).await;
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!(report.evidence["value"], json!(85.5));
        assert_eq!(report.evidence["check"], "coverage >= 80");
        let report = scene.evaluate(&gate, &bad, "stg", &[], now).await;
        assert!(
            matches!(&report.verdict, Verdict::Fail(r) if r.contains("coverage is 79") && r.contains("coverage >= 80 does not hold")),
            "{report:?}"
        );
        assert!(scene.evaluate(&gate, &text, "stg", &[], now).await.verdict.is_pass());
    }

    #[tokio::test]
    async fn a_missing_or_non_numeric_metric_fails_with_a_clear_reason() {
        let mut scene = Scene::new();
        let none = scene.register("1.0.0", &[]);
        let word = scene.register("1.0.1", &[("coverage", json!("high"))]);
        let gate = MetricGate::parse("coverage", "coverage >= 80").unwrap();
        let now = at("2026-03-01T00:00:00Z");
        let report = scene.evaluate(&gate, &none, "stg", &[], now).await;
        assert!(matches!(&report.verdict, Verdict::Fail(r) if r.contains("has no metric coverage")), "{report:?}");
        let report = scene.evaluate(&gate, &word, "stg", &[], now).await;
        assert!(
            matches!(&report.verdict, Verdict::Fail(r) if r.contains("\"high\", which is not a number")),
            "{report:?}"
        );
    }

    #[test]
    fn every_operator_parses_and_holds_as_written() {
        let cases = [
            ("p99 < 250", 249.0, true),
            ("p99 < 250", 250.0, false),
            ("p99 <= 250", 250.0, true),
            ("p99 > 0.5", 0.5, false),
            ("p99 > 0.5", 0.51, true),
            ("p99 >= 0.5", 0.5, true),
            ("p99 == 3", 3.0, true),
            ("p99==3", 3.1, false),
            ("p99 >= -1e3", -1000.0, true),
        ];
        for (check, value, holds) in cases {
            let gate = MetricGate::parse("m", check).unwrap();
            let (metric, comparison, threshold) = gate.check();
            assert_eq!(metric, "p99", "{check}");
            assert_eq!(comparison.holds(value, threshold), holds, "{check} with {value}");
        }
    }

    #[test]
    fn malformed_checks_are_refused() {
        for check in ["coverage", "coverage >= eighty", ">= 80", "line coverage >= 80", "x >= NaN", "x >= inf"] {
            assert!(MetricGate::parse("m", check).is_err(), "{check}");
        }
        assert!(MetricGate::new("m", "x", Comparison::Equal, f64::NAN).is_err());
    }
}
