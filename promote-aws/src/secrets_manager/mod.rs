//! [`SecretsManagerSource`]: a [`ConfigSource`] on AWS Secrets Manager.
//!
//! - `spec.rs`: what a stage loads ([`SecretSpec`], [`StageTemplate`]).
//! - `builder.rs`: [`SecretsManagerBuilder`] and the spec form [`SecretsManagerConfig`].

mod builder;
mod spec;

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_secretsmanager::primitives::Blob;
use futures::future::try_join_all;
use promote_core::config::SourceCapabilities;
use promote_core::error::ErrorContext;
use promote_core::{
    ConfigEntry, ConfigRequest, ConfigSet, ConfigSource, ConfigValue, Error, ErrorClass, Resource, Result, Secret,
};
use serde_json::Value;
use tracing::{debug, instrument};

pub use builder::{SecretsManagerBuilder, SecretsManagerConfig};
pub use spec::{AWSCURRENT, SecretFormat, SecretSpec, StageTemplate};

use crate::error::{AwsFailure, secrets_error};

/// The most secret ids one `BatchGetSecretValue` call accepts.
const BATCH_LIMIT: usize = 20;

/// A [`ConfigSource`] that loads each stage's values from AWS Secrets Manager.
///
/// Each stage lists the secrets it loads ([`SecretSpec`]): a secret holding a JSON object gives one key per
/// member (strings as they are, other JSON values as JSON text), a secret holding a string gives one named
/// key. A stage with no secrets configured gives an empty set.
///
/// - Every value is a [`Secret`]; values never reach a log line, a tracing field or an error.
/// - Every entry reports the secret's `VersionId`, so that `plan` shows it and a rollback can pin it.
///   A pin (key → version id) loads that key from that version of the secret that supplies it.
/// - The current versions of a stage's secrets are fetched with `BatchGetSecretValue`, 20 per call;
///   secrets selected by another staging label or a version id need one `GetSecretValue` each. When the
///   caller may not call `BatchGetSecretValue`, the source falls back to `GetSecretValue`.
/// - The SDK's debug logging redacts secret bodies unless `LOG_SENSITIVE_BODIES=true` is set in the
///   environment: never set it where these logs are kept.
#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    /// The attempts the client makes per call, for classifying what it gave up on.
    sdk_attempts: u32,
    name: String,
    stages: BTreeMap<String, Vec<SecretSpec>>,
}

/// One version of one secret, as fetched.
struct SecretVersion {
    version_id: String,
    content: Secret,
}

/// Which version of a secret a fetch asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Selector {
    Stage(String),
    Version(String),
}

impl Selector {
    fn of(spec: &SecretSpec) -> Self {
        match (&spec.version_id, &spec.version_stage) {
            (Some(id), _) => Selector::Version(id.clone()),
            (None, Some(label)) => Selector::Stage(label.clone()),
            (None, None) => Selector::Stage(AWSCURRENT.to_owned()),
        }
    }

    fn is_current(&self) -> bool {
        matches!(self, Selector::Stage(label) if label == AWSCURRENT)
    }
}

/// A loaded key: its value, its version, and the spec (by index) that supplied it.
struct Loaded {
    value: Secret,
    version_id: String,
    spec: usize,
}

impl SecretsManagerSource {
    /// A builder; unset AWS settings come from the standard `aws-config` chain.
    pub fn builder() -> SecretsManagerBuilder {
        SecretsManagerBuilder::new()
    }

