//! OCI image layouts: a directory with `oci-layout`, `index.json` and `blobs/<alg>/<hex>`, the format
//! `skopeo copy oci:DIR:TAG` and `crane` read and write. [`OciLayout`] is one such directory and a copy
//! source or target; [`OciLayoutStore`] is an [`ArtifactStore`](promote_core::ArtifactStore) over a
//! directory of them (one layout per repository), which makes promotion possible without any registry.
//!
//! - `store.rs`: [`OciLayoutStore`].
//! - `builder.rs`: its spec form, [`OciLayoutConfig`].
//! - `atomic.rs`: files written under a temporary name and renamed into place.

mod atomic;
mod builder;
mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
use promote_core::digest::DigestHasher;
use promote_core::manifest::{self, Descriptor, ManifestSummary, add_config_labels};
use promote_core::{Digest, Error, Resource, Result};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use atomic::{create_temporary, write_atomically};
pub use builder::OciLayoutConfig;
pub use store::OciLayoutStore;

use crate::copy::{BlobStream, CopyEndpoint, GraphSource, GraphTarget, Manifest, Pointer, infer_media_type};
use crate::error::{FailResult, LAYOUT_BACKEND, layout as layout_error, verify_bytes};

/// The annotation an OCI layout's `index.json` names a tag with.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The registry name an [`OciLayoutStore`] answers to unless told otherwise.
pub const LAYOUT_REGISTRY: &str = "oci-layout.local";

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const CHUNK: usize = 1024 * 1024;

/// One OCI image-layout directory.
///
/// Writes are atomic (a temp file renamed into place) and `index.json` updates are serialised within the
/// process; two processes should not write the same layout at once.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use promote_oci::{OciLayout, image_manifest};
/// let dir = tempfile::tempdir().unwrap();
/// let layout = OciLayout::create(dir.path()).await?;
/// let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
/// let layer = b"not really a tarball";
/// let manifest = image_manifest(config, &[layer], &Default::default());
/// let digest = layout.write_image(Some("v1"), config, &[layer], &manifest).await?;
/// assert_eq!(layout.resolve_tag("v1").await?, Some(digest));
/// # Ok::<(), promote_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct OciLayout {
    path: Arc<PathBuf>,
    index_lock: Arc<tokio::sync::Mutex<()>>,
}

/// An entry of `index.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    #[serde(default)]
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::io(path, error)
}

impl OciLayout {
    /// Opens the layout at `path`, creating the directory and its `oci-layout` and `index.json` files
    /// if they are missing.
    pub async fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let blobs = path.join("blobs").join("sha256");
        tokio::fs::create_dir_all(&blobs).await.map_err(io_error(&blobs))?;
        let marker = path.join(LAYOUT_FILE);
        if !tokio::fs::try_exists(&marker).await.map_err(io_error(&marker))? {
            write_atomically(&path, &marker, br#"{"imageLayoutVersion":"1.0.0"}"#).await?;
        }
        let index = path.join(INDEX_FILE);
        if !tokio::fs::try_exists(&index).await.map_err(io_error(&index))? {
            write_atomically(&path, &index, br#"{"schemaVersion":2,"manifests":[]}"#).await?;
        }
        Ok(Self::at(path))
    }

    /// Opens an existing layout; a directory without an `oci-layout` file is [`Error::NotFound`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let marker = path.join(LAYOUT_FILE);
        if !tokio::fs::try_exists(&marker).await.map_err(io_error(&marker))? {
            return Err(Error::not_found(Resource::Repository, format!("oci:{}", path.display())));
        }
        Ok(Self::at(path))
    }

    fn at(path: PathBuf) -> Self {
        OciLayout { path: Arc::new(path), index_lock: Arc::default() }
    }

    /// The layout's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `oci:DIR`, for messages.
    fn place(&self) -> String {
        format!("oci:{}", self.path.display())
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.path.join("blobs").join(digest.algorithm()).join(digest.hex())
    }

