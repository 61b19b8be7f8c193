//! A GitOps deployer: writes each stage's rendered objects into a directory tree that a GitOps tool
//! (Argo CD, Flux) applies.

use std::collections::BTreeSet;
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cap_fs_ext::{DirExt as _, FollowSymlinks, OpenOptionsFollowExt as _, OpenOptionsMaybeDirExt as _};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest as _, Sha256};

use super::{
    ApplyMode, Bundle, Change, ChangeAction, DeployStatus, Deployer, DeployerCapabilities, RenderedObject, diff_objects,
};
use crate::error::{Error, ErrorClass, Location, Result};
use crate::progress::Progress;

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
/// - Every file, and the index, is written to a new temporary file in the same directory, fsynced and
///   renamed over the old one, so a reader never sees half a file. Files of objects that left the
///   bundle are removed, and only files the index lists: the deployer never touches a file it did not
///   write. An apply that is interrupted lists the files it was about to write in the index first, so
///   the next apply still knows they are its own.
/// - The index is trusted only for names the deployer forms itself (`<kind>-<name>.yaml`, under
///   `<namespace>/`): an index listing anything else (`../prd/…`, an absolute path) is damaged, and is
///   refused as [`Error::UnsafeFile`] naming its line, before anything is written or removed.
/// - Symlinks are never followed below the root: a stage or namespace directory that is a symlink is
///   refused ([`Error::UnsafeFile`]), and every file is written, read and removed through a handle on its
///   directory (`cap-std`), so a symlink at a file's name is replaced or removed, never written through.
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
/// use promote_core::deploy::{ApplyMode, Bundle, Deployer, DirectoryDeployer, RenderedObject};
/// let root = tempfile::tempdir().unwrap();
/// let deployer = DirectoryDeployer::new(root.path());
/// let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n".to_owned();
/// let manifest = RenderedObject::new("v1".into(), "ConfigMap".into(), "web".into(), None, "app.yaml".into(), text.clone(), text.clone());
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
    pending: Vec<OwnedFile>,
}

/// A file named in the index: only ever a name the deployer forms itself, checked as it is read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
struct OwnedFile(String);

impl OwnedFile {
    /// The namespace directory (if any) and the file's name in it.
    fn parts(&self) -> (Option<&str>, &str) {
        match self.0.split_once('/') {
            Some((namespace, name)) => (Some(namespace), name),
            None => (None, &self.0),
        }
    }
}

impl<'de> Deserialize<'de> for OwnedFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let file = String::deserialize(deserializer)?;
        match check_owned_file(&file) {
            Ok(()) => Ok(OwnedFile(file)),
            Err(reason) => Err(serde::de::Error::custom(format!("{} {reason}", shown(&file)))),
        }
    }
}

