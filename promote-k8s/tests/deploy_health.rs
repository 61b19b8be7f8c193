//! Waiting for health by watch against the fake's simulated controllers on a manual clock: rollouts,
//! every fail-fast reason, the progress deadline, the kubectl-style timeout message, dropped watches and
//! 410s mid-wait, and the kinds other than workloads.
#![cfg(feature = "testing")]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use promote_core::deploy::{ApplyMode, Deployer};
use promote_core::error::Error;
use promote_core::progress::{Progress, ProgressUpdate};
use promote_k8s::testing::PodOutcome;
use serde_json::json;
use support::deploy::{DEV, bundle, cluster, deployment, eventually, service};

fn recorder() -> (Progress, Arc<Mutex<Vec<ProgressUpdate>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (Progress::new(move |update| sink.lock().unwrap().push(update)), seen)
}

/// Whether a WATCH of `plural` has been sent since the log was cleared.
fn watching(cluster: &support::deploy::Cluster, plural: &str) -> bool {
    cluster
        .fake
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path.ends_with(plural) && r.query.contains("watch=true"))
}

#[tokio::test]
async fn a_slow_rollout_is_waited_for_by_watch_with_progress() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let web = bundle("dev", &[&deployment("web", "registry.local/slow:1", 3)]);
    deployer.apply(&web, ApplyMode::Apply).await.unwrap();
    cluster.fake.clear_requests();
    let (progress, seen) = recorder();
    let waiting = {
        let (deployer, web) = (deployer.clone(), web.clone());
        tokio::spawn(async move { deployer.wait_healthy(&web, Duration::from_secs(60), &progress).await })
    };
    eventually("the wait to watch Deployments", || watching(&cluster, "deployments")).await;
    cluster.fake.advance(Duration::from_secs(30));
    let summary = waiting.await.unwrap().unwrap();
    assert_eq!(summary, "deployment \"web\" successfully rolled out");
    let seen = seen.lock().unwrap();
    let first = &seen[0];
    assert_eq!(first.subject, "Deployment/web");
    assert_eq!(
        first.message,
        "Waiting for deployment \"web\" rollout to finish: 0 of 3 updated replicas are available..."
    );
    assert_eq!((first.done, first.total), (Some(0), Some(3)));
    assert_eq!(seen.last().unwrap().message, "deployment \"web\" successfully rolled out");
    let lists = cluster.requests("GET").iter().filter(|r| !r.query.contains("watch=true")).count();
    assert!(lists <= 4, "one LIST per collection (and the inventory), then watches: {:?}", cluster.fake.requests());
}

#[tokio::test]
async fn every_fail_fast_reason_fails_at_once_naming_pod_container_reason_and_message() {
    let cases = [
        ("pull", "ImagePullBackOff", "Back-off pulling image \"registry.local/pull:1\""),
        ("err", "ErrImagePull", "rpc error: code = NotFound"),
        ("crash", "CrashLoopBackOff", "back-off 10s restarting failed container=web"),
        ("config", "CreateContainerConfigError", "configmap \"config\" not found"),
    ];
    for (image, reason, message) in cases {
        let cluster = cluster();
        let deployer = cluster.deployer().await;
        let web = bundle("dev", &[&deployment("web", &format!("registry.local/{image}:1"), 2)]);
        deployer.apply(&web, ApplyMode::Apply).await.unwrap();
        let started = cluster.fake.now();
        let error = deployer.wait_healthy(&web, Duration::from_secs(600), &Progress::none()).await.unwrap_err();
        let Error::DeployFailed { reason: text, .. } = &error else { panic!("{reason}: {error:?}") };
        assert!(text.starts_with("Deployment/web: pod web-"), "{text}");
        assert!(text.contains(&format!(", container web: {reason}: {message}")), "{text}");
        assert_eq!(cluster.fake.now(), started, "no injected time passed: not the progress deadline");
    }
}

