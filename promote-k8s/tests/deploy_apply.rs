//! The Kubernetes deployer against the fake API server: apply, unchanged re-deploys, prune, dry runs and
//! their diffs, conflicts with other field managers, namespaces, CRDs with their custom resources.
#![cfg(feature = "testing")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use promote_core::deploy::{ApplyMode, ChangeAction, Deployer};
use promote_core::error::Error;
use promote_core::progress::Progress;
use promote_k8s::KubernetesDeployer;
use promote_k8s::testing::FaultResponse;
use serde_json::json;
use support::deploy::{DEV, bundle, cluster, config_map, deployment, service};

fn actions(changes: &[promote_core::deploy::Change]) -> BTreeMap<String, ChangeAction> {
    changes.iter().map(|c| (c.object.clone(), c.action)).collect()
}

#[tokio::test]
async fn a_bundle_is_applied_into_the_stage_namespace_and_becomes_healthy() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let first = bundle(
        "dev",
        &[&config_map("settings", "info"), &deployment("web", "nginx:1.27", 3), &service("web", "ClusterIP")],
    );
    let changes = deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    assert_eq!(
        actions(&changes),
        BTreeMap::from([
            ("ConfigMap/settings".into(), ChangeAction::Create),
            ("Deployment/web".into(), ChangeAction::Create),
            ("Service/web".into(), ChangeAction::Create),
        ])
    );
    let web = cluster.get("apps/v1", "deployments", Some(DEV), "web").await.expect("applied into shop-dev");
    let managers: Vec<&str> =
        web["metadata"]["managedFields"].as_array().unwrap().iter().filter_map(|m| m["manager"].as_str()).collect();
    assert!(managers.contains(&"promote"), "applied with field manager promote: {managers:?}");
    let part_of = web["metadata"]["labels"]["applyset.kubernetes.io/part-of"].as_str().unwrap();

    // The ApplySet parent, as kubectl reads it.
    let parent = cluster.get("v1", "secrets", Some(DEV), "promote-dev-applyset").await.expect("a parent Secret");
    assert_eq!(parent["metadata"]["labels"]["applyset.kubernetes.io/id"], part_of);
    let annotations = &parent["metadata"]["annotations"];
    assert_eq!(annotations["applyset.kubernetes.io/tooling"], "promote/v1");
    assert_eq!(annotations["applyset.kubernetes.io/contains-group-kinds"], "ConfigMap,Deployment.apps,Service");

    let summary = deployer.wait_healthy(&first, Duration::from_secs(30), &Progress::none()).await.unwrap();
    assert!(summary.contains("deployment \"web\" successfully rolled out"), "{summary}");
    let current = deployer.current("dev").await.unwrap().expect("an inventory");
    assert_eq!(current.hash(), first.hash(), "current is the applied bundle");
    let status = deployer.status("dev").await.unwrap();
    assert_eq!(status.bundle_hash.as_deref(), Some(first.hash()));
    assert_eq!(status.healthy, Some(true));
    assert_eq!(status.objects, ["ConfigMap/settings", "Deployment/web", "Service/web"]);
}

#[tokio::test]
async fn an_unchanged_redeploy_sends_no_patch_and_a_drifted_object_is_sent_again() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let first = bundle("dev", &[&config_map("settings", "info"), &deployment("web", "nginx:1.27", 2)]);
    deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    cluster.fake.clear_requests();
    let again = deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    assert!(again.iter().all(|c| c.action == ChangeAction::Unchanged), "{again:?}");
    assert!(cluster.requests("PATCH").is_empty(), "no PATCH: {:?}", cluster.fake.requests());

    // Someone deletes an object promote applied: the next deploy applies it again, and only it.
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(cluster.client.clone(), DEV);
    api.delete("settings", &Default::default()).await.unwrap();
    cluster.fake.clear_requests();
    let changes = deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    assert_eq!(actions(&changes)["ConfigMap/settings"], ChangeAction::Create);
    assert_eq!(actions(&changes)["Deployment/web"], ChangeAction::Unchanged);
    let patched: Vec<String> = cluster.requests("PATCH").into_iter().map(|r| r.path).collect();
    assert_eq!(
        patched,
        [
            format!("/api/v1/namespaces/{DEV}/configmaps/settings"),
            format!("/api/v1/namespaces/{DEV}/secrets/promote-dev-applyset")
        ],
        "the object, then the inventory with its new uid"
    );

    // Someone edits a field promote applied: the field is theirs now, and the next deploy says so.
    api.patch("settings", &PatchParams::default(), &Patch::Merge(json!({"data": {"level": "debug"}}))).await.unwrap();
    let error = deployer.apply(&first, ApplyMode::Apply).await.unwrap_err();
    assert!(error.to_string().contains(".data.level (owned by"), "{error}");
}

