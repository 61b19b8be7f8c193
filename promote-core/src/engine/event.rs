//! Typed events the engine emits while it works, so a CLI can draw progress.

use serde::Serialize;

use crate::build::BuildId;
use crate::digest::Digest;
use crate::ledger::{Approval, FinalState, GateEvidence, Hold, PromotionId, PromotionKind, Step};
use crate::reference::ArtifactRef;

/// Something the engine did. Events never carry secret values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum Event {
    /// A build was registered.
    BuildRegistered {
        /// The build.
        build: BuildId,
        /// Its commit.
        commit: String,
    },
    /// A promotion started (or resumed).
    StageStarted {
        /// The promotion.
        promotion: PromotionId,
        /// The build.
        build: BuildId,
        /// The stage.
        stage: String,
        /// Promote or rollback.
        kind: PromotionKind,
        /// Whether an interrupted promotion was resumed.
        resumed: bool,
    },
    /// A step started.
    StepStarted {
        /// The promotion.
        promotion: PromotionId,
        /// The step.
        step: Step,
    },
    /// A gate gave its verdict.
    GateEvaluated {
        /// The promotion (or the planned one).
        promotion: PromotionId,
        /// The verdict and evidence.
        evidence: GateEvidence,
    },
    /// An artifact was made available for the stage and verified.
    ArtifactPromoted {
        /// The promotion.
        promotion: PromotionId,
        /// The artifact's name.
        name: String,
        /// Where it is now.
        target: ArtifactRef,
        /// Its digest.
        digest: Digest,
        /// Whether it was already there.
        already_present: bool,
    },
    /// The bundle was applied and became healthy.
    Deployed {
        /// The promotion.
        promotion: PromotionId,
        /// The bundle's hash.
        bundle_hash: String,
    },
    /// The verification gates passed.
    Verified {
        /// The promotion.
        promotion: PromotionId,
    },
    /// A step hit an error; the promotion stays open for a re-run.
    StepFailed {
        /// The promotion.
        promotion: PromotionId,
        /// The step.
        step: Step,
        /// The error.
        error: String,
    },
    /// A promotion finished.
    Finished {
        /// The promotion.
        promotion: PromotionId,
        /// How.
        state: FinalState,
    },
    /// A stage was rolled back.
    RolledBack {
        /// The stage.
        stage: String,
        /// The build now current.
        to: BuildId,
        /// The build it replaced.
        from: Option<BuildId>,
    },
    /// An approval was recorded.
    Approved {
        /// The approval.
        approval: Approval,
    },
    /// A hold was placed.
    HoldPlaced {
        /// The hold.
        hold: Hold,
    },
    /// A backend reported progress during a step (bytes copied, the object a rollout waits on).
    Progress {
        /// The promotion.
        promotion: PromotionId,
        /// The step.
        step: Step,
        /// The report.
        update: crate::progress::ProgressUpdate,
    },
    /// A hold was lifted.
    HoldLifted {
        /// Its id.
        hold: String,
        /// Its stage.
        stage: String,
    },
}
