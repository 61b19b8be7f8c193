//! The proof that runners on many machines can share one stage: 8 promoters, each with its own
//! `kube::Client` and HTTP connection to one fake API server on loopback, race to promote builds into one
//! stage through `KubernetesLock` and `KubernetesLedger` (memory store and memory deployer beside them).
//!
//! - An observer outside the lock (a wrapper counting live leases) sees at most one holder at a time, and
//!   the tokens it sees handed out strictly increase.
//! - Every promotion that reported success is in the ledger exactly once, finished successfully, under
//!   strictly increasing fencing tokens; the chain verifies.
//! - A holder frozen mid-deploy (its renewals stopped) loses its lease, the next runner takes over, and the
//!   frozen one, thawed, stops with `LockLost` before its next side effect: the ledger shows its interrupted
//!   step and nothing after it.
//!
//! Rounds per promoter: 12 by default (about a minute for the debug build on 2 shared cores), 50 with
//! `RELIABILITY_LONG=1`.
#![cfg(feature = "testing")]

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use promote_core::deploy::{ApplyMode, Bundle, Change, DeployStatus, DeployerCapabilities};
use promote_core::ledger::{FinalState, LedgerEvent, PromotionId, Step};
use promote_core::lock::{EnvironmentLock, Lease, LockWait};
use promote_core::manifest::OCI_MANIFEST;
use promote_core::progress::Progress;
use promote_core::{
    BuildId, BuildRequest, Deployer, Error, Ledger, ManualClock, MemoryArtifactStore, MemoryDeployer, Pipeline, Result,
    Stage, Templates,
};
use promote_k8s::testing::{FakeApiServer, ServedApiServer};
use promote_k8s::{KubernetesLedger, KubernetesLock};
use tokio::sync::Notify;

const NAMESPACE: &str = "promote-system";
const STAGE: &str = "dev";
const TEMPLATE: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web
data:
  image: {{artifacts.web.image}}
";

/// Counts live leases from outside the lock implementation.
#[derive(Debug, Default)]
struct Observer {
    holders: AtomicUsize,
    most_at_once: AtomicUsize,
    tokens: Mutex<Vec<u64>>,
}

/// A lock wrapper that tells the observer when a lease is handed out and when it is dropped.
#[derive(Debug)]
struct Observed {
    inner: KubernetesLock,
    observer: Arc<Observer>,
}

