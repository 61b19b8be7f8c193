//! `EcrStore` against moto: real HTTP, the real SDK.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::proxy::Proxy;
use common::{
    Moto, REGISTRY, create_repository, docker_manifest, index_manifest, manifest_at, oci_manifest, put_manifest,
    sdk_config,
};
use promote_aws::{EcrStore, RetryPolicy};
use promote_core::conformance::{self, StoreFixture};
use promote_core::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, is_index};
use promote_core::{ArtifactRef, ArtifactStore, Digest, Error, ErrorClass, Resource};

fn reference(repository: &str, tag: &str) -> ArtifactRef {
    ArtifactRef::by_tag(REGISTRY, repository, tag).unwrap()
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default().with_max_attempts(3).with_delays(Duration::from_millis(5), Duration::from_millis(50))
}

/// A store on moto. moto does not implement `GetDownloadUrlForLayer` (it answers 500), so these stores do
/// not read config labels; `tests/mocks.rs` covers that path, and
/// `a_revision_annotation_needs_no_config_download` the part moto can serve.
async fn store(endpoint: &str, immutable_tags: bool) -> EcrStore {
    EcrStore::builder()
        .sdk_config(&sdk_config(endpoint).await)
        .immutable_tags(immutable_tags)
        .read_config_labels(false)
        .retry_policy(fast_retry())
        .build()
        .await
        .unwrap()
}

/// Seeds `repository` with two images and a multi-platform index, and returns the suite's fixture.
async fn seed(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    immutable: bool,
) -> (ArtifactRef, Digest, ArtifactRef, Digest, (ArtifactRef, Digest)) {
    create_repository(ecr, repository, immutable).await;
    let image = put_manifest(ecr, repository, Some("build-a"), &oci_manifest("a"), OCI_MANIFEST).await;
    let other = put_manifest(ecr, repository, Some("build-b"), &docker_manifest("b"), DOCKER_MANIFEST).await;
    let amd = oci_manifest("amd64");
    let arm = oci_manifest("arm64");
    let amd_digest = put_manifest(ecr, repository, None, &amd, OCI_MANIFEST).await;
    let arm_digest = put_manifest(ecr, repository, None, &arm, OCI_MANIFEST).await;
    let index = index_manifest(
        OCI_INDEX,
        &[(amd_digest, amd.len(), OCI_MANIFEST, "amd64"), (arm_digest, arm.len(), OCI_MANIFEST, "arm64")],
    );
    let index_digest = put_manifest(ecr, repository, Some("multi"), &index, OCI_INDEX).await;
    (
        reference(repository, "build-a"),
        image,
        reference(repository, "build-b"),
        other,
        (reference(repository, "multi"), index_digest),
    )
}

#[tokio::test]
async fn conformance_on_a_mutable_repository() {
    let Some(moto) = Moto::start() else { return };
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    let (image, image_digest, other_image, other_digest, index) = seed(&ecr, "team/web", false).await;
    create_repository(&ecr, "team/api", false).await;
    let fixture = StoreFixture::new(
        Arc::new(store(&moto.endpoint, false).await),
        (image.clone(), image_digest),
        (other_image, other_digest),
        "conf",
    )
    .with_index(index.0, index.1)
    .with_other_repository(reference("team/api", "x"))
    .with_revision(image, "a");
    conformance::resolve_by_tag_and_digest(&fixture).await;
    conformance::missing_is_not_found(&fixture).await;
    conformance::exists_never_fails_for_missing(&fixture).await;
    conformance::promote_needs_a_digest(&fixture).await;
    conformance::retag_is_idempotent(&fixture).await;
    // A mutable repository, and the store not told otherwise: the tag moves.
    conformance::moving_a_tag(&fixture).await;
    // Without the oci-copy feature (and cross_registry) the capability is off: NotSupported.
    conformance::cross_repository(&fixture).await;
    conformance::index_kept_whole(&fixture).await;
    // From the annotation: moto cannot serve config blobs (tests/mocks.rs covers the labels).
    conformance::revision_is_read(&fixture).await;
}

#[tokio::test]
async fn conformance_on_an_immutable_repository() {
    let Some(moto) = Moto::start() else { return };
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    let (image, image_digest, other_image, other_digest, index) = seed(&ecr, "team/web", true).await;
    let fixture = StoreFixture::new(
        Arc::new(store(&moto.endpoint, true).await),
        (image, image_digest),
        (other_image, other_digest),
        "conf",
    )
    .with_index(index.0, index.1);
    // One repository, with immutable tags: every clause but the cross-repository one.
    conformance::resolve_by_tag_and_digest(&fixture).await;
    conformance::missing_is_not_found(&fixture).await;
    conformance::exists_never_fails_for_missing(&fixture).await;
    conformance::promote_needs_a_digest(&fixture).await;
    conformance::retag_is_idempotent(&fixture).await;
    conformance::immutable_tag_conflict(&fixture).await;
    conformance::index_kept_whole(&fixture).await;
}