    async fn read_index(&self) -> Result<(Value, Vec<IndexEntry>)> {
        let path = self.path.join(INDEX_FILE);
        let bytes = tokio::fs::read(&path).await.map_err(io_error(&path))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|error| layout_error(format!("{}: not valid JSON: {error}", path.display())))?;
        let entries = value
            .get("manifests")
            .cloned()
            .map(serde_json::from_value::<Vec<IndexEntry>>)
            .transpose()
            .map_err(|error| layout_error(format!("{}: bad `manifests`: {error}", path.display())))?
            .unwrap_or_default();
        Ok((value, entries))
    }

    async fn entry_for_tag(&self, tag: &str) -> Result<Option<IndexEntry>> {
        let (_, entries) = self.read_index().await?;
        Ok(entries
            .into_iter()
            .find(|entry| entry.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) == Some(tag)))
    }

    /// The digest `tag` points at, if any.
    pub async fn resolve_tag(&self, tag: &str) -> Result<Option<Digest>> {
        Ok(self.entry_for_tag(tag).await?.map(|entry| entry.digest))
    }

    /// Every tag in the layout with its digest.
    pub async fn tags(&self) -> Result<BTreeMap<String, Digest>> {
        let (_, entries) = self.read_index().await?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| entry.annotations.get(REF_NAME_ANNOTATION).cloned().map(|tag| (tag, entry.digest)))
            .collect())
    }

    /// Whether the blob (or manifest) `digest` is stored.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        tokio::fs::try_exists(&path).await.map_err(io_error(&path))
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub async fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        self.write_blob_as(&digest, bytes).await?;
        Ok(digest)
    }

    /// Stores `bytes` as the blob `digest` (sha256 or sha512), after checking that they hash to it.
    async fn write_blob_as(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        verify_bytes(&format!("oci:{}@{digest}", self.path.display()), digest, bytes)?;
        if self.has_blob(digest).await? {
            return Ok(());
        }
        let target = self.blob_path(digest);
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_error(dir))?;
        }
        write_atomically(&self.path, &target, bytes).await
    }

    /// Reads a whole blob (meant for manifests and configs, not layers).
    pub async fn read_blob(&self, digest: &Digest) -> Result<Option<Bytes>> {
        let path = self.blob_path(digest);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Error::io(path, error)),
        }
    }

    /// Writes an image: its config and layers as blobs, then `manifest` (exact bytes, kept as given), and
    /// tags it when `tag` is given. The manifest must reference exactly these blobs. Returns the manifest
    /// digest.
    pub async fn write_image(
        &self,
        tag: Option<&str>,
        config: &[u8],
        layers: &[&[u8]],
        manifest: &[u8],
    ) -> Result<Digest> {
        let summary = ManifestSummary::parse(manifest)
            .ok_or_else(|| Error::invalid("manifest", "image manifest", "not a JSON image manifest"))?;
        let mut written = vec![(self.write_blob(config).await?, config.len() as u64)];
        for layer in layers {
            written.push((self.write_blob(layer).await?, layer.len() as u64));
        }
        let referenced: Vec<(Digest, u64)> = summary.blobs().map(|d| (d.digest.clone(), d.size)).collect();
        if referenced != written {
            return Err(Error::invalid(
                "manifest",
                "image manifest",
                "its config and layers must be exactly the blobs given, in order, with their sizes",
            ));
        }
        let media_type = summary.media_type.unwrap_or_else(|| manifest::OCI_MANIFEST.to_owned());
        self.write_manifest(tag, manifest, &media_type).await
    }

    /// Writes an index (exact bytes, kept as given) whose child manifests are already in the layout, and
    /// tags it when `tag` is given. Returns the index digest.
    pub async fn write_index(&self, tag: Option<&str>, index: &[u8]) -> Result<Digest> {
        let summary = ManifestSummary::parse(index)
            .ok_or_else(|| Error::invalid("manifest", "index", "not a JSON image index"))?;
        for child in &summary.manifests {
            if !self.has_blob(&child.digest).await? {
                return Err(Error::not_found(
                    Resource::Artifact,
                    format!("oci:{}@{}", self.path.display(), child.digest),
                ));
            }
        }
        let media_type = summary.media_type.unwrap_or_else(|| manifest::OCI_INDEX.to_owned());
        self.write_manifest(tag, index, &media_type).await
    }

    /// Writes manifest bytes as a blob and, with a tag, points the tag at them in `index.json`.
    pub async fn write_manifest(&self, tag: Option<&str>, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let digest = self.write_blob(bytes).await?;
        if let Some(tag) = tag {
            self.set_tag(tag, &digest, media_type, bytes.len() as u64).await?;
        }
        Ok(digest)
    }

    async fn set_tag(&self, tag: &str, digest: &Digest, media_type: &str, size: u64) -> Result<()> {
        let _guard = self.index_lock.lock().await;
        let (mut value, _) = self.read_index().await?;
        let manifests = value
            .as_object_mut()
            .ok_or_else(|| layout_error(format!("{}/index.json is not an object", self.path.display())))?
            .entry("manifests")
            .or_insert_with(|| json!([]));
        let list = manifests
            .as_array_mut()
            .ok_or_else(|| layout_error(format!("{}/index.json: `manifests` is not a list", self.path.display())))?;
        list.retain(|entry| {
            entry.pointer("/annotations/org.opencontainers.image.ref.name").and_then(Value::as_str) != Some(tag)
        });
        list.push(json!({
            "mediaType": media_type,
            "digest": digest.as_str(),
            "size": size,
            "annotations": { REF_NAME_ANNOTATION: tag },
        }));
        let bytes = serde_json::to_vec(&value).map_err(|error| layout_error(format!("index.json: {error}")))?;
        write_atomically(&self.path, &self.path.join(INDEX_FILE), &bytes).await
    }

    /// Points `tag` at a manifest already in the layout.
    pub async fn tag(&self, tag: &str, digest: &Digest) -> Result<()> {
        let bytes = self
            .read_blob(digest)
            .await?
            .ok_or_else(|| Error::not_found(Resource::Artifact, format!("oci:{}@{digest}", self.path.display())))?;
        let media_type = infer_media_type(&bytes, None);
        self.set_tag(tag, digest, &media_type, bytes.len() as u64).await
    }

    async fn manifest(&self, pointer: &Pointer, hint: Option<&str>) -> Result<Option<Manifest>> {
        let (digest, media_type, size) = match pointer {
            Pointer::Tag(tag) => match self.entry_for_tag(tag).await? {
                Some(entry) => (entry.digest, Some(entry.media_type).filter(|m| !m.is_empty()), Some(entry.size)),
                None => return Ok(None),
            },
            Pointer::Digest(digest) => (digest.clone(), None, None),
        };
        let Some(bytes) = self.read_blob(&digest).await? else { return Ok(None) };
        verify_bytes(&format!("oci:{}@{digest}", self.path.display()), &digest, &bytes)?;
        if size.is_some_and(|size| size != bytes.len() as u64) {
            return Err(layout_error(format!(
                "oci:{}@{digest}: index.json gives another size than the stored manifest's",
                self.path.display()
            )));
        }
        let media_type = media_type.unwrap_or_else(|| infer_media_type(&bytes, hint));
        Ok(Some(Manifest { bytes, media_type, digest }))
    }

    /// Streams `stream` into the blob `descriptor` names, checking size and digest before it becomes visible.
    async fn write_blob_stream(&self, descriptor: &Descriptor, mut stream: BlobStream) -> Result<()> {
        // In the descriptor's own algorithm; one we cannot verify is refused before anything is written.
        let mut hasher = DigestHasher::for_digest(&descriptor.digest)?;
        let target = self.blob_path(&descriptor.digest);
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_error(dir))?;
        }
        let (file, temp) = create_temporary(&self.path).await?;
        let result = async {
            let mut writer = tokio::io::BufWriter::with_capacity(CHUNK, file);
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|error| {
                    Error::backend(
                        LAYOUT_BACKEND,
                        promote_core::ErrorClass::Temporary,
                        format!("reading {}: {error}", descriptor.digest),
                    )
                })?;
                hasher.update(&chunk);
                written += chunk.len() as u64;
                writer.write_all(&chunk).await.map_err(io_error(&temp))?;
            }
            writer.flush().await.map_err(io_error(&temp))?;
            writer.get_ref().sync_all().await.map_err(io_error(&temp))?;
            let actual = hasher.finish();
            let name = || format!("oci:{}@{}", self.path.display(), descriptor.digest);
            if actual != descriptor.digest {
                return Err(Error::digest_mismatch(name(), descriptor.digest.clone(), actual));
            }
            if written != descriptor.size {
                // The bytes are the ones the digest names: the manifest's size is wrong, and no retry changes
                // that (a registry source refuses the same blob as persistent).
                return Err(Error::invalid(
                    "blob",
                    name(),
                    format!("the manifest says {} bytes, but the blob has {written}", descriptor.size),
                ));
            }
            tokio::fs::rename(&temp, &target).await.map_err(io_error(&target))
        }
        .await;
        if result.is_ok() {
            // Renamed into place: there is nothing left to remove.
            let _ = temp.keep();
        }
        result
    }

    async fn open_blob_stream(&self, descriptor: &Descriptor) -> Result<BlobStream> {
        let path = self.blob_path(&descriptor.digest);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found(
                    Resource::Artifact,
                    format!("oci:{}@{}", self.path.display(), descriptor.digest),
                ));
            }
            Err(error) => return Err(Error::io(path, error)),
        };
        let stream = futures::stream::try_unfold(file, |mut file| async move {
            let mut buffer = BytesMut::zeroed(CHUNK);
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                return Ok(None);
            }
            buffer.truncate(read);
            Ok(Some((buffer.freeze(), file)))
        });
        Ok(Box::pin(stream))
    }

    async fn annotations(&self, manifest: &Manifest) -> Result<BTreeMap<String, String>> {
        let Some(summary) = ManifestSummary::parse(&manifest.bytes) else { return Ok(BTreeMap::new()) };
        let config = summary.config_for_labels().cloned();
        let mut annotations = summary.annotations;
        if let Some(config) = config
            && let Some(bytes) = self.read_blob(&config.digest).await?
        {
            // Labels are believed only from the config the manifest names.
            verify_bytes(&format!("oci:{}@{}", self.path.display(), config.digest), &config.digest, &bytes)?;
            add_config_labels(&mut annotations, &bytes);
        }
        Ok(annotations)
    }
}

