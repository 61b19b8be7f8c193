//! A GitOps deployer that commits each stage's rendered objects and pushes them to the stage's branch (or
//! repository), race-safe, for Argo CD or Flux to follow: seed 001's `git push stg`.

mod builder;
mod cache;
mod command;
mod commit;
mod push;
mod redact;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

pub use builder::GitDeployerBuilder;
pub(crate) use builder::is_local_path;
pub use push::PlannedCommit;

use self::builder::{Target, TargetPattern};
use self::cache::Caches;
use self::command::Git;
use self::commit::Identity;
use self::push::Landed;
use super::directory::{check_bundle, refuse_plaintext_secrets};
use super::{ApplyMode, Bundle, Change, DeployStatus, Deployer, DeployerCapabilities, RenderedObject};
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressUpdate};

/// Commits rendered bundles to a git repository, one commit per promotion, and pushes them to the stage's
/// branch without ever forcing.
///
/// # Where each stage goes
/// A repository, a branch and a path inside the repository, each of which may name the stage with
/// `{stage}`: a branch per stage (`branch: "{stage}"`), a repository per stage
/// (`repository: "https://git.example/shop/deploy-{stage}.git"`, `branch: main`) or a directory per stage
/// on one branch (`path: "{stage}"`). The stage's directory has the [`DirectoryDeployer`](super::DirectoryDeployer)'s
/// layout: `<kind>-<name>.yaml` per object, under `<namespace>/` when namespaced, and a `.promote-index`
/// listing the files promote owns, so that it prunes only those.
///
/// # How it runs git
/// It drives the `git` command (2.39 or later), so that credential helpers, SSH agents, proxies,
/// `includeIf` and signing work as configured for the user. It stores no credentials and overrides no
/// configuration: git never prompts on a terminal (`GIT_TERMINAL_PROMPT=0`), and runs in English
/// (`LC_ALL=C`) so that its messages can be recognised. It works in a clone per repository under the cache
/// directory, which it may delete and recreate at will; deleting it is always safe. Fetches are shallow
/// (`--depth 1`, the one branch). Credentials in a repository URL are never shown: errors, commit messages
/// and the ledger name the URL without them. Prefer a credential helper to a URL holding a token.
///
/// # One commit per promotion
/// The message names the stage, the build and its commit, every artifact by digest and each object's
/// change, and ends with trailers: `Promote-Build`, `Promote-Promotion`, `Promote-Bundle` (the bundle's
/// hash, as the ledger records it), `Promote-Stage`, and for a rollback `Promote-Reverts` (the promotion it
/// reverts). The author is the promotion's actor (`Name <email>` when the actor is written so, else
/// `actor <>`); the committer, signing (`commit.gpgsign`, SSH signing) and hooks follow the user's git
/// configuration. A promotion whose commit is already on the branch (its trailers say so, and the stage's
/// files match) pushes nothing and reports every object unchanged. [`Deployer::wait_healthy`] returns
/// `pushed commit <id> to <branch> of <repository>…`, which the engine records as the deploy step's
/// evidence.
///
/// # Race-safe push
/// A push is a fast-forward or nothing. When another writer pushed since the fetch, the deployer fetches the
/// new tip, lays the stage's files out on it again (only this stage's path: other writers' changes stay) and
/// pushes again, waiting a little longer each time, at most
/// [`push_retries`](GitDeployerBuilder::push_retries) times; then it gives up with a retryable error. A push
/// the remote refuses for another reason (a `pre-receive` hook, branch protection) is not retried.
///
/// # Secrets
/// Files in a repository are plain text: a Kubernetes `Secret`, and any object whose rendering holds a secret
/// value, is refused before git runs ([`Error::DeployFailed`]), unless the deployer allows it
/// ([`allow_plaintext_secrets`](GitDeployerBuilder::allow_plaintext_secrets)). Git's output is redacted
/// before it reaches an error: credentials in URLs, and the bundle's secret values.
///
/// # Health
/// Applying is the GitOps tool's job, so health is not observed ([`DeployerCapabilities::health`] is false).
///
/// ```no_run
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use promote_core::deploy::GitDeployer;
/// let deployer = GitDeployer::builder("git@git.example:shop/deploy.git", "{stage}", ".promote/git")
///     .path("apps/web")
///     .push_retries(8)
///     .build()?;
/// # Ok::<(), promote_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct GitDeployer {
    target: Arc<TargetPattern>,
    git: Git,
    caches: Arc<Caches>,
    allow_plaintext_secrets: bool,
    push_retries: u32,
    search_depth: u32,
    state: Arc<State>,
}

/// What the deployer has done, counted since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GitStats {
    /// Commits pushed.
    pub commits_pushed: u64,
    /// Pushes that lost a race and were rebuilt on a new tip.
    pub push_retries: u64,
    /// git processes started.
    pub git_processes: u64,
}

/// What the deployer remembers between calls.
#[derive(Debug, Default)]
struct State {
    version_checked: tokio::sync::OnceCell<()>,
    /// The last commit that holds each stage's bundle, as its apply found or pushed it.
    landed: Mutex<HashMap<String, Landed>>,
    pushes: AtomicU64,
    retries: AtomicU64,
}

impl State {
    fn count_push(&self) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
    }

    fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
}

