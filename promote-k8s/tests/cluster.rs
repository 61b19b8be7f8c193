//! The deployer against a real cluster (`#[ignore = "needs cluster"]`): run with `KUBECONFIG` pointing at a
//! disposable cluster, e.g. kind (see the README). Each test works in its own namespace, `promote-it-<stage>`,
//! created by the deployer and deleted at the end, also when the test fails.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject};
use kube::discovery::ApiResource;
use promote_core::deploy::{ApplyMode, Bundle, ChangeAction, Deployer, RenderedObject};
use promote_core::error::Error;
use promote_core::progress::Progress;
use promote_k8s::KubernetesDeployer;

/// A stage name no earlier run used.
fn unique_stage(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

async fn deployer() -> KubernetesDeployer {
    let path =
        std::env::var_os("KUBECONFIG").expect("set KUBECONFIG to a disposable cluster's kubeconfig (see the README)");
    KubernetesDeployer::builder()
        .kubeconfig(path)
        .namespace("promote-it-{stage}")
        .create_namespace(true)
        .build()
        .await
        .unwrap()
}

/// Runs `body` with a deployer and a fresh stage, then deletes the stage's namespace, also when `body` panics.
async fn in_own_namespace<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(KubernetesDeployer, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let deployer = deployer().await;
    let stage = unique_stage(prefix);
    let namespace = deployer.namespace_for(&stage);
    let outcome = tokio::spawn(body(deployer, stage)).await;
    let resource = ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "Namespace".into(),
        plural: "namespaces".into(),
    };
    let api: Api<DynamicObject> = Api::all_with(kube::Client::try_default().await.unwrap(), &resource);
    let _ = api.delete(&namespace, &DeleteParams::background()).await;
    if let Err(panicked) = outcome {
        std::panic::resume_unwind(panicked.into_panic());
    }
}

fn manifest(text: &str, kind: &str, api_version: &str, name: &str) -> RenderedObject {
    RenderedObject::new(api_version.into(), kind.into(), name.into(), None, "it.yaml".into(), text.into(), text.into())
}

fn web(image: &str) -> RenderedObject {
    let text = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  progressDeadlineSeconds: 120\n  selector: {{ matchLabels: {{ app: web }} }}\n  template:\n    metadata: {{ labels: {{ app: web }} }}\n    spec:\n      containers:\n        - name: web\n          image: {image}\n"
    );
    manifest(&text, "Deployment", "apps/v1", "web")
}

fn settings(level: &str) -> RenderedObject {
    let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: {level}\n");
    manifest(&text, "ConfigMap", "v1", "settings")
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn deploys_waits_prunes_and_fails_fast_on_a_real_cluster() {
    in_own_namespace("dev", |deployer, stage| async move { deploy_wait_prune_fail(deployer, stage).await }).await;
}

async fn deploy_wait_prune_fail(deployer: KubernetesDeployer, stage: String) {
    let pause = "registry.k8s.io/pause:3.9";
    let first = Bundle::new(stage.as_str(), vec![settings("info"), web(pause)]);
    let created = deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    assert!(created.iter().all(|c| c.action == ChangeAction::Create), "{created:?}");
    let summary = deployer.wait_healthy(&first, Duration::from_secs(180), &Progress::none()).await.unwrap();
    assert!(summary.contains("successfully rolled out"), "{summary}");
    assert!(
        deployer.apply(&first, ApplyMode::Apply).await.unwrap().iter().all(|c| c.action == ChangeAction::Unchanged)
    );

    let second = Bundle::new(stage.as_str(), vec![web(pause)]);
    let planned = deployer.dry_run(&Bundle::new(stage.as_str(), vec![settings("debug"), web(pause)])).await.unwrap();
    assert!(planned[0].diff.as_deref().unwrap().contains("+  level: debug"), "{planned:?}");
    let pruned = deployer.apply(&second, ApplyMode::Apply).await.unwrap();
    assert!(pruned.iter().any(|c| c.object == "ConfigMap/settings" && c.action == ChangeAction::Delete), "{pruned:?}");

    let broken = Bundle::new(stage.as_str(), vec![web("registry.invalid/promote/none:1")]);
    deployer.apply(&broken, ApplyMode::Apply).await.unwrap();
    let error = deployer.wait_healthy(&broken, Duration::from_secs(180), &Progress::none()).await.unwrap_err();
    assert!(
        matches!(&error, Error::DeployFailed { reason, .. } if reason.contains("ErrImagePull") || reason.contains("ImagePullBackOff")),
        "{error}"
    );
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn the_deployer_conformance_suite_on_a_real_cluster() {
    in_own_namespace("conf", |deployer, stage| async move {
        promote_core::conformance::deployer(Arc::new(deployer), &stage).await;
    })
    .await;
}
