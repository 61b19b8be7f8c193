//! Target `oci_layout`: OCI manifests and indexes, as promote-oci walks them to copy an image's graph.
//!
//! promote-oci's walk reads manifests through `promote_core::manifest::ManifestSummary` (public) from a
//! source that is a registry or an OCI image layout; this target writes a fuzzed layout and copies from it.
//!
//! Input: up to ten parts separated by lines `%%`: first `index.json` (empty: one entry tagging the last
//! blob `t`), then blobs, each stored under its own sha256. In a blob, `$N` becomes the digest of blob N and
//! `#N` its size (1-based, earlier blobs only, so that a fuzzer can write manifests that point at real
//! blobs); in `index.json`, any blob. The first byte of the input sets the copy's options.
//!
//! The tag `t` is copied to a fresh layout with `promote_oci::copy`, and through `OciLayoutStore` (resolve,
//! then promote to another repository). A copy that succeeds leaves the target's tag on a complete graph with
//! the source's exact bytes; one that fails leaves the target's tag untouched, and says what failed (a
//! digest mismatch names two different digests).

use std::collections::HashSet;

use promote_core::manifest::{self, ManifestSummary};
use promote_core::{ArtifactStore, Digest, Error};
use promote_oci::{CopyEndpoint, CopyOptions, OciLayout, OciLayoutStore, REF_NAME_ANNOTATION, RetryPolicy, copy_image};
use serde_json::json;

use crate::common::{block_on, split};

const SEPARATOR: &[u8] = b"\n%%\n";
const TAG: &str = "t";

/// Runs one input.
pub(crate) fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let parts = split(rest, SEPARATOR, 10);
    for part in &parts {
        if let Some(summary) = ManifestSummary::parse(part) {
            let _ = summary.blobs().count();
        }
    }
    let (index, raw_blobs) = parts.split_first().expect("split yields a part");
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for raw in raw_blobs {
        let blob = substitute(raw, &blobs);
        blobs.push(blob);
    }
    let index = if index.is_empty() { generated_index(&blobs) } else { substitute(index, &blobs) };
    let options = CopyOptions::default()
        .with_retry(RetryPolicy::none())
        .with_force(flags & 1 != 0)
        .with_signatures(flags & 2 != 0)
        .with_referrers(flags & 4 != 0)
        .with_max_concurrency(usize::from(flags >> 4) + 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    block_on(async {
        let store = OciLayoutStore::new(dir.path());
        let source = OciLayout::create(store.repository_path("app")).await.expect("create the source layout");
        for blob in &blobs {
            source.write_blob(blob).await.expect("write a blob");
        }
        std::fs::write(source.path().join("index.json"), &index).expect("write index.json");
        let _ = source.tags().await;
        let target = OciLayout::create(dir.path().join("copy")).await.expect("create the target layout");
        let copied =
            copy_image(&CopyEndpoint::layout_tag(&source, TAG), &CopyEndpoint::layout_tag(&target, TAG), &options)
                .await;
        match copied {
            Ok(report) => {
                let _ = report.to_string();
                let tagged = target.resolve_tag(TAG).await.expect("read the target's index");
                assert_eq!(tagged.as_ref(), Some(&report.digest), "the target's tag is not on the copied root");
                assert_complete(&source, &target, &report.digest).await;
                through_store(&store).await;
            }
            Err(error) => {
                let _ = (error.to_string(), error.is_retryable());
                if let Error::DigestMismatch { expected, actual, .. } = error.root() {
                    assert_ne!(expected, actual, "a digest mismatch between equal digests: {error}");
                }
                let tagged = target.resolve_tag(TAG).await.expect("read the target's index");
                assert_eq!(tagged, None, "a failed copy moved the target's tag: {error}");
            }
        }
    });
}

/// Resolves `app:t` and promotes it to `prd:t` through the layout store. Only for a graph that copies: the
/// store retries with its default policy, which spends up to two minutes on an error it deems retryable.
async fn through_store(store: &OciLayoutStore) {
    let source = store.reference("app", TAG).expect("a valid reference");
    let Ok(artifact) = store.resolve(&source).await else { return };
    let target = store.reference("prd", TAG).expect("a valid reference");
    match store.promote(&artifact.reference, &target).await {
        Ok(promoted) => {
            assert_eq!(promoted.digest, artifact.digest, "promotion changed the digest");
            let resolved =
                store.resolve(&target).await.unwrap_or_else(|e| panic!("promoted, but does not resolve: {e}"));
            assert_eq!(resolved.digest, artifact.digest);
            let source_layout = store.layout("app").await.expect("the source layout");
            let target_layout = store.layout("prd").await.expect("the target layout");
            assert_complete(&source_layout, &target_layout, &artifact.digest).await;
        }
        Err(error) => {
            let _ = error.to_string();
            assert!(store.resolve(&target).await.is_err(), "a failed promotion tagged the target: {error}");
        }
    }
}

/// Every manifest and (non-foreign) blob reachable from `root` is in `target`, with the source's bytes.
async fn assert_complete(source: &OciLayout, target: &OciLayout, root: &Digest) {
    let mut pending = vec![(root.clone(), true)];
    let mut seen = HashSet::new();
    while let Some((digest, is_manifest)) = pending.pop() {
        if !seen.insert(digest.clone()) || seen.len() > 64 {
            continue;
        }
        let copied = target
            .read_blob(&digest)
            .await
            .expect("read the target")
            .unwrap_or_else(|| panic!("the target's tag points at a graph that lacks {digest}"));
        let original = source.read_blob(&digest).await.expect("read the source");
        assert_eq!(Some(&copied), original.as_ref(), "{digest} changed in the copy");
        if !is_manifest {
            continue;
        }
        let Some(summary) = ManifestSummary::parse(&copied) else { continue };
        pending.extend(summary.manifests.iter().map(|child| (child.digest.clone(), true)));
        let distributable = summary
            .blobs()
            .filter(|blob| !(blob.media_type.contains("foreign") || blob.media_type.contains("nondistributable")));
        pending.extend(distributable.map(|blob| (blob.digest.clone(), false)));
    }
}

/// `raw` with `$N` and `#N` replaced by the digest and size of `blobs[N - 1]`, for the blobs there are.
fn substitute(raw: &[u8], blobs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        let byte = raw[at];
        let number = raw.get(at + 1).filter(|b| (b'1'..=b'9').contains(b)).map(|b| usize::from(b - b'1'));
        match (byte, number.and_then(|n| blobs.get(n))) {
            (b'$', Some(blob)) => {
                out.extend_from_slice(Digest::sha256_of(blob).as_str().as_bytes());
                at += 2;
            }
            (b'#', Some(blob)) => {
                out.extend_from_slice(blob.len().to_string().as_bytes());
                at += 2;
            }
            _ => {
                out.push(byte);
                at += 1;
            }
        }
    }
    out
}

/// An `index.json` that tags the last blob `t`, with the media type the blob declares.
fn generated_index(blobs: &[Vec<u8>]) -> Vec<u8> {
    let Some(root) = blobs.last() else { return br#"{"schemaVersion":2,"manifests":[]}"#.to_vec() };
    let media_type = serde_json::from_slice::<serde_json::Value>(root)
        .ok()
        .and_then(|value| value.get("mediaType").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| manifest::OCI_MANIFEST.to_owned());
    let entry = json!({
        "mediaType": media_type,
        "digest": Digest::sha256_of(root).as_str(),
        "size": root.len(),
        "annotations": { (REF_NAME_ANNOTATION): TAG },
    });
    json!({ "schemaVersion": 2, "manifests": [entry] }).to_string().into_bytes()
}
