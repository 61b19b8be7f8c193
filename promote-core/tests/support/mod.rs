//! A test harness: the memory backends wrapped so that any one of them can fail or hang on demand.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use promote_core::config::{ConfigRequest, SourceCapabilities};
use promote_core::deploy::{ApplyMode, Change, DeployStatus, DeployerCapabilities};
use promote_core::gate::{GateCapabilities, GateContext, GateReport};
use promote_core::ledger::{LedgerCapabilities, LedgerEntry, NewEntry, Verdict};
use promote_core::manifest::{OCI_MANIFEST, REVISION_ANNOTATION};
use promote_core::progress::Progress;
use promote_core::{
    ApprovalPolicy, Artifact, ArtifactRef, ArtifactStore, Build, BuildRequest, Bundle, ConfigSet, ConfigSource,
    Deployer, Error, ErrorClass, Gate, Ledger, MemoryArtifactStore, MemoryConfigSource, MemoryDeployer, MemoryLedger,
    MemoryLock, Pipeline, Result, Stage, StoreCapabilities, Templates,
};

/// Where a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    EntryGate,
    StorePromote,
    ConfigLoad,
    DeployApply,
    DeployWait,
    VerifyGate,
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Return a temporary backend error.
    Error,
    /// Never return: the caller is "killed" by dropping the future.
    Hang,
    /// Return an error that no re-run can get past (an immutable tag held by another digest).
    Refuse,
}

#[derive(Debug, Default)]
pub struct Faults {
    point: Mutex<Option<(Point, Mode)>>,
    /// Fail (or hang) the ledger append with this 1-based number, counted from when it was set.
    append: Mutex<Option<(usize, Mode)>>,
    appends: AtomicUsize,
}

impl Faults {
    pub fn set(&self, point: Point, mode: Mode) {
        *self.point.lock().unwrap() = Some((point, mode));
    }

    pub fn fail_append(&self, nth: usize, mode: Mode) {
        self.appends.store(0, Ordering::SeqCst);
        *self.append.lock().unwrap() = Some((nth, mode));
    }

    /// Ledger appends since `fail_append` was last called.
    pub fn appends(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }

    pub fn clear(&self) {
        *self.point.lock().unwrap() = None;
        *self.append.lock().unwrap() = None;
    }

