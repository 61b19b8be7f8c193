//! The end-to-end test: the `promote` binary driven as a subprocess through the seeds' scenario, on real
//! parts started here: two `docker-registry` instances (CI and production), moto for Secrets Manager, and
//! promote-k8s's fake API server served on loopback and reached through a kubeconfig.
//!
//! Every step parses the command's `--output json` document; at the end every output, every file of the
//! state directory, the ledger and the fake's stored objects (but the Secret itself) are swept for the
//! secret's value. A missing `docker-registry` or `moto_server` skips the test with a printed reason, and
//! fails it when `CI` is set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams};
use promote_core::manifest::REVISION_ANNOTATION;
use promote_k8s::testing::{FakeApiServer, PodOutcome};
use promote_oci::{OciLayout, image_manifest};
use serde_json::Value;

const SECRET_VALUE: &str = "pr0d-db-pa55word-7c1f9e";
const SOAK: &str = "8s";

// ---------------------------------------------------------------------------------------------------------
// Services

/// Whether `binary` is on PATH; outside CI a missing one skips (printed), with `CI` set it fails.
fn require(binary: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|p| p.is_file()));
    if found.is_none() {
        let hint = "apt-get install -y docker-registry; pip install 'moto[server]'";
        if std::env::var_os("CI").is_some() {
            panic!("`{binary}` is required when CI is set ({hint})");
        }
        eprintln!("SKIPPED: `{binary}` is not installed ({hint}); this test fails instead when CI is set");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it listened: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {addr} within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed on drop.
struct Service {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(binary: &Path) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let mut child = Command::new(binary)
        .arg("serve")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start docker-registry");
    wait_for_port(port, &mut child, "docker-registry");
    Service { child, host: format!("127.0.0.1:{port}"), _dir: dir }
}

fn start_moto(binary: &Path) -> Service {
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
    wait_for_port(port, &mut child, "moto_server");
    Service { child, host: format!("127.0.0.1:{port}"), _dir: dir }
}

/// The smoke endpoint prd's verification gate calls (`/healthz?build=ID`): 503 for the build the test
/// makes fail, 200 for the others.
struct SmokeServer {
    port: u16,
    failing: Arc<std::sync::Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
}

impl SmokeServer {
    fn start() -> SmokeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let failing = Arc::new(std::sync::Mutex::new(None::<String>));
        let stop = Arc::new(AtomicBool::new(false));
        let (serving, stopping) = (failing.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = [0u8; 4096];
                let read = stream.read(&mut request).unwrap_or(0);
                let request = String::from_utf8_lossy(&request[..read]);
                let fails = serving.lock().unwrap().as_deref().is_some_and(|build| request.contains(build));
                let status = if fails { "503 Service Unavailable" } else { "200 OK" };
                let _ = write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            }
        });
        SmokeServer { port, failing, stop }
    }
}

impl Drop for SmokeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Whether the registry at `host` serves `repository@digest` (a HEAD of the manifest).
fn registry_has(host: &str, repository: &str, digest: &str) -> bool {
    let mut stream = TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "HEAD /v2/{repository}/manifests/{digest} HTTP/1.1\r\nhost: {host}\r\naccept: application/vnd.oci.image.manifest.v1+json\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut status = String::new();
    BufReader::new(stream).read_line(&mut status).unwrap();
    status.split_whitespace().nth(1) == Some("200")
}

// ---------------------------------------------------------------------------------------------------------
// The CLI

/// One run of the CLI.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The one JSON document on stdout.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

struct Harness {
    dir: tempfile::TempDir,
    spec: PathBuf,
    moto: String,
    /// Every stdout and stderr, for the secret sweep.
    outputs: Vec<String>,
}

