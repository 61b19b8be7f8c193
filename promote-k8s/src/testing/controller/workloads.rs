//! Simplified StatefulSet, DaemonSet and Job controllers.
//!
//! - StatefulSet: pods `<name>-<ordinal>` created together (no ordered start), a pod whose template revision is
//!   stale is replaced; `currentRevision` becomes `updateRevision` once every pod is updated and ready.
//! - DaemonSet: one simulated node, so one pod.
//! - Job: one pod at a time until `completions` (default 1) pods succeeded; then `Complete`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::replicaset::{count_ready, pod_from_template};
use super::{builtin, children, create, int, is_deleting, objects, set_status, template_hash, uid};
use crate::testing::store::{Store, object_key, timestamp};

const MANAGER: &str = "kube-controller-manager";
const REVISION_LABEL: &str = "controller-revision-hash";

fn revision_of(pod: &Value) -> &str {
    pod.pointer("/metadata/labels").and_then(|l| l.get(REVISION_LABEL)).and_then(Value::as_str).unwrap_or_default()
}

pub(super) fn statefulsets(store: &mut Store, now: DateTime<Utc>) {
    let sts_type = builtin(store, "apps", "statefulsets");
    let pods = builtin(store, "", "pods");
    for sts in objects(store, &sts_type) {
        if is_deleting(&sts) {
            continue;
        }
        let (namespace, name) = object_key(&sts);
        let replicas = sts.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0);
        let update_revision = format!("{name}-{}", template_hash(&sts["spec"]["template"]));
        for pod in children(store, &pods, &namespace, uid(&sts)) {
            let ordinal = object_key(&pod).1.rsplit('-').next().and_then(|o| o.parse::<i64>().ok()).unwrap_or(i64::MAX);
            if ordinal >= replicas || revision_of(&pod) != update_revision {
                store.remove(&pods.storage_key(), &namespace, &object_key(&pod).1);
            }
        }
        for ordinal in 0..replicas {
            let pod_name = format!("{name}-{ordinal}");
            if store.get(&pods.storage_key(), &namespace, &pod_name).is_none() {
                let labels = [
                    (REVISION_LABEL, update_revision.clone()),
                    ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                    ("apps.kubernetes.io/pod-index", ordinal.to_string()),
                ];
                let pod = pod_from_template(&sts_type, &sts, pod_name, &labels);
                create(store, &pods, pod, MANAGER, now);
            }
        }
        let owned = children(store, &pods, &namespace, uid(&sts));
        let (ready, available) = count_ready(&owned, int(&sts, "/spec/minReadySeconds"), now);
        let updated = owned.iter().filter(|p| revision_of(p) == update_revision).count() as i64;
        let done = updated == replicas && ready == replicas;
        let previous_current = sts.pointer("/status/currentRevision").and_then(Value::as_str).unwrap_or_default();
        let current_revision =
            if done || previous_current.is_empty() { update_revision.clone() } else { previous_current.to_string() };
        let current_replicas = if current_revision == update_revision { updated } else { owned.len() as i64 - updated };
        let status = json!({
            "observedGeneration": int(&sts, "/metadata/generation"),
            "replicas": owned.len(),
            "readyReplicas": ready,
            "availableReplicas": available,
            "currentReplicas": current_replicas,
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": update_revision,
            "collisionCount": 0,
        });
        let current = store.get(&sts_type.storage_key(), &namespace, &name).cloned().unwrap_or(sts);
        set_status(store, &sts_type, &current, status, MANAGER, now);
    }
}

pub(super) fn daemonsets(store: &mut Store, now: DateTime<Utc>) {
    let ds_type = builtin(store, "apps", "daemonsets");
    let pods = builtin(store, "", "pods");
    for ds in objects(store, &ds_type) {
        if is_deleting(&ds) {
            continue;
        }
        let (namespace, name) = object_key(&ds);
        let hash = template_hash(&ds["spec"]["template"]);
        let mut owned = children(store, &pods, &namespace, uid(&ds));
        for pod in owned.iter().filter(|p| revision_of(p) != hash) {
            store.remove(&pods.storage_key(), &namespace, &object_key(pod).1);
        }
        owned.retain(|p| revision_of(p) == hash);
        if owned.is_empty() {
            let pod_name = format!("{name}-{}", store.random_suffix(5));
            let pod = pod_from_template(&ds_type, &ds, pod_name, &[(REVISION_LABEL, hash.clone())]);
            create(store, &pods, pod, MANAGER, now);
        }
        let owned = children(store, &pods, &namespace, uid(&ds));
        let (ready, available) = count_ready(&owned, int(&ds, "/spec/minReadySeconds"), now);
        let mut status = json!({
            "currentNumberScheduled": owned.len(),
            "desiredNumberScheduled": 1,
            "numberMisscheduled": 0,
            "numberReady": ready,
            "observedGeneration": int(&ds, "/metadata/generation"),
            "updatedNumberScheduled": owned.len(),
        });
        if available > 0 {
            status["numberAvailable"] = json!(available);
        } else {
            status["numberUnavailable"] = json!(1);
        }
        let current = store.get(&ds_type.storage_key(), &namespace, &name).cloned().unwrap_or(ds);
        set_status(store, &ds_type, &current, status, MANAGER, now);
    }
}

pub(super) fn jobs(store: &mut Store, now: DateTime<Utc>) {
    let job_type = builtin(store, "batch", "jobs");
    let pods = builtin(store, "", "pods");
    for job in objects(store, &job_type) {
        if is_deleting(&job) || job.pointer("/status/completionTime").is_some() {
            continue;
        }
        let (namespace, name) = object_key(&job);
        let completions = job.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1);
        let owned = children(store, &pods, &namespace, uid(&job));
        let succeeded = owned.iter().filter(|p| p.pointer("/status/phase") == Some(&json!("Succeeded"))).count() as i64;
        let active = owned.len() as i64 - succeeded;
        if active == 0 && succeeded < completions {
            let pod_name = format!("{name}-{}", store.random_suffix(5));
            let labels = [
                ("batch.kubernetes.io/controller-uid", uid(&job).to_string()),
                ("batch.kubernetes.io/job-name", name.clone()),
                ("controller-uid", uid(&job).to_string()),
                ("job-name", name.clone()),
            ];
            let mut pod = pod_from_template(&job_type, &job, pod_name, &labels);
            pod["spec"]["restartPolicy"] =
                job.pointer("/spec/template/spec/restartPolicy").cloned().unwrap_or(json!("Never"));
            create(store, &pods, pod, MANAGER, now);
        }
        let start = job.pointer("/status/startTime").cloned().unwrap_or(json!(timestamp(now)));
        let mut status = json!({"startTime": start, "active": active, "succeeded": succeeded, "ready": 0,
            "terminating": 0, "uncountedTerminatedPods": {}});
        if active == 0 {
            status.as_object_mut().map(|m| m.remove("active"));
        }
        if succeeded == 0 {
            status.as_object_mut().map(|m| m.remove("succeeded"));
        }
        if succeeded >= completions {
            status["completionTime"] = json!(timestamp(now));
            status["conditions"] = json!([
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods",
                 "lastProbeTime": timestamp(now), "lastTransitionTime": timestamp(now)},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods",
                 "lastProbeTime": timestamp(now), "lastTransitionTime": timestamp(now)},
            ]);
        }
        let current = store.get(&job_type.storage_key(), &namespace, &name).cloned().unwrap_or(job);
        set_status(store, &job_type, &current, status, MANAGER, now);
    }
}
