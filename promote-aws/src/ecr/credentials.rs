//! ECR registry credentials for the OCI copy engine: `GetAuthorizationToken`, cached per region and
//! refreshed before the token expires.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use promote_core::clock::{Clock, SystemClock};
use promote_core::{Error, ErrorClass, Result, Secret};
use promote_oci::{CredentialProvider, RegistryAuth};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::parse_registry_host;
use crate::connection::policy_of;
use crate::error::{AwsFailure, ECR};

/// How long before its expiry a token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);

/// The least time a token is reused once fetched, even if it claims to be expired already: a clock skew or
/// an emulator's fixed expiry (moto's is in 2015) must not turn every request into a token fetch.
const MIN_REUSE: Duration = Duration::from_secs(60);

/// A [`CredentialProvider`] that answers ECR registry hosts with ECR authorization tokens.
///
/// A host `<account>.dkr.ecr.<region>.amazonaws.com` gets the token of its region (one token serves every
/// registry the caller may reach in a region, so cross-account copies work with the right repository
/// policies). Hosts declared with [`with_registry_alias`](Self::with_registry_alias) get the token of the
/// default region. Any other host is answered [`RegistryAuth::Anonymous`], so that an ECR token is never
/// sent to a registry that is not ECR.
#[derive(Debug, Clone)]
pub struct EcrCredentialProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sdk_config: SdkConfig,
    aliases: BTreeMap<String, Option<String>>,
    clock: Arc<dyn Clock>,
    clients: Mutex<HashMap<String, aws_sdk_ecr::Client>>,
    tokens: Mutex<HashMap<String, CachedToken>>,
}

#[derive(Debug, Clone)]
struct CachedToken {
    username: String,
    password: Secret,
    refresh_at: DateTime<Utc>,
}

impl EcrCredentialProvider {
    /// A provider that calls `GetAuthorizationToken` with this SDK configuration (in each registry's region).
    pub fn new(sdk_config: &SdkConfig) -> Self {
        EcrCredentialProvider {
            inner: Arc::new(Inner {
                sdk_config: sdk_config.clone(),
                aliases: BTreeMap::new(),
                clock: Arc::new(SystemClock),
                clients: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Also answers `host` (a private DNS name of the caller's ECR registry, or a test registry) with the
    /// token of the default region.
    pub fn with_registry_alias(self, host: impl Into<String>) -> Self {
        self.rebuild(|inner| {
            inner.aliases.insert(host.into(), None);
        })
    }

    /// Reads time from `clock` (tests use a manual clock).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.rebuild(|inner| inner.clock = clock)
    }

    /// Applies a configuration change; the caches start empty.
    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            sdk_config: self.inner.sdk_config.clone(),
            aliases: self.inner.aliases.clone(),
            clock: self.inner.clock.clone(),
            clients: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        };
        change(&mut inner);
        EcrCredentialProvider { inner: Arc::new(inner) }
    }

    /// The region whose token `registry` takes, or `None` for a host that is not ECR.
    fn region_of(&self, registry: &str) -> Option<String> {
        if let Some(region) = self.inner.aliases.get(registry) {
            return region.clone().or_else(|| self.inner.sdk_config.region().map(Region::to_string));
        }
        parse_registry_host(registry).map(|(_, region)| region.to_owned())
    }

    async fn client(&self, region: &str) -> aws_sdk_ecr::Client {
        let mut clients = self.inner.clients.lock().await;
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let config = aws_sdk_ecr::config::Builder::from(&self.inner.sdk_config)
                    .region(Region::new(region.to_owned()))
                    .build();
                aws_sdk_ecr::Client::from_conf(config)
            })
            .clone()
    }

    async fn fetch(&self, registry: &str, region: &str) -> Result<CachedToken> {
        let client = self.client(region).await;
        let attempts = policy_of(client.config().retry_config()).max_attempts;
        let output = client.get_authorization_token().send().await.map_err(|error| {
            // The failure keeps no response: a token never reaches an error through it.
            let failure = AwsFailure::from_sdk(error, attempts);
            if failure.is_access_denied() {
                Error::PermissionDenied {
                    backend: ECR,
                    message: format!("GetAuthorizationToken for {registry}: {failure}"),
                }
            } else {
                crate::error::ecr_backend_error(format!("GetAuthorizationToken for {registry}"), failure)
            }
        })?;
        let refused = |reason: &str| {
            Error::backend(ECR, ErrorClass::Persistent, format!("GetAuthorizationToken for {registry}: {reason}"))
        };
        let data = output.authorization_data().first().ok_or_else(|| refused("no authorization data"))?;
        let encoded = data.authorization_token().ok_or_else(|| refused("no token"))?;
        // The token is base64 of `AWS:<password>`; decoding errors must not quote it.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| refused("the token is not base64 of `user:password`"))?;
        let decoded = Secret::new(decoded);
        let (username, password) =
            decoded.expose().split_once(':').ok_or_else(|| refused("the token is not `user:password`"))?;
        let now = self.inner.clock.now();
        let expires_at = data
            .expires_at()
            .and_then(|at| DateTime::<Utc>::from_timestamp(at.secs(), at.subsec_nanos()))
            .unwrap_or(now + chrono::Duration::hours(12));
        let margin = chrono::Duration::from_std(REFRESH_MARGIN).expect("small duration");
        let min_reuse = chrono::Duration::from_std(MIN_REUSE).expect("small duration");
        if expires_at <= now {
            warn!(%registry, %expires_at, "ECR returned a token that has already expired; reusing it for a minute");
        }
        let refresh_at = (expires_at - margin).max(now + min_reuse);
        debug!(%registry, %region, %expires_at, %refresh_at, "fetched an ECR authorization token");
        Ok(CachedToken { username: username.to_owned(), password: Secret::new(password), refresh_at })
    }
}

