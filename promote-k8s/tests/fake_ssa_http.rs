//! Server-side apply through the fake's HTTP layer, against the documented behaviour
//! (<https://kubernetes.io/docs/reference/using-api/server-side-apply/>): what the 409 Status says, and what
//! managedFields show after each step. The field-set semantics themselves are unit-tested in the ssa module.
#![cfg(feature = "testing")]

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::{manual_fake, status_of};

fn applied(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": data})
}

async fn apply(cms: &Api<ConfigMap>, manager: &str, data: Value, force: bool) -> Result<ConfigMap, kube::Error> {
    let mut params = PatchParams::apply(manager);
    params.force = force;
    cms.patch("cfg", &params, &Patch::Apply(applied(data))).await
}

/// The data keys `manager` owns, read from managedFields (`f:data` → `f:<key>`).
fn owned_keys(cm: &ConfigMap, manager: &str) -> Vec<String> {
    let entries = cm.metadata.managed_fields.clone().unwrap_or_default();
    let mut keys: Vec<String> = entries
        .iter()
        .filter(|e| e.manager.as_deref() == Some(manager))
        .filter_map(|e| e.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:data").and_then(Value::as_object).cloned())
        .flat_map(|m| m.keys().map(|k| k.trim_start_matches("f:").to_string()).collect::<Vec<_>>())
        .collect();
    keys.sort();
    keys
}

/// "Conflicts": setting a field another applier owns to a different value is refused with a 409 naming the
/// field and the manager; "Field management": managers applying the same value share the field.
#[tokio::test]
async fn two_managers_share_a_field_and_conflict_on_a_different_value() {
    let (_fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    apply(&cms, "alpha", json!({"x": "1", "y": "2"}), false).await.unwrap();
    let shared = apply(&cms, "beta", json!({"x": "1"}), false).await.unwrap();
    assert_eq!(owned_keys(&shared, "alpha"), ["x", "y"]);
    assert_eq!(owned_keys(&shared, "beta"), ["x"]);

    let conflict = status_of(apply(&cms, "beta", json!({"x": "9"}), false).await.unwrap_err());
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(conflict.message, "Apply failed with 1 conflict: conflict with \"alpha\": .data.x");
    let details = conflict.details.unwrap();
    assert_eq!((details.name.as_str(), details.kind.as_str()), ("cfg", "configmaps"));
    let cause = &details.causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.message.as_str(), cause.field.as_str()),
        ("FieldManagerConflict", "conflict with \"alpha\"", ".data.x")
    );
    assert_eq!(cms.get("cfg").await.unwrap().data.unwrap()["x"], "1", "a refused apply changes nothing");
}

/// "Conflicts": a field last written by an update (not an apply) is named with the API version it was written at.
#[tokio::test]
async fn a_conflict_with_an_updater_names_its_api_version() {
    let (_fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    apply(&cms, "promote", json!({"x": "1"}), false).await.unwrap();
    let edit = PatchParams { field_manager: Some("kubectl-edit".into()), ..Default::default() };
    cms.patch("cfg", &edit, &Patch::Merge(json!({"data": {"x": "edited"}}))).await.unwrap();
    let conflict = status_of(apply(&cms, "promote", json!({"x": "1"}), false).await.unwrap_err());
    assert_eq!(conflict.message, "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .data.x");
    assert_eq!(conflict.details.unwrap().causes[0].message, "conflict with \"kubectl-edit\" using v1");
}

/// "Conflicts": with `force`, the applier takes the field and the former owner loses it.
#[tokio::test]
async fn force_takes_ownership() {
    let (_fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    apply(&cms, "alpha", json!({"x": "1", "y": "2"}), false).await.unwrap();
    let forced = apply(&cms, "beta", json!({"x": "9"}), true).await.unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["x"], "9");
    assert_eq!(owned_keys(&forced, "alpha"), ["y"]);
    assert_eq!(owned_keys(&forced, "beta"), ["x"]);
}

/// "Merge strategy" / field removal: a field an applier stops applying is deleted when nobody else owns it,
/// and only released (kept, with the other owner) when another manager owns it too.
#[tokio::test]
async fn a_field_dropped_from_an_apply_is_released_if_shared_and_deleted_if_not() {
    let (_fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    apply(&cms, "alpha", json!({"x": "1", "y": "2"}), false).await.unwrap();
    apply(&cms, "beta", json!({"x": "1"}), false).await.unwrap();
    let released = apply(&cms, "alpha", json!({"y": "2"}), false).await.unwrap();
    assert_eq!(released.data.as_ref().unwrap().get("x").map(String::as_str), Some("1"), "beta still owns x");
    assert_eq!(owned_keys(&released, "alpha"), ["y"]);
    let deleted = apply(&cms, "alpha", json!({}), false).await.unwrap();
    assert!(deleted.data.as_ref().is_none_or(|d| !d.contains_key("y")), "nobody else owned y");
}

#[tokio::test]
async fn apply_requires_a_field_manager_and_strict_validation_refuses_unknown_fields() {
    let (fake, _client, _clock) = manual_fake().await;
    let client = kube::Client::new(fake.service(), "ns1");
    let no_manager = axum::http::Request::patch("/api/v1/namespaces/ns1/configmaps/cfg")
        .header("Content-Type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&applied(json!({"x": "1"}))).unwrap())
        .unwrap();
    let refused = status_of(client.request::<ConfigMap>(no_manager).await.unwrap_err());
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        refused.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );

    let mut unknown = applied(json!({"x": "1"}));
    unknown["spec"] = json!({"oops": true});
    let strict =
        axum::http::Request::patch("/api/v1/namespaces/ns1/configmaps/cfg?fieldManager=promote&fieldValidation=Strict")
            .header("Content-Type", "application/apply-patch+yaml")
            .body(serde_json::to_vec(&unknown).unwrap())
            .unwrap();
    let refused = status_of(client.request::<ConfigMap>(strict).await.unwrap_err());
    assert_eq!(refused.code, 400);
    assert_eq!(
        refused.message,
        "failed to create typed patch object (ns1/cfg; v1, Kind=ConfigMap): .spec: field not declared in schema"
    );
    let ignore =
        axum::http::Request::patch("/api/v1/namespaces/ns1/configmaps/cfg?fieldManager=promote&fieldValidation=Ignore")
            .header("Content-Type", "application/apply-patch+yaml")
            .body(serde_json::to_vec(&unknown).unwrap())
            .unwrap();
    let created: ConfigMap = client.request(ignore).await.unwrap();
    assert_eq!(created.data.unwrap()["x"], "1");
}

#[tokio::test]
async fn an_unchanged_apply_writes_nothing() {
    let (fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    let first = apply(&cms, "promote", json!({"x": "1"}), false).await.unwrap();
    let rv = fake.resource_version();
    let again = apply(&cms, "promote", json!({"x": "1"}), false).await.unwrap();
    assert_eq!(fake.resource_version(), rv);
    assert_eq!(again.metadata.resource_version, first.metadata.resource_version);
}
