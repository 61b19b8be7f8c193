//! The real kubectl (1.32, through google-cloud-sdk's dispatcher) against the fake served on loopback: proof
//! that the fake speaks the protocol kubectl expects. Each test gets a fresh HOME and `--cache-dir`.
//!
//! Skips with a printed reason when kubectl is missing, except under CI, where that fails.
#![cfg(feature = "testing")]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use promote_k8s::testing::{FakeApiServer, PodOutcome, ServedApiServer};

/// kubectl's binary, or `None` (after printing why) when it is missing outside CI.
fn kubectl_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "kubectl is required under CI but is not on PATH");
        eprintln!("skipping: kubectl is not on PATH");
    }
    found
}

/// A fake served on 127.0.0.1 with a kubeconfig and a private HOME and cache directory for kubectl.
struct Cluster {
    fake: FakeApiServer,
    _served: ServedApiServer,
    dir: tempfile::TempDir,
    kubectl: PathBuf,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Cluster {
    async fn start(fake: FakeApiServer) -> Option<Cluster> {
        let kubectl = kubectl_binary()?;
        let served = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        served.write_kubeconfig(&dir.path().join("kubeconfig")).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Some(Cluster { fake, _served: served, dir, kubectl })
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    async fn kubectl(&self, args: &[&str]) -> Run {
        let home = self.dir.path().join("home");
        let output: Output = tokio::time::timeout(
            Duration::from_secs(90),
            tokio::process::Command::new(&self.kubectl)
                .args(["--kubeconfig", path_str(&self.dir.path().join("kubeconfig"))])
                .args(["--cache-dir", path_str(&self.dir.path().join("cache"))])
                .args(args)
                .env("HOME", &home)
                .env_remove("KUBECONFIG")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("kubectl finishes within 90 s")
        .expect("kubectl runs");
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!("$ kubectl {}\n[exit {}]\n{}{}", args.join(" "), run.code, run.stdout, run.stderr);
        run
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn manifest(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  key: value
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 80
"#
    )
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim_end).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_rollout_conflict_delete_and_lease() {
    let fake = FakeApiServer::builder().real_time(Duration::from_millis(50)).build();
    let Some(cluster) = Cluster::start(fake).await else { return };

    // `create namespace` sends protobuf.
    let created = cluster.kubectl(&["create", "namespace", "ns1"]).await;
    assert_eq!((created.code, created.stdout.trim()), (0, "namespace/ns1 created"));

    let file = cluster.write("app.yaml", &manifest(2));
    let apply = ["apply", "--server-side", "--field-manager=promote", "-n", "ns1", "-f", path_str(&file)];
    let first = cluster.kubectl(&apply).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        lines(&first.stdout),
        [
            "deployment.apps/web serverside-applied",
            "configmap/cfg serverside-applied",
            "service/web serverside-applied"
        ]
    );
    let patches = cluster.fake.requests().into_iter().filter(|r| r.method == "PATCH").collect::<Vec<_>>();
    assert_eq!(patches.len(), 3);
    assert!(patches.iter().all(|r| r.content_type == "application/apply-patch+yaml"
        && r.query.contains("fieldManager=promote")
        && r.query.contains("fieldValidation=Strict")
        && r.query.contains("force=false")));

    cluster.write("app.yaml", &manifest(3));
    let second = cluster.kubectl(&apply).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    let replicas = cluster.kubectl(&["get", "deploy", "web", "-n", "ns1", "-o", "jsonpath={.spec.replicas}"]).await;
    assert_eq!(replicas.stdout, "3");

    cluster.write("app.yaml", &manifest(5));
    let dry = cluster.kubectl(&[&apply[..], &["--dry-run=server"]].concat()).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(lines(&dry.stdout)[0], "deployment.apps/web serverside-applied (server dry run)");
    let still = cluster.kubectl(&["get", "deploy", "web", "-n", "ns1", "-o", "jsonpath={.spec.replicas}"]).await;
    assert_eq!(still.stdout, "3", "a server dry run stores nothing");

    let rollout = cluster.kubectl(&["rollout", "status", "deployment/web", "-n", "ns1", "--timeout=60s"]).await;
    assert_eq!(rollout.code, 0, "{}", rollout.stderr);
    assert_eq!(lines(&rollout.stdout).last(), Some(&"deployment \"web\" successfully rolled out"));

    let table = cluster.kubectl(&["get", "deployments", "-n", "ns1"]).await;
    let table_lines = lines(&table.stdout);
    let header: Vec<&str> = table_lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    let row: Vec<&str> = table_lines[1].split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "3/3", "3", "3"]);

    let pods = cluster.kubectl(&["get", "pods", "-n", "ns1"]).await;
    assert_eq!(lines(&pods.stdout).len(), 4, "a header and three pods");
    assert!(lines(&pods.stdout)[1..].iter().all(|l| l.contains("1/1") && l.contains("Running")));

    let yaml = cluster.kubectl(&["get", "deploy", "web", "-n", "ns1", "-o", "yaml"]).await;
    assert!(yaml.stdout.contains("kind: Deployment") && yaml.stdout.contains("replicas: 3"));
    assert!(yaml.stdout.contains("deployment.kubernetes.io/revision: \"1\""));
    assert!(!yaml.stdout.contains("managedFields"), "kubectl hides managedFields");

    // Another manager setting the replicas promote owns: the conflict as kubectl prints it.
    cluster.write("other.yaml", &manifest(4));
    let other_file = cluster.dir.path().join("other.yaml");
    let conflict = cluster
        .kubectl(&["apply", "--server-side", "--field-manager=other", "-n", "ns1", "-f", path_str(&other_file)])
        .await;
    assert_eq!(conflict.code, 1);
    assert!(
        conflict.stderr.contains("Apply failed with 1 conflict: conflict with \"promote\": .spec.replicas"),
        "{}",
        conflict.stderr
    );
    assert!(conflict.stderr.contains("--force-conflicts"));
    let forced = cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-n",
            "ns1",
            "-f",
            path_str(&other_file),
        ])
        .await;
    assert_eq!(forced.code, 0, "{}", forced.stderr);

    let deleted = cluster.kubectl(&["delete", "configmap", "cfg", "-n", "ns1"]).await;
    assert_eq!((deleted.code, deleted.stdout.trim()), (0, "configmap \"cfg\" deleted"));
    let gone = cluster.kubectl(&["get", "configmap", "cfg", "-n", "ns1"]).await;
    assert_eq!(gone.code, 1);
    assert_eq!(gone.stderr.trim(), "Error from server (NotFound): configmaps \"cfg\" not found");

    let lease = cluster.write(
        "lease.yaml",
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: promote-stg\nspec:\n  holderIdentity: runner-1\n  leaseDurationSeconds: 30\n",
    );
    let applied = cluster
        .kubectl(&["apply", "--server-side", "--field-manager=promote", "-n", "ns1", "-f", path_str(&lease)])
        .await;
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let leases = cluster.kubectl(&["get", "lease", "-n", "ns1"]).await;
    let lease_lines = lines(&leases.stdout);
    assert_eq!(lease_lines[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "HOLDER", "AGE"]);
    assert_eq!(lease_lines[1].split_whitespace().take(2).collect::<Vec<_>>(), ["promote-stg", "runner-1"]);

    let empty = cluster.kubectl(&["get", "statefulsets", "-n", "ns1"]).await;
    assert_eq!((empty.code, empty.stderr.trim()), (0, "No resources found in ns1 namespace."));
}

