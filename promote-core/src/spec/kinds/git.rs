//! The spec kind of the git deployer: `git`.
//!
//! ```yaml
//! deployer:
//!   kind: git
//!   repository: git@git.example:shop/deploy.git   # any URL git accepts, or a path (relative to this file)
//!   branch: "{stage}"                              # {stage} may appear in repository, branch and path
//!   path: apps/web                                 # optional: the stage's directory in the repository
//!   cache_dir: .promote/git                        # working clones, one per repository
//!   push_retries: 5                                # optional: pushes rebuilt after a lost race
//!   search_depth: 50                               # optional: commits searched for a re-run's commit
//!   timeout: 5m                                    # optional: the longest one git command may take
//!   allow_plaintext_secrets: false                 # optional
//!   env: { GIT_SSH_COMMAND: "ssh -i deploy_key" }  # optional: variables for every git command
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::deploy::{Deployer, GitDeployer, is_local_path};
use crate::error::Error;
use crate::spec::SpecRegistry;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GitSettings {
    repository: String,
    branch: String,
    #[serde(default)]
    path: String,
    cache_dir: PathBuf,
    #[serde(default)]
    allow_plaintext_secrets: bool,
    #[serde(default)]
    push_retries: Option<u32>,
    #[serde(default)]
    search_depth: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// Registers deployer kind `git`.
pub(crate) fn register(registry: &mut SpecRegistry) {
    registry.register_deployer("git", |spec| async move {
        spec.refuse_if_untrusted("runs git, which pushes with the runner's credentials,")?;
        let settings: GitSettings = spec.parse()?;
        if !settings.env.is_empty() {
            // GIT_SSH_COMMAND and friends run programs.
            spec.refuse_setting_if_untrusted("env", "sets git's environment, which can run programs")?;
        }
        let mut repository = settings.repository;
        // A local path is relative to the spec file, as every path in a spec is.
        if is_local_path(&repository) {
            let resolved = spec.resolve_path("repository", Path::new(&repository))?;
            repository = resolved
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| spec.error_at("repository", "the resolved path is not UTF-8"))?;
        }
        let mut builder =
            GitDeployer::builder(repository, settings.branch, spec.resolve_path("cache_dir", &settings.cache_dir)?)
                .path(settings.path)
                .allow_plaintext_secrets(settings.allow_plaintext_secrets);
        for (name, value) in settings.env {
            builder = builder.env(name, value);
        }
        if let Some(retries) = settings.push_retries {
            builder = builder.push_retries(retries);
        }
        if let Some(depth) = settings.search_depth {
            if depth == 0 {
                return Err(spec.error_at("search_depth", "must be at least 1"));
            }
            builder = builder.search_depth(depth);
        }
        if let Some(text) = settings.timeout {
            let timeout = humantime::parse_duration(&text)
                .map_err(|e| spec.error_at("timeout", format!("`{text}` is not a duration like 5m: {e}")))?;
            builder = builder.timeout(timeout);
        }
        let deployer = builder.build().map_err(|error| match error {
            Error::InvalidInput { what, input, reason } => {
                let setting = what.strip_prefix("git ").unwrap_or(what);
                spec.error_at(setting, format!("invalid {what} `{input}`: {reason}"))
            }
            other => other,
        })?;
        Ok(Arc::new(deployer) as Arc<dyn Deployer>)
    });
}
