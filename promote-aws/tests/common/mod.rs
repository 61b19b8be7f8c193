//! What the integration tests share: a moto server, a counting and fault-injecting proxy, fixtures.
#![allow(dead_code, unreachable_pub)]

pub mod blob_server;
pub mod proxy;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::config::Credentials;
use promote_core::Digest;

/// The region every test uses.
pub const REGION: &str = "us-east-1";
/// moto's default account, as an ECR registry host.
pub const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// Finds `binary` on `PATH`.
pub fn find_binary(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|candidate| candidate.is_file())
}

/// Skips the test with a printed reason outside CI; fails it in CI.
pub fn missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!(
            "{what} is required when CI is set (pip install 'moto[server]'; apt-get install -y docker-registry apache2-utils)"
        );
    }
    eprintln!("SKIPPED: {what} is not installed (this test fails instead when CI is set)");
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it listened: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {addr} within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when the guard drops.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `moto_server` on a free loopback port, killed on drop.
pub struct Moto {
    _child: ChildGuard,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl Moto {
    /// Starts moto, or returns `None` (after printing why) when it is not installed and CI is unset.
    pub fn start() -> Option<Moto> {
        let Some(binary) = find_binary("moto_server") else {
            missing("moto_server");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), &mut child, "moto_server");
        Some(Moto { _child: ChildGuard(child), _dir: dir, endpoint: format!("http://127.0.0.1:{port}") })
    }
}

/// An SDK configuration for `endpoint` with static credentials and the fixed region.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "static"))
        .load()
        .await
}

/// The sha256 digest of `text`.
pub fn sha256(text: &str) -> Digest {
    Digest::sha256_of(text.as_bytes())
}

/// An OCI image manifest, indented oddly so that re-serialising it would change its digest.
pub fn oci_manifest(seed: &str) -> String {
    format!(
        "{{\n      \"schemaVersion\" :2,\n \"mediaType\": \"{}\",\n\t\"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"{}\", \"size\": 7}},\n  \"layers\": [ {{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{}\",\"size\":9}} ],\n  \"annotations\": {{ \"org.opencontainers.image.revision\": \"{seed}\" }}\n}}\n",
        promote_core::manifest::OCI_MANIFEST,
        sha256(&format!("config {seed}")),
        sha256(&format!("layer {seed}")),
    )
}

/// A Docker schema 2 image manifest.
pub fn docker_manifest(seed: &str) -> String {
    format!(
        "{{\"schemaVersion\": 2,\"mediaType\": \"{}\",\n  \"config\": {{\"mediaType\": \"application/vnd.docker.container.image.v1+json\", \"digest\": \"{}\", \"size\": 7}},\n  \"layers\": [{{\"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\", \"digest\": \"{}\", \"size\": 9}}]}}",
        promote_core::manifest::DOCKER_MANIFEST,
        sha256(&format!("config {seed}")),
        sha256(&format!("layer {seed}")),
    )
}

/// An index (OCI or Docker list, by `media_type`) over children `(digest, size, media type, arch)`.
pub fn index_manifest(media_type: &str, children: &[(Digest, usize, &str, &str)]) -> String {
    let entries: Vec<String> = children
        .iter()
        .map(|(digest, size, child_type, arch)| {
            format!(
                "    {{ \"mediaType\": \"{child_type}\", \"digest\": \"{digest}\", \"size\": {size}, \"platform\": {{\"architecture\": \"{arch}\", \"os\": \"linux\"}} }}"
            )
        })
        .collect();
    format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{media_type}\",\n  \"manifests\": [\n{}\n  ]\n}}\n",
        entries.join(",\n")
    )
}

/// Creates an ECR repository in moto.
pub async fn create_repository(ecr: &aws_sdk_ecr::Client, name: &str, immutable: bool) {
    use aws_sdk_ecr::types::ImageTagMutability;
    ecr.create_repository()
        .repository_name(name)
        .image_tag_mutability(if immutable { ImageTagMutability::Immutable } else { ImageTagMutability::Mutable })
        .send()
        .await
        .expect("create repository");
}

/// Puts a manifest, passing its sha256 as `imageDigest`: moto's own digests are not sha256 of the
/// manifest, real ECR's are, so passing it makes moto agree with ECR.
pub async fn put_manifest(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    tag: Option<&str>,
    manifest: &str,
    media_type: &str,
) -> Digest {
    let digest = sha256(manifest);
    ecr.put_image()
        .repository_name(repository)
        .image_manifest(manifest)
        .image_manifest_media_type(media_type)
        .image_digest(digest.as_str())
        .set_image_tag(tag.map(str::to_owned))
        .send()
        .await
        .expect("put image");
    digest
}

/// The exact manifest string and media type a tag holds, read back with the SDK.
pub async fn manifest_at(ecr: &aws_sdk_ecr::Client, repository: &str, tag: &str) -> (String, String) {
    use aws_sdk_ecr::types::ImageIdentifier;
    let output = ecr
        .batch_get_image()
        .repository_name(repository)
        .image_ids(ImageIdentifier::builder().image_tag(tag).build())
        .set_accepted_media_types(Some(
            promote_core::manifest::MANIFEST_MEDIA_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        ))
        .send()
        .await
        .expect("batch get image");
    let image = output.images().first().unwrap_or_else(|| panic!("{repository}:{tag} must exist"));
    (image.image_manifest().unwrap().to_owned(), image.image_manifest_media_type().unwrap_or_default().to_owned())
}
