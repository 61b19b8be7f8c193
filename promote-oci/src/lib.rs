#![doc = include_str!("../README.md")]

mod auth;
mod config;
pub mod copy;
mod error;
mod image_config;
pub mod kinds;
mod layout;
mod registry;
mod retry;
mod transport;

pub use auth::{CredentialProvider, DockerConfigCredentials, RegistryAuth};
pub use config::{CredentialsConfig, OciLayoutConfig, OciRegistryConfig, OciRegistryStoreBuilder};
pub use copy::{CopyEndpoint, CopyOptions, CopyReport, copy};
pub use layout::{LAYOUT_REGISTRY, OciLayout, OciLayoutStore, REF_NAME_ANNOTATION, image_manifest};
pub use registry::OciRegistryStore;
pub use retry::RetryPolicy;
