//! Real services for the integration tests: a `docker-registry` per test on a free loopback port, skopeo as
//! the independent client, fixtures whose bytes re-serialising would change, and a fault-injecting proxy.
#![allow(dead_code, unreachable_pub)]

pub mod fault_proxy;
pub mod hostile;
pub mod proxy;
pub mod token;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promote_core::Digest;

/// Whether `binary` is on PATH. Outside CI a missing binary skips the test with a printed reason; with
/// `CI` set it fails the test.
pub fn require(binary: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {binary}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("`{binary}` is required (apt-get install -y docker-registry skopeo apache2-utils openssl)");
    }
    eprintln!("SKIPPED: `{binary}` is not installed (apt-get install -y docker-registry skopeo apache2-utils openssl)");
    false
}

/// The registry, skopeo, and (for auth tests) htpasswd.
pub fn require_tools() -> bool {
    require("docker-registry") & require("skopeo") & require("htpasswd")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `docker-registry serve` child on 127.0.0.1, killed on drop.
pub struct Registry {
    child: Child,
    pub host: String,
    pub dir: tempfile::TempDir,
    pub credentials: Option<(String, String)>,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    pub fn start_with_auth(username: &str, password: &str) -> Registry {
        Self::start_with(Some((username.to_owned(), password.to_owned())))
    }

    fn start_with(credentials: Option<(String, String)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut auth = String::new();
        if let Some((user, password)) = &credentials {
            let htpasswd = dir.path().join("htpasswd");
            let status = Command::new("htpasswd")
                .args(["-B", "-b", "-c"])
                .arg(&htpasswd)
                .args([user, password])
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "htpasswd failed");
            auth = format!("auth:\n  htpasswd:\n    realm: promote-test\n    path: {}\n", htpasswd.display());
        }
        Self::spawn(dir, port, &auth, credentials)
    }

    /// Starts the registry in `dir` on `port` with `auth` (a YAML `auth:` section, or empty). `credentials`
    /// are what the skopeo helpers send.
    pub fn spawn(dir: tempfile::TempDir, port: u16, auth: &str, credentials: Option<(String, String)>) -> Registry {
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                storage.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { child, host: format!("127.0.0.1:{port}"), dir, credentials };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(&registry.host).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start on {}", registry.host);
            std::thread::sleep(Duration::from_millis(25));
        }
        registry
    }

    fn creds_args(&self, flag: &str) -> Vec<String> {
        match &self.credentials {
            Some((user, password)) => vec![flag.to_owned(), format!("{user}:{password}")],
            None => vec![],
        }
    }

    /// Pushes `oci:layout:tag` to `repo:tag` with skopeo, keeping every digest.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str) {
        self.push_as(layout, tag, repo, tag)
    }

    pub fn push_as(&self, layout: &Path, tag: &str, repo: &str, target_tag: &str) {
        let mut command = Command::new("skopeo");
        command.args(["--insecure-policy", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false"]);
        command.args(self.creds_args("--dest-creds"));
        command.arg(format!("oci:{}:{tag}", layout.display()));
        command.arg(format!("docker://{}/{repo}:{target_tag}", self.host));
        run(command);
    }

    /// `skopeo inspect --raw` of `repo:tag` or `repo@digest`: the exact bytes the registry serves.
    pub fn raw(&self, reference: &str) -> Vec<u8> {
        let mut command = Command::new("skopeo");
        command.args(["inspect", "--raw", "--tls-verify=false"]);
        command.args(self.creds_args("--creds"));
        command.arg(format!("docker://{}/{reference}", self.host));
        run(command)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(mut command: Command) -> Vec<u8> {
    let output = command.output().expect("run command");
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// `skopeo inspect --raw oci:DIR:TAG`.
pub fn raw_from_layout(layout: &Path, tag: &str) -> Vec<u8> {
    let mut command = Command::new("skopeo");
    command.args(["inspect", "--raw"]).arg(format!("oci:{}:{tag}", layout.display()));
    run(command)
}

/// Deterministic incompressible bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A fixture layout written with plain file operations (not the crate under test), with manifests whose
/// odd formatting any re-serialisation would change.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// Tag "multi": an OCI index of linux/amd64 and linux/arm64.
    pub index_digest: Digest,
    pub index_bytes: Vec<u8>,
    /// The platform manifests, in index order.
    pub children: Vec<(Digest, Vec<u8>)>,
    /// Tag "single": the amd64 image on its own.
    pub single_digest: Digest,
    /// Tag "other": a different image.
    pub other_digest: Digest,
    /// Tag `sha256-<index hex>.sig`: a cosign-style signature of the index.
    pub signature_tag: String,
    pub signature_digest: Digest,
    pub revision: String,
}

struct Writer {
    root: PathBuf,
    tags: Vec<String>,
}

impl Writer {
    fn blob(&self, bytes: &[u8]) -> (Digest, usize) {
        let digest = Digest::sha256_of(bytes);
        std::fs::write(self.root.join("blobs/sha256").join(digest.hex()), bytes).unwrap();
        (digest, bytes.len())
    }

    fn tag(&mut self, tag: &str, media_type: &str, digest: &Digest, size: usize) {
        self.tags.push(format!(
            r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{size},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}"#
        ));
    }

    /// An image manifest with odd indentation (three spaces, a space before each colon).
    fn image(&self, seed: u64, layer_sizes: &[usize], platform: &str, revision: &str) -> (Digest, Vec<u8>) {
        let config = format!(
            "{{\"architecture\":\"{platform}\",\"os\":\"linux\",\"config\":{{\"Labels\":{{\"org.opencontainers.image.revision\":\"{revision}\"}}}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}"
        );
        let (config_digest, config_size) = self.blob(config.as_bytes());
        let layers: Vec<String> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, size)| {
                let (digest, size) = self.blob(&random_bytes(seed * 100 + i as u64, *size));
                format!(
                    "      {{\n         \"mediaType\" : \"application/vnd.oci.image.layer.v1.tar+gzip\",\n         \"digest\" : \"{digest}\",\n         \"size\" : {size}\n      }}"
                )
            })
            .collect();
        let manifest = format!(
            "{{\n   \"schemaVersion\" : 2,\n   \"mediaType\" : \"application/vnd.oci.image.manifest.v1+json\",\n   \"config\" : {{\n      \"mediaType\" : \"application/vnd.oci.image.config.v1+json\",\n      \"digest\" : \"{config_digest}\",\n      \"size\" : {config_size}\n   }},\n   \"layers\" : [\n{}\n   ]\n}}\n",
            layers.join(",\n")
        );
        let (digest, _) = self.blob(manifest.as_bytes());
        (digest, manifest.into_bytes())
    }

    fn finish(self) {
        let index = format!("{{\"schemaVersion\":2,\"manifests\":[{}]}}", self.tags.join(","));
        std::fs::write(self.root.join("index.json"), index).unwrap();
        std::fs::write(self.root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

impl Fixture {
    /// Layers of `layer_size` bytes, two per platform image.
    pub fn new(seed: u64, layer_size: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        let mut writer = Writer { root, tags: Vec::new() };
        let revision = format!("{:040x}", seed);
        let amd64 = writer.image(seed * 10 + 1, &[layer_size, layer_size / 2 + 1], "amd64", &revision);
        let arm64 = writer.image(seed * 10 + 2, &[layer_size, layer_size / 3 + 7], "arm64", &revision);
        let other =
            writer.image(seed * 10 + 3, &[layer_size / 4 + 3], "amd64", "0000000000000000000000000000000000000000");
        let index = format!(
            "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_INDEX}\",\n  \"manifests\": [\n    {{ \"mediaType\": \"{OCI_MANIFEST}\", \"digest\": \"{}\", \"size\": {},\n      \"platform\": {{ \"architecture\": \"amd64\", \"os\": \"linux\" }} }},\n    {{ \"mediaType\": \"{OCI_MANIFEST}\", \"digest\": \"{}\", \"size\": {},\n      \"platform\": {{ \"architecture\": \"arm64\", \"os\": \"linux\", \"variant\": \"v8\" }} }}\n  ],\n  \"annotations\": {{ \"org.opencontainers.image.revision\": \"{revision}\" }}\n}}\n",
            amd64.0,
            amd64.1.len(),
            arm64.0,
            arm64.1.len()
        );
        let (index_digest, index_size) = writer.blob(index.as_bytes());
        // cosign's simple-signing layout: a small payload layer with the signature in an annotation.
        let payload = format!("{{\"critical\":{{\"image\":{{\"docker-manifest-digest\":\"{index_digest}\"}}}}}}");
        let (payload_digest, payload_size) = writer.blob(payload.as_bytes());
        let (empty_digest, empty_size) = writer.blob(b"{}");
        let signature = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"size\":{empty_size},\"digest\":\"{empty_digest}\"}},\"layers\":[{{\"mediaType\":\"application/vnd.dev.cosign.simplesigning.v1+json\",\"size\":{payload_size},\"digest\":\"{payload_digest}\",\"annotations\":{{\"dev.cosignproject.cosign/signature\":\"MEUCIQDfake\"}}}}]}}"
        );
        let (signature_digest, signature_size) = writer.blob(signature.as_bytes());
        let signature_tag = index_digest.signature_tag("sig");
        writer.tag("multi", OCI_INDEX, &index_digest, index_size);
        writer.tag("single", OCI_MANIFEST, &amd64.0, amd64.1.len());
        writer.tag("other", OCI_MANIFEST, &other.0, other.1.len());
        writer.tag(&signature_tag, OCI_MANIFEST, &signature_digest, signature_size);
        writer.finish();
        Fixture {
            dir,
            index_digest,
            index_bytes: index.into_bytes(),
            single_digest: amd64.0.clone(),
            children: vec![amd64, arm64],
            other_digest: other.0,
            signature_tag,
            signature_digest,
            revision,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Pushes every tag of the fixture to `repo` with skopeo.
    pub fn push_all(&self, registry: &Registry, repo: &str) {
        for tag in ["multi", "single", "other", self.signature_tag.as_str()] {
            registry.push(self.path(), tag, repo);
        }
    }
}
