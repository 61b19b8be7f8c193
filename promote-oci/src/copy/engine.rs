//! The copy engine: moves an image graph (index → manifests → config and layers) from one repository or
//! layout to another, byte for byte.
//!
//! Order matters for crash safety: blobs first, then child manifests, then an index, and the tagged root
//! last. A copy that fails half-way therefore leaves the target tag where it was, and running it again
//! skips whatever already arrived.

use std::collections::HashSet;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use promote_core::manifest::{self, Descriptor, ManifestSummary};
use promote_core::{ArtifactRef, Digest, Error, Resource, Result};

use crate::error::{FailResult, Failure};
use crate::layout::OciLayout;
use crate::registry::OciRegistryStore;
use crate::retry::RetryPolicy;

/// A blob's bytes as they arrive.
pub(crate) type BlobStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The cosign tag suffixes for signatures, attestations and SBOMs (`sha256-<hex>.sig`).
pub const SIGNATURE_TAG_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// Manifest bytes exactly as the source served them, with their media type and digest.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub(crate) bytes: Bytes,
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
}

impl Manifest {
    /// Parses the few fields the walk needs. Bytes that are not a JSON manifest are refused: copying them
    /// would need a graph we cannot see.
    pub(crate) fn summary(&self) -> Result<ManifestSummary> {
        ManifestSummary::parse(&self.bytes).ok_or_else(|| {
            Error::invalid(
                "manifest",
                self.digest.to_string(),
                "the manifest is not valid JSON of an OCI or Docker manifest",
            )
        })
    }
}

/// A tag or a digest within one repository or layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pointer {
    Tag(String),
    Digest(Digest),
}

impl Pointer {
    /// The digest when the reference pins one, else its tag.
    pub(crate) fn of(reference: &ArtifactRef) -> Pointer {
        match (reference.digest(), reference.tag()) {
            (Some(digest), _) => Pointer::Digest(digest.clone()),
            (None, Some(tag)) => Pointer::Tag(tag.to_owned()),
            (None, None) => Pointer::Tag("latest".to_owned()),
        }
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pointer::Tag(tag) => write!(f, ":{tag}"),
            Pointer::Digest(digest) => write!(f, "@{digest}"),
        }
    }
}

/// Reading side of a copy: one repository or layout.
#[async_trait]
pub(crate) trait GraphSource: Send + Sync {
    /// `registry/repository` or `oci:DIR`, for messages.
    fn name(&self) -> String;
    /// The manifest at `pointer`, or `None` when it does not exist. `media_type_hint` is the media type the
    /// parent's descriptor gives, for sources that do not store one.
    async fn fetch_manifest(&self, pointer: &Pointer, media_type_hint: Option<&str>) -> FailResult<Option<Manifest>>;
    /// Streams a blob.
    async fn open_blob(&self, descriptor: &Descriptor) -> FailResult<BlobStream>;
    /// `(registry, repository)` when blobs could be mounted from here.
    fn mount_origin(&self) -> Option<(String, String)>;
    /// The referrers of `digest`, or `None` when the source has no referrers API.
    async fn referrers(&self, digest: &Digest) -> FailResult<Option<Vec<Descriptor>>>;
}

/// Writing side of a copy: one repository or layout.
#[async_trait]
pub(crate) trait GraphTarget: Send + Sync {
    /// `registry/repository` or `oci:DIR`, for messages.
    fn name(&self) -> String;
    /// The registry host, for deciding whether a mount can work.
    fn registry(&self) -> Option<&str>;
    /// The digest `pointer` holds now, if any.
    async fn manifest_digest(&self, pointer: &Pointer) -> FailResult<Option<Digest>>;
    /// Whether the blob is present.
    async fn has_blob(&self, digest: &Digest) -> FailResult<bool>;
    /// Tries a cross-repository mount; `false` when the target declined (and no upload was left open).
    async fn mount_blob(&self, digest: &Digest, origin: &(String, String)) -> FailResult<bool>;
    /// Writes a blob from a stream, checking its digest.
    async fn write_blob(&self, descriptor: &Descriptor, stream: BlobStream) -> FailResult<()>;
    /// Stores manifest bytes under `pointer` and checks the digest the target computed.
    async fn put_manifest(&self, pointer: &Pointer, manifest: &Manifest) -> FailResult<()>;
}

/// How a copy behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyOptions {
    /// How many blobs move at once.
    pub max_concurrency: usize,
    /// Also copy the cosign tags (`sha256-<hex>.sig`, `.att`, `.sbom`) of the root digest.
    pub copy_signatures: bool,
    /// Also copy the root's referrers (OCI referrers API, or the `sha256-<hex>` tag schema where the
    /// source has no such API).
    pub copy_referrers: bool,
    /// Walk the whole graph even when the root is already present, to repair an interrupted copy whose
    /// children may be missing (on registries that do not check an index's children).
    pub force: bool,
    /// Retries of each manifest request and each whole blob transfer.
    pub retry: RetryPolicy,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            max_concurrency: 8,
            copy_signatures: false,
            copy_referrers: false,
            force: false,
            retry: RetryPolicy::default(),
        }
    }
}

