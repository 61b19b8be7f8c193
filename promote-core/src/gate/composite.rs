//! Composites: `all` and `any` of several gates, and `not` of one.
//!
//! ```yaml
//! gates:
//!   - kind: any
//!     name: reviewed-or-hotfix      # default: the kind
//!     gates:
//!       - { kind: approval, promoters: [alice, bob] }
//!       - kind: all
//!         gates:
//!           - { kind: metric, check: "hotfix == 1" }
//!           - { kind: soak, stage: stg, duration: 1h }
//!   - kind: not
//!     gate: { kind: window, timezone: Europe/Berlin, days: [fri] }
//! ```
//!
//! Children are evaluated concurrently. `all` fails if any child fails, else is pending if any is pending;
//! `any` passes if any child passes, else is pending if any is pending; `not` swaps pass and fail and
//! leaves pending alone. A child that cannot decide (an error) makes `all` an error, and `any` an error
//! unless another child passes. A composite is side-effect-free only if all its children are, and it
//! forwards the approval policy of its first child that has one, so approvals for a stage whose approval
//! gate sits inside a composite are accepted or refused as usual.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;

use super::{ApprovalPolicy, Gate, GateCapabilities, GateContext, GateReport};
use crate::error::Result;
use crate::ledger::{GateEvidence, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Combine {
    All,
    Any,
    Not,
}

/// A gate made of other gates.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use promote_core::gate::{Composite, Gate, MetricGate, SemverGate};
/// let gate = Composite::any(
///     "covered-or-major",
///     vec![
///         Arc::new(MetricGate::parse("coverage", "coverage >= 80")?) as Arc<dyn Gate>,
///         Arc::new(SemverGate::new("major").require(">=2")?),
///     ],
/// );
/// assert_eq!(gate.kind(), "any");
/// assert!(gate.capabilities().side_effect_free);
/// # Ok::<(), promote_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Composite {
    name: String,
    combine: Combine,
    children: Vec<Arc<dyn Gate>>,
}

impl Composite {
    /// Passes when every child passes.
    pub fn all(name: impl Into<String>, gates: Vec<Arc<dyn Gate>>) -> Self {
        Composite { name: name.into(), combine: Combine::All, children: gates }
    }

    /// Passes when at least one child passes.
    pub fn any(name: impl Into<String>, gates: Vec<Arc<dyn Gate>>) -> Self {
        Composite { name: name.into(), combine: Combine::Any, children: gates }
    }

    /// Passes when the child fails, and fails when it passes.
    pub fn not(name: impl Into<String>, gate: Arc<dyn Gate>) -> Self {
        Composite { name: name.into(), combine: Combine::Not, children: vec![gate] }
    }

    /// The child gates.
    pub fn children(&self) -> &[Arc<dyn Gate>] {
        &self.children
    }
}

async fn evaluate_child(gate: &dyn Gate, context: &GateContext<'_>) -> Result<GateEvidence> {
    // The same rule as the engine's: a plan does not run a child with side effects.
    if context.dry_run && !gate.capabilities().side_effect_free {
        let verdict = Verdict::Pending("not run by plan: the gate has side effects".into());
        return Ok(GateReport::new(verdict).into_evidence(gate));
    }
    gate.evaluate(context).await.map(|report| report.into_evidence(gate))
}

