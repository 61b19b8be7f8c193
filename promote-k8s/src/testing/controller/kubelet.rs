//! The simulated kubelet: every pod's status follows the outcome scripted for its containers' images.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::super::outcomes::{OutcomeScript, PodOutcome};
use super::super::store::timestamp;
use super::{builtin, objects, parse_time, set_status, uid};

const NODE: &str = "fake-node";

/// What one container looks like now.
struct ContainerView {
    status: Value,
    ready: bool,
    running: bool,
    /// When it became ready (deterministic, so repeated ticks write nothing).
    ready_since: Option<DateTime<Utc>>,
    /// Exited successfully (Job pods).
    succeeded: bool,
}

fn config_error_message(container: &Value) -> String {
    let refs = container
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            e.pointer("/configMapRef/name")
                .map(|n| ("configmap", n))
                .or_else(|| e.pointer("/secretRef/name").map(|n| ("secret", n)))
        })
        .chain(container.get("env").and_then(Value::as_array).into_iter().flatten().filter_map(|e| {
            e.pointer("/valueFrom/configMapKeyRef/name")
                .map(|n| ("configmap", n))
                .or_else(|| e.pointer("/valueFrom/secretKeyRef/name").map(|n| ("secret", n)))
        }))
        .next();
    match refs {
        Some((kind, name)) => format!("{kind} \"{}\" not found", name.as_str().unwrap_or_default()),
        None => "configmap \"config\" not found".to_string(),
    }
}

fn container_view(pod: &Value, container: &Value, outcome: PodOutcome, job: bool, now: DateTime<Utc>) -> ContainerView {
    let name = container.get("name").and_then(Value::as_str).unwrap_or_default();
    let image = container.get("image").and_then(Value::as_str).unwrap_or_default();
    let created = parse_time(pod, "/metadata/creationTimestamp").unwrap_or(now);
    let mut status =
        json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false});
    let waiting = |reason: &str, message: Option<String>| {
        let mut w = json!({"reason": reason});
        if let Some(m) = message {
            w["message"] = json!(m);
        }
        json!({"waiting": w})
    };
    let started_at = |at: DateTime<Utc>| json!({"running": {"startedAt": timestamp(at)}});
    let mut view =
        ContainerView { status: Value::Null, ready: false, running: false, ready_since: None, succeeded: false };
    let ready_at = match outcome {
        PodOutcome::Ready => Some(created),
        PodOutcome::Slow(delay) => Some(created + Duration::from_std(delay).unwrap_or(Duration::zero())),
        _ => None,
    };
    match (outcome, ready_at) {
        (PodOutcome::Ready | PodOutcome::Slow(_), Some(at)) if now >= at => {
            if job {
                status["state"] = json!({"terminated": {
                    "exitCode": 0, "reason": "Completed", "startedAt": timestamp(created), "finishedAt": timestamp(at)}});
                view.succeeded = true;
            } else {
                status["state"] = started_at(created);
                status["ready"] = json!(true);
                status["started"] = json!(true);
                view.ready = true;
                view.running = true;
                view.ready_since = Some(at);
            }
        }
        (PodOutcome::Ready | PodOutcome::Slow(_), _) => status["state"] = waiting("ContainerCreating", None),
        (PodOutcome::ImagePullBackOff, _) => {
            status["state"] = waiting("ImagePullBackOff", Some(format!("Back-off pulling image \"{image}\"")))
        }
        (PodOutcome::ErrImagePull, _) => {
            status["state"] = waiting(
                "ErrImagePull",
                Some(format!(
                    "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve \
                     reference \"{image}\": {image}: not found"
                )),
            )
        }
        (PodOutcome::CrashLoopBackOff, _) => {
            let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
            status["state"] = waiting(
                "CrashLoopBackOff",
                Some(format!("back-off 10s restarting failed container={name} pod={pod_name}_{ns}({})", uid(pod))),
            );
            status["lastState"] = json!({"terminated": {
                "exitCode": 1, "reason": "Error", "startedAt": timestamp(created), "finishedAt": timestamp(created)}});
            status["restartCount"] = json!(1);
            view.running = true;
        }
        (PodOutcome::CreateContainerConfigError, _) => {
            status["state"] = waiting("CreateContainerConfigError", Some(config_error_message(container)))
        }
        (PodOutcome::NeverReady, _) => {
            status["state"] = started_at(created);
            status["started"] = json!(true);
            view.running = true;
        }
    }
    view.status = status;
    view
}

