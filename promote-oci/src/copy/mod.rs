//! Copying image graphs, digest for digest: [`copy_image`] between [`CopyEndpoint`]s, and the engine a
//! store's cross-repository `promote` uses.
//!
//! - `graph.rs`: what the engine sees of a repository or layout (the [`GraphSource`]/[`GraphTarget`] pair,
//!   manifests as exact bytes, blobs as streams).
//! - `engine.rs`: the walk and the transfers, in crash-safe order.
//!
//! The registry and the layout implement the pair and add their own [`CopyEndpoint`] constructors; nothing
//! here names them.

mod engine;
mod graph;
pub(crate) mod referrers;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promote_core::progress::Progress;
use promote_core::retry::RetryPolicy;
use promote_core::{Digest, Result};

pub(crate) use graph::{
    BlobStream, GraphEndpoint, GraphSource, GraphTarget, Manifest, Pointer, infer_media_type, referrers_of,
};

/// The cosign tag suffixes for signatures, attestations and SBOMs (`sha256-<hex>.sig`).
pub const SIGNATURE_TAG_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// How a copy behaves.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CopyOptions {
    /// How many blobs move at once.
    pub max_concurrency: usize,
    /// Also copy the cosign tags (`sha256-<hex>.sig`, `.att`, `.sbom`) of the root digest.
    pub copy_signatures: bool,
    /// Also copy the root's referrers (listed by the OCI referrers API, or the `sha256-<hex>` tag schema
    /// where the source has no such API), digest for digest, and list them at the target: a target with the
    /// referrers API indexes them itself; otherwise they are merged into the target's `sha256-<hex>` index,
    /// keeping the entries already there.
    pub copy_referrers: bool,
    /// Walk the whole graph even when the root is already present, to repair an interrupted copy whose
    /// children may be missing (on registries that do not check an index's children).
    pub force: bool,
    /// Retries of each manifest request and each whole blob transfer.
    pub retry: RetryPolicy,
    /// Where the copy reports the bytes it moved as they stream (unit [`ProgressUnit::Bytes`], `total` the
    /// blobs still to move), so that a CLI can draw bytes and rate. Nobody listens by default.
    ///
    /// [`ProgressUnit::Bytes`]: promote_core::progress::ProgressUnit::Bytes
    pub progress: Progress,
}

impl Default for CopyOptions {
    /// 8 blobs at once, nothing related, and the registry's retry policy: 9 attempts (8 retries), 200 ms
    /// doubling to 10 s with jitter, honouring `Retry-After`, within 2 minutes.
    fn default() -> Self {
        CopyOptions {
            max_concurrency: 8,
            copy_signatures: false,
            copy_referrers: false,
            force: false,
            retry: default_retry_policy(),
            progress: Progress::none(),
        }
    }
}

/// The retry policy of registry requests unless one is set: promote-core's default with 9 attempts.
pub(crate) fn default_retry_policy() -> RetryPolicy {
    RetryPolicy::default().with_max_attempts(9)
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
    /// Sets where the bytes moved are reported.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
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

/// One side of a copy: a tag or digest in a repository of a registry store
/// ([`CopyEndpoint::registry`](crate::CopyEndpoint::registry)) or in an OCI image-layout directory
/// ([`CopyEndpoint::layout_tag`](crate::CopyEndpoint::layout_tag),
/// [`CopyEndpoint::layout_digest`](crate::CopyEndpoint::layout_digest)).
#[derive(Clone)]
pub struct CopyEndpoint {
    source: Arc<dyn GraphSource>,
    target: Arc<dyn GraphEndpoint>,
    /// `registry/repository` or `oci:DIR`.
    place: String,
    pointer: Pointer,
}

impl CopyEndpoint {
    /// An endpoint that reads from and writes to `endpoint`, at `pointer`.
    pub(crate) fn new(endpoint: impl GraphSource + GraphTarget + 'static, place: String, pointer: Pointer) -> Self {
        let endpoint = Arc::new(endpoint);
        CopyEndpoint { source: endpoint.clone(), target: endpoint, place, pointer }
    }
}

impl CopyEndpoint {
    /// The reading side, for the trust module's referrer discovery.
    pub(crate) fn reader(&self) -> &dyn GraphSource {
        &*self.source
    }

    /// The writing side (readable too), for the trust module's attestation writes.
    pub(crate) fn writer(&self) -> &dyn GraphEndpoint {
        &*self.target
    }
}

impl fmt::Debug for CopyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyEndpoint").field("place", &self.place).field("pointer", &self.pointer).finish()
    }
}

impl fmt::Display for CopyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.place, self.pointer)
    }
}

/// Copies the image at `source` to `target`, preserving every digest, and reports what moved.
///
/// The target ends up holding the source's exact manifest bytes (and those of every child) under the
/// target's tag, or by digest when the target pins one. A target tag that already holds the digest is left
/// alone.
pub async fn copy_image(source: &CopyEndpoint, target: &CopyEndpoint, options: &CopyOptions) -> Result<CopyReport> {
    copy_graph(&*source.source, &*target.target, &source.pointer, &target.pointer, options).await
}

/// Copies the graph at `from` in `source` to `to` in `target`: what [`copy_image`] and a store's
/// cross-repository `promote` run.
pub(crate) async fn copy_graph(
    source: &dyn GraphSource,
    target: &dyn GraphEndpoint,
    from: &Pointer,
    to: &Pointer,
    options: &CopyOptions,
) -> Result<CopyReport> {
    let started = Instant::now();
    let engine = engine::Engine::new(source, target, options);
    let root = engine.copy_graph(from, to).await?;
    let related =
        if options.copy_signatures || options.copy_referrers { engine.copy_related(&root.digest).await? } else { 0 };
    Ok(engine.report(root, related, started.elapsed()))
}