impl Harness {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_promote"));
        command
            .args(args)
            .args(["--output", "json"])
            .env("PROMOTE_FILE", &self.spec)
            .env("NO_COLOR", "1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env_remove("PROMOTE_ACTOR")
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    /// Runs `promote ARGS --output json` and checks the exit code.
    fn run(&mut self, expected: i32, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("run promote");
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        self.outputs.push(run.stdout.clone());
        self.outputs.push(run.stderr.clone());
        assert_eq!(
            run.code, expected,
            "promote {args:?} exited {}, not {expected}\nstdout:\n{}\nstderr:\n{}",
            run.code, run.stdout, run.stderr
        );
        // Whatever the outcome, stdout is one JSON document and nothing else.
        let document = run.json();
        if run.code != 0 {
            assert_eq!(document["exit_code"], expected, "{document}");
            assert!(document["error"]["kind"].is_string(), "{document}");
        }
        run
    }

    /// Runs `promote ARGS` until it stops exiting `waiting` (a soak), a bounded number of times.
    fn run_until_not(&mut self, waiting: i32, args: &[&str]) -> Run {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let output = self.command(args).output().expect("run promote");
            let run = Run {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            };
            self.outputs.push(run.stdout.clone());
            self.outputs.push(run.stderr.clone());
            if run.code != waiting {
                return run;
            }
            assert_eq!(run.json()["error"]["kind"], "gate_pending");
            assert!(Instant::now() < deadline, "promote {args:?} still exits {waiting} after 90 s");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Images and the spec

/// Writes an image whose config label and manifest annotation declare `revision` into an OCI layout, and
/// returns `oci:DIR:TAG` for `promote copy`.
async fn write_image(root: &Path, service: &str, revision: &str, tag: &str) -> String {
    let dir = root.join(format!("{service}-{tag}"));
    let config = format!(
        "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Labels\":{{\"{REVISION_ANNOTATION}\":\"{revision}\"}}}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}"
    );
    let layer = format!("{service} built from {revision}\n").repeat(2048);
    let annotations = BTreeMap::from([(REVISION_ANNOTATION.to_owned(), revision.to_owned())]);
    let manifest = image_manifest(config.as_bytes(), &[layer.as_bytes()], &annotations);
    let layout = OciLayout::create(&dir).await.unwrap();
    layout.write_image(Some(tag), config.as_bytes(), &[layer.as_bytes()], &manifest).await.unwrap();
    format!("oci:{}:{tag}", dir.display())
}

fn spec(ci: &str, prd: &str, moto: &str, smoke: u16) -> String {
    format!(
        r#"pipeline: shop
store: {{ kind: oci-registry, insecure: ["{ci}", "{prd}"] }}
ledger: {{ kind: file, path: state/ledger.jsonl }}
lock: {{ kind: file, dir: state/locks }}
templates: manifests
deployer: {{ kind: kubernetes, namespace: "{{stage}}", kubeconfig: kubeconfig.yaml }}
stages:
  - name: dev
    auto: true
    config:
      - {{ kind: inline, name: dev-config, values: {{ DB_HOST: db.dev.internal, DB_PASSWORD: dev-only }} }}
  - name: stg
    gates:
      - {{ kind: command, name: contract-tests, program: /bin/sh, args: ["-c", "exit 0"], timeout: 30s }}
      - {{ kind: soak, name: dev-soak, stage: dev, duration: {SOAK} }}
    config:
      - {{ kind: inline, name: stg-config, values: {{ DB_HOST: db.stg.internal, DB_PASSWORD: stg-only }} }}
  - name: prd
    auto: true
    placement: {{ registry: "{prd}", repository: "prod/{{name}}" }}
    on_failure: rollback
    health_timeout: 90s
    gates:
      - {{ kind: approval, name: release-managers, promoters: [alice, bob, carol], min_approvals: 2 }}
    verify:
      - {{ kind: http, name: smoke, url: "http://127.0.0.1:{smoke}/healthz?build={{build}}", expect_status: 200, retries: 0, timeout: 5s, allow_private: true }}
    config:
      - {{ kind: inline, name: prd-config, values: {{ DB_HOST: db.prd.internal }} }}
      - kind: secrets-manager
        region: us-east-1
        endpoint_url: "http://{moto}"
        stages:
          prd:
            - {{ id: prd/db-password, format: string, key: DB_PASSWORD }}
"#
    )
}

const TEMPLATE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: { app: web }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: {{artifacts.web.image}}
          env:
            - { name: DB_HOST, value: {{quote config.DB_HOST}} }
            - name: DB_PASSWORD
              valueFrom: { secretKeyRef: { name: db, key: password } }
---
apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
data:
  password: {{b64enc config.DB_PASSWORD}}
"#;

async fn seed_secret(endpoint: &str) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new("testing", "testing", None, None, "e2e"))
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name("prd/db-password")
        .secret_string(SECRET_VALUE)
        .send()
        .await
        .expect("create the secret in moto");
}

/// The fake's objects (but Secret `db`), as JSON text, for the sweep.
async fn stored_objects(client: &kube::Client) -> String {
    let mut text = String::new();
    let params = ListParams::default();
    for ns in ["dev", "stg", "prd"] {
        let push = |text: &mut String, value: Value| text.push_str(&value.to_string());
        for item in Api::<Deployment>::namespaced(client.clone(), ns).list(&params).await.unwrap() {
            push(&mut text, serde_json::to_value(item).unwrap());
        }
        for item in Api::<ReplicaSet>::namespaced(client.clone(), ns).list(&params).await.unwrap() {
            push(&mut text, serde_json::to_value(item).unwrap());
        }
        for item in Api::<Pod>::namespaced(client.clone(), ns).list(&params).await.unwrap() {
            push(&mut text, serde_json::to_value(item).unwrap());
        }
        for item in Api::<ConfigMap>::namespaced(client.clone(), ns).list(&params).await.unwrap() {
            push(&mut text, serde_json::to_value(item).unwrap());
        }
        for item in Api::<Secret>::namespaced(client.clone(), ns).list(&params).await.unwrap() {
            if item.metadata.name.as_deref() != Some("db") {
                push(&mut text, serde_json::to_value(item).unwrap());
            }
        }
    }
    text
}

/// One stage's line of a reconcile document.
fn outcome<'a>(document: &'a Value, stage: &str) -> &'a Value {
    document["stages"].as_array().unwrap().iter().find(|s| s["stage"] == stage).unwrap_or(&Value::Null)
}