#[tokio::test]
async fn a_retag_is_two_api_calls_and_keeps_the_manifest_bytes() {
    let Some(moto) = Moto::start() else { return };
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    create_repository(&ecr, "team/web", false).await;
    let manifest = oci_manifest("retag");
    let digest = put_manifest(&ecr, "team/web", Some("3f2c1a9"), &manifest, OCI_MANIFEST).await;
    let proxy = Proxy::start(&moto.endpoint).await;
    let store = store(&proxy.endpoint, false).await;

    let source = reference("team/web", "3f2c1a9").pinned(&digest);
    let promoted = store.promote(&source, &reference("team/web", "prd")).await.unwrap();
    assert_eq!(promoted.digest, digest);
    assert_eq!(promoted.revision(), Some("retag"), "the annotations come from the manifest");
    assert_eq!(proxy.calls(), ["BatchGetImage", "PutImage"], "a same-repository promotion is exactly 2 ECR calls");
    let (text, media_type) = manifest_at(&ecr, "team/web", "prd").await;
    assert_eq!(text, manifest, "the exact manifest string is put, not a re-serialisation");
    assert_eq!(media_type, OCI_MANIFEST);

    // Promoting again changes nothing and is not an error. The first call already shows the tag holding
    // the digest, so no PutImage is sent.
    proxy.reset();
    store.promote(&source, &reference("team/web", "prd")).await.expect("re-promotion is idempotent");
    assert_eq!(proxy.calls(), ["BatchGetImage"]);
    assert_eq!(store.resolve(&reference("team/web", "prd")).await.unwrap().digest, digest);
}

#[tokio::test]
async fn an_immutable_tag_held_by_another_digest_is_a_conflict_naming_both() {
    let Some(moto) = Moto::start() else { return };
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    create_repository(&ecr, "team/web", true).await;
    let held = put_manifest(&ecr, "team/web", Some("prd"), &oci_manifest("held"), OCI_MANIFEST).await;
    let wanted = put_manifest(&ecr, "team/web", Some("next"), &oci_manifest("next"), OCI_MANIFEST).await;
    // The store is not told the repository is immutable, so it sends the PutImage and the repository
    // refuses. Real ECR answers ImageTagAlreadyExistsException (see tests/mocks.rs); moto answers
    // ImageAlreadyExistsException, which the store checks against the tag before calling it success.
    let store = store(&moto.endpoint, false).await;
    let error =
        store.promote(&reference("team/web", "next").pinned(&wanted), &reference("team/web", "prd")).await.unwrap_err();
    match &error {
        Error::TagConflict { existing, wanted: refused, reference } => {
            assert_eq!((existing, refused), (&held, &wanted));
            assert!(reference.ends_with("team/web:prd"), "{reference}");
        }
        other => panic!("expected TagConflict, got {other:?}"),
    }
    assert!(error.to_string().contains(held.as_str()) && error.to_string().contains(wanted.as_str()), "{error}");
    assert_eq!(store.resolve(&reference("team/web", "prd")).await.unwrap().digest, held, "nothing changed");
}

#[tokio::test]
async fn missing_repository_image_and_tag_are_distinct_errors_naming_them() {
    let Some(moto) = Moto::start() else { return };
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    create_repository(&ecr, "team/web", false).await;
    let digest = put_manifest(&ecr, "team/web", Some("v1"), &oci_manifest("v1"), OCI_MANIFEST).await;
    let store = store(&moto.endpoint, false).await;

    let error = store.resolve(&reference("team/nope", "v1")).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { resource: Resource::Repository, .. }), "{error:?}");
    assert!(error.to_string().contains("team/nope") && error.to_string().contains(":v1"), "{error}");

    let error = store.resolve(&reference("team/web", "v2")).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { resource: Resource::Artifact, .. }), "{error:?}");
    assert!(error.to_string().contains("team/web:v2"), "{error}");

    let absent = reference("team/web", "v1").pinned(&Digest::sha256_of(b"absent"));
    let error = store.resolve(&absent).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { resource: Resource::Artifact, .. }), "{error:?}");
    assert!(error.to_string().contains(absent.digest().unwrap().as_str()), "{error}");

    let error = store.promote(&absent, &reference("team/web", "prd")).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { resource: Resource::Artifact, .. }), "{error:?}");
    let error =
        store.promote(&reference("team/nope", "v1").pinned(&digest), &reference("team/nope", "prd")).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { resource: Resource::Repository, .. }), "{error:?}");

    assert!(store.exists(&reference("team/web", "v1").pinned(&digest)).await.unwrap());
    assert!(!store.exists(&absent).await.unwrap());
    assert!(!store.exists(&reference("team/nope", "v1").pinned(&digest)).await.unwrap());
}

