//! Shared pieces of the promote benchmarks: pipelines over the memory backends, sized on demand.

use std::path::Path;
use std::sync::Arc;

use promote_core::ledger::NewEntry;
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{
    ArtifactRef, BuildRequest, FileLedger, Ledger, MemoryArtifactStore, MemoryDeployer, MemoryLedger, Pipeline, Stage,
    Templates,
};

/// The template every benchmark stage renders: one object naming one artifact by digest.
const TEMPLATE: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: images\ndata:\n  first: {{artifacts.a0.image}}\n";

/// A dev → stg → prd pipeline on memory backends, a store holding `artifacts` images for `commit`, and the
/// request that registers them.
pub fn fan_out(artifacts: usize, commit: &str) -> (Pipeline, BuildRequest) {
    let store = MemoryArtifactStore::new();
    let mut request = BuildRequest::new(commit);
    for index in 0..artifacts {
        let reference: ArtifactRef = format!("memory.local/bench/svc{index}:{}", &commit[..7]).parse().expect("valid");
        let body = format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"n\":{index}}}");
        store.push(reference.clone(), OCI_MANIFEST, body.into_bytes()).expect("push");
        request = request.artifact(format!("a{index}"), reference);
    }
    (pipeline_with(Arc::new(store), Arc::new(MemoryLedger::new())), request)
}

/// The same pipeline shape over a given store and ledger.
pub fn pipeline_with(store: Arc<MemoryArtifactStore>, ledger: Arc<dyn Ledger>) -> Pipeline {
    let templates = Templates::from_sources([("images.yaml", TEMPLATE)]).expect("template");
    let deployer = Arc::new(MemoryDeployer::new());
    let mut builder = Pipeline::builder("bench").store(store).ledger(ledger);
    for name in ["dev", "stg", "prd"] {
        builder = builder.stage(Stage::new(name).templates(templates.clone()).deployer(deployer.clone()));
    }
    builder.build().expect("pipeline")
}

/// Entries copied into the file ledger per append when filling it.
const FILL_BATCH: usize = 5_000;

/// A file ledger at `path` holding at least `records` entries written by real promotions: two-artifact builds
/// registered and promoted dev → stg → prd on the memory backends, each step journalled as the engine writes
/// it. They are copied into the file ledger in batches, so filling it does not pay an fsync per record.
/// Returns the open ledger and how many builds were promoted.
pub async fn fill_file_ledger(path: &Path, records: u64) -> (FileLedger, u64) {
    let journal = Arc::new(MemoryLedger::new());
    let store = MemoryArtifactStore::new();
    let pipeline = pipeline_with(Arc::new(store.clone()), journal.clone());
    let mut builds = 0u64;
    while pipeline.view().await.expect("view").head_seq() < records {
        let commit = format!("{builds:040x}");
        let mut request = BuildRequest::new(&commit);
        for service in ["a0", "a1"] {
            let reference: ArtifactRef =
                format!("memory.local/bench/{service}:{}", &commit[33..]).parse().expect("valid");
            let body = format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"build\":{builds}}}");
            store.push(reference.clone(), OCI_MANIFEST, body.into_bytes()).expect("push");
            request = request.artifact(service, reference);
        }
        let build = pipeline.register(request, "ci").await.expect("register");
        for stage in ["dev", "stg", "prd"] {
            pipeline.promote(&build.id, stage, "ci").await.expect("promote");
        }
        builds += 1;
    }
    let ledger = FileLedger::open(path).await.expect("open the file ledger");
    for batch in journal.read_since(0).await.expect("read the journal").chunks(FILL_BATCH) {
        let entries = batch
            .iter()
            .map(|e| NewEntry { at: e.at, actor: e.actor.clone(), fence: e.fence.clone(), event: e.event.clone() })
            .collect();
        ledger.append(entries).await.expect("append");
    }
    (ledger, builds)
}