    async fn hit(&self, point: Point) -> Result<()> {
        let fault = *self.point.lock().unwrap();
        match fault {
            Some((p, Mode::Error)) if p == point => {
                Err(Error::backend("faulty", ErrorClass::Temporary, format!("injected fault at {point:?}")))
            }
            Some((p, Mode::Hang)) if p == point => std::future::pending().await,
            Some((p, Mode::Refuse)) if p == point => {
                Err(Error::backend("faulty", ErrorClass::Persistent, format!("injected refusal at {point:?}")))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug)]
pub struct FaultyStore {
    pub inner: MemoryArtifactStore,
    pub faults: Arc<Faults>,
    /// After a promote, move the target tag to this digest (a registry changing under us).
    pub move_after_promote: Mutex<Option<promote_core::Digest>>,
}

#[async_trait]
impl ArtifactStore for FaultyStore {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn resolve(&self, reference: &ArtifactRef) -> Result<Artifact> {
        self.inner.resolve(reference).await
    }
    async fn promote(&self, source: &ArtifactRef, target: &ArtifactRef) -> Result<Artifact> {
        self.faults.hit(Point::StorePromote).await?;
        let artifact = self.inner.promote(source, target).await?;
        if let Some(moved) = self.move_after_promote.lock().unwrap().as_ref() {
            self.inner.force_tag(target, Some(moved));
        }
        Ok(artifact)
    }
    async fn exists(&self, reference: &ArtifactRef) -> Result<bool> {
        self.inner.exists(reference).await
    }
}

#[derive(Debug)]
pub struct FaultyConfig {
    pub inner: MemoryConfigSource,
    pub faults: Arc<Faults>,
}

#[async_trait]
impl ConfigSource for FaultyConfig {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> SourceCapabilities {
        self.inner.capabilities()
    }
    async fn load(&self, request: &ConfigRequest) -> Result<ConfigSet> {
        self.faults.hit(Point::ConfigLoad).await?;
        self.inner.load(request).await
    }
}

#[derive(Debug)]
pub struct FaultyDeployer {
    pub inner: MemoryDeployer,
    pub faults: Arc<Faults>,
}

#[async_trait]
impl Deployer for FaultyDeployer {
    fn capabilities(&self) -> DeployerCapabilities {
        self.inner.capabilities()
    }
    async fn apply(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>> {
        if mode == ApplyMode::Apply {
            self.faults.hit(Point::DeployApply).await?;
        }
        self.inner.apply(bundle, mode).await
    }
    async fn wait_healthy(&self, bundle: &Bundle, timeout: Duration, progress: &Progress) -> Result<String> {
        self.faults.hit(Point::DeployWait).await?;
        self.inner.wait_healthy(bundle, timeout, progress).await
    }
    async fn current(&self, stage: &str) -> Result<Option<Bundle>> {
        self.inner.current(stage).await
    }
    async fn status(&self, stage: &str) -> Result<DeployStatus> {
        self.inner.status(stage).await
    }
}

/// A gate that passes unless a fault strikes it (or it is told to fail).
#[derive(Debug)]
pub struct FaultyGate {
    pub point: Point,
    pub faults: Arc<Faults>,
    pub verdict: Mutex<Verdict>,
    /// When set, only this build gets `verdict`; every other build passes.
    pub only_for: Mutex<Option<promote_core::BuildId>>,
}

#[async_trait]
impl Gate for FaultyGate {
    fn name(&self) -> &str {
        match self.point {
            Point::VerifyGate => "smoke",
            _ => "checks",
        }
    }
    fn kind(&self) -> &str {
        "test"
    }
    fn capabilities(&self) -> GateCapabilities {
        GateCapabilities::pure()
    }
    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        None
    }
    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        self.faults.hit(self.point).await?;
        let applies = self.only_for.lock().unwrap().as_ref().is_none_or(|build| *build == context.build.id);
        let verdict = if applies { self.verdict.lock().unwrap().clone() } else { Verdict::Pass };
        Ok(GateReport::new(verdict).with("checked", true))
    }
}

#[derive(Debug)]
pub struct FaultyLedger {
    pub inner: MemoryLedger,
    pub faults: Arc<Faults>,
}

#[async_trait]
impl Ledger for FaultyLedger {
    fn capabilities(&self) -> LedgerCapabilities {
        self.inner.capabilities()
    }
    async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<LedgerEntry>> {
        let fault = *self.faults.append.lock().unwrap();
        if let Some((nth, mode)) = fault {
            let count = self.faults.appends.fetch_add(1, Ordering::SeqCst) + 1;
            if count == nth {
                match mode {
                    Mode::Error => {
                        return Err(Error::backend("faulty", ErrorClass::Temporary, "injected ledger fault"));
                    }
                    Mode::Hang => std::future::pending::<()>().await,
                    Mode::Refuse => {
                        return Err(Error::backend("faulty", ErrorClass::Persistent, "injected ledger refusal"));
                    }
                }
            }
        }
        self.inner.append(entries).await
    }
    async fn read_since(&self, after: u64) -> Result<Vec<LedgerEntry>> {
        self.inner.read_since(after).await
    }
}

pub const SECRET_VALUE: &str = "s3cr3t-db-password-do-not-leak";

pub const TEMPLATE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{config.REPLICAS}}
  template:
    spec:
      containers:
        - name: web
          image: {{artifacts.web.image}}
---
apiVersion: v1
kind: Secret
metadata:
  name: db
data:
  password: {{b64enc config.DB_PASSWORD}}
";

/// The harness: a dev → stg → prd pipeline over faulty wrappers of the memory backends.
pub struct Harness {
    pub pipeline: Pipeline,
    pub store: Arc<FaultyStore>,
    pub deployer: MemoryDeployer,
    pub ledger: MemoryLedger,
    pub config: MemoryConfigSource,
    pub faults: Arc<Faults>,
    pub lock: MemoryLock,
    pub entry_gate: Arc<FaultyGate>,
    pub verify_gate: Arc<FaultyGate>,
}

pub fn oci_manifest(commit: &str, salt: &str) -> Vec<u8> {
    format!(
        "{{\n    \"schemaVersion\": 2,\n    \"mediaType\": \"{OCI_MANIFEST}\",\n    \"annotations\": {{ \"{REVISION_ANNOTATION}\": \"{commit}\", \"salt\": \"{salt}\" }}\n}}"
    )
    .into_bytes()
}

