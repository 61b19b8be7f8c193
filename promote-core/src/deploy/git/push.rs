//! Publishing a bundle, race-safe: fetch the branch's tip, lay the stage's files out on it, commit, push. When
//! the push loses a race (the branch moved since the fetch), fetch again and rebuild the commit on the new
//! tip, re-applying only this stage's path, so that what other writers pushed stays. Never force; give up
//! after a bounded number of attempts.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};

use super::GitDeployer;
use super::builder::Target;
use super::cache::{Pushed, Workspace};
use super::command::BACKEND;
use super::commit::{self, Identity};
use super::redact::OutputRedactor;
use crate::deploy::{Bundle, Change, ChangeAction, diff_objects};
use crate::error::{Error, ErrorClass, Result};

/// The first wait before pushing again after a lost race; it grows, with jitter, so that writers racing one
/// another spread out.
const FIRST_DELAY: Duration = Duration::from_millis(20);
/// The longest wait between two attempts.
const LONGEST_DELAY: Duration = Duration::from_secs(2);

/// The commit that holds a bundle on its branch.
#[derive(Debug, Clone)]
pub(super) struct Landed {
    /// Which apply it is for.
    pub(super) identity: Identity,
    /// Where it is.
    pub(super) target: Target,
    /// The commit's id.
    pub(super) commit: String,
    /// Whether this apply pushed it (false: it was on the branch already).
    pub(super) pushed: bool,
    /// How many objects the bundle has.
    pub(super) objects: usize,
}

/// The commit an apply would make, as a dry run reports it; nothing is pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlannedCommit {
    /// The repository (without credentials).
    pub repository: String,
    /// The branch.
    pub branch: String,
    /// The stage's directory in the repository (empty for its root).
    pub path: String,
    /// The branch's tip the commit would follow (`None`: the branch does not exist yet).
    pub parent: Option<String>,
    /// The commit of this promotion already at the branch's tip, if it is there: an apply would push nothing.
    pub already_on_branch: Option<String>,
    /// The commit message, trailers included.
    pub message: String,
    /// What happens to each object.
    pub changes: Vec<Change>,
}

fn unchanged(changes: &[Change]) -> bool {
    changes.iter().all(|change| change.action == ChangeAction::Unchanged)
}

