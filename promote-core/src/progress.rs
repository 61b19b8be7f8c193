//! Progress that backends report while they work (bytes copied, the object a rollout waits on), so that a
//! CLI can draw it. The engine turns each report into an `Event::Progress`.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// What a count in a [`ProgressUpdate`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProgressUnit {
    /// Bytes (a registry copy).
    Bytes,
    /// Things (replicas, objects).
    Items,
}

/// One report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProgressUpdate {
    /// What it is about: `Deployment/web`, `registry.example/web@sha256:…`.
    pub subject: String,
    /// A short line for people ("1 of 3 updated replicas are available"). Never a secret.
    pub message: String,
    /// Work done, when countable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
    /// The whole work, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// What `done` and `total` count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<ProgressUnit>,
}

impl ProgressUpdate {
    /// A report with a message and no counts.
    pub fn message(subject: impl Into<String>, message: impl Into<String>) -> Self {
        ProgressUpdate { subject: subject.into(), message: message.into(), done: None, total: None, unit: None }
    }

    /// The same report with a count of `done` out of `total` (when known).
    pub fn counting(mut self, done: u64, total: Option<u64>, unit: ProgressUnit) -> Self {
        self.done = Some(done);
        self.total = total;
        self.unit = Some(unit);
        self
    }
}

/// Where a backend reports progress. Cheap to clone; reports go nowhere when nobody listens.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use promote_core::progress::{Progress, ProgressUpdate};
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let progress = Progress::new(move |update| sink.lock().unwrap().push(update.message));
/// progress.report(ProgressUpdate::message("Deployment/web", "1 of 3 updated replicas are available"));
/// Progress::none().report(ProgressUpdate::message("Deployment/web", "nobody hears this"));
/// assert_eq!(seen.lock().unwrap().len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct Progress {
    sink: Option<Arc<dyn Fn(ProgressUpdate) + Send + Sync>>,
}

impl Progress {
    /// Progress that nobody hears.
    pub fn none() -> Self {
        Progress::default()
    }

    /// Progress delivered to `sink`.
    pub fn new(sink: impl Fn(ProgressUpdate) + Send + Sync + 'static) -> Self {
        Progress { sink: Some(Arc::new(sink)) }
    }

    /// Reports an update.
    pub fn report(&self, update: ProgressUpdate) {
        if let Some(sink) = &self.sink {
            sink(update);
        }
    }

    /// Whether anyone listens: a backend may skip building reports when nobody does.
    pub fn is_heard(&self) -> bool {
        self.sink.is_some()
    }
}

/// Two handles are equal when they report to the same sink (clones of one [`Progress`]), or when nobody
/// hears either: what matters to options that carry one is where the reports go.
impl PartialEq for Progress {
    fn eq(&self, other: &Self) -> bool {
        match (&self.sink, &other.sink) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress").field("heard", &self.is_heard()).finish()
    }
}
