//! The directory (GitOps) deployer: layout, atomic ownership of its files, refusal of plain-text secrets,
//! reading back, and `plan` diffs against what it wrote.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use promote_core::deploy::{ApplyMode, ChangeAction, INDEX_FILE, RenderedObject};
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{
    Build, BuildRequest, Bundle, Deployer, DirectoryDeployer, Error, MemoryArtifactStore, MemoryConfigSource,
    MemoryLedger, Pipeline, SpecRegistry, Stage, Templates, conformance,
};

fn object(kind: &str, name: &str, namespace: Option<&str>, body: &str, secret: Option<&str>) -> RenderedObject {
    let ns = namespace.map_or(String::new(), |ns| format!("  namespace: {ns}\n"));
    let content = format!("apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {name}\n{ns}{body}");
    let masked = match secret {
        Some(value) => content.replace(value, "[redacted]"),
        None => content.clone(),
    };
    RenderedObject::new(
        "v1".into(),
        kind.into(),
        name.into(),
        namespace.map(Into::into),
        "app.yaml".into(),
        content,
        masked,
    )
}

fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn passes_the_deployer_conformance_suite() {
    let root = tempfile::tempdir().unwrap();
    conformance::deployer(Arc::new(DirectoryDeployer::new(root.path())), "conformance").await;
}

#[tokio::test]
async fn writes_one_file_per_object_and_prunes_only_its_own_files() {
    let root = tempfile::tempdir().unwrap();
    let deployer = DirectoryDeployer::new(root.path().join("deploy"));
    let first = Bundle::new(
        "dev",
        vec![
            object("Namespace", "shop", None, "", None),
            object("ConfigMap", "web", Some("shop"), "data:\n  a: \"1\"\n", None),
            object("Service", "web", Some("shop"), "spec: {}\n", None),
            object("ConfigMap", "tools", Some("ops"), "data: {}\n", None),
        ],
    );
    let changes = deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    assert!(changes.iter().all(|c| c.action == ChangeAction::Create), "{changes:?}");
    let dev = root.path().join("deploy/dev");
    assert_eq!(
        files(&dev),
        [
            INDEX_FILE,
            "namespace-shop.yaml",
            "ops/configmap-tools.yaml",
            "shop/configmap-web.yaml",
            "shop/service-web.yaml"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(dev.join("shop/configmap-web.yaml")).unwrap(),
        first.objects()[1].expose_content(),
        "a file holds the rendered document exactly"
    );
    // A file someone else keeps there (a kustomization for the GitOps tool) is not the deployer's.
    std::fs::write(dev.join("kustomization.yaml"), "resources: []\n").unwrap();
    std::fs::write(dev.join("shop/notes.txt"), "mine\n").unwrap();

    let second = Bundle::new("dev", vec![object("ConfigMap", "web", Some("shop"), "data:\n  a: \"2\"\n", None)]);
    let planned = deployer.apply(&second, ApplyMode::DryRun).await.unwrap();
    assert_eq!(files(&dev).len(), 7, "a dry run writes nothing");
    let changes = deployer.apply(&second, ApplyMode::Apply).await.unwrap();
    assert_eq!(planned, changes, "a dry run reports what the apply then does");
    let mut actions: Vec<_> = changes.iter().map(|c| (c.object.as_str(), c.action)).collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            ("ConfigMap/ops/tools", ChangeAction::Delete),
            ("ConfigMap/shop/web", ChangeAction::Update),
            ("Namespace/shop", ChangeAction::Delete),
            ("Service/shop/web", ChangeAction::Delete),
        ]
    );
    assert_eq!(
        files(&dev),
        [INDEX_FILE, "kustomization.yaml", "shop/configmap-web.yaml", "shop/notes.txt"],
        "stale files go, the emptied namespace directory goes, files it did not write stay"
    );
    assert!(!files(&dev).iter().any(|f| f.contains(".promote-tmp-")), "no temporary file is left behind");
    assert_eq!(deployer.current("dev").await.unwrap().unwrap().hash(), second.hash());
    assert!(deployer.current("stg").await.unwrap().is_none(), "stages are separate directories");
}

