//! The engine's behaviour: the happy path, every refusal the core issue lists, and convergence after a
//! failure or a crash at each step.

mod support;

use std::time::Duration;

use promote_core::engine::Event;
use promote_core::error::ApprovalRefusal;
use promote_core::ledger::{FinalState, HoldScope, PromotionState, Step, Verdict};
use promote_core::lock::{EnvironmentLock, LockWait};
use promote_core::{
    ApprovalGate, ApprovalPolicy, ArtifactRef, ArtifactStore, BuildRequest, Error, Identity, OnFailure, Resource,
    RevisionPolicy, Stage,
};
use promote_core::{ApprovalOptions, HoldRequest};
use support::{Harness, Mode, Point, SECRET_VALUE};

const C1: &str = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const C2: &str = "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[tokio::test]
async fn promotes_through_every_stage_by_digest() {
    let h = Harness::new();
    let mut events = h.pipeline.subscribe();
    let build = h.build(C1).await;
    let digest = build.artifacts["web"].digest.clone();
    for stage in ["dev", "stg", "prd"] {
        let record = h.pipeline.promote(&build.id, stage, "dana").await.unwrap();
        assert!(record.state.succeeded());
        assert_eq!(record.artifacts["web"].digest, digest);
        let target: ArtifactRef = format!("memory.local/shop/web:{stage}").parse().unwrap();
        assert_eq!(h.store.resolve(&target).await.unwrap().digest, digest, "{stage} tag holds the built digest");
        // The deployed manifest names the image by digest, never by tag.
        let deployed = h.deployer_current(stage).await;
        assert!(deployed.contains(&format!("image: memory.local/shop/web@{digest}")), "{deployed}");
        assert_eq!(record.bundle_hash.as_deref(), Some(h.deployed_hash(stage).await.as_str()));
    }
    let status = h.pipeline.status().await.unwrap();
    assert!(status.stages.iter().all(|s| s.current.as_ref() == Some(&build.id)));

    let mut kinds = Vec::new();
    while let Ok(event) = events.try_recv() {
        kinds.push(match event {
            Event::BuildRegistered { .. } => "registered",
            Event::StageStarted { .. } => "started",
            Event::ArtifactPromoted { .. } => "artifact",
            Event::Deployed { .. } => "deployed",
            Event::Verified { .. } => "verified",
            Event::Progress { update, .. } => {
                assert!(["Deployment/web", "Secret/db"].contains(&update.subject.as_str()), "{update:?}");
                assert_eq!(update.message, "ready");
                continue;
            }
            Event::Finished { state: FinalState::Succeeded, .. } => "succeeded",
            _ => continue,
        });
    }
    assert_eq!(kinds[..7], ["registered", "started", "artifact", "deployed", "verified", "succeeded", "started"]);
}

/// A promotion must fold its entries into the pipeline's ledger view in place. One that copied it (a snapshot
/// held while the view refreshed) paid for the whole history on every promotion: quadratic over a pipeline's
/// life. A copy is made while the original is alive, so it cannot land at the original's address.
#[tokio::test]
async fn a_promotion_updates_the_ledger_view_in_place_instead_of_copying_it() {
    let h = Harness::new();
    let build = h.build(C1).await;
    let before = std::sync::Arc::as_ptr(&h.pipeline.view().await.unwrap());
    let record = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
    assert!(record.state.succeeded());
    let view = h.pipeline.view().await.unwrap();
    assert!(view.promotion(&record.id).is_some());
    assert_eq!(std::sync::Arc::as_ptr(&view), before, "the promotion copied the ledger view");
}

#[tokio::test]
async fn re_running_a_finished_promotion_changes_nothing() {
    let h = Harness::new();
    let build = h.build(C1).await;
    let first = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
    let (entries, applies) = (h.entries(), h.deployer.applies());
    let again = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(
        (h.entries(), h.deployer.applies()),
        (entries, applies),
        "an idempotent re-run records and applies nothing"
    );
}

