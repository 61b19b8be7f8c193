//! Maps AWS SDK failures into [`promote_core::Error`]. Private: callers only ever see the core error.

use std::fmt;

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use promote_core::error::ErrorContext;
use promote_core::{ArtifactRef, Error, ErrorClass, Resource};

/// The backend name ECR errors carry.
pub(crate) const ECR: &str = "ecr";
/// The backend name Secrets Manager errors carry.
pub(crate) const SECRETS_MANAGER: &str = "secrets-manager";

/// Error codes AWS uses for throttling. The SDK's standard retry already retries these with backoff;
/// an error that still carries one of them has used up its attempts.
const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
];

/// Error codes that mean the caller's identity or permissions were refused.
const ACCESS_DENIED: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "MissingAuthenticationToken",
];

/// Error codes of server-side failures that may pass on retry.
const SERVER_FAULTS: &[&str] = &["ServerException", "InternalServiceError", "InternalFailure", "ServiceUnavailable"];

/// What the SDK said went wrong, reduced to what the mapping needs.
#[derive(Debug, Clone)]
pub(crate) struct AwsFailure {
    /// The service's error code (`RepositoryNotFoundException`), for service errors.
    pub(crate) code: Option<String>,
    /// The HTTP status of the response, when there was one.
    status: Option<u16>,
    /// Whether the request never completed (timeout, connection failure, unreadable response).
    transport: bool,
    /// A description without any request or response body.
    description: String,
}

impl AwsFailure {
    /// Reads an SDK error. Only the error code, the service message and the transport error chain are
    /// kept: bodies are never copied, so nothing a response carried can leak through an error.
    pub(crate) fn from_sdk<E>(error: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = error.raw_response().map(|response| response.status().as_u16());
        match error {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let code = inner.code().map(str::to_owned);
                let description = match (inner.code(), inner.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (Some(code), None) => code.to_owned(),
                    (None, _) => format!("HTTP {}", status.unwrap_or_default()),
                };
                AwsFailure { code, status, transport: false, description }
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
                AwsFailure { code: None, status, transport: true, description: DisplayErrorContext(error).to_string() }
            }
            _ => {
                AwsFailure { code: None, status, transport: false, description: DisplayErrorContext(error).to_string() }
            }
        }
    }

    /// A failure reported inside a successful response (a batch call's per-item errors).
    pub(crate) fn from_code(code: Option<&str>, message: Option<&str>) -> Self {
        let description = match (code, message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            (None, message) => message.unwrap_or("unknown error").to_owned(),
        };
        AwsFailure { code: code.map(str::to_owned), status: None, transport: false, description }
    }

    /// Whether the service throttled the call.
    pub(crate) fn is_throttling(&self) -> bool {
        self.code.as_deref().is_some_and(|code| THROTTLING.contains(&code)) || self.status == Some(429)
    }

    /// Whether the service refused the caller's identity or permissions.
    pub(crate) fn is_access_denied(&self) -> bool {
        self.code.as_deref().is_some_and(|code| ACCESS_DENIED.contains(&code))
            || (self.code.is_none() && self.status == Some(403))
    }

    /// Whether the error code is `code`.
    pub(crate) fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// Whether the same call may succeed later.
    pub(crate) fn class(&self) -> ErrorClass {
        let server_fault = self.code.as_deref().is_some_and(|code| SERVER_FAULTS.contains(&code))
            || self.status.is_some_and(|status| status >= 500);
        if self.transport || server_fault || self.is_throttling() {
            ErrorClass::Temporary
        } else {
            ErrorClass::Persistent
        }
    }
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_throttling() {
            write!(f, "throttled, retries exhausted ({})", self.description)
        } else {
            f.write_str(&self.description)
        }
    }
}

/// Maps an ECR failure of `operation` on `reference` into the core error. Every variant names the
/// repository and the reference.
pub(crate) fn ecr_error(operation: &str, reference: &ArtifactRef, failure: AwsFailure) -> Error {
    if failure.is("RepositoryNotFoundException") {
        return Error::not_found(Resource::Repository, format!("{} (looking up {reference})", reference.name()));
    }
    if failure.is("ImageNotFoundException") {
        return Error::not_found(Resource::Artifact, reference.to_string());
    }
    if failure.is_access_denied() {
        return Error::PermissionDenied {
            backend: ECR,
            message: format!("{operation} on {reference} (repository {}): {failure}", reference.name()),
        };
    }
    if failure.is("InvalidParameterException") {
        return Error::invalid("reference", reference.to_string(), format!("ECR {operation} refused it: {failure}"));
    }
    Error::Backend {
        backend: ECR,
        message: format!("{operation} on {reference}: {failure}"),
        class: failure.class(),
        source: None,
    }
}

/// Maps a Secrets Manager failure while reading `secret_id` for `stage` into the core error.
///
/// The failure never carries a value (see [`AwsFailure::from_sdk`]), so neither does the error.
pub(crate) fn secrets_error(source_name: &str, stage: &str, secret_id: &str, failure: AwsFailure) -> Error {
    if failure.is("ResourceNotFoundException") {
        return Error::not_found(Resource::Secret, secret_id)
            .in_context(ErrorContext::stage(stage).with_source(source_name));
    }
    if failure.is_access_denied() {
        return Error::PermissionDenied {
            backend: SECRETS_MANAGER,
            message: format!("reading secret {secret_id} for stage {stage}: {failure}"),
        };
    }
    Error::ConfigSource {
        stage: stage.to_owned(),
        source_name: source_name.to_owned(),
        message: format!("reading secret {secret_id}: {failure}"),
        class: failure.class(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: &str) -> AwsFailure {
        AwsFailure { code: Some(code.into()), status: Some(400), transport: false, description: code.into() }
    }

    #[test]
    fn throttling_and_server_faults_are_temporary() {
        for code in ["ThrottlingException", "LimitExceededException", "ServerException"] {
            assert_eq!(failure(code).class(), ErrorClass::Temporary, "{code}");
        }
        assert_eq!(failure("AccessDeniedException").class(), ErrorClass::Persistent);
        let reset = AwsFailure { code: None, status: None, transport: true, description: "reset".into() };
        assert_eq!(reset.class(), ErrorClass::Temporary);
    }

    #[test]
    fn ecr_errors_name_repository_and_reference() {
        let reference: ArtifactRef = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web:v1".parse().unwrap();
        let error = ecr_error("BatchGetImage", &reference, failure("RepositoryNotFoundException"));
        assert!(matches!(error, Error::NotFound { resource: Resource::Repository, .. }), "{error}");
        assert!(error.to_string().contains("team/web:v1"), "{error}");
        let error = ecr_error("BatchGetImage", &reference, failure("AccessDeniedException"));
        assert!(matches!(error, Error::PermissionDenied { .. }), "{error}");
        assert!(error.to_string().contains("team/web:v1"), "{error}");
        let error = ecr_error("PutImage", &reference, failure("ThrottlingException"));
        assert!(error.is_retryable(), "{error}");
    }
}
