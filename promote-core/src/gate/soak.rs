//! Soak time: the build has run in an upstream stage for long enough.
//!
//! ```yaml
//! gates:
//!   - kind: soak
//!     name: soaked-in-stg     # default: soak
//!     stage: stg              # default: every stage the target draws from
//!     duration: 24h
//!     count: while_current    # or since_first_pass; default while_current
//! ```

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApprovalPolicy, Gate, GateCapabilities, GateContext, GateReport};
use crate::error::Result;
use crate::ledger::{LedgerView, Verdict};

/// Which time counts towards a soak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoakCount {
    /// Only the time the build was the current build of the stage, summed over every period it was
    /// current. Once another build replaces it, its soak stops growing. The default: a soak is meant to
    /// show the build running, and a replaced build no longer runs there.
    #[default]
    WhileCurrent,
    /// The time since the build first passed the stage, whether or not it is still current there.
    SinceFirstPass,
}

/// A gate that passes once the build has soaked in an upstream stage for at least a duration.
///
/// Time is read from the context (the pipeline's [`Clock`](crate::clock::Clock)), and the periods from
/// the ledger's [`tenures`](LedgerView::tenures), which start when a promotion succeeded (after its
/// verification gates).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use promote_core::gate::{SoakCount, SoakGate};
/// let gate = SoakGate::new("soaked", Duration::from_secs(24 * 3600))
///     .in_stage("stg")
///     .count(SoakCount::SinceFirstPass);
/// assert_eq!(gate.required(), Duration::from_secs(86_400));
/// ```
#[derive(Debug, Clone)]
pub struct SoakGate {
    name: String,
    stage: Option<String>,
    duration: Duration,
    count: SoakCount,
}

impl SoakGate {
    /// A gate called `name` requiring `duration` in every upstream stage, counting
    /// [`SoakCount::WhileCurrent`].
    pub fn new(name: impl Into<String>, duration: Duration) -> Self {
        SoakGate { name: name.into(), stage: None, duration, count: SoakCount::default() }
    }

    /// Soaks in this stage instead of the target's upstream stages.
    pub fn in_stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }

    /// Sets which time counts.
    pub fn count(mut self, count: SoakCount) -> Self {
        self.count = count;
        self
    }

    /// The required duration.
    pub fn required(&self) -> Duration {
        self.duration
    }

    /// How long `build` has soaked in `stage` as of `now`, and whether it is current there. `None` if it
    /// never passed the stage.
    pub fn soaked(
        &self,
        view: &LedgerView,
        stage: &str,
        build: &crate::build::BuildId,
        now: DateTime<Utc>,
    ) -> Option<(chrono::Duration, bool)> {
        let tenures: Vec<_> = view.tenures(stage).iter().filter(|tenure| &tenure.build == build).collect();
        let first = tenures.first()?;
        let current = tenures.last().is_some_and(|t| t.until.is_none());
        let soaked = match self.count {
            SoakCount::SinceFirstPass => now - first.from,
            SoakCount::WhileCurrent => tenures.iter().map(|t| t.until.unwrap_or(now).min(now) - t.from.min(now)).sum(),
        };
        Some((soaked.max(chrono::Duration::zero()), current))
    }
}

#[async_trait]
impl Gate for SoakGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "soak"
    }

    fn capabilities(&self) -> GateCapabilities {
        GateCapabilities::pure()
    }

    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        None
    }

    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        let stages: Vec<&str> = match &self.stage {
            Some(stage) => vec![stage.as_str()],
            None => context.upstream.iter().map(String::as_str).collect(),
        };
        let required = humantime::format_duration(self.duration).to_string();
        let report = |verdict| {
            GateReport::new(verdict)
                .with("required", required.clone())
                .with("count", serde_json::to_value(self.count).unwrap_or_default())
        };
        if stages.is_empty() {
            return Ok(report(Verdict::Fail(format!(
                "stage {} draws from no stage, so there is nowhere to soak; name one with `stage`",
                context.stage
            ))));
        }
        let need = chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::MAX);
        let mut waiting = Vec::new();
        let mut soaked_by_stage = serde_json::Map::new();
        for stage in stages {
            let Some((soaked, current)) = self.soaked(context.ledger, stage, &context.build.id, context.now) else {
                waiting.push(format!(
                    "{} has not passed {stage} yet, so it has not started soaking there",
                    context.build.id
                ));
                soaked_by_stage.insert(stage.to_owned(), serde_json::Value::Null);
                continue;
            };
            soaked_by_stage.insert(stage.to_owned(), soaked.num_seconds().into());
            if soaked >= need {
                continue;
            }
            let soaked_text = format_chrono(soaked);
            let left = format_chrono(need - soaked);
            if self.count == SoakCount::WhileCurrent && !current {
                waiting.push(format!(
                    "soaked {soaked_text} of {required} in {stage}, and it is no longer current there \
                     (count: while_current), so its soak will not grow unless it is promoted there again"
                ));
            } else {
                let ready_at = context.now + (need - soaked);
                waiting.push(format!(
                    "soaked {soaked_text} of {required} in {stage}; {left} to go (at {})",
                    ready_at.to_rfc3339()
                ));
            }
        }
        let verdict = if waiting.is_empty() { Verdict::Pass } else { Verdict::Pending(waiting.join("; ")) };
        Ok(report(verdict).with("soaked_seconds", soaked_by_stage))
    }
}

