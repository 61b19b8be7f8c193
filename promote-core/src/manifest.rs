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

/// The annotation in which an image declares the commit it was built from. Many builds set it as a label
/// instead (a Dockerfile's `LABEL`), in the image config: see [`add_config_labels`].
pub const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";

/// A config blob bigger than this is not read just for its labels; a store reading one caps the download here.
pub const MAX_CONFIG_FOR_LABELS: u64 = 1024 * 1024;

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

    /// The config blob worth reading for its labels: only when the manifest's own annotations lack
    /// [`REVISION_ANNOTATION`], and only if it is at most [`MAX_CONFIG_FOR_LABELS`] bytes. A store reads it,
    /// checks the bytes against the descriptor's digest, then passes them to [`add_config_labels`].
    pub fn config_for_labels(&self) -> Option<&Descriptor> {
        if self.annotations.contains_key(REVISION_ANNOTATION) {
            return None;
        }
        self.config.as_ref().filter(|config| config.size <= MAX_CONFIG_FOR_LABELS)
    }
}

/// Adds the `config.Labels` of an image config blob to `annotations`, never overriding an annotation: an
/// annotation always wins over a label. A config that does not parse adds nothing: labels are a hint, not
/// something to fail a resolve over.
///
/// `config_bytes` must already be checked against the config's digest, so that only the config the manifest
/// names is believed.
pub fn add_config_labels(annotations: &mut BTreeMap<String, String>, config_bytes: &[u8]) {
    #[derive(Deserialize, Default)]
    struct ImageConfig {
        #[serde(default)]
        config: Option<ContainerConfig>,
    }
    #[derive(Deserialize, Default)]
    struct ContainerConfig {
        #[serde(default, rename = "Labels")]
        labels: Option<BTreeMap<String, String>>,
    }
    let parsed: ImageConfig = serde_json::from_slice(config_bytes).unwrap_or_default();
    for (key, value) in parsed.config.and_then(|c| c.labels).unwrap_or_default() {
        annotations.entry(key).or_insert(value);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(config_size: u64, annotated: bool) -> ManifestSummary {
        ManifestSummary {
            config: Some(Descriptor { media_type: "c".into(), digest: Digest::sha256_of(b"c"), size: config_size }),
            annotations: if annotated {
                BTreeMap::from([(REVISION_ANNOTATION.to_owned(), "r".to_owned())])
            } else {
                BTreeMap::new()
            },
            ..ManifestSummary::default()
        }
    }

    #[test]
    fn only_small_configs_of_unannotated_manifests_are_read_for_labels() {
        assert!(summary(100, false).config_for_labels().is_some());
        assert!(summary(MAX_CONFIG_FOR_LABELS, false).config_for_labels().is_some(), "the limit is inclusive");
        assert!(summary(100, true).config_for_labels().is_none(), "the annotation is enough");
        assert!(summary(MAX_CONFIG_FOR_LABELS + 1, false).config_for_labels().is_none(), "too big to read");
        assert!(ManifestSummary::default().config_for_labels().is_none(), "an index has no config");
    }

    #[test]
    fn labels_fill_in_but_never_override_annotations() {
        let config = br#"{"config":{"Labels":{"org.opencontainers.image.revision":"from-label","team":"web"}}}"#;
        let mut annotations = BTreeMap::from([("team".to_owned(), "from-annotation".to_owned())]);
        add_config_labels(&mut annotations, config);
        assert_eq!(annotations[REVISION_ANNOTATION], "from-label");
        assert_eq!(annotations["team"], "from-annotation");
    }

    #[test]
    fn configs_without_labels_add_nothing() {
        for config in [&b"not json"[..], b"{}", br#"{"config":{}}"#, br#"{"config":{"Labels":null}}"#] {
            let mut annotations = BTreeMap::new();
            add_config_labels(&mut annotations, config);
            assert!(annotations.is_empty(), "{}", String::from_utf8_lossy(config));
        }
    }
}
