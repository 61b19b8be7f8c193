//! A GitOps deployer: writes each stage's rendered objects into a directory tree that a GitOps tool
//! (Argo CD, Flux) applies.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{
    ApplyMode, Bundle, Change, ChangeAction, DeployStatus, Deployer, DeployerCapabilities, Manifest, diff_objects,
};
use crate::error::{Error, ErrorClass, Result};

/// The name of the index file the deployer keeps in each stage's directory. It has no `.json` or `.yaml`
/// extension, so that Argo CD and Flux, which read `*.yaml`, `*.yml` and `*.json`, do not take it for a
/// manifest.
pub const INDEX_FILE: &str = ".promote-index";

const BACKEND: &str = "directory";

/// Writes rendered bundles into a directory tree, one file per object, for a GitOps tool to apply.
///
/// # Layout
/// `<root>/<stage>/<kind>-<name>.yaml` for objects without a namespace, and
/// `<root>/<stage>/<namespace>/<kind>-<name>.yaml` for namespaced ones (`kind` lower-cased). Each file
/// holds the rendered document exactly as rendered. `<root>/<stage>/.promote-index` (JSON) lists the
/// files the deployer owns, with each object's identity, the sha256 of its content and its rendering
/// with secrets masked.
///
/// # Behaviour
/// - Every file, and the index, is written to a temporary file in the same directory, fsynced and
///   renamed over the old one, so a reader never sees half a file. Files of objects that left the
///   bundle are removed, and only files the index lists: the deployer never touches a file it did not
///   write. An apply that is interrupted lists the files it was about to write in the index first, so
///   the next apply still knows they are its own.
/// - An object whose rendering holds a secret value, and any Kubernetes `Secret`, is refused
///   ([`Error::DeployFailed`] naming the object, never a value) unless the deployer was built with
///   [`DirectoryDeployer::allow_plaintext_secrets`]: files in a Git repository are plain text. Render a
///   `SealedSecret` or an `ExternalSecret` instead, or allow it for a stage whose directory is private.
/// - Applying is the GitOps tool's job, so [`Deployer::wait_healthy`] does not observe health
///   ([`DeployerCapabilities::health`] is false): it checks that the files are the bundle and returns a
///   summary saying so.
/// - [`Deployer::current`] reads the files back. Their masked form comes from the index; a file changed
///   by someone else since is shown as a note, never as its content, because it may hold a secret.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use promote_core::deploy::{ApplyMode, Bundle, Deployer, DirectoryDeployer, Manifest};
/// let root = tempfile::tempdir().unwrap();
/// let deployer = DirectoryDeployer::new(root.path());
/// let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n".to_owned();
/// let manifest = Manifest::new("v1".into(), "ConfigMap".into(), "web".into(), None, "app.yaml".into(), text.clone(), text.clone());
/// deployer.apply(&Bundle::new("dev", vec![manifest]), ApplyMode::Apply).await?;
/// assert_eq!(std::fs::read_to_string(root.path().join("dev/configmap-web.yaml")).unwrap(), text);
/// # Ok::<(), promote_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct DirectoryDeployer {
    root: PathBuf,
    allow_plaintext_secrets: bool,
    // One apply at a time per deployer: the index is read, then rewritten.
    writing: Arc<Mutex<()>>,
}

/// The index file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    format: u32,
    stage: String,
    objects: Vec<IndexedObject>,
    /// Files an apply was about to write when this index was written; empty once it finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexedObject {
    /// The file, relative to the stage's directory, `/`-separated.
    file: String,
    api_version: String,
    kind: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    template: String,
    /// sha256 of the file's content as written.
    sha256: String,
    /// The rendering with secrets masked.
    masked: String,
}

impl IndexedObject {
    fn of(manifest: &Manifest, file: String) -> Self {
        IndexedObject {
            file,
            api_version: manifest.api_version.clone(),
            kind: manifest.kind.clone(),
            name: manifest.name.clone(),
            namespace: manifest.namespace.clone(),
            template: manifest.template.clone(),
            sha256: sha256(manifest.expose_content()),
            masked: manifest.masked().to_owned(),
        }
    }
}

/// What is in a stage's directory now.
struct OnDisk {
    index: Option<Index>,
    bundle: Option<Bundle>,
}

impl OnDisk {
    /// Every file the deployer owns in the stage's directory.
    fn owned(&self) -> BTreeSet<String> {
        self.index
            .iter()
            .flat_map(|index| {
                index.objects.iter().map(|object| object.file.clone()).chain(index.pending.iter().cloned())
            })
            .collect()
    }
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl DirectoryDeployer {
    /// A deployer writing under `root`, refusing plain-text secrets.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirectoryDeployer { root: root.into(), allow_plaintext_secrets: false, writing: Arc::default() }
    }