#[tokio::test]
async fn resolve_accepts_all_four_media_types() {
    let Some(moto) = Moto::start() else { return };
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    create_repository(&ecr, "team/web", false).await;
    let oci = oci_manifest("oci");
    let docker = docker_manifest("docker");
    let oci_digest = put_manifest(&ecr, "team/web", Some("oci"), &oci, OCI_MANIFEST).await;
    let docker_digest = put_manifest(&ecr, "team/web", Some("docker"), &docker, DOCKER_MANIFEST).await;
    let oci_index = index_manifest(OCI_INDEX, &[(oci_digest.clone(), oci.len(), OCI_MANIFEST, "amd64")]);
    let docker_list =
        index_manifest(DOCKER_MANIFEST_LIST, &[(docker_digest.clone(), docker.len(), DOCKER_MANIFEST, "amd64")]);
    let oci_index_digest = put_manifest(&ecr, "team/web", Some("oci-index"), &oci_index, OCI_INDEX).await;
    let docker_list_digest =
        put_manifest(&ecr, "team/web", Some("docker-list"), &docker_list, DOCKER_MANIFEST_LIST).await;
    let store = store(&moto.endpoint, false).await;
    for (tag, digest, media_type, size) in [
        ("oci", &oci_digest, OCI_MANIFEST, oci.len()),
        ("docker", &docker_digest, DOCKER_MANIFEST, docker.len()),
        ("oci-index", &oci_index_digest, OCI_INDEX, oci_index.len()),
        ("docker-list", &docker_list_digest, DOCKER_MANIFEST_LIST, docker_list.len()),
    ] {
        let artifact = store.resolve(&reference("team/web", tag)).await.unwrap();
        assert_eq!(
            (&artifact.digest, artifact.media_type.as_str(), artifact.size),
            (digest, media_type, size as u64),
            "{tag}"
        );
        let by_digest = store.resolve(&reference("team/web", tag).pinned(digest)).await.unwrap();
        assert_eq!(by_digest.media_type, media_type, "{tag} by digest");
    }
}

