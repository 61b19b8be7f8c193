//! Shared setup for the fake API server's tests.
#![allow(dead_code)] // Each test crate uses a different part.

pub(crate) mod deploy;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use promote_core::clock::ManualClock;
use promote_k8s::testing::FakeApiServer;
use serde_json::json;

/// A fake on a manual clock, with a client for namespace `ns1` (created).
pub(crate) async fn manual_fake() -> (FakeApiServer, kube::Client, ManualClock) {
    let clock = ManualClock::at("2026-11-30T10:00:00Z".parse().unwrap());
    let fake = FakeApiServer::builder().manual_clock(clock.clone()).build();
    let client = kube::Client::new(fake.service(), "ns1");
    create_namespace(&client, "ns1").await;
    (fake, client, clock)
}

pub(crate) async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
}

/// A Deployment of `replicas` pods running `image`, labelled `app=<name>`.
pub(crate) fn deployment(name: &str, image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }))
    .unwrap()
}

/// The kube error's Status, for asserting on what a user sees.
pub(crate) fn status_of(error: kube::Error) -> kube::core::Status {
    match error {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Waits (bounded) for a condition a background task makes true.
pub(crate) async fn eventually<F: FnMut() -> bool>(what: &str, mut check: F) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
