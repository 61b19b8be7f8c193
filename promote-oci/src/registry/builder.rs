//! Building the stores: a builder for code, and `serde` configs (`kind: oci-registry`, `kind: oci-layout`)
//! for spec files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use promote_core::{Error, Result, Secret};
use serde::Deserialize;

use crate::auth::{CredentialProvider, CredentialSources, RegistryAuth, TrustedRealms, parse_trusted_realm};
use crate::copy::CopyOptions;
use crate::layout::OciLayoutStore;
use crate::registry::{Inner, OciRegistryStore};
use crate::retry::RetryPolicy;
use crate::transport::Transport;

/// Builds an [`OciRegistryStore`].
///
/// ```
/// use promote_oci::{OciRegistryStore, RegistryAuth};
/// let store = OciRegistryStore::builder()
///     .insecure("127.0.0.1:5000")
///     .credentials("ghcr.io", RegistryAuth::basic("ci-bot", "token"))
///     .max_concurrency(4)
///     .copy_signatures(true)
///     .build()?;
/// # Ok::<(), promote_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OciRegistryStoreBuilder {
    sources: CredentialSources,
    insecure: Vec<String>,
    /// (registry, token-service origin) pairs, checked at `build`.
    trusted_realms: Vec<(String, String)>,
    copy_options: CopyOptions,
    resolve_annotations: bool,
    immutable_tags: bool,
    allowed_registries: Option<std::collections::BTreeSet<String>>,
}

impl Default for OciRegistryStoreBuilder {
    fn default() -> Self {
        OciRegistryStoreBuilder {
            sources: CredentialSources { docker_config: true, ..Default::default() },
            insecure: Vec::new(),
            trusted_realms: Vec::new(),
            copy_options: CopyOptions::default(),
            resolve_annotations: true,
            immutable_tags: false,
            allowed_registries: None,
        }
    }
}

impl OciRegistryStoreBuilder {
    /// Talks only to these registries (`host[:port]`); any other is `Error::PermissionDenied` before a
    /// request is made. Untrusted specs get this from the embedder's allowlist.
    pub fn only_registries(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_registries = Some(hosts.into_iter().map(Into::into).collect());
        self
    }

    /// Asks `provider` for credentials of registries that have no explicit ones (before the docker config).
    pub fn credential_provider(mut self, provider: Arc<dyn CredentialProvider>) -> Self {
        self.sources.provider = Some(provider);
        self
    }

    /// Uses these credentials for `registry` (host, with port if any).
    pub fn credentials(mut self, registry: impl Into<String>, auth: RegistryAuth) -> Self {
        self.sources.explicit.insert(registry.into(), auth);
        self
    }

    /// Reads credentials from the docker config (`~/.docker/config.json`, `credsStore`, `credHelpers`).
    /// This is the default.
    pub fn docker_config(mut self) -> Self {
        self.sources.docker_config = true;
        self
    }

    /// Does not read the docker config: only explicit credentials and the provider count.
    pub fn without_docker_config(mut self) -> Self {
        self.sources.docker_config = false;
        self
    }

    /// Talks plain HTTP to `registry` (host, with port if any). Every other registry gets verified TLS.
    pub fn insecure(mut self, registry: impl Into<String>) -> Self {
        self.insecure.push(registry.into());
        self
    }

    /// Trusts the token service at `realm` (an https origin such as `https://auth.example.com`) with the
    /// credentials of `registry`, although it is not on the registry's own origin.
    ///
    /// A bearer challenge names the token service, so a registry could send its clients' credentials
    /// anywhere. They go only to a token service on the registry's own scheme, host and port, to Docker
    /// Hub's `https://auth.docker.io` for `docker.io`, `index.docker.io` and `registry-1.docker.io`, and
    /// to the ones trusted here; any other is asked for an anonymous token. A `realm` that is not an https
    /// origin is an error at [`build`](Self::build).
    pub fn trusted_token_realm(mut self, registry: impl Into<String>, realm: impl Into<String>) -> Self {
        self.trusted_realms.push((registry.into(), realm.into()));
        self
    }

