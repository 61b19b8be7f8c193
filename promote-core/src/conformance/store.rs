//! The [`ArtifactStore`] conformance suite.

use std::sync::Arc;

use crate::digest::Digest;
use crate::error::Error;
use crate::manifest;
use crate::reference::ArtifactRef;
use crate::store::{ArtifactStore, ArtifactStoreExt};

/// What an [`ArtifactStore`] test prepared for the suite.
#[derive(Debug, Clone)]
pub struct StoreFixture {
    /// The store under test.
    pub store: Arc<dyn ArtifactStore>,
    /// A tag reference that exists, holding a single-image manifest.
    pub image: ArtifactRef,
    /// The digest `image` holds (computed by the test from the bytes it pushed, or reported by the service).
    pub image_digest: Digest,
    /// A second, different image in the same repository, tagged.
    pub other_image: ArtifactRef,
    /// The digest `other_image` holds.
    pub other_digest: Digest,
    /// A multi-platform index, tagged, when the backend test could push one.
    pub index: Option<(ArtifactRef, Digest)>,
    /// A repository (as a reference with any tag) in the same registry, for cross-repository promotion.
    pub other_repository: Option<ArtifactRef>,
    /// A prefix that makes the tags this run creates unique, so that the suite can run again on the same
    /// service.
    pub tag_prefix: String,
}

/// Runs the [`ArtifactStore`] conformance suite.
pub async fn artifact_store(fixture: StoreFixture) {
    let StoreFixture { store, image, image_digest, other_image, other_digest, .. } = fixture.clone();
    let capabilities = store.capabilities();
    let tag = |suffix: &str| format!("{}-{suffix}", fixture.tag_prefix);

    // resolve by tag and by digest
    let resolved = store.resolve(&image).await.expect("resolve(tag) of an existing image must succeed");
    assert_eq!(resolved.digest, image_digest, "resolve(tag) must return the tag's digest");
    assert_eq!(
        resolved.reference,
        image.pinned(&image_digest),
        "resolve must return the reference pinned to the digest"
    );
    assert!(
        manifest::MANIFEST_MEDIA_TYPES.contains(&resolved.media_type.as_str()),
        "resolve must report a manifest media type, got {}",
        resolved.media_type
    );
    assert!(resolved.size > 0, "resolve must report the manifest size");
    let by_digest = store.resolve(&image.pinned(&image_digest)).await.expect("resolve(digest) must succeed");
    assert_eq!(by_digest.digest, image_digest, "resolve(digest) must return that digest");

    // missing things are NotFound naming the reference
    let missing_tag = image.with_tag(&tag("no-such-tag")).unwrap();
    match store.resolve(&missing_tag).await {
        Err(Error::NotFound { name, .. }) => {
            assert!(name.contains(missing_tag.tag().unwrap()), "NotFound must name the reference: {name}")
        }
        other => panic!("resolve of a missing tag must be NotFound, got {other:?}"),
    }
    let missing_repo = ArtifactRef::by_tag(image.registry(), "promote-conformance/no-such-repo", "x").unwrap();
    assert!(
        matches!(store.resolve(&missing_repo).await, Err(Error::NotFound { .. })),
        "resolve in a missing repository must be NotFound"
    );

    // exists
    assert!(store.exists(&image.pinned(&image_digest)).await.unwrap(), "exists must see an existing digest");
    let absent = image.pinned(&Digest::sha256_of(b"promote conformance: absent"));
    assert!(!store.exists(&absent).await.unwrap(), "exists must be false for an absent digest");
    assert!(
        !store.exists(&missing_repo.pinned(&image_digest)).await.unwrap(),
        "exists must be false (not an error) in a missing repository"
    );

    // promote needs a digest
    let target = image.with_tag(&tag("retag")).unwrap();
    assert!(
        matches!(store.promote(&image, &target).await, Err(Error::InvalidInput { .. })),
        "promote from a tag (no digest) must be InvalidInput"
    );

    // retag within the repository, idempotently
    let source = image.pinned(&image_digest);
    let promoted = store.promote(&source, &target).await.expect("retag must succeed");
    assert_eq!(promoted.digest, image_digest, "promote must report the source digest");
    store.verify_digest(&target, &image_digest).await.expect("the new tag must resolve to the source digest");
    store.promote(&source, &target).await.expect("promoting to a tag that already holds the digest must succeed");
    store.verify_digest(&target, &image_digest).await.expect("a repeated promote must change nothing");

    // a tag held by another digest
    let moved = store.promote(&other_image.pinned(&other_digest), &target).await;
    if capabilities.immutable_tags {
        match moved {
            Err(Error::TagConflict { existing, wanted, .. }) => {
                assert_eq!(
                    (existing, wanted),
                    (image_digest.clone(), other_digest.clone()),
                    "TagConflict must name both digests"
                );
            }
            other => panic!("an immutable store must refuse to move a tag, got {other:?}"),
        }
        store.verify_digest(&target, &image_digest).await.expect("a refused move must change nothing");
    } else {
        moved.expect("a mutable store must move a tag to another digest");
        store.verify_digest(&target, &other_digest).await.expect("the moved tag must resolve to the new digest");
    }

    // another repository
    if let Some(other_repository) = &fixture.other_repository {
        let target = other_repository.with_tag(&tag("copied")).unwrap();
        let result = store.promote(&source, &target).await;
        if capabilities.cross_repository {
            result.expect("a store with cross_repository must promote into another repository");
            store.verify_digest(&target, &image_digest).await.expect("the copy must keep the digest");
            assert!(store.exists(&target.pinned(&image_digest)).await.unwrap(), "the copied digest must exist");
        } else {
            assert!(
                matches!(result, Err(Error::NotSupported { .. })),
                "a store without cross_repository must answer NotSupported, got {result:?}"
            );
        }
    }

    // a multi-platform index keeps its digest and its media type
    if let Some((index, index_digest)) = &fixture.index {
        let resolved = store.resolve(index).await.expect("resolve of an index must succeed");
        assert_eq!(&resolved.digest, index_digest, "resolve(index) must return the index digest, not a platform's");
        assert!(manifest::is_index(&resolved.media_type), "an index must resolve as an index: {}", resolved.media_type);
        let target = index.with_tag(&tag("index")).unwrap();
        store.promote(&index.pinned(index_digest), &target).await.expect("promoting an index must succeed");
        let promoted = store.verify_digest(&target, index_digest).await.expect("the index digest must be kept");
        assert!(manifest::is_index(&promoted.media_type), "the promoted index must stay an index");
    }
}
