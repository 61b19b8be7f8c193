//! Fault storms against the fake API server: the storm proxy of promote-oci's and promote-aws's storms
//! (`promote_testkit::storm`) sits between the fake, served on loopback, and every client under test, which
//! reaches it through a kubeconfig naming the proxy. For each fault kind, three operations:
//! - **deploy**: `KubernetesDeployer` applies a bundle into a new stage (namespace, inventory, objects) and
//!   waits for it to be healthy (WATCH);
//! - **ledger**: `KubernetesLedger` appends two entries, then reads back what it appended and its summary
//!   (small segments, so that appends start new segments and write checkpoints);
//! - **lock**: `KubernetesLock` acquires a stage, a second runner tries it too, and the first lets go.
//!
//! Each operation either completes with an exact result, or fails with a typed error whose `is_retryable()`
//! is true; then the storm ends and the same operation runs again and must complete. The results are
//! checked with an in-process client of the fake, not through the proxy:
//! - deploy: every object of the bundle is in the fake holding every field the bundle gives it, and the
//!   stage's inventory holds exactly the bundle, healthy;
//! - ledger: the chain verifies and holds exactly the entries the appends reported, none invented and none
//!   lost, and each read returned exactly those;
//! - lock: the Lease names exactly one holder, the one whose acquire succeeded, with its fencing token;
//!   the second runner never got it while the first held it; tokens strictly increase from storm to storm.
//!
//! The proxy's "wrong manifest bytes" kind is not run: it is registry-specific (a manifest GET answered
//! with other bytes than its digest), and the Kubernetes API has no manifests. A body fault hits the answer
//! of a write too (the server applied it, the client does not know), but not a WATCH stream, which the
//! proxy does not hold back; statuses hit watches too.
//!
//! Two intensities, as in the other storms: gusts (every second request, 3 faults at most) and a gale
//! (every request, 8 at most: more than the 3 retries a request gets). `RELIABILITY_LONG=1` adds longer
//! storms. Every operation is bounded in time (60 s), every wait in count.
#![cfg(feature = "testing")]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use promote_core::backend::{GENESIS_HASH, verify_chain};
use promote_core::deploy::{ApplyMode, Bundle, Deployer};
use promote_core::ledger::{Hold, HoldScope, Ledger, LedgerEntry, LedgerEvent, LedgerSummary, NewEntry};
use promote_core::lock::{EnvironmentLock, Lease, LockWait};
use promote_core::progress::Progress;
use promote_core::{Error, Result};
use promote_k8s::testing::{FakeApiServer, ServedApiServer};
use promote_k8s::{KubernetesDeployer, KubernetesLedger, KubernetesLock};
use promote_testkit::storm::{Fault, FaultProxy};
use serde_json::Value;
use support::deploy::{config_map, deployment, manifest, service};

const NAMESPACE: &str = "promote-system";
/// The longest one operation may take, storm or not.
const DEADLINE: Duration = Duration::from_secs(60);
/// The stage the lock storms take.
const LOCK_STAGE: &str = "storm";

fn long() -> bool {
    std::env::var_os("RELIABILITY_LONG").is_some_and(|v| v == "1")
}

/// Every fault kind that applies to the Kubernetes API.
fn faults() -> impl Iterator<Item = Fault> {
    Fault::ALL.into_iter().filter(|fault| *fault != Fault::WrongManifestBytes)
}

/// The fake, served on loopback behind the storm proxy, a kubeconfig naming the proxy, and an in-process
/// client that bypasses both (for the checks).
struct Rig {
    _fake: FakeApiServer,
    _served: ServedApiServer,
    proxy: FaultProxy,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    direct: kube::Client,
}

async fn rig() -> Rig {
    let fake =
        FakeApiServer::builder().real_time(Duration::from_millis(10)).namespaces(&["default", NAMESPACE]).build();
    let served = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let proxy = FaultProxy::start(&served.addr().to_string()).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // kube takes a plain `http://` server from a kubeconfig: no TLS to loopback.
    let text = served.kubeconfig("default", "fake-token").replace(&served.url(), &format!("http://{}", proxy.host));
    std::fs::write(&kubeconfig, text).unwrap();
    let direct = kube::Client::new(fake.service(), "default");
    Rig { _fake: fake, _served: served, proxy, _dir: dir, kubeconfig, direct }
}

