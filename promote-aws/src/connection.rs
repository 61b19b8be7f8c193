//! Configuration: the AWS connection (credential chain, region, endpoint, retries), the builders, and the
//! serde structs a spec file deserialises into (kinds `ecr` and `secrets-manager`).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use promote_core::{Error, Result};
use serde::Deserialize;

use crate::ecr::EcrStore;
use crate::secrets_manager::SecretsManagerSource;

/// Attempts per AWS call (the first one included) when nothing else is configured. Throttling, 5xx and
/// connection failures are retried by the SDK's standard retry strategy with exponential backoff and jitter.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// How to reach AWS. Everything left unset comes from the standard chain of `aws-config`: environment,
/// shared config and credentials files (profiles, SSO), web identity, ECS and EC2 instance metadata.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connection {
    sdk_config: Option<SdkConfig>,
    region: Option<String>,
    endpoint_url: Option<String>,
    profile: Option<String>,
    max_attempts: Option<u32>,
    initial_backoff: Option<Duration>,
    credentials: Option<Credentials>,
}

impl Connection {
    /// The connection a spec's settings describe.
    fn from_settings(
        region: &Option<String>,
        endpoint_url: &Option<String>,
        profile: &Option<String>,
        max_attempts: Option<u32>,
    ) -> Self {
        Connection {
            region: region.clone(),
            endpoint_url: endpoint_url.clone(),
            profile: profile.clone(),
            max_attempts,
            ..Connection::default()
        }
    }

    /// Loads the SDK configuration: the given one or the default chain, with this connection's overrides.
    pub(crate) async fn load(&self) -> SdkConfig {
        let mut retry = RetryConfig::standard().with_max_attempts(self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS));
        if let Some(backoff) = self.initial_backoff {
            retry = retry.with_initial_backoff(backoff);
        }
        match &self.sdk_config {
            Some(config) => {
                let mut builder = config.to_builder();
                if let Some(region) = &self.region {
                    builder.set_region(Some(Region::new(region.clone())));
                }
                if let Some(endpoint) = &self.endpoint_url {
                    builder.set_endpoint_url(Some(endpoint.clone()));
                }
                if self.max_attempts.is_some() || self.initial_backoff.is_some() {
                    builder.set_retry_config(Some(retry));
                }
                if let Some(credentials) = &self.credentials {
                    builder.set_credentials_provider(Some(SharedCredentialsProvider::new(credentials.clone())));
                }
                builder.build()
            }
            None => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry);
                if let Some(region) = &self.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(endpoint) = &self.endpoint_url {
                    loader = loader.endpoint_url(endpoint);
                }
                if let Some(profile) = &self.profile {
                    loader = loader.profile_name(profile);
                }
                if let Some(credentials) = &self.credentials {
                    loader = loader.credentials_provider(credentials.clone());
                }
                loader.load().await
            }
        }
    }
}

/// The connection setters every AWS builder shares; each builder has a `connection: Connection` field.
macro_rules! connection_setters {
    ($builder:ty, $service:literal) => {
        impl $builder {
            /// The AWS region (otherwise `AWS_REGION`, the profile, or instance metadata).
            pub fn region(mut self, region: impl Into<String>) -> Self {
                self.connection.region = Some(region.into());
                self
            }

            #[doc = concat!("An endpoint URL that replaces the public ", $service, " endpoint: a VPC endpoint, or a test server.")]
            pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
                self.connection.endpoint_url = Some(url.into());
                self
            }

            /// A named profile of the shared AWS config files.
            pub fn profile(mut self, profile: impl Into<String>) -> Self {
                self.connection.profile = Some(profile.into());
                self
            }

            /// Attempts per call, the first included (default [`DEFAULT_MAX_ATTEMPTS`]).
            pub fn max_attempts(mut self, attempts: u32) -> Self {
                self.connection.max_attempts = Some(attempts);
                self
            }

            /// The first retry's backoff; later ones grow exponentially, with jitter (the SDK default is 1 s).
            pub fn initial_backoff(mut self, backoff: Duration) -> Self {
                self.connection.initial_backoff = Some(backoff);
                self
            }

            /// Static credentials instead of the credential chain: for tests against a local endpoint, or a
            /// tool that holds its own keys. The secret parts stay redacted in every `Debug` output.
            pub fn static_credentials(
                mut self,
                access_key_id: impl Into<String>,
                secret_access_key: promote_core::Secret,
                session_token: Option<promote_core::Secret>,
            ) -> Self {
                self.connection.credentials = Some(Credentials::new(
                    access_key_id,
                    secret_access_key.expose(),
                    session_token.map(|token| token.expose().to_owned()),
                    None,
                    "promote-static",
                ));
                self
            }

            /// Starts from an SDK configuration loaded elsewhere (the builder's other settings still override
            /// it).
            pub fn sdk_config(mut self, config: &SdkConfig) -> Self {
                self.connection.sdk_config = Some(config.clone());
                self
            }
        }
    };
}

