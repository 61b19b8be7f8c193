//! The spec kinds this crate adds: artifact stores `oci-registry` and `oci-layout`.
//!
//! ```yaml
//! store:
//!   kind: oci-registry
//!   insecure: ["127.0.0.1:5000"]       # plain HTTP, loopback or explicitly trusted hosts only
//!   max_concurrency: 8
//!   copy_signatures: true
//!   credentials:
//!     registry.example.com: { username: ci, password_env: REGISTRY_PASSWORD }
//!     myregistry.azurecr.io: { identity_token_env: ACR_REFRESH_TOKEN }  # or token_env: a bearer token
//!   trusted_token_realms:              # token services off the registry's origin that may get its credentials
//!     registry.example.com: https://auth.example.com   # (Docker Hub's auth.docker.io is built in)
//! ```
//! ```yaml
//! store: { kind: oci-layout, root: images }   # relative to the spec file
//! ```

use std::sync::Arc;

use promote_core::ArtifactStore;
use promote_core::spec::SpecRegistry;

use crate::config::{OciLayoutConfig, OciRegistryConfig};

/// Registers `oci-registry` and `oci-layout` on `registry`.
pub fn register(registry: &mut SpecRegistry) {
    registry.register_store("oci-registry", |spec| async move {
        let config: OciRegistryConfig = spec.parse()?;
        Ok(Arc::new(config.build()?) as Arc<dyn ArtifactStore>)
    });
    registry.register_store("oci-layout", |spec| async move {
        let mut config: OciLayoutConfig = spec.parse()?;
        config.root = spec.resolve_path(&config.root);
        Ok(Arc::new(config.build()) as Arc<dyn ArtifactStore>)
    });
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn specs_name_oci_stores_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = SpecRegistry::with_defaults();
        register(&mut registry);
        let spec =
            |store: &str| format!("pipeline: p\nstore: {store}\nledger: {{ kind: memory }}\nstages:\n  - name: dev\n");
        for store in ["{ kind: oci-layout, root: images }", "{ kind: oci-registry, insecure: [\"127.0.0.1:5000\"] }"] {
            registry.load_str(&spec(store), Path::new("promote.yaml"), dir.path(), None).await.unwrap();
        }
        let error = registry
            .load_str(&spec("{ kind: oci-registry, insecur: [] }"), Path::new("promote.yaml"), dir.path(), None)
            .await
            .unwrap_err();
        assert!(error.to_string().starts_with("promote.yaml:2") && error.to_string().contains("insecur"), "{error}");
    }
}
