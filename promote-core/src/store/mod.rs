//! Artifact stores: where built images live, and how a digest is made available to a stage.

mod contract;
mod memory;

use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use contract::{check_exists_args, check_promote_args};
pub use memory::{MEMORY_REGISTRY, MemoryArtifactStore};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::REVISION_ANNOTATION;
use crate::reference::ArtifactRef;

/// A resolved artifact: what a reference pointed at when it was resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Artifact {
    /// The artifact's location, pinned to its digest (`registry/repo@sha256:…`).
    pub reference: ArtifactRef,
    /// The manifest digest.
    pub digest: Digest,
    /// The manifest media type.
    pub media_type: String,
    /// The manifest size in bytes.
    pub size: u64,
    /// The manifest's annotations (OCI) or the image's labels, as the store can read them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Artifact {
    /// An artifact at `reference` (pinned to `digest`) with no annotations.
    pub fn new(reference: &ArtifactRef, digest: Digest, media_type: impl Into<String>, size: u64) -> Self {
        Artifact {
            reference: reference.pinned(&digest),
            digest,
            media_type: media_type.into(),
            size,
            annotations: BTreeMap::new(),
        }
    }

    /// The same artifact with these annotations.
    pub fn with_annotations(mut self, annotations: BTreeMap<String, String>) -> Self {
        self.annotations = annotations;
        self
    }

    /// The source revision the image declares (`org.opencontainers.image.revision`), if any.
    pub fn revision(&self) -> Option<&str> {
        self.annotations.get(REVISION_ANNOTATION).map(String::as_str)
    }
}

/// What an [`ArtifactStore`] can do. The engine checks these before it asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreCapabilities {
    /// Tags cannot be moved once set; promoting to a tag held by another digest is a [`Error::TagConflict`].
    pub immutable_tags: bool,
    /// `promote` can target another repository of the same registry.
    pub cross_repository: bool,
    /// `promote` can target another registry.
    pub cross_registry: bool,
    /// The store serves the OCI referrers API.
    pub referrers: bool,
}

impl StoreCapabilities {
    /// Capabilities with every flag off.
    pub fn none() -> Self {
        Self::default()
    }

    /// Sets `immutable_tags`.
    pub fn with_immutable_tags(mut self, value: bool) -> Self {
        self.immutable_tags = value;
        self
    }

    /// Sets `cross_repository`.
    pub fn with_cross_repository(mut self, value: bool) -> Self {
        self.cross_repository = value;
        self
    }

    /// Sets `cross_registry`.
    pub fn with_cross_registry(mut self, value: bool) -> Self {
        self.cross_registry = value;
        self
    }

    /// Sets `referrers`.
    pub fn with_referrers(mut self, value: bool) -> Self {
        self.referrers = value;
        self
    }
}

/// A place that holds artifacts and can make a digest available under another name.
///
/// # Contract
/// - `resolve` accepts a tag or a digest reference and returns the artifact it names *now*, with the
///   reference pinned to its digest. A missing repository, tag or digest is [`Error::NotFound`] naming the
///   reference.
/// - `promote(source, target)` requires `source` to carry a digest (otherwise [`Error::InvalidInput`]).
///   It makes exactly those bytes available at `target` (a tag, in the same or, where the capabilities say
///   so, another repository or registry) without re-serialising anything. Afterwards `target` resolves to
///   the source digest. It is idempotent: promoting to a tag that already holds the digest succeeds and
///   changes nothing. A target the store cannot reach is [`Error::NotSupported`]. With immutable tags, a
///   tag held by another digest is [`Error::TagConflict`] naming both digests, and nothing changes.
/// - `exists` says whether a digest reference is present. It never fails for a missing artifact or a
///   missing repository; it returns `false`.
/// - Failures that may pass on retry (throttling, 5xx, resets) are classified temporary so that
///   [`Error::is_retryable`] is true.
#[async_trait]
pub trait ArtifactStore: Debug + Send + Sync + 'static {
    /// What this store can do.
    fn capabilities(&self) -> StoreCapabilities;

    /// Resolves a tag or digest reference to the artifact it names now.
    async fn resolve(&self, reference: &ArtifactRef) -> Result<Artifact>;

    /// Makes the digest `source` points at available at `target`, preserving it byte for byte.
    async fn promote(&self, source: &ArtifactRef, target: &ArtifactRef) -> Result<Artifact>;

    /// Whether the digest `reference` pins is present in its repository.
    async fn exists(&self, reference: &ArtifactRef) -> Result<bool>;
}

forward_to_inner!(ArtifactStore {
    fn capabilities(&self) -> StoreCapabilities {
        (**self).capabilities()
    }
    async fn resolve(&self, reference: &ArtifactRef) -> Result<Artifact> {
        (**self).resolve(reference).await
    }
    async fn promote(&self, source: &ArtifactRef, target: &ArtifactRef) -> Result<Artifact> {
        (**self).promote(source, target).await
    }
    async fn exists(&self, reference: &ArtifactRef) -> Result<bool> {
        (**self).exists(reference).await
    }
});

/// Conveniences on every [`ArtifactStore`].
#[async_trait]
pub trait ArtifactStoreExt: ArtifactStore {
    /// Resolves `reference` and returns only its digest.
    async fn resolve_digest(&self, reference: &ArtifactRef) -> Result<Digest> {
        Ok(self.resolve(reference).await?.digest)
    }

    /// Checks that `reference` resolves to `expected` now; a different digest is [`Error::DigestMismatch`].
    async fn verify_digest(&self, reference: &ArtifactRef, expected: &Digest) -> Result<Artifact> {
        let artifact = self.resolve(reference).await?;
        if &artifact.digest != expected {
            return Err(Error::digest_mismatch(reference.to_string(), expected.clone(), artifact.digest));
        }
        Ok(artifact)
    }
}

impl<T: ArtifactStore + ?Sized> ArtifactStoreExt for T {}
