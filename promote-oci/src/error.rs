//! Maps registry, HTTP and file failures into [`promote_core::Error`].
//!
//! Inside the crate a failure travels as a [`Failure`], which keeps the server's `Retry-After` hint for the
//! retry layer; it becomes a plain [`Error`] at the public API.

use std::time::Duration;

use promote_core::{Digest, Error, ErrorClass, Resource};
use serde::Deserialize;

/// The backend name registry errors carry.
pub(crate) const REGISTRY_BACKEND: &str = "oci-registry";
/// The backend name layout errors carry.
pub(crate) const LAYOUT_BACKEND: &str = "oci-layout";

/// Registries cap error bodies in practice; we read at most this much of one.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// A failure on its way to becoming an [`Error`], with the server's `Retry-After` hint.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) retry_after: Option<Duration>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { error, retry_after: None }
    }
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        failure.error
    }
}

pub(crate) type FailResult<T> = std::result::Result<T, Failure>;

/// A transport failure (connect, reset, timeout, a body cut short). Always worth a retry.
pub(crate) fn transport(what: &str, error: reqwest::Error) -> Failure {
    let detail = if error.is_connect() {
        "cannot connect"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "the connection broke while transferring the body"
    } else {
        "the request failed"
    };
    Error::Backend {
        backend: REGISTRY_BACKEND,
        message: format!("{what}: {detail}"),
        class: ErrorClass::Temporary,
        source: Some(Box::new(error)),
    }
    .into()
}

/// A temporary registry failure with a message.
pub(crate) fn temporary(message: impl Into<String>) -> Failure {
    Error::backend(REGISTRY_BACKEND, ErrorClass::Temporary, message).into()
}

/// A registry failure that will not pass on retry.
pub(crate) fn persistent(message: impl Into<String>) -> Failure {
    Error::backend(REGISTRY_BACKEND, ErrorClass::Persistent, message).into()
}

/// A failure of the local layout directory.
pub(crate) fn layout(message: impl Into<String>) -> Error {
    Error::backend(LAYOUT_BACKEND, ErrorClass::Persistent, message)
}

/// Checks that `bytes` hash to `expected` (in `expected`'s algorithm). A mismatch is
/// [`Error::DigestMismatch`] naming `name`; an algorithm that cannot be verified is
/// [`Error::NotSupported`]: bytes are never taken on trust.
pub(crate) fn verify_bytes(name: &str, expected: &Digest, bytes: &[u8]) -> FailResult<()> {
    expected.verify(bytes).map_err(|error| match error {
        Error::DigestMismatch { expected, actual, .. } => {
            Error::DigestMismatch { reference: name.to_owned(), expected, actual }.into()
        }
        other => other.into(),
    })
}

/// Checks the digest a registry says it computed (`Docker-Content-Digest`) against the one we expect. A
/// header in another algorithm is checked against `bytes` when we have them, and refused when we do not
/// (a streamed blob): a claim that cannot be checked is not accepted.
pub(crate) fn check_digest_header(
    name: &str,
    expected: &Digest,
    served: Option<&Digest>,
    bytes: Option<&[u8]>,
) -> FailResult<()> {
    let Some(served) = served else { return Ok(()) };
    if served == expected {
        return Ok(());
    }
    match bytes {
        Some(bytes) if served.algorithm() != expected.algorithm() => verify_bytes(name, served, bytes),
        _ => Err(Error::DigestMismatch {
            reference: name.to_owned(),
            expected: expected.clone(),
            actual: served.clone(),
        }
        .into()),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What a non-success response means for the caller.
///
/// `what` says what we were doing ("GET manifest"), `name` is the reference or repository the call was
/// about (it goes into `NotFound`), and `resource` is the kind of thing a 404 means is missing.
pub(crate) async fn status_failure(what: &str, name: &str, resource: Resource, response: reqwest::Response) -> Failure {
    let status = response.status();
    let retry_after = retry_after(&response);
    let body = read_error_body(response).await;
    let codes =
        body.errors
            .iter()
            .map(|entry| {
                if entry.message.is_empty() { entry.code.clone() } else { format!("{}: {}", entry.code, entry.message) }
            })
            .collect::<Vec<_>>()
            .join("; ");
    let detail = if codes.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status} ({codes})") };
    let error = match status.as_u16() {
        401 | 403 => Error::PermissionDenied {
            backend: REGISTRY_BACKEND,
            message: format!("{what} {name}: {detail}; check the credentials for this registry"),
        },
        404 => Error::not_found(resource, name),
        408 | 429 | 500..=599 => {
            Error::backend(REGISTRY_BACKEND, ErrorClass::Temporary, format!("{what} {name}: {detail}"))
        }
        _ => Error::backend(REGISTRY_BACKEND, ErrorClass::Persistent, format!("{what} {name}: {detail}")),
    };
    Failure { error, retry_after }
}

async fn read_error_body(mut response: reqwest::Response) -> ErrorBody {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// The `Retry-After` header as a delay from now.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, std::time::SystemTime::now())
}

/// Either form RFC 9110 allows: delay-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`),
/// which counts from `now`; a date already past means "retry now". Anything else is no hint.
fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Mon, 23 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Mon, 23 Nov 2026 10:00:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Mon, 23 Nov 2026 09:59:00 GMT", now), Some(Duration::ZERO), "past: now");
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn digest_headers_are_checked_against_the_bytes() {
        let bytes = b"{\"schemaVersion\":2}";
        let sha256 = Digest::sha256_of(bytes);
        let sha512 = Digest::sha512_of(bytes);
        check_digest_header("r", &sha256, None, Some(bytes)).unwrap();
        check_digest_header("r", &sha256, Some(&sha256), None).unwrap();
        check_digest_header("r", &sha256, Some(&sha512), Some(bytes)).unwrap();
        let lie = Digest::sha512_of(b"other");
        let error: Error = check_digest_header("r", &sha256, Some(&lie), Some(bytes)).unwrap_err().into();
        assert!(matches!(&error, Error::DigestMismatch { reference, .. } if reference == "r"), "{error}");
        let error: Error = check_digest_header("r", &sha256, Some(&sha512), None).unwrap_err().into();
        assert!(matches!(error, Error::DigestMismatch { .. }), "a claim that cannot be checked is refused");
        let blake = Digest::parse("blake3:abc").unwrap();
        let error: Error = check_digest_header("r", &sha256, Some(&blake), Some(bytes)).unwrap_err().into();
        assert!(matches!(error, Error::NotSupported { .. }), "{error}");
    }

    #[test]
    fn failures_keep_their_class() {
        let error: Error = temporary("503").into();
        assert!(error.is_retryable());
        let error: Error = persistent("400").into();
        assert!(!error.is_retryable());
    }
}
