//! Running the `git` CLI: one child process per command, under the user's own git configuration (credential
//! helpers, SSH agents, proxies, `includeIf`, signing), never prompting, with its output redacted before it
//! reaches an error.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use super::redact::OutputRedactor;
use crate::error::{Error, ErrorClass, Resource, Result};

/// The backend's name in errors.
pub(super) const BACKEND: &str = "git";

/// The oldest git this deployer drives.
const MINIMUM_VERSION: (u32, u32) = (2, 39);

/// The most of git's error output an error carries (its last lines).
const MAX_SHOWN: usize = 2000;

/// Variables that point git at a repository. A parent git sets them when promote runs inside a hook; left
/// in place they would send every command to that repository instead of the cache. They say where a
/// repository is, not how git is configured, so removing them changes none of the user's settings.
const REPOSITORY_VARIABLES: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_NAMESPACE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_QUARANTINE_PATH",
];

/// The `git` program and how it is run.
#[derive(Debug, Clone)]
pub(super) struct Git {
    program: PathBuf,
    timeout: Duration,
    /// Variables the caller asked for (the builder's `env`), set after the deployer's own.
    env: Arc<[(String, String)]>,
    spawned: Arc<AtomicU64>,
}

/// What a finished git command said.
#[derive(Debug)]
pub(super) struct Output {
    /// Whether it exited with status 0.
    pub(super) success: bool,
    /// Its standard output (lossily decoded).
    pub(super) stdout: String,
    /// Its standard error (lossily decoded). May hold credentials or secret values: redact before showing.
    pub(super) stderr: String,
}

impl Git {
    /// `program` (usually `git`, found on `PATH`), each command killed after `timeout`, with the caller's
    /// environment variables `env`.
    pub(super) fn new(program: PathBuf, timeout: Duration, env: Vec<(String, String)>) -> Self {
        Git { program, timeout, env: env.into(), spawned: Arc::default() }
    }

    /// How many git processes this deployer has started.
    pub(super) fn spawned(&self) -> u64 {
        self.spawned.load(Ordering::Relaxed)
    }

    /// Runs `git <args>` in `dir`, feeding it `input` on standard input. `what` names the operation in
    /// errors ("fetch of https://host/repo"). A non-zero exit is returned as an [`Output`], not an error:
    /// callers decide what it means. Errors are starting git, and the timeout.
    pub(super) async fn run<I, S>(&self, dir: &Path, args: I, input: Option<&str>, what: &str) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|arg| arg.as_ref().to_owned()).collect();
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg("-C")
            .arg(dir)
            .args(&args)
            // Credential helpers and SSH agents answer; git never waits on a terminal prompt.
            .env("GIT_TERMINAL_PROMPT", "0")
            // Messages in English, so that the few this deployer recognises are recognised.
            .env("LC_ALL", "C")
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for variable in REPOSITORY_VARIABLES {
            command.env_remove(variable);
        }
        command.envs(self.env.iter().map(|(name, value)| (name, value)));
        let mut child = command.spawn().map_err(|error| {
            let hint = match error.kind() {
                std::io::ErrorKind::NotFound => " (is git installed and on PATH?)",
                _ => "",
            };
            Error::Backend {
                backend: BACKEND,
                message: format!("cannot run `{}` for the {what}{hint}", self.program.display()),
                class: ErrorClass::Persistent,
                source: Some(Box::new(error)),
            }
        })?;
        self.spawned.fetch_add(1, Ordering::Relaxed);
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A git that exits early closes its end: its exit status says why, not the broken pipe.
            let _ = stdin.write_all(input.as_bytes()).await;
            drop(stdin);
        }
        // Dropping the child on timeout kills it (`kill_on_drop`).
        let finished = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| Error::Timeout { what: format!("git: the {what}"), after: self.timeout })?
            .map_err(|error| Error::Backend {
                backend: BACKEND,
                message: format!("lost the git process of the {what}"),
                class: ErrorClass::Temporary,
                source: Some(Box::new(error)),
            })?;
        Ok(Output {
            success: finished.status.success(),
            stdout: String::from_utf8_lossy(&finished.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&finished.stderr).into_owned(),
        })
    }

    /// Like [`Git::run`], but a non-zero exit is an error saying what git said (redacted).
    pub(super) async fn check<I, S>(
        &self,
        dir: &Path,
        args: I,
        input: Option<&str>,
        what: &str,
        redactor: &OutputRedactor,
    ) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = self.run(dir, args, input, what).await?;
        if output.success { Ok(output) } else { Err(failure(what, &output.stderr, redactor)) }
    }

    /// Checks that this git is new enough to drive.
    pub(super) async fn check_version(&self, dir: &Path) -> Result<()> {
        let output = self.check(dir, ["version"], None, "version check", &OutputRedactor::default()).await?;
        let said = output.stdout.trim();
        let version = said.strip_prefix("git version ").and_then(|rest| {
            let mut parts = rest.split(|c: char| !c.is_ascii_digit());
            Some((parts.next()?.parse::<u32>().ok()?, parts.next()?.parse::<u32>().ok()?))
        });
        match version {
            Some(version) if version >= MINIMUM_VERSION => Ok(()),
            _ => Err(Error::NotSupported {
                backend: BACKEND,
                operation: format!(
                    "git older than {}.{} (`{} version` says {said:?})",
                    MINIMUM_VERSION.0,
                    MINIMUM_VERSION.1,
                    self.program.display()
                ),
            }),
        }
    }
}

