//! The crash matrix: a promotion killed at every step by a real process abort, then run again.
//!
//! The test binary is its own child. Run with `PROMOTE_CRASH_DIR` set, it is one `promote` run: it loads
//! `promote.yaml` from that directory (file ledger, file lock, directory deployer, and as the artifact
//! store an OCI image layout per repository, or a docker-registry when `PROMOTE_CRASH_REGISTRY` names
//! one), registers the build, and promotes it into `dev`. With
//! `PROMOTE_CRASH_POINT=<failpoint>` and `PROMOTE_CRASH_HIT=<n>` it aborts the process
//! (`std::process::abort`: no unwinding, no destructor, no lock release but the OS's) the n-th time the
//! promotion passes that failpoint (promote-core's feature `failpoints`).
//!
//! For every failpoint and every time a promotion passes it, the parent runs the command with the crash,
//! then again without, and asserts:
//! - the crashed run died by abort, and the ledger then opens with its chain verified;
//! - the re-run succeeds, and the ledger opens with its chain verified;
//! - exactly one promotion of the build exists, and exactly one succeeded record, and nothing failed;
//! - the step journal shows the interruption: once the promotion was journalled before the crash, it was
//!   resumed (not started again) under a new fencing token, and a step the crash cut short is journalled
//!   as started with no finish before the resume;
//! - the target holds exactly the bundle recorded: each stage tag (in the image layouts, or in the
//!   registry, asked directly) resolves to the recorded digest over a complete graph, and the stage's
//!   directory holds the recorded bundle and no other file.
//!
//! The matrix runs with the OCI layouts always, and with docker-registry when it is installed (skipped
//! with a reason outside CI, required in CI).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::Ordering;

use promote_core::SpecRegistry;
use promote_core::ledger::{LedgerEntry, Step};
use promote_core::manifest::REVISION_ANNOTATION;
use promote_core::testing::crash::{
    Crash, FAILPOINTS, Interruption, abort_where_the_parent_says, check_interruptions, check_recovered, crash_child,
};
use promote_core::{ArtifactStore, ArtifactStoreExt, BuildRequest, Deployer, DirectoryDeployer, FileLedger, Ledger};
use promote_oci::{OciLayoutStore, image_manifest};
use promote_testkit::process::{aborted, child_mode, output, self_command};
use support::{Registry, require};

const COMMIT: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
const SERVICES: [&str; 2] = ["web", "worker"];
/// The variable that makes the test binary one run of the command, in that directory.
const CHILD: &str = "PROMOTE_CRASH_DIR";
/// More passes than any failpoint sees in one promotion: a sweep that gets here is broken.
const MAX_HITS: u32 = 40;

/// The spec, with the store and the placement's repository prefix to fill in.
const SPEC: &str = r#"pipeline: crash
store: STORE
ledger: { kind: file, path: state/ledger.jsonl }
lock: { kind: file, dir: state/locks }
templates: manifests
deployer: { kind: directory, root: deploy }
config:
  - { kind: inline, name: defaults, values: { REPLICAS: "2" } }
stages:
  - name: dev
    placement: { repository: "PREFIX/{name}", tag: "{stage}" }
    gates:
      - { kind: command, name: tests, program: "true" }
      - { kind: command, name: lint, program: "true" }
    verify:
      - { kind: command, name: smoke, program: "true" }
"#;

