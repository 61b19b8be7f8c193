//! A pull request's promote.yaml, templates and config files, written by an attacker, loaded and planned
//! under the untrusted policy on a runner that holds secrets.
//!
//! The runner's secrets are planted in the process environment, in a config source and as a registry
//! credential. The test runs in a child process (this test binary run again), so that it can plant
//! environment variables without `unsafe` and capture every log record, the `log` bridge included, at
//! TRACE. Afterwards no output, error, log line, event, ledger entry or file holds any of the secrets,
//! nothing was written outside the spec's directory, and a loopback trap server that the spec aims at saw
//! no request.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use promote_core::manifest::OCI_MANIFEST;
use promote_core::spec::SpecPolicy;
use promote_core::testing::leak::CapturedLogs;
use promote_core::{BuildRequest, Error, MemoryArtifactStore, Secret, SpecRegistry};

const CHILD: &str = "PROMOTE_HOSTILE_PR_CHILD";
/// What the runner holds: a cloud key and a CI token in its environment, a database password in its
/// (PROMOTE_-prefixed, legitimately readable) config, a registry password held by the process.
const AWS_KEY: &str = "AKIAcanary-aws-9d41e7";
const CI_TOKEN: &str = "ghp_canary-ci-5b27c0";
const DB_PASSWORD: &str = "db-canary-pass-71f3a8";
const REGISTRY_PASSWORD: &str = "registry-canary-0e6d52";

#[test]
fn a_hostile_pull_request_gets_nothing() {
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new(exe)
        .args(["--exact", "hostile_child", "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .env("AWS_SECRET_ACCESS_KEY", AWS_KEY)
        .env("CI_JOB_TOKEN", CI_TOKEN)
        .env("PROMOTE_DEV_DB_PASSWORD", DB_PASSWORD)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stdout.contains("1 passed"), "the child run failed:\n{stdout}\n{stderr}");
    for canary in [AWS_KEY, CI_TOKEN, DB_PASSWORD, REGISTRY_PASSWORD] {
        assert!(!stdout.contains(canary) && !stderr.contains(canary), "{canary} reached the child's output");
    }
}

/// A loopback server that counts connections: the attacker's "metadata endpoint" and exfiltration host.
fn trap() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (address.to_string(), hits)
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                found.push(path);
            }
        }
    }
    found
}

const BASE: &str = "pipeline: shop
store: { kind: memory }
ledger: { kind: file, path: state/ledger.jsonl }
lock: { kind: file, dir: state/locks }
templates: manifests
deployer: { kind: directory, root: deploy }
stages:
  - name: dev
    config:
      - { kind: env, secret_keys: [DB_PASSWORD] }
";

/// Specs that try to act with the runner's authority or read what it can read: each is refused at load,
/// naming the file, line and key, before anything runs.
fn hostile_specs(trap: &str) -> Vec<(&'static str, String, &'static str)> {
    let stage_extra = |extra: &str| format!("{BASE}{extra}");
    vec![
        (
            "a command gate that runs `env`",
            stage_extra("    gates:\n      - { kind: command, program: env, safe_for_plan: true }\n"),
            "stages[0].gates[0]",
        ),
        (
            "an http gate aimed at a metadata endpoint",
            stage_extra(&format!("    gates:\n      - {{ kind: http, url: \"http://{trap}/latest/meta-data/\" }}\n")),
            "stages[0].gates[0]",
        ),
        (
            "an http gate nested in a composite",
            stage_extra(&format!(
                "    gates:\n      - {{ kind: any, gates: [{{ kind: http, url: \"http://{trap}/\" }}] }}\n"
            )),
            "stages[0].gates[0].gates[0]",
        ),
        (
            "an env source reading any prefix",
            stage_extra("      - { kind: env, prefix: \"CI_\" }\n"),
            "stages[0].config[1].prefix",
        ),
        (
            "an env source reading every AWS_ variable",
            stage_extra("      - { kind: env, prefix: \"AWS_\", secret: true }\n"),
            "stages[0].config[1].prefix",
        ),
        (
            "a file source reading the process environment",
            stage_extra("      - { kind: file, path: /proc/self/environ, format: dotenv }\n"),
            "stages[0].config[1].path",
        ),
        (
            "a file source climbing out of the repository",
            stage_extra("      - { kind: file, path: ../../../../etc/os-release, format: dotenv }\n"),
            "stages[0].config[1].path",
        ),
        (
            "a file source through a symlink",
            stage_extra("      - { kind: file, path: escape/os-release, format: dotenv }\n"),
            "stages[0].config[1].path",
        ),
        (
            "a dotenv source allowed to read the environment",
            stage_extra("      - { kind: file, path: config/dev.env, substitute_env: true }\n"),
            "stages[0].config[1].substitute_env",
        ),
        (
            "a ledger written outside the repository",
            BASE.replace("path: state/ledger.jsonl", "path: ../outside/ledger.jsonl"),
            "ledger.path",
        ),
        ("a deploy root outside the repository", BASE.replace("root: deploy", "root: /tmp/x"), "deployer.root"),
        ("templates outside the repository", BASE.replace("templates: manifests", "templates: /etc"), "templates"),
        (
            "a placement on the attacker's registry",
            stage_extra(&format!("    placement: {{ registry: \"{trap}\" }}\n")),
            "stages[0].placement.registry",
        ),
    ]
}