/// The performance target: detected within 1 s of injected time after the pod reports it. The pods are
/// ready but not yet available (minReadySeconds), the wait watches them, then their containers start
/// crash-looping (the image is scripted so mid-rollout); the clock moves in 100 ms steps only while the wait
/// has not answered for a while, so a wait that needed injected time would take it.
#[tokio::test]
async fn a_crash_loop_that_starts_mid_rollout_is_detected_within_a_second_of_injected_time() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let text = deployment("web", "registry.local/flaky:1", 2)
        .replace("  progressDeadlineSeconds: 60\n", "  minReadySeconds: 60\n");
    let web = bundle("dev", &[&text]);
    deployer.apply(&web, ApplyMode::Apply).await.unwrap();
    cluster.fake.clear_requests();
    let (progress, seen) = recorder();
    let waiting = {
        let (deployer, web) = (deployer.clone(), web.clone());
        tokio::spawn(async move { deployer.wait_healthy(&web, Duration::from_secs(600), &progress).await })
    };
    eventually("the wait to watch Pods", || watching(&cluster, "pods")).await;
    cluster.fake.advance(Duration::from_secs(10));
    assert!(!waiting.is_finished());
    assert!(seen.lock().unwrap().iter().any(|u| u.message.contains("0 of 2 updated replicas are available")));

    cluster.fake.script_pod_outcome("registry.local/flaky:*", PodOutcome::CrashLoopBackOff);
    cluster.fake.advance(Duration::from_millis(100));
    let reported_at = cluster.fake.now();
    let mut idle = 0;
    while !waiting.is_finished() && idle < 1000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        idle += 1;
        if idle % 100 == 0 {
            cluster.fake.advance(Duration::from_millis(100));
        }
    }
    let error = waiting.await.unwrap().unwrap_err();
    let detected_after = cluster.fake.now() - reported_at;
    assert!(error.to_string().contains("container web: CrashLoopBackOff: back-off 10s"), "{error}");
    assert!(
        detected_after < chrono::Duration::seconds(1),
        "detected {detected_after} of injected time after the pod reported it"
    );
}

#[tokio::test]
async fn a_rollout_that_never_gets_ready_fails_at_its_progress_deadline() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let web = bundle("dev", &[&deployment("web", "registry.local/never:1", 2)]);
    deployer.apply(&web, ApplyMode::Apply).await.unwrap();
    cluster.fake.clear_requests();
    let waiting = {
        let (deployer, web) = (deployer.clone(), web.clone());
        tokio::spawn(async move { deployer.wait_healthy(&web, Duration::from_secs(600), &Progress::none()).await })
    };
    eventually("the wait to watch Deployments", || watching(&cluster, "deployments")).await;
    cluster.fake.advance(Duration::from_secs(61));
    let error = waiting.await.unwrap().unwrap_err();
    assert!(
        matches!(&error, Error::DeployFailed { reason, .. } if reason.contains("deployment \"web\" exceeded its progress deadline")),
        "{error}"
    );
}

#[tokio::test]
async fn a_timeout_reports_each_unhealthy_object_as_kubectl_does() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let both = bundle(
        "dev",
        &[
            &deployment("web", "registry.local/never:1", 3),
            &deployment("api", "nginx:1", 1),
            &service("lb", "LoadBalancer"),
        ],
    );
    deployer.apply(&both, ApplyMode::Apply).await.unwrap();
    let error = deployer.wait_healthy(&both, Duration::from_millis(300), &Progress::none()).await.unwrap_err();
    let Error::Timeout { what, after } = &error else { panic!("{error:?}") };
    assert_eq!(*after, Duration::from_millis(300));
    assert_eq!(
        what,
        "rollout of stage dev (Deployment/web: Waiting for deployment \"web\" rollout to finish: 0 of 3 updated replicas are available...)"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_watch_dropped_mid_wait_resumes_from_its_resource_version() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let web = bundle("dev", &[&deployment("web", "registry.local/slow:1", 2)]);
    deployer.apply(&web, ApplyMode::Apply).await.unwrap();
    cluster.fake.clear_requests();
    let waiting = {
        let (deployer, web) = (deployer.clone(), web.clone());
        tokio::spawn(async move { deployer.wait_healthy(&web, Duration::from_secs(60), &Progress::none()).await })
    };
    eventually("the wait to watch Deployments", || watching(&cluster, "deployments")).await;
    let watches_before = cluster.fake.requests().iter().filter(|r| r.query.contains("watch=true")).count();
    cluster.fake.drop_watches();
    eventually("the watches to be opened again", || {
        cluster.fake.requests().iter().filter(|r| r.query.contains("watch=true")).count() >= 2 * watches_before
    })
    .await;
    cluster.fake.advance(Duration::from_secs(30));
    waiting.await.unwrap().expect("a dropped watch does not fail the wait");
    let requests = cluster.fake.requests();
    let deployment_watches: Vec<_> =
        requests.iter().filter(|r| r.path.ends_with("/deployments") && r.query.contains("watch=true")).collect();
    assert!(deployment_watches.len() >= 2);
    assert!(deployment_watches.iter().all(|r| r.query.contains("resourceVersion=")), "{deployment_watches:?}");
    let lists = requests.iter().filter(|r| r.path.ends_with("/deployments") && !r.query.contains("watch=true")).count();
    assert_eq!(lists, 1, "resumed without a new LIST");
}