const TEMPLATE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{config.REPLICAS}}
  template:
    spec:
      containers:
        - name: web
          image: {{artifacts.web.image}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  template:
    spec:
      containers:
        - name: worker
          image: {{artifacts.worker.image}}
";

fn main() {
    if !promote_testkit::process::harness_less("crash_matrix") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    match child_mode(CHILD) {
        Some(dir) => runtime.block_on(child(PathBuf::from(dir))),
        None => runtime.block_on(matrix()),
    }
}

/// One run of the command: register the build, promote it into `dev`, print `promoted <id>` and how many
/// times the armed failpoint was passed.
async fn child(dir: PathBuf) {
    let _scenario = fail::FailScenario::setup();
    let mut registry = SpecRegistry::with_defaults();
    promote_oci::kinds::register(&mut registry);
    let pipeline = registry.load_file(dir.join("promote.yaml"), None).await.expect("load the spec");
    let images = OciLayoutStore::new(dir.join("images"));
    let registry = std::env::var("PROMOTE_CRASH_REGISTRY").ok();
    let mut request = BuildRequest::new(COMMIT);
    for service in SERVICES {
        let reference = match &registry {
            Some(host) => format!("{host}/src/{service}:build").parse().unwrap(),
            None => images.reference(&format!("src/{service}"), "build").unwrap(),
        };
        request = request.artifact(service, reference);
    }
    let build = pipeline.register(request, "ci").await.expect("register the build");

    let passes = abort_where_the_parent_says();
    match pipeline.promote(&build.id, "dev", "ci").await {
        Ok(record) => println!("promoted {}", record.id),
        Err(error) => println!("error {error}"),
    }
    println!("passes {}", passes.load(Ordering::SeqCst));
}

/// Where the artifacts live.
#[derive(Clone, Copy)]
enum Backend<'a> {
    /// An OCI image layout per repository, in the run's directory.
    Layout,
    /// A docker-registry (host:port), the built images pushed there once.
    Registry(&'a str),
}

impl Backend<'_> {
    fn name(self) -> &'static str {
        match self {
            Backend::Layout => "oci-layout",
            Backend::Registry(_) => "docker-registry",
        }
    }
}

/// Writes the spec and the templates into a new directory, and the two built images into its layouts.
/// `case` keeps each run's stage repositories apart in a shared registry.
async fn prepare(backend: Backend<'_>, case: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (store, prefix) = match backend {
        Backend::Layout => ("{ kind: oci-layout, root: images }".to_owned(), "dev".to_owned()),
        Backend::Registry(host) => {
            (format!("{{ kind: oci-registry, insecure: [\"{host}\"], docker_config: false }}"), format!("case{case}"))
        }
    };
    std::fs::write(dir.path().join("promote.yaml"), SPEC.replace("STORE", &store).replace("PREFIX", &prefix)).unwrap();
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/app.yaml"), TEMPLATE).unwrap();
    write_images(dir.path()).await;
    dir
}

/// The two built images, each in its own layout under `dir/images`, tagged `build`.
async fn write_images(dir: &Path) {
    let images = OciLayoutStore::new(dir.join("images"));
    for service in SERVICES {
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Labels\":{{\"{REVISION_ANNOTATION}\":\"{COMMIT}\"}}}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}"
        );
        let layers: [Vec<u8>; 2] = [format!("{service} layer one\n").into_bytes(), vec![service.len() as u8; 4096]];
        let layers: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
        let annotations = BTreeMap::from([(REVISION_ANNOTATION.to_owned(), COMMIT.to_owned())]);
        let manifest = image_manifest(config.as_bytes(), &layers, &annotations);
        let layout = images.layout(&format!("src/{service}")).await.unwrap();
        layout.write_image(Some("build"), config.as_bytes(), &layers, &manifest).await.unwrap();
    }
}

fn run(dir: &Path, backend: Backend<'_>, crash: Option<(&str, u32)>) -> (ExitStatus, String) {
    let mut command = self_command(CHILD, dir);
    command.env_remove("PROMOTE_CRASH_REGISTRY");
    if let Backend::Registry(host) = backend {
        command.env("PROMOTE_CRASH_REGISTRY", host);
    }
    crash_child(&mut command, crash);
    let (status, stdout, stderr) = output(&mut command);
    if !aborted(status) && !status.success() {
        panic!("the command failed ({status}): {stdout}{stderr}");
    }
    (status, stdout)
}