/// The bytes of a minimal OCI image manifest for `config` and `layers` (gzip-less tar layers), with
/// `annotations`. Pair it with [`OciLayout::write_image`].
pub fn image_manifest(config: &[u8], layers: &[&[u8]], annotations: &BTreeMap<String, String>) -> Vec<u8> {
    let descriptor = |media_type: &str, bytes: &[u8]| json!({ "mediaType": media_type, "digest": Digest::sha256_of(bytes).as_str(), "size": bytes.len() });
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": descriptor(IMAGE_CONFIG_MEDIA_TYPE, config),
        "layers": layers.iter().map(|layer| descriptor(IMAGE_LAYER_MEDIA_TYPE, layer)).collect::<Vec<_>>(),
    });
    if !annotations.is_empty() {
        manifest["annotations"] = json!(annotations);
    }
    serde_json::to_vec_pretty(&manifest).unwrap_or_default()
}

#[async_trait]
impl GraphSource for OciLayout {
    fn name(&self) -> String {
        self.place()
    }
    async fn fetch_manifest(&self, pointer: &Pointer, hint: Option<&str>) -> FailResult<Option<Manifest>> {
        Ok(self.manifest(pointer, hint).await?)
    }
    async fn open_blob(&self, descriptor: &Descriptor) -> FailResult<BlobStream> {
        Ok(self.open_blob_stream(descriptor).await?)
    }
    fn mount_origin(&self) -> Option<(String, String)> {
        None
    }
    async fn referrers(&self, _digest: &Digest) -> FailResult<Option<Vec<Descriptor>>> {
        Ok(None)
    }
}