fn format_chrono(duration: chrono::Duration) -> String {
    let seconds = duration.num_seconds().max(0).unsigned_abs();
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

#[cfg(test)]
mod tests {
    use chrono::Duration as Span;
    use proptest::prelude::*;

    use super::*;
    use crate::testing::scene::{Scene, at};

    fn hours(h: i64) -> Span {
        Span::hours(h)
    }

    #[tokio::test]
    async fn passes_after_the_duration_in_the_upstream_stage() {
        let mut scene = Scene::new();
        let build = scene.register("1.0.0", &[]);
        let t0 = at("2026-03-01T10:00:00Z");
        scene.pass("stg", &build, t0);
        let gate = SoakGate::new("soak", std::time::Duration::from_secs(24 * 3600));
        let pending = scene.evaluate(&gate, &build, "prd", &["stg"], t0 + hours(23)).await;
        let Verdict::Pending(reason) = &pending.verdict else { panic!("{pending:?}") };
        assert!(reason.contains("soaked 23h of 1day in stg; 1h to go"), "{reason}");
        assert!(reason.contains("2026-03-02T10:00:00+00:00"), "{reason}");
        let passed = scene.evaluate(&gate, &build, "prd", &["stg"], t0 + hours(24)).await;
        assert_eq!(passed.verdict, Verdict::Pass);
        assert_eq!(passed.evidence["soaked_seconds"]["stg"], 86_400);
    }

    #[tokio::test]
    async fn a_build_that_never_passed_is_pending() {
        let mut scene = Scene::new();
        let build = scene.register("1.0.0", &[]);
        let gate = SoakGate::new("soak", std::time::Duration::from_secs(60)).in_stage("stg");
        let report = scene.evaluate(&gate, &build, "prd", &[], at("2026-03-01T10:00:00Z")).await;
        assert!(matches!(&report.verdict, Verdict::Pending(r) if r.contains("has not passed stg")), "{report:?}");
    }

    #[tokio::test]
    async fn no_upstream_and_no_stage_fails() {
        let mut scene = Scene::new();
        let build = scene.register("1.0.0", &[]);
        let gate = SoakGate::new("soak", std::time::Duration::from_secs(60));
        let report = scene.evaluate(&gate, &build, "dev", &[], at("2026-03-01T10:00:00Z")).await;
        assert!(matches!(&report.verdict, Verdict::Fail(r) if r.contains("nowhere to soak")), "{report:?}");
    }

    /// A build current in stg for 10h, replaced, back for 6h: while_current counts 16h, since_first_pass
    /// counts the whole span.
    #[tokio::test]
    async fn time_after_replacement_counts_only_since_first_pass() {
        let mut scene = Scene::new();
        let a = scene.register("1.0.0", &[]);
        let b = scene.register("1.1.0", &[]);
        let t0 = at("2026-03-01T00:00:00Z");
        scene.pass("stg", &a, t0);
        scene.pass("stg", &b, t0 + hours(10));
        let while_current = SoakGate::new("soak", std::time::Duration::from_secs(20 * 3600));
        let since_first = while_current.clone().count(SoakCount::SinceFirstPass);

        let now = t0 + hours(30);
        let report = scene.evaluate(&while_current, &a, "prd", &["stg"], now).await;
        assert!(matches!(&report.verdict, Verdict::Pending(r) if r.contains("no longer current")), "{report:?}");
        assert_eq!(report.evidence["soaked_seconds"]["stg"], 10 * 3600);
        let report = scene.evaluate(&since_first, &a, "prd", &["stg"], now).await;
        assert_eq!(report.verdict, Verdict::Pass);

        // Back in stg: its soak grows again from where it stopped.
        scene.pass("stg", &a, t0 + hours(30));
        let report = scene.evaluate(&while_current, &a, "prd", &["stg"], t0 + hours(39)).await;
        assert!(
            matches!(&report.verdict, Verdict::Pending(r) if r.contains("19h of 20h") && r.contains("1h to go")),
            "{report:?}"
        );
        let report = scene.evaluate(&while_current, &a, "prd", &["stg"], t0 + hours(40)).await;
        assert_eq!(report.verdict, Verdict::Pass);
    }

    #[tokio::test]
    async fn fan_in_needs_every_upstream_stage() {
        let mut scene = Scene::new();
        let build = scene.register("1.0.0", &[]);
        let t0 = at("2026-03-01T00:00:00Z");
        scene.pass("stg-eu", &build, t0);
        scene.pass("stg-us", &build, t0 + hours(5));
        let gate = SoakGate::new("soak", std::time::Duration::from_secs(8 * 3600));
        let report = scene.evaluate(&gate, &build, "prd", &["stg-eu", "stg-us"], t0 + hours(9)).await;
        assert!(
            matches!(&report.verdict, Verdict::Pending(r) if r.contains("stg-us") && !r.contains("stg-eu")),
            "{report:?}"
        );
        let report = scene.evaluate(&gate, &build, "prd", &["stg-eu", "stg-us"], t0 + hours(13)).await;
        assert_eq!(report.verdict, Verdict::Pass);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// With tenures in any pattern, the gate passes exactly when the summed (or elapsed) time reaches
        /// the requirement, and once it passes, later clocks keep it passing (while the ledger is unchanged).
        #[test]
        fn passes_exactly_when_the_counted_time_reaches_the_requirement(
            gaps in proptest::collection::vec((1i64..5_000, 1i64..5_000), 1..5),
            required in 1u64..40_000,
            probe in 0i64..50_000,
            since_first in any::<bool>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut scene = Scene::new();
            let soaking = scene.register("1.0.0", &[]);
            let other = scene.register("2.0.0", &[]);
            let t0 = at("2026-03-01T00:00:00Z");
            let mut t = t0;
            let mut counted = 0i64;
            for (current_for, replaced_for) in &gaps {
                scene.pass("stg", &soaking, t);
                t += Span::seconds(*current_for);
                counted += current_for;
                scene.pass("stg", &other, t);
                t += Span::seconds(*replaced_for);
            }
            let now = t + Span::seconds(probe);
            let count = if since_first { SoakCount::SinceFirstPass } else { SoakCount::WhileCurrent };
            let expected = if since_first { (now - t0).num_seconds() } else { counted };
            let gate = SoakGate::new("soak", std::time::Duration::from_secs(required)).count(count);
            let report = runtime.block_on(scene.evaluate(&gate, &soaking, "prd", &["stg"], now));
            prop_assert_eq!(report.verdict.is_pass(), expected >= required as i64, "{:?}", report);
            prop_assert_eq!(&report.evidence["soaked_seconds"]["stg"], &serde_json::json!(expected));
            if report.verdict.is_pass() {
                let later = runtime.block_on(scene.evaluate(&gate, &soaking, "prd", &["stg"], now + Span::seconds(probe)));
                prop_assert!(later.verdict.is_pass());
            }
        }

        /// A build that is current soaks second by second: pending one second before the requirement,
        /// passing at it, whatever the requirement.
        #[test]
        fn the_edge_is_exact(required in 1u64..10_000_000, start in 0i64..100_000_000) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut scene = Scene::new();
            let build = scene.register("1.0.0", &[]);
            let t0 = at("2026-01-01T00:00:00Z") + Span::seconds(start);
            scene.pass("stg", &build, t0);
            for count in [SoakCount::WhileCurrent, SoakCount::SinceFirstPass] {
                let gate = SoakGate::new("soak", std::time::Duration::from_secs(required)).count(count);
                let edge = t0 + Span::seconds(required as i64);
                let before = runtime.block_on(scene.evaluate(&gate, &build, "prd", &["stg"], edge - Span::seconds(1)));
                let at_edge = runtime.block_on(scene.evaluate(&gate, &build, "prd", &["stg"], edge));
                prop_assert!(matches!(before.verdict, Verdict::Pending(_)));
                prop_assert!(at_edge.verdict.is_pass());
            }
        }
    }
}
