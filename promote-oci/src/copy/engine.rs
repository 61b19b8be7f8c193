//! The copy engine: moves an image graph (index → manifests → config and layers) from a [`GraphSource`] to a
//! [`GraphTarget`], byte for byte. It knows nothing of registries or layouts.
//!
//! Order matters for crash safety: blobs first, then child manifests, then an index, and the tagged root
//! last. A copy that fails half-way therefore leaves the target tag where it was, and running it again
//! skips whatever already arrived.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use promote_core::manifest::Descriptor;
use promote_core::progress::{Progress, ProgressUnit, ProgressUpdate};
use promote_core::{Digest, Error, Resource, Result};

use super::graph::{BlobStream, GraphEndpoint, GraphSource, GraphTarget, Manifest, Pointer, is_foreign};
use super::referrers;
use super::{CopyOptions, CopyReport, SIGNATURE_TAG_SUFFIXES};
use crate::error::Failure;

#[derive(Default)]
struct Counters {
    manifests_copied: AtomicU64,
    manifests_skipped: AtomicU64,
    blobs_copied: AtomicU64,
    blobs_mounted: AtomicU64,
    blobs_skipped: AtomicU64,
    bytes_copied: AtomicU64,
}

/// The bytes a copy has moved and has still to move, reported to [`CopyOptions::progress`] as they stream.
/// A blob already at the target (or mounted) leaves the total instead of counting as moved, so the rate is
/// what really crossed the wire; an attempt that failed takes back what it counted.
struct Meter {
    progress: Progress,
    subject: String,
    moved: AtomicU64,
    total: AtomicU64,
}

impl Meter {
    fn report(&self) {
        if !self.progress.is_heard() {
            return;
        }
        let (moved, total) = (self.moved.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed));
        let update = ProgressUpdate::message(&self.subject, "copying blobs");
        self.progress.report(update.counting(moved, Some(total), ProgressUnit::Bytes));
    }

    fn plan(&self, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::Relaxed);
        self.report();
    }

    fn not_moving(&self, bytes: u64) {
        self.total.fetch_sub(bytes, Ordering::Relaxed);
        self.report();
    }

    /// `stream`, counting each chunk as it passes into `attempt` and the copy's total.
    fn counting(self: &Arc<Self>, stream: BlobStream, attempt: Arc<AtomicU64>) -> BlobStream {
        if !self.progress.is_heard() {
            return stream;
        }
        let meter = self.clone();
        Box::pin(stream.inspect_ok(move |chunk| {
            let bytes = chunk.len() as u64;
            attempt.fetch_add(bytes, Ordering::Relaxed);
            meter.moved.fetch_add(bytes, Ordering::Relaxed);
            meter.report();
        }))
    }

    /// A blob is at the target: whatever of it did not pass through [`Meter::counting`] counts now.
    fn arrived(&self, size: u64, attempt: &AtomicU64) {
        let uncounted = size.saturating_sub(attempt.load(Ordering::Relaxed));
        if uncounted > 0 {
            self.moved.fetch_add(uncounted, Ordering::Relaxed);
            self.report();
        }
    }

    fn take_back(&self, attempt: &AtomicU64) {
        self.moved.fetch_sub(attempt.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        self.report();
    }
}

