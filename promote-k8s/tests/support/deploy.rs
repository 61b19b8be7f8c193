//! Shared setup for the deployer's tests: a fake cluster on a manual clock, bundles written as YAML.

use std::time::Duration;

use promote_core::clock::ManualClock;
use promote_core::deploy::{Bundle, RenderedObject};
use promote_k8s::KubernetesDeployer;
use promote_k8s::testing::{FakeApiServer, PodOutcome, RecordedRequest};
use serde_json::Value;

/// The namespace stage `dev` deploys to with the pattern the tests use.
pub(crate) const DEV: &str = "shop-dev";

/// A fake cluster on a manual clock, with the shop's namespaces, images scripted by name:
/// `registry.local/<outcome>:*` (`pull`, `err`, `crash`, `config`, `never`, `slow` for 30 s).
pub(crate) struct Cluster {
    pub fake: FakeApiServer,
    pub clock: ManualClock,
    pub client: kube::Client,
}

pub(crate) fn cluster() -> Cluster {
    let clock = ManualClock::at("2026-11-30T10:00:00Z".parse().unwrap());
    let fake = FakeApiServer::builder()
        .manual_clock(clock.clone())
        .namespaces(&["default", "kube-system", "shop-dev", "shop-stg", "monitoring"])
        .pod_outcome("registry.local/pull:*", PodOutcome::ImagePullBackOff)
        .pod_outcome("registry.local/err:*", PodOutcome::ErrImagePull)
        .pod_outcome("registry.local/crash:*", PodOutcome::CrashLoopBackOff)
        .pod_outcome("registry.local/config:*", PodOutcome::CreateContainerConfigError)
        .pod_outcome("registry.local/never:*", PodOutcome::NeverReady)
        .pod_outcome("registry.local/slow:*", PodOutcome::Slow(Duration::from_secs(30)))
        .build();
    let client = kube::Client::new(fake.service(), "default");
    Cluster { fake, clock, client }
}

impl Cluster {
    /// A deployer to `shop-{stage}`, as the tests configure it.
    pub(crate) async fn deployer(&self) -> KubernetesDeployer {
        KubernetesDeployer::builder().namespace("shop-{stage}").client(self.client.clone()).build().await.unwrap()
    }

    /// Requests received since the log was last cleared, with this method.
    pub(crate) fn requests(&self, method: &str) -> Vec<RecordedRequest> {
        self.fake.requests().into_iter().filter(|r| r.method == method).collect()
    }

    /// An object as stored, through a plain GET.
    pub(crate) async fn get(
        &self,
        api_version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        get(&self.client, api_version, plural, namespace, name).await
    }
}

/// An object as stored, through a plain GET with `client`.
pub(crate) async fn get(
    client: &kube::Client,
    api_version: &str,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Option<Value> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = kube::discovery::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: String::new(),
        plural: plural.into(),
    };
    let api: kube::Api<kube::api::DynamicObject> = match namespace {
        Some(namespace) => kube::Api::namespaced_with(client.clone(), namespace, &resource),
        None => kube::Api::all_with(client.clone(), &resource),
    };
    api.get_opt(name).await.unwrap().map(|o| serde_json::to_value(o).unwrap())
}

/// A manifest whose rendering holds no secret, its identity read from the YAML.
pub(crate) fn manifest(text: &str) -> RenderedObject {
    secret_manifest(text, text)
}

/// A manifest rendered as `content`, shown as `masked`.
pub(crate) fn secret_manifest(content: &str, masked: &str) -> RenderedObject {
    let value: Value = serde_saphyr::from_str(masked).unwrap();
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    RenderedObject::new(
        text("/apiVersion").unwrap(),
        text("/kind").unwrap(),
        text("/metadata/name").unwrap(),
        text("/metadata/namespace"),
        "app.yaml".into(),
        content.into(),
        masked.into(),
    )
}

pub(crate) fn bundle(stage: &str, texts: &[&str]) -> Bundle {
    Bundle::new(stage, texts.iter().map(|t| manifest(t)).collect())
}

pub(crate) fn config_map(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  level: {value}\n")
}

pub(crate) fn deployment(name: &str, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{ app: {name} }}
spec:
  replicas: {replicas}
  progressDeadlineSeconds: 60
  selector: {{ matchLabels: {{ app: {name} }} }}
  template:
    metadata: {{ labels: {{ app: {name} }} }}
    spec:
      containers:
        - name: {name}
          image: {image}
"
    )
}

pub(crate) fn service(name: &str, kind: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: {kind}\n  selector: {{ app: {name} }}\n  ports:\n    - port: 80\n"
    )
}

/// Waits (bounded) until `check` holds, for something another task makes true.
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
