//! Measurements for the README (ignored by default; no timed assertions): API requests and wall time per
//! promotion with the Kubernetes lock and ledger, and `status` on a 100k-record ledger with and without its
//! checkpoint. Run with
//! `cargo test -p promote-k8s --features testing --test state_figures -- --ignored --nocapture`
//! (`SEGMENT_BYTES=65536` measures the per-promotion figures with other segment sizes).
#![cfg(feature = "testing")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use promote_core::ledger::{
    FinalState, Ledger, LedgerEvent, NewEntry, PromotionId, PromotionKind, Step, StepDetail, StepOutcome,
};
use promote_core::lock::LockWait;
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{Build, BuildId, BuildRequest, MemoryArtifactStore, MemoryDeployer, Pipeline, Stage, Templates};
use promote_k8s::testing::{FakeApiServer, RecordedRequest};
use promote_k8s::{KubernetesLedger, KubernetesLock};

const NAMESPACE: &str = "promote-system";

fn category(request: &RecordedRequest) -> String {
    let what = if request.path.contains("/leases") {
        "lock (leases)"
    } else if request.path.contains("/configmaps") {
        "ledger (configmaps)"
    } else {
        "other"
    };
    let verb = match request.method.as_str() {
        "GET" if request.path.ends_with("/configmaps") => "LIST",
        method => method,
    };
    format!("{what} {verb}")
}

fn tally(requests: &[RecordedRequest]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in requests {
        *counts.entry(category(request)).or_default() += 1;
    }
    counts
}

#[tokio::test]
#[ignore = "measurement: prints figures"]
async fn requests_and_time_per_promotion() {
    let fake = FakeApiServer::builder().namespaces(&["default", NAMESPACE]).history_limit(200).build();
    let client = kube::Client::new(fake.service(), "default");
    let lock = KubernetesLock::builder().namespace(NAMESPACE).client(client.clone()).build().await.unwrap();
    let segment_bytes =
        std::env::var("SEGMENT_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(promote_k8s::DEFAULT_SEGMENT_BYTES);
    let ledger = KubernetesLedger::builder()
        .namespace(NAMESPACE)
        .segment_bytes(segment_bytes)
        .client(client)
        .build()
        .await
        .unwrap();
    let store = MemoryArtifactStore::new();
    let template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  image: {{artifacts.web.image}}\n";
    let stage = Stage::new("dev")
        .templates(Templates::from_sources([("app.yaml", template)]).unwrap())
        .deployer(Arc::new(MemoryDeployer::new()))
        .lock_wait(LockWait::Wait(Duration::from_secs(60)));
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store.clone()))
        .ledger(Arc::new(ledger))
        .lock(lock)
        .stage(stage)
        .build()
        .unwrap();
    let mut builds = Vec::new();
    for n in 0..21u32 {
        let commit = format!("{n:08x}{}", "c".repeat(32));
        let body =
            format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"n\":\"{n}\"}}}}");
        let reference = format!("memory.local/shop/web:{n}");
        store.push(reference.parse().unwrap(), OCI_MANIFEST, body.into_bytes()).unwrap();
        let build: Build = pipeline
            .register(BuildRequest::new(commit).artifact("web", reference.parse().unwrap()), "ci")
            .await
            .unwrap();
        builds.push(build.id);
    }
    // The first promotion reads the ledger from scratch; measure the 20 after it.
    pipeline.promote(&builds[0], "dev", "ci").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.clear_requests();
    let started = Instant::now();
    for build in &builds[1..] {
        pipeline.promote(build, "dev", "ci").await.unwrap();
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(50)).await; // the last release
    let requests = fake.requests();
    let entries = pipeline.ledger().read_since(0).await.unwrap();
    let per_promotion = entries.iter().filter(|e| matches!(e.event, LedgerEvent::PromotionStarted { .. })).count();
    println!(
        "20 promotions: {} requests, {:.1} per promotion, {:?} each",
        requests.len(),
        requests.len() as f64 / 20.0,
        elapsed / 20
    );
    for (what, count) in tally(&requests) {
        println!("  {what}: {:.1} per promotion", count as f64 / 20.0);
    }
    println!("  ({} ledger entries in all, {per_promotion} promotions)", entries.len());
}

/// The entries of one promotion, as the engine journals them (eleven entries, a few hundred bytes each).
fn promotion_entries(n: u32) -> Vec<NewEntry> {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(i64::from(n));
    let build = BuildId::parse(&format!("b-{n:016x}")).unwrap();
    let id = PromotionId::new("dev", &build, 1);
    let entry = |event| NewEntry {
        at,
        actor: "ci".into(),
        fence: Some(promote_core::ledger::Fence { stage: "dev".into(), token: u64::from(n) + 1 }),
        event,
    };
    let mut entries = vec![entry(LedgerEvent::PromotionStarted {
        promotion: id.clone(),
        build,
        stage: "dev".into(),
        kind: PromotionKind::Promote,
    })];
    for step in [Step::Lock, Step::Eligibility, Step::EntryGates, Step::Artifacts, Step::Render] {
        entries.push(entry(LedgerEvent::StepStarted { promotion: id.clone(), step }));
        entries.push(entry(LedgerEvent::StepFinished {
            promotion: id.clone(),
            step,
            outcome: StepOutcome::Ok(StepDetail::Done),
        }));
    }
    entries.truncate(10);
    entries.push(entry(LedgerEvent::PromotionFinished { promotion: id, state: FinalState::Succeeded }));
    entries
}

#[tokio::test]
#[ignore = "measurement: prints figures"]
async fn status_on_a_100k_record_ledger() {
    let fake = FakeApiServer::builder().namespaces(&["default", NAMESPACE]).history_limit(10).build();
    let client = kube::Client::new(fake.service(), "default");
    let open = |checkpoints: bool| {
        KubernetesLedger::builder().namespace(NAMESPACE).checkpoints(checkpoints).client(client.clone()).build()
    };
    let writer = open(false).await.unwrap();
    let started = Instant::now();
    let mut written = 0;
    let mut n = 0;
    while written < 100_000 {
        let mut batch = Vec::new();
        for _ in 0..10 {
            batch.extend(promotion_entries(n));
            n += 1;
        }
        written += batch.len();
        writer.append(batch).await.unwrap();
    }
    writer.checkpoint().await.unwrap();
    let resource = ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        plural: "configmaps".into(),
    };
    let maps: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);
    let segments = maps.list(&ListParams::default().labels("promote.dev/ledger-role=segment")).await.unwrap();
    let checkpoint = maps.list(&ListParams::default().labels("promote.dev/ledger-role=checkpoint")).await.unwrap();
    println!(
        "{written} entries ({n} promotions) in {} segments, checkpoint in {} objects, written in {:?}",
        segments.items.len(),
        checkpoint.items.len(),
        started.elapsed()
    );

    for label in ["with the checkpoint", "without it"] {
        if label == "without it" {
            for object in &checkpoint.items {
                maps.delete(object.metadata.name.as_deref().unwrap(), &DeleteParams::default()).await.unwrap();
            }
        }
        fake.clear_requests();
        let reader = open(true).await.unwrap();
        let started = Instant::now();
        let summary = reader.summary().await.unwrap().unwrap();
        let elapsed = started.elapsed();
        let requests = fake.requests();
        assert_eq!(summary.head_seq(), written as u64);
        println!("status {label}: {} requests ({:?}), {elapsed:?}", requests.len(), tally(&requests));
    }
}