/// The error for a git command that failed: what it was doing, the last of what git said (redacted), and a
/// class from the message: an unreachable remote or a dropped connection is temporary, refused credentials
/// are [`Error::PermissionDenied`], a missing repository is [`Error::NotFound`], anything else persistent.
pub(super) fn failure(what: &str, stderr: &str, redactor: &OutputRedactor) -> Error {
    let said = shown(stderr, redactor);
    let lower = stderr.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|needle| lower.contains(needle));
    if any(&[
        "authentication failed",
        "could not read username",
        "could not read password",
        "permission denied",
        "returned error: 401",
        "returned error: 403",
        "access denied",
        "terminal prompts disabled",
    ]) {
        return Error::PermissionDenied { backend: BACKEND, message: format!("the {what} was refused: {said}") };
    }
    if any(&["repository not found", "does not appear to be a git repository", "returned error: 404"]) {
        return Error::NotFound { resource: Resource::Repository, name: format!("{what}: {said}") };
    }
    let temporary = any(&[
        "unable to connect",
        "could not resolve host",
        "connection refused",
        "connection reset",
        "connection timed out",
        "operation timed out",
        "network is unreachable",
        "no route to host",
        "the remote end hung up unexpectedly",
        "early eof",
        "rpc failed",
        "returned error: 429",
        "returned error: 5",
        "unable to access",
    ]);
    let class = if temporary { ErrorClass::Temporary } else { ErrorClass::Persistent };
    Error::backend(BACKEND, class, format!("the {what} failed: {said}"))
}

/// The last lines of `stderr`, redacted, on one line each joined by ` | `, at most [`MAX_SHOWN`] bytes.
pub(super) fn shown(stderr: &str, redactor: &OutputRedactor) -> String {
    let redacted = redactor.redact(stderr);
    let lines: Vec<&str> =
        redacted.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with("hint:")).collect();
    let mut kept = Vec::new();
    let mut length = 0;
    for line in lines.iter().rev() {
        length += line.len() + 3;
        if length > MAX_SHOWN && !kept.is_empty() {
            break;
        }
        kept.push(*line);
    }
    kept.reverse();
    match kept.is_empty() {
        true => "git said nothing".to_owned(),
        false => kept.join(" | "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_from_what_git_said() {
        let redactor = OutputRedactor::default();
        let unreachable = failure(
            "fetch of git://127.0.0.1:9/r",
            "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused\n",
            &redactor,
        );
        assert!(unreachable.is_retryable(), "{unreachable}");
        let denied = failure(
            "fetch of https://host/r",
            "fatal: Authentication failed for 'https://user:s3cret@host/r/'\n",
            &redactor,
        );
        assert!(matches!(denied, Error::PermissionDenied { .. }), "{denied}");
        assert!(!denied.to_string().contains("s3cret"), "{denied}");
        let missing = failure("fetch of /nope", "fatal: '/nope' does not appear to be a git repository\n", &redactor);
        assert!(matches!(missing, Error::NotFound { resource: Resource::Repository, .. }), "{missing}");
        let other =
            failure("commit", "error: gpg failed to sign the data\nfatal: failed to write commit object\n", &redactor);
        assert!(!other.is_retryable());
        assert!(other.to_string().contains("gpg failed to sign the data | fatal: failed to write commit object"));
    }

    #[test]
    fn only_the_last_of_long_output_is_shown() {
        let long: String = (0..500).map(|n| format!("line {n}\n")).collect();
        let said = shown(&long, &OutputRedactor::default());
        assert!(said.len() <= MAX_SHOWN + 20 && said.ends_with("line 499"), "{said}");
        assert_eq!(shown("hint: do this\n\n", &OutputRedactor::default()), "git said nothing");
    }
}
