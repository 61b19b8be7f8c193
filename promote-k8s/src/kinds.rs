//! The spec kinds this crate adds: deployer `kubernetes`, ledger `kubernetes`, lock `kubernetes`, and config
//! sources `kubernetes-configmap` and `kubernetes-secret`.
//!
//! ```yaml
//! deployer: { kind: kubernetes, namespace: "shop-{stage}" }
//! ledger: { kind: kubernetes, namespace: promote-system }        # name: promote (its ConfigMaps' prefix)
//! lock: { kind: kubernetes, namespace: promote-system }          # name: "promote-lock-{stage}", lease_duration_seconds: 15
//! config:
//!   - { kind: kubernetes-configmap, namespace: "shop-{stage}", objects: [settings] }
//!   - { kind: kubernetes-secret, namespace: "shop-{stage}", objects: [db], keys: [DB_PASSWORD] }
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
//! Every kind takes `context` and `kubeconfig`. Without them, the cluster is found as `kubectl` finds it
//! (`$KUBECONFIG`, `~/.kube/config`), or from the pod's service account inside a cluster. Every kind is
//! refused in an untrusted spec: each acts with the runner's Kubernetes credentials.

use std::sync::Arc;

use std::path::PathBuf;

use promote_core::spec::{BackendSpec, SpecRegistry};
use promote_core::{ConfigSource, Deployer, EnvironmentLock, Ledger};

use crate::KubernetesDeployer;
use crate::config::{ConfigObjects, ConfigSettings, KubernetesConfigSource};
use crate::connection::Connection;
use crate::deployer::Settings;
use crate::ledger::{KubernetesLedger, LedgerSettings};
use crate::lock::{KubernetesLock, LockSettings};

/// Registers this crate's kinds on `registry` (deployer, ledger and lock `kubernetes`, config sources
/// `kubernetes-configmap` and `kubernetes-secret`): the cluster from the settings' kubeconfig and context,
/// or as `Config::infer()` finds it.
pub fn register(registry: &mut SpecRegistry) {
    registry.register_deployer("kubernetes", |spec| async move { build(spec, None).await });
    registry.register_ledger("kubernetes", |spec| async move { build_ledger(spec, None).await });
    registry.register_lock("kubernetes", |spec| async move { build_lock(spec, None).await });
    for (kind, from) in CONFIG_KINDS {
        registry.register_config(kind, move |spec| async move { build_config(spec, from, None).await });
    }
}

/// Registers the same kinds as [`register`], every backend using `client` (an in-process fake API server, a
/// client built some other way). Settings `context` and `kubeconfig` are refused.
pub fn register_with_client(registry: &mut SpecRegistry, client: kube::Client) {
    let given = client.clone();
    registry.register_deployer("kubernetes", move |spec| {
        let client = given.clone();
        async move { build(spec, Some(client)).await }
    });
    let given = client.clone();
    registry.register_ledger("kubernetes", move |spec| {
        let client = given.clone();
        async move { build_ledger(spec, Some(client)).await }
    });
    let given = client.clone();
    registry.register_lock("kubernetes", move |spec| {
        let client = given.clone();
        async move { build_lock(spec, Some(client)).await }
    });
    for (kind, from) in CONFIG_KINDS {
        let given = client.clone();
        registry.register_config(kind, move |spec| {
            let client = given.clone();
            async move { build_config(spec, from, Some(client)).await }
        });
    }
}

/// The config source kinds and what each reads.
const CONFIG_KINDS: [(&str, ConfigObjects); 2] =
    [("kubernetes-configmap", ConfigObjects::ConfigMaps), ("kubernetes-secret", ConfigObjects::Secrets)];

/// The client for a backend: `client` when the registry gives one (then `context` and `kubeconfig` are
/// refused), else from the settings (a kubeconfig path resolved against the spec).
fn connection(
    spec: &BackendSpec,
    client: Option<kube::Client>,
    context: Option<String>,
    kubeconfig: Option<PathBuf>,
) -> promote_core::Result<Connection> {
    match client {
        Some(client) => {
            for (setting, set) in [("context", context.is_some()), ("kubeconfig", kubeconfig.is_some())] {
                if set {
                    return Err(spec.error_at(setting, "this registry gives every kubernetes backend one client"));
                }
            }
            Ok(Connection::Client(client))
        }
        None => {
            let kubeconfig = kubeconfig.map(|path| spec.resolve_path("kubeconfig", &path)).transpose()?;
            Ok(Connection::from_settings(kubeconfig, context))
        }
    }
}

async fn build_ledger(spec: BackendSpec, client: Option<kube::Client>) -> promote_core::Result<Arc<dyn Ledger>> {
    spec.refuse_if_untrusted("reads and writes the ledger in a cluster with the runner's Kubernetes credentials,")?;
    let mut settings: LedgerSettings = spec.parse()?;
    let connection = connection(&spec, client, settings.context.take(), settings.kubeconfig.take())?;
    let ledger = KubernetesLedger::builder().settings(settings).connection(connection).build().await?;
    Ok(Arc::new(ledger))
}

