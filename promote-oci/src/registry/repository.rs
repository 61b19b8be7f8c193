//! One repository of one registry, through a store's transport and credentials: the manifest and blob
//! requests of `resolve` and `promote`, and the copy engine's [`GraphSource`] and [`GraphTarget`].

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt as _;
use promote_core::manifest::{self, Descriptor, MANIFEST_MEDIA_TYPES};
use promote_core::{ArtifactRef, Digest, ErrorClass, Resource};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode};

use super::Inner;
use super::auth::Access;
use super::transport::{Origin, read_capped, status_failure};
use crate::copy::{BlobStream, GraphSource, GraphTarget, Manifest, Pointer, infer_media_type, referrers_of};
use crate::error::{FailResult, check_digest_header, persistent, verify_bytes};

/// The largest manifest (or referrers index) we read: 4 MiB, the limit distribution enforces, so a
/// hostile server cannot make us buffer more.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// The `Docker-Content-Digest` header.
const CONTENT_DIGEST: &str = "docker-content-digest";

/// What a manifest HEAD says.
#[derive(Debug)]
pub(super) struct ManifestHead {
    pub(super) digest: Option<Digest>,
    pub(super) media_type: String,
    pub(super) size: u64,
}

/// One repository of one registry, through a store's transport and credentials.
#[derive(Debug, Clone)]
pub(super) struct RepositoryHandle {
    inner: Arc<Inner>,
    registry: String,
    repository: String,
}

fn accept_manifests() -> String {
    MANIFEST_MEDIA_TYPES.join(", ")
}

fn pointer_path(pointer: &Pointer) -> String {
    match pointer {
        Pointer::Tag(tag) => tag.clone(),
        Pointer::Digest(digest) => digest.to_string(),
    }
}

/// The `Docker-Content-Digest` a response carries. One that is there but does not parse is an error: a
/// claim we cannot read is not one we can check.
fn header_digest(response: &Response, what: &str, name: &str) -> FailResult<Option<Digest>> {
    let Some(value) = response.headers().get(CONTENT_DIGEST) else { return Ok(None) };
    let digest = value.to_str().ok().and_then(|value| Digest::parse(value.trim()).ok());
    match digest {
        Some(digest) => Ok(Some(digest)),
        None => Err(persistent(format!("{what} {name}: the registry sent a malformed {CONTENT_DIGEST} header"))),
    }
}

fn content_type(response: &Response) -> Option<String> {
    let value = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    let media_type = value.split(';').next().unwrap_or("").trim();
    (!media_type.is_empty()).then(|| media_type.to_owned())
}

