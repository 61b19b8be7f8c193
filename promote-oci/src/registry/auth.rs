//! Registry credentials: where they come from ([`CredentialProvider`], the docker config, explicit values)
//! and how a request gets authorised (anonymous, basic, or a bearer token from the registry's token
//! service).
//!
//! A token service (the `realm` of a bearer challenge) is named by the registry, so it is not trusted
//! blindly: it receives the registry's credentials only when it is on the registry's own origin, or when
//! it is https and trusted for that registry ([`TrustedRealms`]: Docker Hub's `auth.docker.io` is built
//! in, others are configured). Any other token service is asked for an anonymous token. Tokens are
//! fetched here rather than by `oci-client`, whose `Client::auth` reads its own challenge from `/v2/`
//! and sends the credentials to whatever realm that one names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use promote_core::{Error, ErrorClass, Result, Secret};
use reqwest::Url;
use tokio::sync::Mutex;

use super::transport::{Origin, USER_AGENT, read_capped};
use crate::error::{FailResult, REGISTRY_BACKEND, persistent};

/// The largest token response we read.
const MAX_TOKEN_RESPONSE: usize = 1024 * 1024;

/// Token services trusted with a registry's credentials although they are not on its origin.
const BUILT_IN_TRUSTED_REALMS: [(&str, &str); 3] = [
    ("docker.io", "https://auth.docker.io"),
    ("index.docker.io", "https://auth.docker.io"),
    ("registry-1.docker.io", "https://auth.docker.io"),
];

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

/// A shared provider is a provider, so that callers holding an `Arc` can pass it as it is.
#[async_trait]
impl<T: CredentialProvider + ?Sized> CredentialProvider for Arc<T> {
    async fn credentials(&self, registry: &str) -> Result<RegistryAuth> {
        (**self).credentials(registry).await
    }
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

/// The token services (by origin) trusted with each registry's credentials besides the registry's own
/// origin. Built with Docker Hub's pair; [`TrustedRealms::trust`] adds others.
#[derive(Debug, Clone)]
pub(crate) struct TrustedRealms(BTreeMap<String, Vec<Origin>>);

impl Default for TrustedRealms {
    fn default() -> Self {
        let mut realms = TrustedRealms(BTreeMap::new());
        for (registry, realm) in BUILT_IN_TRUSTED_REALMS {
            let origin = parse_trusted_realm(realm).unwrap_or_else(|_| unreachable!("built-in realms are valid"));
            realms.trust(registry, origin);
        }
        realms
    }
}

impl TrustedRealms {
    /// Trusts the token service at `realm` with `registry`'s credentials.
    pub(crate) fn trust(&mut self, registry: &str, realm: Origin) {
        let origins = self.0.entry(registry.to_owned()).or_default();
        if !origins.contains(&realm) {
            origins.push(realm);
        }
    }

