//! Maps AWS SDK failures into [`promote_core::Error`]. Private: callers only ever see the core error. This
//! module imports nothing else of the crate.
//!
//! A failure keeps the SDK's error as its `source` (the service error with its code and request id, or the
//! connection error), never the response: bodies are copied neither into a message nor into a source, so
//! nothing a response carried (a secret value, an authorization token) can leak through an error.

use std::fmt;

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use promote_core::error::ErrorContext;
use promote_core::{ArtifactRef, Error, ErrorClass, Resource};

/// The boxed error a failure keeps as its source.
type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The backend name ECR errors carry.
pub(crate) const ECR: &str = "ecr";
/// The backend name Secrets Manager errors carry.
pub(crate) const SECRETS_MANAGER: &str = "secrets-manager";

/// Error codes AWS uses for throttling (the SDK's own list). The SDK's standard retry already retries these
/// with backoff; an error that still carries one of them has used up its attempts.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes the SDK retries as transient.
const TRANSIENT: &[&str] = &["RequestTimeout", "RequestTimeoutException"];

/// HTTP statuses the SDK retries.
const RETRIED_STATUSES: [u16; 4] = [500, 502, 503, 504];

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
#[derive(Debug)]
pub(crate) struct AwsFailure {
    /// The service's error code (`RepositoryNotFoundException`), for service errors.
    pub(crate) code: Option<String>,
    /// The HTTP status of the response, when there was one.
    status: Option<u16>,
    /// Whether the request never completed (timeout, connection failure, unreadable response).
    transport: bool,
    /// A description without any request or response body.
    description: String,
    /// The SDK's error without its raw response.
    source: Option<Source>,
    /// The attempts the SDK makes per call (1: it does not retry).
    attempts: u32,
}

impl AwsFailure {
    /// Reads an SDK error of a client that makes `attempts` attempts per call. Only the error code, the
    /// service message and the error itself (without the raw response) are kept.
    pub(crate) fn from_sdk<E>(error: SdkError<E, HttpResponse>, attempts: u32) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = error.raw_response().map(|response| response.status().as_u16());
        let (code, transport, description) = match &error {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let description = match (inner.code(), inner.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (Some(code), None) => code.to_owned(),
                    (None, _) => format!("HTTP {}", status.unwrap_or_default()),
                };
                (inner.code().map(str::to_owned), false, description)
            }
            // The response could not be read: say so, and keep neither it nor the parser's view of it.
            SdkError::ResponseError(_) => {
                (None, true, format!("the response could not be read (HTTP {})", status.unwrap_or_default()))
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                (None, true, DisplayErrorContext(&error).to_string())
            }
            _ => (None, false, DisplayErrorContext(&error).to_string()),
        };
        let source = match error {
            SdkError::ResponseError(_) => None,
            other => other.into_source().ok(),
        };
        AwsFailure { code, status, transport, description, source, attempts }
    }

    /// A failure reported inside a successful response (a batch call's per-item errors).
    pub(crate) fn from_code(code: Option<&str>, message: Option<&str>) -> Self {
        let description = match (code, message) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            (None, message) => message.unwrap_or("unknown error").to_owned(),
        };
        // Not an SDK error: nothing retried it.
        AwsFailure {
            code: code.map(str::to_owned),
            status: None,
            transport: false,
            description,
            source: None,
            attempts: 1,
        }
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

    /// Whether the SDK's standard retry strategy retries this failure (its classifiers: transport errors,
    /// throttling and transient codes, 500, 502, 503 and 504).
    fn retried_by_sdk(&self) -> bool {
        self.attempts > 1
            && (self.transport
                || self.is_throttling()
                || self.code.as_deref().is_some_and(|code| TRANSIENT.contains(&code))
                || self.status.is_some_and(|status| RETRIED_STATUSES.contains(&status)))
    }

    /// Whether the same call may succeed later: temporary, or [`ErrorClass::Exhausted`] when the SDK
    /// already retried it until its attempts were spent (so that no layer above repeats the storm).
    pub(crate) fn class(&self) -> ErrorClass {
        let server_fault = self.code.as_deref().is_some_and(|code| SERVER_FAULTS.contains(&code))
            || self.status.is_some_and(|status| ErrorClass::from_http_status(status) == ErrorClass::Temporary);
        if self.retried_by_sdk() {
            ErrorClass::Exhausted
        } else if self.transport || server_fault || self.is_throttling() {
            ErrorClass::Temporary
        } else {
            ErrorClass::Persistent
        }
    }

    /// The SDK's error, for a [`Error::Backend`]'s source.
    fn into_source(self) -> Option<Source> {
        self.source
    }
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_throttling() {
            write!(f, "throttled ({})", self.description)?;
        } else {
            f.write_str(&self.description)?;
        }
        if self.retried_by_sdk() {
            write!(f, "; the AWS SDK gave up after at most {} attempts", self.attempts)?;
        }
        Ok(())
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
    ecr_backend_error(format!("{operation} on {reference}"), failure)
}

/// An ECR failure as an [`Error::Backend`] saying `what` failed, with the SDK's error as its source.
pub(crate) fn ecr_backend_error(what: String, failure: AwsFailure) -> Error {
    Error::Backend {
        backend: ECR,
        message: format!("{what}: {failure}"),
        class: failure.class(),
        source: failure.into_source(),
    }
}

/// Maps a Secrets Manager failure while reading `secret_id` for `stage` into the core error.
///
/// The failure never carries a value (see [`AwsFailure::from_sdk`]), so neither does the error. (The core's
/// `ConfigSource` and `PermissionDenied` variants have no source, so the SDK's error is not chained here.)
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
        AwsFailure {
            code: Some(code.into()),
            status: Some(400),
            transport: false,
            description: code.into(),
            source: None,
            attempts: 1,
        }
    }

    #[test]
    fn throttling_and_server_faults_are_temporary() {
        for code in ["ThrottlingException", "LimitExceededException", "ServerException"] {
            assert_eq!(failure(code).class(), ErrorClass::Temporary, "{code}");
        }
        assert_eq!(failure("AccessDeniedException").class(), ErrorClass::Persistent);
        let reset = AwsFailure { code: None, status: None, transport: true, ..failure("reset") };
        assert_eq!(reset.class(), ErrorClass::Temporary);
    }

    #[test]
    fn what_the_sdk_retried_until_it_gave_up_is_exhausted() {
        let retried = |failure: AwsFailure| AwsFailure { attempts: 3, ..failure };
        for exhausted in [
            retried(failure("ThrottlingException")),
            retried(AwsFailure { status: Some(503), ..failure("ServiceUnavailable") }),
            retried(AwsFailure { code: None, transport: true, ..failure("reset") }),
        ] {
            assert_eq!(exhausted.class(), ErrorClass::Exhausted, "{exhausted}");
            assert!(exhausted.to_string().contains("gave up after at most 3 attempts"), "{exhausted}");
        }
        // A fault the SDK does not retry (a 400 ServerException) stays temporary; refusals stay persistent.
        assert_eq!(retried(failure("ServerException")).class(), ErrorClass::Temporary);
        assert_eq!(retried(failure("AccessDeniedException")).class(), ErrorClass::Persistent);
        let reference: ArtifactRef = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web:v1".parse().unwrap();
        let error = ecr_error("BatchGetImage", &reference, retried(failure("ThrottlingException")));
        assert!(!error.is_retryable() && error.may_succeed_later(), "{error}");
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
