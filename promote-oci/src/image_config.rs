//! What an image's config blob adds to its annotations: the `Labels` a Dockerfile's `LABEL` sets, which is
//! where many builds record `org.opencontainers.image.revision`.

use std::collections::BTreeMap;

use promote_core::manifest::{Descriptor, ManifestSummary, REVISION_ANNOTATION};
use serde::Deserialize;

/// A config blob bigger than this is not read just for its labels.
pub(crate) const MAX_CONFIG_FOR_LABELS: u64 = 1024 * 1024;

/// The config blob worth reading for labels: only when the manifest's own annotations lack the revision,
/// and only if it is small.
pub(crate) fn config_to_read(summary: &ManifestSummary) -> Option<&Descriptor> {
    if summary.annotations.contains_key(REVISION_ANNOTATION) {
        return None;
    }
    summary.config.as_ref().filter(|config| config.size <= MAX_CONFIG_FOR_LABELS)
}

/// Adds the config's labels to `annotations`, never overriding an annotation. A config that does not parse
/// adds nothing: labels are a hint, not something to fail a resolve over.
pub(crate) fn add_labels(annotations: &mut BTreeMap<String, String>, config_bytes: &[u8]) {
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
