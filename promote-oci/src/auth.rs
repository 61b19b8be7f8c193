//! Registry credentials: where they come from ([`CredentialProvider`], the docker config, explicit values)
//! and how a request gets authorised (anonymous, basic, or a bearer token from the registry's token
//! service, fetched through `oci-client`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth as OciAuth;
use promote_core::{Error, ErrorClass, Result, Secret};
use tokio::sync::Mutex;

use crate::error::{FailResult, REGISTRY_BACKEND, persistent, temporary};

/// How to authenticate to one registry.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RegistryAuth {
    /// No credentials. Public registries still hand out anonymous bearer tokens, which the store fetches.
    #[default]
    Anonymous,
    /// A username and password (or a password-like token, as ECR and GHCR issue), sent as HTTP basic auth
    /// or exchanged for a bearer token, whichever the registry asks for.
    Basic {
        /// The username.
        username: String,
        /// The password or access token.
        password: Secret,
    },
    /// A ready-made bearer token, sent as is.
    Bearer(Secret),
    /// An identity (OAuth2 refresh) token, as `docker login` stores it for registries whose token service
    /// speaks OAuth2 (Azure Container Registry among them). It is exchanged for an access token with a
    /// `grant_type=refresh_token` POST to the token service, never sent to the registry itself.
    IdentityToken(Secret),
}

impl RegistryAuth {
    /// Basic credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        RegistryAuth::Basic { username: username.into(), password: Secret::new(password) }
    }

    fn to_oci(&self) -> OciAuth {
        match self {
            RegistryAuth::Anonymous => OciAuth::Anonymous,
            RegistryAuth::Basic { username, password } => {
                OciAuth::Basic(username.clone(), password.expose().to_owned())
            }
            RegistryAuth::Bearer(token) => OciAuth::Bearer(token.expose().to_owned()),
            // Exchanged by `Authenticator::token_for_scopes`; oci-client has no refresh-token flow.
            RegistryAuth::IdentityToken(_) => OciAuth::Anonymous,
        }
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, password } => {
                f.debug_struct("Basic").field("username", username).field("password", password).finish()
            }
            RegistryAuth::Bearer(token) => f.debug_tuple("Bearer").field(token).finish(),
            RegistryAuth::IdentityToken(token) => f.debug_tuple("IdentityToken").field(token).finish(),
        }
    }
}

/// Supplies credentials for a registry host, for example short-lived ECR tokens for cross-account copies.
///
/// It is asked once per registry and store, whatever the number of repositories and challenges. The answer
/// is kept until credentials made from it are refused (by the registry's token service, or by the registry
/// itself after a fresh challenge); then it is asked again, once, within the same request.
#[async_trait]
pub trait CredentialProvider: fmt::Debug + Send + Sync + 'static {
    /// The credentials for `registry` (a host, with port if any). Answer [`RegistryAuth::Anonymous`] for a
    /// registry the provider knows nothing about.
    async fn credentials(&self, registry: &str) -> Result<RegistryAuth>;
}

/// Credentials from the docker client config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`),
/// including `credsStore` and `credHelpers`, read with the `docker_credential` crate.
///
/// A missing config file or a registry without an entry means anonymous access.
#[derive(Debug, Clone, Copy, Default)]
pub struct DockerConfigCredentials;

#[async_trait]
impl CredentialProvider for DockerConfigCredentials {
    async fn credentials(&self, registry: &str) -> Result<RegistryAuth> {
        let server = if registry == "docker.io" || registry == "index.docker.io" {
            "https://index.docker.io/v1/".to_owned()
        } else {
            registry.to_owned()
        };
        let registry_name = registry.to_owned();
        // Credential helpers are external processes: keep them off the async threads.
        let found =
            tokio::task::spawn_blocking(move || docker_credential::get_credential(&server)).await.map_err(|_| {
                Error::backend(REGISTRY_BACKEND, ErrorClass::Temporary, "the credential lookup task failed")
            })?;
        use docker_credential::{CredentialRetrievalError as Missing, DockerCredential};
        match found {
            Ok(DockerCredential::UsernamePassword(username, password)) => Ok(RegistryAuth::basic(username, password)),
            Ok(DockerCredential::IdentityToken(token)) => Ok(RegistryAuth::IdentityToken(Secret::new(token))),
            Err(Missing::NoCredentialConfigured | Missing::ConfigNotFound | Missing::ConfigReadError) => {
                Ok(RegistryAuth::Anonymous)
            }
            // The helper's output may contain secrets: name the failure, never echo it.
            Err(Missing::HelperFailure { helper, .. }) => Err(Error::PermissionDenied {
                backend: REGISTRY_BACKEND,
                message: format!("docker credential helper `{helper}` failed for {registry_name}"),
            }),
            Err(other) => Err(Error::PermissionDenied {
                backend: REGISTRY_BACKEND,
                message: format!("cannot read docker credentials for {registry_name}: {other}"),
            }),
        }
    }
}

