//! `KubernetesLedger` against the fake API server: the core ledger conformance suite (summary clause
//! included), writers on separate clients racing for the head, fences across writers, segments and the
//! checkpoint (`status` in three requests), and damage found where it is.
#![cfg(feature = "testing")]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use promote_core::Error;
use promote_core::backend::{GENESIS_HASH, verify_chain};
use promote_core::conformance::ledger;
use promote_core::ledger::{Fence, Hold, HoldScope, Ledger, LedgerEvent, LedgerSummary, NewEntry};
use promote_k8s::KubernetesLedger;
use promote_k8s::testing::FakeApiServer;

const NAMESPACE: &str = "promote-system";

fn fake() -> FakeApiServer {
    FakeApiServer::builder().namespaces(&["default", NAMESPACE]).build()
}

async fn open(fake: &FakeApiServer, segment_bytes: usize) -> KubernetesLedger {
    KubernetesLedger::builder()
        .namespace(NAMESPACE)
        .name("shop")
        .segment_bytes(segment_bytes)
        .client(kube::Client::new(fake.service(), "default"))
        .build()
        .await
        .unwrap()
}

fn config_maps(fake: &FakeApiServer) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        plural: "configmaps".into(),
    };
    Api::namespaced_with(kube::Client::new(fake.service(), "default"), NAMESPACE, &resource)
}

fn entry(n: u32, fence: Option<(&str, u64)>) -> NewEntry {
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap() + chrono::Duration::seconds(i64::from(n));
    NewEntry {
        at,
        actor: format!("runner-{n}"),
        fence: fence.map(|(stage, token)| Fence { stage: stage.to_owned(), token }),
        event: LedgerEvent::HoldPlaced {
            hold: Hold {
                id: format!("hold-{n}"),
                stage: "prd".into(),
                scope: HoldScope::Auto,
                reason: format!("entry {n}"),
                placed_by: "test".into(),
                at,
            },
        },
    }
}

#[tokio::test]
async fn ledger_conformance() {
    let fake = fake();
    ledger(Arc::new(open(&fake, 4096).await)).await;
}

#[tokio::test]
async fn writers_on_separate_clients_never_share_a_sequence_number() {
    let fake = fake();
    let mut writers = Vec::new();
    for writer in 0..4u32 {
        let ledger = open(&fake, 2048).await;
        writers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..15 {
                seqs.extend(ledger.append(vec![entry(writer * 100 + n, None)]).await.unwrap().iter().map(|e| e.seq));
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for writer in writers {
        seqs.extend(writer.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=60).collect::<Vec<u64>>(), "every append got its own sequence number");
    let reader = open(&fake, 2048).await;
    let all = reader.read_since(0).await.unwrap();
    assert_eq!(all.len(), 60);
    verify_chain("test", (0, GENESIS_HASH), &all).unwrap();
    for after in [7, 31, 59, 60] {
        let tail = reader.read_since(after).await.unwrap();
        assert_eq!(tail, all[after as usize..], "read_since({after}) walks back across segments");
    }
    let segments = config_maps(&fake).list(&ListParams::default().labels("promote.dev/ledger-role=segment")).await;
    assert!(segments.unwrap().items.len() > 3, "small segments roll over");
}

#[tokio::test]
async fn a_stale_fence_is_refused_even_when_another_writer_saw_the_newer_token() {
    let fake = fake();
    let (first, second) = (open(&fake, 4096).await, open(&fake, 4096).await);
    second.append(vec![entry(1, Some(("prd", 3)))]).await.unwrap();
    first.append(vec![entry(2, Some(("prd", 7)))]).await.unwrap();
    // `second` last saw token 3; its append races to the head, reads it, and finds 7 there.
    match second.append(vec![entry(3, Some(("prd", 6)))]).await {
        Err(Error::Fenced { stage, token: 6, newest: 7 }) => assert_eq!(stage, "prd"),
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(first.read_since(0).await.unwrap().len(), 2, "nothing of the refused append was written");
}

#[tokio::test]
async fn status_reads_three_objects_with_the_checkpoint() {
    let fake = fake();
    let writer = open(&fake, 1024).await;
    for n in 0..40 {
        writer.append(vec![entry(n, Some(("prd", u64::from(n))))]).await.unwrap();
    }
    let mut folded = LedgerSummary::new();
    folded.apply_all(&writer.read_since(0).await.unwrap());

    fake.clear_requests();
    let status = open(&fake, 1024).await;
    let summary = status.summary().await.unwrap().unwrap();
    assert_eq!(*summary, folded, "the summary from the checkpoint and the head is the fold of every entry");
    let requests = fake.requests();
    assert!(requests.len() <= 3, "status read {} objects: {requests:?}", requests.len());
    assert!(requests.iter().all(|r| r.method == "GET"));

    // A damaged checkpoint is a cache miss, not an error: the same summary from every segment.
    let api = config_maps(&fake);
    let mut checkpoint = api.get("shop-checkpoint").await.unwrap();
    checkpoint.data["binaryData"]["summary.json.z"] = serde_json::json!("bm90IGRlZmxhdGVk");
    api.replace("shop-checkpoint", &PostParams::default(), &checkpoint).await.unwrap();
    assert_eq!(*open(&fake, 1024).await.summary().await.unwrap().unwrap(), folded);

    // Without a checkpoint, the same summary from every segment.
    config_maps(&fake).delete("shop-checkpoint", &Default::default()).await.unwrap();
    let again = open(&fake, 1024).await;
    assert_eq!(*again.summary().await.unwrap().unwrap(), folded);
    // A new holder's token after the checkpoint is gone is still fenced against the segments' record.
    let stale = again.append(vec![entry(99, Some(("prd", 38)))]).await;
    assert!(matches!(stale, Err(Error::Fenced { newest: 39, .. })), "{stale:?}");
}

#[tokio::test]
async fn a_changed_entry_is_found_where_it_is() {
    let fake = fake();
    let writer = open(&fake, 4096).await;
    for n in 0..5 {
        writer.append(vec![entry(n, None)]).await.unwrap();
    }
    let api = config_maps(&fake);
    let mut segment = api.get("shop-000001").await.unwrap();
    let lines = segment.data["data"]["entries"].as_str().unwrap().replace("runner-2", "mallory-");
    segment.data["data"]["entries"] = serde_json::json!(lines);
    api.replace("shop-000001", &PostParams::default(), &segment).await.unwrap();
    match open(&fake, 4096).await.read_since(0).await {
        Err(Error::LedgerCorrupt { path, line: 3, .. }) => assert_eq!(path, "ConfigMap promote-system/shop-000001"),
        other => panic!("expected LedgerCorrupt at entry 3, got {other:?}"),
    }
}
