//! A stage (environment) of a pipeline and how it is configured.

use std::sync::Arc;
use std::time::Duration;

use crate::attest::Attestor;
use crate::config::ConfigSource;
use crate::deploy::Deployer;
use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::lock::LockWait;
use crate::reference::ArtifactRef;
use crate::render::Templates;

/// Which earlier stages a build must have passed to enter a stage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Upstream {
    /// The stage just before (none for the first stage). The default.
    #[default]
    Previous,
    /// Every one of these stages (fan-in).
    AllOf(Vec<String>),
    /// At least one of these stages.
    AnyOf(Vec<String>),
}

/// What a stage does when its deploy or verification fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Mark the promotion failed and leave the stage as it is. The default.
    #[default]
    Fail,
    /// Mark it failed and roll the stage back to its previous good build.
    Rollback,
}

/// Where a stage's artifacts live: by default the same repository, tagged with the stage's name.
///
/// `repository` and `tag` are patterns: `{stage}`, `{name}` (the artifact's name in the build),
/// `{repository}` (its source repository), `{commit}` and `{version}` are replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Another registry, or the source registry.
    pub registry: Option<String>,
    /// A repository pattern, or the source repository.
    pub repository: Option<String>,
    /// The tag pattern.
    pub tag: String,
}

impl Default for Placement {
    fn default() -> Self {
        Placement { registry: None, repository: None, tag: "{stage}".to_owned() }
    }
}

impl Placement {
    /// A placement in the source repository under the tag pattern `tag` (`{stage}`, `{stage}-{commit}`…).
    ///
    /// ```
    /// use promote_core::Placement;
    /// let placement = Placement::tag("{stage}-{commit}").in_repository("promoted/{name}").in_registry("registry.example");
    /// let source = "ci.example/shop/web:abc1234".parse().unwrap();
    /// let target = placement.target("prd", "web", &source, "abc1234", None).unwrap();
    /// assert_eq!(target.to_string(), "registry.example/promoted/web:prd-abc1234");
    /// ```
    pub fn tag(pattern: impl Into<String>) -> Self {
        Placement { registry: None, repository: None, tag: pattern.into() }
    }

    /// The same placement in the repository `pattern` (`{name}`, `{repository}`, `{stage}`… are replaced).
    pub fn in_repository(mut self, pattern: impl Into<String>) -> Self {
        self.repository = Some(pattern.into());
        self
    }

    /// The same placement in another registry (`host[:port]`).
    pub fn in_registry(mut self, host: impl Into<String>) -> Self {
        self.registry = Some(host.into());
        self
    }

    /// Where artifact `name`, built at `source`, goes for `stage`.
    pub fn target(
        &self,
        stage: &str,
        name: &str,
        source: &ArtifactRef,
        commit: &str,
        version: Option<&str>,
    ) -> Result<ArtifactRef> {
        let fill = |pattern: &str| {
            pattern
                .replace("{stage}", stage)
                .replace("{name}", name)
                .replace("{repository}", source.repository())
                .replace("{commit}", commit)
                .replace("{version}", version.unwrap_or("unversioned"))
        };
        let registry = self.registry.clone().unwrap_or_else(|| source.registry().to_owned());
        let repository = self.repository.as_deref().map_or_else(|| source.repository().to_owned(), fill);
        ArtifactRef::by_tag(&registry, &repository, &fill(&self.tag))
    }
}

/// A stage of a pipeline.
#[derive(Debug, Clone)]
pub struct Stage {
    pub(crate) name: String,
    pub(crate) upstream: Upstream,
    pub(crate) entry_gates: Vec<Arc<dyn Gate>>,
    pub(crate) verify_gates: Vec<Arc<dyn Gate>>,
    pub(crate) config: Vec<Arc<dyn ConfigSource>>,
    pub(crate) deployer: Option<Arc<dyn Deployer>>,
    pub(crate) templates: Option<Templates>,
    pub(crate) placement: Placement,
    pub(crate) auto: bool,
    pub(crate) on_failure: OnFailure,
    pub(crate) lock_wait: LockWait,
    pub(crate) health_timeout: Duration,
    pub(crate) attestors: Vec<Arc<dyn Attestor>>,
}

impl Stage {
    /// A stage called `name` that draws from the stage before it, with no gates, config or deployer.
    pub fn new(name: impl Into<String>) -> Self {
        Stage {
            name: name.into(),
            upstream: Upstream::Previous,
            entry_gates: Vec::new(),
            verify_gates: Vec::new(),
            config: Vec::new(),
            deployer: None,
            templates: None,
            placement: Placement::default(),
            auto: false,
            on_failure: OnFailure::Fail,
            lock_wait: LockWait::Fail,
            health_timeout: Duration::from_secs(300),
            attestors: Vec::new(),
        }
    }

    /// Adds an attestor: after each promotion into this stage succeeds, it publishes an attestation of it,
    /// which the ledger records.
    pub fn attestor(mut self, attestor: impl Attestor) -> Self {
        self.attestors.push(Arc::new(attestor));
        self
    }

    /// The stage's attestors.
    pub fn attestors(&self) -> &[Arc<dyn Attestor>] {
        &self.attestors
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `reconcile` promotes into this stage automatically.
    pub fn is_auto(&self) -> bool {
        self.auto
    }

    /// The entry gates.
    pub fn entry_gates(&self) -> &[Arc<dyn Gate>] {
        &self.entry_gates
    }

    /// The verification gates.
    pub fn verify_gates(&self) -> &[Arc<dyn Gate>] {
        &self.verify_gates
    }

    /// Sets which stages a build must have passed.
    pub fn upstream(mut self, upstream: Upstream) -> Self {
        self.upstream = upstream;
        self
    }

    /// Adds an entry gate.
    pub fn entry_gate(mut self, gate: impl Gate) -> Self {
        self.entry_gates.push(Arc::new(gate));
        self
    }

    /// Adds a verification gate (run after the deploy is healthy).
    pub fn verify_gate(mut self, gate: impl Gate) -> Self {
        self.verify_gates.push(Arc::new(gate));
        self
    }

    /// Adds a config source (a shared one as an `Arc<dyn ConfigSource>`); later sources override earlier
    /// ones.
    pub fn config_source(mut self, source: impl ConfigSource) -> Self {
        self.config.push(Arc::new(source));
        self
    }

    /// Sets the deployer (a shared one as an `Arc<dyn Deployer>`).
    pub fn deployer(mut self, deployer: impl Deployer) -> Self {
        self.deployer = Some(Arc::new(deployer));
        self
    }

    /// Sets the manifest templates rendered for this stage.
    pub fn templates(mut self, templates: Templates) -> Self {
        self.templates = Some(templates);
        self
    }

    /// Sets where the stage's artifacts go.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Lets `reconcile` promote into this stage.
    pub fn auto(mut self, auto: bool) -> Self {
        self.auto = auto;
        self
    }

    /// Sets what a failed deploy or verification does.
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// Sets what a promotion does when the stage is locked.
    pub fn lock_wait(mut self, wait: LockWait) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Sets how long a deploy may take to become healthy.
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    pub(crate) fn validate_name(name: &str) -> Result<()> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(())
        } else {
            Err(Error::invalid("stage name", name, "use lowercase letters, digits and '-', at most 63 characters"))
        }
    }
}