/// One storm's shape: every `every`-th applicable request, `budget` faults at most.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    every: u32,
    budget: u32,
}

fn shapes() -> Vec<Shape> {
    if long() {
        vec![
            Shape { name: "gust", every: 2, budget: 3 },
            Shape { name: "gust-3", every: 3, budget: 6 },
            Shape { name: "gale", every: 1, budget: 8 },
            Shape { name: "gale-12", every: 1, budget: 12 },
        ]
    } else {
        vec![Shape { name: "gust", every: 2, budget: 3 }, Shape { name: "gale", every: 1, budget: 8 }]
    }
}

/// What one storm showed, for the table.
struct Row {
    at: String,
    injected: u32,
    first: String,
}

/// Runs `operation` in the storm, then, if it failed, again once the storm is over. A failure in the storm
/// must be typed and retryable; the run after it must succeed. Returns the result that counts and the row.
async fn weather<T, F, Fut>(rig: &Rig, fault: Fault, shape: Shape, at: &str, mut operation: F) -> (T, Row)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    // A stalled body costs its stall: two are enough to show it.
    let budget = if fault == Fault::StalledBody { shape.budget.min(2) } else { shape.budget };
    let plan = rig.proxy.storm(fault, shape.every, budget);
    let outcome = tokio::time::timeout(DEADLINE, operation())
        .await
        .unwrap_or_else(|_| panic!("{at}: the operation did not end within {DEADLINE:?}"));
    rig.proxy.calm();
    let injected = plan.injected.load(Ordering::SeqCst);
    let (value, first) = match outcome {
        Ok(value) => (value, "completed".to_owned()),
        Err(error) => {
            assert!(error.is_retryable(), "{at}: a fault must give a retryable error: {error}");
            assert!(matches!(error.root(), Error::Backend { .. } | Error::Timeout { .. }), "{at}: {error:?}");
            let again = tokio::time::timeout(DEADLINE, operation())
                .await
                .unwrap_or_else(|_| panic!("{at}: the re-run did not end within {DEADLINE:?}"))
                .unwrap_or_else(|e| panic!("{at}: the re-run after the storm failed: {e}"));
            (again, format!("failed, retryable ({})", error.root().kind()))
        }
    };
    (value, Row { at: at.to_owned(), injected, first })
}

fn print(rows: &[Row], started: Instant) {
    println!("{:<52} {:>6}  first run", "storm", "faults");
    for row in rows {
        println!("{:<52} {:>6}  {}", row.at, row.injected, row.first);
    }
    println!("{} storms in {:.1?}", rows.len(), started.elapsed());
    for fault in faults() {
        let served: u32 = rows.iter().filter(|row| row.at.starts_with(fault.name())).map(|row| row.injected).sum();
        assert!(served > 0, "{}: never injected", fault.name());
    }
}

// ---------------------------------------------------------------------------------------------------------
// Deploy

fn stage_bundle(stage: &str) -> Bundle {
    let texts = [deployment("web", "nginx:1.27", 2), config_map("settings", stage), service("web", "ClusterIP")];
    Bundle::new(stage, texts.iter().map(|text| manifest(text)).collect())
}

/// Whether `live` holds every field of `desired`, with the same value (lists element by element).
fn holds(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            desired.iter().all(|(key, value)| live.get(key).is_some_and(|found| holds(found, value)))
        }
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(found, value)| holds(found, value))
        }
        (live, desired) => live == desired,
    }
}

