//! A secret value that does not leak by accident.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use serde::{Serialize, Serializer};
use zeroize::Zeroizing;

/// What a [`Secret`] prints, logs and serialises as.
pub const REDACTED: &str = "[redacted]";

/// A secret string.
///
/// It prints as `[redacted]` in `Debug` and `Display`, and serialises as `"[redacted]"`, so it cannot reach
/// a log line, a tracing field, an error message, an event or the ledger by accident. Its memory is zeroed
/// when it is dropped. The value comes out only through [`Secret::expose`].
///
/// ```
/// use promote_core::Secret;
/// let password = Secret::new("hunter2");
/// assert_eq!(format!("{password} {password:?}"), "[redacted] Secret([redacted])");
/// assert_eq!(serde_json::to_string(&password).unwrap(), "\"[redacted]\"");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<Zeroizing<String>>);

/// Every secret value alive in the process, so that text leaving it (a gate's captured output) can be
/// redacted of all of them: config values, registry credentials, tokens. Weak: a dropped secret is gone.
static LIVE: Mutex<Vec<Weak<Zeroizing<String>>>> = Mutex::new(Vec::new());

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        let value = Arc::new(Zeroizing::new(value.into()));
        let mut live = LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget dropped secrets whenever the list doubles, so it stays proportional to the live ones.
        if live.len() >= 64 && live.len().is_power_of_two() {
            live.retain(|secret| secret.strong_count() > 0);
        }
        live.push(Arc::downgrade(&value));
        Secret(value)
    }

    /// Every secret alive in this process now.
    pub(crate) fn live() -> Vec<Secret> {
        let live = LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        live.iter().filter_map(Weak::upgrade).map(Secret).collect()
    }

    /// The secret value. Call it only where the value must be used: rendering a manifest, an API call.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}
