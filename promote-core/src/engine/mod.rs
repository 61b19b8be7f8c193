//! The engine: one [`Pipeline`] handle that registers builds and promotes them through stages.

// Crash-test hooks (feature `failpoints`, the `fail` crate): each names a moment of a promotion at which the
// crash matrix kills the process. Without the feature they compile to nothing.
#[cfg(feature = "failpoints")]
macro_rules! failpoint {
    ($name:literal) => {
        fail::fail_point!($name)
    };
}
#[cfg(not(feature = "failpoints"))]
macro_rules! failpoint {
    ($name:literal) => {};
}

mod eligibility;
mod event;
mod gates;
mod plan;
mod reconcile;
mod report;
mod run;
mod stage;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use tokio::sync::{Mutex, broadcast};
use tracing::{Instrument, info, info_span};

pub use eligibility::Blocked;
pub use event::Event;
pub use reconcile::{ReconcileOutcome, ReconcileReport, StageReconcile};
pub use report::{ArtifactAction, Plan, PlannedArtifact, StageStatus, Status};
pub use stage::{OnFailure, Placement, Stage, Upstream};

use crate::build::{Build, BuildId, BuildRequest, RevisionPolicy};
use crate::clock::{Clock, SystemClock};
use crate::error::{ApprovalRefusal, Error, Resource, Result};
use crate::gate::Identity;
use crate::ledger::{Approval, Hold, HoldScope, Ledger, LedgerEvent, LedgerView, NewEntry, PromotionRecord};
use crate::lock::{EnvironmentLock, MemoryLock};
use crate::store::ArtifactStore;

/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_BUFFER: usize = 1024;

/// A promotion pipeline: ordered stages over one artifact store, ledger and lock.
///
/// Cheap to clone; clones share everything.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use promote_core::{BuildRequest, MemoryArtifactStore, MemoryLedger, Pipeline, Stage};
/// use promote_core::manifest::OCI_MANIFEST;
///
/// let store = MemoryArtifactStore::new();
/// store.push("memory.local/web:3f2c1a9".parse()?, OCI_MANIFEST, br#"{"schemaVersion":2}"#.to_vec())?;
/// let pipeline = Pipeline::builder("shop")
///     .store(Arc::new(store))
///     .ledger(Arc::new(MemoryLedger::new()))
///     .stage(Stage::new("dev"))
///     .stage(Stage::new("prd"))
///     .build()?;
/// let build = pipeline
///     .register(BuildRequest::new("3f2c1a9").artifact("web", "memory.local/web:3f2c1a9".parse()?), "ci")
///     .await?;
/// pipeline.promote(&build.id, "dev", "ci").await?;
/// pipeline.promote(&build.id, "prd", "ci").await?;
/// assert_eq!(pipeline.status().await?.stage("prd").unwrap().current.as_ref(), Some(&build.id));
/// # Ok::<(), promote_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    stages: Vec<Stage>,
    store: Arc<dyn ArtifactStore>,
    ledger: Arc<dyn Ledger>,
    lock: Arc<dyn EnvironmentLock>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<Event>,
    /// Keys config fingerprints and bundle hashes, when set.
    integrity_key: Option<crate::integrity::IntegrityKey>,
    /// The folded ledger, shared with callers as snapshots; refreshed in place when nobody holds one.
    view: Mutex<Arc<LedgerView>>,
}

/// How an approval was given: a comment, and when (for approvals relayed from elsewhere; default: now).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApprovalOptions {
    /// What the approver said.
    pub comment: Option<String>,
    /// When the approval was given.
    pub given_at: Option<DateTime<Utc>>,
}

impl ApprovalOptions {
    /// No comment, given now.
    pub fn new() -> Self {
        Self::default()
    }

    /// With a comment.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// Given at `at` (an approval relayed from elsewhere).
    pub fn given_at(mut self, at: DateTime<Utc>) -> Self {
        self.given_at = Some(at);
        self
    }
}

/// A hold to place: on which stage, on what (automatic promotion, or every promotion), why and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HoldRequest {
    /// The stage.
    pub stage: String,
    /// What it blocks.
    pub scope: HoldScope,
    /// Why.
    pub reason: String,
    /// Who places it.
    pub placed_by: String,
}

impl HoldRequest {
    /// A hold on `stage` blocking `scope`; [`HoldRequest::reason`] and [`HoldRequest::placed_by`] are
    /// required.
    pub fn new(stage: impl Into<String>, scope: HoldScope) -> Self {
        HoldRequest { stage: stage.into(), scope, reason: String::new(), placed_by: String::new() }
    }

    /// Why the stage is held.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Who places the hold.
    pub fn placed_by(mut self, actor: impl Into<String>) -> Self {
        self.placed_by = actor.into();
        self
    }
}