    /// Whether objects holding secret values (and Kubernetes `Secret`s) may be written in plain text.
    pub fn allow_plaintext_secrets(mut self, allow: bool) -> Self {
        self.allow_plaintext_secrets = allow;
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory a stage's files go into.
    pub fn stage_dir(&self, stage: &str) -> PathBuf {
        self.root.join(stage)
    }

    /// The file an object goes into, relative to its stage's directory.
    pub fn object_file(manifest: &Manifest) -> Result<PathBuf> {
        Ok(PathBuf::from(relative_file(manifest)?))
    }

    fn checked_stage_dir(&self, stage: &str) -> Result<PathBuf> {
        check_segment(stage).map_err(|reason| Error::invalid("stage name", stage, reason))?;
        Ok(self.stage_dir(stage))
    }

    fn refuse_plaintext(&self, bundle: &Bundle, dir: &Path) -> Result<()> {
        if self.allow_plaintext_secrets {
            return Ok(());
        }
        for manifest in bundle.manifests() {
            let why = if manifest.kind == "Secret" && manifest.api_version == "v1" {
                "it is a Kubernetes Secret"
            } else if manifest.holds_secrets() {
                "its rendering holds secret config values"
            } else {
                continue;
            };
            let file = dir.join(relative_file(manifest)?);
            return Err(Error::DeployFailed {
                stage: bundle.stage().to_owned(),
                reason: format!(
                    "refusing to write {} in plain text to {}: {why}. Render a SealedSecret or an \
                     ExternalSecret instead, or set allow_plaintext_secrets: true on this stage's \
                     directory deployer if its directory is private",
                    manifest.object_key(),
                    file.display()
                ),
            });
        }
        Ok(())
    }

    /// Reads the index and the files it lists.
    fn read(&self, stage: &str) -> Result<OnDisk> {
        let dir = self.checked_stage_dir(stage)?;
        let index_path = dir.join(INDEX_FILE);
        let text = match std::fs::read_to_string(&index_path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(OnDisk { index: None, bundle: None });
            }
            Err(error) => return Err(Error::io(index_path, error)),
        };
        let index: Index = serde_json::from_str(&text).map_err(|error| {
            Error::backend(
                BACKEND,
                ErrorClass::Persistent,
                format!(
                    "{} is damaged ({error}); remove it and the files it listed to start the stage afresh",
                    index_path.display()
                ),
            )
        })?;
        let mut manifests = Vec::new();
        for object in &index.objects {
            let path = dir.join(&object.file);
            let content = match std::fs::read_to_string(&path) {
                Ok(content) => content,
                // Someone removed it: the stage no longer has it.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(Error::io(path, error)),
            };
            let masked = if sha256(&content) == object.sha256 {
                object.masked.clone()
            } else {
                // Not what was written: it may hold anything, so show only that it changed.
                format!("# {} was changed outside promote; its content is not shown\n", object.file)
            };
            manifests.push(Manifest::new(
                object.api_version.clone(),
                object.kind.clone(),
                object.name.clone(),
                object.namespace.clone(),
                object.template.clone(),
                content,
                masked,
            ));
        }
        Ok(OnDisk { bundle: Some(Bundle::new(stage, manifests)), index: Some(index) })
    }

    fn apply_blocking(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let stage = bundle.stage();
        let dir = self.checked_stage_dir(stage)?;
        let mut files = Vec::new();
        let mut seen = BTreeSet::new();
        for manifest in bundle.manifests() {
            let file = relative_file(manifest)?;
            if !seen.insert(file.clone()) {
                return Err(Error::invalid(
                    "bundle",
                    manifest.object_key(),
                    format!("a second object of the bundle would also be written to {file}"),
                ));
            }
            files.push(file);
        }
        self.refuse_plaintext(bundle, &dir)?;
        let on_disk = self.read(stage)?;
        let changes = diff_objects(on_disk.bundle.as_ref(), bundle);
        if mode == ApplyMode::DryRun {
            return Ok(changes);
        }

        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let owned = on_disk.owned();
        // First say which files this apply may create, so that an interrupted apply leaves no file the
        // next one does not know it owns.
        let mut intent = on_disk.index.unwrap_or_default();
        intent.format = 1;
        intent.stage = stage.to_owned();
        intent.pending = files.iter().filter(|f| !owned.contains(*f)).cloned().collect();
        if !intent.pending.is_empty() {
            write_index(&dir, &intent)?;
        }

        let mut touched_dirs = BTreeSet::from([dir.clone()]);
        for ((manifest, file), change) in bundle.manifests().iter().zip(&files).zip(&changes) {
            if change.action == ChangeAction::Unchanged {
                continue;
            }
            let path = dir.join(file);
            let parent = path.parent().unwrap_or(&dir).to_owned();
            std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
            write_atomically(&path, manifest.expose_content())?;
            touched_dirs.insert(parent);
        }
        let keep: BTreeSet<&String> = files.iter().collect();
        for stale in owned.iter().filter(|file| !keep.contains(file)) {
            let path = dir.join(stale);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io(path, error)),
            }
            if let Some(parent) = path.parent().filter(|p| *p != dir) {
                // A namespace directory left empty goes too; one holding other files stays.
                if std::fs::remove_dir(parent).is_err() {
                    touched_dirs.insert(parent.to_owned());
                }
            }
        }
        for touched in &touched_dirs {
            sync_dir(touched)?;
        }

        let index = Index {
            format: 1,
            stage: stage.to_owned(),
            objects: bundle
                .manifests()
                .iter()
                .zip(files)
                .map(|(manifest, file)| IndexedObject::of(manifest, file))
                .collect(),
            pending: Vec::new(),
        };
        write_index(&dir, &index)?;
        tracing::debug!(stage, dir = %dir.display(), objects = index.objects.len(), "bundle written");
        Ok(changes)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(DirectoryDeployer) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let deployer = self.clone();
        tokio::task::spawn_blocking(move || work(deployer)).await.map_err(|error| {
            Error::backend(BACKEND, ErrorClass::Persistent, format!("the file writer stopped: {error}"))
        })?
    }
}