impl CopyOptions {
    /// Sets `max_concurrency` (at least 1).
    pub fn with_max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }
    /// Sets `copy_signatures`.
    pub fn with_signatures(mut self, copy: bool) -> Self {
        self.copy_signatures = copy;
        self
    }
    /// Sets `copy_referrers`.
    pub fn with_referrers(mut self, copy: bool) -> Self {
        self.copy_referrers = copy;
        self
    }
    /// Sets `force`.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// The root digest, now present at the target.
    pub digest: Digest,
    /// The root's media type.
    pub media_type: String,
    /// The root manifest's size in bytes.
    pub size: u64,
    /// Manifests written (root, children, related graphs).
    pub manifests_copied: u64,
    /// Manifests already present.
    pub manifests_skipped: u64,
    /// Blobs streamed from source to target.
    pub blobs_copied: u64,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: u64,
    /// Blobs already present at the target.
    pub blobs_skipped: u64,
    /// Blob bytes streamed.
    pub bytes_copied: u64,
    /// Signature, attestation, SBOM and referrer graphs copied along.
    pub related_copied: u64,
    /// Wall-clock time of the copy.
    pub duration: Duration,
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} blobs copied, {} mounted, {} skipped; {} manifests copied, {} skipped; {} related; {} bytes in {:.2}s",
            self.digest,
            self.blobs_copied,
            self.blobs_mounted,
            self.blobs_skipped,
            self.manifests_copied,
            self.manifests_skipped,
            self.related_copied,
            self.bytes_copied,
            self.duration.as_secs_f64()
        )
    }
}

/// One side of a copy: a repository of a registry store, or an OCI image-layout directory, with a tag or
/// digest in it.
#[derive(Debug, Clone)]
pub struct CopyEndpoint {
    place: Place,
    pointer: Pointer,
}

#[derive(Debug, Clone)]
enum Place {
    Registry { store: OciRegistryStore, reference: ArtifactRef },
    Layout(OciLayout),
}

impl CopyEndpoint {
    /// `reference` (tag or digest) in a registry, reached through `store`'s credentials and settings.
    pub fn registry(store: &OciRegistryStore, reference: ArtifactRef) -> Self {
        let pointer = Pointer::of(&reference);
        CopyEndpoint { place: Place::Registry { store: store.clone(), reference }, pointer }
    }

    /// A tag in an OCI image layout (`org.opencontainers.image.ref.name`).
    pub fn layout_tag(layout: &OciLayout, tag: impl Into<String>) -> Self {
        CopyEndpoint { place: Place::Layout(layout.clone()), pointer: Pointer::Tag(tag.into()) }
    }

    /// A digest in an OCI image layout.
    pub fn layout_digest(layout: &OciLayout, digest: Digest) -> Self {
        CopyEndpoint { place: Place::Layout(layout.clone()), pointer: Pointer::Digest(digest) }
    }

    fn source(&self) -> Box<dyn GraphSource> {
        match &self.place {
            Place::Registry { store, reference } => Box::new(store.repository(reference)),
            Place::Layout(layout) => Box::new(layout.clone()),
        }
    }

    fn target(&self) -> Box<dyn GraphTarget> {
        match &self.place {
            Place::Registry { store, reference } => Box::new(store.repository(reference)),
            Place::Layout(layout) => Box::new(layout.clone()),
        }
    }
}

impl fmt::Display for CopyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::Registry { reference, .. } => write!(f, "{}{}", reference.name(), self.pointer),
            Place::Layout(layout) => write!(f, "oci:{}{}", layout.path().display(), self.pointer),
        }
    }
}

/// Copies the image at `source` to `target`, preserving every digest, and reports what moved.
///
/// The target ends up holding the source's exact manifest bytes (and those of every child) under the
/// target's tag, or by digest when the target pins one. A target tag that already holds the digest is left
/// alone.
pub async fn copy(source: &CopyEndpoint, target: &CopyEndpoint, options: &CopyOptions) -> Result<CopyReport> {
    let started = Instant::now();
    let engine = Engine::new(source.source(), target.target(), options);
    let root = engine.copy_graph(&source.pointer, &target.pointer).await?;
    let mut related = 0;
    if options.copy_signatures || options.copy_referrers {
        related = engine.copy_related(&root.digest).await?;
    }
    Ok(engine.report(root, related, started.elapsed()))
}