/// Builds a [`Pipeline`].
#[derive(Debug)]
pub struct PipelineBuilder {
    name: String,
    stages: Vec<Stage>,
    store: Option<Arc<dyn ArtifactStore>>,
    ledger: Option<Arc<dyn Ledger>>,
    lock: Option<Arc<dyn EnvironmentLock>>,
    clock: Option<Arc<dyn Clock>>,
    integrity_key: Option<crate::integrity::IntegrityKey>,
}

impl PipelineBuilder {
    /// Adds the next stage, in promotion order.
    pub fn stage(mut self, stage: Stage) -> Self {
        self.stages.push(stage);
        self
    }

    /// Sets the artifact store.
    pub fn store(mut self, store: impl ArtifactStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Sets the ledger.
    pub fn ledger(mut self, ledger: impl Ledger) -> Self {
        self.ledger = Some(Arc::new(ledger));
        self
    }

    /// Sets the per-stage lock (default: an in-process [`MemoryLock`]).
    pub fn lock(mut self, lock: impl EnvironmentLock) -> Self {
        self.lock = Some(Arc::new(lock));
        self
    }

    /// Sets the clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Keys the config fingerprints and bundle hashes the ledger records with `key` (HMAC-SHA256), so that a
    /// reader of the ledger cannot test guesses at secret values against them. Use the ledger's key
    /// ([`IntegrityKey::from_env`](crate::IntegrityKey::from_env)); specs do so when it is set.
    pub fn integrity_key(mut self, key: crate::integrity::IntegrityKey) -> Self {
        self.integrity_key = Some(key);
        self
    }

    /// Checks the pipeline and builds it.
    pub fn build(self) -> Result<Pipeline> {
        let missing = |what: &str| Error::invalid("pipeline", self.name.clone(), format!("no {what} was set"));
        let store = self.store.clone().ok_or_else(|| missing("artifact store"))?;
        let ledger = self.ledger.clone().ok_or_else(|| missing("ledger"))?;
        if self.stages.is_empty() {
            return Err(missing("stage"));
        }
        for (index, stage) in self.stages.iter().enumerate() {
            Stage::validate_name(&stage.name)?;
            let earlier: Vec<&str> = self.stages[..index].iter().map(|s| s.name.as_str()).collect();
            if earlier.contains(&stage.name.as_str()) {
                return Err(Error::invalid("pipeline", &self.name, format!("stage {} appears twice", stage.name)));
            }
            if let Upstream::AllOf(names) | Upstream::AnyOf(names) = &stage.upstream {
                for name in names {
                    if !earlier.contains(&name.as_str()) {
                        return Err(Error::invalid(
                            "pipeline",
                            &self.name,
                            format!("stage {} draws from {name}, which is not an earlier stage", stage.name),
                        ));
                    }
                }
            }
        }
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Pipeline {
            inner: Arc::new(Inner {
                name: self.name,
                stages: self.stages,
                store,
                ledger,
                lock: self.lock.unwrap_or_else(|| Arc::new(MemoryLock::new())),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                events,
                integrity_key: self.integrity_key,
                view: Mutex::new(Arc::new(LedgerView::new())),
            }),
        })
    }
}

impl Pipeline {
    /// Starts building a pipeline called `name`.
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder {
            name: name.into(),
            stages: Vec::new(),
            store: None,
            ledger: None,
            lock: None,
            clock: None,
            integrity_key: None,
        }
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The stages, in order.
    pub fn stages(&self) -> &[Stage] {
        &self.inner.stages
    }

    /// The stage called `name`, or [`Error::NotFound`].
    pub fn stage(&self, name: &str) -> Result<&Stage> {
        self.inner.stages.iter().find(|stage| stage.name == name).ok_or_else(|| {
            Error::not_found(
                Resource::Stage,
                format!("{name} (pipeline {} has: {})", self.inner.name, self.stage_names()),
            )
        })
    }

