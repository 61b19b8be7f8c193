//! One retry vocabulary for every backend: attempts, delays and a time limit, run on `backon`.
//!
//! A [`RetryPolicy`] retries what its error calls retryable ([`Retryable::is_retryable`]), honours a
//! server's hint (`Retry-After`) within its longest delay, stops when the attempts or the time are spent,
//! and then reports the error as exhausted ([`Retryable::exhausted`]), so that no layer above repeats the
//! storm. The OCI registry transport, the HTTP gate and the AWS SDK configuration all take one.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable as _};

use crate::error::Error;

/// What a retry loop needs to know about an error.
pub trait Retryable {
    /// Whether trying again at once may succeed.
    fn is_retryable(&self) -> bool;

    /// How long the server asked to wait, if it said.
    fn retry_after(&self) -> Option<Duration>;

    /// The error as reported after `attempts` attempts, the policy spent.
    fn exhausted(self, attempts: u32) -> Self;
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        Error::is_retryable(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        None
    }

    fn exhausted(self, attempts: u32) -> Self {
        Error::exhausted(self, attempts)
    }
}

/// How a backend retries temporary failures.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use promote_core::retry::RetryPolicy;
/// use promote_core::{Error, ErrorClass};
/// let policy = RetryPolicy::default().with_max_attempts(3).with_delays(Duration::from_millis(1), Duration::from_millis(2));
/// let mut calls = 0;
/// let result: Result<(), Error> = policy
///     .run("fetch", || {
///         calls += 1;
///         async { Err(Error::backend("registry", ErrorClass::Temporary, "503")) }
///     })
///     .await;
/// let error = result.unwrap_err();
/// assert_eq!(calls, 3);
/// assert!(!error.is_retryable() && error.may_succeed_later(), "given up on, not to be retried at once: {error}");
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 never retries).
    pub max_attempts: u32,
    /// The first delay.
    pub min_delay: Duration,
    /// The longest single delay (it also caps a server's `Retry-After`).
    pub max_delay: Duration,
    /// How much each delay grows (2 doubles it; 1 keeps it constant).
    pub factor: f32,
    /// No retry starts after this much time has passed since the first attempt.
    pub total: Option<Duration>,
    /// Whether delays are randomised (by up to their own length), so that many clients spread out.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// 5 attempts, 200 ms doubling to at most 10 s, with jitter, within 2 minutes.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            factor: 2.0,
            total: Some(Duration::from_secs(120)),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..Self::default() }
    }

    /// Sets the attempts in all, the first included (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first and the longest delay.
    pub fn with_delays(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max.max(min);
        self
    }

    /// Sets a constant delay between attempts, without jitter.
    pub fn with_constant_delay(mut self, delay: Duration) -> Self {
        self.min_delay = delay;
        self.max_delay = delay;
        self.factor = 1.0;
        self.jitter = false;
        self
    }

    /// Sets the time after which no retry starts (`None`: only the attempts bound it).
    pub fn with_total(mut self, total: Option<Duration>) -> Self {
        self.total = total;
        self
    }

    /// Sets whether delays are randomised.
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Runs `operation` until it succeeds, fails for good, or the policy is spent; a retryable error the
    /// policy gave up on comes back [`Retryable::exhausted`]. `what` names the operation in logs.
    pub async fn run<T, E, F, Fut>(&self, what: &str, operation: F) -> Result<T, E>
    where
        E: Retryable,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let started = Instant::now();
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize);
        if self.jitter {
            backoff = backoff.with_jitter();
        }
        let (total, max_delay) = (self.total, self.max_delay);
        let mut attempts = 0u32;
        let mut counted = operation;
        let outcome = (|| {
            attempts += 1;
            counted()
        })
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|error: &E| error.is_retryable())
        .adjust(move |error: &E, planned: Option<Duration>| {
            let delay = planned?;
            let delay = error.retry_after().map_or(delay, |hint| hint.min(max_delay).max(delay));
            total.is_none_or(|total| started.elapsed() + delay <= total).then_some(delay)
        })
        .notify(|_: &E, delay: Duration| {
            tracing::debug!(operation = what, ?delay, "retrying after a temporary failure");
        })
        .await;
        outcome.map_err(|error| if error.is_retryable() { error.exhausted(attempts) } else { error })
    }
}
