//! [`EcrStore`]: an [`ArtifactStore`] on the Amazon ECR API.
//!
//! - `builder.rs`: [`EcrStoreBuilder`] and the spec form [`EcrConfig`].
//! - `image_config.rs`: fetching the config blob for its labels (`GetDownloadUrlForLayer`).
//! - `credentials.rs` (feature `oci-copy`): ECR authorization tokens for the OCI copy engine.

mod builder;
#[cfg(feature = "oci-copy")]
mod credentials;
mod image_config;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ecr::operation::batch_get_image::BatchGetImageOutput;
use aws_sdk_ecr::types::{Image, ImageIdentifier};
use promote_core::backend::{check_exists_args, check_promote_args};
use promote_core::manifest::{self, MANIFEST_MEDIA_TYPES, ManifestSummary, add_config_labels};
use promote_core::{
    Artifact, ArtifactRef, ArtifactStore, Digest, Error, ErrorClass, Resource, Result, StoreCapabilities,
};
use tracing::{debug, instrument};

pub use builder::{EcrConfig, EcrStoreBuilder};
#[cfg(feature = "oci-copy")]
pub use credentials::EcrCredentialProvider;
use image_config::ConfigFetcher;

use crate::connection::policy_of;
use crate::error::{AwsFailure, ECR, ecr_error};

/// An [`ArtifactStore`] for Amazon ECR.
///
/// References name ECR registries the way `docker` does: `<account>.dkr.ecr.<region>.amazonaws.com/<repo>`
/// (the account becomes the API's `registryId`, so repositories shared from other accounts work), or a
/// host declared with [`EcrStoreBuilder::registry_alias`]. The store serves the region of its client.
///
/// - `resolve` is one `BatchGetImage` call that accepts all four manifest media types, so an OCI index
///   or a Docker manifest list resolves as itself, never as one of its platforms.
/// - `promote` within a repository is one `BatchGetImage` (the source manifest, and whoever holds the target
///   tag) and one `PutImage` of the exact manifest string with its media type and `imageDigest`. No layer
///   moves; for a multi-platform index, putting the index is enough because its children are already in the
///   repository. The digest `PutImage` reports is checked against the source.
/// - Promotion into another repository, account or region needs the `oci-copy` feature
///   (`EcrStoreBuilder::cross_registry`); without it, it is [`Error::NotSupported`].
/// - `resolve` also reads the revision from the image config's labels when the manifest's annotations
///   lack it, as `promote-oci` does: `GetDownloadUrlForLayer` of the config (at most 1 MiB), fetched from
///   the pre-signed URL and checked against its digest. That needs `ecr:GetDownloadUrlForLayer`; turn it off
///   with [`EcrStoreBuilder::read_config_labels`].
/// - Throttling (`ThrottlingException`, `LimitExceededException`), 5xx and connection failures are retried
///   by the SDK with exponential backoff; what it gave up on is
///   [`ErrorClass::Exhausted`](promote_core::ErrorClass::Exhausted).
#[derive(Debug, Clone)]
pub struct EcrStore {
    client: aws_sdk_ecr::Client,
    region: Option<String>,
    /// The attempts the client makes per call, for classifying what it gave up on.
    sdk_attempts: u32,
    immutable_tags: bool,
    registry_aliases: BTreeSet<String>,
    /// Reads config labels; `None` when turned off.
    config_labels: Option<Arc<ConfigFetcher>>,
    #[cfg(feature = "oci-copy")]
    copier: Option<Arc<dyn ArtifactStore>>,
}

/// Where a reference's repository lives, in API terms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    /// The account that owns the registry; `None` means the caller's own.
    registry_id: Option<String>,
}

/// The account and region of an ECR registry host, if `host` is one.
fn parse_registry_host(host: &str) -> Option<(&str, &str)> {
    let (account, rest) = host.split_once('.')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = rest
        .strip_prefix("dkr.ecr.")
        .or_else(|| rest.strip_prefix("dkr.ecr-fips."))
        .or_else(|| rest.strip_prefix("dkr-ecr."))
        .or_else(|| rest.strip_prefix("dkr-ecr-fips."))?;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))
        .or_else(|| rest.strip_suffix(".on.aws"))?;
    (!region.is_empty() && !region.contains('.')).then_some((account, region))
}

