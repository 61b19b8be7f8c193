//! The ReplicaSet controller: keeps `spec.replicas` pods, and counts ready and available ones.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::kubelet::ready_since;
use super::{builtin, children, create, int, is_deleting, objects, owner_reference, set_status, uid};
use crate::testing::store::{Store, object_key};

/// A pod for `owner`'s template, named `<prefix><suffix>`.
pub(super) fn pod_from_template(
    owner_type: &crate::testing::resources::ResourceType,
    owner: &Value,
    name: String,
    extra_labels: &[(&str, String)],
) -> Value {
    let (namespace, _) = object_key(owner);
    let template = owner.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    let mut metadata = json!({"name": name, "namespace": namespace, "labels": labels,
        "ownerReferences": owner_reference(owner_type, owner)});
    if let Some(annotations) = template.pointer("/metadata/annotations") {
        metadata["annotations"] = annotations.clone();
    }
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["nodeName"] = json!("fake-node");
    if spec.get("restartPolicy").is_none() {
        spec["restartPolicy"] = json!("Always");
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": {"phase": "Pending", "qosClass": "BestEffort"}})
}

/// Ready pods and, of those, the ones ready for at least `min_ready_seconds`.
pub(super) fn count_ready(pods: &[Value], min_ready_seconds: i64, now: DateTime<Utc>) -> (i64, i64) {
    let mut ready = 0;
    let mut available = 0;
    for pod in pods {
        if let Some(since) = ready_since(pod) {
            ready += 1;
            if (now - since).num_seconds() >= min_ready_seconds {
                available += 1;
            }
        }
    }
    (ready, available)
}

pub(super) fn reconcile(store: &mut Store, now: DateTime<Utc>) {
    let replicasets = builtin(store, "apps", "replicasets");
    let pods = builtin(store, "", "pods");
    for rs in objects(store, &replicasets) {
        if is_deleting(&rs) {
            continue;
        }
        let (namespace, name) = object_key(&rs);
        let desired = rs.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0) as usize;
        let mut owned = children(store, &pods, &namespace, uid(&rs));
        if owned.len() < desired {
            for _ in owned.len()..desired {
                let pod_name = format!("{name}-{}", store.random_suffix(5));
                let hash = rs.pointer("/metadata/labels/pod-template-hash").and_then(Value::as_str).map(str::to_string);
                let extra: Vec<(&str, String)> = hash.into_iter().map(|h| ("pod-template-hash", h)).collect();
                let pod = pod_from_template(&replicasets, &rs, pod_name, &extra);
                create(store, &pods, pod, "kube-controller-manager", now);
            }
        } else if owned.len() > desired {
            // Not-ready pods go first, then the newest, as the real controller prefers.
            owned.sort_by_key(|p| {
                (
                    ready_since(p).is_some(),
                    std::cmp::Reverse(p.pointer("/metadata/creationTimestamp").cloned().map(|v| v.to_string())),
                )
            });
            for pod in owned.iter().take(owned.len() - desired) {
                let (ns, pod_name) = object_key(pod);
                store.remove(&pods.storage_key(), &ns, &pod_name);
            }
        }
        let owned = children(store, &pods, &namespace, uid(&rs));
        let (ready, available) = count_ready(&owned, int(&rs, "/spec/minReadySeconds"), now);
        let mut status = json!({
            "replicas": owned.len(),
            "fullyLabeledReplicas": owned.len(),
            "observedGeneration": int(&rs, "/metadata/generation"),
        });
        if ready > 0 {
            status["readyReplicas"] = json!(ready);
        }
        if available > 0 {
            status["availableReplicas"] = json!(available);
        }
        if owned.is_empty() {
            status.as_object_mut().map(|m| m.remove("fullyLabeledReplicas"));
            status["replicas"] = json!(0);
        }
        let current = store.get(&replicasets.storage_key(), &namespace, &name).cloned().unwrap_or(rs);
        set_status(store, &replicasets, &current, status, "kube-controller-manager", now);
    }
}