pub(super) struct Engine<'a> {
    source: &'a dyn GraphSource,
    target: &'a dyn GraphTarget,
    /// The target, read: its referrers API, its referrers index.
    target_reader: &'a dyn GraphSource,
    options: &'a CopyOptions,
    mount_from: Option<(String, String)>,
    same_repository: bool,
    counters: Counters,
    meter: Arc<Meter>,
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
    pub(super) fn new(source: &'a dyn GraphSource, endpoint: &'a dyn GraphEndpoint, options: &'a CopyOptions) -> Self {
        let target: &dyn GraphTarget = endpoint;
        let target_reader: &dyn GraphSource = endpoint;
        let mount_from = source.mount_origin().filter(|(registry, repository)| {
            target.registry() == Some(registry.as_str()) && target.name() != format!("{registry}/{repository}")
        });
        let same_repository = source.name() == target.name();
        let meter = Arc::new(Meter {
            progress: options.progress.clone(),
            subject: target.name(),
            moved: AtomicU64::new(0),
            total: AtomicU64::new(0),
        });
        Engine {
            source,
            target,
            target_reader,
            options,
            mount_from,
            same_repository,
            counters: Counters::default(),
            meter,
        }
    }

    pub(super) fn report(&self, root: Manifest, related: u64, duration: Duration) -> CopyReport {
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
            return Err(Error::digest_mismatch(
                format!("{}{pointer}", self.source.name()),
                expected.clone(),
                manifest.digest,
            ));
        }
        Ok(manifest)
    }

    async fn target_digest(&self, pointer: &Pointer) -> Result<Option<Digest>> {
        Ok(self.options.retry.run("check the target", || self.target.manifest_digest(pointer)).await?)
    }

    /// Copies the graph at `source_pointer` and writes its root at `target_pointer`.
    pub(super) async fn copy_graph(&self, source_pointer: &Pointer, target_pointer: &Pointer) -> Result<Manifest> {
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
            self.meter.plan(plan.blobs.iter().map(|blob| blob.size).sum());
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
            let links = manifest.links()?;
            for child in &links.manifests {
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
            for blob in links.blobs {
                if !is_foreign(&blob) && plan.blob_digests.insert(blob.digest.clone()) {
                    plan.blobs.push(blob);
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
            self.meter.not_moving(blob.size);
            return Ok(());
        }
        if let Some(origin) = &self.mount_from
            && retry.run("mount a blob", || self.target.mount_blob(&blob.digest, origin)).await?
        {
            self.counters.blobs_mounted.fetch_add(1, Ordering::Relaxed);
            self.meter.not_moving(blob.size);
            return Ok(());
        }
        // What the current attempt has streamed so far.
        let attempt = Arc::new(AtomicU64::new(0));
        retry
            .run("copy a blob", || async {
                let stream = self.source.open_blob(blob).await?;
                let written = self.target.write_blob(blob, self.meter.counting(stream, attempt.clone())).await;
                if written.is_err() {
                    self.meter.take_back(&attempt);
                }
                written
            })
            .await
            .map_err(|failure: Failure| failure.error)?;
        self.meter.arrived(blob.size, &attempt);
        self.counters.blobs_copied.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_copied.fetch_add(blob.size, Ordering::Relaxed);
        Ok(())
    }

    /// Copies the cosign tags and referrers of `digest`; returns how many graphs it copied.
    pub(super) async fn copy_related(&self, digest: &Digest) -> Result<u64> {
        let mut copied = 0;
        if self.options.copy_signatures {
            for suffix in SIGNATURE_TAG_SUFFIXES {
                let pointer = Pointer::Tag(digest.signature_tag(suffix));
                let found = self
                    .options
                    .retry
                    .run("look for a signature", || self.source.fetch_manifest(&pointer, None))
                    .await?;
                if let Some(manifest) = found {
                    self.copy_root(manifest, &pointer).await?;
                    copied += 1;
                }
            }
        }
        if self.options.copy_referrers {
            copied += self.copy_referrers(digest).await?;
        }
        Ok(copied)
    }

    /// Copies each referrer of `digest` by digest, then lists them at the target.
    async fn copy_referrers(&self, digest: &Digest) -> Result<u64> {
        let listed = referrers::list(self.source, digest, &self.options.retry).await?;
        let mut entries = Vec::new();
        for referrer in &listed.entries {
            let pointer = Pointer::Digest(referrer.digest.clone());
            let hint = (!referrer.media_type.is_empty()).then_some(referrer.media_type.as_str());
            let manifest = self.fetch(&pointer, hint).await?;
            entries.push(referrers::entry_of(&manifest));
            self.copy_root(manifest, &pointer).await?;
        }
        // Within a repository the listing is already there: referrers follow the digest.
        if entries.is_empty() || self.same_repository {
            return Ok(entries.len() as u64);
        }
        // A registry with the referrers API lists a manifest by its `subject` on upload; others need the index.
        let target_api =
            self.options.retry.run("probe the referrers API", || self.target_reader.referrers(digest)).await?;
        if target_api.is_none() {
            referrers::merge_into_index(self.target_reader, self.target, digest, &entries, &self.options.retry).await?;
        }
        Ok(entries.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use futures::TryStreamExt as _;
    use promote_core::progress::{Progress, ProgressUpdate};

    use super::{AtomicU64, Meter};

    fn meter() -> (Arc<Meter>, Arc<Mutex<Vec<ProgressUpdate>>>) {
        let updates = Arc::new(Mutex::new(Vec::new()));
        let sink = updates.clone();
        let progress = Progress::new(move |update| sink.lock().unwrap().push(update));
        let meter = Meter { progress, subject: "r/app".into(), moved: AtomicU64::new(0), total: AtomicU64::new(0) };
        (Arc::new(meter), updates)
    }

    fn last(updates: &Mutex<Vec<ProgressUpdate>>) -> (Option<u64>, Option<u64>) {
        let updates = updates.lock().unwrap();
        let last = updates.last().unwrap();
        (last.done, last.total)
    }

    #[tokio::test]
    async fn a_failed_attempt_takes_back_what_it_counted_and_a_present_blob_leaves_the_total() {
        let (meter, updates) = meter();
        meter.plan(30);
        let attempt = Arc::new(AtomicU64::new(0));
        let chunks = [Ok(Bytes::from_static(b"0123456789")), Err(std::io::Error::other("reset"))];
        let stream = meter.counting(Box::pin(futures::stream::iter(chunks)), attempt.clone());
        assert!(stream.try_collect::<Vec<_>>().await.is_err());
        assert_eq!(last(&updates), (Some(10), Some(30)));
        meter.take_back(&attempt);
        assert_eq!(last(&updates), (Some(0), Some(30)));
        // The retry streams the whole blob; a second blob was already at the target.
        let stream =
            meter.counting(Box::pin(futures::stream::iter([Ok(Bytes::from_static(&[7; 20]))])), attempt.clone());
        stream.try_collect::<Vec<_>>().await.unwrap();
        meter.arrived(20, &attempt);
        meter.not_moving(10);
        assert_eq!(last(&updates), (Some(20), Some(20)));
    }
}