fn stuck_deployment(name: &str, image: &str, deadline: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  progressDeadlineSeconds: {deadline}\n  \
         selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      \
         containers:\n      - name: app\n        image: {image}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_waits_for_slow_pods_and_reports_an_exceeded_deadline() {
    let fake = FakeApiServer::builder()
        .real_time(Duration::from_millis(50))
        .namespaces(&["default", "ns1"])
        .pod_outcome("registry.local/slow:*", PodOutcome::Slow(Duration::from_secs(3)))
        .pod_outcome("registry.local/never:*", PodOutcome::NeverReady)
        .build();
    let Some(cluster) = Cluster::start(fake).await else { return };
    let file = cluster.write(
        "both.yaml",
        &format!(
            "{}---\n{}",
            stuck_deployment("slow", "registry.local/slow:1", 600),
            stuck_deployment("stuck", "registry.local/never:1", 2)
        ),
    );
    let applied = cluster
        .kubectl(&["apply", "--server-side", "--field-manager=promote", "-n", "ns1", "-f", path_str(&file)])
        .await;
    assert_eq!(applied.code, 0, "{}", applied.stderr);

    let slow = cluster.kubectl(&["rollout", "status", "deployment/slow", "-n", "ns1", "--timeout=60s"]).await;
    assert_eq!(slow.code, 0, "{}", slow.stderr);
    let slow_lines = lines(&slow.stdout);
    assert!(
        slow_lines
            .contains(&"Waiting for deployment \"slow\" rollout to finish: 0 of 1 updated replicas are available..."),
        "{}",
        slow.stdout
    );
    assert_eq!(slow_lines.last(), Some(&"deployment \"slow\" successfully rolled out"));

    let stuck = cluster.kubectl(&["rollout", "status", "deployment/stuck", "-n", "ns1", "--timeout=60s"]).await;
    assert_eq!(stuck.code, 1);
    assert_eq!(stuck.stderr.trim(), "error: deployment \"stuck\" exceeded its progress deadline");
}