fn condition(kind: &str, ok: bool, at: DateTime<Utc>, reason: Option<(&str, String)>) -> Value {
    let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null,
        "lastTransitionTime": timestamp(at)});
    if let Some((reason, message)) = reason {
        c["reason"] = json!(reason);
        c["message"] = json!(message);
    }
    c
}

/// A stable pod IP from the uid (in the usual pod network range; it is never connected to).
fn pod_ip(pod: &Value) -> String {
    let h = uid(pod).bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.244.{}.{}", (h >> 8) % 250, h % 250 + 2)
}

fn pod_status(pod: &Value, outcomes: &OutcomeScript, now: DateTime<Utc>) -> Value {
    let created = parse_time(pod, "/metadata/creationTimestamp").unwrap_or(now);
    let job = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r.get("kind").and_then(Value::as_str) == Some("Job")));
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let views: Vec<ContainerView> = containers
        .iter()
        .map(|c| {
            let outcome = outcomes.outcome_for(c.get("image").and_then(Value::as_str).unwrap_or_default());
            container_view(pod, c, outcome, job, now)
        })
        .collect();
    let all_ready = !views.is_empty() && views.iter().all(|v| v.ready);
    let succeeded = !views.is_empty() && views.iter().all(|v| v.succeeded);
    let phase = if succeeded {
        "Succeeded"
    } else if !views.is_empty() && views.iter().all(|v| v.running) {
        "Running"
    } else {
        "Pending"
    };
    let ready_since = views.iter().filter_map(|v| v.ready_since).max().unwrap_or(created);
    let unready: Vec<&str> =
        views.iter().filter(|v| !v.ready).filter_map(|v| v.status.get("name").and_then(Value::as_str)).collect();
    let not_ready = || Some(("ContainersNotReady", format!("containers with unready status: [{}]", unready.join(" "))));
    let (ready_at, ready_reason) = if all_ready { (ready_since, None) } else { (created, not_ready()) };
    let ready_reason = if succeeded { Some(("PodCompleted", String::new())) } else { ready_reason };
    let conditions = json!([
        condition("PodReadyToStartContainers", true, created, None),
        condition("Initialized", true, created, None),
        condition("Ready", all_ready, ready_at, ready_reason.clone()),
        condition("ContainersReady", all_ready, ready_at, ready_reason),
        condition("PodScheduled", true, created, None),
    ]);
    let ip = pod_ip(pod);
    json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": "10.0.0.10",
        "hostIPs": [{"ip": "10.0.0.10"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": timestamp(created),
        "containerStatuses": views.into_iter().map(|v| v.status).collect::<Vec<_>>(),
        "qosClass": "BestEffort",
    })
}

pub(super) fn reconcile(store: &mut super::Store, outcomes: &OutcomeScript, now: DateTime<Utc>) {
    let pods = builtin(store, "", "pods");
    for pod in objects(store, &pods) {
        if matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed")) {
            continue;
        }
        if pod.pointer("/spec/nodeName").is_none() {
            // Scheduling: the one simulated node.
            let mut scheduled = pod.clone();
            scheduled["spec"]["nodeName"] = json!(NODE);
            super::update(store, &pods, &pod, scheduled, "kube-scheduler", now);
            continue;
        }
        let status = pod_status(&pod, outcomes, now);
        set_status(store, &pods, &pod, status, "kubelet", now);
    }
}

/// Whether a pod is ready, and since when (for `minReadySeconds`).
pub(super) fn ready_since(pod: &Value) -> Option<DateTime<Utc>> {
    let conditions = pod.pointer("/status/conditions").and_then(Value::as_array)?;
    let ready = conditions.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
    if ready.get("status").and_then(Value::as_str) != Some("True") {
        return None;
    }
    parse_time(ready, "/lastTransitionTime")
}
