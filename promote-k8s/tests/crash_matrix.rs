//! The crash matrix with the cluster as the system of record: promote-oci's crash matrix (a promotion
//! aborted at every pass of every failpoint, then run again) with the in-cluster ledger, the Lease lock and
//! the Kubernetes deployer, against the fake API server.
//!
//! The fake must outlive the crashes, so it runs in a process of its own: the test binary, run again with
//! `PROMOTE_K8S_FAKE=<addr>`, serves it on that loopback address and writes a kubeconfig naming it
//! (`PROMOTE_K8S_KUBECONFIG`). Run with `PROMOTE_K8S_CRASH_DIR` set, the binary is one `promote` run: it
//! loads `promote.yaml` from that directory (ledger, lock and deployer of kind `kubernetes` through that
//! kubeconfig, a directory-backed artifact store), registers the build and promotes it into `dev`; with
//! `PROMOTE_CRASH_POINT=<failpoint>` and `PROMOTE_CRASH_HIT=<n>` it aborts the process
//! (`std::process::abort`: no unwinding, no lease released) the n-th time the promotion passes that failpoint.
//! Each case has its own ledger, Lease and namespace in the one fake.
//!
//! A first run without a crash counts how many times a promotion passes each failpoint (the census). For
//! every failpoint and every pass, the parent runs the command with the crash, then again without (the
//! re-run waits out the dead runner's four-second lease, so six cases run side by side), and asserts,
//! reading the fake directly:
//! - the crashed run died by abort, and the ledger then reads with its chain verified;
//! - the re-run succeeds, and the ledger reads with its chain verified;
//! - exactly one promotion of the build exists, with exactly one outcome, a success;
//! - the step journal shows the interruption: once the promotion was journalled before the crash, it was
//!   resumed (not started again) under a new, greater fencing token (the Lease's next transition), and a
//!   step the crash cut short is journalled as started with no finish before the resume;
//! - the target holds exactly the bundle recorded: each stage tag in the store is the recorded digest; in
//!   the cluster, the stage's inventory holds the recorded bundle, healthy, and its namespace holds exactly
//!   the bundle's Deployments, each running the recorded digest.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use promote_core::backend::{check_exists_args, check_promote_args};
use promote_core::ledger::{LedgerEntry, Step};
use promote_core::manifest::{ManifestSummary, OCI_MANIFEST, REVISION_ANNOTATION};
use promote_core::testing::crash::{
    Crash, FAILPOINTS, Interruption, abort_where_the_parent_says, check_interruptions, check_recovered, crash_child,
};
use promote_core::{
    Artifact, ArtifactRef, ArtifactStore, BuildRequest, Deployer, Digest, Error, Ledger, Resource, SpecRegistry,
    StoreCapabilities,
};
use promote_k8s::testing::FakeApiServer;
use promote_k8s::{KubernetesDeployer, KubernetesLedger};
use promote_testkit::process::{ChildGuard, aborted, child_mode, output, self_command};
use promote_testkit::{free_port, wait_for_port};

const COMMIT: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
const SERVICES: [&str; 2] = ["web", "worker"];
/// The registry name the directory store answers to.
const REGISTRY: &str = "dir.local";
/// Where the ledgers and Leases live.
const NAMESPACE: &str = "promote-system";
/// The variable that makes the test binary serve the fake API server, on that address.
const FAKE: &str = "PROMOTE_K8S_FAKE";
/// Where the fake process writes its kubeconfig.
const KUBECONFIG: &str = "PROMOTE_K8S_KUBECONFIG";
/// The variable that makes the test binary one run of the command, in that directory.
const CHILD: &str = "PROMOTE_K8S_CRASH_DIR";
/// Set in a run that counts how many times a promotion passes each failpoint, instead of crashing.
const CENSUS: &str = "PROMOTE_CRASH_CENSUS";
/// More passes than any failpoint sees in one promotion: a census that counts more is broken.
const MAX_HITS: u32 = 40;
/// How many cells run side by side: each spends most of its time waiting out the dead runner's lease.
const WORKERS: usize = 6;