fn files_under(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------------------------------------
// The scenario

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_scenario_end_to_end() {
    let (Some(registry_binary), Some(moto_binary)) = (require("docker-registry"), require("moto_server")) else {
        return;
    };
    let ci = start_registry(&registry_binary);
    let prd = start_registry(&registry_binary);
    let moto = start_moto(&moto_binary);
    seed_secret(&format!("http://{}", moto.host)).await;
    let smoke = SmokeServer::start();
    let cluster = FakeApiServer::builder().namespaces(&["default", "dev", "stg", "prd"]).build();
    let served = cluster.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = kube::Client::new(cluster.service(), "default");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/app.yaml"), TEMPLATE).unwrap();
    served.write_kubeconfig(&dir.path().join("kubeconfig.yaml")).unwrap();
    let spec_path = dir.path().join("promote.yaml");
    std::fs::write(&spec_path, spec(&ci.host, &prd.host, &moto.host, smoke.port)).unwrap();
    let images = tempfile::tempdir().unwrap();
    let mut cli = Harness { dir, spec: spec_path, moto: moto.host.clone(), outputs: Vec::new() };
    assert!(!cli.moto.is_empty());

    let validated = cli.run(0, &["validate"]).json();
    assert_eq!(validated["ok"], true);
    assert_eq!(validated["artifacts"], serde_json::json!(["web"]));

    // CI pushes three images: two declare their commit, the third declares another one.
    let commits = [
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
        "3333333333333333333333333333333333333333",
    ];
    let mut sources = Vec::new();
    for (n, commit) in commits.iter().enumerate() {
        let source = write_image(images.path(), "web", commit, &format!("v{}", n + 1)).await;
        let target = format!("{}/shop/web:{}", ci.host, &commit[..7]);
        let copied = cli.run(0, &["copy", "--insecure", &source, &target]).json();
        assert!(copied["digest"].as_str().unwrap().starts_with("sha256:"), "{copied}");
        assert!(copied["bytes_copied"].as_u64().unwrap() > 0, "{copied}");
        sources.push(target);
    }
    let mislabelled = write_image(images.path(), "web", "9999999999999999999999999999999999999999", "bad").await;
    let mislabelled_target = format!("{}/shop/web:bad", ci.host);
    cli.run(0, &["copy", "--insecure", &mislabelled, &mislabelled_target]);

    // 1. Register two builds; a third whose image declares another commit is refused.
    let register = |cli: &mut Harness, commit: &str, version: &str, image: &str| -> (String, String) {
        let artifact = format!("web={image}");
        let run = cli.run(
            0,
            &[
                "register",
                "--as",
                "ci",
                "--commit",
                commit,
                "--version",
                version,
                "--author",
                "alice",
                "--label",
                "coverage=91",
                "--artifact",
                &artifact,
            ],
        );
        let build = run.json()["build"].clone();
        assert_eq!(build["commit"], commit);
        let digest = build["artifacts"]["web"]["digest"].as_str().unwrap().to_owned();
        (build["id"].as_str().unwrap().to_owned(), digest)
    };
    let (b1, digest1) = register(&mut cli, commits[0], "1.0.0", &sources[0]);
    let refused = cli.run(
        4,
        &[
            "register",
            "--as",
            "ci",
            "--commit",
            "8888888888888888888888888888888888888888",
            "--artifact",
            &format!("web={mislabelled_target}"),
        ],
    );
    assert_eq!(refused.json()["error"]["kind"], "revision_mismatch");

    // 2. reconcile (CI runs it after each registration) takes build 1 into dev.
    let reconciled = cli.run(0, &["reconcile", "--as", "ci"]).json();
    assert_eq!(outcome(&reconciled, "dev")["outcome"], "promoted", "{reconciled}");
    assert_eq!(outcome(&reconciled, "dev")["build"], b1.as_str());
    let (b2, _digest2) = register(&mut cli, commits[1], "1.1.0", &sources[1]);

    // 3. stg: a command gate and a soak gate: pending (3) while it soaks, then done (0).
    let pending = cli.run(3, &["promote", &b1[..8], "--to", "stg", "--as", "dana"]).json();
    assert_eq!(pending["error"]["kind"], "gate_pending");
    let status = cli.run(0, &["status"]).json();
    let stg = &status["stages"][1];
    assert_eq!(stg["stage"], "stg");
    assert!(stg["eligible"].as_array().unwrap().iter().any(|e| e["build"] == b1.as_str()), "{status}");
    let promoted = cli.run_until_not(3, &["promote", &b1, "--to", "stg", "--as", "dana"]);
    assert_eq!(promoted.code, 0, "stdout:\n{}\nstderr:\n{}", promoted.stdout, promoted.stderr);
    assert_eq!(promoted.json()["promotion"]["outcome"], "succeeded", "{}", promoted.stdout);

    // 4. prd needs two approvals from the allow-list; the build's author may not approve it.
    let waiting = cli.run(3, &["promote", &b1, "--to", "prd", "--as", "dana"]).json();
    assert!(waiting["error"]["message"].as_str().unwrap().contains("release-managers"), "{waiting}");
    let self_approval = cli.run(4, &["approve", &b1, "--stage", "prd", "--as", "alice"]).json();
    assert_eq!(self_approval["error"]["kind"], "approval_refused");
    let approval = cli.run(0, &["approve", &b1, "--stage", "prd", "--as", "bob", "--comment", "release 1.0.0"]).json();
    assert_eq!(approval["approval"]["approver"], "bob");
    cli.run(0, &["approve", commits[0], "--stage", "prd", "--as", "carol"]);
    let record = cli.run(0, &["promote", &b1, "--to", "prd", "--as", "dana"]).json()["promotion"].clone();
    assert_eq!(record["outcome"], "succeeded", "{record}");
    let production_image = format!("{}/prod/web@{digest1}", prd.host);
    assert_eq!(record["artifacts"]["web"]["digest"], digest1.as_str());
    assert!(registry_has(&prd.host, "prod/web", &digest1), "the image is in the production registry by digest");
    let deployment = Api::<Deployment>::namespaced(client.clone(), "prd").get("web").await.unwrap();
    let deployment = serde_json::to_value(deployment).unwrap();
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], production_image.as_str());
    let secret = Api::<Secret>::namespaced(client.clone(), "prd").get("db").await.unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, SECRET_VALUE.as_bytes(), "rendered from Secrets Manager");

    // 5. Build 2 reaches prd; its verification fails, and prd is rolled back to build 1 automatically.
    let reconciled = cli.run(0, &["reconcile", "--as", "ci"]).json();
    assert_eq!(outcome(&reconciled, "dev")["build"], b2.as_str(), "{reconciled}");
    let promoted = cli.run_until_not(3, &["promote", &b2, "--to", "stg", "--as", "dana"]);
    assert_eq!(promoted.code, 0, "stdout:\n{}\nstderr:\n{}", promoted.stdout, promoted.stderr);
    cli.run(0, &["approve", &b2, "--stage", "prd", "--as", "bob"]);
    cli.run(0, &["approve", &b2, "--stage", "prd", "--as", "carol"]);
    *smoke.failing.lock().unwrap() = Some(b2.clone());
    let failed = cli.run(1, &["promote", &b2, "--to", "prd", "--as", "dana"]).json();
    assert_eq!(failed["error"]["kind"], "gate_failed", "{failed}");

    // 6. status shows prd back on build 1 with a hold, and reconcile does not undo the rollback.
    let status = cli.run(0, &["status"]).json();
    let prd_status = &status["stages"][2];
    assert_eq!(prd_status["current"], b1.as_str(), "{status}");
    let holds = prd_status["holds"].as_array().unwrap();
    assert_eq!(holds.len(), 1, "{status}");
    assert_eq!(holds[0]["scope"], "auto");
    let hold = holds[0]["id"].as_str().unwrap().to_owned();
    let reconciled = cli.run(0, &["reconcile", "--as", "ci"]).json();
    assert_eq!(outcome(&reconciled, "prd")["outcome"], "held", "{reconciled}");
    let status = cli.run(0, &["status"]).json();
    assert_eq!(status["stages"][2]["current"], b1.as_str());

    // 7. unhold lifts the hold; a third build goes through.
    let lifted = cli.run(0, &["unhold", &hold, "--as", "oncall"]).json();
    assert_eq!(lifted["lifted"], hold.as_str());
    let (b3, digest3) = register(&mut cli, commits[2], "1.2.0", &sources[2]);
    let reconciled = cli.run(0, &["reconcile", "--as", "ci"]).json();
    assert_eq!(outcome(&reconciled, "dev")["build"], b3.as_str(), "{reconciled}");
    assert_ne!(outcome(&reconciled, "prd")["outcome"], "promoted", "the failed build 2 stays out of prd: {reconciled}");
    let promoted = cli.run_until_not(3, &["promote", &b3, "--to", "stg", "--as", "dana"]);
    assert_eq!(promoted.code, 0, "stdout:\n{}\nstderr:\n{}", promoted.stdout, promoted.stderr);
    cli.run(0, &["approve", &b3, "--stage", "prd", "--as", "bob"]);
    cli.run(0, &["approve", &b3, "--stage", "prd", "--as", "carol"]);

    // 8. kill -9 while promote waits for the rollout; the same command again resumes and finishes, with
    //    exactly one succeeded record.
    cluster.script_pod_outcome(&format!("{}/prod/web@{digest3}", prd.host), PodOutcome::Slow(Duration::from_secs(8)));
    let mut child = cli
        .command(&["promote", &b3, "--to", "prd", "--as", "dana"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut progress = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line =
            seen.recv_timeout(remaining).unwrap_or_else(|_| panic!("no rollout progress within 60 s: {progress:?}"));
        let waiting_on_rollout = line.contains("Deployment/");
        progress.push(line);
        if waiting_on_rollout {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the first run was killed while it waited: {progress:?}");
    cli.outputs.push(progress.join("\n"));
    let resumed = cli.run(0, &["promote", &b3, "--to", "prd", "--as", "dana"]).json();
    assert_eq!(resumed["promotion"]["build"], b3.as_str());
    assert_eq!(resumed["promotion"]["outcome"], "succeeded");
    let history = cli.run(0, &["history", "--stage", "prd", "--build", &b3]).json();
    let records = history["promotions"].as_array().unwrap();
    let succeeded = records.iter().filter(|r| r["outcome"] == "succeeded").count();
    assert_eq!(records.len(), 1, "one promotion, resumed: {history}");
    assert_eq!(succeeded, 1, "{history}");
    let status = cli.run(0, &["status"]).json();
    assert_eq!(status["stages"][2]["current"], b3.as_str());

    // 9. The ledger's chain verifies.
    let verified = cli.run(0, &["ledger", "verify"]).json();
    assert_eq!(verified["ok"], true);
    assert!(verified["records"].as_u64().unwrap() > 20, "{verified}");
    assert_eq!(verified["head"].as_str().unwrap().len(), 64);

    // No output, file, ledger entry or stored object (but the Secret) holds the secret's value.
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE);
    for (index, output) in cli.outputs.iter().enumerate() {
        assert!(
            !output.contains(SECRET_VALUE) && !output.contains(&encoded),
            "output {index} holds the secret: {output}"
        );
    }
    let mut files = Vec::new();
    files_under(cli.dir.path(), &mut files);
    assert!(files.iter().any(|(path, _)| path.ends_with("ledger.jsonl")));
    for (path, bytes) in &files {
        assert!(!contains(bytes, SECRET_VALUE) && !contains(bytes, &encoded), "{} holds the secret", path.display());
    }
    let objects = stored_objects(&client).await;
    assert!(objects.contains("Deployment") || objects.contains("\"web\""), "the sweep read the cluster");
    assert!(!objects.contains(SECRET_VALUE) && !objects.contains(&encoded), "a stored object holds the secret");
    drop(served);
}
