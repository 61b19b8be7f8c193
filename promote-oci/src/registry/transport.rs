//! The HTTP side of a registry store: one `reqwest` client (rustls), URLs, authorisation with a single
//! re-try after a 401 challenge, and what a failed response means ([`status_failure`]). Retrying temporary
//! failures is the caller's job (with its [`RetryPolicy`](promote_core::retry::RetryPolicy)), because only
//! the caller knows how to replay a whole operation.
//!
//! Credentials go only to the registry's own origin (scheme, host and port): a request to any other URL
//! (an upload `Location` the registry chose, say) is sent without them, and a 401 from there is not
//! answered. Redirects strip them too (reqwest drops `Authorization` across origins), and a redirect from
//! TLS to plain HTTP is refused.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use promote_core::{Error, ErrorClass, Resource, Result};
use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use super::auth::{Access, AuthHeader, Authenticator, CredentialSources, TrustedRealms};
use crate::error::{FailResult, Failure, REGISTRY_BACKEND, persistent, temporary};

/// Registries cap error bodies in practice; we read at most this much of one.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// The registry a docker.io reference really talks to.
const DOCKER_HUB_API: &str = "index.docker.io";

/// How many redirects one request may follow.
const MAX_REDIRECTS: usize = 10;

/// Scheme, host and port: what credentials are bound to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// The origin of `url`.
    pub(crate) fn of(url: &Url) -> Origin {
        Origin {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
            port: url.port_or_known_default(),
        }
    }

    /// Whether this origin is reached over TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.scheme == "https"
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) if Some(port) != default_port(&self.scheme) => write!(f, ":{port}"),
            _ => Ok(()),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    }
}

pub(crate) struct Transport {
    http: reqwest::Client,
    auth: Authenticator,
    insecure: HashSet<String>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").field("insecure", &self.insecure).field("auth", &self.auth).finish()
    }
}

/// Follows redirects (blob downloads commonly go to a CDN or object store), but never from TLS down to
/// plain HTTP.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.previous().last().is_some_and(|previous| previous.scheme() == "https")
            && attempt.url().scheme() != "https";
        if downgrade {
            attempt.error(DowngradeRefused)
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(TooManyRedirects)
        } else {
            attempt.follow()
        }
    })
}

#[derive(Debug)]
struct DowngradeRefused;

impl fmt::Display for DowngradeRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refusing a redirect from https to plain http")
    }
}

impl std::error::Error for DowngradeRefused {}

#[derive(Debug)]
struct TooManyRedirects;

impl fmt::Display for TooManyRedirects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {MAX_REDIRECTS} redirects")
    }
}

impl std::error::Error for TooManyRedirects {}

impl Transport {
    pub(crate) fn new(sources: CredentialSources, insecure: &[String], trusted_realms: TrustedRealms) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .redirect(redirect_policy())
            .build()
            .map_err(|error| Error::Backend {
                backend: REGISTRY_BACKEND,
                message: "cannot build the HTTP client".into(),
                class: ErrorClass::Persistent,
                source: Some(Box::new(error)),
            })?;
        Ok(Transport {
            http,
            auth: Authenticator::new(sources, trusted_realms),
            insecure: insecure.iter().cloned().collect(),
        })
    }

    /// `scheme://host/v2/{path}`. Plain HTTP only for registries the caller marked insecure.
    pub(crate) fn url(&self, registry: &str, path: &str) -> String {
        let host = if registry == "docker.io" { DOCKER_HUB_API } else { registry };
        let scheme = if self.insecure.contains(registry) { "http" } else { "https" };
        format!("{scheme}://{host}/v2/{path}")
    }

    /// The origin the registry's credentials belong to.
    pub(crate) fn origin(&self, registry: &str) -> FailResult<Origin> {
        let url = Url::parse(&self.url(registry, ""))
            .map_err(|error| persistent(format!("`{registry}` is not a registry host: {error}")))?;
        Ok(Origin::of(&url))
    }

    /// Sends a request that can be built again, answering a 401 challenge on the way. The response is
    /// returned whatever its status; only transport failures and refused credentials are errors here.
    ///
    /// A request to another origin than the registry's goes without credentials, and its 401 is returned
    /// as it is. A challenge is answered with the credentials already looked up for the registry. Only if
    /// that answer is refused too are they looked up again, once: asking a credential helper or a token
    /// provider on every challenge would ask it once per repository.
    pub(crate) async fn send(
        &self,
        registry: &str,
        repository: &str,
        access: Access,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> FailResult<Response> {
        let origin = self.origin(registry)?;
        let (request, own_origin) = self.prepare(build(&self.http), &origin, what)?;
        let mut request = request;
        if own_origin && let Some(header) = self.auth.cached(registry, repository, access).await {
            authorise(&mut request, &header, what)?;
        }
        let mut response = self.http.execute(request).await.map_err(|error| transport_failure(what, error))?;
        if !own_origin {
            return Ok(response);
        }
        for fresh_credentials in [false, true] {
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let Some(challenge) = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()) else {
                return Ok(response);
            };
            let challenge = challenge.to_owned();
            self.auth.forget_headers(registry, repository).await;
            if fresh_credentials {
                self.auth.forget_credentials(registry).await;
            }
            let header = match self.auth.answer_challenge(registry, &origin, repository, access, &challenge).await {
                Ok(Some(header)) => header,
                Ok(None) => return Ok(response),
                // The token service refused the credentials: look them up again, once.
                Err(failure) if !fresh_credentials && matches!(failure.error, Error::PermissionDenied { .. }) => {
                    continue;
                }
                Err(failure) => return Err(failure),
            };
            let (mut request, _) = self.prepare(build(&self.http), &origin, what)?;
            authorise(&mut request, &header, what)?;
            response = self.http.execute(request).await.map_err(|error| transport_failure(what, error))?;
        }
        Ok(response)
    }

    /// Sends a request whose body cannot be replayed (a streamed blob). Authorisation must already be
    /// cached by an earlier request to the same repository; a 401 here means the token expired, which is
    /// temporary: the caller's retry builds the request again and re-authenticates. A request to another
    /// origin than the registry's goes without credentials.
    pub(crate) async fn send_streaming(
        &self,
        registry: &str,
        repository: &str,
        access: Access,
        what: &str,
        request: RequestBuilder,
    ) -> FailResult<Response> {
        let origin = self.origin(registry)?;
        let (mut request, own_origin) = self.prepare(request, &origin, what)?;
        if own_origin && let Some(header) = self.auth.cached(registry, repository, access).await {
            authorise(&mut request, &header, what)?;
        }
        let response = self.http.execute(request).await.map_err(|error| transport_failure(what, error))?;
        if own_origin && response.status() == StatusCode::UNAUTHORIZED {
            self.auth.forget_headers(registry, repository).await;
            return Err(temporary(format!("{what}: the registry's token expired during the transfer")));
        }
        Ok(response)
    }

    /// Builds the request and says whether it goes to the registry's own origin.
    fn prepare(&self, request: RequestBuilder, origin: &Origin, what: &str) -> FailResult<(reqwest::Request, bool)> {
        let request =
            request.build().map_err(|error| persistent(format!("{what}: cannot build the request: {error}")))?;
        let own_origin = Origin::of(request.url()) == *origin;
        Ok((request, own_origin))
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.http
    }
}

