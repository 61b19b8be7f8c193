//! Evaluating a stage's gates, the same way for entry gates, verification gates, plans and reconcile.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use tracing::warn;

use super::{Pipeline, Stage};
use crate::build::Build;
use crate::config::{Redactor, load_layered};
use crate::error::Result;
use crate::gate::{Gate, GateContext, GatePhase, GateReport};
use crate::ledger::{GateEvidence, LedgerView, PromotionKind, Verdict};

/// The candidate a set of gates judges.
pub(super) struct Candidate<'a> {
    pub(super) stage: &'a Stage,
    pub(super) build: &'a Build,
    pub(super) kind: &'a PromotionKind,
    pub(super) actor: &'a str,
}

/// A set of verdicts, summed up: the first failure, and every pending gate's reason.
pub(super) struct Verdicts {
    /// `(gate, reason)` of the first gate that failed.
    pub(super) failed: Option<(String, String)>,
    /// `gate: reason` of each pending gate.
    pub(super) pending: Vec<String>,
}

impl Verdicts {
    pub(super) fn of(evidence: &[GateEvidence]) -> Self {
        let failed = evidence.iter().find_map(|v| match &v.verdict {
            Verdict::Fail(reason) => Some((v.gate.clone(), reason.clone())),
            _ => None,
        });
        let pending = evidence
            .iter()
            .filter_map(|v| match &v.verdict {
                Verdict::Pending(reason) => Some(format!("{}: {reason}", v.gate)),
                _ => None,
            })
            .collect();
        Verdicts { failed, pending }
    }
}

impl Pipeline {
    /// Evaluates `gates` concurrently for `candidate`. In a dry run, a gate that acts (runs a program, calls a
    /// URL) is not run unless it is safe for plans: it is reported pending.
    pub(super) async fn evaluate_gates(
        &self,
        gates: &[Arc<dyn Gate>],
        candidate: &Candidate<'_>,
        view: &LedgerView,
        phase: GatePhase,
        dry_run: bool,
    ) -> Result<Vec<GateEvidence>> {
        let Candidate { stage, build, kind, actor } = candidate;
        let upstream = self.upstream_of(stage);
        let current = view.current_build(&stage.name).and_then(|id| view.build(id));
        let secrets = self.redactor_for(gates, stage, dry_run).await;
        let context = GateContext {
            build,
            stage: &stage.name,
            upstream: &upstream,
            current,
            ledger: view,
            now: self.now(),
            kind,
            phase,
            requested_by: actor,
            dry_run,
            secrets: &secrets,
        };
        let evaluations: Vec<_> = gates.iter().map(|gate| evaluate_gate(gate.as_ref(), &context)).collect();
        join_all(evaluations).await.into_iter().collect()
    }

    /// What a gate that acts (runs a program, calls a URL) must redact from what it shows as evidence:
    /// every secret the process holds, the stage's config loaded for the purpose included.
    async fn redactor_for(&self, gates: &[Arc<dyn Gate>], stage: &Stage, dry_run: bool) -> Redactor {
        if gates.iter().all(|gate| gate.capabilities().side_effect_free) {
            return Redactor::default();
        }
        let config = if dry_run {
            None
        } else {
            match load_layered(&stage.config, &stage.name, &BTreeMap::new()).await {
                Ok(config) => Some(config),
                Err(error) => {
                    warn!(%error, "the stage's config could not be loaded to redact gate output; it is loaded again to render");
                    None
                }
            }
        };
        // Built while the config is loaded: the redactor holds its own handles on the values.
        let redactor = Redactor::live();
        drop(config);
        redactor
    }
}

async fn evaluate_gate(gate: &dyn Gate, context: &GateContext<'_>) -> Result<GateEvidence> {
    if context.dry_run && !gate.capabilities().side_effect_free {
        let verdict = Verdict::Pending("not run by plan: the gate has side effects".into());
        return Ok(GateReport::new(verdict).into_evidence(gate));
    }
    let evidence = gate.evaluate(context).await.map(|report| report.into_evidence(gate));
    failpoint!("promote::after_gate");
    evidence
}
