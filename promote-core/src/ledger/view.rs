//! The state derived from the ledger: a fold of its entries, rebuilt on open and kept up to date.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
///
/// Lookups by stage and build go through indexes (positions in `promotions`), so that `status` over
/// thousands of builds does not scan every promotion once per build.
#[derive(Debug, Clone, Default)]
pub struct LedgerView {
    head: Option<(u64, String)>,
    builds: HashMap<BuildId, Build>,
    build_order: Vec<BuildId>,
    promotions: Vec<PromotionRecord>,
    by_id: HashMap<PromotionId, usize>,
    /// Every promotion per stage and build, in start order.
    by_stage_build: HashMap<String, HashMap<BuildId, Vec<usize>>>,
    /// Unfinished promotions per stage.
    open: HashMap<String, BTreeSet<usize>>,
    tenures: HashMap<String, Vec<Tenure>>,
    /// Successful promotions per stage, in the order they finished; the last one is current.
    passed: HashMap<String, Vec<usize>>,
    /// Successful promotions per stage and build, in the order they finished.
    passed_by_build: HashMap<String, HashMap<BuildId, Vec<usize>>>,
    approvals: HashMap<String, HashMap<BuildId, Vec<Approval>>>,
    holds: BTreeMap<String, Hold>,
    fences: HashMap<String, u64>,
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
        let LedgerEntry { seq, at, actor, fence, event, hash, .. } = entry;
        self.head = Some((seq, hash));
        if let Some(fence) = &fence {
            let newest = self.fences.entry(fence.stage.clone()).or_default();
            *newest = (*newest).max(fence.token);
        }
        match event {
            LedgerEvent::BuildRegistered { build } => {
                if !self.builds.contains_key(&build.id) {
                    self.build_order.push(build.id.clone());
                    self.builds.insert(build.id.clone(), build);
                }
            }
            LedgerEvent::PromotionStarted { promotion, build, stage, kind } => {
                let index = self.promotions.len();
                self.by_id.insert(promotion.clone(), index);
                self.by_stage_build.entry(stage.clone()).or_default().entry(build.clone()).or_default().push(index);
                self.open.entry(stage.clone()).or_default().insert(index);
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
                let Some(&index) = self.by_id.get(&promotion) else {
                    return;
                };
                let record = &mut self.promotions[index];
                record.finished_at = Some(at);
                let succeeded = state == FinalState::Succeeded;
                record.state = PromotionState::Finished(state);
                if let Some(open) = self.open.get_mut(&record.stage) {
                    open.remove(&index);
                }
                if succeeded {
                    let (stage, build) = (record.stage.clone(), record.build.clone());
                    let tenures = self.tenures.entry(stage.clone()).or_default();
                    if let Some(last) = tenures.last_mut()
                        && last.until.is_none()
                    {
                        last.until = Some(at);
                    }
                    tenures.push(Tenure { build: build.clone(), from: at, until: None });
                    self.passed_by_build.entry(stage.clone()).or_default().entry(build).or_default().push(index);
                    self.passed.entry(stage).or_default().push(index);
                }
            }
            LedgerEvent::ApprovalRecorded { approval } => self
                .approvals
                .entry(approval.stage.clone())
                .or_default()
                .entry(approval.build.clone())
                .or_default()
                .push(approval),
            LedgerEvent::HoldPlaced { hold } => {
                self.holds.insert(hold.id.clone(), hold);
            }
            LedgerEvent::HoldLifted { hold, .. } => {
                self.holds.remove(&hold);
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

    /// Every promotion of `build` into `stage`, oldest first.
    pub fn promotions_of<'a>(
        &'a self,
        stage: &str,
        build: &BuildId,
    ) -> impl DoubleEndedIterator<Item = &'a PromotionRecord> + 'a {
        let indexes = self.by_stage_build.get(stage).and_then(|builds| builds.get(build));
        indexes.into_iter().flatten().map(|&index| &self.promotions[index])
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
        self.open.get(stage).into_iter().flatten().map(|&index| &self.promotions[index])
    }

    /// The promotion that made the stage's current build current.
    pub fn current(&self, stage: &str) -> Option<&PromotionRecord> {
        self.passed.get(stage)?.last().map(|&index| &self.promotions[index])
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
        let indexes = self.passed_by_build.get(stage).and_then(|builds| builds.get(build));
        indexes.into_iter().flatten().map(|&index| &self.promotions[index])
    }

    /// Whether `build` has ever passed `stage`.
    pub fn has_passed(&self, stage: &str, build: &BuildId) -> bool {
        self.passes(stage, build).next().is_some()
    }

    /// The builds that passed `stage`, each once, in the order they first passed.
    pub fn passed_builds(&self, stage: &str) -> Vec<&BuildId> {
        let mut seen = std::collections::HashSet::new();
        let passed = self.passed.get(stage).into_iter().flatten();
        passed.map(|&index| &self.promotions[index].build).filter(|build| seen.insert(*build)).collect()
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
        self.holds.values().filter(move |hold| hold.stage == stage)
    }

    /// Every active hold.
    pub fn all_holds(&self) -> impl Iterator<Item = &Hold> {
        self.holds.values()
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