#[tokio::test]
async fn a_410_mid_wait_relists_and_the_wait_goes_on() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let web = bundle("dev", &[&deployment("web", "registry.local/slow:1", 2)]);
    deployer.apply(&web, ApplyMode::Apply).await.unwrap();
    cluster.fake.clear_requests();
    let waiting = {
        let (deployer, web) = (deployer.clone(), web.clone());
        tokio::spawn(async move { deployer.wait_healthy(&web, Duration::from_secs(60), &Progress::none()).await })
    };
    eventually("the wait to watch Deployments", || watching(&cluster, "deployments")).await;
    let lists_before =
        cluster.fake.requests().iter().filter(|r| r.method == "GET" && !r.query.contains("watch=true")).count();
    cluster.fake.expire_next_watch();
    cluster.fake.drop_watches();
    eventually("a relist after the 410", || {
        cluster.fake.requests().iter().filter(|r| r.method == "GET" && !r.query.contains("watch=true")).count()
            > lists_before
    })
    .await;
    cluster.fake.advance(Duration::from_secs(30));
    waiting.await.unwrap().expect("a 410 does not fail the wait");
}

#[tokio::test]
async fn jobs_load_balancers_and_custom_resources_by_their_conditions() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - { name: migrate, image: 'registry.local/slow:1' }\n";
    let crd = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: databases.example.com }
spec:
  group: example.com
  scope: Namespaced
  names: { plural: databases, singular: database, kind: Database }
  versions: [{ name: v1, served: true, storage: true, subresources: { status: {} }, schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } } }]
";
    let database = "apiVersion: example.com/v1\nkind: Database\nmetadata:\n  name: orders\nspec:\n  size: small\n";
    let all = bundle("dev", &[job, &service("lb", "LoadBalancer"), crd, database]);
    deployer.apply(&all, ApplyMode::Apply).await.unwrap();
    // The operator of Database reports that it is provisioning.
    let databases = kube::Api::<kube::api::DynamicObject>::namespaced_with(
        cluster.client.clone(),
        DEV,
        &kube::discovery::ApiResource {
            group: "example.com".into(),
            version: "v1".into(),
            api_version: "example.com/v1".into(),
            kind: "Database".into(),
            plural: "databases".into(),
        },
    );
    let provisioning = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Provisioning", "message": "creating volumes"}]}});
    databases.patch_status("orders", &PatchParams::default(), &Patch::Merge(&provisioning)).await.unwrap();
    cluster.fake.clear_requests();
    let (progress, seen) = recorder();
    let waiting = {
        let (deployer, all) = (deployer.clone(), all.clone());
        tokio::spawn(async move { deployer.wait_healthy(&all, Duration::from_secs(60), &progress).await })
    };
    eventually("the wait to watch Databases", || watching(&cluster, "databases")).await;
    cluster.fake.advance(Duration::from_secs(30));
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Provisioned", "message": ""}]}});
    databases.patch_status("orders", &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    let summary = waiting.await.unwrap().unwrap();
    assert!(
        summary.contains("job \"migrate\" completed") && summary.contains("Database \"orders\" is ready"),
        "{summary}"
    );
    let messages: Vec<String> = seen.lock().unwrap().iter().map(|u| format!("{}: {}", u.subject, u.message)).collect();
    assert!(
        messages.contains(
            &"Database/orders: Waiting for Database \"orders\" to be ready: Provisioning: creating volumes".to_owned()
        ),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("Job/migrate: Waiting for job \"migrate\" to complete")),
        "{messages:?}"
    );
}
