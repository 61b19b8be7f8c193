//! OCI and Docker manifest media types, and the few fields of a manifest the core reads.
//!
//! The core never re-serialises a manifest: it reads annotations and child digests from the exact bytes
//! and passes those bytes on untouched.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The four manifest media types every store accepts, in Accept-header order.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST];

/// The annotation in which an image declares the commit it was built from.
pub const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";

/// Whether a media type is an index (a list of manifests) rather than a single image manifest.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// A descriptor inside a manifest: what it points at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// The target's digest.
    pub digest: Digest,
    /// The target's size in bytes.
    pub size: u64,
}

/// The fields of a manifest or index the core reads; everything else is ignored (and kept in the bytes).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestSummary {
    /// The media type the manifest declares in its body, if any.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The config blob of an image manifest.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// The layers of an image manifest.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The child manifests of an index.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// The subject of a referrer (signature, SBOM), if any.
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// Top-level annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl ManifestSummary {
    /// Reads the summary from manifest bytes. Returns `None` when the bytes are not a JSON manifest.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// Every blob (config and layers) an image manifest references.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(self.layers.iter())
    }
}

/// The media type a manifest declares or implies, for servers and layouts that do not say.
pub fn infer_media_type(bytes: &[u8], hint: Option<&str>) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Option<Probe> = serde_json::from_slice(bytes).ok();
    if let Some(media_type) = probe.as_ref().and_then(|p| p.media_type.clone()) {
        return media_type;
    }
    if let Some(hint) = hint {
        return hint.to_owned();
    }
    if probe.is_some_and(|p| p.manifests.is_some()) { OCI_INDEX.to_owned() } else { OCI_MANIFEST.to_owned() }
}
