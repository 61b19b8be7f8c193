//! Error shapes moto cannot produce, in the exact wire form real ECR and Secrets Manager return them,
//! served in-process by `aws-smithy-mocks` and mapped to typed errors.

use std::time::Duration;

use aws_sdk_ecr::operation::batch_get_image::BatchGetImageOutput;
use aws_sdk_ecr::types::{Image, ImageIdentifier};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use promote_aws::{EcrStore, SecretSpec, SecretsManagerSource};
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{ArtifactRef, ArtifactStore, ConfigRequest, ConfigSource, Digest, Error, ErrorClass, Resource};

const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

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
