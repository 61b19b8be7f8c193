//! One promotion, step by step, each step journalled before and after.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tracing::{Instrument, debug, info, info_span, warn};

use super::eligibility::already_current;
use super::gates::{Candidate, Verdicts};
use super::{Event, OnFailure, Pipeline, Stage};
use crate::build::{Build, BuildId};
use crate::config::{Provenance, load_layered};
use crate::deploy::{ApplyMode, Bundle, DeployContext};
use crate::error::{Error, ErrorContext, Resource, Result};
use crate::gate::GatePhase;
use crate::ledger::{
    Fence, FinalState, GateEvidence, Hold, HoldScope, LedgerEvent, LedgerView, PlacedArtifact, PromotionId,
    PromotionKind, PromotionRecord, Step, StepDetail, StepOutcome, Verdict,
};
use crate::lock::Lease;
use crate::store::ArtifactStoreExt;

/// How many artifacts are placed at once.
const ARTIFACT_CONCURRENCY: usize = 16;

/// The identity of one running promotion.
struct Run<'a> {
    stage: &'a Stage,
    /// The stage's lock: checked before every side effect.
    lease: &'a Lease,
    build: Build,
    id: PromotionId,
    kind: PromotionKind,
    actor: String,
    fence: Fence,
}

impl Run<'_> {
    /// What the gates judge.
    fn candidate(&self) -> Candidate<'_> {
        Candidate { stage: self.stage, build: &self.build, kind: &self.kind, actor: &self.actor }
    }
}

/// What the deploy step saw.
enum Health {
    Healthy,
    Unhealthy(String),
}

/// How a promotion that ran ended as failed, already recorded: the caller's error says which.
enum Failure {
    /// An entry or verification gate failed.
    Gate { step: Step, gate: String, reason: String },
    /// The deploy did not become healthy.
    Deploy { reason: String },
}

impl Failure {
    fn step(&self) -> Step {
        match self {
            Failure::Gate { step, .. } => *step,
            Failure::Deploy { .. } => Step::Deploy,
        }
    }

    fn into_error(self, build: &BuildId, stage: &str) -> Error {
        match self {
            Failure::Gate { gate, reason, .. } => {
                Error::GateFailed { build: build.to_string(), stage: stage.to_owned(), gate, reason }
            }
            Failure::Deploy { reason } => Error::DeployFailed { stage: stage.to_owned(), reason },
        }
    }
}

impl Pipeline {
    /// Promotes `build` into `stage`: the eight steps of DESIGN.md, each journalled.
    ///
    /// Re-running a promotion that already succeeded (the build is current in the stage) returns its
    /// record and changes nothing. Re-running one that was interrupted (a crash, a backend error) resumes
    /// the same promotion. Refusals (unknown stage or build, not eligible, held, locked) record nothing.
    /// Pending gates stop the promotion with [`Error::GatePending`]; a failing gate, deploy or verification
    /// ends it as failed.
    pub async fn promote(&self, build: &BuildId, stage: &str, actor: &str) -> Result<PromotionRecord> {
        self.run(build, stage, PromotionKind::Promote, actor).await
    }

    /// Rolls `stage` back to `to` (default: the build it ran before the current one), which must have
    /// passed the stage before. Entry gates and holds do not apply to a rollback. On success, a hold on
    /// automatic promotion is placed on the stage so that automation does not undo it. The arguments come
    /// in the order of [`Pipeline::promote`]'s: build, stage, actor.
    pub async fn rollback(&self, to: Option<&BuildId>, stage: &str, actor: &str) -> Result<PromotionRecord> {
        Box::pin(self.rollback_inner(stage, to, actor)).await
    }

    async fn rollback_inner(&self, stage: &str, to: Option<&BuildId>, actor: &str) -> Result<PromotionRecord> {
        self.stage(stage)?;
        let view = self.view().await?;
        let current = view.current_build(stage).cloned();
        let target = match to {
            Some(build) => build.clone(),
            None => view
                .tenures(stage)
                .iter()
                .rev()
                .map(|tenure| &tenure.build)
                .find(|build| Some(*build) != current.as_ref())
                .cloned()
                .ok_or_else(|| Error::NotEligible {
                    build: current.as_ref().map_or("none".into(), ToString::to_string),
                    stage: stage.to_owned(),
                    reason: "the stage has no earlier build to roll back to".into(),
                })?,
        };
        if !view.has_passed(stage, &target) {
            return Err(Error::NotEligible {
                build: target.to_string(),
                stage: stage.to_owned(),
                reason: "it never passed this stage, so the stage cannot roll back to it".into(),
            });
        }
        self.run(&target, stage, PromotionKind::Rollback { replacing: current }, actor).await
    }

