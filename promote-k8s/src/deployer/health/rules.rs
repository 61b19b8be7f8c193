//! Health rules, evaluated on dynamic objects (no typed API, so no Kubernetes minor version is pinned).
//!
//! Deployments, StatefulSets and DaemonSets follow `kubectl rollout status`, word for word: the controller
//! must have observed the object's generation, then updated, ready and available replicas are counted.
//! Other kinds follow kstatus-style rules: a Job completes, a PVC is bound, a CRD is established, a
//! LoadBalancer Service has an ingress, a Namespace is active, a Pod is ready, and any other object with
//! `status.conditions` is ready when its `Ready` condition is true (and its controller observed its
//! generation), failed when `Stalled` is true.

use serde_json::Value;

use super::pods::{PodFailure, failing_container, owned_by};
use crate::deployer::objects::GroupKind;

/// Kinds that are in effect as soon as they are stored: nothing to wait for.
const SETTLED_KINDS: &[&str] = &[
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "CronJob",
    "Endpoints",
    "EndpointSlice",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The groups of the built-in kinds in [`SETTLED_KINDS`].
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "apps",
    "batch",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "policy",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "autoscaling",
    "discovery.k8s.io",
    "admissionregistration.k8s.io",
];

/// How an object is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Healthy; what kubectl would print.
    Ready(String),
    /// Not yet; what it waits for, and a count of done out of total when there is one.
    Waiting { message: String, counts: Option<(u64, u64)> },
    /// It will not become healthy without a change.
    Failed(String),
}

impl State {
    fn waiting(message: String) -> Self {
        State::Waiting { message, counts: None }
    }

    fn counting(message: String, done: i64, total: i64) -> Self {
        State::Waiting { message, counts: Some((done.max(0) as u64, total.max(0) as u64)) }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            State::Ready(message) | State::Waiting { message, .. } | State::Failed(message) => message,
        }
    }
}

/// Whether objects of this kind may need waiting for. `service_type` is the Service's `spec.type`.
pub(crate) fn needs_waiting(group_kind: &GroupKind, service_type: Option<&str>) -> bool {
    if group_kind.is("", "Service") {
        return service_type == Some("LoadBalancer");
    }
    !(BUILTIN_GROUPS.contains(&group_kind.group.as_str()) && SETTLED_KINDS.contains(&group_kind.kind.as_str()))
}

/// The ReplicaSets and Pods in an object's namespace, for the workload rules.
#[derive(Debug, Default)]
pub(crate) struct Neighbours<'a> {
    pub(crate) replicasets: Vec<&'a Value>,
    pub(crate) pods: Vec<&'a Value>,
}

/// Which neighbours the rules of a kind read.
pub(crate) fn reads_replicasets(group_kind: &GroupKind) -> bool {
    group_kind.is("apps", "Deployment")
}

/// Which neighbours the rules of a kind read.
pub(crate) fn reads_pods(group_kind: &GroupKind) -> bool {
    ["Deployment", "StatefulSet", "DaemonSet"].iter().any(|k| group_kind.is("apps", k)) || group_kind.is("batch", "Job")
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn is_true(condition: Option<&Value>) -> bool {
    condition.and_then(|c| c.get("status")).and_then(Value::as_str) == Some("True")
}

fn reason_and_message(condition: &Value) -> String {
    let reason = text(condition, "/reason");
    let message = text(condition, "/message");
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.to_owned(),
        _ => message.to_owned(),
    }
}

/// The generation the controller has not yet observed, if it has not.
fn unobserved(object: &Value) -> bool {
    int(object, "/metadata/generation") > int(object, "/status/observedGeneration")
}