/// `text` quoted for an error message, cut short if long.
fn shown(text: &str) -> String {
    const LONGEST: usize = 120;
    match text.char_indices().nth(LONGEST) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Why `file` is not a name the deployer writes (`<kind>-<name>.yaml`, under `<namespace>/` when
/// namespaced), if it is not: no `..`, no absolute path, no other separator, nothing but that pattern.
fn check_owned_file(file: &str) -> std::result::Result<(), String> {
    let not_ours = |why: &str| Err(format!("is not a file name the deployer writes: {why}"));
    if file.starts_with('/') || file.split(['/', '\\']).any(|part| part == "..") {
        return not_ours("it points outside the stage's directory");
    }
    let (namespace, name) = match file.split_once('/') {
        Some((namespace, name)) => (Some(namespace), name),
        None => (None, file),
    };
    if let Some(namespace) = namespace
        && let Err(reason) = check_segment(namespace)
    {
        return not_ours(&format!("its directory is not a namespace ({reason})"));
    }
    let Some(stem) = name.strip_suffix(".yaml") else {
        return not_ours("it does not end in .yaml");
    };
    let Some((kind, object)) = stem.split_once('-') else {
        return not_ours("it is not <kind>-<name>.yaml");
    };
    for (what, part) in [("kind", kind), ("name", object)] {
        if let Err(reason) = check_segment(part) {
            return not_ours(&format!("its {what} part {reason}"));
        }
    }
    if kind.bytes().any(|b| b.is_ascii_uppercase()) {
        return not_ours("its kind part is not lower-case");
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "StoredObject")]
struct IndexedObject {
    /// The file, relative to the stage's directory, `/`-separated.
    file: OwnedFile,
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

/// An indexed object as stored, before its file is checked against its identity.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredObject {
    file: OwnedFile,
    api_version: String,
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    template: String,
    sha256: String,
    masked: String,
}

impl TryFrom<StoredObject> for IndexedObject {
    type Error = String;

    /// An object's file must be the one the deployer forms from its kind, name and namespace.
    fn try_from(stored: StoredObject) -> std::result::Result<Self, String> {
        let StoredObject { file, api_version, kind, name, namespace, template, sha256, masked } = stored;
        let expected = file_for(&kind, &name, namespace.as_deref()).map_err(|(what, reason)| {
            format!("{} is not an object the deployer writes: its {what} {reason}", shown(&file.0))
        })?;
        if expected != file.0 {
            return Err(format!(
                "{} is not the file the deployer writes for {kind} {name} (that is {})",
                shown(&file.0),
                shown(&expected)
            ));
        }
        Ok(IndexedObject { file, api_version, kind, name, namespace, template, sha256, masked })
    }
}

impl IndexedObject {
    fn of(manifest: &RenderedObject, file: OwnedFile) -> Self {
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
    fn owned(&self) -> BTreeSet<OwnedFile> {
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
    pub fn object_file(manifest: &RenderedObject) -> Result<PathBuf> {
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
        refuse_plaintext_secrets(bundle, "directory deployer", "directory", |file| dir.join(file).display().to_string())
    }

    /// The root directory, created first if `create`; `None` if it does not exist. The root itself is the
    /// caller's choice, so a symlink in its path is followed; nothing below it is.
    fn open_root(&self, create: bool) -> Result<Option<Dir>> {
        if create {
            std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        }
        match Dir::open_ambient_dir(&self.root, ambient_authority()) {
            Ok(root) => Ok(Some(root)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !create => Ok(None),
            Err(error) => Err(Error::io(&self.root, error)),
        }
    }

    /// The stage's directory, created first if `create`; `None` if it does not exist.
    fn open_stage(&self, stage: &str, create: bool) -> Result<Option<Dir>> {
        let path = self.checked_stage_dir(stage)?;
        match self.open_root(create)? {
            Some(root) => open_subdir(&root, stage, &path, create),
            None => Ok(None),
        }
    }

    /// Reads the index and the files it lists.
    fn read(&self, stage: &str) -> Result<OnDisk> {
        match self.open_stage(stage, false)? {
            Some(dir) => Self::read_in(&dir, &self.stage_dir(stage), stage),
            None => Ok(OnDisk { index: None, bundle: None }),
        }
    }

    /// Reads the index in the stage's directory `dir` (at `path`) and the files it lists.
    fn read_in(dir: &Dir, path: &Path, stage: &str) -> Result<OnDisk> {
        let index_path = path.join(INDEX_FILE);
        let Some(text) = read_file(dir, INDEX_FILE, &index_path)? else {
            return Ok(OnDisk { index: None, bundle: None });
        };
        let text = text.map_err(|()| {
            state_refused(&index_path, None, "it is a symlink; the deployer keeps its index in a regular file")
        })?;
        let index: Index = serde_json::from_str(&text).map_err(|error| {
            let message = error.to_string();
            let message = message
                .strip_suffix(&format!(" at line {} column {}", error.line(), error.column()))
                .unwrap_or(&message);
            state_refused(&index_path, Some((error.line(), error.column())), &damaged(message))
        })?;
        if index.stage != stage {
            return Err(state_refused(
                &index_path,
                text.lines().position(|line| line.trim_start().starts_with("\"stage\"")).map(|n| (n + 1, 0)),
                &damaged(&format!("it is the index of stage {}, not of {stage}", shown(&index.stage))),
            ));
        }
        let mut manifests = Vec::new();
        for object in &index.objects {
            let file_path = path.join(&object.file.0);
            let (namespace, name) = object.file.parts();
            let in_namespace;
            let parent = match namespace {
                Some(namespace) => match open_subdir(dir, namespace, &path.join(namespace), false)? {
                    Some(opened) => {
                        in_namespace = opened;
                        &in_namespace
                    }
                    None => continue,
                },
                None => dir,
            };
            let (content, masked) = match read_file(parent, name, &file_path)? {
                // Someone removed it: the stage no longer has it.
                None => continue,
                Some(Ok(content)) if sha256(&content) == object.sha256 => (content, object.masked.clone()),
                // Not what was written: it may hold anything, so show only that it changed.
                Some(Ok(content)) => {
                    (content, format!("# {} was changed outside promote; its content is not shown\n", object.file.0))
                }
                Some(Err(())) => (
                    String::new(),
                    format!("# {} was replaced by a symlink outside promote; it is not followed\n", object.file.0),
                ),
            };
            manifests.push(RenderedObject::new(
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
        let path = self.checked_stage_dir(stage)?;
        bundle_files(bundle)?;
        self.refuse_plaintext(bundle, &path)?;
        if mode == ApplyMode::DryRun {
            let on_disk = self.read(stage)?;
            return Ok(diff_objects(on_disk.bundle.as_ref(), bundle));
        }
        let dir = self.open_stage(stage, true)?.expect("created when missing");
        Self::write_in(&dir, &path, bundle, Durability::Synced)
    }

    /// Makes the stage's directory `dir` (at `path`) hold exactly `bundle`; see [`write_stage`].
    fn write_in(dir: &Dir, path: &Path, bundle: &Bundle, durability: Durability) -> Result<Vec<Change>> {
        let stage = bundle.stage();
        let files = bundle_files(bundle)?;
        let on_disk = Self::read_in(dir, path, stage)?;
        let changes = diff_objects(on_disk.bundle.as_ref(), bundle);

        let owned = on_disk.owned();
        // First say which files this apply may create, so that an interrupted apply leaves no file the
        // next one does not know it owns.
        let mut intent = on_disk.index.unwrap_or_default();
        intent.format = 1;
        intent.stage = stage.to_owned();
        intent.pending = files.iter().filter(|f| !owned.contains(*f)).cloned().collect();
        if !intent.pending.is_empty() {
            write_index(dir, path, &intent, durability)?;
        }

        // Namespace directories whose entries changed, to be synced (the stage's own is synced with the index).
        let mut touched = BTreeSet::new();
        for ((manifest, file), change) in bundle.objects().iter().zip(&files).zip(&changes) {
            if change.action == ChangeAction::Unchanged {
                continue;
            }
            let (namespace, name) = file.parts();
            let file_path = path.join(&file.0);
            match namespace {
                Some(namespace) => {
                    let parent = open_subdir(dir, namespace, &path.join(namespace), true)?.expect("created");
                    write_atomically(&parent, name, &file_path, manifest.expose_content(), durability)?;
                    touched.insert(namespace.to_owned());
                }
                None => write_atomically(dir, name, &file_path, manifest.expose_content(), durability)?,
            }
        }
        let keep: BTreeSet<&OwnedFile> = files.iter().collect();
        for stale in owned.iter().filter(|file| !keep.contains(file)) {
            let (namespace, name) = stale.parts();
            let file_path = path.join(&stale.0);
            let Some(namespace) = namespace else {
                remove_file(dir, name, &file_path)?;
                continue;
            };
            let Some(parent) = open_subdir(dir, namespace, &path.join(namespace), false)? else {
                continue;
            };
            remove_file(&parent, name, &file_path)?;
            drop(parent);
            // A namespace directory left empty goes too; one holding other files stays.
            if dir.remove_dir(namespace).is_ok() {
                touched.remove(namespace);
            } else {
                touched.insert(namespace.to_owned());
            }
        }
        for namespace in touched.iter().filter(|_| durability == Durability::Synced) {
            if let Some(parent) = open_subdir(dir, namespace, &path.join(namespace), false)? {
                sync_dir(&parent, &path.join(namespace))?;
            }
        }

        let index = Index {
            format: 1,
            stage: stage.to_owned(),
            objects: bundle
                .objects()
                .iter()
                .zip(files)
                .map(|(manifest, file)| IndexedObject::of(manifest, file))
                .collect(),
            pending: Vec::new(),
        };
        write_index(dir, path, &index, durability)?;
        tracing::debug!(stage, dir = %path.display(), objects = index.objects.len(), "bundle written");
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

/// How hard the stage writer works to make its files survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Every file and directory is fsynced: the files are the deployment.
    Synced,
    /// Nothing is fsynced: the files are a working copy (the git deployer's cache); what lasts is elsewhere.
    Cache,
}

/// The bundle the stage's directory `dir` (at `path`) holds, as its index lists it: the directory deployer's
/// layout, which the git deployer shares.
pub(crate) fn read_stage(dir: &Dir, path: &Path, stage: &str) -> Result<Option<Bundle>> {
    Ok(DirectoryDeployer::read_in(dir, path, stage)?.bundle)
}

/// Makes the stage's directory `dir` (at `path`) hold exactly `bundle`, in the directory deployer's layout:
/// one file per object, the index, and the files of objects that left the bundle removed (only those the
/// index lists). The caller has refused plain-text secrets first ([`refuse_plaintext_secrets`]).
pub(crate) fn write_stage(dir: &Dir, path: &Path, bundle: &Bundle, durability: Durability) -> Result<Vec<Change>> {
    DirectoryDeployer::write_in(dir, path, bundle, durability)
}

/// Refuses a bundle holding an object that would be written in plain text with a secret in it: any Kubernetes
/// `Secret`, and any object whose rendering holds secret config values. The error names the object and its
/// file (`file_shown` of its name relative to the stage's directory), never a value; `deployer` and `place`
/// ("directory deployer", "directory") say what to set `allow_plaintext_secrets` on.
pub(crate) fn refuse_plaintext_secrets(
    bundle: &Bundle,
    deployer: &str,
    place: &str,
    file_shown: impl Fn(&str) -> String,
) -> Result<()> {
    for manifest in bundle.objects() {
        let why = if manifest.kind == "Secret" && manifest.api_version == "v1" {
            "it is a Kubernetes Secret"
        } else if manifest.holds_secrets() {
            "its rendering holds secret config values"
        } else {
            continue;
        };
        let file = file_shown(&relative_file(manifest)?);
        return Err(Error::DeployFailed {
            stage: bundle.stage().to_owned(),
            reason: format!(
                "refusing to write {} in plain text to {file}: {why}. Render a SealedSecret or an \
                 ExternalSecret instead, or set allow_plaintext_secrets: true on this stage's {deployer} if \
                 its {place} is private",
                manifest.object_key(),
            ),
        });
    }
    Ok(())
}

/// Refuses a bundle the layout cannot hold: an object whose kind, name or namespace cannot be a file name, or
/// two objects that would share one file.
pub(crate) fn check_bundle(bundle: &Bundle) -> Result<()> {
    bundle_files(bundle).map(drop)
}

/// The files of `bundle`'s objects, relative to the stage's directory, refusing two objects that would share
/// one file.
fn bundle_files(bundle: &Bundle) -> Result<Vec<OwnedFile>> {
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    for manifest in bundle.objects() {
        let file = OwnedFile(relative_file(manifest)?);
        if !seen.insert(file.clone()) {
            return Err(Error::invalid(
                "bundle",
                manifest.object_key(),
                format!("a second object of the bundle would also be written to {}", file.0),
            ));
        }
        files.push(file);
    }
    Ok(files)
}

/// Why a path segment is unsafe, if it is.
pub(crate) fn check_segment(segment: &str) -> std::result::Result<(), &'static str> {
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
fn relative_file(manifest: &RenderedObject) -> Result<String> {
    file_for(&manifest.kind, &manifest.name, manifest.namespace.as_deref()).map_err(|(what, reason)| {
        Error::invalid("object", manifest.object_key(), format!("its {what} cannot be used in a file name: {reason}"))
    })
}

/// The file an object of `kind` named `name` goes into: `<kind>-<name>.yaml`, under `<namespace>/` when
/// namespaced. The index is checked against this, so it is the only way a file name is formed.
fn file_for(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> std::result::Result<String, (&'static str, &'static str)> {
    check_segment(kind).map_err(|r| ("kind", r))?;
    check_segment(name).map_err(|r| ("name", r))?;
    let file = format!("{}-{name}.yaml", kind.to_ascii_lowercase());
    match namespace {
        Some(namespace) => {
            check_segment(namespace).map_err(|r| ("namespace", r))?;
            Ok(format!("{namespace}/{file}"))
        }
        None => Ok(file),
    }
}

/// The reason given for an index that is not what the deployer writes.
fn damaged(what: &str) -> String {
    format!(
        "the deployer's index is damaged or was edited ({what}); nothing was written or removed. Check the \
         stage's files, then remove the index to start the stage afresh"
    )
}

/// [`Error::UnsafeFile`] about `path`, at a line and column when known.
fn state_refused(path: &Path, at: Option<(usize, usize)>, reason: &str) -> Error {
    Error::UnsafeFile {
        location: Location {
            file: path.to_owned(),
            line: at.map(|(line, _)| line),
            column: at.map(|(_, column)| column).filter(|column| *column > 0),
        },
        reason: reason.to_owned(),
    }
}

/// The directory `name` in `parent`, opened without following a symlink, and created first if missing and
/// `create`; `None` if it is missing. A symlink there is refused: the deployer writes only below its root.
pub(crate) fn open_subdir(parent: &Dir, name: &str, path: &Path, create: bool) -> Result<Option<Dir>> {
    let refused_symlink =
        || state_refused(path, None, "it is a symlink; the deployer writes only into real directories below its root");
    match parent.symlink_metadata(name) {
        Ok(metadata) if metadata.file_type().is_symlink() => return Err(refused_symlink()),
        Ok(metadata) if !metadata.is_dir() => return Err(state_refused(path, None, "it is not a directory")),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Ok(None);
            }
            match parent.create_dir(name) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(Error::io(path, error)),
            }
        }
        Err(error) => return Err(Error::io(path, error)),
    }
    match parent.open_dir_nofollow(name) {
        Ok(dir) => Ok(Some(dir)),
        // Swapped for a symlink since it was looked at.
        Err(_) if parent.symlink_metadata(name).is_ok_and(|m| m.file_type().is_symlink()) => Err(refused_symlink()),
        Err(error) => Err(Error::io(path, error)),
    }
}

/// The text of the file `name` in `dir`: `None` if it is missing, `Some(Err(()))` if it is a symlink (not
/// followed).
fn read_file(dir: &Dir, name: &str, path: &Path) -> Result<Option<std::result::Result<String, ()>>> {
    let mut options = OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No);
    let mut file = match dir.open_with(name, &options) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) if dir.symlink_metadata(name).is_ok_and(|m| m.file_type().is_symlink()) => return Ok(Some(Err(()))),
        Err(error) => return Err(Error::io(path, error)),
    };
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| Error::io(path, e))?;
    Ok(Some(Ok(text)))
}

/// Removes the file `name` from `dir` (a symlink there is removed, not followed); a missing one is fine.
fn remove_file(dir: &Dir, name: &str, path: &Path) -> Result<()> {
    match dir.remove_file(name) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::io(path, error)),
    }
}

fn write_index(dir: &Dir, stage_path: &Path, index: &Index, durability: Durability) -> Result<()> {
    let mut text = serde_json::to_string_pretty(index).map_err(|error| {
        Error::backend(BACKEND, ErrorClass::Persistent, format!("cannot encode the index: {error}"))
    })?;
    text.push('\n');
    write_atomically(dir, INDEX_FILE, &stage_path.join(INDEX_FILE), &text, durability)?;
    match durability {
        Durability::Synced => sync_dir(dir, stage_path),
        Durability::Cache => Ok(()),
    }
}

/// Writes `text` to a new temporary file in `dir`, fsyncs it (when [`Durability::Synced`]) and renames it over
/// `name`: whatever was at `name` (a symlink, say) is replaced, never written through.
fn write_atomically(dir: &Dir, name: &str, path: &Path, text: &str, durability: Durability) -> Result<()> {
    let (mut file, temporary) = create_temporary(dir, path)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| if durability == Durability::Synced { file.sync_all() } else { Ok(()) })
        .and_then(|()| dir.rename(&temporary, dir, name));
    if written.is_err() {
        let _ = dir.remove_file(&temporary);
    }
    written.map_err(|e| Error::io(path, e))
}