/// Where a store looks for credentials, in order: explicit per-registry values, a provider, the docker config.
#[derive(Debug, Clone, Default)]
pub(crate) struct CredentialSources {
    pub(crate) explicit: HashMap<String, RegistryAuth>,
    pub(crate) provider: Option<Arc<dyn CredentialProvider>>,
    pub(crate) docker_config: bool,
}

impl CredentialSources {
    async fn lookup(&self, registry: &str) -> Result<RegistryAuth> {
        if let Some(auth) = self.explicit.get(registry) {
            return Ok(auth.clone());
        }
        if let Some(provider) = &self.provider {
            let auth = provider.credentials(registry).await?;
            if auth != RegistryAuth::Anonymous {
                return Ok(auth);
            }
        }
        if self.docker_config {
            return DockerConfigCredentials.credentials(registry).await;
        }
        Ok(RegistryAuth::Anonymous)
    }
}

/// Whether a request only reads, or also writes to the repository. Tokens are scoped by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Pull,
    Push,
}

/// An `Authorization` header value, kept redacted.
#[derive(Clone)]
pub(crate) struct AuthHeader(Secret);

impl AuthHeader {
    pub(crate) fn value(&self) -> &str {
        self.0.expose()
    }
}

/// Authorises requests: remembers what each registry asked for and caches the resulting header per
/// repository and access.
pub(crate) struct Authenticator {
    sources: CredentialSources,
    insecure: Vec<String>,
    // Built on the first bearer challenge: loading TLS roots costs start-up time that anonymous and
    // basic-auth registries never need.
    token_client: std::sync::OnceLock<oci_client::Client>,
    credentials: Mutex<HashMap<String, RegistryAuth>>,
    headers: Mutex<HashMap<(String, String, Access), AuthHeader>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").field("sources", &self.sources).finish_non_exhaustive()
    }
}

impl Authenticator {
    pub(crate) fn new(sources: CredentialSources, insecure: &[String]) -> Self {
        Authenticator {
            sources,
            insecure: insecure.to_vec(),
            token_client: std::sync::OnceLock::new(),
            credentials: Mutex::default(),
            headers: Mutex::default(),
        }
    }

    /// The cached header for a repository, if a previous challenge produced one. A push token also
    /// serves pulls.
    pub(crate) async fn cached(&self, registry: &str, repository: &str, access: Access) -> Option<AuthHeader> {
        let headers = self.headers.lock().await;
        let key = |access| (registry.to_owned(), repository.to_owned(), access);
        headers.get(&key(access)).or_else(|| headers.get(&key(Access::Push))).cloned()
    }

    /// Forgets the headers of a repository after one was refused (a token expired, or lacked a scope). The
    /// credentials behind them are kept: the next challenge is answered with them.
    pub(crate) async fn forget_headers(&self, registry: &str, repository: &str) {
        self.headers.lock().await.retain(|(r, repo, _), _| !(r == registry && repo == repository));
    }

    /// Forgets a registry's credentials after they were refused, so the next challenge looks them up again
    /// (a provider's short-lived password, such as an ECR token, may have expired).
    pub(crate) async fn forget_credentials(&self, registry: &str) {
        self.credentials.lock().await.remove(registry);
    }

    async fn credentials_for(&self, registry: &str) -> Result<RegistryAuth> {
        if let Some(auth) = self.credentials.lock().await.get(registry) {
            return Ok(auth.clone());
        }
        let auth = self.sources.lookup(registry).await?;
        self.credentials.lock().await.insert(registry.to_owned(), auth.clone());
        Ok(auth)
    }

