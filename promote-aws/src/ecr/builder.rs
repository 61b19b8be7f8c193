//! Building an [`EcrStore`]: [`EcrConfig`], what a spec file can say (`kind: ecr`), and [`EcrStoreBuilder`],
//! which holds one and adds what only code can give (an SDK configuration or client, static credentials, a
//! retry policy, a copier). Each setting is declared once, in the config.

#[cfg(feature = "oci-copy")]
use std::sync::Arc;

use promote_core::Result;
use serde::Deserialize;

use super::EcrStore;
use crate::connection::{Connection, SpecConnection, connection_setters};

/// The `ecr` kind of a spec file, and the settings an [`EcrStoreBuilder`] holds.
///
/// ```
/// let config: promote_aws::EcrConfig =
///     serde_json::from_str(r#"{"region": "eu-west-1", "immutable_tags": true}"#).unwrap();
/// assert!(config.immutable_tags && config.read_config_labels);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EcrConfig {
    /// The AWS region; otherwise the standard chain's.
    pub region: Option<String>,
    /// An endpoint URL replacing the public ECR API endpoint (VPC endpoint).
    pub endpoint_url: Option<String>,
    /// A named profile of the shared AWS config files.
    pub profile: Option<String>,
    /// Attempts per call, the first included (see [`EcrStoreBuilder::retry_policy`]).
    pub max_attempts: Option<u32>,
    /// The target repositories have immutable tags (see [`EcrStoreBuilder::immutable_tags`]).
    pub immutable_tags: bool,
    /// Registry hosts that stand for the caller's own registry (see [`EcrStoreBuilder::registry_alias`]).
    pub registry_aliases: Vec<String>,
    /// Read the revision from the image config's labels when the manifest lacks it (default true; see
    /// [`EcrStoreBuilder::read_config_labels`]).
    pub read_config_labels: bool,
    /// Promote across repositories, accounts and regions through the OCI copy engine (feature `oci-copy`).
    pub cross_registry: bool,
    /// Registry hosts the copy engine may reach over plain HTTP.
    pub insecure_registries: Vec<String>,
}

impl Default for EcrConfig {
    fn default() -> Self {
        EcrConfig {
            region: None,
            endpoint_url: None,
            profile: None,
            max_attempts: None,
            immutable_tags: false,
            registry_aliases: Vec::new(),
            read_config_labels: true,
            cross_registry: false,
            insecure_registries: Vec::new(),
        }
    }
}

impl EcrConfig {
    /// The builder this configuration describes, to which code can add an SDK configuration and the like.
    pub fn builder(&self) -> EcrStoreBuilder {
        EcrStoreBuilder { settings: self.clone(), ..EcrStoreBuilder::default() }
    }
}

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
    settings: EcrConfig,
    connection: Connection,
    client: Option<aws_sdk_ecr::Client>,
    #[cfg(feature = "oci-copy")]
    copier: Option<Arc<dyn promote_core::ArtifactStore>>,
}