    async fn run(
        &self,
        build_id: &BuildId,
        stage_name: &str,
        kind: PromotionKind,
        actor: &str,
    ) -> Result<PromotionRecord> {
        let stage = self.stage(stage_name)?;
        let rollback = matches!(kind, PromotionKind::Rollback { .. });
        let span = info_span!("promotion", stage = stage_name, build = %build_id, rollback);
        async move {
            let view = self.view().await?;
            let build =
                view.build(build_id).cloned().ok_or_else(|| Error::not_found(Resource::Build, build_id.to_string()))?;
            if let Some(done) = already_current(&view, stage_name, build_id)
                && !unattested(stage, &done)
            {
                return Ok(done);
            }
            // A held snapshot makes the next refresh copy the whole view: let go of each when done with it.
            drop(view);

            // Step 1: the lock. Everything after this happens under its fencing token.
            let lease = self.inner.lock.acquire(stage_name, actor, stage.lock_wait).await?;
            let fence = Fence { stage: stage_name.to_owned(), token: lease.token() };
            debug!(stage = stage_name, token = fence.token, "lock acquired");
            failpoint!("promote::after_lock");
            let view = self.view().await?;
            if let Some(done) = already_current(&view, stage_name, build_id) {
                drop(view);
                // Succeeded before, but an attestor did not finish: it is asked again.
                self.attest(stage, &done, &lease, &fence, actor).await?;
                return self.record(&done.id).await;
            }

            // Step 2: eligibility. A refusal records nothing: nothing happened.
            let upstream =
                self.check_eligibility(&view, stage, &build, &kind).map_err(|b| b.into_error(build_id, stage_name))?;

            let open = view.open_promotion(stage_name, build_id).map(|record| record.id.clone());
            let resumed = open.is_some();
            let id =
                open.unwrap_or_else(|| PromotionId::new(stage_name, build_id, view.attempts(stage_name, build_id) + 1));
            let mut opening = Vec::new();
            // Other builds' interrupted promotions into this stage can never complete now: say so.
            for stale in view.open_promotions(stage_name).filter(|record| record.id != id) {
                let step = stale.steps.last().map_or(Step::Lock, |journal| journal.step);
                opening.push(LedgerEvent::PromotionFinished {
                    promotion: stale.id.clone(),
                    state: FinalState::Failed { step, reason: format!("abandoned: superseded by {id}") },
                });
            }
            opening.push(if resumed {
                LedgerEvent::PromotionResumed { promotion: id.clone() }
            } else {
                LedgerEvent::PromotionStarted {
                    promotion: id.clone(),
                    build: build_id.clone(),
                    stage: stage_name.to_owned(),
                    kind: kind.clone(),
                }
            });
            opening.extend([
                LedgerEvent::StepStarted { promotion: id.clone(), step: Step::Lock },
                finished(&id, Step::Lock, StepDetail::Locked { token: fence.token }),
                LedgerEvent::StepStarted { promotion: id.clone(), step: Step::Eligibility },
                finished(&id, Step::Eligibility, StepDetail::Eligible { upstream }),
            ]);
            self.append(actor, Some(fence.clone()), opening).await?;
            info!(promotion = %id, resumed, token = fence.token, "promotion started");
            self.emit(Event::StageStarted {
                promotion: id.clone(),
                build: build_id.clone(),
                stage: stage_name.to_owned(),
                kind: kind.clone(),
                resumed,
            });

            let run = Run { stage, lease: &lease, build, id, kind, actor: actor.to_owned(), fence };
            let previous = view.current_build(stage_name).cloned();
            let outcome = self.execute(&run, view).await;
            let Run { id, fence, .. } = run;
            drop(lease);
            debug!(stage = stage_name, token = fence.token, "lock released");
            match outcome {
                Ok(None) => self.record(&id).await,
                Ok(Some(failure)) => {
                    let step = failure.step();
                    let error = failure.into_error(build_id, stage_name);
                    let auto_rollback =
                        stage.on_failure == OnFailure::Rollback && !rollback && step != Step::EntryGates;
                    if let Some(previous) = previous.filter(|p| auto_rollback && p != build_id) {
                        warn!(to = %previous, "rolling back after a failed promotion");
                        // Boxed: a rollback is itself a run.
                        let rollback = Box::pin(self.rollback(Some(&previous), stage_name, actor));
                        if let Err(rollback_error) = rollback.await {
                            warn!(error = %rollback_error, "automatic rollback failed");
                        }
                    }
                    Err(error)
                }
                Err(error) => Err(error),
            }
        }
        .instrument(span)
        .await
    }

