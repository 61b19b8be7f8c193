//! What `status` and `plan` return.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Pipeline, Stage, Upstream};
use crate::build::BuildId;
use crate::config::Provenance;
use crate::deploy::Change;
use crate::digest::Digest;
use crate::ledger::{GateEvidence, Hold, LedgerSummary, PromotionId};
use crate::reference::ArtifactRef;

/// One stage's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StageStatus {
    /// The stage.
    pub stage: String,
    /// The build it runs now.
    pub current: Option<BuildId>,
    /// The current build's label (version or short commit).
    pub current_label: Option<String>,
    /// The promotion that made it current.
    pub current_promotion: Option<PromotionId>,
    /// Builds that passed the upstream stages and are not current here, newest first.
    pub eligible: Vec<BuildId>,
    /// Active holds.
    pub holds: Vec<Hold>,
    /// Promotions started and not finished.
    pub in_progress: Vec<PromotionId>,
    /// A promotion that failed after deploying, since the current build became current: the stage may be
    /// running that failed build (the stage's policy was to leave it).
    pub failed_since_current: Option<PromotionId>,
}

/// Every stage's state, in pipeline order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The stages.
    pub stages: Vec<StageStatus>,
}

impl Status {
    /// One stage's state.
    pub fn stage(&self, name: &str) -> Option<&StageStatus> {
        self.stages.iter().find(|s| s.stage == name)
    }
}

/// What `plan` would do with an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactAction {
    /// The target already holds the digest.
    AlreadyPresent,
    /// Tag the digest in the same repository.
    Retag,
    /// Copy the digest to another repository or registry.
    Copy,
}

/// One artifact in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedArtifact {
    /// Where it would go.
    pub target: ArtifactRef,
    /// Its digest.
    pub digest: Digest,
    /// What would happen.
    pub action: ArtifactAction,
}

/// A dry run of a promotion: what would happen, with no side effects.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Plan {
    /// The build.
    pub build: BuildId,
    /// The stage.
    pub stage: String,
    /// `None` if the build may enter the stage; otherwise why not.
    pub blocked: Option<super::Blocked>,
    /// Every entry gate's verdict (gates with side effects that are not safe for plans show as pending).
    pub gates: Vec<GateEvidence>,
    /// What would happen to each artifact.
    pub artifacts: BTreeMap<String, PlannedArtifact>,
    /// Where each config value would come from (never the values).
    pub config: BTreeMap<String, Provenance>,
    /// The object changes the deploy would make.
    pub changes: Vec<Change>,
    /// A unified diff of the rendered bundle against what the stage runs, secrets masked.
    pub diff: String,
    /// The hash the rendered bundle would have.
    pub bundle_hash: Option<String>,
}

impl Plan {
    /// Whether the promotion would go ahead now: eligible and every gate passing.
    pub fn would_proceed(&self) -> bool {
        self.blocked.is_none() && self.gates.iter().all(|g| g.verdict.is_pass())
    }
}

/// Which upstream promotions qualify `build` for `stage`, or why it is not qualified.
pub(crate) fn upstream_passes(
    pipeline: &Pipeline,
    summary: &LedgerSummary,
    stage: &Stage,
    build: &BuildId,
) -> std::result::Result<Vec<PromotionId>, String> {
    let stages = pipeline.stages();
    let passes = |name: &str| summary.passes(name, build).last().map(|record| record.id.clone());
    match &stage.upstream {
        Upstream::Previous => {
            let index = stages.iter().position(|s| s.name == stage.name).expect("stage of this pipeline");
            if index == 0 {
                return Ok(Vec::new());
            }
            let previous = &stages[index - 1].name;
            passes(previous).map(|id| vec![id]).ok_or_else(|| format!("it has not passed stage {previous}"))
        }
        Upstream::AllOf(names) => {
            let missing: Vec<&str> = names.iter().filter(|n| passes(n).is_none()).map(String::as_str).collect();
            if missing.is_empty() {
                Ok(names.iter().filter_map(|n| passes(n)).collect())
            } else {
                Err(format!("it has not passed stage(s) {}", missing.join(", ")))
            }
        }
        Upstream::AnyOf(names) => {
            let found: Vec<PromotionId> = names.iter().filter_map(|n| passes(n)).collect();
            if found.is_empty() { Err(format!("it has passed none of {}", names.join(", "))) } else { Ok(found) }
        }
    }
}

pub(crate) fn status(pipeline: &Pipeline, summary: &LedgerSummary) -> Status {
    let stages = pipeline
        .stages()
        .iter()
        .map(|stage| {
            let current = summary.current(&stage.name);
            let current_build = current.map(|record| record.build.clone());
            let eligible = summary
                .builds()
                .rev()
                .filter(|build| Some(&build.id) != current_build.as_ref())
                .filter(|build| upstream_passes(pipeline, summary, stage, &build.id).is_ok())
                .map(|build| build.id.clone())
                .collect();
            StageStatus {
                stage: stage.name.clone(),
                current_label: current_build.as_ref().and_then(|id| summary.build(id)).map(|build| build.label.clone()),
                current: current_build,
                current_promotion: current.map(|record| record.id.clone()),
                eligible,
                holds: summary.holds(&stage.name).cloned().collect(),
                in_progress: summary.open_promotions(&stage.name).map(|record| record.id.clone()).collect(),
                failed_since_current: failed_after(summary, &stage.name, current.map(|r| r.finished_at)),
            }
        })
        .collect();
    Status { stages }
}

/// The newest promotion into `stage` that failed after touching the deployment, if it finished after the
/// current build became current.
pub(crate) fn failed_after(
    summary: &LedgerSummary,
    stage: &str,
    current_since: Option<Option<chrono::DateTime<chrono::Utc>>>,
) -> Option<PromotionId> {
    use crate::ledger::{FinalState, Step};
    let since = current_since.flatten();
    let last = summary.promotions().iter().rev().find(|p| p.stage == stage && !p.in_progress())?;
    let deployed_and_failed =
        matches!(&last.outcome, Some(FinalState::Failed { step: Step::Deploy | Step::Verify, .. }));
    let after_current = match (since, last.finished_at) {
        (Some(since), Some(finished)) => finished >= since,
        _ => true,
    };
    (deployed_and_failed && after_current).then(|| last.id.clone())
}