/// Evaluates `object` (of `group_kind`) with its namespace's `neighbours`.
pub(crate) fn evaluate(group_kind: &GroupKind, object: &Value, neighbours: &Neighbours<'_>) -> State {
    let name = text(object, "/metadata/name");
    match (group_kind.group.as_str(), group_kind.kind.as_str()) {
        ("apps", "Deployment") => deployment(name, object, neighbours),
        ("apps", "StatefulSet") => statefulset(object, neighbours),
        ("apps", "DaemonSet") => daemonset(name, object, neighbours),
        ("batch", "Job") => job(name, object, neighbours),
        ("", "PersistentVolumeClaim") => match text(object, "/status/phase") {
            "Bound" => State::Ready(format!("persistent volume claim \"{name}\" is bound")),
            "Lost" => State::Failed(format!("persistent volume claim \"{name}\" lost its volume")),
            phase => State::waiting(format!(
                "Waiting for persistent volume claim \"{name}\" to be bound (phase {})",
                if phase.is_empty() { "unknown" } else { phase }
            )),
        },
        ("", "Service") => {
            let ingress = object.pointer("/status/loadBalancer/ingress").and_then(Value::as_array);
            if text(object, "/spec/type") != "LoadBalancer" || ingress.is_some_and(|i| !i.is_empty()) {
                State::Ready(format!("service \"{name}\" is ready"))
            } else {
                State::waiting(format!("Waiting for service \"{name}\" to get a load balancer ingress"))
            }
        }
        ("", "Namespace") => match text(object, "/status/phase") {
            "Terminating" => State::waiting(format!("namespace \"{name}\" is terminating")),
            _ => State::Ready(format!("namespace \"{name}\" is active")),
        },
        ("", "Pod") => pod(name, object),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let names = condition(object, "NamesAccepted");
            if is_true(condition(object, "Established")) {
                State::Ready(format!("custom resource definition \"{name}\" is established"))
            } else if let Some(names) = names.filter(|c| c.get("status").and_then(Value::as_str) == Some("False")) {
                State::Failed(format!("custom resource definition \"{name}\": {}", reason_and_message(names)))
            } else {
                State::waiting(format!("Waiting for custom resource definition \"{name}\" to be established"))
            }
        }
        _ => generic(group_kind, name, object),
    }
}

fn deployment(name: &str, object: &Value, neighbours: &Neighbours<'_>) -> State {
    if unobserved(object) {
        return State::waiting("Waiting for deployment spec update to be observed...".into());
    }
    if let Some(failure) = new_replicaset_failure(object, neighbours) {
        return State::Failed(failure.to_string());
    }
    if let Some(progressing) = condition(object, "Progressing")
        && text(progressing, "/reason") == "ProgressDeadlineExceeded"
    {
        return State::Failed(format!(
            "deployment \"{name}\" exceeded its progress deadline ({})",
            reason_and_message(progressing)
        ));
    }
    if let Some(failure) = condition(object, "ReplicaFailure").filter(|c| is_true(Some(c))) {
        return State::Failed(format!("deployment \"{name}\": ReplicaFailure: {}", reason_and_message(failure)));
    }
    let replicas = object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let updated = int(object, "/status/updatedReplicas");
    let total = int(object, "/status/replicas");
    let available = int(object, "/status/availableReplicas");
    let waiting = format!("Waiting for deployment \"{name}\" rollout to finish");
    if updated < replicas {
        return State::counting(
            format!("{waiting}: {updated} out of {replicas} new replicas have been updated..."),
            updated,
            replicas,
        );
    }
    if total > updated {
        return State::counting(
            format!("{waiting}: {} old replicas are pending termination...", total - updated),
            updated,
            total,
        );
    }
    if available < updated {
        return State::counting(
            format!("{waiting}: {available} of {updated} updated replicas are available..."),
            available,
            updated,
        );
    }
    State::Ready(format!("deployment \"{name}\" successfully rolled out"))
}

/// A failing container among the pods of the Deployment's newest ReplicaSet: the one whose revision is the
/// Deployment's (after the controller observed it, so that it is the ReplicaSet of this rollout).
fn new_replicaset_failure(deployment: &Value, neighbours: &Neighbours<'_>) -> Option<PodFailure> {
    const REVISION: &str = "deployment.kubernetes.io/revision";
    let revision = deployment.pointer("/metadata/annotations").and_then(|a| a.get(REVISION))?;
    let uid = text(deployment, "/metadata/uid");
    let replicaset = neighbours.replicasets.iter().find(|rs| {
        owned_by(rs, uid) && rs.pointer("/metadata/annotations").and_then(|a| a.get(REVISION)) == Some(revision)
    })?;
    let rs_uid = text(replicaset, "/metadata/uid");
    neighbours.pods.iter().filter(|pod| owned_by(pod, rs_uid)).find_map(|pod| failing_container(pod))
}