impl EcrStore {
    /// A builder; unset AWS settings come from the standard `aws-config` chain.
    pub fn builder() -> EcrStoreBuilder {
        EcrStoreBuilder::new()
    }

    /// A store on the standard AWS chain: credentials, region and endpoint from the environment
    /// (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL_ECR`, …), the shared config files, SSO, web identity
    /// or instance metadata.
    pub async fn from_env() -> Result<Self> {
        EcrStoreBuilder::new().build().await
    }

    /// A store over an ECR client configured elsewhere, with the defaults of [`EcrStoreBuilder`] (mutable
    /// tags, config labels read).
    pub fn from_client(client: aws_sdk_ecr::Client) -> Self {
        EcrStore::over(client, &EcrConfig::default())
    }

    /// A store over `client` with `settings` (the cross-registry copier is added by the builder).
    fn over(client: aws_sdk_ecr::Client, settings: &EcrConfig) -> Self {
        let config = client.config();
        let region = config.region().map(|region| region.to_string());
        let retry = policy_of(config.retry_config());
        let config_labels = settings.read_config_labels.then(|| Arc::new(ConfigFetcher::new(retry)));
        EcrStore {
            client,
            region,
            sdk_attempts: retry.max_attempts,
            immutable_tags: settings.immutable_tags,
            registry_aliases: settings.registry_aliases.iter().cloned().collect(),
            config_labels,
            #[cfg(feature = "oci-copy")]
            copier: None,
        }
    }

    /// The region this store's client calls.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The API location of `reference`, or `None` when this store's client cannot reach it.
    fn locate(&self, reference: &ArtifactRef) -> Option<Location> {
        if self.registry_aliases.contains(reference.registry()) {
            return Some(Location { registry_id: None });
        }
        let (account, region) = parse_registry_host(reference.registry())?;
        (self.region.as_deref() == Some(region)).then(|| Location { registry_id: Some(account.to_owned()) })
    }

    fn unreachable(&self, operation: &str, reference: &ArtifactRef) -> Error {
        Error::NotSupported {
            backend: ECR,
            operation: format!(
                "{operation} of {reference}: not an ECR registry in {} (declare other hosts with registry_alias)",
                self.region.as_deref().unwrap_or("the configured region")
            ),
        }
    }

    /// One `BatchGetImage` call accepting every manifest media type.
    async fn batch_get(
        &self,
        location: &Location,
        reference: &ArtifactRef,
        ids: Vec<ImageIdentifier>,
    ) -> Result<BatchGetImageOutput> {
        self.client
            .batch_get_image()
            .set_registry_id(location.registry_id.clone())
            .repository_name(reference.repository())
            .set_image_ids(Some(ids))
            .set_accepted_media_types(Some(MANIFEST_MEDIA_TYPES.iter().map(|t| (*t).to_owned()).collect()))
            .send()
            .await
            .map_err(|error| ecr_error("BatchGetImage", reference, self.failure(error)))
    }