/// Copies within one call of a store's `promote`.
pub(crate) async fn copy_between(
    source: Box<dyn GraphSource>,
    target: Box<dyn GraphTarget>,
    source_pointer: &Pointer,
    target_pointer: &Pointer,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let started = Instant::now();
    let engine = Engine::new(source, target, options);
    let root = engine.copy_graph(source_pointer, target_pointer).await?;
    let mut related = 0;
    if options.copy_signatures || options.copy_referrers {
        related = engine.copy_related(&root.digest).await?;
    }
    Ok(engine.report(root, related, started.elapsed()))
}

#[derive(Default)]
struct Counters {
    manifests_copied: AtomicU64,
    manifests_skipped: AtomicU64,
    blobs_copied: AtomicU64,
    blobs_mounted: AtomicU64,
    blobs_skipped: AtomicU64,
    bytes_copied: AtomicU64,
}

struct Engine<'a> {
    source: Box<dyn GraphSource>,
    target: Box<dyn GraphTarget>,
    options: &'a CopyOptions,
    mount_from: Option<(String, String)>,
    same_repository: bool,
    counters: Counters,
}

/// What a walk found to copy, children before parents.
#[derive(Default)]
struct Plan {
    seen: HashSet<Digest>,
    manifests: Vec<Manifest>,
    blobs: Vec<Descriptor>,
    blob_digests: HashSet<Digest>,
}

impl<'a> Engine<'a> {
    fn new(source: Box<dyn GraphSource>, target: Box<dyn GraphTarget>, options: &'a CopyOptions) -> Self {
        let mount_from = source.mount_origin().filter(|(registry, repository)| {
            target.registry() == Some(registry.as_str()) && target.name() != format!("{registry}/{repository}")
        });
        let same_repository = source.name() == target.name();
        Engine { source, target, options, mount_from, same_repository, counters: Counters::default() }
    }

    fn report(&self, root: Manifest, related: u64, duration: Duration) -> CopyReport {
        let c = &self.counters;
        CopyReport {
            size: root.bytes.len() as u64,
            digest: root.digest,
            media_type: root.media_type,
            manifests_copied: c.manifests_copied.load(Ordering::Relaxed),
            manifests_skipped: c.manifests_skipped.load(Ordering::Relaxed),
            blobs_copied: c.blobs_copied.load(Ordering::Relaxed),
            blobs_mounted: c.blobs_mounted.load(Ordering::Relaxed),
            blobs_skipped: c.blobs_skipped.load(Ordering::Relaxed),
            bytes_copied: c.bytes_copied.load(Ordering::Relaxed),
            related_copied: related,
            duration,
        }
    }

    async fn fetch(&self, pointer: &Pointer, hint: Option<&str>) -> Result<Manifest> {
        let manifest = self
            .options
            .retry
            .run("fetch manifest", || self.source.fetch_manifest(pointer, hint))
            .await?
            .ok_or_else(|| Error::not_found(Resource::Artifact, format!("{}{pointer}", self.source.name())))?;
        if let Pointer::Digest(expected) = pointer
            && &manifest.digest != expected
        {
            return Err(Error::DigestMismatch {
                reference: format!("{}{pointer}", self.source.name()),
                expected: expected.clone(),
                actual: manifest.digest,
            });
        }
        Ok(manifest)
    }

    async fn target_digest(&self, pointer: &Pointer) -> Result<Option<Digest>> {
        Ok(self.options.retry.run("check the target", || self.target.manifest_digest(pointer)).await?)
    }

    /// Copies the graph at `source_pointer` and writes its root at `target_pointer`.
    async fn copy_graph(&self, source_pointer: &Pointer, target_pointer: &Pointer) -> Result<Manifest> {
        let root = self.fetch(source_pointer, None).await?;
        if let Pointer::Digest(wanted) = target_pointer
            && wanted != &root.digest
        {
            return Err(Error::invalid(
                "reference",
                format!("{}{target_pointer}", self.target.name()),
                format!("the target pins {wanted}, but the source is {}", root.digest),
            ));
        }
        self.copy_root(root, target_pointer).await
    }

    async fn copy_root(&self, root: Manifest, target_pointer: &Pointer) -> Result<Manifest> {
        if !self.options.force && self.target_digest(target_pointer).await?.as_ref() == Some(&root.digest) {
            self.counters.manifests_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(root);
        }
        // Within one repository the root is there by definition: that is a retag.
        let root_present = !self.options.force
            && matches!(target_pointer, Pointer::Tag(_))
            && (self.same_repository || self.target_digest(&Pointer::Digest(root.digest.clone())).await?.is_some());
        if !root_present {
            let mut plan = Plan::default();
            plan.seen.insert(root.digest.clone());
            self.walk(&root, &mut plan).await?;
            self.copy_blobs(&plan.blobs).await?;
            for child in &plan.manifests {
                self.put(&Pointer::Digest(child.digest.clone()), child).await?;
            }
        }
        // The tagged root goes last, so an interrupted copy never moves the tag.
        self.put(target_pointer, &root).await?;
        Ok(root)
    }