    /// A source on the standard AWS chain (credentials, region and endpoint from the environment, the
    /// shared config files, SSO, web identity or instance metadata) that loads, for each of `stages`, the
    /// JSON secret named by `template` with `{stage}` replaced: `from_env("{stage}/app", ["dev", "prd"])`.
    pub async fn from_env(
        template: impl Into<String>,
        stages: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self> {
        SecretsManagerBuilder::new().template(stages, [SecretSpec::json(template)]).build().await
    }

    /// The stage's secrets, with `{stage}` replaced in their ids.
    fn specs_for(&self, stage: &str) -> Vec<SecretSpec> {
        let mut specs = self.stages.get(stage).cloned().unwrap_or_default();
        for spec in &mut specs {
            spec.id = spec.id.replace("{stage}", stage);
        }
        specs
    }

    /// One `GetSecretValue` call.
    async fn get_one(&self, stage: &str, id: &str, selector: &Selector) -> Result<SecretVersion> {
        let request = self.client.get_secret_value().secret_id(id);
        let request = match selector {
            Selector::Stage(label) => request.version_stage(label),
            Selector::Version(version) => request.version_id(version),
        };
        let output = request
            .send()
            .await
            .map_err(|error| secrets_error(&self.name, stage, id, AwsFailure::from_sdk(error, self.sdk_attempts)))?;
        let content = self.content(stage, id, output.secret_string(), output.secret_binary())?;
        let version_id = self.version_id(stage, id, output.version_id())?;
        debug!(secret = id, version = %version_id, "fetched secret");
        Ok(SecretVersion { version_id, content })
    }

    /// The current versions of `ids`, in as few `BatchGetSecretValue` calls as the limit allows.
    async fn batch_current(&self, stage: &str, ids: &[String]) -> Result<HashMap<String, SecretVersion>> {
        let mut fetched = HashMap::new();
        for chunk in ids.chunks(BATCH_LIMIT) {
            let mut next_token = None;
            loop {
                let sent = self
                    .client
                    .batch_get_secret_value()
                    .set_secret_id_list(Some(chunk.to_vec()))
                    .set_next_token(next_token.take())
                    .send()
                    .await;
                let output = match sent {
                    Ok(output) => output,
                    Err(error) => {
                        let failure = AwsFailure::from_sdk(error, self.sdk_attempts);
                        if failure.is_access_denied() {
                            // The caller may read each secret but not batch: fetch them one by one.
                            debug!(%failure, "BatchGetSecretValue refused; fetching one by one");
                            let current = Selector::Stage(AWSCURRENT.to_owned());
                            let versions =
                                try_join_all(chunk.iter().map(|id| self.get_one(stage, id, &current))).await?;
                            fetched.extend(chunk.iter().cloned().zip(versions));
                            break;
                        }
                        return Err(secrets_error(&self.name, stage, &chunk.join(", "), failure));
                    }
                };
                if let Some(error) = output.errors().first() {
                    let id = error.secret_id().unwrap_or("?");
                    return Err(secrets_error(
                        &self.name,
                        stage,
                        id,
                        AwsFailure::from_code(error.error_code(), error.message()),
                    ));
                }
                for entry in output.secret_values() {
                    let Some(id) = chunk.iter().find(|id| {
                        entry.name() == Some(id.as_str())
                            || entry.arn().is_some_and(|arn| arn == id.as_str() || arn.starts_with(id.as_str()))
                    }) else {
                        continue;
                    };
                    let content = self.content(stage, id, entry.secret_string(), entry.secret_binary())?;
                    let version_id = self.version_id(stage, id, entry.version_id())?;
                    debug!(secret = %id, version = %version_id, "fetched secret");
                    fetched.insert(id.clone(), SecretVersion { version_id, content });
                }
                next_token = output.next_token().map(str::to_owned);
                if next_token.is_none() {
                    break;
                }
            }
            if let Some(missing) = chunk.iter().find(|id| !fetched.contains_key(*id)) {
                return Err(Error::not_found(
                    Resource::Secret,
                    format!("{missing} (stage {stage}, source {})", self.name),
                ));
            }
        }
        Ok(fetched)
    }

    /// The text of a secret: its string, or its binary if that is UTF-8.
    fn content(&self, stage: &str, id: &str, string: Option<&str>, binary: Option<&Blob>) -> Result<Secret> {
        match (string, binary) {
            (Some(text), _) => Ok(Secret::new(text)),
            (None, Some(blob)) => String::from_utf8(blob.as_ref().to_vec())
                .map(Secret::new)
                .map_err(|_| self.refuse(stage, format!("secret {id} is binary and not UTF-8 text"))),
            (None, None) => Err(self.refuse(stage, format!("secret {id} has neither a string nor a binary value"))),
        }
    }

    fn version_id(&self, stage: &str, id: &str, version: Option<&str>) -> Result<String> {
        version
            .map(str::to_owned)
            .ok_or_else(|| self.refuse(stage, format!("Secrets Manager returned secret {id} without a VersionId")))
    }

    /// A persistent [`Error::ConfigSource`] for content that does not fit its spec. Never carries content.
    fn refuse(&self, stage: &str, message: String) -> Error {
        Error::ConfigSource {
            stage: stage.to_owned(),
            source_name: self.name.clone(),
            message,
            class: ErrorClass::Persistent,
        }
    }

    /// The keys `spec` gives from `content`. A JSON spec's content must be a JSON object.
    fn expand(&self, stage: &str, spec: &SecretSpec, version: &SecretVersion) -> Result<Vec<(String, Secret)>> {
        match spec.format {
            SecretFormat::String => Ok(vec![(spec.key.clone().unwrap_or_default(), version.content.clone())]),
            SecretFormat::Json => {
                let object = parse_object(version.content.expose()).map_err(|reason| {
                    self.refuse(stage, format!("secret {} (version {}) {reason}", spec.id, version.version_id))
                })?;
                match &spec.keys {
                    None => Ok(object.into_iter().map(|(key, value)| (key, json_text(value))).collect()),
                    Some(keys) => {
                        let mut object = object;
                        keys.iter()
                            .map(|key| match object.remove(key) {
                                Some(value) => Ok((key.clone(), json_text(value))),
                                None => Err(Error::not_found(
                                    Resource::ConfigKey,
                                    format!(
                                        "{key} in secret {} (version {}, stage {stage})",
                                        spec.id, version.version_id
                                    ),
                                )),
                            })
                            .collect()
                    }
                }
            }
        }
    }

    /// Loads `key` from version `version_id` of one of `candidates`, the first that has both.
    async fn load_pinned(
        &self,
        stage: &str,
        specs: &[SecretSpec],
        candidates: Vec<usize>,
        key: &str,
        version_id: &str,
    ) -> Result<Loaded> {
        let selector = Selector::Version(version_id.to_owned());
        for index in candidates {
            let spec = &specs[index];
            let version = match self.get_one(stage, &spec.id, &selector).await {
                Ok(version) => version,
                // A version id belongs to one secret; the others answer "not found" or "invalid".
                Err(error)
                    if matches!(
                        error.root(),
                        Error::NotFound { .. } | Error::ConfigSource { class: ErrorClass::Persistent, .. }
                    ) =>
                {
                    continue;
                }
                Err(other) => return Err(other),
            };
            let keys = match self.expand(stage, spec, &version) {
                Ok(keys) => keys,
                Err(Error::NotFound { .. }) => continue,
                Err(other) => return Err(other),
            };
            if let Some((_, value)) = keys.into_iter().find(|(name, _)| name == key) {
                return Ok(Loaded { value, version_id: version.version_id, spec: index });
            }
        }
        Err(Error::not_found(Resource::ConfigKey, format!("{key} at version {version_id}"))
            .in_context(ErrorContext::stage(stage).with_source(&self.name)))
    }
}

/// Parses a JSON object. The reason never quotes the content: serde's messages can, so only the position
/// and the kind of failure are kept.
fn parse_object(text: &str) -> std::result::Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err("holds JSON that is not an object".to_owned()),
        Err(error) => Err(format!("is not JSON (line {}, column {})", error.line(), error.column())),
    }
}

