//! The deployer's settings (declared once, for the builder and for the spec kind) and its builder.

use std::path::PathBuf;
use std::sync::Arc;

use promote_core::error::{Error, Result};
use serde::Deserialize;

use super::KubernetesDeployer;
use crate::connection::{Connection, connection_setters};
use crate::label::check_label;

/// The placeholder a namespace pattern may hold.
const STAGE_PLACEHOLDER: &str = "{stage}";

fn default_namespace() -> String {
    STAGE_PLACEHOLDER.to_owned()
}

fn default_field_manager() -> String {
    "promote".to_owned()
}

/// Every setting of the deployer, as the spec kind `kubernetes` reads them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// The namespace of each stage; `{stage}` is replaced by the stage's name (`shop-{stage}`).
    #[serde(default = "default_namespace")]
    pub(crate) namespace: String,
    /// A kubeconfig context instead of the current one.
    #[serde(default)]
    pub(crate) context: Option<String>,
    /// A kubeconfig file instead of `$KUBECONFIG` or `~/.kube/config` (relative to the spec in a spec).
    #[serde(default)]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// Take over fields another field manager owns instead of failing on the conflict.
    #[serde(default)]
    pub(crate) force_conflicts: bool,
    /// Namespaces other than the stage's that manifests may name (`{stage}` allowed).
    #[serde(default)]
    pub(crate) allow_namespaces: Vec<String>,
    /// Create the stage's namespace when it does not exist.
    #[serde(default)]
    pub(crate) create_namespace: bool,
    /// Prune Namespaces that left the bundle (deleting everything in them).
    #[serde(default)]
    pub(crate) prune_namespaces: bool,
    /// Prune CustomResourceDefinitions that left the bundle (deleting every object of their kinds).
    #[serde(default)]
    pub(crate) prune_crds: bool,
    /// The server-side apply field manager.
    #[serde(default = "default_field_manager")]
    pub(crate) field_manager: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: default_namespace(),
            context: None,
            kubeconfig: None,
            force_conflicts: false,
            allow_namespaces: Vec::new(),
            create_namespace: false,
            prune_namespaces: false,
            prune_crds: false,
            field_manager: default_field_manager(),
        }
    }
}

/// `pattern` with `{stage}` replaced.
pub(crate) fn expand(pattern: &str, stage: &str) -> String {
    pattern.replace(STAGE_PLACEHOLDER, stage)
}

impl Settings {
    /// The first setting that is wrong, and why.
    pub(crate) fn check(&self) -> std::result::Result<(), (String, String)> {
        let check_pattern = |setting: String, pattern: &str| {
            if pattern.replace(STAGE_PLACEHOLDER, "").contains(['{', '}']) {
                return Err((setting, format!("`{pattern}`: the only placeholder is {STAGE_PLACEHOLDER}")));
            }
            // A stage name is a label too; "a" stands for the shortest one.
            check_label(&expand(pattern, "a"))
                .map_err(|why| (setting, format!("`{pattern}` does not make a namespace name: {why}")))
        };
        check_pattern("namespace".into(), &self.namespace)?;
        for (index, pattern) in self.allow_namespaces.iter().enumerate() {
            check_pattern(format!("allow_namespaces[{index}]"), pattern)?;
        }
        if self.field_manager.is_empty() || self.field_manager.len() > 128 {
            return Err(("field_manager".into(), "a field manager is 1 to 128 characters long".into()));
        }
        if self.context.as_deref() == Some("") {
            return Err(("context".into(), "an empty context name; leave it out to use the current context".into()));
        }
        Ok(())
    }
}

/// Builds a [`KubernetesDeployer`].
///
/// ```no_run
/// # async fn demo() -> promote_core::Result<()> {
/// use promote_k8s::KubernetesDeployer;
/// let deployer = KubernetesDeployer::builder()
///     .namespace("shop-{stage}")
///     .context("kind-promote")
///     .allow_namespace("monitoring")
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct KubernetesDeployerBuilder {
    settings: Settings,
    connection: Option<Connection>,
}

connection_setters!(KubernetesDeployerBuilder);

impl KubernetesDeployerBuilder {
    /// The namespace of each stage: `{stage}` is replaced by the stage's name (default `{stage}`).
    /// Namespaced objects without a namespace go there, and the stage's inventory lives there.
    pub fn namespace(mut self, pattern: impl Into<String>) -> Self {
        self.settings.namespace = pattern.into();
        self
    }

    /// Takes over fields another field manager owns (`force=true`) instead of failing on the conflict
    /// (default: fail, naming each field and its manager).
    pub fn force_conflicts(mut self, force: bool) -> Self {
        self.settings.force_conflicts = force;
        self
    }

    /// Lets manifests name this namespace (`{stage}` allowed) besides the stage's own.
    pub fn allow_namespace(mut self, pattern: impl Into<String>) -> Self {
        self.settings.allow_namespaces.push(pattern.into());
        self
    }

    /// Creates the stage's namespace when it does not exist (default: fail, saying so).
    pub fn create_namespace(mut self, create: bool) -> Self {
        self.settings.create_namespace = create;
        self
    }

    /// Prunes Namespaces that left the bundle, with everything in them (default: never).
    pub fn prune_namespaces(mut self, prune: bool) -> Self {
        self.settings.prune_namespaces = prune;
        self
    }

    /// Prunes CustomResourceDefinitions that left the bundle, with every object of their kinds (default: never).
    pub fn prune_crds(mut self, prune: bool) -> Self {
        self.settings.prune_crds = prune;
        self
    }

    /// The server-side apply field manager (default `promote`).
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.settings.field_manager = manager.into();
        self
    }

    pub(crate) fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Checks the settings and makes the client (reading the kubeconfig; no request is sent).
    pub async fn build(mut self) -> Result<KubernetesDeployer> {
        if let Err((setting, reason)) = self.settings.check() {
            return Err(Error::InvalidInput { what: "kubernetes deployer setting", input: setting, reason });
        }
        let connection = self.take_connection();
        KubernetesDeployer::connect(Arc::new(self.settings), connection).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_naming_the_setting() {
        assert!(Settings::default().check().is_ok());
        let wrong = |settings: Settings| settings.check().unwrap_err().0;
        assert_eq!(wrong(Settings { namespace: "Shop_{stage}".into(), ..Settings::default() }), "namespace");
        assert_eq!(wrong(Settings { namespace: "shop-{env}".into(), ..Settings::default() }), "namespace");
        assert_eq!(
            wrong(Settings { allow_namespaces: vec!["ok".into(), "-bad".into()], ..Settings::default() }),
            "allow_namespaces[1]"
        );
        assert_eq!(wrong(Settings { field_manager: String::new(), ..Settings::default() }), "field_manager");
        assert_eq!(expand("shop-{stage}", "dev"), "shop-dev");
    }
}
