//! The local config sources: YAML and dotenv files, environment variables, and their spec kinds.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use promote_core::config::{ConfigRequest, ConfigSource, EnvConfigSource, FileConfigSource, load_layered};
use promote_core::{BuildRequest, Error, MemoryArtifactStore, SpecRegistry, conformance};

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn fixture(source: Arc<dyn ConfigSource>) -> conformance::ConfigFixture {
    conformance::ConfigFixture {
        source,
        stage: "prd".into(),
        plain: BTreeMap::from([("DB_HOST".into(), "db.prd.internal".into()), ("REPLICAS".into(), "4".into())]),
        secrets: BTreeMap::from([("DB_PASSWORD".into(), "pa55-prd".into())]),
        unknown_stage: "qa".into(),
        older_version: None,
    }
}

#[tokio::test]
async fn a_yaml_file_per_stage_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config/prd.yaml", "DB_HOST: db.prd.internal\nREPLICAS: 4\nDB_PASSWORD: pa55-prd\n");
    write(dir.path(), "config/dev.yaml", "DB_HOST: db.dev.internal\n");
    let source = FileConfigSource::new(dir.path().join("config/{stage}.yaml")).secret_keys(["DB_PASSWORD"]);
    conformance::config_source(fixture(Arc::new(source))).await;
}

#[tokio::test]
async fn one_yaml_file_with_a_map_per_stage_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "config.yaml",
        "dev:\n  DB_HOST: db.dev.internal\nprd:\n  DB_HOST: db.prd.internal\n  REPLICAS: 4\n  DB_PASSWORD: \"pa55-prd\"\n",
    );
    let source = FileConfigSource::new(dir.path().join("config.yaml")).secret_keys(["DB_PASSWORD"]);
    conformance::config_source(fixture(Arc::new(source.clone()))).await;
    let dev = source.load(&ConfigRequest::new("dev")).await.unwrap();
    assert_eq!(dev.len(), 1, "each stage gets only its own map");
}

#[tokio::test]
async fn dotenv_files_with_a_separate_secrets_file_pass_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "env/prd.env", "# prd settings\nDB_HOST=db.prd.internal\nexport REPLICAS=4\n");
    write(dir.path(), "secrets/prd.env", "DB_PASSWORD='pa55-prd'\n");
    let source =
        FileConfigSource::new(dir.path().join("env/{stage}.env")).secrets_file(dir.path().join("secrets/{stage}.env"));
    conformance::config_source(fixture(Arc::new(source))).await;
}

#[tokio::test]
async fn environment_variables_pass_the_conformance_suite() {
    let source = EnvConfigSource::new("PROMOTE_{STAGE}_").secret_keys(["DB_PASSWORD"]).with_vars([
        ("PROMOTE_PRD_DB_HOST", "db.prd.internal"),
        ("PROMOTE_PRD_REPLICAS", "4"),
        ("PROMOTE_PRD_DB_PASSWORD", "pa55-prd"),
        ("PROMOTE_DEV_DB_HOST", "db.dev.internal"),
        ("UNRELATED", "x"),
    ]);
    conformance::config_source(fixture(Arc::new(source))).await;
}

#[tokio::test]
async fn the_env_kind_reads_the_process_environment() {
    // PATH is set in every test process; with prefix "PAT" it is key "H". (Tests cannot set variables:
    // `set_var` is unsafe, and unsafe code is forbidden here.)
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "manifests/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  path: {{quote config.H}}\n",
    );
    let spec = "pipeline: shop\nstore: { kind: memory }\nledger: { kind: memory }\ntemplates: manifests\ndeployer: { kind: memory }\nstages:\n  - name: dev\n    config:\n      - { kind: env, prefix: PAT }\n";
    let (pipeline, build) = load_spec(dir.path(), spec).await;
    let plan = pipeline.plan(&build.id, "dev", "ci").await.unwrap();
    let expected = serde_json::to_string(&std::env::var("PATH").unwrap()).unwrap();
    assert!(plan.diff.contains(&format!("+  path: {expected}\n")), "{}", plan.diff);
    assert_eq!(plan.config["H"].source, "env:PAT");
}

