//! The [`ArtifactStore`] conformance suite, clause by clause.
//!
//! A backend's test builds a [`StoreFixture`] with its own means and calls the clauses it is subject to
//! one by one, or [`artifact_store`] for all of them. What differs between backends comes from their
//! [`StoreCapabilities`](crate::store::StoreCapabilities), never from a skipped clause: a clause whose
//! operation the store says it cannot do checks that it answers [`Error::NotSupported`].

use std::sync::Arc;

use crate::digest::Digest;
use crate::error::Error;
use crate::manifest;
use crate::reference::ArtifactRef;
use crate::store::{ArtifactStore, ArtifactStoreExt};

/// What an [`ArtifactStore`] test prepared for the suite.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// A multi-platform index, tagged ([`index_kept_whole`] needs it).
    pub index: Option<(ArtifactRef, Digest)>,
    /// A repository (as a reference with any tag) in the same registry ([`cross_repository`] needs it).
    pub other_repository: Option<ArtifactRef>,
    /// An image that declares the commit it was built from, and that commit ([`revision_is_read`] needs it).
    pub revision: Option<(ArtifactRef, String)>,
    /// A prefix that makes the tags this run creates unique, so that the suite can run again on the same
    /// service.
    pub tag_prefix: String,
}

impl StoreFixture {
    /// A fixture with the two images every clause uses; the setters add what some clauses need.
    pub fn new(
        store: Arc<dyn ArtifactStore>,
        (image, image_digest): (ArtifactRef, Digest),
        (other_image, other_digest): (ArtifactRef, Digest),
        tag_prefix: impl Into<String>,
    ) -> Self {
        StoreFixture {
            store,
            image,
            image_digest,
            other_image,
            other_digest,
            index: None,
            other_repository: None,
            revision: None,
            tag_prefix: tag_prefix.into(),
        }
    }

    /// A multi-platform index, tagged, and its digest.
    pub fn with_index(mut self, index: ArtifactRef, digest: Digest) -> Self {
        self.index = Some((index, digest));
        self
    }

    /// Another repository of the same registry.
    pub fn with_other_repository(mut self, repository: ArtifactRef) -> Self {
        self.other_repository = Some(repository);
        self
    }

    /// An image that declares `commit` as the revision it was built from.
    pub fn with_revision(mut self, image: ArtifactRef, commit: impl Into<String>) -> Self {
        self.revision = Some((image, commit.into()));
        self
    }

    fn tag(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.tag_prefix)
    }
}

/// Runs every clause.
pub async fn artifact_store(fixture: StoreFixture) {
    resolve_by_tag_and_digest(&fixture).await;
    missing_is_not_found(&fixture).await;
    exists_never_fails_for_missing(&fixture).await;
    promote_needs_a_digest(&fixture).await;
    retag_is_idempotent(&fixture).await;
    moving_a_tag(&fixture).await;
    cross_repository(&fixture).await;
    index_kept_whole(&fixture).await;
    revision_is_read(&fixture).await;
}

/// `resolve` accepts a tag and a digest, and returns the artifact pinned to its digest, with a manifest
/// media type and a size.
pub async fn resolve_by_tag_and_digest(fixture: &StoreFixture) {
    let StoreFixture { store, image, image_digest, .. } = fixture;
    let resolved = store.resolve(image).await.expect("resolve(tag) of an existing image must succeed");
    assert_eq!(&resolved.digest, image_digest, "resolve(tag) must return the tag's digest");
    assert_eq!(
        resolved.reference,
        image.pinned(image_digest),
        "resolve must return the reference pinned to the digest"
    );
    assert!(
        manifest::MANIFEST_MEDIA_TYPES.contains(&resolved.media_type.as_str()),
        "resolve must report a manifest media type, got {}",
        resolved.media_type
    );
    assert!(resolved.size > 0, "resolve must report the manifest size");
    let by_digest = store.resolve(&image.pinned(image_digest)).await.expect("resolve(digest) must succeed");
    assert_eq!(&by_digest.digest, image_digest, "resolve(digest) must return that digest");
}