/// The stage's objects, asked of the fake directly: each object of the bundle holds what the bundle says,
/// and the stage's inventory is the bundle, healthy.
async fn check_deployed(rig: &Rig, bundle: &Bundle, namespace: &str, at: &str) {
    for object in bundle.objects() {
        let desired: Value = serde_saphyr::from_str(object.expose_content()).unwrap();
        let api_version = desired["apiVersion"].as_str().unwrap();
        let plural = format!("{}s", desired["kind"].as_str().unwrap().to_lowercase());
        let name = desired["metadata"]["name"].as_str().unwrap();
        let live = support::deploy::get(&rig.direct, api_version, &plural, Some(namespace), name)
            .await
            .unwrap_or_else(|| panic!("{at}: {plural}/{name} is not in the cluster"));
        let (mut live_fields, mut desired_fields) = (live.clone(), desired.clone());
        for value in [&mut live_fields, &mut desired_fields] {
            value.as_object_mut().unwrap().remove("metadata");
        }
        assert!(holds(&live_fields, &desired_fields), "{at}: {plural}/{name} is not what the bundle says: {live}");
        if let Some(wanted) = desired["metadata"].get("labels") {
            let labels = &live["metadata"]["labels"];
            assert!(holds(labels, wanted), "{at}: {plural}/{name} labels: {labels}");
        }
    }
    let checker = KubernetesDeployer::builder().namespace("{stage}").client(rig.direct.clone()).build().await.unwrap();
    let status = checker.status(bundle.stage()).await.unwrap();
    assert_eq!(status.bundle_hash.as_deref(), Some(bundle.hash()), "{at}: the inventory holds the bundle");
    assert_eq!(status.healthy, Some(true), "{at}");
    let current = checker.current(bundle.stage()).await.unwrap().expect("a current bundle");
    assert_eq!(current.hash(), bundle.hash(), "{at}: the inventory's bundle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_survive_fault_storms() {
    let rig = rig().await;
    let started = Instant::now();
    let mut rows = Vec::new();
    for (index, fault) in faults().enumerate() {
        for shape in shapes() {
            let at = format!("{} ({}): deploy", fault.name(), shape.name);
            // A new stage for each storm: its namespace, inventory and objects are all created under it.
            let stage = format!("s{index}-{}", shape.name);
            let deployer = KubernetesDeployer::builder()
                .namespace("{stage}")
                .create_namespace(true)
                .kubeconfig(&rig.kubeconfig)
                .build()
                .await
                .unwrap();
            let bundle = stage_bundle(&stage);
            let ((), row) = weather(&rig, fault, shape, &at, || async {
                deployer.apply(&bundle, ApplyMode::Apply).await?;
                deployer.wait_healthy(&bundle, Duration::from_secs(30), &Progress::none()).await.map(drop)
            })
            .await;
            check_deployed(&rig, &bundle, &stage, &at).await;
            rows.push(row);
        }
    }
    print(&rows, started);
}

// ---------------------------------------------------------------------------------------------------------
// Ledger

fn entry(n: u32) -> NewEntry {
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap() + chrono::Duration::seconds(i64::from(n));
    NewEntry {
        at,
        actor: format!("runner-{n}"),
        fence: None,
        event: LedgerEvent::HoldPlaced {
            hold: Hold {
                id: format!("hold-{n}"),
                stage: "prd".into(),
                scope: HoldScope::Auto,
                reason: format!("entry {n} of a storm"),
                placed_by: "storm".into(),
                at,
            },
        },
    }
}

async fn ledger_via(client: Option<kube::Client>, kubeconfig: &std::path::Path) -> KubernetesLedger {
    let builder = KubernetesLedger::builder().namespace(NAMESPACE).name("storm").segment_bytes(1024);
    let builder = match client {
        Some(client) => builder.client(client),
        None => builder.kubeconfig(kubeconfig),
    };
    builder.build().await.unwrap()
}

/// The whole ledger, read directly: its chain verifies and it holds exactly `reported`.
async fn check_ledger(rig: &Rig, reported: &[LedgerEntry], at: &str) {
    let direct = ledger_via(Some(rig.direct.clone()), &rig.kubeconfig).await;
    let all = direct.read_since(0).await.unwrap_or_else(|e| panic!("{at}: the ledger does not read: {e}"));
    verify_chain("storm", (0, GENESIS_HASH), &all).unwrap_or_else(|e| panic!("{at}: {e}"));
    let invented: Vec<u64> = all.iter().filter(|e| !reported.contains(e)).map(|e| e.seq).collect();
    assert!(invented.is_empty(), "{at}: entries nobody reported appended: {invented:?}");
    assert_eq!(all, reported, "{at}: the ledger holds exactly what the appends reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_appends_and_reads_survive_fault_storms() {
    let rig = rig().await;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut reported: Vec<LedgerEntry> = Vec::new();
    let mut n = 0;
    for fault in faults() {
        for shape in shapes() {
            // A new handle through the proxy each storm: its first read is under the storm too.
            let ledger = ledger_via(None, &rig.kubeconfig).await;
            let at = format!("{} ({}): ledger append", fault.name(), shape.name);
            let entries = vec![entry(n), entry(n + 1)];
            n += 2;
            let (appended, row) = weather(&rig, fault, shape, &at, || ledger.append(entries.clone())).await;
            rows.push(row);
            assert_eq!(appended.len(), 2, "{at}");
            let expected_seq = reported.last().map_or(1, |e| e.seq + 1);
            assert_eq!(appended[0].seq, expected_seq, "{at}: the append follows the last one reported");
            reported.extend(appended);
            check_ledger(&rig, &reported, &at).await;

            let at = format!("{} ({}): ledger read", fault.name(), shape.name);
            let after = reported.len().saturating_sub(5) as u64;
            let reader = ledger_via(None, &rig.kubeconfig).await;
            let ((tail, summary), row) = weather(&rig, fault, shape, &at, || async {
                let tail = reader.read_since(after).await?;
                let summary = reader.summary().await?;
                Ok((tail, summary))
            })
            .await;
            rows.push(row);
            assert_eq!(tail, reported[after as usize..], "{at}: read_since({after})");
            let mut folded = LedgerSummary::new();
            folded.apply_all(&reported);
            assert_eq!(summary.as_deref(), Some(&folded), "{at}: the summary");
        }
    }
    print(&rows, started);
}

// ---------------------------------------------------------------------------------------------------------
// Lock

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

/// The stage's Lease as the fake holds it: (holder, transitions).
async fn lease_state(rig: &Rig) -> Option<(Option<String>, u64)> {
    let lease = leases(&rig.direct).get_opt(&format!("promote-lock-{LOCK_STAGE}")).await.unwrap()?;
    let spec = &lease.data["spec"];
    let holder = spec["holderIdentity"].as_str().filter(|h| !h.is_empty()).map(str::to_owned);
    Some((holder, spec["leaseTransitions"].as_u64().unwrap_or(0)))
}

async fn lock_via(kubeconfig: &std::path::Path) -> KubernetesLock {
    KubernetesLock::builder()
        .namespace(NAMESPACE)
        .kubeconfig(kubeconfig)
        .lease_duration(Duration::from_secs(2))
        .renew_every(Duration::from_millis(200))
        .poll_every(Duration::from_millis(50))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_acquire_and_release_survive_fault_storms() {
    let rig = rig().await;
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut last_token = 0;
    for fault in faults() {
        for shape in shapes() {
            let at = format!("{} ({}): lock", fault.name(), shape.name);
            let (first, second) = (lock_via(&rig.kubeconfig).await, lock_via(&rig.kubeconfig).await);
            // A lease a failed release left behind runs out after its 2 s: a wait of 8 s outlasts it.
            let acquire = || first.acquire(LOCK_STAGE, "runner-a", LockWait::Wait(Duration::from_secs(8)));
            let (lease, row): (Lease, Row) = weather(&rig, fault, shape, &at, acquire).await;
            rows.push(row);
            assert!(lease.token() > last_token, "{at}: token {} after {last_token}", lease.token());
            last_token = lease.token();
            assert_eq!(
                lease_state(&rig).await,
                Some((Some("runner-a".to_owned()), lease.token())),
                "{at}: the Lease names the one holder, with its token"
            );

            // The second runner, in the same storm, never gets the stage while the first holds it.
            let plan = rig.proxy.storm(fault, shape.every, shape.budget.min(2));
            let contender = tokio::time::timeout(DEADLINE, second.acquire(LOCK_STAGE, "runner-b", LockWait::Fail))
                .await
                .unwrap_or_else(|_| panic!("{at}: the second acquire did not end"));
            rig.proxy.calm();
            match contender {
                Err(Error::Locked { holder, .. }) => assert!(holder.starts_with("runner-a"), "{at}: {holder}"),
                Err(error) => assert!(error.is_retryable(), "{at}: the second runner: {error}"),
                Ok(stolen) => panic!("{at}: runner-b took the stage from runner-a: token {}", stolen.token()),
            }
            let contended = plan.injected.load(Ordering::SeqCst);
            assert_eq!(lease_state(&rig).await.and_then(|(h, _)| h).as_deref(), Some("runner-a"), "{at}");

            // Release, in the storm: the Lease is released, or (every attempt failed) still names runner-a
            // until it runs out; never anyone else.
            let plan = rig.proxy.storm(fault, shape.every, shape.budget.min(2));
            drop(lease);
            let mut released = false;
            for _ in 0..100 {
                match lease_state(&rig).await {
                    Some((None, _)) => {
                        released = true;
                        break;
                    }
                    Some((Some(holder), _)) => assert_eq!(holder, "runner-a", "{at}"),
                    None => panic!("{at}: the Lease was deleted"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            rig.proxy.calm();
            let row = rows.last_mut().unwrap();
            row.injected += contended + plan.injected.load(Ordering::SeqCst);
            if !released {
                row.first.push_str("; release failed, the lease ran out");
            }
        }
    }
    // The storms are over: the stage is free for a runner that waits out what the last one left.
    let lease = lock_via(&rig.kubeconfig)
        .await
        .acquire(LOCK_STAGE, "runner-c", LockWait::Wait(Duration::from_secs(8)))
        .await
        .unwrap();
    assert!(lease.token() > last_token);
    print(&rows, started);
}

// ---------------------------------------------------------------------------------------------------------
// Answers lost after the server acted: the reproducers of what the storms found.

/// A client of the fake that loses the answers of the next `count` requests with `method` whose path
/// contains `path_part`, after the fake served them: what a connection reset after the server acted does.
fn losing_answers(fake: &FakeApiServer, method: &'static str, path_part: &'static str, count: usize) -> kube::Client {
    use tower::ServiceExt as _;
    let router = fake.service();
    let left = Arc::new(AtomicUsize::new(count));
    let service = tower::service_fn(move |request: axum::http::Request<kube::client::Body>| {
        let (router, left) = (router.clone(), left.clone());
        async move {
            let lose = request.method() == method && request.uri().path().contains(path_part);
            let response = router.oneshot(request).await.unwrap_or_else(|never| match never {});
            if lose && left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the answer was lost"));
            }
            Ok(response)
        }
    });
    kube::Client::new(service, "default")
}

fn quiet_fake() -> FakeApiServer {
    FakeApiServer::builder().namespaces(&["default", NAMESPACE]).build()
}

/// Found by the storms (a body cut short on the answer to a segment write): the append was reported failed
/// though the entries were written, and appending them again wrote them twice.
#[tokio::test]
async fn an_append_whose_answer_is_lost_is_reported_as_written() {
    let fake = quiet_fake();
    // The first append creates the segment (POST), the second replaces it (PUT): both answers are lost.
    let client = losing_answers(&fake, "POST", "/configmaps", 1);
    let ledger = KubernetesLedger::builder().namespace(NAMESPACE).name("lost").client(client).build().await.unwrap();
    let first = ledger.append(vec![entry(1)]).await.expect("the create was applied: the append succeeded");
    let client = losing_answers(&fake, "PUT", "/configmaps/lost-000001", 1);
    let ledger = KubernetesLedger::builder().namespace(NAMESPACE).name("lost").client(client).build().await.unwrap();
    let second = ledger.append(vec![entry(2)]).await.expect("the replace was applied: the append succeeded");
    let reader = KubernetesLedger::builder().namespace(NAMESPACE).name("lost").client(all_client(&fake)).build();
    let reported: Vec<LedgerEntry> = first.into_iter().chain(second).collect();
    assert_eq!(reader.await.unwrap().read_since(0).await.unwrap(), reported, "each entry once, as reported");
}

fn all_client(fake: &FakeApiServer) -> kube::Client {
    kube::Client::new(fake.service(), "default")
}

/// When the segment cannot even be read back after a lost answer, the append fails with its outcome unknown,
/// and appending the same entries again returns them as written once, not twice.
#[tokio::test]
async fn an_append_of_unknown_outcome_is_not_written_twice_when_retried() {
    let fake = quiet_fake();
    let ledger = KubernetesLedger::builder()
        .namespace(NAMESPACE)
        .name("unknown")
        .client(losing_answers(&fake, "PUT", "/configmaps/unknown-000001", 1))
        .build()
        .await
        .unwrap();
    let first = ledger.append(vec![entry(1)]).await.unwrap();
    // The reads back after the lost answer fail too: one request and its three retries.
    fake.fail_next(
        4,
        Some(axum::http::Method::GET),
        &format!("/api/v1/namespaces/{NAMESPACE}/configmaps/unknown-000001"),
        promote_k8s::testing::FaultResponse::ServerError(503),
    );
    let error = ledger.append(vec![entry(2)]).await.expect_err("the outcome cannot be known");
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("outcome is unknown"), "{error}");
    let again = ledger.append(vec![entry(2)]).await.expect("the same entries again");
    assert_eq!(again[0].seq, 2, "the entries written by the first attempt, returned as recorded");
    let reader = KubernetesLedger::builder().namespace(NAMESPACE).name("unknown").client(all_client(&fake));
    let all = reader.build().await.unwrap().read_since(0).await.unwrap();
    assert_eq!(all, first.into_iter().chain(again).collect::<Vec<_>>(), "each entry once");
}

/// Found by the storms: an acquire whose answer was lost was reported failed though the Lease was taken, and
/// the stage stayed held by nobody until the lease ran out.
#[tokio::test]
async fn an_acquire_whose_answer_is_lost_holds_the_lease() {
    let fake = quiet_fake();
    for (method, stage) in [("POST", "created"), ("PUT", "taken")] {
        if method == "PUT" {
            // A released Lease exists: taking it is a replace.
            let lock = KubernetesLock::builder().namespace(NAMESPACE).client(all_client(&fake)).build().await.unwrap();
            drop(lock.acquire(stage, "earlier", LockWait::Fail).await.unwrap());
            let released = || async { lease_holder(&fake, stage).await.is_none() };
            for _ in 0..200 {
                if released().await {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(released().await, "the earlier holder let go");
        }
        let lock = KubernetesLock::builder()
            .namespace(NAMESPACE)
            .client(losing_answers(&fake, method, "/leases", 1))
            .build()
            .await
            .unwrap();
        let lease = lock.acquire(stage, "runner-a", LockWait::Fail).await.expect("the write was applied: held");
        assert_eq!(lease_holder(&fake, stage).await.as_deref(), Some("runner-a"), "{method}");
        let other = KubernetesLock::builder().namespace(NAMESPACE).client(all_client(&fake)).build().await.unwrap();
        let refused = other.acquire(stage, "runner-b", LockWait::Fail).await;
        assert!(matches!(refused, Err(Error::Locked { .. })), "{method}: {refused:?}");
        drop(lease);
    }
}

async fn lease_holder(fake: &FakeApiServer, stage: &str) -> Option<String> {
    let lease = leases(&all_client(fake)).get(&format!("promote-lock-{stage}")).await.unwrap();
    lease.data["spec"]["holderIdentity"].as_str().filter(|h| !h.is_empty()).map(str::to_owned)
}

/// A renewal whose answer was lost left the holder with an old resourceVersion: its next renewal was refused
/// (409) and the holder believed the lease taken over, though nobody had touched it.
#[tokio::test]
async fn a_renewal_whose_answer_is_lost_keeps_the_lease() {
    let fake = quiet_fake();
    let lock = KubernetesLock::builder()
        .namespace(NAMESPACE)
        .client(losing_answers(&fake, "PUT", "/leases/promote-lock-renewed", 1))
        .lease_duration(Duration::from_secs(10))
        .renew_every(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let lease = lock.acquire("renewed", "runner-a", LockWait::Fail).await.unwrap();
    // The first renewal's answer is lost; the renewals after it must still find the lease theirs: wait
    // (bounded) until five more renewals went through, or the holder gave up.
    let version = || async {
        let lease = leases(&all_client(&fake)).get("promote-lock-renewed").await.unwrap();
        lease.metadata.resource_version.unwrap()
    };
    let mut seen = vec![version().await];
    for _ in 0..1000 {
        if seen.len() > 6 || lease.is_lost() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = version().await;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
    }
    assert!(!lease.is_lost(), "a lost answer to its own renewal does not make the holder give up");
    assert!(seen.len() > 6, "the lease went on being renewed: {seen:?}");
    assert_eq!(lease_holder(&fake, "renewed").await.as_deref(), Some("runner-a"));
}

/// Found while building the storms: a 503 whose JSON body is not a Kubernetes `Status` (what a load balancer
/// or an API gateway in front of the API server sends) parsed as a `Status` with code 0 and was classified
/// persistent: never retried, and a promotion would have failed for good on a passing outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_error_without_a_status_body_is_retried() {
    use promote_testkit::proxy::{Action, Proxy};
    let fake = quiet_fake();
    let served = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    let proxy = Proxy::start(&served.addr().to_string(), move |_| {
        if count.fetch_add(1, Ordering::SeqCst) < 2 {
            Action::Respond {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                headers: vec![("content-type".into(), "application/json".into())],
                body: axum::body::Bytes::from_static(GATEWAY_ERROR),
            }
        } else {
            Action::Forward
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let text = served.kubeconfig("default", "fake-token").replace(&served.url(), &format!("http://{}", proxy.host));
    std::fs::write(&kubeconfig, text).unwrap();
    let ledger = ledger_via(None, &kubeconfig).await;
    let appended = ledger.append(vec![entry(1)]).await.expect("two gateway errors are ridden out by the retries");
    assert_eq!(appended[0].seq, 1);
    assert!(answered.load(Ordering::SeqCst) > 2, "the gateway answered the first requests");

    // When the gateway keeps failing, the error says so, and is retryable.
    answered.store(0, Ordering::SeqCst);
    let failing = Proxy::start(&served.addr().to_string(), |_| Action::Respond {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        headers: vec![("content-type".into(), "application/json".into())],
        body: axum::body::Bytes::from_static(GATEWAY_ERROR),
    })
    .await;
    let text = served.kubeconfig("default", "fake-token").replace(&served.url(), &format!("http://{}", failing.host));
    std::fs::write(&kubeconfig, text).unwrap();
    let error = ledger_via(None, &kubeconfig).await.append(vec![entry(2)]).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("503 ServiceUnavailable: no healthy upstream"), "{error}");
    // Found with it: kube's own retry layer retried 429, 503 and 504 up to 15 times beneath promote's
    // retries, its delays doubling to 1000 s (this test took 7 minutes). Now one request and promote's 3
    // retries are all that is sent.
    let sent = failing.requests();
    assert_eq!(sent.len(), 4, "one request and three retries: {sent:?}");
}

const GATEWAY_ERROR: &[u8] = b"{\"message\":\"no healthy upstream\"}";

/// A release refused (409) because a renewal's answer had been lost left the Lease held until it ran out.
#[tokio::test]
async fn a_release_after_a_renewal_whose_answer_is_lost_releases_the_lease() {
    let fake = quiet_fake();
    let lock = KubernetesLock::builder()
        .namespace(NAMESPACE)
        .client(losing_answers(&fake, "PUT", "/leases/promote-lock-released", 1))
        .lease_duration(Duration::from_secs(30))
        .renew_every(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let lease = lock.acquire("released", "runner-a", LockWait::Fail).await.unwrap();
    let version = || async {
        let lease = leases(&all_client(&fake)).get("promote-lock-released").await.unwrap();
        lease.metadata.resource_version.unwrap()
    };
    // The first renewal is applied and its answer lost; the holder is frozen before the next one.
    let acquired = version().await;
    for _ in 0..1000 {
        if version().await != acquired {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lock.suspend_renewals(true);
    assert_ne!(version().await, acquired, "the first renewal went through");
    drop(lease);
    let mut released = false;
    for _ in 0..500 {
        if lease_holder(&fake, "released").await.is_none() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(released, "the holder let go of the Lease at once, not when it ran out");
}