#[async_trait]
impl GraphTarget for OciLayout {
    fn name(&self) -> String {
        self.place()
    }
    fn registry(&self) -> Option<&str> {
        None
    }
    async fn manifest_digest(&self, pointer: &Pointer) -> FailResult<Option<Digest>> {
        Ok(match pointer {
            Pointer::Tag(tag) => self.resolve_tag(tag).await?,
            Pointer::Digest(digest) => self.has_blob(digest).await?.then(|| digest.clone()),
        })
    }
    async fn has_blob(&self, digest: &Digest) -> FailResult<bool> {
        Ok(OciLayout::has_blob(self, digest).await?)
    }
    async fn mount_blob(&self, _digest: &Digest, _origin: &(String, String)) -> FailResult<bool> {
        Ok(false)
    }
    async fn write_blob(&self, descriptor: &Descriptor, stream: BlobStream) -> FailResult<()> {
        Ok(self.write_blob_stream(descriptor, stream).await?)
    }
    async fn put_manifest(&self, pointer: &Pointer, manifest: &Manifest) -> FailResult<()> {
        // Stored under its own digest, whichever algorithm that is, once the bytes are checked against it.
        self.write_blob_as(&manifest.digest, &manifest.bytes).await?;
        if let Pointer::Tag(tag) = pointer {
            self.set_tag(tag, &manifest.digest, &manifest.media_type, manifest.bytes.len() as u64).await?;
        }
        Ok(())
    }
}

impl CopyEndpoint {
    /// A tag in an OCI image layout (`org.opencontainers.image.ref.name`).
    pub fn layout_tag(layout: &OciLayout, tag: impl Into<String>) -> Self {
        CopyEndpoint::new(layout.clone(), layout.place(), Pointer::Tag(tag.into()))
    }

    /// A digest in an OCI image layout.
    pub fn layout_digest(layout: &OciLayout, digest: Digest) -> Self {
        CopyEndpoint::new(layout.clone(), layout.place(), Pointer::Digest(digest))
    }
}
