//! The deployer under promote's engine: a promotion end to end with its progress events, a failed rollout
//! rolled back automatically (on_failure: rollback), the `kubernetes` spec kind, and the deployer
//! conformance suite.
#![cfg(feature = "testing")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use promote_core::deploy::{ApplyMode, ChangeAction, Deployer};
use promote_core::engine::Event;
use promote_core::ledger::FinalState;
use promote_core::manifest::OCI_MANIFEST;
use promote_core::progress::Progress;
use promote_core::{
    Build, BuildRequest, Error, MemoryArtifactStore, MemoryConfigSource, MemoryLedger, OnFailure, Pipeline,
    SpecRegistry, Stage, Templates,
};
use promote_k8s::KubernetesDeployer;
use promote_k8s::testing::{FakeApiServer, PodOutcome};
use support::deploy::{DEV, bundle, cluster, config_map, deployment};

const TEMPLATE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{config.REPLICAS}}
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: {{artifacts.web.image}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  level: {{quote config.LEVEL}}
";

/// A shop pipeline with one stage, `dev`, deploying to the fake in real time (controllers tick every 10 ms;
/// creation times have whole seconds, so a pod scripted slow for 2 s is ready 1 to 2 s after it is created).
struct Shop {
    fake: FakeApiServer,
    store: MemoryArtifactStore,
    pipeline: Pipeline,
    deployer: KubernetesDeployer,
}

async fn shop() -> Shop {
    let fake = FakeApiServer::builder().real_time(Duration::from_millis(10)).namespaces(&["default", DEV]).build();
    let deployer = KubernetesDeployer::builder()
        .namespace("shop-{stage}")
        .client(kube::Client::new(fake.service(), "default"))
        .build()
        .await
        .unwrap();
    let store = MemoryArtifactStore::new();
    let config = MemoryConfigSource::new("config");
    config.set("dev", "REPLICAS", "2").set("dev", "LEVEL", "info");
    let stage = Stage::new("dev")
        .config_source(config)
        .templates(Templates::from_sources([("app.yaml", TEMPLATE)]).unwrap())
        .deployer(Arc::new(deployer.clone()))
        .on_failure(OnFailure::Rollback)
        .health_timeout(Duration::from_secs(60));
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store.clone()))
        .ledger(Arc::new(MemoryLedger::new()))
        .stage(stage)
        .build()
        .unwrap();
    Shop { fake, store, pipeline, deployer }
}