    /// Steps 3 to 8. `Ok(Some(failure))` is a deliberate failure, already recorded.
    ///
    /// It owns the ledger snapshot and lets go of it before step 8: a snapshot still held when the outcome is
    /// read back would make that refresh copy the whole view, once per promotion.
    async fn execute(&self, run: &Run<'_>, view: Arc<LedgerView>) -> Result<Option<Failure>> {
        let rollback = matches!(run.kind, PromotionKind::Rollback { .. });

        // Step 3: entry gates (not for a rollback: it returns to a build that already passed them).
        let verdicts = self
            .step(run, Step::EntryGates, async {
                let verdicts = if rollback {
                    vec![GateEvidence {
                        gate: "entry-gates".into(),
                        kind: "rollback".into(),
                        verdict: Verdict::Pass,
                        evidence: BTreeMap::from([(
                            "skipped".into(),
                            "a rollback returns to a build that passed this stage".into(),
                        )]),
                    }]
                } else {
                    self.evaluate_gates(run.stage.entry_gates(), &run.candidate(), &view, GatePhase::Entry, false)
                        .await?
                };
                Ok((verdicts.clone(), StepDetail::Gates { verdicts }))
            })
            .await?;
        for evidence in &verdicts {
            self.emit(Event::GateEvaluated { promotion: run.id.clone(), evidence: evidence.clone() });
        }
        let Verdicts { failed, pending } = Verdicts::of(&verdicts);
        if let Some((gate, reason)) = failed {
            self.finish(run, FinalState::Failed { step: Step::EntryGates, reason: format!("{gate}: {reason}") })
                .await?;
            return Ok(Some(Failure::Gate { step: Step::EntryGates, gate, reason }));
        }
        if !pending.is_empty() {
            self.finish(run, FinalState::Pending { reasons: pending.clone() }).await?;
            return Err(Error::GatePending {
                build: run.build.id.to_string(),
                stage: run.stage.name.clone(),
                reasons: pending,
            });
        }

        // Step 4: make every artifact available for the stage, and verify it there.
        let placed = self
            .step(run, Step::Artifacts, async {
                let placed = self.place_artifacts(run).await?;
                Ok((placed.clone(), StepDetail::Artifacts { placed }))
            })
            .await?;

        // Step 5: config and render.
        let rendered = self
            .step(run, Step::Render, async {
                let pins =
                    if rollback { pinned_config(&view, &run.stage.name, &run.build.id) } else { BTreeMap::new() };
                let config = load_layered(&run.stage.config, &run.stage.name, &pins).await?;
                let bundle = match &run.stage.templates {
                    Some(templates) => Some(
                        self.keyed(templates.render(&run.stage.name, &run.build, &placed, &config)?)
                            .with_context(deploy_context(run.id.clone(), run.candidate(), &placed, &view)),
                    ),
                    None => None,
                };
                let detail = StepDetail::Rendered {
                    config_fingerprint: config.fingerprint_with(self.inner.integrity_key.as_ref()),
                    provenance: config.provenance(),
                    bundle_hash: bundle.as_ref().map_or_else(String::new, |b| b.hash().to_owned()),
                    objects: bundle.as_ref().map_or(0, |b| b.objects().len()),
                };
                Ok((bundle, detail))
            })
            .await?;
        failpoint!("promote::after_render");

        // Step 6: deploy and wait for healthy.
        if let (Some(deployer), Some(bundle)) = (&run.stage.deployer, &rendered) {
            let health = self
                .step(run, Step::Deploy, async {
                    // A refusal (a plaintext Secret, an invalid object) will not pass on a re-run: it fails
                    // the promotion like an unhealthy rollout. Backend errors leave it open for a re-run.
                    run.lease.ensure_held()?;
                    let applied = match deployer.apply(bundle, ApplyMode::Apply).await {
                        Ok(_) => {
                            failpoint!("promote::after_apply");
                            let progress = self.progress(run, Step::Deploy);
                            let wait = deployer.wait_healthy(bundle, run.stage.health_timeout, &progress);
                            #[cfg(feature = "failpoints")]
                            let wait = async {
                                failpoint!("promote::during_health_wait");
                                wait.await
                            };
                            // A lock lost during a long rollout wait stops the wait at once.
                            tokio::select! {
                                health = wait => health,
                                () = run.lease.lost() => run.lease.ensure_held().map(|()| String::new()),
                            }
                        }
                        Err(error) => Err(error),
                    };
                    match applied {
                        Ok(summary) => Ok((Health::Healthy, StepDetail::Deployed { summary })),
                        Err(error @ (Error::DeployFailed { .. } | Error::Timeout { .. })) => {
                            let reason = match error {
                                Error::DeployFailed { reason, .. } => reason,
                                other => other.to_string(),
                            };
                            let summary = format!("failed: {reason}");
                            Ok((Health::Unhealthy(reason), StepDetail::Deployed { summary }))
                        }
                        Err(other) => Err(other),
                    }
                })
                .await?;
            if let Health::Unhealthy(reason) = health {
                self.finish(run, FinalState::Failed { step: Step::Deploy, reason: reason.clone() }).await?;
                return Ok(Some(Failure::Deploy { reason }));
            }
            self.emit(Event::Deployed { promotion: run.id.clone(), bundle_hash: bundle.hash().to_owned() });
        }

        // Step 7: verification gates.
        if !run.stage.verify_gates().is_empty() {
            let verdicts = self
                .step(run, Step::Verify, async {
                    let gates = run.stage.verify_gates();
                    let verdicts =
                        self.evaluate_gates(gates, &run.candidate(), &view, GatePhase::Verification, false).await?;
                    Ok((verdicts.clone(), StepDetail::Gates { verdicts }))
                })
                .await?;
            failpoint!("promote::after_verify");
            for evidence in &verdicts {
                self.emit(Event::GateEvaluated { promotion: run.id.clone(), evidence: evidence.clone() });
            }
            // After the deploy there is nothing to wait for: a pending verification is a failed one.
            if let Some((gate, reason)) = verdicts.iter().find_map(|v| match &v.verdict {
                Verdict::Fail(reason) | Verdict::Pending(reason) => Some((v.gate.clone(), reason.clone())),
                Verdict::Pass => None,
            }) {
                self.finish(run, FinalState::Failed { step: Step::Verify, reason: format!("{gate}: {reason}") })
                    .await?;
                return Ok(Some(Failure::Gate { step: Step::Verify, gate, reason }));
            }
            self.emit(Event::Verified { promotion: run.id.clone() });
        }

        // Step 8: the outcome, then the attestations, which may cite the entry that recorded it.
        drop(view);
        self.finish(run, FinalState::Succeeded).await?;
        let succeeded = self.record(&run.id).await?;
        self.attest(run.stage, &succeeded, run.lease, &run.fence, &run.actor).await?;
        Ok(None)
    }