/// Loads `spec` as `<dir>/promote.yaml` over a memory store holding one image, and registers a build of it.
async fn load_spec(dir: &Path, spec: &str) -> (promote_core::Pipeline, promote_core::Build) {
    write(dir, "promote.yaml", spec);
    let store = MemoryArtifactStore::new();
    store
        .push(
            "memory.local/web:1".parse().unwrap(),
            promote_core::manifest::OCI_MANIFEST,
            b"{\"schemaVersion\":2}".to_vec(),
        )
        .unwrap();
    let mut registry = SpecRegistry::with_defaults();
    registry.register_store("memory", move |_| {
        let store = store.clone();
        async move { Ok(Arc::new(store) as Arc<dyn promote_core::ArtifactStore>) }
    });
    let pipeline = registry.load_file(dir.join("promote.yaml"), None).await.unwrap();
    let build = pipeline
        .register(BuildRequest::new("c0ffee0").artifact("web", "memory.local/web:1".parse().unwrap()), "ci")
        .await
        .unwrap();
    (pipeline, build)
}

#[tokio::test]
async fn later_sources_override_earlier_ones_with_provenance() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "defaults.yaml", "prd:\n  LOG_LEVEL: info\n  REPLICAS: 2\n");
    write(dir.path(), "prd.env", "REPLICAS=6\nDB_PASSWORD=from-file\n");
    let sources: Vec<Arc<dyn ConfigSource>> = vec![
        Arc::new(FileConfigSource::new(dir.path().join("defaults.yaml")).named("defaults")),
        Arc::new(FileConfigSource::new(dir.path().join("{stage}.env")).named("stage-env").secret_keys(["DB_PASSWORD"])),
        Arc::new(EnvConfigSource::new("CI_{STAGE}_").all_secret(true).with_vars([("CI_PRD_DB_PASSWORD", "from-ci")])),
    ];
    let set = load_layered(&sources, "prd", &BTreeMap::new()).await.unwrap();
    let provenance = set.provenance();
    assert_eq!(set.get("LOG_LEVEL").unwrap().value.expose(), "info");
    assert_eq!(provenance["LOG_LEVEL"].source, "defaults");
    assert_eq!(set.get("REPLICAS").unwrap().value.expose(), "6");
    assert_eq!(provenance["REPLICAS"].source, "stage-env");
    assert_eq!(set.get("DB_PASSWORD").unwrap().value.expose(), "from-ci");
    assert_eq!(
        (provenance["DB_PASSWORD"].source.as_str(), provenance["DB_PASSWORD"].secret),
        ("env:CI_{STAGE}_", true)
    );
}

fn config_source_error(error: Error) -> (String, String, String) {
    match error {
        Error::ConfigSource { stage, source_name, message, .. } => (stage, source_name, message),
        other => panic!("expected a config source error, got {other:?}"),
    }
}

#[tokio::test]
async fn unreadable_and_malformed_files_name_stage_source_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let load = |source: FileConfigSource| async move { source.load(&ConfigRequest::new("prd")).await };

    // One file for every stage must exist.
    let missing = dir.path().join("nowhere.yaml");
    let (stage, source, message) =
        config_source_error(load(FileConfigSource::new(&missing).named("base")).await.unwrap_err());
    assert_eq!((stage.as_str(), source.as_str()), ("prd", "base"));
    assert!(message.contains("nowhere.yaml"), "{message}");

    write(dir.path(), "broken.yaml", "prd:\n  A: 1\n  B: [unclosed\n");
    let (_, _, message) =
        config_source_error(load(FileConfigSource::new(dir.path().join("broken.yaml"))).await.unwrap_err());
    assert!(message.contains("broken.yaml") && message.contains("not valid YAML"), "{message}");

    write(dir.path(), "nested.yaml", "prd:\n  A: 1\n  DB:\n    host: x\n");
    let (_, _, message) =
        config_source_error(load(FileConfigSource::new(dir.path().join("nested.yaml"))).await.unwrap_err());
    assert!(message.contains("nested.yaml:4") && message.contains("key DB"), "{message}");

    write(dir.path(), "dupes.yaml", "prd:\n  A: 1\n  A: 2\n");
    let error = load(FileConfigSource::new(dir.path().join("dupes.yaml"))).await.unwrap_err().to_string();
    assert!(error.contains("Duplicate key"), "{error}");

    write(dir.path(), "prd.env", "GOOD=1\n# note\nBAD=\"s3cr3t-unterminated\nLAST=2\n");
    let error = load(FileConfigSource::new(dir.path().join("{stage}.env"))).await.unwrap_err();
    let shown = error.to_string();
    assert!(shown.contains("prd.env:3") && shown.contains("stage prd"), "{shown}");
    assert!(!shown.contains("s3cr3t"), "a parse error must not show the line's value: {shown}");
}

