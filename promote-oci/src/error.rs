//! Failures inside the crate, on their way to [`promote_core::Error`].
//!
//! A failure travels as a [`Failure`], which keeps the server's `Retry-After` hint for the retry policy
//! ([`Retryable`]); it becomes a plain [`Error`] at the public API. This module imports nothing else of
//! the crate: every store maps its own failures with these constructors.

use std::time::Duration;

use promote_core::retry::Retryable;
use promote_core::{Digest, Error, ErrorClass};

/// The backend name registry errors carry.
pub(crate) const REGISTRY_BACKEND: &str = "oci-registry";
/// The backend name layout errors carry.
pub(crate) const LAYOUT_BACKEND: &str = "oci-layout";

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

impl Retryable for Failure {
    fn is_retryable(&self) -> bool {
        self.error.is_retryable()
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    fn exhausted(self, attempts: u32) -> Self {
        Failure { error: self.error.exhausted(attempts), retry_after: self.retry_after }
    }
}

pub(crate) type FailResult<T> = std::result::Result<T, Failure>;

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
        Error::DigestMismatch { expected, actual, .. } => Error::digest_mismatch(name, expected, actual).into(),
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
        _ => Err(Error::digest_mismatch(name, expected.clone(), served.clone()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The policy waits as long as the server asked (`Retry-After`, parsed in both its forms by the
    /// transport), within its longest delay. Time is paused: the wait is measured, not slept.
    #[tokio::test(start_paused = true)]
    async fn the_policy_waits_as_long_as_the_server_asks() {
        use promote_core::retry::RetryPolicy;
        let policy = RetryPolicy::default()
            .with_max_attempts(2)
            .with_delays(Duration::from_millis(1), Duration::from_secs(5))
            .with_jitter(false);
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let outcome: FailResult<u32> = policy
            .run("fetch", || {
                calls += 1;
                let first = calls == 1;
                async move {
                    if first {
                        Err(Failure { retry_after: Some(Duration::from_secs(3)), ..temporary("HTTP 429") })
                    } else {
                        Ok(7)
                    }
                }
            })
            .await;
        assert_eq!(outcome.unwrap(), 7);
        assert!(started.elapsed() >= Duration::from_secs(3), "waited {:?}", started.elapsed());
    }

    #[test]
    fn a_failure_given_up_on_is_exhausted_and_keeps_its_hint() {
        let failure = Failure { retry_after: Some(Duration::from_secs(3)), ..temporary("HTTP 429") };
        let given_up = failure.exhausted(4);
        assert_eq!(given_up.retry_after, Some(Duration::from_secs(3)));
        let error = given_up.error;
        assert!(matches!(error, Error::Backend { class: ErrorClass::Exhausted, .. }), "{error:?}");
        assert!(!error.is_retryable() && error.may_succeed_later(), "{error}");
        assert!(error.to_string().contains("4 attempts"), "{error}");
    }
}
