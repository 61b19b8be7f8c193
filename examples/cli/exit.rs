//! Exit codes a CI job can branch on, and how a `promote_core::Error` maps to them.

use promote_core::ledger::{FinalState, PromotionState};
use promote_core::{Error, Resource};

/// The exit codes, as `--help` prints them.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done (or already done)
  1  failed: a gate failed, the deploy failed, or verification failed
  2  usage or spec error (bad arguments, promote.yaml, templates, an unknown build or stage)
  3  pending: approval or soak still needed; nothing changed
  4  refused: not eligible, held, locked, approval refused, revision mismatch
  5  the backend is unavailable (or the promotion was interrupted); retrying later may help

Identity: --as, else $PROMOTE_ACTOR, else the CI's user ($GITHUB_ACTOR, $GITLAB_USER_LOGIN,
$BUILDKITE_BUILD_CREATOR, $CIRCLE_USERNAME, …), else the OS user. It is asserted by the caller, not proven.";

/// What a command's outcome means to a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 0: done, or already done.
    Done,
    /// 1: a gate, the deploy or verification failed.
    Failed,
    /// 2: bad arguments or a bad spec.
    Usage,
    /// 3: waiting for an approval or a soak.
    Pending,
    /// 4: refused: not eligible, held, locked.
    Refused,
    /// 5: a backend is unavailable; retrying later may help.
    Unavailable,
}

impl Exit {
    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Exit::Done => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Pending => 3,
            Exit::Refused => 4,
            Exit::Unavailable => 5,
        }
    }

    /// The exit for an error, by what its root means.
    pub(crate) fn of(error: &Error) -> Exit {
        match error.root() {
            Error::GatePending { .. } => Exit::Pending,
            Error::NotEligible { .. }
            | Error::Held { .. }
            | Error::Locked { .. }
            | Error::ApprovalRefused { .. }
            | Error::RevisionMismatch { .. }
            | Error::Fenced { .. } => Exit::Refused,
            Error::Spec { .. }
            | Error::InvalidInput { .. }
            | Error::Template { .. }
            | Error::MissingConfig { .. }
            | Error::NotSupported { .. } => Exit::Usage,
            // What the user named does not exist; an image or secret that is missing is a failure.
            Error::NotFound { resource: Resource::Build | Resource::Stage | Resource::Hold, .. } => Exit::Usage,
            // The spec (or a file it names) is missing.
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Exit::Usage,
            root if root.may_succeed_later() || error.may_succeed_later() => Exit::Unavailable,
            _ => Exit::Failed,
        }
    }

    /// The exit for a promotion record returned without an error.
    pub(crate) fn of_state(state: &PromotionState) -> Exit {
        match state {
            PromotionState::Finished(FinalState::Succeeded) => Exit::Done,
            PromotionState::Finished(FinalState::Pending { .. }) => Exit::Pending,
            PromotionState::Finished(FinalState::Failed { .. }) => Exit::Failed,
            // Left open for a re-run.
            PromotionState::InProgress { .. } => Exit::Unavailable,
        }
    }
}

/// What to do next about an error, in one sentence.
pub(crate) fn next_step(error: &Error) -> Option<String> {
    Some(match error.root() {
        Error::Spec { .. } => "fix the file at the line shown, then run `promote validate`".into(),
        Error::Template { .. } | Error::MissingConfig { .. } => {
            "fix the template or the stage's config sources, then run `promote validate`".into()
        }
        Error::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            format!("{} does not exist: pass --file, or run `promote init`", path.display())
        }
        Error::GatePending { .. } => "wait, or get the approvals, then run the same command again (exit 3)".into(),
        Error::NotEligible { stage, .. } => {
            format!("promote the build through the stages before {stage} first; `promote status` shows where it is")
        }
        Error::Held { stage, .. } => {
            format!("lift the hold with `promote unhold HOLD` (see `promote status`) on {stage}")
        }
        Error::Locked { .. } => "another promotion is running on this stage: try again when it finishes".into(),
        Error::ApprovalRefused { .. } => "ask another allow-listed promoter to approve".into(),
        Error::RevisionMismatch { .. } => {
            "register the build with the commit the image was built from (or --allow-revision-mismatch)".into()
        }
        Error::NotFound { resource: Resource::Build, .. } => {
            "`promote status` and `promote history` list builds".into()
        }
        Error::NotFound { resource: Resource::Stage, .. } => "the stages are the ones in the spec's `stages:`".into(),
        Error::GateFailed { .. } | Error::DeployFailed { .. } => {
            "`promote history --stage STAGE` shows the record and its evidence".into()
        }
        Error::LedgerCorrupt { .. } => {
            "see the README's ledger section: `FileLedger::recover` sets a torn tail aside".into()
        }
        _ if error.may_succeed_later() => "the promotion stays open: run the same command again later".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use promote_core::ErrorClass;
    use promote_core::error::{ApprovalRefusal, ErrorContext, Location};

    #[test]
    fn each_outcome_has_its_code() {
        let pending = Error::GatePending { build: "b".into(), stage: "stg".into(), reasons: vec!["soak".into()] };
        assert_eq!(Exit::of(&pending).code(), 3);
        let held = Error::Held { stage: "prd".into(), reason: "rollback".into(), placed_by: "ci".into() };
        assert_eq!(Exit::of(&held).code(), 4);
        let locked = Error::Locked { stage: "prd".into(), holder: "ci".into() };
        assert_eq!(Exit::of(&locked).code(), 4, "locked is a refusal, though retryable");
        let self_approval = Error::ApprovalRefused {
            build: "b".into(),
            stage: "prd".into(),
            approver: "dana".into(),
            reason: ApprovalRefusal::SelfApproval,
        };
        assert_eq!(Exit::of(&self_approval).code(), 4);
        let spec = Error::Spec {
            location: Location { file: "promote.yaml".into(), line: Some(3), column: None },
            key: "stages".into(),
            message: "x".into(),
        };
        assert_eq!(Exit::of(&spec).code(), 2);
        let gate =
            Error::GateFailed { build: "b".into(), stage: "prd".into(), gate: "smoke".into(), reason: "503".into() };
        assert_eq!(Exit::of(&gate).code(), 1);
    }

    #[test]
    fn backend_errors_follow_their_class_through_the_context() {
        let context = ErrorContext::stage("prd").with_step("artifacts");
        let temporary = Error::backend("oci", ErrorClass::Temporary, "503").in_context(context.clone());
        assert_eq!(Exit::of(&temporary), Exit::Unavailable);
        let exhausted = Error::backend("oci", ErrorClass::Temporary, "503").exhausted(5).in_context(context.clone());
        assert_eq!(Exit::of(&exhausted), Exit::Unavailable);
        let denied = Error::backend("oci", ErrorClass::Persistent, "403").in_context(context);
        assert_eq!(Exit::of(&denied), Exit::Failed);
        assert_eq!(Exit::of(&Error::not_found(Resource::Build, "b-1")), Exit::Usage);
        assert_eq!(Exit::of(&Error::not_found(Resource::Artifact, "r/web:1")), Exit::Failed);
    }

    #[test]
    fn records_map_by_state() {
        assert_eq!(Exit::of_state(&PromotionState::Finished(FinalState::Succeeded)), Exit::Done);
        assert_eq!(Exit::of_state(&PromotionState::InProgress { last_error: None }), Exit::Unavailable);
    }

    #[test]
    fn every_code_is_in_the_help() {
        for code in 0..=5 {
            assert!(EXIT_CODES_HELP.contains(&format!("\n  {code}  ")), "code {code} undocumented");
        }
    }
}
