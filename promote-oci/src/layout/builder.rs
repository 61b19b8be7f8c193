//! The spec form of an [`OciLayoutStore`] (`kind: oci-layout`), built in one place.

use std::path::PathBuf;

use serde::Deserialize;

use super::OciLayoutStore;

/// The spec form of an [`OciLayoutStore`] (`kind: oci-layout`).
///
/// ```
/// let config: promote_oci::OciLayoutConfig = serde_json::from_str(r#"{"root": "images"}"#).unwrap();
/// assert_eq!(config.build().registry(), promote_oci::LAYOUT_REGISTRY);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OciLayoutConfig {
    /// The directory holding one layout per repository.
    pub root: PathBuf,
    /// The registry name references to this store use (default `oci-layout.local`).
    #[serde(default)]
    pub registry: Option<String>,
}

impl OciLayoutConfig {
    /// Builds the store.
    pub fn build(&self) -> OciLayoutStore {
        let store = OciLayoutStore::new(&self.root);
        match &self.registry {
            Some(registry) => store.with_registry(registry.clone()),
            None => store,
        }
    }
}
