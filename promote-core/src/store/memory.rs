//! An in-memory artifact store, for tests and examples.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Artifact, ArtifactStore, StoreCapabilities};
use super::{check_exists_args, check_promote_args};
use crate::digest::Digest;
use crate::error::{Error, Resource, Result};
use crate::manifest::ManifestSummary;
use crate::reference::ArtifactRef;

/// The registry name a [`MemoryArtifactStore`] answers to unless told otherwise.
pub const MEMORY_REGISTRY: &str = "memory.local";

/// An in-memory registry: repositories of manifests and tags, for tests and examples.
///
/// It keeps manifests as exact bytes and serves them back untouched. Blobs are not modelled: promoting
/// an index to another repository copies the child manifests the source repository holds.
///
/// ```
/// # tokio_test_block_on(async {
/// use promote_core::{ArtifactRef, ArtifactStore, MemoryArtifactStore};
/// use promote_core::manifest::OCI_MANIFEST;
///
/// let store = MemoryArtifactStore::new();
/// let built = store.push("memory.local/web:3f2c1a9".parse()?, OCI_MANIFEST, br#"{"schemaVersion":2}"#.to_vec())?;
/// let dev: ArtifactRef = "memory.local/web:dev".parse()?;
/// store.promote(&built.reference, &dev).await?;
/// assert_eq!(store.resolve(&dev).await?.digest, built.digest);
/// # Ok::<(), promote_core::Error>(()) }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryArtifactStore {
    registry: String,
    immutable_tags: bool,
    state: Arc<Mutex<HashMap<String, Repository>>>,
}

#[derive(Debug, Default)]
struct Repository {
    tags: HashMap<String, Digest>,
    manifests: HashMap<Digest, Stored>,
}

#[derive(Debug, Clone)]
struct Stored {
    media_type: String,
    bytes: Arc<Vec<u8>>,
}

impl Default for MemoryArtifactStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryArtifactStore {
    /// An empty store answering to `memory.local`, with mutable tags.
    pub fn new() -> Self {
        MemoryArtifactStore { registry: MEMORY_REGISTRY.to_owned(), immutable_tags: false, state: Arc::default() }
    }

    /// Answers to another registry name.
    pub fn with_registry(mut self, registry: impl Into<String>) -> Self {
        self.registry = registry.into();
        self
    }

    /// Refuses to move a tag once it is set, like an immutable ECR repository.
    pub fn with_immutable_tags(mut self, immutable: bool) -> Self {
        self.immutable_tags = immutable;
        self
    }

    /// The registry name this store answers to.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Stores manifest `bytes` under `reference` (its tag, if any) and returns the artifact; this is what a
    /// CI build's push does. The digest is the sha256 of the bytes.
    pub fn push(&self, reference: ArtifactRef, media_type: &str, bytes: Vec<u8>) -> Result<Artifact> {
        self.check_registry(&reference)?;
        let digest = Digest::sha256_of(&bytes);
        let mut state = self.state.lock().expect("memory store poisoned");
        let repo = state.entry(reference.repository().to_owned()).or_default();
        let stored = Stored { media_type: media_type.to_owned(), bytes: Arc::new(bytes) };
        repo.manifests.insert(digest.clone(), stored.clone());
        if let Some(tag) = reference.tag() {
            repo.tags.insert(tag.to_owned(), digest.clone());
        }
        Ok(artifact_of(&reference, &digest, &stored))
    }

    /// Moves or deletes a tag behind the engine's back, as a careless user of the registry would.
    /// Tests use it to show that a moved digest is caught.
    pub fn force_tag(&self, reference: &ArtifactRef, digest: Option<&Digest>) {
        let mut state = self.state.lock().expect("memory store poisoned");
        let repo = state.entry(reference.repository().to_owned()).or_default();
        if let Some(tag) = reference.tag() {
            match digest {
                Some(digest) => repo.tags.insert(tag.to_owned(), digest.clone()),
                None => repo.tags.remove(tag),
            };
        }
    }