/// A new file in `dir` with a name no one can predict, and its name.
fn create_temporary(dir: &Dir, path: &Path) -> Result<(cap_std::fs::File, String)> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let mut last_error = None;
    for _ in 0..8 {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let name = format!(".promote-tmp-{random:016x}");
        match dir.open_with(&name, &options) {
            Ok(file) => return Ok((file, name)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => last_error = Some(error),
            Err(error) => return Err(Error::io(path, error)),
        }
    }
    Err(Error::io(path, last_error.unwrap_or_else(|| std::io::ErrorKind::AlreadyExists.into())))
}

/// Makes renames and removals in `dir` durable.
fn sync_dir(dir: &Dir, path: &Path) -> Result<()> {
    // A `Dir` may be a path-only handle, which cannot be synced: open the directory itself to sync it.
    #[cfg(unix)]
    dir.open_with(".", OpenOptions::new().read(true).maybe_dir(true))
        .and_then(|opened| opened.sync_all())
        .map_err(|e| Error::io(path, e))?;
    #[cfg(not(unix))]
    let _ = (dir, path);
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

    async fn wait_healthy(&self, bundle: &Bundle, _timeout: Duration, _progress: &Progress) -> Result<String> {
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
            bundle.objects().len(),
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
            objects: bundle.map(|b| b.objects().iter().map(RenderedObject::object_key).collect()).unwrap_or_default(),
            healthy: None,
        })
    }
}
