//! `KubernetesLock` against the fake API server: the core lock conformance suite (loss clause included),
//! takeover of an expired lease judged on the waiter's own clock, loss by a renewal answered 409, a wait
//! that runs out naming the holder and since when, and release keeping the transition count.
#![cfg(feature = "testing")]

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use promote_core::Error;
use promote_core::clock::ManualClock;
use promote_core::conformance::{LockFixture, environment_lock};
use promote_core::lock::{EnvironmentLock, LockWait};
use promote_k8s::KubernetesLock;
use promote_k8s::testing::FakeApiServer;
use serde_json::json;

const NAMESPACE: &str = "promote-system";

fn leases(client: &kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "coordination.k8s.io".into(),
        version: "v1".into(),
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        plural: "leases".into(),
    };
    Api::namespaced_with(client.clone(), NAMESPACE, &resource)
}

fn fake() -> (FakeApiServer, kube::Client) {
    let fake = FakeApiServer::builder().namespaces(&["default", NAMESPACE]).build();
    let client = kube::Client::new(fake.service(), "default");
    (fake, client)
}

async fn lock(client: &kube::Client, clock: Option<ManualClock>) -> KubernetesLock {
    let mut builder = KubernetesLock::builder()
        .namespace(NAMESPACE)
        .client(client.clone())
        .lease_duration(Duration::from_secs(2))
        .renew_every(Duration::from_millis(40))
        .poll_every(Duration::from_millis(20));
    if let Some(clock) = clock {
        builder = builder.clock(Arc::new(clock));
    }
    builder.build().await.unwrap()
}

/// Takes the stage's Lease over behind its holder's back, as another runner that judged it expired would.
async fn take_over(client: &kube::Client, stage: &str, thief: &str) {
    let api = leases(client);
    let name = format!("promote-lock-{stage}");
    let mut lease = api.get(&name).await.unwrap();
    let transitions = lease.data["spec"]["leaseTransitions"].as_u64().unwrap();
    lease.data["spec"]["holderIdentity"] = json!(thief);
    lease.data["spec"]["leaseDurationSeconds"] = json!(1);
    lease.data["spec"]["leaseTransitions"] = json!(transitions + 1);
    api.replace(&name, &PostParams::default(), &lease).await.unwrap();
}

#[tokio::test]
async fn lock_conformance() {
    let (_fake, client) = fake();
    let lock = lock(&client, None).await;
    let thief = client.clone();
    let fixture = LockFixture::new(Arc::new(lock), "conf-").losing_with(move |stage: String| {
        let client = thief.clone();
        async move { take_over(&client, &stage, "thief").await }
    });
    environment_lock(fixture).await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_on_the_waiters_own_clock() {
    let (_fake, client) = fake();
    let clock = ManualClock::at("2026-11-30T10:00:00Z".parse().unwrap());
    let frozen_holder = lock(&client, Some(clock.clone())).await;
    let waiter = lock(&client, Some(clock.clone())).await;

    let first = frozen_holder.acquire("prd", "runner-a", LockWait::Fail).await.unwrap();
    frozen_holder.suspend_renewals(true);
    // The waiter's first look starts its own observation: not expired yet, whatever renewTime says.
    assert!(matches!(waiter.acquire("prd", "runner-b", LockWait::Fail).await, Err(Error::Locked { .. })));
    clock.advance(chrono::Duration::seconds(1));
    assert!(matches!(waiter.acquire("prd", "runner-b", LockWait::Fail).await, Err(Error::Locked { .. })));
    assert!(!first.is_lost(), "a lease within its duration is held");

    clock.advance(chrono::Duration::seconds(2));
    let second = waiter.acquire("prd", "runner-b", LockWait::Fail).await.expect("an expired lease is taken over");
    assert_eq!(second.token(), first.token() + 1, "the token is leaseTransitions, one more per change of hands");
    assert!(first.is_lost(), "the frozen holder's own clock says its lease ran out");
    assert!(matches!(first.ensure_held(), Err(Error::LockLost { token, .. }) if token == first.token()));

    // Thawed, its next renewal is refused (409): the loss is signalled too, not only probed.
    frozen_holder.suspend_renewals(false);
    tokio::time::timeout(Duration::from_secs(10), first.lost()).await.expect("the thawed holder learns it lost");
    let lease = leases(&client).get("promote-lock-prd").await.unwrap();
    assert_eq!(lease.data["spec"]["holderIdentity"], "runner-b", "the thawed holder did not write over the new one");
}

#[tokio::test]
async fn a_renewal_answered_conflict_loses_the_lease() {
    let (_fake, client) = fake();
    let lock = lock(&client, None).await;
    let lease = lock.acquire("stg", "runner-a", LockWait::Fail).await.unwrap();
    take_over(&client, "stg", "operator").await;
    tokio::time::timeout(Duration::from_secs(10), lease.lost()).await.expect("the renewal sees the takeover");
    assert!(
        matches!(lease.ensure_held(), Err(Error::LockLost { stage, holder, .. }) if stage == "stg" && holder == "runner-a")
    );
}

#[tokio::test]
async fn a_wait_that_runs_out_names_the_holder_and_since_when() {
    let (_fake, client) = fake();
    let lock = lock(&client, None).await;
    let _held = lock.acquire("prd", "ci-runner-7", LockWait::Fail).await.unwrap();
    let other = self::lock(&client, None).await;
    match other.acquire("prd", "ci-runner-8", LockWait::Wait(Duration::from_millis(100))).await {
        Err(Error::Locked { stage, holder }) => {
            assert_eq!(stage, "prd");
            assert!(holder.starts_with("ci-runner-7 (since 20"), "{holder}");
            assert!(holder.contains("last renewed"), "{holder}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[tokio::test]
async fn release_keeps_the_lease_and_its_transition_count() {
    let (_fake, client) = fake();
    let lock = lock(&client, None).await;
    let mut tokens = Vec::new();
    for round in 0..3 {
        let lease = lock.acquire("dev", &format!("runner-{round}"), LockWait::Wait(Duration::from_secs(10))).await;
        tokens.push(lease.unwrap().token());
    }
    assert_eq!(tokens, [1, 2, 3], "each acquisition is one more transition");
    let api = leases(&client);
    for _ in 0..100 {
        let lease = api.get("promote-lock-dev").await.unwrap();
        if lease.data["spec"].get("holderIdentity").is_none() {
            assert_eq!(lease.data["spec"]["leaseTransitions"], 3);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the released Lease still names a holder");
}
