//! What the integration tests share: a moto server, a counting and fault-injecting proxy, fixtures.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod blob_server;
pub mod proxy;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::config::Credentials;
use promote_core::Digest;

/// The region every test uses.
pub const REGION: &str = "us-east-1";
/// moto's default account, as an ECR registry host.
pub const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

pub use promote_testkit::Moto;

/// An SDK configuration for `endpoint` with static credentials and the fixed region.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "static"))
        .load()
        .await
}

/// The sha256 digest of `text`.
pub fn sha256(text: &str) -> Digest {
    Digest::sha256_of(text.as_bytes())
}

/// An OCI image manifest, indented oddly so that re-serialising it would change its digest.
pub fn oci_manifest(seed: &str) -> String {
    format!(
        "{{\n      \"schemaVersion\" :2,\n \"mediaType\": \"{}\",\n\t\"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"{}\", \"size\": 7}},\n  \"layers\": [ {{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{}\",\"size\":9}} ],\n  \"annotations\": {{ \"org.opencontainers.image.revision\": \"{seed}\" }}\n}}\n",
        promote_core::manifest::OCI_MANIFEST,
        sha256(&format!("config {seed}")),
        sha256(&format!("layer {seed}")),
    )
}

/// A Docker schema 2 image manifest.
pub fn docker_manifest(seed: &str) -> String {
    format!(
        "{{\"schemaVersion\": 2,\"mediaType\": \"{}\",\n  \"config\": {{\"mediaType\": \"application/vnd.docker.container.image.v1+json\", \"digest\": \"{}\", \"size\": 7}},\n  \"layers\": [{{\"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\", \"digest\": \"{}\", \"size\": 9}}]}}",
        promote_core::manifest::DOCKER_MANIFEST,
        sha256(&format!("config {seed}")),
        sha256(&format!("layer {seed}")),
    )
}

/// An index (OCI or Docker list, by `media_type`) over children `(digest, size, media type, arch)`.
pub fn index_manifest(media_type: &str, children: &[(Digest, usize, &str, &str)]) -> String {
    let entries: Vec<String> = children
        .iter()
        .map(|(digest, size, child_type, arch)| {
            format!(
                "    {{ \"mediaType\": \"{child_type}\", \"digest\": \"{digest}\", \"size\": {size}, \"platform\": {{\"architecture\": \"{arch}\", \"os\": \"linux\"}} }}"
            )
        })
        .collect();
    format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{media_type}\",\n  \"manifests\": [\n{}\n  ]\n}}\n",
        entries.join(",\n")
    )
}

/// Creates an ECR repository in moto.
pub async fn create_repository(ecr: &aws_sdk_ecr::Client, name: &str, immutable: bool) {
    use aws_sdk_ecr::types::ImageTagMutability;
    ecr.create_repository()
        .repository_name(name)
        .image_tag_mutability(if immutable { ImageTagMutability::Immutable } else { ImageTagMutability::Mutable })
        .send()
        .await
        .expect("create repository");
}

/// Puts a manifest, passing its sha256 as `imageDigest`: moto's own digests are not sha256 of the
/// manifest, real ECR's are, so passing it makes moto agree with ECR.
pub async fn put_manifest(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    tag: Option<&str>,
    manifest: &str,
    media_type: &str,
) -> Digest {
    let digest = sha256(manifest);
    ecr.put_image()
        .repository_name(repository)
        .image_manifest(manifest)
        .image_manifest_media_type(media_type)
        .image_digest(digest.as_str())
        .set_image_tag(tag.map(str::to_owned))
        .send()
        .await
        .expect("put image");
    digest
}

/// The exact manifest string and media type a tag holds, read back with the SDK.
pub async fn manifest_at(ecr: &aws_sdk_ecr::Client, repository: &str, tag: &str) -> (String, String) {
    use aws_sdk_ecr::types::ImageIdentifier;
    let output = ecr
        .batch_get_image()
        .repository_name(repository)
        .image_ids(ImageIdentifier::builder().image_tag(tag).build())
        .set_accepted_media_types(Some(
            promote_core::manifest::MANIFEST_MEDIA_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        ))
        .send()
        .await
        .expect("batch get image");
    let image = output.images().first().unwrap_or_else(|| panic!("{repository}:{tag} must exist"));
    (image.image_manifest().unwrap().to_owned(), image.image_manifest_media_type().unwrap_or_default().to_owned())
}