#[tokio::test]
async fn refuses_plain_text_secrets_unless_the_stage_allows_them() {
    let root = tempfile::tempdir().unwrap();
    let secret_value = "hunter2-do-not-write";
    let kube_secret =
        object("Secret", "db", Some("shop"), "stringData:\n  password: hunter2-do-not-write\n", Some(secret_value));
    let env_holding_secret = object(
        "ConfigMap",
        "web",
        None,
        "data:\n  DB_URL: postgres://app:hunter2-do-not-write@db\n",
        Some(secret_value),
    );
    let sealed = object("ConfigMap", "plain", None, "data: {}\n", None);
    let strict = DirectoryDeployer::new(root.path());

    for refused in [kube_secret.clone(), env_holding_secret.clone()] {
        let key = refused.object_key();
        let bundle = Bundle::new("prd", vec![sealed.clone(), refused]);
        for mode in [ApplyMode::DryRun, ApplyMode::Apply] {
            match strict.apply(&bundle, mode).await {
                Err(error @ Error::DeployFailed { .. }) => {
                    let message = error.to_string();
                    assert!(message.contains(&key) && message.contains("allow_plaintext_secrets"), "{message}");
                    assert!(!message.contains(secret_value), "{message}");
                }
                other => panic!("{key} must be refused, got {other:?}"),
            }
        }
        assert!(!root.path().join("prd").exists(), "nothing of a refused bundle is written");
    }
    // A Secret whose values are not from the config is still a Secret.
    let literal = object("Secret", "literal", None, "stringData:\n  a: b\n", None);
    assert!(strict.apply(&Bundle::new("prd", vec![literal]), ApplyMode::Apply).await.is_err());

    let allowing = DirectoryDeployer::new(root.path()).allow_plaintext_secrets(true);
    let bundle = Bundle::new("dev", vec![kube_secret, env_holding_secret]);
    allowing.apply(&bundle, ApplyMode::Apply).await.unwrap();
    let written = std::fs::read_to_string(root.path().join("dev/shop/secret-db.yaml")).unwrap();
    assert!(written.contains(secret_value), "the stage that allows it gets the real value");

    // Reading back never shows the value: the masked form comes from the index.
    let current = allowing.current("dev").await.unwrap().unwrap();
    assert_eq!(current.hash(), bundle.hash());
    assert!(!current.masked_text().contains(secret_value), "{}", current.masked_text());
    assert!(current.masked_text().contains("password: [redacted]"), "{}", current.masked_text());
    let index = std::fs::read_to_string(root.path().join("dev").join(INDEX_FILE)).unwrap();
    assert!(!index.contains(secret_value), "the index holds no value: {index}");
    assert!(!format!("{current:?} {:?}", allowing.status("dev").await.unwrap()).contains(secret_value));
}

#[tokio::test]
async fn a_file_changed_outside_promote_is_shown_as_changed_never_as_content() {
    let root = tempfile::tempdir().unwrap();
    let deployer = DirectoryDeployer::new(root.path()).allow_plaintext_secrets(true);
    let bundle = Bundle::new("dev", vec![object("ConfigMap", "web", None, "data:\n  a: \"1\"\n", None)]);
    deployer.apply(&bundle, ApplyMode::Apply).await.unwrap();
    assert!(
        deployer.wait_healthy(&bundle, Duration::from_secs(1), &promote_core::progress::Progress::none()).await.is_ok()
    );

    let file = root.path().join("dev/configmap-web.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  token: hand-pasted-s3cret\n",
    )
    .unwrap();
    let current = deployer.current("dev").await.unwrap().unwrap();
    assert_ne!(current.hash(), bundle.hash());
    assert!(current.masked_text().contains("changed outside promote"), "{}", current.masked_text());
    assert!(!current.masked_text().contains("hand-pasted-s3cret"));
    let error = deployer
        .wait_healthy(&bundle, Duration::from_secs(1), &promote_core::progress::Progress::none())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::DeployFailed { .. }), "{error}");

    // Re-applying puts the bundle back; a removed file is created again.
    let changes = deployer.apply(&bundle, ApplyMode::Apply).await.unwrap();
    assert_eq!(changes[0].action, ChangeAction::Update);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(deployer.apply(&bundle, ApplyMode::Apply).await.unwrap()[0].action, ChangeAction::Create);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), bundle.objects()[0].expose_content());
}

