//! Auto-promotion: `Pipeline::reconcile` promotes the newest eligible build whose gates pass into `auto`
//! stages, respects holds, and never undoes a rollback on its own. Time moves only by a manual clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Span;
use promote_core::HoldRequest;
use promote_core::ledger::HoldScope;
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{
    Build, BuildId, BuildRequest, ManualClock, MemoryArtifactStore, MemoryDeployer, MemoryLedger, MetricGate,
    OnFailure, Pipeline, ReconcileOutcome, SoakGate, Stage, Templates, WindowGate,
};

const TEMPLATE: &str =
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  image: {{artifacts.web.image}}\n";

struct Line {
    pipeline: Pipeline,
    store: MemoryArtifactStore,
    clock: ManualClock,
}

/// A pipeline of `stages`, each deploying to one memory deployer, at Monday 2026-03-02 09:00 UTC.
fn line(stages: Vec<Stage>) -> Line {
    let store = MemoryArtifactStore::new();
    let clock = ManualClock::at("2026-03-02T09:00:00Z".parse().unwrap());
    let deployer = Arc::new(MemoryDeployer::new());
    let templates = Templates::from_sources([("app.yaml", TEMPLATE)]).unwrap();
    let mut builder = Pipeline::builder("shop")
        .store(Arc::new(store.clone()))
        .ledger(Arc::new(MemoryLedger::new()))
        .clock(Arc::new(clock.clone()));
    for stage in stages {
        builder = builder.stage(stage.templates(templates.clone()).deployer(deployer.clone()));
    }
    Line { pipeline: builder.build().unwrap(), store, clock }
}

impl Line {
    async fn build(&self, n: u32, metadata: &[(&str, serde_json::Value)]) -> Build {
        let reference: promote_core::ArtifactRef = format!("memory.local/shop/web:v{n}").parse().unwrap();
        let manifest = format!("{{\"schemaVersion\": 2, \"mediaType\": \"{OCI_MANIFEST}\", \"n\": {n}}}");
        self.store.push(reference.clone(), OCI_MANIFEST, manifest.into_bytes()).unwrap();
        let mut request = BuildRequest::new(format!("{n:0>40}"))
            .artifact("web", reference)
            .version(format!("1.{n}.0").parse().unwrap());
        for (key, value) in metadata {
            request = request.metadata(*key, value.clone());
        }
        self.pipeline.register(request, "ci").await.unwrap()
    }

    async fn current(&self, stage: &str) -> Option<BuildId> {
        self.pipeline.status().await.unwrap().stage(stage).unwrap().current.clone()
    }

    async fn entries(&self) -> u64 {
        self.pipeline.view().await.unwrap().head_seq()
    }
}

fn promoted(outcome: Option<&ReconcileOutcome>) -> &BuildId {
    match outcome {
        Some(ReconcileOutcome::Promoted { build, .. }) => build,
        other => panic!("expected a promotion, got {other:?}"),
    }
}

fn pending_reasons(outcome: Option<&ReconcileOutcome>) -> &[String] {
    match outcome {
        Some(ReconcileOutcome::Pending { reasons }) => reasons,
        other => panic!("expected pending, got {other:?}"),
    }
}

#[tokio::test]
async fn promotes_the_newest_build_and_moves_on_when_the_soak_is_done() {
    let soak = SoakGate::new("soak", Duration::from_secs(3600));
    let l = line(vec![Stage::new("dev").auto(true), Stage::new("stg").auto(true).entry_gate(soak), Stage::new("prd")]);
    let _older = l.build(1, &[]).await;
    let newest = l.build(2, &[]).await;

    let report = l.pipeline.reconcile("ci").await.unwrap();
    let stages: Vec<&str> = report.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(stages, ["dev", "stg"], "only auto stages are reconciled");
    assert_eq!(promoted(report.stage("dev")), &newest.id);
    assert!(pending_reasons(report.stage("stg"))[0].contains("soak: soaked 0s of 1h in dev"), "{report:?}");
    assert_eq!(l.pipeline.history(Some("dev")).await.unwrap().len(), 1, "the older build is skipped");

    // Nothing to do: nothing is recorded, however often it runs.
    let before = l.entries().await;
    let again = l.pipeline.reconcile("ci").await.unwrap();
    assert_eq!(again.stage("dev"), Some(&ReconcileOutcome::NothingEligible { reasons: vec![] }));
    assert!(matches!(again.stage("stg"), Some(ReconcileOutcome::Pending { .. })));
    assert_eq!(l.entries().await, before, "a pending precheck records nothing");

    l.clock.advance(Span::hours(1));
    let report = l.pipeline.reconcile("ci").await.unwrap();
    assert_eq!(promoted(report.stage("stg")), &newest.id);
    assert_eq!(report.promoted(), [("stg", &newest.id)]);
    assert_eq!(l.current("prd").await, None, "prd is not auto");
}

