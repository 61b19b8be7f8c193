//! The spec kind this crate adds: deployer `kubernetes`.
//!
//! ```yaml
//! deployer: { kind: kubernetes, namespace: "shop-{stage}" }
//! stages:
//!   - name: prd
//!     deployer:
//!       kind: kubernetes
//!       namespace: "shop-{stage}"
//!       context: prod-cluster          # a kubeconfig context instead of the current one
//!       kubeconfig: kube/prd.yaml      # a kubeconfig file (relative to the spec) instead of the default
//!       force_conflicts: false         # take over fields other managers own (default: fail, naming them)
//!       allow_namespaces: [monitoring] # namespaces other than the stage's that manifests may name
//!       create_namespace: false        # create the stage's namespace when missing
//!       prune_namespaces: false        # prune Namespaces that left the bundle
//!       prune_crds: false              # prune CRDs that left the bundle
//!       field_manager: promote         # the server-side apply field manager
//! ```
//!
//! Without `context` and `kubeconfig`, the cluster is found as `kubectl` finds it (`$KUBECONFIG`,
//! `~/.kube/config`), or from the pod's service account inside a cluster.

use std::sync::Arc;

use promote_core::Deployer;
use promote_core::spec::{BackendSpec, SpecRegistry};

use crate::KubernetesDeployer;
use crate::connection::Connection;
use crate::deployer::Settings;

/// Registers deployer kind `kubernetes` on `registry`: the cluster from the settings' kubeconfig and
/// context, or as `Config::infer()` finds it.
pub fn register(registry: &mut SpecRegistry) {
    registry.register_deployer("kubernetes", |spec| async move { build(spec, None).await });
}

/// Registers deployer kind `kubernetes` on `registry`, every deployer using `client` (an in-process fake
/// API server, a client built some other way). Settings `context` and `kubeconfig` are refused.
pub fn register_with_client(registry: &mut SpecRegistry, client: kube::Client) {
    registry.register_deployer("kubernetes", move |spec| {
        let client = client.clone();
        async move { build(spec, Some(client)).await }
    });
}

async fn build(spec: BackendSpec, client: Option<kube::Client>) -> promote_core::Result<Arc<dyn Deployer>> {
    // A cluster is reached with the runner's credentials: a pull request's spec may not point them anywhere.
    spec.refuse_if_untrusted("applies objects to a cluster with the runner's Kubernetes credentials,")?;
    let mut settings: Settings = spec.parse()?;
    if let Err((setting, message)) = settings.check() {
        return Err(spec.error_at(&setting, message));
    }
    let connection = match client {
        Some(client) => {
            for (setting, set) in
                [("context", settings.context.is_some()), ("kubeconfig", settings.kubeconfig.is_some())]
            {
                if set {
                    return Err(spec.error_at(setting, "this registry gives every kubernetes deployer one client"));
                }
            }
            Connection::Client(client)
        }
        None => {
            if let Some(path) = settings.kubeconfig.take() {
                settings.kubeconfig = Some(spec.resolve_path("kubeconfig", &path)?);
            }
            settings.connection()
        }
    };
    let deployer = KubernetesDeployer::connect(Arc::new(settings), connection).await?;
    Ok(Arc::new(deployer) as Arc<dyn Deployer>)
}
