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

/// The ledger, lock and config source kinds connected with the default kubeconfig whatever `kubeconfig` (or
/// `context`) the spec named: the builders dropped the connection the kinds gave them. A promotion from a
/// spec naming the fake's kubeconfig now leaves its Lease, its ledger entries and its config reads there.
#[tokio::test]
async fn the_kinds_connect_through_the_kubeconfig_the_spec_names() {
    use kube::api::{Api, DynamicObject, PostParams};
    use promote_core::manifest::OCI_MANIFEST;
    use promote_core::{BuildRequest, Ledger};

    let fake = FakeApiServer::builder().namespaces(&["default", "promote-system"]).build();
    let served = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    served.write_kubeconfig(&dir.path().join("fake.kubeconfig")).unwrap();
    let direct = kube::Client::new(fake.service(), "default");
    let resource = kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
    let settings: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"LEVEL": "info"},
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(direct.clone(), "promote-system", &resource)
        .create(&PostParams::default(), &settings)
        .await
        .unwrap();

    let spec = "pipeline: shop
store: { kind: memory }
ledger: { kind: kubernetes, namespace: promote-system, name: shop, kubeconfig: fake.kubeconfig }
lock: { kind: kubernetes, namespace: promote-system, kubeconfig: fake.kubeconfig }
config:
  - { kind: kubernetes-configmap, namespace: promote-system, objects: [settings], kubeconfig: fake.kubeconfig }
deployer: { kind: memory }
stages:
  - name: dev
";
    let store = MemoryArtifactStore::new();
    let mut registry = SpecRegistry::with_defaults().with_memory_store(store.clone());
    promote_k8s::kinds::register(&mut registry);
    let path = dir.path().join("promote.yaml");
    let pipeline = registry.load_str(spec, &path, dir.path(), None).await.unwrap();
    let manifest = format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\"}}");
    store.push("memory.local/shop/web:1".parse().unwrap(), OCI_MANIFEST, manifest.into_bytes()).unwrap();
    let request = BuildRequest::new("1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        .artifact("web", "memory.local/shop/web:1".parse().unwrap());
    let build = pipeline.register(request, "ci").await.unwrap();
    let record = pipeline.promote(&build.id, "dev", "ci").await.unwrap();
    assert!(record.state.succeeded(), "{:?}", record.state);

    let requests = fake.requests();
    let sent = |path: &str| requests.iter().any(|r| r.path.starts_with(path));
    assert!(sent("/apis/coordination.k8s.io/v1/namespaces/promote-system/leases"), "the lock: {requests:?}");
    assert!(sent("/api/v1/namespaces/promote-system/configmaps/settings"), "the config source: {requests:?}");
    let ledger = promote_k8s::KubernetesLedger::builder()
        .namespace("promote-system")
        .name("shop")
        .client(direct)
        .build()
        .await
        .unwrap();
    assert!(!ledger.read_since(0).await.unwrap().is_empty(), "the ledger's entries are in the fake");
}
