//! `KubernetesConfigSource`: a stage's configuration from named ConfigMaps, or its secrets from named
//! Secrets, in a namespace (which may name the stage: `shop-{stage}`).
//!
//! - Keys come from one or more objects, read in order: a key in a later object overrides an earlier one.
//! - Secret values are [`Secret`]s; ConfigMap values are plain (`binaryData` is not read).
//! - Each value's version is the resourceVersion of the object it came from. Kubernetes keeps no older
//!   versions, so a pin (a rollback asking for the version an earlier deploy used) loads only if the object
//!   is unchanged; otherwise the load fails naming the key and both versions: drift is detected, never
//!   papered over.
//! - A stage none of whose objects exists is one the source knows nothing about (an empty set, as the
//!   `ConfigSource` contract says). A stage with some of them is expected to have all: a missing object, or
//!   a key listed in `keys` that no object holds, is an error naming the stage, the namespace, the object
//!   and the key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use base64::Engine as _;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use promote_core::config::{
    ConfigEntry, ConfigRequest, ConfigSet, ConfigSource, ConfigValue, Secret, SourceCapabilities,
};
use promote_core::error::{Error, ErrorClass, Resource, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::connection::{Connection, connection_setters};
use crate::error::from_kube;
use crate::label::check_label;
use crate::retry::retrying;

/// The placeholder namespaces and object names may hold.
const STAGE_PLACEHOLDER: &str = "{stage}";

/// Which kind of object a [`KubernetesConfigSource`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigObjects {
    /// ConfigMaps: plain values.
    ConfigMaps,
    /// Secrets: every value is a [`Secret`].
    Secrets,
}

impl ConfigObjects {
    fn kind(self) -> &'static str {
        match self {
            ConfigObjects::ConfigMaps => "ConfigMap",
            ConfigObjects::Secrets => "Secret",
        }
    }

    fn resource(self) -> ApiResource {
        let (kind, plural) = match self {
            ConfigObjects::ConfigMaps => ("ConfigMap", "configmaps"),
            ConfigObjects::Secrets => ("Secret", "secrets"),
        };
        ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        }
    }
}

/// The source's settings, as the spec kinds read them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigSettings {
    /// The namespace (`{stage}` allowed).
    pub(crate) namespace: String,
    /// The objects, in order (`{stage}` allowed).
    pub(crate) objects: Vec<String>,
    /// Only these keys, each required; all keys when absent.
    #[serde(default)]
    pub(crate) keys: Option<Vec<String>>,
    /// The source's name in provenance (default `<kind>/<namespace>`).
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// A kubeconfig context instead of the current one.
    #[serde(default)]
    pub(crate) context: Option<String>,
    /// A kubeconfig file instead of the default.
    #[serde(default)]
    pub(crate) kubeconfig: Option<PathBuf>,
}

/// Configuration from ConfigMaps or Secrets. How it works: the crate docs, "Shared state for runners on many machines".
///
/// ```rust,no_run
/// # async fn demo() -> promote_core::Result<()> {
/// use promote_k8s::{ConfigObjects, KubernetesConfigSource};
/// let settings = KubernetesConfigSource::builder(ConfigObjects::ConfigMaps)
///     .namespace("shop-{stage}")
///     .object("settings")
///     .build()
///     .await?;
/// let secrets = KubernetesConfigSource::builder(ConfigObjects::Secrets)
///     .namespace("shop-{stage}")
///     .object("db")
///     .keys(["DB_PASSWORD"])
///     .build()
///     .await?;
/// # let _ = (settings, secrets); Ok(()) }
/// ```
#[derive(Clone)]
pub struct KubernetesConfigSource {
    client: kube::Client,
    from: ConfigObjects,
    name: String,
    namespace: String,
    objects: Vec<String>,
    keys: Option<Vec<String>>,
}

impl std::fmt::Debug for KubernetesConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesConfigSource")
            .field("from", &self.from)
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("objects", &self.objects)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// One object as read: its values and its resourceVersion.
struct Read {
    object: String,
    version: String,
    values: BTreeMap<String, ConfigValue>,
}

impl KubernetesConfigSource {
    /// A builder for a source reading `from`.
    pub fn builder(from: ConfigObjects) -> KubernetesConfigSourceBuilder {
        KubernetesConfigSourceBuilder {
            from,
            settings: ConfigSettings {
                namespace: STAGE_PLACEHOLDER.into(),
                objects: Vec::new(),
                keys: None,
                name: None,
                context: None,
                kubeconfig: None,
            },
            connection: None,
        }
    }

    fn error(&self, stage: &str, message: String, class: ErrorClass) -> Error {
        Error::ConfigSource { stage: stage.to_owned(), source_name: self.name.clone(), message, class }
    }

