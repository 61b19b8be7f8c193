//! Real services for the integration tests: a `docker-registry` per test on a free loopback port, skopeo as
//! the independent client, fixtures whose bytes re-serialising would change, and a fault-injecting proxy.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod hostile;
pub mod proxy;
pub mod token;

use std::path::{Path, PathBuf};

use promote_core::Digest;
pub use promote_testkit::registry::{Registry, raw_from_layout, run};
pub use promote_testkit::{free_port, random_bytes};

/// Whether `binary` is on PATH. Outside CI a missing binary skips the test with a printed reason; with
/// `CI` set it fails the test.
pub fn require(binary: &str) -> bool {
    promote_testkit::require(binary, "apt-get install -y docker-registry skopeo apache2-utils openssl")
}

/// The registry, skopeo, and (for auth tests) htpasswd.
pub fn require_tools() -> bool {
    require("docker-registry") & require("skopeo") & require("htpasswd")
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
