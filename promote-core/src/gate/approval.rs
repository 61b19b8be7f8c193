//! Manual approval by allow-listed promoters, with a quorum.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Gate, GateCapabilities, GateContext, GateReport};
use crate::build::Build;
use crate::error::{ApprovalRefusal, Result};
use crate::ledger::{Approval, LedgerView, Verdict};

/// Who is approving: an identity and the groups it belongs to (as the embedding tool knows them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The identity (a user name, an email).
    pub name: String,
    /// Groups the identity belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Identity {
    /// An identity with no groups.
    pub fn new(name: impl Into<String>) -> Self {
        Identity { name: name.into(), groups: Vec::new() }
    }

    /// Adds a group.
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }
}

/// Who may approve, and how many must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// Identities allowed to approve.
    #[serde(default)]
    pub promoters: Vec<String>,
    /// Groups whose members may approve.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Distinct approvals needed.
    #[serde(default = "one")]
    pub min_approvals: usize,
    /// Whether the build's author or the promotion's requester may approve.
    #[serde(default)]
    pub allow_self_approval: bool,
    /// How long an approval stays valid.
    #[serde(default, with = "crate::duration_serde::option", skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<Duration>,
}

fn one() -> usize {
    1
}

impl ApprovalPolicy {
    /// A policy allowing these identities, one approval needed, no self-approval, no expiry.
    pub fn promoters<I: IntoIterator<Item = S>, S: Into<String>>(promoters: I) -> Self {
        ApprovalPolicy {
            promoters: promoters.into_iter().map(Into::into).collect(),
            groups: Vec::new(),
            min_approvals: 1,
            allow_self_approval: false,
            expires_after: None,
        }
    }

    /// Sets the quorum.
    pub fn min_approvals(mut self, count: usize) -> Self {
        self.min_approvals = count;
        self
    }

    /// Allows members of a group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }

    /// Lets approvals expire.
    pub fn expires_after(mut self, after: Duration) -> Self {
        self.expires_after = Some(after);
        self
    }

    /// Allows (or forbids) self-approval.
    pub fn allow_self_approval(mut self, allow: bool) -> Self {
        self.allow_self_approval = allow;
        self
    }

    fn allows(&self, identity: &Identity) -> bool {
        self.promoters.contains(&identity.name) || identity.groups.iter().any(|g| self.groups.contains(g))
    }

    fn is_live(&self, approval: &Approval, now: DateTime<Utc>) -> bool {
        match self.expires_after.and_then(|after| chrono::Duration::from_std(after).ok()) {
            Some(after) => now - approval.at <= after,
            None => true,
        }
    }

    /// Decides whether `identity` may approve `build` for `stage` at `at`, given the ledger. The engine
    /// calls it before recording anything.
    pub fn check(
        &self,
        view: &LedgerView,
        build: &Build,
        stage: &str,
        identity: &Identity,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> std::result::Result<(), ApprovalRefusal> {
        if !self.allows(identity) {
            return Err(ApprovalRefusal::NotAllowed);
        }
        if !self.allow_self_approval {
            let author = build.author.as_deref() == Some(identity.name.as_str());
            let requester = view.promotions_of(stage, &build.id).any(|p| p.actor == identity.name);
            if author || requester {
                return Err(ApprovalRefusal::SelfApproval);
            }
        }
        let probe = Approval {
            build: build.id.clone(),
            stage: stage.to_owned(),
            approver: identity.name.clone(),
            at,
            comment: None,
        };
        if !self.is_live(&probe, now) {
            return Err(ApprovalRefusal::Expired);
        }
        let duplicate = view.approvals(stage, &build.id).any(|a| a.approver == identity.name && self.is_live(a, now));
        if duplicate {
            return Err(ApprovalRefusal::Duplicate);
        }
        Ok(())
    }
}

/// A gate that passes once enough allowed promoters have approved the build for the stage.
#[derive(Debug, Clone)]
pub struct ApprovalGate {
    name: String,
    policy: ApprovalPolicy,
}

impl ApprovalGate {
    /// A gate called `name` with `policy`.
    pub fn new(name: impl Into<String>, policy: ApprovalPolicy) -> Self {
        ApprovalGate { name: name.into(), policy }
    }
}

#[async_trait]
impl Gate for ApprovalGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "approval"
    }

    fn capabilities(&self) -> GateCapabilities {
        GateCapabilities::pure()
    }

    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        Some(&self.policy)
    }

    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        let approvers: BTreeSet<&str> = context
            .ledger
            .approvals(context.stage, &context.build.id)
            .filter(|approval| self.policy.is_live(approval, context.now))
            .map(|approval| approval.approver.as_str())
            .collect();
        let have = approvers.len();
        let need = self.policy.min_approvals;
        let verdict = if have >= need {
            Verdict::Pass
        } else {
            let mut allowed: Vec<String> = self.policy.promoters.clone();
            allowed.extend(self.policy.groups.iter().map(|g| format!("group {g}")));
            Verdict::Pending(format!(
                "{have} of {need} approvals for {} to {}; awaiting approval by {}",
                context.build.id,
                context.stage,
                allowed.join(", ")
            ))
        };
        Ok(GateReport::new(verdict).with("approvers", approvers.into_iter().collect::<Vec<_>>()).with("required", need))
    }
}
