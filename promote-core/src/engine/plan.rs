//! `plan`: a promotion's dry run, with no side effects.

use std::collections::BTreeMap;

use super::gates::Candidate;
use super::report::{ArtifactAction, Plan, PlannedArtifact};
use super::run::deploy_context;
use super::{Pipeline, Stage};
use crate::build::BuildId;
use crate::config::load_layered;
use crate::deploy::{ApplyMode, Bundle, Change, diff_objects};
use crate::error::{Error, Resource, Result};
use crate::gate::GatePhase;
use crate::ledger::{PlacedArtifact, PromotionId, PromotionKind};

impl Pipeline {
    /// A dry run: eligibility, every entry gate's verdict, what would happen to each artifact, where the
    /// config comes from, and the diff of the rendered bundle against what the stage runs. Changes nothing.
    pub async fn plan(&self, build_id: &BuildId, stage_name: &str, actor: &str) -> Result<Plan> {
        let stage = self.stage(stage_name)?;
        let view = self.view().await?;
        let build =
            view.build(build_id).cloned().ok_or_else(|| Error::not_found(Resource::Build, build_id.to_string()))?;
        let kind = PromotionKind::Promote;
        let blocked = self.check_eligibility(&view, stage, &build, &kind).err();
        let candidate = Candidate { stage, build: &build, kind: &kind, actor };
        let gates = self.evaluate_gates(stage.entry_gates(), &candidate, &view, GatePhase::Entry, true).await?;

        let version = build.version.as_ref().map(ToString::to_string);
        let mut artifacts = BTreeMap::new();
        let mut placed = BTreeMap::new();
        for (name, artifact) in &build.artifacts {
            let target =
                stage.placement.target(stage_name, name, &artifact.reference, &build.commit, version.as_deref())?;
            let action = match self.inner.store.resolve(&target).await {
                Ok(found) if found.digest == artifact.digest => ArtifactAction::AlreadyPresent,
                Ok(_) | Err(Error::NotFound { .. }) if target.same_repository(&artifact.reference) => {
                    ArtifactAction::Retag
                }
                Ok(_) | Err(Error::NotFound { .. }) => ArtifactAction::Copy,
                Err(other) => return Err(other),
            };
            placed.insert(name.clone(), PlacedArtifact { target: target.clone(), digest: artifact.digest.clone() });
            artifacts.insert(name.clone(), PlannedArtifact { target, digest: artifact.digest.clone(), action });
        }

        let config = load_layered(&stage.config, stage_name, &BTreeMap::new()).await?;
        let (changes, diff, bundle_hash) = match &stage.templates {
            Some(templates) => {
                let id = PromotionId::new(stage_name, build_id, view.attempts(stage_name, build_id) + 1);
                let bundle = self
                    .keyed(templates.render(stage_name, &build, &placed, &config)?)
                    .with_context(deploy_context(id, candidate, &placed, &view));
                self.plan_deploy(stage, &bundle).await?
            }
            None => (Vec::new(), String::new(), None),
        };
        Ok(Plan {
            build: build_id.clone(),
            stage: stage_name.to_owned(),
            blocked,
            gates,
            artifacts,
            config: config.provenance(),
            changes,
            diff,
            bundle_hash,
        })
    }

    async fn plan_deploy(&self, stage: &Stage, bundle: &Bundle) -> Result<(Vec<Change>, String, Option<String>)> {
        let current = match &stage.deployer {
            Some(deployer) => deployer.current(&stage.name).await?,
            None => None,
        };
        let changes = match &stage.deployer {
            Some(deployer) if deployer.capabilities().dry_run => deployer.apply(bundle, ApplyMode::DryRun).await?,
            _ => diff_objects(current.as_ref(), bundle),
        };
        let before = current.as_ref().map(Bundle::masked_text).unwrap_or_default();
        let after = bundle.masked_text();
        let diff = similar::TextDiff::from_lines(&before, &after)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{} (running)", stage.name), &format!("{} (planned)", stage.name))
            .to_string();
        Ok((changes, diff, Some(bundle.hash().to_owned())))
    }
}
