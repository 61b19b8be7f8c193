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

use promote_core::spec::SpecRegistry;
use promote_core::{ArtifactStore, ConfigSource};

use crate::config::{EcrConfig, SecretsManagerConfig};

/// Registers `ecr` and `secrets-manager` on `registry`.
pub fn register(registry: &mut SpecRegistry) {
    registry.register_store("ecr", |spec| async move {
        let config: EcrConfig = spec.parse()?;
        Ok(Arc::new(config.builder()?.build().await?) as Arc<dyn ArtifactStore>)
    });
    registry.register_config("secrets-manager", |spec| async move {
        let config: SecretsManagerConfig = spec.parse()?;
        Ok(Arc::new(config.builder().build().await?) as Arc<dyn ConfigSource>)
    });
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
}
