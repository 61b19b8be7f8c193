//! The state derived from the ledger: a fold of its entries, rebuilt on open and kept up to date.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::entry::{
    Approval, FinalState, GENESIS_HASH, GateEvidence, Hold, LedgerEntry, LedgerEvent, PlacedArtifact, PromotionId,
    PromotionKind, Step, StepDetail, StepOutcome,
};
use crate::build::{Build, BuildId};
use crate::config::Provenance;

/// Where a promotion stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PromotionState {
    /// Started and not finished: running now, or interrupted by a crash or an error. Re-running resumes it.
    InProgress {
        /// The last error a step hit, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        last_error: Option<String>,
    },
    /// Finished.
    Finished(FinalState),
}

impl PromotionState {
    /// Whether the promotion finished successfully.
    pub fn succeeded(&self) -> bool {
        matches!(self, PromotionState::Finished(FinalState::Succeeded))
    }

    /// Whether the promotion has not finished.
    pub fn in_progress(&self) -> bool {
        matches!(self, PromotionState::InProgress { .. })
    }
}

/// One step's journal within a promotion record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// The step.
    pub step: Step,
    /// When it last started.
    pub started_at: DateTime<Utc>,
    /// When it last finished, and how.
    pub finished: Option<(DateTime<Utc>, StepOutcome)>,
}

/// A promotion, as folded from its entries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PromotionRecord {
    /// Its id.
    pub id: PromotionId,
    /// The build.
    pub build: BuildId,
    /// The stage.
    pub stage: String,
    /// Promote or rollback.
    pub kind: PromotionKind,
    /// Who started it.
    pub actor: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub state: PromotionState,
    /// Every fencing token it ran under (one per attempt).
    pub fencing_tokens: Vec<u64>,
    /// The journal of steps, in the order they last ran.
    pub steps: Vec<StepRecord>,
    /// Entry and verification gate evidence.
    pub gates: Vec<GateEvidence>,
    /// Artifacts as placed in the stage.
    pub artifacts: BTreeMap<String, PlacedArtifact>,
    /// The config fingerprint used to render.
    pub config_fingerprint: Option<String>,
    /// Where each config value came from (pins for a rollback).
    pub config_provenance: BTreeMap<String, Provenance>,
    /// The hash of the deployed bundle.
    pub bundle_hash: Option<String>,
}

/// A period during which a build was the current one in a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenure {
    /// The build.
    pub build: BuildId,
    /// When it became current (its promotion succeeded).
    pub from: DateTime<Utc>,
    /// When another build replaced it, if one has.
    pub until: Option<DateTime<Utc>>,
}

/// The state derived from a ledger's entries.
#[derive(Debug, Clone, Default)]
pub struct LedgerView {
    head: Option<(u64, String)>,
    builds: HashMap<BuildId, Build>,
    build_order: Vec<BuildId>,
    promotions: Vec<PromotionRecord>,
    by_id: HashMap<PromotionId, usize>,
    attempts: HashMap<(String, BuildId), u32>,
    tenures: HashMap<String, Vec<Tenure>>,
    passed: HashMap<String, Vec<(BuildId, PromotionId)>>,
    approvals: Vec<Approval>,
    holds: BTreeMap<String, Hold>,
    fences: HashMap<String, u64>,
}