    /// Runs the stage's attestors that have not attested `record` (a success) yet, and records what each
    /// published, under the stage's lock.
    async fn attest(
        &self,
        stage: &Stage,
        record: &PromotionRecord,
        lease: &Lease,
        fence: &Fence,
        actor: &str,
    ) -> Result<()> {
        for attestor in &stage.attestors {
            if record.attestations.iter().any(|done| done.attestor == attestor.name()) {
                continue;
            }
            let attestations = attestor
                .attest(&*self.inner.ledger, &record.id)
                .await
                .map_err(|error| error.in_context(ErrorContext::stage(&stage.name).with_promotion(&record.id)))?;
            info!(promotion = %record.id, attestor = attestor.name(), count = attestations.len(), "attested");
            lease.ensure_held()?;
            let event = LedgerEvent::Attested { promotion: record.id.clone(), attestations };
            self.append(actor, Some(fence.clone()), vec![event]).await?;
        }
        Ok(())
    }

    /// Journals a step: started, then finished with its detail, or with its error (leaving the promotion
    /// open for a re-run).
    async fn step<T>(
        &self,
        run: &Run<'_>,
        step: Step,
        work: impl Future<Output = Result<(T, StepDetail)>>,
    ) -> Result<T> {
        self.append(
            &run.actor,
            Some(run.fence.clone()),
            vec![LedgerEvent::StepStarted { promotion: run.id.clone(), step }],
        )
        .await?;
        self.emit(Event::StepStarted { promotion: run.id.clone(), step });
        debug!(promotion = %run.id, %step, "step started");
        match work.instrument(info_span!("step", %step)).await.map_err(|error| in_promotion(error, run, step)) {
            Ok((value, detail)) => {
                self.append_held(run, vec![finished(&run.id, step, detail)]).await?;
                debug!(promotion = %run.id, %step, "step finished");
                Ok(value)
            }
            Err(error) => {
                let outcome = StepOutcome::Error { message: error.to_string(), retryable: error.is_retryable() };
                let mut entries = vec![LedgerEvent::StepFinished { promotion: run.id.clone(), step, outcome }];
                let closes = closes_promotion(&error);
                if closes {
                    // A re-run would meet the same refusal: the promotion ends here, saying why.
                    let state = FinalState::Failed { step, reason: error.to_string() };
                    entries.push(LedgerEvent::PromotionFinished { promotion: run.id.clone(), state });
                }
                if let Err(journal_error) = self.append_held(run, entries).await {
                    warn!(error = %journal_error, "could not journal a step's failure; a re-run will resume it");
                } else if closes {
                    warn!(%step, %error, "step failed and cannot succeed on a re-run; the promotion failed");
                    let state = FinalState::Failed { step, reason: error.to_string() };
                    self.emit(Event::StepFailed { promotion: run.id.clone(), step, error: error.to_string() });
                    self.emit(Event::Finished { promotion: run.id.clone(), state });
                    return Err(error);
                }
                warn!(%step, %error, "step failed; the promotion stays open for a re-run");
                self.emit(Event::StepFailed { promotion: run.id.clone(), step, error: error.to_string() });
                Err(error)
            }
        }
    }