fn reasons(children: &[GateEvidence], pick: impl Fn(&Verdict) -> Option<&String>) -> String {
    children
        .iter()
        .filter_map(|child| pick(&child.verdict).map(|reason| format!("{}: {reason}", child.gate)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn failed(verdict: &Verdict) -> Option<&String> {
    match verdict {
        Verdict::Fail(reason) => Some(reason),
        _ => None,
    }
}

fn pending(verdict: &Verdict) -> Option<&String> {
    match verdict {
        Verdict::Pending(reason) => Some(reason),
        _ => None,
    }
}

#[async_trait]
impl Gate for Composite {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        match self.combine {
            Combine::All => "all",
            Combine::Any => "any",
            Combine::Not => "not",
        }
    }

    fn capabilities(&self) -> GateCapabilities {
        if self.children.iter().all(|child| child.capabilities().side_effect_free) {
            GateCapabilities::pure()
        } else {
            GateCapabilities::acting()
        }
    }

    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        self.children.iter().find_map(|child| child.approval_policy())
    }

    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        let results = join_all(self.children.iter().map(|child| evaluate_child(child.as_ref(), context))).await;
        let mut children = Vec::with_capacity(results.len());
        let mut first_error = None;
        for result in results {
            match result {
                Ok(evidence) => children.push(evidence),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        let any_pass = children.iter().any(|child| child.verdict.is_pass());
        if let Some(error) = first_error
            && !(self.combine == Combine::Any && any_pass)
        {
            return Err(error);
        }
        let any_fail = children.iter().any(|child| failed(&child.verdict).is_some());
        let any_pending = children.iter().any(|child| pending(&child.verdict).is_some());
        let verdict = match self.combine {
            Combine::All if any_fail => Verdict::Fail(reasons(&children, failed)),
            Combine::All if any_pending => Verdict::Pending(reasons(&children, pending)),
            Combine::All => Verdict::Pass,
            Combine::Any if any_pass => Verdict::Pass,
            Combine::Any if any_pending => Verdict::Pending(format!(
                "none passed yet: {}",
                reasons(&children, |v| failed(v).or_else(|| pending(v)))
            )),
            Combine::Any => Verdict::Fail(format!("none passed: {}", reasons(&children, failed))),
            Combine::Not => match children.first().map(|child| &child.verdict) {
                Some(Verdict::Pass) => {
                    Verdict::Fail(format!("{} passed, and this gate requires it not to", children[0].gate))
                }
                Some(Verdict::Pending(reason)) => Verdict::Pending(format!("{}: {reason}", children[0].gate)),
                Some(Verdict::Fail(_)) | None => Verdict::Pass,
            },
        };
        let children = serde_json::to_value(&children).unwrap_or_default();
        Ok(GateReport::new(verdict).with("children", children))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::error::{Error, ErrorClass};
    use crate::gate::{ApprovalGate, SoakGate};
    use crate::ledger::PromotionKind;
    use crate::testing::scene::{Scene, at};

    /// A gate with a fixed answer that counts its evaluations.
    #[derive(Debug)]
    struct Fixed {
        name: &'static str,
        answer: Option<Verdict>,
        pure: bool,
        runs: Mutex<u32>,
    }

    fn fixed(name: &'static str, answer: Option<Verdict>) -> Arc<Fixed> {
        Arc::new(Fixed { name, answer, pure: true, runs: Mutex::new(0) })
    }

    #[async_trait]
    impl Gate for Fixed {
        fn name(&self) -> &str {
            self.name
        }
        fn kind(&self) -> &str {
            "fixed"
        }
        fn capabilities(&self) -> GateCapabilities {
            if self.pure { GateCapabilities::pure() } else { GateCapabilities::acting() }
        }
        fn approval_policy(&self) -> Option<&ApprovalPolicy> {
            None
        }
        async fn evaluate(&self, _context: &GateContext<'_>) -> Result<GateReport> {
            *self.runs.lock().unwrap() += 1;
            match &self.answer {
                Some(verdict) => Ok(GateReport::new(verdict.clone())),
                None => Err(Error::backend("fixed", ErrorClass::Temporary, "unreachable")),
            }
        }
    }

    fn pass(name: &'static str) -> Arc<dyn Gate> {
        fixed(name, Some(Verdict::Pass))
    }
    fn wait(name: &'static str) -> Arc<dyn Gate> {
        fixed(name, Some(Verdict::Pending(format!("{name} waits"))))
    }
    fn fail(name: &'static str) -> Arc<dyn Gate> {
        fixed(name, Some(Verdict::Fail(format!("{name} says no"))))
    }
    fn broken(name: &'static str) -> Arc<dyn Gate> {
        fixed(name, None)
    }

    async fn verdict(gate: &Composite) -> Result<Verdict> {
        let mut scene = Scene::new();
        let build = scene.register("1.0.0", &[]);
        scene
            .evaluate_with(gate, &build, "prd", &["stg"], at("2026-03-01T00:00:00Z"), PromotionKind::Promote, false)
            .await
            .map(|report| report.verdict)
    }

    #[tokio::test]
    async fn all_needs_every_child() {
        assert_eq!(verdict(&Composite::all("a", vec![pass("x"), pass("y")])).await.unwrap(), Verdict::Pass);
        assert_eq!(
            verdict(&Composite::all("a", vec![pass("x"), wait("y")])).await.unwrap(),
            Verdict::Pending("y: y waits".into())
        );
        assert_eq!(
            verdict(&Composite::all("a", vec![wait("x"), fail("y")])).await.unwrap(),
            Verdict::Fail("y: y says no".into())
        );
        assert!(verdict(&Composite::all("a", vec![pass("x"), broken("y")])).await.is_err());
    }

    #[tokio::test]
    async fn any_needs_one_child() {
        assert_eq!(verdict(&Composite::any("a", vec![fail("x"), pass("y")])).await.unwrap(), Verdict::Pass);
        assert_eq!(verdict(&Composite::any("a", vec![broken("x"), pass("y")])).await.unwrap(), Verdict::Pass);
        assert_eq!(
            verdict(&Composite::any("a", vec![fail("x"), wait("y")])).await.unwrap(),
            Verdict::Pending("none passed yet: x: x says no; y: y waits".into())
        );
        assert_eq!(
            verdict(&Composite::any("a", vec![fail("x"), fail("y")])).await.unwrap(),
            Verdict::Fail("none passed: x: x says no; y: y says no".into())
        );
        assert!(verdict(&Composite::any("a", vec![fail("x"), broken("y")])).await.is_err());
    }

    #[tokio::test]
    async fn not_swaps_pass_and_fail() {
        assert_eq!(
            verdict(&Composite::not("n", pass("x"))).await.unwrap(),
            Verdict::Fail("x passed, and this gate requires it not to".into())
        );
        assert_eq!(verdict(&Composite::not("n", fail("x"))).await.unwrap(), Verdict::Pass);
        assert_eq!(verdict(&Composite::not("n", wait("x"))).await.unwrap(), Verdict::Pending("x: x waits".into()));
    }

    #[tokio::test]
    async fn children_evidence_is_recorded() {
        let mut scene = Scene::new();
        let build = scene.register("1.0.0", &[]);
        let gate = Composite::all("a", vec![pass("x"), wait("y")]);
        let report = scene.evaluate(&gate, &build, "prd", &[], at("2026-03-01T00:00:00Z")).await;
        let children = report.evidence["children"].as_array().unwrap();
        assert_eq!(children.len(), 2);
        assert_eq!(children[1]["gate"], "y");
        assert!(children[1]["verdict"].get("pending").is_some(), "{}", children[1]);
    }

    #[tokio::test]
    async fn side_effects_and_approval_policies_come_from_the_children() {
        let approval: Arc<dyn Gate> =
            Arc::new(ApprovalGate::new("release", crate::gate::ApprovalPolicy::promoters(["alice"])));
        let soak: Arc<dyn Gate> = Arc::new(SoakGate::new("soak", std::time::Duration::from_secs(1)));
        let any = Composite::any("a", vec![soak.clone(), approval]);
        assert_eq!(any.approval_policy().unwrap().promoters, ["alice"]);
        assert!(Composite::not("n", Arc::new(any.clone())).approval_policy().is_some());
        assert!(Composite::all("a", vec![soak.clone()]).approval_policy().is_none());
        assert!(any.capabilities().side_effect_free);

        let acting = Arc::new(Fixed { name: "cmd", answer: Some(Verdict::Pass), pure: false, runs: Mutex::new(0) });
        let mixed = Composite::all("a", vec![pass("p"), acting.clone()]);
        assert!(!mixed.capabilities().side_effect_free);
        // Evaluated in a plan anyway, the child with side effects is not run.
        let mut scene = Scene::new();
        let build = scene.register("1.0.0", &[]);
        let report = scene
            .evaluate_with(&mixed, &build, "prd", &[], at("2026-03-01T00:00:00Z"), PromotionKind::Promote, true)
            .await
            .unwrap();
        assert!(matches!(&report.verdict, Verdict::Pending(r) if r.contains("cmd: not run by plan")), "{report:?}");
        assert_eq!(*acting.runs.lock().unwrap(), 0);
    }
}
