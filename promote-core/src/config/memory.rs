//! An in-memory, versioned config source, for tests and examples.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{ConfigEntry, ConfigRequest, ConfigSet, ConfigSource, ConfigValue, SourceCapabilities};
use crate::error::{Error, ErrorClass, Resource, Result};

/// An in-memory config source whose values are versioned per key, like a secret store.
///
/// Every `set` of a key makes a new version (`1`, `2`, …); a request that pins a key gets that version.
#[derive(Debug, Clone)]
pub struct MemoryConfigSource {
    name: String,
    values: Arc<Mutex<VersionsByStage>>,
}

/// stage → key → versions, oldest first.
type VersionsByStage = BTreeMap<String, BTreeMap<String, Vec<ConfigValue>>>;

impl MemoryConfigSource {
    /// An empty source called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        MemoryConfigSource { name: name.into(), values: Arc::default() }
    }

    /// Sets a plain value for a stage, making a new version.
    pub fn set(&self, stage: &str, key: &str, value: impl Into<String>) -> &Self {
        self.put(stage, key, ConfigValue::Plain(value.into()))
    }

    /// Sets a secret value for a stage, making a new version.
    pub fn set_secret(&self, stage: &str, key: &str, value: impl Into<String>) -> &Self {
        self.put(stage, key, ConfigValue::Secret(super::Secret::new(value)))
    }

    fn put(&self, stage: &str, key: &str, value: ConfigValue) -> &Self {
        let mut values = self.values.lock().expect("config source poisoned");
        values.entry(stage.to_owned()).or_default().entry(key.to_owned()).or_default().push(value);
        self
    }
}

#[async_trait]
impl ConfigSource for MemoryConfigSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities { versioned: true, secrets: true }
    }

    async fn load(&self, request: &ConfigRequest) -> Result<ConfigSet> {
        let values = self.values.lock().expect("config source poisoned");
        let mut set = ConfigSet::new();
        let Some(stage_values) = values.get(&request.stage) else {
            return Ok(set);
        };
        for (key, versions) in stage_values {
            let index = match request.pins.get(key) {
                Some(pin) => {
                    let wanted: usize = pin.parse().map_err(|_| Error::ConfigSource {
                        stage: request.stage.clone(),
                        source_name: self.name.clone(),
                        message: format!("key {key}: version `{pin}` is not a version of this source"),
                        class: ErrorClass::Persistent,
                    })?;
                    if wanted == 0 || wanted > versions.len() {
                        return Err(Error::not_found(
                            Resource::ConfigKey,
                            format!("{key} version {pin} in {}", self.name),
                        ));
                    }
                    wanted - 1
                }
                None => versions.len() - 1,
            };
            set.insert(
                key.clone(),
                ConfigEntry {
                    value: versions[index].clone(),
                    source: self.name.clone(),
                    version: Some((index + 1).to_string()),
                },
            );
        }
        Ok(set)
    }
}
