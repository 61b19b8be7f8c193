//! Target `spec`: `promote.yaml` as `SpecRegistry::with_defaults().load_str` reads it.
//!
//! The spec is loaded, never promoted: no gate runs, no command starts, no request is sent. Loading runs in
//! a fresh temporary directory (the spec's directory), which holds a `manifests/` template directory and a
//! `config/` file for specs to name. The kinds that take a path to write to (the file ledger, which creates
//! its file when it opens, the file lock and the directory deployer) are registered here with the same
//! constructors behind a check that the path stays inside that directory, so that no input writes elsewhere.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use promote_core::spec::BackendSpec;
use promote_core::{Deployer, DirectoryDeployer, EnvironmentLock, FileLedger, FileLock, Ledger, SpecRegistry};
use serde::Deserialize;

use crate::common::block_on;

const TEMPLATE: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  stage: {{stage}}\n";
const CONFIG: &str = "dev:\n  REPLICAS: \"1\"\nprd:\n  REPLICAS: \"3\"\n";

/// Runs one input.
pub(crate) fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir(dir.path().join("manifests")).expect("manifests/");
    std::fs::write(dir.path().join("manifests/app.yaml"), TEMPLATE).expect("manifests/app.yaml");
    std::fs::create_dir(dir.path().join("config")).expect("config/");
    std::fs::write(dir.path().join("config/values.yaml"), CONFIG).expect("config/values.yaml");
    let registry = confined_registry();
    let spec_path = dir.path().join("promote.yaml");
    let loaded = block_on(registry.load_str(text, &spec_path, dir.path(), None));
    match loaded {
        Ok(pipeline) => {
            let _ = format!("{pipeline:?}");
        }
        Err(error) => {
            // Errors print, and their classification does not panic.
            let _ = (error.to_string(), format!("{error:?}"), error.is_retryable());
        }
    }
}

/// The default registry, with the kinds that write confined to the spec's directory.
fn confined_registry() -> SpecRegistry {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FileLedgerSettings {
        path: PathBuf,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FileLockSettings {
        dir: PathBuf,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct DirectorySettings {
        root: PathBuf,
        #[serde(default)]
        allow_plaintext_secrets: bool,
    }
    let mut registry = SpecRegistry::with_defaults();
    registry.register_ledger("file", |spec| async move {
        let settings: FileLedgerSettings = spec.parse()?;
        let path = confined(&spec, "path", &settings.path)?;
        Ok(Arc::new(FileLedger::open(path).await?) as Arc<dyn Ledger>)
    });
    registry.register_lock("file", |spec| async move {
        let settings: FileLockSettings = spec.parse()?;
        let dir = confined(&spec, "dir", &settings.dir)?;
        Ok(Arc::new(FileLock::new(dir)) as Arc<dyn EnvironmentLock>)
    });
    registry.register_deployer("directory", |spec| async move {
        let settings: DirectorySettings = spec.parse()?;
        let root = confined(&spec, "root", &settings.root)?;
        let deployer = DirectoryDeployer::new(root).allow_plaintext_secrets(settings.allow_plaintext_secrets);
        Ok(Arc::new(deployer) as Arc<dyn Deployer>)
    });
    registry
}

/// `path` resolved against the spec's directory, if it is relative and never climbs out of it.
fn confined(spec: &BackendSpec, setting: &str, path: &Path) -> promote_core::Result<PathBuf> {
    let inside = !path.as_os_str().is_empty()
        && path.components().all(|component| matches!(component, Component::Normal(_) | Component::CurDir));
    if inside {
        spec.resolve_path(setting, path)
    } else {
        Err(spec.error("the fuzz harness only writes inside the spec's directory"))
    }
}
