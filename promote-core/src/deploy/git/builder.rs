//! [`GitDeployerBuilder`]: where each stage's tree goes (repository, branch and path, with `{stage}`
//! patterns), checked when the deployer is built, and how hard it tries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::GitDeployer;
use super::cache::Caches;
use super::command::Git;
use super::redact::strip_userinfo;
use crate::deploy::directory::check_segment;
use crate::error::{Error, Result};

/// The placeholder a pattern may hold: the stage's name.
const STAGE: &str = "{stage}";

/// Builds a [`GitDeployer`]: `GitDeployer::builder(repository, branch, cache_dir)`, then the optional
/// settings, then [`GitDeployerBuilder::build`].
#[derive(Debug, Clone)]
pub struct GitDeployerBuilder {
    repository: String,
    branch: String,
    path: String,
    cache_dir: PathBuf,
    allow_plaintext_secrets: bool,
    push_retries: u32,
    search_depth: u32,
    timeout: Duration,
    program: PathBuf,
    env: Vec<(String, String)>,
}

impl GitDeployerBuilder {
    pub(super) fn new(repository: String, branch: String, cache_dir: PathBuf) -> Self {
        GitDeployerBuilder {
            repository,
            branch,
            path: String::new(),
            cache_dir,
            allow_plaintext_secrets: false,
            push_retries: 5,
            search_depth: 50,
            timeout: Duration::from_secs(300),
            program: PathBuf::from("git"),
            env: Vec::new(),
        }
    }

    /// The directory inside the repository the stage's objects go into (`{stage}` allowed, `/`-separated;
    /// default: the repository's root). Each part must be a plain name: no `..`, nothing starting with `.`.
    pub fn path(mut self, pattern: impl Into<String>) -> Self {
        self.path = pattern.into();
        self
    }

    /// Whether objects holding secret values (and Kubernetes `Secret`s) may be committed in plain text
    /// (default: refused).
    pub fn allow_plaintext_secrets(mut self, allow: bool) -> Self {
        self.allow_plaintext_secrets = allow;
        self
    }

    /// How many times a push that lost a race (the branch moved since it was fetched) is rebuilt on the new
    /// tip and pushed again before giving up (default 5).
    pub fn push_retries(mut self, retries: u32) -> Self {
        self.push_retries = retries;
        self
    }

    /// How many commits of the branch are searched for this promotion's commit when the branch tip is not
    /// it but the stage's files already match (a re-run after others pushed on top; default 50).
    pub fn search_depth(mut self, commits: u32) -> Self {
        self.search_depth = commits.max(1);
        self
    }

    /// How long one git command may take before it is killed (default 5 minutes).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The git program to run (default `git`, found on `PATH`).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Sets an environment variable for every git command it runs: `GIT_SSH_COMMAND` for a deploy key, or
    /// `HOME` and `GIT_CONFIG_NOSYSTEM` for a configuration of its own (what the tests do). The deployer
    /// itself sets none of the user's configuration.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Checks the patterns and builds the deployer. A local repository path is made absolute here (against
    /// the current directory), because git runs in the cache directory. Nothing is run or created yet.
    pub fn build(self) -> Result<GitDeployer> {
        let repository = check_repository(&self.repository)?;
        check_pattern("git branch", &self.branch, check_branch)?;
        check_pattern("git path", &self.path, |path| check_path(path).map(drop))?;
        let target = TargetPattern { repository, branch: self.branch, path: self.path };
        Ok(GitDeployer {
            target: Arc::new(target),
            git: Git::new(self.program, self.timeout, self.env),
            caches: Arc::new(Caches::new(self.cache_dir, self.timeout)),
            allow_plaintext_secrets: self.allow_plaintext_secrets,
            push_retries: self.push_retries,
            search_depth: self.search_depth,
            state: Arc::default(),
        })
    }
}

