//! Step 2: whether a build may enter a stage, and whether it already has.

use serde::Serialize;

use super::{Pipeline, Stage, report};
use crate::build::{Build, BuildId};
use crate::error::Error;
use crate::ledger::{HoldScope, LedgerView, PromotionId, PromotionKind, PromotionRecord};

/// Why a build may not enter a stage now. A plan reports it; a promotion fails with the matching error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "why")]
#[non_exhaustive]
pub enum Blocked {
    /// The build has not passed the stages the target draws from.
    NotEligible {
        /// What it lacks.
        reason: String,
    },
    /// A hold on the stage blocks every promotion into it.
    Held {
        /// The hold's reason.
        reason: String,
        /// Who placed it.
        placed_by: String,
    },
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocked::NotEligible { reason } => write!(f, "not eligible: {reason}"),
            Blocked::Held { reason, placed_by } => write!(f, "held: {reason} (placed by {placed_by})"),
        }
    }
}

impl Blocked {
    /// The error a promotion refused for this reason fails with.
    pub(super) fn into_error(self, build: &BuildId, stage: &str) -> Error {
        match self {
            Blocked::NotEligible { reason } => {
                Error::NotEligible { build: build.to_string(), stage: stage.to_owned(), reason }
            }
            Blocked::Held { reason, placed_by } => Error::Held { stage: stage.to_owned(), reason, placed_by },
        }
    }
}

impl Pipeline {
    /// Whether `build` may enter `stage`, with the passes upstream that admit it. A rollback returns to a
    /// build that passed the stage itself, so holds and upstream stages do not apply to it.
    pub(super) fn check_eligibility(
        &self,
        view: &LedgerView,
        stage: &Stage,
        build: &Build,
        kind: &PromotionKind,
    ) -> Result<Vec<PromotionId>, Blocked> {
        if matches!(kind, PromotionKind::Rollback { .. }) {
            return Ok(view.passes(&stage.name, &build.id).last().map(|r| r.id.clone()).into_iter().collect());
        }
        if let Some(hold) = view.holds(&stage.name).find(|hold| hold.scope == HoldScope::All) {
            return Err(Blocked::Held { reason: hold.reason.clone(), placed_by: hold.placed_by.clone() });
        }
        report::upstream_passes(self, view.summary(), stage, &build.id)
            .map_err(|reason| Blocked::NotEligible { reason })
    }
}

/// The record of the promotion that made `build` current in `stage`, if it is current, nothing is open, and
/// no later promotion failed after deploying over it (then the stage may run something else).
pub(super) fn already_current(view: &LedgerView, stage: &str, build: &BuildId) -> Option<PromotionRecord> {
    let current = view.current(stage)?;
    let untouched = report::failed_after(view.summary(), stage, Some(current.finished_at)).is_none();
    (current.build == *build && untouched && view.open_promotion(stage, build).is_none()).then(|| current.clone())
}
