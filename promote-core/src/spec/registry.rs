//! The registry of backend kinds a spec may name.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use marked_yaml::Node;
use serde::Deserialize;

use super::{SpecFile, SpecPolicy};
use crate::attest::Attestor;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    ConfigEntry, ConfigRequest, ConfigSet, ConfigSource, ConfigValue, MemoryConfigSource, Secret, SourceCapabilities,
};
use crate::deploy::{Deployer, MemoryDeployer};
use crate::error::{Error, Result};
use crate::gate::{ApprovalGate, ApprovalPolicy, Gate};
use crate::ledger::{FileLedger, Ledger, MemoryLedger};
use crate::lock::{EnvironmentLock, FileLock, MemoryLock};
use crate::store::{ArtifactStore, MemoryArtifactStore};

/// A boxed future, as constructors return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A constructor for one kind of backend.
pub type Constructor<T> = Arc<dyn Fn(BackendSpec) -> BoxFuture<Result<T>> + Send + Sync>;

/// What a constructor receives: the backend's settings from the spec, and where they are.
#[derive(Clone)]
pub struct BackendSpec {
    kind: String,
    key: String,
    node: Node,
    file: SpecFile,
    clock: Arc<dyn Clock>,
    /// The registry that is building this backend, so composites can build children of any kind.
    registry: Arc<SpecRegistry>,
}

impl fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendSpec").field("kind", &self.kind).field("key", &self.key).finish()
    }
}

impl BackendSpec {
    /// The kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The key path of this backend in the spec (`stages[2].deployer`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The registry building this backend: composites build their children with it, so every kind the
    /// caller registered can be nested.
    pub(crate) fn registry(&self) -> &SpecRegistry {
        &self.registry
    }

    /// The pipeline's clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Deserialises the backend's settings (everything but `kind`) into `T`. Use
    /// `#[serde(deny_unknown_fields)]` on `T`, so that a misspelt key is an error naming its line.
    pub fn parse<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        self.file.parse(&self.node, &self.key)
    }

    /// The path of `setting`, as the spec wrote it, relative to the spec file's directory. Under an
    /// untrusted [`SpecPolicy`] it must stay inside that directory (no absolute path, no `..`, no symlink),
    /// or this is an [`Error::Spec`] naming the setting.
    pub fn resolve_path(&self, setting: &str, path: &Path) -> Result<PathBuf> {
        self.file.policy.confine(&self.file.base_dir, path).map_err(|message| self.error_at(setting, message))
    }

    /// The directory of the spec file, which relative paths start from.
    pub fn spec_dir(&self) -> &Path {
        &self.file.base_dir
    }

    /// How far the spec is trusted.
    pub fn policy(&self) -> &SpecPolicy {
        &self.file.policy
    }

    /// Refuses this backend in an untrusted spec unless the embedder allowed its kind: for kinds that act
    /// with the runner's authority (`does` says what it would do: "runs programs", "reads AWS credentials").
    pub fn refuse_if_untrusted(&self, does: &str) -> Result<()> {
        if self.file.policy.allows_kind(&self.kind) {
            return Ok(());
        }
        Err(self.error(format!(
            "kind `{}` is not allowed in an untrusted spec: it {does} with the runner's authority (an embedder \
             may allow it with SpecPolicy::allow_kind)",
            self.kind
        )))
    }

    /// Refuses `setting` in an untrusted spec: for settings that choose where credentials come from or go.
    pub fn refuse_setting_if_untrusted(&self, setting: &str, does: &str) -> Result<()> {
        if self.file.policy.is_trusted() {
            return Ok(());
        }
        Err(self.error_at(setting, format!("not allowed in an untrusted spec: it {does}")))
    }

    /// Refuses a registry `host` named at `setting` that an untrusted spec may not reach.
    pub fn check_registry(&self, setting: &str, host: &str) -> Result<()> {
        if self.file.policy.allows_registry(host) {
            return Ok(());
        }
        Err(self.error_at(setting, format!("registry {host} is not on the allowlist for untrusted specs")))
    }

    /// An [`Error::Spec`] about this backend's settings, at the backend's line.
    pub fn error(&self, message: impl Into<String>) -> Error {
        self.file.error(Some(&self.node), &self.key, message)
    }

    /// An [`Error::Spec`] about one setting (`timeout`, or a path such as `freezes[1].until`): it names the
    /// setting under the backend's key path (`stages[2].gates[0].timeout`) and the line and column of its
    /// value, or of the nearest enclosing value the spec has.
    pub fn error_at(&self, setting: &str, message: impl Into<String>) -> Error {
        let mut node = &self.node;
        for part in setting.split('.') {
            let (name, index) = match part.strip_suffix(']').and_then(|p| p.split_once('[')) {
                Some((name, index)) => (name, index.parse::<usize>().ok()),
                None => (part, None),
            };
            let Some(child) = node.as_mapping().and_then(|mapping| mapping.get_node(name)) else {
                break;
            };
            node = child;
            match index.and_then(|index| node.as_sequence().and_then(|items| items.get_node(index))) {
                Some(item) => node = item,
                None if index.is_some() => break,
                None => {}
            }
        }
        self.file.error(Some(node), &format!("{}.{setting}", self.key), message)
    }
}

