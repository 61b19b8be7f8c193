//! [`DeployContext`]: what the engine tells a deployer about the promotion a bundle belongs to.

use std::collections::BTreeMap;

use crate::build::{Build, BuildId};
use crate::ledger::{PlacedArtifact, PromotionId, PromotionKind};

/// The promotion a [`Bundle`](super::Bundle) is deployed for: its id, the build and its commit, who asked,
/// every artifact by digest, and for a rollback the promotion it reverts.
///
/// The engine attaches it to every bundle it deploys ([`Bundle::with_context`](super::Bundle::with_context)).
/// Deployers that keep evidence of their own (the git deployer's commit message and trailers) name these;
/// the others may ignore it. It holds no config value, so it is safe to show. It is not part of the bundle's
/// hash: the same objects deployed by two promotions hash the same.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeployContext {
    /// The promotion's id (`stage/build/attempt`).
    pub promotion: PromotionId,
    /// The build being deployed.
    pub build: BuildId,
    /// The commit the build was built from.
    pub commit: String,
    /// The build's version, if it has one.
    pub version: Option<String>,
    /// Who started the promotion.
    pub actor: String,
    /// Every artifact of the build, by name: where the stage finds it and its digest.
    pub artifacts: BTreeMap<String, PlacedArtifact>,
    /// A promotion or a rollback (naming the build it replaces).
    pub kind: PromotionKind,
    /// For a rollback: the promotion whose deploy it reverts (the stage's current one when it started).
    pub reverts: Option<PromotionId>,
}

impl DeployContext {
    /// The context of promotion `promotion` of `build`, started by `actor`, with no artifacts yet.
    pub fn new(promotion: PromotionId, build: &Build, actor: impl Into<String>) -> Self {
        DeployContext {
            promotion,
            build: build.id.clone(),
            commit: build.commit.clone(),
            version: build.version.as_ref().map(ToString::to_string),
            actor: actor.into(),
            artifacts: BTreeMap::new(),
            kind: PromotionKind::Promote,
            reverts: None,
        }
    }

    /// The same context naming the artifacts as placed in the stage.
    pub fn with_artifacts(mut self, artifacts: BTreeMap<String, PlacedArtifact>) -> Self {
        self.artifacts = artifacts;
        self
    }

    /// The same context for a rollback that reverts `promotion` (the stage's current one, if it has one),
    /// which deployed `replacing`.
    pub fn reverting(mut self, promotion: Option<PromotionId>, replacing: Option<BuildId>) -> Self {
        self.kind = PromotionKind::Rollback { replacing };
        self.reverts = promotion;
        self
    }

    /// Whether the promotion is a rollback.
    pub fn is_rollback(&self) -> bool {
        matches!(self.kind, PromotionKind::Rollback { .. })
    }
}