    /// Appends to the ledger under the run's fencing token, once the lock is known to be held still.
    async fn append_held(&self, run: &Run<'_>, events: Vec<LedgerEvent>) -> Result<()> {
        run.lease.ensure_held()?;
        self.append(&run.actor, Some(run.fence.clone()), events).await
    }

    /// The bundle with its hash keyed, when the pipeline has an integrity key.
    pub(super) fn keyed(&self, bundle: Bundle) -> Bundle {
        match &self.inner.integrity_key {
            Some(key) => bundle.keyed(Some(key)),
            None => bundle,
        }
    }

    /// Where a backend's progress during `step` goes: the engine's events.
    fn progress(&self, run: &Run<'_>, step: Step) -> crate::progress::Progress {
        let events = self.inner.events.clone();
        let promotion = run.id.clone();
        crate::progress::Progress::new(move |update| {
            // No subscriber is fine: events are for whoever listens.
            let _ = events.send(Event::Progress { promotion: promotion.clone(), step, update });
        })
    }

    async fn finish(&self, run: &Run<'_>, state: FinalState) -> Result<()> {
        let mut events = vec![LedgerEvent::PromotionFinished { promotion: run.id.clone(), state: state.clone() }];
        let rolled_back = match (&run.kind, &state) {
            (PromotionKind::Rollback { replacing }, FinalState::Succeeded) => {
                // The hold is written with the outcome, so a crash cannot leave one without the other.
                let view = self.view().await?;
                let hold = Hold {
                    id: format!("hold-{}", view.head_seq() + 1),
                    stage: run.stage.name.clone(),
                    scope: HoldScope::Auto,
                    reason: format!("rolled back to {} by {}", run.build.id, run.actor),
                    placed_by: run.actor.clone(),
                    at: self.now(),
                };
                events.push(LedgerEvent::HoldPlaced { hold: hold.clone() });
                Some((replacing.clone(), hold))
            }
            _ => None,
        };
        self.append_held(run, events).await?;
        info!(promotion = %run.id, ?state, "promotion finished");
        self.emit(Event::Finished { promotion: run.id.clone(), state });
        if let Some((from, hold)) = rolled_back {
            self.emit(Event::RolledBack { stage: run.stage.name.clone(), to: run.build.id.clone(), from });
            self.emit(Event::HoldPlaced { hold });
        }
        Ok(())
    }

    async fn record(&self, id: &PromotionId) -> Result<PromotionRecord> {
        let view = self.view().await?;
        view.promotion(id).cloned().ok_or_else(|| Error::not_found(Resource::Promotion, id.to_string()))
    }