pub(super) struct Context {
    pub(super) file: SpecFile,
    pub(super) clock: Option<Arc<dyn Clock>>,
}

/// Maps backend kinds to constructors. [`SpecRegistry::with_defaults`] knows the core's local kinds.
///
/// A registry loads specs under a [`SpecPolicy`]: trusted by default; [`SpecRegistry::with_policy`] with
/// [`SpecPolicy::untrusted`] for specs from pull requests.
#[derive(Clone, Default)]
pub struct SpecRegistry {
    policy: SpecPolicy,
    stores: HashMap<String, Constructor<Arc<dyn ArtifactStore>>>,
    ledgers: HashMap<String, Constructor<Arc<dyn Ledger>>>,
    locks: HashMap<String, Constructor<Arc<dyn EnvironmentLock>>>,
    deployers: HashMap<String, Constructor<Arc<dyn Deployer>>>,
    configs: HashMap<String, Constructor<Arc<dyn ConfigSource>>>,
    gates: HashMap<String, Constructor<Arc<dyn Gate>>>,
    attestors: HashMap<String, Constructor<Arc<dyn Attestor>>>,
}

impl fmt::Debug for SpecRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = |map: &dyn Fn() -> Vec<String>| map();
        f.debug_struct("SpecRegistry")
            .field("stores", &kinds(&|| sorted(self.stores.keys())))
            .field("ledgers", &kinds(&|| sorted(self.ledgers.keys())))
            .field("locks", &kinds(&|| sorted(self.locks.keys())))
            .field("deployers", &kinds(&|| sorted(self.deployers.keys())))
            .field("configs", &kinds(&|| sorted(self.configs.keys())))
            .field("gates", &kinds(&|| sorted(self.gates.keys())))
            .field("attestors", &kinds(&|| sorted(self.attestors.keys())))
            .finish()
    }
}

