//! The core's own backends run the conformance suites.

use std::collections::BTreeMap;
use std::sync::Arc;

use promote_core::conformance;
use promote_core::manifest::{OCI_INDEX, OCI_MANIFEST};
use promote_core::{
    ArtifactRef, FileLedger, FileLock, MemoryArtifactStore, MemoryConfigSource, MemoryDeployer, MemoryLedger,
    MemoryLock,
};

fn push(
    store: &MemoryArtifactStore,
    reference: &str,
    media_type: &str,
    body: &str,
) -> (ArtifactRef, promote_core::Digest) {
    let reference: ArtifactRef = reference.parse().unwrap();
    let artifact = store.push(reference.clone(), media_type, body.as_bytes().to_vec()).unwrap();
    (reference, artifact.digest)
}

async fn memory_store(immutable: bool) {
    let store = MemoryArtifactStore::new().with_immutable_tags(immutable);
    let (image, image_digest) = push(&store, "memory.local/shop/web:a1", OCI_MANIFEST, "{\n   \"schemaVersion\": 2 }");
    let (other_image, other_digest) =
        push(&store, "memory.local/shop/web:b2", OCI_MANIFEST, "{\"schemaVersion\":2,\"x\":1}");
    let (_, child) =
        push(&store, "memory.local/shop/web:amd64", OCI_MANIFEST, "{\"schemaVersion\":2,\"arch\":\"amd64\"}");
    let index_body = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_INDEX}\",\"manifests\":[{{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{child}\",\"size\":35}}]}}"
    );
    let (index, index_digest) = push(&store, "memory.local/shop/web:multi", OCI_INDEX, &index_body);
    let commit = "3f2c1a9e5b7d";
    let revised =
        format!("{{\"schemaVersion\":2,\"annotations\":{{\"org.opencontainers.image.revision\":\"{commit}\"}}}}");
    let (revised, _) = push(&store, "memory.local/shop/web:revised", OCI_MANIFEST, &revised);
    let fixture =
        conformance::StoreFixture::new(Arc::new(store), (image, image_digest), (other_image, other_digest), "conf")
            .with_index(index, index_digest)
            .with_other_repository("memory.local/shop/web-promoted:x".parse().unwrap())
            .with_revision(revised, commit);
    conformance::artifact_store(fixture).await;
}

#[tokio::test]
async fn memory_store_passes() {
    memory_store(false).await;
}

#[tokio::test]
async fn immutable_memory_store_passes() {
    memory_store(true).await;
}

#[tokio::test]
async fn memory_config_source_passes() {
    let source = MemoryConfigSource::new("vault");
    source.set("prd", "REPLICAS", "3").set_secret("prd", "DB_PASSWORD", "old-pass").set_secret(
        "prd",
        "DB_PASSWORD",
        "new-pass",
    );
    conformance::config_source(conformance::ConfigFixture {
        source: Arc::new(source),
        stage: "prd".into(),
        plain: BTreeMap::from([("REPLICAS".into(), "3".into())]),
        secrets: BTreeMap::from([("DB_PASSWORD".into(), "new-pass".into())]),
        unknown_stage: "qa".into(),
        older_version: Some(("DB_PASSWORD".into(), "1".into(), "old-pass".into())),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_ledger_passes() {
    conformance::ledger(Arc::new(MemoryLedger::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_ledger_passes() {
    let dir = tempfile::tempdir().unwrap();
    conformance::ledger(Arc::new(FileLedger::open(dir.path().join("ledger.jsonl")).await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_lock_passes() {
    let lock = MemoryLock::new();
    let revoker = lock.clone();
    let fixture = conformance::LockFixture::new(Arc::new(lock), "").losing_with(move |stage| {
        let revoker = revoker.clone();
        async move {
            assert!(revoker.revoke(&stage), "the stage was held");
        }
    });
    conformance::environment_lock(fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_lock_passes() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().to_owned();
    // A file lock is lost when its lock file is removed (or replaced).
    let fixture = conformance::LockFixture::new(Arc::new(FileLock::new(dir.path())), "").losing_with(move |stage| {
        let file = locks.join(format!("{stage}.lock"));
        async move { std::fs::remove_file(file).unwrap() }
    });
    conformance::environment_lock(fixture).await;
}

#[tokio::test]
async fn memory_deployer_passes() {
    conformance::deployer(Arc::new(MemoryDeployer::new()), "dev").await;
}

#[tokio::test]
async fn built_in_gates_pass() {
    use promote_core::gate::{Composite, MetricGate, SemverGate, SoakGate, WindowGate};
    use promote_core::{ApprovalGate, ApprovalPolicy, Gate};
    let now: chrono::DateTime<chrono::Utc> = "2026-03-04T10:00:00Z".parse().unwrap();
    let soak: Arc<dyn Gate> = Arc::new(SoakGate::new("soak", std::time::Duration::from_secs(3600)));
    let gates: Vec<Arc<dyn Gate>> = vec![
        Arc::new(ApprovalGate::new("approval", ApprovalPolicy::promoters(["alice"]))),
        soak.clone(),
        Arc::new(SemverGate::new("semver")),
        Arc::new(MetricGate::parse("metric", "coverage >= 80").unwrap()),
        Arc::new(WindowGate::new("window", "Europe/Berlin").unwrap()),
        Arc::new(Composite::all("all", vec![soak.clone()])),
        Arc::new(Composite::not("not", soak)),
    ];
    for gate in gates {
        conformance::gate(gate, now).await;
    }
}

/// Gates that act run the clauses for acting gates, by their capabilities: a command and an HTTP check
/// against a loopback server.
#[cfg(feature = "http-gate")]
#[tokio::test]
async fn acting_gates_pass() {
    use promote_core::Gate;
    use promote_core::gate::{CommandGate, HttpGate};
    let now: chrono::DateTime<chrono::Utc> = "2026-03-04T10:00:00Z".parse().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        }
    });
    let http = HttpGate::new("smoke", &format!("http://{address}/healthz?build={{build}}"))
        .unwrap()
        .allow_private_addresses(true);
    let gates: Vec<Arc<dyn Gate>> = vec![
        Arc::new(CommandGate::new("passes", "true")),
        Arc::new(CommandGate::new("fails", "false")),
        Arc::new(http),
    ];
    for gate in gates {
        assert!(!gate.capabilities().side_effect_free, "{} acts", gate.name());
        conformance::gate(gate, now).await;
    }
}

#[test]
fn clocks_pass() {
    conformance::clock(Arc::new(promote_core::SystemClock));
    conformance::clock(Arc::new(promote_core::ManualClock::at("2026-01-01T00:00:00Z".parse().unwrap())));
}
