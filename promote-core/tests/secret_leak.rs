//! A known secret value goes through full promotions, failures and plans with every output captured:
//! TRACE-level tracing, engine events (Debug and JSON), error strings, the ledger file and its
//! checkpoint, records, status and plans. The value (and its base64) must appear nowhere but in the
//! deployed files of the one stage that allows plain-text secrets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use promote_core::deploy::HealthScript;
use promote_core::manifest::OCI_MANIFEST;
use promote_core::testing::leak::{CapturedLogs, leak_forms};
use promote_core::{
    BuildRequest, Deployer, DirectoryDeployer, Error, FileLedger, MemoryArtifactStore, MemoryConfigSource,
    MemoryDeployer, Pipeline, Secret, Stage, Templates, Upstream,
};

const SECRET: &str = "Zq8-leak-canary-7d1e0b";

fn logs_text() -> String {
    CapturedLogs::install().text()
}

fn assert_absent(what: &str, text: &str) {
    for form in leak_forms(SECRET) {
        assert!(!text.contains(&form), "the secret leaked into {what}: …{}…", excerpt(text, &form));
    }
}

fn excerpt(text: &str, form: &str) -> String {
    let at = text.find(form).unwrap_or(0);
    let start = text[..at].char_indices().rev().nth(80).map_or(0, |(i, _)| i);
    text[start..(at + form.len()).min(text.len())].to_owned()
}

#[test]
fn a_secret_recorded_as_a_tracing_field_is_redacted() {
    let logs = CapturedLogs::install();
    let secret = Secret::new("tr4ce-field-canary");
    let span = tracing::trace_span!("deploying", password = %secret);
    span.in_scope(|| {
        tracing::trace!(password = %secret, debug = ?secret, "using the password");
        tracing::event!(tracing::Level::TRACE, secret = tracing::field::display(&secret));
    });
    let text = logs.text();
    assert!(text.contains("using the password"), "the event was captured at TRACE: {text}");
    assert!(text.contains("password=[redacted]") && text.contains("debug=Secret([redacted])"), "{text}");
    assert!(!text.contains("tr4ce-field-canary"), "{text}");
}

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
          env:
            - { name: DB_URL, value: {{quote config.DB_URL}} }
---
apiVersion: v1
kind: Secret
metadata:
  name: db