/// Why a path segment is unsafe, if it is.
fn check_segment(segment: &str) -> std::result::Result<(), &'static str> {
    if segment.is_empty() {
        return Err("it is empty");
    }
    if segment.starts_with('.') {
        return Err("it starts with '.'");
    }
    if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')) {
        return Err("use letters, digits, '-', '_', '.' and ':' only");
    }
    Ok(())
}

/// `<kind>-<name>.yaml`, under `<namespace>/` when namespaced.
fn relative_file(manifest: &Manifest) -> Result<String> {
    let unsafe_name = |what: &str, reason: &str| {
        Error::invalid("object", manifest.object_key(), format!("its {what} cannot be used in a file name: {reason}"))
    };
    check_segment(&manifest.kind).map_err(|r| unsafe_name("kind", r))?;
    check_segment(&manifest.name).map_err(|r| unsafe_name("name", r))?;
    let file = format!("{}-{}.yaml", manifest.kind.to_ascii_lowercase(), manifest.name);
    match &manifest.namespace {
        Some(namespace) => {
            check_segment(namespace).map_err(|r| unsafe_name("namespace", r))?;
            Ok(format!("{namespace}/{file}"))
        }
        None => Ok(file),
    }
}

fn write_index(dir: &Path, index: &Index) -> Result<()> {
    let mut text = serde_json::to_string_pretty(index).map_err(|error| {
        Error::backend(BACKEND, ErrorClass::Persistent, format!("cannot encode the index: {error}"))
    })?;
    text.push('\n');
    write_atomically(&dir.join(INDEX_FILE), &text)?;
    sync_dir(dir)
}

/// Writes `text` to a temporary file beside `path`, fsyncs it and renames it over `path`.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut file =
        tempfile::Builder::new().prefix(".promote-tmp-").tempfile_in(parent).map_err(|e| Error::io(parent, e))?;
    file.write_all(text.as_bytes()).map_err(|e| Error::io(path, e))?;
    file.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    file.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Makes renames and removals in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[async_trait]
impl Deployer for DirectoryDeployer {
    fn capabilities(&self) -> DeployerCapabilities {
        DeployerCapabilities { dry_run: true, health: false, prune: true }
    }

    async fn apply(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>> {
        let bundle = bundle.clone();
        self.blocking(move |deployer| deployer.apply_blocking(&bundle, mode)).await
    }

    async fn wait_healthy(&self, bundle: &Bundle, _timeout: Duration) -> Result<String> {
        let stage = bundle.stage().to_owned();
        let current = self
            .blocking({
                let stage = stage.clone();
                move |deployer| deployer.read(&stage)
            })
            .await?
            .bundle;
        let dir = self.stage_dir(&stage);
        if current.as_ref().map(Bundle::hash) != Some(bundle.hash()) {
            return Err(Error::DeployFailed {
                stage,
                reason: format!(
                    "the files in {} are not the bundle that was applied (changed by someone else?)",
                    dir.display()
                ),
            });
        }
        Ok(format!(
            "wrote {} objects to {}; a GitOps tool (Argo CD, Flux) applies them, so their health is not \
             observed here",
            bundle.manifests().len(),
            dir.display()
        ))
    }

    async fn current(&self, stage: &str) -> Result<Option<Bundle>> {
        let stage = stage.to_owned();
        Ok(self.blocking(move |deployer| deployer.read(&stage)).await?.bundle)
    }

    async fn status(&self, stage: &str) -> Result<DeployStatus> {
        let bundle = self.current(stage).await?;
        Ok(DeployStatus {
            bundle_hash: bundle.as_ref().map(|b| b.hash().to_owned()),
            objects: bundle.map(|b| b.manifests().iter().map(Manifest::object_key).collect()).unwrap_or_default(),
            healthy: None,
        })
    }
}