/// A missing tag, or a missing repository, is [`Error::NotFound`] naming the reference.
pub async fn missing_is_not_found(fixture: &StoreFixture) {
    let missing_tag = fixture.image.with_tag(&fixture.tag("no-such-tag")).unwrap();
    match fixture.store.resolve(&missing_tag).await.map_err(Error::into_root) {
        Err(Error::NotFound { name, .. }) => {
            assert!(name.contains(missing_tag.tag().unwrap()), "NotFound must name the reference: {name}")
        }
        other => panic!("resolve of a missing tag must be NotFound, got {other:?}"),
    }
    let missing_repo = missing_repository(fixture);
    assert!(
        matches!(fixture.store.resolve(&missing_repo).await.map_err(Error::into_root), Err(Error::NotFound { .. })),
        "resolve in a missing repository must be NotFound"
    );
}

/// `exists` sees an existing digest, and answers `false` (not an error) for an absent digest or a missing
/// repository.
pub async fn exists_never_fails_for_missing(fixture: &StoreFixture) {
    let StoreFixture { store, image, image_digest, .. } = fixture;
    assert!(store.exists(&image.pinned(image_digest)).await.unwrap(), "exists must see an existing digest");
    let absent = image.pinned(&Digest::sha256_of(b"promote conformance: absent"));
    assert!(!store.exists(&absent).await.unwrap(), "exists must be false for an absent digest");
    let missing_repo = missing_repository(fixture);
    assert!(
        !store.exists(&missing_repo.pinned(image_digest)).await.unwrap(),
        "exists must be false (not an error) in a missing repository"
    );
    assert!(
        matches!(store.exists(image).await, Err(Error::InvalidInput { .. })),
        "exists of a reference without a digest must be InvalidInput"
    );
}

/// `promote` from a reference without a digest is [`Error::InvalidInput`].
pub async fn promote_needs_a_digest(fixture: &StoreFixture) {
    let target = fixture.image.with_tag(&fixture.tag("retag")).unwrap();
    assert!(
        matches!(fixture.store.promote(&fixture.image, &target).await, Err(Error::InvalidInput { .. })),
        "promote from a tag (no digest) must be InvalidInput"
    );
}

/// A retag within the repository makes the tag resolve to the source digest; doing it again changes nothing.
pub async fn retag_is_idempotent(fixture: &StoreFixture) {
    let StoreFixture { store, image, image_digest, .. } = fixture;
    let target = image.with_tag(&fixture.tag("retag")).unwrap();
    let source = image.pinned(image_digest);
    let promoted = store.promote(&source, &target).await.expect("retag must succeed");
    assert_eq!(&promoted.digest, image_digest, "promote must report the source digest");
    store.verify_digest(&target, image_digest).await.expect("the new tag must resolve to the source digest");
    store.promote(&source, &target).await.expect("promoting to a tag that already holds the digest must succeed");
    store.verify_digest(&target, image_digest).await.expect("a repeated promote must change nothing");
}

/// A tag held by another digest: with immutable tags, [`Error::TagConflict`] naming both digests and
/// nothing changed ([`immutable_tag_conflict`]); otherwise the tag moves.
pub async fn moving_a_tag(fixture: &StoreFixture) {
    if fixture.store.capabilities().immutable_tags {
        return immutable_tag_conflict(fixture).await;
    }
    let StoreFixture { store, image, image_digest, other_image, other_digest, .. } = fixture;
    let target = image.with_tag(&fixture.tag("moving")).unwrap();
    store.promote(&image.pinned(image_digest), &target).await.expect("retag must succeed");
    store.promote(&other_image.pinned(other_digest), &target).await.expect("a mutable store must move a tag");
    store.verify_digest(&target, other_digest).await.expect("the moved tag must resolve to the new digest");
}