    /// Whether the token service at `realm` may receive the credentials of `registry`, whose own origin is
    /// `registry_origin`: it is on that origin, or it is https and trusted for the registry.
    pub(crate) fn may_receive_credentials(&self, registry: &str, registry_origin: &Origin, realm: &Url) -> bool {
        let realm = Origin::of(realm);
        realm == *registry_origin
            || (realm.is_tls() && self.0.get(registry).is_some_and(|trusted| trusted.contains(&realm)))
    }
}

/// Parses a trusted token-service origin: `https://host[:port]`, with no path, query or user info.
pub(crate) fn parse_trusted_realm(realm: &str) -> Result<Origin> {
    let invalid = |reason: &str| Error::invalid("trusted token realm", realm, reason);
    let url = Url::parse(realm).map_err(|error| invalid(&error.to_string()))?;
    if url.scheme() != "https" {
        return Err(invalid("must be https: credentials never go to a token service over plain HTTP"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("needs a host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid("give the origin only, like https://auth.example.com"));
    }
    Ok(Origin::of(&url))
}

/// Whether a request only reads, or also writes to the repository. Tokens are scoped by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Pull,
    Push,
}

/// An `Authorization` header value, kept redacted.
#[derive(Clone)]
pub(crate) struct AuthHeader(pub(crate) Secret);

impl AuthHeader {
    pub(crate) fn value(&self) -> &str {
        self.0.expose()
    }
}

/// Authorises requests: remembers what each registry asked for and caches the resulting header per
/// repository and access.
pub(crate) struct Authenticator {
    sources: CredentialSources,
    trusted_realms: TrustedRealms,
    // Built on the first bearer challenge: loading TLS roots costs start-up time that anonymous and
    // basic-auth registries never need. It follows no redirect: a token request carries credentials (in
    // the OAuth2 form, in its body, which a 307 would re-send anywhere).
    token_client: std::sync::OnceLock<reqwest::Client>,
    credentials: Mutex<HashMap<String, RegistryAuth>>,
    headers: Mutex<HashMap<(String, String, Access), AuthHeader>>,
    /// Registries whose untrusted token service we already warned about.
    warned: std::sync::Mutex<HashSet<String>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("sources", &self.sources)
            .field("trusted_realms", &self.trusted_realms)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub(crate) fn new(sources: CredentialSources, trusted_realms: TrustedRealms) -> Self {
        Authenticator {
            sources,
            trusted_realms,
            token_client: std::sync::OnceLock::new(),
            credentials: Mutex::default(),
            headers: Mutex::default(),
            warned: std::sync::Mutex::default(),
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

    /// Answers a 401 challenge (`WWW-Authenticate`) of `registry` (whose own origin is `origin`) with a
    /// header, or `None` when we have nothing to offer.
    pub(crate) async fn answer_challenge(
        &self,
        registry: &str,
        origin: &Origin,
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
            ("bearer", _) => {
                let token = self.fetch_token(registry, origin, repository, access, challenge, &auth).await?;
                Some(format!("Bearer {}", token.expose()))
            }
            _ => None,
        };
        let Some(header) = header else { return Ok(None) };
        let header = AuthHeader(Secret::new(header));
        self.headers.lock().await.insert((registry.to_owned(), repository.to_owned(), access), header.clone());
        Ok(Some(header))
    }

    fn token_client(&self) -> FailResult<&reqwest::Client> {
        if let Some(client) = self.token_client.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| persistent("cannot build the HTTP client for token requests"))?;
        Ok(self.token_client.get_or_init(|| client))
    }

    /// Asks the challenge's token service for a token covering every scope the challenge names (and the
    /// repository's own scope for `access`): a GET, with basic credentials if there are any, or for an
    /// identity token the OAuth2 refresh-token POST. A token service that may not receive the registry's
    /// credentials is asked anonymously.
    async fn fetch_token(
        &self,
        registry: &str,
        origin: &Origin,
        repository: &str,
        access: Access,
        challenge: &str,
        auth: &RegistryAuth,
    ) -> FailResult<Secret> {
        let params = challenge_params(challenge);
        let realm =
            params.get("realm").ok_or_else(|| persistent(format!("{registry}: a bearer challenge without a realm")))?;
        let realm = Url::parse(realm)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| persistent(format!("{registry}: the bearer challenge names no http(s) token service")))?;
        let with_credentials = self.trusted_realms.may_receive_credentials(registry, origin, &realm);
        if !with_credentials && *auth != RegistryAuth::Anonymous {
            self.warn_untrusted(registry, &realm);
        }
        let service = params.get("service").map(String::as_str);
        let scopes = scopes_for(params.get("scope").map(String::as_str).unwrap_or_default(), repository, access);
        let http = self.token_client()?;
        let request = match auth {
            RegistryAuth::IdentityToken(token) if with_credentials => {
                // distribution's OAuth2 token spec: the scopes go space-separated in one form field.
                let scope = scopes.join(" ");
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.expose()),
                    ("client_id", OAUTH_CLIENT_ID),
                    ("scope", scope.as_str()),
                ];
                form.extend(service.map(|service| ("service", service)));
                http.post(realm.clone()).form(&form)
            }
            _ => {
                let mut query: Vec<(&str, &str)> = service.map(|service| ("service", service)).into_iter().collect();
                query.extend(scopes.iter().map(|scope| ("scope", scope.as_str())));
                let request = http.get(realm.clone()).query(&query);
                match auth {
                    RegistryAuth::Basic { username, password } if with_credentials => {
                        request.basic_auth(username, Some(password.expose()))
                    }
                    _ => request,
                }
            }
        };
        let response = request.send().await.map_err(|error| Error::Backend {
            backend: REGISTRY_BACKEND,
            message: format!("cannot reach the token service of {registry}"),
            class: ErrorClass::Temporary,
            // Without the URL: the realm is the registry's to name, and nothing else of it belongs in a log.
            source: Some(Box::new(error.without_url())),
        })?;
        match response.status() {
            status if status.is_success() => {}
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                return Err(Error::PermissionDenied {
                    backend: REGISTRY_BACKEND,
                    message: format!("the token service of {registry} refused the credentials"),
                }
                .into());
            }
            status => {
                let message = format!("the token service of {registry} answered {status}");
                return Err(
                    Error::backend(REGISTRY_BACKEND, ErrorClass::from_http_status(status.as_u16()), message).into()
                );
            }
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let no_token = || persistent(format!("the token service of {registry} sent no token"));
        let bytes = read_capped(response, MAX_TOKEN_RESPONSE, "token request", registry).await?;
        let body: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| no_token())?;
        body.token.or(body.access_token).filter(|token| !token.is_empty()).map(Secret::new).ok_or_else(no_token)
    }

    /// Says, once per registry, that its token service gets no credentials. Names the registry and the
    /// service's origin, never a credential.
    fn warn_untrusted(&self, registry: &str, realm: &Url) {
        let first = self.warned.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(registry.to_owned());
        if first {
            tracing::warn!(
                registry,
                token_service = %Origin::of(realm),
                "the registry's token service is not on its origin nor trusted for it (see trusted_token_realms): \
                 asking it for an anonymous token, without the registry's credentials"
            );
        }
    }
}