data:
  password: {{b64enc (required config.DB_PASSWORD \"the database password\")}}
stringData:
  quoted: {{quote config.DB_PASSWORD}}
";

struct Outputs {
    texts: Vec<(String, String)>,
}

impl Outputs {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.texts.push((what.into(), text.into()));
    }

    fn error(&mut self, what: &str, error: &Error) {
        self.add(format!("{what} (Display)"), error.to_string());
        self.add(format!("{what} (Debug)"), format!("{error:?}"));
    }
}

/// Every file under `dir`, except those under `except`.
fn files_under(dir: &Path, except: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.starts_with(except) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_only_the_stage_that_allows_it() {
    CapturedLogs::install();
    let state = tempfile::tempdir().unwrap();
    let deploy_root = state.path().join("deploy");
    let store = MemoryArtifactStore::new();
    let config = MemoryConfigSource::new("vault");
    for stage in ["dev", "stg", "qa", "prd"] {
        config.set(stage, "REPLICAS", "2").set(stage, "DB_URL", "postgres://db.internal/shop");
        if stage != "prd" {
            // prd lacks the password: its render must fail naming the key.
            config.set_secret(stage, "DB_PASSWORD", SECRET);
        }
    }
    let templates = Templates::from_sources([("manifests/app.yaml", TEMPLATE)]).unwrap();
    let failing = MemoryDeployer::new();
    failing.script("qa", [HealthScript::Fails("CrashLoopBackOff".into())]);
    let stage = |name: &str, deployer: Arc<dyn Deployer>| {
        Stage::new(name).config_source(config.clone()).templates(templates.clone()).deployer(deployer)
    };
    let ledger = Arc::new(FileLedger::open(state.path().join("ledger.jsonl")).await.unwrap());
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store.clone()))
        .ledger(ledger.clone())
        .stage(stage("dev", Arc::new(DirectoryDeployer::new(&deploy_root).allow_plaintext_secrets(true))))
        .stage(stage("stg", Arc::new(DirectoryDeployer::new(&deploy_root))))
        .stage(stage("qa", Arc::new(failing)).upstream(Upstream::AllOf(vec!["dev".into()])))
        .stage(stage("prd", Arc::new(MemoryDeployer::new())).upstream(Upstream::AllOf(vec!["dev".into()])))
        .build()
        .unwrap();
    let mut events = pipeline.subscribe();
    let mut outputs = Outputs { texts: Vec::new() };

    let commit = "abcdef0123456789abcdef0123456789abcdef01";
    let body = format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\"}}");
    store.push("memory.local/shop/web:abcdef0".parse().unwrap(), OCI_MANIFEST, body.into_bytes()).unwrap();
    let build = pipeline
        .register(BuildRequest::new(commit).artifact("web", "memory.local/shop/web:abcdef0".parse().unwrap()), "ci")
        .await
        .unwrap();

    // dev allows plain-text secrets: the promotion succeeds and the files hold the value.
    let plan = pipeline.plan(&build.id, "dev", "dana").await.unwrap();
    assert!(plan.diff.contains("password: W3JlZGFjdGVkXQ=="), "the plan shows the masked value: {}", plan.diff);
    outputs.add("dev plan diff", plan.diff.clone());
    outputs.add("dev plan (Debug)", format!("{plan:?}"));
    outputs.add("dev plan (JSON)", serde_json::to_string(&plan).unwrap());
    let record = pipeline.promote(&build.id, "dev", "dana").await.unwrap();
    assert!(record.state.succeeded());
    let dev_files = std::fs::read_to_string(deploy_root.join("dev/secret-db.yaml")).unwrap();
    assert!(dev_files.contains(&leak_forms(SECRET)[1]), "dev's Secret holds the real (base64) value");
    let again = pipeline.plan(&build.id, "dev", "dana").await.unwrap();
    assert!(again.diff.is_empty() || !again.diff.contains("\n+"), "nothing changes: {}", again.diff);
    outputs.add("dev re-plan", format!("{} {again:?}", again.diff));

    // stg does not: the deploy is refused, naming the object and no value.
    let refused = pipeline.promote(&build.id, "stg", "dana").await.unwrap_err();
    assert!(matches!(&refused, Error::DeployFailed { reason, .. } if reason.contains("Secret/db")), "{refused}");
    outputs.error("stg refusal", &refused);
    let stg_plan = pipeline.plan(&build.id, "stg", "dana").await.unwrap_err();
    outputs.error("stg plan", &stg_plan);
    assert!(!deploy_root.join("stg/secret-db.yaml").exists(), "stg got no Secret file");

    // qa's deploy fails its health check.
    let failed = pipeline.promote(&build.id, "qa", "dana").await.unwrap_err();
    assert!(failed.to_string().contains("CrashLoopBackOff"), "{failed}");
    outputs.error("qa failure", &failed);

    // prd lacks the key: the render fails naming it and the template line.
    let missing = pipeline.promote(&build.id, "prd", "dana").await.unwrap_err();
    let message = missing.to_string();
    assert!(message.contains("manifests/app.yaml:20") && message.contains("DB_PASSWORD"), "{message}");
    outputs.error("prd missing key", &missing);
    let prd_plan = pipeline.plan(&build.id, "prd", "dana").await.unwrap_err();
    outputs.error("prd plan", &prd_plan);

    // Rolling dev forward and back exercises the masked read-back of the written files.
    let rollback = pipeline.rollback(Some(&build.id), "dev", "oncall").await;
    outputs.add("dev rollback", format!("{rollback:?}"));

    while let Ok(event) = events.try_recv() {
        outputs.add("event (Debug)", format!("{event:?}"));
        outputs.add("event (JSON)", serde_json::to_string(&event).unwrap());
    }
    for record in pipeline.history(None).await.unwrap() {
        outputs.add("record (Debug)", format!("{record:?}"));
        outputs.add("record (JSON)", serde_json::to_string(&record).unwrap());
    }
    outputs.add("status", format!("{:?}", pipeline.status().await.unwrap()));
    outputs.add("view", format!("{:?}", pipeline.view().await.unwrap()));
    outputs.add("logs", logs_text());
    assert!(logs_text().contains("promotion"), "TRACE logs of the engine were captured");
    assert!(logs_text().contains("handlebars"), "the template engine's own log records were captured");
    // promote's own per-step detail is there at DEBUG and TRACE, with no values.
    for detail in
        ["lock acquired", "lock released", "token=", "artifact placed", "ledger entries appended", "first_seq="]
    {
        assert!(logs_text().contains(detail), "the TRACE log shows `{detail}`");
    }

    for (what, text) in &outputs.texts {
        assert_absent(what, text);
    }
    // Every file written outside dev's deploy directory: the ledger and its checkpoint, the stg directory,
    // the index files.
    ledger.checkpoint().await.unwrap();
    let dev_dir = deploy_root.join("dev");
    let others = files_under(state.path(), &dev_dir);
    assert!(others.iter().any(|p| p.ends_with("ledger.jsonl")), "{others:?}");
    assert!(others.iter().any(|p| p.ends_with("ledger.jsonl.checkpoint")), "{others:?}");
    for path in others {
        assert_absent(&path.display().to_string(), &String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
    }
    assert_absent("dev's index", &std::fs::read_to_string(dev_dir.join(promote_core::deploy::INDEX_FILE)).unwrap());
}