/// With immutable tags, promoting another digest to a held tag is [`Error::TagConflict`] naming both
/// digests, and the tag stays.
pub async fn immutable_tag_conflict(fixture: &StoreFixture) {
    let StoreFixture { store, image, image_digest, other_image, other_digest, .. } = fixture;
    assert!(store.capabilities().immutable_tags, "immutable_tag_conflict is for stores with immutable tags");
    let target = image.with_tag(&fixture.tag("immutable")).unwrap();
    store.promote(&image.pinned(image_digest), &target).await.expect("the first promote to a tag must succeed");
    match store.promote(&other_image.pinned(other_digest), &target).await.map_err(Error::into_root) {
        Err(Error::TagConflict { existing, wanted, .. }) => {
            assert_eq!((&existing, &wanted), (image_digest, other_digest), "TagConflict must name both digests");
        }
        other => panic!("an immutable store must refuse to move a tag, got {other:?}"),
    }
    store.verify_digest(&target, image_digest).await.expect("a refused move must change nothing");
}

/// Promotion into another repository keeps the digest where the store has `cross_repository`, and is
/// [`Error::NotSupported`] where it has not.
pub async fn cross_repository(fixture: &StoreFixture) {
    let StoreFixture { store, image, image_digest, .. } = fixture;
    let other = fixture.other_repository.as_ref().expect("the cross_repository clause needs fixture.other_repository");
    let target = other.with_tag(&fixture.tag("copied")).unwrap();
    let result = store.promote(&image.pinned(image_digest), &target).await;
    if store.capabilities().cross_repository {
        result.expect("a store with cross_repository must promote into another repository");
        store.verify_digest(&target, image_digest).await.expect("the copy must keep the digest");
        assert!(store.exists(&target.pinned(image_digest)).await.unwrap(), "the copied digest must exist");
    } else {
        assert!(
            matches!(result.map_err(Error::into_root), Err(Error::NotSupported { .. })),
            "a store without cross_repository must answer NotSupported"
        );
    }
}

/// A multi-platform index resolves as the index (not a platform's image), and is promoted whole: the same
/// digest, still an index.
pub async fn index_kept_whole(fixture: &StoreFixture) {
    let (index, index_digest) = fixture.index.as_ref().expect("the index_kept_whole clause needs fixture.index");
    let store = &fixture.store;
    let resolved = store.resolve(index).await.expect("resolve of an index must succeed");
    assert_eq!(&resolved.digest, index_digest, "resolve(index) must return the index digest, not a platform's");
    assert!(manifest::is_index(&resolved.media_type), "an index must resolve as an index: {}", resolved.media_type);
    let target = index.with_tag(&fixture.tag("index")).unwrap();
    store.promote(&index.pinned(index_digest), &target).await.expect("promoting an index must succeed");
    let promoted = store.verify_digest(&target, index_digest).await.expect("the index digest must be kept");
    assert!(manifest::is_index(&promoted.media_type), "the promoted index must stay an index");
}

/// The revision an image declares (its `org.opencontainers.image.revision` annotation or image config
/// label) is what `resolve` reports, so that registration checks it the same way on every backend.
pub async fn revision_is_read(fixture: &StoreFixture) {
    let (image, commit) = fixture.revision.as_ref().expect("the revision_is_read clause needs fixture.revision");
    let resolved = fixture.store.resolve(image).await.expect("resolve of the image with a revision must succeed");
    assert_eq!(resolved.revision(), Some(commit.as_str()), "resolve must report the revision the image declares");
    let plain = fixture.store.resolve(&fixture.other_image).await.expect("resolve must succeed");
    assert_ne!(plain.revision(), Some(commit.as_str()), "another image must not report this revision");
}

fn missing_repository(fixture: &StoreFixture) -> ArtifactRef {
    ArtifactRef::by_tag(fixture.image.registry(), "promote-conformance/no-such-repo", "x").unwrap()
}