    /// An SDK error of this store's client.
    fn failure<E>(&self, error: aws_sdk_ecr::error::SdkError<E, aws_sdk_ecr::config::http::HttpResponse>) -> AwsFailure
    where
        E: aws_sdk_ecr::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        AwsFailure::from_sdk(error, self.sdk_attempts)
    }

    /// Adds the config's labels to `artifact`'s annotations when its manifest lacks the revision (see
    /// `image_config.rs`). A config ECR does not hold (`LayersNotFoundException`) adds nothing.
    async fn add_config_labels(
        &self,
        location: &Location,
        reference: &ArtifactRef,
        summary: &ManifestSummary,
        artifact: &mut Artifact,
    ) -> Result<()> {
        let Some(fetcher) = &self.config_labels else { return Ok(()) };
        let Some(config) = summary.config_for_labels() else { return Ok(()) };
        let answer = self
            .client
            .get_download_url_for_layer()
            .set_registry_id(location.registry_id.clone())
            .repository_name(reference.repository())
            .layer_digest(config.digest.as_str())
            .send()
            .await;
        let url = match answer {
            Ok(output) => output.download_url().map(str::to_owned),
            Err(error) => {
                let failure = self.failure(error);
                if failure.is("LayersNotFoundException") || failure.is("LayerInaccessibleException") {
                    debug!(%reference, config = %config.digest, %failure, "the config blob is not readable: no labels");
                    return Ok(());
                }
                if failure.is_access_denied() {
                    return Err(Error::PermissionDenied {
                        backend: ECR,
                        message: format!(
                            "GetDownloadUrlForLayer of the config of {reference}: {failure} (reading the revision \
                             from the config labels needs ecr:GetDownloadUrlForLayer; or turn read_config_labels off)"
                        ),
                    });
                }
                return Err(ecr_error("GetDownloadUrlForLayer", reference, failure));
            }
        };
        let name = format!("{}@{}", reference.name(), config.digest);
        let url = url.ok_or_else(|| {
            Error::backend(ECR, ErrorClass::Persistent, format!("GetDownloadUrlForLayer of {name}: no download URL"))
        })?;
        let bytes = fetcher.fetch(&url, config, &name).await?;
        add_config_labels(&mut artifact.annotations, &bytes);
        Ok(())
    }

    /// The digest `tag` holds now, if any.
    async fn tag_holder(&self, location: &Location, target: &ArtifactRef, tag: &str) -> Result<Option<Digest>> {
        let output = self.batch_get(location, target, vec![tag_id(tag)]).await?;
        output.images().iter().find_map(|image| image_digest(image).transpose()).transpose()
    }

    /// Retags `digest` within one repository: `BatchGetImage` then `PutImage`.
    async fn retag(
        &self,
        location: &Location,
        source: &ArtifactRef,
        digest: &Digest,
        target: &ArtifactRef,
        tag: &str,
    ) -> Result<Artifact> {
        // One call answers both questions: the source's exact manifest, and who holds the target tag now.
        let output = self.batch_get(location, source, vec![digest_id(digest), tag_id(tag)]).await?;
        let mut source_image = None;
        let mut holder = None;
        for image in output.images() {
            let image_digest = image_digest(image)?;
            if image_digest.as_ref() == Some(digest) && image.image_manifest().is_some() && source_image.is_none() {
                source_image = Some(image);
            }
            if image.image_id().and_then(ImageIdentifier::image_tag) == Some(tag) {
                holder = image_digest;
            }
        }
        let Some(image) = source_image else {
            return Err(missing_image(source, &output));
        };
        let artifact = artifact_of(target, image)?;
        if holder.as_ref() == Some(digest) {
            debug!(%target, "the tag already holds the digest");
            return Ok(artifact);
        }
        if let Some(existing) = holder.clone().filter(|_| self.immutable_tags) {
            return Err(Error::TagConflict { reference: target.to_string(), existing, wanted: digest.clone() });
        }
        let manifest_text = image.image_manifest().unwrap_or_default();
        // The bytes are written as read: check they are the digest's before they go under a tag (a proxy or
        // a cache can change them in transit; real ECR would refuse the put, an emulator may not).
        if digest.is_verifiable() {
            digest.verify(manifest_text.as_bytes()).map_err(|error| match error {
                Error::DigestMismatch { expected, actual, .. } => {
                    Error::digest_mismatch(format!("{source} (BatchGetImage)"), expected, actual)
                }
                other => other,
            })?;
        }
        let put = self
            .client
            .put_image()
            .set_registry_id(location.registry_id.clone())
            .repository_name(target.repository())
            .image_manifest(manifest_text)
            .image_manifest_media_type(&artifact.media_type)
            .image_digest(digest.as_str())
            .image_tag(tag)
            .send()
            .await;
        match put {
            Ok(output) => {
                let reported = output.image().map(image_digest).transpose()?.flatten();
                let actual = match reported {
                    Some(actual) => actual,
                    None => self.tag_holder(location, target, tag).await?.ok_or_else(|| {
                        Error::backend(ECR, ErrorClass::Temporary, format!("PutImage of {target} reported no image"))
                    })?,
                };
                if &actual != digest {
                    return Err(Error::digest_mismatch(target.to_string(), digest.clone(), actual));
                }
                debug!(%target, %digest, "tag put");
                Ok(artifact)
            }
            Err(error) => {
                let failure = self.failure(error);
                if failure.is("ImageAlreadyExistsException") || failure.is("ImageTagAlreadyExistsException") {
                    // ImageAlreadyExists means "nothing changed": check what the tag holds, since an
                    // emulator (moto) also answers it for an immutable tag held by another digest.
                    let existing = match holder {
                        Some(existing) => Some(existing),
                        None => self.tag_holder(location, target, tag).await?,
                    };
                    return match existing {
                        Some(existing) if &existing == digest => Ok(artifact),
                        Some(existing) => {
                            Err(Error::TagConflict { reference: target.to_string(), existing, wanted: digest.clone() })
                        }
                        None => Err(ecr_error("PutImage", target, failure)),
                    };
                }
                Err(ecr_error("PutImage", target, failure))
            }
        }
    }
}

