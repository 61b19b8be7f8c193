//! [`OciRegistryStore`]: an [`ArtifactStore`] over any registry that speaks the OCI Distribution API.
//!
//! - `builder.rs`: [`OciRegistryStoreBuilder`] and the spec form [`OciRegistryConfig`].
//! - `auth.rs`: where credentials come from and which token service may receive them.
//! - `transport.rs`: the HTTP client, origins, and what a failed response means.
//! - `repository.rs`: one repository's manifest and blob requests, the copy engine's source and target.

mod auth;
mod builder;
mod repository;
mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use promote_core::backend::{check_exists_args, check_promote_args};
use promote_core::manifest::{ManifestSummary, add_config_labels};
use promote_core::retry::RetryPolicy;
use promote_core::{Artifact, ArtifactRef, ArtifactStore, Digest, Error, Resource, Result, StoreCapabilities};

pub use auth::{CredentialProvider, DockerConfigCredentials, RegistryAuth};
pub use builder::{CredentialsConfig, OciRegistryConfig, OciRegistryStoreBuilder};
use repository::RepositoryHandle;
use transport::Transport;

use crate::copy::{self, CopyEndpoint, CopyOptions, CopyReport, Pointer};
use crate::error::REGISTRY_BACKEND;

/// An [`ArtifactStore`] for OCI Distribution registries (distribution, Harbor, GHCR, Artifactory, ECR's
/// `/v2` API, …).
///
/// - `resolve` sends a HEAD with all four manifest media types in `Accept`, then (once per digest) a GET
///   for the manifest's annotations, and the config's labels when the manifest lacks
///   `org.opencontainers.image.revision`.
/// - `promote` within a repository PUTs the source manifest's exact bytes under the new tag (no blob
///   traffic; nothing at all when the tag already holds the digest). Into another repository or registry
///   it runs the copy engine (see [`copy_image`](crate::copy_image)).
/// - Temporary failures (408, 429, 5xx, broken connections) are retried with backoff and jitter, honouring
///   `Retry-After`, within the [`RetryPolicy`]; a storm that outlasts it ends as
///   [`ErrorClass::Exhausted`](promote_core::ErrorClass::Exhausted).
///
/// Build one with [`OciRegistryStore::builder`].
#[derive(Debug, Clone)]
pub struct OciRegistryStore {
    inner: Arc<Inner>,
}

/// What a store and every repository handle of it share.
#[derive(Debug)]
struct Inner {
    transport: Transport,
    copy_options: CopyOptions,
    resolve_annotations: bool,
    immutable_tags: bool,
    /// When set, the only registries this store talks to.
    only_registries: Option<BTreeSet<String>>,
}

impl OciRegistryStore {
    /// A builder with the defaults: docker-config credentials, TLS everywhere, 8 concurrent blobs.
    pub fn builder() -> OciRegistryStoreBuilder {
        OciRegistryStoreBuilder::default()
    }

    /// The copy options `promote` uses across repositories.
    pub fn copy_options(&self) -> &CopyOptions {
        &self.inner.copy_options
    }

    fn retry(&self) -> &RetryPolicy {
        &self.inner.copy_options.retry
    }

    /// Refuses a registry outside the store's allowlist, before any request is made.
    fn check_allowed(&self, reference: &ArtifactRef) -> Result<()> {
        match &self.inner.only_registries {
            Some(allowed) if !allowed.contains(reference.registry()) => Err(Error::PermissionDenied {
                backend: REGISTRY_BACKEND,
                message: format!("registry {} is not on this store's allowlist ({reference})", reference.registry()),
            }),
            _ => Ok(()),
        }
    }

    fn repository(&self, reference: &ArtifactRef) -> RepositoryHandle {
        RepositoryHandle::new(self.inner.clone(), reference)
    }

    /// Copies `source` (tag or digest) to `target` with these options; see
    /// [`copy_image`](crate::copy_image).
    pub async fn copy(&self, source: &ArtifactRef, target: &ArtifactRef, options: &CopyOptions) -> Result<CopyReport> {
        let (from, to) = (self.repository(source), self.repository(target));
        copy::copy_graph(&from, &to, &Pointer::of(source), &Pointer::of(target), options).await
    }