    /// How many blobs a copy moves at once (default 8).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.copy_options.max_concurrency = n.max(1);
        self
    }

    /// Copies cosign signature, attestation and SBOM tags along when promoting across repositories.
    pub fn copy_signatures(mut self, copy: bool) -> Self {
        self.copy_options.copy_signatures = copy;
        self
    }

    /// Copies referrers along (the referrers API, or the `sha256-<hex>` tag schema).
    pub fn copy_referrers(mut self, copy: bool) -> Self {
        self.copy_options.copy_referrers = copy;
        self
    }

    /// Treats tags as immutable: promoting onto a tag held by another digest is a `TagConflict`.
    pub fn immutable_tags(mut self, immutable: bool) -> Self {
        self.immutable_tags = immutable;
        self
    }

    /// Whether `resolve` reads annotations and config labels (one GET per digest); default true.
    pub fn resolve_annotations(mut self, read: bool) -> Self {
        self.resolve_annotations = read;
        self
    }

    /// How temporary failures are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.copy_options.retry = policy;
        self
    }

    /// Builds the store. A trusted token realm that is not an https origin is [`Error::InvalidInput`].
    pub fn build(self) -> Result<OciRegistryStore> {
        let mut trusted_realms = TrustedRealms::default();
        for (registry, realm) in &self.trusted_realms {
            trusted_realms.trust(registry, parse_trusted_realm(realm)?);
        }
        let transport = Transport::new(self.sources, &self.insecure, trusted_realms)?;
        Ok(OciRegistryStore::from_inner(Inner {
            transport,
            copy_options: self.copy_options,
            resolve_annotations: self.resolve_annotations,
            immutable_tags: self.immutable_tags,
            allowed_registries: self.allowed_registries,
        }))
    }
}

/// The spec form of an [`OciRegistryStore`] (`kind: oci-registry`).
///
/// Secrets are never written in the spec: credentials name the environment variables that hold them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OciRegistryConfig {
    /// Registries (host\[:port\]) reached over plain HTTP.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Read `~/.docker/config.json` (default true).
    #[serde(default = "default_true")]
    pub docker_config: bool,
    /// Blobs moved at once (default 8).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Copy cosign tags along.
    #[serde(default)]
    pub copy_signatures: bool,
    /// Copy referrers along.
    #[serde(default)]
    pub copy_referrers: bool,
    /// Treat tags as immutable.
    #[serde(default)]
    pub immutable_tags: bool,
    /// Give up retrying after this many seconds (default 120).
    #[serde(default)]
    pub retry_seconds: Option<u64>,
    /// Credentials per registry host.
    #[serde(default)]
    pub credentials: BTreeMap<String, CredentialsConfig>,
    /// Token services (https origins) trusted with a registry's credentials although they are not on the
    /// registry's origin, per registry host; see [`OciRegistryStoreBuilder::trusted_token_realm`].
    #[serde(default)]
    pub trusted_token_realms: BTreeMap<String, String>,
}

/// Where a registry's credentials come from, in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CredentialsConfig {
    /// The username, for basic credentials.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the password (with `username`).
    #[serde(default)]
    pub password_env: Option<String>,
    /// The environment variable holding a bearer token (instead of a username and password).
    #[serde(default)]
    pub token_env: Option<String>,
    /// The environment variable holding an identity (OAuth2 refresh) token, see
    /// [`RegistryAuth::IdentityToken`].
    #[serde(default)]
    pub identity_token_env: Option<String>,
}

fn default_true() -> bool {
    true
}

fn from_env(registry: &str, variable: &str) -> Result<Secret> {
    std::env::var(variable)
        .map(Secret::new)
        .map_err(|_| Error::invalid("credentials", registry, format!("the environment variable {variable} is not set")))
}

impl CredentialsConfig {
    fn to_auth(&self, registry: &str) -> Result<RegistryAuth> {
        match (&self.username, &self.password_env, &self.token_env, &self.identity_token_env) {
            (Some(username), Some(password), None, None) => {
                Ok(RegistryAuth::Basic { username: username.clone(), password: from_env(registry, password)? })
            }
            (None, None, Some(token), None) => Ok(RegistryAuth::Bearer(from_env(registry, token)?)),
            (None, None, None, Some(token)) => Ok(RegistryAuth::IdentityToken(from_env(registry, token)?)),
            _ => Err(Error::invalid(
                "credentials",
                registry,
                "give one of: `username` with `password_env`, `token_env`, or `identity_token_env`",
            )),
        }
    }
}

