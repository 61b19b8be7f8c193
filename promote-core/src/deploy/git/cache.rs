//! The cache: one working clone per repository under the deployer's cache directory, used by one apply at a
//! time (a lock within the process and an OS file lock across processes), and the git commands that fetch
//! a branch's tip into it, lay the stage's files out, commit and push.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest as _, Sha256};

use super::builder::Target;
use super::command::{BACKEND, Git, failure, shown};
use super::commit::{Identity, Trailers};
use super::redact::OutputRedactor;
use crate::deploy::directory::{Durability, open_subdir, read_stage, write_stage};
use crate::deploy::{Bundle, Change};
use crate::error::{Error, ErrorClass, Result};

/// The cache's own branch: `HEAD` of every working clone points at it, and it is never pushed.
const WORK_BRANCH: &str = "refs/heads/promote";

/// Lock files a git killed mid-command leaves behind. The cache's lock is held when they are removed, so no
/// other git of ours can be using them.
const STALE_LOCKS: &[&str] = &["index.lock", "HEAD.lock", "shallow.lock", "refs/heads/promote.lock"];

/// How often a held OS lock on a cache is tried again.
const LOCK_POLL: Duration = Duration::from_millis(25);

/// The working clones under one cache directory.
#[derive(Debug)]
pub(super) struct Caches {
    root: PathBuf,
    lock_wait: Duration,
    in_use: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// The branch tip that was fetched.
#[derive(Debug, Clone)]
pub(super) struct Tip {
    /// The commit's id.
    pub(super) commit: String,
    /// Its trailers.
    pub(super) trailers: Trailers,
}

/// How a push ended, when git ran to the end.
#[derive(Debug)]
pub(super) enum Pushed {
    /// The branch now points at the commit.
    Landed,
    /// The branch moved since it was fetched (another writer pushed first): rebuild and push again.
    Raced(String),
}

/// One working clone, held for one operation.
#[derive(Debug)]
pub(super) struct Workspace<'a> {
    git: &'a Git,
    target: &'a Target,
    redactor: &'a OutputRedactor,
    dir: PathBuf,
    _in_process: tokio::sync::OwnedMutexGuard<()>,
    _across_processes: std::fs::File,
}

impl Caches {
    /// Working clones under `root`; waiting at most `lock_wait` for one another process holds.
    pub(super) fn new(root: PathBuf, lock_wait: Duration) -> Self {
        Caches { root, lock_wait, in_use: Mutex::default() }
    }

    /// The directory name of `repository`'s clone: a readable name and a hash of the repository's URL
    /// (without credentials, so that none is written into a name).
    fn key(shown: &str) -> String {
        let last = shown.trim_end_matches('/').rsplit(['/', ':']).next().unwrap_or_default();
        let last = last.strip_suffix(".git").unwrap_or(last);
        let mut name: String = last
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') { c } else { '_' })
            .take(40)
            .collect();
        if name.is_empty() {
            name.push_str("repository");
        }
        format!("{name}-{}", &hex::encode(Sha256::digest(shown.as_bytes()))[..16])
    }

    /// The clone for `target`'s repository, created if missing, held until the workspace is dropped.
    pub(super) async fn open<'a>(
        &self,
        git: &'a Git,
        target: &'a Target,
        redactor: &'a OutputRedactor,
    ) -> Result<Workspace<'a>> {
        crate::state_file::prepare_dir(&self.root)?;
        let key = Self::key(&target.shown);
        let dir = self.root.join(&key);
        let in_process = {
            let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
            in_use.entry(dir.clone()).or_default().clone()
        };
        let in_process = in_process.lock_owned().await;
        let across_processes = self.lock_file(&self.root.join(format!("{key}.lock"))).await?;
        let workspace =
            Workspace { git, target, redactor, dir, _in_process: in_process, _across_processes: across_processes };
        workspace.prepare(&self.root, &key).await?;
        Ok(workspace)
    }

    /// The cache's lock file, locked exclusively: another process using the same clone is waited for.
    async fn lock_file(&self, path: &Path) -> Result<std::fs::File> {
        let mut options = crate::state_file::options();
        options.read(true).write(true).create(true).truncate(false);
        let file = crate::state_file::open(path, &options)?;
        let started = tokio::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < self.lock_wait => {
                    tokio::time::sleep(LOCK_POLL).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Timeout {
                        what: format!(
                            "waiting for the git cache lock {} (another promote is using it)",
                            path.display()
                        ),
                        after: self.lock_wait,
                    });
                }
                Err(std::fs::TryLockError::Error(error)) => return Err(Error::io(path, error)),
            }
        }
    }
}