/// The `User-Agent` of every request.
pub(crate) const USER_AGENT: &str = concat!("promote-oci/", env!("CARGO_PKG_VERSION"));

fn authorise(request: &mut reqwest::Request, header: &AuthHeader, what: &str) -> FailResult<()> {
    let mut value = HeaderValue::from_str(header.value())
        .map_err(|_| persistent(format!("{what}: the credentials do not fit in an HTTP header")))?;
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}

/// Reads a whole body into memory, refusing one larger than `limit` bytes. It counts what arrives, so a
/// missing or lying `Content-Length` cannot make it buffer more.
pub(crate) async fn read_capped(mut response: Response, limit: usize, what: &str, name: &str) -> FailResult<Bytes> {
    let too_large = || persistent(format!("{what} {name}: the response is larger than {limit} bytes"));
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| transport_failure(what, error))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A transport failure (connect, reset, timeout, a body cut short). Always worth a retry.
pub(crate) fn transport_failure(what: &str, error: reqwest::Error) -> Failure {
    let detail = if error.is_connect() {
        "cannot connect"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "the connection broke while transferring the body"
    } else {
        "the request failed"
    };
    Error::Backend {
        backend: REGISTRY_BACKEND,
        message: format!("{what}: {detail}"),
        class: ErrorClass::Temporary,
        source: Some(Box::new(error)),
    }
    .into()
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Debug, Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What a non-success response means for the caller.
///
/// `what` says what we were doing ("GET manifest"), `name` is the reference or repository the call was
/// about (it goes into `NotFound`), and `resource` is the kind of thing a 404 means is missing.
pub(crate) async fn status_failure(what: &str, name: &str, resource: Resource, response: Response) -> Failure {
    let status = response.status();
    let retry_after = retry_after(&response);
    let body = read_error_body(response).await;
    let codes =
        body.errors
            .iter()
            .map(|entry| {
                if entry.message.is_empty() { entry.code.clone() } else { format!("{}: {}", entry.code, entry.message) }
            })
            .collect::<Vec<_>>()
            .join("; ");
    let detail = if codes.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status} ({codes})") };
    let error = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::PermissionDenied {
            backend: REGISTRY_BACKEND,
            message: format!("{what} {name}: {detail}; check the credentials for this registry"),
        },
        StatusCode::NOT_FOUND => Error::not_found(resource, name),
        _ => Error::backend(
            REGISTRY_BACKEND,
            ErrorClass::from_http_status(status.as_u16()),
            format!("{what} {name}: {detail}"),
        ),
    };
    Failure { error, retry_after }
}

async fn read_error_body(mut response: Response) -> ErrorBody {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// The `Retry-After` header as a delay from now.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, std::time::SystemTime::now())
}

/// Either form RFC 9110 allows: delay-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`),
/// which counts from `now`; a date already past means "retry now". Anything else is no hint.
fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let origin = |url: &str| Origin::of(&Url::parse(url).unwrap());
        assert_eq!(origin("https://Registry.example/v2/x"), origin("https://registry.example:443/v2/uploads/1"));
        assert_ne!(origin("https://registry.example/v2/"), origin("http://registry.example/v2/"));
        assert_ne!(origin("https://registry.example/v2/"), origin("https://registry.example:5000/v2/"));
        assert_ne!(origin("https://registry.example/v2/"), origin("https://uploads.registry.example/v2/"));
        assert_eq!(origin("https://registry.example:5000/x").to_string(), "https://registry.example:5000");
        assert_eq!(origin("https://auth.docker.io/token").to_string(), "https://auth.docker.io");
        assert!(origin("https://a.example/").is_tls() && !origin("http://a.example/").is_tls());
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Mon, 23 Nov 2026 10:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Mon, 23 Nov 2026 10:00:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Mon, 23 Nov 2026 09:59:00 GMT", now), Some(Duration::ZERO), "past: now");
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