#[tokio::test]
async fn files_an_interrupted_apply_was_writing_stay_owned() {
    let root = tempfile::tempdir().unwrap();
    let deployer = DirectoryDeployer::new(root.path());
    let bundle = Bundle::new("dev", vec![object("ConfigMap", "a", None, "data: {}\n", None)]);
    deployer.apply(&bundle, ApplyMode::Apply).await.unwrap();
    // What a crash after the intent was recorded leaves: a new file listed as pending, not yet an object.
    let dev = root.path().join("dev");
    let index_path = dev.join(INDEX_FILE);
    let mut index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    index["pending"] = serde_json::json!(["configmap-half.yaml"]);
    std::fs::write(&index_path, index.to_string()).unwrap();
    std::fs::write(dev.join("configmap-half.yaml"), "apiVersion: v1\nkind: ConfigMap\n").unwrap();
    assert_eq!(deployer.current("dev").await.unwrap().unwrap().hash(), bundle.hash());

    let next = Bundle::new("dev", vec![object("ConfigMap", "b", None, "data: {}\n", None)]);
    deployer.apply(&next, ApplyMode::Apply).await.unwrap();
    assert_eq!(files(&dev), [INDEX_FILE, "configmap-b.yaml"]);
}

#[tokio::test]
async fn object_names_cannot_escape_the_stage_directory() {
    let root = tempfile::tempdir().unwrap();
    let deployer = DirectoryDeployer::new(root.path().join("deploy"));
    for (name, namespace) in [("../../etc", None), ("ok", Some("..")), (".hidden", None)] {
        let bundle = Bundle::new("dev", vec![object("ConfigMap", name, namespace, "data: {}\n", None)]);
        let error = deployer.apply(&bundle, ApplyMode::Apply).await.unwrap_err();
        assert!(matches!(error, Error::InvalidInput { .. }), "{name}: {error}");
    }
    assert!(!root.path().join("deploy").exists());
}

#[tokio::test]
async fn health_is_not_observed_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let deployer = DirectoryDeployer::new(root.path());
    assert!(!deployer.capabilities().health && deployer.capabilities().dry_run && deployer.capabilities().prune);
    let bundle = Bundle::new("dev", vec![object("ConfigMap", "a", None, "data: {}\n", None)]);
    deployer.apply(&bundle, ApplyMode::Apply).await.unwrap();
    let summary = deployer
        .wait_healthy(&bundle, Duration::from_secs(1), &promote_core::progress::Progress::none())
        .await
        .unwrap();
    assert!(summary.contains("wrote 1 objects") && summary.contains("GitOps"), "{summary}");
    let status = deployer.status("dev").await.unwrap();
    assert_eq!(status.healthy, None);
    assert_eq!(status.objects, ["ConfigMap/a"]);
    assert_eq!(status.bundle_hash.as_deref(), Some(bundle.hash()));
}

const TEMPLATE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: {{config.REPLICAS}}
  template:
    spec:
      containers:
        - name: web
          image: {{artifacts.web.image}}
          env:
            - { name: DB_PASSWORD, value: {{quote config.DB_PASSWORD}} }
";

async fn push_and_register(pipeline: &Pipeline, store: &MemoryArtifactStore, commit: &str) -> Build {
    let reference = format!("memory.local/shop/web:{}", &commit[..7]);
    let body =
        format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"c\":\"{commit}\"}}}}");
    store.push(reference.parse().unwrap(), OCI_MANIFEST, body.into_bytes()).unwrap();
    pipeline.register(BuildRequest::new(commit).artifact("web", reference.parse().unwrap()), "ci").await.unwrap()
}

