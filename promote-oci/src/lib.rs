#![doc = include_str!("../README.md")]

mod copy;
mod error;
pub mod kinds;
mod layout;
mod registry;
pub mod trust;

/// The byte buffer [`OciLayout::read_blob`] returns, re-exported so that its callers need no other import.
pub use bytes::Bytes;
pub use copy::{CopyEndpoint, CopyOptions, CopyReport, SIGNATURE_TAG_SUFFIXES, copy_image};
pub use layout::{LAYOUT_REGISTRY, OciLayout, OciLayoutConfig, OciLayoutStore, REF_NAME_ANNOTATION, image_manifest};
/// The retry vocabulary of `promote-core`, which [`OciRegistryStoreBuilder::retry_policy`] and
/// [`CopyOptions::with_retry`] take; re-exported so that their callers need no other import.
pub use promote_core::retry::RetryPolicy;
pub use registry::{
    CredentialProvider, CredentialsConfig, DockerConfigCredentials, OciRegistryConfig, OciRegistryStore,
    OciRegistryStoreBuilder, RegistryAuth,
};
pub use trust::{SignatureGate, SignaturePolicy, TrustRoot};
