//! [`OciLayoutStore`]: an [`ArtifactStore`] over a directory of OCI image layouts.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use promote_core::backend::{check_exists_args, check_promote_args};
use promote_core::{Artifact, ArtifactRef, ArtifactStore, Error, Resource, Result, StoreCapabilities};

use super::{LAYOUT_REGISTRY, OciLayout};
use crate::copy::{self, CopyOptions, Pointer};
use crate::error::LAYOUT_BACKEND;

/// An [`ArtifactStore`] over a directory of OCI image layouts, one per repository
/// (`ROOT/<repository>/index.json`), answering to one registry name.
///
/// Promotion within a repository retags in `index.json`; into another repository it copies the graph
/// into that repository's layout. Another registry is [`Error::NotSupported`]: use
/// [`copy_image`](crate::copy_image) with a registry endpoint for that.
#[derive(Debug, Clone)]
pub struct OciLayoutStore {
    root: PathBuf,
    registry: String,
    copy_options: CopyOptions,
}

impl OciLayoutStore {
    /// A store over `root`, answering to [`LAYOUT_REGISTRY`].
    pub fn new(root: impl AsRef<Path>) -> Self {
        OciLayoutStore {
            root: root.as_ref().to_path_buf(),
            registry: LAYOUT_REGISTRY.to_owned(),
            copy_options: CopyOptions::default(),
        }
    }

    /// Answers to another registry name.
    pub fn with_registry(mut self, registry: impl Into<String>) -> Self {
        self.registry = registry.into();
        self
    }

    /// The registry name references to this store use.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The layout directory of `repository`.
    pub fn repository_path(&self, repository: &str) -> PathBuf {
        self.root.join(repository)
    }

    /// The layout of `repository`, created if missing (for writing images into it).
    pub async fn layout(&self, repository: &str) -> Result<OciLayout> {
        OciLayout::create(self.repository_path(repository)).await
    }

    /// A reference to `tag` in `repository` of this store.
    pub fn reference(&self, repository: &str, tag: &str) -> Result<ArtifactRef> {
        ArtifactRef::by_tag(&self.registry, repository, tag)
    }

    fn check_registry(&self, reference: &ArtifactRef) -> Result<()> {
        if reference.registry() != self.registry {
            return Err(Error::NotSupported {
                backend: LAYOUT_BACKEND,
                operation: format!("references to registry {} (this store is {})", reference.registry(), self.registry),
            });
        }
        Ok(())
    }

    async fn existing_layout(&self, reference: &ArtifactRef) -> Result<Option<OciLayout>> {
        match OciLayout::open(self.repository_path(reference.repository())).await {
            Ok(layout) => Ok(Some(layout)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

#[async_trait]
impl ArtifactStore for OciLayoutStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities::none().with_cross_repository(true)
    }

    async fn resolve(&self, reference: &ArtifactRef) -> Result<Artifact> {
        self.check_registry(reference)?;
        let not_found = || Error::not_found(Resource::Artifact, reference.to_string());
        let layout = self.existing_layout(reference).await?.ok_or_else(not_found)?;
        let manifest = layout.manifest(&Pointer::of(reference), None).await?.ok_or_else(not_found)?;
        let annotations = layout.annotations(&manifest).await?;
        Ok(Artifact::new(reference, manifest.digest, manifest.media_type, manifest.bytes.len() as u64)
            .with_annotations(annotations))
    }

    async fn promote(&self, source: &ArtifactRef, target: &ArtifactRef) -> Result<Artifact> {
        let digest = check_promote_args(source, target)?.clone();
        self.check_registry(source)?;
        self.check_registry(target)?;
        let not_found = || Error::not_found(Resource::Artifact, source.to_string());
        let from = self.existing_layout(source).await?.ok_or_else(not_found)?;
        let to = if source.same_repository(target) { from.clone() } else { self.layout(target.repository()).await? };
        let report =
            copy::copy_graph(&from, &to, &Pointer::Digest(digest), &Pointer::of(target), &self.copy_options).await?;
        Ok(Artifact::new(target, report.digest, report.media_type, report.size))
    }

    async fn exists(&self, reference: &ArtifactRef) -> Result<bool> {
        let digest = check_exists_args(reference)?;
        if reference.registry() != self.registry {
            return Ok(false);
        }
        match self.existing_layout(reference).await? {
            Some(layout) => layout.has_blob(digest).await,
            None => Ok(false),
        }
    }
}