connection_setters!(EcrStoreBuilder, "ECR API");
connection_setters!(SecretsManagerBuilder, "Secrets Manager");

/// Builds an [`EcrStore`]. Unset AWS settings come from the standard `aws-config` chain.
///
/// ```no_run
/// # async fn example() -> promote_core::Result<()> {
/// let store = promote_aws::EcrStore::builder()
///     .region("eu-west-1")
///     .immutable_tags(true)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct EcrStoreBuilder {
    connection: Connection,
    client: Option<aws_sdk_ecr::Client>,
    immutable_tags: bool,
    registry_aliases: Vec<String>,
    #[cfg(feature = "oci-copy")]
    cross_registry: bool,
    #[cfg(feature = "oci-copy")]
    insecure_registries: Vec<String>,
    #[cfg(feature = "oci-copy")]
    copier: Option<std::sync::Arc<dyn promote_core::ArtifactStore>>,
}

impl EcrStoreBuilder {
    /// A builder with nothing set: everything comes from the standard chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this ECR client as it is; the connection settings are then ignored for ECR API calls.
    pub fn client(mut self, client: aws_sdk_ecr::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Declares that the target repositories have immutable tags. The store then never moves a tag, even
    /// in a repository configured `MUTABLE`: a tag held by another digest is [`Error::TagConflict`].
    /// (With or without this, an `IMMUTABLE` repository's refusal is reported as `TagConflict`.)
    pub fn immutable_tags(mut self, immutable: bool) -> Self {
        self.immutable_tags = immutable;
        self
    }

    /// A registry host that stands for the caller's own ECR registry in the store's region, besides
    /// `<account>.dkr.ecr.<region>.amazonaws.com` (a private DNS name, a pull-through alias).
    pub fn registry_alias(mut self, host: impl Into<String>) -> Self {
        self.registry_aliases.push(host.into());
        self
    }

    /// Enables promotion into other repositories, accounts, regions and registries, through the OCI copy
    /// engine of `promote-oci`, authenticated with ECR authorization tokens.
    #[cfg(feature = "oci-copy")]
    pub fn cross_registry(mut self, enabled: bool) -> Self {
        self.cross_registry = enabled;
        self
    }

    /// A registry host the OCI copy engine may reach over plain HTTP (loopback test registries).
    #[cfg(feature = "oci-copy")]
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.insecure_registries.push(host.into());
        self
    }

    /// Sends promotions into other repositories and registries to `copier` instead of the default
    /// `OciRegistryStore` that [`cross_registry`](Self::cross_registry) builds. It must keep digests; the
    /// digest it reports is checked.
    #[cfg(feature = "oci-copy")]
    pub fn copier(mut self, copier: std::sync::Arc<dyn promote_core::ArtifactStore>) -> Self {
        self.copier = Some(copier);
        self
    }

