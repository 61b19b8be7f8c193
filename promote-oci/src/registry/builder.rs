//! Building an [`OciRegistryStore`]: [`OciRegistryConfig`], what a spec file can say (`kind: oci-registry`),
//! and [`OciRegistryStoreBuilder`], which holds one and adds what only code can give (credential values,
//! a credential provider, an allowlist, a retry policy). Each setting is declared once, in the config.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use promote_core::progress::Progress;
use promote_core::retry::RetryPolicy;
use promote_core::{Error, Result, Secret};
use serde::Deserialize;

use super::auth::{CredentialProvider, CredentialSources, RegistryAuth, TrustedRealms, parse_trusted_realm};
use super::transport::Transport;
use super::{Inner, OciRegistryStore};
use crate::copy::CopyOptions;

/// The spec form of an [`OciRegistryStore`] (`kind: oci-registry`), and the settings an
/// [`OciRegistryStoreBuilder`] holds.
///
/// Secrets are never written in the spec: credentials name the environment variables that hold them.
///
/// ```
/// let config: promote_oci::OciRegistryConfig =
///     serde_json::from_str(r#"{"insecure": ["127.0.0.1:5000"], "copy_signatures": true}"#).unwrap();
/// let store = config.builder().max_concurrency(4).build()?;
/// # let _ = store;
/// # Ok::<(), promote_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OciRegistryConfig {
    /// Registries (host\[:port\]) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Read `~/.docker/config.json` (default true).
    pub docker_config: bool,
    /// Blobs moved at once (default 8).
    pub max_concurrency: Option<usize>,
    /// Copy cosign tags along.
    pub copy_signatures: bool,
    /// Copy referrers along.
    pub copy_referrers: bool,
    /// Treat tags as immutable.
    pub immutable_tags: bool,
    /// Give up retrying after this many seconds (default 120): the total time of the retry policy.
    pub retry_seconds: Option<u64>,
    /// Credentials per registry host.
    pub credentials: BTreeMap<String, CredentialsConfig>,
    /// Token services (https origins) trusted with a registry's credentials although they are not on the
    /// registry's origin, per registry host; see [`OciRegistryStoreBuilder::trusted_token_realm`].
    pub trusted_token_realms: BTreeMap<String, String>,
}

impl Default for OciRegistryConfig {
    fn default() -> Self {
        OciRegistryConfig {
            insecure: Vec::new(),
            docker_config: true,
            max_concurrency: None,
            copy_signatures: false,
            copy_referrers: false,
            immutable_tags: false,
            retry_seconds: None,
            credentials: BTreeMap::new(),
            trusted_token_realms: BTreeMap::new(),
        }
    }
}

impl OciRegistryConfig {
    /// A builder with these settings, to which code can add a credential provider and the like.
    pub fn builder(&self) -> OciRegistryStoreBuilder {
        OciRegistryStoreBuilder { settings: self.clone(), ..OciRegistryStoreBuilder::default() }
    }

    /// Builds the store.
    pub fn build(&self) -> Result<OciRegistryStore> {
        self.builder().build()
    }
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
    settings: OciRegistryConfig,
    /// Credential values given in code; they win over the settings' environment variables.
    credentials: HashMap<String, RegistryAuth>,
    provider: Option<Arc<dyn CredentialProvider>>,
    only_registries: Option<BTreeSet<String>>,
    resolve_annotations: bool,
    retry: RetryPolicy,
    progress: Progress,
}

impl Default for OciRegistryStoreBuilder {
    fn default() -> Self {
        OciRegistryStoreBuilder {
            settings: OciRegistryConfig::default(),
            credentials: HashMap::new(),
            provider: None,
            only_registries: None,
            resolve_annotations: true,
            retry: CopyOptions::default().retry,
            progress: Progress::none(),
        }
    }
}

impl OciRegistryStoreBuilder {
    /// Talks only to these registries (`host[:port]`); any other is `Error::PermissionDenied` before a
    /// request is made. Untrusted specs get this from the embedder's allowlist.
    pub fn only_registries(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.only_registries = Some(hosts.into_iter().map(Into::into).collect());
        self
    }

    /// Asks `provider` for credentials of registries that have no explicit ones (before the docker config).
    pub fn credential_provider(mut self, provider: impl CredentialProvider) -> Self {
        self.provider = Some(Arc::new(provider));
        self
    }

    /// Uses these credentials for `registry` (host, with port if any).
    pub fn credentials(mut self, registry: impl Into<String>, auth: RegistryAuth) -> Self {
        self.credentials.insert(registry.into(), auth);
        self
    }

    /// Whether credentials are read from the docker config (`~/.docker/config.json`, `credsStore`,
    /// `credHelpers`); default true. Without it only explicit credentials and the provider count.
    pub fn docker_config(mut self, read: bool) -> Self {
        self.settings.docker_config = read;
        self
    }

