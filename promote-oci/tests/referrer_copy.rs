//! Referrer-aware cross-registry copy: an image's sigstore bundles (v0.3 DSSE, v0.2 message signature) and a
//! legacy cosign `.sig`, attached by third-party tools (`@sigstore/oci`, the fixture's `.sig` writer), move
//! with the image digest for digest, and are merged into the destination's listing (its `sha256-<hex>` index,
//! or, behind a small fake front with the referrers API, that API) without losing what was there. The copied
//! bundles still verify against the source's trust root, by promote's gate and by both judges.

mod support;
#[path = "sigstore/toolchain.rs"]
mod toolchain;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use promote_core::gate::{Gate, GateContext};
use promote_core::ledger::LedgerView;
use promote_core::{ArtifactRef, Digest};
use promote_oci::{CopyOptions, OciRegistryStore, SignatureGate, SignaturePolicy, TrustRoot};
use serde_json::{Value, json};
use support::{Fixture, Registry};
use tokio::net::{TcpListener, TcpStream};
use toolchain::{Judge, Mock};

const SAN: &str = "ci@promote.test";
const ISSUER: &str = "https://issuer.test";

fn store(hosts: &[&str]) -> OciRegistryStore {
    let mut builder = OciRegistryStore::builder().docker_config(false);
    for host in hosts {
        builder = builder.insecure(*host);
    }
    builder.build().unwrap()
}

