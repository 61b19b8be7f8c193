//! Configuration and secrets, loaded per stage at deploy time and layered.

mod env;
mod file;
mod memory;
mod redact;
mod secret;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use env::{DEFAULT_ENV_PREFIX, EnvConfigSource};
pub use file::{FileConfigSource, FileFormat, STAGE_PLACEHOLDER};
pub use memory::MemoryConfigSource;
pub use redact::Redactor;
pub use secret::{REDACTED, Secret};

use crate::error::{Error, Result};

/// A configuration value: plain, or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A value that may be shown (a URL, a replica count).
    Plain(String),
    /// A value that must never be shown.
    Secret(Secret),
}

impl ConfigValue {
    /// The value, for rendering. Secrets come out too: call it only to render or to call an API.
    pub fn expose(&self) -> &str {
        match self {
            ConfigValue::Plain(value) => value,
            ConfigValue::Secret(secret) => secret.expose(),
        }
    }

    /// Whether this is a secret.
    pub fn is_secret(&self) -> bool {
        matches!(self, ConfigValue::Secret(_))
    }

    /// The value as it may be shown: plain values as they are, secrets as `[redacted]`.
    pub fn display_value(&self) -> &str {
        match self {
            ConfigValue::Plain(value) => value,
            ConfigValue::Secret(_) => REDACTED,
        }
    }
}

/// One key's value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigEntry {
    /// The value.
    pub value: ConfigValue,
    /// The name of the source that supplied it.
    pub source: String,
    /// The source's version of it, when the source versions its values.
    pub version: Option<String>,
}

/// Where a value came from, without the value: what `plan` shows and the ledger records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The source's name.
    pub source: String,
    /// The source's version, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether the value is secret.
    #[serde(default)]
    pub secret: bool,
}

/// A set of configuration values for one stage, keyed by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigSet {
    entries: BTreeMap<String, ConfigEntry>,
}

impl ConfigSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a key.
    pub fn insert(&mut self, key: String, entry: ConfigEntry) {
        self.entries.insert(key, entry);
    }

    /// Looks a key up.
    pub fn get(&self, key: &str) -> Option<&ConfigEntry> {
        self.entries.get(key)
    }

    /// Every key and entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ConfigEntry)> {
        self.entries.iter()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Lays `later` over this set: its keys replace this set's.
    pub fn overlay(&mut self, later: ConfigSet) {
        self.entries.extend(later.entries);
    }

    /// Where every value came from, without the values.
    pub fn provenance(&self) -> BTreeMap<String, Provenance> {
        self.entries
            .iter()
            .map(|(key, entry)| {
                let provenance = Provenance {
                    source: entry.source.clone(),
                    version: entry.version.clone(),
                    secret: entry.value.is_secret(),
                };
                (key.clone(), provenance)
            })
            .collect()
    }

    /// A fingerprint of the whole set, for the ledger: it changes when any key, source, version or value
    /// changes. Secret values enter it only through their own sha256, so the fingerprint reveals nothing
    /// a reader could use without already knowing the value.
    pub fn fingerprint(&self) -> String {
        self.fingerprint_with(None)
    }

    /// The fingerprint, keyed with `key` when there is one (`hmac-sha256:…`): without the key, nobody who
    /// reads the ledger can test guesses at a low-entropy secret against it.
    pub fn fingerprint_with(&self, key: Option<&crate::integrity::IntegrityKey>) -> String {
        let mut hasher = Sha256::new();
        for (key, entry) in &self.entries {
            hasher.update(key.as_bytes());
            hasher.update([0]);
            hasher.update(entry.source.as_bytes());
            hasher.update([0]);
            hasher.update(entry.version.as_deref().unwrap_or("").as_bytes());
            hasher.update([0]);
            match &entry.value {
                ConfigValue::Plain(value) => hasher.update(value.as_bytes()),
                ConfigValue::Secret(secret) => hasher.update(Sha256::digest(secret.expose().as_bytes())),
            }
            hasher.update([0xff]);
        }
        let digest = hasher.finalize();
        match key {
            Some(key) => {
                format!("hmac-sha256:{}", key.mac(&[b"promote config fingerprint\n".as_slice(), &digest].concat()))
            }
            None => format!("sha256:{}", hex::encode(digest)),
        }
    }

    /// The secret values in the set, for masking rendered output.
    pub fn secret_values(&self) -> impl Iterator<Item = &Secret> {
        self.entries.values().filter_map(|entry| match &entry.value {
            ConfigValue::Secret(secret) => Some(secret),
            ConfigValue::Plain(_) => None,
        })
    }
}

/// What a [`ConfigSource`] is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigRequest {
    /// The stage whose values are wanted.
    pub stage: String,
    /// Keys whose value must come at a given version (a rollback pins what the earlier deploy used).
    pub pins: BTreeMap<String, String>,
}

impl ConfigRequest {
    /// A request for a stage's current values.
    pub fn new(stage: impl Into<String>) -> Self {
        ConfigRequest { stage: stage.into(), pins: BTreeMap::new() }
    }

