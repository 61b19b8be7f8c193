//! Retries of whole registry operations: 408, 429, 5xx and broken connections, with exponential backoff,
//! jitter, the server's `Retry-After`, and a total time limit.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

use crate::error::{FailResult, Failure};

/// How a registry store retries temporary failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay.
    pub min_delay: Duration,
    /// The longest single delay (also caps a server's `Retry-After`).
    pub max_delay: Duration,
    /// The most attempts after the first one.
    pub max_retries: usize,
    /// No retry starts after this much time has passed since the first attempt.
    pub total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retries: 8,
            total: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy { max_retries: 0, ..Self::default() }
    }

    /// Runs `operation` until it succeeds, fails for good, or the policy is spent.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, operation: F) -> FailResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = FailResult<T>>,
    {
        let started = Instant::now();
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter();
        let total = self.total;
        let max_delay = self.max_delay;
        operation
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|failure: &Failure| failure.error.is_retryable())
            .adjust(move |failure: &Failure, planned: Option<Duration>| {
                let delay = planned?;
                let delay = failure.retry_after.map_or(delay, |hint| hint.min(max_delay).max(delay));
                (started.elapsed() + delay <= total).then_some(delay)
            })
            .notify(|failure: &Failure, delay: Duration| {
                tracing::warn!(operation = what, ?delay, error = %failure.error, "retrying after a temporary failure");
            })
            .await
    }
}