impl GitDeployer {
    /// A builder for a deployer pushing to `branch` of `repository` (either may hold `{stage}`), working in
    /// clones under `cache_dir` (created owner-only if missing).
    pub fn builder(
        repository: impl Into<String>,
        branch: impl Into<String>,
        cache_dir: impl Into<PathBuf>,
    ) -> GitDeployerBuilder {
        GitDeployerBuilder::new(repository.into(), branch.into(), cache_dir.into())
    }

    /// What the deployer has done since it was built.
    pub fn stats(&self) -> GitStats {
        GitStats {
            commits_pushed: self.state.pushes.load(Ordering::Relaxed),
            push_retries: self.state.retries.load(Ordering::Relaxed),
            git_processes: self.git.spawned(),
        }
    }

    /// The commit an apply of `bundle` would make, and its object changes, without committing or pushing:
    /// what [`ApplyMode::DryRun`] reports, with the commit message. Fetches the branch's tip alone.
    pub async fn plan_commit(&self, bundle: &Bundle) -> Result<PlannedCommit> {
        let target = self.prepare(bundle)?;
        self.check_git().await?;
        self.preview(bundle, &target).await
    }

    /// The target of `bundle`'s stage, once the bundle is known to be one this deployer may write.
    fn prepare(&self, bundle: &Bundle) -> Result<Target> {
        let target = self.target.resolve(bundle.stage())?;
        check_bundle(bundle)?;
        if !self.allow_plaintext_secrets {
            refuse_plaintext_secrets(bundle, "git deployer", "repository", |file| {
                let path = if target.path.is_empty() { file.to_owned() } else { format!("{}/{file}", target.path) };
                format!("{path} on {}", target.describe())
            })?;
        }
        Ok(target)
    }

    /// Checks once that git can be run and is new enough.
    async fn check_git(&self) -> Result<()> {
        self.state
            .version_checked
            .get_or_try_init(|| async { self.git.check_version(&std::env::temp_dir()).await })
            .await
            .map(|_| ())
    }

    fn remember(&self, landed: Landed) {
        let stage = landed.identity.stage().to_owned();
        self.state.landed.lock().unwrap_or_else(|e| e.into_inner()).insert(stage, landed);
    }
}

impl Landed {
    /// The evidence the engine records: the commit, where it is, and what that means.
    fn summary(&self) -> String {
        let done = if self.pushed { "pushed commit" } else { "commit" };
        let already = if self.pushed { "" } else { " (already on the branch: nothing was pushed)" };
        format!(
            "{done} {} to {}{already}: {} objects; a GitOps tool (Argo CD, Flux) applies them, so their health \
             is not observed here",
            self.commit,
            self.target.describe(),
            self.objects
        )
    }
}

#[async_trait]
impl Deployer for GitDeployer {
    fn capabilities(&self) -> DeployerCapabilities {
        DeployerCapabilities { dry_run: true, health: false, prune: true }
    }

    async fn apply(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>> {
        let target = self.prepare(bundle)?;
        self.check_git().await?;
        match mode {
            ApplyMode::DryRun => {
                let planned = self.preview(bundle, &target).await?;
                tracing::info!(
                    target = %target.describe(),
                    parent = ?planned.parent,
                    already_on_branch = ?planned.already_on_branch,
                    message = %planned.message,
                    "dry run: the commit an apply would make"
                );
                Ok(planned.changes)
            }
            ApplyMode::Apply => {
                let (landed, changes) = self.publish(bundle, &target).await?;
                self.remember(landed);
                Ok(changes)
            }
        }
    }

    async fn wait_healthy(&self, bundle: &Bundle, _timeout: Duration, progress: &Progress) -> Result<String> {
        let target = self.target.resolve(bundle.stage())?;
        let identity = Identity::of(bundle);
        let remembered = self
            .state
            .landed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bundle.stage())
            .filter(|landed| landed.identity == identity && landed.target == target)
            .cloned();
        let landed = match remembered {
            Some(landed) => landed,
            None => {
                self.check_git().await?;
                let Some(commit) = self.find(bundle, &target).await? else {
                    return Err(Error::DeployFailed {
                        stage: bundle.stage().to_owned(),
                        reason: format!(
                            "{} holds no commit of this bundle ({}) among its last {} commits",
                            target.describe(),
                            identity.describe(),
                            self.search_depth
                        ),
                    });
                };
                Landed { identity, target, commit, pushed: false, objects: bundle.objects().len() }
            }
        };
        progress.report(ProgressUpdate::message(
            landed.target.describe(),
            format!("commit {} is on the branch", landed.commit),
        ));
        Ok(landed.summary())
    }

    async fn current(&self, stage: &str) -> Result<Option<Bundle>> {
        let target = self.target.resolve(stage)?;
        self.check_git().await?;
        self.read(stage, &target).await
    }

    async fn status(&self, stage: &str) -> Result<DeployStatus> {
        let bundle = self.current(stage).await?;
        Ok(DeployStatus {
            bundle_hash: bundle.as_ref().map(|b| b.hash().to_owned()),
            objects: bundle.map(|b| b.objects().iter().map(RenderedObject::object_key).collect()).unwrap_or_default(),
            healthy: None,
        })
    }
}