    /// The exact manifest bytes stored for a digest reference.
    pub fn manifest_bytes(&self, reference: &ArtifactRef) -> Option<Vec<u8>> {
        let state = self.state.lock().expect("memory store poisoned");
        let repo = state.get(reference.repository())?;
        let digest = match reference.digest() {
            Some(digest) => digest.clone(),
            None => repo.tags.get(reference.tag()?)?.clone(),
        };
        repo.manifests.get(&digest).map(|stored| stored.bytes.to_vec())
    }

    fn check_registry(&self, reference: &ArtifactRef) -> Result<()> {
        if reference.registry() != self.registry {
            return Err(Error::NotSupported {
                backend: "memory",
                operation: format!("reaching registry {} from {}", reference.registry(), self.registry),
            });
        }
        Ok(())
    }
}

fn artifact_of(reference: &ArtifactRef, digest: &Digest, stored: &Stored) -> Artifact {
    let annotations = ManifestSummary::parse(&stored.bytes).map(|m| m.annotations).unwrap_or_default();
    Artifact::new(reference, digest.clone(), stored.media_type.clone(), stored.bytes.len() as u64)
        .with_annotations(annotations)
}

/// Collects the manifest and, for an index, its children, as held in `repo`.
fn closure(repo: &Repository, root: &Digest) -> Vec<(Digest, Stored)> {
    let mut out = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(digest) = pending.pop() {
        if let Some(stored) = repo.manifests.get(&digest) {
            if let Some(summary) = ManifestSummary::parse(&stored.bytes) {
                pending.extend(summary.manifests.into_iter().map(|child| child.digest));
            }
            out.push((digest, stored.clone()));
        }
    }
    out
}

#[async_trait]
impl ArtifactStore for MemoryArtifactStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities::none().with_immutable_tags(self.immutable_tags).with_cross_repository(true)
    }

    async fn resolve(&self, reference: &ArtifactRef) -> Result<Artifact> {
        self.check_registry(reference)?;
        let not_found = || Error::not_found(Resource::Artifact, reference.to_string());
        let state = self.state.lock().expect("memory store poisoned");
        let repo = state.get(reference.repository()).ok_or_else(not_found)?;
        let digest = match (reference.digest(), reference.tag()) {
            (Some(digest), _) => digest.clone(),
            (None, Some(tag)) => repo.tags.get(tag).cloned().ok_or_else(not_found)?,
            (None, None) => return Err(not_found()),
        };
        let stored = repo.manifests.get(&digest).ok_or_else(not_found)?;
        Ok(artifact_of(reference, &digest, stored))
    }

    async fn promote(&self, source: &ArtifactRef, target: &ArtifactRef) -> Result<Artifact> {
        let digest = check_promote_args(source, target)?.clone();
        self.check_registry(source)?;
        self.check_registry(target)?;
        let mut state = self.state.lock().expect("memory store poisoned");
        let source_repo =
            state.get(source.repository()).ok_or_else(|| Error::not_found(Resource::Artifact, source.to_string()))?;
        let manifests = closure(source_repo, &digest);
        if manifests.is_empty() {
            return Err(Error::not_found(Resource::Artifact, source.to_string()));
        }
        let target_repo = state.entry(target.repository().to_owned()).or_default();
        if let Some(tag) = target.tag()
            && self.immutable_tags
            && let Some(existing) = target_repo.tags.get(tag)
            && existing != &digest
        {
            return Err(Error::TagConflict {
                reference: target.to_string(),
                existing: existing.clone(),
                wanted: digest,
            });
        }
        // Children first, the tagged root last, as a registry copy would.
        for (child, stored) in manifests.iter().rev() {
            target_repo.manifests.entry(child.clone()).or_insert_with(|| stored.clone());
        }
        if let Some(tag) = target.tag() {
            target_repo.tags.insert(tag.to_owned(), digest.clone());
        }
        let stored = &target_repo.manifests[&digest];
        Ok(artifact_of(target, &digest, stored))
    }

    async fn exists(&self, reference: &ArtifactRef) -> Result<bool> {
        let digest = check_exists_args(reference)?;
        if reference.registry() != self.registry {
            return Ok(false);
        }
        let state = self.state.lock().expect("memory store poisoned");
        Ok(state.get(reference.repository()).is_some_and(|repo| repo.manifests.contains_key(digest)))
    }
}