/// The repository, branch and path patterns of a deployer.
#[derive(Debug)]
pub(super) struct TargetPattern {
    repository: String,
    branch: String,
    path: String,
}

/// Where one stage's tree goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// The repository as git is given it (it may carry credentials: never show it; see `shown`).
    pub(super) repository: String,
    /// The repository without any credentials: what messages, errors and the ledger name.
    pub(super) shown: String,
    /// The branch's name (without `refs/heads/`).
    pub(super) branch: String,
    /// The stage's directory in the repository, `/`-separated; empty for the root.
    pub(super) path: String,
}

impl Target {
    /// The path's parts (none for the root).
    pub(super) fn path_parts(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter(|part| !part.is_empty())
    }

    /// The path as git's pathspec: the path, or `.` for the root.
    pub(super) fn pathspec(&self) -> &str {
        if self.path.is_empty() { "." } else { &self.path }
    }

    /// `branch prd of https://host/repo.git, path apps/web`: the target, for people.
    pub(super) fn describe(&self) -> String {
        match self.path.is_empty() {
            true => format!("branch {} of {}", self.branch, self.shown),
            false => format!("branch {} of {}, path {}", self.branch, self.shown, self.path),
        }
    }
}

impl TargetPattern {
    /// The target of `stage`.
    pub(super) fn resolve(&self, stage: &str) -> Result<Target> {
        let uses_stage = [&self.repository, &self.branch, &self.path].iter().any(|p| p.contains(STAGE));
        if uses_stage {
            check_segment(stage).map_err(|reason| Error::invalid("stage name", stage, reason))?;
        }
        let fill = |pattern: &str| pattern.replace(STAGE, stage);
        let repository = fill(&self.repository);
        let branch = fill(&self.branch);
        let path = fill(&self.path);
        check_branch(&branch).map_err(|reason| Error::invalid("git branch", &branch, reason))?;
        let path = check_path(&path).map_err(|reason| Error::invalid("git path", &path, reason))?;
        Ok(Target { shown: strip_userinfo(&repository), repository, branch, path })
    }
}

/// Checks a pattern: only `{stage}` may appear in braces, and it must be valid with a stage name put in.
fn check_pattern(
    what: &'static str,
    pattern: &str,
    check: impl Fn(&str) -> std::result::Result<(), &'static str>,
) -> Result<()> {
    let filled = pattern.replace(STAGE, "stage");
    if filled.contains(['{', '}']) {
        return Err(Error::invalid(what, pattern, "the only placeholder is {stage}"));
    }
    check(&filled).map_err(|reason| Error::invalid(what, pattern, reason))
}

/// Whether `repository` names a local path (not `scheme://…`, not scp-like `host:path`), as git decides.
pub(crate) fn is_local_path(repository: &str) -> bool {
    if repository.contains("://") {
        return false;
    }
    match (repository.find(':'), repository.find('/')) {
        (None, _) => true,
        (Some(colon), Some(slash)) => slash < colon,
        (Some(_), None) => false,
    }
}

/// The repository, checked; a relative local path made absolute.
fn check_repository(repository: &str) -> Result<String> {
    let refuse = |reason: &str| Error::invalid("git repository", strip_userinfo(repository), reason);
    if repository.trim().is_empty() {
        return Err(refuse("it is empty"));
    }
    if repository.starts_with('-') {
        return Err(refuse("it starts with '-', which git would read as an option"));
    }
    if repository.chars().any(char::is_control) {
        return Err(refuse("it holds a control character"));
    }
    check_pattern("git repository", repository, |_| Ok(()))?;
    if is_local_path(repository) {
        let absolute =
            std::path::absolute(repository).map_err(|error| refuse(&format!("cannot make it absolute: {error}")))?;
        return absolute.to_str().map(str::to_owned).ok_or_else(|| refuse("its absolute path is not UTF-8"));
    }
    Ok(repository.to_owned())
}