/// The numbers in the README: requests per deploy of a 10-object bundle.
#[tokio::test]
async fn requests_per_deploy_of_ten_objects() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let texts: Vec<String> = (0..6)
        .map(|i| config_map(&format!("settings-{i}"), "info"))
        .chain([deployment("web", "nginx:1.27", 2), deployment("worker", "nginx:1.27", 1)])
        .chain([service("web", "ClusterIP"), service("worker", "ClusterIP")])
        .collect();
    let ten = bundle("dev", &texts.iter().map(String::as_str).collect::<Vec<_>>());
    let count = |cluster: &support::deploy::Cluster| {
        let requests = cluster.fake.requests();
        let patches = requests.iter().filter(|r| r.method == "PATCH").count();
        (requests.len(), patches)
    };
    cluster.fake.clear_requests();
    deployer.apply(&ten, ApplyMode::Apply).await.unwrap();
    let first_apply = count(&cluster);
    cluster.fake.clear_requests();
    deployer.wait_healthy(&ten, Duration::from_secs(30), &Progress::none()).await.unwrap();
    let first_wait = count(&cluster);
    cluster.fake.clear_requests();
    let again = deployer.apply(&ten, ApplyMode::Apply).await.unwrap();
    assert!(again.iter().all(|c| c.action == ChangeAction::Unchanged));
    let second_apply = count(&cluster);
    cluster.fake.clear_requests();
    deployer.wait_healthy(&ten, Duration::from_secs(30), &Progress::none()).await.unwrap();
    let second_wait = count(&cluster);
    println!("first deploy: apply {first_apply:?} + wait {first_wait:?} (requests, PATCHes)");
    println!("unchanged re-deploy: apply {second_apply:?} + wait {second_wait:?} (requests, PATCHes)");
    assert_eq!(first_apply.1, 12, "10 objects and the parent twice (intent, then inventory)");
    assert_eq!(second_apply.1 + second_wait.1, 0, "an unchanged re-deploy sends no PATCH");
}

#[tokio::test]
async fn objects_that_left_the_bundle_are_pruned_and_nothing_else_is() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop-dev-extra\n";
    let first = bundle(
        "dev",
        &[namespace, &config_map("keep", "a"), &config_map("drop", "b"), &deployment("web", "nginx:1", 1)],
    );
    deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    // Not promote's: made by hand in the same namespace, and one of promote's objects someone took over.
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(cluster.client.clone(), DEV);
    let by_hand = serde_json::from_value(json!({"metadata": {"name": "by-hand"}, "data": {"k": "v"}})).unwrap();
    api.create(&Default::default(), &by_hand).await.unwrap();

    let second = bundle("dev", &[&config_map("keep", "a"), &deployment("web", "nginx:1", 1)]);
    let planned = deployer.apply(&second, ApplyMode::DryRun).await.unwrap();
    assert_eq!(actions(&planned)["ConfigMap/drop"], ChangeAction::Delete, "a dry run names what will be pruned");
    assert!(cluster.get("v1", "configmaps", Some(DEV), "drop").await.is_some(), "a dry run deletes nothing");
    let changes = deployer.apply(&second, ApplyMode::Apply).await.unwrap();
    assert_eq!(
        actions(&changes),
        BTreeMap::from([
            ("ConfigMap/drop".into(), ChangeAction::Delete),
            ("ConfigMap/keep".into(), ChangeAction::Unchanged),
            ("Deployment/web".into(), ChangeAction::Unchanged),
        ]),
        "the Namespace that left is not pruned: the stage did not opt in"
    );
    assert!(cluster.get("v1", "configmaps", Some(DEV), "drop").await.is_none());
    assert!(cluster.get("v1", "configmaps", Some(DEV), "by-hand").await.is_some(), "not a member, never pruned");
    assert!(cluster.get("v1", "namespaces", None, "shop-dev-extra").await.is_some());
    let parent = cluster.get("v1", "secrets", Some(DEV), "promote-dev-applyset").await.unwrap();
    assert_eq!(
        parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"],
        "ConfigMap,Deployment.apps"
    );

    // With the opt-in, a Namespace that leaves is pruned too.
    let pruning = KubernetesDeployer::builder()
        .namespace("shop-{stage}")
        .prune_namespaces(true)
        .client(cluster.client.clone())
        .build()
        .await
        .unwrap();
    pruning.apply(&first, ApplyMode::Apply).await.unwrap();
    let changes = pruning.apply(&second, ApplyMode::Apply).await.unwrap();
    assert_eq!(actions(&changes)["Namespace/shop-dev-extra"], ChangeAction::Delete);
    assert!(cluster.get("v1", "namespaces", None, "shop-dev-extra").await.is_none());
}

