//! The spec kinds: ledger and lock `kubernetes`, config sources `kubernetes-configmap` and
//! `kubernetes-secret`, built from a spec against the fake; refused in an untrusted spec; a misspelt setting
//! named by file, line and key.
#![cfg(feature = "testing")]

use promote_core::spec::SpecPolicy;
use promote_core::{MemoryArtifactStore, SpecRegistry};
use promote_k8s::testing::FakeApiServer;

const SPEC: &str = "pipeline: shop
store: { kind: memory }
ledger: { kind: kubernetes, namespace: promote-system, name: shop }
lock: { kind: kubernetes, namespace: promote-system, lease_duration_seconds: 20 }
config:
  - { kind: kubernetes-configmap, namespace: \"shop-{stage}\", objects: [settings] }
  - { kind: kubernetes-secret, namespace: \"shop-{stage}\", objects: [db], keys: [DB_PASSWORD] }
deployer: { kind: memory }
stages:
  - name: dev
";

fn registry(fake: &FakeApiServer, policy: Option<SpecPolicy>) -> SpecRegistry {
    let mut registry = SpecRegistry::with_defaults().with_memory_store(MemoryArtifactStore::new());
    if let Some(policy) = policy {
        registry = registry.with_policy(policy);
    }
    promote_k8s::kinds::register_with_client(&mut registry, kube::Client::new(fake.service(), "default"));
    registry
}

#[tokio::test]
async fn a_spec_builds_the_kubernetes_ledger_lock_and_config_sources() {
    let fake = FakeApiServer::builder().namespaces(&["default", "promote-system"]).build();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("promote.yaml");
    let pipeline = registry(&fake, None).load_str(SPEC, &path, dir.path(), None).await.unwrap();
    let shown = format!("{:?}", pipeline.ledger());
    assert!(shown.contains("KubernetesLedger") && shown.contains("shop"), "{shown}");

    for (wrong, key) in [
        ("lease_duration_seconds: 20", "lease_duration_second: 20"),
        ("objects: [db]", "object: [db]"),
        ("name: shop", "nmae: shop"),
    ] {
        let text = SPEC.replace(wrong, key);
        let error = registry(&fake, None).load_str(&text, &path, dir.path(), None).await.unwrap_err().to_string();
        let misspelt = key.split(':').next().unwrap();
        assert!(error.contains("promote.yaml:") && error.contains(misspelt), "{error}");
    }
    let zero = SPEC.replace("lease_duration_seconds: 20", "lease_duration_seconds: 0");
    let error = registry(&fake, None).load_str(&zero, &path, dir.path(), None).await.unwrap_err().to_string();
    assert!(error.contains("lock.lease_duration_seconds"), "{error}");
    let context = SPEC.replace("name: shop", "name: shop, context: prod");
    let error = registry(&fake, None).load_str(&context, &path, dir.path(), None).await.unwrap_err().to_string();
    assert!(error.contains("ledger.context"), "{error}");
}

#[tokio::test]
async fn an_untrusted_spec_may_not_use_them() {
    let fake = FakeApiServer::builder().namespaces(&["default", "promote-system"]).build();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("promote.yaml");
    let plain = "pipeline: shop\nstore: { kind: memory }\nledger: { kind: memory }\ndeployer: { kind: memory }\n\
                 stages:\n  - name: dev\n";
    for (line, key) in [
        ("ledger: { kind: kubernetes, namespace: promote-system }", "ledger"),
        ("lock: { kind: kubernetes, namespace: promote-system }", "lock"),
        ("config: [{ kind: kubernetes-secret, namespace: x, objects: [db] }]", "config"),
        ("config: [{ kind: kubernetes-configmap, namespace: x, objects: [db] }]", "config"),
    ] {
        let text =
            if key == "ledger" { plain.replace("ledger: { kind: memory }", line) } else { format!("{plain}{line}\n") };
        let error = registry(&fake, Some(SpecPolicy::untrusted()))
            .load_str(&text, &path, dir.path(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("untrusted") || error.contains("credentials"), "{key}: {error}");
    }
    assert!(fake.requests().is_empty(), "an untrusted spec sent no request to the cluster");
}
