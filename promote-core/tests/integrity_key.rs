//! With an integrity key, what the ledger records about config and rendered bundles is keyed: a reader of
//! the ledger cannot test guesses at a low-entropy secret against the config fingerprint or the bundle hash.

use std::sync::Arc;

use promote_core::ledger::LedgerExt;
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{
    BuildRequest, Deployer, IntegrityKey, MemoryArtifactStore, MemoryConfigSource, MemoryDeployer, MemoryLedger,
    Pipeline, Stage, Templates,
};

const TEMPLATE: &str =
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: {{b64enc config.PIN}}\n";

/// Promotes one build to `dev` and returns (record's bundle hash, recorded config fingerprint, deployed hash).
async fn promote(key: Option<IntegrityKey>) -> (String, String, String) {
    let images = MemoryArtifactStore::new();
    let image: promote_core::ArtifactRef = "memory.local/web:abc1234".parse().unwrap();
    images.push(image.clone(), OCI_MANIFEST, br#"{"schemaVersion":2}"#.to_vec()).unwrap();
    let config = MemoryConfigSource::new("vault");
    config.set_secret("dev", "PIN", "1234");
    let deployer = MemoryDeployer::new();
    let ledger = MemoryLedger::new();
    let mut builder = Pipeline::builder("shop").store(Arc::new(images)).ledger(Arc::new(ledger.clone())).stage(
        Stage::new("dev")
            .config_source(config)
            .templates(Templates::from_sources([("secret.yaml", TEMPLATE)]).unwrap())
            .deployer(Arc::new(deployer.clone())),
    );
    if let Some(key) = key {
        builder = builder.integrity_key(key);
    }
    let pipeline = builder.build().unwrap();
    let build = pipeline.register(BuildRequest::new("abc1234").artifact("web", image), "ci").await.unwrap();
    let record = pipeline.promote(&build.id, "dev", "ci").await.unwrap();
    let fingerprint = record.config_fingerprint.clone().expect("the render step records the config fingerprint");
    let deployed = deployer.current("dev").await.unwrap().unwrap().hash().to_owned();
    assert!(!ledger.view().await.unwrap().promotions().is_empty());
    (record.bundle_hash.unwrap(), fingerprint, deployed)
}

#[tokio::test]
async fn a_key_keys_the_fingerprint_and_the_bundle_hash() {
    let (plain_bundle, plain_fingerprint, plain_deployed) = promote(None).await;
    assert!(plain_bundle.starts_with("sha256:") && plain_fingerprint.starts_with("sha256:"));
    assert_eq!(plain_bundle, plain_deployed);

    let key = IntegrityKey::new(b"an integrity key of 32 bytes!!!!".to_vec()).unwrap();
    let (bundle, fingerprint, deployed) = promote(Some(key.clone())).await;
    assert!(bundle.starts_with("hmac-sha256:") && fingerprint.starts_with("hmac-sha256:"), "{bundle} {fingerprint}");
    assert_eq!(bundle, deployed, "the deployer holds the same keyed bundle the ledger records");
    assert_eq!(promote(Some(key)).await.0, bundle, "keyed hashes are deterministic");
    let other = IntegrityKey::new(b"another key, also of 32 bytes!!!".to_vec()).unwrap();
    assert_ne!(promote(Some(other)).await.0, bundle, "another key gives another hash");
}