#[tokio::test]
async fn a_dry_run_reports_each_object_with_a_diff_and_changes_nothing() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let first = bundle("dev", &[&config_map("settings", "info"), &config_map("other", "x")]);
    deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    let second = bundle("dev", &[&config_map("settings", "debug"), &config_map("other", "x"), &config_map("new", "y")]);
    cluster.fake.clear_requests();
    let planned = deployer.dry_run(&second).await.unwrap();
    let by_key: BTreeMap<&str, &promote_k8s::PlannedChange> =
        planned.iter().map(|p| (p.change.object.as_str(), p)).collect();
    assert_eq!(by_key["ConfigMap/new"].change.action, ChangeAction::Create);
    assert_eq!(by_key["ConfigMap/other"].change.action, ChangeAction::Unchanged);
    let update = by_key["ConfigMap/settings"];
    assert_eq!(update.change.action, ChangeAction::Update);
    let diff = update.diff.as_deref().unwrap();
    assert!(diff.contains("-  level: info") && diff.contains("+  level: debug"), "{diff}");
    assert!(!diff.contains("managedFields") && !diff.contains("resourceVersion"), "{diff}");
    for patch in cluster.requests("PATCH") {
        assert!(patch.query.contains("dryRun=All"), "every PATCH of a dry run is a dry run: {patch:?}");
    }
    assert_eq!(cluster.get("v1", "configmaps", Some(DEV), "settings").await.unwrap()["data"]["level"], "info");
    assert!(cluster.get("v1", "configmaps", Some(DEV), "new").await.is_none());
    assert_eq!(deployer.current("dev").await.unwrap().unwrap().hash(), first.hash(), "the inventory is unchanged");
}

#[tokio::test]
async fn a_conflict_with_another_field_manager_names_the_field_and_the_manager() {
    let cluster = cluster();
    // Helm owns the field first.
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(cluster.client.clone(), DEV);
    let theirs =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"level": "warn"}});
    api.patch("settings", &PatchParams::apply("helm"), &Patch::Apply(&theirs)).await.unwrap();

    let deployer = cluster.deployer().await;
    let ours = bundle("dev", &[&config_map("settings", "info")]);
    let error = deployer.apply(&ours, ApplyMode::Apply).await.unwrap_err();
    let Error::DeployFailed { reason, .. } = &error else { panic!("a refusal: {error:?}") };
    assert!(reason.contains(".data.level (owned by helm)"), "{reason}");
    assert!(reason.contains("force_conflicts"), "says how to take over: {reason}");
    assert_eq!(cluster.get("v1", "configmaps", Some(DEV), "settings").await.unwrap()["data"]["level"], "warn");

    let forcing = KubernetesDeployer::builder()
        .namespace("shop-{stage}")
        .force_conflicts(true)
        .client(cluster.client.clone())
        .build()
        .await
        .unwrap();
    forcing.apply(&ours, ApplyMode::Apply).await.unwrap();
    let settings = cluster.get("v1", "configmaps", Some(DEV), "settings").await.unwrap();
    assert_eq!(settings["data"]["level"], "info");
    let owners: Vec<&str> = settings["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(owners.contains(&"promote"), "{owners:?}");
}

#[tokio::test]
async fn a_crd_and_its_custom_resources_in_one_bundle() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let crd = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget, listKind: WidgetList }
  versions:
    - name: v1
      served: true
      storage: true
      schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } }
";
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: blue\nspec:\n  size: 3\n";
    // The custom resource comes first in the bundle; the CRD is still applied (and established) first.
    let both = bundle("dev", &[widget, crd]);
    let planned = deployer.apply(&both, ApplyMode::DryRun).await.unwrap();
    assert!(planned.iter().all(|c| c.action == ChangeAction::Create), "{planned:?}");
    let changes = deployer.apply(&both, ApplyMode::Apply).await.unwrap();
    assert!(changes.iter().all(|c| c.action == ChangeAction::Create), "{changes:?}");
    let stored = cluster.get("example.com/v1", "widgets", Some(DEV), "blue").await.expect("the Widget exists");
    assert_eq!(stored["spec"]["size"], 3);
    deployer.wait_healthy(&both, Duration::from_secs(30), &Progress::none()).await.unwrap();
    let again = deployer.apply(&both, ApplyMode::Apply).await.unwrap();
    assert!(again.iter().all(|c| c.action == ChangeAction::Unchanged), "{again:?}");
}