impl Shop {
    /// A build of `web` whose image the fake scripts as `outcome`.
    async fn build(&self, commit: &str, outcome: PodOutcome) -> Build {
        let body = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"commit\":\"{commit}\"}}}}"
        );
        let reference = format!("memory.local/shop/web:{}", &commit[..7]);
        let artifact = self.store.push(reference.parse().unwrap(), OCI_MANIFEST, body.into_bytes()).unwrap();
        self.fake.script_pod_outcome(&format!("*@{}", artifact.digest), outcome);
        self.pipeline
            .register(BuildRequest::new(commit).artifact("web", reference.parse().unwrap()), "ci")
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_waits_for_the_rollout_and_reports_its_progress() {
    let shop = shop().await;
    let mut events = shop.pipeline.subscribe();
    let build = shop.build("1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", PodOutcome::Slow(Duration::from_secs(2))).await;
    let record = shop.pipeline.promote(&build.id, "dev", "dana").await.unwrap();
    assert!(record.state.succeeded(), "{:?}", record.state);
    let mut progress = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Progress { update, .. } = event {
            progress.push(update);
        }
    }
    assert!(
        progress.iter().any(|u| u.subject == "Deployment/web"
            && u.message
                == "Waiting for deployment \"web\" rollout to finish: 0 of 2 updated replicas are available..."
            && u.total == Some(2)),
        "{progress:?}"
    );
    assert_eq!(progress.last().unwrap().message, "deployment \"web\" successfully rolled out");
    let status = shop.deployer.status("dev").await.unwrap();
    assert_eq!(status.bundle_hash, record.bundle_hash);
    assert_eq!(status.healthy, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_cannot_pull_its_image_fails_and_is_rolled_back() {
    let shop = shop().await;
    let good = shop.build("1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", PodOutcome::Ready).await;
    let first = shop.pipeline.promote(&good.id, "dev", "dana").await.unwrap();
    let broken = shop.build("2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", PodOutcome::ImagePullBackOff).await;
    let mut events = shop.pipeline.subscribe();
    let error = shop.pipeline.promote(&broken.id, "dev", "dana").await.unwrap_err();
    let Error::DeployFailed { reason, .. } = &error else { panic!("{error:?}") };
    assert!(reason.contains("container web: ImagePullBackOff: Back-off pulling image"), "{reason}");

    let status = shop.pipeline.status().await.unwrap();
    assert_eq!(status.stage("dev").unwrap().current.as_ref(), Some(&good.id), "rolled back to the good build");
    let mut rolled_back = false;
    while let Ok(event) = events.try_recv() {
        if let Event::Finished { state: FinalState::Succeeded, promotion } = &event {
            rolled_back |= promotion.to_string().starts_with(&format!("dev/{}", good.id));
        }
    }
    assert!(rolled_back, "the rollback promotion succeeded");
    let deployed = shop.deployer.status("dev").await.unwrap();
    assert_eq!(deployed.bundle_hash, first.bundle_hash, "the cluster runs the good build's bundle again");
    assert_eq!(deployed.healthy, Some(true));
    let web = support::deploy::get(
        &kube::Client::new(shop.fake.service(), "default"),
        "apps/v1",
        "deployments",
        Some(DEV),
        "web",
    )
    .await
    .unwrap();
    let image = web["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(image.ends_with(&good.artifacts["web"].digest.to_string()), "{image}");
}

/// A rollback at the deployer's level: the earlier bundle is applied again, what the failed one added is
/// pruned, and the wait sees the earlier revision healthy even while the failed pods are still there.
#[tokio::test]
async fn applying_an_earlier_bundle_again_prunes_what_the_failed_one_added_and_waits_for_the_old_revision() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let good = bundle("dev", &[&deployment("web", "nginx:1.27", 2), &config_map("settings", "info")]);
    deployer.apply(&good, ApplyMode::Apply).await.unwrap();
    deployer.wait_healthy(&good, Duration::from_secs(30), &Progress::none()).await.unwrap();
    let broken = bundle(
        "dev",
        &[&deployment("web", "registry.local/pull:2", 2), &config_map("settings", "info"), &config_map("extra", "x")],
    );
    deployer.apply(&broken, ApplyMode::Apply).await.unwrap();
    assert!(deployer.wait_healthy(&broken, Duration::from_secs(30), &Progress::none()).await.is_err());

    let back = deployer.apply(&good, ApplyMode::Apply).await.unwrap();
    let actions: Vec<(String, ChangeAction)> = back.iter().map(|c| (c.object.clone(), c.action)).collect();
    assert!(actions.contains(&("Deployment/web".into(), ChangeAction::Update)), "{actions:?}");
    assert!(actions.contains(&("ConfigMap/extra".into(), ChangeAction::Delete)), "{actions:?}");
    let summary = deployer.wait_healthy(&good, Duration::from_secs(30), &Progress::none()).await.unwrap();
    assert_eq!(summary, "deployment \"web\" successfully rolled out (1 other objects need no waiting)");
    assert!(cluster.get("v1", "configmaps", Some(DEV), "extra").await.is_none());
}

#[tokio::test]
async fn the_spec_kind_builds_the_deployer_and_names_wrong_settings_by_line() {
    let cluster = cluster();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(
        dir.path().join("manifests/app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: info\n",
    )
    .unwrap();
    let mut registry = SpecRegistry::with_defaults().with_memory_store(MemoryArtifactStore::new());
    promote_k8s::kinds::register_with_client(&mut registry, cluster.client.clone());
    let spec = "pipeline: shop
store: { kind: memory }
ledger: { kind: memory }
templates: manifests
deployer: { kind: kubernetes, namespace: \"shop-{stage}\", force_conflicts: false }
stages:
  - name: dev
";
    let path = dir.path().join("promote.yaml");
    registry.load_str(spec, &path, dir.path(), None).await.unwrap();

    let wrong = |text: &str, needle: &str| {
        let text = spec.replace("force_conflicts: false", text);
        let registry = registry.clone();
        let path = path.clone();
        let dir = dir.path().to_owned();
        let needle = needle.to_owned();
        async move {
            let error = registry.load_str(&text, &path, &dir, None).await.unwrap_err();
            let shown = error.to_string();
            assert!(shown.contains("promote.yaml:5") && shown.contains(&needle), "{shown}");
        }
    };
    wrong("force_conflict: false", "force_conflict").await;
    wrong("create_namespace: true, context: other", "deployer.context").await;
    let bad_namespace = spec.replace("shop-{stage}", "Shop_{stage}");
    let error = registry.load_str(&bad_namespace, &path, dir.path(), None).await.unwrap_err();
    assert!(error.to_string().contains("deployer.namespace") && error.to_string().contains("Shop_{stage}"), "{error}");
}

#[tokio::test]
async fn the_deployer_conformance_suite() {
    let cluster = cluster();
    let deployer =
        KubernetesDeployer::builder().create_namespace(true).client(cluster.client.clone()).build().await.unwrap();
    promote_core::conformance::deployer(Arc::new(deployer), "conformance").await;
}
