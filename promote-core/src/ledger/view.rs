//! The state derived from the ledger: a fold of its entries, rebuilt on open and kept up to date.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::entry::{
    Approval, AttestationRef, FinalState, GateEvidence, Hold, LedgerEntry, LedgerEvent, PlacedArtifact, PromotionId,
    PromotionKind, Step, StepDetail, StepOutcome,
};
use super::summary::LedgerSummary;
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
    /// Attestations the stage's attestors published after the success.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationRef>,
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
///
/// Where things stand (builds, promotions by stage and build, passes, holds, fences) is folded by the
/// view's [`LedgerSummary`], whose positions are shared with the full records here; lookups by stage and
/// build go through its indexes, so that `status` over thousands of builds does not scan every promotion
/// once per build.
#[derive(Debug, Clone, Default)]
pub struct LedgerView {
    summary: LedgerSummary,
    builds: HashMap<BuildId, Build>,
    /// Full records, at the same positions as the summary's promotions.
    promotions: Vec<PromotionRecord>,
    tenures: HashMap<String, Vec<Tenure>>,
    approvals: HashMap<String, HashMap<BuildId, Vec<Approval>>>,
}

impl LedgerView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds `entries` (which must follow the view's head) into the view.
    pub fn apply_all(&mut self, entries: impl IntoIterator<Item = LedgerEntry>) {
        for entry in entries {
            self.apply(entry);
        }
    }

    /// Folds one entry into the view. It takes the entry by value: a view of a large ledger is built
    /// from freshly read entries, and moving their parts in is cheaper than copying them.
    pub fn apply(&mut self, entry: LedgerEntry) {
        self.summary.apply(&entry);
        let LedgerEntry { at, actor, fence, event, .. } = entry;
        match event {
            LedgerEvent::BuildRegistered { build } => {
                self.builds.entry(build.id.clone()).or_insert(build);
            }
            LedgerEvent::PromotionStarted { promotion, build, stage, kind } => {
                self.promotions.push(PromotionRecord {
                    id: promotion,
                    build,
                    stage,
                    kind,
                    actor,
                    started_at: at,
                    finished_at: None,
                    state: PromotionState::InProgress { last_error: None },
                    fencing_tokens: fence.iter().map(|fence| fence.token).collect(),
                    steps: Vec::new(),
                    gates: Vec::new(),
                    artifacts: BTreeMap::new(),
                    config_fingerprint: None,
                    config_provenance: BTreeMap::new(),
                    bundle_hash: None,
                    attestations: Vec::new(),
                });
            }
            LedgerEvent::PromotionResumed { promotion } => {
                if let Some(record) = self.record_mut(&promotion) {
                    record.fencing_tokens.extend(fence.iter().map(|fence| fence.token));
                }
            }
            LedgerEvent::StepStarted { promotion, step } => {
                if let Some(record) = self.record_mut(&promotion) {
                    record.steps.retain(|journal| journal.step != step);
                    record.steps.push(StepRecord { step, started_at: at, finished: None });
                }
            }
            LedgerEvent::StepFinished { promotion, step, outcome } => {
                if let Some(record) = self.record_mut(&promotion) {
                    match &outcome {
                        StepOutcome::Error { message, .. } => {
                            record.state = PromotionState::InProgress { last_error: Some(message.clone()) };
                        }
                        StepOutcome::Ok(detail) => record_detail(record, detail),
                    }
                    if let Some(journal) = record.steps.iter_mut().find(|journal| journal.step == step) {
                        journal.finished = Some((at, outcome));
                    }
                }
            }
            LedgerEvent::PromotionFinished { promotion, state } => {
                let Some(record) = self.record_mut(&promotion) else {
                    return;
                };
                record.finished_at = Some(at);
                let succeeded = state == FinalState::Succeeded;
                record.state = PromotionState::Finished(state);
                if succeeded {
                    let (stage, build) = (record.stage.clone(), record.build.clone());
                    let tenures = self.tenures.entry(stage).or_default();
                    if let Some(last) = tenures.last_mut()
                        && last.until.is_none()
                    {
                        last.until = Some(at);
                    }
                    tenures.push(Tenure { build, from: at, until: None });
                }
            }
            LedgerEvent::ApprovalRecorded { approval } => self
                .approvals
                .entry(approval.stage.clone())
                .or_default()
                .entry(approval.build.clone())
                .or_default()
                .push(approval),
            LedgerEvent::Attested { promotion, attestations } => {
                if let Some(record) = self.record_mut(&promotion) {
                    record.attestations.extend(attestations);
                }
            }
            // Holds live in the summary.
            LedgerEvent::HoldPlaced { .. } | LedgerEvent::HoldLifted { .. } => {}
        }
    }

    fn record_mut(&mut self, id: &PromotionId) -> Option<&mut PromotionRecord> {
        self.summary.position(id).map(|index| &mut self.promotions[index])
    }

    /// Where things stand, without the full records: what `status` reads.
    pub fn summary(&self) -> &LedgerSummary {
        &self.summary
    }

    /// The last entry's sequence number (0 for an empty ledger).
    pub fn head_seq(&self) -> u64 {
        self.summary.head_seq()
    }

    /// The last entry's hash ([`GENESIS_HASH`](super::GENESIS_HASH) for an empty ledger).
    pub fn head_hash(&self) -> &str {
        self.summary.head_hash()
    }

    /// The newest fencing token seen for a stage.
    pub fn newest_fence(&self, stage: &str) -> Option<u64> {
        self.summary.newest_fence(stage)
    }

    /// A registered build.
    pub fn build(&self, id: &BuildId) -> Option<&Build> {
        self.builds.get(id)
    }

    /// Every registered build, oldest first.
    pub fn builds(&self) -> impl DoubleEndedIterator<Item = &Build> {
        self.summary.builds().map(|build| &self.builds[&build.id])
    }

    /// A promotion record.
    pub fn promotion(&self, id: &PromotionId) -> Option<&PromotionRecord> {
        self.summary.position(id).map(|index| &self.promotions[index])
    }

    /// Every promotion record, oldest first.
    pub fn promotions(&self) -> &[PromotionRecord] {
        &self.promotions
    }

    /// Every promotion of `build` into `stage`, oldest first.
    pub fn promotions_of<'a>(
        &'a self,
        stage: &str,
        build: &BuildId,
    ) -> impl DoubleEndedIterator<Item = &'a PromotionRecord> + 'a {
        self.summary.started_indexes(stage, build).map(|index| &self.promotions[index])
    }

    /// How many promotions of `build` into `stage` have been started.
    pub fn attempts(&self, stage: &str, build: &BuildId) -> u32 {
        self.promotions_of(stage, build).count() as u32
    }

    /// The unfinished promotion of `build` into `stage`, if one exists.
    pub fn open_promotion(&self, stage: &str, build: &BuildId) -> Option<&PromotionRecord> {
        self.promotions_of(stage, build).rev().find(|p| p.state.in_progress())
    }

    /// The unfinished promotions into `stage`, oldest first.
    pub fn open_promotions(&self, stage: &str) -> impl Iterator<Item = &PromotionRecord> {
        self.summary.open_indexes(stage).map(|index| &self.promotions[index])
    }

    /// The promotion that made the stage's current build current.
    pub fn current(&self, stage: &str) -> Option<&PromotionRecord> {
        self.summary.current_index(stage).map(|index| &self.promotions[index])
    }

    /// The current build of a stage.
    pub fn current_build(&self, stage: &str) -> Option<&BuildId> {
        self.current(stage).map(|record| &record.build)
    }

    /// The successful promotions of `build` into `stage`, in the order they finished.
    pub fn passes<'a>(
        &'a self,
        stage: &str,
        build: &BuildId,
    ) -> impl DoubleEndedIterator<Item = &'a PromotionRecord> + 'a {
        self.summary.pass_indexes(stage, build).map(|index| &self.promotions[index])
    }

    /// Whether `build` has ever passed `stage`.
    pub fn has_passed(&self, stage: &str, build: &BuildId) -> bool {
        self.passes(stage, build).next().is_some()
    }

    /// The builds that passed `stage`, each once, in the order they first passed.
    pub fn passed_builds(&self, stage: &str) -> Vec<&BuildId> {
        let mut seen = std::collections::HashSet::new();
        let passed = self.summary.passed_indexes(stage);
        passed.map(|index| &self.promotions[index].build).filter(|build| seen.insert(*build)).collect()
    }

    /// The periods each build was current in `stage`, oldest first.
    pub fn tenures(&self, stage: &str) -> &[Tenure] {
        self.tenures.get(stage).map_or(&[], Vec::as_slice)
    }

    /// Approvals of `build` for `stage`, oldest first.
    pub fn approvals<'a>(&'a self, stage: &str, build: &BuildId) -> impl Iterator<Item = &'a Approval> + 'a {
        self.approvals.get(stage).and_then(|builds| builds.get(build)).into_iter().flatten()
    }

    /// Active holds on `stage`.
    pub fn holds<'a>(&'a self, stage: &'a str) -> impl Iterator<Item = &'a Hold> + 'a {
        self.summary.holds(stage)
    }

    /// Every active hold.
    pub fn all_holds(&self) -> impl Iterator<Item = &Hold> {
        self.summary.all_holds()
    }
}

fn record_detail(record: &mut PromotionRecord, detail: &StepDetail) {
    match detail {
        StepDetail::Gates { verdicts } => {
            // A re-run replaces the verdicts of the same phase instead of piling them up.
            let phase_gates: Vec<&str> = verdicts.iter().map(|v| v.gate.as_str()).collect();
            record.gates.retain(|old| !phase_gates.contains(&old.gate.as_str()));
            record.gates.extend(verdicts.iter().cloned());
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