impl OciRegistryConfig {
    /// A builder with these settings, to which code can add a credential provider.
    pub fn builder(&self) -> Result<OciRegistryStoreBuilder> {
        let mut builder = OciRegistryStore::builder();
        if !self.docker_config {
            builder = builder.without_docker_config();
        }
        for registry in &self.insecure {
            builder = builder.insecure(registry.clone());
        }
        for (registry, credentials) in &self.credentials {
            builder = builder.credentials(registry.clone(), credentials.to_auth(registry)?);
        }
        for (registry, realm) in &self.trusted_token_realms {
            // Checked here too, so that a spec names the bad setting when it is loaded.
            parse_trusted_realm(realm)?;
            builder = builder.trusted_token_realm(registry.clone(), realm.clone());
        }
        if let Some(n) = self.max_concurrency {
            builder = builder.max_concurrency(n);
        }
        if let Some(seconds) = self.retry_seconds {
            builder = builder.retry(RetryPolicy { total: Duration::from_secs(seconds), ..RetryPolicy::default() });
        }
        Ok(builder
            .copy_signatures(self.copy_signatures)
            .copy_referrers(self.copy_referrers)
            .immutable_tags(self.immutable_tags))
    }

    /// Builds the store.
    pub fn build(&self) -> Result<OciRegistryStore> {
        self.builder()?.build()
    }
}

/// The spec form of an [`OciLayoutStore`] (`kind: oci-layout`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OciLayoutConfig {
    /// The directory holding one layout per repository.
    pub root: PathBuf,
    /// The registry name references to this store use (default `oci-layout.local`).
    #[serde(default)]
    pub registry: Option<String>,
}

impl OciLayoutConfig {
    /// Builds the store.
    pub fn build(&self) -> OciLayoutStore {
        let store = OciLayoutStore::new(&self.root);
        match &self.registry {
            Some(registry) => store.with_registry(registry.clone()),
            None => store,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused() {
        let error = serde_json::from_str::<OciRegistryConfig>(r#"{"insecure": [], "tls": false}"#).unwrap_err();
        assert!(error.to_string().contains("tls"), "{error}");
        let config: OciRegistryConfig = serde_json::from_str(r#"{"insecure": ["127.0.0.1:5000"]}"#).unwrap();
        assert!(config.docker_config);
    }

    #[test]
    fn trusted_token_realms_must_be_https_origins() {
        let config: OciRegistryConfig =
            serde_json::from_str(r#"{"trusted_token_realms": {"ghcr.example": "https://auth.example.com"}}"#).unwrap();
        config.build().unwrap();
        let plain: OciRegistryConfig =
            serde_json::from_str(r#"{"trusted_token_realms": {"ghcr.example": "http://auth.example.com"}}"#).unwrap();
        assert!(matches!(plain.builder(), Err(Error::InvalidInput { .. })));
        let builder = OciRegistryStore::builder().trusted_token_realm("ghcr.example", "https://auth.example.com/token");
        assert!(matches!(builder.build(), Err(Error::InvalidInput { .. })));
    }

    #[test]
    fn credentials_need_a_complete_form() {
        let half = CredentialsConfig {
            username: Some("ci".into()),
            password_env: None,
            token_env: None,
            identity_token_env: None,
        };
        assert!(matches!(half.to_auth("r.example"), Err(Error::InvalidInput { .. })));
        // PATH is set wherever tests run; its value stands in for a token.
        let identity: CredentialsConfig = serde_json::from_str(r#"{"identity_token_env": "PATH"}"#).unwrap();
        assert!(matches!(identity.to_auth("r.example"), Ok(RegistryAuth::IdentityToken(_))));
        let both: CredentialsConfig =
            serde_json::from_str(r#"{"token_env": "PATH", "identity_token_env": "PATH"}"#).unwrap();
        assert!(matches!(both.to_auth("r.example"), Err(Error::InvalidInput { .. })));
    }
}
