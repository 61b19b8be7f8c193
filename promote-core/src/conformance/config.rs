//! The [`ConfigSource`] conformance suite.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{ConfigRequest, ConfigSource, ConfigValue};
use crate::error::Error;

/// What a [`ConfigSource`] test prepared for the suite.
#[derive(Debug, Clone)]
pub struct ConfigFixture {
    /// The source under test.
    pub source: Arc<dyn ConfigSource>,
    /// A stage the test seeded.
    pub stage: String,
    /// Plain keys and values the stage must have.
    pub plain: BTreeMap<String, String>,
    /// Secret keys and values the stage must have.
    pub secrets: BTreeMap<String, String>,
    /// A stage the source knows nothing about.
    pub unknown_stage: String,
    /// For a versioned source: a key that has an older version, that version's id, and its value.
    pub older_version: Option<(String, String, String)>,
}

/// Runs every clause.
pub async fn config_source(fixture: ConfigFixture) {
    seeded_values_load_with_provenance(&fixture).await;
    an_unknown_stage_is_empty(&fixture).await;
    if fixture.older_version.is_some() {
        pins_load_older_versions(&fixture).await;
    }
}

/// The seeded stage loads every plain and secret value, each naming its source; secrets are [`Secret`]s
/// that show in no `Debug` or JSON; versions are reported iff the source says it is versioned.
///
/// [`Secret`]: crate::config::Secret
pub async fn seeded_values_load_with_provenance(fixture: &ConfigFixture) {
    let source = &fixture.source;
    let capabilities = source.capabilities();
    let set = source.load(&ConfigRequest::new(&fixture.stage)).await.expect("load of a seeded stage must succeed");
    for (key, value) in &fixture.plain {
        let entry = set.get(key).unwrap_or_else(|| panic!("key {key} must be loaded"));
        assert_eq!(entry.value.expose(), value, "key {key} must have its seeded value");
        assert_eq!(entry.source, source.name(), "every entry must name its source");
    }
    for (key, value) in &fixture.secrets {
        assert!(capabilities.secrets, "a source that returns secrets must say so in its capabilities");
        let entry = set.get(key).unwrap_or_else(|| panic!("secret key {key} must be loaded"));
        assert!(matches!(entry.value, ConfigValue::Secret(_)), "key {key} must be a Secret");
        assert_eq!(entry.value.expose(), value, "secret {key} must expose its seeded value");
        let shown = format!("{set:?} {entry:?} {}", serde_json::to_string(&set).unwrap());
        assert!(!shown.contains(value.as_str()), "a secret value must not show in Debug or JSON");
    }
    for (_, entry) in set.iter() {
        assert_eq!(
            entry.version.is_some(),
            capabilities.versioned,
            "versions must be reported iff the source is versioned"
        );
    }
}

/// A stage the source knows nothing about loads as an empty set, not an error.
pub async fn an_unknown_stage_is_empty(fixture: &ConfigFixture) {
    let empty = fixture.source.load(&ConfigRequest::new(&fixture.unknown_stage)).await;
    assert!(matches!(&empty, Ok(set) if set.is_empty()), "an unknown stage must give an empty set, got {empty:?}");
}

/// A versioned source loads a pinned older version; a pin to a missing version fails naming the key and
/// no secret.
pub async fn pins_load_older_versions(fixture: &ConfigFixture) {
    let source = &fixture.source;
    let (key, version, value) = fixture.older_version.as_ref().expect("the pins clause needs fixture.older_version");
    assert!(source.capabilities().versioned, "a fixture with versions needs a versioned source");
    let pins = BTreeMap::from([(key.clone(), version.clone())]);
    let pinned =
        source.load(&ConfigRequest::new(&fixture.stage).with_pins(pins)).await.expect("a pinned load must succeed");
    let entry = pinned.get(key).unwrap_or_else(|| panic!("pinned key {key} must be loaded"));
    assert_eq!(entry.value.expose(), value, "a pin must return the pinned version's value");
    assert_eq!(entry.version.as_deref(), Some(version.as_str()), "a pinned entry must report its version");

    let pins = BTreeMap::from([(key.clone(), "no-such-version-999".to_owned())]);
    match source.load(&ConfigRequest::new(&fixture.stage).with_pins(pins)).await {
        Err(error) if matches!(error.root(), Error::NotFound { .. } | Error::ConfigSource { .. }) => {
            let message = error.to_string();
            assert!(message.contains(key.as_str()), "the error must name the key: {message}");
            for secret in fixture.secrets.values() {
                assert!(!message.contains(secret.as_str()), "the error must not contain a secret");
            }
        }
        other => panic!("a pin to a missing version must fail, got {other:?}"),
    }
}
