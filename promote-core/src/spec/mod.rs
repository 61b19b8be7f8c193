//! Pipelines from YAML (`promote.yaml`): stages, gates, config sources, deployers, the store, ledger and
//! lock, each backend named by `kind`.
//!
//! A [`SpecRegistry`] maps kinds to constructors. Backend crates add their own kinds, so that a CLI author
//! loads a user's file without writing glue. An unknown key, an unknown kind or a wrong type is
//! [`Error::Spec`] naming the file, line and key.
//!
//! ```yaml
//! pipeline: shop
//! store: { kind: memory }
//! ledger: { kind: file, path: state/ledger.jsonl }
//! lock: { kind: file, dir: state/locks }
//! templates: manifests            # rendered for every stage, relative to this file
//! deployer: { kind: memory }      # every stage's deployer unless a stage names its own
//! stages:
//!   - name: dev
//!   - name: stg
//!     config:
//!       - { kind: inline, values: { REPLICAS: "2" } }
//!   - name: prd
//!     gates:
//!       - { kind: approval, name: release-managers, promoters: [alice, bob], min_approvals: 1 }
//! ```

mod kinds;
mod policy;
mod registry;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use marked_yaml::Node;
use marked_yaml::types::MarkedMappingNode;
use serde::Deserialize;

pub use policy::{SpecPolicy, UNTRUSTED_ENV_PREFIX};
pub use registry::{BackendSpec, BoxFuture, Constructor, SpecRegistry};

use crate::clock::Clock;
use crate::engine::{OnFailure, Pipeline, Placement, Stage, Upstream};
use crate::error::{Error, Location, Result};
use crate::lock::LockWait;
use crate::render::Templates;

/// Settings at the top of a spec that are not backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopSettings {
    pipeline: String,
    #[serde(default)]
    templates: Option<PathBuf>,
}