fn statefulset(object: &Value, neighbours: &Neighbours<'_>) -> State {
    let replicas = object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let ready = int(object, "/status/readyReplicas");
    if int(object, "/status/observedGeneration") == 0 || unobserved(object) {
        return State::waiting("Waiting for statefulset spec update to be observed...".into());
    }
    let update_revision = text(object, "/status/updateRevision");
    let uid = text(object, "/metadata/uid");
    let failure = neighbours
        .pods
        .iter()
        .filter(|pod| owned_by(pod, uid))
        .filter(|pod| {
            update_revision.is_empty() || text(pod, "/metadata/labels/controller-revision-hash") == update_revision
        })
        .find_map(|pod| failing_container(pod));
    if let Some(failure) = failure {
        return State::Failed(failure.to_string());
    }
    if ready < replicas {
        return State::counting(format!("Waiting for {} pods to be ready...", replicas - ready), ready, replicas);
    }
    let on_delete = text(object, "/spec/updateStrategy/type") == "OnDelete";
    let partition = int(object, "/spec/updateStrategy/rollingUpdate/partition");
    let updated = int(object, "/status/updatedReplicas");
    if !on_delete && partition > 0 {
        if updated < replicas - partition {
            return State::counting(
                format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                    replicas - partition
                ),
                updated,
                replicas - partition,
            );
        }
        return State::Ready(format!("partitioned roll out complete: {updated} new pods have been updated..."));
    }
    let current_revision = text(object, "/status/currentRevision");
    if !on_delete && update_revision != current_revision {
        return State::counting(
            format!(
                "waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
            ),
            updated,
            replicas,
        );
    }
    State::Ready(format!("statefulset rolling update complete {replicas} pods at revision {current_revision}..."))
}

fn daemonset(name: &str, object: &Value, neighbours: &Neighbours<'_>) -> State {
    if unobserved(object) {
        return State::waiting("Waiting for daemon set spec update to be observed...".into());
    }
    let uid = text(object, "/metadata/uid");
    let generation = int(object, "/metadata/generation").to_string();
    let failure = neighbours
        .pods
        .iter()
        .filter(|pod| owned_by(pod, uid))
        .filter(|pod| {
            // Pods of older generations are being replaced; the label is absent on some distributions.
            pod.pointer("/metadata/labels/pod-template-generation")
                .and_then(Value::as_str)
                .is_none_or(|g| g == generation)
        })
        .find_map(|pod| failing_container(pod));
    if let Some(failure) = failure {
        return State::Failed(failure.to_string());
    }
    let desired = int(object, "/status/desiredNumberScheduled");
    let updated = int(object, "/status/updatedNumberScheduled");
    let available = int(object, "/status/numberAvailable");
    let waiting = format!("Waiting for daemon set \"{name}\" rollout to finish");
    if updated < desired {
        return State::counting(
            format!("{waiting}: {updated} out of {desired} new pods have been updated..."),
            updated,
            desired,
        );
    }
    if available < desired {
        return State::counting(
            format!("{waiting}: {available} of {desired} updated pods are available..."),
            available,
            desired,
        );
    }
    State::Ready(format!("daemon set \"{name}\" successfully rolled out"))
}

fn job(name: &str, object: &Value, neighbours: &Neighbours<'_>) -> State {
    if let Some(failed) = condition(object, "Failed").filter(|c| is_true(Some(c))) {
        return State::Failed(format!("job \"{name}\" failed: {}", reason_and_message(failed)));
    }
    if is_true(condition(object, "Complete")) {
        return State::Ready(format!("job \"{name}\" completed"));
    }
    let uid = text(object, "/metadata/uid");
    if let Some(failure) =
        neighbours.pods.iter().filter(|pod| owned_by(pod, uid)).find_map(|pod| failing_container(pod))
    {
        return State::Failed(failure.to_string());
    }
    let completions = object.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1);
    let succeeded = int(object, "/status/succeeded");
    State::counting(
        format!("Waiting for job \"{name}\" to complete: {succeeded} of {completions} completions"),
        succeeded,
        completions,
    )
}

fn pod(name: &str, object: &Value) -> State {
    if let Some(failure) = failing_container(object) {
        return State::Failed(failure.to_string());
    }
    match text(object, "/status/phase") {
        "Succeeded" => State::Ready(format!("pod \"{name}\" succeeded")),
        "Failed" => State::Failed(format!("pod \"{name}\" failed: {}", text(object, "/status/message"))),
        _ if is_true(condition(object, "Ready")) => State::Ready(format!("pod \"{name}\" is ready")),
        phase => State::waiting(format!("Waiting for pod \"{name}\" to be ready (phase {phase})")),
    }
}

