//! What the copy engine sees of a repository or a layout: manifests as exact bytes, blobs as streams,
//! behind the [`GraphSource`] and [`GraphTarget`] traits that the registry and the layout implement.
//!
//! Links between manifests are read with `oci-client`'s data model ([`OciManifest`]), but only read: the
//! bytes that move are always the ones the source served.

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use oci_client::manifest::{
    IMAGE_LAYER_NONDISTRIBUTABLE_GZIP_MEDIA_TYPE, IMAGE_LAYER_NONDISTRIBUTABLE_MEDIA_TYPE, ImageIndexEntry,
    OciDescriptor, OciManifest,
};
use promote_core::manifest::Descriptor;
use promote_core::{ArtifactRef, Digest, Error, Result};

use crate::error::FailResult;

/// A blob's bytes as they arrive.
pub(crate) type BlobStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Manifest bytes exactly as the source served them, with their media type and digest.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub(crate) bytes: Bytes,
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
}

/// What a manifest points at: the child manifests of an index, or the blobs (config and layers) of an
/// image.
#[derive(Debug, Default)]
pub(crate) struct Links {
    pub(crate) manifests: Vec<Descriptor>,
    pub(crate) blobs: Vec<Descriptor>,
}

impl Manifest {
    /// Reads what the manifest links to. Bytes that are not an OCI or Docker image manifest or index are
    /// refused: copying them would need a graph we cannot see.
    pub(crate) fn links(&self) -> Result<Links> {
        let invalid = |reason: String| Error::invalid("manifest", self.digest.to_string(), reason);
        let parsed: OciManifest = serde_json::from_slice(&self.bytes).map_err(|_| {
            invalid("the manifest is not valid JSON of an OCI or Docker image manifest or index".to_owned())
        })?;
        let descriptor = |media_type: &str, digest: &str, size: i64| -> Result<Descriptor> {
            let digest = Digest::parse(digest).map_err(|error| invalid(format!("a descriptor's digest: {error}")))?;
            let size = u64::try_from(size).map_err(|_| invalid(format!("{digest} has a negative size")))?;
            Ok(Descriptor { media_type: media_type.to_owned(), digest, size })
        };
        let blob = |d: &OciDescriptor| descriptor(&d.media_type, &d.digest, d.size);
        let child = |e: &ImageIndexEntry| descriptor(&e.media_type, &e.digest, e.size);
        Ok(match parsed {
            OciManifest::Image(image) => Links {
                manifests: Vec::new(),
                blobs: std::iter::once(&image.config).chain(&image.layers).map(blob).collect::<Result<_>>()?,
            },
            OciManifest::ImageIndex(index) => {
                Links { manifests: index.manifests.iter().map(child).collect::<Result<_>>()?, blobs: Vec::new() }
            }
        })
    }
}

/// Reads a referrers response (an image index) into its descriptors; `None` when it is not one.
pub(crate) fn referrers_of(bytes: &[u8]) -> Option<Vec<Descriptor>> {
    let index: oci_client::manifest::OciImageIndex = serde_json::from_slice(bytes).ok()?;
    index
        .manifests
        .iter()
        .map(|entry| {
            Some(Descriptor {
                media_type: entry.media_type.clone(),
                digest: Digest::parse(&entry.digest).ok()?,
                size: u64::try_from(entry.size).ok()?,
            })
        })
        .collect()
}

/// Foreign (non-distributable) layers live elsewhere by design; registries refuse copies of them. Docker
/// calls them `foreign`, OCI `nondistributable`.
pub(crate) fn is_foreign(descriptor: &Descriptor) -> bool {
    let media_type = descriptor.media_type.as_str();
    media_type == IMAGE_LAYER_NONDISTRIBUTABLE_MEDIA_TYPE
        || media_type == IMAGE_LAYER_NONDISTRIBUTABLE_GZIP_MEDIA_TYPE
        || media_type.contains("foreign")
        || media_type.contains("nondistributable")
}

pub(crate) use promote_core::manifest::infer_media_type;

/// A tag or a digest within one repository or layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pointer {
    Tag(String),
    Digest(Digest),
}

impl Pointer {
    /// The digest when the reference pins one, else its tag.
    pub(crate) fn of(reference: &ArtifactRef) -> Pointer {
        match (reference.digest(), reference.tag()) {
            (Some(digest), _) => Pointer::Digest(digest.clone()),
            (None, Some(tag)) => Pointer::Tag(tag.to_owned()),
            (None, None) => Pointer::Tag("latest".to_owned()),
        }
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pointer::Tag(tag) => write!(f, ":{tag}"),
            Pointer::Digest(digest) => write!(f, "@{digest}"),
        }
    }
}