    /// Retags within a repository: one GET of the source bytes and one PUT of the same bytes.
    async fn retag(&self, digest: &Digest, source: &ArtifactRef, target: &ArtifactRef) -> Result<Artifact> {
        let handle = self.repository(target);
        let target_pointer = Pointer::of(target);
        let current = self.retry().run("check the target tag", || handle.head_manifest(&target_pointer)).await?;
        let manifest = match current {
            Some(head) if head.digest.as_ref() == Some(digest) => {
                return Ok(Artifact::new(target, digest.clone(), head.media_type, head.size));
            }
            Some(head) if self.inner.immutable_tags => {
                return Err(Error::TagConflict {
                    reference: target.to_string(),
                    existing: head.digest.unwrap_or_else(|| digest.clone()),
                    wanted: digest.clone(),
                });
            }
            _ => {
                let pointer = Pointer::Digest(digest.clone());
                self.retry()
                    .run("fetch manifest", || handle.get_manifest(&pointer, None))
                    .await?
                    .ok_or_else(|| Error::not_found(Resource::Artifact, source.to_string()))?
            }
        };
        self.retry().run("put manifest", || handle.put_manifest(&target_pointer, &manifest)).await?;
        Ok(Artifact::new(target, manifest.digest, manifest.media_type, manifest.bytes.len() as u64))
    }

    async fn annotations(&self, handle: &RepositoryHandle, digest: &Digest) -> Result<BTreeMap<String, String>> {
        let pointer = Pointer::Digest(digest.clone());
        let Some(manifest) = self.retry().run("fetch manifest", || handle.get_manifest(&pointer, None)).await? else {
            return Ok(BTreeMap::new());
        };
        let Some(summary) = ManifestSummary::parse(&manifest.bytes) else {
            return Ok(BTreeMap::new());
        };
        let config = summary.config_for_labels().cloned();
        let mut annotations = summary.annotations;
        if let Some(config) = config {
            let bytes = self.retry().run("fetch config", || handle.read_config(&config)).await?;
            add_config_labels(&mut annotations, &bytes);
        }
        Ok(annotations)
    }
}

#[async_trait]
impl ArtifactStore for OciRegistryStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities::none()
            .with_immutable_tags(self.inner.immutable_tags)
            .with_cross_repository(true)
            .with_cross_registry(true)
    }

    async fn resolve(&self, reference: &ArtifactRef) -> Result<Artifact> {
        self.check_allowed(reference)?;
        let handle = self.repository(reference);
        let pointer = Pointer::of(reference);
        let head = self
            .retry()
            .run("resolve", || handle.head_manifest(&pointer))
            .await?
            .ok_or_else(|| Error::not_found(Resource::Artifact, reference.to_string()))?;
        let (digest, media_type, size) = match head.digest {
            Some(digest) => (digest, head.media_type, head.size),
            // Some registries omit the digest on HEAD: the bytes tell.
            None => {
                let manifest = self
                    .retry()
                    .run("fetch manifest", || handle.get_manifest(&pointer, None))
                    .await?
                    .ok_or_else(|| Error::not_found(Resource::Artifact, reference.to_string()))?;
                let size = manifest.bytes.len() as u64;
                (manifest.digest, manifest.media_type, size)
            }
        };
        if let Some(pinned) = reference.digest()
            && pinned != &digest
        {
            return Err(Error::digest_mismatch(reference.to_string(), pinned.clone(), digest));
        }
        let annotations =
            if self.inner.resolve_annotations { self.annotations(&handle, &digest).await? } else { BTreeMap::new() };
        Ok(Artifact::new(reference, digest, media_type, size).with_annotations(annotations))
    }

    async fn promote(&self, source: &ArtifactRef, target: &ArtifactRef) -> Result<Artifact> {
        let digest = check_promote_args(source, target)?.clone();
        self.check_allowed(source)?;
        self.check_allowed(target)?;
        if source.same_repository(target) {
            return self.retag(&digest, source, target).await;
        }
        if self.inner.immutable_tags {
            let handle = self.repository(target);
            let pointer = Pointer::of(target);
            if let Some(head) = self.retry().run("check the target tag", || handle.head_manifest(&pointer)).await?
                && let Some(existing) = head.digest.filter(|existing| existing != &digest)
            {
                return Err(Error::TagConflict { reference: target.to_string(), existing, wanted: digest });
            }
        }
        let report = self.copy(&source.pinned(&digest), target, &self.inner.copy_options).await?;
        Ok(Artifact::new(target, report.digest, report.media_type, report.size))
    }

    async fn exists(&self, reference: &ArtifactRef) -> Result<bool> {
        let digest = check_exists_args(reference)?;
        self.check_allowed(reference)?;
        let handle = self.repository(reference);
        let pointer = Pointer::Digest(digest.clone());
        Ok(self.retry().run("exists", || handle.head_manifest(&pointer)).await?.is_some())
    }
}

impl CopyEndpoint {
    /// `reference` (tag or digest) in a registry, reached through `store`'s credentials and settings.
    pub fn registry(store: &OciRegistryStore, reference: ArtifactRef) -> Self {
        CopyEndpoint::new(store.repository(&reference), reference.name(), Pointer::of(&reference))
    }
}
