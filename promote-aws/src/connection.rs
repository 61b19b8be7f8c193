//! How a backend reaches AWS: the credential chain, region, endpoint and retries, shared by every builder
//! of the crate ([`connection_setters!`]). This module imports nothing else of the crate.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use promote_core::retry::RetryPolicy;

/// Attempts per AWS call (the first one included) when nothing else is configured. Throttling, 5xx and
/// connection failures are retried by the SDK's standard retry strategy with exponential backoff and jitter.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The retry policy of AWS calls unless one is set: [`DEFAULT_MAX_ATTEMPTS`], with the SDK's own backoff
/// (1 s doubling to at most 20 s, with jitter).
pub(crate) fn default_retry_policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(DEFAULT_MAX_ATTEMPTS)
        .with_delays(Duration::from_secs(1), Duration::from_secs(20))
        .with_total(None)
}

/// The SDK's form of `policy`: its attempts, first delay and longest delay. The SDK always doubles its
/// delays and randomises them, and bounds a call by its attempts only, so `factor`, `jitter` and `total`
/// have no counterpart.
pub(crate) fn sdk_retry_config(policy: &RetryPolicy) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(policy.max_attempts.max(1))
        .with_initial_backoff(policy.min_delay)
        .with_max_backoff(policy.max_delay)
}

/// The retry policy an SDK client runs, read back from its configuration (the SDK's default, 3 attempts,
/// when it has none).
pub(crate) fn policy_of(config: Option<&RetryConfig>) -> RetryPolicy {
    let config = config.cloned().unwrap_or_else(RetryConfig::standard);
    let attempts = if config.has_retry() { config.max_attempts() } else { 1 };
    RetryPolicy::default()
        .with_max_attempts(attempts)
        .with_delays(config.initial_backoff(), config.max_backoff())
        .with_total(None)
}

/// What a spec says about the connection (`region`, `endpoint_url`, `profile`, `max_attempts`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpecConnection<'a> {
    pub(crate) region: Option<&'a str>,
    pub(crate) endpoint_url: Option<&'a str>,
    pub(crate) profile: Option<&'a str>,
    pub(crate) max_attempts: Option<u32>,
}

/// What only code can give about the connection. Everything left unset comes from the standard chain of
/// `aws-config`: environment, shared config and credentials files (profiles, SSO), web identity, ECS and
/// EC2 instance metadata.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connection {
    pub(crate) sdk_config: Option<SdkConfig>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) credentials: Option<Credentials>,
}

impl Connection {
    /// Loads the SDK configuration: the given one or the default chain, with the spec's and this
    /// connection's overrides. A spec's `max_attempts` sets the attempts of the retry policy.
    pub(crate) async fn load(&self, spec: SpecConnection<'_>) -> SdkConfig {
        let retry = match (self.retry, spec.max_attempts) {
            (None, None) => None,
            (policy, attempts) => {
                let policy = policy.unwrap_or_else(default_retry_policy);
                Some(attempts.map_or(policy, |attempts| policy.with_max_attempts(attempts)))
            }
        };
        match &self.sdk_config {
            Some(config) => {
                let mut builder = config.to_builder();
                if let Some(region) = spec.region {
                    builder.set_region(Some(Region::new(region.to_owned())));
                }
                if let Some(endpoint) = spec.endpoint_url {
                    builder.set_endpoint_url(Some(endpoint.to_owned()));
                }
                if let Some(retry) = &retry {
                    builder.set_retry_config(Some(sdk_retry_config(retry)));
                }
                if let Some(credentials) = &self.credentials {
                    builder.set_credentials_provider(Some(SharedCredentialsProvider::new(credentials.clone())));
                }
                builder.build()
            }
            None => {
                let retry = retry.unwrap_or_else(default_retry_policy);
                let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(sdk_retry_config(&retry));
                if let Some(region) = spec.region {
                    loader = loader.region(Region::new(region.to_owned()));
                }
                if let Some(endpoint) = spec.endpoint_url {
                    loader = loader.endpoint_url(endpoint);
                }
                if let Some(profile) = spec.profile {
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

/// The connection setters every AWS builder shares. Each builder has a `settings` field (its spec struct,
/// with `region`, `endpoint_url` and `profile`) and a `connection: Connection` field.
macro_rules! connection_setters {
    ($builder:ty, $service:literal) => {
        impl $builder {
            /// The AWS region (otherwise `AWS_REGION`, the profile, or instance metadata).
            pub fn region(mut self, region: impl Into<String>) -> Self {
                self.settings.region = Some(region.into());
                self
            }

            #[doc = concat!("An endpoint URL that replaces the public ", $service, " endpoint: a VPC endpoint, or a test server.")]
            pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
                self.settings.endpoint_url = Some(url.into());
                self
            }

            /// A named profile of the shared AWS config files.
            pub fn profile(mut self, profile: impl Into<String>) -> Self {
                self.settings.profile = Some(profile.into());
                self
            }

            /// How throttling, 5xx and connection failures are retried, mapped onto the SDK's standard
            /// retry strategy: the policy's attempts, first delay and longest delay (the SDK always doubles
            /// and randomises its delays, and bounds a call by attempts only). The default is
            #[doc = concat!("[`DEFAULT_MAX_ATTEMPTS`](crate::DEFAULT_MAX_ATTEMPTS) attempts, 1 s doubling to at most 20 s; ")]
            /// a spec's `max_attempts` sets the attempts. What the SDK gave up on is reported as
            /// [`ErrorClass::Exhausted`](promote_core::ErrorClass::Exhausted).
            pub fn retry_policy(mut self, policy: promote_core::retry::RetryPolicy) -> Self {
                self.connection.retry = Some(policy);
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
                self.connection.credentials = Some(aws_credential_types::Credentials::new(
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
            pub fn sdk_config(mut self, config: &aws_config::SdkConfig) -> Self {
                self.connection.sdk_config = Some(config.clone());
                self
            }
        }
    };
}

pub(crate) use connection_setters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_policy_becomes_the_sdk_retry_config_and_back() {
        let policy =
            RetryPolicy::default().with_max_attempts(4).with_delays(Duration::from_millis(5), Duration::from_secs(2));
        let config = sdk_retry_config(&policy);
        assert_eq!(
            (config.max_attempts(), config.initial_backoff(), config.max_backoff()),
            (4, policy.min_delay, policy.max_delay)
        );
        let back = policy_of(Some(&config));
        assert_eq!((back.max_attempts, back.min_delay, back.max_delay), (4, policy.min_delay, policy.max_delay));
        assert_eq!(policy_of(Some(&RetryConfig::disabled())).max_attempts, 1);
        assert_eq!(policy_of(None).max_attempts, 3, "the SDK's own default");
    }

    #[tokio::test]
    async fn a_spec_sets_the_attempts_and_code_the_rest() {
        let base = SdkConfig::builder().region(Region::new("eu-west-1")).build();
        let mut connection = Connection { sdk_config: Some(base), ..Connection::default() };
        let untouched = connection.load(SpecConnection::default()).await;
        assert!(untouched.retry_config().is_none(), "a given configuration keeps its own retries");
        connection.retry = Some(RetryPolicy::default().with_delays(Duration::from_millis(7), Duration::from_secs(1)));
        let loaded = connection
            .load(SpecConnection { max_attempts: Some(2), region: Some("us-east-1"), ..Default::default() })
            .await;
        let retry = loaded.retry_config().unwrap();
        assert_eq!((retry.max_attempts(), retry.initial_backoff()), (2, Duration::from_millis(7)));
        assert_eq!(loaded.region().map(Region::as_ref), Some("us-east-1"));
    }
}