    /// Talks plain HTTP to `registry` (host, with port if any). Every other registry gets verified TLS.
    pub fn insecure(mut self, registry: impl Into<String>) -> Self {
        self.settings.insecure.push(registry.into());
        self
    }

    /// Trusts the token service at `realm` (an https origin such as `https://auth.example.com`) with the
    /// credentials of `registry`, although it is not on the registry's own origin. One realm per registry:
    /// a later call for the same registry replaces the earlier one.
    ///
    /// A bearer challenge names the token service, so a registry could send its clients' credentials
    /// anywhere. They go only to a token service on the registry's own scheme, host and port, to Docker
    /// Hub's `https://auth.docker.io` for `docker.io`, `index.docker.io` and `registry-1.docker.io`, and
    /// to the ones trusted here; any other is asked for an anonymous token. A `realm` that is not an https
    /// origin is an error at [`build`](Self::build).
    pub fn trusted_token_realm(mut self, registry: impl Into<String>, realm: impl Into<String>) -> Self {
        self.settings.trusted_token_realms.insert(registry.into(), realm.into());
        self
    }

    /// How many blobs a copy moves at once (default 8).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.settings.max_concurrency = Some(n.max(1));
        self
    }

    /// Copies cosign signature, attestation and SBOM tags along when promoting across repositories.
    pub fn copy_signatures(mut self, copy: bool) -> Self {
        self.settings.copy_signatures = copy;
        self
    }

    /// Copies referrers along (the referrers API, or the `sha256-<hex>` tag schema).
    pub fn copy_referrers(mut self, copy: bool) -> Self {
        self.settings.copy_referrers = copy;
        self
    }

    /// Treats tags as immutable: promoting onto a tag held by another digest is a `TagConflict`.
    pub fn immutable_tags(mut self, immutable: bool) -> Self {
        self.settings.immutable_tags = immutable;
        self
    }

    /// Whether `resolve` reads annotations and config labels (one GET per digest); default true.
    pub fn resolve_annotations(mut self, read: bool) -> Self {
        self.resolve_annotations = read;
        self
    }

    /// How temporary failures (408, 429, 5xx, broken connections) are retried. The default: 9 attempts,
    /// 200 ms doubling to 10 s with jitter, honouring `Retry-After`, within 2 minutes. A spec's
    /// `retry_seconds` sets the policy's total time.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Where cross-repository promotions report the bytes they copy (see [`CopyOptions::progress`]); nobody
    /// listens by default.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Builds the store. A trusted token realm that is not an https origin, or spec credentials whose
    /// environment variables are not set, are [`Error::InvalidInput`].
    pub fn build(self) -> Result<OciRegistryStore> {
        let settings = self.settings;
        let mut trusted_realms = TrustedRealms::default();
        for (registry, realm) in &settings.trusted_token_realms {
            trusted_realms.trust(registry, parse_trusted_realm(realm)?);
        }
        let mut explicit = HashMap::new();
        for (registry, credentials) in &settings.credentials {
            explicit.insert(registry.clone(), credentials.to_auth(registry)?);
        }
        explicit.extend(self.credentials);
        let sources = CredentialSources { explicit, provider: self.provider, docker_config: settings.docker_config };
        let transport = Transport::new(sources, &settings.insecure, trusted_realms)?;
        let mut retry = self.retry;
        if let Some(seconds) = settings.retry_seconds {
            retry = retry.with_total(Some(Duration::from_secs(seconds)));
        }
        let mut copy_options = CopyOptions::default()
            .with_signatures(settings.copy_signatures)
            .with_referrers(settings.copy_referrers)
            .with_retry(retry)
            .with_progress(self.progress);
        if let Some(n) = settings.max_concurrency {
            copy_options = copy_options.with_max_concurrency(n);
        }
        Ok(OciRegistryStore {
            inner: Arc::new(Inner {
                transport,
                copy_options,
                resolve_annotations: self.resolve_annotations,
                immutable_tags: settings.immutable_tags,
                only_registries: self.only_registries,
            }),
        })
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
        assert!(matches!(plain.build(), Err(Error::InvalidInput { .. })));
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

    #[test]
    fn spec_settings_reach_the_store() {
        let config: OciRegistryConfig = serde_json::from_str(
            r#"{"max_concurrency": 3, "copy_signatures": true, "immutable_tags": true, "retry_seconds": 7}"#,
        )
        .unwrap();
        let store = config.builder().retry_policy(RetryPolicy::default().with_max_attempts(2)).build().unwrap();
        let options = store.copy_options();
        assert_eq!((options.max_concurrency, options.copy_signatures, options.copy_referrers), (3, true, false));
        assert_eq!(options.retry.max_attempts, 2, "the code's policy");
        assert_eq!(options.retry.total, Some(Duration::from_secs(7)), "with the spec's total time");
        assert!(store.inner.immutable_tags);
    }
}