impl Workspace<'_> {
    /// Creates the clone if it is missing (or was left half made) and clears what a killed git left.
    async fn prepare(&self, root: &Path, key: &str) -> Result<()> {
        if self.dir.join(".git").is_dir() {
            for stale in STALE_LOCKS {
                let lock = self.dir.join(".git").join(stale);
                if let Err(error) = std::fs::remove_file(&lock)
                    && error.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(Error::io(lock, error));
                }
            }
            return Ok(());
        }
        if self.dir.exists() {
            // Not a clone: what an interrupted `git init` left. The name is the cache's own.
            std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        }
        let branch = WORK_BRANCH.trim_start_matches("refs/heads/");
        let initial = format!("--initial-branch={branch}");
        self.git
            .check(root, ["init", "--quiet", initial.as_str(), key], None, "creation of the cache", self.redactor)
            .await?;
        Ok(())
    }

    /// Where a fetched tip of the branch is kept in the clone.
    fn tip_ref(&self) -> String {
        format!("refs/promote/tips/{}", self.target.branch)
    }

    fn fetching(&self) -> String {
        format!("fetch of {}", self.target.describe())
    }

    /// Fetches the branch's tip alone (`depth` commits of history; 1 but for a search). `None` when the
    /// branch does not exist yet.
    async fn fetch(&self, depth: u32) -> Result<bool> {
        let depth = format!("--depth={depth}");
        let refspec = format!("+refs/heads/{}:{}", self.target.branch, self.tip_ref());
        let output = self
            .git
            .run(
                &self.dir,
                [
                    "fetch",
                    depth.as_str(),
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--no-recurse-submodules",
                    "--quiet",
                    "--",
                    self.target.repository.as_str(),
                    refspec.as_str(),
                ],
                None,
                &self.fetching(),
            )
            .await?;
        if output.success {
            return Ok(true);
        }
        if output.stderr.contains("couldn't find remote ref") {
            return Ok(false);
        }
        Err(failure(&self.fetching(), &output.stderr, self.redactor))
    }

    /// Fetches the branch's tip: its commit and trailers, or `None` when the branch does not exist yet.
    pub(super) async fn fetch_tip(&self) -> Result<Option<Tip>> {
        if !self.fetch(1).await? {
            return Ok(None);
        }
        let output = self
            .git
            .check(
                &self.dir,
                ["log", "-1", "--format=%H%x00%(trailers:only,unfold)", self.tip_ref().as_str(), "--"],
                None,
                "reading of the fetched tip",
                self.redactor,
            )
            .await?;
        let (commit, trailers) = output.stdout.split_once('\0').unwrap_or((output.stdout.trim(), ""));
        Ok(Some(Tip { commit: commit.trim().to_owned(), trailers: Trailers::parse(trailers) }))
    }

    /// Searches the branch's last `depth` commits for the commit of `identity`, fetching that much history.
    pub(super) async fn search(&self, identity: &Identity, depth: u32) -> Result<Option<String>> {
        if !self.fetch(depth).await? {
            return Ok(None);
        }
        let limit = format!("--max-count={depth}");
        let output = self
            .git
            .check(
                &self.dir,
                ["log", limit.as_str(), "--format=%H%x00%(trailers:only,unfold)%x1e", self.tip_ref().as_str(), "--"],
                None,
                "search of the branch's history",
                self.redactor,
            )
            .await?;
        Ok(output.stdout.split('\x1e').find_map(|record| {
            let (commit, trailers) = record.split_once('\0')?;
            identity.matches(&Trailers::parse(trailers)).then(|| commit.trim().to_owned())
        }))
    }

    /// Makes the work tree the tip's tree (or an empty one, for a branch that does not exist yet), with
    /// nothing left over from an earlier attempt.
    pub(super) async fn reset(&self, tip: Option<&Tip>) -> Result<()> {
        match tip {
            Some(tip) => {
                self.git
                    .check(
                        &self.dir,
                        ["reset", "--quiet", "--hard", tip.commit.as_str()],
                        None,
                        "checkout of the tip",
                        self.redactor,
                    )
                    .await?;
                self.git
                    .check(
                        &self.dir,
                        ["clean", "-ffdq", "--", self.target.pathspec()],
                        None,
                        "cleaning of the stage's directory",
                        self.redactor,
                    )
                    .await?;
            }
            None => {
                // An unborn branch: the next commit has no parent.
                self.git
                    .check(&self.dir, ["update-ref", "-d", WORK_BRANCH], None, "start of a new branch", self.redactor)
                    .await?;
                self.git
                    .check(&self.dir, ["read-tree", "--empty"], None, "start of a new branch", self.redactor)
                    .await?;
                self.git.check(&self.dir, ["clean", "-ffdxq"], None, "start of a new branch", self.redactor).await?;
            }
        }
        Ok(())
    }

    /// The stage's directory in the work tree, opened without following a symlink below the clone's root
    /// (a repository may hold symlinks), created first if `create`; `None` if missing.
    fn stage_dir(dir: &Path, target: &Target, create: bool) -> Result<Option<(Dir, PathBuf)>> {
        let mut current = Dir::open_ambient_dir(dir, ambient_authority()).map_err(|e| Error::io(dir, e))?;
        let mut path = dir.to_owned();
        for part in target.path_parts() {
            path.push(part);
            match open_subdir(&current, part, &path, create)? {
                Some(opened) => current = opened,
                None => return Ok(None),
            }
        }
        Ok(Some((current, path)))
    }

    /// The bundle the stage's directory holds now, as the deployer's index lists it.
    pub(super) async fn read_stage(&self, stage: &str) -> Result<Option<Bundle>> {
        let (dir, target, stage) = (self.dir.clone(), self.target.clone(), stage.to_owned());
        blocking(move || match Self::stage_dir(&dir, &target, false)? {
            Some((opened, path)) => read_stage(&opened, &path, &stage),
            None => Ok(None),
        })
        .await
    }

    /// Lays `bundle` out in the stage's directory, as the directory deployer does, and returns the changes.
    pub(super) async fn write_stage(&self, bundle: &Bundle) -> Result<Vec<Change>> {
        let (dir, target, bundle) = (self.dir.clone(), self.target.clone(), bundle.clone());
        blocking(move || {
            let (opened, path) = Self::stage_dir(&dir, &target, true)?.expect("created when missing");
            write_stage(&opened, &path, &bundle, Durability::Cache)
        })
        .await
    }

    /// Commits the stage's directory as it is now, with `message`, authored by `author`; returns the commit.
    /// Signing, hooks and the committer follow the user's git configuration.
    pub(super) async fn commit(&self, message: &str, author: &str) -> Result<String> {
        let redactor = self.redactor;
        self.git
            .check(
                &self.dir,
                ["add", "--all", "--", self.target.pathspec()],
                None,
                "staging of the stage's files",
                redactor,
            )
            .await?;
        let author = format!("--author={author}");
        let output = self
            .git
            .run(
                &self.dir,
                ["commit", "--quiet", "--allow-empty", "--cleanup=whitespace", author.as_str(), "--file=-"],
                Some(message),
                "commit",
            )
            .await?;
        if !output.success {
            let lower = output.stderr.to_ascii_lowercase();
            if lower.contains("tell me who you are") || lower.contains("empty ident") {
                return Err(Error::backend(
                    BACKEND,
                    ErrorClass::Persistent,
                    format!(
                        "git has no committer identity for the commit: set user.name and user.email in your git \
                         configuration (or GIT_COMMITTER_NAME and GIT_COMMITTER_EMAIL); git said: {}",
                        shown(&output.stderr, redactor)
                    ),
                ));
            }
            return Err(failure("commit", &output.stderr, redactor));
        }
        let head = self
            .git
            .check(&self.dir, ["rev-parse", "--verify", "HEAD"], None, "reading of the commit", redactor)
            .await?;
        Ok(head.stdout.trim().to_owned())
    }

    /// Pushes `commit` to the branch, never forcing: the remote takes it only as a fast-forward.
    pub(super) async fn push(&self, commit: &str) -> Result<Pushed> {
        let refspec = format!("{commit}:refs/heads/{}", self.target.branch);
        let what = format!("push to {}", self.target.describe());
        let output = self
            .git
            .run(
                &self.dir,
                ["push", "--porcelain", "--", self.target.repository.as_str(), refspec.as_str()],
                None,
                &what,
            )
            .await?;
        let destination = format!("refs/heads/{}", self.target.branch);
        let status = output.stdout.lines().find_map(|line| {
            let mut fields = line.split('\t');
            let flag = fields.next()?;
            let refs = fields.next()?;
            let summary = fields.next().unwrap_or_default();
            (refs.ends_with(&format!(":{destination}")) && flag.len() == 1)
                .then(|| (flag.to_owned(), summary.to_owned()))
        });
        match status {
            Some((flag, _)) if flag != "!" => Ok(Pushed::Landed),
            Some((_, summary)) => {
                let lost_race = [
                    "(non-fast-forward)",
                    "(fetch first)",
                    "(stale info)",
                    "failed to update ref",
                    "failed to lock",
                    "cannot lock ref",
                    "incorrect old value",
                ];
                if lost_race.iter().any(|reason| summary.contains(reason)) {
                    return Ok(Pushed::Raced(summary));
                }
                Err(Error::backend(
                    BACKEND,
                    ErrorClass::Persistent,
                    format!(
                        "the remote refused the {what}: {}; git said: {}",
                        self.redactor.redact(&summary),
                        shown(&output.stderr, self.redactor)
                    ),
                ))
            }
            None if output.success => Ok(Pushed::Landed),
            None => Err(failure(&what, &output.stderr, self.redactor)),
        }
    }
}

/// Runs file work off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Error::backend(BACKEND, ErrorClass::Persistent, format!("the file writer stopped: {error}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_are_readable_and_hold_no_credentials() {
        let key = Caches::key("https://git.example/shop/deploy.git");
        assert!(key.starts_with("deploy-") && key.len() == "deploy-".len() + 16, "{key}");
        assert_ne!(key, Caches::key("https://git.example/other/deploy.git"));
        assert!(Caches::key("git@host:org/deploy.git").starts_with("deploy-"));
        assert!(Caches::key("/").starts_with("repository-"));
    }
}
