//! The simulated controllers and kubelet: Deployment → ReplicaSet → Pod, StatefulSet, DaemonSet, Job, PVC
//! binding, LoadBalancer ingress, CRD establishment, namespace defaults. They run to a fixed point after every
//! write and on every clock tick, reading time from the injected clock.

mod deployment;
mod kubelet;
mod replicaset;
mod simple;
mod workloads;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::outcomes::OutcomeScript;
use super::resources::ResourceType;
use super::ssa;
use super::store::{Store, object_key};

pub(crate) use simple::{admit_create, bootstrap_namespace};

/// How many rounds a reconcile may take before it stops (each round reacts to the previous one's writes).
const MAX_ROUNDS: usize = 12;

/// Runs every controller until a round writes nothing.
pub(crate) fn reconcile(store: &mut Store, outcomes: &OutcomeScript, now: DateTime<Utc>) {
    for _ in 0..MAX_ROUNDS {
        let before = store.resource_version();
        simple::crds(store, now);
        simple::namespaces(store, now);
        deployment::reconcile(store, now);
        replicaset::reconcile(store, now);
        workloads::statefulsets(store, now);
        workloads::daemonsets(store, now);
        workloads::jobs(store, now);
        kubelet::reconcile(store, outcomes, now);
        simple::persistent_volume_claims(store, now);
        simple::load_balancers(store, now);
        if store.resource_version() == before {
            break;
        }
    }
}

/// A built-in type by group and plural.
pub(super) fn builtin(store: &Store, group: &str, plural: &str) -> ResourceType {
    store.catalogue.by_plural(group, "v1", plural).cloned().expect("built-in types are always served")
}

/// Copies of the stored objects of a type (all namespaces).
pub(super) fn objects(store: &Store, rt: &ResourceType) -> Vec<Value> {
    store.list(&rt.storage_key(), None).into_iter().cloned().collect()
}

pub(super) fn uid(object: &Value) -> &str {
    object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default()
}

pub(super) fn owned_by(object: &Value, owner_uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid)))
}

/// The controller ownerReference to `owner`.
pub(super) fn owner_reference(rt: &ResourceType, owner: &Value) -> Value {
    json!([{
        "apiVersion": rt.api_version(),
        "kind": rt.kind,
        "name": object_key(owner).1,
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

/// Objects of `rt` in `namespace` that `owner_uid` controls.
pub(super) fn children(store: &Store, rt: &ResourceType, namespace: &str, owner_uid: &str) -> Vec<Value> {
    store.list(&rt.storage_key(), Some(namespace)).into_iter().filter(|o| owned_by(o, owner_uid)).cloned().collect()
}

pub(super) fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

pub(super) fn is_deleting(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

/// Writes `status` through the status subresource as `manager`, if it differs.
pub(super) fn set_status(
    store: &mut Store,
    rt: &ResourceType,
    object: &Value,
    status: Value,
    manager: &str,
    now: DateTime<Utc>,
) {
    if object.get("status") == Some(&status) {
        return;
    }
    let mut new = object.clone();
    new["status"] = status;
    let new = ssa::record_status_update(object, new, manager, now);
    store.update(rt, new);
}

/// Writes a main-resource change as `manager`, if it differs.
pub(super) fn update(store: &mut Store, rt: &ResourceType, old: &Value, new: Value, manager: &str, now: DateTime<Utc>) {
    if *old == new {
        return;
    }
    let new = ssa::record_update(Some(old), new, manager, now);
    store.update(rt, new);
}

/// Creates an object as `manager` (the controllers' creates cannot collide: names are derived or random).
pub(super) fn create(store: &mut Store, rt: &ResourceType, object: Value, manager: &str, now: DateTime<Utc>) {
    let object = ssa::record_update(None, object, manager, now);
    // A vanished namespace or a name taken meanwhile: the next round sees the new state.
    let _ = store.create(rt, object, now);
}

/// The hash the Deployment and DaemonSet controllers label pods with: FNV-1a of the template, in the
/// API server's safe alphabet. The template is hashed with its keys sorted: with serde_json's
/// `preserve_order` (which another crate of a build may turn on) a map keeps its insertion order, and the
/// same template written in another order (a merge patch, a rollback) must get the same hash.
pub(super) fn template_hash(template: &Value) -> String {
    let mut bytes = Vec::new();
    write_sorted(&mut bytes, template);
    let mut h: u32 = 0x811c_9dc5;
    for byte in bytes {
        h = (h ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = u64::from(h);
    (0..10)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            if x == 0 {
                x = u64::from(h.rotate_left(7)) + 1;
            }
            c
        })
        .collect()
}

/// `value` as JSON with every object's keys in sorted order, whatever order the map keeps them in.
fn write_sorted(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(key).unwrap_or_default());
                out.push(b':');
                write_sorted(out, item);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(out, item);
            }
            out.push(b']');
        }
        scalar => out.extend(serde_json::to_vec(scalar).unwrap_or_default()),
    }
}

pub(super) fn parse_time(object: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_hashes_the_same_whatever_order_its_keys_were_written_in() {
        // Built key by key so that, with serde_json's `preserve_order`, the two maps keep different orders.
        let mut image_first = serde_json::Map::new();
        image_first.insert("image".into(), json!("registry.local/slow:1"));
        image_first.insert("name".into(), json!("app"));
        let mut name_first = serde_json::Map::new();
        name_first.insert("name".into(), json!("app"));
        name_first.insert("image".into(), json!("registry.local/slow:1"));
        let template = |container: serde_json::Map<String, Value>| json!({"spec": {"containers": [container]}});
        assert_eq!(template_hash(&template(image_first)), template_hash(&template(name_first)));
        assert_ne!(
            template_hash(&json!({"spec": {"containers": [{"name": "app", "image": "a:1"}]}})),
            template_hash(&json!({"spec": {"containers": [{"name": "app", "image": "a:2"}]}}))
        );
    }
}