    /// Answers a 401 challenge (`WWW-Authenticate`) with a header, or `None` when we have nothing to offer.
    pub(crate) async fn answer_challenge(
        &self,
        http: &reqwest::Client,
        registry: &str,
        repository: &str,
        access: Access,
        challenge: &str,
    ) -> FailResult<Option<AuthHeader>> {
        let auth = self.credentials_for(registry).await?;
        let scheme = challenge.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        let header = match (scheme.as_str(), &auth) {
            (_, RegistryAuth::Bearer(token)) => Some(format!("Bearer {}", token.expose())),
            ("basic", RegistryAuth::Basic { username, password }) => {
                let pair = format!("{username}:{}", password.expose());
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            }
            ("basic", _) => None,
            ("bearer", RegistryAuth::IdentityToken(_)) => {
                Some(format!("Bearer {}", self.token_for_scopes(http, registry, challenge, &auth).await?.expose()))
            }
            ("bearer", _) if challenged_repositories(challenge) > 1 => {
                // A cross-repository mount: the registry wants one token for both repositories, which
                // oci-client's single-repository token request cannot ask for.
                Some(format!("Bearer {}", self.token_for_scopes(http, registry, challenge, &auth).await?.expose()))
            }
            ("bearer", _) => {
                let reference = Reference::with_tag(registry.to_owned(), repository.to_owned(), "latest".to_owned());
                let operation = match access {
                    Access::Pull => oci_client::RegistryOperation::Pull,
                    Access::Push => oci_client::RegistryOperation::Push,
                };
                let client = self.token_client.get_or_init(|| {
                    let protocol = ClientProtocol::HttpsExcept(self.insecure.clone());
                    oci_client::Client::new(ClientConfig { protocol, ..Default::default() })
                });
                match client.auth(&reference, &auth.to_oci(), operation).await {
                    Ok(Some(token)) => Some(format!("Bearer {token}")),
                    Ok(None) => None,
                    Err(error) => return Err(token_failure(registry, error)),
                }
            }
            _ => None,
        };
        let Some(header) = header else { return Ok(None) };
        let header = AuthHeader(Secret::new(header));
        self.headers.lock().await.insert((registry.to_owned(), repository.to_owned(), access), header.clone());
        Ok(Some(header))
    }
}

impl Authenticator {
    /// Asks the challenge's token service for a token covering every scope the challenge names: a GET
    /// (with basic credentials if there are any), or for an identity token the OAuth2 refresh-token POST.
    async fn token_for_scopes(
        &self,
        http: &reqwest::Client,
        registry: &str,
        challenge: &str,
        auth: &RegistryAuth,
    ) -> FailResult<Secret> {
        let params = challenge_params(challenge);
        let realm =
            params.get("realm").ok_or_else(|| persistent(format!("{registry}: a bearer challenge without a realm")))?;
        let plain_http_allowed = self.insecure.iter().any(|host| host == registry);
        let trusted = realm.starts_with("https://") || (plain_http_allowed && realm.starts_with("http://"));
        if !trusted {
            return Err(persistent(format!(
                "{registry}: refusing to send credentials to the token service at {realm}"
            )));
        }
        let service = params.get("service").map(String::as_str);
        let scopes = params.get("scope").map(String::as_str).unwrap_or_default();
        let request = match auth {
            RegistryAuth::IdentityToken(token) => {
                // distribution's OAuth2 token spec: the scopes go space-separated in one form field.
                let scope = scopes.split_whitespace().collect::<Vec<_>>().join(" ");
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.expose()),
                    ("client_id", OAUTH_CLIENT_ID),
                    ("scope", scope.as_str()),
                ];
                form.extend(service.map(|service| ("service", service)));
                http.post(realm.as_str()).form(&form)
            }
            _ => {
                let mut query: Vec<(&str, &str)> = service.map(|service| ("service", service)).into_iter().collect();
                query.extend(scopes.split_whitespace().map(|scope| ("scope", scope)));
                let request = http.get(realm.as_str()).query(&query);
                match auth {
                    RegistryAuth::Basic { username, password } => request.basic_auth(username, Some(password.expose())),
                    _ => request,
                }
            }
        };
        let response =
            request.send().await.map_err(|_| temporary(format!("cannot reach the token service of {registry}")))?;
        match response.status() {
            status if status.is_success() => {}
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                return Err(Error::PermissionDenied {
                    backend: REGISTRY_BACKEND,
                    message: format!("the token service of {registry} refused the credentials"),
                }
                .into());
            }
            status if status.is_server_error() => {
                return Err(temporary(format!("the token service of {registry} answered {status}")));
            }
            status => return Err(persistent(format!("the token service of {registry} answered {status}"))),
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let no_token = || persistent(format!("the token service of {registry} sent no token"));
        let bytes = response.bytes().await.map_err(|_| no_token())?;
        let body: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| no_token())?;
        body.token.or(body.access_token).map(Secret::new).ok_or_else(no_token)
    }
}

