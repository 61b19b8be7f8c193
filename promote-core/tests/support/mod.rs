//! A test harness: the memory backends wrapped so that any one of them can fail or hang on demand.
#![allow(dead_code, unused_imports)]

use std::sync::Arc;

use promote_core::ledger::NewEntry;
use promote_core::manifest::{OCI_MANIFEST, REVISION_ANNOTATION};
use promote_core::{
    ArtifactRef, Build, BuildRequest, Deployer, Error, MemoryArtifactStore, MemoryConfigSource, MemoryDeployer,
    MemoryLedger, MemoryLock, Pipeline, Stage, Templates,
};

pub(crate) use promote_core::testing::faults::{
    FaultMode as Mode, FaultPoint as Point, Faults, FaultyConfig, FaultyDeployer, FaultyGate, FaultyLedger, FaultyStore,
};

pub(crate) const SECRET_VALUE: &str = "s3cr3t-db-password-do-not-leak";

pub(crate) const TEMPLATE: &str = "apiVersion: apps/v1
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
pub(crate) struct Harness {
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

pub(crate) fn oci_manifest(commit: &str, salt: &str) -> Vec<u8> {
    format!(
        "{{\n    \"schemaVersion\": 2,\n    \"mediaType\": \"{OCI_MANIFEST}\",\n    \"annotations\": {{ \"{REVISION_ANNOTATION}\": \"{commit}\", \"salt\": \"{salt}\" }}\n}}"
    )
    .into_bytes()
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_stages(|stage| stage)
    }

    /// Builds the pipeline, letting a test adjust each stage.
    pub(crate) fn with_stages(adjust: impl Fn(Stage) -> Stage) -> Self {
        let faults = Arc::new(Faults::default());
        let store = Arc::new(FaultyStore::new(MemoryArtifactStore::new(), faults.clone()));
        let deployer = MemoryDeployer::new();
        let ledger = MemoryLedger::new();
        let config = MemoryConfigSource::new("vault");
        for stage in ["dev", "stg", "prd"] {
            config.set(stage, "REPLICAS", "2").set_secret(stage, "DB_PASSWORD", SECRET_VALUE);
        }
        let lock = MemoryLock::new();
        let entry_gate = Arc::new(FaultyGate::new(Point::EntryGate, faults.clone()));
        let verify_gate = Arc::new(FaultyGate::new(Point::VerifyGate, faults.clone()));
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
    pub(crate) async fn build(&self, commit: &str) -> Build {
        let reference: ArtifactRef = format!("memory.local/shop/web:{}", &commit[..7]).parse().unwrap();
        self.store.inner.push(reference.clone(), OCI_MANIFEST, oci_manifest(commit, commit)).unwrap();
        self.pipeline.register(BuildRequest::new(commit).artifact("web", reference).author("dana"), "ci").await.unwrap()
    }

    pub(crate) fn entries(&self) -> usize {
        self.ledger.len()
    }
}

/// Opens the file ledger at `path` and expects it refused as corrupt at `line`, for a reason that mentions
/// `reason`.
pub(crate) async fn assert_refused_at(path: &std::path::Path, line: u64, reason: &str) {
    match promote_core::FileLedger::open(path).await {
        Err(Error::LedgerCorrupt { line: at, reason: why, .. }) => {
            assert_eq!(at, line, "the error names the damaged line: {why}");
            assert!(why.contains(reason), "{why}");
        }
        other => panic!("damage at line {line} ({reason}) must refuse the ledger, got {other:?}"),
    }
}

/// An entry placing hold number `n` on prd, the simplest entry to fill a ledger with.
pub(crate) fn hold_entry(n: usize, reason: String) -> NewEntry {
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
