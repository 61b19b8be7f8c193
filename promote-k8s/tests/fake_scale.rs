//! The fake at the size the issue asks for: 1,000 objects and 100 concurrent watches in one process.
#![cfg(feature = "testing")]

mod support;

use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use serde_json::json;
use support::manual_fake;

async fn fill(cms: &Api<ConfigMap>, count: usize) {
    for i in 0..count {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i:04}"),
            "labels": {"shard": (i % 10).to_string()}}, "data": {"key": "value", "index": i.to_string()}}))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_thousand_objects_to_a_hundred_concurrent_watches() {
    let (_fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    fill(&cms, 1000).await;
    let list = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1000);
    let rv = list.metadata.resource_version.unwrap();

    let mut watches = Vec::new();
    for w in 0..100 {
        let params = if w % 2 == 0 { WatchParams::default() } else { WatchParams::default().labels("shard=3") };
        watches.push(cms.watch(&params, &rv).await.unwrap().boxed());
    }
    for i in 0..10 {
        let name = format!("cm-{:04}", i * 10 + 3);
        cms.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"data": {"key": "changed"}}))).await.unwrap();
    }
    let readers = watches.into_iter().map(|mut stream| {
        tokio::spawn(async move {
            let mut seen = 0;
            while seen < 10 {
                match stream.next().await {
                    Some(Ok(WatchEvent::Modified(cm))) => {
                        assert_eq!(cm.data.unwrap()["key"], "changed");
                        seen += 1;
                    }
                    Some(Ok(WatchEvent::Bookmark(_))) => {}
                    other => panic!("unexpected watch item: {other:?}"),
                }
            }
            seen
        })
    });
    for reader in readers {
        assert_eq!(reader.await.unwrap(), 10, "every watch sees every change it selects");
    }
}

/// Prints the LIST latency for 1,000 objects (in-process, no socket). Run with
/// `cargo test -p promote-k8s --features testing --release --test fake_scale -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints LIST latency, asserts nothing about time"]
async fn list_latency_for_a_thousand_objects() {
    let (_fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    fill(&cms, 1000).await;
    let rounds = 50;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let list = cms.list(&ListParams::default()).await.unwrap();
        samples.push(start.elapsed());
        assert_eq!(list.items.len(), 1000);
    }
    samples.sort();
    let selected = Instant::now();
    let shard = cms.list(&ListParams::default().labels("shard=3")).await.unwrap();
    let selected = selected.elapsed();
    assert_eq!(shard.items.len(), 100);
    println!(
        "LIST 1000 ConfigMaps through kube-rs: median {:?}, p90 {:?}, max {:?}; with labelSelector (100 matches): {:?}",
        samples[rounds / 2],
        samples[rounds * 9 / 10],
        samples[rounds - 1],
        selected
    );
}
