//! Fault storms: a copy between two real registries (docker-registry) through a fault proxy in front of
//! either one, for each kind of fault the proxy injects (see `promote_testkit::storm`). The copy is what a
//! promotion does with an artifact: copy by digest, then verify the digest the target serves.
//!
//! For each fault, side and intensity, the copy either completes, or fails with an error that may succeed
//! later (retryable, or retryable and given up on); then the storm ends and the copy runs again. Either way
//! the target is checked with the registry directly, not through the proxy or the client under test: its
//! tag is absent or on a complete graph (every manifest there hashes to its digest, every blob is there),
//! and once the copy succeeded the tag serves the source's bytes exactly.
//!
//! Two intensities: gusts (every second request the fault applies to, 3 at most: retries ride them out)
//! and a gale (every request, 8 at most: more than the attempts the store makes). `RELIABILITY_LONG=1`
//! runs every storm with more shapes (every 1st, 2nd and 3rd request, up to 12 faults).

mod support;

use std::time::{Duration, Instant};

use promote_core::retry::RetryPolicy;
use promote_core::{ArtifactRef, ArtifactStore, ArtifactStoreExt, Digest, Error};
use promote_oci::OciRegistryStore;
use promote_testkit::storm::{Fault, FaultProxy};
use support::{Fixture, Registry, require};

/// The longest one copy may take, storm or not.
const COPY_DEADLINE: Duration = Duration::from_secs(120);

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn reference(text: &str) -> ArtifactRef {
    text.parse().unwrap()
}

fn long() -> bool {
    std::env::var_os("RELIABILITY_LONG").is_some_and(|v| v == "1")
}

/// What the registry serves at `repo:reference`, asked directly: `None` when it has no such manifest.
async fn manifest(client: &reqwest::Client, host: &str, repo: &str, reference: &str) -> Option<Vec<u8>> {
    let response = client
        .get(format!("http://{host}/v2/{repo}/manifests/{reference}"))
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    assert!(response.status().is_success(), "GET {repo}:{reference}: {}", response.status());
    Some(response.bytes().await.unwrap().to_vec())
}

fn sha256(bytes: &[u8]) -> String {
    Digest::sha256_of(bytes).to_string()
}

/// Checks, with the registry directly, that the graph under `bytes` is complete: each child manifest is
/// there and hashes to its digest, each blob is there with its size. Returns how many objects it checked.
async fn check_graph(client: &reqwest::Client, host: &str, repo: &str, bytes: &[u8], at: &str) -> usize {
    let document: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    let mut checked = 1;
    if let Some(children) = document["manifests"].as_array() {
        for child in children {
            let digest = child["digest"].as_str().unwrap();
            let child_bytes = manifest(client, host, repo, digest)
                .await
                .unwrap_or_else(|| panic!("{at}: the tag points at an index whose child {digest} is missing"));
            assert_eq!(sha256(&child_bytes), digest, "{at}: child {digest} served other bytes");
            checked += Box::pin(check_graph(client, host, repo, &child_bytes, at)).await;
        }
        return checked;
    }
    let blobs = std::iter::once(&document["config"]).chain(document["layers"].as_array().into_iter().flatten());
    for blob in blobs {
        let digest = blob["digest"].as_str().unwrap();
        let response = client.head(format!("http://{host}/v2/{repo}/blobs/{digest}")).send().await.unwrap();
        assert!(response.status().is_success(), "{at}: the tag points at a graph whose blob {digest} is missing");
        let size = response.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        assert_eq!(size, blob["size"].as_u64(), "{at}: blob {digest} has another size");
        checked += 1;
    }
    checked
}

/// The target's tag, checked directly: absent, or on a complete graph. Returns its bytes if present.
async fn check_target(client: &reqwest::Client, host: &str, repo: &str, tag: &str, at: &str) -> Option<Vec<u8>> {
    let bytes = manifest(client, host, repo, tag).await?;
    check_graph(client, host, repo, &bytes, at).await;
    Some(bytes)
}

#[derive(Clone, Copy, Debug)]
enum Side {
    Source,
    Target,
}