    /// Builds the store, loading the AWS configuration.
    pub async fn build(self) -> Result<EcrStore> {
        #[cfg(feature = "oci-copy")]
        let needs_sdk_config = self.client.is_none() || (self.cross_registry && self.copier.is_none());
        #[cfg(not(feature = "oci-copy"))]
        let needs_sdk_config = self.client.is_none();
        let sdk_config = if needs_sdk_config { Some(self.connection.load().await) } else { None };
        let client = match (self.client, &sdk_config) {
            (Some(client), _) => client,
            (None, Some(config)) => aws_sdk_ecr::Client::new(config),
            (None, None) => unreachable!("the SDK configuration is loaded when no client is given"),
        };
        let region = client.config().region().map(|region| region.to_string());
        #[allow(unused_mut)]
        let mut store = EcrStore::from_parts(client, region, self.immutable_tags, self.registry_aliases.clone());
        #[cfg(feature = "oci-copy")]
        if let Some(copier) = self.copier {
            store = store.with_copier(copier);
        } else if self.cross_registry {
            let Some(sdk_config) = sdk_config else {
                unreachable!("the SDK configuration is loaded for cross_registry")
            };
            let mut credentials = crate::auth::EcrCredentialProvider::new(&sdk_config);
            for alias in &self.registry_aliases {
                credentials = credentials.with_registry_alias(alias.clone());
            }
            let mut oci =
                promote_oci::OciRegistryStore::builder().credential_provider(std::sync::Arc::new(credentials));
            for host in &self.insecure_registries {
                oci = oci.insecure(host.clone());
            }
            store = store.with_copier(std::sync::Arc::new(oci.build()?));
        }
        Ok(store)
    }
}

/// The `ecr` kind of a spec file: how to build an [`EcrStore`].
///
/// ```
/// let config: promote_aws::EcrConfig =
///     serde_json::from_str(r#"{"region": "eu-west-1", "immutable_tags": true}"#).unwrap();
/// assert!(config.immutable_tags);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EcrConfig {
    /// The AWS region; otherwise the standard chain's.
    #[serde(default)]
    pub region: Option<String>,
    /// An endpoint URL replacing the public ECR API endpoint (VPC endpoint).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// A named profile of the shared AWS config files.
    #[serde(default)]
    pub profile: Option<String>,
    /// Attempts per call, the first included.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The target repositories have immutable tags (see [`EcrStoreBuilder::immutable_tags`]).
    #[serde(default)]
    pub immutable_tags: bool,
    /// Registry hosts that stand for the caller's own registry (see [`EcrStoreBuilder::registry_alias`]).
    #[serde(default)]
    pub registry_aliases: Vec<String>,
    /// Promote across repositories, accounts and regions through the OCI copy engine (feature `oci-copy`).
    #[serde(default)]
    pub cross_registry: bool,
    /// Registry hosts the copy engine may reach over plain HTTP.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
}

impl EcrConfig {
    /// The builder this configuration describes. `cross_registry` without the `oci-copy` feature is
    /// [`Error::NotSupported`].
    pub fn builder(&self) -> Result<EcrStoreBuilder> {
        let mut builder = EcrStoreBuilder::new().immutable_tags(self.immutable_tags);
        builder.connection =
            Connection::from_settings(&self.region, &self.endpoint_url, &self.profile, self.max_attempts);
        builder.registry_aliases = self.registry_aliases.clone();
        #[cfg(feature = "oci-copy")]
        {
            builder.cross_registry = self.cross_registry;
            builder.insecure_registries = self.insecure_registries.clone();
        }
        #[cfg(not(feature = "oci-copy"))]
        if self.cross_registry || !self.insecure_registries.is_empty() {
            return Err(Error::NotSupported {
                backend: crate::error::ECR,
                operation: "cross_registry (build promote-aws with the `oci-copy` feature)".into(),
            });
        }
        Ok(builder)
    }
}

/// How a secret's content becomes config keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretFormat {
    /// The secret is a JSON object; each member becomes a key.
    #[default]
    Json,
    /// The secret is one string, loaded under one key.
    String,
}

/// One secret a stage loads.
///
/// The id may contain `{stage}`, replaced by the stage's name, so that one template such as `{stage}/app`
/// serves every stage. Without a version stage or id, the `AWSCURRENT` version is loaded.
///
/// ```
/// use promote_aws::SecretSpec;
/// let app = SecretSpec::json("{stage}/app");
/// let token = SecretSpec::string("{stage}/api-token", "API_TOKEN").at_version_stage("AWSPREVIOUS");
/// assert_eq!(token.key.as_deref(), Some("API_TOKEN"));
/// # let _ = app;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SecretSpec {
    /// The secret's name or ARN; `{stage}` is replaced by the stage.
    pub id: String,
    /// How its content becomes keys.
    #[serde(default)]
    pub format: SecretFormat,
    /// For [`SecretFormat::String`]: the key the value is loaded under.
    #[serde(default)]
    pub key: Option<String>,
    /// For [`SecretFormat::Json`]: load only these members, each of which must be present.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
    /// Load the version with this staging label (`AWSCURRENT` by default).
    #[serde(default)]
    pub version_stage: Option<String>,
    /// Load exactly this version.
    #[serde(default)]
    pub version_id: Option<String>,
}