/// What one cell of the matrix showed.
struct Cell {
    backend: &'static str,
    point: &'static str,
    /// How many times the promotion passes the failpoint in all.
    passes: u32,
    hit: u32,
    /// The step the crash cut short, as journalled; `None` when it fell between steps or before anything
    /// was journalled.
    interrupted: Option<Step>,
    /// Whether the promotion was journalled before the crash (and so resumed).
    resumed: bool,
}

async fn matrix() {
    let mut cells = Vec::new();
    sweep(Backend::Layout, &mut cells).await;
    if require("docker-registry") & require("skopeo") {
        let registry = Registry::start();
        let images = tempfile::tempdir().unwrap();
        write_images(images.path()).await;
        for service in SERVICES {
            let layout = images.path().join("images/src").join(service);
            registry.push(&layout, "build", &format!("src/{service}"));
        }
        sweep(Backend::Registry(&registry.host), &mut cells).await;
    }
    let backends: std::collections::BTreeSet<&str> = cells.iter().map(|cell| cell.backend).collect();
    println!(
        "crash matrix: {} crashes at {} failpoints x {} backends ({}), each run again to one succeeded record",
        cells.len(),
        FAILPOINTS.len(),
        backends.len(),
        backends.into_iter().collect::<Vec<_>>().join(", ")
    );
    println!("{:<16} {:<30} {:>4}  {:<8} interrupted step", "store", "failpoint", "pass", "resumed");
    for cell in &cells {
        let step = cell.interrupted.map_or_else(|| "-".to_owned(), |s| s.to_string());
        println!("{:<16} {:<30} {:>4}  {:<8} {step}", cell.backend, cell.point, cell.hit, cell.resumed);
    }
    expect_interruptions(&cells);
    println!("\ntest result: ok. 1 passed; 0 failed");
}

/// Every failpoint, every pass, on one backend.
async fn sweep(backend: Backend<'_>, cells: &mut Vec<Cell>) {
    let mut case = 0;
    for point in FAILPOINTS {
        let mut hit = 1;
        loop {
            assert!(hit <= MAX_HITS, "{point} passed more than {MAX_HITS} times in one promotion");
            case += 1;
            let dir = prepare(backend, case).await;
            let (status, out) = run(dir.path(), backend, Some((point, hit)));
            if !aborted(status) {
                // The promotion passed this point fewer than `hit` times: the sweep of this point is done.
                assert!(out.contains("promoted "), "{point} #{hit}: {out}");
                assert!(hit > 1, "{point} was never reached: {out}");
                let this = |cell: &&mut Cell| cell.point == point && cell.backend == backend.name();
                for cell in cells.iter_mut().filter(this) {
                    cell.passes = hit - 1;
                }
                break;
            }
            // A crash leaves a ledger that opens with its chain verified.
            let ledger = dir.path().join("state/ledger.jsonl");
            let crashed = FileLedger::open(&ledger)
                .await
                .unwrap_or_else(|e| panic!("{point} #{hit}: after the crash: {e}"))
                .read_since(0)
                .await
                .unwrap();
            let (status, out) = run(dir.path(), backend, None);
            assert!(status.success() && out.contains("promoted "), "{point} #{hit}: the re-run: {out}");
            cells.push(check(dir.path(), backend, point, hit, &crashed).await);
            hit += 1;
        }
    }
}