impl LedgerView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds `entries` (which must follow the view's head) into the view.
    pub fn apply_all<'a>(&mut self, entries: impl IntoIterator<Item = &'a LedgerEntry>) {
        for entry in entries {
            self.apply(entry);
        }
    }

    /// Folds one entry into the view.
    pub fn apply(&mut self, entry: &LedgerEntry) {
        self.head = Some((entry.seq, entry.hash.clone()));
        if let Some(fence) = &entry.fence {
            let newest = self.fences.entry(fence.stage.clone()).or_default();
            *newest = (*newest).max(fence.token);
        }
        match &entry.event {
            LedgerEvent::BuildRegistered { build } => {
                if !self.builds.contains_key(&build.id) {
                    self.build_order.push(build.id.clone());
                    self.builds.insert(build.id.clone(), build.clone());
                }
            }
            LedgerEvent::PromotionStarted { promotion, build, stage, kind } => {
                *self.attempts.entry((stage.clone(), build.clone())).or_default() += 1;
                self.by_id.insert(promotion.clone(), self.promotions.len());
                self.promotions.push(PromotionRecord {
                    id: promotion.clone(),
                    build: build.clone(),
                    stage: stage.clone(),
                    kind: kind.clone(),
                    actor: entry.actor.clone(),
                    started_at: entry.at,
                    finished_at: None,
                    state: PromotionState::InProgress { last_error: None },
                    fencing_tokens: entry.fence.iter().map(|fence| fence.token).collect(),
                    steps: Vec::new(),
                    gates: Vec::new(),
                    artifacts: BTreeMap::new(),
                    config_fingerprint: None,
                    config_provenance: BTreeMap::new(),
                    bundle_hash: None,
                });
            }
            LedgerEvent::PromotionResumed { promotion } => {
                if let Some(record) = self.record_mut(promotion) {
                    record.fencing_tokens.extend(entry.fence.iter().map(|fence| fence.token));
                }
            }
            LedgerEvent::StepStarted { promotion, step } => {
                if let Some(record) = self.record_mut(promotion) {
                    record.steps.retain(|journal| journal.step != *step);
                    record.steps.push(StepRecord { step: *step, started_at: entry.at, finished: None });
                }
            }
            LedgerEvent::StepFinished { promotion, step, outcome } => {
                if let Some(record) = self.record_mut(promotion) {
                    if let Some(journal) = record.steps.iter_mut().find(|journal| journal.step == *step) {
                        journal.finished = Some((entry.at, outcome.clone()));
                    }
                    match outcome {
                        StepOutcome::Error { message, .. } => {
                            record.state = PromotionState::InProgress { last_error: Some(message.clone()) };
                        }
                        StepOutcome::Ok(detail) => record_detail(record, *step, detail),
                    }
                }
            }
            LedgerEvent::PromotionFinished { promotion, state } => {
                let Some(&index) = self.by_id.get(promotion) else {
                    return;
                };
                let record = &mut self.promotions[index];
                record.finished_at = Some(entry.at);
                record.state = PromotionState::Finished(state.clone());
                if *state == FinalState::Succeeded {
                    let (stage, build) = (record.stage.clone(), record.build.clone());
                    let tenures = self.tenures.entry(stage.clone()).or_default();
                    if let Some(last) = tenures.last_mut()
                        && last.until.is_none()
                    {
                        last.until = Some(entry.at);
                    }
                    tenures.push(Tenure { build: build.clone(), from: entry.at, until: None });
                    self.passed.entry(stage).or_default().push((build, promotion.clone()));
                }
            }
            LedgerEvent::ApprovalRecorded { approval } => self.approvals.push(approval.clone()),
            LedgerEvent::HoldPlaced { hold } => {
                self.holds.insert(hold.id.clone(), hold.clone());
            }
            LedgerEvent::HoldLifted { hold, .. } => {
                self.holds.remove(hold);
            }
        }
    }

    fn record_mut(&mut self, id: &PromotionId) -> Option<&mut PromotionRecord> {
        self.by_id.get(id).map(|&index| &mut self.promotions[index])
    }

    /// The last entry's sequence number (0 for an empty ledger).
    pub fn head_seq(&self) -> u64 {
        self.head.as_ref().map_or(0, |(seq, _)| *seq)
    }

    /// The last entry's hash ([`GENESIS_HASH`] for an empty ledger).
    pub fn head_hash(&self) -> &str {
        self.head.as_ref().map_or(GENESIS_HASH, |(_, hash)| hash)
    }

    /// The newest fencing token seen for a stage.
    pub fn newest_fence(&self, stage: &str) -> Option<u64> {
        self.fences.get(stage).copied()
    }

    /// A registered build.
    pub fn build(&self, id: &BuildId) -> Option<&Build> {
        self.builds.get(id)
    }

    /// Every registered build, oldest first.
    pub fn builds(&self) -> impl DoubleEndedIterator<Item = &Build> {
        self.build_order.iter().map(|id| &self.builds[id])
    }

    /// A promotion record.
    pub fn promotion(&self, id: &PromotionId) -> Option<&PromotionRecord> {
        self.by_id.get(id).map(|&index| &self.promotions[index])
    }

    /// Every promotion record, oldest first.
    pub fn promotions(&self) -> &[PromotionRecord] {
        &self.promotions
    }

    /// How many promotions of `build` into `stage` have been started.
    pub fn attempts(&self, stage: &str, build: &BuildId) -> u32 {
        self.attempts.get(&(stage.to_owned(), build.clone())).copied().unwrap_or(0)
    }

    /// The unfinished promotion of `build` into `stage`, if one exists.
    pub fn open_promotion(&self, stage: &str, build: &BuildId) -> Option<&PromotionRecord> {
        self.promotions.iter().rev().find(|p| p.stage == stage && &p.build == build && p.state.in_progress())
    }

    /// The unfinished promotions into `stage`.
    pub fn open_promotions(&self, stage: &str) -> impl Iterator<Item = &PromotionRecord> {
        self.promotions.iter().filter(move |p| p.stage == stage && p.state.in_progress())
    }

    /// The promotion that made the stage's current build current.
    pub fn current(&self, stage: &str) -> Option<&PromotionRecord> {
        let (_, id) = self.passed.get(stage)?.last()?;
        self.promotion(id)
    }

    /// The current build of a stage.
    pub fn current_build(&self, stage: &str) -> Option<&BuildId> {
        self.current(stage).map(|record| &record.build)
    }

    /// The successful promotions of `build` into `stage`, oldest first.
    pub fn passes<'a>(&'a self, stage: &str, build: &'a BuildId) -> impl Iterator<Item = &'a PromotionRecord> + 'a {
        self.passed
            .get(stage)
            .into_iter()
            .flatten()
            .filter(move |(passed, _)| passed == build)
            .filter_map(|(_, id)| self.promotion(id))
    }

    /// Whether `build` has ever passed `stage`.
    pub fn has_passed(&self, stage: &str, build: &BuildId) -> bool {
        self.passes(stage, build).next().is_some()
    }

    /// The builds that passed `stage`, each once, in the order they first passed.
    pub fn passed_builds(&self, stage: &str) -> Vec<&BuildId> {
        let mut seen = Vec::new();
        for (build, _) in self.passed.get(stage).into_iter().flatten() {
            if !seen.contains(&build) {
                seen.push(build);
            }
        }
        seen
    }

    /// The periods each build was current in `stage`, oldest first.
    pub fn tenures(&self, stage: &str) -> &[Tenure] {
        self.tenures.get(stage).map_or(&[], Vec::as_slice)
    }

    /// Approvals of `build` for `stage`, oldest first.
    pub fn approvals<'a>(&'a self, stage: &'a str, build: &'a BuildId) -> impl Iterator<Item = &'a Approval> + 'a {
        self.approvals.iter().filter(move |a| a.stage == stage && &a.build == build)
    }

    /// Active holds on `stage`.
    pub fn holds<'a>(&'a self, stage: &'a str) -> impl Iterator<Item = &'a Hold> + 'a {
        self.holds.values().filter(move |hold| hold.stage == stage)
    }

    /// Every active hold.
    pub fn all_holds(&self) -> impl Iterator<Item = &Hold> {
        self.holds.values()
    }
}

fn record_detail(record: &mut PromotionRecord, step: Step, detail: &StepDetail) {
    match detail {
        StepDetail::Gates { verdicts } => {
            // A re-run replaces the verdicts of the same phase instead of piling them up.
            let phase_gates: Vec<&str> = verdicts.iter().map(|v| v.gate.as_str()).collect();
            record.gates.retain(|old| !phase_gates.contains(&old.gate.as_str()));
            record.gates.extend(verdicts.iter().cloned());
            let _ = step;
        }
        StepDetail::Artifacts { placed } => record.artifacts = placed.clone(),
        StepDetail::Rendered { config_fingerprint, provenance, bundle_hash, .. } => {
            record.config_fingerprint = Some(config_fingerprint.clone());
            record.config_provenance = provenance.clone();
            record.bundle_hash = Some(bundle_hash.clone());
        }
        StepDetail::Locked { .. } | StepDetail::Eligible { .. } | StepDetail::Deployed { .. } | StepDetail::Done => {}
    }
}
