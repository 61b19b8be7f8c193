//! The Deployment controller: one ReplicaSet per pod template (labelled `pod-template-hash`, annotated with its
//! revision), old ReplicaSets scaled down once the new one is available, and the status and conditions
//! `kubectl rollout status` reads (observedGeneration, replica counts, Available, Progressing with
//! NewReplicaSetAvailable / ReplicaSetUpdated / ProgressDeadlineExceeded).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{
    builtin, children, create, int, is_deleting, objects, owner_reference, parse_time, set_status, template_hash, uid,
    update,
};
use crate::testing::resources::ResourceType;
use crate::testing::store::{Store, object_key, timestamp};

const MANAGER: &str = "kube-controller-manager";
const REVISION: &str = "deployment.kubernetes.io/revision";

fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// `maxUnavailable` of a RollingUpdate strategy (default 25%, rounded down); 0 for Recreate.
fn max_unavailable(deployment: &Value, replicas: i64) -> i64 {
    if deployment.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate") {
        return 0;
    }
    match deployment.pointer("/spec/strategy/rollingUpdate/maxUnavailable") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.trim_end_matches('%').parse::<i64>().map(|p| replicas * p / 100).unwrap_or(0),
        _ => replicas * 25 / 100,
    }
}

fn condition(kind: &str, ok: bool, reason: &str, message: String, now: DateTime<Utc>) -> Value {
    json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastUpdateTime": timestamp(now),
        "lastTransitionTime": timestamp(now), "reason": reason, "message": message})
}

fn find<'a>(conditions: &'a [Value], kind: &str) -> Option<&'a Value> {
    conditions.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// SetDeploymentCondition: an unchanged status and reason keeps the old condition; a changed reason with the
/// same status keeps the transition time.
fn set_condition(conditions: &mut Vec<Value>, mut new: Value) {
    if let Some(old) = find(conditions, new["type"].as_str().unwrap_or_default()) {
        if old["status"] == new["status"] && old["reason"] == new["reason"] {
            return;
        }
        if old["status"] == new["status"] {
            new["lastTransitionTime"] = old["lastTransitionTime"].clone();
        }
    }
    let kind = new["type"].clone();
    conditions.retain(|c| c["type"] != kind);
    conditions.push(new);
}

/// The new ReplicaSet for the deployment's current template: found by hash, or created.
fn new_replicaset(
    store: &mut Store,
    deploy_type: &ResourceType,
    rs_type: &ResourceType,
    deployment: &Value,
    owned: &[Value],
    now: DateTime<Utc>,
) -> (Value, bool) {
    let (namespace, name) = object_key(deployment);
    let replicas = deployment.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let template = deployment.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template);
    let max_revision = owned.iter().map(revision).max().unwrap_or(0);
    if let Some(rs) =
        owned.iter().find(|rs| rs.pointer("/metadata/labels/pod-template-hash").and_then(Value::as_str) == Some(&hash))
    {
        let mut scaled = rs.clone();
        scaled["spec"]["replicas"] = json!(replicas);
        scaled["spec"]["minReadySeconds"] = json!(int(deployment, "/spec/minReadySeconds"));
        if revision(rs) < max_revision {
            // A rollback to an older template makes its ReplicaSet the newest revision again.
            scaled["metadata"]["annotations"][REVISION] = json!((max_revision + 1).to_string());
        }
        update(store, rs_type, rs, scaled, MANAGER, now);
        let current =
            store.get(&rs_type.storage_key(), &namespace, &object_key(rs).1).cloned().unwrap_or_else(|| rs.clone());
        return (current, false);
    }
    let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    labels["pod-template-hash"] = json!(hash);
    let mut rs_template = template.clone();
    rs_template["metadata"]["labels"] = labels.clone();
    let mut selector = deployment.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let rs_name = format!("{name}-{hash}");
    let rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": rs_name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                REVISION: (max_revision + 1).to_string(),
                "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                "deployment.kubernetes.io/max-replicas": (replicas + (replicas + 3) / 4).to_string(),
            },
            "ownerReferences": owner_reference(deploy_type, deployment),
        },
        "spec": {"replicas": replicas, "minReadySeconds": int(deployment, "/spec/minReadySeconds"), "selector": selector, "template": rs_template},
    });
    create(store, rs_type, rs, MANAGER, now);
    let created = store.get(&rs_type.storage_key(), &namespace, &rs_name).cloned().unwrap_or(json!({}));
    (created, true)
}

