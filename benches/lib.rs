//! Shared pieces of the promote benchmarks: pipelines over the memory backends, sized on demand.

use std::sync::Arc;

use promote_core::manifest::OCI_MANIFEST;
use promote_core::{
    ArtifactRef, BuildRequest, Ledger, MemoryArtifactStore, MemoryDeployer, MemoryLedger, Pipeline, Stage, Templates,
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
