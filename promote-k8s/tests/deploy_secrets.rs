//! A known secret value goes through plans, promotions, a refused apply, dry-run diffs and status with every
//! output captured: TRACE-level tracing (with the `log` bridge), engine events, errors, plans, progress,
//! the ledger's records, and every object the fake API server stores. The value (and its base64) must
//! appear nowhere but in the Secret it belongs to.
#![cfg(feature = "testing")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use kube::api::{Patch, PatchParams};
use kube::discovery::Discovery;
use promote_core::deploy::{ApplyMode, Bundle, Deployer};
use promote_core::manifest::OCI_MANIFEST;
use promote_core::progress::Progress;
use promote_core::testing::leak::{CapturedLogs, leak_forms};
use promote_core::{
    BuildRequest, MemoryArtifactStore, MemoryConfigSource, MemoryLedger, Pipeline, Stage, Templates, Upstream,
};
use promote_k8s::KubernetesDeployer;
use promote_k8s::testing::FakeApiServer;
use serde_json::{Value, json};
use support::deploy::{DEV, secret_manifest};

const SECRET: &str = "Zq8-k8s-leak-canary-41c9";
const NEXT_SECRET: &str = "Zq8-k8s-leak-canary-next-77aa";

fn assert_absent(what: &str, text: &str) {
    for value in [SECRET, NEXT_SECRET] {
        for form in leak_forms(value) {
            assert!(!text.contains(&form), "the secret leaked into {what}");
        }
    }
}

const TEMPLATE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: {{artifacts.web.image}}
          env:
            - name: DB_PASSWORD
              valueFrom: { secretKeyRef: { name: db, key: password } }
---
apiVersion: v1
kind: Secret
metadata:
  name: db
data:
  password: {{b64enc config.DB_PASSWORD}}