impl SecretSpec {
    /// A secret holding a JSON object whose members become keys.
    pub fn json(id: impl Into<String>) -> Self {
        SecretSpec {
            id: id.into(),
            format: SecretFormat::Json,
            key: None,
            keys: None,
            version_stage: None,
            version_id: None,
        }
    }

    /// A secret holding one string, loaded under `key`.
    pub fn string(id: impl Into<String>, key: impl Into<String>) -> Self {
        SecretSpec { format: SecretFormat::String, key: Some(key.into()), ..SecretSpec::json(id) }
    }

    /// Loads only these members of a JSON secret; each must be present.
    pub fn with_keys(mut self, keys: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.keys = Some(keys.into_iter().map(Into::into).collect());
        self
    }

    /// Loads the version that carries this staging label.
    pub fn at_version_stage(mut self, label: impl Into<String>) -> Self {
        self.version_stage = Some(label.into());
        self
    }

    /// Loads exactly this version.
    pub fn at_version_id(mut self, version_id: impl Into<String>) -> Self {
        self.version_id = Some(version_id.into());
        self
    }

    /// Checks that the fields fit together.
    pub(crate) fn validate(&self) -> Result<()> {
        let refuse = |reason: &str| Err(Error::invalid("secret spec", self.id.clone(), reason));
        if self.id.trim().is_empty() {
            return refuse("the secret id is empty");
        }
        match self.format {
            SecretFormat::String if self.key.as_deref().is_none_or(str::is_empty) => {
                refuse("a `string` secret needs the `key` it is loaded under")
            }
            SecretFormat::String if self.keys.is_some() => refuse("`keys` selects members of a `json` secret"),
            SecretFormat::Json if self.key.is_some() => {
                refuse("`key` names a `string` secret; a `json` secret's members are its keys")
            }
            _ => Ok(()),
        }
    }
}

/// Secrets loaded for several stages from one id template.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StageTemplate {
    /// The stages the template applies to.
    pub stages: Vec<String>,
    /// The secrets, with `{stage}` in their ids.
    pub secrets: Vec<SecretSpec>,
}

/// The `secrets-manager` kind of a spec file: how to build a [`SecretsManagerSource`].
///
/// ```
/// let config: promote_aws::SecretsManagerConfig = serde_json::from_str(r#"{
///     "region": "eu-west-1",
///     "stages": {"prd": [{"id": "prd/db-password", "format": "string", "key": "DB_PASSWORD"}]},
///     "template": {"stages": ["dev", "stg", "prd"], "secrets": [{"id": "{stage}/app"}]}
/// }"#).unwrap();
/// assert_eq!(config.stages["prd"][0].key.as_deref(), Some("DB_PASSWORD"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SecretsManagerConfig {
    /// The source's name in provenance and errors (default `secrets-manager`).
    #[serde(default)]
    pub name: Option<String>,
    /// The AWS region; otherwise the standard chain's.
    #[serde(default)]
    pub region: Option<String>,
    /// An endpoint URL replacing the public Secrets Manager endpoint (VPC endpoint).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// A named profile of the shared AWS config files.
    #[serde(default)]
    pub profile: Option<String>,
    /// Attempts per call, the first included.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The secrets of each stage.
    #[serde(default)]
    pub stages: BTreeMap<String, Vec<SecretSpec>>,
    /// Secrets every listed stage loads, named by a template.
    #[serde(default)]
    pub template: Option<StageTemplate>,
}

