//! How far a spec is trusted.
//!
//! A spec, its templates and its config files may come from a pull request, while the runner that loads
//! them holds credentials. Under [`SpecPolicy::untrusted`], loading refuses everything in a spec that
//! would act with the runner's authority or read what the runner can read:
//! - kinds that run programs or call URLs (`command`, `http` gates), and kinds that read credentials
//!   (cloud secret stores, cloud registries, clusters), unless the embedder allows the kind by name;
//! - `env` config sources outside the `PROMOTE_` prefix;
//! - paths that are absolute, climb out with `..`, or pass through a symlink: every file a spec names must
//!   lie inside the spec's own directory;
//! - settings that choose where credentials come from or go (`*_env` credential names, `insecure`,
//!   registry aliases, endpoint URLs, profiles), and registries not on the embedder's allowlist.
//!
//! Backend kinds check the policy through [`BackendSpec`](super::BackendSpec)'s helpers.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The environment prefix an untrusted spec's `env` sources must start with.
pub const UNTRUSTED_ENV_PREFIX: &str = "PROMOTE_";

/// How far the specs a [`SpecRegistry`](super::SpecRegistry) loads are trusted.
///
/// ```
/// use promote_core::spec::SpecPolicy;
/// let policy = SpecPolicy::untrusted().allow_registry("registry.example.com").allow_kind("kubernetes");
/// assert!(!policy.is_trusted());
/// assert!(policy.allows_registry("registry.example.com") && !policy.allows_registry("evil.example"));
/// assert!(policy.allows_kind("kubernetes") && !policy.allows_kind("command"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecPolicy {
    untrusted: bool,
    registries: BTreeSet<String>,
    kinds: BTreeSet<String>,
}

impl SpecPolicy {
    /// Specs written by whoever may run the pipeline: everything a spec can say is allowed. The default.
    pub fn trusted() -> Self {
        SpecPolicy::default()
    }

    /// Specs from someone the runner does not trust (a pull request). See the module documentation.
    pub fn untrusted() -> Self {
        SpecPolicy { untrusted: true, ..SpecPolicy::default() }
    }

    /// Allows an untrusted spec to name this registry host (`host[:port]`).
    pub fn allow_registry(mut self, host: impl Into<String>) -> Self {
        self.registries.insert(host.into());
        self
    }

    /// Allows an untrusted spec a kind the policy refuses by default (one that reads credentials, such as
    /// `kubernetes` for a dry-run against the cluster). The kind's own setting checks still apply.
    pub fn allow_kind(mut self, kind: impl Into<String>) -> Self {
        self.kinds.insert(kind.into());
        self
    }

    /// Whether specs are trusted.
    pub fn is_trusted(&self) -> bool {
        !self.untrusted
    }

    /// The registries an untrusted spec may reach.
    pub fn allowed_registries(&self) -> impl Iterator<Item = &str> {
        self.registries.iter().map(String::as_str)
    }

    /// Whether a spec may name registry `host`.
    pub fn allows_registry(&self, host: &str) -> bool {
        !self.untrusted || self.registries.contains(host)
    }

    /// Whether a spec may use a kind that acts with the runner's authority.
    pub fn allows_kind(&self, kind: &str) -> bool {
        !self.untrusted || self.kinds.contains(kind)
    }

    /// `path` (as a spec wrote it) resolved against `base`. Untrusted specs may only name relative paths
    /// without `..` that pass through no symlink, so that the file lies inside `base`.
    pub(crate) fn confine(&self, base: &Path, path: &Path) -> Result<PathBuf, String> {
        if !self.untrusted {
            return Ok(if path.is_absolute() { path.to_owned() } else { base.join(path) });
        }
        let mut resolved = base.to_owned();
        for component in path.components() {
            match component {
                Component::Normal(part) => resolved.push(part),
                Component::CurDir => {}
                Component::ParentDir => return Err("an untrusted spec may not name a path with `..`".into()),
                Component::RootDir | Component::Prefix(_) => {
                    return Err("an untrusted spec may not name an absolute path".into());
                }
            }
            // What does not exist yet cannot be a symlink now; it is created inside `base` later.
            if std::fs::symlink_metadata(&resolved).is_ok_and(|meta| meta.file_type().is_symlink()) {
                return Err(format!(
                    "an untrusted spec may not name a path through a symlink ({} is one)",
                    resolved.strip_prefix(base).unwrap_or(&resolved).display()
                ));
            }
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_paths_stay_inside_the_spec_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("config/etc")).unwrap();
        let untrusted = SpecPolicy::untrusted();
        let ok = untrusted.confine(dir.path(), Path::new("config/{stage}.yaml")).unwrap();
        assert_eq!(ok, dir.path().join("config/{stage}.yaml"));
        for bad in ["/proc/self/environ", "../../../../etc/os-release", "config/../../x", "config/etc/os-release"] {
            assert!(untrusted.confine(dir.path(), Path::new(bad)).is_err(), "{bad}");
        }
        assert_eq!(SpecPolicy::trusted().confine(dir.path(), Path::new("/etc/x")).unwrap(), Path::new("/etc/x"));
    }
}
