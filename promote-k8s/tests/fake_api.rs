//! The fake API server through kube-rs, in-process: CRUD, selectors, conflicts, dry runs, the status
//! subresource, generation rules, garbage collection, CRDs and Status bodies.
#![cfg(feature = "testing")]

mod support;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    Preconditions, PropagationPolicy,
};
use kube::core::WatchEvent;
use kube::discovery::Discovery;
use serde_json::json;
use support::{create_namespace, deployment, manual_fake, status_of};

fn config_map(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn crud_sets_server_fields_and_answers_with_real_status_bodies() {
    let (_fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ns1");
    let created = cms.create(&PostParams::default(), &config_map("cfg", json!({}))).await.unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("ns1"));
    assert!(meta.uid.as_ref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert!(meta.resource_version.is_some());
    assert_eq!(meta.generation, None, "ConfigMaps have no generation");

    let again = status_of(cms.create(&PostParams::default(), &config_map("cfg", json!({}))).await.unwrap_err());
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(again.message, "configmaps \"cfg\" already exists");

    let missing = status_of(cms.get("nope").await.unwrap_err());
    assert_eq!(
        (missing.code, missing.reason.as_str(), missing.message.as_str()),
        (404, "NotFound", "configmaps \"nope\" not found")
    );
    let details = missing.details.unwrap();
    assert_eq!((details.name.as_str(), details.kind.as_str(), details.group.as_str()), ("nope", "configmaps", ""));

    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "ghost");
    let no_ns = status_of(elsewhere.create(&PostParams::default(), &config_map("x", json!({}))).await.unwrap_err());
    assert_eq!((no_ns.code, no_ns.message.as_str()), (404, "namespaces \"ghost\" not found"));

    let mut generated = config_map("", json!({}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("cfg-".into());
    let generated = cms.create(&PostParams::default(), &generated).await.unwrap();
    let name = generated.metadata.name.unwrap();
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");

    cms.delete("cfg", &DeleteParams::default()).await.unwrap();
    assert_eq!(status_of(cms.get("cfg").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn update_with_a_stale_resource_version_conflicts() {
    let (_fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    let created = cms.create(&PostParams::default(), &config_map("cfg", json!({}))).await.unwrap();
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "first".to_string())].into());
    let replaced = cms.replace("cfg", &PostParams::default(), &first).await.unwrap();
    assert_ne!(replaced.metadata.resource_version, created.metadata.resource_version);

    let mut stale = created;
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    let conflict = status_of(cms.replace("cfg", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        "Operation cannot be fulfilled on configmaps \"cfg\": the object has been modified; please apply your changes \
         to the latest version and try again"
    );
}

#[tokio::test]
async fn lists_filter_by_label_and_field_selectors_and_carry_kind_and_resource_version() {
    let (_fake, client, _clock) = manual_fake().await;
    create_namespace(&client, "ns2").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ns1");
    for (name, tier) in [("a", "front"), ("b", "back"), ("c", "front")] {
        cms.create(&PostParams::default(), &config_map(name, json!({"tier": tier, "app": "shop"}))).await.unwrap();
    }
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "ns2");
    other.create(&PostParams::default(), &config_map("a", json!({"tier": "front"}))).await.unwrap();

    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items.into_iter().map(|c| c.metadata.name.unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(names(cms.list(&ListParams::default().labels("tier=front")).await.unwrap()), ["a", "c"]);
    assert_eq!(names(cms.list(&ListParams::default().labels("tier!=front")).await.unwrap()), ["b"]);
    assert_eq!(names(cms.list(&ListParams::default().labels("tier in (back,middle)")).await.unwrap()), ["b"]);
    assert_eq!(names(cms.list(&ListParams::default().labels("tier notin (back),app")).await.unwrap()), ["a", "c"]);
    assert_eq!(names(cms.list(&ListParams::default().labels("!tier")).await.unwrap()), Vec::<String>::new());
    assert_eq!(names(cms.list(&ListParams::default().fields("metadata.name=b")).await.unwrap()), ["b"]);

    let all: Api<ConfigMap> = Api::all(client.clone());
    let across = all.list(&ListParams::default().fields("metadata.name=a")).await.unwrap();
    assert_eq!(across.items.len(), 2, "the same name in two namespaces");
    assert!(across.metadata.resource_version.is_some());
    let bad = status_of(cms.list(&ListParams::default().fields("data.k=v")).await.unwrap_err());
    assert_eq!((bad.code, bad.message.as_str()), (400, "field label not supported: data.k"));

    // The raw list carries its kind, which kubectl's unstructured decoding needs.
    let request = axum::http::Request::get("/api/v1/namespaces/ns1/configmaps").body(Vec::new()).unwrap();
    let raw: serde_json::Value = client.request(request).await.unwrap();
    assert_eq!(raw["kind"], "ConfigMapList");
    assert_eq!(raw["apiVersion"], "v1");
}

#[tokio::test]
async fn generation_moves_only_with_the_spec_and_status_goes_through_its_subresource() {
    let (_fake, client, _clock) = manual_fake().await;
    let deployments: Api<Deployment> = Api::namespaced(client, "ns1");
    deployments.create(&PostParams::default(), &deployment("web", "nginx:1", 1)).await.unwrap();
    let generation = |d: &Deployment| d.metadata.generation.unwrap();

    let labelled = deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})))
        .await
        .unwrap();
    assert_eq!(generation(&labelled), 1, "metadata changes keep the generation");

    let status_via_main = deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 99}})))
        .await
        .unwrap();
    assert_ne!(status_via_main.status.unwrap().replicas, Some(99), "the main resource ignores status");

    let scaled = deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!(generation(&scaled), 2);

    let status = deployments
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"collisionCount": 7}, "spec": {"replicas": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.as_ref().unwrap().collision_count, Some(7));
    assert_eq!(status.spec.replicas, Some(3), "the status subresource ignores the spec");
    assert_eq!(generation(&status), 2);
}