impl Harness {
    pub fn new() -> Self {
        Self::with_stages(|stage| stage)
    }

    /// Builds the pipeline, letting a test adjust each stage.
    pub fn with_stages(adjust: impl Fn(Stage) -> Stage) -> Self {
        let faults = Arc::new(Faults::default());
        let store = Arc::new(FaultyStore {
            inner: MemoryArtifactStore::new(),
            faults: faults.clone(),
            move_after_promote: Mutex::new(None),
        });
        let deployer = MemoryDeployer::new();
        let ledger = MemoryLedger::new();
        let config = MemoryConfigSource::new("vault");
        for stage in ["dev", "stg", "prd"] {
            config.set(stage, "REPLICAS", "2").set_secret(stage, "DB_PASSWORD", SECRET_VALUE);
        }
        let lock = MemoryLock::new();
        let entry_gate = Arc::new(FaultyGate {
            point: Point::EntryGate,
            faults: faults.clone(),
            verdict: Mutex::new(Verdict::Pass),
            only_for: Mutex::new(None),
        });
        let verify_gate = Arc::new(FaultyGate {
            point: Point::VerifyGate,
            faults: faults.clone(),
            verdict: Mutex::new(Verdict::Pass),
            only_for: Mutex::new(None),
        });
        let templates = Templates::from_sources([("app.yaml", TEMPLATE)]).unwrap();
        let faulty_deployer: Arc<dyn Deployer> =
            Arc::new(FaultyDeployer { inner: deployer.clone(), faults: faults.clone() });
        let mut builder = Pipeline::builder("shop")
            .store(store.clone())
            .ledger(Arc::new(FaultyLedger { inner: ledger.clone(), faults: faults.clone() }))
            .lock(Arc::new(lock.clone()));
        for name in ["dev", "stg", "prd"] {
            let stage = Stage::new(name)
                .config_source(FaultyConfig { inner: config.clone(), faults: faults.clone() })
                .templates(templates.clone())
                .deployer(faulty_deployer.clone())
                .entry_gate(entry_gate.clone())
                .verify_gate(verify_gate.clone());
            builder = builder.stage(adjust(stage));
        }
        Harness {
            pipeline: builder.build().unwrap(),
            store,
            deployer,
            ledger,
            config,
            faults,
            lock,
            entry_gate,
            verify_gate,
        }
    }

    /// Pushes a web image for `commit` and registers the build.
    pub async fn build(&self, commit: &str) -> Build {
        let reference: ArtifactRef = format!("memory.local/shop/web:{}", &commit[..7]).parse().unwrap();
        self.store.inner.push(reference.clone(), OCI_MANIFEST, oci_manifest(commit, commit)).unwrap();
        self.pipeline.register(BuildRequest::new(commit).artifact("web", reference).author("dana"), "ci").await.unwrap()
    }

    pub fn entries(&self) -> usize {
        self.ledger.len()
    }
}

/// Opens the file ledger at `path` and expects it refused as corrupt at `line`, for a reason that mentions
/// `reason`.
pub async fn assert_refused_at(path: &std::path::Path, line: u64, reason: &str) {
    match promote_core::FileLedger::open(path).await {
        Err(Error::LedgerCorrupt { line: at, reason: why, .. }) => {
            assert_eq!(at, line, "the error names the damaged line: {why}");
            assert!(why.contains(reason), "{why}");
        }
        other => panic!("damage at line {line} ({reason}) must refuse the ledger, got {other:?}"),
    }
}

/// An entry placing hold number `n` on prd, the simplest entry to fill a ledger with.
pub fn hold_entry(n: usize, reason: String) -> NewEntry {
    use promote_core::ledger::{Hold, HoldScope, LedgerEvent};
    NewEntry {
        at: chrono::Utc::now(),
        actor: "ops".into(),
        fence: None,
        event: LedgerEvent::HoldPlaced {
            hold: Hold {
                id: format!("hold-{n}"),
                stage: "prd".into(),
                scope: HoldScope::Auto,
                reason,
                placed_by: "ops".into(),
                at: chrono::Utc::now(),
            },
        },
    }
}