/// kstatus-style: a controller that has not observed the generation is in progress; `Stalled` fails;
/// a `Ready` condition decides; an object without one is ready.
fn generic(group_kind: &GroupKind, name: &str, object: &Value) -> State {
    let kind = &group_kind.kind;
    if object.pointer("/status/observedGeneration").is_some() && unobserved(object) {
        return State::waiting(format!("Waiting for {kind} \"{name}\" spec update to be observed..."));
    }
    if let Some(stalled) = condition(object, "Stalled").filter(|c| is_true(Some(c))) {
        return State::Failed(format!("{kind} \"{name}\" is stalled: {}", reason_and_message(stalled)));
    }
    match condition(object, "Ready") {
        Some(ready) if is_true(Some(ready)) => State::Ready(format!("{kind} \"{name}\" is ready")),
        Some(ready) => {
            State::waiting(format!("Waiting for {kind} \"{name}\" to be ready: {}", reason_and_message(ready)))
        }
        None => State::Ready(format!("{kind} \"{name}\" is ready")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment_with(status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 2, "uid": "d1",
            "annotations": {"deployment.kubernetes.io/revision": "2"}}, "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn deployments_read_like_kubectl_rollout_status() {
        let apps = GroupKind::new("apps", "Deployment");
        let none = Neighbours::default();
        let stale = deployment_with(
            json!({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(evaluate(&apps, &stale, &none).message(), "Waiting for deployment spec update to be observed...");
        let partial = deployment_with(
            json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 1}),
        );
        assert_eq!(
            evaluate(&apps, &partial, &none),
            State::Waiting {
                message: "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available..."
                    .into(),
                counts: Some((1, 3))
            }
        );
        let done = deployment_with(
            json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(evaluate(&apps, &done, &none), State::Ready("deployment \"web\" successfully rolled out".into()));
        let deadline = deployment_with(json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 6,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet \"web-abc\" has timed out progressing."}]}));
        assert!(
            matches!(evaluate(&apps, &deadline, &none), State::Failed(m) if m.contains("exceeded its progress deadline"))
        );
    }

    #[test]
    fn only_pods_of_the_new_replicaset_fail_a_rollout() {
        let apps = GroupKind::new("apps", "Deployment");
        let deployment = deployment_with(
            json!({"observedGeneration": 2, "updatedReplicas": 3, "replicas": 6, "availableReplicas": 3}),
        );
        let owner = |uid: &str| json!([{"uid": uid, "controller": true}]);
        let old_rs = json!({"metadata": {"name": "web-old", "uid": "rs1", "ownerReferences": owner("d1"),
            "annotations": {"deployment.kubernetes.io/revision": "1"}}});
        let new_rs = json!({"metadata": {"name": "web-new", "uid": "rs2", "ownerReferences": owner("d1"),
            "annotations": {"deployment.kubernetes.io/revision": "2"}}});
        let crashing = |name: &str, rs: &str| {
            json!({"metadata": {"name": name, "ownerReferences": owner(rs)},
            "status": {"containerStatuses": [{"name": "web", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}}]}})
        };
        let old_pod = crashing("web-old-1", "rs1");
        let neighbours = Neighbours { replicasets: vec![&old_rs, &new_rs], pods: vec![&old_pod] };
        assert!(
            matches!(evaluate(&apps, &deployment, &neighbours), State::Waiting { .. }),
            "an old pod does not fail it"
        );
        let new_pod = crashing("web-new-1", "rs2");
        let neighbours = Neighbours { replicasets: vec![&old_rs, &new_rs], pods: vec![&old_pod, &new_pod] };
        assert_eq!(
            evaluate(&apps, &deployment, &neighbours),
            State::Failed("pod web-new-1, container web: CrashLoopBackOff: back-off 10s".into())
        );
    }

    #[test]
    fn other_kinds_follow_their_conditions() {
        let none = Neighbours::default();
        let widget = GroupKind::new("example.com", "Widget");
        let pending = json!({"metadata": {"name": "w", "generation": 1}, "status": {"observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "False", "reason": "Provisioning", "message": "creating"}]}});
        assert_eq!(
            evaluate(&widget, &pending, &none).message(),
            "Waiting for Widget \"w\" to be ready: Provisioning: creating"
        );
        assert!(matches!(evaluate(&widget, &json!({"metadata": {"name": "w"}}), &none), State::Ready(_)));
        let job = GroupKind::new("batch", "Job");
        let failed = json!({"metadata": {"name": "migrate"}, "status": {"conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}});
        assert!(matches!(evaluate(&job, &failed, &none), State::Failed(m) if m.contains("BackoffLimitExceeded")));
        assert!(!needs_waiting(&GroupKind::new("", "ConfigMap"), None));
        assert!(!needs_waiting(&GroupKind::new("", "Service"), Some("ClusterIP")));
        assert!(needs_waiting(&GroupKind::new("", "Service"), Some("LoadBalancer")));
        assert!(needs_waiting(&widget, None));
    }
}