/// `curl` GET of a registry path: the exact bytes, or `None` on 404.
fn get(host: &str, path: &str) -> Option<Vec<u8>> {
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H"])
        .arg("accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
        .arg(format!("http://{host}/v2/{path}"))
        .output()
        .expect("curl");
    let mut body = output.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap();
    let status = String::from_utf8(body.split_off(split)).unwrap();
    match status.trim() {
        "200" => Some(body),
        "404" => None,
        other => panic!("GET {host}/v2/{path}: HTTP {other}: {}", String::from_utf8_lossy(&body)),
    }
}

fn listed(index: &[u8]) -> BTreeSet<String> {
    let index: Value = serde_json::from_slice(index).unwrap();
    index["manifests"].as_array().unwrap().iter().map(|e| e["digest"].as_str().unwrap().to_owned()).collect()
}

/// The signed material: bundles and a legacy signature over one image, made once per test.
struct Signed {
    mock: Mock,
    work: tempfile::TempDir,
    fixture: Fixture,
    digest: Digest,
    ci_pub: PathBuf,
    manifest: PathBuf,
}

impl Signed {
    fn new() -> Signed {
        let mock = Mock::start();
        let fixture = Fixture::new(23, 1024);
        let work = tempfile::tempdir().unwrap();
        let digest = fixture.single_digest.clone();
        let manifest = work.path().join("app.manifest.json");
        std::fs::write(&manifest, &fixture.children[0].1).unwrap();
        let (ci_key, ci_pub) = toolchain::key_pair(work.path(), "ci");
        let (url, d, key, m) =
            (mock.url().to_owned(), digest.to_string(), ci_key.display().to_string(), manifest.display().to_string());
        let out = |name: &str| work.path().join(format!("{name}.json")).display().to_string();
        let keyless = ["--fulcio", &url, "--rekor", &url, "--san", SAN, "--issuer", ISSUER];
        toolchain::node("sign.mjs", &[&["--out", &out("v03"), "--digest", &d][..], &keyless].concat());
        toolchain::node(
            "sign.mjs",
            &["--out", &out("v02"), "--artifact", &m, "--format", "message", "--key", &key, "--rekor", &url],
        );
        toolchain::node(
            "sign.mjs",
            &["--out", &out("legacy"), "--digest", &d, "--format", "cosign-legacy", "--key", &key, "--rekor", &url],
        );
        toolchain::py(
            "sign_py.py",
            &[
                "--trust-config",
                mock.trust_config().to_str().unwrap(),
                "--san",
                SAN,
                "--issuer",
                ISSUER,
                "--digest",
                &d,
                "--out",
                &out("py"),
            ],
        );
        Signed { mock, work, fixture, digest, ci_pub, manifest }
    }

    fn bundle(&self, name: &str) -> PathBuf {
        self.work.path().join(format!("{name}.json"))
    }

    /// Pushes the image to `host/app:v1` and attaches these (`--bundle` names, or `legacy`).
    fn seed(&self, registry: &Registry, host: &str, attach: &[&str]) -> Vec<String> {
        if registry.host == host {
            registry.push_as(self.fixture.path(), "single", "app", "v1");
        }
        let image = format!("{host}/app");
        let digest = self.digest.to_string();
        attach
            .iter()
            .map(|name| {
                let flag = if *name == "legacy" { "--legacy" } else { "--bundle" };
                let path = self.bundle(name);
                let printed = toolchain::node(
                    "attach.mjs",
                    &["--image", &image, "--digest", &digest, flag, path.to_str().unwrap()],
                );
                printed["referrer_digest"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// The gate, with the source's trust root, on `host/app@digest`: both signers must verify. Returns the
    /// registry requests the gate made.
    async fn gate_passes(&self, host: &str) -> u64 {
        let pem = std::fs::read_to_string(&self.ci_pub).unwrap();
        let policies =
            vec![SignaturePolicy::keyless("ci", SAN, ISSUER), SignaturePolicy::public_key("release", &pem).unwrap()];
        let gate = SignatureGate::new(
            "signed",
            store(&[host]),
            TrustRoot::from_file(self.mock.trusted_root()).unwrap(),
            policies,
        )
        .unwrap()
        .require(2)
        .unwrap();
        let build: promote_core::Build = serde_json::from_value(json!({
            "id": "b-0000000000000023", "commit": "c0ffee",
            "artifacts": {"app": {"reference": format!("{host}/app@{}", self.digest), "digest": self.digest.to_string(),
                "media_type": "application/vnd.oci.image.manifest.v1+json", "size": 1}},
            "registered_at": "2026-11-30T12:00:00Z"
        }))
        .unwrap();
        let view = LedgerView::new();
        let report = gate
            .evaluate(&GateContext::new(&build, "prd", &view, "2026-11-30T12:00:00Z".parse().unwrap()))
            .await
            .unwrap();
        assert!(report.verdict.is_pass(), "{:?}\n{:#?}", report.verdict, report.evidence);
        report.evidence["artifacts"]["app"]["requests"].as_u64().unwrap()
    }

    /// Both judges on the bundles read back from `host` (the layer blobs of these referrers).
    fn judges_accept(&self, host: &str, referrers: &[String]) {
        let root = self.mock.trusted_root().display().to_string();
        let mut cases = Vec::new();
        for referrer in referrers {
            let manifest: Value =
                serde_json::from_slice(&get(host, &format!("app/manifests/{referrer}")).unwrap()).unwrap();
            let layer = manifest["layers"][0]["digest"].as_str().unwrap();
            let bytes = get(host, &format!("app/blobs/{layer}")).unwrap();
            assert_eq!(Digest::sha256_of(&bytes).as_str(), layer, "the bundle is byte for byte what was attached");
            let path = self.work.path().join(format!("back-{}.json", &layer[7..19]));
            std::fs::write(&path, &bytes).unwrap();
            let bundle: Value = serde_json::from_slice(&bytes).unwrap();
            let mut case =
                vec!["--trusted-root".to_owned(), root.clone(), "--bundle".into(), path.display().to_string()];
            if bundle.get("messageSignature").is_some() {
                case.extend([
                    "--artifact".into(),
                    self.manifest.display().to_string(),
                    "--key".into(),
                    self.ci_pub.display().to_string(),
                ]);
            } else {
                case.extend([
                    "--digest".into(),
                    self.digest.to_string(),
                    "--san".into(),
                    SAN.into(),
                    "--issuer".into(),
                    ISSUER.into(),
                ]);
            }
            cases.push(case);
        }
        for judge in [Judge::SigstoreJs, Judge::SigstorePython] {
            for (verdict, case) in toolchain::judge_batch(judge, &cases).iter().zip(&cases) {
                assert_eq!(verdict["verdict"], "valid", "{judge:?} on {case:?}: {verdict}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_registry_copy_carries_referrers_and_merges_them_into_the_destination_index() {
    if !toolchain::available() {
        return;
    }
    let signed = Signed::new();
    let (source, target) = (Registry::start(), Registry::start());
    let seeded = signed.seed(&source, &source.host, &["v03", "v02", "legacy"]);
    // The destination already lists a referrer of this digest (another signer attached it there).
    let already = signed.seed(&target, &target.host, &["py"]);
    let tag = format!("app/manifests/sha256-{}", signed.digest.hex());
    let source_index = listed(&get(&source.host, &tag).unwrap());
    assert_eq!(source_index.len(), 2, "the v0.3 and v0.2 bundles; the .sig has its own tag");

    let store = store(&[&source.host, &target.host]);
    let from: ArtifactRef = format!("{}/app@{}", source.host, signed.digest).parse().unwrap();
    let to: ArtifactRef = format!("{}/app:v1", target.host).parse().unwrap();
    let options = CopyOptions::default().with_referrers(true).with_signatures(true);
    let report = store.copy(&from, &to, &options).await.unwrap();
    assert_eq!(report.digest, signed.digest);
    assert_eq!(report.related_copied, 3, "two referrers and the legacy .sig: {report}");

    let target_index = listed(&get(&target.host, &tag).unwrap());
    let expected: BTreeSet<String> = source_index.iter().cloned().chain(already.iter().cloned()).collect();
    assert_eq!(target_index, expected, "merged, not overwritten: the destination's own referrer is still listed");
    for referrer in source_index.iter().chain(&already) {
        let bytes = get(&target.host, &format!("app/manifests/{referrer}")).unwrap();
        assert_eq!(&Digest::sha256_of(&bytes).to_string(), referrer, "the referrer keeps its digest");
    }
    let sig = format!("app/manifests/{}", signed.digest.signature_tag("sig"));
    assert_eq!(get(&target.host, &sig), get(&source.host, &sig), "the legacy .sig is copied byte for byte");
    assert_eq!(seeded[2], Digest::sha256_of(&get(&target.host, &sig).unwrap()).to_string());

    // The copied bundles verify against the source's trust root: promote's gate and both judges.
    signed.gate_passes(&target.host).await;
    let copied: Vec<String> = source_index.iter().cloned().collect();
    signed.judges_accept(&target.host, &copied);

    // Again: nothing new is listed, nothing is listed twice.
    store.copy(&from, &to, &options).await.unwrap();
    let index: Value = serde_json::from_slice(&get(&target.host, &tag).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), expected.len(), "{index}");
}

/// A fake front with the OCI referrers API, in front of a docker-registry 2.8.2: it indexes each manifest
/// PUT with a `subject` and answers `GET /v2/<repo>/referrers/<digest>`; everything else is forwarded.
struct ReferrersFront {
    host: String,
    listed: Listings,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReferrersFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;
/// Index entries by (repository, subject digest).
type Listings = Arc<Mutex<BTreeMap<(String, String), Vec<Value>>>>;

fn full(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never: Infallible| match never {}).boxed());
    *response.status_mut() = status;
    response
}

impl ReferrersFront {
    async fn start(upstream: String) -> ReferrersFront {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let listed: Listings = Arc::default();
        let shared = listed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (upstream, listed) = (upstream.clone(), shared.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| serve(request, upstream.clone(), listed.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ReferrersFront { host, listed, task }
    }
}

async fn serve(request: Request<Incoming>, upstream: String, listed: Listings) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_start_matches("/v2/").rsplitn(3, '/').collect();
    if request.method() == "GET" && parts.len() == 3 && parts[1] == "referrers" {
        let key = (parts[2].to_owned(), parts[0].to_owned());
        let manifests = listed.lock().unwrap().get(&key).cloned().unwrap_or_default();
        let index =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        let mut response = full(StatusCode::OK, serde_json::to_vec(&index).unwrap());
        response.headers_mut().insert("content-type", "application/vnd.oci.image.index.v1+json".parse().unwrap());
        return Ok(response);
    }
    let is_manifest_put = request.method() == "PUT" && parts.len() == 3 && parts[1] == "manifests";
    let (head, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut answer = forward(&head, body.clone(), &upstream).await;
    if is_manifest_put
        && answer.status().is_success()
        && let Ok(manifest) = serde_json::from_slice::<Value>(&body)
        && let Some(subject) = manifest["subject"]["digest"].as_str()
    {
        let mut entry = json!({
            "mediaType": manifest["mediaType"], "digest": Digest::sha256_of(&body).to_string(), "size": body.len(),
            "artifactType": manifest.get("artifactType").cloned().unwrap_or(manifest["config"]["mediaType"].clone()),
        });
        if let Some(annotations) = manifest.get("annotations") {
            entry["annotations"] = annotations.clone();
        }
        // As a registry with the API does: the client then knows the subject was indexed.
        answer.headers_mut().insert("oci-subject", subject.parse().unwrap());
        let mut listed = listed.lock().unwrap();
        let entries = listed.entry((parts[2].to_owned(), subject.to_owned())).or_default();
        if !entries.iter().any(|e| e["digest"] == entry["digest"]) {
            entries.push(entry);
        }
    }
    Ok(answer)
}

async fn forward(head: &hyper::http::request::Parts, body: Bytes, upstream: &str) -> Response<Body> {
    let Ok(stream) = TcpStream::connect(upstream).await else { return full(StatusCode::BAD_GATEWAY, vec![]) };
    let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        return full(StatusCode::BAD_GATEWAY, vec![]);
    };
    tokio::spawn(connection);
    let mut request = Request::builder().method(head.method.clone()).uri(head.uri.clone());
    for (name, value) in &head.headers {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(body)).unwrap();
    let Ok(response) = sender.send_request(request).await else { return full(StatusCode::BAD_GATEWAY, vec![]) };
    let (parts, body) = response.into_parts();
    // Location headers name the upstream; the registry writes relative ones, which stay valid through us.
    Response::from_parts(parts, body.map_err(std::io::Error::other).boxed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_referrers_api_on_both_sides_referrers_are_listed_by_the_api_and_no_index_is_written() {
    if !toolchain::available() {
        return;
    }
    let signed = Signed::new();
    let (source_registry, target_registry) = (Registry::start(), Registry::start());
    let source = ReferrersFront::start(source_registry.host.clone()).await;
    let target = ReferrersFront::start(target_registry.host.clone()).await;
    source_registry.push_as(signed.fixture.path(), "single", "app", "v1");
    // @sigstore/oci finds the API behind the front and writes no tag-schema index.
    let seeded = signed.seed(&source_registry, &source.host, &["v03", "v02"]);
    let tag = format!("app/manifests/sha256-{}", signed.digest.hex());
    assert!(get(&source.host, &tag).is_none(), "the attach used the referrers API");

    let store = store(&[&source.host, &target.host]);
    let from: ArtifactRef = format!("{}/app@{}", source.host, signed.digest).parse().unwrap();
    let to: ArtifactRef = format!("{}/app:v1", target.host).parse().unwrap();
    let report = store.copy(&from, &to, &CopyOptions::default().with_referrers(true)).await.unwrap();
    assert_eq!(report.related_copied, 2, "{report}");

    let api = get(&target.host, &format!("app/referrers/{}", signed.digest)).unwrap();
    let expected: BTreeSet<String> = seeded.iter().cloned().collect();
    assert_eq!(listed(&api), expected, "the destination's referrers API lists the same digests");
    assert!(get(&target.host, &tag).is_none(), "no tag-schema index on a registry with the API");
    let source_entries = source.listed.lock().unwrap().clone();
    let target_entries = target.listed.lock().unwrap().clone();
    assert_eq!(source_entries.values().next(), target_entries.values().next(), "same entries, artifact types included");
    let requests = signed.gate_passes(&target.host).await;
    assert_eq!(requests, 5, "with the referrers API: the listing, then a manifest and a blob per bundle (2)");
    signed.judges_accept(&target.host, &seeded);
}
