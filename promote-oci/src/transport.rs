//! The HTTP side of a registry store: one `reqwest` client (rustls), URLs, and authorisation with a
//! single re-try after a 401 challenge. Retrying temporary failures is the caller's job (see `retry.rs`),
//! because only the caller knows how to replay a whole operation.

use std::collections::HashSet;
use std::time::Duration;

use promote_core::{Error, ErrorClass, Result};
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::auth::{Access, Authenticator, CredentialSources};
use crate::error::{FailResult, REGISTRY_BACKEND, temporary, transport};

/// The registry a docker.io reference really talks to.
const DOCKER_HUB_API: &str = "index.docker.io";

pub(crate) struct Transport {
    http: reqwest::Client,
    auth: Authenticator,
    insecure: HashSet<String>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("insecure", &self.insecure).field("auth", &self.auth).finish()
    }
}

impl Transport {
    pub(crate) fn new(sources: CredentialSources, insecure: &[String]) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("promote-oci/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|error| Error::Backend {
                backend: REGISTRY_BACKEND,
                message: "cannot build the HTTP client".into(),
                class: ErrorClass::Persistent,
                source: Some(Box::new(error)),
            })?;
        Ok(Transport {
            http,
            auth: Authenticator::new(sources, insecure),
            insecure: insecure.iter().cloned().collect(),
        })
    }

    /// `scheme://host/v2/{path}`. Plain HTTP only for registries the caller marked insecure.
    pub(crate) fn url(&self, registry: &str, path: &str) -> String {
        let host = if registry == "docker.io" { DOCKER_HUB_API } else { registry };
        let scheme = if self.insecure.contains(registry) { "http" } else { "https" };
        format!("{scheme}://{host}/v2/{path}")
    }

    /// Sends a request that can be built again, answering a 401 challenge on the way. The response is
    /// returned whatever its status; only transport failures and refused credentials are errors here.
    ///
    /// A challenge is answered with the credentials already looked up for the registry. Only if that
    /// answer is refused too are they looked up again, once: asking a credential helper or a token provider
    /// on every challenge would ask it once per repository.
    pub(crate) async fn send(
        &self,
        registry: &str,
        repository: &str,
        access: Access,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> FailResult<Response> {
        let mut request = build(&self.http);
        if let Some(header) = self.auth.cached(registry, repository, access).await {
            request = request.header(AUTHORIZATION, header.value());
        }
        let mut response = request.send().await.map_err(|error| transport(what, error))?;
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
            let header = match self.auth.answer_challenge(&self.http, registry, repository, access, &challenge).await {
                Ok(Some(header)) => header,
                Ok(None) => return Ok(response),
                // The token service refused the credentials: look them up again, once.
                Err(failure) if !fresh_credentials && matches!(failure.error, Error::PermissionDenied { .. }) => {
                    continue;
                }
                Err(failure) => return Err(failure),
            };
            response = build(&self.http)
                .header(AUTHORIZATION, header.value())
                .send()
                .await
                .map_err(|error| transport(what, error))?;
        }
        Ok(response)
    }

    /// Sends a request whose body cannot be replayed (a streamed blob). Authorisation must already be
    /// cached by an earlier request to the same repository; a 401 here means the token expired, which is
    /// temporary: the caller's retry builds the request again and re-authenticates.
    pub(crate) async fn send_streaming(
        &self,
        registry: &str,
        repository: &str,
        access: Access,
        what: &str,
        mut request: RequestBuilder,
    ) -> FailResult<Response> {
        if let Some(header) = self.auth.cached(registry, repository, access).await {
            request = request.header(AUTHORIZATION, header.value());
        }
        let response = request.send().await.map_err(|error| transport(what, error))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            self.auth.forget_headers(registry, repository).await;
            return Err(temporary(format!("{what}: the registry's token expired during the transfer")));
        }
        Ok(response)
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.http
    }
}
