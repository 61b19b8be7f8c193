#![doc = include_str!("../README.md")]

#[cfg(feature = "oci-copy")]
mod auth;
mod config;
mod ecr;
mod error;
pub mod kinds;
mod secrets_manager;

#[cfg(feature = "oci-copy")]
pub use auth::EcrCredentialProvider;
pub use config::{
    DEFAULT_MAX_ATTEMPTS, EcrConfig, EcrStoreBuilder, SecretFormat, SecretSpec, SecretsManagerBuilder,
    SecretsManagerConfig, StageTemplate,
};
pub use ecr::EcrStore;
pub use secrets_manager::{AWSCURRENT, SecretsManagerSource};

/// The AWS SDK configuration type the builders accept, re-exported so that callers need no direct
/// dependency on `aws-config` to pass one in.
pub use aws_config::SdkConfig;