    /// Pins keys to versions.
    pub fn with_pins(mut self, pins: BTreeMap<String, String>) -> Self {
        self.pins = pins;
        self
    }
}

/// What a [`ConfigSource`] can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceCapabilities {
    /// The source reports versions and honours pins.
    pub versioned: bool,
    /// The source can hold secrets.
    pub secrets: bool,
}

impl SourceCapabilities {
    /// Capabilities of a source that versions its values and holds secrets.
    pub fn versioned_secrets() -> Self {
        SourceCapabilities { versioned: true, secrets: true }
    }

    /// Capabilities of a plain, unversioned source.
    pub fn plain() -> Self {
        SourceCapabilities::default()
    }
}

/// A source of configuration values for stages.
///
/// # Contract
/// - `name` identifies the source in provenance, errors and `plan` output.
/// - `load` returns the values for `request.stage`; a stage the source knows nothing about gives an empty
///   set, not an error. Every returned entry names this source.
/// - Secret values are returned as [`ConfigValue::Secret`] and never appear in an error, a log line or a
///   tracing field.
/// - A versioned source reports each entry's version, and `request.pins` makes it return exactly that
///   version; a pinned version that does not exist is [`Error::NotFound`] naming the key (not the value).
///   An unversioned source ignores pins and reports no versions.
/// - A source that cannot be read is [`Error::ConfigSource`] (or a backend error), classified for retry.
#[async_trait]
pub trait ConfigSource: Debug + Send + Sync + 'static {
    /// The source's name, for provenance and errors.
    fn name(&self) -> &str;

    /// What the source can do.
    fn capabilities(&self) -> SourceCapabilities;

    /// Loads the values for one stage.
    async fn load(&self, request: &ConfigRequest) -> Result<ConfigSet>;
}

forward_to_inner!(ConfigSource {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> SourceCapabilities {
        (**self).capabilities()
    }
    async fn load(&self, request: &ConfigRequest) -> Result<ConfigSet> {
        (**self).load(request).await
    }
});

/// Loads `sources` in order and layers them: later sources override earlier ones.
///
/// Each source receives only the pins for keys it supplied last time (pins are per key, and the key's
/// recorded source decides who gets it).
pub async fn load_layered(
    sources: &[Arc<dyn ConfigSource>],
    stage: &str,
    pins: &BTreeMap<String, Provenance>,
) -> Result<ConfigSet> {
    let mut layered = ConfigSet::new();
    for source in sources {
        let source_pins = pins
            .iter()
            .filter(|(_, provenance)| provenance.source == source.name())
            .filter_map(|(key, provenance)| Some((key.clone(), provenance.version.clone()?)))
            .collect();
        let request = ConfigRequest::new(stage).with_pins(source_pins);
        let set = source.load(&request).await.map_err(|error| match error {
            Error::NotFound { .. } | Error::ConfigSource { .. } | Error::MissingConfig { .. } => error,
            other if other.is_retryable() => Error::ConfigSource {
                stage: stage.to_owned(),
                source_name: source.name().to_owned(),
                message: other.to_string(),
                class: crate::error::ErrorClass::Temporary,
            },
            other => other,
        })?;
        layered.overlay(set);
    }
    Ok(layered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn later_sources_override_earlier_ones_and_keep_provenance() {
        let base = MemoryConfigSource::new("base");
        base.set("prd", "REPLICAS", "2").set("prd", "DB_URL", "postgres://base");
        let vault = MemoryConfigSource::new("vault");
        vault.set_secret("prd", "DB_URL", "postgres://v1").set_secret("prd", "DB_URL", "postgres://v2");
        let sources: Vec<Arc<dyn ConfigSource>> = vec![Arc::new(base), Arc::new(vault)];
        let set = load_layered(&sources, "prd", &BTreeMap::new()).await.unwrap();
        assert_eq!(set.get("REPLICAS").unwrap().value.expose(), "2");
        let db = set.get("DB_URL").unwrap();
        assert_eq!((db.source.as_str(), db.version.as_deref()), ("vault", Some("2")));
        assert_eq!(db.value.expose(), "postgres://v2");

        // A rollback pins the version it used before.
        let pinned = load_layered(&sources, "prd", &set_with_version(&set, "DB_URL", "1")).await.unwrap();
        assert_eq!(pinned.get("DB_URL").unwrap().value.expose(), "postgres://v1");
        assert_ne!(pinned.fingerprint(), set.fingerprint());
    }

    fn set_with_version(set: &ConfigSet, key: &str, version: &str) -> BTreeMap<String, Provenance> {
        let mut pins = set.provenance();
        pins.get_mut(key).unwrap().version = Some(version.into());
        pins
    }

    #[test]
    fn nothing_secret_shows_in_debug_or_json() {
        let mut set = ConfigSet::new();
        set.insert(
            "TOKEN".into(),
            ConfigEntry { value: ConfigValue::Secret(Secret::new("s3cr3t-value")), source: "x".into(), version: None },
        );
        let shown = format!("{set:?} {}", serde_json::to_string(&set).unwrap());
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(!set.fingerprint().contains("s3cr3t-value"));
    }
}