fn sorted<'a>(keys: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut keys: Vec<String> = keys.cloned().collect();
    keys.sort();
    keys
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLedgerSettings {
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLockSettings {
    dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalSettings {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    promoters: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    min_approvals: Option<usize>,
    #[serde(default)]
    allow_self_approval: bool,
    #[serde(default)]
    expires_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InlineSettings {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    values: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

/// Values written in the spec itself. Secrets here suit demos and tests; real secrets belong in a
/// secret store.
#[derive(Debug)]
struct InlineConfig {
    name: String,
    values: ConfigSet,
}

#[async_trait::async_trait]
impl ConfigSource for InlineConfig {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities { versioned: false, secrets: true }
    }
    async fn load(&self, _request: &ConfigRequest) -> Result<ConfigSet> {
        Ok(self.values.clone())
    }
}

impl SpecRegistry {
    /// A registry with no kinds.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with the core's kinds: store `memory`; ledger `memory`, `file`; lock `memory`, `file`;
    /// deployer `memory`; config `inline`, `memory`; gate `approval`, `soak`, `semver`, `window`, `metric`,
    /// `command`, `http`, `all`, `any`, `not`.
    pub fn with_defaults() -> Self {
        let mut registry = Self::empty();
        registry.register_store("memory", |spec| async move {
            spec.parse::<NoSettings>()?;
            Ok(Arc::new(MemoryArtifactStore::new()) as Arc<dyn ArtifactStore>)
        });
        registry.register_ledger("memory", |spec| async move {
            spec.parse::<NoSettings>()?;
            Ok(Arc::new(MemoryLedger::new()) as Arc<dyn Ledger>)
        });
        registry.register_ledger("file", |spec| async move {
            let settings: FileLedgerSettings = spec.parse()?;
            Ok(Arc::new(FileLedger::open(spec.resolve_path("path", &settings.path)?).await?) as Arc<dyn Ledger>)
        });
        registry.register_lock("memory", |spec| async move {
            spec.parse::<NoSettings>()?;
            Ok(Arc::new(MemoryLock::new()) as Arc<dyn EnvironmentLock>)
        });
        registry.register_lock("file", |spec| async move {
            let settings: FileLockSettings = spec.parse()?;
            Ok(Arc::new(FileLock::new(spec.resolve_path("dir", &settings.dir)?)) as Arc<dyn EnvironmentLock>)
        });
        registry.register_deployer("memory", |spec| async move {
            spec.parse::<NoSettings>()?;
            Ok(Arc::new(MemoryDeployer::new()) as Arc<dyn Deployer>)
        });
        registry.register_config("memory", |spec| async move {
            spec.parse::<NoSettings>()?;
            Ok(Arc::new(MemoryConfigSource::new(spec.key())) as Arc<dyn ConfigSource>)
        });
        registry.register_config("inline", |spec| async move {
            let settings: InlineSettings = spec.parse()?;
            let name = settings.name.unwrap_or_else(|| format!("inline:{}", spec.key()));
            let mut values = ConfigSet::new();
            for (key, value) in settings.values {
                values
                    .insert(key, ConfigEntry { value: ConfigValue::Plain(value), source: name.clone(), version: None });
            }
            for (key, value) in settings.secrets {
                values.insert(
                    key,
                    ConfigEntry { value: ConfigValue::Secret(Secret::new(value)), source: name.clone(), version: None },
                );
            }
            Ok(Arc::new(InlineConfig { name, values }) as Arc<dyn ConfigSource>)
        });
        registry.register_gate("approval", |spec| async move {
            let settings: ApprovalSettings = spec.parse()?;
            let mut policy = ApprovalPolicy::promoters(settings.promoters)
                .min_approvals(settings.min_approvals.unwrap_or(1))
                .allow_self_approval(settings.allow_self_approval);
            policy.groups = settings.groups;
            if let Some(text) = settings.expires_after {
                let after = humantime::parse_duration(&text)
                    .map_err(|e| spec.error_at("expires_after", format!("`{text}` is not a duration like 24h: {e}")))?;
                policy = policy.expires_after(after);
            }
            if policy.min_approvals == 0 {
                return Err(spec.error_at("min_approvals", "must be at least 1"));
            }
            if policy.promoters.is_empty() && policy.groups.is_empty() {
                return Err(spec.error("an approval gate needs promoters or groups"));
            }
            let name = settings.name.unwrap_or_else(|| "approval".into());
            Ok(Arc::new(ApprovalGate::new(name, policy)) as Arc<dyn Gate>)
        });
        super::kinds::register(&mut registry);
        registry
    }

    /// The same registry loading specs under `policy`.
    pub fn with_policy(mut self, policy: SpecPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The policy specs are loaded under.
    pub fn policy(&self) -> &SpecPolicy {
        &self.policy
    }

    /// Makes the `memory` store kind build `store` itself, so that the caller can push images into the store
    /// a spec-built pipeline uses (every `store: { kind: memory }` of specs this registry loads shares it).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use promote_core::manifest::OCI_MANIFEST;
    /// use promote_core::{BuildRequest, MemoryArtifactStore, SpecRegistry};
    /// let images = MemoryArtifactStore::new();
    /// images.push("memory.local/web:3f2c1a9".parse()?, OCI_MANIFEST, br#"{"schemaVersion":2}"#.to_vec())?;
    /// let spec = "pipeline: shop\nstore: { kind: memory }\nledger: { kind: memory }\nstages: [ { name: dev } ]\n";
    /// let registry = SpecRegistry::with_defaults().with_memory_store(images);
    /// let pipeline = registry.load_str(spec, "promote.yaml".as_ref(), ".".as_ref(), None).await?;
    /// let request = BuildRequest::new("3f2c1a9").artifact("web", "memory.local/web:3f2c1a9".parse()?);
    /// pipeline.register(request, "ci").await?;
    /// # Ok::<(), promote_core::Error>(()) }).unwrap();
    /// ```
    pub fn with_memory_store(mut self, store: MemoryArtifactStore) -> Self {
        self.register_store("memory", move |spec| {
            let store = store.clone();
            async move {
                spec.parse::<NoSettings>()?;
                Ok(Arc::new(store) as Arc<dyn ArtifactStore>)
            }
        });
        self
    }

    /// Builds the gates nested under `field` of a gate's settings (the `gates:` list of `all`/`any`, the
    /// `gate:` of `not`), each through this registry, with errors naming their own key.
    pub(crate) async fn build_nested_gates(&self, parent: &BackendSpec, field: &str) -> Result<Vec<Arc<dyn Gate>>> {
        let key = format!("{}.{field}", parent.key);
        let node = parent
            .node
            .as_mapping()
            .and_then(|mapping| mapping.get_node(field))
            .ok_or_else(|| parent.file.error(Some(&parent.node), &key, format!("missing `{field}`")))?;
        let context = Context { file: parent.file.clone(), clock: Some(parent.clock.clone()) };
        let mut gates = Vec::new();
        match node.as_sequence() {
            Some(list) => {
                for (index, child) in list.iter().enumerate() {
                    let child_key = format!("{key}[{index}]");
                    gates.push(self.build_gate(&context, child, &child_key).await?);
                }
            }
            None => gates.push(self.build_gate(&context, node, &key).await?),
        }
        Ok(gates)
    }
}

macro_rules! kind_family {
    ($register:ident, $build:ident, $field:ident, $trait:ident, $what:literal) => {
        impl SpecRegistry {
            #[doc = concat!("Registers (or replaces) the constructor for ", $what, " kind `kind`.")]
            pub fn $register<F, Fut>(&mut self, kind: &str, constructor: F) -> &mut Self
            where
                F: Fn(BackendSpec) -> Fut + Send + Sync + 'static,
                Fut: Future<Output = Result<Arc<dyn $trait>>> + Send + 'static,
            {
                self.$field.insert(kind.to_owned(), Arc::new(move |spec| Box::pin(constructor(spec))));
                self
            }

            pub(super) async fn $build(&self, context: &Context, node: &Node, key: &str) -> Result<Arc<dyn $trait>> {
                let spec = self.backend_spec(context, node, key)?;
                let constructor = self.$field.get(spec.kind()).ok_or_else(|| {
                    let known = sorted(self.$field.keys()).join(", ");
                    context.file.error(
                        Some(node),
                        &format!("{key}.kind"),
                        format!("unknown {} kind `{}` (known: {known})", $what, spec.kind()),
                    )
                })?;
                constructor(spec).await
            }
        }
    };
}

kind_family!(register_store, build_store, stores, ArtifactStore, "artifact store");
kind_family!(register_ledger, build_ledger, ledgers, Ledger, "ledger");
kind_family!(register_lock, build_lock, locks, EnvironmentLock, "lock");
kind_family!(register_deployer, build_deployer, deployers, Deployer, "deployer");
kind_family!(register_config, build_config, configs, ConfigSource, "config source");
kind_family!(register_gate, build_gate, gates, Gate, "gate");
kind_family!(register_attestor, build_attestor, attestors, Attestor, "attestor");

impl SpecRegistry {
    fn backend_spec(&self, context: &Context, node: &Node, key: &str) -> Result<BackendSpec> {
        let file = &context.file;
        let mut mapping =
            node.as_mapping().cloned().ok_or_else(|| file.error(Some(node), key, "must be a mapping with a `kind`"))?;
        let kind_node =
            mapping.remove("kind").ok_or_else(|| file.error(Some(node), &format!("{key}.kind"), "missing `kind`"))?;
        let kind = kind_node
            .as_scalar()
            .map(|s| s.as_str().to_owned())
            .ok_or_else(|| file.error(Some(&kind_node), &format!("{key}.kind"), "`kind` must be a string"))?;
        let mut node_without_kind = Node::from(mapping);
        // Keep the block's position for errors about the whole block.
        *node_without_kind.span_mut() = *node.span();
        Ok(BackendSpec {
            registry: Arc::new(self.clone()),
            kind,
            key: key.to_owned(),
            node: node_without_kind,
            file: file.clone(),
            clock: context.clock.clone().unwrap_or_else(|| Arc::new(SystemClock)),
        })
    }
}