/// Templates and config files that try to make a secret leak through errors, logs or substitution; the
/// spec itself is acceptable. Each is planned, and refused or rendered without a leak.
fn hostile_files() -> Vec<(&'static str, &'static str, &'static str)> {
    let head = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n";
    let t = |body: &'static str| -> &'static str { Box::leak(format!("{head}{body}").into_boxed_str()) };
    vec![
        ("required whose message is the secret", t("  x: {{required config.NOT_SET config.DB_PASSWORD}}\n"), ""),
        ("a partial named by the secret", t("  x: {{> (lookup config \"DB_PASSWORD\")}}\n"), ""),
        ("the log helper", t("  x: {{log config.DB_PASSWORD}}\n"), ""),
        ("a self-recursive inline partial", t("{{#*inline \"p\"}}{{> p}}{{/inline}}  x: {{> p}}\n"), ""),
        ("a huge indent", t("  x: {{indent 100000000000 \"x\"}}\n"), ""),
        ("the secret in an error's quoted value", t("  x: {{indent config.DB_PASSWORD \"x\"}}\n"), ""),
        ("dotenv copying the AWS key", t("  x: {{config.STOLEN}}\n"), "STOLEN=${AWS_SECRET_ACCESS_KEY}\n"),
        ("dotenv copying the CI token, braces off", t("  x: {{config.STOLEN}}\n"), "STOLEN=\"$CI_JOB_TOKEN\"\n"),
        (
            "the secret as the object's name",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{config.DB_PASSWORD}}\n",
            "",
        ),
    ]
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_child() {
    if std::env::var_os(CHILD).is_none() {
        // Only the child run of `a_hostile_pull_request_gets_nothing` does the work.
        return;
    }
    let logs = CapturedLogs::install();
    let (trap_address, trap_hits) = trap();
    // A registry credential the process holds, as promote-oci holds the docker config's passwords.
    let _registry_password = Secret::new(REGISTRY_PASSWORD);
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::os::unix::fs::symlink("/etc", repo.join("escape")).unwrap();
    write(&repo, "config/dev.env", "A=1\n");
    let mut shown = Vec::<String>::new();

    let policy = SpecPolicy::untrusted().allow_registry("memory.local");
    let registry = SpecRegistry::with_defaults().with_policy(policy.clone());
    for (what, spec, key) in hostile_specs(&trap_address) {
        write(&repo, "manifests/app.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n");
        write(&repo, "promote.yaml", &spec);
        match registry.load_file(repo.join("promote.yaml"), None).await {
            Err(error @ Error::Spec { .. }) => {
                let Error::Spec { key: refused, location, .. } = &error else { unreachable!() };
                assert!(refused.starts_with(key), "{what}: refused at {refused}, expected {key}: {error}");
                assert!(location.line.is_some(), "{what}: the error names the line: {error}");
                shown.push(format!("{error} {error:?}"));
            }
            Err(other) => panic!("{what}: expected a spec error, got {other:?}"),
            Ok(_) => panic!("{what}: the hostile spec loaded"),
        }
    }

    // Specs the policy accepts, with hostile templates and config files: plan and promote them.
    let images = MemoryArtifactStore::new();
    let image: promote_core::ArtifactRef = "memory.local/shop/web:abc1234".parse().unwrap();
    images.push(image.clone(), OCI_MANIFEST, br#"{"schemaVersion":2}"#.to_vec()).unwrap();
    let registry = registry.with_memory_store(images);
    for (what, template, dotenv) in hostile_files() {
        write(&repo, "manifests/app.yaml", template);
        let mut spec = BASE.to_owned();
        if !dotenv.is_empty() {
            write(&repo, "config/dev.env", dotenv);
            spec.push_str("      - { kind: file, path: config/dev.env }\n");
        }
        write(&repo, "promote.yaml", &spec);
        let pipeline = match registry.load_file(repo.join("promote.yaml"), None).await {
            Ok(pipeline) => pipeline,
            Err(error) => {
                // Refused at load (partials, decorators, the log helper): it says why, and no value.
                shown.push(format!("{what}: {error} {error:?}"));
                continue;
            }
        };
        let mut events = pipeline.subscribe();
        let build = pipeline.register(BuildRequest::new("abc1234").artifact("web", image.clone()), "pr").await.unwrap();
        match pipeline.plan(&build.id, "dev", "pr").await {
            Ok(plan) => shown.push(format!("{what}: {plan:?} {}", serde_json::to_string(&plan).unwrap())),
            Err(error) => shown.push(format!("{what}: {error} {error:?}")),
        }
        match pipeline.promote(&build.id, "dev", "pr").await {
            Ok(record) => shown.push(format!("{what}: {record:?}")),
            Err(error) => shown.push(format!("{what}: {error} {error:?}")),
        }
        while let Ok(event) = events.try_recv() {
            shown.push(format!("{event:?} {}", serde_json::to_string(&event).unwrap()));
        }
        for record in pipeline.history(None).await.unwrap() {
            shown.push(serde_json::to_string(&record).unwrap());
        }
    }

    let logs = logs.text();
    assert!(logs.contains("handlebars") && logs.contains("TRACE"), "the capture saw the template engine at TRACE");
    shown.push(logs);
    // The state and deploy directories: ledger, checkpoint, locks, rendered files.
    for path in files_under(&repo) {
        shown.push(String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned());
    }
    for text in &shown {
        for canary in [AWS_KEY, CI_TOKEN, DB_PASSWORD, REGISTRY_PASSWORD] {
            if let Some(at) = text.find(canary) {
                let start = text[..at].char_indices().rev().nth(120).map_or(0, |(i, _)| i);
                panic!("{canary} leaked: …{}…", &text[start..at + canary.len()]);
            }
        }
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing was written outside the repository");
    assert_eq!(trap_hits.load(Ordering::SeqCst), 0, "the trap server saw no request");
}
