//! Auto-promotion without a daemon: [`Pipeline::reconcile`] moves builds into `auto` stages when their
//! gates pass. A CI plugin calls it after `register`, or on a schedule.

use serde::Serialize;
use tracing::{Instrument, info, info_span};

use std::sync::Arc;

use super::gates::{Candidate, Verdicts};
use super::{Pipeline, Stage, report};
use crate::build::{Build, BuildId};
use crate::error::{Error, Result, SharedError};
use crate::gate::{Gate, GatePhase};
use crate::ledger::{FinalState, Hold, HoldScope, LedgerView, PromotionId, PromotionKind, PromotionState, Verdict};

/// What `reconcile` did for one stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
#[non_exhaustive]
pub enum ReconcileOutcome {
    /// A build was promoted into the stage.
    Promoted {
        /// The build.
        build: BuildId,
        /// Its promotion.
        promotion: PromotionId,
    },
    /// No build newer than the stage's current one may enter it.
    NothingEligible {
        /// Why each newer build that passed the upstream stages was passed over (gates that fail, an
        /// earlier promotion into the stage that failed), newest first; empty when there was none.
        reasons: Vec<String>,
    },
    /// A hold on automatic promotion (or on every promotion) blocks the stage.
    Held {
        /// The holds.
        holds: Vec<Hold>,
    },
    /// Builds are waiting for gates (soak time, a window, approvals).
    Pending {
        /// What each waiting build awaits, newest first, prefixed with the build and gate.
        reasons: Vec<String>,
    },
    /// A promotion was tried and did not succeed (a gate, deploy or verification failed, or a backend
    /// error); the ledger has the details.
    Failed {
        /// The build.
        build: BuildId,
        /// The error (`error.root()` is what the backend or the engine raised).
        error: SharedError,
    },
}

/// One stage's line in a [`ReconcileReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReconcile {
    /// The stage.
    pub stage: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: ReconcileOutcome,
}

/// What `reconcile` did, one line per `auto` stage, in pipeline order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconcileReport {
    /// The `auto` stages.
    pub stages: Vec<StageReconcile>,
}

impl ReconcileReport {
    /// The outcome for one stage (`None` if the stage is not `auto`).
    pub fn stage(&self, name: &str) -> Option<&ReconcileOutcome> {
        self.stages.iter().find(|line| line.stage == name).map(|line| &line.outcome)
    }

    /// The builds promoted, as (stage, build).
    pub fn promoted(&self) -> Vec<(&str, &BuildId)> {
        self.stages
            .iter()
            .filter_map(|line| match &line.outcome {
                ReconcileOutcome::Promoted { build, .. } => Some((line.stage.as_str(), build)),
                _ => None,
            })
            .collect()
    }
}

/// What the side-effect-free gates say about a candidate.
enum Precheck {
    Ready,
    Waiting(Vec<String>),
    Refused(Vec<String>),
}

impl Pipeline {
    /// Promotes, into each stage marked `auto`, the newest eligible build whose gates pass.
    ///
    /// Stages are visited in pipeline order, so a build promoted into one stage may move on into the next
    /// in the same call. For each stage:
    /// - a hold with scope [`HoldScope::Auto`] or [`HoldScope::All`] blocks it ([`ReconcileOutcome::Held`]);
    ///   a rollback places such a hold, so the build rolled back from is not promoted again until someone
    ///   lifts it with [`Pipeline::lift_hold`];
    /// - the candidates are the builds registered after the stage's current one that passed its upstream
    ///   stages, newest first; a build whose last promotion into the stage failed is passed over (promote
    ///   it by hand to retry);
    /// - each candidate's side-effect-free entry gates are evaluated as in a plan, recording nothing; the
    ///   newest candidate they all pass is promoted with [`Pipeline::promote`], which evaluates every gate
    ///   again, those with side effects included.
    ///
    /// Stages that are not `auto` are left alone and not reported. An error reading the ledger is an
    /// `Err`; a promotion that fails is reported as [`ReconcileOutcome::Failed`] and the other stages
    /// still run.
    pub async fn reconcile(&self, actor: &str) -> Result<ReconcileReport> {
        let span = info_span!("reconcile", pipeline = %self.inner.name, actor);
        async {
            let mut stages = Vec::new();
            for stage in self.inner.stages.iter().filter(|stage| stage.auto) {
                let outcome = self.reconcile_stage(stage, actor).await?;
                info!(stage = %stage.name, ?outcome, "reconciled");
                stages.push(StageReconcile { stage: stage.name.clone(), outcome });
            }
            Ok(ReconcileReport { stages })
        }
        .instrument(span)
        .await
    }