/// Dropped with the wrapping lease: the holder let go (the inner lease is released right after).
struct Held {
    observer: Arc<Observer>,
    _inner: Arc<Lease>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.observer.holders.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl EnvironmentLock for Observed {
    async fn acquire(&self, stage: &str, holder: &str, wait: LockWait) -> Result<Lease> {
        let lease = Arc::new(self.inner.acquire(stage, holder, wait).await?);
        let now = self.observer.holders.fetch_add(1, Ordering::SeqCst) + 1;
        self.observer.most_at_once.fetch_max(now, Ordering::SeqCst);
        self.observer.tokens.lock().unwrap().push(lease.token());
        let probe = lease.clone();
        let held: Box<dyn Any + Send + Sync> =
            Box::new(Held { observer: self.observer.clone(), _inner: lease.clone() });
        Ok(Lease::new(stage, holder, lease.token(), held).lost_if(move || probe.is_lost()))
    }
}

/// A deployer whose applies wait until the test lets them go (a runner frozen mid-deploy).
#[derive(Debug, Clone)]
struct Frozen {
    inner: MemoryDeployer,
    entered: Arc<Notify>,
    thaw: Arc<Notify>,
}

#[async_trait]
impl Deployer for Frozen {
    fn capabilities(&self) -> DeployerCapabilities {
        self.inner.capabilities()
    }
    async fn apply(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>> {
        if mode == ApplyMode::Apply {
            self.entered.notify_one();
            self.thaw.notified().await;
        }
        self.inner.apply(bundle, mode).await
    }
    async fn wait_healthy(&self, bundle: &Bundle, timeout: Duration, progress: &Progress) -> Result<String> {
        self.inner.wait_healthy(bundle, timeout, progress).await
    }
    async fn current(&self, stage: &str) -> Result<Option<Bundle>> {
        self.inner.current(stage).await
    }
    async fn status(&self, stage: &str) -> Result<DeployStatus> {
        self.inner.status(stage).await
    }
}

/// A client with its own connection to the served fake.
fn own_client(served: &ServedApiServer) -> kube::Client {
    kube::Client::try_from(kube::Config::new(served.url().parse().unwrap())).unwrap()
}

async fn served_fake() -> (FakeApiServer, ServedApiServer) {
    let fake = FakeApiServer::builder().namespaces(&["default", NAMESPACE]).history_limit(200).build();
    let served = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (fake, served)
}

struct Promoter {
    pipeline: Pipeline,
    lock: KubernetesLock,
}

async fn promoter(
    served: &ServedApiServer,
    store: &MemoryArtifactStore,
    deployer: Arc<dyn Deployer>,
    observer: Option<Arc<Observer>>,
    clock: Option<ManualClock>,
) -> Promoter {
    let client = own_client(served);
    let mut lock = KubernetesLock::builder()
        .namespace(NAMESPACE)
        .lease_duration(Duration::from_secs(10))
        .renew_every(Duration::from_millis(200))
        .poll_every(Duration::from_millis(25))
        .client(client.clone());
    if let Some(clock) = clock {
        lock = lock.clock(Arc::new(clock));
    }
    let lock = lock.build().await.unwrap();
    let ledger = KubernetesLedger::builder().namespace(NAMESPACE).name("shop").client(client).build().await.unwrap();
    let stage = Stage::new(STAGE)
        .templates(Templates::from_sources([("app.yaml", TEMPLATE)]).unwrap())
        .deployer(deployer)
        .lock_wait(LockWait::Wait(Duration::from_secs(300)));
    let builder = Pipeline::builder("shop").store(Arc::new(store.clone())).ledger(Arc::new(ledger)).stage(stage);
    let builder = match observer {
        Some(observer) => builder.lock(Observed { inner: lock.clone(), observer }),
        None => builder.lock(lock.clone()),
    };
    Promoter { pipeline: builder.build().unwrap(), lock }
}

/// Registers a build of `web` whose commit is `commit` (40 hex digits).
async fn build(pipeline: &Pipeline, store: &MemoryArtifactStore, commit: &str) -> BuildId {
    let body =
        format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"c\":\"{commit}\"}}}}");
    let reference = format!("memory.local/shop/web:{}", &commit[..12]);
    store.push(reference.parse().unwrap(), OCI_MANIFEST, body.into_bytes()).unwrap();
    pipeline.register(BuildRequest::new(commit).artifact("web", reference.parse().unwrap()), "ci").await.unwrap().id
}

fn rounds() -> usize {
    if std::env::var_os("RELIABILITY_LONG").is_some_and(|v| v == "1") { 50 } else { 12 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_promoters_race_for_one_stage() {
    let (fake, served) = served_fake().await;
    let store = MemoryArtifactStore::new();
    let deployer = MemoryDeployer::new();
    let observer = Arc::new(Observer::default());
    let rounds = rounds();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for runner in 0..8usize {
        let promoter = promoter(&served, &store, Arc::new(deployer.clone()), Some(observer.clone()), None).await;
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut succeeded = Vec::new();
            for round in 0..rounds {
                let commit = format!("{runner:02x}{round:06x}{}", "a".repeat(32));
                let build = build(&promoter.pipeline, &store, &commit).await;
                let actor = format!("runner-{runner}");
                match promoter.pipeline.promote(&build, STAGE, &actor).await {
                    Ok(record) => {
                        assert!(record.state.succeeded(), "{:?}", record.state);
                        succeeded.push((record.id.clone(), record.fencing_tokens.clone()));
                    }
                    Err(error) => panic!("runner {runner} round {round}: {error}"),
                }
            }
            succeeded
        }));
    }
    let mut succeeded = Vec::new();
    for task in tasks {
        succeeded.extend(task.await.expect("promoter task"));
    }
    let elapsed = started.elapsed();
    let requests = fake.requests().len();
    println!(
        "{} promotions by 8 promoters in {elapsed:?}: {requests} API requests ({:.1} per promotion)",
        succeeded.len(),
        requests as f64 / succeeded.len() as f64
    );

    assert_eq!(observer.most_at_once.load(Ordering::SeqCst), 1, "at most one holder at a time");
    let tokens = observer.tokens.lock().unwrap().clone();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens handed out strictly increase: {tokens:?}");
    assert_eq!(succeeded.len(), 8 * rounds);