/// The spec, with the case's name and the kubeconfig to fill in.
const SPEC: &str = r#"pipeline: crash
store: { kind: directory, root: images }
ledger: { kind: kubernetes, namespace: promote-system, name: CASE, kubeconfig: KUBECONFIG }
lock: { kind: kubernetes, namespace: promote-system, name: "CASE-{stage}", lease_duration_seconds: 4, kubeconfig: KUBECONFIG }
templates: manifests
deployer: { kind: kubernetes, namespace: "CASE-{stage}", create_namespace: true, kubeconfig: KUBECONFIG }
config:
  - { kind: inline, name: defaults, values: { REPLICAS: "2" } }
stages:
  - name: dev
    lock_wait: 60s
    health_timeout: 60s
    placement: { repository: "dev/{name}", tag: "{stage}" }
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
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
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
  selector: { matchLabels: { app: worker } }
  template:
    metadata: { labels: { app: worker } }
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
    if let Some(addr) = child_mode(FAKE) {
        runtime.block_on(serve_fake(addr.parse().expect("the fake's address")));
    } else if let Some(dir) = child_mode(CHILD) {
        runtime.block_on(child(PathBuf::from(dir)));
    } else {
        matrix();
    }
}

/// The fake API server's process: serves until killed.
async fn serve_fake(addr: SocketAddr) {
    let path = PathBuf::from(std::env::var_os(KUBECONFIG).expect("PROMOTE_K8S_KUBECONFIG"));
    let fake =
        FakeApiServer::builder().real_time(Duration::from_millis(10)).namespaces(&["default", NAMESPACE]).build();
    let served = fake.serve(addr).await.expect("serve the fake");
    // Written aside, then renamed: the parent never reads half a kubeconfig.
    let partial = path.with_extension("partial");
    served.write_kubeconfig(&partial).unwrap();
    std::fs::rename(&partial, &path).unwrap();
    std::future::pending::<()>().await;
}

// ---------------------------------------------------------------------------------------------------------
// A store whose tags survive the process: manifests and tags as files.

/// An artifact store in a directory: `<root>/<repository>/manifests/sha256-<hex>` holds a manifest's bytes,
/// `<root>/<repository>/tags/<tag>` its digest. Each file is written aside and renamed into place, the tag
/// after the manifest, so a crash never leaves a tag on a missing or partial manifest.
#[derive(Debug, Clone)]
struct DirectoryStore {
    root: PathBuf,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectorySettings {
    root: PathBuf,
}

impl DirectoryStore {
    fn manifest_path(&self, repository: &str, digest: &Digest) -> PathBuf {
        self.root.join(repository).join("manifests").join(digest.to_string().replace(':', "-"))
    }

    fn tag_path(&self, repository: &str, tag: &str) -> PathBuf {
        self.root.join(repository).join("tags").join(tag)
    }

    fn write(path: &Path, bytes: &[u8]) -> promote_core::Result<()> {
        let dir = path.parent().expect("a parent directory");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes).map_err(|e| Error::io(&partial, e))?;
        std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
    }

    /// Stores a manifest under a tag, as a build's push does.
    fn push(&self, repository: &str, tag: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        Self::write(&self.manifest_path(repository, &digest), bytes).unwrap();
        Self::write(&self.tag_path(repository, tag), digest.to_string().as_bytes()).unwrap();
        digest
    }