#[tokio::test]
async fn plan_diffs_the_rendered_bundle_against_the_written_files_with_secrets_masked() {
    let root = tempfile::tempdir().unwrap();
    let store = MemoryArtifactStore::new();
    let config = MemoryConfigSource::new("vault");
    config.set("dev", "REPLICAS", "1").set_secret("dev", "DB_PASSWORD", "pl4n-s3cret");
    let deployer: Arc<dyn Deployer> = Arc::new(DirectoryDeployer::new(root.path()).allow_plaintext_secrets(true));
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store.clone()))
        .ledger(Arc::new(MemoryLedger::new()))
        .stage(
            Stage::new("dev")
                .config_source(config.clone())
                .templates(Templates::from_sources([("app.yaml", TEMPLATE)]).unwrap())
                .deployer(deployer),
        )
        .build()
        .unwrap();
    let v1 = push_and_register(&pipeline, &store, "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    let v2 = push_and_register(&pipeline, &store, "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb").await;

    let first = pipeline.plan(&v1.id, "dev", "dana").await.unwrap();
    assert!(first.diff.starts_with("--- dev (running)\n+++ dev (planned)\n"), "{}", first.diff);
    assert!(first.diff.contains("+# Deployment/shop/web\n"), "{}", first.diff);
    assert!(!root.path().join("dev").exists(), "plan writes nothing");

    let record = pipeline.promote(&v1.id, "dev", "dana").await.unwrap();
    let written = std::fs::read_to_string(root.path().join("dev/shop/deployment-web.yaml")).unwrap();
    assert!(written.contains(&format!("image: memory.local/shop/web@{}", v1.artifacts["web"].digest)), "{written}");
    assert!(written.contains("\"pl4n-s3cret\""), "{written}");
    assert_eq!(record.bundle_hash.as_deref(), deployer_hash(root.path()).await.as_deref());

    config.set("dev", "REPLICAS", "3").set_secret("dev", "DB_PASSWORD", "r0tated-s3cret");
    let plan = pipeline.plan(&v2.id, "dev", "dana").await.unwrap();
    let old_image = format!("image: memory.local/shop/web@{}", v1.artifacts["web"].digest);
    let new_image = format!("image: memory.local/shop/web@{}", v2.artifacts["web"].digest);
    assert!(plan.diff.contains(&format!("-          {old_image}\n+          {new_image}\n")), "{}", plan.diff);
    assert!(plan.diff.contains("-  replicas: 1\n+  replicas: 3\n"), "{}", plan.diff);
    assert!(
        !plan.diff.contains("DB_PASSWORD, value: \"[redacted]\" }\n+"),
        "a rotated secret is masked on both sides, so its line does not change: {}",
        plan.diff
    );
    let shown = format!("{} {plan:?} {}", plan.diff, serde_json::to_string(&plan).unwrap());
    assert!(!shown.contains("pl4n-s3cret") && !shown.contains("r0tated-s3cret"), "{shown}");
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].action, ChangeAction::Update);
}

async fn deployer_hash(root: &Path) -> Option<String> {
    DirectoryDeployer::new(root).status("dev").await.unwrap().bundle_hash
}

#[tokio::test]
async fn the_directory_kind_from_a_spec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    std::fs::write(
        dir.path().join("manifests/app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  stage: {{stage}}\n  image: {{artifacts.web.image}}\n",
    )
    .unwrap();
    let spec = "pipeline: shop\nstore: { kind: memory }\nledger: { kind: memory }\ntemplates: manifests\ndeployer: { kind: directory, root: deploy }\nstages:\n  - name: dev\n  - name: stg\n";
    std::fs::write(dir.path().join("promote.yaml"), spec).unwrap();
    let store = MemoryArtifactStore::new();
    let mut registry = SpecRegistry::with_defaults();
    let shared = store.clone();
    registry.register_store("memory", move |_| {
        let store = shared.clone();
        async move { Ok(Arc::new(store) as Arc<dyn promote_core::ArtifactStore>) }
    });
    let pipeline = registry.load_file(dir.path().join("promote.yaml"), None).await.unwrap();
    let build = push_and_register(&pipeline, &store, "3333333ccccccccccccccccccccccccccccccccc").await;
    for stage in ["dev", "stg"] {
        pipeline.promote(&build.id, stage, "ci").await.unwrap();
        let text = std::fs::read_to_string(dir.path().join(format!("deploy/{stage}/configmap-web.yaml"))).unwrap();
        assert!(text.contains(&format!("stage: {stage}\n")), "{text}");
    }

    let bad = spec.replace("root: deploy", "root: deploy, allow_plaintext_secret: true");
    let error = registry.load_str(&bad, Path::new("promote.yaml"), dir.path(), None).await.unwrap_err();
    match &error {
        Error::Spec { location, key, message } => {
            assert_eq!(location.line, Some(5), "{error}");
            assert!(key.starts_with("deployer") && message.contains("allow_plaintext_secret"), "{error}");
        }
        other => panic!("expected a spec error, got {other:?}"),
    }
}

const PRECIOUS: &str = "not the deployer's\n";

/// The error an index or directory the deployer must not act on gives: the file it names, and its text.
fn unsafe_file(error: &Error) -> (&Path, Option<usize>, String) {
    match error {
        Error::UnsafeFile { location, .. } => (location.file.as_path(), location.line, error.to_string()),
        other => panic!("expected an UnsafeFile error, got {other:?}"),
    }
}

/// Edits the stage's index with `edit` (as JSON), as someone with write access to the repository could.
fn edit_index(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(INDEX_FILE);
    let mut index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut index);
    std::fs::write(&path, serde_json::to_string_pretty(&index).unwrap()).unwrap();
}

/// The 1-based line of `path` that contains `needle`.
fn line_of(path: &Path, needle: &str) -> usize {
    line_where(path, |line| line.contains(needle))
}