#[tokio::test]
async fn server_dry_run_returns_the_result_and_stores_nothing() {
    let (fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    let before = fake.resource_version();
    let dry =
        cms.create(&PostParams { dry_run: true, ..Default::default() }, &config_map("dry", json!({}))).await.unwrap();
    assert_eq!(dry.metadata.name.as_deref(), Some("dry"));
    assert_eq!(fake.resource_version(), before);
    assert_eq!(status_of(cms.get("dry").await.unwrap_err()).code, 404);

    let applied = cms
        .patch("dry", &PatchParams::apply("promote").dry_run(), &Patch::Apply(config_map("dry", json!({"a": "b"}))))
        .await
        .unwrap();
    assert_eq!(applied.metadata.labels.unwrap()["a"], "b");
    assert_eq!(status_of(cms.get("dry").await.unwrap_err()).code, 404);
    assert_eq!(fake.resource_version(), before);
}

#[tokio::test]
async fn deleting_a_deployment_collects_its_replicasets_and_pods_unless_orphaned() {
    let (_fake, client, _clock) = manual_fake().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ns1");
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "ns1");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    deployments.create(&PostParams::default(), &deployment("web", "nginx:1", 2)).await.unwrap();
    deployments.create(&PostParams::default(), &deployment("api", "nginx:1", 1)).await.unwrap();
    assert_eq!(replicasets.list(&ListParams::default()).await.unwrap().items.len(), 2);
    assert_eq!(pods.list(&ListParams::default()).await.unwrap().items.len(), 3);

    let web = deployments.get("web").await.unwrap();
    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions { uid: Some("other".into()), resource_version: None }),
        ..Default::default()
    };
    let refused = status_of(deployments.delete("web", &wrong_uid).await.unwrap_err());
    assert_eq!(refused.code, 409);
    assert_eq!(
        refused.message,
        format!(
            "Operation cannot be fulfilled on deployments.apps \"web\": Precondition failed: UID in precondition: other, \
             UID in object meta: {}",
            web.metadata.uid.clone().unwrap()
        )
    );

    deployments.delete("web", &DeleteParams::background()).await.unwrap();
    let left = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(left.items.len(), 1);
    assert!(left.items[0].metadata.name.as_ref().unwrap().starts_with("api-"));

    let orphan = DeleteParams { propagation_policy: Some(PropagationPolicy::Orphan), ..Default::default() };
    deployments.delete("api", &orphan).await.unwrap();
    let rs = replicasets.list(&ListParams::default()).await.unwrap();
    assert_eq!(rs.items.len(), 1, "the orphaned ReplicaSet stays");
    assert!(rs.items[0].metadata.owner_references.is_none(), "and loses its owner reference");
}

