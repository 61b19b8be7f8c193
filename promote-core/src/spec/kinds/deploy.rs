//! The spec kind of the directory (GitOps) deployer: `directory`.
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

use crate::deploy::{Deployer, DirectoryDeployer};
use crate::spec::SpecRegistry;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectorySettings {
    root: PathBuf,
    #[serde(default)]
    allow_plaintext_secrets: bool,
}

/// Registers deployer kind `directory`.
pub(crate) fn register(registry: &mut SpecRegistry) {
    registry.register_deployer("directory", |spec| async move {
        let settings: DirectorySettings = spec.parse()?;
        let deployer = DirectoryDeployer::new(spec.resolve_path("root", &settings.root)?)
            .allow_plaintext_secrets(settings.allow_plaintext_secrets);
        Ok(Arc::new(deployer) as Arc<dyn Deployer>)
    });
}