/// A stage's settings that are not backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSettings {
    name: String,
    #[serde(default)]
    auto: bool,
    #[serde(default)]
    upstream: Option<UpstreamSpec>,
    #[serde(default)]
    placement: Option<PlacementSpec>,
    #[serde(default)]
    on_failure: Option<OnFailureSpec>,
    #[serde(default)]
    lock_wait: Option<String>,
    #[serde(default)]
    health_timeout: Option<String>,
    #[serde(default)]
    templates: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum UpstreamSpec {
    AllOf(Vec<String>),
    AnyOf(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacementSpec {
    #[serde(default)]
    registry: Option<String>,
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OnFailureSpec {
    Fail,
    Rollback,
}

/// Where a spec came from, for errors and relative paths.
#[derive(Debug, Clone)]
pub(crate) struct SpecFile {
    pub(crate) path: PathBuf,
    pub(crate) base_dir: PathBuf,
    pub(crate) policy: SpecPolicy,
}

impl SpecFile {
    pub(crate) fn error(&self, node: Option<&Node>, key: &str, message: impl Into<String>) -> Error {
        let mark = node.and_then(|n| n.span().start().copied());
        Error::Spec {
            location: Location {
                file: self.path.clone(),
                line: mark.map(|m| m.line()),
                column: mark.map(|m| m.column()),
            },
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Deserialises `node` into `T`, mapping errors to the line and key they are about.
    pub(crate) fn parse<T: for<'de> Deserialize<'de>>(&self, node: &Node, key: &str) -> Result<T> {
        marked_yaml::from_node(node).map_err(|error| {
            let mark = error.start_mark().or_else(|| node.span().start().copied());
            let inner = error.path().filter(|path| !path.is_empty() && *path != ".");
            let path = match inner {
                Some(path) => format!("{key}.{path}"),
                None => key.to_owned(),
            };
            // The error prints its own path first; the key already says it.
            let text = error.to_string();
            let text = inner.and_then(|inner| text.strip_prefix(&format!("{inner}: "))).unwrap_or(&text);
            Error::Spec {
                location: Location {
                    file: self.path.clone(),
                    line: mark.map(|m| m.line()),
                    column: mark.map(|m| m.column()),
                },
                key: path,
                message: unknown_key_message(text).unwrap_or_else(|| text.to_owned()),
            }
        })
    }

    /// A path from the spec, relative to the spec's directory, within it when the spec is untrusted.
    pub(crate) fn resolve(&self, node: Option<&Node>, key: &str, path: &Path) -> Result<PathBuf> {
        self.policy.confine(&self.base_dir, path).map_err(|message| self.error(node, key, message))
    }
}

impl SpecRegistry {
    /// Loads a pipeline from a spec file.
    pub async fn load_file(&self, path: impl AsRef<Path>, clock: Option<Arc<dyn Clock>>) -> Result<Pipeline> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        self.load_str(&text, path, &base_dir, clock).await
    }

    /// Loads a pipeline from spec text; `path` names it in errors and `base_dir` anchors relative paths.
    pub async fn load_str(
        &self,
        text: &str,
        path: &Path,
        base_dir: &Path,
        clock: Option<Arc<dyn Clock>>,
    ) -> Result<Pipeline> {
        let file = SpecFile { path: path.to_owned(), base_dir: base_dir.to_owned(), policy: self.policy().clone() };
        let root = marked_yaml::parse_yaml(0, text).map_err(|error| Error::Spec {
            location: Location { file: path.to_owned(), line: None, column: None },
            key: "<document>".into(),
            message: error.to_string(),
        })?;
        let mut top =
            root.as_mapping().cloned().ok_or_else(|| file.error(Some(&root), "<document>", "a spec is a mapping"))?;
        let store_node = take(&mut top, "store");
        let ledger_node = take(&mut top, "ledger");
        let lock_node = take(&mut top, "lock");
        let deployer_node = take(&mut top, "deployer");
        let config_node = take(&mut top, "config");
        let stages_node = take(&mut top, "stages")
            .ok_or_else(|| file.error(Some(&root), "stages", "a spec needs a list of stages"))?;
        let settings: TopSettings = file.parse(&Node::from(top), "<document>")?;

        let context = registry::Context { file: file.clone(), clock: clock.clone() };
        let store = self
            .build_store(
                &context,
                store_node.as_ref().ok_or_else(|| file.error(Some(&root), "store", "a spec needs a store"))?,
                "store",
            )
            .await?;
        let ledger = self
            .build_ledger(
                &context,
                ledger_node.as_ref().ok_or_else(|| file.error(Some(&root), "ledger", "a spec needs a ledger"))?,
                "ledger",
            )
            .await?;
        let mut builder = Pipeline::builder(settings.pipeline).store(store).ledger(ledger);
        // The ledger's key (PROMOTE_LEDGER_KEY_FILE) also keys what the ledger records about config and bundles.
        if let Some(key) = crate::integrity::IntegrityKey::from_env()? {
            builder = builder.integrity_key(key);
        }
        if let Some(node) = &lock_node {
            builder = builder.lock(self.build_lock(&context, node, "lock").await?);
        }
        if let Some(clock) = clock {
            builder = builder.clock(clock);
        }
        let shared_deployer = match &deployer_node {
            Some(node) => Some(self.build_deployer(&context, node, "deployer").await?),
            None => None,
        };
        let shared_config = match &config_node {
            Some(node) => self.build_configs(&context, node, "config").await?,
            None => Vec::new(),
        };
        let shared_templates = match &settings.templates {
            Some(dir) => Some(Templates::from_dir_shown_as(&file.resolve(Some(&root), "templates", dir)?, dir)?),
            None => None,
        };

        let stages =
            stages_node.as_sequence().ok_or_else(|| file.error(Some(&stages_node), "stages", "must be a list"))?;
        for (index, stage_node) in stages.iter().enumerate() {
            let key = format!("stages[{index}]");
            let stage = self
                .build_stage(
                    &context,
                    stage_node,
                    &key,
                    shared_deployer.clone(),
                    &shared_config,
                    shared_templates.clone(),
                )
                .await?;
            builder = builder.stage(stage);
        }
        builder.build().map_err(|error| file.error(Some(&stages_node), "stages", error.to_string()))
    }

    async fn build_stage(
        &self,
        context: &registry::Context,
        node: &Node,
        key: &str,
        shared_deployer: Option<Arc<dyn crate::deploy::Deployer>>,
        shared_config: &[Arc<dyn crate::config::ConfigSource>],
        shared_templates: Option<Templates>,
    ) -> Result<Stage> {
        let file = &context.file;
        let mut mapping =
            node.as_mapping().cloned().ok_or_else(|| file.error(Some(node), key, "a stage is a mapping"))?;
        let gates_node = take(&mut mapping, "gates");
        let verify_node = take(&mut mapping, "verify");
        let config_node = take(&mut mapping, "config");
        let deployer_node = take(&mut mapping, "deployer");
        let attest_node = take(&mut mapping, "attest");
        let settings: StageSettings = file.parse(&Node::from(mapping), key)?;
        let mut stage = Stage::new(&settings.name).auto(settings.auto);
        if let Some(upstream) = settings.upstream {
            stage = stage.upstream(match upstream {
                UpstreamSpec::AllOf(names) => Upstream::AllOf(names),
                UpstreamSpec::AnyOf(names) => Upstream::AnyOf(names),
            });
        }
        if let Some(placement) = settings.placement {
            if let Some(host) = placement.registry.as_deref().filter(|host| !file.policy.allows_registry(host)) {
                return Err(file.error(
                    Some(node),
                    &format!("{key}.placement.registry"),
                    format!("registry {host} is not on the allowlist for untrusted specs"),
                ));
            }
            let default = Placement::default();
            stage = stage.placement(Placement {
                registry: placement.registry,
                repository: placement.repository,
                tag: placement.tag.unwrap_or(default.tag),
            });
        }
        if let Some(OnFailureSpec::Rollback) = settings.on_failure {
            stage = stage.on_failure(OnFailure::Rollback);
        }
        if let Some(wait) = settings.lock_wait {
            let parsed = match wait.as_str() {
                "fail" => LockWait::Fail,
                other => LockWait::Wait(parse_duration(file, node, &format!("{key}.lock_wait"), other)?),
            };
            stage = stage.lock_wait(parsed);
        }
        if let Some(timeout) = settings.health_timeout {
            stage = stage.health_timeout(parse_duration(file, node, &format!("{key}.health_timeout"), &timeout)?);
        }
        let templates = match settings.templates {
            Some(dir) => {
                Some(Templates::from_dir_shown_as(&file.resolve(Some(node), &format!("{key}.templates"), &dir)?, &dir)?)
            }
            None => shared_templates,
        };
        if let Some(templates) = templates {
            stage = stage.templates(templates);
        }
        let deployer = match &deployer_node {
            Some(node) => Some(self.build_deployer(context, node, &format!("{key}.deployer")).await?),
            None => shared_deployer,
        };
        if let Some(deployer) = deployer {
            stage = stage.deployer(deployer);
        }
        for source in shared_config {
            stage = stage.config_source(source.clone());
        }
        if let Some(node) = &config_node {
            for source in self.build_configs(context, node, &format!("{key}.config")).await? {
                stage = stage.config_source(source);
            }
        }
        for (field, verification) in [(&gates_node, false), (&verify_node, true)] {
            let Some(list_node) = field else { continue };
            let name = if verification { "verify" } else { "gates" };
            let list = list_node
                .as_sequence()
                .ok_or_else(|| file.error(Some(list_node), &format!("{key}.{name}"), "must be a list"))?;
            for (index, gate_node) in list.iter().enumerate() {
                let gate = self.build_gate(context, gate_node, &format!("{key}.{name}[{index}]")).await?;
                stage = if verification { stage.verify_gate(gate) } else { stage.entry_gate(gate) };
            }
        }
        if let Some(list_node) = &attest_node {
            let list = list_node
                .as_sequence()
                .ok_or_else(|| file.error(Some(list_node), &format!("{key}.attest"), "must be a list of attestors"))?;
            for (index, attestor_node) in list.iter().enumerate() {
                stage = stage
                    .attestor(self.build_attestor(context, attestor_node, &format!("{key}.attest[{index}]")).await?);
            }
        }
        Ok(stage)
    }

    async fn build_configs(
        &self,
        context: &registry::Context,
        node: &Node,
        key: &str,
    ) -> Result<Vec<Arc<dyn crate::config::ConfigSource>>> {
        let list = node
            .as_sequence()
            .ok_or_else(|| context.file.error(Some(node), key, "must be a list of config sources"))?;
        let mut sources = Vec::new();
        for (index, source_node) in list.iter().enumerate() {
            sources.push(self.build_config(context, source_node, &format!("{key}[{index}]")).await?);
        }
        Ok(sources)
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" as a user reads it: the key once, and the closest
/// known key when one is close enough to be a typo.
fn unknown_key_message(text: &str) -> Option<String> {
    let rest = text.strip_prefix("Unknown field `").or_else(|| text.strip_prefix("unknown field `"))?;
    let (field, expected) = rest.split_once('`')?;
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let closest = known
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(field, candidate), *candidate))
        .min()
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1));
    Some(match closest {
        Some((_, candidate)) => format!("unknown key `{field}` (did you mean `{candidate}`?)"),
        None if known.is_empty() => format!("unknown key `{field}` (this mapping takes no keys)"),
        None => format!("unknown key `{field}` (known: {})", known.join(", ")),
    })
}

fn take(mapping: &mut MarkedMappingNode, key: &str) -> Option<Node> {
    mapping.remove(key)
}

fn parse_duration(file: &SpecFile, node: &Node, key: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text)
        .map_err(|error| file.error(Some(node), key, format!("`{text}` is not a duration like 30s, 5m or 2h: {error}")))
}