    fn digest_of(&self, reference: &ArtifactRef) -> promote_core::Result<Option<Digest>> {
        if let Some(digest) = reference.digest() {
            return Ok(Some(digest.clone()));
        }
        let Some(tag) = reference.tag() else { return Ok(None) };
        let path = self.tag_path(reference.repository(), tag);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().parse()?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn read(&self, repository: &str, digest: &Digest) -> promote_core::Result<Option<Vec<u8>>> {
        let path = self.manifest_path(repository, digest);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

#[async_trait]
impl ArtifactStore for DirectoryStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities::none().with_cross_repository(true)
    }

    async fn resolve(&self, reference: &ArtifactRef) -> promote_core::Result<Artifact> {
        let not_found = || Error::not_found(Resource::Artifact, reference.to_string());
        let digest = self.digest_of(reference)?.ok_or_else(not_found)?;
        let bytes = self.read(reference.repository(), &digest)?.ok_or_else(not_found)?;
        let summary = ManifestSummary::parse(&bytes).unwrap_or_default();
        let media_type = summary.media_type.clone().unwrap_or_else(|| OCI_MANIFEST.to_owned());
        Ok(Artifact::new(reference, digest, media_type, bytes.len() as u64).with_annotations(summary.annotations))
    }

    async fn promote(&self, source: &ArtifactRef, target: &ArtifactRef) -> promote_core::Result<Artifact> {
        let digest = check_promote_args(source, target)?.clone();
        let bytes = self
            .read(source.repository(), &digest)?
            .ok_or_else(|| Error::not_found(Resource::Artifact, source.to_string()))?;
        Self::write(&self.manifest_path(target.repository(), &digest), &bytes)?;
        if let Some(tag) = target.tag() {
            Self::write(&self.tag_path(target.repository(), tag), digest.to_string().as_bytes())?;
        }
        self.resolve(&target.pinned(&digest)).await
    }

    async fn exists(&self, reference: &ArtifactRef) -> promote_core::Result<bool> {
        let digest = check_exists_args(reference)?;
        Ok(self.read(reference.repository(), digest)?.is_some())
    }
}

// ---------------------------------------------------------------------------------------------------------
// One run of the command.

/// Register the build, promote it into `dev`, print `promoted <id>` and how many times the armed failpoint
/// was passed.
async fn child(dir: PathBuf) {
    let _scenario = fail::FailScenario::setup();
    let mut registry = SpecRegistry::with_defaults();
    promote_k8s::kinds::register(&mut registry);
    registry.register_store("directory", |spec| async move {
        let settings: DirectorySettings = spec.parse()?;
        let root = spec.resolve_path("root", &settings.root)?;
        Ok(Arc::new(DirectoryStore { root }) as Arc<dyn ArtifactStore>)
    });
    let pipeline = registry.load_file(dir.join("promote.yaml"), None).await.expect("load the spec");
    let mut request = BuildRequest::new(COMMIT);
    for service in SERVICES {
        request = request.artifact(service, format!("{REGISTRY}/src/{service}:build").parse().unwrap());
    }
    let build = pipeline.register(request, "ci").await.expect("register the build");

    // The census: a promotion without a crash, counting how many times it passes each failpoint.
    let census: Vec<(&str, Arc<AtomicU32>)> = FAILPOINTS.iter().map(|p| (*p, Arc::new(AtomicU32::new(0)))).collect();
    if std::env::var_os(CENSUS).is_some() {
        for (point, count) in &census {
            let count = count.clone();
            fail::cfg_callback(*point, move || {
                count.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
    }
    let passes = abort_where_the_parent_says();
    match pipeline.promote(&build.id, "dev", "ci").await {
        Ok(record) => println!("promoted {}", record.id),
        Err(error) => println!("error {error}"),
    }
    println!("passes {}", passes.load(Ordering::SeqCst));
    for (point, count) in census.iter().filter(|_| std::env::var_os(CENSUS).is_some()) {
        println!("census {point} {}", count.load(Ordering::SeqCst));
    }
}

// ---------------------------------------------------------------------------------------------------------
// The matrix.

/// The fake's process, and the kubeconfig naming it.
struct Cluster {
    _process: ChildGuard,
    kubeconfig: PathBuf,
}

fn start_cluster(dir: &Path) -> Cluster {
    let kubeconfig = dir.join("kubeconfig");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut command = self_command(FAKE, addr.to_string());
    command.env(KUBECONFIG, &kubeconfig).stdout(Stdio::null());
    let mut process = ChildGuard(command.spawn().expect("start the fake API server"));
    wait_for_port(addr, &mut process.0, "the fake API server", Duration::from_secs(60));
    for _ in 0..200 {
        if kubeconfig.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(kubeconfig.exists(), "the fake API server wrote no kubeconfig");
    Cluster { _process: process, kubeconfig }
}

impl Cluster {
    /// A client of the fake (not the crashing process's), for the runtime it is made in.
    async fn client(&self) -> kube::Client {
        let loaded = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("the fake's kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(loaded, &Default::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

/// Writes the spec and the template into a new directory, and the two built images into its store.
fn prepare(cluster: &Cluster, case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = cluster.kubeconfig.to_str().expect("a UTF-8 path");
    let spec = SPEC.replace("CASE", case).replace("KUBECONFIG", kubeconfig);
    std::fs::write(dir.path().join("promote.yaml"), spec).unwrap();
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/app.yaml"), TEMPLATE).unwrap();
    let store = DirectoryStore { root: dir.path().join("images") };
    for service in SERVICES {
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"{REVISION_ANNOTATION}\":\"{COMMIT}\",\"service\":\"{service}\"}}}}"
        );
        store.push(&format!("src/{service}"), "build", manifest.as_bytes());
    }
    dir
}

fn run(dir: &Path, crash: Option<(&str, u32)>) -> (ExitStatus, String) {
    let mut command = self_command(CHILD, dir);
    command.env_remove(FAKE).env_remove(CENSUS);
    crash_child(&mut command, crash);
    let (status, stdout, stderr) = output(&mut command);
    if !aborted(status) && !status.success() {
        panic!("the command failed ({status}): {stdout}{stderr}");
    }
    (status, stdout)
}

/// The case's ledger, read through a client of the fake (not the crashing process's).
async fn ledger(client: &kube::Client, case: &str) -> KubernetesLedger {
    KubernetesLedger::builder().namespace(NAMESPACE).name(case).client(client.clone()).build().await.unwrap()
}

/// What one cell of the matrix showed.
struct Cell {
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

fn matrix() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(dir.path());

    // How many times a promotion passes each failpoint: one cell per pass.
    let census = prepare(&cluster, "census");
    let mut command = self_command(CHILD, census.path());
    command.env(CENSUS, "1");
    crash_child(&mut command, None);
    let (status, out, err) = output(&mut command);
    assert!(status.success() && out.contains("promoted "), "the census run: {out}{err}");
    let mut work: Vec<(&'static str, u32)> = Vec::new();
    for point in FAILPOINTS {
        let line = out.lines().find_map(|line| line.strip_prefix(&format!("census {point} ")));
        let passes: u32 = line.unwrap_or_else(|| panic!("the census has no {point}: {out}")).parse().unwrap();
        assert!((1..=MAX_HITS).contains(&passes), "{point} passed {passes} times in one promotion");
        work.extend((1..=passes).map(|hit| (point, hit)));
    }
    let passes = |point: &str| work.iter().filter(|(p, _)| *p == point).count() as u32;
    let passes: BTreeMap<&str, u32> = FAILPOINTS.iter().map(|point| (*point, passes(point))).collect();

    // The cells, side by side: each worker its own runtime and client.
    let queue = Mutex::new(work.clone());
    let mut cells: Vec<Cell> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                scope.spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(async {
                        let client = cluster.client().await;
                        let mut done = Vec::new();
                        loop {
                            let next = queue.lock().unwrap().pop();
                            let Some((point, hit)) = next else { break };
                            done.push(cell(&cluster, &client, point, hit, passes[point]).await);
                        }
                        done
                    })
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("a worker of the matrix")).collect()
    });
    let order = |cell: &Cell| (FAILPOINTS.iter().position(|p| *p == cell.point), cell.hit);
    cells.sort_by_key(order);

    println!(
        "crash matrix: {} crashes at {} failpoints x 1 backend (in-cluster ledger, Lease lock, Kubernetes \
         deployer on the fake API server), each run again to one succeeded record, in {:.1?}",
        cells.len(),
        FAILPOINTS.len(),
        started.elapsed()
    );
    println!("{:<30} {:>4}  {:<8} interrupted step", "failpoint", "pass", "resumed");
    for cell in &cells {
        let step = cell.interrupted.map_or_else(|| "-".to_owned(), |s| s.to_string());
        println!("{:<30} {:>4}  {:<8} {step}", cell.point, cell.hit, cell.resumed);
    }
    expect_interruptions(&cells);
    println!("\ntest result: ok. 1 passed; 0 failed");
}

/// One cell: the command crashed at the `hit`-th pass of `point`, then run again, then checked.
async fn cell(cluster: &Cluster, client: &kube::Client, point: &'static str, hit: u32, passes: u32) -> Cell {
    let name = format!("p{}-{hit}", FAILPOINTS.iter().position(|p| *p == point).unwrap());
    let dir = prepare(cluster, &name);
    let (status, out) = run(dir.path(), Some((point, hit)));
    assert!(aborted(status), "{point} #{hit}: the census counted {passes} passes, but the run went on: {out}");
    // A crash leaves a ledger that reads with its chain verified.
    let crashed = ledger(client, &name)
        .await
        .read_since(0)
        .await
        .unwrap_or_else(|e| panic!("{point} #{hit}: after the crash: {e}"));
    let (status, out) = run(dir.path(), None);
    assert!(status.success() && out.contains("promoted "), "{point} #{hit}: the re-run: {out}");
    let mut cell = check(client, dir.path(), &name, point, hit, &crashed).await;
    cell.passes = passes;
    // The fake's controllers go through every workload on each tick and each write: the case's go once checked,
    // so that cases do not slow down one after the other.
    for service in SERVICES {
        deployments(client, &name).delete(service, &DeleteParams::foreground()).await.unwrap();
    }
    cell
}

/// The assertions of one cell, after the crash and the re-run.
async fn check(
    client: &kube::Client,
    dir: &Path,
    case: &str,
    point: &'static str,
    hit: u32,
    crashed: &[LedgerEntry],
) -> Cell {
    let at = format!("{point} #{hit}");
    let entries = ledger(client, case)
        .await
        .read_since(0)
        .await
        .unwrap_or_else(|e| panic!("{at}: the ledger does not read: {e}"));
    let (record, Interruption { resumed, unfinished: interrupted }) = check_recovered(&entries, crashed, &at);

    // Each stage tag is the recorded digest.
    assert_eq!(record.artifacts.len(), SERVICES.len(), "{at}");
    let store = DirectoryStore { root: dir.join("images") };
    for (name, placed) in &record.artifacts {
        let found = store.resolve(&placed.target).await.unwrap_or_else(|e| panic!("{at}: {name}: {e}"));
        assert_eq!(found.digest, placed.digest, "{at}: {name} at {}", placed.target);
    }

    // The cluster: the inventory holds the recorded bundle, healthy, and the namespace exactly its
    // Deployments, each running the recorded digest.
    let deployer = KubernetesDeployer::builder()
        .namespace(format!("{case}-{{stage}}"))
        .client(client.clone())
        .build()
        .await
        .unwrap();
    let status = deployer.status("dev").await.unwrap();
    assert_eq!(status.bundle_hash, record.bundle_hash, "{at}: the inventory holds the recorded bundle");
    assert_eq!(status.healthy, Some(true), "{at}");
    let current = deployer.current("dev").await.unwrap().unwrap_or_else(|| panic!("{at}: nothing deployed"));
    assert_eq!(Some(current.hash()), record.bundle_hash.as_deref(), "{at}");
    let mut found: Vec<(String, String)> = deployments(client, case)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| {
            let image = d.data["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default();
            (d.metadata.name.unwrap_or_default(), image.to_owned())
        })
        .collect();
    found.sort();
    let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, SERVICES, "{at}: the namespace holds the bundle's Deployments and no other");
    for (name, image) in &found {
        let placed = &record.artifacts[name.as_str()];
        assert!(image.ends_with(&format!("@{}", placed.digest)), "{at}: {name} runs {image}, not the recorded digest");
    }
    Cell { point, passes: 0, interrupted, resumed, hit }
}

/// The Deployments of a case's stage.
fn deployments(client: &kube::Client, case: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        plural: "deployments".into(),
    };
    Api::namespaced_with(client.clone(), &format!("{case}-dev"), &resource)
}

/// Where each failpoint must leave the journal: promote-core's table, as for the file ledger.
fn expect_interruptions(cells: &[Cell]) {
    let crashes: Vec<Crash<'_>> = cells
        .iter()
        .map(|cell| {
            let shown = Interruption { resumed: cell.resumed, unfinished: cell.interrupted };
            Crash { point: cell.point, hit: cell.hit, passes: cell.passes, shown }
        })
        .collect();
    check_interruptions(&crashes, SERVICES.len());
}
