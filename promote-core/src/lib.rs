#![doc = include_str!("../README.md")]

pub mod config;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod reference;
pub mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use config::{ConfigEntry, ConfigRequest, ConfigSet, ConfigSource, ConfigValue, MemoryConfigSource, Secret};
pub use digest::Digest;
pub use error::{Error, ErrorClass, Resource, Result};
pub use reference::ArtifactRef;
pub use store::{Artifact, ArtifactStore, ArtifactStoreExt, MemoryArtifactStore, StoreCapabilities};