impl RepositoryHandle {
    pub(super) fn new(inner: Arc<Inner>, reference: &ArtifactRef) -> Self {
        RepositoryHandle {
            inner,
            registry: reference.registry().to_owned(),
            repository: reference.repository().to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        self.inner.transport.url(&self.registry, &format!("{}/{path}", self.repository))
    }

    fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    async fn send(
        &self,
        access: Access,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> FailResult<Response> {
        self.inner.transport.send(&self.registry, &self.repository, access, what, build).await
    }

    pub(super) async fn head_manifest(&self, pointer: &Pointer) -> FailResult<Option<ManifestHead>> {
        let url = self.url(&format!("manifests/{}", pointer_path(pointer)));
        let what = "HEAD manifest";
        let name = format!("{}{pointer}", self.name());
        let response = self.send(Access::Pull, what, |http| http.head(&url).header(ACCEPT, accept_manifests())).await?;
        match response.status() {
            status if status.is_success() => {
                let served = header_digest(&response, what, &name)?;
                // A HEAD has no bytes to check a header against. Asked for a digest, the registry must
                // report that digest (or one in another algorithm, which only the bytes could confirm, so
                // the pinned digest stands); asked for a tag, what it reports is checked by every later
                // read by digest.
                let digest = match pointer {
                    Pointer::Digest(asked) => {
                        if let Some(served) = served.filter(|served| served.algorithm() == asked.algorithm()) {
                            check_digest_header(&name, asked, Some(&served), None)?;
                        }
                        Some(asked.clone())
                    }
                    Pointer::Tag(_) => served,
                };
                let size = response
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let media_type = content_type(&response).unwrap_or_else(|| manifest::OCI_MANIFEST.to_owned());
                Ok(Some(ManifestHead { digest: digest.filter(|_| size > 0), media_type, size }))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_failure(what, &name, Resource::Artifact, response).await),
        }
    }

    pub(super) async fn get_manifest(&self, pointer: &Pointer, hint: Option<&str>) -> FailResult<Option<Manifest>> {
        let url = self.url(&format!("manifests/{}", pointer_path(pointer)));
        let what = "GET manifest";
        let name = format!("{}{pointer}", self.name());
        let response = self.send(Access::Pull, what, |http| http.get(&url).header(ACCEPT, accept_manifests())).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(status_failure(what, &name, Resource::Artifact, response).await);
        }
        let served_digest = header_digest(&response, what, &name)?;
        let declared_type = content_type(&response);
        let bytes = read_capped(response, MAX_MANIFEST_BYTES, what, &name).await?;
        // Every digest is checked against the bytes: the one asked for, and the one the registry reports.
        let digest = match (pointer, served_digest) {
            (Pointer::Digest(expected), served) => {
                verify_bytes(&name, expected, &bytes)?;
                check_digest_header(&name, expected, served.as_ref(), Some(&bytes))?;
                expected.clone()
            }
            (Pointer::Tag(_), Some(served)) => {
                verify_bytes(&name, &served, &bytes)?;
                served
            }
            (Pointer::Tag(_), None) => Digest::sha256_of(&bytes),
        };
        let media_type = match declared_type {
            Some(media_type) if media_type != "application/json" && media_type != "text/plain" => media_type,
            _ => infer_media_type(&bytes, hint),
        };
        Ok(Some(Manifest { bytes, media_type, digest }))
    }

    pub(super) async fn put_manifest(&self, pointer: &Pointer, manifest: &Manifest) -> FailResult<()> {
        let url = self.url(&format!("manifests/{}", pointer_path(pointer)));
        let name = format!("{}{pointer}", self.name());
        let what = "PUT manifest";
        let response = self
            .send(Access::Push, what, |http| {
                http.put(&url).header(CONTENT_TYPE, &manifest.media_type).body(manifest.bytes.clone())
            })
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let mut failure = status_failure(what, &name, Resource::Repository, response).await;
            if manifest.bytes.len() > MAX_MANIFEST_BYTES
                && (status.is_client_error() && status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN)
            {
                failure = persistent(format!(
                    "{what} {name}: the manifest is {} bytes, over the registry's manifest size limit (most registries allow {MAX_MANIFEST_BYTES}): {}",
                    manifest.bytes.len(),
                    failure.error
                ));
            }
            return Err(failure);
        }
        match header_digest(&response, what, &name)? {
            Some(stored) => check_digest_header(&name, &manifest.digest, Some(&stored), Some(&manifest.bytes)),
            // No digest in the answer: ask.
            None => match self.head_manifest(&Pointer::Digest(manifest.digest.clone())).await? {
                Some(_) => Ok(()),
                None => {
                    Err(persistent(format!("{what} {name}: the registry accepted the manifest but does not serve it")))
                }
            },
        }
    }

