//! The spec kinds this crate adds: artifact store `ecr` and config source `secrets-manager`.
//!
//! ```yaml
//! store: { kind: ecr, region: eu-west-1 }
//! ```
//! ```yaml
//! config:
//!   - kind: secrets-manager
//!     region: eu-west-1
//!     template: { stages: [dev, stg, prd], secrets: [{ id: "{stage}/app", format: json }] }
//! ```

use std::sync::Arc;

use promote_core::spec::{BackendSpec, SpecRegistry};
use promote_core::{ArtifactStore, ConfigSource};

use crate::ecr::EcrConfig;
use crate::secrets_manager::SecretsManagerConfig;

/// Registers `ecr` and `secrets-manager` on `registry`.
pub fn register(registry: &mut SpecRegistry) {
    registry.register_store("ecr", |spec| async move {
        spec.refuse_if_untrusted("reads AWS credentials")?;
        let config: EcrConfig = spec.parse()?;
        refuse_connection_settings(&spec, config.endpoint_url.is_some(), config.profile.is_some())?;
        if !config.registry_aliases.is_empty() {
            spec.refuse_setting_if_untrusted("registry_aliases", "sends ECR credentials to other hosts")?;
        }
        if !config.insecure_registries.is_empty() {
            spec.refuse_setting_if_untrusted("insecure_registries", "sends ECR credentials over plain HTTP")?;
        }
        Ok(Arc::new(config.builder().build().await?) as Arc<dyn ArtifactStore>)
    });
    registry.register_config("secrets-manager", |spec| async move {
        spec.refuse_if_untrusted("reads AWS credentials and secrets")?;
        let config: SecretsManagerConfig = spec.parse()?;
        refuse_connection_settings(&spec, config.endpoint_url.is_some(), config.profile.is_some())?;
        Ok(Arc::new(config.builder().build().await?) as Arc<dyn ConfigSource>)
    });
}

/// An untrusted spec may not point the SDK at another endpoint (it would receive signed requests) or choose
/// a profile (another set of credentials), even where the embedder allowed the kind.
fn refuse_connection_settings(spec: &BackendSpec, endpoint_url: bool, profile: bool) -> promote_core::Result<()> {
    if endpoint_url {
        spec.refuse_setting_if_untrusted("endpoint_url", "sends signed AWS requests to a host the spec chooses")?;
    }
    if profile {
        spec.refuse_setting_if_untrusted("profile", "chooses which AWS credentials to use")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn specs_name_aws_backends_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = SpecRegistry::with_defaults();
        register(&mut registry);
        // Building makes no request: the endpoint is never contacted here.
        let spec = "pipeline: p
store: { kind: ecr, region: eu-west-1, endpoint_url: \"http://127.0.0.1:9\" }
ledger: { kind: memory }
stages:
  - name: dev
    config:
      - kind: secrets-manager
        region: eu-west-1
        endpoint_url: \"http://127.0.0.1:9\"
        template: { stages: [dev], secrets: [{ id: \"{stage}/app\", format: json }] }
";
        registry.load_str(spec, Path::new("promote.yaml"), dir.path(), None).await.unwrap();
        let error = registry
            .load_str(&spec.replace("format: json", "fromat: json"), Path::new("promote.yaml"), dir.path(), None)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("fromat"), "{error}");
    }

    #[tokio::test]
    async fn an_untrusted_spec_reads_no_aws_credentials_unless_allowed() {
        use promote_core::spec::SpecPolicy;

        let dir = tempfile::tempdir().unwrap();
        let spec =
            |store: &str| format!("pipeline: p\nstore: {store}\nledger: {{ kind: memory }}\nstages:\n  - name: dev\n");
        let mut untrusted = SpecRegistry::with_defaults().with_policy(SpecPolicy::untrusted());
        register(&mut untrusted);
        let error = untrusted
            .load_str(&spec("{ kind: ecr, region: eu-west-1 }"), Path::new("promote.yaml"), dir.path(), None)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("kind `ecr` is not allowed in an untrusted spec"), "{error}");

        let mut allowed = SpecRegistry::with_defaults().with_policy(SpecPolicy::untrusted().allow_kind("ecr"));
        register(&mut allowed);
        for (store, key) in [
            ("{ kind: ecr, region: eu-west-1, endpoint_url: \"http://127.0.0.1:9\" }", "store.endpoint_url"),
            ("{ kind: ecr, region: eu-west-1, profile: admin }", "store.profile"),
            ("{ kind: ecr, region: eu-west-1, registry_aliases: [evil.example] }", "store.registry_aliases"),
        ] {
            let error = allowed.load_str(&spec(store), Path::new("promote.yaml"), dir.path(), None).await.unwrap_err();
            assert!(error.to_string().contains(key), "{store}: {error}");
        }
    }
}
