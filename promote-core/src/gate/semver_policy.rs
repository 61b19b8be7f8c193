//! Semver policy: the build's version meets a constraint, and is not older than the stage's current
//! build unless the promotion is a rollback.
//!
//! ```yaml
//! gates:
//!   - kind: semver
//!     name: release-line        # default: semver
//!     require: ">=2.0.0, <3"    # optional; a semver::VersionReq, checked when the spec loads
//!     allow_downgrade: false    # default false
//! ```
//!
//! A build registered without a version fails this gate, with a reason that says so: a policy about
//! versions cannot vouch for a build that has none. A pre-release (`2.1.0-rc.1`) meets a constraint only
//! if the constraint names a pre-release of the same `major.minor.patch` (the `semver` crate's rule).

use async_trait::async_trait;
use semver::VersionReq;

use super::{ApprovalPolicy, Gate, GateCapabilities, GateContext, GateReport};
use crate::error::{Error, Result};
use crate::ledger::{PromotionKind, Verdict};

/// A gate on the build's semantic version.
///
/// # Examples
/// ```
/// use promote_core::gate::SemverGate;
/// let gate = SemverGate::new("release-line").require(">=2.0.0, <3")?;
/// assert!(SemverGate::new("bad").require("two-ish").is_err());
/// # Ok::<(), promote_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SemverGate {
    name: String,
    requirement: Option<VersionReq>,
    allow_downgrade: bool,
}

impl SemverGate {
    /// A gate called `name` with no constraint that refuses downgrades.
    pub fn new(name: impl Into<String>) -> Self {
        SemverGate { name: name.into(), requirement: None, allow_downgrade: false }
    }

    /// Requires the version to meet `requirement` (`^1.4`, `>=2, <3`). An invalid constraint is
    /// [`Error::InvalidInput`].
    pub fn require(mut self, requirement: &str) -> Result<Self> {
        let parsed = VersionReq::parse(requirement)
            .map_err(|error| Error::invalid("version constraint", requirement, error.to_string()))?;
        self.requirement = Some(parsed);
        Ok(self)
    }

    /// Lets a promotion put an older version into the stage (a rollback always may).
    pub fn allow_downgrade(mut self, allow: bool) -> Self {
        self.allow_downgrade = allow;
        self
    }
}

#[async_trait]
impl Gate for SemverGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "semver"
    }

    fn capabilities(&self) -> GateCapabilities {
        GateCapabilities::pure()
    }

    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        None
    }

    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        let mut report = GateReport::new(Verdict::Pass);
        if let Some(requirement) = &self.requirement {
            report = report.with("require", requirement.to_string());
        }
        let Some(version) = &context.build.version else {
            report.verdict = Verdict::Fail(format!(
                "build {} (commit {}) has no version; register it with one to pass a semver policy",
                context.build.id,
                context.build.label()
            ));
            return Ok(report);
        };
        report = report.with("version", version.to_string());
        if let Some(requirement) = &self.requirement
            && !requirement.matches(version)
        {
            report.verdict = Verdict::Fail(format!("version {version} does not meet the constraint {requirement}"));
            return Ok(report);
        }
        let current_version = context.current.and_then(|build| build.version.as_ref());
        if let Some(current) = current_version {
            report = report.with("current_version", current.to_string());
            let rollback = matches!(context.kind, PromotionKind::Rollback { .. });
            if version < current && !rollback && !self.allow_downgrade {
                report.verdict = Verdict::Fail(format!(
                    "version {version} is older than {current}, which stage {} runs; a downgrade \
                     needs a rollback",
                    context.stage
                ));
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scene::{Scene, at};

    #[tokio::test]
    async fn a_version_in_range_passes_and_one_outside_fails() {
        let mut scene = Scene::new();
        let inside = scene.register("2.3.0", &[]);
        let outside = scene.register("3.0.0", &[]);
        let gate = SemverGate::new("semver").require(">=2.0.0, <3").unwrap();
        let now = at("2026-03-01T00:00:00Z");
        let report = scene.evaluate(&gate, &inside, "prd", &[], now).await;
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!(report.evidence["version"], "2.3.0");
        let report = scene.evaluate(&gate, &outside, "prd", &[], now).await;
        assert!(
            matches!(&report.verdict, Verdict::Fail(r) if r.contains("3.0.0 does not meet the constraint >=2.0.0, <3")),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn a_downgrade_fails_unless_it_is_a_rollback_or_allowed() {
        let mut scene = Scene::new();
        let old = scene.register("1.2.0", &[]);
        let new = scene.register("1.3.0", &[]);
        let now = at("2026-03-01T00:00:00Z");
        scene.pass("prd", &new, now);
        let gate = SemverGate::new("semver");
        let report = scene.evaluate(&gate, &old, "prd", &[], now).await;
        assert!(matches!(&report.verdict, Verdict::Fail(r) if r.contains("1.2.0 is older than 1.3.0")), "{report:?}");
        let rollback = PromotionKind::Rollback { replacing: Some(new.id.clone()) };
        let report = scene.evaluate_with(&gate, &old, "prd", &[], now, rollback, false).await.unwrap();
        assert_eq!(report.verdict, Verdict::Pass);
        let lenient = SemverGate::new("semver").allow_downgrade(true);
        let report = scene.evaluate(&lenient, &old, "prd", &[], now).await;
        assert_eq!(report.verdict, Verdict::Pass);
        // The same version again, and a newer one, are not downgrades.
        assert!(scene.evaluate(&gate, &new, "prd", &[], now).await.verdict.is_pass());
    }

    #[tokio::test]
    async fn a_build_without_a_version_fails_with_a_clear_reason() {
        let mut scene = Scene::new();
        let unversioned = scene.register("", &[]);
        let report =
            scene.evaluate(&SemverGate::new("semver"), &unversioned, "prd", &[], at("2026-03-01T00:00:00Z")).await;
        assert!(matches!(&report.verdict, Verdict::Fail(r) if r.contains("has no version")), "{report:?}");
    }

    #[tokio::test]
    async fn pre_releases_follow_the_semver_crate() {
        let mut scene = Scene::new();
        let rc = scene.register("2.1.0-rc.1", &[]);
        let now = at("2026-03-01T00:00:00Z");
        let plain = SemverGate::new("semver").require(">=2.0.0").unwrap();
        assert!(!scene.evaluate(&plain, &rc, "stg", &[], now).await.verdict.is_pass());
        let rc_ok = SemverGate::new("semver").require(">=2.1.0-rc.0").unwrap();
        assert!(scene.evaluate(&rc_ok, &rc, "stg", &[], now).await.verdict.is_pass());
    }

    #[test]
    fn an_invalid_constraint_is_refused() {
        let error = SemverGate::new("semver").require(">=banana").unwrap_err();
        assert!(error.to_string().contains("banana"), "{error}");
    }
}