/// Reading side of a copy: one repository or layout.
#[async_trait]
pub(crate) trait GraphSource: Send + Sync {
    /// `registry/repository` or `oci:DIR`, for messages.
    fn name(&self) -> String;
    /// The manifest at `pointer`, or `None` when it does not exist. `media_type_hint` is the media type the
    /// parent's descriptor gives, for sources that do not store one.
    async fn fetch_manifest(&self, pointer: &Pointer, media_type_hint: Option<&str>) -> FailResult<Option<Manifest>>;
    /// Streams a blob.
    async fn open_blob(&self, descriptor: &Descriptor) -> FailResult<BlobStream>;
    /// `(registry, repository)` when blobs could be mounted from here.
    fn mount_origin(&self) -> Option<(String, String)>;
    /// The referrers of `digest`, or `None` when the source has no referrers API.
    async fn referrers(&self, digest: &Digest) -> FailResult<Option<Vec<Descriptor>>>;
}

/// Writing side of a copy: one repository or layout.
#[async_trait]
pub(crate) trait GraphTarget: Send + Sync {
    /// `registry/repository` or `oci:DIR`, for messages.
    fn name(&self) -> String;
    /// The registry host, for deciding whether a mount can work.
    fn registry(&self) -> Option<&str>;
    /// The digest `pointer` holds now, if any.
    async fn manifest_digest(&self, pointer: &Pointer) -> FailResult<Option<Digest>>;
    /// Whether the blob is present.
    async fn has_blob(&self, digest: &Digest) -> FailResult<bool>;
    /// Tries a cross-repository mount; `false` when the target declined (and no upload was left open).
    async fn mount_blob(&self, digest: &Digest, origin: &(String, String)) -> FailResult<bool>;
    /// Writes a blob from a stream, checking its digest.
    async fn write_blob(&self, descriptor: &Descriptor, stream: BlobStream) -> FailResult<()>;
    /// Stores manifest bytes under `pointer` and checks the digest the target computed.
    async fn put_manifest(&self, pointer: &Pointer, manifest: &Manifest) -> FailResult<()>;
}

/// One repository or layout, read and written: the target of a copy, which is also read for its referrers.
pub(crate) trait GraphEndpoint: GraphSource + GraphTarget {}

impl<T: GraphSource + GraphTarget> GraphEndpoint for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use promote_core::manifest;

    fn manifest(text: &str) -> Manifest {
        Manifest {
            bytes: Bytes::copy_from_slice(text.as_bytes()),
            media_type: manifest::OCI_MANIFEST.into(),
            digest: Digest::sha256_of(text.as_bytes()),
        }
    }

    #[test]
    fn links_are_read_from_images_and_indexes() {
        let config = Digest::sha256_of(b"config");
        let layer = Digest::sha256_of(b"layer");
        let image = manifest(&format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":6}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}}]}}"#
        ));
        let links = image.links().unwrap();
        assert!(links.manifests.is_empty());
        assert_eq!(links.blobs.iter().map(|d| (&d.digest, d.size)).collect::<Vec<_>>(), [(&config, 6), (&layer, 5)]);

        let child = Digest::sha256_of(b"child");
        let index = manifest(&format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{child}","size":7,"platform":{{"architecture":"riscv128","os":"plan9"}}}}]}}"#
        ));
        let links = index.links().unwrap();
        assert!(links.blobs.is_empty());
        assert_eq!(links.manifests[0].digest, child, "an unknown platform is no reason to refuse an index");
    }

    #[test]
    fn what_is_not_a_manifest_is_refused() {
        for text in [
            "not json",
            r#"{"schemaVersion":1,"fsLayers":[]}"#,
            r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:x"}]}"#,
        ] {
            let error = manifest(text).links().unwrap_err();
            assert!(matches!(error, Error::InvalidInput { .. }), "{text}: {error}");
        }
        let negative = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"m","digest":"{}","size":-1}}]}}"#,
            Digest::sha256_of(b"x")
        );
        assert!(manifest(&negative).links().is_err());
    }

    #[test]
    fn referrers_are_an_index_or_nothing() {
        let digest = Digest::sha256_of(b"sig");
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"m","digest":"{digest}","size":3}}]}}"#);
        assert_eq!(referrers_of(index.as_bytes()).unwrap()[0].digest, digest);
        assert!(referrers_of(b"<html>").is_none());
    }

    #[test]
    fn media_types_are_inferred_when_not_declared() {
        assert_eq!(infer_media_type(br#"{"manifests":[]}"#, None), manifest::OCI_INDEX);
        assert_eq!(infer_media_type(br#"{"config":{}}"#, None), manifest::OCI_MANIFEST);
        assert_eq!(infer_media_type(br#"{"config":{}}"#, Some(manifest::DOCKER_MANIFEST)), manifest::DOCKER_MANIFEST);
        let declared = format!(r#"{{"mediaType":"{}"}}"#, manifest::DOCKER_MANIFEST_LIST);
        assert_eq!(infer_media_type(declared.as_bytes(), Some(manifest::OCI_MANIFEST)), manifest::DOCKER_MANIFEST_LIST);
    }
}