pub(super) fn reconcile(store: &mut Store, now: DateTime<Utc>) {
    let deploy_type = builtin(store, "apps", "deployments");
    let rs_type = builtin(store, "apps", "replicasets");
    for deployment in objects(store, &deploy_type) {
        if is_deleting(&deployment) || deployment.pointer("/spec/paused") == Some(&json!(true)) {
            continue;
        }
        let (namespace, name) = object_key(&deployment);
        let replicas = deployment.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let owned = children(store, &rs_type, &namespace, uid(&deployment));
        let (new_rs, created) = new_replicaset(store, &deploy_type, &rs_type, &deployment, &owned, now);
        let new_name = object_key(&new_rs).1;
        let new_available = int(&new_rs, "/status/availableReplicas");
        if new_available >= replicas {
            for old in owned.iter().filter(|rs| object_key(rs).1 != new_name) {
                let mut scaled = old.clone();
                scaled["spec"]["replicas"] = json!(0);
                update(store, &rs_type, old, scaled, MANAGER, now);
            }
        }
        // The revision annotation on the Deployment itself, as `kubectl rollout history` reads it.
        let current = store.get(&deploy_type.storage_key(), &namespace, &name).cloned().unwrap_or(deployment.clone());
        let rev = new_rs.pointer("/metadata/annotations").and_then(|a| a.get(REVISION)).cloned();
        if let Some(rev) = rev
            && current.pointer("/metadata/annotations").and_then(|a| a.get(REVISION)) != Some(&rev)
        {
            let mut annotated = current.clone();
            if !annotated["metadata"]["annotations"].is_object() {
                annotated["metadata"]["annotations"] = json!({});
            }
            annotated["metadata"]["annotations"][REVISION] = rev;
            update(store, &deploy_type, &current, annotated, MANAGER, now);
        }
        let current = store.get(&deploy_type.storage_key(), &namespace, &name).cloned().unwrap_or(deployment.clone());
        let status = deployment_status(store, &rs_type, &current, &new_name, created, now);
        set_status(store, &deploy_type, &current, status, MANAGER, now);
    }
}

fn deployment_status(
    store: &Store,
    rs_type: &ResourceType,
    deployment: &Value,
    new_name: &str,
    created: bool,
    now: DateTime<Utc>,
) -> Value {
    let (namespace, _) = object_key(deployment);
    let owned = children(store, rs_type, &namespace, uid(deployment));
    let replicas = deployment.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let total: i64 = owned.iter().map(|rs| int(rs, "/status/replicas")).sum();
    let ready: i64 = owned.iter().map(|rs| int(rs, "/status/readyReplicas")).sum();
    let available: i64 = owned.iter().map(|rs| int(rs, "/status/availableReplicas")).sum();
    let updated = owned.iter().find(|rs| object_key(rs).1 == new_name).map_or(0, |rs| int(rs, "/status/replicas"));
    let old_status = deployment.get("status").cloned().unwrap_or(json!({}));
    let mut conditions: Vec<Value> =
        old_status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();

    let available_ok = available >= replicas - max_unavailable(deployment, replicas);
    set_condition(
        &mut conditions,
        if available_ok {
            condition("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability.".into(), now)
        } else {
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            )
        },
    );

    let complete = updated == replicas && total == replicas && available == replicas;
    // DeploymentProgressing: more updated, ready or available replicas, or fewer old ones, than last time.
    let old_updated = int(&old_status, "/updatedReplicas");
    let progressing = updated > old_updated
        || ready > int(&old_status, "/readyReplicas")
        || available > int(&old_status, "/availableReplicas")
        || (total - updated) < (int(&old_status, "/replicas") - old_updated);
    let current = find(&conditions, "Progressing").cloned();
    if created {
        let c = condition(
            "Progressing",
            true,
            "NewReplicaSetCreated",
            format!("Created new replica set \"{new_name}\""),
            now,
        );
        conditions.retain(|c| c["type"] != "Progressing");
        conditions.push(c);
    } else if complete {
        let mut c = condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            now,
        );
        match &current {
            Some(old) if old["reason"] == "NewReplicaSetAvailable" => c = old.clone(),
            Some(old) if old["status"] == "True" => c["lastTransitionTime"] = old["lastTransitionTime"].clone(),
            _ => {}
        }
        conditions.retain(|c| c["type"] != "Progressing");
        conditions.push(c);
    } else if progressing || current.is_none() {
        let mut c = condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
            now,
        );
        if let Some(old) = current.as_ref().filter(|old| old["status"] == "True") {
            c["lastTransitionTime"] = old["lastTransitionTime"].clone();
        }
        conditions.retain(|c| c["type"] != "Progressing");
        conditions.push(c);
    } else if let Some(old) = &current {
        let deadline = deployment.pointer("/spec/progressDeadlineSeconds").and_then(Value::as_i64).unwrap_or(600);
        let timed_out = old["reason"] == "ProgressDeadlineExceeded"
            || (old["reason"] != "NewReplicaSetAvailable"
                && parse_time(old, "/lastUpdateTime").is_some_and(|t| (now - t).num_milliseconds() > deadline * 1000));
        if timed_out && old["reason"] != "ProgressDeadlineExceeded" {
            let c = condition(
                "Progressing",
                false,
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                now,
            );
            set_condition(&mut conditions, c);
        }
    }
    // The real controller lists Available before Progressing.
    conditions.sort_by_key(|c| c["type"] != "Available");

    let mut status = json!({"observedGeneration": int(deployment, "/metadata/generation"), "conditions": conditions});
    for (field, value) in
        [("replicas", total), ("updatedReplicas", updated), ("readyReplicas", ready), ("availableReplicas", available)]
    {
        if value > 0 {
            status[field] = json!(value);
        }
    }
    if replicas - available > 0 {
        status["unavailableReplicas"] = json!(replicas - available);
    }
    status
}
