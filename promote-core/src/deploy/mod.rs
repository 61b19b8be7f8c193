//! Deployers: apply a rendered bundle to an environment and wait until it is healthy.

mod context;
mod directory;
mod git;
mod memory;

use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

pub use context::DeployContext;
pub use directory::{DirectoryDeployer, INDEX_FILE};
pub(crate) use git::is_local_path;
pub use git::{GitDeployer, GitDeployerBuilder, GitStats, PlannedCommit};
pub use memory::{HealthScript, MemoryDeployer};

use crate::error::Result;
use crate::progress::Progress;

/// One Kubernetes object as a stage's templates rendered it: a YAML document with its identity. (Not an OCI
/// manifest: those are [`crate::manifest`]'s.)
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedObject {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, if set.
    pub namespace: Option<String>,
    /// The template file it was rendered from.
    pub template: String,
    /// The rendered YAML document. May hold secret values: never print it; use [`RenderedObject::masked`].
    content: String,
    /// The same document rendered with every secret replaced by `[redacted]`.
    masked: String,
}

impl RenderedObject {
    /// An object with its real and masked renderings.
    pub fn new(
        api_version: String,
        kind: String,
        name: String,
        namespace: Option<String>,
        template: String,
        content: String,
        masked: String,
    ) -> Self {
        RenderedObject { api_version, kind, name, namespace, template, content, masked }
    }

    /// `Kind/name` or `Kind/namespace/name`: the object's identity within a bundle.
    pub fn object_key(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{}/{}/{}", self.kind, namespace, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }

    /// The rendered document, secrets included. Only deployers call this.
    pub fn expose_content(&self) -> &str {
        &self.content
    }

    /// The rendered document with secret values masked: safe to show.
    pub fn masked(&self) -> &str {
        &self.masked
    }

    /// Whether the real rendering holds secret values.
    pub fn holds_secrets(&self) -> bool {
        self.content != self.masked
    }
}

impl Debug for RenderedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RenderedObject({})", self.object_key())
    }
}

/// A stage's rendered objects: what a deployer applies.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    stage: String,
    manifests: Vec<RenderedObject>,
    hash: String,
    context: Option<Arc<DeployContext>>,
}

impl Bundle {
    /// A bundle for `stage`. Its hash covers every object's identity and content, in order.
    pub fn new(stage: impl Into<String>, manifests: Vec<RenderedObject>) -> Self {
        Self::new_keyed(stage, manifests, None)
    }

    /// A bundle whose hash is keyed with `key` when there is one (`hmac-sha256:…`), so that a reader of
    /// the ledger cannot test guesses at the secret values the content holds.
    pub fn new_keyed(
        stage: impl Into<String>,
        manifests: Vec<RenderedObject>,
        key: Option<&crate::integrity::IntegrityKey>,
    ) -> Self {
        let mut hasher = Sha256::new();
        for manifest in &manifests {
            hasher.update(manifest.object_key().as_bytes());
            hasher.update([0]);
            hasher.update(manifest.content.as_bytes());
            hasher.update([0xff]);
        }
        let digest = hasher.finalize();
        let hash = match key {
            Some(key) => format!("hmac-sha256:{}", key.mac(&[b"promote bundle\n".as_slice(), &digest].concat())),
            None => format!("sha256:{}", hex::encode(digest)),
        };
        Bundle { stage: stage.into(), manifests, hash, context: None }
    }

    /// The same bundle, deployed for the promotion `context` describes. The engine sets it; the hash does
    /// not cover it.
    pub fn with_context(mut self, context: DeployContext) -> Self {
        self.context = Some(Arc::new(context));
        self
    }

    /// The promotion the bundle is deployed for, when the engine deploys it (`None` for a bundle built by
    /// hand).
    pub fn context(&self) -> Option<&DeployContext> {
        self.context.as_deref()
    }

    /// The same bundle, its hash keyed with `key` (or plain when `None`).
    pub fn keyed(self, key: Option<&crate::integrity::IntegrityKey>) -> Self {
        let context = self.context;
        Bundle { context, ..Self::new_keyed(self.stage, self.manifests, key) }
    }

    /// The stage.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The manifests, in render order.
    pub fn objects(&self) -> &[RenderedObject] {
        &self.manifests
    }

    /// The hash of the bundle, as recorded in the ledger.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The whole bundle, masked, as one multi-document YAML text: what `plan` diffs.
    pub fn masked_text(&self) -> String {
        let mut text = String::new();
        for manifest in &self.manifests {
            text.push_str("---\n# ");
            text.push_str(&manifest.object_key());
            text.push('\n');
            text.push_str(manifest.masked.trim_end());
            text.push('\n');
        }
        text
    }
}