#[tokio::test]
async fn deleting_a_namespace_deletes_what_is_in_it() {
    let (_fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ns1");
    cms.create(&PostParams::default(), &config_map("cfg", json!({}))).await.unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    assert_eq!(namespaces.get("ns1").await.unwrap().status.unwrap().phase.as_deref(), Some("Active"));
    namespaces.delete("ns1", &DeleteParams::default()).await.unwrap();
    let all: Api<ConfigMap> = Api::all(client);
    assert!(all.list(&ListParams::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn a_crd_registers_its_resource_for_discovery_and_rest() {
    let (_fake, client, _clock) = manual_fake().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let established = crds.get("widgets.example.com").await.unwrap();
    let conditions = established.status.unwrap().conditions.unwrap();
    assert!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"));

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (resource, caps) = discovery
        .groups()
        .find(|g| g.name() == "example.com")
        .and_then(|g| g.recommended_kind("Widget"))
        .expect("the CRD's kind is discoverable");
    assert_eq!(resource.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);

    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "ns1", &ApiResource::from_gvk(&gvk));
    let mut widget = DynamicObject::new("w1", &ApiResource::from_gvk(&gvk));
    widget.data = json!({"spec": {"size": 3}});
    let created = widgets.patch("w1", &PatchParams::apply("promote"), &Patch::Apply(&widget)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.data["spec"]["size"], 3);

    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    let gone = status_of(widgets.get("w1").await.unwrap_err());
    assert_eq!(gone.code, 404, "the resource is no longer served");
}

#[tokio::test]
async fn watches_replay_from_a_resource_version_and_expire_when_compacted() {
    let clock = promote_core::clock::ManualClock::at("2026-11-30T10:00:00Z".parse().unwrap());
    let fake = promote_k8s::testing::FakeApiServer::builder().manual_clock(clock).history_limit(20).build();
    let client = kube::Client::new(fake.service(), "ns1");
    create_namespace(&client, "ns1").await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    let first = cms.create(&PostParams::default(), &config_map("a", json!({"app": "x"}))).await.unwrap();
    let from = first.metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &config_map("b", json!({"app": "y"}))).await.unwrap();
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.unwrap();

    // Replay after `from`, filtered by label: b is not app=x.
    let params = kube::api::WatchParams::default().labels("app=x").timeout(5);
    let mut stream = cms.watch(&params, &from).await.unwrap().boxed();
    match stream.next().await.unwrap().unwrap() {
        WatchEvent::Modified(cm) => assert_eq!(cm.data.unwrap()["k"], "2"),
        other => panic!("expected the replayed MODIFIED, got {other:?}"),
    }
    // Relabelling out of the selector shows as DELETED.
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "z"}}})))
        .await
        .unwrap();
    assert!(matches!(stream.next().await.unwrap().unwrap(), WatchEvent::Deleted(_)));

    // Bookmarks on request.
    let mut bookmarked = cms.watch(&kube::api::WatchParams::default().timeout(5), &from).await.unwrap().boxed();
    for _ in 0..3 {
        bookmarked.next().await.unwrap().unwrap(); // the replayed ADDED b, MODIFIED a twice
    }
    fake.send_bookmarks();
    match bookmarked.next().await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, fake.resource_version().to_string()),
        other => panic!("expected a bookmark, got {other:?}"),
    }

    // Push `from` out of the 20-event window: the watch gets 410 Expired as an ERROR event.
    for i in 0..25 {
        cms.patch("b", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": i.to_string()}}))).await.unwrap();
    }
    let mut expired = cms.watch(&kube::api::WatchParams::default(), &from).await.unwrap().boxed();
    match expired.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(e.message.starts_with(&format!("too old resource version: {from} (")), "{}", e.message);
        }
        other => panic!("expected 410, got {other:?}"),
    }
    assert!(expired.next().await.is_none(), "the stream ends after the ERROR");
}