async fn build_lock(spec: BackendSpec, client: Option<kube::Client>) -> promote_core::Result<Arc<dyn EnvironmentLock>> {
    spec.refuse_if_untrusted("takes and holds Leases in a cluster with the runner's Kubernetes credentials,")?;
    let mut settings: LockSettings = spec.parse()?;
    if let Err((setting, message)) = settings.check() {
        return Err(spec.error_at(setting, message));
    }
    let connection = connection(&spec, client, settings.context.take(), settings.kubeconfig.take())?;
    let lock = KubernetesLock::builder().settings(settings).connection(connection).build().await?;
    Ok(Arc::new(lock))
}

async fn build_config(
    spec: BackendSpec,
    from: ConfigObjects,
    client: Option<kube::Client>,
) -> promote_core::Result<Arc<dyn ConfigSource>> {
    spec.refuse_if_untrusted("reads ConfigMaps and Secrets from a cluster with the runner's Kubernetes credentials,")?;
    let mut settings: ConfigSettings = spec.parse()?;
    let connection = connection(&spec, client, settings.context.take(), settings.kubeconfig.take())?;
    let source = KubernetesConfigSource::builder(from).settings(settings).connection(connection).build().await;
    Ok(Arc::new(source.map_err(|error| spec.error(error.to_string()))?))
}

async fn build(spec: BackendSpec, client: Option<kube::Client>) -> promote_core::Result<Arc<dyn Deployer>> {
    // A cluster is reached with the runner's credentials: a pull request's spec may not point them anywhere.
    spec.refuse_if_untrusted("applies objects to a cluster with the runner's Kubernetes credentials,")?;
    let mut settings: Settings = spec.parse()?;
    if let Err((setting, message)) = settings.check() {
        return Err(spec.error_at(&setting, message));
    }
    let connection = connection(&spec, client, settings.context.take(), settings.kubeconfig.take())?;
    let deployer = KubernetesDeployer::builder().settings(settings).connection(connection).build().await?;
    Ok(Arc::new(deployer) as Arc<dyn Deployer>)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use promote_core::SpecRegistry;

    const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
  - { name: local, cluster: { server: \"https://127.0.0.1:1\" } }
users:
  - { name: ci, user: { token: t } }
contexts:
  - { name: dev, context: { cluster: local, user: ci } }
current-context: dev
";

    /// Each kind with `settings` added, in an otherwise minimal spec.
    fn specs(settings: &str) -> [(&'static str, String); 4] {
        let spec = |ledger: &str, lock: &str, config: &str, deployer: &str| {
            format!(
                "pipeline: p\nstore: {{ kind: memory }}\nledger: {ledger}\n{lock}deployer: {deployer}\nstages:\n  - name: dev\n{config}"
            )
        };
        let memory = "{ kind: memory }";
        [
            ("ledger", spec(&format!("{{ kind: kubernetes, namespace: ns, {settings} }}"), "", "", memory)),
            ("lock", spec(memory, &format!("lock: {{ kind: kubernetes, namespace: ns, {settings} }}\n"), "", memory)),
            (
                "config",
                spec(
                    memory,
                    "",
                    &format!(
                        "    config: [{{ kind: kubernetes-configmap, namespace: ns, objects: [a], {settings} }}]\n"
                    ),
                    memory,
                ),
            ),
            ("deployer", spec(memory, "", "", &format!("{{ kind: kubernetes, namespace: ns, {settings} }}"))),
        ]
    }

    #[tokio::test]
    async fn every_kind_reaches_the_cluster_its_spec_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("kube")).unwrap();
        std::fs::write(dir.path().join("kube/dev.yaml"), KUBECONFIG).unwrap();
        let mut registry = SpecRegistry::with_defaults();
        super::register(&mut registry);
        let load = |text: String| {
            let registry = registry.clone();
            let dir = dir.path().to_owned();
            async move { registry.load_str(&text, Path::new("promote.yaml"), &dir, None).await }
        };
        for (kind, spec) in specs("kubeconfig: kube/missing.yaml") {
            let error = load(spec).await.unwrap_err().to_string();
            assert!(error.contains("kube/missing.yaml"), "{kind}: the spec's kubeconfig was read: {error}");
        }
        for (kind, spec) in specs("kubeconfig: kube/dev.yaml, context: prod") {
            let error = load(spec).await.unwrap_err().to_string();
            assert!(
                error.contains("\"prod\"") && error.contains("kube/dev.yaml"),
                "{kind}: the spec's context: {error}"
            );
        }
        for (kind, spec) in specs("kubeconfig: kube/dev.yaml, context: dev") {
            load(spec).await.unwrap_or_else(|error| panic!("{kind}: {error}"));
        }
    }
}