/// The assertions of one cell, after the crash and the re-run.
async fn check(dir: &Path, backend: Backend<'_>, point: &'static str, hit: u32, crashed: &[LedgerEntry]) -> Cell {
    let at = format!("{}: {point} #{hit}", backend.name());
    let ledger = FileLedger::open(dir.join("state/ledger.jsonl"))
        .await
        .unwrap_or_else(|e| panic!("{at}: the ledger does not open: {e}"));
    let entries = ledger.read_since(0).await.unwrap();
    let (record, Interruption { resumed, unfinished: interrupted }) = check_recovered(&entries, crashed, &at);

    // Each stage tag is the recorded digest, over a complete graph.
    assert_eq!(record.artifacts.len(), SERVICES.len(), "{at}");
    if let Backend::Registry(host) = backend {
        for (name, placed) in &record.artifacts {
            check_registry_tag(host, &placed.target, &placed.digest, &format!("{at}: {name}")).await;
        }
    }
    let images = OciLayoutStore::new(dir.join("images"));
    for (name, placed) in record.artifacts.iter().filter(|_| matches!(backend, Backend::Layout)) {
        let found = images.resolve(&placed.target).await.unwrap_or_else(|e| panic!("{at}: {name}: {e}"));
        assert_eq!(found.digest, placed.digest, "{at}: {name} at {}", placed.target);
        images.verify_digest(&placed.target, &placed.digest).await.unwrap_or_else(|e| panic!("{at}: {name}: {e}"));
        let layout = images.layout(&format!("dev/{name}")).await.unwrap();
        let manifest = layout.read_blob(&placed.digest).await.unwrap().expect("the manifest");
        let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        let blobs = std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap());
        for blob in blobs {
            let digest = blob["digest"].as_str().unwrap().parse().unwrap();
            let bytes = layout.read_blob(&digest).await.unwrap().unwrap_or_else(|| panic!("{at}: {digest} missing"));
            assert_eq!(bytes.len() as u64, blob["size"].as_u64().unwrap(), "{at}: {digest}");
        }
    }

    // The directory tree: the recorded bundle, and no other file (no temporary file left by the crash).
    let deployer = DirectoryDeployer::new(dir.join("deploy"));
    let deployed = deployer.current("dev").await.unwrap().unwrap_or_else(|| panic!("{at}: nothing deployed"));
    assert_eq!(Some(deployed.hash()), record.bundle_hash.as_deref(), "{at}: the directory holds the recorded bundle");
    let mut files: Vec<String> = std::fs::read_dir(deployer.stage_dir("dev"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, [".promote-index", "deployment-web.yaml", "deployment-worker.yaml"], "{at}");
    for file in &files[1..] {
        let text = std::fs::read_to_string(deployer.stage_dir("dev").join(file)).unwrap();
        for placed in record.artifacts.values() {
            if text.contains("image:") && text.contains(placed.target.repository()) {
                assert!(text.contains(placed.digest.as_str()), "{at}: {file} runs the recorded digest");
            }
        }
    }
    Cell { backend: backend.name(), point, passes: 0, interrupted, resumed, hit }
}

/// Asks the registry directly (not through the store under test) what `target`'s tag serves: the recorded
/// digest, with every blob of the image there.
async fn check_registry_tag(host: &str, target: &promote_core::ArtifactRef, digest: &promote_core::Digest, at: &str) {
    let client = reqwest::Client::new();
    let repo = target.repository();
    let tag = target.tag().expect("a stage tag");
    let response = client
        .get(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header("accept", promote_core::manifest::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{at}: {target}: {}", response.status());
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&promote_core::Digest::sha256_of(&bytes), digest, "{at}: {target} serves another manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for blob in std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().unwrap()) {
        let blob_digest = blob["digest"].as_str().unwrap();
        let response = client.head(format!("http://{host}/v2/{repo}/blobs/{blob_digest}")).send().await.unwrap();
        assert!(response.status().is_success(), "{at}: {target} points at a missing blob {blob_digest}");
    }
}

/// Where each failpoint must leave the journal.
fn expect_interruptions(cells: &[Cell]) {
    for backend in ["oci-layout", "docker-registry"] {
        let crashes: Vec<Crash<'_>> = cells.iter().filter(|cell| cell.backend == backend).map(Cell::crash).collect();
        if !crashes.is_empty() {
            check_interruptions(&crashes, SERVICES.len());
        }
    }
}

impl Cell {
    fn crash(&self) -> Crash<'_> {
        let shown = Interruption { resumed: self.resumed, unfinished: self.interrupted };
        Crash { point: self.point, hit: self.hit, passes: self.passes, shown }
    }
}
