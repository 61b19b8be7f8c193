//! Error shapes moto cannot produce, in the exact wire form real ECR and Secrets Manager return them,
//! served in-process by `aws-smithy-mocks` and mapped to typed errors; and reading config labels through
//! `GetDownloadUrlForLayer`, which moto does not implement, from a loopback server that stands in for S3.

mod common;

use std::time::Duration;

use aws_sdk_ecr::operation::batch_get_image::BatchGetImageOutput;
use aws_sdk_ecr::operation::get_download_url_for_layer::GetDownloadUrlForLayerOutput;
use aws_sdk_ecr::types::{Image, ImageIdentifier};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use common::blob_server::{Blob, BlobServer};
use promote_aws::{EcrStore, SecretSpec, SecretsManagerSource};
use promote_core::manifest::{OCI_MANIFEST, REVISION_ANNOTATION};
use promote_core::{ArtifactRef, ArtifactStore, ConfigRequest, ConfigSource, Digest, Error, ErrorClass, Resource};

const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// An image manifest that carries its revision, so that resolving it needs no config download.
const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"annotations":{"org.opencontainers.image.revision":"from-annotation"}}"#;

/// An AWS JSON-protocol error body, as the services send it.
fn aws_error(code: &str, message: &str) -> Option<String> {
    Some(format!(r#"{{"__type":"{code}","message":"{message}"}}"#))
}

fn image(digest: &Digest, tag: Option<&str>) -> Image {
    Image::builder()
        .image_id(
            ImageIdentifier::builder().image_digest(digest.as_str()).set_image_tag(tag.map(str::to_owned)).build(),
        )
        .image_manifest(MANIFEST)
        .image_manifest_media_type(OCI_MANIFEST)
        .build()
}

fn reference(tag: &str) -> ArtifactRef {
    ArtifactRef::by_tag(REGISTRY, "team/web", tag).unwrap()
}

macro_rules! retrying {
    () => {
        |config: aws_sdk_ecr::config::Builder| {
            config.retry_config(
                aws_sdk_ecr::config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
        }
    };
}

#[tokio::test]
async fn image_tag_already_exists_is_a_tag_conflict_naming_both_digests() {
    let source = Digest::sha256_of(MANIFEST.as_bytes());
    let held = Digest::sha256_of(b"another build");
    let (source_for_rule, held_for_rule) = (source.clone(), held.clone());
    // Real ECR, immutable repository, the store not told so: the tag's holder shows in the first call,
    // PutImage is refused with ImageTagAlreadyExistsException.
    let get = mock!(aws_sdk_ecr::Client::batch_get_image).then_output(move || {
        BatchGetImageOutput::builder()
            .images(image(&source_for_rule, None))
            .images(image(&held_for_rule, Some("prd")))
            .build()
    });
    let put = mock!(aws_sdk_ecr::Client::put_image).sequence().http_status(400, aws_error("ImageTagAlreadyExistsException", "The image tag 'prd' already exists in the 'team/web' repository and cannot be overwritten because the tag is immutable.")).repeatedly().build();
    let client = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [&get, &put]);
    let store = EcrStore::from_client(client);
    let error = store.promote(&reference("v1").pinned(&source), &reference("prd")).await.unwrap_err();
    match error {
        Error::TagConflict { existing, wanted, .. } => assert_eq!((existing, wanted), (held, source)),
        other => panic!("expected TagConflict, got {other:?}"),
    }
    assert_eq!((get.num_calls(), put.num_calls()), (1, 1));
}

#[tokio::test]
async fn image_already_exists_is_success_when_the_tag_holds_the_digest() {
    let source = Digest::sha256_of(MANIFEST.as_bytes());
    let (first, second) = (source.clone(), source.clone());
    // The tag was set by someone else between our read and our write: ECR says "already exists".
    let get = mock!(aws_sdk_ecr::Client::batch_get_image)
        .sequence()
        .output(move || BatchGetImageOutput::builder().images(image(&first, None)).build())
        .output(move || BatchGetImageOutput::builder().images(image(&second, Some("prd"))).build())
        .build();
    let put = mock!(aws_sdk_ecr::Client::put_image)
        .sequence()
        .http_status(400, aws_error("ImageAlreadyExistsException", "Image with digest and tag 'prd' already exists"))
        .build();
    let client = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [&get, &put]);
    let promoted =
        EcrStore::from_client(client).promote(&reference("v1").pinned(&source), &reference("prd")).await.unwrap();
    assert_eq!(promoted.digest, source);
}

#[tokio::test]
async fn throttling_and_limit_exceeded_are_retried_then_reported_exhausted() {
    let source = Digest::sha256_of(MANIFEST.as_bytes());
    let found = source.clone();
    let get = mock!(aws_sdk_ecr::Client::batch_get_image)
        .sequence()
        .http_status(400, aws_error("ThrottlingException", "Rate exceeded"))
        .http_status(
            400,
            aws_error(
                "LimitExceededException",
                "The operation did not succeed because it would have exceeded a service limit",
            ),
        )
        .output(move || BatchGetImageOutput::builder().images(image(&found, Some("v1"))).build())
        .http_status(400, aws_error("ThrottlingException", "Rate exceeded"))
        .times(3)
        .build();
    let client = mock_client!(aws_sdk_ecr, RuleMode::Sequential, [&get], retrying!());
    let store = EcrStore::from_client(client);
    let artifact = store.resolve(&reference("v1")).await.expect("retried past two throttles");
    assert_eq!(artifact.digest, source);
    assert_eq!(get.num_calls(), 3);

    let error = store.resolve(&reference("v1")).await.unwrap_err();
    assert!(matches!(error, Error::Backend { class: ErrorClass::Exhausted, .. }), "{error:?}");
    assert!(!error.is_retryable() && error.may_succeed_later(), "the SDK retried it already: {error}");
    assert!(error.to_string().contains("ThrottlingException") && error.to_string().contains("team/web:v1"), "{error}");
    assert!(std::error::Error::source(&error).is_some(), "the SDK's error is kept as the source: {error:?}");
    assert_eq!(get.num_calls(), 6, "three attempts, then the error");
}

#[tokio::test]
async fn access_denied_is_permission_denied_naming_repository_and_reference() {
    let get = mock!(aws_sdk_ecr::Client::batch_get_image)
        .sequence()
        .http_status(
            400,
            aws_error(
                "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:BatchGetImage",
            ),
        )
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_ecr, [&get]);
    let error = EcrStore::from_client(client).resolve(&reference("v1")).await.unwrap_err();
    assert!(matches!(error, Error::PermissionDenied { backend: "ecr", .. }), "{error:?}");
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(message.contains("team/web:v1") && message.contains("ecr:BatchGetImage"), "{message}");
}

