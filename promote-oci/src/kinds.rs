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

use crate::layout::OciLayoutConfig;
use crate::registry::OciRegistryConfig;

/// Registers `oci-registry` and `oci-layout` on `registry`.
pub fn register(registry: &mut SpecRegistry) {
    registry.register_store("oci-registry", |spec| async move {
        let mut config: OciRegistryConfig = spec.parse()?;
        if spec.policy().is_trusted() {
            return Ok(Arc::new(config.build()?) as Arc<dyn ArtifactStore>);
        }
        // An untrusted spec chooses no credential and no plain-HTTP host, and reaches only the embedder's
        // registries, anonymously (the docker config is not read).
        let refusals = [
            ("insecure", !config.insecure.is_empty(), "sends requests, and credentials, over plain HTTP"),
            ("credentials", !config.credentials.is_empty(), "chooses which environment variables hold credentials"),
            ("trusted_token_realms", !config.trusted_token_realms.is_empty(), "sends credentials to other hosts"),
        ];
        for (setting, present, does) in refusals {
            if present {
                spec.refuse_setting_if_untrusted(setting, does)?;
            }
        }
        config.docker_config = false;
        let allowed: Vec<String> = spec.policy().allowed_registries().map(str::to_owned).collect();
        Ok(Arc::new(config.builder().only_registries(allowed).build()?) as Arc<dyn ArtifactStore>)
    });
    registry.register_store("oci-layout", |spec| async move {
        let mut config: OciLayoutConfig = spec.parse()?;
        config.root = spec.resolve_path("root", &config.root)?;
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

    #[tokio::test]
    async fn an_untrusted_spec_chooses_no_credentials_and_reaches_only_allowed_registries() {
        use promote_core::spec::SpecPolicy;
        use promote_core::{ArtifactRef, Error};

        let dir = tempfile::tempdir().unwrap();
        let mut registry =
            SpecRegistry::with_defaults().with_policy(SpecPolicy::untrusted().allow_registry("registry.example"));
        register(&mut registry);
        let spec =
            |store: &str| format!("pipeline: p\nstore: {store}\nledger: {{ kind: memory }}\nstages:\n  - name: dev\n");
        for (store, key) in [
            ("{ kind: oci-registry, insecure: [\"127.0.0.1:5000\"] }", "store.insecure"),
            (
                "{ kind: oci-registry, credentials: { evil.example: { token_env: AWS_SECRET_ACCESS_KEY } } }",
                "store.credentials",
            ),
            (
                "{ kind: oci-registry, trusted_token_realms: { registry.example: \"https://evil.example\" } }",
                "store.trusted_token_realms",
            ),
            ("{ kind: oci-layout, root: /var/lib/images }", "store.root"),
        ] {
            let error = registry.load_str(&spec(store), Path::new("promote.yaml"), dir.path(), None).await.unwrap_err();
            assert!(matches!(&error, Error::Spec { key: refused, .. } if refused == key), "{store}: {error}");
        }
        // Allowed: a registry store with no credential settings, which refuses other registries without a request.
        let pipeline = registry
            .load_str(&spec("{ kind: oci-registry }"), Path::new("promote.yaml"), dir.path(), None)
            .await
            .unwrap();
        let elsewhere: ArtifactRef = "evil.example/web:1".parse().unwrap();
        let error = pipeline.store().resolve(&elsewhere).await.unwrap_err();
        assert!(matches!(error, Error::PermissionDenied { .. }), "{error:?}");
        assert!(error.to_string().contains("evil.example"), "{error}");
    }
}