#[tokio::test]
async fn registering_the_same_digests_gives_the_same_build() {
    let h = Harness::new();
    let first = h.build(C1).await;
    let entries = h.entries();
    let reference: ArtifactRef = "memory.local/shop/web:1111111".parse().unwrap();
    let again = h.pipeline.register(BuildRequest::new(C1).artifact("web", reference.clone()), "ci").await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(h.entries(), entries);
    let other_commit = h.pipeline.register(BuildRequest::new(C2).artifact("web", reference), "ci").await;
    assert!(matches!(other_commit, Err(Error::RevisionMismatch { .. })), "{other_commit:?}");
}

#[tokio::test]
async fn refuses_a_build_that_has_not_passed_the_previous_stage() {
    let h = Harness::new();
    let build = h.build(C1).await;
    let entries = h.entries();
    match h.pipeline.promote(&build.id, "stg", "dana").await {
        Err(Error::NotEligible { build: b, stage, reason }) => {
            assert_eq!((b, stage.as_str()), (build.id.to_string(), "stg"));
            assert!(reason.contains("dev"), "{reason}");
        }
        other => panic!("expected NotEligible, got {other:?}"),
    }
    assert_eq!(h.entries(), entries, "a refusal records nothing");
    assert!(h.pipeline.history(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn refuses_an_unknown_stage() {
    let h = Harness::new();
    let build = h.build(C1).await;
    match h.pipeline.promote(&build.id, "qa", "dana").await {
        Err(error @ Error::NotFound { resource: Resource::Stage, .. }) => {
            assert!(error.to_string().contains("qa") && error.to_string().contains("dev, stg, prd"), "{error}");
        }
        other => panic!("expected NotFound(stage), got {other:?}"),
    }
}

#[tokio::test]
async fn refuses_to_register_a_tag_that_does_not_exist() {
    let h = Harness::new();
    let reference: ArtifactRef = "memory.local/shop/web:nope".parse().unwrap();
    let error = h.pipeline.register(BuildRequest::new(C1).artifact("web", reference), "ci").await.unwrap_err();
    match error.root() {
        Error::NotFound { resource: Resource::Artifact, name } => assert!(name.contains("web:nope"), "{name}"),
        other => panic!("expected NotFound(artifact), got {other:?}"),
    }
    assert!(error.to_string().starts_with("artifact web (memory.local/shop/web:nope): "), "{error}");
    assert_eq!(h.entries(), 0);
}

#[tokio::test]
async fn an_image_from_another_commit_is_refused_unless_the_policy_warns() {
    let h = Harness::new();
    let reference: ArtifactRef = "memory.local/shop/web:x".parse().unwrap();
    h.store
        .inner
        .push(reference.clone(), promote_core::manifest::OCI_MANIFEST, support::oci_manifest(C2, "x"))
        .unwrap();
    let refused = h.pipeline.register(BuildRequest::new(C1).artifact("web", reference.clone()), "ci").await;
    match refused {
        Err(Error::RevisionMismatch { expected, found, .. }) => {
            assert_eq!((expected.as_str(), found.as_str()), (C1, C2))
        }
        other => panic!("expected RevisionMismatch, got {other:?}"),
    }
    let request = BuildRequest::new(C1).artifact("web", reference).revision_policy(RevisionPolicy::Warn);
    assert!(h.pipeline.register(request, "ci").await.is_ok());
}

#[tokio::test]
async fn a_digest_that_moved_at_the_target_is_caught_and_never_recorded_as_done() {
    let h = Harness::new();
    let build = h.build(C1).await;
    let intruder = h
        .store
        .inner
        .push(
            "memory.local/shop/web:intruder".parse().unwrap(),
            "application/vnd.oci.image.manifest.v1+json",
            b"{}".to_vec(),
        )
        .unwrap();
    let (memory, moved) = (h.store.inner.clone(), intruder.digest.clone());
    h.store.after_promote(Some(Box::new(move |target| memory.force_tag(target, Some(&moved)))));
    let error = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap_err();
    match error.root() {
        Error::DigestMismatch { expected, actual, reference } => {
            assert_eq!((expected, actual), (&build.artifacts["web"].digest, &intruder.digest));
            assert!(reference.ends_with("web:dev"), "{reference}");
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    // The error names the promotion, the stage, the step and the artifact it broke.
    let context = error.context().expect("the engine names where it happened");
    assert_eq!(
        (context.stage.as_deref(), context.step.as_deref(), context.artifact.as_deref()),
        (Some("dev"), Some("artifacts"), Some("web"))
    );
    assert!(context.promotion.as_deref().is_some_and(|p| p.starts_with("dev/")), "{context:?}");
    let message = error.to_string();
    assert!(
        message.contains("artifact web (memory.local/shop/web:dev)") && message.contains("digest moved"),
        "{message}"
    );
    let history = h.pipeline.history(Some("dev")).await.unwrap();
    assert_eq!(history.len(), 1);
    assert!(
        matches!(&history[0].state, PromotionState::InProgress { last_error: Some(e) } if e.contains("digest moved"))
    );
    assert_eq!(h.pipeline.status().await.unwrap().stage("dev").unwrap().current, None);

    h.store.after_promote(None);
    let record = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
    assert_eq!(record.id, history[0].id, "the re-run resumes the same promotion");
    assert_eq!(h.pipeline.history(Some("dev")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_second_promotion_to_a_locked_stage_fails_or_waits_as_configured() {
    let h = Harness::new();
    let build = h.build(C1).await;
    let lease = h.lock.acquire("dev", "someone-else", LockWait::Fail).await.unwrap();
    match h.pipeline.promote(&build.id, "dev", "dana").await {
        Err(Error::Locked { stage, holder }) => assert_eq!((stage.as_str(), holder.as_str()), ("dev", "someone-else")),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(h.pipeline.history(None).await.unwrap().is_empty(), "a locked-out promotion records nothing");

    let waiting = Harness::with_stages(|stage| stage.lock_wait(LockWait::Wait(Duration::from_secs(60))));
    let build = waiting.build(C1).await;
    let lease2 = waiting.lock.acquire("dev", "someone-else", LockWait::Fail).await.unwrap();
    let pipeline = waiting.pipeline.clone();
    let id = build.id.clone();
    let promotion = tokio::spawn(async move { pipeline.promote(&id, "dev", "dana").await });
    tokio::task::yield_now().await;
    drop(lease2);
    let record = promotion.await.unwrap().unwrap();
    assert!(record.state.succeeded());
    assert!(record.fencing_tokens[0] > 1, "the waiter got a newer fencing token");
    drop(lease);
}

/// Every step fails in turn with a backend error; the promotion stays open, and a re-run converges to one
/// complete record.
#[tokio::test]
async fn a_backend_failing_at_each_step_leaves_an_open_record_that_a_re_run_completes() {
    for point in [
        Point::EntryGate,
        Point::StorePromote,
        Point::ConfigLoad,
        Point::DeployApply,
        Point::DeployWait,
        Point::VerifyGate,
    ] {
        let h = Harness::new();
        let build = h.build(C1).await;
        h.faults.set(point, Mode::Error);
        let error = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap_err();
        assert!(error.is_retryable(), "{point:?}: {error}");
        let history = h.pipeline.history(Some("dev")).await.unwrap();
        assert_eq!(history.len(), 1, "{point:?}");
        assert!(history[0].state.in_progress(), "{point:?}: a failed step is never recorded as done");
        assert_eq!(h.pipeline.status().await.unwrap().stage("dev").unwrap().current, None, "{point:?}");

        h.faults.clear();
        let record = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
        assert_converged(&h, &build.id, &record).await;
    }
}

/// A store failing in step 4 reaches the caller with the promotion, the stage, the step and the artifact, and
/// its own error is still there to match and still answers `is_retryable` for itself.
#[tokio::test]
async fn a_store_error_in_step_four_names_the_promotion_stage_and_artifact() {
    let h = Harness::new();
    let build = h.build(C1).await;
    h.faults.set(Point::StorePromote, Mode::Error);
    let error = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap_err();
    assert!(matches!(error.root(), Error::Backend { backend, .. } if *backend == "faulty"), "{error:?}");
    assert_eq!(error.is_retryable(), error.root().is_retryable(), "the root decides");
    let context = error.context().expect("the engine names where it happened");
    assert_eq!(
        (context.stage.as_deref(), context.step.as_deref(), context.artifact.as_deref()),
        (Some("dev"), Some("artifacts"), Some("web"))
    );
    let promotion = context.promotion.clone().expect("the promotion's id");
    let history = h.pipeline.history(Some("dev")).await.unwrap();
    assert_eq!(history[0].id.to_string(), promotion, "the id the ledger holds");
    let message = error.to_string();
    assert!(message.contains(&promotion) && message.contains("artifact web"), "{message}");
}

/// An error no re-run can get past (not `is_retryable`) ends the promotion as failed at that step, with the
/// reason recorded, instead of leaving it open for good; a later call starts a new attempt.
#[tokio::test]
async fn a_refusal_at_any_step_fails_the_promotion_and_records_why() {
    for (point, step) in [
        (Point::EntryGate, Step::EntryGates),
        (Point::StorePromote, Step::Artifacts),
        (Point::ConfigLoad, Step::Render),
        (Point::DeployApply, Step::Deploy),
        (Point::VerifyGate, Step::Verify),
    ] {
        let h = Harness::new();
        let build = h.build(C1).await;
        h.faults.set(point, Mode::Refuse);
        let error = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap_err();
        assert!(!error.is_retryable(), "{point:?}: {error}");
        let history = h.pipeline.history(Some("dev")).await.unwrap();
        assert_eq!(history.len(), 1, "{point:?}");
        match &history[0].state {
            PromotionState::Finished(FinalState::Failed { step: failed_at, reason }) => {
                assert_eq!(*failed_at, step, "{point:?}");
                assert!(reason.contains("injected fault"), "{point:?}: {reason}");
            }
            other => panic!("{point:?}: expected a failed promotion, got {other:?}"),
        }
        let status = h.pipeline.status().await.unwrap();
        let dev = status.stage("dev").unwrap();
        assert!(dev.in_progress.is_empty() && dev.current.is_none(), "{point:?}: nothing stays in progress: {dev:?}");

        h.faults.clear();
        let record = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
        assert!(record.state.succeeded(), "{point:?}");
        assert_ne!(record.id, history[0].id, "{point:?}: a new attempt, not the failed one resumed");
    }
}

/// An object whose name Kubernetes would refuse is a template error at render, before anything is applied,
/// and the promotion fails with it rather than staying open.
#[tokio::test]
async fn an_unusable_object_name_fails_at_render_before_any_apply() {
    let h = Harness::new();
    let build = h.build(C1).await;
    h.config.set("dev", "REPLICAS", "2").set("dev", "NAME", "../../x");
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{config.NAME}}\n";
    let templates = promote_core::Templates::from_sources([("manifests/bad.yaml", bad)]).unwrap();
    let pipeline = promote_core::Pipeline::builder("shop")
        .store(h.store.clone())
        .ledger(std::sync::Arc::new(h.ledger.clone()))
        .stage(
            Stage::new("dev")
                .config_source(h.config.clone())
                .templates(templates)
                .deployer(std::sync::Arc::new(h.deployer.clone())),
        )
        .build()
        .unwrap();
    let error = pipeline.promote(&build.id, "dev", "dana").await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::Template { .. }), "{error:?}");
    assert!(message.starts_with("manifests/bad.yaml") && message.contains("rendered document 1"), "{message}");
    assert!(message.contains("`../../x` is not a valid ConfigMap name"), "{message}");
    assert_eq!(h.deployer.applies(), 0, "nothing was applied");
    let history = pipeline.history(Some("dev")).await.unwrap();
    assert!(
        matches!(&history[0].state, PromotionState::Finished(FinalState::Failed { step: Step::Render, .. })),
        "{:?}",
        history[0].state
    );
}

/// A crash (the future dropped mid-step) at each step, and at each ledger write.
#[tokio::test(start_paused = true)]
async fn a_promotion_killed_at_any_point_converges_when_re_run() {
    for point in [
        Point::EntryGate,
        Point::StorePromote,
        Point::ConfigLoad,
        Point::DeployApply,
        Point::DeployWait,
        Point::VerifyGate,
    ] {
        let h = Harness::new();
        let build = h.build(C1).await;
        h.faults.set(point, Mode::Hang);
        let killed = tokio::time::timeout(Duration::from_secs(5), h.pipeline.promote(&build.id, "dev", "dana")).await;
        assert!(killed.is_err(), "{point:?}: the promotion should have hung");
        h.faults.clear();
        let record = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
        assert_converged(&h, &build.id, &record).await;
    }

    // How many ledger writes a clean promotion makes, then a crash and an error at each of them.
    let clean = Harness::new();
    let build = clean.build(C1).await;
    clean.faults.fail_append(usize::MAX, Mode::Error);
    clean.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
    let writes = clean.faults.appends();
    assert!(writes >= 8, "every step is journalled: {writes} writes");
    for nth in 1..=writes {
        for mode in [Mode::Error, Mode::Hang] {
            let h = Harness::new();
            let build = h.build(C1).await;
            h.faults.fail_append(nth, mode);
            let outcome =
                tokio::time::timeout(Duration::from_secs(5), h.pipeline.promote(&build.id, "dev", "dana")).await;
            assert!(!matches!(outcome, Ok(Ok(_))), "write {nth} {mode:?}: a failed journal write cannot be a success");
            h.faults.clear();
            let record = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
            assert_converged(&h, &build.id, &record).await;
        }
    }
}

async fn assert_converged(h: &Harness, build: &promote_core::BuildId, record: &promote_core::PromotionRecord) {
    assert!(record.state.succeeded(), "{:?}", record.state);
    let history = h.pipeline.history(Some("dev")).await.unwrap();
    let succeeded: Vec<_> = history.iter().filter(|r| &r.build == build && r.state.succeeded()).collect();
    assert_eq!(succeeded.len(), 1, "exactly one complete record: {history:#?}");
    assert!(history.iter().all(|r| !r.state.in_progress()), "nothing left open: {history:#?}");
    assert_eq!(h.pipeline.status().await.unwrap().stage("dev").unwrap().current.as_ref(), Some(build));
    assert_eq!(record.bundle_hash.as_deref(), Some(h.deployed_hash("dev").await.as_str()));
    let steps: Vec<Step> = record.steps.iter().map(|s| s.step).collect();
    assert_eq!(steps, Step::ALL, "every step journalled");
}

#[tokio::test]
async fn a_failing_entry_gate_fails_the_promotion_and_pending_stops_it() {
    let h = Harness::new();
    let build = h.build(C1).await;
    *h.entry_gate.verdict.lock().unwrap() = Verdict::Pending("waiting for the nightly run".into());
    match h.pipeline.promote(&build.id, "dev", "dana").await {
        Err(error @ Error::GatePending { .. }) => {
            assert!(error.is_retryable());
            assert!(error.to_string().contains("checks: waiting for the nightly run"), "{error}");
        }
        other => panic!("expected GatePending, got {other:?}"),
    }
    assert_eq!(h.deployer.applies(), 0, "pending changes nothing");
    *h.entry_gate.verdict.lock().unwrap() = Verdict::Fail("3 tests failed".into());
    assert!(
        matches!(h.pipeline.promote(&build.id, "dev", "dana").await, Err(Error::GateFailed { gate, .. }) if gate == "checks")
    );
    let history = h.pipeline.history(None).await.unwrap();
    assert!(matches!(&history[0].state, PromotionState::Finished(FinalState::Pending { .. })));
    assert!(matches!(&history[1].state, PromotionState::Finished(FinalState::Failed { step: Step::EntryGates, .. })));
    assert_eq!(h.deployer.applies(), 0);
}

#[tokio::test]
async fn a_failed_verification_rolls_back_when_the_stage_says_so() {
    let h = Harness::with_stages(|stage| stage.on_failure(OnFailure::Rollback));
    let good = h.build(C1).await;
    h.pipeline.promote(&good.id, "dev", "dana").await.unwrap();
    let bad = h.build(C2).await;
    *h.verify_gate.verdict.lock().unwrap() = Verdict::Fail("smoke test returned 500".into());
    *h.verify_gate.only_for.lock().unwrap() = Some(bad.id.clone());
    match h.pipeline.promote(&bad.id, "dev", "dana").await {
        Err(Error::GateFailed { gate, reason, .. }) => {
            assert_eq!((gate.as_str(), reason.as_str()), ("smoke", "smoke test returned 500"))
        }
        other => panic!("expected GateFailed, got {other:?}"),
    }
    let status = h.pipeline.status().await.unwrap();
    let dev = status.stage("dev").unwrap();
    assert_eq!(dev.current.as_ref(), Some(&good.id), "the stage is back on the good build");
    assert_eq!(dev.holds.len(), 1, "the rollback holds automatic promotion");
    assert_eq!(dev.failed_since_current, None, "the good build runs again");
    assert!(
        h.deployer_current("dev").await.contains(good.artifacts["web"].digest.as_str()),
        "the good build is redeployed"
    );
}

#[tokio::test]
async fn a_failed_verification_without_rollback_is_visible_in_status() {
    let h = Harness::new();
    let good = h.build(C1).await;
    h.pipeline.promote(&good.id, "dev", "dana").await.unwrap();
    let bad = h.build(C2).await;
    *h.verify_gate.verdict.lock().unwrap() = Verdict::Fail("smoke test returned 500".into());
    assert!(h.pipeline.promote(&bad.id, "dev", "dana").await.is_err());
    let status = h.pipeline.status().await.unwrap();
    let dev = status.stage("dev").unwrap();
    assert_eq!(dev.current.as_ref(), Some(&good.id), "current is the last verified build");
    let failed = dev.failed_since_current.as_ref().expect("the failed deploy is flagged");
    assert_eq!(h.pipeline.history(Some("dev")).await.unwrap().last().unwrap().id, *failed);
}

#[tokio::test]
async fn rollback_returns_to_an_earlier_build_and_holds_automation() {
    let h = Harness::new();
    let v1 = h.build(C1).await;
    let v2 = h.build(C2).await;
    for build in [&v1, &v2] {
        h.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
    }
    let never = h.pipeline.rollback(Some(&v1.id), "stg", "oncall").await;
    assert!(matches!(never, Err(Error::NotEligible { .. })), "{never:?}");
    let record = h.pipeline.rollback(None, "dev", "oncall").await.unwrap();
    assert_eq!(record.build, v1.id);
    let status = h.pipeline.status().await.unwrap();
    let dev = status.stage("dev").unwrap();
    assert_eq!(dev.current.as_ref(), Some(&v1.id));
    assert_eq!(dev.holds[0].scope, HoldScope::Auto);
    let deployed = h.deployer_current("dev").await;
    assert!(deployed.contains(v1.artifacts["web"].digest.as_str()));
    // Rolling back again to the same build is a no-op.
    let again = h.pipeline.rollback(Some(&v1.id), "dev", "oncall").await.unwrap();
    assert_eq!(again.id, record.id);
}

#[tokio::test]
async fn approvals_are_checked_before_anything_is_recorded() {
    let h = Harness::with_stages(|stage| {
        if stage.name() == "dev" {
            stage.entry_gate(ApprovalGate::new(
                "release",
                ApprovalPolicy::promoters(["alice", "bob", "dana"])
                    .group("sre")
                    .min_approvals(2)
                    .expires_after(Duration::from_secs(3600)),
            ))
        } else {
            stage
        }
    });
    let build = h.build(C1).await;
    let refused = |result: promote_core::Result<_>| match result {
        Err(Error::ApprovalRefused { reason, .. }) => reason,
        other => panic!("expected ApprovalRefused, got {other:?}"),
    };
    let entries = h.entries();
    assert_eq!(
        refused(h.pipeline.approve(&build.id, "dev", &Identity::new("mallory"), ApprovalOptions::default()).await),
        ApprovalRefusal::NotAllowed
    );
    assert_eq!(
        refused(h.pipeline.approve(&build.id, "dev", &Identity::new("dana"), ApprovalOptions::default()).await),
        ApprovalRefusal::SelfApproval
    );
    let stale = chrono::Utc::now() - chrono::Duration::hours(2);
    assert_eq!(
        refused(
            h.pipeline.approve(&build.id, "dev", &Identity::new("alice"), ApprovalOptions::new().given_at(stale)).await
        ),
        ApprovalRefusal::Expired
    );
    assert_eq!(
        refused(h.pipeline.approve(&build.id, "stg", &Identity::new("alice"), ApprovalOptions::default()).await),
        ApprovalRefusal::NoApprovalGate
    );
    assert_eq!(h.entries(), entries, "refusals record nothing");

    h.pipeline.approve(&build.id, "dev", &Identity::new("alice"), ApprovalOptions::new().comment("ok")).await.unwrap();
    assert_eq!(
        refused(h.pipeline.approve(&build.id, "dev", &Identity::new("alice"), ApprovalOptions::default()).await),
        ApprovalRefusal::Duplicate
    );
    let pending = h.pipeline.promote(&build.id, "dev", "dana").await;
    assert!(
        matches!(&pending, Err(Error::GatePending { reasons, .. }) if reasons[0].contains("1 of 2")),
        "{pending:?}"
    );
    h.pipeline
        .approve(&build.id, "dev", &Identity::new("erin").in_group("sre"), ApprovalOptions::default())
        .await
        .unwrap();
    assert!(h.pipeline.promote(&build.id, "dev", "dana").await.unwrap().state.succeeded());
}

#[tokio::test]
async fn plan_reports_without_side_effects_and_masks_secrets() {
    let h = Harness::new();
    let build = h.build(C1).await;
    let (entries, applies) = (h.entries(), h.deployer.applies());
    let plan = h.pipeline.plan(&build.id, "dev", "dana").await.unwrap();
    assert!(plan.would_proceed(), "{plan:?}");
    assert_eq!(plan.artifacts["web"].action, promote_core::engine::ArtifactAction::Retag);
    assert!(plan.diff.contains("+  replicas: 2"), "{}", plan.diff);
    assert!(plan.diff.contains("password: W3JlZGFjdGVkXQ=="), "the secret renders masked: {}", plan.diff);
    let shown = format!("{plan:?} {}", serde_json::to_string(&plan).unwrap());
    assert!(!shown.contains(SECRET_VALUE) && !shown.contains(&base64_of(SECRET_VALUE)), "plan leaks the secret");
    assert_eq!(plan.config["DB_PASSWORD"].source, "vault");
    assert!(plan.config["DB_PASSWORD"].secret);
    assert_eq!((h.entries(), h.deployer.applies()), (entries, applies), "plan changes nothing");
    assert!(h.store.resolve(&"memory.local/shop/web:dev".parse().unwrap()).await.is_err(), "plan tags nothing");
    let blocked = h.pipeline.plan(&build.id, "stg", "dana").await.unwrap();
    match &blocked.blocked {
        Some(promote_core::engine::Blocked::NotEligible { reason }) => {
            assert!(reason.contains("has not passed stage dev"), "{reason}")
        }
        other => panic!("expected NotEligible, got {other:?}"),
    }
}

#[tokio::test]
async fn a_hold_on_all_promotion_blocks_people_too_until_lifted() {
    let h = Harness::new();
    let build = h.build(C1).await;
    let hold = h
        .pipeline
        .hold(HoldRequest::new("dev", HoldScope::All).reason("change freeze").placed_by("cab"))
        .await
        .unwrap();
    assert!(
        matches!(h.pipeline.promote(&build.id, "dev", "dana").await, Err(Error::Held { reason, .. }) if reason == "change freeze")
    );
    h.pipeline.lift_hold(&hold.id, "cab").await.unwrap();
    assert!(h.pipeline.promote(&build.id, "dev", "dana").await.is_ok());
    assert!(matches!(
        h.pipeline.lift_hold("hold-999", "cab").await,
        Err(Error::NotFound { resource: Resource::Hold, .. })
    ));
}

#[test]
fn stage_names_are_checked() {
    let store = std::sync::Arc::new(promote_core::MemoryArtifactStore::new());
    let ledger = std::sync::Arc::new(promote_core::MemoryLedger::new());
    let build = |names: &[&str]| {
        let mut builder = promote_core::Pipeline::builder("p").store(store.clone()).ledger(ledger.clone());
        for name in names {
            builder = builder.stage(Stage::new(*name));
        }
        builder.build()
    };
    assert!(build(&["dev", "Prd"]).is_err());
    assert!(build(&["dev", "dev"]).is_err());
    assert!(build(&[]).is_err());
    assert!(build(&["dev", "prd"]).is_ok());
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

impl Harness {
    async fn deployer_current(&self, stage: &str) -> String {
        use promote_core::Deployer;
        let bundle = self.deployer.current(stage).await.unwrap().expect("something deployed");
        bundle.objects().iter().map(|m| m.expose_content().to_owned()).collect()
    }

    async fn deployed_hash(&self, stage: &str) -> String {
        use promote_core::Deployer;
        self.deployer.current(stage).await.unwrap().expect("something deployed").hash().to_owned()
    }
}

/// A holder that loses its lock mid-promotion (here revoked during the rollout wait) stops before its next
/// side effect with `LockLost`: the ledger shows the interrupted step and nothing after it, and the
/// promotion stays open for whoever holds the lock next, who completes it.
#[tokio::test]
async fn a_lost_lock_stops_the_promotion_before_its_next_side_effect() {
    use promote_core::Ledger;
    use promote_core::ledger::LedgerEvent;

    let h = Harness::new();
    let build = h.build(C1).await;
    h.faults.set(Point::DeployWait, Mode::Hang);
    let pipeline = h.pipeline.clone();
    let id = build.id.clone();
    let running = tokio::spawn(async move { pipeline.promote(&id, "dev", "dana").await });
    // Wait (bounded) until the deploy step has started, then break the lock.
    for _ in 0..500 {
        let view = h.pipeline.view().await.unwrap();
        if view.open_promotion("dev", &build.id).is_some_and(|p| p.steps.iter().any(|s| s.step == Step::Deploy)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(h.lock.revoke("dev"), "the promotion held dev's lock");
    let error = tokio::time::timeout(Duration::from_secs(30), running).await.expect("it stops").unwrap().unwrap_err();
    assert!(matches!(error.root(), Error::LockLost { stage, .. } if stage == "dev"), "{error}");
    let entries = h.ledger.read_since(0).await.unwrap();
    let last = entries.last().unwrap();
    assert!(
        matches!(&last.event, LedgerEvent::StepStarted { step: Step::Deploy, .. }),
        "nothing is written after the interrupted step: {:?}",
        last.event
    );
    let open = h.pipeline.history(Some("dev")).await.unwrap();
    assert!(open[0].state.in_progress(), "the promotion stays open");

    h.faults.clear();
    let record = h.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
    assert_eq!(record.id, open[0].id, "the next holder resumes it");
    assert_converged(&h, &build.id, &record).await;
}