/// Why `branch` is not a branch name this deployer pushes to, if it is not: the rules of
/// `git check-ref-format --branch`, kept a little stricter.
fn check_branch(branch: &str) -> std::result::Result<(), &'static str> {
    if branch.is_empty() {
        return Err("it is empty");
    }
    if branch.starts_with(['-', '/']) || branch.ends_with(['/', '.']) || branch.ends_with(".lock") {
        return Err("it starts with '-' or '/', or ends with '/', '.' or .lock");
    }
    if branch.contains("..") || branch.contains("//") || branch.contains("@{") || branch == "@" || branch == "HEAD" {
        return Err("it holds '..', '//' or '@{', or is '@' or HEAD");
    }
    if branch
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Err("it holds a space, a control character or one of ~^:?*[\\");
    }
    if branch.split('/').any(|part| part.starts_with('.')) {
        return Err("a part of it starts with '.'");
    }
    Ok(())
}

/// The path, `/`-separated without empty parts, if every part is a plain name (no `..`, no `.git`, nothing
/// starting with `.`); empty for the repository's root.
fn check_path(path: &str) -> std::result::Result<String, &'static str> {
    if path.starts_with('/') {
        return Err("it is absolute; give a path inside the repository");
    }
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    for part in &parts {
        check_segment(part)?;
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(repository: &str, branch: &str, path: &str) -> TargetPattern {
        TargetPattern { repository: repository.into(), branch: branch.into(), path: path.into() }
    }

    #[test]
    fn stage_patterns_resolve_per_stage() {
        let target = pattern("https://ci:t0k@git.example/shop/deploy-{stage}.git", "main", "apps/{stage}/")
            .resolve("prd")
            .unwrap();
        assert_eq!(target.repository, "https://ci:t0k@git.example/shop/deploy-prd.git");
        assert_eq!(target.shown, "https://git.example/shop/deploy-prd.git");
        assert_eq!((target.branch.as_str(), target.path.as_str()), ("main", "apps/prd"));
        assert_eq!(target.describe(), "branch main of https://git.example/shop/deploy-prd.git, path apps/prd");
        let root = pattern("/srv/deploy.git", "{stage}", "").resolve("stg").unwrap();
        assert_eq!((root.branch.as_str(), root.pathspec()), ("stg", "."));
        assert!(pattern("/r", "{stage}", "").resolve("../x").is_err(), "a stage name cannot escape");
    }

    #[test]
    fn bad_patterns_are_refused_when_built() {
        let build = |repository: &str, branch: &str, path: &str| {
            GitDeployer::builder(repository, branch, "/tmp/cache").path(path).build().err().map(|e| e.to_string())
        };
        assert_eq!(build("https://h/r.git", "{stage}", "{stage}"), None);
        for (repository, branch, path, what) in [
            ("https://h/r.git", "{env}", "", "placeholder"),
            ("https://h/r.git", "a..b", "", "'..'"),
            ("https://h/r.git", "-x", "", "starts with '-'"),
            ("https://h/r.git", "main", "../up", "starts with '.'"),
            ("https://h/r.git", "main", ".git/hooks", "starts with '.'"),
            ("https://h/r.git", "main", "/abs", "absolute"),
            ("--upload-pack=x", "main", "", "option"),
            ("", "main", "", "empty"),
        ] {
            let error = build(repository, branch, path).unwrap_or_else(|| panic!("{repository} {branch} {path}"));
            assert!(error.contains(what), "{error}");
        }
    }

    #[test]
    fn local_paths_are_told_from_urls() {
        assert!(is_local_path("/srv/git/deploy.git") && is_local_path("deploy.git") && is_local_path("./a:b"));
        assert!(!is_local_path("git@github.com:org/deploy.git") && !is_local_path("file:///srv/deploy.git"));
        let built = check_repository("relative/deploy.git").unwrap();
        assert!(Path::new(&built).is_absolute(), "{built}");
    }

    use std::path::Path;
}
