//! Failing fast on pods: a container waiting for a reason that will not clear by itself (an image that
//! cannot be pulled, a crash loop, a configuration error) fails the rollout at once, naming the pod, the
//! container, the reason and the kubelet's message, rather than at the progress deadline.

use serde_json::Value;

/// A container that will not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodFailure {
    pub(crate) pod: String,
    pub(crate) container: String,
    pub(crate) reason: String,
    pub(crate) message: String,
}

impl std::fmt::Display for PodFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pod {}, container {}: {}", self.pod, self.container, self.reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Waiting reasons that mean the container will not start without a change: the ones the kubelet reports
/// for images, crash loops and configuration, and any other `*Error` or `*BackOff`.
pub(crate) fn is_failure(reason: &str) -> bool {
    matches!(
        reason,
        "ErrImagePull"
            | "ImagePullBackOff"
            | "CrashLoopBackOff"
            | "CreateContainerConfigError"
            | "CreateContainerError"
            | "InvalidImageName"
            | "RunContainerError"
            | "ErrImageNeverPull"
    ) || reason.ends_with("Error")
        || reason.ends_with("BackOff")
}

/// The first container of `pod` (init containers first) waiting for a failure reason.
pub(crate) fn failing_container(pod: &Value) -> Option<PodFailure> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|pointer| pod.pointer(pointer).and_then(Value::as_array))
        .flatten()
        .find_map(|container| {
            let waiting = container.pointer("/state/waiting")?;
            let reason = waiting.get("reason").and_then(Value::as_str)?;
            is_failure(reason).then(|| PodFailure {
                pod: name.to_owned(),
                container: container.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                reason: reason.to_owned(),
                message: waiting.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
            })
        })
}

/// Whether `object` has a controller ownerReference to `owner_uid`.
pub(crate) fn owned_by(object: &Value, owner_uid: &str) -> bool {
    !owner_uid.is_empty()
        && object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| refs.iter().any(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn failure_reasons_are_recognised_and_transient_ones_are_not() {
        for reason in
            ["ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError", "SomethingNewError"]
        {
            assert!(is_failure(reason), "{reason}");
        }
        for reason in ["ContainerCreating", "PodInitializing"] {
            assert!(!is_failure(reason), "{reason}");
        }
        let pod = json!({"metadata": {"name": "web-1"}, "status": {"containerStatuses": [
            {"name": "sidecar", "state": {"running": {}}},
            {"name": "web", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}},
        ]}});
        let failure = failing_container(&pod).unwrap();
        assert_eq!(failure.to_string(), "pod web-1, container web: ImagePullBackOff: Back-off pulling image \"x\"");
    }
}