/// The 1-based number of the first line of `path` for which `test` holds.
fn line_where(path: &Path, test: impl Fn(&str) -> bool) -> usize {
    std::fs::read_to_string(path).unwrap().lines().position(test).unwrap() + 1
}

#[tokio::test]
async fn an_index_listing_files_the_deployer_does_not_name_is_damaged_and_nothing_is_removed() {
    let root = tempfile::tempdir().unwrap();
    let deployer = DirectoryDeployer::new(root.path().join("deploy"));
    let web = object("ConfigMap", "web", None, "data: {}\n", None);
    for stage in ["dev", "prd"] {
        deployer.apply(&Bundle::new(stage, vec![web.clone()]), ApplyMode::Apply).await.unwrap();
    }
    let outside = root.path().join("outside.txt");
    std::fs::write(&outside, PRECIOUS).unwrap();
    let dev = root.path().join("deploy/dev");
    let prd_file = root.path().join("deploy/prd/configmap-web.yaml");
    let index_path = dev.join(INDEX_FILE);
    let good_index = std::fs::read_to_string(&index_path).unwrap();
    let next = Bundle::new("dev", vec![object("ConfigMap", "api", None, "data: {}\n", None)]);

    let outside_text = outside.display().to_string();
    let forged = [
        "../prd/configmap-web.yaml",
        outside_text.as_str(),
        "shop/../../prd/configmap-web.yaml",
        "../../outside.txt",
        "shop/sub/configmap-web.yaml",
        ".promote-index",
        "configmap-web.yml",
        "ConfigMap-web.yaml",
        "",
    ];
    for entry in forged {
        for field in ["pending", "file"] {
            std::fs::write(&index_path, &good_index).unwrap();
            edit_index(&dev, |index| match field {
                "pending" => index["pending"] = serde_json::json!([entry]),
                _ => index["objects"][0]["file"] = entry.into(),
            });
            for outcome in
                [deployer.apply(&next, ApplyMode::Apply).await.map(drop), deployer.current("dev").await.map(drop)]
            {
                let error = outcome.expect_err(entry);
                let (file, line, message) = unsafe_file(&error);
                assert_eq!(file, index_path, "{message}");
                let quoted = serde_json::to_string(entry).unwrap();
                let expected = match field {
                    "pending" => line_where(&index_path, |line| line.trim() == quoted),
                    _ => line_of(&index_path, &format!("\"file\": {quoted}")),
                };
                assert!(line.is_some_and(|line| line >= expected && line <= expected + 10), "{entry}: {message}");
                assert!(message.contains("damaged") && !error.is_retryable(), "{message}");
            }
            assert_eq!(std::fs::read_to_string(&prd_file).unwrap(), web.expose_content(), "prd's file is untouched");
            assert_eq!(std::fs::read_to_string(&outside).unwrap(), PRECIOUS);
            assert!(dev.join("configmap-web.yaml").exists() && !dev.join("configmap-api.yaml").exists());
        }
    }

    // An object whose file is a well-formed name, but not the one its kind and name give.
    std::fs::write(&index_path, &good_index).unwrap();
    edit_index(&dev, |index| index["objects"][0]["file"] = "configmap-other.yaml".into());
    let (_, _, message) = unsafe_file(&deployer.apply(&next, ApplyMode::Apply).await.unwrap_err());
    assert!(message.contains("configmap-other.yaml") && message.contains("ConfigMap web"), "{message}");
    // Another stage's index copied in.
    std::fs::copy(root.path().join("deploy/prd").join(INDEX_FILE), &index_path).unwrap();
    let (_, line, message) = unsafe_file(&deployer.apply(&next, ApplyMode::Apply).await.unwrap_err());
    assert!(message.contains("index of stage \"prd\"") && line == Some(line_of(&index_path, "\"stage\"")), "{message}");

    // Put back, the stage applies as before.
    std::fs::write(&index_path, &good_index).unwrap();
    deployer.apply(&next, ApplyMode::Apply).await.unwrap();
    assert_eq!(files(&dev), [INDEX_FILE, "configmap-api.yaml"]);
    assert_eq!(std::fs::read_to_string(&prd_file).unwrap(), web.expose_content());
}