#[tokio::test]
async fn a_multi_arch_index_is_promoted_with_one_put_of_the_index() {
    let Some(moto) = Moto::start() else { return };
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    create_repository(&ecr, "team/web", true).await;
    let amd = docker_manifest("amd64");
    let arm = docker_manifest("arm64");
    let amd_digest = put_manifest(&ecr, "team/web", None, &amd, DOCKER_MANIFEST).await;
    let arm_digest = put_manifest(&ecr, "team/web", None, &arm, DOCKER_MANIFEST).await;
    let list = index_manifest(
        DOCKER_MANIFEST_LIST,
        &[(amd_digest, amd.len(), DOCKER_MANIFEST, "amd64"), (arm_digest, arm.len(), DOCKER_MANIFEST, "arm64")],
    );
    let list_digest = put_manifest(&ecr, "team/web", Some("3f2c1a9"), &list, DOCKER_MANIFEST_LIST).await;
    let proxy = Proxy::start(&moto.endpoint).await;
    let store = store(&proxy.endpoint, true).await;

    let promoted = store
        .promote(&reference("team/web", "3f2c1a9").pinned(&list_digest), &reference("team/web", "stg"))
        .await
        .unwrap();
    assert_eq!(promoted.digest, list_digest, "the index digest, not a platform's");
    assert!(is_index(&promoted.media_type));
    assert_eq!(proxy.calls(), ["BatchGetImage", "PutImage"], "one PUT of the index, nothing per platform");
    assert_eq!(manifest_at(&ecr, "team/web", "stg").await, (list, DOCKER_MANIFEST_LIST.to_owned()));
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_and_then_reported_as_exhausted() {
    let Some(moto) = Moto::start() else { return };
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    create_repository(&ecr, "team/web", false).await;
    let digest = put_manifest(&ecr, "team/web", Some("v1"), &oci_manifest("v1"), OCI_MANIFEST).await;
    let proxy = Proxy::start(&moto.endpoint).await;
    let store = store(&proxy.endpoint, false).await; // 3 attempts per call

    proxy.fail_next("BatchGetImage", 2, "ThrottlingException");
    proxy.fail_next("PutImage", 1, "LimitExceededException");
    let source = reference("team/web", "v1").pinned(&digest);
    store.promote(&source, &reference("team/web", "stg")).await.expect("throttled calls are retried");
    assert_eq!((proxy.count("BatchGetImage"), proxy.count("PutImage")), (3, 2));

    proxy.reset();
    proxy.fail_next("BatchGetImage", 10, "ThrottlingException");
    let error = store.resolve(&reference("team/web", "stg")).await.unwrap_err();
    assert!(matches!(error, Error::Backend { class: ErrorClass::Exhausted, .. }), "{error:?}");
    assert!(!error.is_retryable() && error.may_succeed_later(), "the SDK gave up: no layer repeats it: {error}");
    assert!(error.to_string().contains("throttled") && error.to_string().contains("team/web:stg"), "{error}");
    assert_eq!(proxy.count("BatchGetImage"), 3, "bounded by the policy's attempts");
}

/// What moto can show of config labels: a manifest that carries the revision annotation resolves with it in
/// one `BatchGetImage`, with label reading on, and no `GetDownloadUrlForLayer`.
#[tokio::test]
async fn a_revision_annotation_needs_no_config_download() {
    let Some(moto) = Moto::start() else { return };
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    create_repository(&ecr, "team/web", false).await;
    let digest = put_manifest(&ecr, "team/web", Some("v1"), &oci_manifest("3f2c1a9"), OCI_MANIFEST).await;
    let proxy = Proxy::start(&moto.endpoint).await;
    let store = EcrStore::builder()
        .sdk_config(&sdk_config(&proxy.endpoint).await)
        .retry_policy(fast_retry())
        .build()
        .await
        .unwrap();
    let artifact = store.resolve(&reference("team/web", "v1")).await.unwrap();
    assert_eq!((&artifact.digest, artifact.revision()), (&digest, Some("3f2c1a9")));
    assert_eq!(proxy.calls(), ["BatchGetImage"]);
}

/// A promotion whose target is an immutable tag held by another build fails, recorded with the reason
/// (never left "in progress"), and the error says how to place builds in an immutable repository. The store
/// is built with static credentials from the builder, the way a tool holding its own keys builds it.
#[tokio::test]
async fn a_conflicting_immutable_tag_fails_the_promotion_with_a_hint() {
    use promote_core::ledger::{FinalState, PromotionState, Step};
    use promote_core::{BuildRequest, MemoryLedger, Pipeline, Secret, Stage};

    let Some(moto) = Moto::start() else { return };
    let ecr = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    create_repository(&ecr, "team/api", true).await;
    let first = put_manifest(&ecr, "team/api", Some("1111111"), &oci_manifest("1111111"), OCI_MANIFEST).await;
    put_manifest(&ecr, "team/api", Some("2222222"), &oci_manifest("2222222"), OCI_MANIFEST).await;
    let store = EcrStore::builder()
        .region(common::REGION)
        .endpoint_url(&moto.endpoint)
        .static_credentials("testing", Secret::new("testing"), None)
        .immutable_tags(true)
        .build()
        .await
        .unwrap();
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store))
        .ledger(Arc::new(MemoryLedger::new()))
        .stage(Stage::new("stg"))
        .build()
        .unwrap();
    let build = |commit: &str| BuildRequest::new(commit).artifact("api", reference("team/api", commit));
    let one = pipeline.register(build("1111111"), "ci").await.unwrap();
    assert_eq!(one.artifacts["api"].digest, first);
    pipeline.promote(&one.id, "stg", "ci").await.unwrap();
    let two = pipeline.register(build("2222222"), "ci").await.unwrap();

    let error = pipeline.promote(&two.id, "stg", "ci").await.unwrap_err();
    assert!(matches!(error.root(), Error::TagConflict { .. }), "{error:?}");
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(message.contains("artifact api") && message.contains("{stage}-{commit}"), "{message}");
    let history = pipeline.history(Some("stg")).await.unwrap();
    let last = history.last().unwrap();
    assert!(
        matches!(&last.state, PromotionState::Finished(FinalState::Failed { step: Step::Artifacts, reason }) if reason.contains("immutable")),
        "{:?}",
        last.state
    );
    let status = pipeline.status().await.unwrap();
    assert!(status.stage("stg").unwrap().in_progress.is_empty(), "nothing stays in progress");
}