fn digest_id(digest: &Digest) -> ImageIdentifier {
    ImageIdentifier::builder().image_digest(digest.as_str()).build()
}

fn tag_id(tag: &str) -> ImageIdentifier {
    ImageIdentifier::builder().image_tag(tag).build()
}

/// The digest ECR reports for an image. ECR computes it; it is trusted rather than recomputed, so that a
/// registry whose digests are not sha256 of the manifest string still round-trips.
fn image_digest(image: &Image) -> Result<Option<Digest>> {
    image.image_id().and_then(ImageIdentifier::image_digest).map(Digest::parse).transpose()
}

/// The artifact `image` is, located at `reference`.
fn artifact_of(reference: &ArtifactRef, image: &Image) -> Result<Artifact> {
    Ok(read_image(reference, image)?.0)
}

/// The artifact `image` is, located at `reference`, and the summary of its manifest.
fn read_image(reference: &ArtifactRef, image: &Image) -> Result<(Artifact, ManifestSummary)> {
    let digest = image_digest(image)?.ok_or_else(|| {
        Error::backend(ECR, ErrorClass::Persistent, format!("ECR returned {reference} without a digest"))
    })?;
    let text = image.image_manifest().unwrap_or_default();
    let summary = ManifestSummary::parse(text.as_bytes()).unwrap_or_default();
    let media_type =
        image.image_manifest_media_type().map(str::to_owned).or(summary.media_type.clone()).unwrap_or_else(|| {
            // An OCI manifest may omit its mediaType; its shape tells the two OCI types apart.
            if summary.manifests.is_empty() { manifest::OCI_MANIFEST } else { manifest::OCI_INDEX }.to_owned()
        });
    if !MANIFEST_MEDIA_TYPES.contains(&media_type.as_str()) {
        return Err(Error::NotSupported {
            backend: ECR,
            operation: format!("{reference} has media type {media_type}"),
        });
    }
    let artifact =
        Artifact::new(reference, digest, media_type, text.len() as u64).with_annotations(summary.annotations.clone());
    Ok((artifact, summary))
}

/// The error for a `BatchGetImage` that did not return the reference: the failure ECR reported, or NotFound.
fn missing_image(reference: &ArtifactRef, output: &BatchGetImageOutput) -> Error {
    let reported = output.failures().iter().find_map(|failure| {
        let code = failure.failure_code().map(|code| code.as_str()).unwrap_or_default();
        let class = match code {
            "UpstreamUnavailable" | "UpstreamTooManyRequests" => ErrorClass::Temporary,
            "UnsupportedImageType" | "KmsError" | "UpstreamAccessDenied" | "ImageInaccessible" => {
                ErrorClass::Persistent
            }
            _ => return None,
        };
        Some((code, class, failure.failure_reason().unwrap_or_default()))
    });
    match reported {
        Some((code @ ("UpstreamAccessDenied" | "ImageInaccessible"), _, reason)) => Error::PermissionDenied {
            backend: ECR,
            message: format!("BatchGetImage of {reference} (repository {}): {code}: {reason}", reference.name()),
        },
        Some((code, class, reason)) => {
            Error::backend(ECR, class, format!("BatchGetImage of {reference}: {code}: {reason}"))
        }
        None => Error::not_found(Resource::Artifact, reference.to_string()),
    }
}

#[async_trait]
impl ArtifactStore for EcrStore {
    fn capabilities(&self) -> StoreCapabilities {
        #[cfg(feature = "oci-copy")]
        let copies = self.copier.is_some();
        #[cfg(not(feature = "oci-copy"))]
        let copies = false;
        StoreCapabilities::none()
            .with_immutable_tags(self.immutable_tags)
            .with_cross_repository(copies)
            .with_cross_registry(copies)
    }