#[tokio::test]
async fn repository_and_image_not_found_exceptions_are_typed() {
    let get = mock!(aws_sdk_ecr::Client::describe_images)
        .sequence()
        .http_status(400, aws_error("ImageNotFoundException", "The image requested does not exist"))
        .http_status(400, aws_error("RepositoryNotFoundException", "The repository does not exist"))
        .http_status(400, aws_error("ServerException", "internal error"))
        .times(3)
        .build();
    let client = mock_client!(aws_sdk_ecr, RuleMode::Sequential, [&get], retrying!());
    let store = EcrStore::from_client(client);
    let pinned = reference("v1").pinned(&Digest::sha256_of(b"x"));
    assert!(!store.exists(&pinned).await.unwrap(), "a missing image is `false`");
    assert!(!store.exists(&pinned).await.unwrap(), "a missing repository is `false`");
    let error = store.exists(&pinned).await.unwrap_err();
    assert!(error.is_retryable(), "a server fault stays retryable: {error:?}");
}

macro_rules! secrets_retrying {
    () => {
        |config: aws_sdk_secretsmanager::config::Builder| {
            config.retry_config(
                aws_sdk_secretsmanager::config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
        }
    };
}

async fn secrets_source(client: aws_sdk_secretsmanager::Client) -> SecretsManagerSource {
    SecretsManagerSource::builder()
        .client(client)
        .stage("prd", [SecretSpec::string("prd/token", "TOKEN")])
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn secrets_access_denied_is_permission_denied_without_the_value() {
    let batch = mock!(aws_sdk_secretsmanager::Client::batch_get_secret_value)
        .sequence()
        .http_status(
            400,
            aws_error("AccessDeniedException", "not authorized to perform: secretsmanager:BatchGetSecretValue"),
        )
        .repeatedly()
        .build();
    let get = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
        .sequence()
        .http_status(
            400,
            aws_error("AccessDeniedException", "not authorized to perform: secretsmanager:GetSecretValue"),
        )
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&batch, &get]);
    let error = secrets_source(client).await.load(&ConfigRequest::new("prd")).await.unwrap_err();
    assert!(matches!(error, Error::PermissionDenied { backend: "secrets-manager", .. }), "{error:?}");
    assert!(error.to_string().contains("prd/token"), "{error}");
    assert_eq!((batch.num_calls(), get.num_calls()), (1, 1), "a refused batch falls back to GetSecretValue");
}