#[tokio::test]
async fn the_newest_build_whose_gates_pass_wins() {
    let coverage = MetricGate::parse("coverage", "coverage >= 80").unwrap();
    let l = line(vec![Stage::new("dev"), Stage::new("stg").auto(true).entry_gate(coverage)]);
    let covered = l.build(1, &[("coverage", serde_json::json!(90))]).await;
    let uncovered = l.build(2, &[("coverage", serde_json::json!(50))]).await;
    for build in [&covered, &uncovered] {
        l.pipeline.promote(&build.id, "dev", "ci").await.unwrap();
    }
    let report = l.pipeline.reconcile("ci").await.unwrap();
    assert_eq!(promoted(report.stage("stg")), &covered.id);
    let report = l.pipeline.reconcile("ci").await.unwrap();
    match report.stage("stg") {
        Some(ReconcileOutcome::NothingEligible { reasons }) => {
            assert_eq!(reasons.len(), 1, "{reasons:?}");
            assert!(
                reasons[0].starts_with(&format!("{}: coverage: metric coverage is 50", uncovered.id)),
                "{reasons:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn holds_on_automation_or_on_everything_stop_it_until_lifted() {
    let l = line(vec![Stage::new("dev").auto(true)]);
    let build = l.build(1, &[]).await;
    let auto = l
        .pipeline
        .hold(HoldRequest::new("dev", HoldScope::Auto).reason("release freeze").placed_by("lead"))
        .await
        .unwrap();
    let all = l
        .pipeline
        .hold(HoldRequest::new("dev", HoldScope::All).reason("incident 42").placed_by("oncall"))
        .await
        .unwrap();
    let report = l.pipeline.reconcile("ci").await.unwrap();
    match report.stage("dev") {
        Some(ReconcileOutcome::Held { holds }) => assert_eq!(holds.len(), 2),
        other => panic!("{other:?}"),
    }
    l.pipeline.lift_hold(&all.id, "oncall").await.unwrap();
    assert!(
        matches!(l.pipeline.reconcile("ci").await.unwrap().stage("dev"), Some(ReconcileOutcome::Held { holds }) if holds[0].scope == HoldScope::Auto)
    );
    l.pipeline.lift_hold(&auto.id, "lead").await.unwrap();
    assert_eq!(promoted(l.pipeline.reconcile("ci").await.unwrap().stage("dev")), &build.id);
}

#[tokio::test]
async fn a_rollback_is_not_undone_until_a_person_lifts_its_hold() {
    let l = line(vec![Stage::new("dev").auto(true)]);
    let good = l.build(1, &[]).await;
    l.pipeline.reconcile("ci").await.unwrap();
    let regressed = l.build(2, &[]).await;
    assert_eq!(promoted(l.pipeline.reconcile("ci").await.unwrap().stage("dev")), &regressed.id);

    l.pipeline.rollback(None, "dev", "oncall").await.unwrap();
    assert_eq!(l.current("dev").await, Some(good.id.clone()));
    for _ in 0..2 {
        let report = l.pipeline.reconcile("ci").await.unwrap();
        assert!(matches!(report.stage("dev"), Some(ReconcileOutcome::Held { .. })), "{report:?}");
        assert_eq!(l.current("dev").await, Some(good.id.clone()));
    }
    let hold = l.pipeline.status().await.unwrap().stage("dev").unwrap().holds[0].id.clone();
    l.pipeline.lift_hold(&hold, "oncall").await.unwrap();
    assert_eq!(promoted(l.pipeline.reconcile("ci").await.unwrap().stage("dev")), &regressed.id);
}

#[tokio::test]
async fn a_build_that_failed_verification_is_reported_rolled_back_and_not_retried() {
    let healthy = MetricGate::parse("healthy", "healthy == 1").unwrap();
    let l = line(vec![Stage::new("dev").auto(true).on_failure(OnFailure::Rollback).verify_gate(healthy)]);
    let good = l.build(1, &[("healthy", serde_json::json!(1))]).await;
    assert_eq!(promoted(l.pipeline.reconcile("ci").await.unwrap().stage("dev")), &good.id);
    let bad = l.build(2, &[("healthy", serde_json::json!(0))]).await;
    match l.pipeline.reconcile("ci").await.unwrap().stage("dev") {
        Some(ReconcileOutcome::Failed { build, error }) => {
            assert_eq!(build, &bad.id);
            assert!(
                matches!(error.root(), promote_core::Error::GateFailed { gate, .. } if gate == "healthy"),
                "{error}"
            );
            assert!(error.to_string().contains("gate healthy failed"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.current("dev").await, Some(good.id.clone()), "rolled back");
    assert!(matches!(l.pipeline.reconcile("ci").await.unwrap().stage("dev"), Some(ReconcileOutcome::Held { .. })));

    let hold = l.pipeline.status().await.unwrap().stage("dev").unwrap().holds[0].id.clone();
    l.pipeline.lift_hold(&hold, "oncall").await.unwrap();
    match l.pipeline.reconcile("ci").await.unwrap().stage("dev") {
        Some(ReconcileOutcome::NothingEligible { reasons }) => {
            assert!(reasons[0].contains("its last promotion into dev failed (at verify"), "{reasons:?}");
        }
        other => panic!("{other:?}"),
    }
    // A fixed build goes through.
    let fixed = l.build(3, &[("healthy", serde_json::json!(1))]).await;
    assert_eq!(promoted(l.pipeline.reconcile("ci").await.unwrap().stage("dev")), &fixed.id);
}

#[tokio::test]
async fn outside_the_window_it_waits_and_says_until_when() {
    let window =
        WindowGate::new("window", "Europe/Berlin").unwrap().days(&["tue"]).unwrap().hours("14:00-15:00").unwrap();
    let l = line(vec![Stage::new("dev").auto(true).entry_gate(window)]);
    let build = l.build(1, &[]).await;
    let before = l.entries().await;
    let report = l.pipeline.reconcile("ci").await.unwrap();
    let reasons = pending_reasons(report.stage("dev"));
    assert!(reasons[0].starts_with(&format!("{}: window: outside the deploy window", build.id)), "{reasons:?}");
    assert!(reasons[0].contains("next opening 2026-03-03T14:00:00+01:00"), "{reasons:?}");
    assert_eq!(l.entries().await, before);
    l.clock.set("2026-03-03T13:00:00Z".parse().unwrap());
    assert_eq!(promoted(l.pipeline.reconcile("ci").await.unwrap().stage("dev")), &build.id);
}