/// The scopes of a token request: the challenge's, with the repository's own actions for `access` added
/// when the challenge lacks them. Actions are put in one order (`pull`, `push`, then the rest sorted):
/// registries list them in no particular order, and the same token request should look the same.
fn scopes_for(challenged: &str, repository: &str, access: Access) -> Vec<String> {
    let needed: &[&str] = match access {
        Access::Pull => &["pull"],
        Access::Push => &["pull", "push"],
    };
    let mut scopes: Vec<String> = Vec::new();
    let mut covered = false;
    for scope in challenged.split_whitespace() {
        let Some((name, actions)) = scope.strip_prefix("repository:").and_then(|rest| rest.rsplit_once(':')) else {
            scopes.push(scope.to_owned());
            continue;
        };
        let mut actions: Vec<&str> = actions.split(',').filter(|action| !action.is_empty()).collect();
        if name == repository {
            covered = true;
            if !actions.contains(&"*") {
                actions.extend_from_slice(needed);
            }
        }
        scopes.push(format!("repository:{name}:{}", ordered(actions)));
    }
    if !covered {
        scopes.push(format!("repository:{repository}:{}", needed.join(",")));
    }
    scopes
}

/// Actions without repeats, `pull` and `push` first.
fn ordered(mut actions: Vec<&str>) -> String {
    let rank = |action: &str| match action {
        "pull" => 0,
        "push" => 1,
        _ => 2,
    };
    actions.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    actions.dedup();
    actions.join(",")
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
    }

    #[test]
    fn token_requests_cover_the_repository_for_the_access() {
        let both = "repository:dst:pull,push repository:src:pull";
        assert_eq!(scopes_for(both, "dst", Access::Push), ["repository:dst:pull,push", "repository:src:pull"]);
        assert_eq!(scopes_for("", "a/b", Access::Pull), ["repository:a/b:pull"]);
        assert_eq!(scopes_for("", "a/b", Access::Push), ["repository:a/b:pull,push"]);
        assert_eq!(scopes_for("repository:a/b:pull", "a/b", Access::Push), ["repository:a/b:pull,push"]);
        assert_eq!(scopes_for("repository:a/b:pull", "a/b", Access::Pull), ["repository:a/b:pull"]);
        // Registries list actions in any order; the request always says them in one.
        assert_eq!(scopes_for("repository:a/b:push,pull", "a/b", Access::Push), ["repository:a/b:pull,push"]);
        assert_eq!(scopes_for("repository:a/b:delete,push", "a/b", Access::Pull), ["repository:a/b:pull,push,delete"]);
        assert_eq!(scopes_for("repository:a/b:*", "a/b", Access::Push), ["repository:a/b:*"]);
        assert_eq!(
            scopes_for("registry:catalog:* repository:a/b:pull", "c", Access::Pull),
            ["registry:catalog:*", "repository:a/b:pull", "repository:c:pull"]
        );
    }

    #[test]
    fn credentials_go_to_token_services_on_the_registry_origin_or_trusted_for_it() {
        let realms = TrustedRealms::default();
        let url = |text: &str| Url::parse(text).unwrap();
        let origin = |text: &str| Origin::of(&url(text));
        let tls_registry = origin("https://registry.example/v2/");
        let may = |registry: &str, registry_origin: &Origin, realm: &str| {
            realms.may_receive_credentials(registry, registry_origin, &url(realm))
        };
        assert!(may("registry.example", &tls_registry, "https://registry.example/token?x=1"), "same origin");
        assert!(!may("registry.example", &tls_registry, "http://registry.example/token"), "plain HTTP");
        assert!(!may("registry.example", &tls_registry, "https://registry.example:8443/token"), "another port");
        assert!(!may("registry.example", &tls_registry, "https://evil.example/token"), "another host");
        assert!(
            !may("registry.example", &tls_registry, "https://auth.docker.io/token"),
            "Docker's, for another registry"
        );
        // An insecure registry's own origin is plain HTTP; the same host on another port is not it.
        let plain = origin("http://127.0.0.1:5000/v2/");
        assert!(may("127.0.0.1:5000", &plain, "http://127.0.0.1:5000/token"));
        assert!(!may("127.0.0.1:5000", &plain, "http://127.0.0.1:5001/token"));
        // Docker Hub's pair is built in.
        let hub = origin("https://index.docker.io/v2/");
        for registry in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert!(may(registry, &hub, "https://auth.docker.io/token"), "{registry}");
            assert!(!may(registry, &hub, "http://auth.docker.io/token"), "{registry} over plain HTTP");
        }
        // Others are configured, per registry.
        let mut configured = TrustedRealms::default();
        configured.trust("ghcr.example", parse_trusted_realm("https://auth.example.com").unwrap());
        let ghcr = origin("https://ghcr.example/v2/");
        assert!(configured.may_receive_credentials("ghcr.example", &ghcr, &url("https://auth.example.com/token")));
        assert!(!configured.may_receive_credentials(
            "other.example",
            &tls_registry,
            &url("https://auth.example.com/t")
        ));
    }

    #[test]
    fn trusted_realms_must_be_https_origins() {
        assert!(parse_trusted_realm("https://auth.example.com").is_ok());
        assert!(parse_trusted_realm("https://auth.example.com:8443/").is_ok());
        for bad in ["http://auth.example.com", "https://auth.example.com/token", "https://u:p@auth.example.com", "auth"]
        {
            assert!(matches!(parse_trusted_realm(bad), Err(Error::InvalidInput { .. })), "{bad}");
        }
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
