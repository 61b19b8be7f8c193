//! Maps `kube` failures into [`promote_core::Error`]. Private: callers only ever see the core error.
//!
//! A server's `Status` message names objects, fields and reasons. Messages about an object whose rendering
//! holds secret values are not passed on (see `deployer/apply.rs`); everything mapped here is about requests
//! that carry no object content (GET, LIST, DELETE, discovery) or about objects without secrets.

use promote_core::error::{Error, ErrorClass, Resource};

/// The backend name errors carry.
pub(crate) const BACKEND: &str = "kubernetes";

/// HTTP codes after which the same request may succeed: throttling, server faults, an expired watch.
const TEMPORARY_CODES: &[u16] = &[408, 410, 429, 500, 502, 503, 504];

/// Whether retrying the same request may help.
pub(crate) fn is_temporary(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => TEMPORARY_CODES.contains(&status.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// The API `Status` of a failed request, if the server answered with one.
pub(crate) fn status(error: &kube::Error) -> Option<&kube::core::Status> {
    match error {
        kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

/// Whether the server said the object (or its namespace) does not exist.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    status(error).is_some_and(|s| s.code == 404)
}

/// Whether a 404 is about a missing namespace (`namespaces "shop-dev" not found`), not the object itself.
pub(crate) fn is_missing_namespace(error: &kube::Error) -> bool {
    status(error).is_some_and(|s| {
        s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces" && d.group.is_empty())
    })
}

/// `error`, raised while doing `doing` ("list deployments.apps in namespace shop-dev"), as a core error.
/// The `kube` error stays reachable as the `source` where the core variant has one.
pub(crate) fn from_kube(error: kube::Error, doing: &str) -> Error {
    match &error {
        kube::Error::Api(status) => {
            let message = if status.message.is_empty() { status.reason.clone() } else { status.message.clone() };
            match status.code {
                404 => Error::NotFound { resource: Resource::Object, name: format!("{doing}: {message}") },
                401 | 403 => Error::PermissionDenied { backend: BACKEND, message: format!("{doing}: {message}") },
                409 if status.reason == "AlreadyExists" => {
                    Error::AlreadyExists { resource: Resource::Object, name: doing.to_owned(), detail: message }
                }
                code => {
                    let class = if TEMPORARY_CODES.contains(&code) || status.reason == "Conflict" {
                        // A 409 Conflict outside server-side apply is an optimistic-concurrency race: read again.
                        ErrorClass::Temporary
                    } else {
                        ErrorClass::Persistent
                    };
                    backend(
                        format!("{doing}: the API server answered {code} {}: {message}", status.reason),
                        class,
                        error,
                    )
                }
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            backend(format!("{doing}: the API server could not be reached"), ErrorClass::Temporary, error)
        }
        kube::Error::Auth(_) => {
            backend(format!("{doing}: cannot authenticate to the cluster"), ErrorClass::Persistent, error)
        }
        kube::Error::InferConfig(_) | kube::Error::InferKubeconfig(_) => {
            backend(format!("{doing}: no usable cluster configuration"), ErrorClass::Persistent, error)
        }
        _ => backend(format!("{doing}: {error}"), ErrorClass::Persistent, error),
    }
}

/// An [`Error::Backend`] keeping `source`.
pub(crate) fn backend(
    message: String,
    class: ErrorClass,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Backend { backend: BACKEND, message, class, source: Some(Box::new(source)) }
}

/// An [`Error::Backend`] without a source.
pub(crate) fn persistent(message: String) -> Error {
    Error::Backend { backend: BACKEND, message, class: ErrorClass::Persistent, source: None }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status { code, reason: reason.into(), message: message.into(), ..Status::default() }))
    }

    #[test]
    fn codes_map_to_what_a_caller_can_act_on() {
        let throttled = from_kube(api(429, "TooManyRequests", "slow down"), "list pods");
        assert!(throttled.is_retryable(), "{throttled}");
        let unavailable = from_kube(api(503, "ServiceUnavailable", "etcd"), "get secret");
        assert!(unavailable.is_retryable());
        assert!(std::error::Error::source(&unavailable).is_some(), "the kube error stays the source");
        assert!(matches!(
            from_kube(api(403, "Forbidden", "secrets is forbidden: User \"ci\" cannot list"), "list secrets"),
            Error::PermissionDenied { message, .. } if message.contains("cannot list")
        ));
        assert!(matches!(
            from_kube(api(404, "NotFound", "deployments.apps \"web\" not found"), "get Deployment web"),
            Error::NotFound { resource: Resource::Object, .. }
        ));
        let invalid = from_kube(api(422, "Invalid", "spec.replicas: Invalid value"), "apply Deployment web");
        assert!(!invalid.is_retryable());
        assert!(invalid.to_string().contains("422 Invalid"), "{invalid}");
    }
}
