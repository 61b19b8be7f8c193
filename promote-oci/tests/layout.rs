//! `OciLayoutStore` and `OciLayout` against the format skopeo reads and writes.

mod support;

use std::sync::Arc;

use promote_core::conformance::{self, StoreFixture};
use promote_core::{ArtifactRef, ArtifactStore};
use promote_oci::{CopyEndpoint, CopyOptions, OciLayout, OciLayoutStore, copy_image};
use support::Fixture;

#[tokio::test(flavor = "multi_thread")]
async fn conformance_against_a_layout_directory() {
    let fixture = Fixture::new(21, 4096);
    let root = tempfile::tempdir().unwrap();
    let store = OciLayoutStore::new(root.path());
    // The fixture layout (written by plain file operations) becomes repository `team/app`.
    let repository = store.repository_path("team/app");
    std::fs::create_dir_all(repository.parent().unwrap()).unwrap();
    copy_dir(fixture.path(), &repository);
    let at = |tag: &str| store.reference("team/app", tag).unwrap();
    let conformance = StoreFixture::new(
        Arc::new(store.clone()),
        (at("single"), fixture.single_digest.clone()),
        (at("other"), fixture.other_digest.clone()),
        "conformance",
    )
    .with_index(at("multi"), fixture.index_digest.clone())
    .with_other_repository(store.reference("team/elsewhere", "x").unwrap())
    // The single image declares its revision only in its config's labels.
    .with_revision(at("single"), fixture.revision.clone());
    conformance::resolve_by_tag_and_digest(&conformance).await;
    conformance::missing_is_not_found(&conformance).await;
    conformance::exists_never_fails_for_missing(&conformance).await;
    conformance::promote_needs_a_digest(&conformance).await;
    conformance::retag_is_idempotent(&conformance).await;
    // A layout's tags are mutable (no immutable_tags capability): the tag moves.
    conformance::moving_a_tag(&conformance).await;
    conformance::cross_repository(&conformance).await;
    conformance::index_kept_whole(&conformance).await;
    conformance::revision_is_read(&conformance).await;
    let resolved = store.resolve(&at("multi")).await.unwrap();
    assert_eq!(resolved.revision(), Some(fixture.revision.as_str()));
    let elsewhere: ArtifactRef = format!("ghcr.io/team/app@{}", fixture.index_digest).parse().unwrap();
    assert!(matches!(store.promote(&elsewhere, &at("x")).await, Err(promote_core::Error::NotSupported { .. })));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_layout_copy_is_readable_by_skopeo_byte_for_byte() {
    if !support::require("skopeo") {
        return;
    }
    let fixture = Fixture::new(22, 64 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let source = OciLayout::open(fixture.path()).await.unwrap();
    let target = OciLayout::create(dir.path()).await.unwrap();
    let report = copy_image(
        &CopyEndpoint::layout_tag(&source, "multi"),
        &CopyEndpoint::layout_tag(&target, "release"),
        &CopyOptions::default().with_signatures(true),
    )
    .await
    .unwrap();
    assert_eq!(report.digest, fixture.index_digest);
    assert_eq!(report.related_copied, 1);
    assert!(support::raw_from_layout(dir.path(), "release") == fixture.index_bytes);
    for (digest, bytes) in &fixture.children {
        assert_eq!(target.read_blob(digest).await.unwrap().as_deref(), Some(bytes.as_slice()));
    }
    // skopeo can copy everything out of the layout we wrote.
    let out = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new("skopeo");
    command
        .args(["--insecure-policy", "copy", "--all", "--preserve-digests"])
        .arg(format!("oci:{}:release", dir.path().display()))
        .arg(format!("oci:{}:again", out.path().display()));
    support::run(command);
    assert!(support::raw_from_layout(out.path(), "again") == fixture.index_bytes);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Temporary files are created new, under names no one can plant a symlink at in advance: the old
/// `.promote-tmp-<pid>-<n>` names, planted as symlinks, are never written through, and nothing is left
/// behind.
#[cfg(unix)]
#[tokio::test]
async fn writes_never_go_through_a_planted_symlink() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "someone else's file\n").unwrap();
    let layout_dir = dir.path().join("layout");
    std::fs::create_dir(&layout_dir).unwrap();
    for n in 0..64 {
        let name = format!(".promote-tmp-{}-{n}", std::process::id());
        std::os::unix::fs::symlink(&outside, layout_dir.join(name)).unwrap();
    }
    let layout = OciLayout::create(&layout_dir).await.unwrap();
    let digest = layout.write_blob(b"a blob").await.unwrap();
    layout
        .write_manifest(Some("v1"), br#"{"schemaVersion":2}"#, "application/vnd.oci.image.manifest.v1+json")
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "someone else's file\n");
    assert_eq!(layout.read_blob(&digest).await.unwrap().as_deref(), Some(b"a blob".as_slice()));
    let left: Vec<_> = std::fs::read_dir(&layout_dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(".promote-tmp-"))
        .filter(|entry| !entry.file_type().unwrap().is_symlink())
        .map(|entry| entry.file_name())
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
    let blob = layout_dir.join("blobs").join(digest.algorithm()).join(digest.hex());
    assert_eq!(std::fs::metadata(blob).unwrap().mode() & 0o777, 0o600, "created owner-only, as skopeo does");
}

/// A copy reports the bytes it moves as they stream: never backwards, ending at what the report says moved,
/// with what the target already had left out of the total (so the rate is what crossed the wire).
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_reports_its_bytes_as_they_move() {
    let fixture = Fixture::new(23, 256 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let source = OciLayout::open(fixture.path()).await.unwrap();
    let target = OciLayout::create(dir.path()).await.unwrap();
    let copy = |from: &'static str, to: &'static str| {
        let (source, target) = (source.clone(), target.clone());
        async move {
            let updates = Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = updates.clone();
            let progress = promote_core::progress::Progress::new(move |update| sink.lock().unwrap().push(update));
            let options = CopyOptions::default().with_progress(progress);
            let report =
                copy_image(&CopyEndpoint::layout_tag(&source, from), &CopyEndpoint::layout_tag(&target, to), &options)
                    .await
                    .unwrap();
            let updates = std::mem::take(&mut *updates.lock().unwrap());
            (report, updates)
        }
    };

    // One image first, so that the index's copy finds some of its blobs already there.
    let (single, _) = copy("single", "first").await;
    assert!(single.bytes_copied > 0);
    let (report, updates) = copy("multi", "release").await;
    assert!(report.manifests_skipped > 0 && report.blobs_copied > 0, "{report:?}");
    let last = updates.last().expect("progress was reported");
    assert_eq!(last.unit, Some(promote_core::progress::ProgressUnit::Bytes));
    assert_eq!((last.done, last.total), (Some(report.bytes_copied), Some(report.bytes_copied)), "{last:?}");
    let moved: Vec<u64> = updates.iter().filter_map(|update| update.done).collect();
    assert!(moved.windows(2).all(|pair| pair[0] <= pair[1]), "the count went backwards: {moved:?}");
    // Chunks are reported as they pass, not only whole blobs.
    assert!(updates.len() as u64 > report.blobs_copied, "{} reports for {report:?}", updates.len());
}

/// Found by the `oci_layout` fuzz target (`promote-core/fuzz/artifacts/oci_layout/`): a layer whose manifest
/// gives the wrong size, but whose bytes match its digest, failed as a digest mismatch between two equal
/// digests, which counts as retryable, so a store promotion retried it for some forty seconds.
#[tokio::test]
async fn a_blob_whose_manifest_gives_the_wrong_size_fails_at_once_naming_the_sizes() {
    let root = tempfile::tempdir().unwrap();
    let store = OciLayoutStore::new(root.path());
    let source = OciLayout::create(store.repository_path("app")).await.unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"eleven byte";
    let manifest = promote_oci::image_manifest(config, &[layer], &Default::default());
    let mut manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    manifest["layers"][0]["size"] = 3.into();
    let manifest = manifest.to_string();
    source.write_blob(config).await.unwrap();
    source.write_blob(layer).await.unwrap();
    source.write_manifest(Some("v1"), manifest.as_bytes(), promote_core::manifest::OCI_MANIFEST).await.unwrap();
    let artifact = store.resolve(&store.reference("app", "v1").unwrap()).await.unwrap();

    let error = store.promote(&artifact.reference, &store.reference("prd", "v1").unwrap()).await.unwrap_err();
    assert!(!error.is_retryable(), "{error:?}");
    assert!(
        matches!(error.root(), promote_core::Error::InvalidInput { reason, .. } if reason.contains("says 3 bytes, but the blob has 11")),
        "{error:?}"
    );
    assert!(!store.exists(&store.reference("prd", "v1").unwrap()).await.unwrap_or(false));
}