    pub(super) async fn has_blob(&self, digest: &Digest) -> FailResult<bool> {
        let url = self.url(&format!("blobs/{digest}"));
        let response = self.send(Access::Pull, "HEAD blob", |http| http.head(&url)).await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => {
                Err(status_failure("HEAD blob", &format!("{}@{digest}", self.name()), Resource::Artifact, response)
                    .await)
            }
        }
    }

    /// The upload session URL a registry answered with. It may be on another origin (the request then
    /// goes there without credentials), but never plain HTTP for a registry reached over TLS.
    fn upload_url(&self, response: &Response) -> FailResult<reqwest::Url> {
        let location =
            response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| {
                persistent(format!("{}: the registry started an upload without a Location", self.name()))
            })?;
        let base = reqwest::Url::parse(&self.url("blobs/uploads/"))
            .map_err(|error| persistent(format!("bad registry URL: {error}")))?;
        let url =
            base.join(location).map_err(|error| persistent(format!("bad upload location `{location}`: {error}")))?;
        check_upload_location(&Origin::of(&base), &url, &self.name())?;
        Ok(url)
    }

    /// Ends an upload session we will not finish, so none is left open. Best effort: the registry also
    /// expires abandoned sessions.
    async fn cancel_upload(&self, url: &reqwest::Url) {
        let result = self.send(Access::Push, "DELETE upload", |http| http.request(Method::DELETE, url.clone())).await;
        if let Err(failure) = result {
            tracing::debug!(error = %failure.error, "could not cancel an upload session");
        }
    }

    pub(super) async fn mount_blob(&self, digest: &Digest, origin: &(String, String)) -> FailResult<bool> {
        let url = self.url("blobs/uploads/");
        let what = "mount blob";
        let response = self
            .send(Access::Push, what, |http| {
                http.post(&url)
                    .query(&[("mount", digest.as_str()), ("from", origin.1.as_str())])
                    .header(CONTENT_LENGTH, "0")
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            // The registry could not mount and opened an ordinary upload instead: close it.
            StatusCode::ACCEPTED => {
                let session = self.upload_url(&response)?;
                self.cancel_upload(&session).await;
                Ok(false)
            }
            // A token scoped to the target alone cannot read the source: stream the blob instead.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_failure(what, &format!("{}@{digest}", self.name()), Resource::Repository, response).await),
        }
    }

    pub(super) async fn write_blob(&self, descriptor: &Descriptor, stream: BlobStream) -> FailResult<()> {
        let digest = &descriptor.digest;
        let name = format!("{}@{digest}", self.name());
        let start_url = self.url("blobs/uploads/");
        let response =
            self.send(Access::Push, "start upload", |http| http.post(&start_url).header(CONTENT_LENGTH, "0")).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_failure("start upload", &name, Resource::Repository, response).await);
        }
        let mut session = self.upload_url(&response)?;
        session.query_pairs_mut().append_pair("digest", digest.as_str());
        let request = self
            .inner
            .transport
            .client()
            .put(session.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, descriptor.size)
            .body(reqwest::Body::wrap_stream(stream));
        let sent = self
            .inner
            .transport
            .send_streaming(&self.registry, &self.repository, Access::Push, "PUT blob", request)
            .await;
        let outcome = match sent {
            Ok(response) if response.status() == StatusCode::CREATED || response.status().is_success() => {
                let served = header_digest(&response, "PUT blob", &name)?;
                check_digest_header(&name, digest, served.as_ref(), None)
            }
            Ok(response) => Err(status_failure("PUT blob", &name, Resource::Repository, response).await),
            Err(failure) => Err(failure),
        };
        if outcome.is_err() {
            self.cancel_upload(&session).await;
        }
        outcome
    }

    /// A successful GET of a blob whose `Content-Length`, if any, is the size the manifest says.
    async fn get_blob(&self, descriptor: &Descriptor, what: &str) -> FailResult<Response> {
        let url = self.url(&format!("blobs/{}", descriptor.digest));
        let name = format!("{}@{}", self.name(), descriptor.digest);
        let response = self.send(Access::Pull, what, |http| http.get(&url)).await?;
        if !response.status().is_success() {
            return Err(status_failure(what, &name, Resource::Artifact, response).await);
        }
        if let Some(length) = response.content_length()
            && length != descriptor.size
        {
            return Err(persistent(format!(
                "{what} {name}: the manifest says {} bytes, the registry sends {length}",
                descriptor.size
            )));
        }
        Ok(response)
    }

    /// Streams a blob. The stream fails once it passes the size the manifest says, so a body without a
    /// `Content-Length` cannot run on forever (the target checks the digest).
    pub(super) async fn open_blob(&self, descriptor: &Descriptor) -> FailResult<BlobStream> {
        let response = self.get_blob(descriptor, "GET blob").await?;
        let (limit, digest) = (descriptor.size, descriptor.digest.clone());
        let mut received = 0u64;
        let stream = response.bytes_stream().map(move |chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            received += chunk.len() as u64;
            if received > limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("blob {digest}: the registry sends more than the {limit} bytes the manifest says"),
                ));
            }
            Ok(chunk)
        });
        Ok(Box::pin(stream))
    }

    /// The bytes of a (small) config blob: at most the size the manifest says (which
    /// `ManifestSummary::config_for_labels` keeps under 1 MiB), checked against its digest before its labels are believed.
    pub(super) async fn read_config(&self, config: &Descriptor) -> FailResult<Vec<u8>> {
        let what = "GET config";
        let name = format!("{}@{}", self.name(), config.digest);
        let response = self.get_blob(config, what).await?;
        let limit = config.size.min(manifest::MAX_CONFIG_FOR_LABELS);
        let bytes = read_capped(response, usize::try_from(limit).unwrap_or(usize::MAX), what, &name).await?;
        verify_bytes(&name, &config.digest, &bytes)?;
        Ok(bytes.to_vec())
    }

    pub(super) async fn referrers(&self, digest: &Digest) -> FailResult<Option<Vec<Descriptor>>> {
        let url = self.url(&format!("referrers/{digest}"));
        let what = "GET referrers";
        let name = format!("{}@{digest}", self.name());
        let response = self.send(Access::Pull, what, |http| http.get(&url).header(ACCEPT, manifest::OCI_INDEX)).await?;
        let status = response.status();
        // A registry without the referrers API answers 404 (or another refusal): the tag schema serves then.
        // A temporary failure or refused credentials are errors, not "no API".
        let temporary = ErrorClass::from_http_status(status.as_u16()) == ErrorClass::Temporary;
        if temporary || status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(status_failure(what, &name, Resource::Artifact, response).await);
        }
        if !status.is_success() {
            return Ok(None);
        }
        let bytes = read_capped(response, MAX_MANIFEST_BYTES, what, &name).await?;
        Ok(referrers_of(&bytes))
    }
}