#[tokio::test]
async fn a_refused_batch_falls_back_to_single_reads() {
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
    let batch = mock!(aws_sdk_secretsmanager::Client::batch_get_secret_value)
        .sequence()
        .http_status(
            400,
            aws_error("AccessDeniedException", "not authorized to perform: secretsmanager:BatchGetSecretValue"),
        )
        .build();
    let get = mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_output(|| {
        GetSecretValueOutput::builder()
            .name("prd/token")
            .version_id("a1b2c3d4-5678-90ab-cdef-EXAMPLE11111")
            .secret_string("fallback-value")
            .build()
    });
    let client = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&batch, &get]);
    let set = secrets_source(client).await.load(&ConfigRequest::new("prd")).await.unwrap();
    let entry = set.get("TOKEN").unwrap();
    assert_eq!(
        (entry.value.expose(), entry.version.as_deref()),
        ("fallback-value", Some("a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"))
    );
}

#[tokio::test]
async fn secrets_throttling_is_retried_then_exhausted() {
    let batch = mock!(aws_sdk_secretsmanager::Client::batch_get_secret_value)
        .sequence()
        .http_status(400, aws_error("ThrottlingException", "Rate exceeded"))
        .times(3)
        .build();
    let client = mock_client!(aws_sdk_secretsmanager, RuleMode::Sequential, [&batch], secrets_retrying!());
    let error = secrets_source(client).await.load(&ConfigRequest::new("prd")).await.unwrap_err();
    assert!(matches!(&error, Error::ConfigSource { class: ErrorClass::Exhausted, .. }), "{error:?}");
    assert!(!error.is_retryable() && error.may_succeed_later(), "{error}");
    assert_eq!(batch.num_calls(), 3);
}

#[tokio::test]
async fn a_missing_pinned_version_names_the_key() {
    use aws_sdk_secretsmanager::operation::batch_get_secret_value::BatchGetSecretValueOutput;
    use aws_sdk_secretsmanager::types::SecretValueEntry;
    let batch = mock!(aws_sdk_secretsmanager::Client::batch_get_secret_value).then_output(|| {
        BatchGetSecretValueOutput::builder()
            .secret_values(
                SecretValueEntry::builder()
                    .name("prd/token")
                    .version_id("v-current-0000000000000000000000")
                    .secret_string("pinned-canary")
                    .build(),
            )
            .build()
    });
    // Real Secrets Manager refuses a malformed version id as a validation error, not "not found".
    let get = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
        .sequence()
        .http_status(400, aws_error("InvalidParameterException", "Invalid VersionId"))
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&batch, &get]);
    let pins = [("TOKEN".to_owned(), "no-such-version".to_owned())].into();
    let error = secrets_source(client).await.load(&ConfigRequest::new("prd").with_pins(pins)).await.unwrap_err();
    assert!(matches!(error.root(), Error::NotFound { resource: Resource::ConfigKey, .. }), "{error:?}");
    assert!(error.to_string().contains("TOKEN") && !error.to_string().contains("pinned-canary"), "{error}");
}

/// An image config declaring `revision` in its labels, and a manifest (without annotations) naming it.
fn labelled_image(revision: &str) -> (Vec<u8>, String) {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"{REVISION_ANNOTATION}":"{revision}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
        Digest::sha256_of(&config),
        config.len()
    );
    (config, manifest)
}

fn image_with(manifest: &str) -> Image {
    Image::builder()
        .image_id(
            ImageIdentifier::builder()
                .image_digest(Digest::sha256_of(manifest.as_bytes()).as_str())
                .image_tag("v1")
                .build(),
        )
        .image_manifest(manifest)
        .image_manifest_media_type(OCI_MANIFEST)
        .build()
}

/// A store whose ECR API (mocked) serves `manifest` and answers `GetDownloadUrlForLayer` with `url`.
fn labelled_store(manifest: &str, url: String) -> (EcrStore, aws_smithy_mocks::Rule) {
    let manifest = manifest.to_owned();
    let get = mock!(aws_sdk_ecr::Client::batch_get_image)
        .then_output(move || BatchGetImageOutput::builder().images(image_with(&manifest)).build());
    let download = mock!(aws_sdk_ecr::Client::get_download_url_for_layer)
        .then_output(move || GetDownloadUrlForLayerOutput::builder().download_url(url.clone()).build());
    let client =
        mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [&get, &download], |config: aws_sdk_ecr::config::Builder| {
            config.retry_config(
                aws_sdk_ecr::config::retry::RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
        });
    (EcrStore::from_client(client), download)
}

/// The download URL of `server`, signed the way S3 signs one: the signature must never reach an error.
fn signed_url(server: &BlobServer) -> String {
    format!("{}/ecr-layer/config?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=s1gnature-canary", server.base)
}