/// A JSON member as a config value: strings as they are, anything else as its JSON text.
fn json_text(value: Value) -> Secret {
    match value {
        Value::String(text) => Secret::new(text),
        other => Secret::new(other.to_string()),
    }
}

#[async_trait]
impl ConfigSource for SecretsManagerSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities::versioned_secrets()
    }

    #[instrument(level = "debug", skip(self, request), fields(source = %self.name, stage = %request.stage))]
    async fn load(&self, request: &ConfigRequest) -> Result<ConfigSet> {
        let stage = request.stage.as_str();
        let specs = self.specs_for(stage);

        // Current versions in batches; other selections one call each, concurrently.
        let mut current_ids: Vec<String> = Vec::new();
        let mut others: Vec<(String, Selector)> = Vec::new();
        for spec in &specs {
            let selector = Selector::of(spec);
            if selector.is_current() {
                if !current_ids.contains(&spec.id) {
                    current_ids.push(spec.id.clone());
                }
            } else if !others.contains(&(spec.id.clone(), selector.clone())) {
                others.push((spec.id.clone(), selector));
            }
        }
        let (current, other_versions) = futures::try_join!(
            async {
                if current_ids.is_empty() { Ok(HashMap::new()) } else { self.batch_current(stage, &current_ids).await }
            },
            try_join_all(others.iter().map(|(id, selector)| self.get_one(stage, id, selector))),
        )?;
        let other_versions: HashMap<&(String, Selector), SecretVersion> = others.iter().zip(other_versions).collect();

        // Later specs override earlier ones where keys overlap.
        let mut loaded: BTreeMap<String, Loaded> = BTreeMap::new();
        for (index, spec) in specs.iter().enumerate() {
            let selector = Selector::of(spec);
            let version =
                if selector.is_current() { &current[&spec.id] } else { &other_versions[&(spec.id.clone(), selector)] };
            for (key, value) in self.expand(stage, spec, version)? {
                loaded.insert(key, Loaded { value, version_id: version.version_id.clone(), spec: index });
            }
        }

        for (key, version_id) in &request.pins {
            if loaded.get(key).is_some_and(|entry| &entry.version_id == version_id) {
                continue;
            }
            // The key's own secret first; a key that is gone from it now may live in any of them.
            let candidates = match loaded.get(key) {
                Some(entry) => vec![entry.spec],
                None => (0..specs.len())
                    .filter(|&index| {
                        specs[index].format == SecretFormat::Json || specs[index].key.as_deref() == Some(key)
                    })
                    .collect(),
            };
            let pinned = self.load_pinned(stage, &specs, candidates, key, version_id).await?;
            debug!(key = %key, version = %version_id, "loaded pinned version");
            loaded.insert(key.clone(), pinned);
        }

        let mut set = ConfigSet::new();
        for (key, entry) in loaded {
            set.insert(
                key,
                ConfigEntry {
                    value: ConfigValue::Secret(entry.value),
                    source: self.name.clone(),
                    version: Some(entry.version_id),
                },
            );
        }
        debug!(keys = set.len(), secrets = specs.len(), "loaded stage");
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_never_quote_the_content() {
        for text in ["\"hunter2-secret\"", "hunter2-secret", "{\"a\": hunter2-secret}", "[\"hunter2-secret\"]"] {
            let reason = parse_object(text).unwrap_err();
            assert!(!reason.contains("hunter2"), "{reason}");
        }
        assert!(parse_object("{\"a\": 1}").is_ok());
    }

    #[test]
    fn json_members_become_text() {
        let object = parse_object(r#"{"s": "x", "n": 5432, "b": true, "o": {"k": 1}}"#).unwrap();
        let texts: BTreeMap<String, String> =
            object.into_iter().map(|(k, v)| (k, json_text(v).expose().to_owned())).collect();
        assert_eq!(texts["s"], "x");
        assert_eq!(texts["n"], "5432");
        assert_eq!(texts["b"], "true");
        assert_eq!(texts["o"], r#"{"k":1}"#);
    }
}