#[tokio::test]
async fn a_required_key_missing_from_a_source_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "stg.yaml", "DB_HOST: db.stg\n");
    let source =
        FileConfigSource::new(dir.path().join("{stage}.yaml")).named("stage-files").required(["DB_HOST", "DB_URL"]);
    match source.load(&ConfigRequest::new("stg")).await {
        Err(Error::MissingConfig { stage, key, source_names }) => {
            assert_eq!((stage.as_str(), key.as_str(), source_names.as_str()), ("stg", "DB_URL", "stage-files"));
        }
        other => panic!("expected MissingConfig, got {other:?}"),
    }
    let env = EnvConfigSource::new("APP_").required(["TOKEN"]).with_vars([("APP_OTHER", "1")]);
    let error = env.load(&ConfigRequest::new("dev")).await.unwrap_err();
    assert_eq!(error.to_string(), "stage dev: config key TOKEN is missing (sources: env:APP_)");
}

const SPEC: &str = "pipeline: shop
store: { kind: memory }
ledger: { kind: memory }
templates: manifests
deployer: { kind: memory }
config:
  - kind: file
    path: config/defaults.yaml
stages:
  - name: dev
    config:
      - { kind: file, path: \"config/{stage}.env\", name: dev-env }
  - name: prd
    config:
      - kind: file
        path: \"config/{stage}.yaml\"
        secret_keys: [DB_PASSWORD]
        required: [DB_HOST]
      - { kind: env, prefix: \"SHOP_TEST_{STAGE}_\" }
";

#[tokio::test]
async fn spec_kinds_build_file_and_env_sources_relative_to_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config/defaults.yaml", "dev:\n  REPLICAS: 1\nprd:\n  REPLICAS: 3\n");
    write(dir.path(), "config/dev.env", "DB_HOST=db.dev\n");
    write(dir.path(), "config/prd.yaml", "DB_HOST: db.prd\nDB_PASSWORD: pa55\n");
    write(
        dir.path(),
        "manifests/app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  db: {{config.DB_HOST}}\n  replicas: {{quote config.REPLICAS}}\n",
    );
    let (pipeline, build) = load_spec(dir.path(), SPEC).await;
    let dev = pipeline.plan(&build.id, "dev", "ci").await.unwrap();
    assert!(dev.diff.contains("+  db: db.dev\n+  replicas: \"1\""), "{}", dev.diff);
    assert_eq!(dev.config["DB_HOST"].source, "dev-env");
    assert_eq!(dev.config["REPLICAS"].source, "file:config/defaults.yaml", "provenance names the file as written");
    let prd = pipeline.plan(&build.id, "prd", "ci").await.unwrap();
    assert!(prd.diff.contains("+  db: db.prd\n+  replicas: \"3\""), "{}", prd.diff);
    assert!(prd.config["DB_PASSWORD"].secret);
}

#[tokio::test]
async fn spec_errors_name_the_line_and_the_key() {
    let registry = SpecRegistry::with_defaults();
    let load = |spec: String| {
        let registry = registry.clone();
        async move { registry.load_str(&spec, Path::new("promote.yaml"), Path::new("."), None).await.unwrap_err() }
    };
    let head =
        "pipeline: shop\nstore: { kind: memory }\nledger: { kind: memory }\nstages:\n  - name: dev\n    config:\n";

    let error = load(format!("{head}      - kind: file\n        path: a.yaml\n        secret_key: [X]\n")).await;
    match &error {
        Error::Spec { location, key, message } => {
            assert_eq!(location.line, Some(9), "{error}");
            assert!(key.starts_with("stages[0].config[0]") && message.contains("secret_key"), "{error}");
        }
        other => panic!("expected a spec error, got {other:?}"),
    }
    let error = load(format!("{head}      - {{ kind: file }}\n")).await;
    assert!(error.to_string().contains("path"), "{error}");
    let error = load(format!("{head}      - {{ kind: file, path: a.yaml, format: toml }}\n")).await;
    assert!(error.to_string().contains("toml"), "{error}");
    let error = load(format!("{head}      - {{ kind: env, prefix: \"\" }}\n")).await;
    assert!(error.to_string().contains("empty prefix"), "{error}");
}