#[async_trait]
impl CredentialProvider for EcrCredentialProvider {
    async fn credentials(&self, registry: &str) -> Result<RegistryAuth> {
        let Some(region) = self.region_of(registry) else {
            return Ok(RegistryAuth::Anonymous);
        };
        // Held across the fetch so that concurrent requests share one GetAuthorizationToken call.
        let mut tokens = self.inner.tokens.lock().await;
        let now = self.inner.clock.now();
        let token = match tokens.get(&region) {
            Some(token) if token.refresh_at > now => token.clone(),
            _ => {
                let token = self.fetch(registry, &region).await?;
                tokens.insert(region, token.clone());
                token
            }
        };
        Ok(RegistryAuth::Basic { username: token.username, password: token.password })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecr::operation::get_authorization_token::GetAuthorizationTokenOutput;
    use aws_sdk_ecr::primitives::DateTime as AwsDateTime;
    use aws_sdk_ecr::types::AuthorizationData;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use promote_core::ManualClock;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    fn token_rule(expires_at: i64) -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_ecr::Client::get_authorization_token).then_output(move || {
            GetAuthorizationTokenOutput::builder()
                .authorization_data(
                    AuthorizationData::builder()
                        .authorization_token(base64::engine::general_purpose::STANDARD.encode("AWS:pa55-word"))
                        .expires_at(AwsDateTime::from_secs(expires_at))
                        .proxy_endpoint(format!("https://{HOST}"))
                        .build(),
                )
                .build()
        })
    }

    fn provider(rule: &aws_smithy_mocks::Rule, clock: Arc<ManualClock>) -> EcrCredentialProvider {
        let client = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [rule]);
        let provider = EcrCredentialProvider::new(&SdkConfig::builder().region(Region::new("us-east-1")).build())
            .with_clock(clock);
        provider.inner.clients.try_lock().unwrap().insert("us-east-1".into(), client);
        provider
    }

    #[tokio::test]
    async fn tokens_are_cached_and_refreshed_before_they_expire() {
        let start = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let clock = Arc::new(ManualClock::at(start));
        let rule = token_rule(start.timestamp() + 12 * 3600);
        let provider = provider(&rule, clock.clone());
        let auth = provider.credentials(HOST).await.unwrap();
        assert_eq!(auth, RegistryAuth::Basic { username: "AWS".into(), password: Secret::new("pa55-word") });
        assert!(!format!("{auth:?}").contains("pa55"), "the password stays redacted");
        clock.advance(chrono::Duration::seconds(11 * 3600));
        provider.credentials(HOST).await.unwrap();
        assert_eq!(rule.num_calls(), 1, "a token valid for another hour is reused");
        clock.advance(chrono::Duration::seconds(50 * 60));
        provider.credentials(HOST).await.unwrap();
        assert_eq!(rule.num_calls(), 2, "a token within 15 minutes of expiry is replaced");
    }

    #[tokio::test]
    async fn an_already_expired_token_is_reused_briefly_instead_of_refetched_in_a_loop() {
        // moto's tokens expire in 2015: a fresh token that is already expired is used for a minute.
        let clock = Arc::new(ManualClock::at(DateTime::from_timestamp(1_900_000_000, 0).unwrap()));
        let rule = token_rule(1_420_070_400);
        let provider = provider(&rule, clock.clone());
        for _ in 0..5 {
            provider.credentials(HOST).await.unwrap();
        }
        assert_eq!(rule.num_calls(), 1);
        clock.advance(chrono::Duration::seconds(61));
        provider.credentials(HOST).await.unwrap();
        assert_eq!(rule.num_calls(), 2);
    }

    #[tokio::test]
    async fn other_registries_never_get_an_ecr_token() {
        let clock = Arc::new(ManualClock::at(Utc::now()));
        let rule = token_rule(Utc::now().timestamp() + 3600);
        let provider = provider(&rule, clock);
        for host in ["ghcr.io", "123456789012.dkr.ecr.us-east-1.evil.example", "127.0.0.1:5000"] {
            assert_eq!(provider.credentials(host).await.unwrap(), RegistryAuth::Anonymous, "{host}");
        }
        assert_eq!(rule.num_calls(), 0);
    }
}
