//! Loading `promote.yaml` with every backend crate's kinds.

use std::path::Path;

use promote_core::{Pipeline, Result, SpecRegistry};

/// The spec registry: the core kinds, plus OCI (registries, layouts), AWS (ECR, Secrets Manager) and
/// Kubernetes (deployer `kubernetes`, the cluster from the kubeconfig).
pub(crate) fn registry() -> SpecRegistry {
    let mut registry = SpecRegistry::with_defaults();
    promote_oci::kinds::register(&mut registry);
    promote_aws::kinds::register(&mut registry);
    promote_k8s::kinds::register(&mut registry);
    registry
}

/// The pipeline `spec` describes, on the system clock.
pub(crate) async fn load(spec: &Path) -> Result<Pipeline> {
    registry().load_file(spec, None).await
}