impl SecretsManagerConfig {
    /// The builder this configuration describes.
    pub fn builder(&self) -> SecretsManagerBuilder {
        let mut builder = SecretsManagerBuilder::new();
        if let Some(name) = &self.name {
            builder = builder.name(name.clone());
        }
        builder.connection =
            Connection::from_settings(&self.region, &self.endpoint_url, &self.profile, self.max_attempts);
        if let Some(template) = &self.template {
            builder = builder.template(template.stages.iter().cloned(), template.secrets.iter().cloned());
        }
        for (stage, secrets) in &self.stages {
            builder = builder.stage(stage.clone(), secrets.iter().cloned());
        }
        builder
    }
}

/// Builds a [`SecretsManagerSource`]. Unset AWS settings come from the standard `aws-config` chain.
///
/// ```no_run
/// use promote_aws::{SecretSpec, SecretsManagerSource};
/// # async fn example() -> promote_core::Result<()> {
/// let source = SecretsManagerSource::builder()
///     .template(["dev", "stg", "prd"], [SecretSpec::json("{stage}/app")])
///     .stage("prd", [SecretSpec::string("prd/db-password", "DB_PASSWORD")])
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SecretsManagerBuilder {
    connection: Connection,
    client: Option<aws_sdk_secretsmanager::Client>,
    name: String,
    stages: BTreeMap<String, Vec<SecretSpec>>,
}

impl Default for SecretsManagerBuilder {
    fn default() -> Self {
        SecretsManagerBuilder {
            connection: Connection::default(),
            client: None,
            name: crate::error::SECRETS_MANAGER.to_owned(),
            stages: BTreeMap::new(),
        }
    }
}

impl SecretsManagerBuilder {
    /// A builder with no stages: everything AWS comes from the standard chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// The source's name in provenance and errors (default `secrets-manager`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds secrets to a stage. Later secrets override earlier ones where their keys overlap.
    pub fn stage(mut self, stage: impl Into<String>, secrets: impl IntoIterator<Item = SecretSpec>) -> Self {
        self.stages.entry(stage.into()).or_default().extend(secrets);
        self
    }

    /// Adds the same secrets, with `{stage}` in their ids, to each of `stages`.
    pub fn template(
        mut self,
        stages: impl IntoIterator<Item = impl Into<String>>,
        secrets: impl IntoIterator<Item = SecretSpec>,
    ) -> Self {
        let secrets: Vec<SecretSpec> = secrets.into_iter().collect();
        for stage in stages {
            self.stages.entry(stage.into()).or_default().extend(secrets.iter().cloned());
        }
        self
    }

    /// Uses this Secrets Manager client as it is; the connection settings are then ignored.
    pub fn client(mut self, client: aws_sdk_secretsmanager::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Checks the secrets and builds the source, loading the AWS configuration.
    pub async fn build(self) -> Result<SecretsManagerSource> {
        for spec in self.stages.values().flatten() {
            spec.validate()?;
        }
        let client = match self.client {
            Some(client) => client,
            None => aws_sdk_secretsmanager::Client::new(&self.connection.load().await),
        };
        Ok(SecretsManagerSource::from_parts(client, self.name, self.stages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused() {
        let error = serde_json::from_str::<EcrConfig>(r#"{"regoin": "eu-west-1"}"#).unwrap_err();
        assert!(error.to_string().contains("regoin"), "{error}");
        let error =
            serde_json::from_str::<SecretsManagerConfig>(r#"{"stages": {"prd": [{"id": "x", "formt": "json"}]}}"#)
                .unwrap_err();
        assert!(error.to_string().contains("formt"), "{error}");
    }

    #[test]
    fn specs_that_do_not_fit_together_are_refused() {
        assert!(SecretSpec::json("a").validate().is_ok());
        assert!(SecretSpec::string("a", "KEY").validate().is_ok());
        let mut no_key = SecretSpec::string("a", "KEY");
        no_key.key = None;
        assert!(no_key.validate().is_err());
        let mut json_with_key = SecretSpec::json("a");
        json_with_key.key = Some("KEY".into());
        assert!(json_with_key.validate().is_err());
        assert!(SecretSpec::string("a", "K").with_keys(["X"]).validate().is_err());
    }

    #[cfg(not(feature = "oci-copy"))]
    #[test]
    fn cross_registry_needs_the_feature() {
        let config: EcrConfig = serde_json::from_str(r#"{"cross_registry": true}"#).unwrap();
        assert!(matches!(config.builder(), Err(Error::NotSupported { .. })));
    }
}
