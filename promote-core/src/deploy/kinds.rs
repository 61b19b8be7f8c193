//! The spec kinds of the GitOps deployers: `directory` (here) and `git` (in `deploy::git::spec`).
//!
//! ```yaml
//! deployer: { kind: directory, root: deploy }       # <root>/<stage>/<kind>-<name>.yaml
//! stages:
//!   - name: dev
//!     deployer: { kind: directory, root: deploy, allow_plaintext_secrets: true }
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::{Deployer, DirectoryDeployer};
use crate::spec::SpecRegistry;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectorySettings {
    root: PathBuf,
    #[serde(default)]
    allow_plaintext_secrets: bool,
}

/// Registers deployer kinds `directory` and `git`.
pub(crate) fn register(registry: &mut SpecRegistry) {
    super::git::spec::register(registry);
    registry.register_deployer("directory", |spec| async move {
        let settings: DirectorySettings = spec.parse()?;
        let deployer = DirectoryDeployer::new(spec.resolve_path(&settings.root))
            .allow_plaintext_secrets(settings.allow_plaintext_secrets);
        Ok(Arc::new(deployer) as Arc<dyn Deployer>)
    });
}
