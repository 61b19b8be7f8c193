//! Retries of requests that may pass when sent again (throttling, server faults, a reset connection).
//! Every request the deployer sends is idempotent: GET, LIST, server-side apply, DELETE with a uid
//! precondition.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};

use crate::error::{is_temporary, status};

/// At most this many retries per request: a fault that outlasts them is reported, classified temporary.
const RETRIES: usize = 3;

/// Runs `request`, again after a short backoff while it fails with a temporary error.
pub(crate) async fn retrying<T, Fut>(request: impl FnMut() -> Fut) -> Result<T, kube::Error>
where
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(RETRIES)
        .with_jitter();
    request
        .retry(backoff)
        .when(worth_retrying)
        .notify(|error, after| tracing::debug!(%error, ?after, "retrying a Kubernetes API request"))
        .await
}

/// A temporary failure, except `410 Gone`: a watch from an expired version needs a relist, not a retry.
fn worth_retrying(error: &kube::Error) -> bool {
    is_temporary(error) && status(error).is_none_or(|s| s.code != 410)
}