connection_setters!(EcrStoreBuilder, "ECR API");

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
    /// in a repository configured `MUTABLE`: a tag held by another digest is
    /// [`Error::TagConflict`](promote_core::Error::TagConflict).
    /// (With or without this, an `IMMUTABLE` repository's refusal is reported as `TagConflict`.)
    pub fn immutable_tags(mut self, immutable: bool) -> Self {
        self.settings.immutable_tags = immutable;
        self
    }

    /// A registry host that stands for the caller's own ECR registry in the store's region, besides
    /// `<account>.dkr.ecr.<region>.amazonaws.com` (a private DNS name, a pull-through alias).
    pub fn registry_alias(mut self, host: impl Into<String>) -> Self {
        self.settings.registry_aliases.push(host.into());
        self
    }

    /// Whether `resolve` reads the revision from the image config's `Labels` when the manifest's annotations
    /// lack it, as `promote-oci` does (default true). It costs a `GetDownloadUrlForLayer` call (permission
    /// `ecr:GetDownloadUrlForLayer`) and a download of at most 1 MiB, once per resolve of such an image.
    pub fn read_config_labels(mut self, read: bool) -> Self {
        self.settings.read_config_labels = read;
        self
    }

    /// Enables promotion into other repositories, accounts, regions and registries, through the OCI copy
    /// engine of `promote-oci`, authenticated with ECR authorization tokens.
    #[cfg(feature = "oci-copy")]
    pub fn cross_registry(mut self, enabled: bool) -> Self {
        self.settings.cross_registry = enabled;
        self
    }

    /// A registry host the OCI copy engine may reach over plain HTTP (loopback test registries).
    #[cfg(feature = "oci-copy")]
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.settings.insecure_registries.push(host.into());
        self
    }

    /// Sends promotions into other repositories and registries to `copier` instead of the default
    /// `OciRegistryStore` that [`cross_registry`](Self::cross_registry) builds. It must keep digests; the
    /// digest it reports is checked.
    #[cfg(feature = "oci-copy")]
    pub fn copier(mut self, copier: impl promote_core::ArtifactStore + 'static) -> Self {
        self.copier = Some(Arc::new(copier));
        self
    }

    /// Builds the store, loading the AWS configuration. `cross_registry` (or insecure registries) without
    /// the `oci-copy` feature is [`Error::NotSupported`](promote_core::Error::NotSupported).
    pub async fn build(self) -> Result<EcrStore> {
        let settings = &self.settings;
        #[cfg(not(feature = "oci-copy"))]
        if settings.cross_registry || !settings.insecure_registries.is_empty() {
            return Err(promote_core::Error::NotSupported {
                backend: crate::error::ECR,
                operation: "cross_registry (build promote-aws with the `oci-copy` feature)".into(),
            });
        }
        #[cfg(feature = "oci-copy")]
        let needs_sdk_config = self.client.is_none() || (settings.cross_registry && self.copier.is_none());
        #[cfg(not(feature = "oci-copy"))]
        let needs_sdk_config = self.client.is_none();
        let spec = SpecConnection {
            region: settings.region.as_deref(),
            endpoint_url: settings.endpoint_url.as_deref(),
            profile: settings.profile.as_deref(),
            max_attempts: settings.max_attempts,
        };
        let sdk_config = if needs_sdk_config { Some(self.connection.load(spec).await) } else { None };
        let client = match (self.client, &sdk_config) {
            (Some(client), _) => client,
            (None, Some(config)) => aws_sdk_ecr::Client::new(config),
            (None, None) => unreachable!("the SDK configuration is loaded when no client is given"),
        };
        #[allow(unused_mut)]
        let mut store = EcrStore::over(client, settings);
        #[cfg(feature = "oci-copy")]
        if let Some(copier) = self.copier {
            store.copier = Some(copier);
        } else if settings.cross_registry
            && let Some(sdk_config) = &sdk_config
        {
            let mut credentials = super::credentials::EcrCredentialProvider::new(sdk_config);
            for alias in &settings.registry_aliases {
                credentials = credentials.with_registry_alias(alias.clone());
            }
            let mut oci = promote_oci::OciRegistryStore::builder().credential_provider(credentials);
            for host in &settings.insecure_registries {
                oci = oci.insecure(host.clone());
            }
            store.copier = Some(Arc::new(oci.build()?));
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(feature = "oci-copy"))]
    use promote_core::Error;

    #[test]
    fn unknown_keys_are_refused() {
        let error = serde_json::from_str::<EcrConfig>(r#"{"regoin": "eu-west-1"}"#).unwrap_err();
        assert!(error.to_string().contains("regoin"), "{error}");
    }

    #[cfg(not(feature = "oci-copy"))]
    #[tokio::test]
    async fn cross_registry_needs_the_feature() {
        let config: EcrConfig = serde_json::from_str(r#"{"cross_registry": true}"#).unwrap();
        assert!(matches!(config.builder().build().await, Err(Error::NotSupported { .. })));
    }
}
