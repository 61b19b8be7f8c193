//! Garbage collection by ownerReferences, namespace deletion, and what deleting a CRD takes with it.

use serde_json::{Value, json};

use super::super::resources::StorageKey;
use super::super::store::{Store, object_key, timestamp};

/// How dependents are treated when their owner is deleted (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Objects that name `uid` in their ownerReferences.
fn dependents(store: &Store, uid: &str) -> Vec<(StorageKey, String, String)> {
    let mut found = Vec::new();
    for key in store.storage_keys() {
        for object in store.list(&key, None) {
            let owned = object
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r.get("uid").and_then(Value::as_str) == Some(uid)));
            if owned {
                let (ns, name) = object_key(object);
                found.push((key.clone(), ns, name));
            }
        }
    }
    found
}

/// Deletes an object and, unless orphaned, everything it owns (depth first). Returns the deleted object.
pub(super) fn delete_cascading(
    store: &mut Store,
    key: &StorageKey,
    namespace: &str,
    name: &str,
    policy: Propagation,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Value> {
    let object = store.get(key, namespace, name)?.clone();
    let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    if policy == Propagation::Foreground {
        // The owner is visible with its deletionTimestamp while its dependents go, as on the real server.
        let mut marked = object.clone();
        marked["metadata"]["deletionTimestamp"] = json!(timestamp(now));
        marked["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
        if let Some(rt) = store.catalogue.by_storage(key).cloned() {
            store.update(&rt, marked);
        }
    }
    for (dep_key, dep_ns, dep_name) in dependents(store, &uid) {
        match policy {
            Propagation::Orphan => orphan(store, &dep_key, &dep_ns, &dep_name, &uid),
            _ => {
                delete_cascading(store, &dep_key, &dep_ns, &dep_name, policy, now);
            }
        }
    }
    if *key == super::super::store::namespaces_key() {
        delete_namespace_contents(store, name, now);
    }
    let removed = store.remove(key, namespace, name);
    if key.group == "apiextensions.k8s.io" && key.plural == "customresourcedefinitions" {
        delete_custom_resources(store, &object);
    }
    removed
}

fn orphan(store: &mut Store, key: &StorageKey, namespace: &str, name: &str, owner_uid: &str) {
    let Some(rt) = store.catalogue.by_storage(key).cloned() else { return };
    let Some(mut object) = store.get(key, namespace, name).cloned() else { return };
    if let Some(refs) = object.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
        if refs.is_empty() {
            object["metadata"].as_object_mut().map(|m| m.remove("ownerReferences"));
        }
    }
    store.update(&rt, object);
}

/// Everything in a namespace goes with it (the namespace controller's job, done at once here).
fn delete_namespace_contents(store: &mut Store, namespace: &str, now: chrono::DateTime<chrono::Utc>) {
    for key in store.storage_keys() {
        let names: Vec<String> = store.list(&key, Some(namespace)).iter().map(|o| object_key(o).1).collect();
        for name in names {
            delete_cascading(store, &key, namespace, &name, Propagation::Background, now);
        }
    }
}

/// Deleting a CRD deletes its custom resources and stops serving them.
fn delete_custom_resources(store: &mut Store, crd: &Value) {
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
    let key = StorageKey { group: group.to_string(), plural: plural.to_string() };
    let keys: Vec<(String, String)> = store.list(&key, None).iter().map(|o| object_key(o)).collect();
    for (ns, name) in keys {
        store.remove(&key, &ns, &name);
    }
    let crd_name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    store.catalogue.unregister_crd(crd_name);
}