#[tokio::test]
async fn namespaces_are_the_stage_s_unless_allowed_and_a_missing_one_is_explained_or_created() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let elsewhere = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n  namespace: monitoring\ndata: {}\n";
    let error = deployer.apply(&bundle("dev", &[elsewhere]), ApplyMode::Apply).await.unwrap_err();
    assert!(
        matches!(&error, Error::DeployFailed { reason, .. } if reason.contains("names namespace monitoring") && reason.contains("allow_namespaces")),
        "{error}"
    );
    let allowing = KubernetesDeployer::builder()
        .namespace("shop-{stage}")
        .allow_namespace("monitoring")
        .client(cluster.client.clone())
        .build()
        .await
        .unwrap();
    allowing.apply(&bundle("dev", &[elsewhere, &config_map("settings", "x")]), ApplyMode::Apply).await.unwrap();
    assert!(cluster.get("v1", "configmaps", Some("monitoring"), "probe").await.is_some());
    let parent = cluster.get("v1", "secrets", Some(DEV), "promote-dev-applyset").await.unwrap();
    assert_eq!(parent["metadata"]["annotations"]["applyset.kubernetes.io/additional-namespaces"], "monitoring");

    // prd's namespace does not exist.
    let error = deployer.apply(&bundle("prd", &[&config_map("settings", "x")]), ApplyMode::Apply).await.unwrap_err();
    assert!(error.to_string().contains("namespace shop-prd does not exist"), "{error}");
    let creating = KubernetesDeployer::builder()
        .namespace("shop-{stage}")
        .create_namespace(true)
        .client(cluster.client.clone())
        .build()
        .await
        .unwrap();
    creating.apply(&bundle("prd", &[&config_map("settings", "x")]), ApplyMode::Apply).await.unwrap();
    assert!(cluster.get("v1", "configmaps", Some("shop-prd"), "settings").await.is_some());
}

#[tokio::test]
async fn a_server_fault_is_retried() {
    let cluster = cluster();
    let deployer = cluster.deployer().await;
    let path = format!("/api/v1/namespaces/{DEV}/configmaps/settings");
    cluster.fake.fail_next(1, Some(axum::http::Method::PATCH), &path, FaultResponse::ServerError(503));
    cluster.fake.fail_next(
        1,
        Some(axum::http::Method::GET),
        "/api",
        FaultResponse::TooManyRequests { retry_after_secs: 0 },
    );
    deployer.apply(&bundle("dev", &[&config_map("settings", "x")]), ApplyMode::Apply).await.unwrap();
    let attempts = cluster.requests("PATCH").into_iter().filter(|r| r.path == path).count();
    assert_eq!(attempts, 2, "the 503 was retried once");
}

/// The namespaced RBAC the README documents is enough for apply, wait and prune; without access to Secrets
/// the deploy fails with PermissionDenied naming what was refused.
#[tokio::test]
async fn the_documented_namespace_rbac_is_enough_and_less_is_permission_denied() {
    use promote_k8s::testing::AccessRule;
    let cluster = cluster();
    let write = ["get", "list", "watch", "patch", "delete"];
    let rules = vec![
        AccessRule::new("", &["configmaps", "services"], &write).in_namespaces(&[DEV]),
        // The bundle holds no Secret: the ApplySet parent is all promote reads and writes.
        AccessRule::new("", &["secrets"], &["get", "patch"]).in_namespaces(&[DEV]),
        AccessRule::new("apps", &["deployments"], &write).in_namespaces(&[DEV]),
        AccessRule::new("apps", &["replicasets"], &["list", "watch"]).in_namespaces(&[DEV]),
        AccessRule::new("", &["pods"], &["list", "watch"]).in_namespaces(&[DEV]),
    ];
    cluster.fake.restrict("ci", "system:serviceaccount:shop-dev:promote", rules.clone());
    let client = kube::Client::new(cluster.fake.service_as("ci"), "default");
    let deployer = KubernetesDeployer::builder().namespace("shop-{stage}").client(client).build().await.unwrap();
    let first = bundle(
        "dev",
        &[&config_map("a", "1"), &config_map("b", "1"), &deployment("web", "nginx:1", 2), &service("web", "ClusterIP")],
    );
    deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    deployer.wait_healthy(&first, Duration::from_secs(30), &Progress::none()).await.unwrap();
    let second =
        bundle("dev", &[&config_map("a", "1"), &deployment("web", "nginx:1", 2), &service("web", "ClusterIP")]);
    deployer.apply(&second, ApplyMode::Apply).await.unwrap();
    assert!(deployer.status("dev").await.unwrap().healthy == Some(true));

    let without_secrets = rules.into_iter().map(|mut rule| {
        rule.resources.retain(|r| r != "secrets");
        rule
    });
    cluster.fake.restrict("ci-2", "ci-bot", without_secrets.collect());
    let client = kube::Client::new(cluster.fake.service_as("ci-2"), "default");
    let deployer = KubernetesDeployer::builder().namespace("shop-{stage}").client(client).build().await.unwrap();
    let error = deployer.apply(&first, ApplyMode::Apply).await.unwrap_err();
    assert!(matches!(&error, Error::PermissionDenied { message, .. } if message.contains("secrets")), "{error}");
}