    fn stage_names(&self) -> String {
        self.inner.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The stages a stage draws from: its `all_of`/`any_of` list, or the stage before it.
    pub(crate) fn upstream_of(&self, stage: &Stage) -> Vec<String> {
        match &stage.upstream {
            Upstream::AllOf(names) | Upstream::AnyOf(names) => names.clone(),
            Upstream::Previous => {
                let index = self.inner.stages.iter().position(|s| s.name == stage.name).unwrap_or(0);
                self.inner.stages[..index].last().map(|s| vec![s.name.clone()]).unwrap_or_default()
            }
        }
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.inner.ledger
    }

    /// The artifact store.
    pub fn store(&self) -> &Arc<dyn ArtifactStore> {
        &self.inner.store
    }

    /// Subscribes to the engine's events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn emit(&self, event: Event) {
        // No subscriber is fine: events are for whoever listens.
        let _ = self.inner.events.send(event);
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// A snapshot of the ledger's state, brought up to date.
    ///
    /// Let go of a snapshot when done with it: while one is held, the next refresh (by this call or by a
    /// promotion) copies the whole view instead of updating it in place.
    pub async fn view(&self) -> Result<Arc<LedgerView>> {
        let mut cached = self.inner.view.lock().await;
        let entries = self.inner.ledger.read_since(cached.head_seq()).await?;
        if !entries.is_empty() {
            // Copies the view only if a caller still holds an older snapshot.
            Arc::make_mut(&mut cached).apply_all(entries);
        }
        Ok(cached.clone())
    }

    async fn append(&self, actor: &str, fence: Option<crate::ledger::Fence>, events: Vec<LedgerEvent>) -> Result<()> {
        let at = self.now();
        let entries = events
            .into_iter()
            .map(|event| NewEntry { at, actor: actor.to_owned(), fence: fence.clone(), event })
            .collect();
        failpoint!("promote::before_append");
        let written = self.inner.ledger.append(entries).await?;
        failpoint!("promote::after_append");
        if let (Some(first), Some(last)) = (written.first(), written.last()) {
            tracing::trace!(first_seq = first.seq, last_seq = last.seq, fence = ?fence, "ledger entries appended");
        }
        Ok(())
    }

    /// Registers a build: resolves each artifact's reference once to its digest and records the build.
    ///
    /// Registering the same digests again returns the same build and records nothing new. A tag that
    /// does not exist is [`Error::NotFound`]; an image that declares another revision than the commit is
    /// [`Error::RevisionMismatch`] unless the request's policy is [`RevisionPolicy::Warn`].
    pub async fn register(&self, request: BuildRequest, actor: &str) -> Result<Build> {
        let span = info_span!("register", pipeline = %self.inner.name, commit = %request.commit);
        async {
            BuildRequest::check_commit(&request.commit)?;
            if request.artifacts.is_empty() {
                return Err(Error::invalid("build", &request.commit, "a build needs at least one artifact"));
            }
            let resolutions: Vec<_> =
                request.artifacts.iter().map(|(name, reference)| self.resolve_named(name, reference)).collect();
            let resolved = try_join_all(resolutions).await?;
            let mut artifacts = std::collections::BTreeMap::new();
            for (name, artifact) in resolved {
                if let Some(revision) = artifact.revision()
                    && !same_commit(revision, &request.commit)
                {
                    match request.revision_policy {
                        RevisionPolicy::Enforce => {
                            return Err(Error::RevisionMismatch {
                                artifact: format!("{name} ({})", artifact.reference),
                                expected: request.commit.clone(),
                                found: revision.to_owned(),
                            });
                        }
                        RevisionPolicy::Warn => tracing::warn!(
                            artifact = %name, revision, commit = %request.commit,
                            "image declares another revision than the build's commit"
                        ),
                    }
                }
                artifacts.insert(name, artifact);
            }
            let id = BuildId::of(&artifacts);
            let view = self.view().await?;
            if let Some(existing) = view.build(&id) {
                if existing.commit != request.commit {
                    return Err(Error::AlreadyExists {
                        resource: Resource::Build,
                        name: id.to_string(),
                        detail: format!("registered for commit {}, not {}", existing.commit, request.commit),
                    });
                }
                return Ok(existing.clone());
            }
            let build = Build {
                id: id.clone(),
                commit: request.commit,
                version: request.version,
                artifacts,
                author: request.author,
                metadata: request.metadata,
                registered_at: self.now(),
            };
            self.append(actor, None, vec![LedgerEvent::BuildRegistered { build: build.clone() }]).await?;
            info!(build = %id, "build registered");
            self.emit(Event::BuildRegistered { build: id, commit: build.commit.clone() });
            Ok(build)
        }
        .instrument(span)
        .await
    }

    async fn resolve_named(
        &self,
        name: &str,
        reference: &crate::reference::ArtifactRef,
    ) -> Result<(String, crate::store::Artifact)> {
        let resolved = self.inner.store.resolve(reference).await;
        let artifact = resolved
            .map_err(|error| error.in_context(crate::error::ErrorContext::default().with_artifact(name, reference)))?;
        Ok((name.to_owned(), artifact))
    }

    /// Records an approval of `build` for `stage` by `approver`.
    ///
    /// The stage's approval gates decide: an identity not on the allow-list, a second approval by the same
    /// identity, a self-approval or an expired approval is [`Error::ApprovalRefused`], and nothing is
    /// recorded. The options carry a comment and, for approvals relayed from elsewhere, when it was given.
    pub async fn approve(
        &self,
        build: &BuildId,
        stage: &str,
        approver: &Identity,
        options: ApprovalOptions,
    ) -> Result<Approval> {
        let ApprovalOptions { comment, given_at: at } = options;
        let stage_def = self.stage(stage)?;
        let view = self.view().await?;
        let build_def = view.build(build).ok_or_else(|| Error::not_found(Resource::Build, build.to_string()))?;
        let refuse = |reason| Error::ApprovalRefused {
            build: build.to_string(),
            stage: stage.to_owned(),
            approver: approver.name.clone(),
            reason,
        };
        let policies: Vec<_> = stage_def.entry_gates.iter().filter_map(|g| g.approval_policy()).collect();
        if policies.is_empty() {
            return Err(refuse(ApprovalRefusal::NoApprovalGate));
        }
        let (now, at) = (self.now(), at.unwrap_or_else(|| self.now()));
        let mut first_refusal = None;
        let mut accepted = false;
        for policy in policies {
            match policy.check(&view, build_def, stage, approver, at, now) {
                Ok(()) => accepted = true,
                Err(reason) => {
                    first_refusal.get_or_insert(reason);
                }
            }
        }
        if !accepted {
            return Err(refuse(first_refusal.expect("at least one policy refused")));
        }
        let approval =
            Approval { build: build.clone(), stage: stage.to_owned(), approver: approver.name.clone(), at, comment };
        self.append(&approver.name, None, vec![LedgerEvent::ApprovalRecorded { approval: approval.clone() }]).await?;
        info!(build = %build, stage, approver = %approver.name, "approval recorded");
        self.emit(Event::Approved { approval: approval.clone() });
        Ok(approval)
    }

    /// Places a hold on a stage. The request must say why and who places it.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use promote_core::engine::HoldRequest;
    /// use promote_core::ledger::HoldScope;
    /// # let pipeline = promote_core::Pipeline::builder("shop").store(promote_core::MemoryArtifactStore::new())
    /// #     .ledger(promote_core::MemoryLedger::new()).stage(promote_core::Stage::new("prd")).build()?;
    /// let hold = pipeline.hold(HoldRequest::new("prd", HoldScope::All).reason("incident 42").placed_by("oncall")).await?;
    /// assert_eq!(hold.placed_by, "oncall");
    /// # Ok::<(), promote_core::Error>(()) }).unwrap();
    /// ```
    pub async fn hold(&self, request: HoldRequest) -> Result<Hold> {
        let HoldRequest { stage, scope, reason, placed_by } = request;
        self.stage(&stage)?;
        for (what, value) in [("hold reason", &reason), ("hold placed_by", &placed_by)] {
            if value.trim().is_empty() {
                return Err(Error::invalid(what, value.as_str(), "a hold must say why and who places it"));
            }
        }
        let view = self.view().await?;
        let hold =
            Hold { id: format!("hold-{}", view.head_seq() + 1), stage, scope, reason, placed_by, at: self.now() };
        self.append(&hold.placed_by, None, vec![LedgerEvent::HoldPlaced { hold: hold.clone() }]).await?;
        self.emit(Event::HoldPlaced { hold: hold.clone() });
        Ok(hold)
    }

    /// Lifts a hold by id.
    pub async fn lift_hold(&self, hold: &str, actor: &str) -> Result<()> {
        let view = self.view().await?;
        let existing =
            view.all_holds().find(|h| h.id == hold).ok_or_else(|| Error::not_found(Resource::Hold, hold))?.clone();
        self.append(
            actor,
            None,
            vec![LedgerEvent::HoldLifted { hold: hold.to_owned(), stage: existing.stage.clone() }],
        )
        .await?;
        self.emit(Event::HoldLifted { hold: hold.to_owned(), stage: existing.stage });
        Ok(())
    }

    /// Every promotion record, oldest first, optionally only for one stage.
    pub async fn history(&self, stage: Option<&str>) -> Result<Vec<PromotionRecord>> {
        if let Some(stage) = stage {
            self.stage(stage)?;
        }
        let view = self.view().await?;
        Ok(view.promotions().iter().filter(|p| stage.is_none_or(|s| p.stage == s)).cloned().collect())
    }

    /// For each stage: the current build, the builds eligible to enter it, holds and open promotions.
    ///
    /// A ledger that keeps a [`LedgerSummary`](crate::ledger::LedgerSummary) (the file ledger does) answers
    /// this without the whole history being read; otherwise it comes from the folded view.
    pub async fn status(&self) -> Result<Status> {
        if let Some(summary) = self.inner.ledger.summary().await? {
            return Ok(report::status(self, &summary));
        }
        let view = self.view().await?;
        Ok(report::status(self, view.summary()))
    }
}

/// Whether an image's revision annotation names the build's commit (either may be abbreviated).
fn same_commit(revision: &str, commit: &str) -> bool {
    let (short, long) = if revision.len() <= commit.len() { (revision, commit) } else { (commit, revision) };
    short.len() >= 7 && long.starts_with(short) || revision == commit
}