    async fn place_artifacts(&self, run: &Run<'_>) -> Result<BTreeMap<String, PlacedArtifact>> {
        let version = run.build.version.as_ref().map(ToString::to_string);
        let placements: Vec<_> = run
            .build
            .artifacts
            .iter()
            .map(|(name, artifact)| self.place_artifact(run, name, artifact, version.as_deref()))
            .collect();
        futures::stream::iter(placements).buffer_unordered(ARTIFACT_CONCURRENCY).try_collect().await
    }

    async fn place_artifact(
        &self,
        run: &Run<'_>,
        name: &str,
        artifact: &crate::store::Artifact,
        version: Option<&str>,
    ) -> Result<(String, PlacedArtifact)> {
        let store = &self.inner.store;
        let target =
            run.stage.placement.target(&run.stage.name, name, &artifact.reference, &run.build.commit, version)?;
        let at = |error: Error| error.in_context(ErrorContext::default().with_artifact(name, &target));
        let present = match store.resolve(&target).await {
            Ok(found) => found.digest == artifact.digest,
            Err(Error::NotFound { .. }) => false,
            Err(other) => return Err(at(other)),
        };
        if !present {
            run.lease.ensure_held()?;
            store.promote(&artifact.reference, &target).await.map_err(at)?;
        }
        // The target must hold exactly the bytes that were built.
        store.verify_digest(&target, &artifact.digest).await.map_err(at)?;
        failpoint!("promote::after_artifact");
        debug!(artifact = name, target = %target, digest = %artifact.digest, already_present = present, "artifact placed");
        self.emit(Event::ArtifactPromoted {
            promotion: run.id.clone(),
            name: name.to_owned(),
            target: target.clone(),
            digest: artifact.digest.clone(),
            already_present: present,
        });
        Ok((name.to_owned(), PlacedArtifact { target, digest: artifact.digest.clone() }))
    }
}

/// A step's error, naming the promotion, stage and step it broke, unless it is one of the engine's own
/// verdicts, which say so already.
fn in_promotion(error: Error, run: &Run<'_>, step: Step) -> Error {
    match error {
        Error::GatePending { .. }
        | Error::GateFailed { .. }
        | Error::DeployFailed { .. }
        | Error::Template { .. }
        | Error::MissingConfig { .. } => error,
        error => error.in_context(ErrorContext::stage(&run.stage.name).with_promotion(&run.id).with_step(step)),
    }
}

/// Whether a step's error ends its promotion as failed: it cannot pass on a re-run (`may_succeed_later` is
/// false), and it is not the ledger refusing this writer, which must not write the outcome either.
fn closes_promotion(error: &Error) -> bool {
    !error.may_succeed_later() && !matches!(error.root(), Error::Fenced { .. } | Error::LedgerCorrupt { .. })
}

fn finished(id: &PromotionId, step: Step, detail: StepDetail) -> LedgerEvent {
    LedgerEvent::StepFinished { promotion: id.clone(), step, outcome: StepOutcome::Ok(detail) }
}

/// What the deployer is told about the promotion: its id, build, actor and artifacts, and for a rollback the
/// stage's current promotion, which it reverts.
pub(super) fn deploy_context(
    id: PromotionId,
    candidate: Candidate<'_>,
    placed: &BTreeMap<String, PlacedArtifact>,
    view: &LedgerView,
) -> DeployContext {
    let context = DeployContext::new(id, candidate.build, candidate.actor).with_artifacts(placed.clone());
    match candidate.kind {
        PromotionKind::Promote => context,
        PromotionKind::Rollback { replacing } => {
            let reverts = view.current(&candidate.stage.name).map(|record| record.id.clone());
            context.reverting(reverts, replacing.clone())
        }
    }
}

/// The config versions the last successful deploy of `build` to `stage` used, for a rollback to pin.
fn pinned_config(view: &LedgerView, stage: &str, build: &BuildId) -> BTreeMap<String, Provenance> {
    view.passes(stage, build).last().map(|record| record.config_provenance.clone()).unwrap_or_default()
}

/// Whether a stage attestor has not recorded an attestation of `record` yet.
fn unattested(stage: &Stage, record: &PromotionRecord) -> bool {
    stage.attestors.iter().any(|attestor| !record.attestations.iter().any(|done| done.attestor == attestor.name()))
}