/// One storm's shape: every `every`-th applicable request, `budget` faults at most.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    every: u32,
    budget: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_survive_fault_storms() {
    if !(require("docker-registry") & require("skopeo")) {
        return;
    }
    let source = Registry::start();
    let target = Registry::start();
    let fixture = Fixture::new(17, 96 * 1024);
    fixture.push_all(&source, "storm/app");
    let source_proxy = FaultProxy::start(&source.host).await;
    let target_proxy = FaultProxy::start(&target.host).await;
    // Short delays keep the storms quick; four attempts are fewer than a gale's faults.
    let policy = RetryPolicy::default()
        .with_max_attempts(4)
        .with_delays(Duration::from_millis(20), Duration::from_secs(2))
        .with_total(Some(Duration::from_secs(60)));
    let store = OciRegistryStore::builder()
        .docker_config(false)
        .insecure(source_proxy.host.clone())
        .insecure(target_proxy.host.clone())
        .retry_policy(policy)
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let shapes: Vec<Shape> = if long() {
        vec![
            Shape { name: "gust", every: 2, budget: 3 },
            Shape { name: "gust-3", every: 3, budget: 6 },
            Shape { name: "gale", every: 1, budget: 8 },
            Shape { name: "gale-12", every: 1, budget: 12 },
        ]
    } else {
        vec![Shape { name: "gust", every: 2, budget: 3 }, Shape { name: "gale", every: 1, budget: 8 }]
    };
    let source_ref = reference(&format!("{}/storm/app@{}", source_proxy.host, fixture.index_digest));

    let started = Instant::now();
    let mut rows = Vec::new();
    for (index, fault) in Fault::ALL.into_iter().enumerate() {
        for side in [Side::Source, Side::Target] {
            for shape in &shapes {
                let at = format!("{} at the {side:?} ({})", fault.name(), shape.name);
                let repo = format!("storm/f{index}-{side:?}-{}", shape.name).to_lowercase();
                let proxy = match side {
                    Side::Source => &source_proxy,
                    Side::Target => &target_proxy,
                };
                // A stalled body costs its stall: two are enough to show it.
                let budget = if fault == Fault::StalledBody { shape.budget.min(2) } else { shape.budget };
                let plan = proxy.storm(fault, shape.every, budget);
                let target_ref = reference(&format!("{}/{repo}:stg", target_proxy.host));
                // What a promotion does with an artifact: copy it, then check the target serves the digest.
                let place = async {
                    store.promote(&source_ref, &target_ref).await?;
                    store.verify_digest(&target_ref, &fixture.index_digest).await
                };
                let outcome = tokio::time::timeout(COPY_DEADLINE, place)
                    .await
                    .unwrap_or_else(|_| panic!("{at}: the copy did not end within {COPY_DEADLINE:?}"));
                proxy.calm();
                let injected = plan.injected.load(std::sync::atomic::Ordering::SeqCst);
                let first = match &outcome {
                    Ok(artifact) => {
                        assert_eq!(artifact.digest, fixture.index_digest, "{at}");
                        "completed".to_owned()
                    }
                    Err(error) => {
                        assert!(error.may_succeed_later(), "{at}: a fault must give an error worth retrying: {error}");
                        assert_typed(error, &at);
                        // A failed copy leaves the tag absent, never on a partial graph.
                        check_target(&client, &target.host, &repo, "stg", &at).await;
                        format!("failed, retryable: {}", error.root().kind())
                    }
                };
                if outcome.is_err() {
                    tokio::time::timeout(COPY_DEADLINE, store.promote(&source_ref, &target_ref))
                        .await
                        .unwrap_or_else(|_| panic!("{at}: the re-run did not end within {COPY_DEADLINE:?}"))
                        .unwrap_or_else(|e| panic!("{at}: the re-run after the storm failed: {e}"));
                }
                let bytes = check_target(&client, &target.host, &repo, "stg", &at)
                    .await
                    .unwrap_or_else(|| panic!("{at}: no tag after a successful copy"));
                assert_eq!(bytes, fixture.index_bytes, "{at}: the target serves other bytes than the source");
                rows.push((at, injected, first));
            }
        }
    }

    println!("{:<58} {:>8}  first run", "storm", "faults");
    for (at, injected, first) in &rows {
        println!("{at:<58} {injected:>8}  {first}");
    }
    println!("{} storms in {:.1?}", rows.len(), started.elapsed());
    // Every kind of fault was served on the source side, where every kind applies.
    for fault in Fault::ALL {
        let served: u32 =
            rows.iter().filter(|(at, ..)| at.starts_with(fault.name()) && at.contains("Source")).map(|r| r.1).sum();
        assert!(served > 0, "{}: never injected", fault.name());
    }
}

/// The error is one of promote-core's typed variants a caller can act on, not a catch-all.
fn assert_typed(error: &Error, at: &str) {
    assert!(
        matches!(error.root(), Error::Backend { .. } | Error::DigestMismatch { .. } | Error::Timeout { .. }),
        "{at}: {error:?}"
    );
}