#[tokio::test]
async fn symlinked_stage_and_namespace_directories_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let deploy = root.path().join("deploy");
    std::fs::create_dir(&deploy).unwrap();
    let deployer = DirectoryDeployer::new(&deploy);
    let bundle = |stage: &str, namespace: Option<&str>| {
        Bundle::new(stage, vec![object("ConfigMap", "web", namespace, "data: {}\n", None)])
    };

    // The stage's directory is a symlink.
    std::os::unix::fs::symlink(&elsewhere, deploy.join("dev")).unwrap();
    for mode in [ApplyMode::DryRun, ApplyMode::Apply] {
        let error = deployer.apply(&bundle("dev", None), mode).await.unwrap_err();
        let (file, _, message) = unsafe_file(&error);
        assert_eq!(file, deploy.join("dev"));
        assert!(message.contains("symlink"), "{message}");
    }
    assert!(deployer.current("dev").await.is_err());
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing was written through it");

    // A namespace directory is a symlink: writing into it is refused.
    deployer.apply(&bundle("stg", None), ApplyMode::Apply).await.unwrap();
    std::os::unix::fs::symlink(&elsewhere, deploy.join("stg/shop")).unwrap();
    let error = deployer.apply(&bundle("stg", Some("shop")), ApplyMode::Apply).await.unwrap_err();
    let (file, _, message) = unsafe_file(&error);
    assert_eq!(file, deploy.join("stg/shop"));
    assert!(message.contains("symlink"), "{message}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // A namespace directory the deployer wrote into, swapped for a symlink to a directory holding a file of
    // the same name: neither reading nor pruning goes through it.
    deployer.apply(&bundle("prd", Some("shop")), ApplyMode::Apply).await.unwrap();
    std::fs::remove_dir_all(deploy.join("prd/shop")).unwrap();
    std::fs::write(elsewhere.join("configmap-web.yaml"), PRECIOUS).unwrap();
    std::os::unix::fs::symlink(&elsewhere, deploy.join("prd/shop")).unwrap();
    assert!(deployer.current("prd").await.is_err());
    let error = deployer.apply(&bundle("prd", None), ApplyMode::Apply).await.unwrap_err();
    assert!(unsafe_file(&error).2.contains("symlink"));
    assert_eq!(std::fs::read_to_string(elsewhere.join("configmap-web.yaml")).unwrap(), PRECIOUS);
}

#[tokio::test]
async fn a_symlink_at_a_files_name_is_replaced_or_removed_never_followed() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside.txt");
    std::fs::write(&outside, PRECIOUS).unwrap();
    let deployer = DirectoryDeployer::new(root.path().join("deploy"));
    let dev = root.path().join("deploy/dev");
    std::fs::create_dir_all(&dev).unwrap();
    let web = object("ConfigMap", "web", None, "data: {}\n", None);

    // Planted where the deployer is about to write.
    std::os::unix::fs::symlink(&outside, dev.join("configmap-web.yaml")).unwrap();
    deployer.apply(&Bundle::new("dev", vec![web.clone()]), ApplyMode::Apply).await.unwrap();
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), PRECIOUS);
    let written = std::fs::symlink_metadata(dev.join("configmap-web.yaml")).unwrap();
    assert!(written.is_file(), "the symlink was replaced by the file");
    assert_eq!(std::fs::read_to_string(dev.join("configmap-web.yaml")).unwrap(), web.expose_content());

    // A file the deployer wrote, swapped for a symlink: shown as replaced, never read through, and pruned
    // by removing the link.
    std::fs::remove_file(dev.join("configmap-web.yaml")).unwrap();
    std::os::unix::fs::symlink(&outside, dev.join("configmap-web.yaml")).unwrap();
    let current = deployer.current("dev").await.unwrap().unwrap();
    assert!(current.masked_text().contains("replaced by a symlink"), "{}", current.masked_text());
    assert!(!current.masked_text().contains(PRECIOUS.trim()));
    let other = Bundle::new("dev", vec![object("ConfigMap", "api", None, "data: {}\n", None)]);
    deployer.apply(&other, ApplyMode::Apply).await.unwrap();
    assert!(std::fs::symlink_metadata(dev.join("configmap-web.yaml")).is_err(), "the link is gone");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), PRECIOUS);

    // The index itself as a symlink: refused, not read or written through.
    std::fs::remove_file(dev.join(INDEX_FILE)).unwrap();
    std::os::unix::fs::symlink(&outside, dev.join(INDEX_FILE)).unwrap();
    let error = deployer.apply(&other, ApplyMode::Apply).await.unwrap_err();
    assert!(unsafe_file(&error).2.contains("symlink"));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), PRECIOUS);
}