    #[instrument(level = "debug", skip(self), fields(reference = %reference))]
    async fn resolve(&self, reference: &ArtifactRef) -> Result<Artifact> {
        let Some(location) = self.locate(reference) else {
            #[cfg(feature = "oci-copy")]
            if let Some(copier) = &self.copier {
                return copier.resolve(reference).await;
            }
            return Err(self.unreachable("resolve", reference));
        };
        let id = match (reference.digest(), reference.tag()) {
            (Some(digest), _) => digest_id(digest),
            (None, Some(tag)) => tag_id(tag),
            (None, None) => return Err(Error::invalid("reference", reference.to_string(), "needs a tag or a digest")),
        };
        let output = self.batch_get(&location, reference, vec![id]).await?;
        let wanted = reference.digest();
        let image = output
            .images()
            .iter()
            .find(|image| wanted.is_none() || image_digest(image).ok().flatten().as_ref() == wanted)
            .ok_or_else(|| missing_image(reference, &output))?;
        let (mut artifact, summary) = read_image(reference, image)?;
        self.add_config_labels(&location, reference, &summary, &mut artifact).await?;
        debug!(digest = %artifact.digest, media_type = %artifact.media_type, "resolved");
        Ok(artifact)
    }

    #[instrument(level = "debug", skip(self), fields(source = %source, target = %target))]
    async fn promote(&self, source: &ArtifactRef, target: &ArtifactRef) -> Result<Artifact> {
        let digest = check_promote_args(source, target)?;
        let source_location = self.locate(source);
        let same_repository = source.same_repository(target) && source_location.is_some();
        if !same_repository {
            #[cfg(feature = "oci-copy")]
            if let Some(copier) = &self.copier {
                let artifact = copier.promote(source, target).await?;
                if &artifact.digest != digest {
                    return Err(Error::digest_mismatch(target.to_string(), digest.clone(), artifact.digest));
                }
                return Ok(artifact);
            }
            let Some(_) = source_location else { return Err(self.unreachable("promote", source)) };
            return Err(Error::NotSupported {
                backend: ECR,
                operation: format!(
                    "promotion from {} to {} (another repository or registry needs the `oci-copy` feature and cross_registry)",
                    source.name(),
                    target.name()
                ),
            });
        }
        let location = source_location.expect("checked above");
        match target.tag() {
            Some(tag) => self.retag(&location, source, digest, target, tag).await,
            // A digest-only target in the same repository is the source itself.
            None => {
                let artifact = self.resolve(&source.pinned(digest)).await?;
                Ok(Artifact::new(target, artifact.digest, artifact.media_type, artifact.size)
                    .with_annotations(artifact.annotations))
            }
        }
    }

    #[instrument(level = "debug", skip(self), fields(reference = %reference))]
    async fn exists(&self, reference: &ArtifactRef) -> Result<bool> {
        let digest = check_exists_args(reference)?;
        let Some(location) = self.locate(reference) else {
            #[cfg(feature = "oci-copy")]
            if let Some(copier) = &self.copier {
                return copier.exists(reference).await;
            }
            return Err(self.unreachable("exists", reference));
        };
        let described = self
            .client
            .describe_images()
            .set_registry_id(location.registry_id.clone())
            .repository_name(reference.repository())
            .image_ids(digest_id(digest))
            .send()
            .await;
        match described {
            Ok(output) => {
                Ok(output.image_details().iter().any(|detail| detail.image_digest() == Some(digest.as_str())))
            }
            Err(error) => {
                let failure = self.failure(error);
                if failure.is("ImageNotFoundException") || failure.is("RepositoryNotFoundException") {
                    Ok(false)
                } else {
                    Err(ecr_error("DescribeImages", reference, failure))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ecr_registry_hosts() {
        assert_eq!(
            parse_registry_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some(("123456789012", "eu-west-1"))
        );
        assert_eq!(
            parse_registry_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some(("123456789012", "cn-north-1"))
        );
        assert_eq!(
            parse_registry_host("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"),
            Some(("123456789012", "us-east-1"))
        );
        assert_eq!(parse_registry_host("ghcr.io"), None);
        assert_eq!(parse_registry_host("12345.dkr.ecr.eu-west-1.amazonaws.com"), None);
        assert_eq!(parse_registry_host("123456789012.dkr.ecr.evil.example.com"), None);
    }
}