/// The client id sent with an OAuth2 token request (the spec requires one; registries log it).
const OAUTH_CLIENT_ID: &str = "promote";

/// The `key="value"` parameters of a `WWW-Authenticate` challenge (values may hold commas).
fn challenge_params(challenge: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let rest = challenge.split_once(char::is_whitespace).map_or("", |(_, rest)| rest);
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next().is_none() {
            return params;
        }
        let value: String = if chars.next_if_eq(&'"').is_some() {
            let value = std::iter::from_fn(|| chars.next_if(|c| *c != '"')).collect();
            chars.next();
            value
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect()
        };
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
}

/// How many distinct repositories a challenge's scope names.
fn challenged_repositories(challenge: &str) -> usize {
    let params = challenge_params(challenge);
    let scopes = params.get("scope").map(String::as_str).unwrap_or_default();
    let names: std::collections::BTreeSet<&str> = scopes
        .split_whitespace()
        .filter_map(|scope| scope.strip_prefix("repository:")?.rsplit_once(':').map(|(name, _)| name))
        .collect();
    names.len()
}

fn token_failure(registry: &str, error: OciDistributionError) -> crate::error::Failure {
    match error {
        OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. } => {
            Error::PermissionDenied {
                backend: REGISTRY_BACKEND,
                message: format!("the token service of {registry} refused the credentials"),
            }
            .into()
        }
        OciDistributionError::RequestError(_) => temporary(format!("cannot reach the token service of {registry}")),
        other => persistent(format!("token request for {registry} failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_with_several_repositories_are_read_whole() {
        let challenge = r#"Bearer realm="https://auth.example/token",service="registry",scope="repository:dst:pull,push repository:src:pull""#;
        let params = challenge_params(challenge);
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry");
        assert_eq!(params["scope"], "repository:dst:pull,push repository:src:pull");
        assert_eq!(challenged_repositories(challenge), 2);
        assert_eq!(challenged_repositories(r#"Bearer realm="r",scope="repository:a/b:pull,push""#), 1);
        assert_eq!(challenged_repositories("Basic realm=\"x\""), 0);
    }

    #[test]
    fn credentials_never_print() {
        let auth = RegistryAuth::basic("ci", "hunter2");
        assert!(!format!("{auth:?}").contains("hunter2"));
        let bearer = RegistryAuth::Bearer(Secret::new("tok-123"));
        assert!(!format!("{bearer:?}").contains("tok-123"));
    }

    #[tokio::test]
    async fn explicit_credentials_win_over_the_provider() {
        #[derive(Debug)]
        struct Fixed;
        #[async_trait]
        impl CredentialProvider for Fixed {
            async fn credentials(&self, _registry: &str) -> Result<RegistryAuth> {
                Ok(RegistryAuth::basic("provider", "p"))
            }
        }
        let mut sources = CredentialSources { provider: Some(Arc::new(Fixed)), ..Default::default() };
        sources.explicit.insert("a.example".into(), RegistryAuth::basic("explicit", "e"));
        let explicit = sources.lookup("a.example").await.unwrap();
        assert!(matches!(explicit, RegistryAuth::Basic { ref username, .. } if username == "explicit"));
        let provided = sources.lookup("b.example").await.unwrap();
        assert!(matches!(provided, RegistryAuth::Basic { ref username, .. } if username == "provider"));
    }
}
