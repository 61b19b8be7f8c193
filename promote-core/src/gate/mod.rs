//! Gates: what a build must pass to enter a stage (entry gates) or to stay there (verification gates).

mod approval;
mod command;
mod composite;
#[cfg(feature = "http-gate")]
mod http;
mod metric;
mod semver_policy;
mod soak;
mod window;

use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use approval::{ApprovalGate, ApprovalPolicy, Identity};
pub use command::CommandGate;
pub use composite::Composite;
#[cfg(feature = "http-gate")]
pub use http::{HttpGate, MAX_RETRIES};
pub use metric::{Comparison, MetricGate};
pub use semver_policy::SemverGate;
pub use soak::{SoakCount, SoakGate};
pub use window::{Freeze, WindowGate};

use crate::build::Build;
use crate::config::Redactor;
use crate::error::Result;
use crate::ledger::{GateEvidence, LedgerView, PromotionKind, Verdict};

/// When a gate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatePhase {
    /// Before anything is changed for the stage.
    Entry,
    /// After the deploy is healthy.
    Verification,
}

/// What a gate is shown.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct GateContext<'a> {
    /// The candidate build.
    pub build: &'a Build,
    /// The target stage.
    pub stage: &'a str,
    /// The stages the target stage draws from.
    pub upstream: &'a [String],
    /// The build currently in the target stage, if any.
    pub current: Option<&'a Build>,
    /// The ledger as of now.
    pub ledger: &'a LedgerView,
    /// Now, from the pipeline's clock.
    pub now: DateTime<Utc>,
    /// Promote or rollback.
    pub kind: &'a PromotionKind,
    /// Entry or verification.
    pub phase: GatePhase,
    /// Who asked for the promotion.
    pub requested_by: &'a str,
    /// Whether this is a `plan` (gates with side effects must not act).
    pub dry_run: bool,
    /// Every secret value the pipeline knows (config secrets, registry credentials). Gates that keep text
    /// from outside as evidence (a program's output, a response body) mask these in it.
    pub secrets: &'a Redactor,
}

impl<'a> GateContext<'a> {
    /// What a gate is shown about promoting `build` into `stage` at `now`, with `ledger` as it stands: a
    /// promotion (not a plan) in the entry phase, requested by nobody, drawing from no stage, with no
    /// build current and no secret to redact. The setters fill in the rest. For gates' unit tests; the
    /// engine builds its own.
    pub fn new(build: &'a Build, stage: &'a str, ledger: &'a LedgerView, now: DateTime<Utc>) -> Self {
        const PROMOTE: &PromotionKind = &PromotionKind::Promote;
        static NO_SECRETS: std::sync::LazyLock<Redactor> = std::sync::LazyLock::new(Redactor::default);
        GateContext {
            build,
            stage,
            upstream: &[],
            current: None,
            ledger,
            now,
            kind: PROMOTE,
            phase: GatePhase::Entry,
            requested_by: "",
            dry_run: false,
            secrets: &NO_SECRETS,
        }
    }

    /// The stages the target draws from.
    pub fn upstream(mut self, upstream: &'a [String]) -> Self {
        self.upstream = upstream;
        self
    }

    /// The build currently in the target stage.
    pub fn current(mut self, current: Option<&'a Build>) -> Self {
        self.current = current;
        self
    }

    /// Promote or rollback.
    pub fn kind(mut self, kind: &'a PromotionKind) -> Self {
        self.kind = kind;
        self
    }

    /// Entry or verification.
    pub fn phase(mut self, phase: GatePhase) -> Self {
        self.phase = phase;
        self
    }

    /// Who asked for the promotion.
    pub fn requested_by(mut self, actor: &'a str) -> Self {
        self.requested_by = actor;
        self
    }

    /// Whether this is a plan.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The secrets to redact from what the gate shows.
    pub fn secrets(mut self, secrets: &'a Redactor) -> Self {
        self.secrets = secrets;
        self
    }
}

/// A gate's verdict with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    /// The verdict.
    pub verdict: Verdict,
    /// What the gate looked at, for the ledger. Never a secret.
    pub evidence: BTreeMap<String, serde_json::Value>,
}

impl GateReport {
    /// A report with this verdict and no evidence.
    pub fn new(verdict: Verdict) -> Self {
        GateReport { verdict, evidence: BTreeMap::new() }
    }

    /// Adds a piece of evidence.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.evidence.insert(key.to_owned(), value.into());
        self
    }

    /// The report as the ledger records it.
    pub fn into_evidence(self, gate: &dyn Gate) -> GateEvidence {
        GateEvidence {
            gate: gate.name().to_owned(),
            kind: gate.kind().to_owned(),
            verdict: self.verdict,
            evidence: self.evidence,
        }
    }
}

/// What a gate is like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GateCapabilities {
    /// Evaluating it changes nothing outside (so `plan` may run it).
    pub side_effect_free: bool,
}

impl GateCapabilities {
    /// A gate that only reads.
    pub fn pure() -> Self {
        GateCapabilities { side_effect_free: true }
    }

    /// A gate that acts (runs a command, calls a URL).
    pub fn acting() -> Self {
        GateCapabilities { side_effect_free: false }
    }
}

/// A check a build must pass.
///
/// # Contract
/// - `evaluate` answers [`Verdict::Pass`], [`Verdict::Pending`] (not yet; the reason says what is
///   awaited) or [`Verdict::Fail`], with evidence that contains no secret. An `Err` means the gate could
///   not decide (its backend failed), not that the build failed.
/// - A gate whose capabilities say it is not side-effect-free is not evaluated by `plan` unless it is
///   marked safe for plans; the engine reports it as pending instead.
/// - Gates are evaluated concurrently; a gate must not rely on another's result.
/// - `approval_policy` is `Some` only for gates that count manual approvals; the engine uses it to accept
///   or refuse an approval before recording it.
#[async_trait]
pub trait Gate: Debug + Send + Sync + 'static {
    /// The gate's name, unique within its stage.
    fn name(&self) -> &str;

    /// The gate's kind (`approval`, `soak`, `command`…).
    fn kind(&self) -> &str;

    /// What the gate is like.
    fn capabilities(&self) -> GateCapabilities;

    /// The approval policy, for gates that count manual approvals.
    fn approval_policy(&self) -> Option<&ApprovalPolicy>;

    /// Evaluates the candidate.
    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport>;
}

forward_to_inner!(Gate {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn kind(&self) -> &str {
        (**self).kind()
    }
    fn capabilities(&self) -> GateCapabilities {
        (**self).capabilities()
    }
    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        (**self).approval_policy()
    }
    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        (**self).evaluate(context).await
    }
});