impl Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("stage", &self.stage)
            .field("objects", &self.manifests.iter().map(RenderedObject::object_key).collect::<Vec<_>>())
            .field("hash", &self.hash)
            .field("promotion", &self.context.as_ref().map(|context| context.promotion.as_str()))
            .finish()
    }
}

/// Whether `apply` changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Apply for real.
    Apply,
    /// Report what would change, changing nothing.
    DryRun,
}

/// What happens to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// It does not exist yet.
    Create,
    /// It exists and differs.
    Update,
    /// It exists and no longer belongs to the bundle.
    Delete,
    /// It exists and is the same.
    Unchanged,
}

/// One object's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The object (`Kind/name`).
    pub object: String,
    /// What happens to it.
    pub action: ChangeAction,
}

/// What a deployer reports about a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeployStatus {
    /// The hash of the bundle that runs there now, if any.
    pub bundle_hash: Option<String>,
    /// The objects deployed.
    pub objects: Vec<String>,
    /// Whether it is healthy, if the deployer can tell.
    pub healthy: Option<bool>,
}

/// What a deployer can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeployerCapabilities {
    /// `apply` with [`ApplyMode::DryRun`] reports changes without making them.
    pub dry_run: bool,
    /// `wait_healthy` observes real health (rather than returning at once).
    pub health: bool,
    /// `apply` removes objects that left the bundle.
    pub prune: bool,
}

/// Applies rendered bundles to an environment.
///
/// # Contract
/// - `apply(bundle, Apply)` makes the stage run exactly `bundle` (pruning objects that left it, where
///   [`DeployerCapabilities::prune`]) and returns each object's change. It is idempotent: applying the same
///   bundle again reports every object [`ChangeAction::Unchanged`].
/// - `apply(bundle, DryRun)` returns the same changes and changes nothing.
/// - `wait_healthy` returns once the stage runs `bundle` healthily, or fails with
///   [`Error::DeployFailed`](crate::Error::DeployFailed) naming the reason, or with
///   [`Error::Timeout`](crate::Error::Timeout) after `timeout`.
/// - `current` returns the bundle the stage runs now (as last applied), or `None`.
/// - `status` reports what runs and whether it is healthy.
/// - No secret value reaches an error, a log line or a change description.
#[async_trait]
pub trait Deployer: Debug + Send + Sync + 'static {
    /// What the deployer can do.
    fn capabilities(&self) -> DeployerCapabilities;

    /// Applies (or dry-runs) a bundle.
    async fn apply(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>>;

    /// Waits until the stage runs `bundle` healthily, reporting what it waits on to `progress`.
    async fn wait_healthy(&self, bundle: &Bundle, timeout: Duration, progress: &Progress) -> Result<String>;

    /// The bundle the stage runs now.
    async fn current(&self, stage: &str) -> Result<Option<Bundle>>;

    /// What runs in the stage and whether it is healthy.
    async fn status(&self, stage: &str) -> Result<DeployStatus>;
}

forward_to_inner!(Deployer {
    fn capabilities(&self) -> DeployerCapabilities {
        (**self).capabilities()
    }
    async fn apply(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>> {
        (**self).apply(bundle, mode).await
    }
    async fn wait_healthy(&self, bundle: &Bundle, timeout: Duration, progress: &Progress) -> Result<String> {
        (**self).wait_healthy(bundle, timeout, progress).await
    }
    async fn current(&self, stage: &str) -> Result<Option<Bundle>> {
        (**self).current(stage).await
    }
    async fn status(&self, stage: &str) -> Result<DeployStatus> {
        (**self).status(stage).await
    }
});

/// The changes that take `current` to `next`, object by object.
pub fn diff_objects(current: Option<&Bundle>, next: &Bundle) -> Vec<Change> {
    let mut changes = Vec::new();
    let old = |key: &str| current.and_then(|bundle| bundle.manifests.iter().find(|m| m.object_key() == key));
    for manifest in &next.manifests {
        let key = manifest.object_key();
        let action = match old(&key) {
            None => ChangeAction::Create,
            Some(existing) if existing.content == manifest.content => ChangeAction::Unchanged,
            Some(_) => ChangeAction::Update,
        };
        changes.push(Change { object: key, action });
    }
    if let Some(current) = current {
        for manifest in &current.manifests {
            let key = manifest.object_key();
            if !next.manifests.iter().any(|m| m.object_key() == key) {
                changes.push(Change { object: key, action: ChangeAction::Delete });
            }
        }
    }
    changes
}