impl GitDeployer {
    /// Puts `bundle` on `target`'s branch: a new commit, pushed, or the commit of this apply that is already
    /// there (recognised by its trailers). Returns the commit and the object changes it made.
    pub(super) async fn publish(&self, bundle: &Bundle, target: &Target) -> Result<(Landed, Vec<Change>)> {
        let identity = Identity::of(bundle);
        let redactor = OutputRedactor::for_bundle(Some(bundle));
        let author = commit::author(bundle.context().map_or("promote", |context| context.actor.as_str()));
        let workspace = self.caches.open(&self.git, target, &redactor).await?;
        let mut delays = ExponentialBuilder::new()
            .with_jitter()
            .with_min_delay(FIRST_DELAY)
            .with_max_delay(LONGEST_DELAY)
            .with_max_times(self.push_retries as usize)
            .build();
        let landed = |commit: String, pushed: bool| Landed {
            identity: identity.clone(),
            target: target.clone(),
            commit,
            pushed,
            objects: bundle.objects().len(),
        };
        let mut retries = 0;
        loop {
            let tip = workspace.fetch_tip().await?;
            workspace.reset(tip.as_ref()).await?;
            let ours = tip.as_ref().is_some_and(|tip| identity.matches(&tip.trailers));
            if let (true, Some(tip)) = (ours, &tip) {
                let changes = diff_objects(workspace.read_stage(bundle.stage()).await?.as_ref(), bundle);
                if unchanged(&changes) {
                    tracing::debug!(commit = %tip.commit, "the branch's tip is this apply's commit already");
                    return Ok((landed(tip.commit.clone(), false), changes));
                }
            }
            let changes = workspace.write_stage(bundle).await?;
            if unchanged(&changes)
                && tip.is_some()
                && !ours
                && let Some(found) = self.search(&workspace, &identity).await?
            {
                return Ok((landed(found, false), changes));
            }
            let message = commit::message(bundle, target, &changes);
            let commit = workspace.commit(&message, &author).await?;
            match workspace.push(&commit).await? {
                Pushed::Landed => {
                    self.state.count_push();
                    tracing::info!(%commit, target = %target.describe(), retries, "pushed");
                    return Ok((landed(commit, true), changes));
                }
                Pushed::Raced(reason) => {
                    let Some(delay) = delays.next() else {
                        let attempts = match retries + 1 {
                            1 => "1 attempt".to_owned(),
                            n => format!("{n} attempts"),
                        };
                        return Err(Error::backend(
                            BACKEND,
                            ErrorClass::Temporary,
                            format!(
                                "gave up pushing to {} after {attempts}: the branch moved before every push (last: \
                                 {reason}). Nothing was forced; running the promotion again tries again",
                                target.describe(),
                            ),
                        ));
                    };
                    retries += 1;
                    self.state.count_retry();
                    tracing::info!(target = %target.describe(), %reason, retries, ?delay, "lost a push race; rebuilding on the new tip");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The branch's last commits, searched for `identity`'s commit (a re-run after others pushed on top).
    async fn search(&self, workspace: &Workspace<'_>, identity: &Identity) -> Result<Option<String>> {
        let found = workspace.search(identity, self.search_depth).await?;
        tracing::debug!(found = ?found, identity = %identity.describe(), depth = self.search_depth, "searched the branch");
        Ok(found)
    }

    /// What an apply of `bundle` to `target` would do: the object changes and the commit, from the branch's
    /// tip alone (one shallow fetch). Nothing is committed or pushed.
    pub(super) async fn preview(&self, bundle: &Bundle, target: &Target) -> Result<PlannedCommit> {
        let identity = Identity::of(bundle);
        let redactor = OutputRedactor::for_bundle(Some(bundle));
        let workspace = self.caches.open(&self.git, target, &redactor).await?;
        let tip = workspace.fetch_tip().await?;
        workspace.reset(tip.as_ref()).await?;
        let changes = diff_objects(workspace.read_stage(bundle.stage()).await?.as_ref(), bundle);
        let already_on_branch = tip
            .as_ref()
            .filter(|tip| identity.matches(&tip.trailers) && unchanged(&changes))
            .map(|tip| tip.commit.clone());
        Ok(PlannedCommit {
            repository: target.shown.clone(),
            branch: target.branch.clone(),
            path: target.path.clone(),
            parent: tip.map(|tip| tip.commit),
            already_on_branch,
            message: commit::message(bundle, target, &changes),
            changes,
        })
    }

    /// The commit on `target`'s branch that holds `bundle` (its tip, or one of its last commits), if any.
    pub(super) async fn find(&self, bundle: &Bundle, target: &Target) -> Result<Option<String>> {
        let identity = Identity::of(bundle);
        let redactor = OutputRedactor::for_bundle(Some(bundle));
        let workspace = self.caches.open(&self.git, target, &redactor).await?;
        match workspace.fetch_tip().await? {
            Some(tip) if identity.matches(&tip.trailers) => Ok(Some(tip.commit)),
            Some(_) => self.search(&workspace, &identity).await,
            None => Ok(None),
        }
    }

    /// The bundle `target`'s branch holds for `stage` now.
    pub(super) async fn read(&self, stage: &str, target: &Target) -> Result<Option<Bundle>> {
        let redactor = OutputRedactor::default();
        let workspace = self.caches.open(&self.git, target, &redactor).await?;
        let Some(tip) = workspace.fetch_tip().await? else {
            return Ok(None);
        };
        workspace.reset(Some(&tip)).await?;
        workspace.read_stage(stage).await
    }
}
