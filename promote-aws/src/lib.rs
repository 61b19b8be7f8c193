#![doc = include_str!("../README.md")]

mod connection;
mod ecr;
mod error;
pub mod kinds;
mod secrets_manager;

pub use connection::DEFAULT_MAX_ATTEMPTS;
#[cfg(feature = "oci-copy")]
pub use ecr::EcrCredentialProvider;
pub use ecr::{EcrConfig, EcrStore, EcrStoreBuilder};
pub use secrets_manager::{
    AWSCURRENT, SecretFormat, SecretSpec, SecretsManagerBuilder, SecretsManagerConfig, SecretsManagerSource,
    StageTemplate,
};

/// The AWS SDK configuration type the builders accept, re-exported so that callers need no direct
/// dependency on `aws-config` to pass one in.
pub use aws_config::SdkConfig;
/// The ECR SDK, whose `Client` [`EcrStore::from_client`] and [`EcrStoreBuilder::client`] take.
pub use aws_sdk_ecr;
/// The Secrets Manager SDK, whose `Client` [`SecretsManagerBuilder::client`] takes.
pub use aws_sdk_secretsmanager;
/// The retry vocabulary of `promote-core`, which the builders' `retry_policy` takes; re-exported so that
/// their callers need no other import.
pub use promote_core::retry::RetryPolicy;