    let reader = KubernetesLedger::builder().namespace(NAMESPACE).name("shop").client(own_client(&served));
    let entries = reader.build().await.unwrap().read_since(0).await.unwrap(); // verifies the whole chain
    let mut finished: HashMap<&PromotionId, usize> = HashMap::new();
    let mut token_of_promotion: Vec<u64> = Vec::new();
    for entry in &entries {
        match &entry.event {
            LedgerEvent::PromotionFinished { promotion, state: FinalState::Succeeded } => {
                *finished.entry(promotion).or_default() += 1;
            }
            LedgerEvent::PromotionStarted { .. } => {
                token_of_promotion.push(entry.fence.as_ref().expect("a promotion runs under a fence").token);
            }
            _ => {}
        }
    }
    for (id, _) in &succeeded {
        assert_eq!(finished.get(id), Some(&1), "{id} succeeded and is in the ledger exactly once");
    }
    assert_eq!(finished.len(), succeeded.len(), "nothing else finished successfully");
    assert!(
        token_of_promotion.windows(2).all(|w| w[0] < w[1]),
        "promotions started under strictly increasing tokens: {token_of_promotion:?}"
    );
}

fn leases(served: &ServedApiServer) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "coordination.k8s.io".into(),
        version: "v1".into(),
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        plural: "leases".into(),
    };
    Api::namespaced_with(own_client(served), NAMESPACE, &resource)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_holder_loses_its_lease_and_stops_before_its_next_side_effect() {
    let (_fake, served) = served_fake().await;
    let store = MemoryArtifactStore::new();
    let clock = ManualClock::at("2026-11-30T10:00:00Z".parse().unwrap());
    let deployer = MemoryDeployer::new();
    let frozen = Frozen { inner: deployer.clone(), entered: Arc::new(Notify::new()), thaw: Arc::new(Notify::new()) };
    let a = promoter(&served, &store, Arc::new(frozen.clone()), None, Some(clock.clone())).await;
    let b = promoter(&served, &store, Arc::new(deployer.clone()), None, Some(clock.clone())).await;
    let build_a = build(&a.pipeline, &store, &format!("aa{}", "1".repeat(38))).await;
    let build_b = build(&b.pipeline, &store, &format!("bb{}", "2".repeat(38))).await;

    let frozen_lock = a.lock.clone();
    let a_run = tokio::spawn(async move { a.pipeline.promote(&build_a, STAGE, "runner-a").await });
    tokio::time::timeout(Duration::from_secs(60), frozen.entered.notified()).await.expect("runner a deploys");
    frozen_lock.suspend_renewals(true);

    let b_run = tokio::spawn(async move { b.pipeline.promote(&build_b, STAGE, "runner-b").await });
    // Runner b looks at the Lease (every 25 ms), then sees it unchanged for longer than its duration.
    tokio::time::sleep(Duration::from_millis(500)).await;
    clock.advance(chrono::Duration::seconds(11));
    let b_record = tokio::time::timeout(Duration::from_secs(60), b_run).await.expect("b finishes").unwrap().unwrap();
    assert!(b_record.state.succeeded());
    let lease = leases(&served).get("promote-lock-dev").await.unwrap();
    assert_eq!(lease.data["spec"]["holderIdentity"], serde_json::Value::Null, "b released it");

    // Runner a wakes up in the middle of its deploy.
    frozen_lock.suspend_renewals(false);
    frozen.thaw.notify_one();
    let error = tokio::time::timeout(Duration::from_secs(60), a_run).await.expect("a stops").unwrap().unwrap_err();
    let Error::LockLost { stage, holder, token } = error.root() else { panic!("expected LockLost, got {error:?}") };
    assert_eq!((stage.as_str(), holder.as_str()), (STAGE, "runner-a"));
    assert!(*token < b_record.fencing_tokens[0], "b took over with a newer token");

    let reader = KubernetesLedger::builder().namespace(NAMESPACE).name("shop").client(own_client(&served));
    let entries = reader.build().await.unwrap().read_since(0).await.unwrap();
    let by_a: Vec<_> = entries.iter().filter(|e| e.fence.as_ref().is_some_and(|f| f.token == *token)).collect();
    let last = by_a.last().expect("runner a journalled its steps");
    assert!(
        matches!(&last.event, LedgerEvent::StepStarted { step: Step::Deploy, .. }),
        "runner a's last entry is its interrupted step: {:?}",
        last.event
    );
    let a_promotion = entries
        .iter()
        .find_map(|e| match &e.event {
            LedgerEvent::PromotionStarted { promotion, .. } if e.fence.as_ref().is_some_and(|f| f.token == *token) => {
                Some(promotion.clone())
            }
            _ => None,
        })
        .unwrap();
    let closed_by_b = entries.iter().any(|e| {
        matches!(&e.event, LedgerEvent::PromotionFinished { promotion, state: FinalState::Failed { step: Step::Deploy, .. } }
            if *promotion == a_promotion)
            && e.fence.as_ref().is_some_and(|f| f.token == b_record.fencing_tokens[0])
    });
    assert!(closed_by_b, "the new holder recorded runner a's promotion as abandoned at its deploy step");
}