stringData:
  again: {{quote config.DB_PASSWORD}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_only_its_own_secret() {
    CapturedLogs::install();
    let fake =
        FakeApiServer::builder().real_time(Duration::from_millis(10)).namespaces(&["default", DEV, "shop-stg"]).build();
    let client = kube::Client::new(fake.service(), "default");
    let deployer =
        KubernetesDeployer::builder().namespace("shop-{stage}").client(client.clone()).build().await.unwrap();
    let store = MemoryArtifactStore::new();
    let config = MemoryConfigSource::new("vault");
    config.set_secret("dev", "DB_PASSWORD", SECRET).set_secret("stg", "DB_PASSWORD", SECRET);
    let templates = Templates::from_sources([("app.yaml", TEMPLATE)]).unwrap();
    let stage = |name: &str| {
        Stage::new(name).config_source(config.clone()).templates(templates.clone()).deployer(Arc::new(deployer.clone()))
    };
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store.clone()))
        .ledger(Arc::new(MemoryLedger::new()))
        .stage(stage("dev"))
        .stage(stage("stg").upstream(Upstream::AllOf(vec!["dev".into()])))
        .build()
        .unwrap();
    let mut events = pipeline.subscribe();
    let mut outputs: Vec<(String, String)> = Vec::new();

    let body = format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\"}}");
    store.push("memory.local/shop/web:1111111".parse().unwrap(), OCI_MANIFEST, body.into_bytes()).unwrap();
    let build = pipeline
        .register(
            BuildRequest::new("1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
                .artifact("web", "memory.local/shop/web:1111111".parse().unwrap()),
            "ci",
        )
        .await
        .unwrap();

    // A plan (server-side dry run), the promotion, and a plan of the same build again.
    let plan = pipeline.plan(&build.id, "dev", "dana").await.unwrap();
    outputs.push(("dev plan".into(), format!("{plan:?} {}", serde_json::to_string(&plan).unwrap())));
    let record = pipeline.promote(&build.id, "dev", "dana").await.unwrap();
    assert!(record.state.succeeded());
    let again = pipeline.plan(&build.id, "dev", "dana").await.unwrap();
    outputs.push(("dev re-plan".into(), format!("{again:?}")));
    outputs.push(("dev status".into(), format!("{:?}", deployer.status("dev").await.unwrap())));
    let current = deployer.current("dev").await.unwrap().unwrap();
    outputs.push(("dev current".into(), format!("{current:?} {}", current.masked_text())));
    for manifest in current.objects() {
        outputs.push(("dev current content".into(), manifest.expose_content().to_owned()));
    }

    // stg: another tool owns the Secret's password: the apply is refused, naming the field, not the value.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client.clone(), "shop-stg");
    let theirs =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "aGVsbQ=="}});
    secrets.patch("db", &PatchParams::apply("helm"), &Patch::Apply(&theirs)).await.unwrap();
    let error = pipeline.promote(&build.id, "stg", "dana").await.unwrap_err();
    assert!(error.to_string().contains(".data.password (owned by helm)"), "{error}");
    outputs.push(("stg error".into(), format!("{error} {error:?}")));

    // Straight to the deployer: a dry run of a changed password, for the Secret and for a Deployment that
    // holds the value in its environment.
    let masked_secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: W3JlZGFjdGVkXQ==\n";
    let with_env = |value: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  selector: {{ matchLabels: {{ app: api }} }}\n  template:\n    metadata: {{ labels: {{ app: api }} }}\n    spec:\n      containers:\n        - name: api\n          image: nginx:1\n          env:\n            - {{ name: TOKEN, value: \"{value}\" }}\n"
        )
    };
    let bundle_with = |value: &str| {
        let secret = masked_secret.replace("W3JlZGFjdGVkXQ==", &leak_forms(value)[1]);
        Bundle::new(
            "dev",
            vec![secret_manifest(&secret, masked_secret), secret_manifest(&with_env(value), &with_env("[redacted]"))],
        )
    };
    deployer.apply(&bundle_with(SECRET), ApplyMode::Apply).await.unwrap();
    let planned = deployer.dry_run(&bundle_with(NEXT_SECRET)).await.unwrap();
    assert_eq!(planned.len(), 2, "{planned:?}");
    for change in &planned {
        let diff = change.diff.as_deref().expect("both objects change");
        assert!(diff.contains("only the fields that change are shown"), "{diff}");
        outputs.push((format!("dry-run diff of {}", change.change.object), diff.to_owned()));
    }
    assert!(planned[0].diff.as_deref().unwrap().contains("~ .data.password"));
    assert!(planned[1].diff.as_deref().unwrap().contains("~ .spec.template.spec.containers[0].env[0].value"));
    let waited = deployer.wait_healthy(&bundle_with(SECRET), Duration::from_secs(30), &Progress::new(|_| {})).await;
    outputs.push(("wait".into(), format!("{waited:?}")));
    // Put dev back to what the pipeline deployed, so that only its Secret holds the value below.
    let deployed = deployer.apply(&bundle_with(NEXT_SECRET), ApplyMode::Apply).await;
    outputs.push(("apply".into(), format!("{deployed:?}")));

    while let Ok(event) = events.try_recv() {
        outputs.push(("event".into(), format!("{event:?} {}", serde_json::to_string(&event).unwrap())));
    }
    for record in pipeline.history(None).await.unwrap() {
        outputs.push(("ledger record".into(), serde_json::to_string(&record).unwrap()));
    }
    for (what, text) in &outputs {
        assert_absent(what, text);
    }

    // Every object the fake stores: the value is in the Secrets it belongs to and nowhere else. The
    // ApplySet parent's inventory is base64 JSON: decoded, it must not hold the value either.
    let discovery = Discovery::new(client.clone()).run_aggregated().await.unwrap();
    let mut holders = Vec::new();
    for group in discovery.groups() {
        for (resource, _) in group.recommended_resources() {
            let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(client.clone(), &resource);
            for object in api.list(&Default::default()).await.unwrap() {
                let mut text = serde_json::to_string(&object).unwrap();
                let value = serde_json::to_value(&object).unwrap();
                if let Some(data) = value.pointer("/data").and_then(Value::as_object) {
                    for encoded in data.values().filter_map(Value::as_str) {
                        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded) {
                            text.push_str(&String::from_utf8_lossy(&bytes));
                        }
                    }
                }
                if leak_forms(SECRET).iter().chain(leak_forms(NEXT_SECRET).iter()).any(|form| text.contains(form)) {
                    holders.push(format!(
                        "{} {}/{}",
                        resource.kind,
                        object.metadata.namespace.clone().unwrap_or_default(),
                        object.metadata.name.clone().unwrap_or_default()
                    ));
                }
            }
        }
    }
    assert!(holders.contains(&format!("Secret {DEV}/db")), "the scan sees the Secret itself: {holders:?}");
    for holder in &holders {
        // Besides the Secret: the Deployment that puts the value in its environment by its template's own
        // choice, and the ReplicaSet and Pods its controller copies that template into.
        let expected = [format!("Secret {DEV}/db"), format!("Deployment {DEV}/api")].contains(holder)
            || holder.starts_with(&format!("ReplicaSet {DEV}/api-"))
            || holder.starts_with(&format!("Pod {DEV}/api-"));
        assert!(expected, "the secret is stored in {holder}");
    }
    let logs = CapturedLogs::install().text();
    assert!(logs.contains("promote_k8s::deployer"), "the deployer's own TRACE and DEBUG lines were captured");
    assert_absent("the TRACE logs", &logs);
}