#[async_trait]
impl GraphSource for RepositoryHandle {
    fn name(&self) -> String {
        RepositoryHandle::name(self)
    }
    async fn fetch_manifest(&self, pointer: &Pointer, hint: Option<&str>) -> FailResult<Option<Manifest>> {
        self.get_manifest(pointer, hint).await
    }
    async fn open_blob(&self, descriptor: &Descriptor) -> FailResult<BlobStream> {
        RepositoryHandle::open_blob(self, descriptor).await
    }
    fn mount_origin(&self) -> Option<(String, String)> {
        Some((self.registry.clone(), self.repository.clone()))
    }
    async fn referrers(&self, digest: &Digest) -> FailResult<Option<Vec<Descriptor>>> {
        RepositoryHandle::referrers(self, digest).await
    }
}

#[async_trait]
impl GraphTarget for RepositoryHandle {
    fn name(&self) -> String {
        RepositoryHandle::name(self)
    }
    fn registry(&self) -> Option<&str> {
        Some(&self.registry)
    }
    async fn manifest_digest(&self, pointer: &Pointer) -> FailResult<Option<Digest>> {
        Ok(self.head_manifest(pointer).await?.and_then(|head| head.digest))
    }
    async fn has_blob(&self, digest: &Digest) -> FailResult<bool> {
        RepositoryHandle::has_blob(self, digest).await
    }
    async fn mount_blob(&self, digest: &Digest, origin: &(String, String)) -> FailResult<bool> {
        RepositoryHandle::mount_blob(self, digest, origin).await
    }
    async fn write_blob(&self, descriptor: &Descriptor, stream: BlobStream) -> FailResult<()> {
        RepositoryHandle::write_blob(self, descriptor, stream).await
    }
    async fn put_manifest(&self, pointer: &Pointer, manifest: &Manifest) -> FailResult<()> {
        RepositoryHandle::put_manifest(self, pointer, manifest).await
    }
}

/// Refuses an upload location over plain HTTP for a registry reached over TLS (the blob, and on another
/// origin anything else the request carries, would travel in the clear), and any scheme but http(s).
fn check_upload_location(registry: &Origin, location: &reqwest::Url, name: &str) -> FailResult<()> {
    let downgrade = registry.is_tls() && location.scheme() != "https";
    if downgrade || !matches!(location.scheme(), "http" | "https") {
        return Err(persistent(format!(
            "{name}: refusing the upload location {}://{}: the registry is reached over TLS",
            location.scheme(),
            location.host_str().unwrap_or_default()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use promote_core::Error;

    use super::*;

    #[test]
    fn a_tls_registry_may_not_send_uploads_to_plain_http() {
        let url = |text: &str| reqwest::Url::parse(text).unwrap();
        let tls = Origin::of(&url("https://registry.example/v2/"));
        check_upload_location(&tls, &url("https://registry.example/v2/r/blobs/uploads/1"), "r").unwrap();
        // Another origin is allowed (the request goes there without credentials).
        check_upload_location(&tls, &url("https://uploads.example/session/1"), "r").unwrap();
        let error: Error =
            check_upload_location(&tls, &url("http://registry.example/v2/r/blobs/uploads/1"), "r").unwrap_err().into();
        assert!(matches!(&error, Error::Backend { class: ErrorClass::Persistent, .. }), "{error}");
        assert!(error.to_string().contains("refusing the upload location http://registry.example"), "{error}");
        assert!(check_upload_location(&tls, &url("ftp://registry.example/x"), "r").is_err());
        // An insecure registry is plain HTTP itself.
        let plain = Origin::of(&url("http://127.0.0.1:5000/v2/"));
        check_upload_location(&plain, &url("http://127.0.0.1:5001/upload"), "r").unwrap();
    }
}