    async fn put(&self, pointer: &Pointer, manifest: &Manifest) -> Result<()> {
        self.options.retry.run("put manifest", || self.target.put_manifest(pointer, manifest)).await?;
        self.counters.manifests_copied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Depth-first: each child manifest's own graph before the child itself.
    fn walk<'b>(
        &'b self,
        manifest: &'b Manifest,
        plan: &'b mut Plan,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'b>> {
        Box::pin(async move {
            let summary = manifest.summary()?;
            if manifest::is_index(&manifest.media_type) && summary.manifests.is_empty() && summary.layers.is_empty() {
                tracing::debug!(digest = %manifest.digest, "empty index");
            }
            for child in &summary.manifests {
                if !plan.seen.insert(child.digest.clone()) {
                    continue;
                }
                let pointer = Pointer::Digest(child.digest.clone());
                if !self.options.force && self.target_digest(&pointer).await?.is_some() {
                    self.counters.manifests_skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let hint = (!child.media_type.is_empty()).then_some(child.media_type.as_str());
                let fetched = self.fetch(&pointer, hint).await?;
                if fetched.bytes.len() as u64 != child.size {
                    return Err(Error::invalid(
                        "manifest",
                        child.digest.to_string(),
                        format!("the index says {} bytes, the source served {}", child.size, fetched.bytes.len()),
                    ));
                }
                self.walk(&fetched, plan).await?;
                plan.manifests.push(fetched);
            }
            for blob in summary.blobs() {
                if is_foreign(blob) {
                    continue;
                }
                if plan.blob_digests.insert(blob.digest.clone()) {
                    plan.blobs.push(blob.clone());
                }
            }
            Ok(())
        })
    }

    async fn copy_blobs(&self, blobs: &[Descriptor]) -> Result<()> {
        // Boxed up front: a lazily mapped iterator of borrowing futures trips the `Send` inference of the
        // async-trait callers.
        let transfers: Vec<Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>> =
            blobs.iter().map(|blob| Box::pin(self.copy_blob(blob)) as _).collect();
        futures::stream::iter(transfers)
            .buffer_unordered(self.options.max_concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn copy_blob(&self, blob: &Descriptor) -> Result<()> {
        let retry = &self.options.retry;
        if retry.run("check a blob", || self.target.has_blob(&blob.digest)).await? {
            self.counters.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if let Some(origin) = &self.mount_from
            && retry.run("mount a blob", || self.target.mount_blob(&blob.digest, origin)).await?
        {
            self.counters.blobs_mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        retry
            .run("copy a blob", || async {
                let stream = self.source.open_blob(blob).await?;
                self.target.write_blob(blob, stream).await
            })
            .await
            .map_err(|failure: Failure| failure.error)?;
        self.counters.blobs_copied.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_copied.fetch_add(blob.size, Ordering::Relaxed);
        Ok(())
    }

    /// Copies the cosign tags and referrers of `digest`; returns how many graphs it copied.
    async fn copy_related(&self, digest: &Digest) -> Result<u64> {
        let mut copied = 0;
        let mut tags: Vec<String> = Vec::new();
        if self.options.copy_signatures {
            tags.extend(SIGNATURE_TAG_SUFFIXES.iter().map(|suffix| digest.signature_tag(suffix)));
        }
        if self.options.copy_referrers {
            let referrers = self.options.retry.run("list referrers", || self.source.referrers(digest)).await?;
            match referrers {
                Some(referrers) => {
                    for referrer in referrers {
                        let pointer = Pointer::Digest(referrer.digest.clone());
                        let hint = (!referrer.media_type.is_empty()).then_some(referrer.media_type.as_str());
                        let manifest = self.fetch(&pointer, hint).await?;
                        self.copy_root(manifest, &pointer).await?;
                        copied += 1;
                    }
                }
                // The referrers tag schema: an index of referrers tagged `sha256-<hex>`.
                None => tags.push(format!("{}-{}", digest.algorithm(), digest.hex())),
            }
        }
        for tag in tags {
            let pointer = Pointer::Tag(tag);
            let found =
                self.options.retry.run("look for a signature", || self.source.fetch_manifest(&pointer, None)).await?;
            if let Some(manifest) = found {
                self.copy_root(manifest, &pointer).await?;
                copied += 1;
            }
        }
        Ok(copied)
    }
}

/// Foreign (non-distributable) layers live elsewhere by design; registries refuse copies of them.
fn is_foreign(descriptor: &Descriptor) -> bool {
    descriptor.media_type.contains("foreign") || descriptor.media_type.contains("nondistributable")
}