#[tokio::test]
async fn the_revision_comes_from_the_config_labels_when_the_manifest_lacks_it() {
    let (config, manifest) = labelled_image("c0ffee");
    let server = BlobServer::start(Blob::Bytes(config)).await;
    let (store, download) = labelled_store(&manifest, signed_url(&server));
    let artifact = store.resolve(&reference("v1")).await.unwrap();
    assert_eq!(artifact.revision(), Some("c0ffee"), "as promote-oci reads it: {:?}", artifact.annotations);
    assert_eq!(download.num_calls(), 1);
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(!requests[0].authorization && requests[0].query.contains("X-Amz-Signature"), "the pre-signed URL as given");

    // An annotation wins, and costs no download.
    let (store, download) = labelled_store(MANIFEST, signed_url(&server));
    assert_eq!(store.resolve(&reference("v1")).await.unwrap().revision(), Some("from-annotation"));
    assert_eq!(download.num_calls(), 0);
}

#[tokio::test]
async fn a_config_is_believed_only_if_it_matches_its_digest_and_size() {
    let (config, manifest) = labelled_image(&"a".repeat(40));
    let forged = String::from_utf8(config.clone()).unwrap().replace(&"a".repeat(40), &"b".repeat(40)).into_bytes();
    let mut longer = config.clone();
    longer.extend_from_slice(b"    ");
    for (blob, expected) in
        [(Blob::Bytes(forged), "digest"), (Blob::Bytes(longer), "larger than"), (Blob::Endless, "larger than")]
    {
        let server = BlobServer::start(blob).await;
        let (store, _) = labelled_store(&manifest, signed_url(&server));
        let error = tokio::time::timeout(Duration::from_secs(120), store.resolve(&reference("v1")))
            .await
            .expect("bounded")
            .unwrap_err();
        match expected {
            "digest" => {
                assert!(matches!(error, Error::DigestMismatch { .. }), "forged labels were believed: {error:?}")
            }
            _ => {
                assert!(matches!(error, Error::Backend { class: ErrorClass::Persistent, .. }), "{error:?}");
                assert!(error.to_string().contains(expected), "{error}");
            }
        }
        assert!(!format!("{error:?}").contains("s1gnature-canary"), "the signed URL leaked: {error:?}");
    }
}

#[tokio::test]
async fn a_download_url_must_be_https_unless_it_is_loopback() {
    let (_, manifest) = labelled_image("c0ffee");
    let url = "http://203.0.113.7/ecr-layer/config?X-Amz-Signature=s1gnature-canary".to_owned();
    let (store, _) = labelled_store(&manifest, url);
    let error = store.resolve(&reference("v1")).await.unwrap_err();
    assert!(error.to_string().contains("not https"), "{error}");
    assert!(!format!("{error:?}").contains("s1gnature-canary"), "{error:?}");
}

#[tokio::test]
async fn a_config_ecr_does_not_hold_adds_nothing_and_a_refusal_names_the_permission() {
    let (_, manifest) = labelled_image("c0ffee");
    for (code, refused) in [("LayersNotFoundException", false), ("AccessDeniedException", true)] {
        let manifest = manifest.clone();
        let get = mock!(aws_sdk_ecr::Client::batch_get_image)
            .then_output(move || BatchGetImageOutput::builder().images(image_with(&manifest)).build());
        let download = mock!(aws_sdk_ecr::Client::get_download_url_for_layer)
            .sequence()
            .http_status(400, aws_error(code, "no"))
            .build();
        let client = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [&get, &download]);
        let resolved = EcrStore::from_client(client).resolve(&reference("v1")).await;
        if refused {
            let error = resolved.unwrap_err();
            assert!(matches!(error, Error::PermissionDenied { .. }), "{error:?}");
            assert!(error.to_string().contains("ecr:GetDownloadUrlForLayer"), "{error}");
        } else {
            assert_eq!(resolved.unwrap().revision(), None, "{code}");
        }
    }

    // Turned off, the store makes no such call.
    let manifest = manifest.clone();
    let get = mock!(aws_sdk_ecr::Client::batch_get_image)
        .then_output(move || BatchGetImageOutput::builder().images(image_with(&manifest)).build());
    let download = mock!(aws_sdk_ecr::Client::get_download_url_for_layer)
        .then_output(|| GetDownloadUrlForLayerOutput::builder().build());
    let client = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [&get, &download]);
    let store = EcrStore::builder().client(client).read_config_labels(false).build().await.unwrap();
    assert_eq!(store.resolve(&reference("v1")).await.unwrap().revision(), None);
    assert_eq!(download.num_calls(), 0);
}