    async fn read(&self, api: &Api<DynamicObject>, stage: &str, namespace: &str, object: &str) -> Result<Option<Read>> {
        let kind = self.from.kind();
        let found = retrying(|| api.get_opt(object))
            .await
            .map_err(|e| from_kube(e, &format!("stage {stage}: read {kind} {object} in namespace {namespace}")))?;
        let Some(found) = found else { return Ok(None) };
        let version = found.metadata.resource_version.clone().unwrap_or_default();
        let mut values = BTreeMap::new();
        let data = found.data.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
        for (key, value) in data {
            let text = value.as_str().unwrap_or_default();
            let value = match self.from {
                ConfigObjects::ConfigMaps => ConfigValue::Plain(text.to_owned()),
                ConfigObjects::Secrets => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()
                        .and_then(|bytes| String::from_utf8(bytes).ok())
                        .ok_or_else(|| {
                            self.error(
                                stage,
                                format!("key {key} of Secret {object} in namespace {namespace} is not UTF-8 text"),
                                ErrorClass::Persistent,
                            )
                        })?;
                    ConfigValue::Secret(Secret::new(decoded))
                }
            };
            values.insert(key, value);
        }
        Ok(Some(Read { object: object.to_owned(), version, values }))
    }
}

#[async_trait]
impl ConfigSource for KubernetesConfigSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        let mut capabilities = SourceCapabilities::versioned_secrets();
        capabilities.secrets = self.from == ConfigObjects::Secrets;
        capabilities
    }

    async fn load(&self, request: &ConfigRequest) -> Result<ConfigSet> {
        let stage = request.stage.as_str();
        let namespace = self.namespace.replace(STAGE_PLACEHOLDER, stage);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &namespace, &self.from.resource());
        let kind = self.from.kind();
        let mut reads = Vec::new();
        let mut missing = Vec::new();
        for object in &self.objects {
            let object = object.replace(STAGE_PLACEHOLDER, stage);
            match self.read(&api, stage, &namespace, &object).await? {
                Some(read) => reads.push(read),
                None => missing.push(object),
            }
        }
        if reads.is_empty() {
            return Ok(ConfigSet::new());
        }
        if let Some(object) = missing.first() {
            let message = format!("{kind} {object} is missing from namespace {namespace}");
            return Err(self.error(stage, message, ErrorClass::Persistent));
        }
        let mut set = ConfigSet::new();
        for read in reads {
            for (key, value) in read.values {
                if self.keys.as_ref().is_some_and(|keys| !keys.contains(&key)) {
                    continue;
                }
                if let Some(pinned) = request.pins.get(&key).filter(|pinned| **pinned != read.version) {
                    return Err(Error::NotFound {
                        resource: Resource::Object,
                        name: format!(
                            "stage {stage}: key {key} at version {pinned}: {kind} {} in namespace {namespace} is now \
                             at version {} and Kubernetes keeps no older versions (the config drifted)",
                            read.object, read.version
                        ),
                    });
                }
                let entry = ConfigEntry { value, source: self.name.clone(), version: Some(read.version.clone()) };
                set.insert(key, entry);
            }
        }
        for key in self.keys.iter().flatten() {
            if set.get(key).is_none() {
                let objects = self.objects.iter().map(|o| o.replace(STAGE_PLACEHOLDER, stage)).collect::<Vec<_>>();
                let message =
                    format!("key {key} is in none of the {kind}s {} in namespace {namespace}", objects.join(", "));
                return Err(self.error(stage, message, ErrorClass::Persistent));
            }
        }
        Ok(set)
    }
}

/// Builds a [`KubernetesConfigSource`].
#[derive(Debug)]
pub struct KubernetesConfigSourceBuilder {
    from: ConfigObjects,
    settings: ConfigSettings,
    /// A client or a spec's connection; `None`: the settings' kubeconfig and context.
    connection: Option<Connection>,
}

connection_setters!(KubernetesConfigSourceBuilder);

impl KubernetesConfigSourceBuilder {
    /// The namespace of the objects (`{stage}` is replaced by the stage's name; default `{stage}`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.settings.namespace = namespace.into();
        self
    }

    /// Adds an object to read (`{stage}` allowed); later objects override earlier ones.
    pub fn object(mut self, name: impl Into<String>) -> Self {
        self.settings.objects.push(name.into());
        self
    }

    /// Reads only these keys, each of which must be present.
    pub fn keys<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keys: I) -> Self {
        self.settings.keys = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// The source's name in provenance and errors (default `configmaps/<namespace>` or `secrets/<namespace>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = Some(name.into());
        self
    }

    pub(crate) fn settings(mut self, settings: ConfigSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The source. Reads configuration files; sends no request.
    pub async fn build(mut self) -> Result<KubernetesConfigSource> {
        let connection = self.take_connection();
        let settings = self.settings;
        if settings.objects.is_empty() {
            return Err(Error::invalid("Kubernetes config setting", "objects", "name at least one object"));
        }
        for (setting, value) in std::iter::once(("namespace", &settings.namespace))
            .chain(settings.objects.iter().map(|object| ("objects", object)))
        {
            if let Err(why) = check_label(&value.replace(STAGE_PLACEHOLDER, "x")) {
                return Err(Error::invalid("Kubernetes config setting", setting, format!("`{value}`: {why}")));
            }
        }
        let plural = self.from.resource().plural;
        Ok(KubernetesConfigSource {
            client: connection.connect().await?,
            from: self.from,
            name: settings.name.unwrap_or_else(|| format!("{plural}/{}", settings.namespace)),
            namespace: settings.namespace,
            objects: settings.objects,
            keys: settings.keys,
        })
    }
}