    async fn reconcile_stage(&self, stage: &Stage, actor: &str) -> Result<ReconcileOutcome> {
        let view = self.view().await?;
        let holds: Vec<Hold> = view
            .holds(&stage.name)
            .filter(|hold| matches!(hold.scope, HoldScope::Auto | HoldScope::All))
            .cloned()
            .collect();
        if !holds.is_empty() {
            return Ok(ReconcileOutcome::Held { holds });
        }
        let current = view.current_build(&stage.name).cloned();
        let newer: Vec<&Build> = match &current {
            Some(current) => view.builds().skip_while(|build| &build.id != current).skip(1).collect(),
            None => view.builds().collect(),
        };
        let mut refused = Vec::new();
        let mut waiting = Vec::new();
        for build in newer.into_iter().rev() {
            if report::upstream_passes(self, view.summary(), stage, &build.id).is_err() {
                continue;
            }
            if let Some(reason) = last_failure(&view, &stage.name, &build.id) {
                refused.push(format!(
                    "{}: its last promotion into {} failed ({reason}); promote it by hand to retry",
                    build.id, stage.name
                ));
                continue;
            }
            match self.precheck(&view, stage, build, actor).await {
                Err(error) => {
                    return Ok(ReconcileOutcome::Failed { build: build.id.clone(), error: error.into() });
                }
                Ok(Precheck::Refused(reasons)) => {
                    refused.extend(reasons.into_iter().map(|r| format!("{}: {r}", build.id)));
                }
                Ok(Precheck::Waiting(reasons)) => {
                    waiting.extend(reasons.into_iter().map(|r| format!("{}: {r}", build.id)));
                }
                Ok(Precheck::Ready) => {
                    return Ok(match self.promote(&build.id, &stage.name, actor).await {
                        Ok(record) => ReconcileOutcome::Promoted { build: build.id.clone(), promotion: record.id },
                        Err(Error::GatePending { reasons, .. }) => ReconcileOutcome::Pending {
                            reasons: reasons.into_iter().map(|r| format!("{}: {r}", build.id)).chain(waiting).collect(),
                        },
                        Err(error) => ReconcileOutcome::Failed { build: build.id.clone(), error: error.into() },
                    });
                }
            }
        }
        Ok(if waiting.is_empty() {
            ReconcileOutcome::NothingEligible { reasons: refused }
        } else {
            ReconcileOutcome::Pending { reasons: waiting }
        })
    }

    /// Evaluates the stage's side-effect-free entry gates for `build`, as a plan would; gates that act are
    /// left to the promotion itself.
    async fn precheck(&self, view: &LedgerView, stage: &Stage, build: &Build, actor: &str) -> Result<Precheck> {
        let pure: Vec<Arc<dyn Gate>> =
            stage.entry_gates.iter().filter(|gate| gate.capabilities().side_effect_free).cloned().collect();
        let kind = PromotionKind::Promote;
        let candidate = Candidate { stage, build, kind: &kind, actor };
        let evidence = self.evaluate_gates(&pure, &candidate, view, GatePhase::Entry, true).await?;
        let refused: Vec<String> = evidence
            .iter()
            .filter_map(|v| match &v.verdict {
                Verdict::Fail(reason) => Some(format!("{}: {reason}", v.gate)),
                _ => None,
            })
            .collect();
        let Verdicts { pending, .. } = Verdicts::of(&evidence);
        Ok(if !refused.is_empty() {
            Precheck::Refused(refused)
        } else if !pending.is_empty() {
            Precheck::Waiting(pending)
        } else {
            Precheck::Ready
        })
    }
}

/// Why the last finished promotion of `build` into `stage` failed, if it did.
fn last_failure(view: &LedgerView, stage: &str, build: &BuildId) -> Option<String> {
    let last = view.promotions_of(stage, build).rev().find(|p| !p.state.in_progress())?;
    match &last.state {
        PromotionState::Finished(FinalState::Failed { step, reason }) => Some(format!("at {step}: {reason}")),
        _ => None,
    }
}
